"""The control socket of ``aiostack up`` on stacks joined by a MemoryWire, and its clients' output.

Stack B runs services and the control server (a real unix socket in the
test's temporary directory); stack A is the peer whose connections show up
in B's table and whom B pings.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aiostack import services
from aiostack.aio import open_connection
from aiostack.cli import ping as ping_cli
from aiostack.cli import ss as ss_cli
from aiostack.cli import stats as stats_cli
from aiostack.cli.control import (
    ControlError,
    ControlServer,
    call,
    find_control,
    request,
    running_sockets,
    socket_table,
)
from aiostack.socket import AF_INET, SOCK_DGRAM
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, fast_arp, wired_stacks


class Lab:
    def __init__(self, a: Stack, b: Stack, control: ControlServer) -> None:
        self.a = a
        self.b = b
        self.control = control
        self.path = control.path


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with (
        wired_stacks(settings=(fast_arp(), fast_arp()), privileged=True) as (a, b),
        await services.echo.serve(b),
        await services.http.serve(b, 8080),
    ):
        control = ControlServer(b, tmp_path / "up-1.sock", {"tap": "wireB"})
        await control.start()
        try:
            yield Lab(a, b, control)
        finally:
            await control.aclose()
    assert not (tmp_path / "up-1.sock").exists()


async def test_info_and_unknown_op(lab: Lab) -> None:
    async with asyncio.timeout(TIMEOUT):
        assert await call(lab.path, {"op": "info"}) == {"tap": "wireB"}
        with pytest.raises(ControlError, match="op: 'reboot'"):
            await call(lab.path, {"op": "reboot"})
        with pytest.raises(ControlError, match="not a JSON object"):
            await call(lab.path, [1, 2])  # type: ignore[arg-type]


async def test_garbage_does_not_hurt_the_server(lab: Lab) -> None:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await asyncio.open_unix_connection(str(lab.path))
        writer.write(b"{not json\n")
        assert b'"type":"error"' in await reader.readline()
        writer.write(b"x" * 10000 + b"\n")  # over the request limit: the server hangs up
        assert await reader.read() == b""
        writer.close()
        assert await call(lab.path, {"op": "info"}) == {"tap": "wireB"}


async def test_ss_shows_listeners_connections_and_tcp_info(lab: Lab) -> None:
    async with asyncio.timeout(TIMEOUT):
        reader, writer = await open_connection(lab.a, B_IP, 7)
        writer.write(b"x" * 5000)
        await reader.readexactly(5000)
        udp = lab.b.socket(AF_INET, SOCK_DGRAM)
        await udp.connect((A_IP, 5353))
        rows: list[dict[str, Any]] = await call(lab.path, {"op": "ss"})
        writer.close()
        udp.close()
    by_state = {(r["netid"], r["state"], r["local"]): r for r in rows}
    assert ("tcp", "LISTEN", "*:7") in by_state
    assert ("tcp", "LISTEN", "*:8080") in by_state
    assert ("udp", "UNCONN", "*:7") in by_state
    assert by_state[("tcp", "LISTEN", "*:7")]["send_q"] == 100  # the backlog, as ss shows it
    established = by_state[("tcp", "ESTAB", f"{B_IP}:7")]
    assert established["peer"].startswith(f"{A_IP}:")
    info = established["info"]
    assert info["cc"] == "cubic"
    assert info["bytes_received"] == 5000 and info["bytes_acked"] == 5000
    assert info["snd_mss"] == 1460 - 12 and info["snd_cwnd"] >= 10
    assert info["state"] == 1
    connected = [r for r in rows if r["netid"] == "udp" and r["state"] == "ESTAB"]
    assert connected and connected[0]["peer"] == f"{A_IP}:5353"
    # And the table is exactly what socket_table() reads from the stack.
    assert {r["local"] for r in socket_table(lab.b)} >= {"*:7", "*:8080"}

    text = ss_cli.render(
        ss_cli.select_rows(rows, tcp=True, udp=False, listening=False, every=False), info=True
    )
    lines = text.splitlines()
    assert lines[0].split() == [
        "Netid",
        "State",
        "Recv-Q",
        "Send-Q",
        "Local",
        "Address:Port",
        "Peer",
        "Address:Port",
    ]
    assert lines[1].split()[:2] == ["tcp", "ESTAB"]
    assert lines[2].startswith("\t cubic wscale:")
    assert "bytes_received:5000" in lines[2] and "segs_in:" in lines[2]
    assert "LISTEN" not in text
    listening = ss_cli.select_rows(rows, tcp=False, udp=False, listening=True, every=False)
    assert {r["state"] for r in listening} == {"LISTEN", "UNCONN"}


def test_format_info_units() -> None:
    info = {
        "cc": "cubic", "options": 7, "snd_wscale": 7, "rcv_wscale": 9, "rto": 204000,
        "rtt": 250, "rttvar": 125, "ato": 40000, "snd_mss": 1448, "pmtu": 1500,
        "rcv_mss": 536, "advmss": 1448, "snd_cwnd": 10, "snd_ssthresh": 20,
        "bytes_acked": 1, "bytes_received": 2, "segs_out": 3, "segs_in": 4,
        "pacing_rate": 0, "delivery_rate": 0, "last_data_sent": 5, "last_data_recv": 6,
        "last_ack_recv": 7, "rcv_space": 8, "rcv_ssthresh": 9, "retrans": 0,
        "total_retrans": 2, "lost": 0, "sacked": 0, "unacked": 1, "notsent_bytes": 0,
        "min_rtt": 200,
    }  # fmt: skip
    assert ss_cli.format_info(info) == (
        "cubic wscale:7,9 rto:204 rtt:0.25/0.125 ato:40 mss:1448 pmtu:1500 rcvmss:536 "
        "advmss:1448 cwnd:10 ssthresh:20 bytes_acked:1 bytes_received:2 segs_out:3 segs_in:4 "
        "send 463.4Mbps lastsnd:5 lastrcv:6 lastack:7 rcv_space:8 rcv_ssthresh:9 "
        "retrans:0/2 unacked:1 notsent:0 minrtt:0.2"
    )


async def test_stats(lab: Lab) -> None:
    async with asyncio.timeout(TIMEOUT):
        await lab.a.ping(B_IP)
        stats = await call(lab.path, {"op": "stats"})
    assert stats["mib"]["IcmpInEchos"] == 1
    assert stats["device"]["rx_frames"] >= 2
    lines = stats_cli.counter_lines(stats, zeros=False)
    names = [name for name, _ in lines]
    assert "IcmpInEchos" in names and "Dev.rx_frames" in names
    assert all(value for _, value in lines)
    everything = stats_cli.counter_lines(stats, zeros=True)
    assert len(everything) > len(lines) and ("TcpRetransSegs", 0) in everything
    rendered = stats_cli.render(lines)
    assert rendered.splitlines()[0] == "#aiostack"
    assert any(line.split() == ["IcmpInEchos", "1"] for line in rendered.splitlines())


async def test_ping_streams_one_line_per_probe(lab: Lab) -> None:
    answers = []
    async with asyncio.timeout(TIMEOUT):
        message = {"op": "ping", "host": A_IP, "count": 3, "size": 100, "interval": 0.01}
        async for answer in request(lab.path, message):
            answers.append(answer)
    assert [a["type"] for a in answers] == ["reply", "reply", "reply", "result"]
    assert [a["seq"] for a in answers[:3]] == [1, 2, 3]
    assert answers[0]["bytes"] == 108
    assert answers[-1]["data"]["transmitted"] == 3 and answers[-1]["data"]["received"] == 3

    tally = ping_cli.PingTally(A_IP)
    lines = [tally.line(a) for a in answers]
    assert lines[0] is not None and lines[0].startswith(f"108 bytes from {A_IP}: icmp_seq=1 time=")
    summary = tally.summary(0.02)
    assert summary[2] == "3 packets transmitted, 3 received, 0% packet loss, time 20ms"
    assert summary[3].startswith("rtt min/avg/max/mdev = ")


async def test_ping_errors_and_timeouts(lab: Lab) -> None:
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ControlError, match="address: 'nowhere'"):
            await call(lab.path, {"op": "ping", "host": "nowhere"})
        with pytest.raises(ControlError, match="count: 0"):
            await call(lab.path, {"op": "ping", "host": A_IP, "count": 0})
        # Nobody has this address: ARP fails (fast_arp: 60 ms) -> EHOSTUNREACH.
        answers = [a async for a in request(lab.path, {"op": "ping", "host": "198.18.0.77"})]
    assert answers[0]["type"] == "error" and answers[0]["seq"] == 1
    tally = ping_cli.PingTally("198.18.0.77")
    assert tally.line(answers[0]) == "From 198.18.0.77 icmp_seq=1 No route to host"
    assert tally.summary(1.0)[2] == (
        "1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 1000ms"
    )


async def test_a_second_server_on_a_live_socket_is_refused(lab: Lab) -> None:
    other = ControlServer(lab.b, lab.path, {})
    with pytest.raises(OSError, match="another process"):
        await other.start()
    assert await call(lab.path, {"op": "info"}) == {"tap": "wireB"}


def test_discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOSTACK_CONTROL", raising=False)
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    with pytest.raises(LookupError, match="no 'aiostack up' is running"):
        find_control(None, dirs)
    live = dirs[1] / f"up-{os.getpid()}.sock"
    stale = dirs[0] / "up-999999999.sock"  # no such process
    not_ours = dirs[0] / "other.sock"
    socks = []
    for path in (live, stale, not_ours):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        socks.append(s)
    try:
        assert running_sockets(dirs) == [live]
        assert find_control(None, dirs) == live
        assert find_control("/explicit", dirs) == Path("/explicit")
        monkeypatch.setenv("AIOSTACK_CONTROL", "/from/env")
        assert find_control(None, dirs) == Path("/from/env")
        monkeypatch.delenv("AIOSTACK_CONTROL")
        second = dirs[0] / f"up-{os.getppid()}.sock"
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(second))
        socks.append(s)
        with pytest.raises(LookupError, match="several"):
            find_control(None, dirs)
    finally:
        for s in socks:
            s.close()


async def test_ping_command_output(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    async with asyncio.timeout(TIMEOUT):
        status = await ping_cli.run_ping(lab.path, A_IP, 2, 56, 0.01, 1.0)
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[0] == f"PING {A_IP} ({A_IP}) 56(84) bytes of data."
    assert out[1].startswith(f"64 bytes from {A_IP}: icmp_seq=1 time=")
    assert out[2].startswith(f"64 bytes from {A_IP}: icmp_seq=2 time=")
    assert out[4] == f"--- {A_IP} ping statistics ---"
    assert out[5].startswith("2 packets transmitted, 2 received, 0% packet loss, time ")
    with pytest.raises(ControlError, match="address: 'nowhere'"):
        await ping_cli.run_ping(lab.path, "nowhere", 1, 56, 0.01, 1.0)
    assert capsys.readouterr().out == ""  # no header for a bad address, as ping(8)
