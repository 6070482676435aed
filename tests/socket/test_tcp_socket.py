"""TCP stream sockets between two stacks on a MemoryWire: data, errno paths, cancellation.

Stack A is 198.18.0.1, stack B 198.18.0.2, both unprivileged and with fast
ARP failure. Each expectation is Linux's (``ref/linux-socket-semantics.md``).
Tests wait for events with generous timeouts, never with sleeps.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket as stdlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.state import TcpState
from aiostack.socket import (
    AF_INET,
    MSG_DONTWAIT,
    MSG_PEEK,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SIOCINQ,
    SIOCOUTQ,
    SO_ERROR,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_SNDBUF,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    SOL_SOCKET,
    Socket,
)
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, ABSENT_IP, B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

PORT = 8080


@dataclass
class Net:
    a: Stack
    b: Stack


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Net(a, b)


SILENT_IP = "198.18.0.3"


def silent_peer(net: Net) -> None:
    """Make SILENT_IP resolve to a MAC nobody has: SYNs to it vanish without an answer."""
    net.a.add_neighbor(SILENT_IP, "02:00:00:00:00:99")


def listener(stack: Stack, port: int = PORT, backlog: int = 16, *, reuse: bool = False) -> Socket:
    sock = stack.socket(AF_INET, SOCK_STREAM)
    if reuse:
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    sock.bind(("", port))
    sock.listen(backlog)
    return sock


async def pair(net: Net, port: int = PORT) -> tuple[Socket, Socket, Socket]:
    """(client on A, accepted socket on B, listener on B), connected."""
    server = listener(net.b, port)
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, port))
        accepted, address = await server.accept()
    assert address == client.getsockname()
    return client, accepted, server


def tcp_state(sock: Socket) -> TcpState:
    st = sock.protocol_state
    assert isinstance(st, TcpSock)
    return st.tcp_state()


async def read_exactly(sock: Socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = await sock.recv(min(65536, size - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


# -- data ------------------------------------------------------------------


async def test_echo_round_trips_and_names(net: Net) -> None:
    client, accepted, server = await pair(net)
    assert client.getpeername() == (B_IP, PORT)
    assert accepted.getsockname() == (B_IP, PORT)
    assert accepted.getpeername() == client.getsockname()
    assert client.getsockname()[0] == A_IP
    low, high = net.a.settings.ip_local_port_range
    assert low <= client.getsockname()[1] <= high
    async with asyncio.timeout(TIMEOUT):
        for i in range(20):
            message = f"message {i}".encode() * (i + 1)
            await client.sendall(message)
            echoed = await read_exactly(accepted, len(message))
            await accepted.sendall(echoed)
            assert await read_exactly(client, len(message)) == message
    assert net.a.statistics()["mib"]["TcpActiveOpens"] == 1
    assert net.b.statistics()["mib"]["TcpPassiveOpens"] == 1
    for sock in (client, accepted, server):
        sock.close()


async def test_one_megabyte_both_ways_intact(net: Net) -> None:
    client, accepted, server = await pair(net)
    size = 1 << 20
    up = bytes(i * 7 % 251 for i in range(size))
    down = bytes(i * 13 % 241 for i in range(size))

    async def send_then_shut(sock: Socket, data: bytes) -> None:
        await sock.sendall(data)
        sock.shutdown(SHUT_WR)

    async def read_all(sock: Socket) -> bytes:
        out = bytearray()
        while chunk := await sock.recv(65536):
            out += chunk
        return bytes(out)

    async with asyncio.timeout(60):
        _, _, got_up, got_down = await asyncio.gather(
            send_then_shut(client, up),
            send_then_shut(accepted, down),
            read_all(accepted),
            read_all(client),
        )
    assert hashlib.sha256(got_up).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(got_down).digest() == hashlib.sha256(down).digest()
    for sock in (client, accepted, server):
        sock.close()


async def test_half_close_eof_then_reply(net: Net) -> None:
    client, accepted, server = await pair(net)
    async with asyncio.timeout(TIMEOUT):
        await client.sendall(b"request")
        client.shutdown(SHUT_WR)
        assert await read_exactly(accepted, 7) == b"request"
        assert await accepted.recv(100) == b""  # EOF
        assert await accepted.recv(100) == b""  # and again
        await accepted.sendall(b"response")
        accepted.close()
        assert await read_exactly(client, 8) == b"response"
        assert await client.recv(100) == b""
    with pytest.raises(BrokenPipeError):
        await client.send(b"x")
    client.close()
    server.close()


async def test_msg_peek_dontwait_waitall_and_ioctl(net: Net) -> None:
    client, accepted, server = await pair(net)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(BlockingIOError) as info:
            await accepted.recv(10, MSG_DONTWAIT)
        assert info.value.errno == errno.EAGAIN
        await client.sendall(b"abcdef")
        await eventually(lambda: accepted.ioctl(SIOCINQ) == 6)
        assert await accepted.recv(3, MSG_PEEK) == b"abc"
        assert accepted.ioctl(SIOCINQ) == 6
        waitall = asyncio.create_task(accepted.recv(10, stdlib.MSG_WAITALL))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waitall.done()
        await client.sendall(b"ghij")
        assert await waitall == b"abcdefghij"
        await eventually(lambda: client.ioctl(SIOCOUTQ) == 0)
    for sock in (client, accepted, server):
        sock.close()


async def test_recv_into_and_recvfrom(net: Net) -> None:
    client, accepted, server = await pair(net)
    async with asyncio.timeout(TIMEOUT):
        await client.sendall(b"hello")
        buf = bytearray(16)
        await eventually(lambda: accepted.ioctl(SIOCINQ) == 5)
        assert await accepted.recv_into(buf) == 5
        assert bytes(buf[:5]) == b"hello"
        await client.sendall(b"world")
        assert await accepted.recvfrom(16) == (b"world", None)
    for sock in (client, accepted, server):
        sock.close()


# -- connect -----------------------------------------------------------------


async def test_connect_to_closed_port_is_refused(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ConnectionRefusedError):
            await client.connect((B_IP, 9))
    assert net.b.statistics()["mib"]["TcpOutRsts"] == 1
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0  # reported by connect already
    # tcp_set_state(CLOSE) gave the autobound port back, though getsockname()
    # still shows it (inet_sport is left alone; checked against Linux in
    # test_differential.py).
    address, port = client.getsockname()
    assert address == "0.0.0.0" and port not in net.a.tcp.ports.bhash
    # The socket can try again.
    server = listener(net.b, 9000)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, 9000))
    client.close()
    server.close()


async def test_nonblocking_connect_einprogress_ealready_then_0_then_eisconn(net: Net) -> None:
    server = listener(net.b)
    client = net.a.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)
    with pytest.raises(BlockingIOError) as info:
        await client.connect((B_IP, PORT))
    assert info.value.errno == errno.EINPROGRESS
    with pytest.raises(BlockingIOError) as info:
        await client.connect((B_IP, PORT))
    assert info.value.errno == errno.EALREADY
    await eventually(lambda: tcp_state(client) is TcpState.ESTABLISHED)
    await client.connect((B_IP, PORT))  # the one-time 0: no exception
    with pytest.raises(OSError) as again:
        await client.connect((B_IP, PORT))
    assert again.value.errno == errno.EISCONN
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0
    client.close()
    server.close()


async def test_nonblocking_connect_refused_reports_through_so_error(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        await client.connect((B_IP, 9))
    await eventually(lambda: tcp_state(client) is TcpState.CLOSE)
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNREFUSED
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0  # read-and-clear
    client.close()


async def test_connect_to_absent_host_is_ehostunreach(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(OSError) as info:
            await client.connect((ABSENT_IP, PORT))
    assert info.value.errno == errno.EHOSTUNREACH
    client.close()


async def test_connect_off_subnet_without_route_is_enetunreach(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(OSError) as info:
        await client.connect(("203.0.113.1", PORT))
    assert info.value.errno == errno.ENETUNREACH
    client.close()


async def test_connect_on_connected_or_listening_socket_is_eisconn(net: Net) -> None:
    client, accepted, server = await pair(net)
    for sock in (client, server):
        with pytest.raises(OSError) as info:
            await sock.connect((B_IP, PORT))
        assert info.value.errno == errno.EISCONN
    for sock in (client, accepted, server):
        sock.close()


async def test_ephemeral_ports_are_unique_per_connection(net: Net) -> None:
    server = listener(net.b, backlog=64)
    clients = [net.a.socket(AF_INET, SOCK_STREAM) for _ in range(20)]
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(c.connect((B_IP, PORT)) for c in clients))
    assert len({c.getsockname() for c in clients}) == 20
    for c in clients:
        c.close()
    server.close()


# -- bind / listen / accept errno paths ----------------------------------------


async def test_bind_errno_order(net: Net) -> None:
    sock = net.a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(OSError) as info:
        sock.bind((ABSENT_IP, 80))  # EADDRNOTAVAIL is checked before EACCES
    assert info.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(PermissionError):
        sock.bind(("", 80))
    sock.bind((A_IP, 5000))
    with pytest.raises(OSError) as info:
        sock.bind((A_IP, 5001))
    assert info.value.errno == errno.EINVAL
    other = net.a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(OSError) as info:
        other.bind(("", 5000))  # the wildcard overlaps A_IP
    assert info.value.errno == errno.EADDRINUSE
    sock.close()
    other.bind(("", 5000))  # free again
    other.close()


async def test_so_reuseaddr_shares_a_port_until_one_listens(net: Net) -> None:
    first = net.a.socket(AF_INET, SOCK_STREAM)
    second = net.a.socket(AF_INET, SOCK_STREAM)
    for sock in (first, second):
        sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    first.bind(("", 6000))
    second.bind(("", 6000))  # both reuse, neither listening
    first.listen(5)
    with pytest.raises(OSError) as info:
        second.listen(5)
    assert info.value.errno == errno.EADDRINUSE
    third = net.a.socket(AF_INET, SOCK_STREAM)
    third.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
    with pytest.raises(OSError) as info:
        third.bind(("", 6000))  # the existing one is LISTEN now
    assert info.value.errno == errno.EADDRINUSE
    for sock in (first, second, third):
        sock.close()


async def test_listen_and_accept_errnos(net: Net) -> None:
    client, accepted, server = await pair(net)
    with pytest.raises(OSError) as info:
        client.listen(5)
    assert info.value.errno == errno.EINVAL
    plain = net.a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(OSError) as info:
        await plain.accept()
    assert info.value.errno == errno.EINVAL
    server.setblocking(False)
    with pytest.raises(BlockingIOError) as info:
        await server.accept()
    assert info.value.errno == errno.EAGAIN
    # listen() autobinds an ephemeral port; listening again only changes the backlog.
    auto = net.a.socket(AF_INET, SOCK_STREAM)
    auto.listen(5)
    port = auto.getsockname()[1]
    assert port != 0
    auto.listen(1)
    assert auto.getsockname()[1] == port
    for sock in (client, accepted, server, plain, auto):
        sock.close()


async def test_never_connected_send_recv_getpeername_shutdown(net: Net) -> None:
    sock = net.a.socket(AF_INET, SOCK_STREAM)
    with pytest.raises(BrokenPipeError):
        await sock.send(b"x")
    with pytest.raises(OSError) as info:
        await sock.recv(10)
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        sock.getpeername()
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        sock.shutdown(SHUT_RDWR)
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        sock.shutdown(7)
    assert info.value.errno == errno.EINVAL
    sock.close()


async def test_send_after_shut_wr_is_epipe_recv_after_shut_rd_is_eof(net: Net) -> None:
    client, accepted, server = await pair(net)
    client.shutdown(SHUT_WR)
    with pytest.raises(BrokenPipeError):
        await client.send(b"late")
    accepted.shutdown(SHUT_RD)
    async with asyncio.timeout(TIMEOUT):
        assert await accepted.recv(10) == b""
    for sock in (client, accepted, server):
        sock.close()


async def test_listen_backlog_overflow_drops_then_recovers(net: Net) -> None:
    server = listener(net.b, backlog=1)  # the accept queue holds backlog + 1 = 2
    clients = [net.a.socket(AF_INET, SOCK_STREAM) for _ in range(3)]
    async with asyncio.timeout(TIMEOUT):
        for c in clients[:2]:
            await c.connect((B_IP, PORT))
        await eventually(lambda: len(server.protocol_state.listener.accept_queue) == 2)
        third = asyncio.create_task(clients[2].connect((B_IP, PORT)))
        # The accept queue is full: the SYN is dropped and the client retransmits it.
        await eventually(lambda: net.b.statistics()["mib"]["TcpExtListenOverflows"] >= 1)
        assert not third.done()
        accepted = [await server.accept() for _ in range(3)]
        await third
    assert {address for _, address in accepted} == {c.getsockname() for c in clients}
    for sock in (*clients, *(a for a, _ in accepted), server):
        sock.close()


async def test_time_wait_blocks_bind_unless_reuseaddr(net: Net) -> None:
    for reuse in (False, True):
        port = 7000 + reuse
        server = listener(net.b, port, reuse=reuse)
        client = net.a.socket(AF_INET, SOCK_STREAM)
        async with asyncio.timeout(TIMEOUT):
            await client.connect((B_IP, port))
            accepted, _ = await server.accept()
            accepted.close()  # B closes first: B's side ends in TIME-WAIT
            assert await client.recv(10) == b""
            client.close()
            conn = accepted.protocol_state.conn
            await eventually(lambda c=conn: c.state is TcpState.TIME_WAIT)  # type: ignore[misc]
        server.close()
        again = net.b.socket(AF_INET, SOCK_STREAM)
        if reuse:
            again.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
            again.bind(("", port))
            again.listen(5)
        else:
            with pytest.raises(OSError) as info:
                again.bind(("", port))
            assert info.value.errno == errno.EADDRINUSE
        again.close()


# -- resets -------------------------------------------------------------------


async def test_close_with_unread_data_resets_the_peer(net: Net) -> None:
    client, accepted, server = await pair(net)
    async with asyncio.timeout(TIMEOUT):
        await client.sendall(b"unread")
        await eventually(lambda: accepted.ioctl(SIOCINQ) == 6)
        accepted.close()
        with pytest.raises(ConnectionResetError):
            await client.recv(10)
        with pytest.raises(BrokenPipeError):
            await client.send(b"x")  # the error was reported once; now EPIPE
    client.close()
    server.close()


async def test_so_linger_zero_aborts(net: Net) -> None:
    client, accepted, server = await pair(net)
    client.setsockopt(SOL_SOCKET, stdlib.SO_LINGER, struct.pack("ii", 1, 0))
    assert client.getsockopt(SOL_SOCKET, stdlib.SO_LINGER, 8) == struct.pack("ii", 1, 0)
    client.close()
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(ConnectionResetError):
            await accepted.recv(10)
    accepted.close()
    server.close()


async def test_closing_a_listener_resets_queued_connections(net: Net) -> None:
    server = listener(net.b)
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        await eventually(lambda: server.ops.readable(server))
        server.close()
        with pytest.raises(ConnectionResetError):
            await client.recv(10)
    client.close()


# -- options --------------------------------------------------------------------


async def test_options_and_inheritance(net: Net) -> None:
    server = net.b.socket(AF_INET, SOCK_STREAM)
    assert server.getsockopt(SOL_SOCKET, SO_SNDBUF) == 16384
    assert server.getsockopt(SOL_SOCKET, SO_RCVBUF) == 131072
    server.setsockopt(SOL_SOCKET, SO_RCVBUF, 65536)
    assert server.getsockopt(SOL_SOCKET, SO_RCVBUF) == 131072  # doubled
    server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY, 1)
    server.setsockopt(SOL_SOCKET, stdlib.SO_KEEPALIVE, 1)
    server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE, 30)
    with pytest.raises(OSError) as info:
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE, 0)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_CONGESTION, b"vegas")
    assert server.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_CONGESTION, 16).rstrip(b"\0") == (
        b"cubic"
    )
    server.setblocking(False)
    server.bind(("", PORT))
    server.listen(5)
    assert server.getsockopt(SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 1
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        await eventually(lambda: server.ops.readable(server))
        accepted, _ = await server.accept()
    assert accepted.getblocking()  # O_NONBLOCK is not inherited
    assert accepted.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY) == 1
    assert accepted.getsockopt(SOL_SOCKET, stdlib.SO_KEEPALIVE) == 1
    assert accepted.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE) == 30
    assert accepted.getsockopt(SOL_SOCKET, SO_RCVBUF) == 131072
    info_bytes = client.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_INFO, 256)
    assert info_bytes[0] == TcpState.ESTABLISHED
    assert client.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_MAXSEG) == 1448  # 1500-40-12
    for sock in (client, accepted, server):
        sock.close()


# -- cancellation ------------------------------------------------------------------


async def test_cancelled_recv_loses_no_bytes(net: Net) -> None:
    client, accepted, server = await pair(net)
    async with asyncio.timeout(TIMEOUT):
        for flags in (0, stdlib.MSG_WAITALL):
            task = asyncio.create_task(accepted.recv(100, flags))
            await client.sendall(b"part one ")
            await eventually(lambda t=task: accepted.ioctl(SIOCINQ) == 9 or t.done())  # type: ignore[misc]
            for _ in range(5):
                await asyncio.sleep(0)
            if flags:
                assert not task.done()  # WAITALL wants 100 bytes
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await client.sendall(b"part two")
                assert await read_exactly(accepted, 17) == b"part one part two"
            else:
                assert await task == b"part one "
                task = asyncio.create_task(accepted.recv(100))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await client.sendall(b"kept")
                assert await read_exactly(accepted, 4) == b"kept"
    for sock in (client, accepted, server):
        sock.close()


async def test_cancelled_accept_leaves_the_connection_queued(net: Net) -> None:
    server = listener(net.b)
    task = asyncio.create_task(server.accept())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        accepted, address = await server.accept()
    assert address == client.getsockname()
    for sock in (client, accepted, server):
        sock.close()


async def test_cancelled_connect_aborts_the_attempt(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    silent_peer(net)
    task = asyncio.create_task(client.connect((SILENT_IP, PORT)))
    await eventually(lambda: tcp_state(client) is TcpState.SYN_SENT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tcp_state(client) is TcpState.CLOSE
    address, port = client.getsockname()  # the port is given back (still shown, as Linux)
    assert address == "0.0.0.0" and port not in net.a.tcp.ports.bhash
    server = listener(net.b)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))  # usable again
    client.close()
    server.close()


async def test_blocking_connect_timeout(net: Net) -> None:
    client = net.a.socket(AF_INET, SOCK_STREAM)
    client.settimeout(0.05)
    silent_peer(net)
    with pytest.raises(TimeoutError):
        await client.connect((SILENT_IP, PORT))
    assert tcp_state(client) is TcpState.SYN_SENT  # the attempt goes on, as on Linux
    client.close()


async def test_closed_connections_leave_the_table(net: Net) -> None:
    client, accepted, server = await pair(net)
    client.setsockopt(SOL_SOCKET, stdlib.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    await eventually(lambda: not net.a.tcp.demux.connections)
    await eventually(lambda: not net.b.tcp.demux.connections)
    accepted.close()
    server.close()
    assert not net.a.tcp.ports.bhash
    assert not net.b.tcp.ports.bhash


# -- timers ------------------------------------------------------------------------


async def test_keepalive_probes_fire_from_the_timer_heap(net: Net) -> None:
    """An idle connection has no task: its keepalive deadline comes from the stack's heap."""
    client, accepted, server = await pair(net)
    client.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE, 1)
    client.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPINTVL, 1)
    client.setsockopt(SOL_SOCKET, stdlib.SO_KEEPALIVE, 1)
    await eventually(lambda: net.a.statistics()["mib"]["TcpExtTCPKeepAlive"] >= 2)
    # Every probe was answered: the connection is still there.
    assert tcp_state(client) is TcpState.ESTABLISHED
    for sock in (client, accepted, server):
        sock.close()


async def test_timer_heap_holds_one_live_entry_per_connection(net: Net) -> None:
    server = listener(net.b, backlog=64)
    clients = [net.a.socket(AF_INET, SOCK_STREAM) for _ in range(30)]
    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(*(c.connect((B_IP, PORT)) for c in clients))
        accepted = [(await server.accept())[0] for _ in clients]
        for _ in range(3):
            for c in clients:
                await c.sendall(b"ping")
            for a in accepted:
                assert await read_exactly(a, 4) == b"ping"
    tcp = net.a.tcp
    live = {id(conn) for conn in tcp._armed}
    assert len(live) <= len(clients)
    # Stale entries are bounded by the pushes, and pushes only happen for earlier deadlines.
    assert len(tcp._heap) <= 4 * len(clients)
    for sock in (*clients, *accepted, server):
        sock.close()


async def test_shutdown_in_syn_sent_reports_econnreset(net: Net) -> None:
    """inet_shutdown -> tcp_disconnect: an aborted attempt sets sk_err = ECONNRESET (no RST)."""
    client = net.a.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)
    silent_peer(net)
    with pytest.raises(BlockingIOError):
        await client.connect((SILENT_IP, PORT))
    assert tcp_state(client) is TcpState.SYN_SENT
    client.shutdown(SHUT_WR)
    assert tcp_state(client) is TcpState.CLOSE
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == errno.ECONNRESET
    assert client.getsockopt(SOL_SOCKET, SO_ERROR) == 0  # read once, as sock_error()
    client.close()


async def test_shutdown_in_time_wait_is_enotconn(net: Net) -> None:
    """tcp_time_wait -> tcp_done: the socket is CLOSE while its pair waits in TIME-WAIT."""
    client, accepted, server = await pair(net)
    client.shutdown(SHUT_WR)
    async with asyncio.timeout(TIMEOUT):
        assert await accepted.recv(10) == b""
        accepted.shutdown(SHUT_WR)
        assert await client.recv(10) == b""
    await eventually(lambda: tcp_state(client) is TcpState.TIME_WAIT)
    with pytest.raises(OSError) as info:
        client.shutdown(SHUT_RD)
    assert info.value.errno == errno.ENOTCONN
    async with asyncio.timeout(TIMEOUT):
        assert await client.recv(10) == b""
    for sock in (client, accepted, server):
        sock.close()


async def test_defer_accept_waits_for_data(net: Net) -> None:
    """TCP_DEFER_ACCEPT: seconds round to SYN-ACK periods; accept() waits for the first data."""
    server = net.b.socket(AF_INET, SOCK_STREAM)
    server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_DEFER_ACCEPT, 5)
    assert server.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_DEFER_ACCEPT) == 7  # 1 + 2 + 4
    server.bind(("", PORT))
    server.listen(4)
    client = net.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))  # the client side is ESTABLISHED at once
        pending = asyncio.create_task(server.accept())
        await eventually(lambda: any(c.defer_acked for c in server_children(server)))
        assert not pending.done()
        await client.sendall(b"GET /")
        accepted, _ = await pending
        assert await accepted.recv(10) == b"GET /"
    assert accepted.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_DEFER_ACCEPT) == 0  # not inherited
    for sock in (client, accepted, server):
        sock.close()


def server_children(server: Socket) -> list[TcpConnection]:
    """The listener's children still in SYN-RECEIVED."""
    st = server.protocol_state
    assert isinstance(st, TcpSock) and st.listener is not None
    return list(st.listener.syn_queue.values())


async def test_forced_syn_cookies_stack_to_stack(net: Net) -> None:
    """tcp_syncookies=2: every handshake is a cookie one, and it completes (with options)."""
    net.b.settings.tcp_syncookies = 2
    client, accepted, server = await pair(net)
    assert net.b.statistics()["mib"]["TcpExtSyncookiesSent"] == 1
    assert net.b.statistics()["mib"]["TcpExtSyncookiesRecv"] == 1
    async with asyncio.timeout(TIMEOUT):
        await client.sendall(b"x" * 100_000)
        assert len(await read_exactly(accepted, 100_000)) == 100_000
    for sock in (client, accepted, server):
        sock.close()
