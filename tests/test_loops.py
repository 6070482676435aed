"""Self-checks for tests/conftest.py: both event loops, debug mode, loop hygiene."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import uvloop

# What each test-id parameter must put under an async test.
EXPECTED_LOOP_TYPES: dict[str, type[asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.SelectorEventLoop,
    "uvloop": uvloop.Loop,
}


def _debug_expected() -> bool:
    return os.environ.get("AIOSTACK_ASYNCIO_DEBUG", "").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


def test_hook_offers_both_loops(request: pytest.FixtureRequest) -> None:
    factories = request.node.ihook.pytest_asyncio_loop_factories(
        config=request.config, item=request.node
    )
    assert list(factories) == list(EXPECTED_LOOP_TYPES)
    for name, factory in factories.items():
        loop = factory()
        try:
            assert type(loop) is EXPECTED_LOOP_TYPES[name]
        finally:
            loop.close()


async def test_running_loop_matches_test_id(request: pytest.FixtureRequest) -> None:
    loop_id = request.node.callspec.id
    assert request.node.name == f"test_running_loop_matches_test_id[{loop_id}]"
    loop = asyncio.get_running_loop()
    assert type(loop) is EXPECTED_LOOP_TYPES[loop_id]
    assert isinstance(loop, uvloop.Loop) == (loop_id == "uvloop")
    assert loop.get_debug() is _debug_expected()
    assert loop.get_exception_handler() is not None


async def test_async_fixture_shares_the_test_loop(
    loop_of_fixture: asyncio.AbstractEventLoop,
) -> None:
    assert loop_of_fixture is asyncio.get_running_loop()


@pytest.fixture
async def loop_of_fixture() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


# A throwaway suite run with this directory's conftest.py in a subprocess: it
# must fail exactly the tests that misbehave, on both loops.
_INNER_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error::pytest.PytestUnraisableExceptionWarning
markers =
    tap: needs a TAP device
"""

_INNER_TESTS = """\
import asyncio
import gc

import pytest


async def test_clean():
    await asyncio.sleep(0)


async def test_pending_task_destroyed():
    async def waiter(fut):
        await fut

    task = asyncio.ensure_future(waiter(asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0)
    del task  # task <-> future cycle: only the collector frees it, still pending
    gc.collect()


async def test_callback_raises():
    asyncio.get_running_loop().call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.01)


async def test_never_awaited():
    async def nothing():
        pass

    nothing()


async def test_own_exception_handler():
    loop = asyncio.get_running_loop()
    seen = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    loop.call_soon(lambda: 1 / 0)
    await asyncio.sleep(0.01)
    assert len(seen) == 1


@pytest.mark.tap
def test_tap_skipped():
    pytest.skip("no TAP here")


def test_sync():
    pass
"""


def _outcomes(junit_xml: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcomes[case.attrib["name"]] = (
            "failed" if kinds - {"skipped"} else ("skipped" if kinds else "passed")
        )
    return outcomes


def test_misbehaving_tests_fail_on_both_loops(tmp_path: Path) -> None:
    conftest = Path(__file__).with_name("conftest.py")
    (tmp_path / "conftest.py").write_text(conftest.read_text())
    (tmp_path / "pytest.ini").write_text(_INNER_INI)
    (tmp_path / "test_inner.py").write_text(_INNER_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["AIOSTACK_REQUIRE_TAP"] = "1"
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--junitxml={junit}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output
    expected = {"test_sync": "passed", "test_tap_skipped": "failed"}
    for loop_id in EXPECTED_LOOP_TYPES:
        expected |= {
            f"test_clean[{loop_id}]": "passed",
            f"test_pending_task_destroyed[{loop_id}]": "failed",
            f"test_callback_raises[{loop_id}]": "failed",
            f"test_never_awaited[{loop_id}]": "failed",
            f"test_own_exception_handler[{loop_id}]": "passed",
        }
    assert _outcomes(junit) == expected, output
    for text in (
        "Task was destroyed but it is pending",
        "ZeroDivisionError",
        "was never awaited",
        "AIOSTACK_REQUIRE_TAP=1",
    ):
        assert text in output
