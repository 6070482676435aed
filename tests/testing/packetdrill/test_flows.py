"""Several connections in one script: explicit ports pick the connection, each numbered alone."""

from __future__ import annotations

import struct

import pytest

from aiostack.testing.packetdrill import parse
from aiostack.testing.packetdrill.ast import PacketEvent, TcpSegment
from aiostack.testing.packetdrill.flows import DEFAULT_REMOTE_PORT, Flows
from aiostack.testing.packetdrill.packets import (
    Unsupported,
    build_inbound,
    match_outbound,
    parse_live,
)


def segment(text: str) -> TcpSegment:
    body = parse(f"0 {text}\n").events[0].body
    assert isinstance(body, PacketEvent) and isinstance(body.packet, TcpSegment)
    return body.packet


def line(text: str) -> PacketEvent:
    body = parse(f"0 {text}\n").events[0].body
    assert isinstance(body, PacketEvent)
    return body


def syn_ack(sport: int, dport: int, seq: int) -> bytes:
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq, 1, (5 << 12) | 0x12, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 40, 1, 0, 64, 6, 0, 0xC0A80001, 0xC0000201)
    return ip + tcp


def test_lines_without_ports_continue_the_current_connection() -> None:
    flows = Flows()
    flows.passive_open()
    current = flows.current
    assert (current.local_port, current.remote_port) == (8080, DEFAULT_REMOTE_PORT)
    assert flows.for_line(segment("< S 0:0(0) win 1000"), outbound=False) is current


def test_each_script_port_is_a_connection_of_its_own() -> None:
    flows = Flows()
    flows.passive_open()
    first = flows.for_line(segment("< 40001 > 8080 S 0:0(0) win 1000"), outbound=False)
    second = flows.for_line(segment("< 40002 > 8080 S 0:0(0) win 1000"), outbound=False)
    assert first is not second
    assert (second.local_port, second.remote_port) == (8080, 40002)
    # A port-less line now continues the connection named last.
    assert flows.for_line(segment("< . 1:1(0) ack 1 win 1000"), outbound=False) is second
    assert flows.for_line(segment("> 8080 > 40001 S. 0:0(0) ack 1"), outbound=True) is first
    assert flows.current is first
    # Each learns its own ISN from its own SYN-ACK.
    for flow, isn in ((first, 1000), (second, 900_000)):
        live = parse_live(syn_ack(8080, flow.remote_port, isn))
        assert live is not None
        assert (
            match_outbound(line(f"> 8080 > {flow.remote_port} S. 0:0(0) ack 1"), live, flow) is None
        )
    assert (first.local_isn, second.local_isn) == (1000, 900_000)
    raw = build_inbound(line("< 40002 > 8080 . 1:1(0) ack 1 win 1000"), second)
    assert struct.unpack_from("!HHII", raw, 20) == (40002, 8080, 1, 900_001)


def test_a_packet_of_an_unknown_four_tuple_is_shown_from_zero() -> None:
    flows = Flows()
    flows.passive_open()
    flows.current.local_isn = 5_000
    rst = parse_live(syn_ack(9090, 40003, 0))
    assert rst is not None
    other = flows.for_live(rst)
    assert other is not flows.current and other.local_isn is None
    assert (other.local_port, other.remote_port) == (9090, 40003)
    # The known one is found by its ports.
    mine = parse_live(syn_ack(8080, DEFAULT_REMOTE_PORT, 5_001))
    assert mine is not None and flows.for_live(mine) is flows.current


def test_connect_starts_a_new_connection_and_a_failed_one_restores() -> None:
    flows = Flows()
    flows.passive_open()
    listener_side = flows.current
    saved = flows.save()
    active = flows.active_open()
    # Two connect()s are two connections, even before either has learned anything.
    second = flows.active_open()
    assert second is not active and sum(f is active or f is second for f in flows.flows) == 2
    flows.restore(saved)
    active = flows.active_open()
    assert active is not listener_side and active.local_port is None and active.remote_port == 8080
    flows.restore(saved)
    assert flows.current is listener_side and all(f is not active for f in flows.flows)


def test_explicit_ports_cannot_name_the_port_of_an_active_open() -> None:
    flows = Flows()
    flows.active_open()
    with pytest.raises(Unsupported, match="active open"):
        flows.for_line(segment("> 45000 > 8080 S 0:0(0) <...>"), outbound=True)


def test_a_mismatch_shows_the_live_packet_in_its_own_connection() -> None:
    from aiostack.testing.packetdrill.aiostack_target import run_on_aiostack
    from aiostack.testing.packetdrill.report import Status

    text = """\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0    > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1   < . 1:1(0) ack 1 win 1000
+0    accept(3, ..., ...) = 4
+0    < 40003 > 9090 S 0:0(0) win 65535 <mss 1000>
+0    > 8080 > 48321 . 1:1(0) ack 1
"""
    result = run_on_aiostack(parse(text))
    assert (result.status, result.line) == (Status.FAIL, 9)
    # Not in the first connection's numbering, and its ports are named.
    assert result.actual == "> R. 0:0(0) ack 1 win 0 (ports 9090 > 40003)"
