"""The packet matcher: inbound lines built as packetdrill builds them, outbound ones compared."""

from __future__ import annotations

import struct

import pytest

from aiostack.testing.packetdrill import parse
from aiostack.testing.packetdrill.ast import PacketEvent
from aiostack.testing.packetdrill.packets import (
    Flow,
    LivePacket,
    Unsupported,
    build_inbound,
    format_live,
    match_outbound,
    parse_live,
)
from aiostack.wire.checksum import internet_checksum, transport_checksum
from aiostack.wire.ipv4 import addr

ISN = 0x8000_0000 - 5  # near the wrap, so relative numbers must be computed mod 2**32


def packet_line(text: str) -> PacketEvent:
    body = parse(f"0 {text}\n").events[0].body
    assert isinstance(body, PacketEvent)
    return body


def flow(**kwargs: int) -> Flow:
    f = Flow()
    f.passive_open(40000)
    for key, value in kwargs.items():
        setattr(f, key, value)
    return f


def live(
    f: Flow,
    flags: int,
    seq: int,
    ack: int = 0,
    window: int = 1000,
    options: bytes = b"",
    payload: int = 0,
    tos: int = 0,
    ttl: int = 64,
) -> LivePacket:
    """A packet as the stack would send it, through the real decoder."""
    tcp = bytearray(
        struct.pack(
            "!HHIIHHHH",
            f.local_port or 8080,
            f.remote_port,
            seq & 0xFFFFFFFF,
            ack,
            ((20 + len(options)) // 4) << 12 | flags,
            window,
            0,
            0,
        )
    )
    tcp += options + bytes(payload)
    ip = bytearray(
        struct.pack(
            "!BBHHHBBHII", 0x45, tos, 20 + len(tcp), 1, 0, ttl, 6, 0, f.local_ip, f.remote_ip
        )
    )
    decoded = parse_live(bytes(ip + tcp))
    assert decoded is not None
    return decoded


SYN_ACK_OPTS = bytes.fromhex("020405b40101040201030307")  # mss,nop,nop,sackOK,nop,wscale 7


def test_inbound_packet_is_valid_ipv4_tcp_with_mapped_ack() -> None:
    f = flow(local_isn=ISN)
    raw = build_inbound(packet_line("< P. 1:101(100) ack 11 win 257 <nop,nop,sack 21:31>"), f)
    assert raw[0] == 0x45 and internet_checksum(raw[:20]) == 0
    assert addr("192.0.2.1") == struct.unpack_from("!I", raw, 12)[0]
    tcp = raw[20:]
    assert transport_checksum(addr("192.0.2.1"), addr("192.168.0.1"), 6, tcp) == 0
    sport, dport, seq, ack, off_flags, win = struct.unpack_from("!HHIIHH", tcp)
    assert (sport, dport, seq, win) == (40000, 8080, 1, 257)
    assert ack == (ISN + 11) & 0xFFFFFFFF  # the stack's numbers are relative to its ISN
    assert off_flags & 0x1FF == 0x18  # PSH|ACK
    # SACK edges name the stack's data, so they are mapped too.
    assert struct.unpack_from("!BBII", tcp, 22) == (
        5,
        10,
        (ISN + 21) & 0xFFFFFFFF,
        (ISN + 31) & 0xFFFFFFFF,
    )
    assert len(tcp) == (off_flags >> 12) * 4 + 100


def test_inbound_ecn_and_ttl() -> None:
    raw = build_inbound(packet_line("< [ect0] . 1:1(0) ack 1 win 257"), flow(local_isn=0))
    assert raw[1] & 3 == 2
    raw = build_inbound(packet_line("< [ttl 9] . 1:1(0) ack 1 win 257"), flow(local_isn=0))
    assert raw[8] == 9


def test_inbound_ts_ecr_maps_through_the_first_outbound_val() -> None:
    f = flow(local_isn=0, first_script_ts=100, first_live_ts=5_000_000)
    raw = build_inbound(packet_line("< . 1:1(0) ack 1 win 257 <nop,nop,TS val 7 ecr 150>"), f)
    assert struct.unpack_from("!II", raw, 20 + 24) == (7, 5_000_050)


def test_first_syn_teaches_the_isn_and_later_seqs_are_relative() -> None:
    f = flow()
    syn_ack = live(f, 0x12, ISN, ack=1, window=65535, options=SYN_ACK_OPTS)
    line = packet_line("> S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>")
    assert match_outbound(line, syn_ack, f) is None
    assert f.local_isn == ISN
    data = live(f, 0x18, ISN + 1, ack=1, payload=1000)
    assert match_outbound(packet_line("> P. 1:1001(1000) ack 1"), data, f) is None
    assert "sequence number 1 (expected 2)" in (
        match_outbound(packet_line("> P. 2:1002(1000) ack 1"), data, f) or ""
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("> . 1:1001(1000) ack 1", "flags P. (expected .)"),
        ("> P. 1:1001(1000) ack 2", "ack 1 (expected 2)"),
        ("> P. 1:1001(1000) ack 1 win 999", "window 1000 (expected 999)"),
        ("> P. 1:501(500) ack 1", "payload length 1000 (expected 500)"),
        (
            "> P. 1:1001(1000) ack 1 <nop,nop,nop,nop>",
            "TCP options <none> (expected <nop,nop,nop,nop>)",
        ),
        ("> [ect0] P. 1:1001(1000) ack 1", "IP ECN noecn (expected ect0)"),
        ("> [ttl 1] P. 1:1001(1000) ack 1", "IP ttl 64 (expected 1)"),
    ],
)
def test_each_field_is_compared(line: str, problem: str) -> None:
    f = flow(local_isn=ISN)
    data = live(f, 0x18, ISN + 1, ack=1, payload=1000)
    assert match_outbound(packet_line(line), data, f) == problem


def test_ports_are_those_of_the_flow() -> None:
    f = flow(local_isn=ISN)
    data = live(f, 0x18, ISN + 1, ack=1, payload=1000)
    f.remote_port = 40001
    problem = match_outbound(packet_line("> P. 1:1001(1000) ack 1"), data, f)
    assert problem == "ports 8080 > 40000 (expected 8080 > 40001)"
    # Explicit ports naming the flow are fine; Flows picks the flow by them, so a
    # line whose ports name another connection is a caller's error.
    assert (
        match_outbound(
            packet_line("> 8080 > 40000 P. 1:1001(1000) ack 1"), data, flow(local_isn=ISN)
        )
        is None
    )
    with pytest.raises(ValueError, match="another connection"):
        match_outbound(packet_line("> 8080 > 1 P. 1:1001(1000) ack 1"), data, flow(local_isn=ISN))
    with pytest.raises(ValueError, match="another connection"):
        build_inbound(packet_line("< 1 > 8080 . 1:1(0) ack 1 win 10"), flow(local_isn=ISN))


def test_window_and_options_may_be_left_open() -> None:
    f = flow(local_isn=ISN)
    data = live(
        f, 0x10, ISN + 1, ack=1, window=12345, options=bytes.fromhex("0101080a0000000100000002")
    )
    assert match_outbound(packet_line("> . 1:1(0) ack 1 <...>"), data, f) is None


def test_options_must_match_in_order() -> None:
    f = flow()
    syn_ack = live(f, 0x12, ISN, ack=1, options=SYN_ACK_OPTS)
    line = packet_line("> S. 0:0(0) ack 1 <mss 1460,sackOK,nop,nop,nop,wscale 7>")
    problem = match_outbound(line, syn_ack, f)
    assert problem == (
        "TCP options <mss 1460,nop,nop,sackOK,nop,wscale 7> "
        "(expected <mss 1460,sackOK,nop,nop,nop,wscale 7>)"
    )
    assert f.local_isn is None  # a mismatch teaches nothing


def test_wscale_star_and_sack_blocks() -> None:
    f = flow()
    opts = bytes.fromhex("030309") + b"\x00"
    syn_ack = live(f, 0x12, ISN, ack=1, options=opts)
    assert match_outbound(packet_line("> S. 0:0(0) ack 1 <wscale *,eol>"), syn_ack, f) is None
    sack = bytes.fromhex("0101050a") + struct.pack("!II", 1001, 2001)
    ack = live(f, 0x10, ISN + 1, ack=1, options=sack)
    # SACK blocks of the script's own data are in its absolute numbering.
    assert match_outbound(packet_line("> . 1:1(0) ack 1 <nop,nop,sack 1001:2001>"), ack, f) is None
    assert match_outbound(packet_line("> . 1:1(0) ack 1 <nop,nop,sack 1:2001>"), ack, f)


def ts(val: int, ecr: int) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", val, ecr)


def test_ts_ecr_must_echo_and_ts_val_must_not_go_backwards() -> None:
    f = flow(local_isn=ISN)
    first = live(f, 0x10, ISN + 1, ack=1, options=ts(70_000, 5))
    assert (
        match_outbound(packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 100 ecr 5>"), first, f) is None
    )
    assert (f.first_script_ts, f.first_live_ts) == (100, 70_000)
    wrong_ecr = live(f, 0x10, ISN + 1, ack=1, options=ts(70_010, 4))
    problem = match_outbound(
        packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 110 ecr 5>"), wrong_ecr, f
    )
    assert problem is not None and problem.startswith("TS ecr 4 (expected 5")
    backwards = live(f, 0x10, ISN + 1, ack=1, options=ts(69_999, 5))
    problem = match_outbound(
        packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 110 ecr 5>"), backwards, f
    )
    assert problem == "TS val 69999 went backwards (previous 70000)"


def test_ts_val_checked_against_the_script_with_a_tick() -> None:
    f = flow(local_isn=ISN)
    first = live(f, 0x10, ISN + 1, ack=1, options=ts(70_000, 5))
    line = packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 100 ecr 5>")
    assert match_outbound(line, first, f, ts_tick_usecs=1000) is None
    later = live(f, 0x10, ISN + 1, ack=1, options=ts(70_200, 5))
    ok = packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 300 ecr 5>")
    bad = packet_line("> . 1:1(0) ack 1 <nop,nop,TS val 150 ecr 5>")
    assert match_outbound(bad, later, f, ts_tick_usecs=1000) is not None
    assert match_outbound(ok, later, f, ts_tick_usecs=1000) is None


def test_rst_for_no_socket_counts_from_zero() -> None:
    f = flow()
    rst = live(f, 0x14, 0, ack=1, window=0)
    assert match_outbound(packet_line("> R. 0:0(0) ack 1 win 0"), rst, f) is None


def test_format_live_reads_like_a_script_line() -> None:
    f = flow(local_isn=ISN)
    data = live(f, 0x18, ISN + 1, ack=1, window=502, payload=10, tos=2)
    assert format_live(data, f) == "> [ect0] P. 1:11(10) ack 1 win 502"


def test_unsupported_packets_say_so() -> None:
    with pytest.raises(Unsupported, match="UdpDatagram"):
        build_inbound(packet_line("< udp (10)"), flow())
    with pytest.raises(Unsupported, match="TCP flag 'A'"):
        match_outbound(packet_line("> SA 0:0(0)"), live(flow(), 0x02, 0), flow())
    with pytest.raises(Unsupported, match="Fast Open"):
        build_inbound(packet_line("< S 0:0(0) win 1000 <FO abcd>"), flow())
    f = flow()
    f.active_open()
    with pytest.raises(Unsupported, match="before the stack's SYN"):
        build_inbound(packet_line("< . 1:1(0) ack 1 win 1000"), f)


def test_non_tcp_packets_are_not_decoded() -> None:
    assert parse_live(b"\x60" + bytes(39)) is None  # IPv6
    udp = struct.pack("!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, 1, 2) + bytes(8)
    assert parse_live(udp) is None


def test_inbound_ts_ecr_zero_is_mapped_when_the_segment_acks() -> None:
    # A script may number the stack's TS vals from 0: "ecr 0" then echoes the first one.
    f = flow(local_isn=0, first_script_ts=0, first_live_ts=5_000_000)
    raw = build_inbound(packet_line("< . 1:1(0) ack 1 win 257 <nop,nop,TS val 7 ecr 0>"), f)
    assert struct.unpack_from("!II", raw, 20 + 24) == (7, 5_000_000)
    # Without ACK the field is no echo (RFC 7323 3.2): a new SYN's ecr 0 goes out as 0.
    raw = build_inbound(
        packet_line("< S 0:0(0) win 257 <nop,nop,TS val 7 ecr 0>"), flow(local_isn=0)
    )
    assert struct.unpack_from("!II", raw, 20 + 24) == (7, 0)
    f = flow(local_isn=0, first_script_ts=0, first_live_ts=5_000_000)
    raw = build_inbound(packet_line("< S 0:0(0) win 257 <nop,nop,TS val 7 ecr 0>"), f)
    assert struct.unpack_from("!II", raw, 20 + 24) == (7, 0)


SYN_ACK_LINE = "> S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>"


def established(isn: int) -> Flow:
    """A flow whose connection was numbered from ``isn`` and which then saw data."""
    f = flow()
    syn_ack = live(f, 0x12, isn, ack=1, window=65535, options=SYN_ACK_OPTS)
    assert match_outbound(packet_line(SYN_ACK_LINE), syn_ack, f) is None
    build_inbound(packet_line("< . 1:1(0) ack 1 win 1000"), f)
    return f


def test_a_new_syn_lets_the_stack_start_a_new_connection() -> None:
    f = established(ISN)
    build_inbound(packet_line("< S 0:0(0) win 1000"), f)
    assert f.pending_syn
    new_isn = 12_345
    syn_ack = live(f, 0x12, new_isn, ack=1, window=65535, options=SYN_ACK_OPTS)
    assert format_live(syn_ack, f).startswith("> S. 0:0(0) ack 1")
    assert match_outbound(packet_line(SYN_ACK_LINE), syn_ack, f) is None
    assert (f.local_isn, f.pending_syn) == (new_isn, False)
    data = live(f, 0x18, new_isn + 1, ack=1, payload=10)
    assert match_outbound(packet_line("> P. 1:11(10) ack 1"), data, f) is None


def test_a_new_syn_refused_is_numbered_from_zero() -> None:
    f = established(ISN)
    build_inbound(packet_line("< S 0:0(0) win 1000"), f)
    rst = live(f, 0x14, 0, ack=1, window=0)
    assert format_live(rst, f) == "> R. 0:0(0) ack 1 win 0"
    assert match_outbound(packet_line("> R. 0:0(0) ack 1 win 0"), rst, f) is None
    assert f.local_isn is None and not f.pending_syn


def test_a_syn_answered_in_the_old_connection_keeps_its_numbers() -> None:
    # A SYN in ESTABLISHED or CLOSE-WAIT gets a challenge ACK of the old connection.
    f = established(ISN)
    build_inbound(packet_line("< S 0:0(0) win 1000"), f)
    ack = live(f, 0x10, ISN + 1, ack=1)
    assert match_outbound(packet_line("> . 1:1(0) ack 1"), ack, f) is None
    assert (f.local_isn, f.pending_syn) == (ISN, False)
    # A SYN-ACK written in the old connection's numbers (TIME-WAIT reuse: old
    # SND.NXT + 65537) keeps them, so a script can pin down how the ISN was chosen.
    build_inbound(packet_line("< S 1000:1000(0) win 1000"), f)
    reuse = live(f, 0x12, ISN + 65539, ack=1001, window=65535, options=SYN_ACK_OPTS)
    line = packet_line("> S. 65539:65539(0) ack 1001 <mss 1460,nop,nop,sackOK,nop,wscale 7>")
    assert match_outbound(line, reuse, f) is None
    assert f.local_isn == ISN


def test_a_new_connection_forgets_the_old_timestamp_mapping() -> None:
    f = established(ISN)
    f.first_script_ts, f.first_live_ts, f.last_live_ts = 100, 90_000, 90_500
    build_inbound(packet_line("< S 0:0(0) win 1000"), f)
    syn_ack = live(f, 0x12, 777, ack=1, window=65535, options=ts(10, 0))
    line = packet_line("> S. 0:0(0) ack 1 <nop,nop,TS val 5 ecr 0>")
    assert match_outbound(line, syn_ack, f) is None  # 10 < 90_500 is not "backwards"
    assert (f.first_script_ts, f.first_live_ts, f.last_live_ts) == (5, 10, 10)
