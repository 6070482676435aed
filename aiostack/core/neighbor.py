"""The ARP neighbour table: IPv4 next hop -> MAC, with Linux's NUD states.

States follow Linux's neighbour subsystem (``include/net/neighbour.h``):

- INCOMPLETE: a broadcast request is out; packets wait in a per-neighbour
  queue capped by ``unres_qlen_bytes`` (oldest dropped first, counted).
  After ``mcast_solicit`` requests ``retrans_time_ms`` apart with no reply
  the entry fails: the queued packets are handed back as failures, which
  the stack turns into EHOSTUNREACH for their senders (Linux does the same
  through ``arp_error_report`` -> ICMP host unreachable to itself).
- REACHABLE: confirmed within ``base_reachable_time_ms``; then STALE.
- STALE: the confirmation is old (or the entry was learned from a request);
  still used, but the first use starts verification.
- DELAY: used while STALE; wait ``delay_first_probe_time`` s for the upper
  layers to confirm (they do not yet, so this just paces probing).
- PROBE: ``ucast_solicit`` unicast requests; no reply removes the entry.
- PERMANENT: configured by hand (``ip neigh add ... nud permanent``); never
  aged, probed or overwritten by ARP.

Requests are paced by ``retrans_time_ms`` per neighbour, which is also the
request rate limit: a flood of packets to one unresolved address sends one
request per second, not one per packet. STALE entries unused for
``gc_stale_time`` seconds are forgotten.

Pure: every method takes ``now`` (seconds). Output accumulates in
:attr:`NeighborTable.solicitations` and :attr:`NeighborTable.failures`,
which the shell drains after each call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from aiostack.core.counters import Counters
from aiostack.settings import Settings

#: The deadline of an entry that never needs attention.
_NEVER = float("inf")


class NudState(Enum):
    PERMANENT = "PERMANENT"
    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"


@dataclass(slots=True)
class Neighbor:
    address: int
    mac: bytes | None
    state: NudState
    #: When the MAC was last confirmed (reply received).
    confirmed: float
    #: When the entry was last used to send.
    used: float
    #: Next time the entry needs attention (request, state change, expiry).
    deadline: float
    probes: int = 0
    pending: deque[bytearray] = field(default_factory=deque)
    pending_bytes: int = 0


@dataclass(slots=True)
class Solicitation:
    """An ARP request to send: broadcast when ``mac`` is None, else unicast."""

    target: int
    mac: bytes | None


class NeighborTable:
    """See the module docstring."""

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self.entries: dict[int, Neighbor] = {}
        #: ARP requests to send, drained by the shell.
        self.solicitations: list[Solicitation] = []
        #: (neighbour address, packets that could not be delivered), drained by the shell.
        self.failures: list[tuple[int, list[bytearray]]] = []

    # -- sending ------------------------------------------------------------

    def resolve(self, now: float, address: int, packet: bytearray) -> bytes | None:
        """MAC for ``address``, or None after queueing ``packet`` until resolution.

        The fast path (a REACHABLE entry) is one dict lookup and a compare.
        """
        entry = self.entries.get(address)
        if entry is not None and entry.mac is not None:
            entry.used = now
            if entry.state is NudState.REACHABLE or entry.state is NudState.PERMANENT:
                if entry.deadline > now:
                    return entry.mac
                entry.state = NudState.STALE
            if entry.state is NudState.STALE:
                entry.state = NudState.DELAY
                entry.deadline = now + self.settings.delay_first_probe_time
            return entry.mac
        if entry is None:
            entry = Neighbor(address, None, NudState.INCOMPLETE, 0.0, now, now)
            self.entries[address] = entry
            self._solicit(now, entry, None)
        self._enqueue(entry, packet)
        return None

    # -- receiving ----------------------------------------------------------

    def confirm(
        self, now: float, address: int, mac: bytes, *, create: bool, reachable: bool
    ) -> list[bytearray]:
        """Record that ``address`` is at ``mac``; return packets now sendable.

        ``reachable`` is True for a reply (proof of two-way reachability) and
        False for a request (the sender exists, reachability unproven).
        ``create`` says whether an unknown address gets an entry: Linux
        creates one when the ARP was addressed to us, and otherwise only
        updates existing entries (``arp_accept=0``).
        """
        entry = self.entries.get(address)
        if entry is not None and entry.state is NudState.PERMANENT:
            return []
        if entry is None:
            if not create:
                return []
            entry = Neighbor(address, mac, NudState.STALE, 0.0, now, now)
            self.entries[address] = entry
        changed = entry.mac != mac
        entry.mac = mac
        if reachable:
            entry.state = NudState.REACHABLE
            entry.confirmed = now
            entry.probes = 0
            entry.deadline = now + self._reachable_time
        elif changed or entry.state is NudState.INCOMPLETE:
            # A request proves the sender exists, not that it hears us: Linux's
            # neigh_update(NUD_STALE), even for an INCOMPLETE entry.
            entry.state = NudState.STALE
        if entry.state is NudState.STALE:
            entry.deadline = now + self.settings.gc_stale_time
        released = list(entry.pending)
        entry.pending.clear()
        entry.pending_bytes = 0
        if released and entry.state is NudState.STALE:
            # Sending the queued packets uses the STALE entry: DELAY, as in Linux.
            entry.state = NudState.DELAY
            entry.used = now
            entry.deadline = now + self.settings.delay_first_probe_time
        return released

    def add_permanent(self, now: float, address: int, mac: bytes) -> list[bytearray]:
        """A static entry; returns packets that were waiting for ``address``."""
        entry = self.entries.get(address)
        pending = list(entry.pending) if entry is not None else []
        self.entries[address] = Neighbor(address, mac, NudState.PERMANENT, now, now, _NEVER)
        return pending

    # -- timers -------------------------------------------------------------

    def poll_at(self) -> float | None:
        """Earliest deadline among entries that need one, or None."""
        deadlines = (e.deadline for e in self.entries.values())
        return min((d for d in deadlines if d != _NEVER), default=None)

    def poll(self, now: float) -> None:
        """Advance every entry whose deadline has passed."""
        for entry in list(self.entries.values()):
            if entry.deadline > now:
                continue
            if entry.state is NudState.REACHABLE:
                # The confirmation has aged out: keep the MAC, verify on next use.
                entry.state = NudState.STALE
                entry.deadline = max(entry.used, now) + self.settings.gc_stale_time
            elif entry.state is NudState.INCOMPLETE:
                if entry.probes < self.settings.mcast_solicit:
                    self._solicit(now, entry, None)
                else:
                    self._fail(entry)
            elif entry.state is NudState.DELAY:
                entry.state = NudState.PROBE
                entry.probes = 0
                self._solicit(now, entry, entry.mac)
            elif entry.state is NudState.PROBE:
                if entry.probes < self.settings.ucast_solicit:
                    self._solicit(now, entry, entry.mac)
                else:
                    self._fail(entry)
            elif entry.state is NudState.STALE:
                # Garbage collection: forget entries nobody used for gc_stale_time.
                del self.entries[entry.address]

    # -- internals ----------------------------------------------------------

    @property
    def _reachable_time(self) -> float:
        return self.settings.base_reachable_time_ms / 1000

    def _solicit(self, now: float, entry: Neighbor, mac: bytes | None) -> None:
        entry.probes += 1
        entry.deadline = now + self.settings.retrans_time_ms / 1000
        self.solicitations.append(Solicitation(entry.address, mac))

    def _enqueue(self, entry: Neighbor, packet: bytearray) -> None:
        entry.pending.append(packet)
        entry.pending_bytes += len(packet)
        while entry.pending_bytes > self.settings.unres_qlen_bytes and len(entry.pending) > 1:
            dropped = entry.pending.popleft()
            entry.pending_bytes -= len(dropped)
            self.counters.ArpPendingDrops += 1

    def _fail(self, entry: Neighbor) -> None:
        del self.entries[entry.address]
        self.counters.ArpResolveFailures += 1
        if entry.pending:
            self.failures.append((entry.address, list(entry.pending)))
