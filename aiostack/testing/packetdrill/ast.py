"""The typed model of a parsed packetdrill script.

A :class:`Script` is options, init commands, a timeline of :class:`Event`
and an optional cleanup command. An event is a :class:`TimeSpec` and a body:
a :class:`PacketEvent` (inject ``<`` or expect ``>``), a :class:`SyscallEvent`,
a :class:`CommandEvent` (a back-quoted shell command) or a :class:`CodeEvent`
(a ``%{ }%`` Python block).

Conventions, chosen so that an executor never re-parses text:

* **Times are integer microseconds**, as packetdrill keeps them (``s64
  time_usecs``): ``1.5`` is ``1_500_000``, ``+.1`` is ``100_000`` with kind
  RELATIVE. Decimal seconds are converted exactly (packetdrill's double
  arithmetic is sometimes 1 us short, e.g. 1.001 s -> 1000999 us); digits
  past the microsecond are dropped, as packetdrill truncates them.
* **Numbers are as written**: sequence and ack numbers stay script-relative
  (the executor maps them through the ISNs), windows are the raw 16-bit
  field, TCP flags are the flag string as written (``"S."``, ``""`` for
  ``-``).
* **Absent is None**: an outbound packet without ``win`` has
  ``window=None`` (matches any window); ``options=()`` means "no options",
  ``options=None`` means ``<...>`` (any options).
* **Positions** (``line``, ``column``, 1-based) are on every node but are
  excluded from ``==`` and ``repr``, so that two parses of equivalent text
  compare equal wherever their tokens sit.

Every node's ``str()`` is its normalized script text; ``str(script)`` is a
whole script that parses back to an equal :class:`Script`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "AssignExpr",
    "BitOrExpr",
    "BraceExpr",
    "CallExpr",
    "CodeEvent",
    "CodeExpr",
    "Command",
    "CommandEvent",
    "Direction",
    "EchoedRaw",
    "EchoedTcp",
    "EchoedUdp",
    "Ecn",
    "EllipsisExpr",
    "Encapsulation",
    "Eol",
    "Event",
    "EventBody",
    "Expr",
    "FastOpen",
    "GreEncap",
    "GreHeader",
    "GreHeaderExpr",
    "IcmpEchoed",
    "IcmpMessage",
    "IntegerExpr",
    "IpEncap",
    "IpInfo",
    "ListExpr",
    "Located",
    "Md5",
    "MplsEncap",
    "MplsEntry",
    "MplsStackExpr",
    "Mss",
    "Nop",
    "Option",
    "PacketEvent",
    "Ports",
    "Sack",
    "SackPermitted",
    "Script",
    "StringExpr",
    "SyscallEvent",
    "TcpOption",
    "TcpSegment",
    "TimeKind",
    "TimeSpec",
    "Timestamp",
    "Transport",
    "UdpDatagram",
    "WindowScale",
    "WordExpr",
    "format_usecs",
]


def format_usecs(usecs: int) -> str:
    """Microseconds as packetdrill seconds text: ``1500000`` -> ``"1.5"``, ``0`` -> ``"0"``."""
    sign = "-" if usecs < 0 else ""
    whole, frac = divmod(abs(usecs), 1_000_000)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:06d}".rstrip("0")


@dataclass(frozen=True, slots=True)
class Located:
    """Where a node was written (1-based line and column; 0 when built in code).

    Kept out of equality and repr: two scripts that say the same thing on
    different lines are the same script.
    """

    line: int = field(default=0, compare=False, repr=False, kw_only=True)
    column: int = field(default=0, compare=False, repr=False, kw_only=True)


# ---------------------------------------------------------------- script level


@dataclass(frozen=True, slots=True)
class Option(Located):
    """A ``--name=value`` line at the top of a script (``value`` None for ``--name``).

    ``value`` is the string packetdrill hands to its option parser: quotes
    removed from a quoted value (``quoted`` remembers them so the option is
    written back the same way), ``NAME=VALUE`` kept whole for ``--define``.
    """

    name: str
    value: str | None
    quoted: bool = False

    def __str__(self) -> str:
        if self.value is None:
            return f"--{self.name}"
        if self.quoted:
            return f'--{self.name}="{self.value}"'
        return f"--{self.name}={self.value}"


@dataclass(frozen=True, slots=True)
class Command(Located):
    """A back-quoted shell command outside the timeline (init or cleanup)."""

    text: str

    def __str__(self) -> str:
        return f"`{self.text}`"


class TimeKind(enum.Enum):
    """packetdrill's ``event_time_t``."""

    ABSOLUTE = "absolute"  # 1.5
    RELATIVE = "relative"  # +0.1
    ANY = "any"  # *
    ABSOLUTE_RANGE = "absolute range"  # 0.1~0.2
    RELATIVE_RANGE = "relative range"  # +0.1~+0.2


@dataclass(frozen=True, slots=True)
class TimeSpec(Located):
    """When an event happens, in microseconds.

    For RELATIVE and RELATIVE_RANGE, ``usecs``/``end_usecs`` are offsets from
    the previous event (packetdrill anchors them at the previous event's
    actual time, or its scripted time between two inbound packets). For ANY,
    ``usecs`` is 0. ``end_usecs`` is set only for ranges.
    """

    kind: TimeKind
    usecs: int = 0
    end_usecs: int | None = None

    def __str__(self) -> str:
        kind = self.kind
        if kind is TimeKind.ANY:
            return "*"
        start = format_usecs(self.usecs)
        end = format_usecs(self.end_usecs or 0)
        if kind is TimeKind.ABSOLUTE:
            return start
        if kind is TimeKind.RELATIVE:
            return f"+{start}"
        if kind is TimeKind.ABSOLUTE_RANGE:
            return f"{start}~{end}"
        return f"+{start}~+{end}"


@dataclass(frozen=True, slots=True)
class Event(Located):
    """One timeline entry; ``line`` is the line of its time, as in packetdrill."""

    time: TimeSpec
    body: EventBody

    def __str__(self) -> str:
        body = self.body
        separator = "" if isinstance(body, SyscallEvent) and body.end_usecs is not None else " "
        return f"{self.time}{separator}{body}"


@dataclass(frozen=True, slots=True)
class Script:
    """A whole script. ``path`` is the file it came from (not compared)."""

    options: tuple[Option, ...]
    init_commands: tuple[Command, ...]
    events: tuple[Event, ...]
    cleanup_command: Command | None = None
    path: str = field(default="<string>", compare=False, repr=False)

    def option(self, name: str) -> str | None:
        """The value of the last ``--name=...`` option, ``""`` for a bare ``--name``."""
        for option in reversed(self.options):
            if option.name == name:
                return "" if option.value is None else option.value
        return None

    def __str__(self) -> str:
        parts: list[str] = [str(option) for option in self.options]
        parts += [str(command) for command in self.init_commands]
        parts += [str(event) for event in self.events]
        if self.cleanup_command is not None:
            parts.append(str(self.cleanup_command))
        return "\n".join(parts) + "\n"


# ------------------------------------------------------------------- packets


class Direction(enum.Enum):
    """``<`` injects a packet into the stack; ``>`` is a packet it must send."""

    INBOUND = "<"
    OUTBOUND = ">"


class Ecn(enum.Enum):
    """The IP ECN codepoint of ``[noecn]``/``[ect0]``/``[ect1]``/``[ect01]``/``[ce]``.

    ``ECT01`` (outbound only) accepts either ECT codepoint.
    """

    NO_ECN = "noecn"
    ECT0 = "ect0"
    ECT1 = "ect1"
    ECT01 = "ect01"
    CE = "ce"


@dataclass(frozen=True, slots=True)
class IpInfo(Located):
    """The bracketed IP details: ``[ect0]``, ``(tos 0x10)``, ``[ttl 64]``, ``[flowlabel 0x1]``.

    packetdrill's grammar allows one of: an ECN codepoint or ``tos`` (either
    optionally followed by ``, flowlabel``), ``flowlabel`` alone, or ``ttl``.
    """

    ecn: Ecn | None = None
    tos: int | None = None
    flow_label: int | None = None
    ttl: int | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.ecn is not None:
            parts.append(self.ecn.value)
        if self.tos is not None:
            parts.append(f"tos {self.tos:#x}")
        if self.flow_label is not None:
            parts.append(f"flowlabel {self.flow_label:#x}")
        if self.ttl is not None:
            parts.append(f"ttl {self.ttl}")
        return f"[{', '.join(parts)}]"


@dataclass(frozen=True, slots=True)
class IpEncap(Located):
    """An outer IP header: ``ipv4 2.2.2.2 > 1.1.1.1:`` (IP-in-IP or before GRE)."""

    version: int
    src: str
    dst: str
    ip_info: IpInfo | None = None

    def __str__(self) -> str:
        info = f" {self.ip_info}" if self.ip_info is not None else ""
        return f"ipv{self.version}{info} {self.src} > {self.dst}:"


@dataclass(frozen=True, slots=True)
class GreHeader(Located):
    """Explicit GRE header fields (``flags 0xb000, sum 511, off 1023, key 0x1, seq 2``)."""

    flags: int
    sum: int
    off: int
    key: int
    seq: int

    def __str__(self) -> str:
        return (
            f"flags {self.flags:#x}, sum {self.sum}, off {self.off}, "
            f"key {self.key:#x}, seq {self.seq}"
        )


@dataclass(frozen=True, slots=True)
class GreEncap(Located):
    """A GRE header layer: ``gre:`` or ``gre flags ..., seq N:``."""

    header: GreHeader | None = None

    def __str__(self) -> str:
        return "gre:" if self.header is None else f"gre {self.header}:"


@dataclass(frozen=True, slots=True)
class MplsEntry(Located):
    """One MPLS label stack entry: ``(label 123, tc 1, [S], ttl 255)``."""

    label: int
    tc: int
    bottom: bool
    ttl: int

    def __str__(self) -> str:
        bottom = "[S], " if self.bottom else ""
        return f"(label {self.label}, tc {self.tc}, {bottom}ttl {self.ttl})"


@dataclass(frozen=True, slots=True)
class MplsEncap(Located):
    """An MPLS label stack layer: ``mpls (label ...) (label ...):``."""

    entries: tuple[MplsEntry, ...]

    def __str__(self) -> str:
        return "".join(["mpls", *(f" {entry}" for entry in self.entries), ":"])


Encapsulation: TypeAlias = IpEncap | GreEncap | MplsEncap


@dataclass(frozen=True, slots=True)
class Ports(Located):
    """Explicit ports (``1234 > 8080``); absent, the executor picks them."""

    src: int
    dst: int

    def __str__(self) -> str:
        return f"{self.src} > {self.dst}"


# TCP options. ``wire_length`` is the option's size on the wire, which the
# parser needs for packetdrill's 40-byte and 4-byte-padding checks.


@dataclass(frozen=True, slots=True)
class Nop(Located):
    """``nop`` (kind 1)."""

    @property
    def wire_length(self) -> int:
        return 1

    def __str__(self) -> str:
        return "nop"


@dataclass(frozen=True, slots=True)
class Eol(Located):
    """``eol`` (kind 0)."""

    @property
    def wire_length(self) -> int:
        return 1

    def __str__(self) -> str:
        return "eol"


@dataclass(frozen=True, slots=True)
class Mss(Located):
    """``mss N`` (kind 2)."""

    mss: int

    @property
    def wire_length(self) -> int:
        return 4

    def __str__(self) -> str:
        return f"mss {self.mss}"


@dataclass(frozen=True, slots=True)
class WindowScale(Located):
    """``wscale N`` (kind 3); ``shift`` None is ``wscale *`` (any shift count)."""

    shift: int | None

    @property
    def wire_length(self) -> int:
        return 3

    def __str__(self) -> str:
        return "wscale *" if self.shift is None else f"wscale {self.shift}"


@dataclass(frozen=True, slots=True)
class SackPermitted(Located):
    """``sackOK`` (kind 4)."""

    @property
    def wire_length(self) -> int:
        return 2

    def __str__(self) -> str:
        return "sackOK"


@dataclass(frozen=True, slots=True)
class Sack(Located):
    """``sack a:b c:d`` (kind 5): (left, right) edges, script-relative like seq numbers."""

    blocks: tuple[tuple[int, int], ...]

    @property
    def wire_length(self) -> int:
        return 2 + 8 * len(self.blocks)

    def __str__(self) -> str:
        return "sack " + " ".join(f"{left}:{right}" for left, right in self.blocks)


@dataclass(frozen=True, slots=True)
class Timestamp(Located):
    """``TS val N ecr N`` (kind 8)."""

    val: int
    ecr: int

    @property
    def wire_length(self) -> int:
        return 10

    def __str__(self) -> str:
        return f"TS val {self.val} ecr {self.ecr}"


@dataclass(frozen=True, slots=True)
class FastOpen(Located):
    """``FO [cookie]`` (RFC 7413, kind 34) or ``FOEXP [cookie]`` (kind 254, magic 0xF989).

    An empty cookie is a cookie request.
    """

    cookie: bytes
    experimental: bool = False

    @property
    def wire_length(self) -> int:
        return (4 if self.experimental else 2) + len(self.cookie)

    def __str__(self) -> str:
        name = "FOEXP" if self.experimental else "FO"
        return f"{name} {self.cookie.hex()}" if self.cookie else name


@dataclass(frozen=True, slots=True)
class Md5(Located):
    """``md5 [digest]`` (RFC 2385, kind 19); the digest may be short for negative tests."""

    digest: bytes

    @property
    def wire_length(self) -> int:
        return 2 + len(self.digest)

    def __str__(self) -> str:
        return f"md5 {self.digest.hex()}" if self.digest else "md5"


TcpOption: TypeAlias = (
    Nop | Eol | Mss | WindowScale | SackPermitted | Sack | Timestamp | FastOpen | Md5
)


@dataclass(frozen=True, slots=True)
class TcpSegment(Located):
    """A TCP packet line: ``S. 0:0(0) ack 1 win 65535 <mss 1460,nop,wscale 7>``.

    ``start_seq:end_seq(length)`` as written (the parser checks that
    ``end_seq == start_seq + length``). ``ack`` and ``urg`` are None when
    not written (packetdrill then puts 0 on the wire); ``window`` None means
    "any" for an outbound packet (an inbound one must give it).
    """

    flags: str
    start_seq: int
    end_seq: int
    length: int
    ack: int | None = None
    window: int | None = None
    urg: int | None = None
    options: tuple[TcpOption, ...] | None = ()
    ports: Ports | None = None

    @property
    def fin(self) -> bool:
        return "F" in self.flags

    @property
    def syn(self) -> bool:
        return "S" in self.flags

    @property
    def rst(self) -> bool:
        return "R" in self.flags

    @property
    def psh(self) -> bool:
        return "P" in self.flags

    @property
    def ack_flag(self) -> bool:
        """The ACK bit, written ``.`` (``ack`` is the acknowledgment number)."""
        return "." in self.flags

    @property
    def urg_flag(self) -> bool:
        return "U" in self.flags

    @property
    def ace(self) -> int | None:
        """The AccECN ACE counter if written as a digit flag (0..7), else None."""
        for ch in self.flags:
            if ch.isdigit():
                return int(ch)
        return None

    @property
    def ece(self) -> bool:
        ace = self.ace
        return bool(ace & 1) if ace is not None else "E" in self.flags

    @property
    def cwr(self) -> bool:
        ace = self.ace
        return bool(ace & 2) if ace is not None else "W" in self.flags

    @property
    def ae(self) -> bool:
        ace = self.ace
        return bool(ace & 4) if ace is not None else "A" in self.flags

    def __str__(self) -> str:
        parts: list[str] = []
        if self.ports is not None:
            parts.append(str(self.ports))
        parts.append(self.flags or "-")
        parts.append(f"{self.start_seq}:{self.end_seq}({self.length})")
        if self.ack is not None:
            parts.append(f"ack {self.ack}")
        if self.window is not None:
            parts.append(f"win {self.window}")
        if self.urg is not None:
            parts.append(f"urg {self.urg}")
        if self.options is None:
            parts.append("<...>")
        elif self.options:
            parts.append("<" + ",".join(str(option) for option in self.options) + ">")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class UdpDatagram(Located):
    """``udp (N)``: a UDP datagram with an N-byte payload."""

    length: int
    ports: Ports | None = None

    def __str__(self) -> str:
        ports = f" {self.ports}" if self.ports is not None else ""
        return f"udp{ports} ({self.length})"


@dataclass(frozen=True, slots=True)
class EchoedTcp(Located):
    """``[1:1001(1000)]``: the ICMP error quotes a TCP segment with this sequence range."""

    start_seq: int
    end_seq: int
    length: int

    def __str__(self) -> str:
        return f"[{self.start_seq}:{self.end_seq}({self.length})]"


@dataclass(frozen=True, slots=True)
class EchoedUdp(Located):
    """``[udp (N)]``: the ICMP error quotes a UDP datagram of N payload bytes."""

    length: int

    def __str__(self) -> str:
        return f"[udp ({self.length})]"


@dataclass(frozen=True, slots=True)
class EchoedRaw(Located):
    """``[raw (N)]``: an ICMP message of N bytes with no quoted packet."""

    length: int

    def __str__(self) -> str:
        return f"[raw ({self.length})]"


IcmpEchoed: TypeAlias = EchoedTcp | EchoedUdp | EchoedRaw


@dataclass(frozen=True, slots=True)
class IcmpMessage(Located):
    """``icmp unreachable port_unreachable [udp (1000)]`` and the like.

    ``type_name``/``code_name`` as written; ``type``/``code`` are the numbers
    packetdrill's tables give them for the script's IP version
    (``--ip_version=ipv6`` selects ICMPv6), ``code`` 0 when no code is
    written. ``echoed`` None is packetdrill's default: a quoted TCP segment
    ``0:0(0)``.
    """

    type_name: str
    code_name: str | None
    type: int
    code: int
    mtu: int | None = None
    echo_id: int | None = None
    echoed: IcmpEchoed | None = None

    def __str__(self) -> str:
        parts = ["icmp", self.type_name]
        if self.code_name is not None:
            parts.append(self.code_name)
        if self.mtu is not None:
            parts.append(f"mtu {self.mtu}")
        if self.echo_id is not None:
            parts.append(f"id {self.echo_id}")
        if self.echoed is not None:
            parts.append(str(self.echoed))
        return " ".join(parts)


Transport: TypeAlias = TcpSegment | UdpDatagram | IcmpMessage


@dataclass(frozen=True, slots=True)
class PacketEvent(Located):
    """A packet line: direction, outer layers (rare), IP details and the transport part."""

    direction: Direction
    packet: Transport
    ip_info: IpInfo | None = None
    encapsulation: tuple[Encapsulation, ...] = ()

    @property
    def inbound(self) -> bool:
        return self.direction is Direction.INBOUND

    @property
    def outbound(self) -> bool:
        return self.direction is Direction.OUTBOUND

    def __str__(self) -> str:
        parts = [self.direction.value, *(str(layer) for layer in self.encapsulation)]
        if self.ip_info is not None:
            parts.append(str(self.ip_info))
        parts.append(str(self.packet))
        return " ".join(parts)


# --------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class EllipsisExpr(Located):
    """``...``: a value the executor fills in (buffers, addresses) or does not check."""

    def __str__(self) -> str:
        return "..."


@dataclass(frozen=True, slots=True)
class IntegerExpr(Located):
    """An integer; ``hex`` remembers ``0x`` notation (packetdrill prints it back so)."""

    value: int
    hex: bool = False

    def __str__(self) -> str:
        return f"{self.value:#x}" if self.hex else str(self.value)


@dataclass(frozen=True, slots=True)
class WordExpr(Located):
    """A symbolic name: ``SOCK_STREAM``, ``IPPROTO_TCP``, ``POLLIN``, ``ECONNREFUSED``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class StringExpr(Located):
    """``"text"`` (raw, escapes as written); ``ellipsis`` for ``"text"...``."""

    value: str
    ellipsis: bool = False

    def __str__(self) -> str:
        return f'"{self.value}"' + ("..." if self.ellipsis else "")


@dataclass(frozen=True, slots=True)
class BitOrExpr(Located):
    """``O_RDWR|O_NONBLOCK``: two or more operands or-ed together."""

    operands: tuple[Expr, ...]

    def __str__(self) -> str:
        return "|".join(str(operand) for operand in self.operands)


@dataclass(frozen=True, slots=True)
class AssignExpr(Located):
    """A named field: ``fd=3``, ``sin_port=htons(8080)``, ``msg_iov(1)=[...]``.

    ``index`` is the parenthesised part of ``msg_iov(1)=`` / ``msg_name(...)=``.
    """

    name: str
    value: Expr
    index: Expr | None = None

    def __str__(self) -> str:
        index = f"({self.index})" if self.index is not None else ""
        return f"{self.name}{index}={self.value}"


@dataclass(frozen=True, slots=True)
class ListExpr(Located):
    """``[1]``, ``[...]``, ``[{fd=3, events=POLLIN}]``: a C array or an int by reference."""

    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return "[" + ", ".join(str(item) for item in self.items) + "]"


@dataclass(frozen=True, slots=True)
class BraceExpr(Located):
    """``{...}``: a C struct, by named fields or by position.

    One node covers packetdrill's sockaddr, linger, pollfd, iovec, msghdr,
    cmsg, epoll_event and sock_extended_err shapes; the executor reads the
    fields it knows (``sa_family``, ``l_onoff`` or ``onoff``, ...).
    """

    items: tuple[Expr, ...]

    def fields(self) -> dict[str, Expr]:
        """The named items (``name=value``) by name; the last wins if repeated."""
        return {item.name: item.value for item in self.items if isinstance(item, AssignExpr)}

    def __str__(self) -> str:
        return "{" + ", ".join(str(item) for item in self.items) + "}"


@dataclass(frozen=True, slots=True)
class CallExpr(Located):
    """``htons(8080)``, ``inet_addr("192.0.2.1")``, ``inet6_addr("2001:db8::1")``."""

    name: str
    args: tuple[Expr, ...]

    def __str__(self) -> str:
        return f"{self.name}(" + ", ".join(str(arg) for arg in self.args) + ")"


@dataclass(frozen=True, slots=True)
class CodeExpr(Located):
    """``%{ ... }%`` in a system call's result: Python the executor evaluates."""

    code: str

    def __str__(self) -> str:
        return f"%{{ {self.code} }}%"


@dataclass(frozen=True, slots=True)
class GreHeaderExpr(Located):
    """``{flags [key present], sum 0, off 0, key 1, seq 0}``: GRE fields as an argument."""

    header: GreHeader

    def __str__(self) -> str:
        return f"{{{self.header}}}"


@dataclass(frozen=True, slots=True)
class MplsStackExpr(Located):
    """``{(label 1, tc 0, [S], ttl 64)}``: an MPLS label stack as a socket option value."""

    entries: tuple[MplsEntry, ...]

    def __str__(self) -> str:
        return "{" + " ".join(str(entry) for entry in self.entries) + "}"


Expr: TypeAlias = (
    EllipsisExpr
    | IntegerExpr
    | WordExpr
    | StringExpr
    | BitOrExpr
    | AssignExpr
    | ListExpr
    | BraceExpr
    | CallExpr
    | CodeExpr
    | GreHeaderExpr
    | MplsStackExpr
)


# ----------------------------------------------------------- other event bodies


@dataclass(frozen=True, slots=True)
class SyscallEvent(Located):
    """``name(args) = result [ERRNO (strerror)] [(note)]``.

    ``end_usecs`` is the return time of a blocking call written
    ``+.1...0.200 connect(...)``: absolute, or (when the event time is
    relative) relative to the same anchor as the start, as packetdrill
    shifts both by the same offset. ``strerror`` is the text after the
    errno; ``note`` a free-text comment packetdrill allows after the result.
    """

    name: str
    args: tuple[Expr, ...]
    result: Expr
    errno: str | None = None
    strerror: str | None = None
    note: str | None = None
    end_usecs: int | None = None

    @property
    def blocking(self) -> bool:
        return self.end_usecs is not None

    def __str__(self) -> str:
        text = f"{self.name}(" + ", ".join(str(arg) for arg in self.args) + f") = {self.result}"
        if self.end_usecs is not None:
            text = f"...{format_usecs(self.end_usecs)} {text}"
        if self.errno is not None:
            text += f" {self.errno}"
            if self.strerror is not None:
                text += f" ({self.strerror})"
        if self.note is not None:
            text += f" ({self.note})"
        return text


@dataclass(frozen=True, slots=True)
class CommandEvent(Located):
    """A timed back-quoted shell command: ``+0 `sysctl -q net.ipv4.tcp_sack=0```."""

    command: str

    def __str__(self) -> str:
        return f"`{self.command}`"


@dataclass(frozen=True, slots=True)
class CodeEvent(Located):
    """A timed ``%{ ... }%`` Python block (text as packetdrill keeps it, ends stripped)."""

    code: str

    def __str__(self) -> str:
        return f"%{{ {self.code} }}%"


EventBody: TypeAlias = PacketEvent | SyscallEvent | CommandEvent | CodeEvent
