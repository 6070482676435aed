"""Differential tests: each scenario runs on the Linux kernel and on aiostack; traces must match.

The DSL is :mod:`tests.socket.scenario`. The kernel side uses real sockets
on 127.0.0.1 with kernel-chosen ports only; the aiostack side two stacks on
a MemoryWire. A failure prints both traces: the first differing entry is
where aiostack stops behaving like Linux.
"""

from __future__ import annotations

import os
import socket as stdlib
import struct
from collections.abc import Callable

import pytest

from tests.helpers import A_IP, B_IP, checksum, fast_arp, wired_stacks
from tests.socket.scenario import (
    ANY,
    SIOCINQ,
    SIOCOUTQ,
    DiffSocket,
    Env,
    KernelEnv,
    NetnsKernelEnv,
    Scenario,
    StackEnv,
    run,
)

STREAM = stdlib.SOCK_STREAM
DGRAM = stdlib.SOCK_DGRAM
SOL = stdlib.SOL_SOCKET
TCP = stdlib.IPPROTO_TCP
PEEK = stdlib.MSG_PEEK
WAITALL = stdlib.MSG_WAITALL
DONTWAIT = stdlib.MSG_DONTWAIT
LINGER0 = struct.pack("ii", 1, 0)

SCENARIOS: dict[str, Scenario] = {}


def scenario(fn: Scenario) -> Scenario:
    SCENARIOS[fn.__name__] = fn
    return fn


async def listener(e: Env, *, reuseaddr: bool = False, backlog: int = 16) -> DiffSocket:
    srv = await e.socket("server")
    if reuseaddr:
        await srv.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await srv.bind(ANY)
    await srv.listen(backlog)
    return srv


async def tcp_pair(e: Env) -> tuple[DiffSocket, DiffSocket, DiffSocket]:
    """(listener, client, accepted), connected."""
    srv = await listener(e)
    cli = await e.socket("client")
    await cli.connect(srv)
    acc = await srv.accept()
    assert acc is not None, e.trace
    return srv, cli, acc


async def closed_port(e: Env, side: str = "server") -> DiffSocket:
    """A socket holding a port nobody listens on (a SYN to it is answered by RST)."""
    hold = await e.socket(side)
    await hold.bind(ANY)
    return hold


# -- bind ---------------------------------------------------------------------------


@scenario
async def bind_same_port_twice_is_eaddrinuse(e: Env) -> None:
    a = await e.socket("server")
    await a.bind(ANY)
    b = await e.socket("server")
    await b.bind(("any", a))
    await b.getsockname()


@scenario
async def bind_reuseaddr_on_both_shares_a_port(e: Env) -> None:
    a = await e.socket("server")
    b = await e.socket("server")
    for s in (a, b):
        await s.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await a.bind(ANY)
    await b.bind(("any", a))
    await a.getsockname()
    await b.getsockname()


@scenario
async def bind_reuseaddr_only_on_the_new_socket_conflicts(e: Env) -> None:
    a = await e.socket("server")
    await a.bind(ANY)
    b = await e.socket("server")
    await b.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await b.bind(("any", a))


@scenario
async def bind_reuseaddr_next_to_a_listener_conflicts(e: Env) -> None:
    a = await listener(e, reuseaddr=True)
    b = await e.socket("server")
    await b.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await b.bind(("any", a))


@scenario
async def bind_reuseaddr_pair_cannot_both_listen(e: Env) -> None:
    a = await e.socket("server")
    b = await e.socket("server")
    for s in (a, b):
        await s.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await a.bind(ANY)
    await b.bind(("any", a))
    await a.listen()
    await b.listen()


@scenario
async def bind_reuseport_pair_both_listen(e: Env) -> None:
    a = await e.socket("server")
    b = await e.socket("server")
    for s in (a, b):
        await s.setsockopt(SOL, stdlib.SO_REUSEPORT, 1)
    await a.bind(ANY)
    await b.bind(("any", a))
    await a.listen()
    await b.listen()
    cli = await e.socket("client")
    await cli.connect(a)
    await cli.getpeername()


@scenario
async def bind_wildcard_then_specific_conflicts(e: Env) -> None:
    a = await e.socket("server")
    await a.bind(ANY)
    b = await e.socket("server")
    await b.bind(("self", a))


@scenario
async def bind_specific_then_wildcard_conflicts(e: Env) -> None:
    a = await e.socket("server")
    await a.bind(("self", 0))
    await a.getsockname()
    b = await e.socket("server")
    await b.bind(("any", a))


@scenario
async def bind_twice_and_bind_nonlocal(e: Env) -> None:
    a = await e.socket("server")
    await a.bind(ANY)
    await a.bind(ANY)  # already bound: EINVAL
    b = await e.socket("server")
    await b.bind(("nonlocal", 0))  # EADDRNOTAVAIL
    u = await e.socket("server", DGRAM)
    await u.bind(("nonlocal", 0))


@scenario
async def bind_after_connect_is_einval(e: Env) -> None:
    srv = await listener(e)
    cli = await e.socket("client")
    await cli.connect(srv)
    await cli.bind(ANY)


async def time_wait_port(e: Env, *, reuse: bool) -> DiffSocket:
    """A client socket, closed, whose port is left in TIME_WAIT (the client closed first)."""
    srv = await listener(e)
    cli = await e.socket("client")
    if reuse:
        await cli.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await cli.bind(ANY)
    await cli.port()  # remembered for the binds after the close
    await cli.connect(srv)
    acc = await srv.accept()
    assert acc is not None
    await cli.close()
    await e.settle()
    await acc.close()
    await e.settle()
    return cli


@scenario
async def time_wait_blocks_bind_unless_both_reuseaddr(e: Env) -> None:
    tw = await time_wait_port(e, reuse=True)
    plain = await e.socket("client")
    await plain.bind(("any", tw))  # EADDRINUSE
    reuse = await e.socket("client")
    await reuse.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await reuse.bind(("any", tw))
    await reuse.getsockname()


@scenario
async def time_wait_of_a_plain_socket_blocks_even_reuseaddr(e: Env) -> None:
    tw = await time_wait_port(e, reuse=False)
    reuse = await e.socket("client")
    await reuse.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await reuse.bind(("any", tw))


# -- listen / accept ------------------------------------------------------------------


@scenario
async def listen_errnos(e: Env) -> None:
    u = await e.socket("server", DGRAM)
    await u.listen()  # EOPNOTSUPP
    srv = await listener(e)
    await srv.listen(5)  # again: only the backlog changes
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    cli = await e.socket("client")
    await cli.connect(srv)
    await cli.listen()  # connected: EINVAL
    fresh = await e.socket("server")
    await fresh.listen()  # autobinds
    await fresh.getsockname()


@scenario
async def accept_errnos(e: Env) -> None:
    s = await e.socket("server")
    await s.accept()  # not listening: EINVAL
    nb = await e.socket("server", nonblock=True)
    await nb.bind(ANY)
    await nb.listen()
    await nb.accept()  # empty queue: EAGAIN
    u = await e.socket("server", DGRAM, nonblock=True)  # (the stdlib polls first if blocking)
    await u.accept()  # EOPNOTSUPP


@scenario
async def accept_gets_peer_and_names(e: Env) -> None:
    srv, cli, acc = await tcp_pair(e)
    await cli.getsockname()
    await cli.getpeername()
    await acc.getsockname()
    await acc.getpeername()
    await acc.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    await srv.getpeername()  # a listener has no peer: ENOTCONN


@scenario
async def accept_after_peer_closed_reads_data_then_eof(e: Env) -> None:
    srv = await listener(e)
    cli = await e.socket("client")
    await cli.connect(srv)
    await cli.send(b"early")
    await cli.close()
    await e.settle()
    acc = await srv.accept()
    assert acc is not None
    await acc.recv(100)
    await acc.recv(100)


@scenario
async def shutdown_rd_on_listener_stops_accepting(e: Env) -> None:
    srv = await listener(e)
    await srv.shutdown(stdlib.SHUT_WR)  # no RCV part: nothing happens
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    await srv.shutdown(stdlib.SHUT_RD)
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    await srv.accept()  # EINVAL
    await srv.listen()  # may listen again
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)


# -- connect ------------------------------------------------------------------------


@scenario
async def connect_refused_blocking(e: Env) -> None:
    hold = await closed_port(e)
    cli = await e.socket("client")
    await cli.connect(hold)
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await cli.getpeername()
    await cli.getsockname()
    await cli.connect(hold)  # the socket may try again


@scenario
async def connect_refused_nonblocking_reports_so_error(e: Env) -> None:
    hold = await closed_port(e)
    cli = await e.socket("client", nonblock=True)
    await cli.connect(hold)  # EINPROGRESS
    await e.settle()
    await cli.getsockopt(SOL, stdlib.SO_ERROR)  # ECONNREFUSED, read and clear
    await cli.getsockopt(SOL, stdlib.SO_ERROR)


@scenario
async def connect_refused_nonblocking_then_connect_again(e: Env) -> None:
    hold = await closed_port(e)
    cli = await e.socket("client", nonblock=True)
    await cli.connect(hold)
    await e.settle()
    await cli.connect(hold)  # the error comes from connect() itself now


@scenario
async def connect_nonblocking_einprogress_then_0_then_eisconn(e: Env) -> None:
    srv = await listener(e)
    cli = await e.socket("client", nonblock=True)
    await cli.connect(srv)
    await e.settle()
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await cli.connect(srv)
    await cli.connect(srv)
    await cli.getpeername()


@scenario
async def connect_eisconn_and_on_listener(e: Env) -> None:
    srv, cli, acc = await tcp_pair(e)
    await cli.connect(srv)  # EISCONN
    await srv.connect(srv)  # listening: EISCONN
    await acc.connect(srv)  # accepted: EISCONN


@scenario
async def connect_same_four_tuple_is_eaddrnotavail(e: Env) -> None:
    srv = await listener(e)
    first = await e.socket("client")
    await first.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await first.bind(ANY)
    await first.connect(srv)
    second = await e.socket("client")
    await second.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await second.bind(("any", first))
    await second.connect(srv)


@scenario
async def connect_unspec_resets_and_the_socket_is_reusable(e: Env) -> None:
    srv, cli, acc = await tcp_pair(e)
    await cli.connect_unspec()
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await cli.getpeername()
    await cli.getsockname()
    await e.settle()
    await acc.recv(10)  # ECONNRESET
    await cli.connect(srv)
    acc2 = await srv.accept()
    assert acc2 is not None
    await cli.send(b"again")
    await e.settle()
    await acc2.recv(10)


@scenario
async def connect_unspec_in_close_wait_and_fin_wait2(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await acc.shutdown(stdlib.SHUT_WR)
    await e.settle()
    await cli.connect_unspec()  # CLOSE_WAIT: RST
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await e.settle()
    await acc.recv(10)
    _srv2, cli2, acc2 = await tcp_pair(e)
    await cli2.shutdown(stdlib.SHUT_WR)
    await e.settle()
    await cli2.connect_unspec()  # FIN_WAIT2: RST
    await cli2.getsockopt(SOL, stdlib.SO_ERROR)
    await e.settle()
    await acc2.recv(10)
    await acc2.send(b"x")
    await acc2.getsockopt(SOL, stdlib.SO_ERROR)


@scenario
async def connect_unspec_on_listener_and_fresh_socket(e: Env) -> None:
    srv = await listener(e)
    await srv.connect_unspec()
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    await srv.listen()
    await srv.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    fresh = await e.socket("client")
    await fresh.connect_unspec()
    await fresh.getsockopt(SOL, stdlib.SO_ERROR)
    bound = await e.socket("client")
    await bound.bind(ANY)
    await bound.connect(srv)
    await bound.connect_unspec()  # bind() chose the port: it stays
    await bound.getsockname()
    await bound.connect(srv)
    await bound.getsockname()


# -- data, half-close, reset -----------------------------------------------------------


@scenario
async def half_close_then_reply(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.send(b"request")
    await cli.shutdown(stdlib.SHUT_WR)
    await cli.send(b"more")  # EPIPE
    await e.settle()
    await acc.recv(100)
    await acc.recv(100)  # EOF
    await acc.send(b"reply")
    await acc.close()
    await e.settle()
    await cli.recv(100)
    await cli.recv(100)


@scenario
async def shutdown_rd_then_recv_is_eof(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.shutdown(stdlib.SHUT_RD)
    await cli.recv(10)
    await cli.shutdown(stdlib.SHUT_RDWR)
    await cli.shutdown(stdlib.SHUT_WR)  # again: fine
    await e.settle()
    await acc.recv(10)


@scenario
async def shutdown_in_every_state(e: Env) -> None:
    fresh = await e.socket("client")
    await fresh.shutdown(stdlib.SHUT_RDWR)  # CLOSED: ENOTCONN
    await fresh.shutdown(7)  # EINVAL, before any state check
    hold = await closed_port(e)
    refused = await e.socket("client")
    await refused.connect(hold)
    await refused.shutdown(stdlib.SHUT_WR)  # CLOSED after the refusal: ENOTCONN
    _srv, cli, acc = await tcp_pair(e)
    await acc.shutdown(stdlib.SHUT_WR)  # ESTABLISHED -> FIN_WAIT1
    await e.settle()
    await cli.shutdown(stdlib.SHUT_WR)  # CLOSE_WAIT -> LAST_ACK
    await e.settle()
    await cli.shutdown(stdlib.SHUT_RDWR)  # CLOSED now: ENOTCONN
    u = await e.socket("client", DGRAM)
    await u.shutdown(stdlib.SHUT_RD)  # unconnected UDP: ENOTCONN


@scenario
async def close_with_unread_data_resets_the_peer(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.send(b"unread")
    await e.settle()
    await acc.close()
    await e.settle()
    await cli.recv(10)  # ECONNRESET
    await cli.recv(10)  # then EOF
    await cli.send(b"x")  # EPIPE


@scenario
async def linger_zero_close_resets(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.setsockopt(SOL, stdlib.SO_LINGER, LINGER0)
    await cli.getsockopt(SOL, stdlib.SO_LINGER, 8)
    await cli.close()
    await e.settle()
    await acc.send(b"x")  # EPIPE? ECONNRESET: the first call reports the reset
    await acc.send(b"x")
    await acc.getsockopt(SOL, stdlib.SO_ERROR)


@scenario
async def reset_in_close_wait_is_epipe(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await acc.shutdown(stdlib.SHUT_WR)  # cli: CLOSE_WAIT
    await e.settle()
    await cli.recv(10)  # EOF
    await acc.setsockopt(SOL, stdlib.SO_LINGER, LINGER0)
    await acc.close()  # RST into CLOSE_WAIT: tcp_reset says EPIPE
    await e.settle()
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await cli.send(b"x")
    await cli.recv(10)


@scenario
async def accept_returns_a_connection_reset_in_the_queue(e: Env) -> None:
    srv = await listener(e)
    cli = await e.socket("client")
    await cli.connect(srv)
    await cli.setsockopt(SOL, stdlib.SO_LINGER, LINGER0)
    await cli.close()
    await e.settle()
    acc = await srv.accept()
    assert acc is not None
    await acc.getpeername()
    await acc.recv(10)
    await acc.recv(10)
    await acc.send(b"x")


@scenario
async def never_connected_send_recv(e: Env) -> None:
    s = await e.socket("client")
    await s.send(b"x")  # EPIPE
    await s.recv(10)  # ENOTCONN
    await s.getpeername()
    await s.getsockname()
    await s.ioctl(SIOCINQ)


@scenario
async def msg_peek_and_dontwait(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await acc.recv(10, DONTWAIT)  # EAGAIN
    await cli.send(b"hello world")
    await e.settle()
    await acc.recv(5, PEEK)
    await acc.recv(100, PEEK)
    await acc.recv(3)
    await acc.recv(100, DONTWAIT)
    await acc.recv(100, DONTWAIT)


@scenario
async def msg_waitall_with_data_and_eof(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.send(b"abc")
    await cli.send(b"def")
    await e.settle()
    await acc.recv(6, WAITALL)
    await cli.send(b"tail")
    await cli.shutdown(stdlib.SHUT_WR)
    await e.settle()
    await acc.recv(100, WAITALL)  # EOF ends the wait
    await acc.recv(100, WAITALL)


@scenario
async def siocinq_siocoutq(e: Env) -> None:
    srv, cli, acc = await tcp_pair(e)
    await acc.ioctl(SIOCINQ)
    await cli.send(b"x" * 1000)
    await e.settle()
    await acc.ioctl(SIOCINQ)
    await cli.ioctl(SIOCOUTQ)  # acknowledged already
    await acc.recv(400)
    await acc.ioctl(SIOCINQ)
    await srv.ioctl(SIOCINQ)  # listener: EINVAL


@scenario
async def nonblocking_send_recv_flags(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.setblocking(False)
    await cli.recv(10)  # EAGAIN
    await cli.send(b"ping")
    await e.settle()
    await acc.recv(10, DONTWAIT)


# -- options -------------------------------------------------------------------------


@scenario
async def socket_options_basics(e: Env) -> None:
    s = await e.socket("client")
    await s.getsockopt(SOL, stdlib.SO_TYPE)
    await s.getsockopt(SOL, stdlib.SO_ERROR)
    await s.getsockopt(SOL, stdlib.SO_ACCEPTCONN)
    await s.setsockopt(SOL, stdlib.SO_RCVBUF, 10000)
    await s.getsockopt(SOL, stdlib.SO_RCVBUF)  # doubled
    await s.setsockopt(SOL, stdlib.SO_SNDBUF, 10)
    await s.getsockopt(SOL, stdlib.SO_SNDBUF)  # the floor
    await s.setsockopt(TCP, stdlib.TCP_NODELAY, 1)
    await s.getsockopt(TCP, stdlib.TCP_NODELAY)
    await s.setsockopt(TCP, stdlib.TCP_KEEPIDLE, 0)  # EINVAL
    await s.setsockopt(SOL, stdlib.SO_LINGER, struct.pack("ii", 1, 7))
    await s.getsockopt(SOL, stdlib.SO_LINGER, 8)
    await s.getsockopt(SOL, stdlib.SO_LINGER)


@scenario
async def timeval_options(e: Env) -> None:
    s = await e.socket("client")
    await s.getsockopt(SOL, stdlib.SO_RCVTIMEO, 16)
    await s.setsockopt(SOL, stdlib.SO_RCVTIMEO, struct.pack("ll", 2, 500000))
    await s.getsockopt(SOL, stdlib.SO_RCVTIMEO, 16)
    await s.getsockopt(SOL, stdlib.SO_RCVTIMEO)
    await s.setsockopt(SOL, stdlib.SO_SNDTIMEO, struct.pack("ll", 0, 1000000))  # EDOM
    await s.setsockopt(SOL, stdlib.SO_SNDTIMEO, struct.pack("ii", 1, 0))  # EINVAL: too short
    await s.setsockopt(SOL, stdlib.SO_SNDTIMEO, 1)  # EINVAL
    await s.setsockopt(SOL, stdlib.SO_SNDTIMEO, struct.pack("ll", -5, 0))
    await s.getsockopt(SOL, stdlib.SO_SNDTIMEO, 16)


@scenario
async def rcvtimeo_times_out_a_blocking_recv(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.setsockopt(SOL, stdlib.SO_RCVTIMEO, struct.pack("ll", 0, 100000))
    await cli.settimeout(None)  # truly blocking: the kernel option applies
    await cli.recv(10)  # EAGAIN after 0.1 s
    await acc.send(b"late")
    await e.settle()
    await cli.recv(10)


@scenario
async def accepted_socket_inherits_options(e: Env) -> None:
    srv = await e.socket("server")
    await srv.setsockopt(SOL, stdlib.SO_RCVBUF, 20000)
    await srv.setsockopt(SOL, stdlib.SO_SNDBUF, 30000)
    await srv.setsockopt(SOL, stdlib.SO_KEEPALIVE, 1)
    await srv.setsockopt(TCP, stdlib.TCP_NODELAY, 1)
    await srv.setsockopt(TCP, stdlib.TCP_KEEPIDLE, 99)
    await srv.setsockopt(TCP, stdlib.TCP_KEEPCNT, 3)
    await srv.bind(ANY)
    await srv.listen()
    cli = await e.socket("client")
    await cli.connect(srv)
    acc = await srv.accept()
    assert acc is not None
    for level, option in (
        (SOL, stdlib.SO_RCVBUF),
        (SOL, stdlib.SO_SNDBUF),
        (SOL, stdlib.SO_KEEPALIVE),
        (TCP, stdlib.TCP_NODELAY),
        (TCP, stdlib.TCP_KEEPIDLE),
        (TCP, stdlib.TCP_KEEPCNT),
    ):
        await acc.getsockopt(level, option)


# -- poll(2) masks (tcp_poll, datagram_poll) ---------------------------------------------


@scenario
async def poll_fresh_listening_and_connected(e: Env) -> None:
    srv = await e.socket("server")
    await srv.poll()  # a fresh TCP socket: POLLOUT|POLLHUP (state CLOSE)
    await srv.bind(ANY)
    await srv.listen(4)
    await srv.poll()  # listening, nothing queued: 0
    cli = await e.socket("client")
    await cli.connect(srv)
    await e.settle()
    await srv.poll()  # a connection to accept: POLLIN
    acc = await srv.accept()
    assert acc is not None, e.trace
    await srv.poll()
    await acc.poll()
    await cli.send(b"hello")
    await e.settle()
    await acc.poll()  # readable
    await acc.recv(3)
    await acc.poll()
    await acc.recv(10)
    await acc.poll()


@scenario
async def poll_urgent_byte_is_pollpri(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.send(b"ab", stdlib.MSG_OOB)  # "b" is urgent
    await e.settle()
    await acc.poll()  # POLLPRI beside the ordinary byte
    await acc.recv(10)  # "a": reads stop at the mark
    await acc.poll()  # only the out-of-line byte is left: not readable, still POLLPRI
    await acc.recv(1, stdlib.MSG_OOB)
    await acc.poll()  # taken: no POLLPRI
    await cli.send(b"c")
    await e.settle()
    await acc.poll()
    await acc.recv(10)


@scenario
async def poll_urgent_inline(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await acc.setsockopt(SOL, stdlib.SO_OOBINLINE, 1)
    await cli.send(b"x", stdlib.MSG_OOB)
    await e.settle()
    await acc.poll()  # in line: the byte is ordinary data, and POLLPRI
    await acc.recv(10)
    await acc.poll()


@scenario
async def poll_half_close_both_ways(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await cli.shutdown(stdlib.SHUT_WR)
    await e.settle()
    await cli.poll()  # SEND_SHUTDOWN: writable (the next send says EPIPE)
    await acc.poll()  # the peer's FIN: POLLIN|POLLRDHUP
    await acc.recv(10)
    await acc.close()
    await e.settle()
    await cli.poll()  # TIME_WAIT: the socket is CLOSE, both directions shut


@scenario
async def poll_after_reset_and_shutdown_rd(e: Env) -> None:
    _srv, cli, acc = await tcp_pair(e)
    await acc.shutdown(stdlib.SHUT_RD)
    await acc.poll()
    await cli.setsockopt(SOL, stdlib.SO_LINGER, LINGER0)
    await cli.close()
    await e.settle()
    await acc.poll()  # RST: POLLERR|POLLHUP, readable and writable
    await acc.getsockopt(SOL, stdlib.SO_ERROR)
    await acc.poll()  # the error read: POLLERR gone


@scenario
async def poll_refused_connect(e: Env) -> None:
    hold = await closed_port(e)
    cli = await e.socket("client", nonblock=True)
    await cli.connect(hold)
    await e.settle()
    await cli.poll()
    await cli.getsockopt(SOL, stdlib.SO_ERROR)
    await cli.poll()


@scenario
async def poll_udp(e: Env) -> None:
    u = await e.socket("client", DGRAM)
    await u.poll()  # writable from the start
    r = await e.socket("server", DGRAM)
    await r.bind(ANY)
    await u.sendto(b"one", r)
    await e.settle()
    await r.poll()
    await r.recvfrom(10)
    await r.poll()
    await r.shutdown(stdlib.SHUT_RD)
    await r.poll()
    await r.shutdown(stdlib.SHUT_WR)
    await r.poll()
    gone = await e.socket("server", DGRAM)
    await gone.bind(ANY)
    await u.connect(gone)
    await gone.close()
    await u.send(b"anyone?")
    await e.settle()
    await u.poll()  # ECONNREFUSED pending: POLLERR
    await u.getsockopt(SOL, stdlib.SO_ERROR)
    await u.poll()


# -- UDP ------------------------------------------------------------------------------


@scenario
async def udp_unconnected_errnos(e: Env) -> None:
    u = await e.socket("client", DGRAM)
    await u.send(b"x")  # EDESTADDRREQ
    await u.getpeername()  # ENOTCONN
    await u.recv(10, DONTWAIT)  # EAGAIN
    target = await e.socket("server", DGRAM)
    await target.bind(ANY)
    await u.sendto(b"x", ("self", 0))  # port 0: EINVAL
    await u.getsockname()
    await u.sendto(b"hello", target)
    await u.getsockname()  # autobound by the send
    await e.settle()
    await target.recvfrom(100)


@scenario
async def udp_connect_filters_and_sendto_still_works(e: Env) -> None:
    a = await e.socket("server", DGRAM)
    await a.bind(ANY)
    b = await e.socket("server", DGRAM)
    await b.bind(ANY)
    u = await e.socket("client", DGRAM)
    await u.bind(ANY)
    await u.connect(a)
    await u.getpeername()
    await u.sendto(b"to b", b)  # allowed on a connected UDP socket
    await b.sendto(b"from b", u)  # filtered: u is connected to a
    await a.sendto(b"from a", u)
    await e.settle()
    await b.recvfrom(100)
    await u.recvfrom(100)
    await u.recv(100, DONTWAIT)
    await u.connect_unspec()
    await u.getpeername()
    await u.getsockname()  # bind() asked for port 0: the port is given back
    await b.sendto(b"from b again", u)
    await e.settle()
    await u.recvfrom(100, DONTWAIT)  # nobody has that port any more


@scenario
async def udp_port_unreachable_is_econnrefused(e: Env) -> None:
    u = await e.socket("client", DGRAM)
    gone = await e.socket("server", DGRAM)
    await gone.bind(ANY)
    await u.connect(gone)
    await gone.close()  # the port is free again: nobody receives on it
    await u.send(b"anyone?")
    await e.settle()
    await u.recv(10, DONTWAIT)  # ECONNREFUSED, once
    await u.recv(10, DONTWAIT)  # then EAGAIN


@scenario
async def udp_peek_truncate_and_siocinq(e: Env) -> None:
    r = await e.socket("server", DGRAM)
    await r.bind(ANY)
    u = await e.socket("client", DGRAM)
    await u.sendto(b"0123456789", r)
    await u.sendto(b"second", r)
    await e.settle()
    await r.ioctl(SIOCINQ)  # the first datagram's size
    await r.recvfrom(100, PEEK)
    await r.recv(3)  # truncated; the rest is gone
    await r.recv(100)
    await r.recv(100, DONTWAIT)


@scenario
async def udp_shutdown_connected(e: Env) -> None:
    r = await e.socket("server", DGRAM)
    await r.bind(ANY)
    u = await e.socket("client", DGRAM)
    await u.connect(r)
    await u.shutdown(stdlib.SHUT_WR)
    await u.send(b"x")  # EPIPE
    await u.shutdown(stdlib.SHUT_RD)
    await u.recv(10)  # b"" (blocking, shut down)
    await u.recv(10, DONTWAIT)  # EAGAIN
    await u.getpeername()


@scenario
async def udp_bind_conflicts(e: Env) -> None:
    a = await e.socket("server", DGRAM)
    await a.bind(ANY)
    b = await e.socket("server", DGRAM)
    await b.bind(("any", a))  # EADDRINUSE
    c = await e.socket("server", DGRAM)
    d = await e.socket("server", DGRAM)
    for s in (c, d):
        await s.setsockopt(SOL, stdlib.SO_REUSEADDR, 1)
    await c.bind(ANY)
    await d.bind(("any", c))
    await d.bind(ANY)  # EINVAL: bound already


@scenario
async def listener_maxseg_caps_the_children(e: Env) -> None:
    srv = await e.socket("server")
    await srv.bind(ANY)
    await srv.listen()
    await srv.setsockopt(TCP, stdlib.TCP_MAXSEG, 1000)  # on the listener: user_mss
    cli = await e.socket("client")
    await cli.connect(srv)
    acc = await srv.accept()
    assert acc is not None
    await cli.getsockopt(TCP, stdlib.TCP_MAXSEG)  # the SYN-ACK's 1000, less 12 of timestamps
    await acc.getsockopt(TCP, stdlib.TCP_MAXSEG)
    await acc.setsockopt(TCP, stdlib.TCP_MAXSEG, 600)
    await acc.getsockopt(TCP, stdlib.TCP_MAXSEG)  # established: mss_cache stays


# -- socket() and raw sockets (no packet leaves: every send here fails its checks) -----------

RAW = stdlib.SOCK_RAW
IP = stdlib.IPPROTO_IP


@scenario
async def socket_creation_errnos(e: Env) -> None:
    await e.create("client", RAW, 0)  # EPROTONOSUPPORT: raw needs a protocol
    await e.create("client", RAW, 300)  # EINVAL: >= IPPROTO_MAX
    await e.create("client", 5, 0)  # ESOCKTNOSUPPORT
    await e.create("client", STREAM, stdlib.IPPROTO_UDP)  # EPROTONOSUPPORT
    await e.create("client", DGRAM, stdlib.IPPROTO_TCP)
    tcp = await e.create("client", STREAM, stdlib.IPPROTO_TCP)
    assert tcp is not None
    await tcp.getsockopt(SOL, stdlib.SO_PROTOCOL)
    await tcp.setsockopt(IP, stdlib.IP_HDRINCL, 1)  # ENOPROTOOPT


@scenario
async def raw_socket_calls_without_traffic(e: Env) -> None:
    icmp = await e.create("client", RAW, stdlib.IPPROTO_ICMP)
    if icmp is None:  # not root: EPERM on both sides, nothing more to compare
        return
    await icmp.getsockname()  # the protocol number as the port
    await icmp.getpeername()  # ENOTCONN
    await icmp.getsockopt(IP, stdlib.IP_HDRINCL)
    await icmp.listen()  # EOPNOTSUPP
    await icmp.shutdown(stdlib.SHUT_WR)  # ENOTCONN, mask applied
    await icmp.send(b"x")  # EDESTADDRREQ comes before EPIPE
    raw = await e.create("client", RAW, stdlib.IPPROTO_RAW)
    assert raw is not None
    await raw.getsockopt(IP, stdlib.IP_HDRINCL)  # implied
    await raw.sendto(b"abc", ("self", 0))  # shorter than an IP header: EINVAL
    exp = await e.create("client", RAW, 253)
    assert exp is not None
    await exp.setsockopt(255, 1, 0)  # ICMP_FILTER on a non-ICMP socket: EOPNOTSUPP
    await exp.bind(("nonlocal", 0))  # EADDRNOTAVAIL
    await exp.connect(("self", 0))  # sends nothing
    await exp.getpeername()  # ENOTCONN: inet_getname wants a peer port
    await exp.connect(("self", 7))
    await exp.getpeername()
    await exp.getsockname()
    await exp.bind(("any", 0))  # connected: EINVAL


# -- ICMP "ping" sockets and ICMP errors for ping and raw sockets -------------------------
#
# These need per-namespace sysctls (ping_group_range, icmp_echo_ignore_all), so their kernel
# side runs in a namespace of its own: root only. The stack side gets the same settings.

PING = stdlib.IPPROTO_ICMP
OPEN = {"net.ipv4.ping_group_range": "0 2147483647"}
QUIET = {**OPEN, "net.ipv4.icmp_echo_ignore_all": "1"}
ECHO_ONLY = struct.pack("I", ~(1 << 8) & 0xFFFFFFFF)  # ICMP_FILTER: echo requests only

NETNS_SCENARIOS: dict[str, tuple[Scenario, dict[str, str]]] = {}


def netns_scenario(sysctls: dict[str, str]) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        NETNS_SCENARIOS[fn.__name__] = (fn, sysctls)
        return fn

    return register


def echo(seq: int, payload: bytes = b"ping", check: bool = False) -> bytes:
    """An echo request as a ping program writes it; ``check``: with its checksum (raw sockets)."""
    head = struct.pack("!BBHHH", 8, 0, 0, 0xBEEF, seq)
    if not check:
        return head + payload  # a ping socket's identifier and checksum are the kernel's
    message = head + payload
    return message[:2] + struct.pack("!H", checksum(message)) + message[4:]


@netns_scenario({})
async def ping_socket_default_range_is_eacces(e: Env) -> None:
    await e.create("client", DGRAM, PING)  # EACCES, root or not


@netns_scenario(OPEN)
async def ping_round_trip(e: Env) -> None:
    p = await e.create("client", DGRAM, PING)
    assert p is not None
    await p.getsockname()  # no identifier yet
    await p.getsockopt(SOL, stdlib.SO_REUSEADDR)  # on from creation
    await p.getsockopt(SOL, stdlib.SO_PROTOCOL)
    await p.sendto(echo(1, b"hello"), ("server", 4242))  # the port is ignored
    await p.getsockname()  # autobound
    await p.recv_echo()
    await p.sendto(echo(2, b"abc"), ("server", 0))
    await e.settle()
    await p.ioctl(SIOCINQ)  # ENOTTY: ping_prot has no ioctl
    await p.recv_echo(10)  # truncated
    await p.recv(100, DONTWAIT)  # EAGAIN: the rest of a datagram is gone


@netns_scenario(OPEN)
async def ping_send_errnos(e: Env) -> None:
    p = await e.create("client", DGRAM, PING)
    assert p is not None
    await p.sendto(b"\x08\x00\x00", ("server", 0))  # EINVAL: shorter than a header
    await p.getsockname()  # autobound by the failed send
    await p.sendto(bytes(8), ("server", 0))  # EINVAL: not an echo request
    await p.sendto(b"\x08\x01" + bytes(6), ("server", 0))  # EINVAL: code 1
    await p.sendto(b"\x08" + bytes(70000), ("server", 0))  # EMSGSIZE
    await p.send(echo(1))  # EDESTADDRREQ
    await p.listen()  # EOPNOTSUPP
    await p.setsockopt(IP, stdlib.IP_HDRINCL, 1)  # ENOPROTOOPT: not SOCK_RAW
    await p.setsockopt(255, 1, 0)  # ICMP_FILTER: ENOPROTOOPT
    await p.setsockopt(IP, stdlib.IP_TTL, 0)  # EINVAL
    await p.setsockopt(IP, stdlib.IP_TTL, 9)
    await p.getsockopt(IP, stdlib.IP_TTL)
    await p.getsockopt(SOL, stdlib.SO_ERROR)
    await p.shutdown(stdlib.SHUT_WR)  # ENOTCONN, mask applied
    await p.sendto(echo(1), ("server", 0))  # EPIPE
    await p.shutdown(stdlib.SHUT_RD)
    await p.recv(10)  # b"": blocking and shut down
    await p.recv(10, DONTWAIT)  # EAGAIN
    q = await e.create("client", DGRAM, PING)
    assert q is not None
    await q.bind(("nonlocal", 0))  # EADDRNOTAVAIL
    await q.bind(("self", 0))
    await q.bind(("any", 0))  # EINVAL: bound


@netns_scenario(OPEN)
async def ping_connect_and_disconnect(e: Env) -> None:
    p = await e.create("client", DGRAM, PING)
    assert p is not None
    await p.connect(("server", 9))
    await p.getsockname()  # the route's source and an identifier
    await p.getpeername()
    await p.send(echo(3))
    await p.recv_echo()
    await p.bind(ANY)  # EINVAL: connect autobound it
    await p.connect_unspec()
    await p.getsockname()  # identifier given back
    await p.getpeername()  # ENOTCONN
    b = await e.create("client", DGRAM, PING)
    assert b is not None
    await b.bind(("self", 0))
    await b.connect_unspec()
    await b.getsockname()  # the address stays, the identifier goes
    c = await e.create("client", DGRAM, PING)
    assert c is not None
    await c.connect(("server", 0))
    await c.getpeername()  # ENOTCONN: no peer port


@netns_scenario(OPEN)
async def ping_identifier_sharing(e: Env) -> None:
    a = await e.create("client", DGRAM, PING)
    b = await e.create("client", DGRAM, PING)
    c = await e.create("client", DGRAM, PING)
    assert a is not None and b is not None and c is not None
    await a.bind(ANY)
    await b.bind(("any", a))  # SO_REUSEADDR is on: shared
    await c.setsockopt(SOL, stdlib.SO_REUSEADDR, 0)
    await c.bind(("any", a))  # EADDRINUSE
    await a.sendto(echo(5), ("server", 0))
    await b.recv_echo()  # the newest socket on the identifier gets the reply
    await a.recv(100, DONTWAIT)  # EAGAIN


@netns_scenario(QUIET)
async def ping_icmp_errors(e: Env) -> None:
    r = await e.create("server", RAW, PING)
    if r is None:
        return
    await r.setsockopt(255, 1, ECHO_ONLY)
    p = await e.create("client", DGRAM, PING)
    assert p is not None
    await p.connect(("server", 0))
    await p.send(echo(1))
    await r.answer_with_icmp_error(3, 3)  # port unreachable: hard
    await e.settle()
    await p.recv_echo()  # ECONNREFUSED
    await p.recv(100, DONTWAIT)  # EAGAIN: reported once
    await p.send(echo(2))
    await r.answer_with_icmp_error(3, 1)  # host unreachable: soft, dropped
    await e.settle()
    await p.getsockopt(SOL, stdlib.SO_ERROR)
    u = await e.create("client", DGRAM, PING)
    assert u is not None
    await u.sendto(echo(3), ("server", 0))
    await r.answer_with_icmp_error(3, 3)  # hard, but not connected: dropped
    await e.settle()
    await u.getsockopt(SOL, stdlib.SO_ERROR)
    v = await e.create("client", DGRAM, PING)
    assert v is not None
    await v.setsockopt(IP, 11, 1)  # IP_RECVERR: every error
    await v.sendto(echo(4), ("server", 0))
    await r.answer_with_icmp_error(11, 0)  # time exceeded
    await e.settle()
    await v.getsockopt(SOL, stdlib.SO_ERROR)
    await v.getsockopt(SOL, stdlib.SO_ERROR)


@netns_scenario(QUIET)
async def raw_icmp_errors(e: Env) -> None:
    r = await e.create("server", RAW, PING)
    if r is None:
        return
    await r.setsockopt(255, 1, ECHO_ONLY)
    c = await e.create("client", RAW, PING)
    assert c is not None
    await c.connect(("server", 0))
    await c.send(echo(1, check=True))
    await r.answer_with_icmp_error(3, 3)  # port unreachable: hard, connected
    await e.settle()
    await c.recv(100)  # the error comes before any queued datagram
    await c.send(echo(2, check=True))
    await r.answer_with_icmp_error(3, 0)  # net unreachable: soft
    await e.settle()
    await c.getsockopt(SOL, stdlib.SO_ERROR)
    await c.send(echo(3, check=True))
    await r.answer_with_icmp_error(12, 0)  # parameter problem: hard
    await e.settle()
    await c.getsockopt(SOL, stdlib.SO_ERROR)
    u = await e.create("client", RAW, PING)
    assert u is not None
    await u.sendto(echo(4, check=True), ("server", 0))
    await r.answer_with_icmp_error(3, 3)  # not connected: dropped
    await e.settle()
    await u.getsockopt(SOL, stdlib.SO_ERROR)
    await c.getsockopt(SOL, stdlib.SO_ERROR)  # connected to the quoted peer: it takes it
    await u.setsockopt(IP, 11, 1)  # IP_RECVERR
    await u.getsockopt(SOL, stdlib.SO_REUSEADDR)
    await u.sendto(echo(5, check=True), ("server", 0))
    await r.answer_with_icmp_error(11, 0)
    await e.settle()
    await u.getsockopt(SOL, stdlib.SO_ERROR)


async def _kernel_trace(fn: Scenario) -> list[tuple[object, ...]]:
    env = KernelEnv()
    try:
        return await run(fn, env)
    finally:
        env.close()


async def _stack_trace(fn: Scenario) -> list[tuple[object, ...]]:
    settings = (fast_arp(), fast_arp())
    # As privileged as this process is with the kernel (raw sockets need it).
    async with wired_stacks(settings=settings, privileged=os.geteuid() == 0) as (a, b):
        return await run(fn, StackEnv(a, b, A_IP, B_IP))


def test_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 40


def _compare(linux: list[tuple[object, ...]], ours: list[tuple[object, ...]]) -> None:
    assert ours == linux, "\n".join(
        f"{'  ' if x == y else '!!'} linux={x!r}\n   aiostack={y!r}"
        for x, y in zip(linux, ours + [None] * (len(linux) - len(ours)), strict=False)
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_same_as_linux(name: str) -> None:
    fn = SCENARIOS[name]
    linux = await _kernel_trace(fn)
    ours = await _stack_trace(fn)
    _compare(linux, ours)


@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel side needs a namespace of its own")
@pytest.mark.parametrize("name", sorted(NETNS_SCENARIOS))
async def test_same_as_linux_in_a_namespace(name: str) -> None:
    fn, sysctls = NETNS_SCENARIOS[name]
    env = NetnsKernelEnv(sysctls)
    try:
        linux = await run(fn, env)
    finally:
        env.close()
    settings = (fast_arp(), fast_arp())
    for s in settings:
        for key, value in sysctls.items():
            s.set(key, value)
    async with wired_stacks(settings=settings, privileged=True) as (a, b):
        ours = await run(fn, StackEnv(a, b, A_IP, B_IP))
    _compare(linux, ours)
