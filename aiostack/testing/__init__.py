"""Testing with aiostack: virtual networks, virtual time, namespaces and TAPs, a pytest plugin.

``VirtualNetwork``, ``Host`` and ``Link`` (:mod:`aiostack.testing.network`) are
available here, as the entry point for users' integration tests; the other
helpers are imported from their submodules (``aiostack.testing.virtual_time``,
``aiostack.testing.netns``, ``aiostack.testing.nft`` for kernel-side drop
rules in a TAP test's namespace). The pytest plugin (:mod:`aiostack.testing.plugin`)
is registered through the ``pytest11`` entry point and needs no import.
Nothing here is imported by the library itself.

The names are resolved lazily (PEP 562): pytest imports the plugin, and so
this package, at start-up in every project that has aiostack installed;
importing the plugin should not pull in more than the plugin itself needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiostack.testing.network import Host, Link, VirtualNetwork

__all__ = ["Host", "Link", "VirtualNetwork"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aiostack.testing import network

        return getattr(network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
