"""The packetdrill parser: tokens to a :class:`~.ast.Script`, grammar of ``parser.y``.

This is a recursive-descent reading of packetdrill's bison grammar, rule for
rule, including the semantic checks packetdrill makes while parsing (ranges
of every numeric field, ``end == start + len`` for sequence ranges, ``*``
and time ranges only on outbound packets, ``<...>`` only outbound, ``win``
required inbound, valid flag letters, TCP options at most 40 bytes and padded
to a multiple of 4, known ICMP types and codes, Fast Open cookie and MD5
digest hex), because a script that packetdrill would reject must not quietly
run here. Like bison's grammar it is indifferent to line breaks: an event may
span lines and ends where its grammar ends.

Differences from ``parser.y``, listed so that nobody mistakes them for
packetdrill behaviour. Accepted here, rejected by packetdrill:

* several back-quoted init commands before the first event (packetdrill takes
  one; a multi-line command is the portable way);
* ``ERRNO`` without its ``(text)``, and notes containing any tokens (e.g.
  keywords such as ``ack``), not only plain words;
* option values that are floats, hex, ``NAME=INTEGER``, or hyphenated words
  such as ``--ip_version=ipv4-mapped-ipv6``;
* ``md5`` without a digest (an empty MD5 option, as packetdrill prints it);
* ``%{ ... }%`` as a system call's expected result;
* ``{...}`` as any struct, with named (``name=value``) or positional fields:
  this covers packetdrill's sockaddr, linger, pollfd, iovec, msghdr, cmsg,
  epoll_event and sock_extended_err shapes and also the Linux spellings
  ``{l_onoff=1, l_linger=0}`` and ``{iov_base=..., iov_len=1000}``;
* keywords used as plain names (``setsockopt(3, SOL_IP, IP_TTL, [ttl], 4)``).

Rejected here, silently truncated or ignored by packetdrill: ``[ttl N]``
above 255, GRE fields and ``[udp (N)]``/``[raw (N)]`` sizes beyond their
header fields, ``htons()`` beyond 65535, an invalid ``inet_addr("...")``
address, a negative ICMP ``mtu``.

``--define=NAME=VALUE`` options (and the ``defines`` argument, packetdrill's
``-D``) substitute NAME wherever it appears as a word after the options, as
packetdrill's lexer does; keywords are never substituted.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from .ast import (
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
    Encapsulation,
    Eol,
    Event,
    EventBody,
    Expr,
    FastOpen,
    GreEncap,
    GreHeader,
    GreHeaderExpr,
    IcmpEchoed,
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
    TcpOption,
    TcpSegment,
    TimeKind,
    TimeSpec,
    Timestamp,
    Transport,
    UdpDatagram,
    WindowScale,
    WordExpr,
)
from .errors import PacketdrillSyntaxError
from .lexer import KEYWORDS, Source, Token, TokenKind, tokenize

__all__ = ["parse", "parse_file"]

_U8 = 0xFF
_U16 = 0xFFFF
_U20 = 0xFFFFF
_U32 = 0xFFFF_FFFF

#: TCP header bytes available for options (60 - 20), packetdrill's MAX_TCP_OPTION_BYTES.
MAX_TCP_OPTION_BYTES = 40
_MD5_DIGEST_BYTES = 16

_VALID_TCP_FLAGS = ".FSRPEWAU01234567"
_ACE_FLAGS = "01234567"
_ECN_FLAGS = "EWA"

_ECN_WORDS = {ecn.value: ecn for ecn in Ecn}
_IP_INFO_WORDS = frozenset({"tos", "ttl", "flowlabel", *_ECN_WORDS})

# GRE header flag bits (RFC 2784/2890), as packetdrill's gre.h.
_GRE_FLAG_C = 0x8000
_GRE_FLAG_K = 0x2000
_GRE_FLAG_S = 0x1000
# packetdrill's keyword is literally "sequence#"; plain "sequence" is accepted too.
_GRE_FLAG_WORDS = {
    "checksum": _GRE_FLAG_C,
    "key": _GRE_FLAG_K,
    "sequence#": _GRE_FLAG_S,
    "sequence": _GRE_FLAG_S,
}

#: The only functions an expression may call (packetdrill has exactly these).
_CALLS = frozenset({"htons", "inet_addr", "inet6_addr"})

# ICMP type and code names, as packetdrill's icmp_packet.c tables.
_ICMPV4_UNREACHABLE_CODES = {
    "net_unreachable": 0,
    "host_unreachable": 1,
    "protocol_unreachable": 2,
    "port_unreachable": 3,
    "frag_needed": 4,
    "source_route_failed": 5,
    "net_unknown": 6,
    "host_unknown": 7,
    "source_host_isolated": 8,
    "net_prohibited": 9,
    "host_prohibited": 10,
    "net_unreachable_for_tos": 11,
    "host_unreachable_for_tos": 12,
    "packet_filtered": 13,
    "precedence_violation": 14,
    "precedence_cutoff": 15,
}
_ICMPV4_TYPES: dict[str, tuple[int, dict[str, int] | None]] = {
    "echo_reply": (0, None),
    "unreachable": (3, _ICMPV4_UNREACHABLE_CODES),
    "source_quench": (4, None),
    "redirect": (5, None),
    "echo_request": (8, None),
    "time_exceeded": (11, None),
    "parameter_problem": (12, None),
    "timestamp_request": (13, None),
    "timestamp_reply": (14, None),
    "information_request": (15, None),
    "information_reply": (16, None),
    "address_mask_request": (17, None),
    "address_mask_reply": (18, None),
}
_ICMPV6_TYPES: dict[str, tuple[int, dict[str, int] | None]] = {
    "unreachable": (
        1,
        {
            "net_unreachable": 0,
            "no_route": 0,
            "admin_prohibited": 1,
            "not_neighbour": 2,
            "address_unreachable": 3,
            "port_unreachable": 4,
        },
    ),
    "packet_too_big": (2, None),
    "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
    "parameter_problem": (
        4,
        {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2},
    ),
    "echo_request": (128, None),
    "echo_reply": (129, None),
}
_ICMPV4_DEST_UNREACH = 3
_ICMPV4_FRAG_NEEDED = 4
_ICMPV6_PKT_TOOBIG = 2

_INTEGER_RE = re.compile(r"-?[0-9]+")
_HEX_RE = re.compile(r"0x[0-9a-fA-F]+")
_HEX_DIGITS_RE = re.compile(r"[0-9a-fA-F]*")
_NUMBERED_RE = re.compile(r"(?:type|code)_([0-9]+)")

#: Deeper nesting of [ ] and { } than any real script uses; beyond it the
#: script is rejected instead of exhausting Python's recursion limit.
_MAX_NESTING = 64


def parse(
    text: str, filename: str = "<string>", defines: Mapping[str, str] | None = None
) -> Script:
    """Parse script text; ``filename`` is used in error messages and ``Script.path``.

    ``defines`` are packetdrill's ``-D NAME=VALUE`` substitutions (the
    script's own ``--define`` options are applied too). Raises
    :class:`PacketdrillSyntaxError` and nothing else for any text.
    """
    return _Parser(Source(text, filename), defines).parse_script()


def parse_file(path: str | os.PathLike[str], defines: Mapping[str, str] | None = None) -> Script:
    """Read and parse a script file (UTF-8; a byte-order mark is ignored).

    Raises :class:`PacketdrillSyntaxError` for anything wrong with the
    contents, including bytes that are not UTF-8; a file that cannot be read
    raises the usual :class:`OSError`.
    """
    data = Path(path).read_bytes()
    filename = os.fspath(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lossy = data.decode("utf-8", errors="replace")
        offset = len(data[: exc.start].decode("utf-8", errors="replace"))
        bad = data[exc.start : exc.start + 1].hex()
        raise Source(lossy, filename).error_at(offset, f"invalid UTF-8 byte 0x{bad}") from None
    return parse(text, filename, defines)


def _usecs(token: Token) -> int:
    """Seconds text (``1``, ``0.25``, ``.1``) to integer microseconds, exactly.

    packetdrill computes ``(s64)(atof(text) * 1e6)``, and binary rounding
    makes that 1 us short for some values (``1.001`` becomes 1000999).
    Decimal arithmetic gives the value the author wrote; digits past the
    microsecond are dropped, as packetdrill's truncation drops them.
    """
    if token.kind is TokenKind.INTEGER:
        return int(token.text) * 1_000_000
    whole, _, frac = token.text.partition(".")
    return int(whole or "0") * 1_000_000 + int((frac + "000000")[:6])


class _Parser:
    """One parse: a token list, a cursor, and the settings options establish."""

    def __init__(self, source: Source, defines: Mapping[str, str] | None) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.defines: dict[str, str] = dict(defines or {})
        self.ip_version = 4
        self.depth = 0

    # ------------------------------------------------------------ token cursor

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not TokenKind.EOF:
            self.index += 1
        return token

    def at_punct(self, char: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind is TokenKind.PUNCT and token.text == char

    def at_word(self, *words: str) -> bool:
        token = self.peek()
        return token.kind is TokenKind.WORD and token.text in words

    def accept_punct(self, char: str) -> Token | None:
        if self.at_punct(char):
            return self.advance()
        return None

    def error(self, token: Token, message: str) -> PacketdrillSyntaxError:
        offset = token.offset
        if token.kind is TokenKind.EOF and len(self.tokens) > 1:
            offset = self.tokens[-2].end  # just after the last real token
        return self.source.error_at(offset, message)

    def fail_expected(self, what: str, token: Token | None = None) -> NoReturn:
        token = self.peek() if token is None else token
        raise self.error(token, f"expected {what}, found {token.describe()}")

    def expect_punct(self, char: str, context: str = "") -> Token:
        token = self.peek()
        if token.kind is TokenKind.PUNCT and token.text == char:
            return self.advance()
        self.fail_expected(f"'{char}'{context}")

    def expect_word(self, word: str, context: str = "") -> Token:
        if self.at_word(word):
            return self.advance()
        self.fail_expected(f"'{word}'{context}")

    def expect_integer(self, what: str, low: int, high: int) -> tuple[int, Token]:
        """A decimal INTEGER token in [low, high]; ``what`` names it in errors."""
        token = self.peek()
        if token.kind is not TokenKind.INTEGER:
            self.fail_expected(f"an integer ({what})")
        self.advance()
        return self.check_range(int(token.text), low, high, what, token), token

    def expect_any_int(self, what: str, low: int, high: int) -> int:
        """A decimal or hex integer in [low, high] (packetdrill's ``any_int``)."""
        token = self.peek()
        if token.kind is TokenKind.INTEGER:
            value = int(token.text)
        elif token.kind is TokenKind.HEX_INTEGER:
            value = int(token.text, 16)
        else:
            self.fail_expected(f"an integer ({what})")
        self.advance()
        return self.check_range(value, low, high, what, token)

    def expect_hex(self, what: str, high: int) -> int:
        token = self.peek()
        if token.kind is not TokenKind.HEX_INTEGER:
            self.fail_expected(f"a hex integer such as 0x10 ({what})")
        self.advance()
        return self.check_range(int(token.text, 16), 0, high, what, token)

    def check_range(self, value: int, low: int, high: int, what: str, token: Token) -> int:
        if not low <= value <= high:
            raise self.error(token, f"{what} out of range: {value} (must be {low}..{high})")
        return value

    # ------------------------------------------------------------------ script

    def parse_script(self) -> Script:
        options: list[Option] = []
        while self.peek().kind is TokenKind.OPTION:
            options.append(self.parse_option())
        self.apply_options(options)

        init_commands: list[Command] = []
        while self.peek().kind is TokenKind.BACK_QUOTED:
            token = self.advance()
            init_commands.append(Command(token.value, line=token.line, column=token.column))

        events: list[Event] = []
        while self.at_event_start():
            events.append(self.parse_event())
        if not events:
            self.fail_expected("an event (a time such as 0, +0.1 or *, then an action)")

        cleanup: Command | None = None
        if self.peek().kind is TokenKind.BACK_QUOTED:
            token = self.advance()
            cleanup = Command(token.value, line=token.line, column=token.column)
            if self.peek().kind is not TokenKind.EOF:
                self.fail_expected("end of file after the cleanup command")
        elif self.peek().kind is not TokenKind.EOF:
            self.fail_expected("an event time (such as 0, +0.1 or *)")
        return Script(
            tuple(options),
            tuple(init_commands),
            tuple(events),
            cleanup,
            path=self.source.filename,
        )

    def parse_option(self) -> Option:
        token = self.advance()
        if not self.accept_punct("="):
            return Option(token.value, None, line=token.line, column=token.column)
        value = self.peek()
        kind = value.kind
        quoted = False
        if kind is TokenKind.STRING:
            self.advance()
            text, quoted = value.value, True
        elif kind in (
            TokenKind.INTEGER,
            TokenKind.HEX_INTEGER,
            TokenKind.FLOAT,
            TokenKind.IPV4_ADDR,
            TokenKind.IPV6_ADDR,
        ):
            self.advance()
            text = value.text
        elif kind is TokenKind.WORD:
            self.advance()
            text = value.text
            if self.at_punct("="):  # --define=NAME=VALUE
                self.advance()
                rhs = self.peek()
                if rhs.kind in (
                    TokenKind.WORD,
                    TokenKind.INTEGER,
                    TokenKind.HEX_INTEGER,
                    TokenKind.STRING,
                    TokenKind.BACK_QUOTED,
                ):
                    self.advance()
                    text = f"{text}={rhs.text}"
                else:
                    self.fail_expected(f"a value for {text}= (a word, number, string or command)")
            else:
                # Hyphenated words written without spaces: ipv4-mapped-ipv6.
                last = value
                while (
                    self.at_punct("-")
                    and self.peek().offset == last.end
                    and self.peek(1).kind is TokenKind.WORD
                    and self.peek(1).offset == self.peek().end
                ):
                    self.advance()
                    last = self.advance()
                    text += "-" + last.text
        else:
            self.fail_expected(f"a value for option --{token.value}")
        return Option(token.value, text, quoted, line=token.line, column=token.column)

    def apply_options(self, options: list[Option]) -> None:
        """Settings the rest of the parse depends on, then ``--define`` substitution."""
        for option in options:
            if option.name == "define" and option.value and "=" in option.value:
                name, _, value = option.value.partition("=")
                self.defines[name] = value
            elif option.name == "ip_version":
                self.ip_version = 6 if option.value == "ipv6" else 4
        if self.defines:
            self.tokens[self.index :] = [
                self.substitute(token) for token in self.tokens[self.index :]
            ]

    def substitute(self, token: Token) -> Token:
        if token.kind is not TokenKind.WORD or token.text in KEYWORDS:
            return token
        value = self.defines.get(token.text)
        if value is None:
            return token
        kind = TokenKind.WORD
        decoded = value
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"`':
            kind = TokenKind.STRING if value[0] == '"' else TokenKind.BACK_QUOTED
            decoded = value[1:-1]
        elif _INTEGER_RE.fullmatch(value):
            kind = TokenKind.INTEGER
        elif _HEX_RE.fullmatch(value):
            kind = TokenKind.HEX_INTEGER
        return Token(kind, value, decoded, token.offset, token.end, token.line, token.column)

    # ------------------------------------------------------------------ events

    def at_event_start(self) -> bool:
        token = self.peek()
        return token.kind in (TokenKind.INTEGER, TokenKind.FLOAT) or (
            token.kind is TokenKind.PUNCT and token.text in "+*"
        )

    def parse_event(self) -> Event:
        first = self.peek()
        time = self.parse_event_time()
        body = self.parse_action()
        outbound_packet = isinstance(body, PacketEvent) and body.outbound
        if time.kind is TimeKind.ANY and not outbound_packet:
            raise self.error(first, "event time * can only be used with outbound packets")
        if time.kind in (TimeKind.ABSOLUTE_RANGE, TimeKind.RELATIVE_RANGE) and not outbound_packet:
            raise self.error(first, "event time range can only be used with outbound packets")
        return Event(time, body, line=first.line, column=first.column)

    def parse_event_time(self) -> TimeSpec:
        first = self.peek()
        if self.accept_punct("*"):
            return TimeSpec(TimeKind.ANY, line=first.line, column=first.column)
        if self.accept_punct("+"):
            start = self.parse_time()
            if not self.accept_punct("~"):
                return TimeSpec(TimeKind.RELATIVE, start, line=first.line, column=first.column)
            self.expect_punct("+", " (a relative time range is written +a~+b)")
            end_token = self.peek()
            end = self.parse_time()
            self.check_range_order(start, end, end_token)
            return TimeSpec(
                TimeKind.RELATIVE_RANGE, start, end, line=first.line, column=first.column
            )
        if first.kind not in (TokenKind.INTEGER, TokenKind.FLOAT):
            self.fail_expected("an event time (such as 0, +0.1 or *)")
        start = self.parse_time()
        if not self.accept_punct("~"):
            return TimeSpec(TimeKind.ABSOLUTE, start, line=first.line, column=first.column)
        end_token = self.peek()
        if self.at_punct("+"):
            raise self.error(end_token, "an absolute time range ends with an absolute time (a~b)")
        end = self.parse_time()
        self.check_range_order(start, end, end_token)
        return TimeSpec(TimeKind.ABSOLUTE_RANGE, start, end, line=first.line, column=first.column)

    def check_range_order(self, start: int, end: int, token: Token) -> None:
        if end < start:
            raise self.error(token, "time range is backwards")

    def parse_time(self) -> int:
        token = self.peek()
        if token.kind not in (TokenKind.INTEGER, TokenKind.FLOAT):
            self.fail_expected("a time in seconds (such as 0, 1.5 or .100)")
        if token.text.startswith("-"):
            # packetdrill rejects a value below zero; "-0" and "-0.0" are zero.
            if any(digit in token.text for digit in "123456789"):
                raise self.error(token, "negative time")
            self.advance()
            return 0
        self.advance()
        return _usecs(token)

    def parse_action(self) -> EventBody:
        token = self.peek()
        kind = token.kind
        if kind is TokenKind.PUNCT and token.text in "<>":
            return self.parse_packet()
        if kind in (TokenKind.WORD, TokenKind.ELLIPSIS):
            return self.parse_syscall()
        if kind is TokenKind.BACK_QUOTED:
            self.advance()
            return CommandEvent(token.value, line=token.line, column=token.column)
        if kind is TokenKind.CODE:
            self.advance()
            return CodeEvent(token.value, line=token.line, column=token.column)
        self.fail_expected(
            "a packet ('<' or '>'), a system call, a `command` or a %{ code }% block"
        )

    # ----------------------------------------------------------------- packets

    def parse_packet(self) -> PacketEvent:
        arrow = self.advance()
        direction = Direction(arrow.text)
        layers: list[Encapsulation] = []
        while True:
            if self.at_word("ipv4", "ipv6"):
                layers.append(self.parse_ip_encap())
            elif self.at_word("gre", "GREv0"):
                layers.append(self.parse_gre_encap())
            elif self.at_word("mpls"):
                layers.append(self.parse_mpls_encap())
            else:
                break
        info_token = self.peek()
        ip_info = self.parse_opt_ip_info()
        packet: Transport
        if self.at_word("udp"):
            if ip_info is not None and ip_info.ecn is not None:
                raise self.error(info_token, "ECN can only be used with TCP packets")
            packet = self.parse_udp()
        else:
            if (
                ip_info is not None
                and ip_info.ecn is Ecn.ECT01
                and direction is not Direction.OUTBOUND
            ):
                raise self.error(info_token, "[ect01] can only be used with outbound packets")
            packet = self.parse_icmp() if self.at_word("icmp") else self.parse_tcp(direction)
        return PacketEvent(
            direction,
            packet,
            ip_info,
            tuple(layers),
            line=arrow.line,
            column=arrow.column,
        )

    def parse_opt_ip_info(self) -> IpInfo | None:
        if self.at_punct("(") or self.at_punct("["):
            return self.parse_ip_info()
        return None

    def parse_ip_info(self) -> IpInfo:
        """``[ecn|tos 0x..[, flowlabel 0x..]]``, ``[flowlabel 0x..]`` or ``[ttl N]``."""
        opener = self.advance()
        closer = ")" if opener.text == "(" else "]"
        token = self.peek()
        ecn: Ecn | None = None
        tos: int | None = None
        flow_label: int | None = None
        ttl: int | None = None
        if token.kind is TokenKind.WORD and token.text in _ECN_WORDS:
            self.advance()
            ecn = _ECN_WORDS[token.text]
        elif self.at_word("tos"):
            self.advance()
            tos = self.expect_hex("tos", _U8)
        elif self.at_word("ttl"):
            self.advance()
            ttl, _ = self.expect_integer("ttl", 0, _U8)
        elif self.at_word("flowlabel"):
            self.advance()
            flow_label = self.expect_hex("flowlabel", _U20)
        else:
            self.fail_expected(
                "IP details: an ECN codepoint (noecn, ect0, ect1, ect01, ce), "
                "tos 0x.., flowlabel 0x.. or ttl N"
            )
        if (ecn is not None or tos is not None) and self.accept_punct(","):
            self.expect_word("flowlabel", " after ','")
            flow_label = self.expect_hex("flowlabel", _U20)
        self.expect_punct(closer, " to close the IP details")
        return IpInfo(ecn, tos, flow_label, ttl, line=opener.line, column=opener.column)

    def parse_ip_encap(self) -> IpEncap:
        keyword = self.advance()
        version = 6 if keyword.text == "ipv6" else 4
        ip_info = self.parse_opt_ip_info()
        src = self.expect_address(version)
        self.expect_punct(">", " between the outer source and destination addresses")
        dst = self.expect_address(version)
        self.expect_punct(":", " after the outer IP header")
        return IpEncap(version, src, dst, ip_info, line=keyword.line, column=keyword.column)

    def expect_address(self, version: int) -> str:
        token = self.peek()
        kind = TokenKind.IPV6_ADDR if version == 6 else TokenKind.IPV4_ADDR
        if token.kind is not kind:
            self.fail_expected(f"an IPv{version} address")
        self.advance()
        try:
            ipaddress.ip_address(token.text)
        except ValueError:
            raise self.error(token, f"invalid IPv{version} address: {token.text}") from None
        return token.text

    def parse_gre_encap(self) -> GreEncap:
        keyword = self.advance()
        if self.accept_punct(":"):
            return GreEncap(None, line=keyword.line, column=keyword.column)
        self.accept_punct(",")
        header = self.parse_gre_header()
        self.expect_punct(":", " after the GRE header")
        return GreEncap(header, line=keyword.line, column=keyword.column)

    def parse_gre_header(self) -> GreHeader:
        first = self.peek()
        if not self.at_word("flags", "Flags"):
            self.fail_expected("'flags' (GRE header: flags, sum, off, key, seq)")
        self.advance()
        if self.accept_punct("["):
            flags = 0
            while True:
                flags |= self.parse_gre_flag()
                if not self.accept_punct(","):
                    break
            self.expect_punct("]", " to close the GRE flags")
        else:
            flags = self.expect_any_int("GRE flags", 0, _U16)
        self.accept_punct(",")
        self.expect_word("sum", " (GRE header: flags, sum, off, key, seq)")
        checksum = self.expect_any_int("GRE checksum", 0, _U16)
        self.accept_punct(",")
        self.expect_word("off", " (GRE header: flags, sum, off, key, seq)")
        offset = self.expect_any_int("GRE offset", 0, _U16)
        self.accept_punct(",")
        self.expect_word("key", " (GRE header: flags, sum, off, key, seq)")
        self.accept_punct("=")
        key = self.expect_any_int("GRE key", 0, _U32)
        self.accept_punct(",")
        self.expect_word("seq", " (GRE header: flags, sum, off, key, seq)")
        seq = self.expect_any_int("GRE sequence number", 0, _U32)
        return GreHeader(flags, checksum, offset, key, seq, line=first.line, column=first.column)

    def parse_gre_flag(self) -> int:
        token = self.peek()
        if self.at_word("none"):
            self.advance()
            return 0
        if token.kind is TokenKind.WORD and token.text in _GRE_FLAG_WORDS:
            self.advance()
            self.expect_word("present", f" after {token.text}")
            return _GRE_FLAG_WORDS[token.text]
        self.fail_expected("a GRE flag (none, checksum present, key present, sequence# present)")

    def parse_mpls_encap(self) -> MplsEncap:
        keyword = self.advance()
        entries: list[MplsEntry] = []
        while self.at_punct("("):
            entries.append(self.parse_mpls_entry())
        self.expect_punct(":", " after the MPLS label stack")
        return MplsEncap(tuple(entries), line=keyword.line, column=keyword.column)

    def parse_mpls_entry(self) -> MplsEntry:
        opener = self.expect_punct("(")
        self.expect_word("label", " (MPLS entry: label, tc, [S], ttl)")
        label, _ = self.expect_integer("MPLS label", 0, _U20)
        self.expect_punct(",")
        self.expect_word("tc", " (MPLS entry: label, tc, [S], ttl)")
        tc, _ = self.expect_integer("MPLS traffic class", 0, 7)
        self.expect_punct(",")
        bottom = False
        if self.accept_punct("["):
            mark = self.peek()
            if not (mark.kind is TokenKind.WORD and mark.text == "S"):
                raise self.error(mark, "expected [S] for MPLS label stack bottom")
            self.advance()
            self.expect_punct("]")
            self.expect_punct(",")
            bottom = True
        self.expect_word("ttl", " (MPLS entry: label, tc, [S], ttl)")
        ttl, _ = self.expect_integer("MPLS ttl", 0, _U8)
        self.expect_punct(")", " to close the MPLS entry")
        return MplsEntry(label, tc, bottom, ttl, line=opener.line, column=opener.column)

    def parse_opt_ports(self) -> Ports | None:
        if not (
            self.peek().kind is TokenKind.INTEGER
            and self.at_punct(">", 1)
            and self.peek(2).kind is TokenKind.INTEGER
        ):
            return None
        first = self.peek()
        src, _ = self.expect_integer("source port", 0, _U16)
        self.advance()
        dst, _ = self.expect_integer("destination port", 0, _U16)
        return Ports(src, dst, line=first.line, column=first.column)

    def parse_tcp(self, direction: Direction) -> TcpSegment:
        first = self.peek()
        ports = self.parse_opt_ports()
        flags = self.parse_tcp_flags()
        start, end, length = self.parse_seq()
        ack: int | None = None
        window: int | None = None
        urg: int | None = None
        if self.at_word("ack"):
            self.advance()
            ack, _ = self.expect_integer("TCP ack sequence number", 0, _U32)
        window_token = self.peek()
        if self.at_word("win"):
            self.advance()
            window, _ = self.expect_integer("TCP window value", 0, _U16)
        if self.at_word("urg"):
            self.advance()
            urg, _ = self.expect_integer("urg_ptr value", 0, _U16)
        options: tuple[TcpOption, ...] | None = ()
        if self.at_punct("<"):
            options_token = self.peek()
            options = self.parse_tcp_options()
            if options is None and direction is not Direction.OUTBOUND:
                raise self.error(
                    options_token, "<...> for TCP options can only be used with outbound packets"
                )
        token = self.peek()
        if token.kind is TokenKind.WORD and token.text in ("ack", "win", "urg"):
            raise self.error(
                token,
                f"'{token.text}' out of place: a TCP packet gives ack, win, urg "
                "and <options> in that order",
            )
        if window is None and direction is Direction.INBOUND:
            raise self.error(window_token, "window must be specified for inbound packets")
        return TcpSegment(
            flags,
            start,
            end,
            length,
            ack,
            window,
            urg,
            options,
            ports,
            line=first.line,
            column=first.column,
        )

    def parse_tcp_flags(self) -> str:
        token = self.peek()
        if token.kind is TokenKind.PUNCT and token.text in ".-":
            self.advance()
            return "" if token.text == "-" else "."
        if token.kind is not TokenKind.WORD:
            self.fail_expected("TCP flags (such as S, S., ., P., F., R or -)")
        if token.text in _IP_INFO_WORDS:
            raise self.error(
                token,
                f"'{token.text}' is IP information: write it in brackets before the flags, "
                "e.g. [ect0] or [ttl 64]",
            )
        self.advance()
        flags = token.text
        has_ecn = has_ace = False
        for index, char in enumerate(flags):
            if char not in _VALID_TCP_FLAGS:
                raise self.source.error_at(
                    token.offset + index, f"invalid TCP flag {char!r} in {flags!r}"
                )
            conflict = (char in _ECN_FLAGS and has_ace) or (
                char in _ACE_FLAGS and (has_ecn or has_ace)
            )
            if conflict:
                raise self.source.error_at(
                    token.offset + index, f"conflicting TCP flag {char!r} in {flags!r}"
                )
            has_ecn = has_ecn or char in _ECN_FLAGS
            has_ace = has_ace or char in _ACE_FLAGS
        if self.accept_punct("."):
            flags += "."
        return flags

    def parse_seq(self) -> tuple[int, int, int]:
        """``start:end(length)``, packetdrill's ``seq`` with its consistency check."""
        first = self.peek()
        if first.kind is not TokenKind.INTEGER:
            self.fail_expected("a sequence range start:end(length), such as 1:1001(1000)")
        start, _ = self.expect_integer("TCP start sequence number", 0, _U32)
        self.expect_punct(":", " in start:end(length)")
        end, _ = self.expect_integer("TCP end sequence number", 0, _U32)
        self.expect_punct("(", " in start:end(length)")
        length, _ = self.expect_integer("TCP payload size", 0, _U16)
        self.expect_punct(")", " in start:end(length)")
        if end != start + length:
            raise self.error(
                first,
                f"inconsistent TCP sequence numbers and payload size: {start} + {length} != {end}",
            )
        return start, end, length

    def parse_tcp_options(self) -> tuple[TcpOption, ...] | None:
        opener = self.advance()
        if self.peek().kind is TokenKind.ELLIPSIS:
            self.advance()
            self.expect_punct(">", " after <...")
            return None
        options: list[TcpOption] = []
        total = 0
        while True:
            token = self.peek()
            option = self.parse_tcp_option()
            total += option.wire_length
            if total > MAX_TCP_OPTION_BYTES:
                raise self.error(
                    token,
                    f"TCP option list too long: {total} bytes (at most {MAX_TCP_OPTION_BYTES})",
                )
            options.append(option)
            if not self.accept_punct(","):
                break
        self.expect_punct(">", " or ',' in the TCP option list")
        if total % 4:
            raise self.error(
                opener,
                "TCP options are not padded correctly to ensure TCP header is a "
                f"multiple of 4 bytes: {total % 4} excess bytes",
            )
        return tuple(options)

    def parse_tcp_option(self) -> TcpOption:
        token = self.peek()
        name = token.text if token.kind is TokenKind.WORD else ""
        if name == "nop":
            self.advance()
            return Nop(line=token.line, column=token.column)
        if name == "eol":
            self.advance()
            return Eol(line=token.line, column=token.column)
        if name == "mss":
            self.advance()
            mss, _ = self.expect_integer("mss value", 0, _U16)
            return Mss(mss, line=token.line, column=token.column)
        if name == "wscale":
            self.advance()
            if self.accept_punct("*"):
                return WindowScale(None, line=token.line, column=token.column)
            shift, _ = self.expect_integer("window scale shift count", 0, _U8)
            return WindowScale(shift, line=token.line, column=token.column)
        if name == "sackOK":
            self.advance()
            return SackPermitted(line=token.line, column=token.column)
        if name == "sack":
            self.advance()
            blocks: list[tuple[int, int]] = []
            while self.peek().kind is TokenKind.INTEGER or not blocks:
                if self.peek().kind is not TokenKind.INTEGER:
                    self.fail_expected("a SACK block left:right")
                left, _ = self.expect_integer("TCP SACK left sequence number", 0, _U32)
                self.expect_punct(":", " in a SACK block left:right")
                right, _ = self.expect_integer("TCP SACK right sequence number", 0, _U32)
                blocks.append((left, right))
            return Sack(tuple(blocks), line=token.line, column=token.column)
        if name == "TS":
            self.advance()
            self.expect_word("val", " after TS")
            val, _ = self.expect_integer("ts val", 0, _U32)
            self.expect_word("ecr", " after TS val N")
            ecr, _ = self.expect_integer("ecr val", 0, _U32)
            return Timestamp(val, ecr, line=token.line, column=token.column)
        if name in ("FO", "FOEXP"):
            self.advance()
            experimental = name == "FOEXP"
            limit = MAX_TCP_OPTION_BYTES - (4 if experimental else 2)
            cookie = self.parse_hex_blob("TCP fast open cookie", limit)
            return FastOpen(cookie, experimental, line=token.line, column=token.column)
        if name == "md5":
            self.advance()
            return Md5(
                self.parse_hex_blob("TCP MD5 digest", _MD5_DIGEST_BYTES),
                line=token.line,
                column=token.column,
            )
        self.fail_expected("a TCP option (nop, eol, mss, wscale, sackOK, sack, TS, FO, FOEXP, md5)")

    def parse_hex_blob(self, what: str, max_bytes: int) -> bytes:
        """An optional hex string (a WORD or INTEGER token, as ``hex_blob``)."""
        token = self.peek()
        if token.kind not in (TokenKind.WORD, TokenKind.INTEGER):
            return b""
        self.advance()
        text = token.text
        if not _HEX_DIGITS_RE.fullmatch(text):
            raise self.error(token, f"{what} '{text}' is not a valid hex string")
        if len(text) % 2:
            raise self.error(token, f"{what} has an odd number of digits")
        if len(text) // 2 > max_bytes:
            raise self.error(
                token,
                f"{what} of {len(text) // 2} bytes exceeds the maximum of {max_bytes} bytes",
            )
        return bytes.fromhex(text)

    def parse_udp(self) -> UdpDatagram:
        keyword = self.advance()
        ports = self.parse_opt_ports()
        self.expect_punct("(", " before the UDP payload size: udp (N)")
        length, _ = self.expect_integer("UDP payload size", 0, _U16)
        self.expect_punct(")", " after the UDP payload size")
        return UdpDatagram(length, ports, line=keyword.line, column=keyword.column)

    def parse_icmp(self) -> IcmpMessage:
        keyword = self.advance()
        type_token = self.peek()
        if type_token.kind is not TokenKind.WORD:
            self.fail_expected("an ICMP type (such as unreachable or echo_request)")
        self.advance()
        code_token: Token | None = None
        if self.peek().kind is TokenKind.WORD and not self.at_word("mtu", "id"):
            code_token = self.advance()
        icmp_type, icmp_code = self.resolve_icmp(type_token, code_token)
        mtu: int | None = None
        echo_id: int | None = None
        if self.at_word("mtu"):
            self.advance()
            mtu_token = self.peek()
            mtu, _ = self.expect_integer("ICMP MTU", 0, _U32)
            self.check_icmp_mtu(mtu, icmp_type, icmp_code, mtu_token)
        if self.at_word("id"):
            self.advance()
            echo_id, _ = self.expect_integer("ICMP echo id", 0, _U16)
        echoed: IcmpEchoed | None = None
        if self.at_punct("["):
            echoed = self.parse_icmp_echoed()
        return IcmpMessage(
            type_token.text,
            code_token.text if code_token is not None else None,
            icmp_type,
            icmp_code,
            mtu,
            echo_id,
            echoed,
            line=keyword.line,
            column=keyword.column,
        )

    def resolve_icmp(self, type_token: Token, code_token: Token | None) -> tuple[int, int]:
        """Type and code numbers from packetdrill's tables (``type_N``/``code_N`` too)."""
        types = _ICMPV6_TYPES if self.ip_version == 6 else _ICMPV4_TYPES
        family = "ICMPv6" if self.ip_version == 6 else "ICMPv4"
        codes: dict[str, int] | None = None
        numbered = _NUMBERED_RE.fullmatch(type_token.text)
        if numbered and type_token.text.startswith("type_"):
            icmp_type = int(numbered.group(1))
        elif type_token.text in types:
            icmp_type, codes = types[type_token.text]
        else:
            raise self.error(type_token, f"bad {family} type {type_token.text}")
        if icmp_type > _U8:
            raise self.error(type_token, f"bad {family} type {type_token.text}")
        if code_token is None:
            return icmp_type, 0
        numbered = _NUMBERED_RE.fullmatch(code_token.text)
        if numbered and code_token.text.startswith("code_"):
            icmp_code = int(numbered.group(1))
        elif codes is not None and code_token.text in codes:
            icmp_code = codes[code_token.text]
        else:
            raise self.error(code_token, f"bad {family} code {code_token.text}")
        if icmp_code > _U8:
            raise self.error(code_token, f"bad {family} code {code_token.text}")
        return icmp_type, icmp_code

    def check_icmp_mtu(self, mtu: int, icmp_type: int, icmp_code: int, token: Token) -> None:
        if self.ip_version == 6:
            if icmp_type != _ICMPV6_PKT_TOOBIG or icmp_code != 0:
                raise self.error(token, "ICMPv6 MTU is only valid for packet_too_big-0")
        else:
            if icmp_type != _ICMPV4_DEST_UNREACH or icmp_code != _ICMPV4_FRAG_NEEDED:
                raise self.error(token, "ICMPv4 MTU is only valid for unreachable-frag_needed")
            self.check_range(mtu, 0, _U16, "ICMPv4 MTU", token)

    def parse_icmp_echoed(self) -> IcmpEchoed:
        opener = self.advance()
        echoed: IcmpEchoed
        if self.at_word("udp", "raw"):
            keyword = self.advance()
            self.expect_punct("(", f" after {keyword.text}")
            length, _ = self.expect_integer(f"{keyword.text} payload size", 0, _U16)
            self.expect_punct(")")
            echoed = (
                EchoedUdp(length, line=opener.line, column=opener.column)
                if keyword.text == "udp"
                else EchoedRaw(length, line=opener.line, column=opener.column)
            )
        else:
            start, end, length = self.parse_seq()
            echoed = EchoedTcp(start, end, length, line=opener.line, column=opener.column)
        self.expect_punct("]", " to close the quoted packet")
        return echoed

    # ----------------------------------------------------------- system calls

    def parse_syscall(self) -> SyscallEvent:
        first = self.peek()
        end_usecs: int | None = None
        if first.kind is TokenKind.ELLIPSIS:
            self.advance()
            end_usecs = self.parse_time()
        name = self.peek()
        if name.kind is not TokenKind.WORD:
            self.fail_expected("a system call name")
        self.advance()
        self.expect_punct("(", f" after {name.text}")
        args: list[Expr] = []
        if not self.accept_punct(")"):
            args = self.parse_expr_list(")", "the system call arguments")
        self.expect_punct("=", " and the expected result (such as = 0)")
        result = self.parse_expr(in_result=True)
        errno: str | None = None
        strerror: str | None = None
        note: str | None = None
        if self.peek().kind is TokenKind.WORD:
            errno = self.advance().text
            if self.at_punct("("):
                strerror = self.parse_note()
        if self.at_punct("("):
            note = self.parse_note()
        return SyscallEvent(
            name.text,
            tuple(args),
            result,
            errno,
            strerror,
            note,
            end_usecs,
            line=name.line,
            column=name.column,
        )

    def parse_note(self) -> str:
        opener = self.advance()
        words: list[str] = []
        while True:
            token = self.peek()
            if token.kind is TokenKind.EOF or (
                token.kind is TokenKind.PUNCT and token.text in "()"
            ):
                break
            words.append(self.advance().text)
        if not self.at_punct(")"):
            closing = self.peek()
            raise self.error(
                opener,
                f"'(' is not closed: expected ')' before {closing.describe()} "
                f"at line {closing.line}",
            )
        if not words:
            raise self.error(self.peek(), "expected text inside the parentheses")
        self.advance()
        return " ".join(words)

    def parse_expr_list(self, closer: str, what: str) -> list[Expr]:
        items = [self.parse_expr()]
        while self.accept_punct(","):
            items.append(self.parse_expr())
        if not self.at_punct(closer):
            self.fail_expected(f"',' or '{closer}' in {what}")
        self.advance()
        return items

    def parse_expr(self, in_result: bool = False) -> Expr:
        """``unary ('|' unary)*``; a ``name=`` operand takes the rest, as bison shifts."""
        self.depth += 1
        try:
            if self.depth > _MAX_NESTING:
                raise self.error(self.peek(), "expression nested too deeply")
            first = self.peek()
            operand = self.parse_unary(in_result)
            if not self.at_punct("|"):
                return operand
            operands = [operand]
            while self.accept_punct("|"):
                operands.append(self.parse_unary(in_result))
            return BitOrExpr(tuple(operands), line=first.line, column=first.column)
        finally:
            self.depth -= 1

    def parse_unary(self, in_result: bool) -> Expr:
        token = self.peek()
        kind = token.kind
        if kind is TokenKind.ELLIPSIS:
            self.advance()
            return EllipsisExpr(line=token.line, column=token.column)
        if kind is TokenKind.INTEGER:
            self.advance()
            return IntegerExpr(int(token.text), line=token.line, column=token.column)
        if kind is TokenKind.HEX_INTEGER:
            self.advance()
            return IntegerExpr(int(token.text, 16), hex=True, line=token.line, column=token.column)
        if kind is TokenKind.STRING:
            self.advance()
            ellipsis = self.peek().kind is TokenKind.ELLIPSIS
            if ellipsis:
                self.advance()
            return StringExpr(token.value, ellipsis, line=token.line, column=token.column)
        if kind is TokenKind.CODE:
            self.advance()
            return CodeExpr(token.value, line=token.line, column=token.column)
        if kind is TokenKind.PUNCT and token.text == "[":
            self.advance()
            if self.accept_punct("]"):
                return ListExpr((), line=token.line, column=token.column)
            return ListExpr(
                tuple(self.parse_expr_list("]", "the array")), line=token.line, column=token.column
            )
        if kind is TokenKind.PUNCT and token.text == "{":
            return self.parse_brace()
        if kind is TokenKind.WORD:
            self.advance()
            name = token.text
            if self.accept_punct("="):
                return AssignExpr(
                    name, self.parse_expr(in_result), line=token.line, column=token.column
                )
            if self.at_punct("(") and name in _CALLS:
                return self.parse_call(token)
            if self.at_punct("(") and not in_result:
                self.advance()
                index = self.parse_expr()
                self.expect_punct(")", f" after {name}(...")
                self.expect_punct("=", f" after {name}(...)")
                return AssignExpr(
                    name, self.parse_expr(), index, line=token.line, column=token.column
                )
            return WordExpr(name, line=token.line, column=token.column)
        if kind is TokenKind.FLOAT:
            raise self.error(token, f"a number with a fraction is not allowed here: {token.text}")
        self.fail_expected('an expression (a number, NAME, "string", [...], {...} or ...)')

    def parse_call(self, name: Token) -> CallExpr:
        self.advance()
        args: list[Expr] = []
        if not self.accept_punct(")"):
            args = self.parse_expr_list(")", f"the arguments of {name.text}()")
        if len(args) != 1:
            raise self.error(name, f"{name.text}() takes exactly one argument")
        arg = args[0]
        if name.text == "htons":
            if not isinstance(arg, IntegerExpr):
                raise self.error(name, "htons() takes an integer port")
            self.check_range(arg.value, 0, _U16, "port", name)
        else:
            version = 6 if name.text == "inet6_addr" else 4
            if not isinstance(arg, StringExpr) or arg.ellipsis:
                raise self.error(name, f"{name.text}() takes a quoted IPv{version} address")
            try:
                address = ipaddress.ip_address(arg.value)
            except ValueError:
                address = None
            if address is None or address.version != version:
                raise self.error(name, f"invalid IPv{version} address: {arg.value!r}")
        return CallExpr(name.text, (arg,), line=name.line, column=name.column)

    def parse_brace(self) -> Expr:
        opener = self.advance()
        if self.accept_punct("}"):
            return BraceExpr((), line=opener.line, column=opener.column)
        if self.at_punct("("):
            entries: list[MplsEntry] = []
            while self.at_punct("("):
                entries.append(self.parse_mpls_entry())
            self.expect_punct("}", " after the MPLS label stack")
            return MplsStackExpr(tuple(entries), line=opener.line, column=opener.column)
        after = self.peek(1)
        if self.at_word("flags", "Flags") and (
            after.kind in (TokenKind.INTEGER, TokenKind.HEX_INTEGER) or self.at_punct("[", 1)
        ):
            header = self.parse_gre_header()
            self.expect_punct("}", " after the GRE header")
            return GreHeaderExpr(header, line=opener.line, column=opener.column)
        return BraceExpr(
            tuple(self.parse_expr_list("}", "the struct")), line=opener.line, column=opener.column
        )
