"""TCP's slow timers on virtual time: minutes of protocol behaviour in milliseconds, replayable.

One scenario covers the three timers a real-time test could never afford:
retransmission with exponential backoff across a dead link, a keepalive
that declares a silent peer dead (``ETIMEDOUT`` after idle + count x
interval), and the 60 s TIME-WAIT that holds the active closer's port. The
test asserts the virtual times and the behaviour; the wall time is printed.

Determinism: a bulk transfer under 5 % loss with jitter and reordering,
run twice from one seed, gives byte-identical captures.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
import time
from pathlib import Path

import pytest

from aiostack.aio import open_connection, start_server
from aiostack.testing.network import VirtualNetwork
from aiostack.testing.virtual_time import run_virtual

DELAY = 0.010  # one way, on every link of the scenario
CLIENT_PORT = 40000


async def _retransmit_keepalive_time_wait() -> dict[str, object]:
    loop = asyncio.get_running_loop()
    net = VirtualNetwork(seed=11)
    link = net.connect("client", "server", impairment={"delay": DELAY})
    out: dict[str, object] = {}
    async with net:
        client, server = net.host("client").stack, net.host("server").stack
        server_ip = net.host("server").ip
        arrivals: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                arrivals.put_nowait((loop.time(), data))
                writer.write(data)
            writer.close()

        echo_server = await start_server(server, echo, "", 7)

        # 1. Retransmission: the link dies right after the handshake, for 5 s.
        sock = client.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("", CLIENT_PORT))
        await sock.connect((server_ip, 7))
        link.down()
        sent_at = loop.time()
        await sock.sendall(b"x" * 100)
        await asyncio.sleep(5)
        link.up()
        arrived_at, data = await arrivals.get()
        out["retransmit_delivered_after"] = arrived_at - sent_at
        out["retransmits"] = client.counters.TcpRetransSegs
        out["rto_timeouts"] = client.counters.TcpExtTCPTimeouts
        assert data == b"x" * 100 and await sock.recv(100) == data

        # 2. Keepalive: idle 10 s, then 3 probes 5 s apart, into a partition.
        listener = server.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("", 9))
        listener.listen(1)
        peer = client.socket(socket.AF_INET, socket.SOCK_STREAM)
        await peer.connect((server_ip, 9))
        conn, _ = await listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        idle_from = loop.time()
        net.partition("client", "server")
        with pytest.raises(OSError) as info:
            await conn.recv(10)
        out["keepalive_errno"] = info.value.errno
        out["keepalive_dead_after"] = loop.time() - idle_from
        net.heal()
        for s in (conn, peer, listener):
            s.close()

        # 3. TIME-WAIT: the client closes first; its port stays taken 60 s.
        sock.close()
        closed_at = loop.time()
        await asyncio.sleep(2 * DELAY + 0.001)  # FIN there, the server's FIN back
        taken = []
        for wait in (59.0, 1.0):
            await asyncio.sleep(wait)
            probe = client.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.bind(("", CLIENT_PORT))
                taken.append((round(loop.time() - closed_at, 3), "free"))
            except OSError as exc:
                taken.append((round(loop.time() - closed_at, 3), errno.errorcode[exc.errno or 0]))
            finally:
                probe.close()
        out["time_wait"] = taken
        echo_server.close()
        await echo_server.wait_closed()
    out["virtual_elapsed"] = loop.time() - loop.epoch  # type: ignore[attr-defined]
    return out


def test_retransmission_keepalive_and_time_wait_take_no_wall_time() -> None:
    wall = time.monotonic()
    out = run_virtual(_retransmit_keepalive_time_wait())
    wall = time.monotonic() - wall
    print(f"{out['virtual_elapsed']:.3f} virtual s in {wall:.3f} wall s: {out}")
    # Backoff doubles from RTO = srtt + 200 ms: the copy that gets through is
    # the first one sent after the link came back, within one backed-off RTO.
    delivered = out["retransmit_delivered_after"]
    assert isinstance(delivered, float) and 5.0 < delivered < 5.0 + 3.3
    assert out["retransmits"] == out["rto_timeouts"]
    assert isinstance(out["retransmits"], int) and out["retransmits"] >= 4
    # Linux: idle 10 s, then TCP_KEEPCNT unanswered probes TCP_KEEPINTVL apart.
    assert out["keepalive_errno"] == errno.ETIMEDOUT
    assert out["keepalive_dead_after"] == pytest.approx(10 + 3 * 5, abs=1e-6)
    # Still in TIME-WAIT at 59 s (bind refused), gone by 60 s after the FIN came back.
    assert out["time_wait"] == [(59.021, "EADDRINUSE"), (60.021, "free")]
    elapsed = out["virtual_elapsed"]
    assert isinstance(elapsed, float) and elapsed > 90


# ---------------------------------------------------------------- determinism


async def _bulk_under_loss(seed: int, directory: Path) -> str:
    net = VirtualNetwork(
        seed=seed,
        pcap_dir=directory,
        impairment="loss=5%,delay=10ms~2ms,reorder=2%",
    )
    net.connect("client", "server", pcap=True)
    payload = bytes(range(256)) * 400  # 100 kB each way

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(payload))
        writer.write(hashlib.sha256(data).digest() + data)
        await writer.drain()
        writer.close()

    async with net:
        server = await start_server(net.host("server").stack, sink, "", 5001)
        reader, writer = await open_connection(
            net.host("client").stack, net.host("server").ip, 5001
        )
        writer.write(payload)
        digest = await reader.readexactly(32)
        echoed = await reader.readexactly(len(payload))
        assert digest == hashlib.sha256(payload).digest() and echoed == payload
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        retrans = net.host("client").stack.counters.TcpRetransSegs
        retrans += net.host("server").stack.counters.TcpRetransSegs
        lost = sum(s.dropped for s in net.link("client", "server").stats().values())
    return f"retransmitted {retrans} lost {lost}"


def test_tcp_under_loss_replays_to_identical_pcap_bytes(tmp_path: Path) -> None:
    runs = []
    for name, seed in (("one", 2024), ("two", 2024), ("other", 7)):
        summary = run_virtual(_bulk_under_loss(seed, tmp_path / name))
        runs.append((summary, (tmp_path / name / "client--server.pcap").read_bytes()))
    (summary, pcap), again, other = runs
    print(summary)
    assert "retransmitted 0 " not in summary and "lost 0" not in summary  # loss did bite
    assert again == (summary, pcap)  # same seed: same story, same bytes
    assert other[1] != pcap  # another seed: another story
