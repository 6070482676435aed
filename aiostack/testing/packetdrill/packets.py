"""Script packets on the wire: build ``<`` lines into IPv4 bytes, match ``>`` lines against them.

packetdrill's rules, which this module keeps, are about *which numbering* a
script line uses (``ref/packetdrill-format.md``):

* The script side's own numbers are absolute: its ISN is whatever its SYN
  says (usually 0), and its TCP timestamps are the values written.
* The stack's numbers are relative: the stack picks a random ISN and its own
  timestamp clock, so ``>`` sequence numbers, ``<`` ack numbers and ``<``
  SACK blocks count from the stack's ISN, learned from its first SYN, and a
  ``<`` TS ecr is mapped through the offset between the first TS val the
  script wrote for the stack and the first one the stack really sent.

A :class:`Flow` holds those mappings for one connection (addresses are
implicit, as in packetdrill: local 192.168.0.1, remote 192.0.2.1; which
connection a line is about is :mod:`.flows`' business). A new connection
attempt on the same ports (a SYN the script sends after the stack has
numbered a connection) may be answered with a new ISN, which is learned
again, or refused with an RST, which is numbered from 0 like any answer to
a segment for no socket. :func:`build_inbound` turns a ``<`` line into a packet;
:func:`match_outbound` compares a ``>`` line with what the stack sent, field
by field, and returns the first difference as text, or None.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field

from aiostack.wire.checksum import internet_checksum, transport_checksum
from aiostack.wire.ipv4 import addr, addr_str

from .ast import (
    Ecn,
    Eol,
    FastOpen,
    IpInfo,
    Md5,
    Mss,
    Nop,
    PacketEvent,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamp,
    WindowScale,
)

__all__ = [
    "LOCAL_IP",
    "REMOTE_IP",
    "Flow",
    "LivePacket",
    "Unsupported",
    "build_inbound",
    "format_live",
    "match_outbound",
    "parse_live",
]

#: packetdrill's default addresses: the stack under test and the script's side.
LOCAL_IP = "192.168.0.1"
REMOTE_IP = "192.0.2.1"
#: The gateway through which the stack reaches REMOTE_IP (packetdrill's default too).
GATEWAY_IP = "192.168.0.2"
#: The port ``bind(..., ...)`` and ``connect(..., ...)`` use.
SCRIPT_PORT = 8080

_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIHHHH")
_PROTO_TCP = 6
_MASK32 = 0xFFFFFFFF
_ECN_BITS = {Ecn.NO_ECN: 0, Ecn.ECT1: 1, Ecn.ECT0: 2, Ecn.CE: 3}
#: Flag bit per script letter (``.`` is ACK).
_FLAG_BITS = {
    "F": 0x01,
    "S": 0x02,
    "R": 0x04,
    "P": 0x08,
    ".": 0x10,
    "U": 0x20,
    "E": 0x40,
    "W": 0x80,
}
_FLAG_ORDER = "FSRP.UEW"


class Unsupported(Exception):
    """A script uses something this runner cannot do; the script fails as "unsupported: ..."."""


@dataclass(slots=True)
class Flow:
    """The implicit connection of a script and the number mappings packetdrill keeps for it.

    ``local_port`` None means "not known yet" (an active open learns it from
    the stack's SYN). ``local_isn`` None means the stack has sent no SYN
    yet; relative numbers then count from 0, which is what an RST answering
    a segment for no socket (``R. 0:0(0) ack 1``) needs.
    """

    local_ip: int = field(default_factory=lambda: addr(LOCAL_IP))
    remote_ip: int = field(default_factory=lambda: addr(REMOTE_IP))
    local_port: int | None = SCRIPT_PORT
    remote_port: int = 48_321
    local_isn: int | None = None
    first_script_ts: int | None = None
    first_live_ts: int | None = None
    last_live_ts: int | None = None
    ip_id: int = 0
    #: The script sent a SYN after this flow's ISN was learned: the stack's
    #: answer may start a new connection (a SYN-ACK with a new ISN) or refuse
    #: it (an RST numbered from 0) rather than continue the old one.
    pending_syn: bool = False

    def active_open(self) -> None:
        """``connect(..., ...)``: the stack's port is learned from its SYN; ours is 8080."""
        self.local_port = None
        self.remote_port = SCRIPT_PORT
        self.local_isn = None
        self.pending_syn = False
        self._forget_timestamps()

    def passive_open(self, remote_port: int) -> None:
        """``bind``/``listen``: the stack is at 8080, the script at an ephemeral port."""
        self.local_port = SCRIPT_PORT
        self.remote_port = remote_port
        self.local_isn = None
        self.pending_syn = False
        self._forget_timestamps()

    def restore(self, saved: Flow) -> None:
        """Put back the state of an earlier copy (``dataclasses.replace(flow)``)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(saved, f.name))

    def new_connection(self, isn: int | None) -> None:
        """The stack numbers a new connection on these ports from ``isn`` (None: from 0)."""
        if isn != self.local_isn:
            self._forget_timestamps()
        self.local_isn = isn
        self.pending_syn = False

    def _forget_timestamps(self) -> None:
        self.first_script_ts = self.first_live_ts = self.last_live_ts = None

    @property
    def isn(self) -> int:
        return self.local_isn or 0


# ------------------------------------------------------------------ inbound


def _encode_option(option: TcpOption, flow: Flow, *, acking: bool) -> bytes:
    if isinstance(option, Nop):
        return b"\x01"
    if isinstance(option, Eol):
        return b"\x00"
    if isinstance(option, Mss):
        return struct.pack("!BBH", 2, 4, option.mss)
    if isinstance(option, WindowScale):
        if option.shift is None:
            raise Unsupported("'wscale *' in an inbound packet")
        return struct.pack("!BBB", 3, 3, option.shift)
    if isinstance(option, SackPermitted):
        return b"\x04\x02"
    if isinstance(option, Sack):
        isn = flow.isn
        edges = [(edge + isn) & _MASK32 for block in option.blocks for edge in block]
        return struct.pack(f"!BB{len(edges)}I", 5, 2 + 4 * len(edges), *edges)
    if isinstance(option, Timestamp):
        # packetdrill maps every TS ecr of a segment that carries an ACK through
        # the stack's clock, 0 included (a script may number the stack's values
        # from 0); without ACK the field is not an echo (RFC 7323 3.2: it is
        # ignored, and sent as 0), so it goes out as written.
        ecr = option.ecr
        if acking and flow.first_script_ts is not None and flow.first_live_ts is not None:
            ecr = (ecr - flow.first_script_ts + flow.first_live_ts) & _MASK32
        return struct.pack("!BBII", 8, 10, option.val, ecr)
    if isinstance(option, FastOpen):
        raise Unsupported("TCP Fast Open options")
    if isinstance(option, Md5):
        raise Unsupported("TCP MD5 signature options")
    raise Unsupported(f"TCP option {option}")


def _flag_bits(flags: str) -> int:
    bits = 0
    for letter in flags:
        bit = _FLAG_BITS.get(letter)
        if bit is None:
            raise Unsupported(f"TCP flag {letter!r}")
        bits |= bit
    return bits


def _check_flow_ports(seg: TcpSegment, flow: Flow, *, outbound: bool) -> None:
    """Explicit ports must name ``flow`` (:class:`~.flows.Flows` picks the flow by them)."""
    if seg.ports is None:
        return
    ours = (flow.local_port, flow.remote_port) if outbound else (flow.remote_port, flow.local_port)
    if (seg.ports.src, seg.ports.dst) != ours:
        raise ValueError(f"flow: ports {seg.ports} name another connection than {ours}")


def _ports(event: PacketEvent, flow: Flow) -> tuple[int, int]:
    """(script side port, stack side port) of a packet line."""
    seg = event.packet
    assert isinstance(seg, TcpSegment)
    _check_flow_ports(seg, flow, outbound=False)
    if flow.local_port is None:
        raise Unsupported("an inbound packet before the stack's SYN named its port")
    return flow.remote_port, flow.local_port


def build_inbound(event: PacketEvent, flow: Flow) -> bytes:
    """The IPv4 packet a ``<`` line describes, from the script's address to the stack's."""
    seg = event.packet
    if not isinstance(seg, TcpSegment):
        raise Unsupported(f"inbound {type(seg).__name__} packets (only TCP is supported)")
    if event.encapsulation:
        raise Unsupported("encapsulated packets (IP-in-IP, GRE, MPLS)")
    if seg.options is None:
        raise Unsupported("'<...>' options in an inbound packet")
    if seg.window is None:
        raise Unsupported("an inbound packet without 'win'")
    acking = "." in seg.flags
    options = b"".join(_encode_option(option, flow, acking=acking) for option in seg.options)
    if len(options) % 4:
        options += b"\x00" * (4 - len(options) % 4)
    src_port, dst_port = _ports(event, flow)
    if "S" in seg.flags and not acking:
        # A SYN after the stack numbered a connection: perhaps a new connection.
        flow.pending_syn = flow.local_isn is not None
    else:
        flow.pending_syn = False
    ack = seg.ack or 0
    if seg.ack is not None:
        ack = (ack + flow.isn) & _MASK32
    header_len = 20 + len(options)
    flags = _flag_bits(seg.flags)
    tcp = bytearray(
        _TCP.pack(
            src_port,
            dst_port,
            seg.start_seq & _MASK32,
            ack,
            (header_len // 4) << 12 | flags,
            seg.window,
            0,
            seg.urg or 0,
        )
    )
    tcp += options
    tcp += bytes(seg.length)
    struct.pack_into("!H", tcp, 16, transport_checksum(flow.remote_ip, flow.local_ip, 6, tcp))
    tos, ttl = _inbound_ip_fields(event.ip_info)
    flow.ip_id = (flow.ip_id + 1) & 0xFFFF
    ip = bytearray(
        _IP.pack(0x45, tos, 20 + len(tcp), flow.ip_id, 0, ttl, 6, 0, flow.remote_ip, flow.local_ip)
    )
    struct.pack_into("!H", ip, 10, internet_checksum(ip))
    return bytes(ip + tcp)


def _inbound_ip_fields(info: IpInfo | None) -> tuple[int, int]:
    if info is None:
        return 0, 64
    if info.flow_label is not None:
        raise Unsupported("IPv6 flow labels")
    tos = info.tos or 0
    if info.ecn is not None:
        if info.ecn is Ecn.ECT01:
            raise Unsupported("[ect01] in an inbound packet")
        tos = (tos & ~3) | _ECN_BITS[info.ecn]
    return tos, info.ttl if info.ttl is not None else 64


# ------------------------------------------------------------------ outbound


@dataclass(frozen=True, slots=True)
class LivePacket:
    """A TCP/IPv4 packet the stack sent, decoded with the options kept in order."""

    src: int
    dst: int
    tos: int
    ttl: int
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urg: int
    options: tuple[tuple[int, bytes], ...]
    payload_len: int

    @property
    def flag_text(self) -> str:
        return "".join(letter for letter in _FLAG_ORDER if self.flags & _FLAG_BITS[letter]) or "-"


def parse_live(packet: bytes) -> LivePacket | None:
    """Decode an IPv4 TCP packet; None for anything else (ARP, IPv6, UDP, a fragment)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ver_ihl, tos, total, _id, frag, ttl, proto, _sum, src, dst = _IP.unpack_from(packet)
    ihl = (ver_ihl & 0xF) * 4
    if proto != _PROTO_TCP or frag & 0x3FFF or total > len(packet) or total < ihl + 20:
        return None
    sport, dport, seq, ack, off_flags, window, _csum, urg = _TCP.unpack_from(packet, ihl)
    doff = (off_flags >> 12) * 4
    if doff < 20 or ihl + doff > total:
        return None
    raw = packet[ihl + 20 : ihl + doff]
    options: list[tuple[int, bytes]] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind in (0, 1):
            options.append((kind, b""))
            i += 1
            if kind == 0:
                break  # EOL: the rest is padding
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2 or i + raw[i + 1] > len(raw):
            options.append((kind, bytes(raw[i:])))
            break
        options.append((kind, bytes(raw[i + 2 : i + raw[i + 1]])))
        i += raw[i + 1]
    return LivePacket(
        src,
        dst,
        tos,
        ttl,
        sport,
        dport,
        seq,
        ack,
        off_flags & 0x1FF,
        window,
        urg,
        tuple(options),
        total - ihl - doff,
    )


def _format_live_option(kind: int, data: bytes, flow: Flow) -> str:
    if kind == 0:
        return "eol"
    if kind == 1:
        return "nop"
    if kind == 2 and len(data) == 2:
        return f"mss {struct.unpack('!H', data)[0]}"
    if kind == 3 and len(data) == 1:
        return f"wscale {data[0]}"
    if kind == 4 and not data:
        return "sackOK"
    if kind == 5 and len(data) % 8 == 0:
        edges = struct.unpack(f"!{len(data) // 4}I", data)
        return "sack " + " ".join(f"{edges[i]}:{edges[i + 1]}" for i in range(0, len(edges), 2))
    if kind == 8 and len(data) == 8:
        val, ecr = struct.unpack("!II", data)
        return f"TS val {_script_ts(val, flow)} ecr {ecr}"
    return f"option{kind} {data.hex()}"


def _script_ts(live_val: int, flow: Flow) -> int:
    """A live TS val in the script's numbering (as the script would write it)."""
    if flow.first_live_ts is None or flow.first_script_ts is None:
        return live_val
    return (live_val - flow.first_live_ts + flow.first_script_ts) & _MASK32


_SYN = 0x02
_RST = 0x04


def _isn_for(packet: LivePacket, flow: Flow) -> int:
    """The ISN a live packet's sequence number counts from.

    A SYN teaches the ISN when none is known or the script has just asked
    for a new connection (:attr:`Flow.pending_syn`); an RST answering such
    a SYN belongs to no connection and counts from 0; anything else uses
    the connection's ISN (0 while none is known, as for an RST answering a
    segment for no socket).
    """
    if packet.flags & _SYN and (flow.local_isn is None or flow.pending_syn):
        return packet.seq
    if packet.flags & _RST and flow.pending_syn:
        return 0
    return flow.isn


def format_live(packet: LivePacket, flow: Flow) -> str:
    """A live packet as a ``>`` script line, in the script's numbering."""
    isn = _isn_for(packet, flow)
    start = (packet.seq - isn) & _MASK32
    parts = ["> "]
    ecn = packet.tos & 3
    if ecn:
        names = {1: "ect1", 2: "ect0", 3: "ce"}
        parts.append(f"[{names[ecn]}] ")
    parts.append(f"{packet.flag_text} {start}:{(start + packet.payload_len) & _MASK32}")
    parts.append(f"({packet.payload_len})")
    if packet.flags & 0x10:
        parts.append(f" ack {packet.ack}")
    parts.append(f" win {packet.window}")
    if packet.options:
        rendered = ",".join(_format_live_option(k, d, flow) for k, d in packet.options)
        parts.append(f" <{rendered}>")
    if (packet.src_port, packet.dst_port) != (flow.local_port, flow.remote_port):
        parts.append(f" (ports {packet.src_port} > {packet.dst_port})")
    return "".join(parts)


def match_outbound(
    event: PacketEvent, packet: LivePacket, flow: Flow, *, ts_tick_usecs: int | None = None
) -> str | None:
    """The first difference between a ``>`` line and a live packet, or None if they match.

    Learns what the first packets teach (the stack's port and ISN from its
    SYN, the TS val offset from its first timestamp) only once every other
    field has matched, so that a mismatching packet does not skew the
    mappings used to report it.
    """
    seg = event.packet
    if not isinstance(seg, TcpSegment):
        raise Unsupported(f"outbound {type(seg).__name__} packets (only TCP is supported)")
    if event.encapsulation:
        raise Unsupported("encapsulated packets (IP-in-IP, GRE, MPLS)")
    if (packet.src, packet.dst) != (flow.local_ip, flow.remote_ip):
        return (
            f"addresses {addr_str(packet.src)} > {addr_str(packet.dst)} "
            f"(expected {addr_str(flow.local_ip)} > {addr_str(flow.remote_ip)})"
        )
    _check_flow_ports(seg, flow, outbound=True)
    _flag_bits(seg.flags)  # unknown letters (AccECN) are unsupported, not ignored
    want_ports: tuple[int | None, int] = (flow.local_port, flow.remote_port)
    if want_ports[1] != packet.dst_port or want_ports[0] not in (None, packet.src_port):
        return (
            f"ports {packet.src_port} > {packet.dst_port} "
            f"(expected {want_ports[0]} > {want_ports[1]})"
        )
    live_flags = packet.flag_text
    want_flags = "".join(letter for letter in _FLAG_ORDER if letter in seg.flags) or "-"
    if live_flags != want_flags:
        return f"flags {live_flags} (expected {want_flags})"
    isn = _isn_for(packet, flow)
    if (
        packet.flags & _SYN
        and flow.pending_syn
        and flow.local_isn is not None
        and (packet.seq - flow.local_isn) & _MASK32 == seg.start_seq & _MASK32
    ):
        # The line numbers the new connection in the old one's terms (to pin
        # down how the stack chose its ISN, e.g. on TIME-WAIT reuse): keep them.
        isn = flow.local_isn
    start = (packet.seq - isn) & _MASK32
    if start != seg.start_seq & _MASK32:
        return f"sequence number {start} (expected {seg.start_seq})"
    if packet.payload_len != seg.length:
        return f"payload length {packet.payload_len} (expected {seg.length})"
    if seg.ack is not None and packet.ack != seg.ack & _MASK32:
        return f"ack {packet.ack} (expected {seg.ack})"
    if seg.window is not None and packet.window != seg.window:
        return f"window {packet.window} (expected {seg.window})"
    if seg.urg is not None and packet.urg != seg.urg:
        return f"urgent pointer {packet.urg} (expected {seg.urg})"
    problem = _match_ip_info(event.ip_info, packet)
    if problem is not None:
        return problem
    ts_learned: tuple[int, int] | None = None
    if seg.options is not None:
        ts_flow = flow
        if isn != flow.isn:
            # A new connection: the stack's TS clock for it owes nothing to the old one's.
            ts_flow = dataclasses.replace(flow)
            ts_flow.new_connection(isn)
        problem, ts_learned = _match_options(seg.options, packet, ts_flow, ts_tick_usecs)
        if problem is not None:
            return problem
    # Everything matched: learn.
    if packet.flags & _SYN and (flow.local_isn is None or flow.pending_syn):
        flow.new_connection(isn)
    elif packet.flags & _RST and flow.pending_syn:
        flow.new_connection(None)  # the new connection was refused
    else:
        flow.pending_syn = False
    if flow.local_port is None:
        flow.local_port = packet.src_port
    if ts_learned is not None and flow.first_live_ts is None:
        flow.first_script_ts, flow.first_live_ts = ts_learned
    live_ts = _live_ts(packet)
    if live_ts is not None:
        flow.last_live_ts = live_ts[0]
    return None


def _live_ts(packet: LivePacket) -> tuple[int, int] | None:
    for kind, data in packet.options:
        if kind == 8 and len(data) == 8:
            val, ecr = struct.unpack("!II", data)
            return val, ecr
    return None


def _match_ip_info(info: IpInfo | None, packet: LivePacket) -> str | None:
    if info is None:
        return None
    if info.flow_label is not None:
        raise Unsupported("IPv6 flow labels")
    ecn = packet.tos & 3
    if info.ecn is not None:
        names = {0: "noecn", 1: "ect1", 2: "ect0", 3: "ce"}
        if info.ecn is Ecn.ECT01:
            if ecn not in (1, 2):
                return f"IP ECN {names[ecn]} (expected ect0 or ect1)"
        elif ecn != _ECN_BITS[info.ecn]:
            return f"IP ECN {names[ecn]} (expected {info.ecn.value})"
    if info.tos is not None:
        want = info.tos if info.ecn is None else (info.tos & ~3) | (packet.tos & 3)
        if packet.tos != want:
            return f"IP tos {packet.tos:#x} (expected {info.tos:#x})"
    if info.ttl is not None and packet.ttl != info.ttl:
        return f"IP ttl {packet.ttl} (expected {info.ttl})"
    return None


def _match_options(
    want: tuple[TcpOption, ...],
    packet: LivePacket,
    flow: Flow,
    ts_tick_usecs: int | None,
) -> tuple[str | None, tuple[int, int] | None]:
    """Compare options in order; on success also return (script, live) TS val to learn."""
    live = [option for option in packet.options]
    # Trailing EOL padding the stack may add after the last option is not a difference.
    rendered_live = ",".join(_format_live_option(k, d, flow) for k, d in live) or "none"
    rendered_want = ",".join(str(option) for option in want) or "none"
    mismatch = f"TCP options <{rendered_live}> (expected <{rendered_want}>)"
    if len(live) != len(want):
        return mismatch, None
    learned: tuple[int, int] | None = None
    for expected, (kind, data) in zip(want, live, strict=True):
        if isinstance(expected, Nop):
            ok = kind == 1
        elif isinstance(expected, Eol):
            ok = kind == 0
        elif isinstance(expected, Mss):
            ok = kind == 2 and data == struct.pack("!H", expected.mss)
        elif isinstance(expected, WindowScale):
            ok = kind == 3 and len(data) == 1 and expected.shift in (None, data[0])
        elif isinstance(expected, SackPermitted):
            ok = kind == 4 and not data
        elif isinstance(expected, Sack):
            edges = [edge & _MASK32 for block in expected.blocks for edge in block]
            ok = kind == 5 and data == struct.pack(f"!{len(edges)}I", *edges)
        elif isinstance(expected, Timestamp):
            if kind != 8 or len(data) != 8:
                return mismatch, None
            val, ecr = struct.unpack("!II", data)
            if ecr != expected.ecr & _MASK32:
                return (
                    f"TS ecr {ecr} (expected {expected.ecr}: the echo of the script's TS val)",
                    None,
                )
            problem = _check_ts_val(expected.val, val, flow, ts_tick_usecs)
            if problem is not None:
                return problem, None
            learned = (expected.val, val)
            ok = True
        elif isinstance(expected, FastOpen):
            raise Unsupported("TCP Fast Open options")
        else:
            raise Unsupported(f"TCP option {expected}")
        if not ok:
            return mismatch, None
    return None, learned


def _check_ts_val(script_val: int, live_val: int, flow: Flow, tick_usecs: int | None) -> str | None:
    """The stack's TS clock must not run backwards; with a tick size, it must match the script."""
    last = flow.last_live_ts
    if last is not None and (live_val - last) & _MASK32 >= 1 << 31:
        return f"TS val {live_val} went backwards (previous {last})"
    if tick_usecs is None or flow.first_live_ts is None or flow.first_script_ts is None:
        return None
    live_delta = (live_val - flow.first_live_ts) & _MASK32
    script_delta = (script_val - flow.first_script_ts) & _MASK32
    # One tick of slack either way for where the clock was within its tick.
    if abs(live_delta - script_delta) > 1:
        return (
            f"TS val {_script_ts(live_val, flow)} in script numbering "
            f"(expected {script_val} with --tcp_ts_tick_usecs={tick_usecs})"
        )
    return None
