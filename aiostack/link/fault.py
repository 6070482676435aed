"""Network impairments for any device: loss, duplication, reordering, corruption, delay, rate.

This is aiostack's ``tc netem`` (which this kernel lacks), applied per
direction on the stack's side of a device::

    dev = FaultInjector(tap, tx=FaultConfig.parse("loss=1%,delay=20ms~5ms"), seed=7)

Each frame goes through the stages in netem's order: loss, duplication (the
copy then goes through the later stages on its own), corruption, reordering,
then the rate limiter and the delay line. Only ``reorder`` reorders: jitter
never lets a frame overtake an earlier one (as netem with a rate), so each
impairment's effect can be measured on its own.

- ``reorder``: the chosen frame is held back and released right after the
  next frame in the same direction, so the two swap places; if no frame
  follows within :data:`REORDER_HOLD` seconds it goes out on its own.
- ``corrupt``: one random bit of the frame is flipped. On an offloaded
  frame whose checksum the receiver would trust (virtio ``NEEDS_CSUM`` or
  ``DATA_VALID``, GSO super-frames included) the checksum is completed and
  the offload flags cleared first, so the damage is detectable, as it
  would be on a real wire.
- ``delay`` with ``jitter``: each frame is held ``delay +/- jitter``
  (uniform, never below zero).
- ``rate``: frames leave no faster than ``rate`` bytes per second;
  together with the delay line at most ``limit`` frames wait, the rest are
  dropped and counted as ``overlimit``.

Randomness comes from one ``random.Random`` per direction, both derived
from ``seed``: the same seed and the same frames give the same faults,
whatever the interleaving of sends and receives. Timers run on the loop's
clock (``loop.call_at``, one handle per queue head, never one per frame),
so everything works, deterministically, on a virtual-time loop.

Configurations can be replaced or mutated at runtime (``injector.tx =
FaultConfig(...)``, ``injector.tx.loss = 0.05``); frames already waiting keep
their schedule.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from aiostack.link.base import DeviceClosed, DeviceWrapper, NetDevice
from aiostack.wire import virtio
from aiostack.wire.errors import ParseError
from aiostack.wire.types import BytesLike

#: How long a frame picked for reordering waits for a successor to swap with.
REORDER_HOLD = 0.001

_PROBABILITIES = ("loss", "duplicate", "reorder", "corrupt")
_DURATIONS = ("delay", "jitter")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "": 1.0}
# tc's conventions: "bit" suffixes are bits per second, "bps" ones are bytes per second.
_RATE_UNITS = {
    "": 1.0,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
    "bps": 1.0,
    "kbps": 1e3,
    "mbps": 1e6,
    "gbps": 1e9,
}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%/]*)\s*$")
_KEY_ALIASES = {"dup": "duplicate", "duplicate": "duplicate", "loss": "loss", "drop": "loss"}


@dataclass(slots=True)
class FaultConfig:
    """Impairments for one direction. Every assignment is validated.

    Probabilities are in 0..1, times in seconds, ``rate`` in bytes per
    second (0: unlimited), ``limit`` in frames. ``seed`` is only read by
    :class:`FaultInjector` when it is given no seed of its own.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    rate: float = 0.0
    limit: int = 1000
    seed: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, _validate(name, value))

    @property
    def active(self) -> bool:
        """Whether any impairment is switched on."""
        return bool(
            self.loss
            or self.duplicate
            or self.reorder
            or self.corrupt
            or self.delay
            or self.jitter
            or self.rate
        )

    @property
    def schedules(self) -> bool:
        """Whether frames are held on a timeline (delay, jitter or rate)."""
        return bool(self.delay or self.jitter or self.rate)

    @classmethod
    def parse(cls, text: str) -> FaultConfig:
        """Parse the CLI form of a configuration.

        For example ``loss=1%,dup=1%,reorder=5%,corrupt=0.5%,delay=20ms~5ms,rate=10mbit,seed=7``.
        Probabilities take ``%`` or a fraction; times ``s``/``ms``/``us``/``ns``
        (bare numbers are seconds); ``delay=D~J`` sets the jitter too; rates
        take tc's units (``kbit``/``mbit``/``gbit`` are bits per second,
        ``kbps``/``mbps`` bytes per second; bare numbers are bytes per
        second). ValueError names the offending item.
        """
        config = cls()
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep:
                raise ValueError(f"{key or item}: expected key=value in {item!r}")
            field_name = _KEY_ALIASES.get(key, key)
            if field_name in ("reorder", "corrupt", "loss", "duplicate"):
                setattr(config, field_name, _parse_probability(field_name, value))
            elif field_name == "delay":
                delay, tilde, jitter = value.partition("~")
                config.delay = _parse_duration("delay", delay)
                if tilde:
                    config.jitter = _parse_duration("jitter", jitter)
            elif field_name == "jitter":
                config.jitter = _parse_duration("jitter", value)
            elif field_name == "rate":
                config.rate = _parse_rate(value)
            elif field_name in ("limit", "seed"):
                try:
                    number = int(value.strip())
                except ValueError:
                    raise ValueError(f"{field_name}: {value!r} is not an integer") from None
                setattr(config, field_name, number)
            else:
                known = "loss, dup, reorder, corrupt, delay, jitter, rate, limit, seed"
                raise ValueError(f"{key}: unknown impairment (known: {known})")
        return config

    def copy(self) -> FaultConfig:
        return FaultConfig(**{f.name: getattr(self, f.name) for f in fields(self)})


def _validate(name: str, value: Any) -> Any:
    if name in _PROBABILITIES:
        number = _real(name, value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"{name}: {value!r} is not a probability in 0..1")
        return number
    if name in _DURATIONS or name == "rate":
        number = _real(name, value)
        if number < 0 or math.isinf(number):
            unit = "bytes per second" if name == "rate" else "seconds"
            raise ValueError(f"{name}: {value!r} is not a finite, non-negative number of {unit}")
        return number
    if name == "limit":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"limit: {value!r} is not a positive number of frames")
        return value
    if name == "seed":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"seed: {value!r} is not an integer")
        return value
    raise AttributeError(f"FaultConfig has no field {name!r}")


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}: {value!r} is not a number")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name}: NaN is not allowed")
    return number


def _split_number(name: str, text: str) -> tuple[float, str]:
    match = _NUMBER.match(text)
    if match is None:
        raise ValueError(f"{name}: {text!r} is not a number with an optional unit")
    return float(match.group(1)), match.group(2).lower()


def _parse_probability(name: str, text: str) -> float:
    number, unit = _split_number(name, text)
    if unit == "%":
        return number / 100
    if unit:
        raise ValueError(f"{name}: {text!r} should be a percentage (1%) or a fraction (0.01)")
    return number


def _parse_duration(name: str, text: str) -> float:
    number, unit = _split_number(name, text)
    if unit not in _TIME_UNITS:
        raise ValueError(f"{name}: {text!r} has an unknown time unit (s, ms, us, ns)")
    return number * _TIME_UNITS[unit]


def _parse_rate(text: str) -> float:
    number, unit = _split_number("rate", text)
    unit = unit.replace("/s", "ps") if unit.endswith("b/s") else unit
    if unit not in _RATE_UNITS:
        raise ValueError(
            f"rate: {text!r} has an unknown unit (bit, kbit, mbit, gbit, bps, kbps, ...)"
        )
    return number * _RATE_UNITS[unit]


@dataclass(slots=True)
class FaultStats:
    """What the injector did to one direction's frames."""

    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    delayed: int = 0
    #: Frames dropped because ``limit`` frames were already waiting.
    overlimit: int = 0


class _Direction:
    """The impairment pipeline of one direction; ``emit`` receives released frames."""

    def __init__(
        self,
        name: str,
        config: FaultConfig,
        rng: random.Random,
        emit: Callable[[list[bytes]], None],
        vnet_hdr: Callable[[], bool],
    ) -> None:
        self.name = name
        self.config = config
        self.rng = rng
        self.stats = FaultStats()
        self.emit = emit
        self.vnet_hdr = vnet_hdr
        self.loop: asyncio.AbstractEventLoop | None = None
        #: (release time, frame), in release order; times never decrease.
        self.line: deque[tuple[float, bytes]] = deque()
        self.last_release = 0.0
        self.link_free = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.held: bytes | None = None
        self.held_timer: asyncio.TimerHandle | None = None

    def process(self, frames: Sequence[BytesLike]) -> None:
        loop = self.loop
        if loop is None:
            self.loop = loop = asyncio.get_running_loop()
        config = self.config
        if not config.active and not self.line and self.held is None:
            self.emit([f if type(f) is bytes else bytes(f) for f in frames])
            return
        now = loop.time()
        rng = self.rng
        stats = self.stats
        out: list[bytes] = []
        for frame in frames:
            if config.loss and rng.random() < config.loss:
                stats.dropped += 1
                continue
            copies = 1
            if config.duplicate and rng.random() < config.duplicate:
                copies = 2
                stats.duplicated += 1
            for _ in range(copies):
                data = frame if type(frame) is bytes else bytes(frame)
                if config.corrupt and rng.random() < config.corrupt:
                    data = self._corrupt(data)
                held = self.held
                if held is not None:
                    self.held = None
                    if self.held_timer is not None:
                        self.held_timer.cancel()
                        self.held_timer = None
                    stats.reordered += 1
                    self._schedule(data, now, out)
                    self._schedule(held, now, out)
                elif config.reorder and rng.random() < config.reorder:
                    self.held = data
                    self.held_timer = loop.call_at(now + REORDER_HOLD, self._release_held)
                else:
                    self._schedule(data, now, out)
        if out:
            self.emit(out)

    def _corrupt(self, frame: bytes) -> bytes:
        buf = bytearray(frame)
        start = 0
        if self.vnet_hdr():
            start = virtio.HEADER_LEN
            try:
                header, _ = virtio.parse(buf)
            except ParseError:
                header = None
            # A GSO super-frame too: left trusted, its flipped bit would reach
            # the application (the stack skips the check, and the kernel
            # computes each segment's checksum over the damage). Completed and
            # without offloads, a received one is checked like any frame and
            # dropped whole; a transmitted one is over the MTU, so the TAP
            # drops it ("oversize"): lost, never delivered damaged.
            if header is not None and header.checksum_trusted:
                if header.needs_csum:
                    eth = memoryview(buf)[start:]
                    virtio.complete_checksum(eth, header.csum_start, header.csum_offset)
                    eth.release()
                buf[:start] = virtio.NO_OFFLOAD
        if len(buf) <= start:
            return frame
        rng = self.rng
        buf[rng.randrange(start, len(buf))] ^= 1 << rng.randrange(8)
        self.stats.corrupted += 1
        return bytes(buf)

    def _schedule(self, frame: bytes, now: float, out: list[bytes]) -> None:
        """Send ``frame`` now (into ``out``) or put it on the timeline."""
        config = self.config
        line = self.line
        if not line and not config.schedules:
            out.append(frame)
            return
        release = now
        if config.rate:
            size = len(frame) - (virtio.HEADER_LEN if self.vnet_hdr() else 0)
            self.link_free = max(now, self.link_free) + size / config.rate
            release = self.link_free
        if config.delay or config.jitter:
            jitter = self.rng.uniform(-config.jitter, config.jitter) if config.jitter else 0.0
            release += max(0.0, config.delay + jitter)
        release = max(release, self.last_release)
        if not line and release <= now:
            out.append(frame)
            return
        if len(line) >= config.limit:
            self.stats.overlimit += 1
            return
        if release > now:
            self.stats.delayed += 1
        line.append((release, frame))
        self.last_release = release
        if self.timer is None:
            assert self.loop is not None
            self.timer = self.loop.call_at(line[0][0], self._release_due)

    def _release_due(self) -> None:
        self.timer = None
        loop = self.loop
        assert loop is not None
        now = loop.time()
        line = self.line
        batch: list[bytes] = []
        while line and line[0][0] <= now:
            batch.append(line.popleft()[1])
        if line:
            self.timer = loop.call_at(line[0][0], self._release_due)
        if batch:
            self.emit(batch)

    def _release_held(self) -> None:
        self.held_timer = None
        held, self.held = self.held, None
        if held is None or self.loop is None:
            return
        out: list[bytes] = []
        self._schedule(held, self.loop.time(), out)
        if out:
            self.emit(out)

    def cancel(self) -> int:
        """Stop the timers and forget waiting frames; return how many were discarded."""
        for handle in (self.timer, self.held_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self.held_timer = None
        discarded = len(self.line) + (self.held is not None)
        self.line.clear()
        self.held = None
        return discarded


class FaultInjector(DeviceWrapper):
    """Impair the frames ``inner`` receives (``rx``) and sends (``tx``).

    ``config`` applies to both directions unless ``rx``/``tx`` are given
    (it is then the same object for both, so changing it changes both); a
    direction without a config passes frames untouched. ``seed`` (else a
    config's ``seed``, else a random one, kept in :attr:`seed` so that a
    run can be replayed) seeds the per-direction random streams.

    Received frames are pulled from ``inner`` by a small task started at
    :meth:`open`, because a delayed frame must become readable while
    ``recv_batch`` is parked on the inner device. It stops reading when
    ``4 * max_batch`` frames are waiting for the consumer, so back-pressure
    reaches the inner device's own queue instead of memory here.
    """

    def __init__(
        self,
        inner: NetDevice,
        config: FaultConfig | None = None,
        *,
        rx: FaultConfig | None = None,
        tx: FaultConfig | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(inner)
        rx_config = rx if rx is not None else (config if config is not None else FaultConfig())
        tx_config = tx if tx is not None else (config if config is not None else FaultConfig())
        if seed is None:
            seeds = [c.seed for c in (config, rx, tx) if c is not None and c.seed is not None]
            seed = seeds[0] if seeds else random.SystemRandom().randrange(1 << 32)
        #: The seed actually in use: log it to replay a failing run.
        self.seed: int = seed
        self._rx = _Direction(
            "rx", rx_config, random.Random(f"{seed}/rx"), self._deliver_rx, lambda: self.vnet_hdr
        )
        self._tx = _Direction(
            "tx", tx_config, random.Random(f"{seed}/tx"), self._emit_tx, lambda: self.vnet_hdr
        )
        self._ready: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._rx_error: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------ configuration

    @property
    def rx(self) -> FaultConfig:
        return self._rx.config

    @rx.setter
    def rx(self, config: FaultConfig) -> None:
        self._rx.config = config

    @property
    def tx(self) -> FaultConfig:
        return self._tx.config

    @tx.setter
    def tx(self, config: FaultConfig) -> None:
        self._tx.config = config

    @property
    def rx_stats(self) -> FaultStats:
        return self._rx.stats

    @property
    def tx_stats(self) -> FaultStats:
        return self._tx.stats

    # ------------------------------------------------------------------ device

    async def open(self) -> None:
        await self.inner.open()
        self._start_pump()

    def _start_pump(self) -> None:
        if self._pump is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._rx.loop = self._tx.loop = loop
            self._pump = loop.create_task(self._pump_rx(), name=f"fault-rx-{self.name}")

    async def _pump_rx(self) -> None:
        limit = 4 * self.max_batch
        try:
            while True:
                while len(self._ready) >= limit:
                    self._space = asyncio.get_running_loop().create_future()
                    await self._space
                frames = await self.inner.recv_batch()
                self._rx.process(frames)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._rx_error = exc
            self._wake()

    def _deliver_rx(self, frames: list[bytes]) -> None:
        self._ready.extend(frames)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv_batch(self) -> list[bytes]:
        while True:
            ready = self._ready
            if ready:
                n = min(len(ready), self.max_batch)
                popleft = ready.popleft
                batch = [popleft() for _ in range(n)]
                space, self._space = self._space, None
                if space is not None and not space.done():
                    space.set_result(None)
                return batch
            if self._closed:
                raise DeviceClosed(f"{self.name!r} is closed")
            if self._rx_error is not None:
                raise self._rx_error
            self._start_pump()
            if self._waiter is not None:
                raise RuntimeError(f"recv_batch on {self.name!r} is already being awaited")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                if self._waiter is waiter:
                    self._waiter = None

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        if self._closed:
            raise DeviceClosed(f"{self.name!r} is closed")
        self._tx.process(frames)

    def _emit_tx(self, frames: list[bytes]) -> None:
        try:
            self.inner.send_batch(frames)
        except DeviceClosed:
            # A timer released frames after the inner device went away.
            self.inner.stats.drop("no_carrier", len(frames))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._rx.cancel()
            self._tx.cancel()
            pump, self._pump = self._pump, None
            if pump is not None:
                pump.cancel()
                # wait() rather than await: the pump's CancelledError is expected, ours is not.
                await asyncio.wait({pump})
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_exception(DeviceClosed(f"{self.name!r} was closed"))
        await self.inner.aclose()
