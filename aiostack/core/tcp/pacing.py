"""Linux's pacing rate and the TSO chunk size it implies (where a burst puts PSH).

Linux never sends a large write as one run of MSS segments. ``tcp_write_xmit``
hands the device one skb at a time, each cut (``tso_fragment``, at
``tcp_mss_split_point``) to at most ``max_segs = min(tcp_tso_segs(),
tcp_cwnd_test())`` segments or what the peer's window allows, and the last
segment of each such chunk of two segments or more carries PSH on the wire.
Measured on Linux 6.18 (a TUN in a namespace, ``aiostack packetdrill
--target linux``):

- with a 100 ms RTT a 2500-byte write leaves as ``1000, P1000, P500`` and the
  initial window of ten as five 2-segment chunks, PSH on every second segment;
- with a ~1-4 ms RTT the chunks are 5 segments: ``tcp_tso_autosize`` allows
  dozens, but ``tcp_cwnd_test`` grants at most half the congestion window per
  skb ("at least 2 GSO packets in flight"), so IW10 leaves as 5 + 5;
- after an ACK that frees two segments of cwnd the 2-segment chunk gets PSH;
  one segment that cwnd lets out alone (limited transmit) gets none;
- the peer's window cuts chunks too: with 5-segment chunks and a 2000-byte
  window (the largest window seen 65535, so ``forced_push`` cannot explain
  it) the 2 segments end with PSH; a 1-segment piece at a 3000-byte window's
  edge has none (``1000, P1000, 1000``, then ``1000, P1000`` once ACKed).

So PSH marks the burst's multi-segment chunks, not the write's skbs; no
trace showed ``forced_push``. The chunk size follows the pacing rate:

``tcp_update_pacing_rate``
    ``rate = mss * ratio% * max(cwnd, packets_out) / srtt`` bytes per second,
    ``ratio`` being ``tcp_pacing_ss_ratio`` (200) while ``cwnd < ssthresh / 2``
    (slow start) and ``tcp_pacing_ca_ratio`` (120) after; unlimited before
    the first RTT sample (``sk_pacing_rate`` starts at ``~0``).
``tcp_tso_autosize``
    ``bytes = rate >> sk_pacing_shift (10)`` (about 1 ms of data), plus
    ``gso_max_size >> (min_rtt_us >> tcp_tso_rtt_log (9))`` (large chunks on
    short paths), at most ``gso_max_size``; in segments, at least
    ``tcp_min_tso_segs`` (2).
``tcp_cwnd_test``
    ``min(max(cwnd >> 1, 1), cwnd - in_flight)`` segments.

Pure functions of numbers the connection already has (no clock: the rate is
a function of the RTT estimate and cwnd, which Linux recomputes on each ACK;
computing it when a chunk starts gives the same value, because sending does
not change its inputs unless ``packets_out`` exceeds cwnd).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiostack.wire.seqnum import seq_diff

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection

__all__ = [
    "GSO_MAX_SIZE",
    "TCP_MIN_TSO_SEGS",
    "TCP_PACING_CA_RATIO",
    "TCP_PACING_SS_RATIO",
    "UNLIMITED_RATE",
    "chunk_segments",
    "connection_rate",
    "cwnd_quota",
    "open_chunk",
    "pacing_rate",
    "tso_autosize",
]

#: ``net.ipv4.tcp_pacing_ss_ratio``: percent of cwnd/srtt in slow start.
TCP_PACING_SS_RATIO = 200
#: ``net.ipv4.tcp_pacing_ca_ratio``: percent of cwnd/srtt in congestion avoidance.
TCP_PACING_CA_RATIO = 120
#: ``net.ipv4.tcp_min_tso_segs``: fewest segments per chunk.
TCP_MIN_TSO_SEGS = 2
#: ``net.ipv4.tcp_tso_rtt_log``: the min-RTT shift of ``tcp_tso_autosize``.
TCP_TSO_RTT_LOG = 9
#: ``sk_pacing_shift``: the chunk holds ``rate >> 10`` bytes, about 1 ms.
SK_PACING_SHIFT = 10
#: ``sk_gso_max_size`` of a device without TSO (``GSO_LEGACY_MAX_SIZE``):
#: Linux still builds GSO skbs and segments them in software.
GSO_MAX_SIZE = 65536
_MASK = 0xFFFFFFFF
_HALF = 1 << 31
#: ``sk_pacing_rate`` before any RTT sample (``~0UL``, capped to 64 bits).
UNLIMITED_RATE = (1 << 64) - 1


def pacing_rate(*, mss: int, cwnd: int, ssthresh: int, packets_out: int, srtt_us: int) -> int:
    """``sk_pacing_rate`` in bytes per second (Linux ``tcp_update_pacing_rate``).

    ``srtt_us`` 0 means no RTT sample yet: the rate is unlimited. ``cwnd``,
    ``ssthresh`` and ``packets_out`` are in segments.
    """
    if srtt_us <= 0:
        return UNLIMITED_RATE
    ratio = TCP_PACING_SS_RATIO if cwnd < ssthresh // 2 else TCP_PACING_CA_RATIO
    # Linux: mss * ((USEC_PER_SEC / 100) << 3) * ratio * segs / srtt_us, its
    # srtt_us being 8 * SRTT; here srtt_us is the SRTT itself.
    return mss * 10_000 * ratio * max(cwnd, packets_out) // srtt_us


def tso_autosize(
    rate: int, mss: int, *, min_rtt_us: int | None, gso_max_size: int = GSO_MAX_SIZE
) -> int:
    """Segments per chunk the pacing rate allows (Linux ``tcp_tso_autosize``)."""
    if mss <= 0:
        raise ValueError(f"mss must be positive, not {mss}")
    nbytes = rate >> SK_PACING_SHIFT
    r = (min_rtt_us if min_rtt_us is not None else 0xFFFFFFFF) >> TCP_TSO_RTT_LOG
    if r < 32:
        nbytes += gso_max_size >> r
    if nbytes > gso_max_size:
        nbytes = gso_max_size
    segs = nbytes // mss
    return segs if segs > TCP_MIN_TSO_SEGS else TCP_MIN_TSO_SEGS


def cwnd_quota(cwnd: int, in_flight: int) -> int:
    """Segments one skb may take of the congestion window (Linux ``tcp_cwnd_test``)."""
    if in_flight >= cwnd:
        return 0
    half = cwnd >> 1
    if half < 1:
        half = 1
    room = cwnd - in_flight
    return half if half < room else room


def chunk_segments(
    mss: int,
    cwnd: int,
    ssthresh: int,
    packets_out: int,
    in_flight: int,
    srtt_us: int,
    min_rtt_us: int | None,
    gso_max_size: int = GSO_MAX_SIZE,
) -> int:
    """Segments in the next chunk of a burst: ``min(tcp_tso_segs, tcp_cwnd_test)``.

    ``min(tso_autosize(pacing_rate(...)), cwnd_quota(...))``, written out
    (once per chunk; tests keep the two equal). At least one (a chunk is
    sent only when cwnd allows one segment; the caller tests cwnd itself).
    """
    if mss <= 0:
        raise ValueError(f"mss must be positive, not {mss}")
    if srtt_us > 0:
        ratio = TCP_PACING_SS_RATIO if cwnd < ssthresh // 2 else TCP_PACING_CA_RATIO
        nbytes = (
            mss * 10_000 * ratio * (cwnd if cwnd > packets_out else packets_out) // srtt_us
        ) >> SK_PACING_SHIFT
    else:
        nbytes = gso_max_size  # unlimited rate
    if min_rtt_us is not None:
        r = min_rtt_us >> TCP_TSO_RTT_LOG
        if r < 32:
            nbytes += gso_max_size >> r
    if nbytes > gso_max_size:
        nbytes = gso_max_size
    segs = nbytes // mss
    if segs < TCP_MIN_TSO_SEGS:
        segs = TCP_MIN_TSO_SEGS
    # cwnd_quota(cwnd, in_flight), written out.
    quota = 0 if in_flight >= cwnd else min(max(cwnd >> 1, 1), cwnd - in_flight)
    if quota < segs:
        segs = quota
    return segs if segs > 1 else 1


def open_chunk(conn: TcpConnection, start: int, data_end: int, mss: int) -> tuple[int, int, bool]:
    """Start the chunk that begins at ``start``: ``(start, end, psh)``, kept in ``conn.tso_chunk``.

    ``tcp_mss_split_point``: the chunk is ``max_len = mss * max_segs`` bytes
    when the peer's window and the data allow it, else what they allow. Its
    last segment gets PSH when it has two segments or more (a one-segment
    chunk has none of its own: the end of the data has PSH from the write).
    ``mss`` is the segment size in use (``tcp_current_mss``: after options,
    at most half the peer's largest window).
    """
    cc = conn.cc
    rtt = conn.rtt
    una = conn.snd_una
    # seq_diff(start, snd_una) and the rest of the sequence arithmetic
    # written out (once per chunk).
    outstanding = ((start - una + _HALF) & _MASK) - _HALF
    in_flight = conn.in_flight_bytes()
    segs = chunk_segments(
        mss,
        cc.cwnd,
        cc.ssthresh,
        -(-outstanding // mss) if outstanding > 0 else 0,
        -(-in_flight // mss) if in_flight > 0 else 0,
        rtt.rtt_us,
        rtt.min_rtt_us,
        conn.gso_max_size or GSO_MAX_SIZE,
    )
    length = segs * mss  # max_len, or what the window and the data allow
    window = ((una + conn.snd_wnd - start + _HALF) & _MASK) - _HALF
    needed = ((data_end - start + _HALF) & _MASK) - _HALF
    if window < needed:
        needed = window
    if length > needed:
        length = needed if needed > 0 else 0
    # A one-segment chunk (cwnd grants one more: limited transmit, PRR; or
    # the window's edge) gets no PSH on Linux
    # (tests/packetdrill/recovery/limited_transmit.pkt).
    chunk = (start, (start + length) & _MASK, length > mss)
    conn.tso_chunk = chunk
    return chunk


def connection_rate(conn: TcpConnection) -> int:
    """``sk_pacing_rate`` of ``conn`` now (``tcp_info.tcpi_pacing_rate``), bytes per second."""
    mss = conn.snd_mss
    outstanding = seq_diff(conn.snd_nxt, conn.snd_una)
    return pacing_rate(
        mss=mss,
        cwnd=conn.cc.cwnd,
        ssthresh=conn.cc.ssthresh,
        packets_out=-(-outstanding // mss) if outstanding > 0 else 0,
        srtt_us=conn.rtt.rtt_us,
    )
