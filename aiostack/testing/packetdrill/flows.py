"""Which connection a packet line belongs to: one :class:`~.packets.Flow` per 4-tuple.

packetdrill's grammar lets a TCP line name its ports, ``< 40001 > 8080 S
0:0(0) ...`` (``opt_port_info``, script side first for ``<``, stack side
first for ``>``); a line without ports continues the connection the script
was last talking about, as packetdrill's "socket under test" does. That is
how one script drives several connections to one listener (accept-queue and
SYN-queue overflow, SYN cookies): each script-side port is a connection of
its own, with its own ISN and timestamp mappings, and a packet of one
connection is never numbered with another's.

The addresses stay implicit (192.0.2.1 and 192.168.0.1). The script side's
port is used as written: nothing else lives in the namespace (or on the
in-memory wire), so it cannot collide. The stack's side of an active open
is the port the stack picked, learned from its SYN, so a script may name
only the stack's listening port (8080) or a port the stack already used.
"""

from __future__ import annotations

import dataclasses

from .ast import TcpSegment
from .packets import SCRIPT_PORT, Flow, LivePacket, Unsupported

__all__ = ["DEFAULT_REMOTE_PORT", "Flows"]

#: The script side's port when the stack listens and the script names no port.
DEFAULT_REMOTE_PORT = 48_321


class Flows:
    """Every connection a script has used, and the one a port-less line continues."""

    def __init__(self, remote_port: int = DEFAULT_REMOTE_PORT) -> None:
        self.default_remote_port = remote_port
        self.current = Flow(remote_port=remote_port)
        self.flows: list[Flow] = [self.current]

    def _adopt(self, flow: Flow) -> Flow:
        """Make ``flow`` current and the only one with its 4-tuple."""
        self.flows = [
            f
            for f in self.flows
            if f is flow
            or f.local_port is None
            or (f.local_port, f.remote_port) != (flow.local_port, flow.remote_port)
        ]
        if not any(f is flow for f in self.flows):
            self.flows.append(flow)
        self.current = flow
        return flow

    # -- the system calls that start connections -----------------------------

    def passive_open(self) -> Flow:
        """``bind``/``listen``: the stack at 8080, a port-less script line at the default port."""
        flow = Flow(remote_port=self.default_remote_port)
        flow.passive_open(self.default_remote_port)
        return self._adopt(flow)

    def active_open(self) -> Flow:
        """``connect``: a new connection whose stack port its SYN will tell."""
        flow = Flow()
        flow.active_open()
        return self._adopt(flow)

    def save(self) -> tuple[Flow, list[Flow], Flow]:
        """A snapshot for :meth:`restore` (a connect() that sent nothing)."""
        return self.current, list(self.flows), dataclasses.replace(self.current)

    def restore(self, saved: tuple[Flow, list[Flow], Flow]) -> None:
        current, flows, state = saved
        current.restore(state)
        self.current, self.flows = current, flows

    # -- packet lines -----------------------------------------------------------

    def _find(self, local_port: int, remote_port: int) -> Flow | None:
        for flow in reversed(self.flows):
            if (flow.local_port, flow.remote_port) == (local_port, remote_port):
                return flow
        return None

    def for_line(self, seg: TcpSegment, *, outbound: bool) -> Flow:
        """The connection a TCP line is about; a line with new ports starts one."""
        if seg.ports is None:
            return self.current
        if outbound:
            local_port, remote_port = seg.ports.src, seg.ports.dst
        else:
            remote_port, local_port = seg.ports.src, seg.ports.dst
        flow = self._find(local_port, remote_port)
        if flow is None:
            learning = self.current
            if (
                outbound
                and learning.local_port is None
                and learning.remote_port == remote_port
                and local_port != SCRIPT_PORT
            ):
                raise Unsupported(
                    f"explicit ports {seg.ports} on an active open (the stack picks its own port)"
                )
            flow = Flow(remote_port=remote_port)
            flow.passive_open(remote_port)
            flow.local_port = local_port
        self.current = flow
        if not any(f is flow for f in self.flows):
            self.flows.append(flow)
        return flow

    def for_live(self, packet: LivePacket) -> Flow:
        """The connection a packet the stack sent belongs to, for showing it in script numbers.

        A packet of a 4-tuple the script never used (an RST from a port with
        no listener) gets a fresh flow, so it is shown from 0, not in some
        other connection's numbering.
        """
        flow = self._find(packet.src_port, packet.dst_port)
        if flow is not None:
            return flow
        current = self.current
        if current.local_port is None and current.remote_port == packet.dst_port:
            return current  # an active open whose SYN has not been matched yet
        fresh = Flow(remote_port=packet.dst_port)
        fresh.local_port = packet.src_port
        return fresh
