"""aiostack under test: a stack whose only neighbour is the script, on virtual time.

The stack gets a :class:`~aiostack.link.memory.QueuePort` as its device and
the script stands behind it as the gateway (192.168.0.2, a PERMANENT
neighbour entry, so no ARP happens): frames the stack transmits are
unwrapped to their IPv4 packet and queued for the timeline, packets the
script injects are wrapped in Ethernet and delivered. Nothing else is
stubbed, so a script exercises the same Ethernet, IPv4, TCP and socket code
as a TAP would, and the virtual clock makes each run exact and fast.
"""

from __future__ import annotations

import struct

from aiostack.link.memory import QueuePort
from aiostack.settings import Settings
from aiostack.stack.stack import Stack
from aiostack.testing.virtual_time import run_virtual

from .ast import Script
from .kernel import AiostackKernel
from .packets import GATEWAY_IP, LOCAL_IP
from .report import Result
from .target import Target

__all__ = ["AiostackTarget", "run_on_aiostack"]

_GATEWAY_MAC = bytes.fromhex("02000000c0de")
_ETH = struct.Struct("!6s6sH")
_IPV4 = 0x0800


class AiostackTarget(Target):
    """See the module docstring; run it on a virtual-time loop (:func:`run_on_aiostack`)."""

    name = "aiostack"
    any_time_wait = 600.0
    late_grace = 5.0

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.settings = Settings()
        self.seed = seed
        self.stack: Stack | None = None

    async def open(self) -> None:
        self.port = QueuePort(
            "pd0", mtu=1500, queue_len=4096, max_batch=64, transmit=self._transmitted
        )
        # No gratuitous ARP: the script would see it as a stray packet.
        self.settings.arp_notify = 0
        stack = Stack(
            self.port,
            address=f"{LOCAL_IP}/24",
            gateway=GATEWAY_IP,
            settings=self.settings,
            seed=self.seed,
            privileged=True,
        )
        await stack.start()
        self.stack = stack
        stack.add_neighbor(GATEWAY_IP, _GATEWAY_MAC)
        self.kernel = AiostackKernel(stack)
        self.reset_clock()

    async def aclose(self) -> None:
        if self.stack is not None:
            await self.stack.aclose()

    def _transmitted(self, _port: QueuePort, frames: list[bytes]) -> None:
        for frame in frames:
            if len(frame) > 14 and _ETH.unpack_from(frame)[2] == _IPV4:
                self.deliver(frame[14:])

    def inject(self, packet: bytes) -> None:
        assert self.stack is not None
        self.port.deliver([_ETH.pack(self.stack.mac, _GATEWAY_MAC, _IPV4) + packet])

    async def sysctl(self, name: str, value: str) -> None:
        try:
            self.settings.set(name, value)
        except ValueError:
            self.notes.append(f"sysctl {name}={value} ignored: aiostack has no such setting")


def run_on_aiostack(script: Script, *, seed: int = 0) -> Result:
    """Run ``script`` on a fresh aiostack on a fresh virtual-time loop."""
    from .runner import run_target

    return run_virtual(run_target(script, AiostackTarget(seed=seed)))
