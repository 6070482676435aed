"""Raw IPv4 sockets between two stacks: ICMP copies, IP_HDRINCL, creation errnos.

Stack A is 198.18.0.1, stack B 198.18.0.2 (privileged: raw sockets need the
capability). Each expectation is Linux's (``raw(7)``, ``inet_create``,
``raw_sendmsg``); the differential module checks the creation errnos
against the kernel itself.
"""

from __future__ import annotations

import asyncio
import errno
import socket as stdlib
import struct
from collections.abc import AsyncIterator

import pytest

from aiostack.socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, Socket
from aiostack.socket.options import IP_RECVERR
from aiostack.socket.raw import ICMP_FILTER, SOL_RAW
from aiostack.stack.stack import Stack
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually, fast_arp, wired_stacks

SOCK_RAW = stdlib.SOCK_RAW
IPPROTO_ICMP = stdlib.IPPROTO_ICMP
IPPROTO_RAW = stdlib.IPPROTO_RAW
IPPROTO_UDP = stdlib.IPPROTO_UDP
EXPERIMENTAL = 253  # RFC 3692: for experimentation; no transport of the stack handles it


@pytest.fixture
async def stacks() -> AsyncIterator[tuple[Stack, Stack]]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=True) as pair:
        yield pair


def csum(data: bytes) -> int:
    """RFC 1071, written here independently of aiostack.wire."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def echo_request(ident: int, seq: int, payload: bytes = b"raw ping") -> bytes:
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    check = csum(head + payload)
    return head[:2] + struct.pack("!H", check) + head[4:] + payload


def ip_fields(packet: bytes) -> tuple[int, int, int, int, str, str]:
    """(total length, ident, proto, header checksum ok, src, dst) of an IPv4 header."""
    ihl = (packet[0] & 0xF) * 4
    total, ident = struct.unpack_from("!HH", packet, 2)
    proto = packet[9]
    src = stdlib.inet_ntoa(packet[12:16])
    dst = stdlib.inet_ntoa(packet[16:20])
    return total, ident, proto, int(csum(packet[:ihl]) == 0), src, dst


async def recv_icmp_type(sock: Socket, kind: int) -> tuple[bytes, tuple[str, int] | None]:
    async with asyncio.timeout(TIMEOUT):
        while True:
            data, address = await sock.recvfrom(65535)
            if data[(data[0] & 0xF) * 4] == kind:
                return data, address


async def test_creation_errnos_in_inet_create_order() -> None:
    async with wired_stacks(privileged=False) as (a, _b):
        cases = [
            ((AF_INET, SOCK_RAW, IPPROTO_ICMP), errno.EPERM),
            ((AF_INET, SOCK_RAW, 0), errno.EPROTONOSUPPORT),  # before the capability check
            ((AF_INET, SOCK_RAW, 300), errno.EINVAL),  # >= IPPROTO_MAX, checked first
            ((AF_INET, 5, 0), errno.ESOCKTNOSUPPORT),  # SOCK_SEQPACKET: nobody serves it
            ((AF_INET, SOCK_STREAM, IPPROTO_UDP), errno.EPROTONOSUPPORT),
            ((AF_INET, SOCK_DGRAM, stdlib.IPPROTO_TCP), errno.EPROTONOSUPPORT),
            ((99, SOCK_STREAM, 0), errno.EAFNOSUPPORT),
        ]
        for args, code in cases:
            with pytest.raises(OSError) as info:
                a.socket(*args)
            assert info.value.errno == code, args


async def test_icmp_raw_socket_sees_requests_the_stack_answers(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    watcher = b.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    assert watcher.getsockname() == ("0.0.0.0", IPPROTO_ICMP)
    assert watcher.getsockopt(stdlib.IPPROTO_IP, stdlib.IP_HDRINCL) == 0
    rtt = await a.ping(B_IP)  # B still answers: the raw socket only gets a copy
    assert rtt >= 0
    data, address = await recv_icmp_type(watcher, 8)
    assert address == (A_IP, 0)
    total, _ident, proto, header_ok, src, dst = ip_fields(data)
    assert (total, proto, header_ok, src, dst) == (len(data), IPPROTO_ICMP, 1, A_IP, B_IP)


async def test_icmp_raw_send_gets_the_reply(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    sock = a.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    request = echo_request(0x4242, 7)
    assert await sock.sendto(request, (B_IP, 0)) == len(request)
    data, address = await recv_icmp_type(sock, 0)
    assert address == (B_IP, 0)
    ihl = (data[0] & 0xF) * 4
    reply = data[ihl:]
    assert struct.unpack_from("!HH", reply, 4) == (0x4242, 7)
    assert reply[8:] == b"raw ping"
    assert csum(reply) == 0


async def test_icmp_filter_drops_types_by_bit(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    sock = a.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    sock.setsockopt(SOL_RAW, ICMP_FILTER, 1 << 0)  # no echo replies
    assert sock.getsockopt(SOL_RAW, ICMP_FILTER) == 1
    watcher = b.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    watcher.setsockopt(SOL_RAW, ICMP_FILTER, 0)
    await sock.sendto(echo_request(1, 1), (B_IP, 0))
    await recv_icmp_type(watcher, 8)  # B saw the request ...
    await eventually(lambda: a.counters.IcmpInEchoReps == 1, what="the echo reply at A")
    with pytest.raises(BlockingIOError):  # ... A's socket filtered the reply
        await sock.recv(2048, stdlib.MSG_DONTWAIT)
    udp_raw = a.socket(AF_INET, SOCK_RAW, IPPROTO_UDP)
    with pytest.raises(OSError) as info:
        udp_raw.setsockopt(SOL_RAW, ICMP_FILTER, 0)
    assert info.value.errno == errno.EOPNOTSUPP


async def test_hdrincl_fills_length_checksum_id_and_source(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    receiver = b.socket(AF_INET, SOCK_DGRAM)
    receiver.bind(("", 9000))
    tap = b.socket(AF_INET, SOCK_RAW, IPPROTO_UDP)
    sender = a.socket(AF_INET, SOCK_RAW, IPPROTO_RAW)
    assert sender.getsockopt(stdlib.IPPROTO_IP, stdlib.IP_HDRINCL) == 1  # implied
    payload = b"handmade"
    udp = struct.pack("!HHHH", 4321, 9000, 8 + len(payload), 0) + payload  # no UDP checksum
    # Total length, ID, checksum and source left zero for the stack to fill in.
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, IPPROTO_UDP, 0, bytes(4),
                         stdlib.inet_aton(B_IP))  # fmt: skip
    assert await sender.sendto(header + udp, (B_IP, 0)) == 20 + len(udp)
    async with asyncio.timeout(TIMEOUT):
        data, address = await receiver.recvfrom(100)
        copy, copy_from = await tap.recvfrom(100)
    assert (data, address) == (payload, (A_IP, 4321))
    total, ident, proto, header_ok, src, dst = ip_fields(copy)
    assert (total, proto, header_ok, src, dst) == (20 + len(udp), IPPROTO_UDP, 1, A_IP, B_IP)
    assert ident != 0
    assert copy_from == (A_IP, 0)


async def test_raw_socket_takes_an_unknown_protocol(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    sender = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await sender.sendto(b"first", (B_IP, 0))
    # No raw socket at B yet: protocol unreachable, as for any unknown protocol.
    await eventually(lambda: b.counters.IpInUnknownProtos == 1, what="the unknown protocol drop")
    receiver = b.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await sender.sendto(b"second", (B_IP, 0))
    async with asyncio.timeout(TIMEOUT):
        data, address = await receiver.recvfrom(100)
    assert data[20:] == b"second" and data[9] == EXPERIMENTAL and address == (A_IP, 0)
    assert b.counters.IpInUnknownProtos == 1  # taken by the raw socket: no error this time


async def test_connected_and_bound_raw_sockets_filter_by_address(
    stacks: tuple[Stack, Stack],
) -> None:
    a, b = stacks
    other = b.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    connected = b.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await connected.connect(("198.18.0.50", 9))  # a peer that never sends
    assert connected.getpeername() == ("198.18.0.50", 9)
    assert connected.getsockname() == (B_IP, EXPERIMENTAL)
    bound = b.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    bound.bind((B_IP, 0))
    sender = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await sender.sendto(b"x", (B_IP, 0))
    async with asyncio.timeout(TIMEOUT):
        assert (await bound.recv(100))[20:] == b"x"
        assert (await other.recv(100))[20:] == b"x"
    assert connected.ioctl(0x541B) == 0  # SIOCINQ: nothing from A reached it
    with pytest.raises(OSError) as info:
        connected.bind((B_IP, 0))
    assert info.value.errno == errno.EINVAL  # raw_bind: not CLOSE once connected
    await connected.connect(stdlib.AF_UNSPEC)
    with pytest.raises(OSError) as info:
        connected.getpeername()
    assert info.value.errno == errno.ENOTCONN


async def test_raw_errnos(stacks: tuple[Stack, Stack]) -> None:
    a, _b = stacks
    icmp = a.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    hdrincl = a.socket(AF_INET, SOCK_RAW, IPPROTO_RAW)

    async def code_of(coro: object) -> int:
        with pytest.raises(OSError) as info:
            await coro  # type: ignore[misc]
        assert info.value.errno is not None
        return info.value.errno

    assert await code_of(icmp.send(b"x")) == errno.EDESTADDRREQ
    assert await code_of(icmp.sendto(b"x" * 70000, (B_IP, 0))) == errno.EMSGSIZE
    assert await code_of(icmp.sendto(b"x", ("10.9.9.9", 0))) == errno.ENETUNREACH
    assert await code_of(icmp.sendto(b"x", ("198.18.0.255", 0))) == errno.EACCES
    assert await code_of(icmp.recv(10, stdlib.MSG_DONTWAIT)) == errno.EAGAIN
    assert await code_of(hdrincl.sendto(b"abc", (B_IP, 0))) == errno.EINVAL
    assert await code_of(hdrincl.sendto(b"\x46" + bytes(19), (B_IP, 0))) == errno.EINVAL
    assert await code_of(hdrincl.sendto(b"\x45" + bytes(1600), (B_IP, 0))) == errno.EMSGSIZE
    assert await code_of(icmp.accept()) == errno.EOPNOTSUPP
    for call in (icmp.getpeername, lambda: icmp.shutdown(stdlib.SHUT_WR)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        icmp.listen()
    assert info.value.errno == errno.EOPNOTSUPP
    # The shutdown above still applied: a send now fails with EPIPE (the address checks pass).
    assert await code_of(icmp.sendto(b"x", (B_IP, 0))) == errno.EPIPE
    for kind, proto in ((SOCK_STREAM, 0), (SOCK_DGRAM, 0)):
        sock = a.socket(AF_INET, kind, proto)
        with pytest.raises(OSError) as info:
            sock.setsockopt(stdlib.IPPROTO_IP, stdlib.IP_HDRINCL, 1)
        assert info.value.errno == errno.ENOPROTOOPT
    with pytest.raises(OSError) as info:
        a.socket(AF_INET, SOCK_RAW, 262).bind(("10.1.1.1", 0))
    assert info.value.errno == errno.EADDRNOTAVAIL


async def test_fragmented_datagrams_reach_raw_sockets_reassembled(
    stacks: tuple[Stack, Stack],
) -> None:
    a, b = stacks
    watcher = b.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    sender = a.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
    payload = bytes(range(256)) * 12  # 3072 bytes: three fragments on a 1500-byte MTU
    await sender.sendto(echo_request(9, 9, payload), (B_IP, 0))
    request, _ = await recv_icmp_type(watcher, 8)
    reply, _ = await recv_icmp_type(sender, 0)
    for packet in (request, reply):
        total, _ident, _proto, header_ok, _src, _dst = ip_fields(packet)
        assert (total, header_ok) == (20 + 8 + len(payload), 1)
        assert packet[28:] == payload
    assert b.counters.snapshot()["IpReasmOKs"] == 1


# -- ICMP errors about what a raw socket sent (raw_icmp_error / raw_err) ------------------


class Forger:
    """On B: a raw socket of the probes' protocol (which also keeps B from answering
    "protocol unreachable" itself) and an ICMP one to send the forged errors."""

    def __init__(self, b: Stack) -> None:
        self.listen = b.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
        self.icmp = b.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)


async def answer_next_with_error(forger: Forger, icmp_type: int, code: int) -> None:
    """Answer the next probe B sees with an ICMP error quoting it, as a router would."""
    async with asyncio.timeout(TIMEOUT):
        packet, (source, _) = await forger.listen.recvfrom(2000)
    quote = packet[: (packet[0] & 0xF) * 4 + 8]
    head = struct.pack("!BBHI", icmp_type, code, 0, 0)
    message = head[:2] + struct.pack("!H", csum(head + quote)) + head[4:] + quote
    await forger.icmp.sendto(message, (source, 0))


async def test_raw_socket_errors_follow_raw_err(stacks: tuple[Stack, Stack]) -> None:
    a, b = stacks
    forger = Forger(b)
    connected = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await connected.connect((B_IP, 0))
    other = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await other.connect(("198.18.0.77", 0))  # another peer: the error is not about its traffic
    await connected.send(b"probe")
    await answer_next_with_error(forger, 3, 2)  # protocol unreachable: hard
    await eventually(lambda: connected.ops.readable(connected), what="the error")
    with pytest.raises(OSError) as info:
        await connected.recv(100)
    assert info.value.errno == errno.ENOPROTOOPT
    assert other.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0
    await connected.send(b"probe")
    await answer_next_with_error(forger, 11, 0)  # time exceeded: soft, dropped
    loose = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    await loose.sendto(b"probe", (B_IP, 0))
    await answer_next_with_error(forger, 3, 3)  # hard, but not connected: dropped ...
    # ... for that socket; a raw error names no socket, only addresses, so the connected
    # socket whose peer it quotes takes it, as Linux's raw_icmp_error does.
    await eventually(lambda: connected.ops.readable(connected), what="the error")
    assert connected.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == errno.ECONNREFUSED
    assert other.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0
    told = a.socket(AF_INET, SOCK_RAW, EXPERIMENTAL)
    told.setsockopt(stdlib.IPPROTO_IP, IP_RECVERR, 1)
    await told.sendto(b"probe", (B_IP, 0))
    await answer_next_with_error(forger, 11, 0)  # IP_RECVERR: kept though soft
    await eventually(lambda: told.ops.readable(told), what="the error")
    assert told.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == errno.EHOSTUNREACH
    assert told.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0
    assert connected.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0  # soft: not kept
    assert loose.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_ERROR) == 0
    assert connected.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR) == 1  # INET_PROTOSW_REUSE
