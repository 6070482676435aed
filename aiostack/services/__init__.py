"""Built-in network services that run on a stack: echo, discard, daytime, chargen, http.

Each module has ``serve(stack, port=..., ...)`` returning a
:class:`~aiostack.services.base.Service` to close::

    from aiostack import services

    async with await services.echo.serve(stack, port=7):
        ...

:func:`start` starts one by name, which is what ``aiostack up --serve
NAME[:PORT]`` does. The classic ones (RFC 862, 863, 864, 867) listen on TCP
and UDP, the web server on TCP.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiostack.services import chargen, daytime, discard, echo, http
from aiostack.services.base import Service

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

__all__ = [
    "SERVICES",
    "Service",
    "chargen",
    "daytime",
    "default_port",
    "discard",
    "echo",
    "http",
    "parse_service",
    "start",
]

#: Name -> (serve function, default port).
SERVICES: dict[str, tuple[Callable[..., Awaitable[Service]], int]] = {
    echo.NAME: (echo.serve, echo.PORT),
    discard.NAME: (discard.serve, discard.PORT),
    daytime.NAME: (daytime.serve, daytime.PORT),
    chargen.NAME: (chargen.serve, chargen.PORT),
    http.NAME: (http.serve, http.PORT),
}


def default_port(name: str) -> int:
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Callable[..., Awaitable[Service]], int]:
    try:
        return SERVICES[name]
    except KeyError:
        known = ", ".join(SERVICES)
        raise ValueError(f"service: {name!r} is not a built-in service ({known})") from None


def parse_service(text: str) -> tuple[str, int]:
    """``"http"`` or ``"http:8080"`` -> ``("http", 80 or 8080)``; ValueError names the problem."""
    name, colon, port_text = text.partition(":")
    name = name.strip().lower()
    _lookup(name)
    if not colon:
        return name, default_port(name)
    if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"service: port {port_text!r} of {text!r} is not in 1..65535")
    return name, int(port_text)


async def start(stack: Stack, name: str, port: int | None = None, **options: Any) -> Service:
    """Start built-in service ``name`` on ``port`` (its well-known port by default)."""
    serve, well_known = _lookup(name)
    return await serve(stack, well_known if port is None else port, **options)
