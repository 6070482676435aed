"""Due timers wait for input that is already there, but only for a bounded time.

Issue 6: after 10,000 ``close()`` calls the kernel acknowledged every FIN
at once, yet the stack retransmitted them, because the timer task fired the
connections' retransmission timers while the ACKs still sat in the device
behind a busy pass. These tests build that situation exactly, on virtual
time: the peer's ACKs are released into our device in the very pass in
which our retransmission timers fall due, more of them than one batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from aiostack.link.base import DeviceWrapper, NetDevice
from aiostack.link.memory import MemoryWire, QueuePort
from aiostack.socket import AF_INET, SOCK_STREAM
from aiostack.socket.socket import Socket
from aiostack.stack.stack import Stack
from aiostack.stack.timer import MAX_DEFER
from aiostack.testing.virtual_time import VirtualTimeLoop, run_virtual
from aiostack.wire.types import BytesLike
from tests.helpers import A_IP, B_IP, MAC_A, MAC_B, PREFIX

PORT = 7300
#: Frames a device hands over per batch here: the released ACKs are several batches.
BATCH = 4
CONNECTIONS = 20


class Gate(DeviceWrapper):
    """Holds what the peer sends while shut; ``release`` sends it all at once."""

    def __init__(self, inner: NetDevice) -> None:
        super().__init__(inner)
        self.shut = False
        self.held: list[BytesLike] = []
        #: ``full`` is set once this many frames are held.
        self.expect = 1
        self.full = asyncio.Event()

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        if self.shut:
            self.held.extend(frames)
            if len(self.held) >= self.expect:
                self.full.set()
        else:
            self.inner.send_batch(frames)

    def release(self) -> None:
        self.shut = False
        held, self.held = self.held, []
        self.inner.send_batch(held)


def _retransmitted(stack: Stack) -> int:
    retrans: int = stack.statistics()["mib"]["TcpRetransSegs"]
    return retrans


async def _connected(client: Stack, server: Stack, count: int) -> tuple[list[Socket], list[Socket]]:
    listener = server.socket(AF_INET, SOCK_STREAM)
    listener.bind((B_IP, PORT))
    listener.listen(count)
    socks = [client.socket(AF_INET, SOCK_STREAM) for _ in range(count)]
    await asyncio.gather(*(sock.connect((B_IP, PORT)) for sock in socks))
    accepted = [(await listener.accept())[0] for _ in range(count)]
    return socks, accepted


async def _acks_queued_when_rto_falls_due(defer: bool) -> tuple[int, int]:
    """Close CONNECTIONS sockets; release the peer's ACKs as their RTOs fall due.

    Returns (retransmitted segments, frames the client's timer task took in first).
    """
    loop = asyncio.get_running_loop()
    a_dev, b_dev = MemoryWire.pair(max_batch=BATCH, names=("client", "server"))
    gate = Gate(b_dev)
    async with (
        Stack(a_dev, address=f"{A_IP}/{PREFIX}", mac=MAC_A, seed=1) as client,
        Stack(gate, address=f"{B_IP}/{PREFIX}", mac=MAC_B, seed=2) as server,
    ):
        if not defer:
            client.timer.max_defer_frames = 0  # the behaviour before the fix
        socks, _accepted = await _connected(client, server, CONNECTIONS)
        assert _retransmitted(client) == 0
        gate.shut = True
        gate.expect = CONNECTIONS
        for sock in socks:
            sock.close()  # one FIN each, all in this pass: one RTO deadline
        await gate.full.wait()  # the peer has acknowledged every FIN
        assert len(gate.held) == CONNECTIONS
        rto = client.tcp.poll_at()
        assert rto is not None and rto > loop.time()
        # The ACKs land in our device in the pass in which the RTOs fall due,
        # CONNECTIONS / BATCH batches of them: most are still in the device
        # when the timer task runs.
        loop.call_at(rto, gate.release)
        await asyncio.sleep(rto - loop.time() + 1.0)
        assert client.tcp.poll_at() is None or client.tcp.poll_at() > rto
        return _retransmitted(client), client.timer.frames_first


def test_acks_waiting_in_the_device_cancel_due_retransmissions() -> None:
    retransmitted, taken = run_virtual(_acks_queued_when_rto_falls_due(defer=True))
    assert retransmitted == 0
    assert taken > 0  # the timers were due with the ACKs waiting: the case under test


def test_without_the_deferral_the_same_scenario_retransmits() -> None:
    # The control: the scenario really has ACKs waiting when the timers fall due.
    retransmitted, taken = run_virtual(_acks_queued_when_rto_falls_due(defer=False))
    assert retransmitted > 0
    assert taken == 0


class Flooded(QueuePort):
    """A device that always has input: every poll finds a batch, taking ``step`` of clock."""

    def __init__(self, port: QueuePort, frame: bytes, step: float) -> None:
        self.port = port
        self.frame = frame
        self.step = step
        self.polled = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.port, name)

    def poll_batch(self) -> list[bytes] | None:
        self.polled += 1
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        if self.step:
            loop.advance(self.step)
        return [self.frame] * BATCH


async def _rto_under_flood(*, step: float, max_frames: int) -> tuple[float, float, int]:
    """One unacknowledged FIN whose ACK never comes, and a device that never runs dry.

    Returns (the RTO deadline, the clock when it fired, frames taken first).
    """
    loop = asyncio.get_running_loop()
    a_dev, b_dev = MemoryWire.pair(max_batch=BATCH, names=("client", "server"))
    gate = Gate(b_dev)
    async with (
        Stack(a_dev, address=f"{A_IP}/{PREFIX}", mac=MAC_A, seed=1) as client,
        Stack(gate, address=f"{B_IP}/{PREFIX}", mac=MAC_B, seed=2) as server,
    ):
        client.timer.max_defer_frames = max_frames
        (sock,), _accepted = await _connected(client, server, 1)
        gate.shut = True  # the ACK of our FIN never arrives: the RTO must fire
        sock.close()
        await asyncio.sleep(0)
        rto = client.tcp.poll_at()
        assert rto is not None
        # Unicast frames for another host: input the link layer must read and drop.
        junk = b"\x02\x00\x00\x00\x00\x99" + MAC_B + b"\x08\x00" + bytes(46)
        assert isinstance(a_dev, QueuePort)
        flooded = Flooded(a_dev, junk, step)
        client.device = flooded  # only the timer task's polls see the flood
        while _retransmitted(client) == 0:
            await asyncio.sleep(0.001)
            assert loop.time() < rto + 10, "timers starved by the input flood"
        fired = loop.time()
        assert client.counters.drops.get("ethernet.other_host", 0) > 0
        assert flooded.polled > 0
        client.device = a_dev
        return rto, fired, client.timer.frames_first


def test_an_input_flood_defers_timers_by_a_bounded_number_of_frames() -> None:
    # Virtual time does not move while the drain runs: the frame bound ends it.
    rto, fired, taken = run_virtual(_rto_under_flood(step=0.0, max_frames=1000))
    assert 1000 <= taken <= 1000 + BATCH
    assert rto <= fired <= rto + 0.002


def test_an_input_flood_defers_timers_by_a_bounded_time() -> None:
    # Each poll takes 1 ms of clock: the time bound (MAX_DEFER) ends the drain.
    step = 0.001
    rto, fired, taken = run_virtual(_rto_under_flood(step=step, max_frames=10**9))
    assert rto + MAX_DEFER <= fired <= rto + MAX_DEFER + 3 * step
    assert taken == pytest.approx(MAX_DEFER / step * BATCH, abs=2 * BATCH)
