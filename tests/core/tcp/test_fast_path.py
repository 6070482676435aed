"""The ESTABLISHED fast path (:mod:`aiostack.core.tcp.fastpath`) changes nothing but the cost.

Each scenario runs twice from the same seed, with ``fastpath.ENABLED`` on
and off, and every observable must come out identical: each segment
emitted (time, ports, numbers, flags, window, option bytes, payload,
urgent pointer), the immediate replies, the final ``tcp_info`` of both
ends, their counters, the control blocks' scalar state, and the bytes the
applications read. A scenario is two control blocks joined by a channel
that may lose, duplicate and delay (so reorder) segments, with random
settings (timestamps, SACK, window scaling, CUBIC or Reno, RACK or
DupThresh), buffer sizes, writes, reads (a slow reader closes the window),
``TCP_NODELAY``, an occasional urgent byte, and a close at the end. Since
the driver's random choices depend on what the connections did, any
divergence also changes everything after it.

Wrappers count the fast path's own work, so each test also shows that it
ran: a bulk scenario must put most data segments, ACKs and receptions
through it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aiostack.core.counters import MIB_NAMES, Counters
from aiostack.core.tcp import fastpath
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.info import tcp_info
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

A = 0xC6120002
B = 0xC6120001

Trace = list[tuple[Any, ...]]


def _seg_key(side: str, now: float, seg: Segment) -> tuple[Any, ...]:
    return (
        side,
        round(now, 9),
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.window,
        bytes(seg.options),
        bytes(seg.payload),
        seg.urgent,
    )


def _state(conn: TcpConnection, now: float) -> dict[str, Any]:
    """Every scalar slot of the control block, its tcp_info, CC and RTT state."""
    out: dict[str, Any] = {}
    for name in TcpConnection.__slots__:
        if name == "__weakref__":
            continue
        v = getattr(conn, name, None)
        if v is None or isinstance(v, int | float | str | tuple):
            out[name] = v
    out["tcp_info"] = tcp_info(conn, now)
    out["cc"] = {k: v for k, v in vars_of(conn.cc).items() if isinstance(v, int | float | str)}
    out["rwnd"] = (conn.rwnd.rcv_wnd, conn.rwnd.rcv_wup, conn.rwnd.rcv_ssthresh)
    out["psh_marks"] = list(conn.psh_marks or ())
    return out


def vars_of(obj: object) -> dict[str, Any]:
    """Attributes of an object with or without ``__slots__``."""
    names: list[str] = []
    for cls in type(obj).__mro__:
        names.extend(getattr(cls, "__slots__", ()))
    d = dict(getattr(obj, "__dict__", {}))
    for n in names:
        if hasattr(obj, n):
            d[n] = getattr(obj, n)
    return d


def _counters(c: Counters) -> dict[str, int]:
    return {n: getattr(c, n) for n in MIB_NAMES}


class Channel:
    """One direction: seeded loss, duplication and delay (reordering)."""

    def __init__(self, rng: random.Random, loss: float, dup: float, delay: tuple[float, float]):
        self.rng = rng
        self.loss, self.dup, self.delay = loss, dup, delay
        self.queue: list[tuple[float, int, wtcp.TcpHeader, bytes]] = []
        self.n = 0

    def put(self, now: float, seg: Segment) -> None:
        copies = 0 if self.rng.random() < self.loss else 1
        if copies and self.rng.random() < self.dup:
            copies = 2
        for _ in range(copies):
            self.n += 1
            at = now + self.rng.uniform(*self.delay)
            heapq.heappush(self.queue, (at, self.n, seg.to_header(), bytes(seg.payload)))

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None

    def take(self, now: float) -> Iterator[tuple[wtcp.TcpHeader, memoryview]]:
        while self.queue and self.queue[0][0] <= now:
            _, _, hdr, payload = heapq.heappop(self.queue)
            yield hdr, memoryview(payload)


def run(seed: int, *, bulk: bool = False) -> tuple[Trace, dict[str, Any]]:
    """One seeded scenario; returns the segment trace and the final observables."""
    rng = random.Random(seed)
    st = Settings()
    st.tcp_recovery = rng.choice((0, 1))
    st.tcp_timestamps = 1 if bulk else rng.choice((0, 1, 1))
    st.tcp_sack = 1 if bulk else rng.choice((0, 1, 1))
    st.tcp_window_scaling = rng.choice((0, 1, 1))
    st.tcp_congestion_control = rng.choice(("cubic", "cubic", "reno"))
    loss = 0.0 if bulk else rng.choice((0.0, 0.0, 0.01, 0.05))
    delay = (0.001, 0.001) if bulk else (0.002, rng.choice((0.002, 0.004, 0.03)))
    a2b = Channel(rng, loss, 0.0 if bulk else rng.choice((0.0, 0.03)), delay)
    b2a = Channel(rng, loss, 0.0 if bulk else rng.choice((0.0, 0.03)), delay)
    iss = rng.choice((rng.randrange(1 << 32), (1 << 32) - rng.randrange(1, 50_000)))
    buf = rng.choice((None, 16384, 65536, 1 << 20))
    now = 1.0
    counters_a, counters_b = Counters(), Counters()
    client = TcpConnection.connect(
        now,
        local_addr=A,
        local_port=40000,
        remote_addr=B,
        remote_port=80,
        iss=iss,
        settings=st,
        counters=counters_a,
        mtu=rng.choice((1500, 1500, 576, 9000)),
        sndbuf=buf,
        rcvbuf=buf,
    )
    syn = client.poll_transmit(now)
    assert syn is not None
    server = TcpConnection.from_syn(
        now,
        syn.to_header(),
        local_addr=B,
        remote_addr=A,
        iss=iss ^ 0x5A5A5A5A,
        settings=st,
        counters=counters_b,
        mtu=rng.choice((1500, 1500, 9000)),
        sndbuf=rng.choice((None, buf)),
        rcvbuf=rng.choice((None, buf)),
    )
    trace: Trace = [_seg_key("a", now, syn)]
    ends = {"a": client, "b": server}
    size_a = 3_000_000 if bulk else rng.choice((0, 1, 5000, 200_000, 1_000_000))
    size_b = 0 if bulk else rng.choice((0, 0, 1, 3000, 300_000))
    want = {"a": rng.randbytes(size_a), "b": rng.randbytes(size_b)}
    sent = {"a": 0, "b": 0}
    got = {"a": bytearray(), "b": bytearray()}
    eof = {"a": False, "b": False}
    closed = {"a": False, "b": False}
    read_prob = 1.0 if bulk else rng.choice((1.0, 1.0, 0.3))
    for conn in ends.values():
        if rng.random() < 0.3 and not bulk:
            conn.set_nodelay(now, True)
    # A side that closes late shuts down only after the peer's FIN (the
    # transfer then runs in ESTABLISHED, not CLOSE-WAIT).
    late = {"a": False, "b": bulk or rng.random() < 0.5}
    oob_at = rng.choice((None, None, None, 2000)) if not bulk else None
    steps = 0
    while True:
        steps += 1
        assert steps < 400_000, f"seed {seed}: no progress"
        for chan, dst, back in ((a2b, server, b2a), (b2a, client, a2b)):
            side = "b" if dst is server else "a"
            for hdr, payload in chan.take(now):
                reply = dst.on_segment(now, hdr, payload)
                if reply is not None:
                    trace.append(("reply", *_seg_key(side, now, reply)))
                    back.put(now, reply)
        for name, conn in ends.items():
            if conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECV) or conn.orphan:
                continue
            data = want[name]
            if sent[name] < len(data) and not closed[name] and conn.writable:
                chunk = rng.choice(
                    (65536, 256 << 10) if bulk else (1, 700, 1448, 20_000, 256 << 10)
                )
                oob = (
                    oob_at is not None and name == "a" and sent[name] < oob_at <= sent[name] + chunk
                )
                n = conn.send(now, data[sent[name] : sent[name] + chunk], oob=oob)
                sent[name] += n
            if sent[name] == len(data) and not closed[name] and (eof[name] or not late[name]):
                conn.shutdown(now, 1)
                closed[name] = True
            while not eof[name] and conn.readable and rng.random() < read_prob:
                piece = conn.recv(now, rng.choice((100, 5000, 1 << 20)))
                if not piece:
                    eof[name] = True
                got[name] += piece
            if eof[name] and closed[name] and rng.random() < 0.5:
                conn.close(now)
            assert conn.error == 0, f"seed {seed}: {name} error {conn.error}"
            conn.take_events()
        for (name, conn), chan in zip(ends.items(), (a2b, b2a), strict=True):
            while (seg := conn.poll_transmit(now)) is not None:
                trace.append(_seg_key(name, now, seg))
                chan.put(now, seg)
        if client.state is TcpState.CLOSE and server.state is TcpState.CLOSE and all(eof.values()):
            break
        times = [
            t
            for t in (a2b.next_time(), b2a.next_time(), client.poll_at(), server.poll_at())
            if t is not None
        ]
        if not times:
            now += 0.01  # only the slow reader can make progress
            continue
        now = max(min(times), now + 1e-6)
    # With an urgent byte sent out of line, the reader sees the stream without it.
    assert len(got["b"]) >= len(want["a"]) - 1 and len(got["a"]) == len(want["b"])
    final = {
        "got": (bytes(got["a"]), bytes(got["b"])),
        "a": _state(client, now),
        "b": _state(server, now),
        "counters": (_counters(counters_a), _counters(counters_b)),
        "now": now,
    }
    return trace, final


@contextmanager
def fast(enabled: bool) -> Iterator[dict[str, int]]:
    """Switch the fast path and count what it handled (wrapping its entry and exits).

    ``in``: segments :func:`fastpath.on_segment` handled itself (calls less
    hand-overs to ``segment_arrives``); ``out``: polls :func:`fastpath.transmit`
    answered itself; ``data_out``: new-data segments it cut.
    """
    calls = {"on_segment": 0, "segment_arrives": 0, "transmit": 0, "general": 0, "data_out": 0}
    names = {
        "on_segment": "on_segment",
        "segment_arrives": "segment_arrives",
        "transmit": "transmit",
        "general": "_general_transmit",
        "data_out": "sent_new_data",
    }
    saved = {key: getattr(fastpath, attr) for key, attr in names.items()}
    saved_enabled = fastpath.ENABLED

    def counting(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    fastpath.ENABLED = enabled
    for key, attr in names.items():
        setattr(fastpath, attr, counting(key, saved[key]))
    counts: dict[str, int] = {}
    try:
        yield counts
    finally:
        fastpath.ENABLED = saved_enabled
        for key, attr in names.items():
            setattr(fastpath, attr, saved[key])
        counts["in"] = calls["on_segment"] - calls["segment_arrives"]
        counts["out"] = calls["transmit"] - calls["general"]
        counts["data_out"] = calls["data_out"]
        counts["calls"] = calls["on_segment"] + calls["transmit"]


def _compare(seed: int, *, bulk: bool = False) -> dict[str, int]:
    with fast(False) as off_counts:
        slow_trace, slow_final = run(seed, bulk=bulk)
    with fast(True) as counts:
        fast_trace, fast_final = run(seed, bulk=bulk)
    assert off_counts["calls"] == 0
    for i, (x, y) in enumerate(zip(slow_trace, fast_trace, strict=False)):
        assert x == y, f"seed {seed}: segment {i} differs:\n slow {x[:9]}\n fast {y[:9]}"
    assert len(slow_trace) == len(fast_trace)
    for key in ("got", "counters", "now", "a", "b"):
        assert slow_final[key] == fast_final[key], f"seed {seed}: {key} differs"
    return counts


@pytest.mark.parametrize("seed", range(60))
def test_random_scenarios_equal(seed: int) -> None:
    """Random settings, loss, duplication, reordering, both directions: identical observables."""
    _compare(seed)


@pytest.mark.parametrize("seed", range(4))
def test_bulk_transfer_equal_and_fast(seed: int) -> None:
    """A loss-free one-way bulk transfer: identical, and carried by the fast path."""
    counts = _compare(1000 + seed, bulk=True)
    segments = 3_000_000 // 9000
    # Most data segments are cut by the fast path, and most segments in
    # (data and ACKs) and polls are handled by it.
    assert counts["data_out"] > segments // 2
    assert counts["in"] > segments // 2
    assert counts["out"] > segments


def test_switch_off_takes_general_path() -> None:
    """With the switch off nothing reaches the fast path's steps."""
    with fast(False) as counts:
        run(7, bulk=True)
    assert counts["calls"] == 0 and counts["data_out"] == 0
