"""ICMP "ping" sockets between two stacks: gating, identifiers, replies, errors.

Stack A is 198.18.0.1, stack B 198.18.0.2. Each expectation is Linux's
(``net/ipv4/ping.c``); ``test_differential.py`` runs the kernel-checkable
ones against the kernel in a namespace of its own. ICMP errors are forged
by a raw socket on B (which is told not to answer echo requests itself),
quoting A's request as a router would.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket as stdlib
import struct
from collections.abc import AsyncIterator

import pytest

from aiostack.core.route import Interface
from aiostack.settings import Settings
from aiostack.socket import AF_INET, SOCK_DGRAM, Socket
from aiostack.socket.options import IP_RECVERR
from aiostack.socket.ping import caller_groups
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

ICMP = stdlib.IPPROTO_ICMP
SOCK_RAW = stdlib.SOCK_RAW
EVERYONE = "0 2147483647"


def settings(**extra: int) -> Settings:
    s = fast_arp(**extra)
    s.set("net.ipv4.ping_group_range", EVERYONE)
    return s


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    async with wired_stacks(settings=(settings(), settings()), privileged=True) as pair:
        yield pair


def csum(data: bytes) -> int:
    """RFC 1071, written here independently of aiostack.wire."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def request(seq: int, payload: bytes = b"hello", ident: int = 0xBEEF, check: int = 0) -> bytes:
    """What a ping program passes: identifier and checksum are the kernel's to fill."""
    return struct.pack("!BBHHH", 8, 0, check, ident, seq) + payload


def ping(stack: Stack) -> Socket:
    return stack.socket(AF_INET, SOCK_DGRAM, ICMP)


async def test_ping_group_range_gates_creation_even_for_the_privileged() -> None:
    # Linux's default (1, 0) is empty: even root gets EACCES (checked against the kernel).
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=True) as (a, _b):
        assert a.settings.ping_group_range == (1, 0)
        with pytest.raises(PermissionError) as info:
            ping(a)
        assert info.value.errno == errno.EACCES
        assert len(a.sockets) == 0  # nothing half-created
        mine = min(caller_groups())
        a.settings.set("net.ipv4.ping_group_range", f"{mine} {mine}")
        ping(a).close()
        outside = max(caller_groups()) + 1
        a.settings.set("net.ipv4.ping_group_range", f"{outside} {outside + 10}")
        with pytest.raises(PermissionError):
            ping(a)
        # The raw capability is not what gates ping sockets.
    async with wired_stacks(settings=(settings(), settings()), privileged=False) as (a, _b):
        sock = ping(a)
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_PROTOCOL) == ICMP
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_TYPE) == SOCK_DGRAM
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) == 1
        sock.close()


async def test_echo_round_trip_fills_identifier_and_checksum(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    raw = b.socket(AF_INET, SOCK_RAW, ICMP)  # sees the request as B received it
    sock = ping(a)
    assert sock.getsockname() == ("0.0.0.0", 0)
    assert await sock.sendto(request(7), (B_IP, 4242)) == 13  # the port is ignored
    ident = sock.getsockname()[1]
    assert ident != 0
    async with asyncio.timeout(TIMEOUT):
        seen, _ = await raw.recvfrom(200)
        reply, source = await sock.recvfrom(200)
    icmp = seen[20:]
    assert struct.unpack("!BBHHH", icmp[:8])[3:] == (ident, 7)
    assert icmp[8:] == b"hello" and csum(icmp) == 0
    assert source == (B_IP, 0)
    kind, code, check, rid, seq = struct.unpack("!BBHHH", reply[:8])
    assert (kind, code, rid, seq, reply[8:]) == (0, 0, ident, 7, b"hello")
    assert csum(reply) == 0 and check != 0
    assert a.counters.IcmpOutEchos >= 1


async def test_autobind_rover_and_explicit_identifiers(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    first, second = ping(a), ping(a)
    await first.sendto(request(1), (B_IP, 0))
    await second.connect((B_IP, 0))  # connect autobinds too
    n = first.getsockname()[1]
    assert second.getsockname() == (A_IP, (n + 1) & 0xFFFF or 1)
    third = ping(a)
    third.bind(("0.0.0.0", 5))
    with pytest.raises(OSError) as info:
        third.bind(("0.0.0.0", 6))  # bound already
    assert info.value.errno == errno.EINVAL
    # SO_REUSEADDR is on from creation: a second socket may share identifier 5 ...
    fourth = ping(a)
    fourth.bind((A_IP, 5))
    # ... unless either turned it off.
    fifth = ping(a)
    fifth.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 0)
    with pytest.raises(OSError) as info:
        fifth.bind(("0.0.0.0", 5))
    assert info.value.errno == errno.EADDRINUSE
    for bad in (("192.0.2.1", 0), ("255.255.255.255", 0), ("198.18.0.255", 0)):
        with pytest.raises(OSError) as info:
            ping(a).bind(bad)
        assert info.value.errno == errno.EADDRNOTAVAIL


async def test_replies_go_to_the_newest_socket_on_the_identifier(
    stacks: tuple[Stack, Stack],
) -> None:
    a, _b = stacks
    old, new, other = ping(a), ping(a), ping(a)
    old.bind(("0.0.0.0", 77))
    new.bind(("0.0.0.0", 77))
    other.bind(("0.0.0.0", 78))
    await old.sendto(request(1, b"from old"), (B_IP, 0))
    async with asyncio.timeout(TIMEOUT):
        reply = await new.recv(100)
    assert reply[8:] == b"from old"
    with pytest.raises(BlockingIOError):
        await old.recv(100, stdlib.MSG_DONTWAIT)
    with pytest.raises(BlockingIOError):
        await other.recv(100, stdlib.MSG_DONTWAIT)


async def test_a_socket_bound_to_another_address_gets_no_reply() -> None:
    async with wired_stacks(settings=(settings(), settings())) as (a, _b):
        a.routes.add_address(Interface.parse("198.18.1.1/24"))
        listener = ping(a)
        listener.bind(("198.18.1.1", 99))
        sender = ping(a)
        sender.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR, 1)
        sender.bind((A_IP, 99))
        await sender.sendto(request(1), (B_IP, 0))
        async with asyncio.timeout(TIMEOUT):
            await sender.recv(100)
        with pytest.raises(BlockingIOError):
            await listener.recv(100, stdlib.MSG_DONTWAIT)


async def test_send_checks_in_ping_v4_sendmsg_order(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    sock = ping(a)
    cases = [
        ((b"\x08\x00\x00",), errno.EINVAL),  # shorter than an ICMP header
        ((request(1)[:0] + b"\x00" * 8,), errno.EINVAL),  # an echo reply is not allowed
        ((b"\x08\x01" + bytes(6),), errno.EINVAL),  # code must be 0
        ((b"\x08" + bytes(70000),), errno.EMSGSIZE),
        ((request(1), stdlib.MSG_OOB), errno.EOPNOTSUPP),
        ((request(1), "10.99.0.1"), errno.ENETUNREACH),
        ((request(1), "198.18.0.255"), errno.EACCES),  # broadcast without SO_BROADCAST
    ]
    for args, expected in cases:
        data = args[0]
        flags = args[1] if len(args) > 1 and isinstance(args[1], int) else 0
        host = args[1] if len(args) > 1 and isinstance(args[1], str) else B_IP
        with pytest.raises(OSError) as info:
            await sock.sendto(data, flags, (host, 0))
        assert info.value.errno == expected, (args, info.value)
    assert sock.getsockname()[1] != 0  # the first failed send autobound it
    with pytest.raises(OSError) as info:
        await sock.send(request(1))
    assert info.value.errno == errno.EDESTADDRREQ
    with pytest.raises(OSError) as info:
        sock.shutdown(stdlib.SHUT_WR)
    assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        await sock.sendto(request(1), (B_IP, 0))
    assert info.value.errno == errno.EPIPE
    with pytest.raises(OSError) as info:
        sock.ioctl(0x541B)
    assert info.value.errno == errno.ENOTTY


async def test_connect_and_disconnect_names(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    sock = ping(a)
    await sock.connect((B_IP, 9))
    ident = sock.getsockname()[1]
    assert sock.getsockname() == (A_IP, ident)
    assert sock.getpeername() == (B_IP, 9)
    await sock.connect(stdlib.AF_UNSPEC)
    assert sock.getsockname() == ("0.0.0.0", 0)  # autobound identifier given back
    with pytest.raises(OSError):
        sock.getpeername()
    bound = ping(a)
    bound.bind((A_IP, 0))
    await bound.connect(stdlib.AF_UNSPEC)
    assert bound.getsockname() == (A_IP, 0)
    fixed = ping(a)
    fixed.bind(("0.0.0.0", 321))
    await fixed.connect((B_IP, 0))
    with pytest.raises(OSError) as info:
        fixed.getpeername()  # connected to port 0: no peer name
    assert info.value.errno == errno.ENOTCONN
    await fixed.connect(stdlib.AF_UNSPEC)
    assert fixed.getsockname() == ("0.0.0.0", 321)


# -- ICMP errors ------------------------------------------------------------------


def forger(b: Stack) -> Socket:
    """A raw socket on B that answers the next echo request with an ICMP error."""
    b.settings.icmp_echo_ignore_all = 1
    raw = b.socket(AF_INET, SOCK_RAW, ICMP)
    raw.setsockopt(255, 1, ~(1 << 8) & 0xFFFFFFFF)  # ICMP_FILTER: echo requests only
    return raw


async def answer_with_error(raw: Socket, icmp_type: int, code: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        packet, (source, _) = await raw.recvfrom(2000)
    quote = packet[: (packet[0] & 0xF) * 4 + 8]
    head = struct.pack("!BBHI", icmp_type, code, 0, 0)
    message = head[:2] + struct.pack("!H", csum(head + quote)) + head[4:] + quote
    await raw.sendto(message, (source, 0))


async def test_hard_error_on_a_connected_socket_is_reported_once(
    stacks: tuple[Stack, Stack],
) -> None:
    a, b = stacks
    raw = forger(b)  # will answer: port unreachable, ECONNREFUSED, hard
    sock = ping(a)
    await sock.connect((B_IP, 0))
    await sock.send(request(1))
    await answer_with_error(raw, 3, 3)
    await eventually(lambda: sock.ops.readable(sock), what="the error")
    with pytest.raises(ConnectionRefusedError):
        await sock.recv(100)
    with pytest.raises(BlockingIOError):  # reported once
        await sock.recv(100, stdlib.MSG_DONTWAIT)
    # Again, read by SO_ERROR this time.
    await sock.send(request(2))
    await answer_with_error(raw, 3, 3)
    await eventually(lambda: sock.ops.readable(sock), what="the error")
    assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == errno.ECONNREFUSED
    assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0


async def test_errors_ignored_unless_connected_and_hard_or_recverr(
    stacks: tuple[Stack, Stack],
) -> None:
    a, b = stacks
    raw = forger(b)
    loose = ping(a)  # not connected: a hard error is dropped
    await loose.sendto(request(1), (B_IP, 0))
    await answer_with_error(raw, 3, 3)
    soft = ping(a)  # connected, but host unreachable is soft
    await soft.connect((B_IP, 0))
    await soft.send(request(2))
    await answer_with_error(raw, 3, 1)
    told = ping(a)  # IP_RECVERR: every error, connected or not
    told.setsockopt(stdlib.IPPROTO_IP, IP_RECVERR, 1)
    await told.sendto(request(3), (B_IP, 0))
    await answer_with_error(raw, 11, 0)  # time exceeded
    await eventually(lambda: told.ops.readable(told), what="the error")
    with pytest.raises(OSError) as info:
        await told.recv(100)
    assert info.value.errno == errno.EHOSTUNREACH
    for sock in (loose, soft):
        assert sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0


async def test_recv_shutdown_and_peek(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    sock = ping(a)
    await sock.sendto(request(1, b"abcdef"), (B_IP, 0))
    await eventually(lambda: sock.ops.readable(sock), what="the reply")
    head, _ = await sock.recvfrom(5, stdlib.MSG_PEEK)
    assert len(head) == 5 and head[0] == 0
    assert (await sock.recv(100))[8:] == b"abcdef"
    with pytest.raises(OSError):
        sock.shutdown(stdlib.SHUT_RD)  # ENOTCONN, but the mask is applied
    assert await sock.recv(100) == b""  # blocking: EOF
    with pytest.raises(BlockingIOError):
        await sock.recv(100, stdlib.MSG_DONTWAIT)


def test_setting_has_linux_name() -> None:
    s = Settings()
    assert s.get("net.ipv4.ping_group_range") == (1, 0)
    s.set("net.ipv4.ping_group_range", "100 200")
    assert s.ping_group_range == (100, 200)
    assert os.getegid() in caller_groups()
