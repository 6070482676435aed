"""TCP_MAXSEG on a listener caps its children's MSS, as Linux's ``user_mss`` does.

Linux copies the listener's ``rx_opt.user_mss`` into each request: it lowers
the MSS the SYN-ACK advertises (``tcp_mss_clamp``) and the MSS the child
sends with (``tcp_parse_options`` caps ``mss_clamp``). The client sees the
SYN-ACK's option in its own TCP_MAXSEG (the MSS minus 12 bytes of
timestamps); the differential module checks the same numbers on the kernel.
"""

from __future__ import annotations

import asyncio
import socket as stdlib

import pytest

from aiostack.core.counters import Counters
from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.listener import TcpListener
from aiostack.core.tcp.syncookies import SynCookies
from aiostack.socket import AF_INET, SOCK_STREAM, Socket
from aiostack.socket.tcp import TcpSock
from aiostack.stack.stack import Stack
from aiostack.wire import tcp as wtcp
from aiostack.wire.ipv4 import addr
from tests.helpers import B_IP, TIMEOUT, fast_arp, wired_stacks

TCP = stdlib.IPPROTO_TCP
MAXSEG = stdlib.TCP_MAXSEG
PORT = 4100


def conn_of(sock: Socket) -> object:
    st = sock.protocol_state
    assert isinstance(st, TcpSock) and st.conn is not None
    return st.conn


async def handshake(
    a: Stack, b: Stack, user_mss: int, *, before_listen: bool
) -> tuple[Socket, Socket]:
    server = b.socket(AF_INET, SOCK_STREAM)
    if before_listen:
        server.setsockopt(TCP, MAXSEG, user_mss)
    server.bind(("", PORT))
    server.listen()
    if not before_listen:
        server.setsockopt(TCP, MAXSEG, user_mss)  # on the listener itself
    client = a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        accepted, _ = await server.accept()
    return client, accepted


@pytest.mark.parametrize("before_listen", [True, False], ids=["before-listen", "on-listener"])
async def test_listener_maxseg_caps_syn_ack_and_child(before_listen: bool) -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp())) as (a, b):
        client, accepted = await handshake(a, b, 1000, before_listen=before_listen)
        # The SYN-ACK advertised 1000: the client sends at most 1000 - 12 (timestamps).
        assert client.getsockopt(TCP, MAXSEG) == 988
        child = conn_of(accepted)
        assert child.advmss == 1000  # type: ignore[attr-defined]
        assert accepted.getsockopt(TCP, MAXSEG) == 988  # the child sends at most that


async def test_without_maxseg_the_route_decides() -> None:
    async with wired_stacks(settings=(fast_arp(), fast_arp())) as (a, b):
        client, accepted = await handshake(a, b, 0, before_listen=True)
        assert client.getsockopt(TCP, MAXSEG) == 1448  # 1500 - 40 - 12
        assert accepted.getsockopt(TCP, MAXSEG) == 1448


# -- the listener itself, SYN cookies included -------------------------------------------

US, PEER = addr("198.18.0.2"), addr("198.18.0.1")
OPTS = wtcp.TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(1000, 0))


def syn(port: int, seq: int) -> wtcp.TcpHeader:
    return wtcp.TcpHeader(port, 80, seq, 0, 20, wtcp.SYN, 65535, 0, 0, OPTS)


def test_listener_user_mss_in_syn_ack_and_cookie_syn_ack() -> None:
    lst = TcpListener(
        local_addr=US,
        local_port=80,
        backlog=0,  # the SYN queue is full past one request (more than backlog)
        isn=IsnGenerator(bytes(range(16))),
        cookies=SynCookies(bytes(range(16)), bytes(range(1, 17))),
        counters=Counters(),
    )
    lst.user_mss = 1000
    child, _ = lst.on_segment(0.0, PEER, US, syn(40000, 100), b"")
    assert child is not None and child.advmss == 1000 and child.mss_clamp == 1000
    syn_ack = child.poll_transmit(0.0)
    assert syn_ack is not None and syn_ack.parsed_options().mss == 1000
    # The SYN queue is full now: the next SYN gets a cookie SYN-ACK, capped alike.
    _, cookie_reply = lst.on_segment(1.0, PEER, US, syn(40001, 500), b"")
    assert cookie_reply is not None and cookie_reply.flags == wtcp.SYN | wtcp.ACK
    opts = cookie_reply.parsed_options()
    assert opts.mss == 1000 and opts.timestamps is not None
    echo = wtcp.TcpOptions(timestamps=(1001, opts.timestamps[0]))
    ack = wtcp.TcpHeader(40001, 80, 501, cookie_reply.seq + 1, 32, wtcp.ACK, 1000, 0, 0, echo)
    conn, _ = lst.on_segment(1.1, PEER, US, ack, b"")
    assert conn is not None and conn.advmss == 1000
    # The cookie remembers the MSS from Linux's table: the largest entry <= 1000.
    assert conn.mss_clamp == 536
