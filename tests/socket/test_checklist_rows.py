"""Rows of ``ref/linux-socket-semantics.md`` that no other socket test covered.

Audit (issue 4): every errno row of the checklist now has a test; the ones
that had none are here. The kernel cannot reach some of these states
deterministically on loopback (SYN-SENT lasts microseconds there), so they
are checked against the stack alone; rows the kernel can show are in
``test_differential.py``. Rows the Python API cannot express at all are
listed in docs/guide.md (a sockaddr shorter than sockaddr_in, or of another
family, on an AF_INET socket: the stdlib always builds an AF_INET one).
"""

from __future__ import annotations

import asyncio
import errno
import socket as stdlib
import struct

import pytest

from aiostack.core.tcp.state import TcpState
from aiostack.socket import AF_INET, SOCK_STREAM, Socket
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from aiostack.testing.virtual_time import run_virtual
from tests.helpers import (
    A_IP,
    B_IP,
    ETH_IPV4,
    MAC_B,
    PEER_MAC,
    PROTO_TCP,
    TIMEOUT,
    _pseudo_sum,
    checksum,
    ether,
    eventually,
    fast_arp,
    ip_bytes,
    ipv4,
    stack_and_peer,
    wired_stacks,
)

SILENT_IP = "198.18.0.3"
NOWHERE_MAC = "02:00:00:00:00:99"
PORT = 7100


def tcp_state(sock: Socket) -> TcpState:
    st = sock.protocol_state
    assert isinstance(st, TcpSock)
    return st.tcp_state()


def code(info: pytest.ExceptionInfo[OSError]) -> int | None:
    return info.value.errno


async def connecting(stack: Stack) -> Socket:
    """A socket in SYN-SENT towards an address whose frames go nowhere."""
    stack.add_neighbor(SILENT_IP, NOWHERE_MAC)
    sock = stack.socket(AF_INET, SOCK_STREAM)
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        await sock.connect((SILENT_IP, PORT))
    assert tcp_state(sock) is TcpState.SYN_SENT
    return sock


async def test_connect_to_broadcast_or_multicast_is_enetunreach() -> None:
    async with wired_stacks(privileged=False) as (a, _b):
        for target in ("198.18.0.255", "255.255.255.255", "224.0.0.1"):
            sock = a.socket(AF_INET, SOCK_STREAM)
            with pytest.raises(OSError) as info:
                await sock.connect((target, PORT))
            assert code(info) == errno.ENETUNREACH, target
            assert sock.getsockname() == ("0.0.0.0", 0)  # nothing was bound


async def test_syn_sent_rows_listen_getpeername_shutdown() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, _b):
        sock = await connecting(a)
        with pytest.raises(OSError) as info:
            sock.listen()  # SS_CONNECTING: EINVAL
        assert code(info) == errno.EINVAL
        with pytest.raises(OSError) as info:
            sock.getpeername()  # no peer until synchronised
        assert code(info) == errno.ENOTCONN
        resets = a.counters.TcpOutRsts
        sock.shutdown(stdlib.SHUT_WR)  # SYN-SENT: disconnect, without an RST
        assert tcp_state(sock) is TcpState.CLOSE
        assert a.counters.TcpOutRsts == resets
        with pytest.raises(OSError) as info:
            await sock.recv(10)
        assert code(info) == errno.ENOTCONN


def test_syn_retries_exhausted_is_etimedout() -> None:
    async def main() -> None:
        async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, _b):
            a.add_neighbor(SILENT_IP, NOWHERE_MAC)
            sock = a.socket(AF_INET, SOCK_STREAM)
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(TimeoutError) as info:
                await sock.connect((SILENT_IP, PORT))
            assert code(info) == errno.ETIMEDOUT  # the connection's, not a socket timeout
            # tcp_syn_retries=6 plus tcp_syn_linear_timeouts=4 (Linux 6.5+):
            # five 1 s waits, then 2 + 4 + ... + 32 s, then the last 64 s wait.
            assert loop.time() - start == pytest.approx(131.0, abs=1.0)

    run_virtual(main())


async def test_waiting_accept_fails_with_einval_when_the_listener_shuts_down() -> None:
    async with wired_stacks(privileged=False) as (_a, b):
        server = b.socket(AF_INET, SOCK_STREAM)
        server.bind(("", PORT))
        server.listen()
        waiting = asyncio.create_task(server.accept())
        await eventually(lambda: bool(server.readers))
        server.shutdown(stdlib.SHUT_RD)
        with pytest.raises(OSError) as info:
            async with asyncio.timeout(TIMEOUT):
                await waiting
        assert code(info) == errno.EINVAL


def tcp_segment(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    header = bytearray(
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    )
    value = checksum(bytes(header), _pseudo_sum(ip_bytes(A_IP), ip_bytes(B_IP), PROTO_TCP, 20))
    struct.pack_into("!H", header, 16, value)
    return bytes(header)


def tcp_fields(frame: bytes) -> tuple[int, int, int, int, int] | None:
    """(sport, dport, seq, ack, flags) of a TCP frame from the stack, else None."""
    if frame[12:14] != b"\x08\x00" or frame[23] != PROTO_TCP:
        return None
    ihl = (frame[14] & 0xF) * 4
    sport, dport, seq, ack, _off, flags = struct.unpack_from("!HHIIBB", frame, 14 + ihl)
    return sport, dport, seq, ack, flags


async def test_close_in_syn_sent_sends_nothing_and_a_late_syn_ack_gets_rst() -> None:
    async with stack_and_peer(privileged=False) as (stack, peer):
        sock = stack.socket(AF_INET, SOCK_STREAM)
        sock.setblocking(False)
        mark = peer.mark()
        with pytest.raises(BlockingIOError):
            await sock.connect((A_IP, PORT))
        syn = tcp_fields(
            await peer.expect(lambda f: (tcp_fields(f) or (0,) * 5)[4] == 0x02, since=mark)
        )
        assert syn is not None
        sport, _dport, iss, _ack, _flags = syn
        after_close = peer.mark()
        sock.close()
        await asyncio.sleep(0.01)
        assert not peer.sent_by_stack(lambda f: tcp_fields(f) is not None, after_close)
        # The SYN-ACK arrives after all: nobody owns the 4-tuple now, so RST (seq = its ack).
        synack = tcp_segment(PORT, sport, 5000, (iss + 1) & 0xFFFFFFFF, 0x12)
        peer.send(ether(MAC_B, PEER_MAC, ETH_IPV4, ipv4(A_IP, B_IP, PROTO_TCP, synack)))
        rst = tcp_fields(await peer.expect(lambda f: (tcp_fields(f) or (0,) * 5)[4] & 0x04 != 0))
        assert rst is not None
        assert rst[2] == (iss + 1) & 0xFFFFFFFF and rst[:2] == (sport, PORT)
