"""Kernel-side helpers for TAP tests: nftables random drop and Python inside the namespace.

The rule text is checked without root; everything else needs a namespace
and a TAP (marked ``tap``), and checks that the kernel really drops what
the rule says, that the counters come back, and that nothing is left.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace, require_tap, tap_in_netns
from aiostack.testing.nft import KernelDrop, drop_rules, nft_unavailable_reason


def test_rule_text() -> None:
    script = drop_rules("t1", 5, protocol="tcp")
    assert "table inet t1 {" in script
    assert script.count("meta l4proto tcp numgen random mod 100 < 5 counter drop") == 2
    assert "type filter hook input priority -10; policy accept;" in script
    assert "type filter hook output priority -10; policy accept;" in script
    only_in = drop_rules("t2", 0.5, direction="input", match="tcp dport 8080")
    assert "tcp dport 8080 numgen random mod 10000 < 50 counter drop" in only_in
    assert "hook output" not in only_in
    assert "    counter drop" in drop_rules("t3", 100)  # all: nft refuses "mod 100 < 100"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"percent": 101}, "percent"),
        ({"percent": float("nan")}, "percent"),
        ({"percent": 5, "direction": "forward"}, "direction"),
        ({"percent": 5, "protocol": "sctp"}, "protocol"),
        ({"percent": 5, "match": "tcp dport 1; flush ruleset"}, "match"),
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drop_rules("t", **kwargs)  # type: ignore[arg-type]


def _tables(ns: NetNamespace) -> str:
    result = ns.run("nft", "list", "tables")
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


@pytest.mark.tap
async def test_kernel_drops_what_the_rule_says_and_the_table_goes_away() -> None:
    require_tap()
    if (reason := nft_unavailable_reason()) is not None:
        pytest.skip(reason)
    async with tap_in_netns() as spec:
        ns = spec.namespace
        async with Stack(
            spec.device(), address=f"{spec.stack_ip}/{spec.prefixlen}", mac=spec.stack_mac
        ) as stack:
            await stack.ping(spec.kernel_ip, timeout=5)
            # Everything ICMP dropped on the kernel's input: no echo replies.
            async with KernelDrop(ns, 100, direction="input", protocol="icmp") as drop:
                assert drop.table in _tables(ns)
                for _ in range(3):
                    with pytest.raises(TimeoutError):
                        await stack.ping(spec.kernel_ip, timeout=0.3)
                assert drop.counters() == {"input": 3}
            assert drop.dropped == {"input": 3}
            assert drop.table not in _tables(ns)
            await stack.ping(spec.kernel_ip, timeout=5)
            # 0 %: the rule is there and counts nothing.
            async with KernelDrop(ns, 0) as none:
                await stack.ping(spec.kernel_ip, timeout=5)
            assert none.dropped == {"input": 0, "output": 0}
            # An error inside the block still removes the table.
            with pytest.raises(RuntimeError):
                async with KernelDrop(ns, 50, protocol="udp") as failing:
                    raise RuntimeError("test failure")
            assert failing.table not in _tables(ns)


@pytest.mark.tap
async def test_python_and_commands_run_inside_the_namespace() -> None:
    require_tap()
    async with tap_in_netns() as spec:
        ns = spec.namespace
        code = "import json, socket; print(json.dumps([n for _, n in socket.if_nameindex()]))"
        names = json.loads((await ns.python_async(code, check=True)).stdout)
        assert spec.name in names and "lo" in names
        assert json.loads(ns.python(code, check=True).stdout) == names
        # A long-running kernel-side peer: a UDP echo in the namespace.
        server = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind((sys.argv[1], 7)); print('ready', flush=True)\n"
            "data, peer = s.recvfrom(100); s.sendto(data.upper(), peer)\n"
        )
        proc = await ns.spawn(
            sys.executable, "-c", server, spec.kernel_ip, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                assert await proc.stdout.readline() == b"ready\n"
            async with Stack(
                spec.device(), address=f"{spec.stack_ip}/{spec.prefixlen}", mac=spec.stack_mac
            ) as stack:
                sock = stack.socket(AF_INET, SOCK_DGRAM)
                sock.bind(("", 0))
                async with asyncio.timeout(20):
                    await sock.sendto(b"hello", (spec.kernel_ip, 7))
                    data, peer = await sock.recvfrom(100)
                assert (data, peer) == (b"HELLO", (spec.kernel_ip, 7))
                sock.close()
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
