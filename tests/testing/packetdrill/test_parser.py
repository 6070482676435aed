"""Parser units: times, packets, expressions, options, defines, normalized text."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from aiostack.testing.packetdrill import PacketdrillSyntaxError, parse, parse_file
from aiostack.testing.packetdrill.ast import (
    AssignExpr,
    BitOrExpr,
    BraceExpr,
    CallExpr,
    CodeExpr,
    Command,
    EllipsisExpr,
    Expr,
    IcmpMessage,
    IntegerExpr,
    ListExpr,
    Option,
    PacketEvent,
    StringExpr,
    SyscallEvent,
    TcpSegment,
    TimeKind,
    TimeSpec,
    WindowScale,
    WordExpr,
    format_usecs,
)

OUTBOUND_ACK = "> . 1:1(0) ack 1"


def only_event_time(text: str) -> TimeSpec:
    (event,) = parse(text).events
    return event.time


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        ("0", TimeSpec(TimeKind.ABSOLUTE, 0)),
        ("2", TimeSpec(TimeKind.ABSOLUTE, 2_000_000)),
        ("1.5", TimeSpec(TimeKind.ABSOLUTE, 1_500_000)),
        ("0.100", TimeSpec(TimeKind.ABSOLUTE, 100_000)),
        (".25", TimeSpec(TimeKind.ABSOLUTE, 250_000)),
        ("+0", TimeSpec(TimeKind.RELATIVE, 0)),
        ("+.1", TimeSpec(TimeKind.RELATIVE, 100_000)),
        ("+1.000001", TimeSpec(TimeKind.RELATIVE, 1_000_001)),
        ("+0.0000019", TimeSpec(TimeKind.RELATIVE, 1)),  # truncated, like packetdrill
        ("4.35", TimeSpec(TimeKind.ABSOLUTE, 4_350_000)),  # exact, no binary rounding
        ("*", TimeSpec(TimeKind.ANY)),
        ("0.1~0.2", TimeSpec(TimeKind.ABSOLUTE_RANGE, 100_000, 200_000)),
        ("1~1", TimeSpec(TimeKind.ABSOLUTE_RANGE, 1_000_000, 1_000_000)),
        ("+0.1~+0.3", TimeSpec(TimeKind.RELATIVE_RANGE, 100_000, 300_000)),
        ("+0 ~ +1", TimeSpec(TimeKind.RELATIVE_RANGE, 0, 1_000_000)),
        ("-0", TimeSpec(TimeKind.ABSOLUTE, 0)),  # not below zero, as in packetdrill
        ("+-0.0", TimeSpec(TimeKind.RELATIVE, 0)),
    ],
)
def test_event_times_in_microseconds(time: str, expected: TimeSpec) -> None:
    assert only_event_time(f"{time} {OUTBOUND_ACK}\n") == expected


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("+.1...0.200 connect(3, ..., ...) = 0", TimeSpec(TimeKind.RELATIVE, 100_000), 200_000),
        ("0...1 accept(3, ..., ...) = 4", TimeSpec(TimeKind.ABSOLUTE, 0), 1_000_000),
        ("1.5 ... 2.5 read(4, ..., 10) = 10", TimeSpec(TimeKind.ABSOLUTE, 1_500_000), 2_500_000),
    ],
)
def test_blocking_call_end_time(text: str, start: TimeSpec, end: int) -> None:
    (event,) = parse(text).events
    assert event.time == start
    assert isinstance(event.body, SyscallEvent)
    assert event.body.end_usecs == end and event.body.blocking


@pytest.mark.parametrize(
    ("usecs", "text"),
    [(0, "0"), (1, "0.000001"), (100_000, "0.1"), (1_500_000, "1.5"), (3_000_000, "3")],
)
def test_format_usecs(usecs: int, text: str) -> None:
    assert format_usecs(usecs) == text


def arg(text: str) -> Expr:
    (event,) = parse(f"0 f({text}) = 0\n").events
    assert isinstance(event.body, SyscallEvent)
    (value,) = event.body.args
    return value


def result(text: str) -> Expr:
    (event,) = parse(f"0 f() = {text}\n").events
    assert isinstance(event.body, SyscallEvent)
    assert event.body.args == ()
    return event.body.result


W = WordExpr
N = IntegerExpr


@pytest.mark.parametrize(
    ("text", "expected", "normalized"),
    [
        ("...", EllipsisExpr(), "..."),
        ("-1", N(-1), "-1"),
        ("0x10", N(16, hex=True), "0x10"),
        ("0XFF", None, None),  # 0X is not hex in packetdrill: a word
        ("SOCK_STREAM", W("SOCK_STREAM"), "SOCK_STREAM"),
        ('"x y"', StringExpr("x y"), '"x y"'),
        ('"abc"...', StringExpr("abc", ellipsis=True), '"abc"...'),
        ("O_RDWR | O_NONBLOCK", BitOrExpr((W("O_RDWR"), W("O_NONBLOCK"))), "O_RDWR|O_NONBLOCK"),
        ("A|B|0x4", BitOrExpr((W("A"), W("B"), N(4, hex=True))), "A|B|0x4"),
        ("[]", ListExpr(()), "[]"),
        ("[...]", ListExpr((EllipsisExpr(),)), "[...]"),
        ("[1, [2]]", ListExpr((N(1), ListExpr((N(2),)))), "[1, [2]]"),
        ("{}", BraceExpr(()), "{}"),
        ("{..., 10}", BraceExpr((EllipsisExpr(), N(10))), "{..., 10}"),
        ("a=1|2", AssignExpr("a", BitOrExpr((N(1), N(2)))), "a=1|2"),
        ("1|a=2", BitOrExpr((N(1), AssignExpr("a", N(2)))), "1|a=2"),
        ("htons(80)", CallExpr("htons", (N(80),)), "htons(80)"),
        (
            'inet_addr("192.0.2.1")',
            CallExpr("inet_addr", (StringExpr("192.0.2.1"),)),
            'inet_addr("192.0.2.1")',
        ),
        (
            "msg_iov(1)=[{..., 1}]",
            AssignExpr("msg_iov", ListExpr((BraceExpr((EllipsisExpr(), N(1))),)), N(1)),
            "msg_iov(1)=[{..., 1}]",
        ),
        ("%{ 1 + 1 }%", CodeExpr("1 + 1"), "%{ 1 + 1 }%"),
    ],
)
def test_expressions(text: str, expected: Expr | None, normalized: str | None) -> None:
    value = arg(text)
    if expected is None:
        assert value == W(text)
        return
    assert value == expected
    assert str(value) == normalized


def test_result_expressions_and_errno() -> None:
    assert result("-1 EAGAIN") == N(-1)
    (event,) = parse("0 f() = -1 EAGAIN\n").events
    assert isinstance(event.body, SyscallEvent)
    assert (event.body.errno, event.body.strerror, event.body.note) == ("EAGAIN", None, None)
    # In the result, NAME (...) is a name and a note, not a call.
    (event,) = parse("0 f() = POLLIN (readable)\n").events
    assert isinstance(event.body, SyscallEvent)
    assert (event.body.result, event.body.errno) == (W("POLLIN"), None)
    assert event.body.note == "readable"
    assert event.body.strerror is None
    (event,) = parse("0 f() = 0 E (t e x t) (a note with ack and win)\n").events
    assert isinstance(event.body, SyscallEvent)
    assert event.body.strerror == "t e x t"
    assert event.body.note == "a note with ack and win"
    assert result("%{ tcpi_rtt }%") == CodeExpr("tcpi_rtt")


@pytest.mark.parametrize(
    ("line", "normalized"),
    [
        ("+.1   >  P.  1:1001(1000)  ack 1", "+0.1 > P. 1:1001(1000) ack 1"),
        ("0.100 < [ect0] . 1:1(0) ack 1 win 257", "0.1 < [ect0] . 1:1(0) ack 1 win 257"),
        ("+0 < (tos 0x02) S 0:0(0) win 1", "+0 < [tos 0x2] S 0:0(0) win 1"),
        ("+0 < ( flowlabel 0x1 ) S 0:0(0) win 1", "+0 < [flowlabel 0x1] S 0:0(0) win 1"),
        ("+0 < [ce,flowlabel 0x3] S 0:0(0) win 1", "+0 < [ce, flowlabel 0x3] S 0:0(0) win 1"),
        ("+0 < - 1:1(0) win 0", "+0 < - 1:1(0) win 0"),
        (
            "0 > S 0:0(0) <mss 1460 , sackOK,TS val 1 ecr 0 ,nop , wscale 7>",
            "0 > S 0:0(0) <mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7>",
        ),
        ("0 > . 1:1(0) ack 1 < ... >", "0 > . 1:1(0) ack 1 <...>"),
        ("0 > S. 0:0(0) ack 1 win 0 urg 5", "0 > S. 0:0(0) ack 1 win 0 urg 5"),
        (
            "0 < icmp unreachable port_unreachable [udp (1000)]",
            "0 < icmp unreachable port_unreachable [udp (1000)]",
        ),
        ("0 < icmp echo_request id 9", "0 < icmp echo_request id 9"),
        ("0 > udp 1 > 2 (3)", "0 > udp 1 > 2 (3)"),
        (
            "0 connect(3, ..., ...) = -1 EINPROGRESS (Operation   now in progress)",
            "0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)",
        ),
        ("0 close( 3 )=0", "0 close(3) = 0"),
        ("+.1...0.200 accept(3,...,...)=4", "+0.1...0.2 accept(3, ..., ...) = 4"),
        ("+0 %{x=1}%", "+0 %{ x=1 }%"),
        ("0 `echo  hi`", "0 `echo  hi`"),
    ],
)
def test_normalized_text(line: str, normalized: str) -> None:
    script = parse(line + "\n")
    (event,) = script.events
    assert str(event) == normalized
    assert parse(normalized + "\n") == script


def test_tcp_flag_properties() -> None:
    def segment(flags: str) -> TcpSegment:
        (event,) = parse(f"0 > {flags} 0:0(0)\n").events
        assert isinstance(event.body, PacketEvent)
        assert isinstance(event.body.packet, TcpSegment)
        return event.body.packet

    every = segment("FSRPUEWA.")
    assert every.fin and every.syn and every.rst and every.psh and every.urg_flag
    assert every.ece and every.cwr and every.ae and every.ack_flag and every.ace is None
    ace = segment("S5.")  # AccECN: the digit is the ACE field (ECE=1, CWR=0, AE=1)
    assert (ace.ace, ace.ece, ace.cwr, ace.ae) == (5, True, False, True)
    none = segment("-")
    assert none.flags == "" and not (none.syn or none.ack_flag or none.ece)


def test_wildcard_window_scale_and_option_lengths() -> None:
    (event,) = parse("0 > S 0:0(0) <wscale *,nop>\n").events
    assert isinstance(event.body, PacketEvent)
    assert isinstance(event.body.packet, TcpSegment)
    options = event.body.packet.options
    assert options is not None
    assert options[0] == WindowScale(None)
    assert [option.wire_length for option in options] == [3, 1]
    # Exactly 40 bytes of options is the maximum and is accepted.
    parse("0 > S 0:0(0) <" + ",".join(["nop"] * 40) + ">\n")


def test_script_structure() -> None:
    script = parse("--a\n--b=1\n`one`\n`two`\n0 f() = 0\n+1 g() = 0\n`cleanup`\n", "s.pkt")
    assert script.options == (Option("a", None), Option("b", "1"))
    assert script.option("a") == ""
    assert script.init_commands == (Command("one"), Command("two"))
    assert [event.body.name for event in script.events if isinstance(event.body, SyscallEvent)] == [
        "f",
        "g",
    ]
    assert script.cleanup_command == Command("cleanup")
    assert script.path == "s.pkt"
    # Events are not line-bound: a call may span lines, two may share one.
    spread = parse("0 f(1,\n  2) = 0 +0 g() = 0\n")
    assert [event.line for event in spread.events] == [1, 2]


def test_option_values() -> None:
    script = parse(
        '--a=1 --b=-2 --c=0x10 --d=0.5 --e=192.0.2.1 --f=fd00::1 --g="two words" '
        '--h=ipv4-mapped-ipv6 --i=X=Y --j=X="s" --k=X=`c` --l=X=3\n0 f() = 0\n'
    )
    values = {option.name: (option.value, option.quoted) for option in script.options}
    assert values == {
        "a": ("1", False),
        "b": ("-2", False),
        "c": ("0x10", False),
        "d": ("0.5", False),
        "e": ("192.0.2.1", False),
        "f": ("fd00::1", False),
        "g": ("two words", True),
        "h": ("ipv4-mapped-ipv6", False),
        "i": ("X=Y", False),
        "j": ('X="s"', False),
        "k": ("X=`c`", False),
        "l": ("X=3", False),
    }
    assert parse(str(script)) == script


def test_defines_substitute_words_but_not_keywords() -> None:
    text = "0 socket(..., T, IPPROTO_TCP) = FD\n+0 > S 0:0(0) ack 1\n"
    script = parse(text, defines={"T": "SOCK_DGRAM", "FD": "3", "ack": "nope"})
    first = script.events[0].body
    assert isinstance(first, SyscallEvent)
    assert first.args[1] == W("SOCK_DGRAM")
    assert first.result == N(3)
    second = script.events[1].body
    assert isinstance(second, PacketEvent) and isinstance(second.packet, TcpSegment)
    assert second.packet.ack == 1
    # The script's own --define wins over nothing and applies after the options.
    script = parse('--define=S="hello"\n0 write(3, S, 5) = 5\n')
    first = script.events[0].body
    assert isinstance(first, SyscallEvent)
    assert first.args[1] == StringExpr("hello")


def test_icmp_names_follow_the_ip_version() -> None:
    v4 = parse("0 < icmp unreachable port_unreachable\n").events[0].body
    v6 = parse("--ip_version=ipv6\n0 < icmp unreachable port_unreachable\n").events[0].body
    assert isinstance(v4, PacketEvent) and isinstance(v6, PacketEvent)
    assert isinstance(v4.packet, IcmpMessage) and isinstance(v6.packet, IcmpMessage)
    assert (v4.packet.type, v4.packet.code) == (3, 3)
    assert (v6.packet.type, v6.packet.code) == (1, 4)
    with pytest.raises(PacketdrillSyntaxError, match="bad ICMPv4 type packet_too_big"):
        parse("0 < icmp packet_too_big\n")
    with pytest.raises(PacketdrillSyntaxError, match="bad ICMPv6 type source_quench"):
        parse("--ip_version=ipv6\n0 < icmp source_quench\n")


def test_parse_file_reads_utf8_and_reports_bad_bytes(tmp_path: Path) -> None:
    good = tmp_path / "bom.pkt"
    good.write_bytes(b"\xef\xbb\xbf0 close(3) = 0 // caf\xc3\xa9\n")
    assert parse_file(good).path == str(good)
    bad = tmp_path / "bad.pkt"
    bad.write_bytes(b'0 close(3) = 0\n+0 write(3, "\xff", 1) = 1\n')
    with pytest.raises(PacketdrillSyntaxError) as info:
        parse_file(bad)
    assert (info.value.line, info.value.column) == (2, 14)
    assert "invalid UTF-8 byte 0xff" in info.value.message
    with pytest.raises(FileNotFoundError):
        parse_file(tmp_path / "missing.pkt")


def test_syntax_error_pickles_and_renders() -> None:
    with pytest.raises(PacketdrillSyntaxError) as info:
        parse("0 close(3) = 0\n\t+0 < . 1:1(0) win 1 ack 2\n", "x.pkt")
    error = info.value
    assert error.location == "x.pkt:2:22"
    assert str(error) == (
        "x.pkt:2:22: 'ack' out of place: a TCP packet gives ack, win, urg and <options> "
        "in that order\n"
        "\t+0 < . 1:1(0) win 1 ack 2\n"
        "\t" + " " * 20 + "^"
    )
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, PacketdrillSyntaxError)
    assert (clone.file, clone.line, clone.column, clone.message, clone.source_line) == (
        error.file,
        error.line,
        error.column,
        error.message,
        error.source_line,
    )
    assert str(clone) == str(error)
