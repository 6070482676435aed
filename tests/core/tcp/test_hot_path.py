"""The per-segment paths written out in line give what the general functions give.

Issue 3's bulk-transfer work replaced calls on the hot path by their bodies
(docs/decisions.md, "Fast paths that apply the same rules"): the
``nop, nop, TS`` block is remembered across segments, ``build`` chooses the
window without ``window_field``, the RTT estimator sets the RTO without
``base_rto_us``, CUBIC's ``on_ack`` repeats ``pkts_acked``. Each test here
runs the in-line version next to the general one and compares.
"""

from __future__ import annotations

import copy

import pytest

from aiostack.core.counters import Counters
from aiostack.core.tcp import output
from aiostack.core.tcp.congestion.cubic import Cubic
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.isn import tcp_time_stamp
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.rtt import RttEstimator
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

A = 0xC6120002
B = 0xC6120001


def _hdr(seg: Segment) -> wtcp.TcpHeader:
    return seg.to_header()


def _pair(now: float, mtu: int = 1500, buf: int = 256 << 10) -> tuple[TcpConnection, TcpConnection]:
    st = Settings()
    counters = Counters()
    client = TcpConnection.connect(
        now,
        local_addr=A,
        local_port=40000,
        remote_addr=B,
        remote_port=80,
        iss=1,
        settings=st,
        counters=counters,
        mtu=mtu,
        sndbuf=buf,
        rcvbuf=buf,
    )
    syn = client.poll_transmit(now)
    assert syn is not None
    server = TcpConnection.from_syn(
        now,
        _hdr(syn),
        local_addr=B,
        remote_addr=A,
        iss=0xFFFF0000,
        settings=st,
        counters=counters,
        mtu=mtu,
        sndbuf=buf,
        rcvbuf=buf,
    )
    synack = server.poll_transmit(now)
    assert synack is not None
    client.on_segment(now, _hdr(synack), synack.payload)
    ack = client.poll_transmit(now)
    assert ack is not None
    server.on_segment(now, _hdr(ack), ack.payload)
    assert client.state is TcpState.ESTABLISHED and server.state is TcpState.ESTABLISHED
    return client, server


def _checked_poll(conn: TcpConnection, now: float) -> Segment | None:
    """``poll_transmit``, checking the segment's window and options against the general path.

    The window must be what ``window_field`` chooses from the same state
    (computed on a copy of the receive window, which it updates), and with
    nothing to SACK the options the uncached ``nop, nop, TS`` encoding.
    """
    due = conn.timers.poll_at()
    if due is not None and due <= now:
        conn.run_timers(now)
    rb = conn.rcvbuf
    twin = copy.copy(conn.rwnd)
    want_window = twin.select(conn.rcv_nxt, rb.free_space, rb.capacity, conn.rcv_mss)
    want_opts = None
    if rb.dsack is None and not rb.has_out_of_order:
        want_opts = wtcp.encode_timestamps(tcp_time_stamp(now, conn.ts_offset), conn.ts_recent)
    seg = conn.poll_transmit(now)
    if seg is not None and not seg.flags & wtcp.RST:
        assert seg.window == want_window
        assert (conn.rwnd.rcv_wnd, conn.rwnd.rcv_wup) == (twin.rcv_wnd, twin.rcv_wup)
        if want_opts is not None:
            assert seg.options == want_opts
    return seg


@pytest.mark.parametrize(("read_every", "buf"), [(1, 256 << 10), (7, 256 << 10), (3, 24 << 10)])
def test_bulk_segments_match_general_path(read_every: int, buf: int) -> None:
    """A bulk transfer each way: every segment's window and TS block as the general path's.

    Reading only every few rounds lets the receive window close and reopen
    (the window choice's other branches), and every fifth round arrives
    reordered (a hole: out-of-order bytes held, SACK); the small clock steps make
    several rounds share one TSval and the two ends alternate, so the
    remembered TS block is both reused and replaced.
    """
    now = 1.0
    client, server = _pair(now, buf=buf)
    data = bytes(range(256)) * 4096
    total = 3 << 20
    sent = got = rounds = 0
    while got < total:
        rounds += 1
        now += 0.0004
        while sent < total and client.sndbuf.free:
            sent += client.send(now, data[: min(len(data), total - sent)])
        out: list[Segment] = []
        while (seg := _checked_poll(client, now)) is not None:
            out.append(seg)
        if rounds % 5 == 0 and len(out) >= 3:
            # Reordered: a hole opens and fills (out-of-order bytes, SACK blocks).
            out[0], out[2] = out[2], out[0]
        acks: list[Segment] = []
        for seg in out:
            server.on_segment(now, _hdr(seg), seg.payload)
            while (a := _checked_poll(server, now)) is not None:
                acks.append(a)
        if rounds % read_every == 0 or not out:
            got += len(server.recv(now))
        while (a := _checked_poll(server, now)) is not None:
            acks.append(a)
        for a in acks:
            client.on_segment(now, _hdr(a), a.payload)
        assert rounds < 100_000
    assert client.error == 0 and server.error == 0
    # The in-line RTO is base_rto_us (no backoff in a loss-free transfer).
    assert client.rtt.rto_us == client.rtt.base_rto_us


@pytest.mark.parametrize("tick", [0.001, 0.004, 0.0])
def test_rto_after_sample_is_base_rto(tick: float) -> None:
    """``_sample_us`` sets the RTO as ``base_rto_us`` computes it, whatever the tick."""
    rtt = RttEstimator(tick=tick)
    now = 0.0
    seq = 0
    for i, sample in enumerate([0.0003, 0.05, 0.012, 0.2, 0.0, 0.0451, 0.3, 0.001] * 3):
        now += 0.01
        seq += 1000
        got = rtt.on_ack(now, snd_una=seq, snd_nxt=seq + 5000, seq_rtt=sample)
        assert got == sample
        assert rtt.rto_us == rtt.base_rto_us, i
        assert rtt.backoff == 0


@pytest.mark.parametrize("delayed", [False, True])
def test_min_rtt_matches_update_min_rtt(delayed: bool) -> None:
    """``on_ack``'s in-line min-RTT update equals ``_update_min_rtt``'s."""
    a = RttEstimator(tick=0.004)
    b = RttEstimator(tick=0.004)
    now = 0.0
    for sample in [0.02, 0.0, 0.01, 0.03, 0.0000004, 0.5, 0.008]:
        now += 1.0
        a.on_ack(now, snd_una=1, snd_nxt=2, seq_rtt=sample, ack_maybe_delayed=delayed)
        b._update_min_rtt(now, sample, delayed)
        assert a.min_rtt_us == b.min_rtt_us


def test_cubic_on_ack_tracks_delay_like_pkts_acked() -> None:
    """CUBIC's ``on_ack`` keeps ``delay_min`` as ``pkts_acked`` does (epoch settle included)."""
    a = Cubic()
    b = Cubic()
    now = 10.0
    for i, rtt in enumerate([None, 0.03, 0.0, 0.02, -1.0, 0.01, 0.05, 0.004]):
        now += 0.01
        if i == 4:
            a.epoch_start = b.epoch_start = now - 0.0001  # just after recovery: ignored
        a.on_ack(now, 0, rtt=rtt, cwnd_limited=False)
        b.pkts_acked(now, 0, rtt)
        assert a.delay_min == b.delay_min, i


def test_ts_block_memo_is_per_input() -> None:
    """The remembered ``nop, nop, TS`` block is reused only for the same now, offset and echo."""
    now = 5.0
    client, server = _pair(now)
    for conn, at in [(client, now), (server, now), (client, now), (client, now + 0.0004)]:
        for recent in (conn.ts_recent, conn.ts_recent + 1):
            conn.ts_recent = recent
            want = wtcp.encode_timestamps(tcp_time_stamp(at, conn.ts_offset), recent)
            assert output._options(conn, at) == want


def test_ts_option_len_is_connections() -> None:
    """The in-line ``snd_mss`` uses the same option length as ``TcpConnection.snd_mss``."""
    from aiostack.core.tcp import connection

    assert output.TS_OPTION_LEN == connection.TS_OPTION_LEN
    client, _ = _pair(1.0)
    assert client.snd_mss == client.mss_clamp - output.TS_OPTION_LEN
