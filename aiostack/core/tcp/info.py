"""Per-connection information shaped like Linux's ``struct tcp_info`` (``TCP_INFO``, ``ss -ti``).

Field names and units are the kernel's (``include/uapi/linux/tcp.h``):
times in microseconds unless the name says otherwise (``last_*`` are
milliseconds), windows in segments (``snd_cwnd``, ``snd_ssthresh``) or
bytes as Linux reports them. Fields aiostack has no equivalent for are 0,
as on a kernel without the feature: ``fackets`` (Linux reports 0 since
4.x), ``last_ack_sent`` (Linux: "not remembered"), ``delivery_rate``,
``busy_time``. ``pacing_rate`` is Linux's ``sk_pacing_rate`` as
:mod:`.pacing` models it (it sizes bursts; aiostack does not pace). ``sacked`` comes from the
SACK scoreboard (or, without SACK, Reno's duplicate-ACK count in recovery);
``lost`` is the not yet retransmitted part of the flight after a timeout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from aiostack.core.tcp.loss import EPISODE_LOSS
from aiostack.core.tcp.pacing import UNLIMITED_RATE, connection_rate
from aiostack.core.tcp.timers import TCP_ATO_MIN
from aiostack.wire.seqnum import seq_diff

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection

__all__ = ["TCPI_OPT_SACK", "TCPI_OPT_TIMESTAMPS", "TCPI_OPT_WSCALE", "TcpInfo", "tcp_info"]

#: ``tcpi_options`` bits (``TCPI_OPT_*``).
TCPI_OPT_TIMESTAMPS = 1
TCPI_OPT_SACK = 2
TCPI_OPT_WSCALE = 4

#: ``tcpi_ca_state`` values (``enum tcp_ca_state``).
TCP_CA_OPEN = 0
TCP_CA_DISORDER = 1
TCP_CA_RECOVERY = 3
TCP_CA_LOSS = 4


@dataclass(slots=True)
class TcpInfo:
    """One snapshot of a connection; see the module docstring for units."""

    state: int
    ca_state: int
    retransmits: int
    probes: int
    backoff: int
    options: int
    snd_wscale: int
    rcv_wscale: int
    rto: int
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int
    rttvar: int
    snd_ssthresh: int
    snd_cwnd: int
    advmss: int
    reordering: int
    rcv_space: int
    total_retrans: int
    pacing_rate: int
    max_pacing_rate: int
    bytes_acked: int
    bytes_received: int
    segs_out: int
    segs_in: int
    notsent_bytes: int
    min_rtt: int
    delivery_rate: int
    busy_time: int
    snd_wnd: int
    rcv_wnd: int

    def as_dict(self) -> dict[str, int]:
        """Every field by its ``tcpi_`` name without the prefix."""
        return asdict(self)


def _ms_since(now: float, then: float) -> int:
    return max(int((now - then) * 1000), 0) if then else 0


def _lost_out(conn: TcpConnection, mss: int) -> int:
    """``tcpi_lost``: outstanding segments marked lost (Linux ``lost_out``).

    With SACK, the scoreboard's lost bytes (RACK's marks, or everything
    unSACKed after a timeout: ``tcp_timeout_mark_lost``). Without it, the
    whole flight of an RTO episode (up to ``high_seq``) until acknowledged,
    and the head in NewReno recovery (``tcp_newreno_mark_lost``).
    """
    sb = conn.sb
    if sb is not None:
        return (max(sb.lost_bytes, 0) + mss - 1) // mss
    if conn.loss_mode or conn.undo_episode == EPISODE_LOSS:
        return (max(seq_diff(conn.high_seq, conn.snd_una), 0) + mss - 1) // mss
    return 1 if conn.recovery.in_recovery else 0


def _retrans_out(conn: TcpConnection, mss: int) -> int:
    """``tcpi_retrans``: retransmitted segments not yet acknowledged (Linux ``retrans_out``).

    After a timeout, what the go-back-N pass resent beyond ``snd_una``; in
    SACK recovery, the scoreboard's unSACKed bytes at or below HighRxt; in
    NewReno recovery, the head once resent (``rtx_head``: marked lost, waiting).
    """
    if conn.loss_mode:
        out = max(seq_diff(conn.rtx_nxt, conn.snd_una), 0)
        return (out + mss - 1) // mss
    sb = conn.sb
    if sb is not None and sb.in_recovery:
        return (max(sb.retrans_bytes, 0) + mss - 1) // mss
    return 1 if conn.recovery.in_recovery and not conn.rtx_head else 0


def tcp_info(conn: TcpConnection, now: float) -> TcpInfo:
    """Build a :class:`TcpInfo` for ``conn`` at ``now`` (Linux ``tcp_get_info``)."""
    opts = 0
    if conn.ts_ok:
        opts |= TCPI_OPT_TIMESTAMPS
    if conn.sack_ok:
        opts |= TCPI_OPT_SACK
    if conn.wscale_ok:
        opts |= TCPI_OPT_WSCALE
    sb = conn.sb
    sack_recovery = sb is not None and sb.in_recovery
    if conn.loss_mode or conn.undo_episode == EPISODE_LOSS:
        # Linux stays in TCP_CA_Loss until high_seq is acknowledged or the
        # timeout is undone, also while F-RTO sends new data (loss_mode off).
        ca_state = TCP_CA_LOSS
    elif conn.recovery.in_recovery or sack_recovery:
        ca_state = TCP_CA_RECOVERY
    elif conn.recovery.dupacks:
        ca_state = TCP_CA_DISORDER
    else:
        ca_state = TCP_CA_OPEN
    mss = max(conn.snd_mss, 1)
    outstanding = max(seq_diff(conn.snd_nxt, conn.snd_una), 0)
    unsent = max(seq_diff(conn.data_end, conn.snd_nxt), 0)
    rtt = conn.rtt
    return TcpInfo(
        state=int(conn.state),
        ca_state=ca_state,
        retransmits=conn.retransmits,
        probes=conn.probes,
        backoff=rtt.backoff,
        options=opts,
        snd_wscale=conn.snd_wscale,
        rcv_wscale=conn.rcv_wscale if conn.wscale_ok else 0,
        rto=rtt.rto_us,
        ato=round((conn.ato or TCP_ATO_MIN) * 1_000_000),
        snd_mss=conn.snd_mss,
        rcv_mss=conn.rcv_mss,
        unacked=(outstanding + mss - 1) // mss,
        sacked=(sb.sacked_bytes + mss - 1) // mss
        if sb is not None
        else min(conn.recovery.dupacks, (outstanding + mss - 1) // mss)
        if conn.recovery.in_recovery
        else 0,
        lost=_lost_out(conn, mss),
        retrans=_retrans_out(conn, mss),
        fackets=0,
        last_data_sent=_ms_since(now, conn.last_data_sent),
        last_ack_sent=0,
        last_data_recv=_ms_since(now, conn.last_data_recv),
        last_ack_recv=_ms_since(now, conn.last_ack_recv),
        pmtu=conn.mtu,
        rcv_ssthresh=conn.rwnd.rcv_ssthresh,
        rtt=rtt.rtt_us,
        rttvar=rtt.rttvar_us,
        snd_ssthresh=min(conn.cc.ssthresh, 0x7FFFFFFF),
        snd_cwnd=conn.cc.cwnd,
        advmss=conn.advmss - (12 if conn.ts_ok else 0),
        reordering=conn.reordering,
        rcv_space=conn.rcvq_space,
        total_retrans=conn.total_retrans,
        pacing_rate=connection_rate(conn),
        max_pacing_rate=UNLIMITED_RATE,  # sk_max_pacing_rate: no SO_MAX_PACING_RATE
        bytes_acked=conn.bytes_acked,
        bytes_received=conn.bytes_received,
        segs_out=conn.segs_out,
        segs_in=conn.segs_in,
        notsent_bytes=unsent,
        min_rtt=rtt.min_rtt_us or 0,
        delivery_rate=0,
        busy_time=0,
        snd_wnd=conn.snd_wnd,
        rcv_wnd=conn.rwnd.rcv_wnd,
    )
