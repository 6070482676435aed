"""What the timeline needs from a stack under test: a clock, packets in and out, system calls.

Two implementations: :class:`~aiostack.testing.packetdrill.aiostack_target.AiostackTarget`
(aiostack on virtual time, packets exchanged in memory) and
:class:`~aiostack.testing.packetdrill.linux.LinuxTarget` (the kernel through
a TUN device in a network namespace, real time).
"""

from __future__ import annotations

import abc
import asyncio
import collections

from .kernel import Kernel

__all__ = ["Target"]


class Target(abc.ABC):
    """A stack under test. Times are seconds since :meth:`open` returned."""

    #: ``aiostack`` or ``linux``, for reports.
    name: str
    kernel: Kernel
    #: Smallest timing tolerance this target can honour, whatever the script says.
    min_tolerance_usecs: int = 0
    #: How long a ``*``-timed outbound packet is waited for, in seconds.
    any_time_wait: float = 10.0
    #: Extra wait, in seconds, for a late packet so it can be reported with its time.
    late_grace: float = 1.0
    #: Things the target ignored and says so (sysctls with no equivalent).
    notes: list[str]

    def __init__(self) -> None:
        self.notes = []
        self.outbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._arrived = asyncio.Event()
        self._start = 0.0

    def reset_clock(self) -> None:
        """Make now script time 0 (after the init commands, as packetdrill does)."""
        self._start = asyncio.get_running_loop().time()

    def now(self) -> float:
        """Seconds since the script started."""
        return asyncio.get_running_loop().time() - self._start

    def script_time(self, loop_time: float) -> float:
        """A reading of the loop's clock as script time."""
        return loop_time - self._start

    async def sleep_until(self, when: float) -> None:
        """Return at script time ``when``; at once (after one loop pass) if it is past."""
        await asyncio.sleep(max(when - self.now(), 0.0))

    def deliver(self, packet: bytes, when: float | None = None) -> None:
        """The stack sent ``packet`` at script time ``when`` (default now): queue it."""
        self.outbox.append((self.now() if when is None else when, packet))
        self._arrived.set()

    async def receive(self, deadline: float) -> tuple[float, bytes] | None:
        """The next IPv4 packet the stack sent and when, or None if none by ``deadline``."""
        while not self.outbox:
            self._arrived.clear()
            timeout = deadline - self.now()
            if timeout < 0:
                return None
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                if not self.outbox:
                    return None
        return self.outbox.popleft()

    @abc.abstractmethod
    async def open(self) -> None:
        """Bring the stack up; time 0 of the script is when this returns."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Tear everything down; idempotent, never raises for a half-opened target."""

    @abc.abstractmethod
    def inject(self, packet: bytes) -> None:
        """Hand an IPv4 packet from the script's side to the stack."""

    @abc.abstractmethod
    async def sysctl(self, name: str, value: str) -> None:
        """Set a tunable by its Linux sysctl name; one it lacks becomes a note, not an error."""
