"""Virtual networks in one process: named hosts, wires, switches, impairments, partitions.

An integration test wants a small network it can break on purpose and
replay exactly. :class:`VirtualNetwork` builds one out of aiostack's own
parts: every host is a :class:`~aiostack.stack.stack.Stack`; hosts are
joined by point-to-point wires (:class:`~aiostack.link.memory.MemoryWire`)
or by learning switches (:class:`~aiostack.link.memory.VirtualSwitch`);
every link carries a :class:`~aiostack.link.fault.FaultInjector` per
direction, so loss, duplication, reordering, corruption, delay with jitter
and a rate limit can be set, and changed, while the test runs::

    net = VirtualNetwork(seed=7)
    net.add_switch("lan")
    for name in ("a", "b", "c"):
        net.connect(name, "lan")                 # addresses 198.18.0.1, .2, .3
    async with net:
        await net.host("a").ping("b")
        net.link("a", "lan").impair(loss=0.05, delay=0.02, jitter=0.005)
        net.partition(["a"], ["b", "c"])
        ...
        net.heal()
        net.link("b", "lan").down()              # and .up(); .mtu = 1280 shrinks the path

Topology
    A host has exactly one interface, because a :class:`Stack` drives
    exactly one device: it is on one wire (to one other host) or on one
    switch port. Hosts that must all reach each other go on a switch.
    Topology may grow while the network runs (the pytest fixture hands out
    a started network): new hosts start at the next ``await net.start()``,
    which starts whatever has not started yet.

Where the impairments and the capture sit
    Per host, from the stack down::

        Stack -> FaultInjector(tx: host -> peer)      outgoing impairments
              -> PcapWriter                           optional, one per link
              -> gate                                 link down, partitions, path MTU
              -> FaultInjector(rx: switch -> host)    switch links only
              -> wire end / switch port

    On a wire each direction is impaired by its sender, so the capture at
    the first host's end shows every frame as it really crossed the wire,
    both ways, after the impairments (a lost frame is absent, a delayed one
    carries its late timestamp). On a switch link the capture is the host's
    view of its cable, like ``tcpdump -i eth0`` on that host. A partition
    drops, at each receiving host, frames whose source MAC is on the other
    side, so it works alike on wires and switches and the switch keeps
    learning normally; a link that is down drops everything both ways.

Determinism
    One ``seed`` derives every other seed: each stack's (MAC, ephemeral
    ports, ICMP identifiers, IP IDs) and each injector's, by hashing the seed
    with the host or link name, so adding a link does not change the faults
    of another. On a virtual-time loop
    (:mod:`aiostack.testing.virtual_time`) the captures are stamped with the
    loop's clock, so the same scenario and seed give the same pcap bytes.
    On a real loop they carry wall-clock time as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import random
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from aiostack.link.base import DeviceWrapper, NetDevice
from aiostack.link.fault import FaultConfig, FaultInjector, FaultStats
from aiostack.link.memory import MemoryWire, QueuePort, VirtualSwitch
from aiostack.link.pcap import PcapWriter
from aiostack.settings import Settings
from aiostack.stack.stack import Stack, random_mac
from aiostack.testing.virtual_time import VirtualTimeLoop
from aiostack.wire.types import BytesLike

__all__ = [
    "DEFAULT_SUBNET",
    "Host",
    "Impairment",
    "Link",
    "VirtualNetwork",
]

#: RFC 2544 benchmarking range, never routed: the default addresses of hosts.
DEFAULT_SUBNET = "198.18.0.0/24"

#: What an impairment may be given as: a config, a mapping of its fields, or
#: tc-netem-like text (``"loss=1%,delay=20ms~5ms"``, see ``FaultConfig.parse``).
Impairment = FaultConfig | Mapping[str, Any] | str

_IMPAIRMENT_FIELDS = frozenset(f.name for f in fields(FaultConfig)) - {"seed"}
_ALIASES = {"dup": "duplicate", "drop": "loss", "bandwidth": "rate"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_Frame = TypeVar("_Frame", bound=BytesLike)
#: Ethernet header without a VLAN tag: what a frame adds to the IP packet.
_ETH_HLEN = 14


def derive_seed(seed: int, *parts: str) -> int:
    """A 64-bit seed for one component, from the network's seed and the component's name.

    Hashing (rather than drawing from one shared generator in creation
    order) keeps each component's randomness independent of what else the
    test builds, so adding a host does not change another link's faults.
    """
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def as_fault_config(value: Impairment | None) -> FaultConfig:
    """A fresh :class:`FaultConfig` from any accepted form (None: no impairment).

    Mapping keys are ``FaultConfig`` fields, plus the aliases ``dup``,
    ``drop`` and ``bandwidth`` (= ``rate``, bytes per second). A config is
    copied, so one given to several links does not tie them together.
    """
    if value is None:
        return FaultConfig()
    if isinstance(value, FaultConfig):
        config = value.copy()
        config.seed = None
        return config
    if isinstance(value, str):
        config = FaultConfig.parse(value)
        config.seed = None
        return config
    config = FaultConfig()
    update_fault_config(config, value)
    return config


def update_fault_config(config: FaultConfig, changes: Mapping[str, Any]) -> None:
    """Set the given fields of ``config`` in place (validated); unknown names raise."""
    for key, item in changes.items():
        name = _ALIASES.get(key, key)
        if name not in _IMPAIRMENT_FIELDS:
            known = ", ".join(sorted(_IMPAIRMENT_FIELDS))
            raise ValueError(f"{key}: unknown impairment (known: {known})")
        setattr(config, name, item)


class _Gate(DeviceWrapper):
    """Drops everything while the link is down, and frames from partitioned-off MACs.

    Filtering received frames by source MAC at every host is enough for a
    partition: ARP broadcasts and unicast alike come from a MAC on one side,
    and a switch in between keeps forwarding and learning as usual.
    """

    def __init__(self, inner: NetDevice) -> None:
        super().__init__(inner)
        self.up = True
        self.blocked: set[bytes] = set()
        #: Largest frame that passes, both ways (None: no limit here); see ``Link.mtu``.
        self.max_frame: int | None = None
        #: Frames dropped here, by reason (``link_down``, ``partitioned``, ``mtu``).
        self.dropped: dict[str, int] = {}

    def _drop(self, reason: str, count: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    async def recv_batch(self) -> list[bytes]:
        while True:
            frames = await self.inner.recv_batch()
            if not self.up:
                self._drop("link_down", len(frames))
                continue
            blocked = self.blocked
            if blocked:
                kept = [frame for frame in frames if frame[6:12] not in blocked]
                if len(kept) != len(frames):
                    self._drop("partitioned", len(frames) - len(kept))
                frames = kept
            if self.max_frame is not None:
                frames = self._fit(frames)
            if frames:
                return frames

    def send_batch(self, frames: Sequence[BytesLike]) -> None:
        if not self.up:
            self._drop("link_down", len(frames))
            return
        if self.max_frame is not None:
            frames = self._fit(frames)
            if not frames:
                return
        self.inner.send_batch(frames)

    def _fit(self, frames: Sequence[_Frame]) -> list[_Frame]:
        limit = self.max_frame
        kept = [frame for frame in frames if limit is None or len(frame) <= limit]
        if len(kept) != len(frames):
            self._drop("mtu", len(frames) - len(kept))
        return kept


@dataclass(slots=True)
class _End:
    """One host's attachment to a link: its device chain from the stack down."""

    host: Host
    outer: FaultInjector
    gate: _Gate
    pcap: PcapWriter | None
    inner: FaultInjector | None


class Link:
    """A wire between two hosts, or the cable from a host to a switch port.

    Impairments are per direction, named by the sending endpoint (a host or
    a switch): ``link.config("a")`` is what ``a`` sends over this link.
    Changes take effect on the next frame; frames already delayed keep
    their schedule.
    """

    def __init__(self, kind: Literal["wire", "switch"], endpoints: tuple[str, str]) -> None:
        self.kind = kind
        self.endpoints = endpoints
        self.name = f"{endpoints[0]}--{endpoints[1]}"
        #: Impairment per sending endpoint (shared, by reference, with the injectors).
        self.configs: dict[str, FaultConfig] = {}
        #: Where this link's capture goes, if it has one.
        self.pcap_path: Path | None = None
        self._ends: list[_End] = []

    def __repr__(self) -> str:
        state = "up" if self.is_up else "down"
        return f"<Link {self.name} {self.kind} {state}>"

    def config(self, sender: str) -> FaultConfig:
        """The live impairment of what ``sender`` sends over this link."""
        try:
            return self.configs[sender]
        except KeyError:
            raise KeyError(
                f"{sender!r} is not an endpoint of link {self.name} ({', '.join(self.endpoints)})"
            ) from None

    def impair(
        self,
        spec: Impairment | None = None,
        *,
        direction: str | None = None,
        loss: float | None = None,
        duplicate: float | None = None,
        reorder: float | None = None,
        corrupt: float | None = None,
        delay: float | None = None,
        jitter: float | None = None,
        rate: float | None = None,
        limit: int | None = None,
    ) -> Self:
        """Change impairments in place; fields not mentioned keep their values.

        ``direction`` is the sending endpoint (only its direction changes);
        by default both directions change. ``spec`` (a config, a mapping or
        ``"loss=5%,delay=10ms"``) is applied first, then the keywords.
        Probabilities are fractions (0.05 is 5 %), times seconds, ``rate``
        bytes per second (0: unlimited). Returns the link, for chaining.
        """
        changes: dict[str, Any] = {}
        if isinstance(spec, Mapping):
            changes.update(spec)
        elif spec is not None:
            # A config or text: the fields it sets (those not at their default).
            given, default = as_fault_config(spec), FaultConfig()
            changes.update(
                (name, getattr(given, name))
                for name in _IMPAIRMENT_FIELDS
                if getattr(given, name) != getattr(default, name)
            )
        keywords = {
            "loss": loss,
            "duplicate": duplicate,
            "reorder": reorder,
            "corrupt": corrupt,
            "delay": delay,
            "jitter": jitter,
            "rate": rate,
            "limit": limit,
        }
        changes.update((k, v) for k, v in keywords.items() if v is not None)
        targets = self.configs.values() if direction is None else [self.config(direction)]
        for config in targets:
            probe = config.copy()
            update_fault_config(probe, changes)  # validate everything before changing anything
        for config in targets:
            update_fault_config(config, changes)
        return self

    def clear(self, direction: str | None = None) -> Self:
        """Remove every impairment (of one direction, or both)."""
        targets = self.configs.values() if direction is None else [self.config(direction)]
        default = FaultConfig()
        for config in targets:
            update_fault_config(config, {n: getattr(default, n) for n in _IMPAIRMENT_FIELDS})
        return self

    def down(self) -> None:
        """Cut the link: every frame, both ways, is dropped until :meth:`up`."""
        for end in self._ends:
            end.gate.up = False

    def up(self) -> None:
        """Restore the link after :meth:`down` (partitions stay as they are)."""
        for end in self._ends:
            end.gate.up = True

    @property
    def is_up(self) -> bool:
        return all(end.gate.up for end in self._ends)

    @property
    def mtu(self) -> int | None:
        """The path MTU imposed on this link during the test (None: only the devices' MTU).

        Setting it models a path that shrinks under the hosts (a tunnel
        appears, a router is replaced): IP packets longer than ``mtu`` are
        dropped silently in both directions, counted as ``mtu`` in
        :meth:`dropped`, like a router that sends no ICMP "fragmentation
        needed" (a PMTU black hole). The hosts' interface MTU, and so the
        MSS they announce, stays what ``connect(mtu=...)`` made it.
        """
        limits = {end.gate.max_frame for end in self._ends}
        limit = limits.pop() if len(limits) == 1 else None
        return None if limit is None else limit - _ETH_HLEN

    @mtu.setter
    def mtu(self, value: int | None) -> None:
        if value is not None and not (68 <= value <= 65535):
            raise ValueError(f"mtu: {value} is outside 68..65535 (RFC 791's minimum is 68)")
        for end in self._ends:
            end.gate.max_frame = None if value is None else value + _ETH_HLEN

    def stats(self) -> dict[str, FaultStats]:
        """What the injectors did, per sending endpoint."""
        out: dict[str, FaultStats] = {}
        for end in self._ends:
            out[end.host.name] = end.outer.tx_stats
            if end.inner is not None:
                peer = (
                    self.endpoints[1] if end.host.name == self.endpoints[0] else self.endpoints[0]
                )
                out[peer] = end.inner.rx_stats
        return out

    def dropped(self) -> dict[str, int]:
        """Frames dropped by link down and partitions on this link, by reason."""
        total: dict[str, int] = {}
        for end in self._ends:
            for reason, count in end.gate.dropped.items():
                total[reason] = total.get(reason, 0) + count
        return total


@dataclass(eq=False)
class Host:
    """A named host of a :class:`VirtualNetwork`: one stack with one interface."""

    name: str
    #: IPv4 address, without the prefix.
    ip: str
    prefixlen: int
    mac: bytes
    seed: int
    network: VirtualNetwork = field(repr=False)
    link: Link | None = field(default=None, init=False, repr=False)
    _stack: Stack | None = field(default=None, init=False, repr=False)
    _started: bool = field(default=False, init=False, repr=False)

    @property
    def address(self) -> str:
        """``"IP/PREFIX"``, as :class:`Stack` takes it."""
        return f"{self.ip}/{self.prefixlen}"

    @property
    def stack(self) -> Stack:
        """The host's stack (it exists once the host is connected; usable once started)."""
        if self._stack is None:
            raise RuntimeError(
                f"host {self.name!r} has no stack yet: connect it (net.connect) first"
            )
        return self._stack

    @property
    def started(self) -> bool:
        return self._started

    async def ping(
        self, target: str, *, payload: bytes = bytes(range(56)), timeout: float | None = 5.0
    ) -> float:
        """Ping a host of the network (by name) or any address; return the RTT in seconds.

        Raises TimeoutError without a reply, or the OSError the stack
        gives (EHOSTUNREACH when ARP fails, ...). The RTT is on the loop's
        clock, so on a virtual-time loop it is exactly the delays the links
        impose (see :mod:`aiostack.stack.ping`).
        """
        if not self._started:
            raise RuntimeError(f"host {self.name!r} is not started: await net.start() first")
        return await self.stack.ping(self.network.resolve(target), payload, timeout)


class VirtualNetwork:
    """Hosts, wires and switches in one event loop; see the module docstring.

    ``seed``: derives every stack's and injector's seed. ``subnet``: where
    addresses are assigned from (first free host address upwards).
    ``mtu``: default MTU of wires and switches. ``impairment``: the initial
    impairment of every link, both directions (each link gets its own
    copy). ``pcap``: capture every link (else per link, ``connect(...,
    pcap=True)``), into ``pcap_dir`` (default: a new temporary directory,
    left in place for the user). ``settings``: a factory for each stack's
    :class:`Settings` (default: Linux's defaults). Hosts are privileged
    (may bind ports below 1024, like root), since a test server on port 80
    should not need the test to run as root.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        subnet: str = DEFAULT_SUBNET,
        mtu: int = 1500,
        impairment: Impairment | None = None,
        pcap: bool = False,
        pcap_dir: str | os.PathLike[str] | None = None,
        settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.seed = seed
        self.subnet = ipaddress.IPv4Network(subnet)
        self.mtu = mtu
        self.impairment = as_fault_config(impairment)
        self.pcap = pcap
        self._pcap_dir = Path(pcap_dir) if pcap_dir is not None else None
        self._settings = settings if settings is not None else Settings
        self._hosts: dict[str, Host] = {}
        self._switches: dict[str, VirtualSwitch] = {}
        self._links: dict[frozenset[str], Link] = {}
        self._wires: list[MemoryWire] = []
        self._state: Literal["new", "running", "closed"] = "new"
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"<VirtualNetwork seed={self.seed} {self._state} hosts={list(self._hosts)} "
            f"switches={list(self._switches)} links={len(self._links)}>"
        )

    # -- topology -----------------------------------------------------------

    def add_host(self, name: str, *, address: str | None = None, mac: bytes | None = None) -> Host:
        """Add a host; ``address`` is ``"IP"`` or ``"IP/PREFIX"`` (default: next free in subnet)."""
        self._check_open()
        self._check_new_name(name)
        if address is None:
            ip, prefixlen = self._next_free_address(), self.subnet.prefixlen
        else:
            interface = ipaddress.IPv4Interface(
                address if "/" in address else f"{address}/{self.subnet.prefixlen}"
            )
            ip, prefixlen = str(interface.ip), interface.network.prefixlen
            if ip in {h.ip for h in self._hosts.values()}:
                raise ValueError(f"address: {ip} is already used by another host")
        if mac is None:
            mac = random_mac(random.Random(derive_seed(self.seed, "mac", name)))
        host = Host(
            name=name,
            ip=ip,
            prefixlen=prefixlen,
            mac=mac,
            seed=derive_seed(self.seed, "stack", name),
            network=self,
        )
        self._hosts[name] = host
        return host

    def add_switch(self, name: str, *, mtu: int | None = None) -> VirtualSwitch:
        """Add a learning switch that hosts can then be connected to."""
        self._check_open()
        self._check_new_name(name)
        switch = VirtualSwitch(mtu=mtu if mtu is not None else self.mtu)
        self._switches[name] = switch
        return switch

    def connect(
        self,
        a: str,
        b: str,
        *,
        impairment: Impairment | None = None,
        mtu: int | None = None,
        pcap: bool | None = None,
    ) -> Link:
        """Join host ``a`` to host ``b`` with a wire, or to switch ``b`` by a cable.

        Unknown host names are added with the next free address. Each host
        takes one link (see "Topology"). ``impairment`` overrides the
        network's default for this link; ``pcap`` the network's ``pcap``.
        """
        self._check_open()
        if a in self._switches:
            a, b = b, a
        if a in self._switches:
            raise ValueError(f"connect: {a!r} and {b!r} are both switches")
        if a == b:
            raise ValueError(f"connect: cannot connect {a!r} to itself")
        if b in self._switches and mtu is not None:
            raise ValueError("connect: a switch link takes the switch's MTU")
        for name in (a, b):
            existing = self._hosts.get(name)
            if existing is not None:
                self._check_free(existing)  # before adding anything
        host_a = self._hosts.get(a) or self.add_host(a)
        config = as_fault_config(impairment) if impairment is not None else self.impairment
        capture = self.pcap if pcap is None else pcap
        if b in self._switches:
            switch = self._switches[b]
            link = Link("switch", (a, b))
            link.configs = {a: config.copy(), b: config.copy()}
            port = switch.port(f"{b}.{a}")
            self._attach(link, host_a, port, rx=link.configs[b], capture=capture)
        else:
            host_b = self._hosts.get(b) or self.add_host(b)
            wire = MemoryWire(
                mtu=mtu if mtu is not None else self.mtu, names=(f"{a}-{b}", f"{b}-{a}")
            )
            self._wires.append(wire)
            link = Link("wire", (a, b))
            link.configs = {a: config.copy(), b: config.copy()}
            self._attach(link, host_a, wire.a, rx=None, capture=capture)
            self._attach(link, host_b, wire.b, rx=None, capture=False)
        self._links[frozenset((a, b))] = link
        return link

    def _attach(
        self,
        link: Link,
        host: Host,
        port: QueuePort,
        *,
        rx: FaultConfig | None,
        capture: bool,
    ) -> None:
        name = host.name
        device: NetDevice = port
        inner = None
        if rx is not None:
            inner = FaultInjector(
                port, rx=rx, tx=FaultConfig(), seed=derive_seed(self.seed, "link", link.name, "rx")
            )
            device = inner
        gate = _Gate(device)
        device = gate
        writer = None
        if capture:
            path = self.pcap_directory / f"{_SAFE_NAME.sub('_', link.name)}.pcap"
            writer = PcapWriter(device, path)
            link.pcap_path = path
            device = writer
        outer = FaultInjector(
            device,
            tx=link.configs[name],
            rx=FaultConfig(),
            seed=derive_seed(self.seed, "link", link.name, name),
        )
        link._ends.append(_End(host=host, outer=outer, gate=gate, pcap=writer, inner=inner))
        host.link = link
        host._stack = Stack(
            outer,
            address=host.address,
            mac=host.mac,
            seed=host.seed,
            settings=self._settings(),
            privileged=True,
        )

    def _check_open(self) -> None:
        if self._state == "closed":
            raise RuntimeError("virtual network: it is closed")

    def _check_new_name(self, name: str) -> None:
        if not name or name in self._hosts or name in self._switches:
            raise ValueError(f"name: {name!r} is empty or already a host or switch")

    @staticmethod
    def _check_free(host: Host) -> None:
        if host.link is not None:
            raise ValueError(
                f"connect: host {host.name!r} is already on {host.link.name}; a host has one "
                "interface (put hosts that must all meet on a switch)"
            )

    def _next_free_address(self) -> str:
        used = {h.ip for h in self._hosts.values()}
        for candidate in self.subnet.hosts():
            if str(candidate) not in used:
                return str(candidate)
        raise ValueError(f"subnet {self.subnet} has no free address left")

    # -- lookup -------------------------------------------------------------

    def host(self, name: str) -> Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} (hosts: {', '.join(self._hosts)})") from None

    @property
    def hosts(self) -> dict[str, Host]:
        return dict(self._hosts)

    def switch(self, name: str) -> VirtualSwitch:
        return self._switches[name]

    def link(self, a: str, b: str | None = None) -> Link:
        """The link between ``a`` and ``b`` (a host or switch); without ``b``, host ``a``'s link."""
        if b is None:
            link = self.host(a).link
            if link is None:
                raise KeyError(f"host {a!r} is not connected")
            return link
        try:
            return self._links[frozenset((a, b))]
        except KeyError:
            raise KeyError(f"no link between {a!r} and {b!r}") from None

    @property
    def links(self) -> list[Link]:
        return list(self._links.values())

    @property
    def pcap_directory(self) -> Path:
        """Where captures go (created on first use)."""
        if self._pcap_dir is None:
            self._pcap_dir = Path(tempfile.mkdtemp(prefix="aiostack-pcap-"))
        else:
            self._pcap_dir.mkdir(parents=True, exist_ok=True)
        return self._pcap_dir

    @property
    def pcap_paths(self) -> dict[str, Path]:
        """Capture file per link name, for the links that have one."""
        return {link.name: link.pcap_path for link in self._links.values() if link.pcap_path}

    def resolve(self, target: str) -> str:
        """A host name's IP address; anything else is returned unchanged (an address)."""
        host = self._hosts.get(target)
        return host.ip if host is not None else target

    # -- impairments, partitions -------------------------------------------

    def impair(self, spec: Impairment | None = None, **changes: Any) -> None:
        """Apply the same change to every link, both directions (see :meth:`Link.impair`)."""
        for link in self._links.values():
            link.impair(spec, **changes)

    def partition(self, side_a: str | Iterable[str], side_b: str | Iterable[str]) -> None:
        """Stop all traffic between the hosts of ``side_a`` and those of ``side_b``.

        Adds to any partition already in place; :meth:`heal` removes them all.
        """
        group_a = [self.host(n) for n in ([side_a] if isinstance(side_a, str) else side_a)]
        group_b = [self.host(n) for n in ([side_b] if isinstance(side_b, str) else side_b)]
        overlap = {h.name for h in group_a} & {h.name for h in group_b}
        if overlap:
            raise ValueError(f"partition: {sorted(overlap)} on both sides")
        for mine, theirs in ((group_a, group_b), (group_b, group_a)):
            macs = {h.mac for h in theirs}
            for host in mine:
                for gate in self._gates(host):
                    gate.blocked |= macs

    def heal(self) -> None:
        """Remove every partition (links that are down stay down)."""
        for host in self._hosts.values():
            for gate in self._gates(host):
                gate.blocked.clear()

    def link_down(self, a: str, b: str | None = None) -> None:
        self.link(a, b).down()

    def link_up(self, a: str, b: str | None = None) -> None:
        self.link(a, b).up()

    def set_mtu(self, a: str, b: str | None, mtu: int | None) -> None:
        """Set the path MTU of one link during the test (see :attr:`Link.mtu`)."""
        self.link(a, b).mtu = mtu

    @staticmethod
    def _gates(host: Host) -> list[_Gate]:
        if host.link is None:
            return []
        return [end.gate for end in host.link._ends if end.host is host]

    # -- life cycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    async def start(self) -> None:
        """Start every host not started yet (callable again after adding hosts)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("virtual network: started on another event loop")
        self._loop = loop
        for host in self._hosts.values():
            if host.link is None:
                raise RuntimeError(
                    f"virtual network: host {host.name!r} is not connected to anything"
                )
        self._state = "running"
        for link in self._links.values():
            for end in link._ends:
                if (
                    end.pcap is not None
                    and end.pcap.clock is None
                    and isinstance(loop, VirtualTimeLoop)
                ):
                    # Virtual timestamps: the same run gives the same bytes.
                    end.pcap.clock = loop.time
        for host in self._hosts.values():
            if not host._started:
                await host.stack.start()
                host._started = True

    async def aclose(self) -> None:
        """Close every stack (and so every device and capture) and switch. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        errors: list[BaseException] = []
        for host in self._hosts.values():
            if host._stack is not None:
                try:
                    await host._stack.aclose()
                except Exception as exc:  # close the rest, then report
                    errors.append(exc)
        for wire in self._wires:
            wire.a.close()
            wire.b.close()
        for switch in self._switches.values():
            switch.close()
        if errors:
            raise errors[0]

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
