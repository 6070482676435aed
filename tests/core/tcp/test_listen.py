"""LISTEN (RFC 9293 3.10.7.2): the listener, its queues, SYN cookies, and the demux."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.demux import TcpDemux
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener, retrans_to_secs, secs_to_retrans
from aiostack.core.tcp.state import TcpState
from aiostack.core.tcp.syncookies import SynCookies
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

from .tcp_helpers import ACK, PEER, RST, SYN, US, expect_nothing, expect_one, header, settings

ISN = IsnGenerator(bytes(range(16)))
COOKIES = SynCookies(bytes(range(16)), bytes(range(1, 17)))
OPTS = wtcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1000, 0))


def listener(backlog: int = 4, st: Settings | None = None) -> TcpListener:
    return TcpListener(
        local_addr=US,
        local_port=80,
        backlog=backlog,
        isn=ISN,
        cookies=COOKIES,
        settings=st or Settings(),
        counters=Counters(),
    )


def syn(port: int, seq: int = 100, options: wtcp.TcpOptions = OPTS) -> wtcp.TcpHeader:
    return header(seq, 0, SYN, options=options, src_port=port, dst_port=80)


def ack(
    port: int, seq: int, ack_: int, options: wtcp.TcpOptions | None = None, flags: int = ACK
) -> wtcp.TcpHeader:
    return header(seq, ack_, flags, 1000, options=options, src_port=port, dst_port=80)


def handshake(lst: TcpListener, port: int, now: float = 0.0) -> None:
    child, reply = lst.on_segment(now, PEER, US, syn(port), b"")
    assert child is not None and reply is None
    sa = expect_one(child, now)
    tsecr = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    lst.on_segment(now, PEER, US, ack(port, 101, sa.seq + 1, tsecr), b"")


def test_syn_creates_child_and_passive_open() -> None:
    lst = listener()
    child, reply = lst.on_segment(0.0, PEER, US, syn(40000), b"")
    assert reply is None and child is not None and child.state is TcpState.SYN_RECV
    assert lst.counters.TcpPassiveOpens == 1
    assert expect_one(child, 0.0).flags == SYN | ACK
    handshake(lst, 40001)
    conn = lst.accept()
    assert conn is not None and conn.state is TcpState.ESTABLISHED


def test_ack_without_child_is_reset_and_rst_ignored() -> None:
    lst = listener()
    _, reply = lst.on_segment(0.0, PEER, US, ack(40000, 5, 777), b"")
    assert reply is not None and reply.flags == RST and reply.seq == 777
    _, reply = lst.on_segment(0.0, PEER, US, ack(40000, 5, 777, flags=RST), b"")
    assert reply is None


def fill_then_pend(lst: TcpListener) -> wtcp.TcpHeader:
    """backlog 2: three accepted (full), one accept(), one child pending, queue refilled."""
    for port in (40000, 40001, 40002):
        handshake(lst, port)
    assert len(lst.accept_queue) == 3
    child, _ = lst.on_segment(0.0, PEER, US, syn(40009), b"")
    # A SYN arriving while the accept queue is full is dropped outright.
    assert child is None and lst.counters.TcpExtListenOverflows == 1
    lst.accept()
    child, _ = lst.on_segment(0.0, PEER, US, syn(40003), b"")
    assert child is not None
    handshake(lst, 40004)  # fills the accept queue again (3 waiting)
    sa = expect_one(child, 0.0)
    return ack(40003, 101, sa.seq + 1)


def test_accept_queue_holds_backlog_plus_one_then_drops_ack() -> None:
    """Linux sk_acceptq_is_full: backlog 2 holds 3; a completing ACK beyond is dropped."""
    lst = listener(backlog=2)
    completing = fill_then_pend(lst)
    c2, reply = lst.on_segment(0.1, PEER, US, completing, b"")
    assert c2 is None and reply is None
    assert lst.syn_queue[(PEER, 40003)].state is TcpState.SYN_RECV  # SYN-ACK will repeat
    assert lst.counters.TcpExtListenOverflows == 2
    assert lst.counters.TcpExtListenDrops == 2
    # Once the application accepts, the retransmitted handshake completes.
    lst.accept()
    c3, _ = lst.on_segment(0.2, PEER, US, completing, b"")
    assert c3 is not None and c3.state is TcpState.ESTABLISHED


def test_abort_on_overflow_resets() -> None:
    """tcp_abort_on_overflow=1: the completing ACK is answered with an RST."""
    lst = listener(backlog=2, st=settings(tcp_abort_on_overflow=1))
    completing = fill_then_pend(lst)
    _, reply = lst.on_segment(0.1, PEER, US, completing, b"")
    assert reply is not None and reply.flags == RST
    assert (PEER, 40003) not in lst.syn_queue


def test_syn_cookies_when_syn_queue_full() -> None:
    """RFC 4987 / Linux: a full SYN queue answers with cookies; a cookie ACK establishes."""
    lst = listener(backlog=1)
    child, _ = lst.on_segment(0.0, PEER, US, syn(40000), b"")
    assert child is not None
    # Linux 6.x inet_csk_reqsk_queue_is_full: full only past backlog requests.
    child2, _ = lst.on_segment(0.0, PEER, US, syn(40003), b"")
    assert child2 is not None
    c2, reply = lst.on_segment(1.0, PEER, US, syn(40001, seq=500), b"")
    assert c2 is None and reply is not None and reply.flags == SYN | ACK
    assert lst.counters.TcpExtSyncookiesSent == 1
    opts = reply.parsed_options()
    assert opts.mss == 1460 and opts.wscale == 7 and opts.sack_permitted
    assert opts.timestamps is not None
    echo = wtcp.TcpOptions(timestamps=(1001, opts.timestamps[0]))
    conn, reply2 = lst.on_segment(1.1, PEER, US, ack(40001, 501, reply.seq + 1, echo), b"hi")
    assert reply2 is None and conn is not None and conn.state is TcpState.ESTABLISHED
    assert lst.counters.TcpExtSyncookiesRecv == 1
    assert conn.sack_ok and conn.wscale_ok and conn.snd_wscale == 7
    assert conn.recv(1.1) == b"hi"
    # A forged cookie fails and is reset.
    _, bad = lst.on_segment(1.2, PEER, US, ack(40002, 9, 12345, echo), b"")
    assert bad is not None and bad.flags == RST
    assert lst.counters.TcpExtSyncookiesFailed == 1


def test_forced_cookie_ack_completes_without_overflow() -> None:
    """tcp_syncookies=2: every SYN gets a cookie and its ACK completes the handshake.

    Linux ``cookie_init_sequence`` calls ``tcp_synq_overflow`` for every cookie
    sent, so ``cookie_v4_check``'s ``tcp_synq_no_recent_overflow`` gate is open
    even though the SYN queue never overflowed (it was reset before: R 1:1(0)).
    """
    lst = listener(backlog=1, st=settings(tcp_syncookies=2))
    child, reply = lst.on_segment(5.0, PEER, US, syn(40000, seq=500), b"")
    assert child is None and reply is not None and reply.flags == SYN | ACK
    assert not lst.syn_queue and lst.last_overflow == 5.0
    opts = reply.parsed_options()
    assert opts.timestamps is not None
    echo = wtcp.TcpOptions(timestamps=(1001, opts.timestamps[0]))
    conn, rst = lst.on_segment(5.1, PEER, US, ack(40000, 501, reply.seq + 1, echo), b"")
    assert rst is None and conn is not None and conn.state is TcpState.ESTABLISHED
    assert lst.accept() is conn and lst.counters.TcpExtSyncookiesRecv == 1


def test_cookie_child_window_is_whole_cookie_mss_segments() -> None:
    """``cookie_v4_check``: ``tcp_select_initial_window`` rounds to ``req->mss``.

    Without timestamps a peer MSS of 1000 is encoded as 536 and no wscale is
    used: the child's window is 65392 = 122 * 536 (a normal child: 64240).
    ``tcp_init_buffer_space`` then clamps the window one ``advmss`` below the
    full space (65536 - 1460) and ``rcv_ssthresh`` with it: Linux reports
    ``tcpi_rcv_ssthresh`` 64076 for this child.
    """
    lst = listener(backlog=1, st=settings(tcp_syncookies=2))
    no_ts = wtcp.TcpOptions(mss=1000, wscale=7, sack_permitted=True)
    _, reply = lst.on_segment(0.0, PEER, US, syn(40000, seq=500, options=no_ts), b"")
    assert reply is not None
    opts = reply.parsed_options()
    assert opts.mss == 1460 and opts.wscale is None and not opts.sack_permitted
    conn, _ = lst.on_segment(0.1, PEER, US, ack(40000, 501, reply.seq + 1), b"")
    assert conn is not None and conn.state is TcpState.ESTABLISHED
    assert conn.mss_clamp == 536 and not conn.wscale_ok and not conn.sack_ok
    assert conn.rwnd.rcv_wnd == 65392 and conn.rwnd.rcv_ssthresh == 64076


def test_defer_accept_seconds_to_retransmissions() -> None:
    """Linux ``secs_to_retrans``/``retrans_to_secs``: periods of 1, 2, 4... s (<= 120)."""
    assert [secs_to_retrans(s) for s in (-1, 0, 1, 2, 3, 4, 5, 7, 8)] == [0, 0, 1, 2, 2, 3, 3, 3, 4]
    assert retrans_to_secs(secs_to_retrans(5)) == 7
    assert retrans_to_secs(8) == 247  # 1 + 2 + ... + 64, then 120 (not 128): TCP_RTO_MAX
    assert secs_to_retrans(10**9) == 255


def deferred(defer_secs: int) -> tuple[TcpListener, TcpConnection, wtcp.TcpHeader]:
    """A listener with TCP_DEFER_ACCEPT, a child whose SYN-ACK went out at 0, its bare ACK."""
    lst = listener()
    lst.defer_accept = secs_to_retrans(defer_secs)
    no_ts = wtcp.TcpOptions(mss=1460)
    child, _ = lst.on_segment(0.0, PEER, US, syn(40000, options=no_ts), b"")
    assert child is not None
    sa = expect_one(child, 0.0)
    return lst, child, ack(40000, 101, sa.seq + 1)


def test_defer_accept_drops_bare_ack_until_data() -> None:
    """Linux ``tcp_check_req``: a bare ACK is dropped while deferring; data completes."""
    lst, child, bare = deferred(5)
    conn, reply = lst.on_segment(0.1, PEER, US, bare, b"")
    assert conn is None and reply is None
    assert child.state is TcpState.SYN_RECV and child.defer_acked
    assert lst.accept() is None
    conn, _ = lst.on_segment(0.2, PEER, US, bare, b"hello")
    assert conn is child and child.state is TcpState.ESTABLISHED
    assert lst.accept() is child and child.recv(0.2) == b"hello"


def test_defer_accept_silent_until_last_period_then_ack_completes() -> None:
    """Linux ``syn_ack_recalc``: no SYN-ACK while deferring, one in the last period.

    5 s is 3 timeouts (1 + 2 + 4 s): the timer fires at 1 and 3 s silently,
    resends the SYN-ACK at 7 s (``num_timeout >= defer - 1``), and an ACK
    after that (``num_timeout`` now 3, the deferral over) completes the
    handshake without data.
    """
    lst, child, bare = deferred(5)
    lst.on_segment(0.1, PEER, US, bare, b"")
    expect_nothing(child, 1.0)
    expect_nothing(child, 3.0)
    expect_nothing(child, 6.999)
    assert expect_one(child, 7.0).flags == SYN | ACK
    conn, _ = lst.on_segment(7.1, PEER, US, bare, b"")
    assert conn is child and child.state is TcpState.ESTABLISHED
    assert lst.accept() is child


def test_defer_accept_request_expires_after_deferral_and_retries() -> None:
    """``syn_ack_recalc``: expire once num_timeout >= tcp_synack_retries and >= defer.

    30 s is 5 timeouts (1 + 2 + 4 + 8 + 16): silent at 1, 3, 7, 15 s, a
    SYN-ACK at 31 s, and the request is dropped at 63 s without an RST.
    """
    lst, child, bare = deferred(30)
    lst.on_segment(0.1, PEER, US, bare, b"")
    for t in (1.0, 3.0, 7.0, 15.0):
        expect_nothing(child, t)
    assert expect_one(child, 31.0).flags == SYN | ACK
    expect_nothing(child, 62.999)
    assert child.state is TcpState.SYN_RECV
    expect_nothing(child, 63.0)
    assert child.state is TcpState.CLOSE


def test_defer_accept_without_ack_behaves_normally() -> None:
    """Not acked yet: SYN-ACKs are resent on the usual schedule (``resend = !acked``)."""
    _, child, _ = deferred(30)
    assert expect_one(child, 1.0).flags == SYN | ACK
    assert expect_one(child, 3.0).flags == SYN | ACK


def test_demux_resets_segments_to_nowhere_but_never_an_rst() -> None:
    """RFC 9293 3.10.7.1; pitfall: answering an RST with an RST loops forever."""
    dm = TcpDemux()
    d = dm.input(0.0, PEER, US, header(10, 0, SYN, src_port=5, dst_port=6), b"")
    assert d.reply is not None and d.reply.flags == RST | ACK and d.reply.ack == 11
    assert d.reply.seq == 0
    d = dm.input(0.0, PEER, US, header(10, 0, RST, src_port=5, dst_port=6), b"")
    assert d.reply is None
    d = dm.input(0.0, PEER, US, header(10, 0, RST | ACK, src_port=5, dst_port=6), b"")
    assert d.reply is None


def test_demux_routes_to_listener_and_table() -> None:
    dm = TcpDemux()
    lst = listener()
    dm.listen(lst)
    d = dm.input(0.0, PEER, US, syn(40000), b"")
    assert d.conn is not None and d.listener is lst
    sa = expect_one(d.conn, 0.0)
    echo = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    d2 = dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"")
    assert d2.conn is d.conn and d.conn.state is TcpState.ESTABLISHED
    assert dm.connections[(US, 80, PEER, 40000)] is d.conn
    d3 = dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"x")
    assert d3.conn is d.conn and d.conn.recv(0.0) == b"x"


def test_rst_for_unknown_connection_leaves_others_alone() -> None:
    """Pitfall: the reset for a stray segment must not touch another connection's window."""
    dm = TcpDemux()
    lst = listener()
    dm.listen(lst)
    handshake_d = dm.input(0.0, PEER, US, syn(40000), b"")
    conn = handshake_d.conn
    assert conn is not None
    sa = expect_one(conn, 0.0)
    echo = wtcp.TcpOptions(timestamps=(1001, sa.parsed_options().timestamps[0]))  # type: ignore[index]
    dm.input(0.0, PEER, US, ack(40000, 101, sa.seq + 1, echo), b"")
    before = (conn.snd_wnd, conn.rwnd.rcv_wnd, conn.rwnd.rcv_wup, conn.snd_una, conn.rcv_nxt)
    d = dm.input(0.1, PEER, US, header(1, 2, ACK, 0, src_port=40009, dst_port=81), b"zz")
    assert d.reply is not None and d.reply.flags == RST
    assert (
        conn.snd_wnd,
        conn.rwnd.rcv_wnd,
        conn.rwnd.rcv_wup,
        conn.snd_una,
        conn.rcv_nxt,
    ) == before
