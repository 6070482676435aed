"""``aiostack up``: a stack on a TAP, with built-in services, until Ctrl-C or SIGTERM.

::

    aiostack up --tap aio0 --netns lab --addr 198.18.0.2/24 --peer-addr 198.18.0.1/24 \\
        --serve http --serve echo --pcap run.pcap --fault loss=1%,seed=7

What it creates it removes on exit, and only that:

- **The TAP.** If a link named ``--tap`` already exists (in ``--netns``, or
  in the current namespace) the stack attaches to it and leaves its kernel
  side exactly as it is: ``--peer-addr`` and ``--mtu`` are then ignored
  (with a warning) and the link survives the exit. Otherwise a persistent
  TAP is created, its kernel side given ``--mtu`` and ``--peer-addr``, and
  deleted on exit.
- **The namespace.** ``--netns NS`` that does not exist is created (with its
  loopback up) and deleted on exit, which also removes anything left in it;
  an existing one is used and kept. Creating it is the useful choice: one
  command gives a throw-away lab, and a namespace that was there before is
  never touched.
- **The control socket** (:mod:`aiostack.cli.control`), removed on exit.

Start-up prints exactly one line on stdout once everything listens, for
scripts to wait on::

    aiostack up: ready tap=aio0 netns=lab mode=created addr=198.18.0.2/24 \\
        mac=02:..:.. peer=198.18.0.1/24 mtu=1500 services=http:80/tcp,echo:7/tcp+udp \\
        control=/run/aiostack/up-4242.sock pid=4242

Ports without a service are closed as on Linux: a SYN gets a RST and a
UDP datagram an ICMP port unreachable (the stack's own behaviour).

``--fault`` impairs both directions between the TAP and the stack
(:class:`~aiostack.link.fault.FaultInjector`); the ready line then ends
with ``fault_seed=N``, the seed in use (``seed=N`` in the spec replays a
run). ``--pcap`` records what the stack sends and receives, after the
faults.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiostack import services
from aiostack.cli.control import ControlServer, default_control_path
from aiostack.cli.run import LOOPS, run_main
from aiostack.link import netlink
from aiostack.link.base import NetDevice
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.pcap import PcapWriter
from aiostack.link.tap import TapDevice
from aiostack.stack.stack import Stack

_FAULT_KEYS = {
    "loss": "loss",
    "drop": "loss",
    "dup": "duplicate",
    "duplicate": "duplicate",
    "reorder": "reorder",
    "corrupt": "corrupt",
    "delay": "delay",
    "jitter": "jitter",
    "rate": "rate",
    "limit": "limit",
    "seed": "seed",
}


def parse_fault_spec(text: str) -> FaultConfig:
    """``loss=1%,dup=1%,reorder=5%,corrupt=0.5%,delay=20ms~5ms,seed=N`` -> FaultConfig.

    Stricter than :meth:`FaultConfig.parse` where a command line needs it:
    an empty spec, an empty item, or a field given twice (also through an
    alias, or ``jitter`` next to ``delay=D~J``) is an error. ValueError
    names the offending field.
    """
    if not text.strip():
        raise ValueError("fault: the spec is empty (e.g. loss=1%,delay=20ms~5ms)")
    seen: set[str] = set()
    for item in text.split(","):
        key, _sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            raise ValueError(f"fault: empty item in {text!r}")
        field_name = _FAULT_KEYS.get(key, key)
        names = [field_name]
        if field_name == "delay" and "~" in value:
            names.append("jitter")
        for name in names:
            if name in seen:
                raise ValueError(f"{name}: given more than once in {text!r}")
            seen.add(name)
    return FaultConfig.parse(text)


@dataclass(slots=True)
class UpOptions:
    """Everything ``aiostack up`` was asked for (the parsed command line)."""

    tap: str
    address: str
    netns: str | None = None
    peer_address: str | None = None
    gateway: str | None = None
    mtu: int | None = None
    pcap: Path | None = None
    fault: FaultConfig | None = None
    serve: list[tuple[str, int]] = field(default_factory=list)
    control: Path | None = None


def _warn(message: str) -> None:
    print(f"aiostack up: warning: {message}", file=sys.stderr, flush=True)


async def _to_thread_cleanup(fn: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):
        await asyncio.to_thread(fn)


async def run_up(options: UpOptions, *, ready: Callable[[str], None] | None = None) -> int:
    """Bring everything up, print the ready line, run until SIGINT/SIGTERM, clean up."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with contextlib.AsyncExitStack() as cleanup:
            netns = options.netns
            created_netns = False
            if netns is not None and not await asyncio.to_thread(netlink.netns_exists, netns):
                await asyncio.to_thread(netlink.create_netns, netns)
                created_netns = True
                cleanup.push_async_callback(_to_thread_cleanup, lambda: netlink.delete_netns(netns))
            exists = await asyncio.to_thread(netlink.link_exists, options.tap, netns=netns)
            tap: TapDevice
            if exists:
                for given, flag in ((options.peer_address, "--peer-addr"), (options.mtu, "--mtu")):
                    if given is not None:
                        _warn(f"{flag} ignored: TAP {options.tap!r} exists and is left as it is")
                tap = TapDevice.attach(options.tap, netns=netns)
            else:
                tap = TapDevice.create(
                    options.tap, netns=netns, mtu=options.mtu, kernel_address=options.peer_address
                )
            device: NetDevice = tap
            fault_seed: int | None = None
            if options.fault is not None:
                injector = FaultInjector(device, options.fault)
                fault_seed = injector.seed  # printed, so that a run can be replayed
                device = injector
            if options.pcap is not None:
                device = PcapWriter(device, options.pcap)
            stack = Stack(device, address=options.address, gateway=options.gateway)
            await cleanup.enter_async_context(stack)
            started: list[services.Service] = []
            for name, port in options.serve:
                service = await services.start(stack, name, port)
                cleanup.push_async_callback(service.aclose)
                started.append(service)
            control_path = options.control or default_control_path()
            described = [s.describe() for s in started]
            info: dict[str, object] = {
                "tap": options.tap,
                "netns": netns,
                "mode": "attached" if exists else "created",
                "created_netns": created_netns,
                "addr": options.address,
                "mac": stack.mac.hex(":"),
                "peer": options.peer_address if not exists else None,
                "mtu": tap.mtu,
                "services": described,
                "control": str(control_path),
                "pid": os.getpid(),
                "fault_seed": fault_seed,
            }
            control = ControlServer(stack, control_path, info)
            await control.start()
            cleanup.push_async_callback(control.aclose)
            line = (
                f"aiostack up: ready tap={options.tap} netns={netns or '-'} mode={info['mode']} "
                f"addr={options.address} mac={info['mac']} peer={info['peer'] or '-'} "
                f"mtu={tap.mtu} services={','.join(described) or '-'} "
                f"control={control_path} pid={os.getpid()}"
            )
            if fault_seed is not None:
                line += f" fault_seed={fault_seed}"
            if ready is not None:
                ready(line)
            else:
                print(line, flush=True)
            lost = await _first_of(stop, stack.device_lost)
            if lost:
                print(
                    f"aiostack up: TAP {options.tap!r} went away (deleted outside aiostack); "
                    "stopping",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return 0


async def _first_of(stop: asyncio.Event, lost: asyncio.Event) -> bool:
    """Wait for a stop signal or for the device to go away; True if it went away."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()
    return lost.is_set() and not stop.is_set()


def _options(args: argparse.Namespace) -> UpOptions:
    netlink.validate_ifname(args.tap)
    if args.netns is not None:
        netlink.validate_netns_name(args.netns)
    netlink.parse_interface(args.addr)
    if args.peer_addr is not None:
        netlink.parse_interface(args.peer_addr)
    if args.gateway is not None:
        netlink.parse_interface(args.gateway + "/32")
    if args.mtu is not None and not 68 <= args.mtu <= 65535:
        raise ValueError(f"mtu: {args.mtu} is outside 68..65535")
    serve = [services.parse_service(text) for text in args.serve]
    ports = [(port, proto) for name, port in serve for proto in ("tcp", "udp")]
    if len(set(ports)) != len(ports):
        raise ValueError("serve: two services on the same port")
    return UpOptions(
        tap=args.tap,
        address=args.addr,
        netns=args.netns,
        peer_address=args.peer_addr,
        gateway=args.gateway,
        mtu=args.mtu,
        pcap=Path(args.pcap) if args.pcap else None,
        fault=parse_fault_spec(args.fault) if args.fault is not None else None,
        serve=serve,
        control=Path(args.control) if args.control else None,
    )


def cmd_up(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
    except ValueError as exc:
        print(f"aiostack up: {exc}", file=sys.stderr)
        return 2
    try:
        return run_main(run_up(options), args.loop)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename:
            reason = f"{exc.filename}: {reason}"
        if exc.errno in (errno.EPERM, errno.EACCES):
            reason += " (run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
        print(f"aiostack up: {reason}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack up``."""
    up = sub.add_parser(
        "up",
        help="run a stack on a TAP with built-in services until Ctrl-C",
        description="Bring a stack up on a TAP device (created, or an existing one attached) "
        "and run until SIGINT or SIGTERM; then remove what was created.",
    )
    up.add_argument("--tap", required=True, metavar="NAME", help="TAP device name")
    up.add_argument(
        "--netns",
        metavar="NS",
        help="network namespace of the TAP (created, and removed on exit, if missing)",
    )
    up.add_argument("--addr", required=True, metavar="IP/PREFIX", help="the stack's address")
    up.add_argument(
        "--peer-addr",
        metavar="IP/PREFIX",
        help="address for the kernel side of a TAP this command creates",
    )
    up.add_argument("--gateway", metavar="IP", help="the stack's default gateway")
    up.add_argument("--mtu", type=int, metavar="N", help="MTU of a TAP this command creates")
    up.add_argument("--pcap", metavar="FILE", help="record every frame the stack sends/receives")
    up.add_argument("--loop", choices=LOOPS, default="uvloop")
    up.add_argument(
        "--fault",
        metavar="SPEC",
        help="impair both directions, e.g. loss=1%%,dup=1%%,reorder=5%%,corrupt=0.5%%,"
        "delay=20ms~5ms,seed=7",
    )
    up.add_argument(
        "--serve",
        action="append",
        default=[],
        metavar="SERVICE[:PORT]",
        help=f"start a built-in service ({', '.join(services.SERVICES)}); repeatable",
    )
    up.add_argument(
        "--control",
        metavar="PATH",
        help="control socket path (default: up-PID.sock under /run/aiostack, "
        "$XDG_RUNTIME_DIR/aiostack or /tmp/aiostack-UID)",
    )
    up.set_defaults(handler=cmd_up)
