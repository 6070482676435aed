"""Socket options and calls added for issue 4: SO_RCVTIMEO/SO_SNDTIMEO, SO_LINGER
with a time, connect(AF_UNSPEC), option inheritance by accepted sockets,
SO_REUSEPORT load spreading and the descriptor table.

Two stacks on a MemoryWire (A 198.18.0.1, B 198.18.0.2). Timing (time-outs,
linger) runs on virtual time through ``run_virtual``, so a 2 s linger costs
nothing and the elapsed time can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import errno
import socket as stdlib
import struct
from collections.abc import Awaitable, Callable

import pytest

from aiostack.core.tcp.demux import ehashfn
from aiostack.core.tcp.state import TcpState
from aiostack.link.memory import MemoryWire
from aiostack.socket import AF_INET, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, Socket
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from aiostack.testing.virtual_time import run_virtual
from aiostack.wire.ipv4 import addr
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

PORT = 7000
SO_RCVTIMEO = stdlib.SO_RCVTIMEO
SO_SNDTIMEO = stdlib.SO_SNDTIMEO
SO_LINGER = stdlib.SO_LINGER
NOWHERE_MAC = "02:00:00:00:00:99"


def timeval(sec: int, usec: int = 0) -> bytes:
    return struct.pack("ll", sec, usec)


def virtual(body: Callable[[Stack, Stack], Awaitable[None]]) -> None:
    """Run ``body(a, b)`` with two wired stacks on the virtual-time loop."""

    async def main() -> None:
        async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
            await body(a, b)

    run_virtual(main())


def tcp_state(sock: Socket) -> TcpState:
    st = sock.protocol_state
    assert isinstance(st, TcpSock)
    return st.tcp_state()


async def connected_pair(a: Stack, b: Stack, port: int = PORT) -> tuple[Socket, Socket, Socket]:
    server = b.socket(AF_INET, SOCK_STREAM)
    server.bind(("", port))
    server.listen(8)
    client = a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, port))
        accepted, _ = await server.accept()
    return client, accepted, server


def errno_of(exc: pytest.ExceptionInfo[OSError]) -> int | None:
    return exc.value.errno


# -- SO_RCVTIMEO / SO_SNDTIMEO ---------------------------------------------------


def test_rcvtimeo_bounds_accept_and_recv_with_eagain() -> None:
    async def body(a: Stack, b: Stack) -> None:
        loop = asyncio.get_running_loop()
        client, accepted, server = await connected_pair(a, b)
        server.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval(1, 500000))
        assert server.getsockopt(SOL_SOCKET, SO_RCVTIMEO, 16) == timeval(1, 500000)
        assert server.getsockopt(SOL_SOCKET, SO_RCVTIMEO) == 1  # the int form: tv_sec
        start = loop.time()
        with pytest.raises(BlockingIOError) as info:
            await server.accept()
        assert info.value.errno == errno.EAGAIN
        assert loop.time() - start == pytest.approx(1.5)
        client.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval(2))
        start = loop.time()
        with pytest.raises(BlockingIOError):
            await client.recv(10)
        assert loop.time() - start == pytest.approx(2.0)
        # MSG_WAITALL: a time-out returns what was gathered, not an error.
        await accepted.sendall(b"abc")
        assert await client.recv(10, stdlib.MSG_WAITALL) == b"abc"
        # A settimeout() socket keeps the stdlib's TimeoutError (the kernel option is moot).
        client.settimeout(0.5)
        with pytest.raises(TimeoutError):
            await client.recv(10)

    virtual(body)


def test_rcvtimeo_is_inherited_and_udp_honours_it() -> None:
    async def body(a: Stack, b: Stack) -> None:
        server = b.socket(AF_INET, SOCK_STREAM)
        server.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval(3))
        server.setsockopt(SOL_SOCKET, SO_SNDTIMEO, timeval(4))
        server.bind(("", PORT))
        server.listen()
        client = a.socket(AF_INET, SOCK_STREAM)
        await client.connect((B_IP, PORT))
        accepted, _ = await server.accept()
        assert accepted.getsockopt(SOL_SOCKET, SO_RCVTIMEO, 16) == timeval(3)
        assert accepted.getsockopt(SOL_SOCKET, SO_SNDTIMEO, 16) == timeval(4)
        udp = a.socket(AF_INET, SOCK_DGRAM)
        udp.bind(("", 5353))
        udp.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval(0, 250000))
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(BlockingIOError):
            await udp.recvfrom(100)
        assert loop.time() - start == pytest.approx(0.25)

    virtual(body)


def test_sndtimeo_returns_a_partial_count_then_eagain() -> None:
    async def body(a: Stack, b: Stack) -> None:
        client, _accepted, _server = await connected_pair(a, b)
        client.setsockopt(SOL_SOCKET, stdlib.SO_SNDBUF, 4096)
        client.setsockopt(SOL_SOCKET, SO_SNDTIMEO, timeval(1))
        big = bytes(4 << 20)  # far more than the peer's window plus our buffer
        sent = await client.send(big)
        assert 0 < sent < len(big)
        with pytest.raises(BlockingIOError) as info:
            while True:
                await client.send(big)
        assert info.value.errno == errno.EAGAIN

    virtual(body)


def test_sndtimeo_bounds_a_blocking_connect_with_einprogress_then_ealready() -> None:
    async def body(a: Stack, _b: Stack) -> None:
        a.add_neighbor("198.18.0.3", NOWHERE_MAC)  # SYNs vanish
        client = a.socket(AF_INET, SOCK_STREAM)
        client.setsockopt(SOL_SOCKET, SO_SNDTIMEO, timeval(2))
        with pytest.raises(BlockingIOError) as info:
            await client.connect(("198.18.0.3", PORT))
        assert info.value.errno == errno.EINPROGRESS
        assert tcp_state(client) is TcpState.SYN_SENT  # the attempt goes on
        with pytest.raises(BlockingIOError) as info:
            await client.connect(("198.18.0.3", PORT))
        assert info.value.errno == errno.EALREADY
        client.close()

    virtual(body)


async def test_timeval_option_values_as_linux_checks_them() -> None:
    async with wired_stacks(privileged=False) as (a, _b):
        sock = a.socket(AF_INET, SOCK_STREAM)
        for value, code in (
            (1, errno.EINVAL),  # an int is 4 bytes: shorter than a timeval
            (struct.pack("ii", 1, 0), errno.EINVAL),
            (timeval(0, 1_000_000), errno.EDOM),
            (timeval(0, -1), errno.EDOM),
        ):
            with pytest.raises(OSError) as info:
                sock.setsockopt(SOL_SOCKET, SO_RCVTIMEO, value)
            assert errno_of(info) == code
        assert sock.getsockopt(SOL_SOCKET, SO_SNDTIMEO, 16) == timeval(0)
        # A negative tv_sec is a zero time-out: the blocking call fails at once.
        sock.setsockopt(SOL_SOCKET, SO_RCVTIMEO, timeval(-1))
        assert sock.getsockopt(SOL_SOCKET, SO_RCVTIMEO, 16) == timeval(0)
        sock.bind(("", PORT))
        sock.listen()
        with pytest.raises(BlockingIOError):
            async with asyncio.timeout(TIMEOUT):
                await sock.accept()


# -- SO_LINGER {1, t} and aclose() ---------------------------------------------------


def test_linger_aclose_waits_for_the_fin_to_be_acknowledged() -> None:
    async def body(a: Stack, b: Stack) -> None:
        client, accepted, _server = await connected_pair(a, b)
        client.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 5))
        await client.sendall(b"x" * 50_000)
        conn = client.protocol_state.conn
        await client.aclose()
        assert client.fileno() == -1
        assert conn.state is TcpState.FIN_WAIT2  # everything, FIN included, acknowledged
        assert conn.snd_una == conn.snd_nxt
        data = b""
        while len(data) < 50_000:
            data += await accepted.recv(65536)
        assert await accepted.recv(10) == b""

    virtual(body)


def test_linger_aclose_gives_up_after_the_linger_time() -> None:
    async def body(a: Stack, b: Stack) -> None:
        loop = asyncio.get_running_loop()
        client, _accepted, _server = await connected_pair(a, b)
        client.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 2))
        a.add_neighbor(B_IP, NOWHERE_MAC)  # from now on nothing reaches B
        conn = client.protocol_state.conn
        start = loop.time()
        await client.aclose()  # returns normally, as Linux's close() does
        assert loop.time() - start == pytest.approx(2.0)
        assert conn.state is TcpState.FIN_WAIT1  # the orphan keeps retransmitting
        assert a.tcp.owners.get(conn) is None

    virtual(body)


def test_close_never_waits_and_async_with_lingers() -> None:
    async def body(a: Stack, b: Stack) -> None:
        loop = asyncio.get_running_loop()
        first, _acc1, _srv1 = await connected_pair(a, b)
        second, _acc2, _srv2 = await connected_pair(a, b, PORT + 1)
        for sock in (first, second):
            sock.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 3))
        a.add_neighbor(B_IP, NOWHERE_MAC)
        start = loop.time()
        first.close()  # synchronous: starts the FIN and returns
        assert first.fileno() == -1
        assert first.protocol_state.conn.state is TcpState.FIN_WAIT1
        await asyncio.sleep(0)
        assert loop.time() == start
        async with second:
            pass  # leaving the block is aclose(): it lingers
        assert loop.time() - start == pytest.approx(3.0)

    virtual(body)


# -- connect(AF_UNSPEC) ----------------------------------------------------------


async def test_connect_af_unspec_aborts_tcp_and_the_socket_is_reusable() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        client, accepted, server = await connected_pair(a, b)
        port = client.getsockname()[1]
        await client.connect(stdlib.AF_UNSPEC)
        assert tcp_state(client) is TcpState.CLOSE
        assert client.getsockopt(SOL_SOCKET, stdlib.SO_ERROR) == errno.ECONNRESET
        # connect() chose the port: it is given back, though getsockname() still
        # shows it (Linux leaves inet_sport alone).
        assert client.getsockname() == ("0.0.0.0", port)
        assert port not in a.tcp.ports.bhash
        with pytest.raises(ConnectionResetError):
            async with asyncio.timeout(TIMEOUT):
                await accepted.recv(10)
        with pytest.raises(OSError) as info:
            client.getpeername()
        assert errno_of(info) == errno.ENOTCONN
        async with asyncio.timeout(TIMEOUT):
            await client.connect((B_IP, PORT))  # connects again, from a new port
            again, peer = await server.accept()
        assert peer == (A_IP, client.getsockname()[1]) and peer[1] != port
        await client.sendall(b"again")
        async with asyncio.timeout(TIMEOUT):
            assert await again.recv(10) == b"again"
        # A listener stops listening and may listen again.
        await server.connect(stdlib.AF_UNSPEC)
        assert server.getsockopt(SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 0
        server.listen()
        assert server.getsockopt(SOL_SOCKET, stdlib.SO_ACCEPTCONN) == 1
        # On a fresh socket it is a no-op.
        fresh = a.socket(AF_INET, SOCK_STREAM)
        await fresh.connect(stdlib.AF_UNSPEC)
        assert fresh.getsockopt(SOL_SOCKET, stdlib.SO_ERROR) == 0


async def test_connect_af_unspec_dissolves_a_udp_association() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        sock = a.socket(AF_INET, SOCK_DGRAM)
        sock.bind(("", 6000))
        await sock.connect((B_IP, 6001))
        stranger = b.socket(AF_INET, SOCK_DGRAM)
        stranger.bind(("", 6002))
        peer = b.socket(AF_INET, SOCK_DGRAM)
        peer.bind(("", 6001))
        await stranger.sendto(b"filtered", (A_IP, 6000))
        await peer.sendto(b"probe", (A_IP, 6000))
        async with asyncio.timeout(TIMEOUT):  # the probe came after the stranger's datagram
            assert await sock.recv(100) == b"probe"
        await sock.connect(stdlib.AF_UNSPEC)
        with pytest.raises(OSError) as info:
            sock.getpeername()
        assert errno_of(info) == errno.ENOTCONN
        assert sock.getsockname() == ("0.0.0.0", 6000)  # bind()'s choice stays
        await stranger.sendto(b"welcome", (A_IP, 6000))
        async with asyncio.timeout(TIMEOUT):
            assert await sock.recvfrom(100) == (b"welcome", (B_IP, 6002))
        with pytest.raises(OSError) as info:
            await sock.send(b"where to?")
        assert errno_of(info) == errno.EDESTADDRREQ


# -- inheritance -------------------------------------------------------------------


async def test_accepted_sockets_inherit_the_listeners_options() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        server = b.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)
        server.setsockopt(SOL_SOCKET, stdlib.SO_RCVBUF, 40000)
        server.setsockopt(SOL_SOCKET, stdlib.SO_KEEPALIVE, 1)
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY, 1)
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE, 77)
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPINTVL, 11)
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_KEEPCNT, 4)
        server.setsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_CONGESTION, b"reno")
        server.bind(("", PORT))
        server.listen()
        server.setsockopt(SOL_SOCKET, stdlib.SO_SNDBUF, 30000)  # after listen(): still inherited
        client = a.socket(AF_INET, SOCK_STREAM)
        async with asyncio.timeout(TIMEOUT):
            await client.connect((B_IP, PORT))
        await eventually(lambda: server.ops.readable(server))
        accepted, _ = await server.accept()
        assert accepted.getblocking()  # O_NONBLOCK is not inherited (accept(2))
        for level, option, value in (
            (SOL_SOCKET, stdlib.SO_RCVBUF, 80000),
            (SOL_SOCKET, stdlib.SO_SNDBUF, 60000),
            (SOL_SOCKET, stdlib.SO_KEEPALIVE, 1),
            (stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY, 1),
            (stdlib.IPPROTO_TCP, stdlib.TCP_KEEPIDLE, 77),
            (stdlib.IPPROTO_TCP, stdlib.TCP_KEEPINTVL, 11),
            (stdlib.IPPROTO_TCP, stdlib.TCP_KEEPCNT, 4),
        ):
            assert accepted.getsockopt(level, option) == value, option
        assert accepted.getsockopt(stdlib.IPPROTO_TCP, stdlib.TCP_CONGESTION, 16) == b"reno".ljust(
            16, b"\0"
        )
        conn = accepted.protocol_state.conn
        # ... and the connection itself was built with them at the SYN (sk_clone_lock).
        assert conn.sndbuf.capacity == 60000
        assert conn.rcvbuf.capacity == 40000
        assert conn.nodelay and conn.keepalive and conn.keepidle == 77.0
        assert conn.cc.name == "reno"


# -- SO_REUSEPORT -------------------------------------------------------------------


async def test_reuseport_spreads_connections_by_four_tuple_hash() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        listeners = []
        for _ in range(4):
            sock = b.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK)
            sock.setsockopt(SOL_SOCKET, stdlib.SO_REUSEPORT, 1)
            sock.bind(("", PORT))
            sock.listen(64)
            listeners.append(sock)
        group = [s.protocol_state.listener for s in listeners]
        assert b.tcp.demux.reuseport_groups[(0, PORT)] == group
        got: dict[int, int] = {}  # client port -> index of the listener that accepted it

        async def connect_from(port: int) -> Socket:
            client = a.socket(AF_INET, SOCK_STREAM)
            client.bind(("", port))
            async with asyncio.timeout(TIMEOUT):
                await client.connect((B_IP, PORT))
            return client

        async def accept_one() -> tuple[int, int]:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    for i, sock in enumerate(listeners):
                        if sock.fileno() == -1:
                            continue
                        try:
                            child, peer = await sock.accept()
                        except BlockingIOError:
                            continue
                        child.close()
                        return i, peer[1]
                    await asyncio.sleep(0.001)

        clients = []
        for port in range(20000, 20040):
            clients.append(await connect_from(port))
            i, peer_port = await accept_one()
            got[peer_port] = i
        assert sorted(set(got.values())) == [0, 1, 2, 3]  # every listener took some
        for port, i in got.items():  # ... exactly the one the 4-tuple hash names
            h = ehashfn(addr(B_IP), PORT, addr(A_IP), port, b.tcp.demux.reuseport_secret)
            assert (h * 4) >> 32 == i
        # The same 4-tuple again (after an abortive close) reaches the same listener.
        first = clients[0]
        first.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
        first.close()
        await eventually(lambda: (addr(A_IP), 20000) not in {
            (k[2], k[3]) for k in b.tcp.demux.connections
        })  # fmt: skip
        await connect_from(20000)
        assert (await accept_one())[0] == got[20000]
        # A listener leaving the group is no longer chosen.
        listeners[3].close()
        assert len(b.tcp.demux.reuseport_groups[(0, PORT)]) == 3
        for port in range(21000, 21012):
            await connect_from(port)
            assert (await accept_one())[0] != 3


async def test_reuseport_hash_secret_is_per_stack_and_follows_the_seed() -> None:
    """Linux keys inet_ehashfn with a random secret; a seeded stack draws the same one."""
    secrets = []
    for seed in (7, 7, 8):
        async with Stack(MemoryWire.pair()[0], address="198.18.0.9/24", seed=seed) as stack:
            secrets.append(stack.tcp.demux.reuseport_secret)
    assert secrets[0] == secrets[1] != secrets[2]
    assert 0 < secrets[0] < 2**32
    async with (
        Stack(MemoryWire.pair()[0], address="198.18.0.9/24") as s1,
        Stack(MemoryWire.pair()[0], address="198.18.0.9/24") as s2,
    ):
        assert s1.tcp.demux.reuseport_secret != s2.tcp.demux.reuseport_secret


async def test_reuseport_needs_the_option_on_every_listener() -> None:
    async with wired_stacks(privileged=False) as (_a, b):
        first = b.socket(AF_INET, SOCK_STREAM)
        first.setsockopt(SOL_SOCKET, stdlib.SO_REUSEPORT, 1)
        first.bind(("", PORT))
        first.listen()
        second = b.socket(AF_INET, SOCK_STREAM)
        with pytest.raises(OSError) as info:
            second.bind(("", PORT))
        assert errno_of(info) == errno.EADDRINUSE


# -- descriptor table -------------------------------------------------------------------


async def test_descriptors_are_the_lowest_free_number_from_three() -> None:
    async with wired_stacks(privileged=False) as (a, _b):
        socks = [a.socket(AF_INET, SOCK_DGRAM) for _ in range(4)]
        assert [s.fileno() for s in socks] == [3, 4, 5, 6]
        socks[1].close()
        socks[2].close()
        assert socks[1].fileno() == -1
        assert a.socket(AF_INET, SOCK_STREAM).fileno() == 4
        assert a.socket(AF_INET, SOCK_STREAM).fileno() == 5
        assert a.socket(AF_INET, SOCK_STREAM).fileno() == 7
        with pytest.raises(OSError) as info:
            socks[1].getsockname()
        assert errno_of(info) == errno.EBADF
