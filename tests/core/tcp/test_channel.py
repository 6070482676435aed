"""Property test: two control blocks over a seeded lossy channel, on virtual time.

A client (active open) and a server (a child of a :class:`TcpListener`)
exchange random amounts of random data in both directions through a channel
that loses, duplicates, delays (and so reorders) and corrupts segments.
Segments cross the channel as real bytes: built with ``wire.tcp.emit_into``
and parsed with checksum verification, so a corrupted segment is a counted
drop exactly as in the stack. Every run must deliver the bytes identically
and in order both ways, and both sides must close cleanly: the side that
closes first passes TIME-WAIT, the other LAST-ACK, and both end in CLOSED
with no error.

Each seed runs twice: with RACK-TLP (Linux's default ``tcp_recovery=1``)
and without (``tcp_recovery=0``, the DupThresh path). ``AIOSTACK_TCP_SEEDS``
sets the number of seeds (default 300).
"""

from __future__ import annotations

import heapq
import os
import random

import pytest

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp
from aiostack.wire.errors import ParseError
from aiostack.wire.ipv4 import addr

A = addr("198.18.0.2")
B = addr("198.18.0.1")
SEEDS = int(os.environ.get("AIOSTACK_TCP_SEEDS", "300"))


class Channel:
    """One direction of the path: delay, loss, duplication, corruption, all seeded."""

    def __init__(
        self,
        rng: random.Random,
        src: int,
        dst: int,
        loss: float,
        dup: float,
        corrupt: float,
        delay: tuple[float, float],
    ) -> None:
        self.rng = rng
        self.src, self.dst = src, dst
        self.loss, self.dup, self.corrupt, self.delay = loss, dup, corrupt, delay
        self.queue: list[tuple[float, int, bytes]] = []
        self.n = 0
        self.dropped_bad = 0

    def put(self, now: float, seg: Segment) -> None:
        buf = bytearray(wtcp.HEADER_LEN + len(seg.options) + len(seg.payload))
        hlen = wtcp.HEADER_LEN + len(seg.options)
        buf[hlen:] = seg.payload
        wtcp.emit_into(
            buf,
            0,
            src_port=seg.src_port,
            dst_port=seg.dst_port,
            seq=seg.seq,
            ack=seg.ack,
            flags=seg.flags,
            window=seg.window,
            options=seg.options,
            payload_len=len(seg.payload),
            src=self.src,
            dst=self.dst,
        )
        copies = 0 if self.rng.random() < self.loss else 1
        if copies and self.rng.random() < self.dup:
            copies = 2
        for _ in range(copies):
            data = bytearray(buf)
            if self.rng.random() < self.corrupt:
                i = self.rng.randrange(len(data))
                data[i] ^= 1 << self.rng.randrange(8)
            self.n += 1
            t = now + self.rng.uniform(*self.delay)
            heapq.heappush(self.queue, (t, self.n, bytes(data)))

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def take(self, now: float) -> list[tuple[wtcp.TcpHeader, memoryview]]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            _, _, data = heapq.heappop(self.queue)
            try:
                out.append(wtcp.parse(data, self.src, self.dst))
            except ParseError:
                self.dropped_bad += 1
        return out


def run(seed: int, *, recovery: int = 1) -> None:
    """One seeded transfer; ``recovery`` is ``net.ipv4.tcp_recovery`` (1: RACK-TLP)."""
    rng = random.Random(seed)
    st = Settings()
    st.tcp_recovery = recovery
    st.tcp_timestamps = rng.choice((0, 1))
    st.tcp_sack = rng.choice((0, 1))
    st.tcp_window_scaling = rng.choice((0, 1))
    st.tcp_congestion_control = rng.choice(("cubic", "reno"))
    loss = rng.choice((0.0, 0.02, 0.05, 0.1))
    chan_kw = {
        "loss": loss,
        "dup": rng.choice((0.0, 0.05)),
        "corrupt": rng.choice((0.0, 0.02)),
        "delay": (0.005, rng.choice((0.006, 0.05))),
    }
    a2b = Channel(rng, A, B, **chan_kw)  # type: ignore[arg-type]
    b2a = Channel(rng, B, A, **chan_kw)  # type: ignore[arg-type]
    isn = IsnGenerator(bytes(range(16)))
    listener = TcpListener(
        local_addr=B, local_port=80, backlog=8, isn=isn, settings=st, counters=Counters()
    )
    # Sequence numbers near the wrap half the time.
    iss = rng.choice((rng.randrange(1 << 32), (1 << 32) - rng.randrange(1, 3000)))
    now = 0.0
    client = TcpConnection.connect(
        now,
        local_addr=A,
        local_port=40000,
        remote_addr=B,
        remote_port=80,
        iss=iss,
        settings=st,
        counters=Counters(),
        sndbuf=rng.choice((8192, 65536)),
        rcvbuf=rng.choice((131072, 8192)),
    )
    # A slow reader lets the receive window close: zero-window probes, SWS.
    read_prob = rng.choice((1.0, 0.3))
    server: TcpConnection | None = None
    want = {
        "a": rng.randbytes(rng.choice((0, 1, 1000, 20_000, 150_000))),
        "b": rng.randbytes(rng.choice((0, 1, 3000, 60_000))),
    }
    sent = {"a": 0, "b": 0}
    got = {"a": bytearray(), "b": bytearray()}  # what a and b *received*
    closed_wr = {"a": False, "b": False}
    eof = {"a": False, "b": False}
    closer = {"a": rng.random() < 0.5, "b": rng.random() < 0.5}
    steps = 0
    while True:
        steps += 1
        assert steps < 200_000, f"seed {seed}: no progress"
        for hdr, payload in a2b.take(now):
            if server is None or server.state is TcpState.SYN_RECV:
                child, reply = listener.on_segment(now, A, B, hdr, payload)
                if child is not None and server is None:
                    server = child
                if listener.acceptable:
                    assert listener.accept() is server
            else:
                reply = server.on_segment(now, hdr, payload)
            if reply is not None:
                b2a.put(now, reply)
        for hdr, payload in b2a.take(now):
            reply = client.on_segment(now, hdr, payload)
            if reply is not None:
                a2b.put(now, reply)
        sides = [("a", client)] + ([("b", server)] if server is not None else [])
        for name, conn in sides:
            if conn.state not in (TcpState.SYN_SENT, TcpState.SYN_RECV) and not conn.orphan:
                data = want[name]
                if sent[name] < len(data) and not closed_wr[name]:
                    chunk = rng.randrange(1, 20_000)
                    sent[name] += conn.send(now, data[sent[name] : sent[name] + chunk])
                if sent[name] == len(data) and not closed_wr[name]:
                    conn.shutdown(now, 1)
                    closed_wr[name] = True
                while not eof[name] and conn.readable and rng.random() < read_prob:
                    piece = conn.recv(now, rng.choice((100, 5000, 1 << 20)))
                    if not piece:
                        eof[name] = True
                    got[name] += piece
                if closer[name] and eof[name] and closed_wr[name]:
                    conn.close(now)  # orphan it: the FIN-WAIT-2 timer, LAST-ACK
            assert conn.error == 0, f"seed {seed}: {name} error {conn.error}"
        for chan, conn in ((a2b, client), (b2a, server)):
            if conn is None:
                continue
            while (seg := conn.poll_transmit(now)) is not None:
                chan.put(now, seg)
        done = (
            client.state is TcpState.CLOSE
            and server is not None
            and server.state is TcpState.CLOSE
            and eof["a"]
            and eof["b"]
        )
        if done:
            break
        times = [
            t
            for t in (
                a2b.next_time(),
                b2a.next_time(),
                client.poll_at(),
                server.poll_at() if server else None,
            )
            if t is not None
        ]
        if not times and not (eof["a"] and eof["b"]):
            now += 0.01  # only the slow reader can make progress
            continue
        assert times, (
            f"seed {seed}: deadlock in {client.state.name}/{server.state.name if server else None}"
        )
        nxt = min(times)
        # Jump to the next event; the applications act after every event.
        now = max(nxt, now + 1e-6)
    assert bytes(got["b"]) == want["a"], f"seed {seed}: a->b data differs"
    assert bytes(got["a"]) == want["b"], f"seed {seed}: b->a data differs"
    assert eof["a"] and eof["b"]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_transfer_both_ways_and_close(seed: int) -> None:
    """RFC 9293 reliability: lossy, duplicating, reordering, corrupting channel (RACK-TLP on)."""
    run(seed)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_transfer_both_ways_and_close_without_rack(seed: int) -> None:
    """The same with ``tcp_recovery=0``: RFC 6675 DupThresh (or NewReno) finds the losses."""
    run(seed, recovery=0)
