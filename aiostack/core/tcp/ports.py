"""The TCP bind table (Linux ``bhash``): bind conflicts and ephemeral ports.

Entries are the socket layer's per-socket TCP state (:class:`Binding`),
kept until the socket's connection is CLOSED, so a TIME-WAIT orphan still
holds its port. The rules are Linux's:

- ``inet_bind_conflict``: two entries conflict when their addresses overlap
  (either is the wildcard or they are equal) unless both set SO_REUSEADDR
  and the existing one is not listening, or both set SO_REUSEPORT. At
  listen time only another listener is in the way. A TIME-WAIT orphan
  keeps the SO_REUSEADDR of its socket, so it blocks unless both set it.
- ``inet_hash_connect``: ``connect`` may share an ephemeral port with other
  connections as long as the 4-tuple differs, but not a port some socket
  bound explicitly or listens on; so it looks at the connection table too.
"""

from __future__ import annotations

import random
from collections.abc import Container
from typing import Any, Protocol

from aiostack.core.ports import ephemeral_candidates
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings


class Binding(Protocol):
    """A bind-table entry (the socket layer's TCP state); see ``aiostack.socket.tcp``."""

    bound_addr: int
    port: int
    reuseaddr: bool
    reuseport: bool
    port_locked: bool

    def tcp_state(self) -> TcpState: ...


class TcpBindTable:
    """See the module docstring. Pure apart from the injected ``rng``."""

    __slots__ = ("bhash", "rng", "settings")

    def __init__(self, settings: Settings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng
        #: port -> entries, including orphans until CLOSED.
        self.bhash: dict[int, list[Any]] = {}

    def conflict(self, me: Any, address: int, port: int, *, listening: bool) -> bool:
        """Linux ``inet_bind_conflict`` for ``me`` on ``(address, port)``."""
        for other in self.bhash.get(port, ()):
            if other is me:
                continue
            if not (address == 0 or other.bound_addr == 0 or other.bound_addr == address):
                continue
            other_state = other.tcp_state()
            if listening:
                # listen() re-checks (inet_csk_listen_start): only another
                # listener on an overlapping address is in the way.
                if other_state is TcpState.LISTEN and not (me.reuseport and other.reuseport):
                    return True
                continue
            if me.reuseaddr and other.reuseaddr and other_state is not TcpState.LISTEN:
                continue
            if me.reuseport and other.reuseport:
                continue
            return True
        return False

    def add(self, entry: Any) -> None:
        self.bhash.setdefault(entry.port, []).append(entry)

    def remove(self, entry: Any) -> None:
        entries = self.bhash.get(entry.port)
        if entries is not None and entry in entries:
            entries.remove(entry)
            if not entries:
                del self.bhash[entry.port]

    def free_port(self) -> int:
        """A free ephemeral port for ``bind(port 0)``, or 0 when the range is full."""
        for port in ephemeral_candidates(self.rng, self.settings.ip_local_port_range):
            if port not in self.bhash:
                return port
        return 0

    def connect_port(
        self, src: int, dst: int, dport: int, connections: Container[tuple[int, int, int, int]]
    ) -> int:
        """``inet_hash_connect``: an ephemeral port whose 4-tuple is unused, or 0."""
        for port in ephemeral_candidates(self.rng, self.settings.ip_local_port_range):
            entries = self.bhash.get(port)
            if entries and any(e.port_locked or e.tcp_state() is TcpState.LISTEN for e in entries):
                continue
            if (src, port, dst, dport) in connections:
                continue
            return port
        return 0
