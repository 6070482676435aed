"""Suite-wide test configuration.

Event loops
    Every async test (and the async fixtures it uses) runs twice: once on the
    standard library's selector loop and once on uvloop, through
    pytest-asyncio's ``pytest_asyncio_loop_factories`` hook. The loop's name
    is the test-id parameter: ``test_x[asyncio]`` and ``test_x[uvloop]``;
    select one with ``-k uvloop`` / ``-k "not uvloop"``. A single test can
    narrow itself with ``@pytest.mark.asyncio(loop_factories=["uvloop"])``.
    Synchronous tests are not parametrised (pytest-asyncio 1.5 also leaves a
    synchronous test that uses an async fixture on its default loop).

Loop hygiene
    Loops run in asyncio debug mode (pytest-asyncio's ``asyncio_debug``,
    switched on here unless ``--asyncio-debug`` was given explicitly; set
    ``AIOSTACK_ASYNCIO_DEBUG=0`` to turn it off). Anything reported to a
    loop's exception handler (a task destroyed while pending, an exception
    nobody retrieved, an exception in a callback or in shutdown) fails the
    test during which it was reported, with the details. A test that expects
    such a report installs its own handler with ``loop.set_exception_handler``.
    "coroutine ... was never awaited" is an error, which Python routes through
    the unraisable hook; pyproject.toml makes unraisable exceptions errors.
    The garbage collector runs after every async test so that these reports
    land on the test that caused them (cheap: objects that exist once
    collection has finished are frozen out of the collector's work).

Network
    With ``AIOSTACK_REQUIRE_TAP=1`` (CI) a test marked ``tap`` that ends up
    skipped is reported as failed. The session fails if it leaves behind a
    network namespace whose name starts with ``aiostk``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import subprocess
import traceback
from collections.abc import Callable, Generator, Iterator, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import _pytest
import pluggy
import pytest
import pytest_asyncio
import uvloop
from pytest_asyncio import is_async_test

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_NETNS_DIR = Path("/run/netns")


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def _require_tap() -> bool:
    return _env_flag("AIOSTACK_REQUIRE_TAP", default=False)


# ---------------------------------------------------------------- loop errors

# Descriptions of everything the loops made here reported to their exception
# handler and that no test has been failed for yet.
_loop_errors: list[str] = []
_loops_created = 0


# Frames of the machinery that runs a test; stripped from the front of the
# "created at" tracebacks in reports so that they start at the test's code.
_HARNESS_DIRS = tuple(
    str(Path(module.__file__).parent) + os.sep
    for module in (_pytest, pytest, pluggy, pytest_asyncio, asyncio, uvloop)
    if module.__file__ is not None
)


def _without_harness(frames: traceback.StackSummary) -> list[traceback.FrameSummary]:
    kept = list(frames)
    while kept and (
        kept[0].filename.startswith(_HARNESS_DIRS) or kept[0].filename.startswith("<frozen ")
    ):
        del kept[0]
    return kept or list(frames)


def _describe(context: dict[str, Any]) -> str:
    """Render an exception-handler context like asyncio's default handler."""
    lines = [str(context.get("message") or "Unhandled exception in event loop")]
    where = os.environ.get("PYTEST_CURRENT_TEST")
    if where:
        lines.append(f"reported during: {where}")
    for key in sorted(context):
        if key in {"message", "exception"}:
            continue
        value = context[key]
        if key in {"source_traceback", "handle_traceback"}:
            text = "".join(traceback.format_list(_without_harness(value))).rstrip()
            lines.append(f"{key} (most recent call last):\n{text}")
        else:
            lines.append(f"{key}: {value!r}")
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        lines.append("".join(traceback.format_exception(exc)).rstrip())
    return "\n".join(lines)


def _record_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Rendered now: the objects in `context` change or die after we return.
    _loop_errors.append(_describe(context))


def _prepare(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    global _loops_created
    _loops_created += 1
    loop.set_exception_handler(_record_loop_error)
    return loop


def _new_asyncio_loop() -> asyncio.AbstractEventLoop:
    # Explicitly the selector loop, whatever the global event loop policy says.
    return _prepare(asyncio.SelectorEventLoop())


def _new_uvloop_loop() -> asyncio.AbstractEventLoop:
    return _prepare(uvloop.new_event_loop())


# Keys are the test-id parameters.
LOOP_FACTORIES: Mapping[str, LoopFactory] = {
    "asyncio": _new_asyncio_loop,
    "uvloop": _new_uvloop_loop,
}


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, LoopFactory]:
    """pytest-asyncio hook: run every async test once per loop factory."""
    return LOOP_FACTORIES


def _take_loop_errors() -> list[str]:
    errors = _loop_errors[:]
    _loop_errors.clear()
    return errors


def _loop_error_failure(errors: list[str]) -> str:
    sep = "\n" + "-" * 70 + "\n"
    return (
        f"{len(errors)} error(s) reported to the event loop's exception handler:"
        + sep
        + sep.join(errors)
    )


# ---------------------------------------------------------------- pytest hooks


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("asyncio_debug") is None and _env_flag(
        "AIOSTACK_ASYNCIO_DEBUG", default=True
    ):
        config.option.asyncio_debug = True
    config.addinivalue_line("filterwarnings", "error:coroutine .* was never awaited:RuntimeWarning")


def pytest_report_header(config: pytest.Config) -> list[str]:
    tun = "present" if os.path.exists("/dev/net/tun") else "missing"
    return [
        f"aiostack: loops={','.join(LOOP_FACTORIES)} uvloop={version('uvloop')}"
        f" /dev/net/tun={tun} euid={os.geteuid()}"
        f" AIOSTACK_REQUIRE_TAP={int(_require_tap())}"
    ]


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far lives for the whole session; freezing it
    # makes the per-test gc.collect() below cost about a millisecond instead
    # of ~100 ms with scapy and hypothesis loaded.
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Runs after the fixtures (and so the event loop) are torn down, and
    # before pytest collects this phase's unraisable exceptions: pending
    # tasks and unawaited coroutines caught in reference cycles are found
    # now, and reported against this test.
    global _loops_created
    if _loops_created or is_async_test(item):
        _loops_created = 0
        gc.collect()


@pytest.hookimpl(wrapper=True, specname="pytest_runtest_teardown")
def pytest_runtest_teardown_check_loop_errors(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    yield
    errors = _take_loop_errors()
    if errors:
        pytest.fail(_loop_error_failure(errors), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and _require_tap()
        and item.get_closest_marker("tap") is not None
    ):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"TAP test skipped, but AIOSTACK_REQUIRE_TAP=1 makes that a failure: {reason}"
        )
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    gc.collect()
    errors = _take_loop_errors()
    if not errors:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "event loop errors reported after the last test", red=True)
        reporter.write_line(_loop_error_failure(errors))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------- namespaces


def _list_netns() -> set[str]:
    """Names of the network namespaces `ip netns` knows about."""
    ip = shutil.which("ip")
    if ip is not None:
        result = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            # Lines look like "name" or "name (id: 3)".
            return {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    try:
        return {entry.name for entry in _NETNS_DIR.iterdir()}
    except OSError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_netns() -> Iterator[None]:
    """Fail the session if it leaves behind a network namespace that it created.

    Only namespaces this process made (``created_namespaces()``) count, so
    other test runs or benchmarks on the same machine cannot fail this one.
    """
    from aiostack.testing.netns import created_namespaces

    before = _list_netns()
    yield
    leaked = sorted((_list_netns() - before) & created_namespaces())
    if leaked:
        cleanup = "; ".join(f"ip netns delete {name}" for name in leaked)
        pytest.fail(
            f"tests left network namespaces behind: {', '.join(leaked)} (remove: {cleanup})",
            pytrace=False,
        )
