"""The pytest plugin, tested the way pytest tests plugins: by running small test files.

``pytester`` runs each generated file in a fresh pytest session in this
process; the plugin is there because the ``pytest11`` entry point loads it,
exactly as in a user's project (nothing here registers it by hand).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aiostack.stack.stack import Stack
from aiostack.testing.netns import REQUIRE_TAP_ENV, tap_unavailable_reason
from aiostack.testing.network import VirtualNetwork
from aiostack.testing.plugin import PCAP_SECTION

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


#: Plugins the inner sessions do without. hypothesis's imports its engine at
#: the end of every session, and pytester forgets modules an inner session
#: imported, so it would cost about a second per run.
QUIET = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(tester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return tester.runpytest(*QUIET, *args)


@pytest.fixture
def tester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeini(INI)
    monkeypatch.delenv(REQUIRE_TAP_ENV, raising=False)
    return pytester


def test_plugin_is_loaded_through_the_entry_point(tester: pytest.Pytester) -> None:
    result = run(tester, "--help")
    result.stdout.fnmatch_lines(["*--aiostack-seed=N*", "*--aiostack-pcap-dir=DIR*"])
    result = run(tester, "--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.aiostack_impair(spec=None, *, seed=None, **fields):*",
            "@pytest.mark.impairment(spec=None, **fields): older name of aiostack_impair",
            "@pytest.mark.aiostack_virtual_time(**loop_options):*",
        ]
    )


def test_fixtures_pass_and_captures_of_a_passing_test_are_deleted(
    tester: pytest.Pytester, tmp_path: Path
) -> None:
    record = tmp_path / "paths.json"
    tester.makepyfile(
        f"""
        import json
        from aiostack.socket import AF_INET, SOCK_DGRAM

        async def test_three_hosts(virtual_network):
            net = virtual_network
            net.add_switch("lan")
            for name in ("a", "b", "c"):
                net.connect(name, "lan")
            await net.start()
            await net.host("a").ping("c", timeout=5)
            await net.host("c").ping("b", timeout=5)
            paths = [str(p) for p in net.pcap_paths.values()]
            assert len(paths) == 3
            with open({str(record)!r}, "w") as f:
                json.dump(paths, f)

        async def test_pair(stack_pair):
            a, b = stack_pair
            server = b.socket(AF_INET, SOCK_DGRAM)
            server.bind(("", 9))
            client = a.socket(AF_INET, SOCK_DGRAM)
            await client.sendto(b"x", (b.addresses[0].split("/")[0], 9))
            data, _ = await server.recvfrom(10)
            assert data == b"x"
        """
    )
    result = run(tester)
    result.assert_outcomes(passed=2)
    paths = [Path(p) for p in json.loads(record.read_text())]
    assert paths and not any(p.exists() for p in paths)
    assert PCAP_SECTION not in result.stdout.str()


def test_a_failing_test_keeps_its_captures_and_prints_their_paths(
    tester: pytest.Pytester, tmp_path: Path
) -> None:
    pcap_dir = tmp_path / "captures"
    tester.makepyfile(
        """
        async def test_fails(virtual_network):
            virtual_network.connect("client", "server")
            await virtual_network.start()
            await virtual_network.host("client").ping("server", timeout=5)
            assert False, "the application misbehaved"

        async def test_passes(virtual_network):
            virtual_network.connect("x", "y")
            await virtual_network.start()
        """
    )
    result = run(tester, f"--aiostack-pcap-dir={pcap_dir}", "--aiostack-seed=77")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*- {PCAP_SECTION} -*",
            "seed 77 (replay with --aiostack-seed=77)",
            f"client--server: {pcap_dir}/test_fails/client--server.pcap",
        ]
    )
    kept = pcap_dir / "test_fails" / "client--server.pcap"
    assert kept.stat().st_size > 24  # a header and frames
    assert not (pcap_dir / "test_passes").exists()


def test_impairment_marker_sets_the_default_of_every_link(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import pytest

        @pytest.mark.impairment(loss=1.0, delay=0.001)
        async def test_lossy(virtual_network):
            link = virtual_network.connect("a", "b")
            await virtual_network.start()
            assert link.config("a").loss == 1.0 and link.config("b").delay == 0.001
            with pytest.raises(TimeoutError):
                await virtual_network.host("a").ping("b", timeout=0.2)

        @pytest.mark.impairment("delay=2ms~1ms")
        async def test_text(stack_pair, virtual_network):
            assert virtual_network.link("a", "b").config("b").jitter == pytest.approx(0.001)
            await virtual_network.host("b").ping("a", timeout=5)

        async def test_unmarked(virtual_network):
            assert not virtual_network.connect("a", "b").config("a").active

        @pytest.mark.impairment(loss=3)
        async def test_bad(virtual_network):
            pass
        """
    )
    result = run(tester, "-rE")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.aiostack_impair: loss: 3 is not a probability*"])


def test_seed_is_stable_per_test_and_can_be_forced(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        def test_a(virtual_network):
            print("SEED", virtual_network.seed)
        """
    )
    seeds = []
    for args in ([], [], ["--aiostack-seed=5"]):
        result = run(tester, "-s", *args)
        result.assert_outcomes(passed=1)
        line = next(line for line in result.outlines if "SEED" in line)
        seeds.append(line.split("SEED ")[1].split()[0])
    assert seeds[0] == seeds[1] and seeds[2] == "5"


def test_aiostack_impair_marker_sets_impairment_and_seed(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        import pytest

        @pytest.mark.aiostack_impair(loss=0.05, dup=0.01, seed=1)
        async def test_marked(virtual_network):
            link = virtual_network.connect("a", "b")
            await virtual_network.start()
            assert virtual_network.seed == 1
            assert link.config("a").loss == 0.05 and link.config("b").duplicate == 0.01

        @pytest.mark.aiostack_impair(seed=2)
        async def test_seed_only(virtual_network):
            assert virtual_network.seed == 2
            assert not virtual_network.connect("a", "b").config("a").active

        @pytest.mark.aiostack_impair(seed="x")
        async def test_bad_seed(virtual_network):
            pass
        """
    )
    result = run(tester, "-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.aiostack_impair: seed: 'x' is not an integer*"])
    # The command line still wins, so any failure can be replayed with another seed.
    result = run(tester, "--aiostack-seed=9", "-k", "marked")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 9 == 1*"])


def test_virtual_time_marker_runs_test_and_fixtures_on_virtual_time(
    tester: pytest.Pytester,
) -> None:
    tester.makepyfile(
        """
        import asyncio
        import time

        import pytest

        from aiostack.aio import open_connection, start_server
        from aiostack.testing.virtual_time import VirtualTimeLoop

        @pytest.mark.aiostack_virtual_time
        async def test_an_hour(virtual_network):
            loop = asyncio.get_running_loop()
            assert isinstance(loop, VirtualTimeLoop)
            start, wall = loop.time(), time.monotonic()
            await asyncio.sleep(3600)
            assert loop.time() - start == 3600
            assert time.monotonic() - wall < 5

        @pytest.mark.aiostack_virtual_time(max_advance=10)
        async def test_options_reach_the_loop():
            await asyncio.sleep(11)  # beyond the runaway guard: the run fails

        @pytest.mark.aiostack_virtual_time
        async def test_tcp_rides_out_a_partition(stack_pair, virtual_network):
            a, b = stack_pair
            loop = asyncio.get_running_loop()

            async def echo(reader, writer):
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()

            server = await start_server(b, echo, "", 7)
            reader, writer = await open_connection(a, virtual_network.host("b").ip, 7)
            virtual_network.partition("a", "b")
            writer.write(b"ping")
            start = loop.time()
            await asyncio.sleep(10)
            virtual_network.heal()
            assert await reader.read(100) == b"ping"
            assert loop.time() - start > 10
            assert a.counters.TcpRetransSegs >= 3
            writer.close()
            server.close()

        async def test_unmarked_runs_on_an_ordinary_loop():
            assert not isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
        """
    )
    result = run(tester, "-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_an_hour*PASSED*", "*VirtualTimeRunaway*11 virtual s (max_advance=10)*"]
    )


UNAVAILABLE_CONFTEST = """
import aiostack.testing.netns as netns

def pytest_configure(config):
    netns.tap_unavailable_reason = lambda: "needs root (pretend)"
"""

TAP_TEST = """
async def test_tap(tap_stack):
    pass
"""


def test_tap_fixture_skips_with_the_reason_when_taps_are_unavailable(
    tester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiostack.testing.netns as netns

    # The conftest patches the module for the inner session; undo it afterwards.
    monkeypatch.setattr(netns, "tap_unavailable_reason", netns.tap_unavailable_reason)
    tester.makeconftest(UNAVAILABLE_CONFTEST)
    tester.makepyfile(TAP_TEST)
    result = run(tester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*needs root (pretend)*"])


def test_tap_fixture_errors_under_require_tap(
    tester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiostack.testing.netns as netns

    monkeypatch.setattr(netns, "tap_unavailable_reason", netns.tap_unavailable_reason)
    monkeypatch.setenv(REQUIRE_TAP_ENV, "1")
    tester.makeconftest(UNAVAILABLE_CONFTEST)
    tester.makepyfile(TAP_TEST)
    result = run(tester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"*{REQUIRE_TAP_ENV}=1 but TAP tests cannot run: needs root (pretend)*"]
    )


@pytest.mark.tap
@pytest.mark.skipif(
    tap_unavailable_reason() is not None, reason=f"TAP unavailable: {tap_unavailable_reason()}"
)
def test_tap_fixture_gives_a_stack_the_kernel_answers(tester: pytest.Pytester) -> None:
    tester.makepyfile(
        """
        async def test_kernel_peer(tap_stack):
            await tap_stack.stack.ping(tap_stack.kernel_ip, timeout=5)
            result = await tap_stack.namespace.run_async(
                "ping", "-c1", "-W2", tap_stack.stack_ip
            )
            assert result.returncode == 0, result.stdout
        """
    )
    result = run(tester)
    result.assert_outcomes(passed=1)


# ---------------------------------------------------------------- in this very session
# The fixtures used directly, alongside tests/conftest.py: on both loops, in
# asyncio debug mode, with loop errors failing the test.


def test_the_repo_conftest_and_the_plugin_coexist(pytestconfig: pytest.Config) -> None:
    manager = pytestconfig.pluginmanager
    assert manager.has_plugin("aiostack")
    assert any(
        str(getattr(p, "__file__", "")).endswith(os.path.join("tests", "conftest.py"))
        for p in manager.get_plugins()
    )


async def test_stack_pair_here(stack_pair: tuple[Stack, Stack]) -> None:
    a, b = stack_pair
    await a.ping(b.addresses[0].split("/")[0], timeout=10)


@pytest.mark.impairment(duplicate=1.0)
async def test_virtual_network_here(virtual_network: VirtualNetwork) -> None:
    virtual_network.add_switch("lan")
    for name in "abc":
        virtual_network.connect(name, "lan")
    await virtual_network.start()
    await virtual_network.host("a").ping("c", timeout=10)
    assert virtual_network.link("a", "lan").stats()["a"].duplicated >= 1


@pytest.mark.aiostack_virtual_time
async def test_virtual_time_marker_here(virtual_network: VirtualNetwork) -> None:
    import asyncio

    from aiostack.testing.virtual_time import VirtualTimeLoop

    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    virtual_network.connect("a", "b", impairment={"delay": 0.25})
    await virtual_network.start()
    await virtual_network.host("a").ping("b", timeout=10)  # resolves b's MAC first
    start = loop.time()
    assert await virtual_network.host("a").ping("b", timeout=10) == 0.5
    assert loop.time() - start == 0.5
