"""The aiostack pytest plugin: virtual networks, stack pairs and TAP stacks as fixtures.

Installing aiostack is enough: the ``pytest11`` entry point loads this module
in every pytest run. Nothing here runs unless a test asks for a fixture or
uses the marker, so the plugin costs other test suites nothing.

Fixtures (async, through pytest-asyncio)
    ``virtual_network``
        A started :class:`~aiostack.testing.network.VirtualNetwork`, closed
        after the test. Every link is captured to a pcap. Build the topology
        in the test, then ``await virtual_network.start()`` to start the
        hosts added::

            async def test_echo(virtual_network):
                virtual_network.connect("client", "server")
                await virtual_network.start()
                await virtual_network.host("client").ping("server")

    ``stack_pair``
        ``(a, b)``: the stacks of hosts ``"a"`` and ``"b"`` of
        ``virtual_network``, joined by a wire and started.
    ``tap_stack``
        A :class:`TapStack`: a stack on a TAP in a fresh network namespace
        whose kernel side is the peer (``198.18.0.1``; the stack is
        ``198.18.0.2``). Skipped, with the reason, where TAPs cannot be made
        (not root, no ``/dev/net/tun``); with ``AIOSTACK_REQUIRE_TAP=1`` that
        is an error instead, so CI cannot lose these tests silently.

Marker
    ``@pytest.mark.impairment(loss=0.05, delay=0.02, jitter=0.005)`` (or
    ``impairment("loss=5%,delay=20ms~5ms")``): the initial impairment of
    every link of ``virtual_network``, both directions. Keys are
    :class:`~aiostack.link.fault.FaultConfig` fields.

Seeds and captures
    The network's seed is ``--aiostack-seed`` if given, else derived from
    the test's node id: stable from run to run, different between tests.
    When a test fails, its captures are kept and a report section
    ("aiostack pcaps") lists their paths and the seed; when it passes they
    are deleted. They go under ``--aiostack-pcap-dir`` (one directory per
    test) or pytest's temporary directory.
"""

from __future__ import annotations

import re
import shutil
import zlib
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    # Imported in the fixtures instead: pytest loads this module at start-up in
    # every project that has aiostack installed, whether or not it uses the
    # fixtures, so it imports no more than it must. (Importing it still runs
    # aiostack/__init__.py, which today imports the stack eagerly.)
    from aiostack.stack.stack import Stack
    from aiostack.testing.netns import NetNamespace, TapSpec
    from aiostack.testing.network import Impairment, VirtualNetwork

__all__ = ["PCAP_SECTION", "TapStack"]


def _needs_pytest_asyncio(function: Callable[..., Any]) -> Any:
    """Stand-in for ``pytest_asyncio.fixture``: a fixture that explains what is missing.

    The plugin is loaded into every pytest run of every project that has
    aiostack installed, so a missing pytest-asyncio must not break those
    runs; only a test that asks for one of these fixtures fails.
    """

    @pytest.fixture(name=function.__name__)
    def unavailable() -> None:
        pytest.fail(
            f"the {function.__name__} fixture is async and needs pytest-asyncio "
            "(pip install pytest-asyncio)",
            pytrace=False,
        )

    return unavailable


#: Title of the report section that lists a failed test's captures.
PCAP_SECTION = "aiostack pcaps"

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    _async_fixture: Callable[[Callable[..., Any]], Any] = _needs_pytest_asyncio
else:
    _async_fixture = pytest_asyncio.fixture

_NETWORKS: pytest.StashKey[list[VirtualNetwork]] = pytest.StashKey()
_FAILED: pytest.StashKey[bool] = pytest.StashKey()
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aiostack", "aiostack virtual networks")
    group.addoption(
        "--aiostack-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of every virtual_network (default: derived from each test's node id)",
    )
    group.addoption(
        "--aiostack-pcap-dir",
        default=None,
        metavar="DIR",
        help="where virtual_network writes its captures, one directory per test "
        "(default: pytest's temporary directory); kept only for failed tests",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "impairment(spec=None, **fields): initial impairment of every link of the "
        "virtual_network fixture, e.g. impairment(loss=0.05, delay=0.02) or "
        'impairment("loss=5%,delay=20ms~5ms")',
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember a failure (so the fixture keeps the captures) and list the captures."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        item.stash[_FAILED] = True
        lines = []
        for net in item.stash.get(_NETWORKS, []):
            lines.append(f"seed {net.seed} (replay with --aiostack-seed={net.seed})")
            lines.extend(f"{name}: {path}" for name, path in sorted(net.pcap_paths.items()))
        if lines:
            report.sections.append((PCAP_SECTION, "\n".join(lines) + "\n"))
    return report


def _impairment(node: pytest.Item) -> Impairment | None:
    marker = node.get_closest_marker("impairment")
    if marker is None:
        return None
    if len(marker.args) > 1 or (marker.args and marker.kwargs):
        pytest.fail(
            "@pytest.mark.impairment takes one spec (text or mapping) or keyword fields, not both",
            pytrace=False,
        )
    if marker.args:
        spec: Impairment = marker.args[0]
        return spec
    return dict(marker.kwargs)


def _pcap_dir(request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> Path:
    name = _UNSAFE.sub("_", request.node.name)[:60] or "test"
    base = request.config.getoption("aiostack_pcap_dir")
    if base is None:
        return factory.mktemp(f"pcap-{name}", numbered=True)
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default_seed(request: pytest.FixtureRequest) -> int:
    option: int | None = request.config.getoption("aiostack_seed")
    if option is not None:
        return option
    return zlib.crc32(request.node.nodeid.encode())


def _discard_captures(net: VirtualNetwork, directory: Path) -> None:
    for path in net.pcap_paths.values():
        path.unlink(missing_ok=True)
    # Only if nothing else is in there: the directory may be the user's.
    if directory.exists() and not any(directory.iterdir()):
        shutil.rmtree(directory, ignore_errors=True)


@_async_fixture
async def virtual_network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VirtualNetwork]:
    """A started VirtualNetwork with captures on every link; see the module docstring."""
    from aiostack.testing.network import VirtualNetwork

    try:
        impairment = _impairment(request.node)
        directory = _pcap_dir(request, tmp_path_factory)
        net = VirtualNetwork(
            seed=_default_seed(request), impairment=impairment, pcap=True, pcap_dir=directory
        )
    except (ValueError, TypeError) as exc:
        pytest.fail(f"@pytest.mark.impairment: {exc}", pytrace=False)
    request.node.stash.setdefault(_NETWORKS, []).append(net)
    async with net:
        yield net
    if not request.node.stash.get(_FAILED, False):
        _discard_captures(net, directory)


@_async_fixture
async def stack_pair(virtual_network: VirtualNetwork) -> tuple[Stack, Stack]:
    """Hosts ``a`` and ``b`` of ``virtual_network`` on one wire, started: their stacks."""
    virtual_network.connect("a", "b")
    await virtual_network.start()
    return virtual_network.host("a").stack, virtual_network.host("b").stack


@dataclass(frozen=True, slots=True)
class TapStack:
    """What ``tap_stack`` gives: the stack and the TAP (with its namespace) it runs on."""

    stack: Stack
    spec: TapSpec

    @property
    def namespace(self) -> NetNamespace:
        """Run kernel-side commands here: ``tap_stack.namespace.run("ping", ...)``."""
        return self.spec.namespace

    @property
    def kernel_ip(self) -> str:
        return self.spec.kernel_ip

    @property
    def stack_ip(self) -> str:
        return self.spec.stack_ip


@_async_fixture
async def tap_stack() -> AsyncIterator[TapStack]:
    """A started stack on a TAP in a fresh namespace, the kernel as its peer."""
    from aiostack.stack.stack import Stack
    from aiostack.testing import netns

    # Looked up through the module so that a test can patch the availability check.
    netns.require_tap()
    async with netns.tap_in_netns() as spec:
        stack = Stack(
            spec.device(),
            address=f"{spec.stack_ip}/{spec.prefixlen}",
            mac=spec.stack_mac,
        )
        async with stack:
            yield TapStack(stack, spec)
