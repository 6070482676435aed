"""The script corpus: every construct, parsed into exactly the expected model.

Expected nodes are built with the AST constructors; positions are excluded
from ``==``, so each check states the meaning of a line and nothing about
where it sits. Times are integer microseconds throughout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aiostack.testing.packetdrill import ast, parse, parse_file
from aiostack.testing.packetdrill.ast import (
    AssignExpr,
    BitOrExpr,
    BraceExpr,
    CallExpr,
    CodeEvent,
    CodeExpr,
    Command,
    CommandEvent,
    Direction,
    EchoedRaw,
    EchoedTcp,
    EchoedUdp,
    Ecn,
    EllipsisExpr,
    Eol,
    FastOpen,
    GreEncap,
    GreHeader,
    GreHeaderExpr,
    IcmpMessage,
    IntegerExpr,
    IpEncap,
    IpInfo,
    ListExpr,
    Md5,
    MplsEncap,
    MplsEntry,
    MplsStackExpr,
    Mss,
    Nop,
    Option,
    PacketEvent,
    Ports,
    Sack,
    SackPermitted,
    Script,
    StringExpr,
    SyscallEvent,
    TcpSegment,
    TimeKind,
    TimeSpec,
    Timestamp,
    UdpDatagram,
    WindowScale,
    WordExpr,
)

SCRIPTS = Path(__file__).parent / "scripts"
ALL_SCRIPTS = sorted(SCRIPTS.glob("*.pkt"))

ELLIPSIS = EllipsisExpr()


def load(name: str) -> Script:
    return parse_file(SCRIPTS / name)


def packet(script: Script, index: int) -> PacketEvent:
    body = script.events[index].body
    assert isinstance(body, PacketEvent), body
    return body


def syscall(script: Script, index: int) -> SyscallEvent:
    body = script.events[index].body
    assert isinstance(body, SyscallEvent), body
    return body


def tcp(script: Script, index: int) -> TcpSegment:
    segment = packet(script, index).packet
    assert isinstance(segment, TcpSegment), segment
    return segment


def call(name: str, *args: ast.Expr, result: ast.Expr | None = None) -> SyscallEvent:
    return SyscallEvent(name, args, IntegerExpr(0) if result is None else result)


def word(name: str) -> WordExpr:
    return WordExpr(name)


def num(value: int) -> IntegerExpr:
    return IntegerExpr(value)


def test_corpus_is_complete() -> None:
    assert len(ALL_SCRIPTS) >= 15


@pytest.mark.parametrize("path", ALL_SCRIPTS, ids=lambda p: p.name)
def test_every_script_round_trips(path: Path) -> None:
    script = parse_file(path)
    text = str(script)
    again = parse(text, "formatted")
    assert again == script
    assert str(again) == text  # formatting is a fixed point
    assert script.path == str(path)


@pytest.mark.parametrize("path", ALL_SCRIPTS, ids=lambda p: p.name)
def test_event_lines_point_at_their_time(path: Path) -> None:
    script = parse_file(path)
    lines = path.read_text().splitlines()
    for event in script.events:
        line = lines[event.line - 1]
        assert line[event.column - 1] in "+*0123456789.", (event.line, line)
        assert event.time.line == event.line


def test_handshake_passive() -> None:
    script = load("handshake_passive.pkt")
    assert script.options == (Option("tolerance_usecs", "10000"), Option("mss", "1000"))
    assert script.option("mss") == "1000"
    assert script.option("missing") is None
    assert script.init_commands == (Command("../common/defaults.sh"),)
    assert script.cleanup_command is None
    assert len(script.events) == 11
    assert script.events[0].time == TimeSpec(TimeKind.ABSOLUTE, 0)
    assert script.events[0].line == 8
    assert syscall(script, 0) == call(
        "socket", ELLIPSIS, word("SOCK_STREAM"), word("IPPROTO_TCP"), result=num(3)
    )
    assert syscall(script, 1) == call(
        "setsockopt", num(3), word("SOL_SOCKET"), word("SO_REUSEADDR"), ListExpr((num(1),)), num(4)
    )
    syn = packet(script, 4)
    assert syn.direction is Direction.INBOUND and syn.inbound and not syn.outbound
    assert syn.packet == TcpSegment(
        "S",
        0,
        0,
        0,
        window=65535,
        options=(Mss(1460), SackPermitted(), Timestamp(100, 0), Nop(), WindowScale(7)),
    )
    synack = tcp(script, 5)
    assert packet(script, 5).outbound
    assert (synack.flags, synack.ack, synack.window) == ("S.", 1, None)
    assert synack.syn and synack.ack_flag and not synack.fin
    assert synack.options == (
        Mss(1460),
        SackPermitted(),
        Timestamp(1000, 100),
        Nop(),
        WindowScale(8),
    )
    assert script.events[6].time == TimeSpec(TimeKind.RELATIVE, 10_000)
    assert tcp(script, 6).options == (Nop(), Nop(), Timestamp(110, 1000))
    assert syscall(script, 8).args[3] == ListExpr((num(0),))
    assert syscall(script, 8).args[4] == ListExpr((num(4),))
    fin = tcp(script, 10)
    assert fin.fin and fin.ack_flag and fin.start_seq == fin.end_seq == 1
    assert script.events[10].line == 20


def test_handshake_active() -> None:
    script = load("handshake_active.pkt")
    getfl = syscall(script, 1)
    assert getfl.result == IntegerExpr(2, hex=True)
    assert getfl.errno is None and getfl.note == "flags O_RDWR"
    assert syscall(script, 2).args[2] == BitOrExpr((word("O_RDWR"), word("O_NONBLOCK")))
    connect = syscall(script, 3)
    assert connect.result == num(-1)
    assert (connect.errno, connect.strerror) == ("EINPROGRESS", "Operation now in progress")
    syn = tcp(script, 4)
    assert syn.window is None  # outbound without win: any window
    assert syn.options == (Mss(1460), SackPermitted(), Timestamp(100, 0), Nop(), WindowScale(8))
    assert script.events[5].time == TimeSpec(TimeKind.RELATIVE, 50_000)
    assert tcp(script, 5).options == (
        Mss(1400),
        Nop(),
        Nop(),
        SackPermitted(),
        Nop(),
        WindowScale(6),
    )
    assert tcp(script, 6) == TcpSegment(".", 1, 1, 0, ack=1)
    poll = syscall(script, 7)
    assert poll.args[0] == ListExpr(
        (
            BraceExpr(
                (
                    AssignExpr("fd", num(3)),
                    AssignExpr("events", BitOrExpr((word("POLLOUT"), word("POLLERR")))),
                    AssignExpr("revents", word("POLLOUT")),
                )
            ),
        )
    )
    assert tcp(script, 10) == TcpSegment("P.", 1, 1001, 1000, ack=1)


def test_data_transfer() -> None:
    script = load("data_transfer.pkt")
    assert script.init_commands == (
        Command(
            "../common/defaults.sh\n"
            "sysctl -q net.ipv4.tcp_timestamps=0\n"
            "sysctl -q net.ipv4.tcp_sack=0"
        ),
    )
    assert script.init_commands[0].line == 5
    times = [event.time for event in script.events]
    assert all(time.kind is TimeKind.ABSOLUTE for time in times)
    assert [time.usecs for time in times[:6]] == [0, 0, 0, 0, 100_000, 100_000]
    assert times[-1].usecs == 1_500_000
    assert tcp(script, 8) == TcpSegment("P.", 1, 1001, 1000, ack=1, window=257)
    assert tcp(script, 9) == TcpSegment("P.", 1001, 2001, 1000, ack=1, window=257)
    assert tcp(script, 10) == TcpSegment(".", 1, 1, 0, ack=2001)
    assert syscall(script, 11) == call("read", num(4), ELLIPSIS, num(2000), result=num(2000))
    assert tcp(script, 16).window == 0
    probe = tcp(script, 17)
    assert (probe.start_seq, probe.end_seq, probe.length) == (3000, 3000, 0)
    eagain = syscall(script, 19)
    assert (eagain.errno, eagain.strerror) == ("EAGAIN", "Resource temporarily unavailable")


def test_sack_recovery() -> None:
    script = load("sack_recovery.pkt")
    assert tcp(script, 4).options == (
        Mss(1000),
        SackPermitted(),
        Nop(),
        Nop(),
        Nop(),
        WindowScale(7),
    )
    assert [tcp(script, i).start_seq for i in range(9, 14)] == [1, 1001, 2001, 3001, 4001]
    assert tcp(script, 14).options == (Sack(((1001, 2001),)), Nop(), Nop())
    assert tcp(script, 15).options == (Nop(), Nop(), Sack(((1001, 3001),)))
    three = tcp(script, 16).options
    assert three is not None
    assert three[2] == Sack(((1001, 3001), (3001, 4001), (4001, 5001)))
    assert three[2].wire_length == 26
    assert tcp(script, 17) == TcpSegment(".", 1, 1001, 1000, ack=1)
    code = script.events[19].body
    assert code == CodeEvent("assert tcpi_retransmits == 0, tcpi_retransmits")


def test_timestamps() -> None:
    script = load("timestamps.pkt")
    assert script.init_commands == (Command("sysctl -q net.ipv4.tcp_timestamps=1"),)
    syn_options = tcp(script, 4).options
    assert syn_options is not None
    assert syn_options[:3] == (Nop(), Nop(), Timestamp(4294967295, 0))
    assert tcp(script, 5).options == (
        Mss(1460),
        SackPermitted(),
        Timestamp(100, 4294967295),
        Nop(),
        WindowScale(8),
    )
    assert script.events[6].time.usecs == 20_000
    assert script.events[8].time.usecs == 200_000
    assert tcp(script, 9).options == (Nop(), Nop(), Timestamp(340, 2))


def test_icmp_errors() -> None:
    script = load("icmp_errors.pkt")
    frag = packet(script, 10)
    assert frag.inbound
    assert frag.packet == IcmpMessage(
        "unreachable",
        "frag_needed",
        3,
        4,
        mtu=1200,
        echoed=EchoedTcp(1, 1461, 1460),
    )
    assert tcp(script, 11).length == 1148
    assert packet(script, 16).packet == UdpDatagram(1000)
    port = packet(script, 17).packet
    assert port == IcmpMessage("unreachable", "port_unreachable", 3, 3, echoed=EchoedUdp(1000))
    refused = syscall(script, 18)
    assert (refused.result, refused.errno) == (num(-1), "ECONNREFUSED")
    assert refused.strerror == "Connection refused"
    numbered = packet(script, 19).packet
    assert isinstance(numbered, IcmpMessage)
    assert (numbered.type_name, numbered.code_name, numbered.type, numbered.code) == (
        "type_3",
        "code_13",
        3,
        13,
    )
    echo = packet(script, 20).packet
    assert echo == IcmpMessage("echo_request", None, 8, 0, echo_id=7, echoed=EchoedRaw(64))


def test_udp_ports() -> None:
    script = load("udp_ports.pkt")
    assert packet(script, 2).packet == UdpDatagram(100)
    assert packet(script, 3).packet == UdpDatagram(0, Ports(5353, 8080))
    assert syscall(script, 4) == call(
        "recvfrom", num(3), ELLIPSIS, num(1500), num(0), ELLIPSIS, ELLIPSIS, result=num(100)
    )
    assert syscall(script, 5).args[3] == word("MSG_DONTWAIT")
    assert packet(script, 8).packet == UdpDatagram(65507, Ports(8080, 5353))
    assert tcp(script, 9) == TcpSegment("S", 0, 0, 0, window=1000, ports=Ports(40000, 8080))
    assert tcp(script, 10) == TcpSegment("R.", 0, 0, 0, ack=1, window=0, ports=Ports(8080, 40000))


def test_poll_blocking() -> None:
    script = load("poll_blocking.pkt")
    accept = syscall(script, 4)
    assert accept.blocking and accept.end_usecs == 150_000
    assert script.events[4].time == TimeSpec(TimeKind.RELATIVE, 0)
    read = syscall(script, 8)
    assert script.events[8].time == TimeSpec(TimeKind.RELATIVE, 100_000)
    assert read.end_usecs == 500_000
    assert not syscall(script, 11).blocking
    assert syscall(script, 11).args[0] == ListExpr(
        (
            BraceExpr(
                (
                    AssignExpr("fd", num(4)),
                    AssignExpr("events", BitOrExpr((word("POLLIN"), word("POLLRDNORM")))),
                    AssignExpr("revents", num(0)),
                )
            ),
        )
    )
    two = syscall(script, 12)
    assert two.end_usecs == 100_000
    assert two.args[0] == ListExpr(
        (
            BraceExpr((AssignExpr("fd", num(4)), AssignExpr("events", word("POLLIN")))),
            BraceExpr(
                (
                    AssignExpr("fd", num(3)),
                    AssignExpr("events", word("POLLIN")),
                    AssignExpr("revents", num(0)),
                )
            ),
        )
    )
    assert syscall(script, 13).args[0] == ListExpr(())
    epoll = syscall(script, 15).args[3]
    assert isinstance(epoll, BraceExpr)
    assert epoll.fields() == {"events": word("EPOLLIN"), "fd": num(4)}


def test_sockopts_structs() -> None:
    script = load("sockopts_structs.pkt")
    linger = syscall(script, 1).args[3]
    assert linger == BraceExpr((AssignExpr("onoff", num(1)), AssignExpr("linger", num(0))))
    linux_linger = syscall(script, 2).args[3]
    assert isinstance(linux_linger, BraceExpr)
    assert linux_linger.fields() == {"l_onoff": num(1), "l_linger": num(5)}
    assert syscall(script, 6).args[3] == ListExpr((IntegerExpr(0x10000, hex=True),))
    assert syscall(script, 8).args[3] == StringExpr("cubic")
    assert syscall(script, 9).args[3] == StringExpr("reno", ellipsis=True)
    sockaddr = syscall(script, 11).args[1]
    assert sockaddr == BraceExpr(
        (
            AssignExpr("sa_family", word("AF_INET")),
            AssignExpr("sin_port", CallExpr("htons", (num(8080),))),
            AssignExpr("sin_addr", CallExpr("inet_addr", (StringExpr("192.168.0.1"),))),
        )
    )
    connect = syscall(script, 12)
    assert isinstance(connect.args[1], BraceExpr)
    assert connect.args[1].fields()["sin_port"] == CallExpr("htons", (num(80),))
    assert tcp(script, 14) == TcpSegment("S.", 0, 0, 0, ack=1, window=5840, options=(Mss(536),))
    assert syscall(script, 16).args[1] == word("SIOCINQ")
    info = syscall(script, 18).args[3]
    assert isinstance(info, BraceExpr)
    assert info.fields() == {
        "tcpi_state": word("TCP_ESTABLISHED"),
        "tcpi_snd_mss": num(536),
        "tcpi_rto": num(1000000),
    }
    assert syscall(script, 19).args[3] == ListExpr((num(-1),))
    v6 = syscall(script, 21)
    assert isinstance(v6.args[1], BraceExpr)
    assert v6.args[1].fields()["sin_addr"] == CallExpr("inet6_addr", (StringExpr("2001:db8::1"),))
    assert v6.strerror == "Address family not supported by protocol"


def test_code_blocks() -> None:
    script = load("code_blocks.pkt")
    assert script.events[8].body == CodeEvent("assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd")
    block = script.events[9]
    assert isinstance(block.body, CodeEvent)
    assert block.body.line == block.line == 16
    assert block.body.code == (
        "\nimport math\n"
        'for name in ("tcpi_rtt", "tcpi_rttvar"):\n'
        "    value = globals()[name]\n"
        "    assert value > 0, (name, value)\n"
        "assert math.isclose(tcpi_rtt / 1000, 100, rel_tol=0.1)\n"
    )
    compile(block.body.code, "<pkt>", "exec")  # indentation survives
    result = syscall(script, 10).result
    assert result == CodeExpr("0 if tcpi_state == 1 else -1")
    assert script.events[11].body == CodeEvent('print("tabs are stripped")')


def test_commands_and_comments() -> None:
    script = load("commands_comments.pkt")
    assert script.options == (Option("tolerance_usecs", "10000"), Option("dry_run", None))
    (init,) = script.init_commands
    assert init.text.startswith('sysctl -q net.ipv4.tcp_rmem="4096 131072 6291456" && \\\n')
    assert init.text.endswith('echo "setup done"')
    assert init.text.count("\n") == 3
    assert script.events[0].line == 12
    assert script.events[1].body == CommandEvent("sysctl -q net.ipv4.tcp_syncookies=2")
    assert syscall(script, 2) == call("bind", num(3), ELLIPSIS, ELLIPSIS)
    assert syscall(script, 3) == call("listen", num(3), num(10))
    assert script.events[4].time == TimeSpec(TimeKind.RELATIVE, 250_000)
    assert script.events[4].body == CommandEvent("ss -tn state listening | grep -q :8080")
    assert script.cleanup_command == Command("echo cleanup; sysctl -q net.ipv4.tcp_syncookies=1")
    assert script.cleanup_command.line == 18


def test_ecn_and_ip_info() -> None:
    script = load("ecn_ip_info.pkt")
    syn = tcp(script, 4)
    assert syn.flags == "SEW" and syn.ece and syn.cwr and not syn.ae
    synack = packet(script, 5)
    assert synack.ip_info == IpInfo(ecn=Ecn.NO_ECN)
    assert tcp(script, 5).flags == "SE."
    assert packet(script, 6).ip_info == IpInfo(ecn=Ecn.ECT0)
    assert packet(script, 8).ip_info == IpInfo(ecn=Ecn.CE)
    assert packet(script, 9).ip_info == IpInfo(ecn=Ecn.ECT01)
    assert packet(script, 10).ip_info == IpInfo(tos=0x2)
    assert tcp(script, 10).flags == "W."
    assert packet(script, 11).ip_info == IpInfo(tos=0, flow_label=0x12345)
    assert packet(script, 12).ip_info == IpInfo(ttl=64)
    assert script.events[13].time == TimeSpec(TimeKind.RELATIVE_RANGE, 30_000, 250_000)
    assert script.events[14].time == TimeSpec(TimeKind.ANY)
    assert tcp(script, 14).window == 257
    assert script.events[15].time == TimeSpec(TimeKind.ABSOLUTE_RANGE, 500_000, 700_000)
    assert packet(script, 15).ip_info == IpInfo(flow_label=1)


def test_fastopen_and_md5() -> None:
    script = load("fastopen_md5.pkt")
    assert script.init_commands == (Command("sysctl -q net.ipv4.tcp_fastopen=0x603"),)
    sendto = syscall(script, 2)
    assert sendto.args[3] == word("MSG_FASTOPEN")
    assert tcp(script, 3).options == (
        Mss(1460),
        SackPermitted(),
        Timestamp(100, 0),
        Nop(),
        WindowScale(None),
        FastOpen(b""),
        Nop(),
        Nop(),
    )
    synack = tcp(script, 4)
    assert synack.start_seq == 123
    assert synack.options is not None
    assert synack.options[6] == FastOpen(bytes.fromhex("abcd1234"))
    assert tcp(script, 5).options is None  # <...>
    assert tcp(script, 7).options is None
    assert script.events[8].time == TimeSpec(TimeKind.RELATIVE, 1_000_000)
    data_syn = tcp(script, 10)
    assert (data_syn.start_seq, data_syn.end_seq, data_syn.length) == (0, 1000, 1000)
    assert data_syn.options is not None
    foexp = data_syn.options[3]
    assert foexp == FastOpen(bytes(range(1, 9)), experimental=True)
    assert foexp.wire_length == 12
    assert tcp(script, 11).options == (
        Md5(bytes(range(16))),
        Nop(),
        Nop(),
        Eol(),
        Eol(),
        Eol(),
        Eol(),
    )
    assert tcp(script, 12).options == (Md5(b""), Nop(), Nop())


def test_msg_iovec() -> None:
    script = load("msg_iovec.pkt")
    writev = syscall(script, 8)
    assert writev.args[1] == ListExpr(
        (BraceExpr((ELLIPSIS, num(400))), BraceExpr((ELLIPSIS, num(600))))
    )
    named = syscall(script, 10).args[1]
    assert named == ListExpr(
        (BraceExpr((AssignExpr("iov_base", ELLIPSIS), AssignExpr("iov_len", num(10)))),)
    )
    msg = syscall(script, 12).args[1]
    assert msg == BraceExpr(
        (
            AssignExpr("msg_name", ELLIPSIS, ELLIPSIS),
            AssignExpr("msg_iov", ListExpr((BraceExpr((ELLIPSIS, num(1000))),)), num(1)),
            AssignExpr("msg_flags", num(0)),
        )
    )
    assert syscall(script, 12).args[2] == word("MSG_MORE")
    with_control = syscall(script, 13).args[1]
    assert isinstance(with_control, BraceExpr)
    assert with_control.fields()["msg_control"] == ListExpr(())
    assert tcp(script, 14) == TcpSegment("P.", 1011, 2021, 1010, ack=1)
    recvmsg = syscall(script, 18).args[1]
    assert isinstance(recvmsg, BraceExpr)
    control = recvmsg.fields()["msg_control"]
    assert control == ListExpr(
        (
            BraceExpr(
                (
                    AssignExpr("cmsg_level", word("SOL_SOCKET")),
                    AssignExpr("cmsg_type", word("SCM_TIMESTAMPING")),
                    AssignExpr(
                        "cmsg_data",
                        BraceExpr((AssignExpr("scm_sec", num(0)), AssignExpr("scm_nsec", num(0)))),
                    ),
                )
            ),
        )
    )
    send = syscall(script, 19)
    assert send.args[1] == StringExpr("hello")
    assert send.args[3] == BitOrExpr((word("MSG_NOSIGNAL"), word("MSG_DONTWAIT")))
    assert syscall(script, 21).args[1] == StringExpr("abc", ellipsis=True)
    errqueue = syscall(script, 22)
    assert isinstance(errqueue.args[1], BraceExpr)
    assert errqueue.args[1].fields()["msg_flags"] == word("MSG_ERRQUEUE")


def test_encapsulation() -> None:
    script = load("encapsulation.pkt")
    assert script.options == (Option("dry_run", None),)
    first = packet(script, 0)
    assert first.encapsulation == (IpEncap(4, "192.0.2.2", "192.168.0.1"), GreEncap())
    assert first.packet == TcpSegment(".", 1, 1001, 1000, ack=1, window=123)
    mpls = packet(script, 2)
    assert mpls.encapsulation[2] == MplsEncap((MplsEntry(123, 1, True, 255),))
    assert mpls.line == 7 and mpls.packet.line == 8
    two = packet(script, 3).encapsulation[2]
    assert two == MplsEncap((MplsEntry(0, 0, False, 0), MplsEntry(1048575, 7, True, 255)))
    ipip = packet(script, 4).encapsulation
    assert ipip == (
        IpEncap(4, "192.0.2.2", "192.168.0.1", IpInfo(tos=4)),
        IpEncap(4, "192.0.2.2", "192.168.0.1"),
    )
    gre = packet(script, 5).encapsulation[1]
    assert gre == GreEncap(GreHeader(0xB000, 511, 1023, 0x80001234, 512))
    flagged = packet(script, 6).encapsulation[1]
    assert flagged == GreEncap(GreHeader(0x3000, 0, 0, 7, 1))
    v6 = packet(script, 7).encapsulation
    assert v6 == (IpEncap(6, "2001:db8::2", "2001:db8::1"), GreEncap())
    assert packet(script, 8).encapsulation[1] == IpEncap(6, "::1", "fe80::1")
    assert syscall(script, 9).args[3] == MplsStackExpr((MplsEntry(16, 0, True, 64),))
    assert syscall(script, 10).args[3] == GreHeaderExpr(GreHeader(0, 0, 0, 0, 0))


def test_close_and_rst() -> None:
    script = load("close_rst.pkt")
    noflags = tcp(script, 8)
    assert noflags.flags == "" and not noflags.ack_flag and noflags.ack is None
    urgent = tcp(script, 9)
    assert urgent.urg_flag and urgent.urg == 1 and urgent.length == 1
    assert syscall(script, 11).args[1] == word("SHUT_WR")
    assert tcp(script, 13) == TcpSegment("F.", 2, 2, 0, ack=2, window=514)
    epipe = syscall(script, 17)
    assert (epipe.errno, epipe.strerror) == ("EPIPE", "Broken pipe")
    assert tcp(script, 25) == TcpSegment("R.", 1, 1, 0, ack=101)
    rst = tcp(script, 26)
    assert rst.rst and rst.window == 0
    assert syscall(script, 27).args[3] == ListExpr((word("ECONNREFUSED"),))


def test_ipv6_icmp_tables() -> None:
    script = load("ipv6_icmp.pkt")
    assert script.option("ip_version") == "ipv6"
    assert script.option("local_ip") == "fd3d:fa7b:d17d::1"
    too_big = packet(script, 10).packet
    assert too_big == IcmpMessage(
        "packet_too_big", None, 2, 0, mtu=1280, echoed=EchoedTcp(1, 1441, 1440)
    )
    port = packet(script, 11).packet
    assert isinstance(port, IcmpMessage) and (port.type, port.code) == (1, 4)
    hop = packet(script, 12).packet
    assert isinstance(hop, IcmpMessage) and (hop.type, hop.code, hop.echoed) == (3, 0, None)
    assert packet(script, 13).ip_info == IpInfo(flow_label=0xFFFFF)


def test_defines_and_option_forms() -> None:
    script = load("defines_options.pkt")
    assert script.options[:4] == (
        Option("tolerance_usecs", "4000"),
        Option("tolerance_percent", "0.5"),
        Option("ip_version", "ipv4"),
        Option("local_ip", "192.168.0.1"),
    )
    assert script.option("define") == "SETUP=`sysctl -q net.ipv4.tcp_sack=1`"
    assert Option("define", 'CC="reno"') in script.options
    assert script.options[-2:] == (Option("non_fatal", "packet"), Option("verbose", None))
    assert syscall(script, 0).args[1] == word("SOCK_STREAM")
    assert syscall(script, 1).args[3] == StringExpr("reno")
    assert script.events[2].body == CommandEvent("sysctl -q net.ipv4.tcp_sack=1")
    bind = syscall(script, 3).args[1]
    assert isinstance(bind, BraceExpr)
    assert bind.fields()["sin_port"] == CallExpr("htons", (num(8080),))
    assert tcp(script, 4).ports == Ports(40000, 8080)
