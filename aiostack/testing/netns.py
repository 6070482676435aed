"""Network namespaces and TAPs for tests and examples, always cleaned up.

Everything a test sends must stay inside a namespace the test created, so
these helpers make that the easy path::

    with tap_in_netns() as spec:                 # namespace + TAP, kernel at 198.18.0.1/24
        async with spec.device() as tap:         # aiostack's end of the TAP
            ...
            spec.namespace.run("ping", "-c1", spec.stack_ip)

Names are a prefix plus random hex, so parallel runs never collide, and
short enough for interface names (15 bytes). Clean-up runs on normal exit,
on exceptions and on ``KeyboardInterrupt``; as a last resort an ``atexit``
hook deletes any namespace this process created and did not delete (for
example when a generator fixture is never finalised). Deleting a namespace
also destroys the TAP inside it.

The context managers work in plain code (``with``) and in coroutines
(``async with``, which does the blocking set-up on a worker thread so the
event loop keeps running).
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

from aiostack.link import netlink
from aiostack.link.base import DEFAULT_MAX_BATCH
from aiostack.link.tap import TapDevice

T = TypeVar("T")

#: RFC 2544 benchmarking range: never routed on the Internet.
SUBNET = "198.18.0.0/24"
KERNEL_IP = "198.18.0.1"
STACK_IP = "198.18.0.2"
PREFIXLEN = 24
#: Environment variable that turns "TAP unavailable" from a skip into a failure (CI).
REQUIRE_TAP_ENV = "AIOSTACK_REQUIRE_TAP"

_LIVE: set[str] = set()
_CREATED: set[str] = set()


def unique_name(prefix: str = "aio", *, max_len: int = netlink.IFNAMSIZ - 1) -> str:
    """``prefix`` plus random hex, ``max_len`` bytes in all (valid as an interface name)."""
    room = max_len - len(prefix)
    if room < 4:
        raise ValueError(f"prefix: {prefix!r} leaves fewer than 4 random characters")
    return prefix + secrets.token_hex(room // 2 + 1)[:room]


def random_mac() -> bytes:
    """A random unicast, locally administered MAC (02:... style)."""
    raw = bytearray(secrets.token_bytes(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return bytes(raw)


def tap_unavailable_reason() -> str | None:
    """Why TAP tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) for network namespaces and TAPs"
    if not os.path.exists(netlink.TUN_DEVICE):
        return f"{netlink.TUN_DEVICE} is missing (modprobe tun, or --device /dev/net/tun)"
    try:
        os.close(os.open(netlink.TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        return f"{netlink.TUN_DEVICE} cannot be opened: {exc.strerror}"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    return None


def require_tap() -> None:
    """Return if TAP tests can run; otherwise skip the test, or fail it under CI.

    CI sets ``AIOSTACK_REQUIRE_TAP=1`` so that a runner that lost its root or
    its ``/dev/net/tun`` fails loudly instead of silently skipping the tests
    that matter most.
    """
    reason = tap_unavailable_reason()
    if reason is None:
        return
    import pytest

    if os.environ.get(REQUIRE_TAP_ENV) == "1":
        pytest.fail(f"{REQUIRE_TAP_ENV}=1 but TAP tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def created_namespaces() -> frozenset[str]:
    """Every namespace this process has created through these helpers, deleted or not.

    A test session compares it with ``ip netns list`` to find its own leaks,
    even when a delete failed, and ignores other processes' namespaces.
    """
    return frozenset(_CREATED)


def live_namespaces() -> frozenset[str]:
    """Namespaces this process created through these helpers and has not deleted yet.

    Lets a test session check for its own leaks precisely, even while other
    processes create and delete namespaces with the same prefix.
    """
    return frozenset(_LIVE)


def _cleanup_leftovers() -> None:
    for name in list(_LIVE):
        _LIVE.discard(name)
        with contextlib.suppress(OSError):
            netlink.delete_netns(name)


atexit.register(_cleanup_leftovers)


class _Scoped(abc.ABC, Generic[T]):
    """``with`` and ``async with`` for a resource with blocking ``create()`` and ``delete()``.

    The async forms run both on a thread, shielded so that a cancelled set-up
    still removes what it made (see :func:`_shielded`).
    """

    @abc.abstractmethod
    def create(self) -> T: ...

    @abc.abstractmethod
    def delete(self) -> None: ...

    def __enter__(self) -> T:
        return self.create()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    async def __aenter__(self) -> T:
        return await _shielded(self.create, self.delete)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _shielded(self.delete, self.delete)


class NetNamespace(_Scoped["NetNamespace"]):
    """A uniquely named network namespace that exists inside the ``with`` block."""

    def __init__(self, name: str | None = None, *, prefix: str = "aiostk") -> None:
        self.name = netlink.validate_netns_name(name) if name else unique_name(prefix)
        self._created = False

    def __repr__(self) -> str:
        return f"NetNamespace({self.name!r})"

    # ------------------------------------------------------------------ lifetime

    def create(self) -> NetNamespace:
        if self._created:
            return self
        _LIVE.add(self.name)
        try:
            netlink.create_netns(self.name)
            _CREATED.add(self.name)
        except FileExistsError:
            _LIVE.discard(self.name)  # someone else's: never delete it
            raise
        except BaseException:
            self._forget()
            raise
        self._created = True
        return self

    def delete(self) -> None:
        """Delete the namespace (and every link in it); idempotent."""
        if self._created:
            self._created = False
            self._forget()

    def _forget(self) -> None:
        try:
            if netlink.netns_exists(self.name):
                netlink.delete_netns(self.name)
        finally:
            _LIVE.discard(self.name)

    # ------------------------------------------------------------------ work inside

    def _argv(self, argv: tuple[str, ...]) -> list[str]:
        if not argv:
            raise ValueError("argv: no command given")
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        *argv: str,
        check: bool = False,
        timeout: float = 60.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command inside the namespace (``ip netns exec``), capturing its output."""
        return subprocess.run(
            self._argv(argv), input=input, capture_output=True, timeout=timeout, check=check
        )

    async def run_async(
        self,
        *argv: str,
        check: bool = False,
        timeout: float = 60.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """:meth:`run` without blocking the loop; the process is killed on timeout or cancel.

        A timeout raises ``subprocess.TimeoutExpired``, as :meth:`run` does.
        """
        args = self._argv(argv)
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(input), timeout)
        except BaseException as exc:
            if proc.returncode is None:
                proc.kill()
            await asyncio.shield(proc.wait())
            if isinstance(exc, TimeoutError):
                # The same exception as run(), so callers handle both alike.
                raise subprocess.TimeoutExpired(args, timeout) from None
            raise
        assert proc.returncode is not None
        result = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
        if check:
            result.check_returncode()
        return result

    def python(
        self,
        code: str,
        *args: str,
        check: bool = False,
        timeout: float = 60.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run Python ``code`` (``python -c``) in a fresh interpreter inside the namespace.

        The interpreter is this one (``sys.executable``), so it sees the
        same packages, aiostack included. For a kernel-side peer written in
        Python: a server with the kernel's sockets, a client, a probe. For a
        short function, :meth:`call` is cheaper (a thread, no new process).
        """
        return self.run(
            sys.executable, "-c", code, *args, check=check, timeout=timeout, input=input
        )

    async def python_async(
        self,
        code: str,
        *args: str,
        check: bool = False,
        timeout: float = 60.0,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """:meth:`python` without blocking the loop (see :meth:`run_async`)."""
        return await self.run_async(
            sys.executable, "-c", code, *args, check=check, timeout=timeout, input=input
        )

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a long-running command inside the namespace; the caller waits for or kills it.

        ``kwargs`` go to ``asyncio.create_subprocess_exec`` (``stdout=PIPE``,
        ...). For servers the test talks to while they run; stop them with
        ``proc.terminate()``/``proc.kill()`` then ``await proc.wait()``.
        """
        return await asyncio.create_subprocess_exec(*self._argv(argv), **kwargs)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a thread inside the namespace and return its result."""
        return netlink.run_in_netns(self.name, fn)

    def socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
    ) -> socket.socket:
        """A kernel socket that lives in the namespace, usable from any thread or loop."""
        return self.call(lambda: socket.socket(family, type, proto))


async def _shielded(action: Callable[[], T], undo: Callable[[], object]) -> T:
    """Run blocking ``action`` on a thread; if we are cancelled meanwhile, let it finish, then undo.

    Without this, cancelling ``async with`` set-up would leave a namespace
    created behind the caller's back.
    """
    task = asyncio.ensure_future(asyncio.to_thread(action))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await task
        finally:
            await asyncio.to_thread(undo)
        raise


@dataclass(frozen=True, slots=True)
class TapSpec:
    """What a stack needs to attach to a TAP made by :func:`tap_in_netns`."""

    #: The TAP's name (one device: the kernel's end and aiostack's end share it).
    name: str
    netns: str
    mtu: int
    kernel_mac: bytes
    kernel_ip: str
    stack_ip: str
    prefixlen: int
    #: A locally administered MAC for the stack to use.
    stack_mac: bytes = field(default_factory=random_mac)

    def device(self, *, offload: bool = False, max_batch: int = DEFAULT_MAX_BATCH) -> TapDevice:
        """An unopened :class:`TapDevice` attached to this TAP (``async with spec.device():``)."""
        return TapDevice.attach(self.name, netns=self.netns, offload=offload, max_batch=max_batch)

    @property
    def namespace(self) -> NetNamespace:
        """A handle to run commands in the TAP's namespace (it is not deleted by this object)."""
        return NetNamespace(self.netns)


class TapNamespace(_Scoped[TapSpec]):
    """A fresh namespace holding one configured TAP; yields its :class:`TapSpec`."""

    def __init__(
        self,
        *,
        prefix: str = "aiostk",
        tap_name: str | None = None,
        mtu: int = 1500,
        kernel_ip: str = KERNEL_IP,
        stack_ip: str = STACK_IP,
        prefixlen: int = PREFIXLEN,
        kernel_mac: bytes | None = None,
        stack_mac: bytes | None = None,
        static_neighbor: bool = False,
    ) -> None:
        self.netns = NetNamespace(prefix=prefix)
        self.tap_name = netlink.validate_ifname(tap_name) if tap_name else unique_name("tap")
        self.mtu = mtu
        self.kernel_ip = kernel_ip
        self.stack_ip = stack_ip
        self.prefixlen = prefixlen
        self.kernel_mac = kernel_mac
        self.stack_mac = stack_mac or random_mac()
        self.static_neighbor = static_neighbor
        self.spec: TapSpec | None = None

    def create(self) -> TapSpec:
        self.netns.create()
        try:
            link = netlink.create_tap(
                self.tap_name,
                netns=self.netns.name,
                mac=self.kernel_mac,
                mtu=self.mtu,
                address=f"{self.kernel_ip}/{self.prefixlen}",
            )
            if self.static_neighbor:
                netlink.add_neighbor(
                    self.tap_name, self.stack_ip, self.stack_mac, netns=self.netns.name
                )
        except BaseException:
            self.netns.delete()
            raise
        self.spec = TapSpec(
            name=link.name,
            netns=self.netns.name,
            mtu=link.mtu,
            kernel_mac=link.mac,
            kernel_ip=self.kernel_ip,
            stack_ip=self.stack_ip,
            prefixlen=self.prefixlen,
            stack_mac=self.stack_mac,
        )
        return self.spec

    def delete(self) -> None:
        self.netns.delete()


def netns(prefix: str = "aiostk") -> NetNamespace:
    """A fresh, uniquely named namespace: ``with netns() as ns:`` or ``async with netns() as ns:``.

    Prefer this to a fixed name: parallel test runs then never collide.
    """
    return NetNamespace(prefix=prefix)


def tap_in_netns(
    *,
    prefix: str = "aiostk",
    mtu: int = 1500,
    kernel_ip: str = KERNEL_IP,
    stack_ip: str = STACK_IP,
    prefixlen: int = PREFIXLEN,
    static_neighbor: bool = False,
) -> TapNamespace:
    """A namespace with a TAP whose kernel side is ``kernel_ip/prefixlen`` and up.

    With ``static_neighbor`` the kernel gets a permanent ARP entry for
    ``stack_ip`` at the spec's ``stack_mac``, so it can send to a stack that
    does not answer ARP.
    """
    return TapNamespace(
        prefix=prefix,
        mtu=mtu,
        kernel_ip=kernel_ip,
        stack_ip=stack_ip,
        prefixlen=prefixlen,
        static_neighbor=static_neighbor,
    )
