"""Broken scripts: each names the exact file:line:column and what is wrong.

Most messages are packetdrill's own (``parser.y``'s semantic errors, the
checks in ``tcp_packet.c`` and ``icmp_packet.c``); grammar errors say what
was expected and what was found.
"""

from __future__ import annotations

import pytest

from aiostack.testing.packetdrill import PacketdrillSyntaxError, parse

NOPS_41 = ",".join(["nop"] * 41)

# (script text, "line:column", message fragment)
CASES: list[tuple[str, str, str]] = [
    # --- script structure
    ("", "1:1", "expected an event (a time such as 0, +0.1 or *, then an action), found end"),
    ("--mss=1000\n", "1:11", "expected an event"),
    ("--mss=\n--tolerance_usecs=1\n", "2:1", "expected a value for option --mss, found option"),
    ("0 close(3) = 0\n--mss=1\n", "2:1", "expected an event time (such as 0, +0.1 or *), found"),
    ("0 f() = 0\n`a`\n`b`\n", "3:1", "expected end of file after the cleanup command"),
    ("0 ~ close", "1:5", "expected a time in seconds (such as 0, 1.5 or .100), found 'close'"),
    ("0 [[[", "1:3", "expected a packet ('<' or '>'), a system call, a `command` or a %{ code }%"),
    # --- times
    ("-1 close(3) = 0\n", "1:1", "negative time"),
    ("+-0.001 close(3) = 0\n", "1:2", "negative time"),
    ("0.2~0.1 > . 1:1(0) ack 1\n", "1:5", "time range is backwards"),
    ("+0.1~0.2 > . 1:1(0)\n", "1:6", "expected '+' (a relative time range is written +a~+b)"),
    ("0.1~+0.2 > . 1:1(0)\n", "1:5", "an absolute time range ends with an absolute time"),
    ("* close(3) = 0\n", "1:1", "event time * can only be used with outbound packets"),
    ("* < . 1:1(0) win 1\n", "1:1", "event time * can only be used with outbound packets"),
    ("0.1~0.2 close(3) = 0\n", "1:1", "event time range can only be used with outbound packets"),
    ("0 ...-1 read(3, ..., 1) = 1\n", "1:6", "negative time"),
    # --- TCP packets
    ("0 < . 1:1001(1000) ack 1 win 70000\n", "1:30", "TCP window value out of range: 70000"),
    ("0 < . 1:1001(999) ack 1 win 7\n", "1:7", "inconsistent TCP sequence numbers and payload"),
    ("0 > S 4294967296:4294967296(0)\n", "1:7", "TCP start sequence number out of range"),
    ("0 > . 1:1(0) ack -1\n", "1:18", "TCP ack sequence number out of range: -1"),
    ("0 > S 0:0(0) urg 70000\n", "1:18", "urg_ptr value out of range"),
    ("0 < S 0:0(0)\n", "1:13", "window must be specified for inbound packets"),
    ("0 < Sx 0:0(0) win 7\n", "1:6", "invalid TCP flag 'x' in 'Sx'"),
    ("0 > S5E 0:0(0)\n", "1:7", "conflicting TCP flag 'E' in 'S5E'"),
    ("0 > S12 0:0(0)\n", "1:7", "conflicting TCP flag '2' in 'S12'"),
    ("0 < ttl 3 S 0:0(0) win 1\n", "1:5", "'ttl' is IP information: write it in brackets"),
    ("0 > S 0:0(0) win 1 ack 5\n", "1:20", "'ack' out of place"),
    ("0 > S 0:0 win 1\n", "1:11", "expected '(' in start:end(length), found 'win'"),
    ("0 > S win 1\n", "1:7", "expected a sequence range start:end(length)"),
    ("0 > 1:1(0)\n", "1:5", "expected TCP flags (such as S, S., ., P., F., R or -), found integer"),
    ("0 < 1 > 70000 S 0:0(0) win 1\n", "1:9", "destination port out of range: 70000"),
    # --- TCP options
    ("0 < S 0:0(0) win 7 <mss 1000,sackOK>\n", "1:20", "not padded correctly"),
    ("0 < S 0:0(0) win 1 <...>\n", "1:20", "<...> for TCP options can only be used with outbound"),
    ("0 > S 0:0(0) <mss 70000>\n", "1:19", "mss value out of range: 70000 (must be 0..65535)"),
    ("0 > S 0:0(0) <wscale 256,nop>\n", "1:22", "window scale shift count out of range"),
    ("0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale>\n", "1:41", "expected an integer (window"),
    ("0 > S 0:0(0) <TS val 1 ecr>\n", "1:27", "expected an integer (ecr val), found '>'"),
    ("0 > S 0:0(0) <TS 1 2>\n", "1:18", "expected 'val' after TS, found integer 1"),
    ("0 > S 0:0(0) <sack>\n", "1:19", "expected a SACK block left:right, found '>'"),
    ("0 > S 0:0(0) <nop,nop,sack 1:2 3:4 5:6 7:8 9:10>\n", "1:23", "too long: 44 bytes"),
    ("0 < S 0:0(0) win 1 <" + NOPS_41 + ">\n", "1:181", "TCP option list too long: 41"),
    ("0 > S 0:0(0) <FO abc>\n", "1:18", "TCP fast open cookie has an odd number of digits"),
    ("0 > S 0:0(0) <FO zz,nop,nop>\n", "1:18", "cookie 'zz' is not a valid hex string"),
    ("0 > S 0:0(0) <FO " + "ab" * 39 + ">\n", "1:18", "of 39 bytes exceeds the maximum of 38"),
    ("0 > S 0:0(0) <md5 " + "00" * 17 + ">\n", "1:19", "MD5 digest of 17 bytes exceeds"),
    ("0 > S 0:0(0) <mss 1,bogus>\n", "1:21", "expected a TCP option (nop, eol, mss, wscale"),
    ("0 > S 0:0(0) <mss 1 nop>\n", "1:21", "expected '>' or ',' in the TCP option list"),
    # --- IP details, UDP, ICMP, encapsulation
    ("0 < [ttl 300] S 0:0(0) win 1\n", "1:10", "ttl out of range: 300"),
    ("0 > [tos 16] . 1:1(0)\n", "1:10", "expected a hex integer such as 0x10 (tos)"),
    ("0 > [tos 0x100] . 1:1(0)\n", "1:10", "tos out of range: 256"),
    ("0 > [flowlabel 0x100000] . 1:1(0)\n", "1:16", "flowlabel out of range"),
    ("0 > [ect0 . 1:1(0)\n", "1:11", "expected ']' to close the IP details, found '.'"),
    ("0 > [bogus] . 1:1(0)\n", "1:6", "expected IP details: an ECN codepoint"),
    ("0 < [ect01] . 1:1(0) ack 1 win 1\n", "1:5", "[ect01] can only be used with outbound"),
    ("0 < [ect0] udp (10)\n", "1:5", "ECN can only be used with TCP packets"),
    ("0 > udp (70000)\n", "1:10", "UDP payload size out of range"),
    ("0 > udp 10\n", "1:9", "expected '(' before the UDP payload size"),
    ("0 > icmp unreachable bogus\n", "1:22", "bad ICMPv4 code bogus"),
    ("0 > icmp echo_request port_unreachable\n", "1:23", "bad ICMPv4 code port_unreachable"),
    ("0 > icmp type_256\n", "1:10", "bad ICMPv4 type type_256"),
    ("0 > icmp packet_too_big mtu 1280\n", "1:10", "bad ICMPv4 type packet_too_big"),
    ("0 > icmp 3\n", "1:10", "expected an ICMP type (such as unreachable or echo_request)"),
    ("0 > icmp unreachable frag_needed mtu 70000\n", "1:38", "ICMPv4 MTU out of range"),
    ("0 > icmp unreachable port_unreachable mtu 1000\n", "1:43", "MTU is only valid for unreach"),
    ("--ip_version=ipv6\n0 > icmp unreachable mtu 1\n", "2:26", "MTU is only valid for packet"),
    ("0 > icmp echo_request id 70000\n", "1:26", "ICMP echo id out of range"),
    ("0 > icmp unreachable [udp 5]\n", "1:27", "expected '(' after udp, found integer 5"),
    ("0 > icmp unreachable [udp (5)\n", "1:30", "expected ']' to close the quoted packet, found"),
    ("0 > ipv4 1.2.3.999 > 1.1.1.1: . 1:1(0)\n", "1:10", "invalid IPv4 address: 1.2.3.999"),
    ("0 > ipv4 1.2.3.4 1.1.1.1: . 1:1(0)\n", "1:18", "expected '>' between the outer source"),
    ("0 > ipv6 1.2.3.4 > ::1: . 1:1(0)\n", "1:10", "expected an IPv6 address, found IPv4"),
    ("0 > ipv4 1.2.3.4 > 1.1.1.1 . 1:1(0)\n", "1:28", "expected ':' after the outer IP header"),
    ("0 > mpls (label 1, tc 8, ttl 1): . 1:1(0)\n", "1:23", "MPLS traffic class out of range"),
    ("0 > mpls (label 1048576, tc 0, ttl 1): . 1:1(0)\n", "1:17", "MPLS label out of range"),
    ("0 > mpls (label 1, tc 0, [X], ttl 1): . 1:1(0)\n", "1:27", "expected [S] for MPLS label"),
    ("0 > gre flags [bogus] sum 0 off 0 key 0 seq 0: . 1:1(0)\n", "1:16", "expected a GRE flag"),
    ("0 > gre flags 0 sum 0 key 0 seq 0: . 1:1(0)\n", "1:23", "expected 'off' (GRE header"),
    ("0 > gre flags 0 sum 0 off 0 key 0x100000000 seq 0: . 1:1(0)\n", "1:33", "GRE key out of"),
    # --- system calls and expressions
    ("0 close(3 = 0\n", "1:11", "expected ',' or ')' in the system call arguments, found '='"),
    ("0 close(3)\n", "1:11", "expected '=' and the expected result (such as = 0), found end of"),
    ("0 close(3) 0\n", "1:12", "expected '=' and the expected result"),
    ("0 close(3) = \n", "1:13", "expected an expression (a number, NAME"),
    ("0 ... close(3) = 0\n", "1:7", "expected a time in seconds (such as 0, 1.5 or .100), found"),
    ("0 ...1 3(3) = 0\n", "1:8", "expected a system call name, found integer 3"),
    ("0 close(3) = 0 EBADF (Bad file\n+0 close(4) = 0\n", "1:22", "'(' is not closed"),
    ("0 f() = -1 E (a (b) c)\n", "1:14", "'(' is not closed: expected ')' before '('"),
    ("0 close(3) = 0 EBADF ()\n", "1:23", "expected text inside the parentheses"),
    ("0 f(1.5) = 0\n", "1:5", "a number with a fraction is not allowed here: 1.5"),
    ("0 f(foo(1)) = 0\n", "1:11", "expected '=' after foo(...), found ')'"),
    ("0 f([1, 2) = 0\n", "1:10", "expected ',' or ']' in the array, found ')'"),
    ("0 f({a=1 b=2}) = 0\n", "1:10", "expected ',' or '}' in the struct, found 'b'"),
    ("0 f(htons(1, 2)) = 0\n", "1:5", "htons() takes exactly one argument"),
    ("0 f(htons(x)) = 0\n", "1:5", "htons() takes an integer port"),
    ("0 bind(3, {sin_port=htons(70000)}, 16) = 0\n", "1:21", "port out of range: 70000"),
    ('0 bind(3, {sin_addr=inet_addr("1.2.3")}, 16) = 0\n', "1:21", "invalid IPv4 address"),
    ('0 f(inet6_addr("1.2.3.4")) = 0\n', "1:5", "invalid IPv6 address: '1.2.3.4'"),
    ("0 f(inet_addr(1)) = 0\n", "1:5", "inet_addr() takes a quoted IPv4 address"),
    ("0 f(" + "[" * 100 + ") = 0\n", "1:69", "expression nested too deeply"),
    ("0 f({flags [none], sum 0}) = 0\n", "1:25", "expected 'off' (GRE header"),
    # --- lexical
    ('0 write(3, "abc\n', "1:12", "unterminated string: missing closing '\"'"),
    ("0 %{ x\n", "1:3", "unterminated code block: missing closing '}%'"),
    ("0 `x\n", "1:3", "unterminated back-quoted command"),
    ("/* x\n0 close(3) = 0\n", "1:1", "unterminated comment: missing closing '*/'"),
    ("0 close(3) = 0 @\n", "1:16", "expected an event time (such as 0, +0.1 or *), found '@'"),
    ("0 close(3) = 0\n\t+0 < . 1:1(0) win 1 ack 2\n", "2:22", "'ack' out of place"),
]


@pytest.mark.parametrize(("text", "where", "fragment"), CASES)
def test_error_location_and_message(text: str, where: str, fragment: str) -> None:
    with pytest.raises(PacketdrillSyntaxError) as info:
        parse(text, "broken.pkt")
    error = info.value
    assert f"{error.line}:{error.column}" == where, str(error)
    assert fragment in error.message, str(error)
    rendered = str(error)
    assert rendered.startswith(f"broken.pkt:{where}: ")
    _, *rest = rendered.split("\n")
    if rest:  # the source line and a caret under the column
        source, caret = rest
        assert source == text.split("\n")[error.line - 1].rstrip("\r")
        assert caret.endswith("^") and len(caret) == error.column


def test_cases_cover_distinct_inputs() -> None:
    assert len({text for text, _, _ in CASES}) == len(CASES) >= 100
