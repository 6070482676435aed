"""Shared pieces of the interop suite: a stack on a fresh TAP, kernel processes, payloads.

Everything here keeps the suite's two rules: packets stay inside the
namespace a test created (it is deleted when the test ends), and waiting is
on events (a process printing that it listens, a socket becoming readable,
a process exiting), bounded by generous timeouts, never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiostack.link.base import NetDevice
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.pcap import PcapWriter
from aiostack.settings import Settings
from aiostack.socket import Socket
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace, TapSpec, require_tap, tap_in_netns

#: Bound for one control-plane step (connect, accept, a small exchange).
TIMEOUT = 60.0
#: Where kernel-side helper scripts live.
HERE = Path(__file__).resolve().parent


@dataclass
class Peer:
    """A stack on one end of a TAP, the kernel of a fresh namespace on the other."""

    spec: TapSpec
    ns: NetNamespace
    stack: Stack
    #: The stack's device: the TAP, or a :class:`FaultInjector` around it.
    device: NetDevice

    @property
    def faults(self) -> FaultInjector:
        assert isinstance(self.device, FaultInjector), "this peer has no fault injector"
        return self.device


@contextlib.asynccontextmanager
async def stack_on_tap(
    *,
    offload: bool = True,
    mtu: int = 1500,
    faults: bool = False,
    fault_seed: int = 6,
    pcap: Path | None = None,
    settings: Settings | None = None,
    seed: int = 6,
) -> AsyncIterator[Peer]:
    """A stack at 198.18.0.2/24 on a TAP in a fresh namespace, optionally behind a FaultInjector.

    With ``faults`` the device is a :class:`FaultInjector` with separate,
    initially inactive, ``rx`` and ``tx`` configurations that a test switches
    on (``peer.faults.tx.delay = 0.02``) once its connections are set up or
    before, as it needs. With ``pcap`` a :class:`PcapWriter` records what
    the stack sends and receives, inside the fault injector (frames as the
    stack handed them over, before any delay). The namespace is deleted on
    the way out.
    """
    require_tap()
    async with tap_in_netns(mtu=mtu) as spec:
        device: NetDevice = spec.device(offload=offload)
        if faults:
            device = FaultInjector(device, rx=FaultConfig(), tx=FaultConfig(), seed=fault_seed)
        injector = device
        if pcap is not None:
            device = PcapWriter(device, pcap)
        address = f"{spec.stack_ip}/{spec.prefixlen}"
        async with Stack(
            device, address=address, mac=spec.stack_mac, settings=settings, seed=seed
        ) as stack:
            yield Peer(spec, spec.namespace, stack, injector)


# ---------------------------------------------------------------------- payloads


def payload(size: int, seed: int) -> bytes:
    """``size`` pseudo-random bytes: no period, so a misplaced segment cannot go unnoticed."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_to_eof(sock: Socket) -> bytes:
    out = bytearray()
    while chunk := await sock.recv(262144):
        out += chunk
    return bytes(out)


async def hash_to_eof(sock: Socket) -> tuple[int, str]:
    """Read to EOF keeping only a running hash: (bytes read, sha256)."""
    digest = hashlib.sha256()
    total = 0
    while chunk := await sock.recv(1 << 20):
        digest.update(chunk)
        total += len(chunk)
    return total, digest.hexdigest()


def kernel_read_to_eof(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(262144):
        out += chunk
    return bytes(out)


def kernel_send_then_shut(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def kernel_tcp(ns: NetNamespace, timeout: float = TIMEOUT) -> socket.socket:
    """A kernel TCP socket in ``ns`` whose blocking calls give up after ``timeout``."""
    sock = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    return sock


def kernel_listener(ns: NetNamespace, address: tuple[str, int]) -> socket.socket:
    sock = kernel_tcp(ns)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(64)
    return sock


# ---------------------------------------------------------------------- kernel processes


class KernelProcess:
    """A program running in the namespace, started and stopped by the test.

    ``ready`` is a regular expression the program prints (on stdout or
    stderr) once it listens; :meth:`start` returns when it has appeared, so
    nothing races the program's ``listen()``. The process is killed by its
    PID on the way out if it is still running.
    """

    def __init__(
        self,
        ns: NetNamespace,
        argv: Sequence[str],
        *,
        ready: str,
        stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None,
        ready_on: str = "stdout",
    ) -> None:
        self.ns = ns
        self.argv = ["ip", "netns", "exec", ns.name, *argv]
        self.ready = re.compile(ready.encode())
        self.stdin = stdin
        self.stdout = stdout
        self.ready_on = ready_on
        self.proc: asyncio.subprocess.Process | None = None
        self.output = bytearray()
        self._drain: asyncio.Task[None] | None = None

    async def start(self, timeout: float = TIMEOUT) -> None:
        capture_stdout = self.ready_on == "stdout"
        self.proc = proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=self.stdin if self.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else self.stdout,
            stderr=subprocess.PIPE if not capture_stdout else subprocess.DEVNULL,
        )
        stream = proc.stdout if capture_stdout else proc.stderr
        assert stream is not None
        async with asyncio.timeout(timeout):
            while not self.ready.search(self.output):
                line = await stream.readline()
                if not line:
                    await proc.wait()
                    raise RuntimeError(
                        f"{self.argv!r} exited ({proc.returncode}) before it was ready: "
                        f"{bytes(self.output)!r}"
                    )
                self.output += line
        self._drain = asyncio.ensure_future(self._keep_draining(stream))

    async def _keep_draining(self, stream: asyncio.StreamReader) -> None:
        # A full pipe would block the program; keep what it says for failures.
        while chunk := await stream.read(65536):
            self.output += chunk[-4096:]

    async def wait(self, timeout: float = TIMEOUT) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            if self._drain is not None:
                await self._drain
        return code

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.kill()  # by PID: only the process this object started
            await proc.wait()
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)

    async def __aenter__(self) -> KernelProcess:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def python_in_ns(script: str, *args: str) -> list[str]:
    """argv running one of this directory's helper scripts with this interpreter."""
    return [sys.executable, "-u", str(HERE / script), *args]


# ---------------------------------------------------------------------- nftables


async def nft(ns: NetNamespace, script: str) -> None:
    """Load an nftables script in the namespace (only its own ruleset is affected)."""
    result = await ns.run_async("nft", "-f", "-", input=script.encode(), timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()


async def nft_random_drop(ns: NetNamespace, percent: int, *, hooks: Sequence[str]) -> None:
    """Drop ``percent`` % of TCP packets at the given hooks (``input``/``output``) at random.

    This kernel has no ``tc netem``; nftables' ``numgen random`` is the
    kernel-side impairment.
    """
    chains = "\n".join(
        f"  chain {hook} {{ type filter hook {hook} priority 0; policy accept;\n"
        f"    meta l4proto tcp numgen random mod 100 < {percent} counter drop\n  }}"
        for hook in hooks
    )
    await nft(ns, f"table inet aiostack_loss {{\n{chains}\n}}\n")


async def nft_counter(ns: NetNamespace, table: str) -> int:
    """Packets counted by the ``counter`` statements of ``table`` (family inet)."""
    result = await ns.run_async("nft", "list", "table", "inet", table, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr.decode()
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", result.stdout.decode()))


async def nft_drop_all(ns: NetNamespace) -> None:
    """Make the stack vanish from the kernel's point of view: drop all TCP both ways."""
    await nft(
        ns,
        "table inet aiostack_cut {\n"
        "  chain input { type filter hook input priority 0; policy accept;\n"
        "    meta l4proto tcp drop\n  }\n"
        "  chain output { type filter hook output priority 0; policy accept;\n"
        "    meta l4proto tcp drop\n  }\n"
        "}\n",
    )


async def kernel_snmp(ns: NetNamespace) -> dict[str, int]:
    """The namespace's ``/proc/net/snmp`` and ``netstat`` counters: ``{"TcpInCsumErrors": n}``."""
    result = await ns.run_async("cat", "/proc/net/snmp", "/proc/net/netstat", timeout=TIMEOUT)
    lines = result.stdout.decode().splitlines()
    counters: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, keys = names.partition(":")
        for key, value in zip(keys.split(), values.partition(":")[2].split(), strict=False):
            counters[prefix + key] = int(value)
    return counters


# ---------------------------------------------------------------------- captures


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment of a capture, decoded by this file's own few lines (not aiostack's)."""

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    window: int
    options: bytes
    length: int
    #: Size of the Ethernet frame as captured.
    frame_len: int
    #: Capture timestamp, seconds.
    time: float = 0.0

    SYN = 0x02
    ACK = 0x10

    def mss_option(self) -> int | None:
        """The MSS option's value (RFC 9293 3.2), or None."""
        opts, i = self.options, 0
        while i < len(opts):
            kind = opts[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= len(opts) or opts[i + 1] < 2:
                break
            if kind == 2 and opts[i + 1] == 4:
                return int(struct.unpack_from("!H", opts, i + 2)[0])
            i += opts[i + 1]
        return None


def _ip(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


def read_tcp_capture(path: Path) -> list[Segment]:
    """The TCP/IPv4 segments of a little-endian microsecond or nanosecond pcap file."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data, 0)[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), f"{path}: not a little-endian pcap file"
    fraction = 1e-9 if magic == 0xA1B23C4D else 1e-6
    out: list[Segment] = []
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction_part, incl = struct.unpack_from("<III", data, offset)
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if len(frame) < 54 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6 or struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:
            continue  # not TCP, or a fragment
        total = struct.unpack_from("!H", ip, 2)[0]
        tcp = ip[ihl:total]
        sport, dport, seq, ack, off_flags, window = struct.unpack_from("!HHIIHH", tcp)
        doff = (off_flags >> 12) * 4
        out.append(
            Segment(
                src=(_ip(ip[12:16]), sport),
                dst=(_ip(ip[16:20]), dport),
                seq=seq,
                ack=ack,
                flags=off_flags & 0x1FF,
                window=window,
                options=bytes(tcp[20:doff]),
                length=len(tcp) - doff,
                frame_len=len(frame),
                time=seconds + fraction_part * fraction,
            )
        )
    return out


def max_in_flight(
    segments: list[Segment], sender: tuple[str, int], *, ack_delay: float = 0.0
) -> int:
    """The most bytes ``sender`` had sent and not yet seen acknowledged, from one capture.

    The capture is taken at one end. For data sent from there this is the
    sender's own flight size (``ack_delay`` 0). For data sent *to* it, an
    acknowledgement captured at time ``s`` reaches the sender no earlier
    than ``s + ack_delay`` (the delay a fault injector adds on the way), so
    data arriving at ``t`` was sent with at most the acknowledgements
    captured before ``t - ack_delay`` known: a lower bound of the flight.
    """
    top: int | None = None
    acked: int | None = None
    pending: deque[tuple[float, int]] = deque()
    best = 0
    for seg in segments:
        if seg.src == sender and seg.length:
            end = seg.seq + seg.length
            if top is None or _distance(top, end) > 0:
                top = end
            while pending and pending[0][0] + ack_delay <= seg.time:
                _, ack = pending.popleft()
                if acked is None or _distance(acked, ack) > 0:
                    acked = ack
            if acked is not None:
                best = max(best, _distance(acked, top))
        elif seg.dst == sender and seg.flags & Segment.ACK:
            pending.append((seg.time, seg.ack))
    return best


def _distance(a: int, b: int) -> int:
    """``b - a`` in sequence space (RFC 9293 modular arithmetic)."""
    d = (b - a) % (1 << 32)
    return d - (1 << 32) if d >= 1 << 31 else d
