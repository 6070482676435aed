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
        ``tap_stack.namespace.run(...)``/``.python(...)`` run kernel-side
        commands and Python there; ``async with tap_stack.drop(5,
        protocol="tcp")`` makes the kernel drop a random 5 % (nftables).

Markers
    ``@pytest.mark.aiostack_impair(loss=0.05, delay=0.02, jitter=0.005, seed=1)``
    (or ``aiostack_impair("loss=5%,delay=20ms~5ms")``): the initial
    impairment of every link of ``virtual_network``, both directions. Keys
    are :class:`~aiostack.link.fault.FaultConfig` fields (plus the aliases
    ``dup``, ``drop``, ``bandwidth``); ``seed`` is the network's seed.
    ``impairment`` is an older name of the same marker. Links stay
    changeable during the test (``virtual_network.link("a", "b").impair(...)``).

    ``@pytest.mark.aiostack_virtual_time`` (optionally
    ``aiostack_virtual_time(autojump_threshold=0.005)``): the async test,
    and the async fixtures it uses, run on a
    :class:`~aiostack.testing.virtual_time.VirtualTimeLoop`, so protocol
    timers and the application's ``asyncio.sleep``/timeouts take no wall
    time. It works through pytest-asyncio's ``pytest_asyncio_loop_factories``
    hook: a marked test runs on that one loop only (uvloop cannot be given a
    virtual clock, see :mod:`aiostack.testing.virtual_time`); unmarked
    tests are left to the project's own implementation of the hook, or, if
    there is none, to a loop from the event loop policy, as before.

Seeds and captures
    The network's seed is ``--aiostack-seed`` if given, else the marker's
    ``seed``, else derived from the test's node id: stable from run to
    run, different between tests.
    When a test fails, its captures are kept and a report section
    ("aiostack pcaps") lists their paths and the seed; when it passes they
    are deleted. They go under ``--aiostack-pcap-dir`` (one directory per
    test) or pytest's temporary directory.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import zlib
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

if TYPE_CHECKING:
    # Imported in the fixtures instead: pytest loads this module at start-up in
    # every project that has aiostack installed, whether or not it uses the
    # fixtures, so it imports no more than it must. (Importing it still runs
    # aiostack/__init__.py, which today imports the stack eagerly.)
    from aiostack.stack.stack import Stack
    from aiostack.testing.netns import NetNamespace, TapSpec
    from aiostack.testing.network import Impairment, VirtualNetwork
    from aiostack.testing.nft import KernelDrop

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


#: Marker names that set the initial impairment (the first is the documented one).
IMPAIR_MARKERS = ("aiostack_impair", "impairment")
VIRTUAL_TIME_MARKER = "aiostack_virtual_time"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aiostack_impair(spec=None, *, seed=None, **fields): initial impairment of every "
        "link of the virtual_network fixture, e.g. aiostack_impair(loss=0.05, seed=1) or "
        'aiostack_impair("loss=5%,delay=20ms~5ms"); seed is the network\'s seed',
    )
    config.addinivalue_line(
        "markers",
        "impairment(spec=None, **fields): older name of aiostack_impair",
    )
    config.addinivalue_line(
        "markers",
        f"{VIRTUAL_TIME_MARKER}(**loop_options): run this async test and its async fixtures "
        "on aiostack's virtual-time loop (stdlib loop only); options as run_virtual's",
    )


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """pytest-asyncio hook: a virtual-time loop for tests marked ``aiostack_virtual_time``.

    The hook is first-result: for unmarked tests this returns None so the
    project's own implementation (a conftest's) decides, and only when there
    is none returns the event loop policy's loop, which is what pytest-asyncio
    uses when nobody implements the hook (None would be an error then).
    """
    marker = item.get_closest_marker(VIRTUAL_TIME_MARKER)
    if marker is not None:
        options = dict(marker.kwargs)
        if marker.args:
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.{VIRTUAL_TIME_MARKER} takes keyword options only"
            )

        def virtual_loop() -> asyncio.AbstractEventLoop:
            from aiostack.testing.virtual_time import new_virtual_time_loop

            return new_virtual_time_loop(**options)

        return {"virtual_time": virtual_loop}
    others = [
        impl
        for impl in item.ihook.pytest_asyncio_loop_factories.get_hookimpls()
        if impl.function is not pytest_asyncio_loop_factories
    ]
    if others:
        return None
    return {"asyncio": _policy_loop}


def _policy_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_event_loop_policy().new_event_loop()


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


def _impairment(node: pytest.Item) -> tuple[Impairment | None, int | None]:
    """The marker's impairment and seed (None, None without a marker)."""
    for name in IMPAIR_MARKERS:
        marker = node.get_closest_marker(name)
        if marker is not None:
            break
    else:
        return None, None
    fields = dict(marker.kwargs)
    seed = fields.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed: {seed!r} is not an integer")
    if len(marker.args) > 1 or (marker.args and fields):
        raise ValueError("takes one spec (text or mapping) or keyword fields, not both")
    if marker.args:
        spec: Impairment = marker.args[0]
        return spec, seed
    return (fields or None), seed


def _pcap_dir(request: pytest.FixtureRequest, factory: pytest.TempPathFactory) -> Path:
    name = _UNSAFE.sub("_", request.node.name)[:60] or "test"
    base = request.config.getoption("aiostack_pcap_dir")
    if base is None:
        return factory.mktemp(f"pcap-{name}", numbered=True)
    path = Path(base) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _default_seed(request: pytest.FixtureRequest, marked: int | None) -> int:
    option: int | None = request.config.getoption("aiostack_seed")
    if option is not None:
        return option
    if marked is not None:
        return marked
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
        impairment, seed = _impairment(request.node)
        directory = _pcap_dir(request, tmp_path_factory)
        net = VirtualNetwork(
            seed=_default_seed(request, seed), impairment=impairment, pcap=True, pcap_dir=directory
        )
    except (ValueError, TypeError) as exc:
        pytest.fail(f"@pytest.mark.{IMPAIR_MARKERS[0]}: {exc}", pytrace=False)
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

    def drop(
        self,
        percent: float,
        *,
        direction: Literal["input", "output", "both"] = "both",
        protocol: str | None = None,
        match: str | None = None,
    ) -> KernelDrop:
        """Kernel-side random drop in this namespace: ``async with tap_stack.drop(5): ...``.

        See :class:`~aiostack.testing.nft.KernelDrop`; the rules are removed
        on exit (and with the namespace, whatever happens).
        """
        from aiostack.testing.nft import KernelDrop

        return KernelDrop(
            self.spec.netns, percent, direction=direction, protocol=protocol, match=match
        )

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
