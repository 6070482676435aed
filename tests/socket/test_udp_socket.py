"""UDP sockets between two stacks: every errno path, compared with Linux where it can be.

Two stacks share a MemoryWire: A at 198.18.0.1, B at 198.18.0.2, both
unprivileged (ports below 1024 need privilege) and with fast ARP failure.
Where a behaviour is the kernel's, the same call on a real socket on
127.0.0.1 runs in the same test and the outcomes must match (differential
tests; nothing is sent anywhere but loopback).
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import select
import socket as stdlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from aiostack.settings import Settings
from aiostack.socket import (
    AF_INET,
    IP_RECVERR,
    IPPROTO_IP,
    IPPROTO_UDP,
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
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    SOL_SOCKET,
    Socket,
)
from aiostack.socket.inet import PROTOSW
from aiostack.stack.stack import Stack
from tests.helpers import (
    A_IP,
    ABSENT_IP,
    B_IP,
    TIMEOUT,
    eventually,
    fast_arp,
    ip_of,
    is_ipv4,
    stack_and_peer,
    wired_stacks,
)

Outcome = tuple[str, int | str | None]
BARRIER_PORT = 65000


def outcome(call: Callable[[], object]) -> Outcome:
    """What a call did: ("ok", None), ("OSError-subclass-name", errno) or (type name, message)."""
    try:
        call()
    except OSError as exc:
        return type(exc).__name__, exc.errno
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "ok", None


async def aoutcome(call: Callable[[], Awaitable[object]]) -> Outcome:
    try:
        await call()
    except OSError as exc:
        return type(exc).__name__, exc.errno
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "ok", None


@contextmanager
def kernel_udp(*, bound: bool = True) -> Iterator[stdlib.socket]:
    """A real UDP socket for differential checks, bound to 127.0.0.1 and an ephemeral port.

    Bound first so that nothing it does (sendto autobinds an unbound socket
    to the wildcard address) ever involves an address other than 127.0.0.1.
    ``bound=False`` is for checks of the unbound state that cannot autobind.
    """
    sock = stdlib.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM)
    try:
        if bound:
            sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


def kernel_inq(sock: stdlib.socket) -> int:
    buf = bytearray(4)
    fcntl.ioctl(sock.fileno(), SIOCINQ, buf)
    value: int = struct.unpack("i", buf)[0]
    return value


@dataclass
class Net:
    a: Stack
    b: Stack
    sockets: list[Socket] = field(default_factory=list)
    barrier: tuple[Socket, Socket] | None = None

    def udp(self, stack: Stack, bind: Any = None) -> Socket:
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        if bind is not None:
            sock.bind(bind)
        self.sockets.append(sock)
        return sock


async def settle(net: Net) -> None:
    """A round trip A -> B -> A on barrier sockets: whatever A sent B before has
    been handled by B, and whatever B sent A in answer (an ICMP error) has
    been handled by A's transport layer, queues being first in, first out."""
    if net.barrier is None:
        net.barrier = (net.udp(net.a, ("", BARRIER_PORT)), net.udp(net.b, ("", BARRIER_PORT)))
    near, far = net.barrier
    await near.sendto(b"ping", (B_IP, BARRIER_PORT))
    await recv(far)
    await far.sendto(b"pong", (A_IP, BARRIER_PORT))
    await recv(near)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Net(a, b)


async def recv(sock: Socket, size: int = 65535, flags: int = 0) -> bytes:
    async with asyncio.timeout(TIMEOUT):
        return await sock.recv(size, flags)


async def recvfrom(sock: Socket, size: int = 65535, flags: int = 0) -> tuple[bytes, Any]:
    async with asyncio.timeout(TIMEOUT):
        return await sock.recvfrom(size, flags)


async def queued(sock: Socket, count: int = 1) -> None:
    """Wait until ``count`` datagrams sit in the socket's receive queue."""
    ep = sock.protocol_state
    await eventually(
        lambda: len(ep.queue) >= count,
        what=f"{count} datagram(s) queued",
    )


def mib(stack: Stack, name: str) -> int:
    value: int = stack.statistics()["mib"][name]
    return value


# ---------------------------------------------------------------- socket()


KERNEL_SOCKET_ERRORS = [
    pytest.param(255, SOCK_DGRAM, 0, errno.EAFNOSUPPORT, id="unknown-family"),
    pytest.param(AF_INET, 4, 0, errno.ESOCKTNOSUPPORT, id="SOCK_RDM"),
    pytest.param(AF_INET, SOCK_DGRAM, stdlib.IPPROTO_TCP, errno.EPROTONOSUPPORT, id="dgram-tcp"),
    pytest.param(AF_INET, SOCK_DGRAM, 99, errno.EPROTONOSUPPORT, id="dgram-proto99"),
    pytest.param(AF_INET, 11, 0, errno.EINVAL, id="type-11"),
    pytest.param(AF_INET, 100, 0, errno.EINVAL, id="type-100"),
]


@pytest.mark.parametrize(("family", "kind", "proto", "code"), KERNEL_SOCKET_ERRORS)
async def test_socket_errors_match_linux(
    net: Net, family: int, kind: int, proto: int, code: int
) -> None:
    with pytest.raises(OSError) as info:
        net.a.socket(family, kind, proto)
    assert info.value.errno == code
    with pytest.raises(OSError) as kernel:
        stdlib.socket(family, kind, proto).close()
    assert kernel.value.errno == code


async def test_socket_errors_without_a_kernel_counterpart(net: Net) -> None:
    # IPv6 and SOCK_SEQPACKET (SCTP) exist in Linux but not in aiostack.
    for family, kind, proto, code in [
        (stdlib.AF_INET6, SOCK_DGRAM, 0, errno.EAFNOSUPPORT),
        (stdlib.AF_UNIX, SOCK_DGRAM, 0, errno.EAFNOSUPPORT),
        (AF_INET, stdlib.SOCK_SEQPACKET, 0, errno.ESOCKTNOSUPPORT),
    ]:
        with pytest.raises(OSError) as info:
            net.a.socket(family, kind, proto)
        assert info.value.errno == code
    if SOCK_STREAM in PROTOSW:  # TCP has landed: UDP is still no stream protocol
        with pytest.raises(OSError) as info:
            net.a.socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)
        assert info.value.errno == errno.EPROTONOSUPPORT
    else:
        with pytest.raises(OSError) as info:
            net.a.socket(AF_INET, SOCK_STREAM)
        assert info.value.errno == errno.ESOCKTNOSUPPORT
    assert net.a.sockets == {}  # failed creations leave no descriptor behind


async def test_new_socket_attributes_and_modes(net: Net) -> None:
    for proto in (0, IPPROTO_UDP):
        sock = net.a.socket(AF_INET, SOCK_DGRAM, proto)
        assert (sock.family, sock.type, sock.proto) == (AF_INET, SOCK_DGRAM, IPPROTO_UDP)
        assert sock.getsockopt(SOL_SOCKET, stdlib.SO_TYPE) == SOCK_DGRAM
        assert sock.getsockopt(SOL_SOCKET, stdlib.SO_PROTOCOL) == IPPROTO_UDP
        assert sock.getsockopt(SOL_SOCKET, stdlib.SO_DOMAIN) == AF_INET
        assert sock.getblocking() and sock.gettimeout() is None
        sock.close()
    sock = net.a.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | stdlib.SOCK_CLOEXEC)
    assert sock.type == SOCK_DGRAM
    assert not sock.getblocking() and sock.gettimeout() == 0.0
    with pytest.raises(BlockingIOError) as info:
        await sock.recv(10)
    assert info.value.errno == errno.EAGAIN


# ---------------------------------------------------------------- bind()


async def test_bind_eaddrinuse(net: Net) -> None:
    first = net.udp(net.a, ("", 5000))
    for address in [("", 5000), (A_IP, 5000)]:
        with pytest.raises(OSError) as info:
            net.udp(net.a).bind(address)
        assert info.value.errno == errno.EADDRINUSE
    specific = net.udp(net.a, (A_IP, 5001))
    with pytest.raises(OSError) as info:
        net.udp(net.a).bind(("", 5001))  # the wildcard overlaps every address
    assert info.value.errno == errno.EADDRINUSE
    # The port is free again once its owner closes.
    first.close()
    specific.close()
    net.udp(net.a, ("", 5000))
    net.udp(net.a, ("", 5001))


@pytest.mark.parametrize("reuse", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("where", [("", ""), ("", "local"), ("local", ""), ("local", "local")])
async def test_bind_conflicts_match_linux(
    net: Net, reuse: tuple[bool, bool], where: tuple[str, str]
) -> None:
    def run(make: Callable[[], Any], local: str) -> Outcome:
        first, second = make(), make()
        try:
            for sock, flag in zip((first, second), reuse, strict=True):
                sock.setsockopt(SOL_SOCKET, SO_REUSEADDR, int(flag))
            first.bind((local if where[0] else "", 0))
            port = first.getsockname()[1]
            return outcome(lambda: second.bind((local if where[1] else "", port)))
        finally:
            first.close()
            second.close()

    # Linux's rule for UDP: the same port conflicts when the addresses overlap
    # (the wildcard overlaps everything), unless both sockets set SO_REUSEADDR.
    ours = run(lambda: net.a.socket(AF_INET, SOCK_DGRAM), A_IP)
    assert ours == (("ok", None) if all(reuse) else ("OSError", errno.EADDRINUSE))
    if where == ("local", "local"):  # the kernel is only ever asked about 127.0.0.1
        theirs = run(lambda: stdlib.socket(stdlib.AF_INET, stdlib.SOCK_DGRAM), "127.0.0.1")
        assert ours == theirs


async def test_bind_privileged_port_eacces(net: Net) -> None:
    with pytest.raises(PermissionError) as info:
        net.udp(net.a).bind(("", 80))
    assert info.value.errno == errno.EACCES
    with pytest.raises(PermissionError):
        net.udp(net.a).bind((A_IP, 1023))
    net.udp(net.a, ("", 1024))
    net.udp(net.a, ("", 0))
    # A privileged stack (a root process, like the kernel's CAP_NET_BIND_SERVICE) may.
    async with wired_stacks(privileged=True) as (root, _other):
        sock = root.socket(AF_INET, SOCK_DGRAM)
        sock.bind(("", 80))
        assert sock.getsockname() == ("0.0.0.0", 80)


async def test_bind_eaddrnotavail_and_special_addresses(net: Net) -> None:
    for host in ["198.18.0.99", "192.0.2.1", "127.0.0.1"]:
        with pytest.raises(OSError) as info:
            net.udp(net.a).bind((host, 0))
        assert info.value.errno == errno.EADDRNOTAVAIL
    # Broadcast and multicast addresses may be bound (to receive those datagrams).
    for host in ["198.18.0.255", "255.255.255.255", "224.0.0.251"]:
        sock = net.udp(net.a, (host, 0))
        assert sock.getsockname()[0] == host  # inet_getname shows rcv_saddr


async def test_bind_checks_in_linux_order(net: Net) -> None:
    # EADDRNOTAVAIL before EACCES before EINVAL before EADDRINUSE (inet_bind).
    with pytest.raises(OSError) as info:
        net.udp(net.a).bind(("198.18.0.99", 80))
    assert info.value.errno == errno.EADDRNOTAVAIL
    bound = net.udp(net.a, ("", 6000))
    with pytest.raises(OSError) as info:
        bound.bind(("", 80))
    assert info.value.errno == errno.EACCES
    other = net.udp(net.a, ("", 6001))
    with pytest.raises(OSError) as info:
        other.bind(("", 6000))
    assert info.value.errno == errno.EINVAL


async def test_double_bind_is_einval_like_linux(net: Net) -> None:
    sock = net.udp(net.a, ("", 0))
    port = sock.getsockname()[1]
    with pytest.raises(OSError) as info:
        sock.bind(("", 0))
    assert info.value.errno == errno.EINVAL
    assert sock.getsockname() == ("0.0.0.0", port)
    autobound = net.udp(net.a)
    await autobound.connect((B_IP, 9))  # connect binds an ephemeral port
    with pytest.raises(OSError) as info:
        autobound.bind(("", 0))
    assert info.value.errno == errno.EINVAL
    with kernel_udp() as kernel:  # bound already
        assert outcome(lambda: kernel.bind(("127.0.0.1", 0))) == ("OSError", errno.EINVAL)


async def test_ephemeral_ports_come_from_the_local_range(net: Net) -> None:
    low, high = net.a.settings.ip_local_port_range
    ports = {net.udp(net.a, ("", 0)).getsockname()[1] for _ in range(50)}
    assert len(ports) == 50
    assert all(low <= p <= high for p in ports)


BAD_ADDRESSES: list[Any] = [
    "127.0.0.1",
    ["127.0.0.1", 5],
    ("127.0.0.1",),
    ("127.0.0.1", 1, 2),
    (1, 80),
    (None, 80),
    ("127.0.0.1", "80"),
    ("127.0.0.1", 1.5),
    ("127.0.0.1", None),
    ("127.0.0.1", -1),
    ("127.0.0.1", 65536),
    ("127.0.0.1", 2**70),
    ("127.0.0\0.1", 5),
]


@pytest.mark.parametrize("call", ["bind", "connect", "sendto"])
async def test_bad_addresses_raise_like_the_stdlib(net: Net, call: str) -> None:
    for address in BAD_ADDRESSES:
        ours_sock = net.udp(net.a)
        ours = await aoutcome(_address_call(ours_sock, call, address))
        with kernel_udp() as kernel:
            theirs = outcome(partial(_kernel_address_call, kernel, call, address))
        assert ours == theirs, address
        assert ours[0] in ("TypeError", "OverflowError"), address


def _address_call(sock: Socket, call: str, address: Any) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        if call == "bind":
            sock.bind(address)
        elif call == "connect":
            await sock.connect(address)
        else:
            await sock.sendto(b"", address)

    return run


def _kernel_address_call(sock: stdlib.socket, call: str, address: Any) -> None:
    if call == "bind":
        sock.bind(address)
    elif call == "connect":
        sock.connect(address)
    else:
        sock.sendto(b"", address)


async def test_addresses_the_stdlib_accepts_are_accepted(net: Net) -> None:
    class Port:
        def __index__(self) -> int:
            return 7000

    class Zero:
        def __index__(self) -> int:
            return 0

    server = net.udp(net.b, (B_IP.encode(), 7000))  # bytes host, as the stdlib allows
    client = net.udp(net.a, (bytearray(A_IP.encode()), Port()))
    assert client.getsockname() == (A_IP, 7000)
    await client.sendto(b"hi", (B_IP.encode(), Port()))
    assert await recvfrom(server) == (b"hi", (A_IP, 7000))
    await client.connect((B_IP, True))  # True is port 1, as with the stdlib
    assert client.getpeername() == (B_IP, 1)
    with kernel_udp(bound=False) as kernel:
        kernel.bind((b"127.0.0.1", Zero()))
        kernel.connect(("127.0.0.1", True))
        assert kernel.getpeername() == ("127.0.0.1", 1)


async def test_host_names_are_a_failed_lookup(net: Net) -> None:
    sock = net.udp(net.a)
    for host in ["localhost", "example.invalid", "999.1.1.1", "1.2.3", " 198.18.0.2"]:
        for call in ("bind", "connect", "sendto"):
            with pytest.raises(stdlib.gaierror) as info:
                await _address_call(sock, call, (host, 5))()
            assert info.value.errno == stdlib.EAI_NONAME
    # CPython resolves the host before it checks the port's range.
    with pytest.raises(stdlib.gaierror):
        sock.bind(("no.such.host", 70000))


# ---------------------------------------------------------------- connect() and names


async def test_names_before_and_after_bind_and_connect(net: Net) -> None:
    sock = net.udp(net.a)
    assert sock.getsockname() == ("0.0.0.0", 0)
    with pytest.raises(OSError) as info:
        sock.getpeername()
    assert info.value.errno == errno.ENOTCONN
    await sock.connect((B_IP, 7000))
    host, port = sock.getsockname()
    assert host == A_IP and port != 0  # source address and port chosen by connect
    assert sock.getpeername() == (B_IP, 7000)
    await sock.connect((B_IP, 7001))  # connecting again moves the peer
    assert sock.getpeername() == (B_IP, 7001)
    assert sock.getsockname() == (host, port)
    with kernel_udp(bound=False) as kernel:
        assert kernel.getsockname() == ("0.0.0.0", 0)
        assert outcome(kernel.getpeername) == ("OSError", errno.ENOTCONN)


async def test_connected_socket_hears_only_its_peer(net: Net) -> None:
    listener = net.udp(net.a, ("", 5000))
    good = net.udp(net.b, ("", 6000))
    other = net.udp(net.b, ("", 6001))
    # Queued before connect: kept (Linux does not purge the queue on connect).
    await other.sendto(b"early", (A_IP, 5000))
    await queued(listener)
    await listener.connect((B_IP, 6000))
    await other.sendto(b"stranger", (A_IP, 5000))
    await good.sendto(b"peer", (A_IP, 5000))
    assert await recvfrom(listener) == (b"early", (B_IP, 6001))
    assert await recvfrom(listener) == (b"peer", (B_IP, 6000))
    # The stranger's datagram matched no socket: counted, and answered with
    # a port unreachable that the unconnected sender does not report.
    assert mib(net.a, "UdpNoPorts") == 1
    await settle(net)
    assert mib(net.b, "IcmpInDestUnreachs") == 1
    other.setblocking(False)
    with pytest.raises(BlockingIOError):
        await other.recv(10)
    assert other.getsockopt(SOL_SOCKET, SO_ERROR) == 0


async def test_send_without_peer_is_edestaddrreq_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    ours = await aoutcome(lambda: sock.send(b"x"))
    with kernel_udp() as kernel:
        assert outcome(lambda: kernel.send(b"x")) == ours == ("OSError", errno.EDESTADDRREQ)
    with pytest.raises(OSError) as info:
        await sock.sendall(b"x")
    assert info.value.errno == errno.EDESTADDRREQ


async def test_sendto_port_zero_is_einval_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    ours = await aoutcome(lambda: sock.sendto(b"x", (B_IP, 0)))
    with kernel_udp() as kernel:
        assert outcome(lambda: kernel.sendto(b"x", ("127.0.0.1", 0))) == ours
    assert ours == ("OSError", errno.EINVAL)


async def test_sendto_argument_forms_like_the_stdlib(net: Net) -> None:
    server = net.udp(net.b, ("", 7000))
    sock = net.udp(net.a)
    assert await sock.sendto(b"two args", (B_IP, 7000)) == 8
    assert await sock.sendto(b"three args", 0, (B_IP, 7000)) == 10
    assert await recv(server) == b"two args"
    assert await recv(server) == b"three args"
    with kernel_udp() as kernel:
        for args in [(), ((B_IP, 1), 0, 1)]:
            ours = await aoutcome(lambda a=args: sock.sendto(b"x", *a))  # type: ignore[misc]
            theirs = outcome(lambda a=args: kernel.sendto(b"x", *a))  # type: ignore[misc]
            assert ours == theirs
            assert ours[0] == "TypeError"


async def test_datagram_sizes_and_emsgsize_like_linux(net: Net) -> None:
    server = net.udp(net.b, ("", 7000))
    sock = net.udp(net.a)
    for size in (0, 1, 1472, 1473, 65507):
        data = bytes(i & 0xFF for i in range(size))
        assert await sock.sendto(data, (B_IP, 7000)) == size
        assert await recv(server) == data
    ours = await aoutcome(lambda: sock.sendto(bytes(65508), (B_IP, 7000)))
    await sock.connect((B_IP, 7000))
    assert await aoutcome(lambda: sock.send(bytes(65508))) == ours
    with kernel_udp() as kernel:
        assert outcome(lambda: kernel.sendto(bytes(65508), ("127.0.0.1", 9))) == ours
    assert ours == ("OSError", errno.EMSGSIZE)


async def test_buffer_types_like_the_stdlib(net: Net) -> None:
    server = net.udp(net.b, ("", 7000))
    sock = net.udp(net.a)
    await sock.connect((B_IP, 7000))
    values = array.array("H", [1, 2, 3])
    assert await sock.send(values) == 6  # type: ignore[arg-type]  # bytes, not items
    assert await sock.send(bytearray(b"ba")) == 2
    assert await sock.send(memoryview(b"xmvx")[1:3]) == 2
    await sock.sendall(b"all of it")
    assert await recv(server) == values.tobytes()
    assert await recv(server) == b"ba"
    assert await recv(server) == b"mv"
    assert await recv(server) == b"all of it"


# ---------------------------------------------------------------- shutdown()


async def test_shutdown_wr_then_send_is_epipe_like_linux(net: Net) -> None:
    server = net.udp(net.b, ("", 7000))
    sock = net.udp(net.a)
    await sock.connect((B_IP, 7000))
    sock.shutdown(SHUT_WR)
    ours = [
        await aoutcome(lambda: sock.send(b"x")),
        await aoutcome(lambda: sock.sendto(b"x", (B_IP, 7000))),
    ]
    assert ours == [("BrokenPipeError", errno.EPIPE)] * 2
    # Receiving still works.
    await server.sendto(b"still open", sock.getsockname())
    assert await recv(sock) == b"still open"
    with kernel_udp() as peer, kernel_udp() as kernel:
        kernel.connect(peer.getsockname())
        kernel.shutdown(stdlib.SHUT_WR)
        theirs = [
            outcome(lambda: kernel.send(b"x")),
            outcome(lambda: kernel.sendto(b"x", peer.getsockname())),
        ]
    assert ours == theirs


async def test_shutdown_rd_then_recv_is_eof_after_the_queue_like_linux(net: Net) -> None:
    server = net.udp(net.b, ("", 7000))
    sock = net.udp(net.a, ("", 5000))
    await sock.connect((B_IP, 7000))
    await server.sendto(b"queued", (A_IP, 5000))
    await queued(sock)
    sock.shutdown(SHUT_RD)
    ours = [await recv(sock), await recv(sock)]
    # Non-blocking: the kernel never reaches the shutdown check, so EAGAIN.
    ours_nb = await aoutcome(lambda: sock.recv(10, MSG_DONTWAIT))
    # Data arriving later is still delivered, then EOF again.
    await server.sendto(b"later", (A_IP, 5000))
    await queued(sock)
    ours += [await recv(sock), await recv(sock)]
    # Sending is unaffected.
    await sock.send(b"reply")
    assert await recv(server) == b"reply"
    assert ours == [b"queued", b"", b"later", b""]
    assert ours_nb == ("BlockingIOError", errno.EAGAIN)
    with kernel_udp() as peer, kernel_udp() as kernel:
        kernel.connect(peer.getsockname())
        peer.sendto(b"queued", kernel.getsockname())
        await _kernel_wait_readable(kernel)
        kernel.shutdown(stdlib.SHUT_RD)
        theirs = [kernel.recv(10), kernel.recv(10)]
        assert outcome(lambda: kernel.recv(10, MSG_DONTWAIT)) == ours_nb
    assert theirs == ours[:2]


async def _kernel_wait_readable(sock: stdlib.socket) -> None:
    await eventually(lambda: bool(select.select([sock], [], [], 0)[0]), what="kernel data")


async def test_shutdown_rd_wakes_a_waiting_receiver(net: Net) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 7000))
    waiting = asyncio.create_task(sock.recv(100))
    await eventually(lambda: bool(sock.readers), what="the receiver to wait")
    sock.shutdown(SHUT_RD)
    async with asyncio.timeout(TIMEOUT):
        assert await waiting == b""


async def test_shutdown_unconnected_is_enotconn_but_still_applies_like_linux(net: Net) -> None:
    net.udp(net.b, ("", 7000))
    sock = net.udp(net.a)
    ours = [outcome(lambda: sock.shutdown(SHUT_WR))]
    ours.append(await aoutcome(lambda: sock.sendto(b"x", (B_IP, 7000))))
    with kernel_udp() as kernel:
        theirs = [outcome(lambda: kernel.shutdown(stdlib.SHUT_WR))]
        theirs.append(outcome(lambda: kernel.sendto(b"x", ("127.0.0.1", 9))))
    assert ours == theirs == [("OSError", errno.ENOTCONN), ("BrokenPipeError", errno.EPIPE)]
    await net.a.ping(B_IP, timeout=TIMEOUT)  # a barrier: anything sent has arrived
    assert mib(net.b, "IpInReceives") == 1  # the ping only


@pytest.mark.parametrize("how", [3, -1, 100])
async def test_shutdown_invalid_how_is_einval_like_linux(net: Net, how: int) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 7000))
    ours = outcome(lambda: sock.shutdown(how))
    with kernel_udp() as kernel:
        kernel.connect(("127.0.0.1", 9))
        assert outcome(lambda: kernel.shutdown(how)) == ours == ("OSError", errno.EINVAL)
    await sock.send(b"unaffected")  # nothing was shut down


async def test_shutdown_rdwr(net: Net) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 7000))
    sock.shutdown(SHUT_RDWR)
    assert await recv(sock) == b""
    with pytest.raises(BrokenPipeError):
        await sock.send(b"x")


# ---------------------------------------------------------------- receiving


async def test_nonblocking_recv_is_eagain(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    modes: list[Callable[[], None]] = [
        partial(sock.setblocking, False),
        partial(sock.settimeout, 0),
    ]
    for make_nonblocking in modes:
        make_nonblocking()
        assert not sock.getblocking()
        calls: list[Callable[[], Awaitable[object]]] = [
            partial(sock.recv, 10),
            partial(sock.recvfrom, 10),
        ]
        for call in calls:
            with pytest.raises(BlockingIOError) as info:
                await call()
            assert info.value.errno == errno.EAGAIN
        sock.setblocking(True)
    with kernel_udp() as kernel:
        kernel.setblocking(False)
        assert outcome(lambda: kernel.recv(10)) == ("BlockingIOError", errno.EAGAIN)


async def test_msg_dontwait_on_a_blocking_socket(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    with pytest.raises(BlockingIOError):
        await sock.recv(10, MSG_DONTWAIT)
    assert sock.getblocking()  # the flag is for one call only
    peer = net.udp(net.b)
    await peer.sendto(b"now there is", (A_IP, 5000))
    await queued(sock)
    assert await sock.recv(100, MSG_DONTWAIT) == b"now there is"


async def test_msg_peek_leaves_the_datagram_queued(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    peer = net.udp(net.b, ("", 6000))
    await peer.sendto(b"first datagram", (A_IP, 5000))
    await peer.sendto(b"second", (A_IP, 5000))
    await queued(sock, 2)
    assert await recvfrom(sock, 100, MSG_PEEK) == (b"first datagram", (B_IP, 6000))
    assert await recv(sock, 5, MSG_PEEK) == b"first"  # truncated copy, datagram intact
    assert sock.ioctl(SIOCINQ) == len(b"first datagram")
    assert await recv(sock, 100) == b"first datagram"
    assert await recv(sock, 100, MSG_PEEK | MSG_DONTWAIT) == b"second"
    assert await recv(sock, 100) == b"second"


async def test_truncation_to_bufsize_discards_the_rest(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    peer = net.udp(net.b)
    for word in (b"0123456789", b"abcdefghij", b"ABCDEFGHIJ", b"klmnopqrst", b"next"):
        await peer.sendto(word, (A_IP, 5000))
    await queued(sock, 5)
    assert await recv(sock, 3) == b"012"
    buffer = bytearray(10)
    assert await sock.recv_into(buffer, 4) == 4 and buffer[:4] == b"abcd"
    view = memoryview(bytearray(2))
    nbytes, source = await sock.recvfrom_into(view)
    assert source is not None
    assert (nbytes, bytes(view), source[0]) == (2, b"AB", B_IP)
    # recvfrom(0) consumes a datagram (a real recvfrom(2) call), recv(0) does not.
    assert await recv(sock, 0) == b""
    assert await recvfrom(sock, 0) == (b"", (B_IP, peer.getsockname()[1]))
    assert await recv(sock, 100) == b"next"


async def test_zero_length_reads_like_the_stdlib(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    peer = net.udp(net.b)
    async with asyncio.timeout(TIMEOUT):  # the queue is empty: these must not wait
        ours = [await recv(sock, 0), await sock.recv_into(bytearray(0))]
    for word in (b"one", b"two", b"three"):
        await peer.sendto(word, (A_IP, 5000))
    await queued(sock, 3)
    ours += [await recv(sock, 0), (await recvfrom(sock, 0))[0], await recv(sock, 100)]
    with kernel_udp() as kernel, kernel_udp() as sender:
        kernel.settimeout(TIMEOUT)
        theirs: list[object] = [kernel.recv(0), kernel.recv_into(bytearray(0))]
        for word in (b"one", b"two", b"three"):
            sender.sendto(word, kernel.getsockname())
        await _kernel_wait_readable(kernel)
        theirs += [kernel.recv(0), kernel.recvfrom(0)[0], kernel.recv(100)]
    assert ours == theirs == [b"", 0, b"", b"", b"two"]


async def test_recv_argument_errors(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    with pytest.raises(ValueError):
        await sock.recv(-1)
    with pytest.raises(ValueError):
        await sock.recvfrom(-1)
    with pytest.raises(ValueError):
        await sock.recv_into(bytearray(2), 5)
    with pytest.raises(ValueError):
        sock.settimeout(-1)


async def test_settimeout_raises_timeouterror(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    sock.settimeout(0.05)
    assert sock.gettimeout() == 0.05 and sock.getblocking()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError) as info:
        await sock.recv(10)
    assert loop.time() - start >= 0.04
    assert isinstance(info.value, stdlib.timeout)
    assert str(info.value) == "timed out"  # the stdlib's message
    with kernel_udp() as kernel:
        kernel.settimeout(0.01)
        assert outcome(lambda: kernel.recv(10)) == ("TimeoutError", None)
    # The timeout leaves the socket usable.
    peer = net.udp(net.b)
    await peer.sendto(b"after", (A_IP, 5000))
    assert await sock.recv(10) == b"after"


async def test_cancelled_recv_loses_no_datagram(net: Net) -> None:
    # Cancel a waiting recv at every moment around a datagram's arrival:
    # each datagram is returned exactly once, by the cancelled call if it
    # finished first or by the next call.
    sock = net.udp(net.a, ("", 5000))
    peer = net.udp(net.b)
    got: list[bytes] = []
    count = 40
    for i in range(count):
        waiting = asyncio.create_task(sock.recv(100))
        # (A datagram left over from the last round completes it at once.)
        await eventually(partial(_waiting_or_done, sock, waiting), what="recv to wait")
        await peer.sendto(str(i).encode(), (A_IP, 5000))
        for _ in range(i % 8):  # let the datagram get some way along the path
            await asyncio.sleep(0)
        waiting.cancel()
        with suppress(asyncio.CancelledError):
            got.append(await waiting)
    sock.setblocking(False)
    await eventually(lambda: mib(net.a, "UdpInDatagrams") == count, what="all datagrams")
    with suppress(BlockingIOError):
        while True:
            got.append(await sock.recv(100))
    assert got == [str(i).encode() for i in range(count)]


def _waiting_or_done(sock: Socket, task: asyncio.Task[bytes]) -> bool:
    return bool(sock.readers) or task.done()


async def test_close_wakes_a_waiting_receiver_with_ebadf(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    waiting = asyncio.create_task(sock.recvfrom(100))
    await eventually(lambda: bool(sock.readers), what="the receiver to wait")
    sock.close()
    with pytest.raises(OSError) as info:
        await asyncio.wait_for(waiting, TIMEOUT)
    assert info.value.errno == errno.EBADF


# ---------------------------------------------------------------- options and buffers


def _host_sysctl(name: str) -> int | None:
    try:
        return int(Path(f"/proc/sys/net/core/{name}").read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize("option", [SO_RCVBUF, SO_SNDBUF], ids=["SO_RCVBUF", "SO_SNDBUF"])
async def test_buffer_sizes_are_doubled_and_clamped_like_linux(option: int) -> None:
    rmem_max, wmem_max = _host_sysctl("rmem_max"), _host_sysctl("wmem_max")
    if rmem_max is None or wmem_max is None:
        pytest.skip("no /proc/sys/net/core to compare with")
    # The stack gets the host's limits so that the outcomes can be compared.
    settings = Settings(rmem_max=rmem_max, wmem_max=wmem_max)
    async with wired_stacks(settings=(settings, None)) as (a, _b):
        for value in (0, 1, 1000, 2304, 4096, 100_000, 10**9, -5, 2**31 - 1):
            ours = a.socket(AF_INET, SOCK_DGRAM)
            ours.setsockopt(SOL_SOCKET, option, value)
            with kernel_udp() as kernel:
                kernel.setsockopt(stdlib.SOL_SOCKET, option, value)
                expected = kernel.getsockopt(stdlib.SOL_SOCKET, option)
            assert ours.getsockopt(SOL_SOCKET, option) == expected, value
            ours.close()
    async with wired_stacks() as (a, _b):
        sock = a.socket(AF_INET, SOCK_DGRAM)
        sock.setsockopt(SOL_SOCKET, option, 4096)
        assert sock.getsockopt(SOL_SOCKET, option) == 8192
        sock.setsockopt(SOL_SOCKET, option, struct.pack("i", 10_000))  # C int bytes
        assert sock.getsockopt(SOL_SOCKET, option) == 20_000


async def test_rcvbuf_overflow_drops_and_counts_while_the_queue_stays_bounded(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 4096)
    limit = sock.getsockopt(SOL_SOCKET, SO_RCVBUF)
    assert limit == 8192
    peer = net.udp(net.b)
    sent = 100
    for i in range(sent):
        await peer.sendto(i.to_bytes(2, "big") * 500, (A_IP, 5000))
    await eventually(
        lambda: mib(net.a, "UdpInDatagrams") + mib(net.a, "UdpRcvbufErrors") == sent,
        what="every datagram delivered or dropped",
    )
    delivered, dropped = mib(net.a, "UdpInDatagrams"), mib(net.a, "UdpRcvbufErrors")
    assert dropped > 0 and delivered > 0
    assert mib(net.a, "UdpInErrors") == dropped
    queue = sock.protocol_state.queue
    assert len(queue) == delivered
    # Bounded: at most one datagram beyond the limit is ever admitted.
    assert sum(len(data) for data, _ in queue) <= limit + 1000
    sock.setblocking(False)
    got = []
    with suppress(BlockingIOError):
        while True:
            got.append(await sock.recv(2000))
    # The oldest are kept, in order; the overflow is the tail.
    assert got == [i.to_bytes(2, "big") * 500 for i in range(delivered)]
    # With room again, delivery resumes.
    await peer.sendto(b"room again", (A_IP, 5000))
    sock.setblocking(True)
    assert await recv(sock) == b"room again"


async def test_options_errors_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    with kernel_udp() as kernel:
        calls: list[tuple[Callable[[], object], Callable[[], object]]] = [
            (lambda: sock.getsockopt(SOL_SOCKET, 999), lambda: kernel.getsockopt(1, 999)),
            (lambda: sock.setsockopt(999, 1, 1), lambda: kernel.setsockopt(999, 1, 1)),
            (
                lambda: sock.setsockopt(IPPROTO_IP, stdlib.IP_TTL, 0),
                lambda: kernel.setsockopt(IPPROTO_IP, stdlib.IP_TTL, 0),
            ),
            (
                lambda: sock.setsockopt(IPPROTO_IP, stdlib.IP_TTL, 256),
                lambda: kernel.setsockopt(IPPROTO_IP, stdlib.IP_TTL, 256),
            ),
            (
                lambda: sock.setsockopt(SOL_SOCKET, stdlib.SO_BROADCAST, b"\x01"),
                lambda: kernel.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_BROADCAST, b"\x01"),
            ),
        ]
        for ours, theirs in calls:
            assert outcome(ours) == outcome(theirs)
            assert outcome(ours)[0] == "OSError"
        sock.setsockopt(IPPROTO_IP, stdlib.IP_TTL, -1)
        kernel.setsockopt(IPPROTO_IP, stdlib.IP_TTL, -1)
        assert sock.getsockopt(IPPROTO_IP, stdlib.IP_TTL) == 64
        assert kernel.getsockopt(IPPROTO_IP, stdlib.IP_TTL) == 64


async def test_ttl_and_tos_show_on_the_wire() -> None:
    async with stack_and_peer() as (stack, peer):
        sock = stack.socket(AF_INET, SOCK_DGRAM)
        sock.setsockopt(IPPROTO_IP, stdlib.IP_TTL, 5)
        sock.setsockopt(IPPROTO_IP, stdlib.IP_TOS, 0x28)
        since = peer.mark()
        await sock.sendto(b"ttl", (A_IP, 9))
        frame = await peer.expect(
            lambda f: is_ipv4(f) and ip_of(f).proto == 17, since=since, what="the datagram"
        )
        packet = ip_of(frame)
        assert (packet.ttl, packet.tos) == (5, 0x28)
        assert packet.df  # IP_PMTUDISC_WANT: DF on what fits


# ---------------------------------------------------------------- errors reported to sockets


async def test_so_error_is_read_and_clear_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 9))  # nobody there
    await sock.send(b"knock")
    await settle(net)
    assert mib(net.a, "IcmpInDestUnreachs") == 1
    ours = [sock.getsockopt(SOL_SOCKET, SO_ERROR), sock.getsockopt(SOL_SOCKET, SO_ERROR)]
    with kernel_udp() as closed, kernel_udp() as kernel:
        address = closed.getsockname()
        closed.close()
        kernel.connect(address)
        kernel.send(b"knock")
        await _kernel_wait_readable(kernel)  # a pending error makes it readable
        opt = stdlib.SOL_SOCKET
        theirs = [kernel.getsockopt(opt, SO_ERROR), kernel.getsockopt(opt, SO_ERROR)]
    assert ours == theirs == [errno.ECONNREFUSED, 0]


async def test_econnrefused_is_reported_once_then_cleared_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 9))
    await sock.send(b"knock")
    await settle(net)
    with pytest.raises(ConnectionRefusedError):
        await recv(sock)
    ours = [await aoutcome(lambda: sock.recv(10, MSG_DONTWAIT))]
    # Reported by send just the same, and then cleared.
    await sock.send(b"again")
    await settle(net)
    assert mib(net.a, "IcmpInDestUnreachs") == 2
    ours.append(await aoutcome(lambda: sock.send(b"x")))
    ours.append(await aoutcome(lambda: sock.send(b"x")))
    assert ours == [
        ("BlockingIOError", errno.EAGAIN),
        ("ConnectionRefusedError", errno.ECONNREFUSED),
        ("ok", None),
    ]


async def test_waiting_receiver_is_woken_by_the_error(net: Net) -> None:
    sock = net.udp(net.a)
    await sock.connect((B_IP, 9))
    waiting = asyncio.create_task(sock.recv(100))
    await eventually(lambda: bool(sock.readers), what="the receiver to wait")
    await sock.send(b"knock")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(waiting, TIMEOUT)


async def test_unconnected_socket_sees_icmp_errors_only_with_ip_recverr(net: Net) -> None:
    sock = net.udp(net.a)
    sock.setblocking(False)
    await sock.sendto(b"knock", (B_IP, 9))
    await settle(net)
    assert mib(net.a, "IcmpInDestUnreachs") == 1
    assert await aoutcome(lambda: sock.recv(10)) == ("BlockingIOError", errno.EAGAIN)
    assert sock.getsockopt(SOL_SOCKET, SO_ERROR) == 0
    sock.setsockopt(IPPROTO_IP, IP_RECVERR, 1)
    assert sock.getsockopt(IPPROTO_IP, IP_RECVERR) == 1
    await sock.sendto(b"knock", (B_IP, 9))
    await settle(net)
    assert mib(net.a, "IcmpInDestUnreachs") == 2
    assert await aoutcome(lambda: sock.recv(10)) == ("ConnectionRefusedError", errno.ECONNREFUSED)
    assert await aoutcome(lambda: sock.recv(10)) == ("BlockingIOError", errno.EAGAIN)


async def test_ip_recverr_reports_ehostunreach_from_arp_failure(net: Net) -> None:
    plain = net.udp(net.a)
    plain.setblocking(False)
    connected = net.udp(net.a)
    connected.setblocking(False)
    await connected.connect((ABSENT_IP, 9))
    recverr = net.udp(net.a)
    recverr.setsockopt(IPPROTO_IP, IP_RECVERR, 1)
    waiting = asyncio.create_task(recverr.recvfrom(100))
    await eventually(lambda: bool(recverr.readers), what="the receiver to wait")
    await plain.sendto(b"anyone?", (ABSENT_IP, 9))
    await connected.send(b"anyone?")
    await recverr.sendto(b"anyone?", (ABSENT_IP, 9))
    with pytest.raises(OSError) as info:
        await asyncio.wait_for(waiting, TIMEOUT)
    assert info.value.errno == errno.EHOSTUNREACH
    assert mib(net.a, "ArpResolveFailures") == 1
    # Host unreachable is a soft error: without IP_RECVERR nobody hears of it,
    # connected or not (Linux: icmp_err_convert[ICMP_HOST_UNREACH].fatal == 0).
    for sock in (plain, connected):
        assert await aoutcome(partial(sock.recv, 10)) == ("BlockingIOError", errno.EAGAIN)
        assert sock.getsockopt(SOL_SOCKET, SO_ERROR) == 0


# ---------------------------------------------------------------- ioctl, fileno, close


async def test_siocinq_is_the_size_of_the_next_datagram_like_linux(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    peer = net.udp(net.b)
    ours = [sock.ioctl(SIOCINQ)]
    await peer.sendto(b"x" * 10, (A_IP, 5000))
    await peer.sendto(b"y" * 20, (A_IP, 5000))
    await queued(sock, 2)
    ours.append(sock.ioctl(SIOCINQ))
    await recv(sock, 100)
    ours.append(sock.ioctl(SIOCINQ))
    assert sock.ioctl(SIOCOUTQ) == 0
    with kernel_udp() as kernel, kernel_udp() as sender:
        theirs = [kernel_inq(kernel)]
        sender.sendto(b"x" * 10, kernel.getsockname())
        sender.sendto(b"y" * 20, kernel.getsockname())
        await _kernel_wait_readable(kernel)
        theirs.append(kernel_inq(kernel))
        kernel.recv(100)
        theirs.append(kernel_inq(kernel))
    assert ours == theirs == [0, 10, 20]
    with pytest.raises(OSError) as info:
        sock.ioctl(0x1234)
    assert info.value.errno == errno.ENOTTY


async def test_fileno_is_the_lowest_free_from_3() -> None:
    async with wired_stacks() as (a, b):
        socks = [a.socket(AF_INET, SOCK_DGRAM) for _ in range(3)]
        assert [s.fileno() for s in socks] == [3, 4, 5]
        assert b.socket(AF_INET, SOCK_DGRAM).fileno() == 3  # per stack, like per process
        socks[1].close()
        assert socks[1].fileno() == -1
        assert a.socket(AF_INET, SOCK_DGRAM).fileno() == 4
        assert a.socket(AF_INET, SOCK_DGRAM).fileno() == 6
        with pytest.raises(OSError):  # a failed socket() takes no number
            a.socket(AF_INET, 100)
        assert a.socket(AF_INET, SOCK_DGRAM).fileno() == 7


async def test_close_is_idempotent_and_everything_after_is_ebadf(net: Net) -> None:
    sock = net.udp(net.a, ("", 5000))
    sock.close()
    sock.close()
    assert sock.fileno() == -1
    calls: list[Callable[[], object]] = [
        lambda: sock.bind(("", 0)),
        lambda: sock.listen(),
        sock.getsockname,
        sock.getpeername,
        lambda: sock.shutdown(SHUT_RD),
        lambda: sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 1),
        lambda: sock.getsockopt(SOL_SOCKET, SO_RCVBUF),
        lambda: sock.ioctl(SIOCINQ),
    ]
    for call in calls:
        assert outcome(call) == ("OSError", errno.EBADF)
    acalls: list[Callable[[], Awaitable[object]]] = [
        lambda: sock.connect((B_IP, 9)),
        lambda: sock.send(b"x"),
        lambda: sock.sendto(b"x", (B_IP, 9)),
        lambda: sock.sendall(b"x"),
        lambda: sock.recv(10),
        lambda: sock.recvfrom(10),
        lambda: sock.recv_into(bytearray(10)),
        lambda: sock.recvfrom_into(bytearray(10)),
        lambda: sock.accept(),
    ]
    for acall in acalls:
        assert await aoutcome(acall) == ("OSError", errno.EBADF)
    with kernel_udp() as kernel:
        kernel.close()
        assert outcome(kernel.getsockname) == ("OSError", errno.EBADF)
        assert kernel.fileno() == -1
    # The port is free again.
    net.udp(net.a, ("", 5000))


async def test_async_with_closes(net: Net) -> None:
    async with net.a.socket(AF_INET, SOCK_DGRAM) as sock:
        sock.bind(("", 5000))
    assert sock.fileno() == -1
    net.udp(net.a, ("", 5000))


async def test_listen_and_accept_are_eopnotsupp_like_linux(net: Net) -> None:
    sock = net.udp(net.a)
    ours = [outcome(sock.listen), await aoutcome(sock.accept)]
    with kernel_udp() as kernel:
        theirs = [outcome(kernel.listen), outcome(kernel.accept)]
    assert ours == theirs == [("OSError", errno.EOPNOTSUPP)] * 2


async def test_echo_server_round_trip(net: Net) -> None:
    # What a user writes first: a server that echoes, a client that asks.
    server = net.udp(net.b, ("", 7007))

    async def serve() -> None:
        for _ in range(3):
            data, address = await server.recvfrom(2048)
            await server.sendto(data[::-1], address)

    task = asyncio.create_task(serve())
    client = net.udp(net.a)
    await client.connect((B_IP, 7007))
    for word in (b"abc", b"hello world", bytes(1400)):
        await client.send(word)
        assert await recv(client) == word[::-1]
    await asyncio.wait_for(task, TIMEOUT)
