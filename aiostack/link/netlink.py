"""Create, configure, move and delete TAP devices and network namespaces.

Everything here is blocking and meant for set-up and tear-down, not the
packet path. Two traps shape the design:

- pyroute2's asyncio API does not work under uvloop (uvloop cannot wrap an
  ``AF_NETLINK`` socket), and its synchronous API refuses to run in a thread
  whose event loop is running. So every pyroute2 call here runs on a fresh
  worker thread with its own private ``SelectorEventLoop``, whatever the
  caller's loop is. The functions are therefore safe to call from anywhere,
  but they block for a few milliseconds: from a coroutine, wrap them in
  ``asyncio.to_thread``.
- ``IPRoute(netns=...)`` / ``NetNS`` create a misspelt namespace unless
  ``flags=0`` is passed, and reach it through a forked child. We never use
  them. Instead the worker thread joins the target namespace itself with
  ``setns(2)``, which changes only that thread, and the thread ends when the
  job is done, so no pooled thread is ever left in a foreign namespace.
  Everything the thread opens (the netlink socket, ``/dev/net/tun``, a UDP
  socket, ``/proc/sys/net`` files) belongs to that namespace for good, even
  when used later from another thread: this is how :mod:`aiostack.link.tap`
  opens a TAP that lives inside a namespace while the process stays outside.

A TAP is created with the ``TUNSETIFF`` ioctl issued from inside the target
namespace (``IFF_TUN_EXCL`` makes "name already in use" atomic, which a
netlink lookup followed by a create is not) and marked persistent so that it
outlives the creating file descriptor and can be attached later by name;
its address, MAC, MTU and state are then set over netlink with pyroute2.
Creating it in place rather than in the root namespace and moving it means
the name never has to be free in the root namespace and the device never
appears there. A persistent TAP is destroyed with its namespace.

Errors are ``OSError`` with the errno the kernel would give and a message
that names the object: ``EPERM`` without ``CAP_NET_ADMIN`` (or
``CAP_SYS_ADMIN`` for namespaces), ``ENOENT`` for a missing ``/dev/net/tun``
or namespace, ``EEXIST`` for a name in use, ``ENODEV`` for a missing link,
and ``ValueError`` naming the argument for a malformed name or address.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyroute2
import pyroute2.netns
from pyroute2.netlink.exceptions import NetlinkError

from aiostack.wire.ethernet import mac_from_str, mac_to_str

T = TypeVar("T")

TUN_DEVICE = "/dev/net/tun"
#: Kernel limit for interface names, terminating NUL included.
IFNAMSIZ = 16
NETNS_RUN_DIR: str = pyroute2.netns.NETNS_RUN_DIR

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02

# <linux/sockios.h>
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
SIOCGIFMTU = 0x8921
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40
RTMGRP_LINK = 0x1

#: ``txqueuelen`` of a TAP aiostack creates. The TUN driver sizes the queue of
#: frames the kernel has sent towards the stack but the stack has not yet read
#: (its ``tx_ring``) to the device's ``txqueuelen``, and drops what does not fit
#: (``tx_dropped`` on the kernel's side). Linux's default of 1000 (500 for a
#: TAP made by some tools) is sized for a NIC that drains its ring in
#: microseconds from an interrupt; the stack drains it from one Python thread
#: that may lose the CPU for milliseconds, while a burst of 512 handshakes
#: (SYN, then ACK and data per connection) lands at once. 10,000 frames ride
#: out such a burst; it costs memory only while frames actually wait (at most
#: ~15 MB of 1500-byte frames), and each frame it saves would otherwise cost
#: its sender a retransmission timeout (1 s for a SYN).
TAP_TXQUEUELEN = 10000

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CLONE_NEWNET = 0x40000000

# struct ifreq is 40 bytes on 64-bit Linux and the kernel copies all of it.
_IFREQ = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")
_IFREQ_HWADDR = struct.Struct("16sH6s16x")
_NUD_PERMANENT = 0x80

_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- checks


def validate_ifname(name: str) -> str:
    """Return ``name`` if the kernel would accept it as an interface name.

    Mirrors ``dev_valid_name``: 1..15 bytes, not ``.``/``..``, no ``/``,
    ``:`` or whitespace. Checked up front because the kernel would silently
    truncate a long name in ``TUNSETIFF`` and attach to the wrong device.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: {name!r} is not a non-empty interface name")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"name: {name!r} is {len(raw)} bytes, interface names are at most 15")
    if name in (".", "..") or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise ValueError(f"name: {name!r} contains '/', ':' or whitespace, or is '.'/'..'")
    return name


def validate_netns_name(netns: str) -> str:
    """Return ``netns`` if it can name a file under ``/run/netns`` (as ``ip netns`` requires)."""
    if not isinstance(netns, str) or not netns or netns in (".", "..") or "/" in netns:
        raise ValueError(f"netns: {netns!r} is not a namespace name (no '/', not '.' or '..')")
    if len(netns.encode("utf-8", "surrogateescape")) > 255:
        raise ValueError(f"netns: {netns[:20]!r}... is longer than 255 bytes")
    return netns


def _effective_capabilities() -> int:
    """The CapEff mask of this process (a seam tests replace to simulate no privilege)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return ~0 if os.geteuid() == 0 else 0


def require_capability(cap: int, action: str) -> None:
    """Raise EPERM naming ``action`` unless the process holds capability ``cap``.

    Checked before acting so that the error says which capability is
    missing instead of the kernel's bare "Operation not permitted" from
    deep inside an ioctl or a forked helper.
    """
    if not (_effective_capabilities() >> cap) & 1:
        cap_name = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN"}.get(
            cap, f"capability {cap}"
        )
        raise OSError(errno.EPERM, f"{action} needs {cap_name} (run as root)")


def require_tun() -> None:
    """Raise ENOENT with a hint when the TUN/TAP character device is missing."""
    if not os.path.exists(TUN_DEVICE):
        raise OSError(
            errno.ENOENT,
            f"{TUN_DEVICE} is missing: load the tun module (modprobe tun) or, in a "
            "container, pass --device /dev/net/tun",
            TUN_DEVICE,
        )


# --------------------------------------------------------------------------- namespaces


def netns_path(netns: str) -> str:
    return os.path.join(NETNS_RUN_DIR, validate_netns_name(netns))


def netns_exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))


def list_netns() -> list[str]:
    return sorted(pyroute2.netns.listnetns())


def create_netns(netns: str) -> None:
    """Create a named network namespace, as ``ip netns add`` does; EEXIST if taken."""
    path = netns_path(netns)
    require_capability(CAP_SYS_ADMIN, f"creating network namespace {netns!r}")
    if os.path.exists(path):
        raise OSError(errno.EEXIST, f"network namespace {netns!r} already exists", path)
    try:
        pyroute2.netns.create(netns)
    except OSError as exc:
        raise OSError(
            exc.errno or errno.EIO, f"creating network namespace {netns!r}: {exc}", path
        ) from exc
    # Loopback starts down in a fresh namespace; tests and examples expect it up.
    try:
        run_in_netns(netns, lambda: _with_iproute(lambda ipr: ipr.link("set", index=1, state="up")))
    except BaseException:
        pyroute2.netns.remove(netns)
        raise


def delete_netns(netns: str) -> None:
    """Delete a named network namespace (``ip netns del``); ENOENT if it does not exist.

    The namespace, and any TAP in it, lives on until the last process or
    open file descriptor inside it is gone.
    """
    path = netns_path(netns)
    if not os.path.exists(path):
        raise OSError(errno.ENOENT, f"network namespace {netns!r} does not exist", path)
    require_capability(CAP_SYS_ADMIN, f"deleting network namespace {netns!r}")
    pyroute2.netns.remove(netns)


def _open_netns(netns: str) -> int:
    path = netns_path(netns)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(errno.ENOENT, f"network namespace {netns!r} does not exist", path) from None


def _setns(fd: int, netns: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"joining network namespace {netns!r}: {os.strerror(err)}")


def run_in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a fresh thread inside ``netns`` (or the current one) and return its result.

    A fresh thread, rather than ``asyncio.to_thread``'s pool, because a
    thread that has called ``setns`` stays in that namespace: a pooled one
    would later run unrelated work there. The fresh thread also has no
    running event loop, which pyroute2's synchronous API needs. Exceptions
    raised by ``fn`` propagate to the caller.
    """
    nsfd = _open_netns(netns) if netns is not None else -1
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            if netns is not None:
                _setns(nsfd, netns)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    try:
        thread = threading.Thread(target=worker, name=f"aiostack-netns-{netns or 'current'}")
        thread.start()
        thread.join()
    finally:
        if nsfd >= 0:
            os.close(nsfd)
    if error:
        raise error[0]
    return result[0]


def _with_iproute(job: Callable[[Any], T]) -> T:
    """Run ``job(ipr)`` with a synchronous IPRoute on a private selector loop.

    Must be called on a thread with no running loop (see :func:`run_in_netns`).
    The explicit SelectorEventLoop keeps pyroute2 working when uvloop's
    policy is installed, since its default would then be a uvloop loop.
    """
    loop = asyncio.SelectorEventLoop()
    try:
        ipr = pyroute2.IPRoute(use_event_loop=loop)
        try:
            return job(ipr)
        finally:
            ipr.close()
    finally:
        loop.close()


def _netlink_error(exc: NetlinkError, what: str) -> OSError:
    code = getattr(exc, "code", 0) or errno.EIO
    return OSError(code, f"{what}: {os.strerror(code)}")


# --------------------------------------------------------------------------- links


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What a caller needs to know about a link after creating or looking it up."""

    name: str
    index: int
    mac: bytes
    mtu: int
    up: bool
    netns: str | None

    @property
    def mac_str(self) -> str:
        return mac_to_str(self.mac)


def _ifreq_query(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, _IFREQ_HWADDR.pack(name.encode(), 0, b""))


def tun_ifreq(name: str, flags: int) -> bytes:
    """The ``struct ifreq`` argument of ``TUNSETIFF``."""
    return _IFREQ.pack(name.encode(), flags)


def query_link(name: str, netns: str | None) -> LinkInfo:
    """Look a link up with plain ioctls in the calling thread's namespace.

    For code already running inside ``netns`` (see :func:`run_in_netns`);
    ``netns`` only labels the result and the error message.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            index = _IFREQ_INT.unpack(_ifreq_query(sock, SIOCGIFINDEX, name))[1]
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                where = f" in network namespace {netns!r}" if netns else ""
                raise OSError(errno.ENODEV, f"no link named {name!r}{where}") from None
            raise
        mtu = _IFREQ_INT.unpack(_ifreq_query(sock, SIOCGIFMTU, name))[1]
        mac = _IFREQ_HWADDR.unpack(_ifreq_query(sock, SIOCGIFHWADDR, name))[2]
        flags = _IFREQ.unpack(_ifreq_query(sock, SIOCGIFFLAGS, name))[1]
    return LinkInfo(name, index, mac, mtu, bool(flags & IFF_UP), netns)


def wait_until_running(name: str, timeout: float) -> bool:
    """Block until link ``name`` (in the calling thread's namespace) can carry frames.

    A TAP gets its carrier when a descriptor attaches, but the kernel
    activates it (swaps the no-op qdisc for the real one, marks it RUNNING)
    later, from the linkwatch work queue; until then whatever the kernel
    sends into it is silently dropped. This returns True once the link is
    RUNNING (or administratively down, when there is nothing to wait for),
    False if ``timeout`` seconds pass first. Event-driven: it subscribes to
    link notifications before checking, so no transition can be missed.
    """
    deadline = time.monotonic() + timeout
    with (
        socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as events,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        events.bind((0, RTMGRP_LINK))
        while True:
            flags = _IFREQ.unpack(_ifreq_query(sock, SIOCGIFFLAGS, name))[1]
            if not flags & IFF_UP or flags & IFF_RUNNING:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select([events], [], [], remaining)
            if readable:
                events.recv(65536)  # any link event: look again


def get_link(name: str, *, netns: str | None = None) -> LinkInfo:
    """Return index, MAC, MTU and state of ``name`` in ``netns``; ENODEV if absent."""
    validate_ifname(name)
    return run_in_netns(netns, lambda: query_link(name, netns))


def link_exists(name: str, *, netns: str | None = None) -> bool:
    try:
        get_link(name, netns=netns)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return False
        raise
    return True


def parse_interface(address: str) -> ipaddress.IPv4Interface:
    """Parse "a.b.c.d/len"; ValueError naming ``address`` otherwise."""
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise ValueError(
            f"address: {address!r} is not an IPv4 address/prefix such as 198.18.0.1/24"
        ) from None
    if "/" not in address:
        raise ValueError(f"address: {address!r} lacks a prefix length (e.g. /24)")
    return iface


def normalize_mac(mac: bytes | str | None) -> str | None:
    """Check a unicast MAC given as 6 bytes or text and return it as pyroute2 wants it."""
    if mac is None:
        return None
    raw = mac_from_str(mac) if isinstance(mac, str) else bytes(mac)
    if len(raw) != 6:
        raise ValueError(f"mac: {mac!r} is not 6 octets")
    if raw[0] & 1:
        raise ValueError(f"mac: {mac_to_str(raw)} is a multicast address")
    return mac_to_str(raw)


def _configure(
    name: str,
    netns: str | None,
    mac: str | None,
    mtu: int | None,
    address: ipaddress.IPv4Interface | None,
    up: bool | None,
    ipv6: bool | None,
    txqueuelen: int | None = None,
) -> LinkInfo:
    """Apply settings to ``name``; runs on a thread inside ``netns``."""

    def job(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(errno.ENODEV, f"no link named {name!r}")
        index = found[0]
        try:
            changes: dict[str, Any] = {}
            if mac is not None:
                changes["address"] = mac
            if mtu is not None:
                changes["mtu"] = mtu
            if txqueuelen is not None:
                changes["txqlen"] = txqueuelen
            if changes:
                ipr.link("set", index=index, **changes)
            if ipv6 is not None:
                _set_ipv6(name, ipv6)
            if address is not None:
                ipr.addr(
                    "add",
                    index=index,
                    address=str(address.ip),
                    prefixlen=address.network.prefixlen,
                )
            if up is not None:
                ipr.link("set", index=index, state="up" if up else "down")
        except NetlinkError as exc:
            raise _netlink_error(exc, f"configuring link {name!r}") from None

    _with_iproute(job)
    return query_link(name, netns)


def _set_ipv6(name: str, enabled: bool) -> None:
    """Toggle IPv6 on a link (per-namespace sysctl, resolved by the calling thread).

    Disabled by default on TAPs we create: aiostack speaks IPv4 only, and
    the kernel would otherwise send router solicitations, MLD reports and
    DAD probes into the stack as soon as the link comes up.
    """
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    try:
        with open(path, "w", encoding="ascii") as knob:
            knob.write("0" if enabled else "1")
    except FileNotFoundError:
        if enabled:
            raise OSError(errno.EAFNOSUPPORT, "IPv6 is not available in this kernel") from None


def configure_link(
    name: str,
    *,
    netns: str | None = None,
    mac: bytes | str | None = None,
    mtu: int | None = None,
    address: str | None = None,
    up: bool | None = None,
    ipv6: bool | None = None,
) -> LinkInfo:
    """Set MAC, MTU, add an IPv4 ``address`` ("a.b.c.d/len"), bring up or down.

    ``None`` leaves a setting alone. Returns the link as configured.
    """
    validate_ifname(name)
    mac_text = normalize_mac(mac)
    if mtu is not None and not 68 <= mtu <= 65535:
        raise ValueError(f"mtu: {mtu} is outside 68..65535")
    iface = parse_interface(address) if address is not None else None
    require_capability(CAP_NET_ADMIN, f"configuring link {name!r}")
    return run_in_netns(netns, lambda: _configure(name, netns, mac_text, mtu, iface, up, ipv6))


def create_tap(
    name: str,
    *,
    netns: str | None = None,
    mac: bytes | str | None = None,
    mtu: int | None = None,
    address: str | None = None,
    up: bool = True,
    ipv6: bool = False,
    owner: int | None = None,
    txqueuelen: int = TAP_TXQUEUELEN,
) -> LinkInfo:
    """Create a persistent TAP named ``name`` inside ``netns`` and configure its kernel side.

    ``mac``, ``mtu`` and ``address`` ("198.18.0.1/24") apply to the kernel's
    end of the TAP; the stack attached to it picks its own MAC and address.
    ``txqueuelen`` bounds the frames the kernel queues towards the stack
    (see :data:`TAP_TXQUEUELEN` for why it is larger than Linux's default).
    ``owner`` lets a non-root uid attach later. If configuration fails the
    half-made TAP is deleted before the error propagates.
    """
    validate_ifname(name)
    if netns is not None:
        validate_netns_name(netns)
    mac_text = normalize_mac(mac)
    if mtu is not None and not 68 <= mtu <= 65535:
        raise ValueError(f"mtu: {mtu} is outside 68..65535")
    iface = parse_interface(address) if address is not None else None
    if not 1 <= txqueuelen <= 0xFFFFFFFF:
        raise ValueError(f"txqueuelen: {txqueuelen} is outside 1..4294967295")
    require_capability(CAP_NET_ADMIN, f"creating TAP {name!r}")
    require_tun()
    if netns is not None:
        require_capability(CAP_SYS_ADMIN, f"creating TAP {name!r} in network namespace {netns!r}")

    def job() -> LinkInfo:
        fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                fcntl.ioctl(fd, TUNSETIFF, tun_ifreq(name, IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL))
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    where = f" in network namespace {netns!r}" if netns else ""
                    raise OSError(
                        errno.EEXIST, f"link name {name!r} is already in use{where}"
                    ) from None
                raise OSError(exc.errno, f"creating TAP {name!r}: {exc.strerror}") from None
            if owner is not None:
                fcntl.ioctl(fd, TUNSETOWNER, owner)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        finally:
            os.close(fd)
        try:
            return _configure(name, netns, mac_text, mtu, iface, up, ipv6, txqueuelen)
        except BaseException:
            _delete(name)
            raise

    return run_in_netns(netns, job)


def _delete(name: str) -> None:
    def job(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(errno.ENODEV, f"no link named {name!r}")
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            raise _netlink_error(exc, f"deleting link {name!r}") from None

    _with_iproute(job)


def delete_link(name: str, *, netns: str | None = None) -> None:
    """Delete a link (a persistent TAP included); ENODEV if it does not exist."""
    validate_ifname(name)
    require_capability(CAP_NET_ADMIN, f"deleting link {name!r}")

    def job() -> None:
        try:
            _delete(name)
        except OSError as exc:
            if exc.errno == errno.ENODEV and netns is not None:
                raise OSError(
                    errno.ENODEV, f"no link named {name!r} in network namespace {netns!r}"
                ) from None
            raise

    run_in_netns(netns, job)


def move_link(name: str, netns: str, *, from_netns: str | None = None) -> None:
    """Move link ``name`` from ``from_netns`` (default: current) into ``netns``.

    The target namespace is opened here by path and passed as a file
    descriptor, so a misspelt name fails with ENOENT instead of creating a
    namespace. The kernel resets the link to down and drops its addresses
    on the move: configure it afterwards with :func:`configure_link`.
    """
    validate_ifname(name)
    require_capability(CAP_NET_ADMIN, f"moving link {name!r}")
    target = _open_netns(netns)

    def job(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(errno.ENODEV, f"no link named {name!r}")
        try:
            ipr.link("set", index=found[0], net_ns_fd=target)
        except NetlinkError as exc:
            raise _netlink_error(exc, f"moving link {name!r} to {netns!r}") from None

    try:
        run_in_netns(from_netns, lambda: _with_iproute(job))
    finally:
        os.close(target)


def add_neighbor(name: str, ip: str, mac: bytes | str, *, netns: str | None = None) -> None:
    """Add a permanent ARP entry ``ip -> mac`` on ``name`` (``ip neigh replace ... permanent``).

    Lets a test send from the kernel to a stack that does not answer ARP yet.
    """
    validate_ifname(name)
    mac_text = normalize_mac(mac)
    try:
        dst = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(f"ip: {ip!r} is not an IPv4 address") from None
    require_capability(CAP_NET_ADMIN, f"adding a neighbour on {name!r}")

    def job(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(errno.ENODEV, f"no link named {name!r}")
        try:
            ipr.neigh(
                "replace", dst=str(dst), lladdr=mac_text, ifindex=found[0], state=_NUD_PERMANENT
            )
        except NetlinkError as exc:
            raise _netlink_error(exc, f"adding neighbour {dst} on {name!r}") from None

    run_in_netns(netns, lambda: _with_iproute(job))
