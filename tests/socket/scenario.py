"""A small DSL for socket scenarios that run unchanged on Linux and on aiostack.

A scenario is an ``async def`` taking an :class:`Env`. It creates sockets on
one of two *sides* ("server" and "client") and calls them; every call's
observable outcome (return value, errno, bytes, EOF) is appended to
``env.trace``. The same scenario runs against:

- :class:`KernelEnv`: real stdlib sockets on 127.0.0.1 (both sides are the
  one kernel); ports are always chosen by the kernel (bind to port 0, or to
  a port another socket of the scenario got that way), so nothing else on
  the machine's loopback can disturb a run or be disturbed by it.
- :class:`StackEnv`: two aiostack stacks on a MemoryWire, the server side
  on B (198.18.0.2), the client side on A (198.18.0.1).

The traces are then compared. To make them comparable, addresses are
normalised: a host is ``"any"`` (0.0.0.0) or ``"host"`` (any address of
the scenario's machines), and a port is ``0`` or a symbol ``p1, p2, ...``
numbered by first appearance, so that a scenario checks that two results
name *the same* port without depending on which number it is. Errors are
recorded by errno name.

Blocking calls are bounded: the kernel's blocking sockets use a stdlib
timeout (:data:`GUARD`), aiostack's an ``asyncio.timeout``; a scenario
that waits for something that never comes records ``"timeout"`` rather
than hanging. (A stdlib timeout makes the descriptor non-blocking, so a
kernel MSG_WAITALL would not wait: scenarios ask for it only once the data
or the EOF is there.) Between steps that need the other side to react, a scenario
calls :meth:`Env.settle`: loopback is synchronous in the kernel, while the
stacks need their tasks to run.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import fcntl
import select
import socket as stdlib
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiostack.socket import Socket
from aiostack.socket.options import SIOCINQ, SIOCOUTQ
from aiostack.stack.stack import Stack
from aiostack.testing.netns import NetNamespace

#: How long a blocking call may take before the run records "timeout".
GUARD = 5.0
NONLOCAL_IP = "192.0.2.1"  # TEST-NET-1: never anybody's address; only ever bound to, never sent to

Result = tuple[Any, ...]
Scenario = Callable[["Env"], Awaitable[None]]

ANY = ("any", 0)


class DiffSocket:
    """One socket of a scenario; every public call is recorded in the env's trace."""

    def __init__(self, env: Env, name: str, side: str, kind: int) -> None:
        self.env = env
        self.name = name
        self.side = side
        self.kind = kind
        self._port: int | None = None

    # Every call goes through _record, which runs the backend's _op.
    async def _record(self, op: str, *args: Any) -> Any:
        env = self.env
        try:
            value = await self._op(op, *args)
        except TimeoutError as exc:
            if exc.errno is None:
                env.trace.append((f"{self.name}.{op}", "timeout"))
                return None
            env.trace.append((f"{self.name}.{op}", "err", errno.errorcode[exc.errno]))
            return None
        except OSError as exc:
            assert exc.errno is not None, exc
            env.trace.append((f"{self.name}.{op}", "err", errno.errorcode[exc.errno]))
            return None
        env.trace.append((f"{self.name}.{op}", "ok", env.normalise(value, self)))
        return value

    async def _op(self, op: str, *args: Any) -> Any:
        raise NotImplementedError

    def host(self) -> str:
        return self.env.host(self.side)

    async def port(self) -> int:
        """The bound port (not recorded): what ``("any", sock)`` address specs use.

        Remembered once read, so a scenario can read it before ``close`` and
        bind to it afterwards (a TIME_WAIT port).
        """
        if self._port is None:
            self._port = await self._bound_port()
        return self._port

    async def _bound_port(self) -> int:
        raise NotImplementedError

    async def resolve(self, spec: tuple[Any, Any]) -> tuple[str, int]:
        """An address spec -> a real address: host "any", "self", "nonlocal" or a socket."""
        host, port = spec
        if host == "any":
            text = ""
        elif host == "self":
            text = self.host()
        elif host == "nonlocal":
            text = NONLOCAL_IP
        elif host in ("server", "client"):
            text = self.env.host(host)
        else:
            assert isinstance(host, DiffSocket)
            text = host.host()
        number = port if isinstance(port, int) else await port.port()
        return text, number

    # -- the calls -----------------------------------------------------------

    async def bind(self, spec: tuple[Any, Any]) -> Any:
        return await self._record("bind", await self.resolve(spec))

    async def connect(self, target: DiffSocket | tuple[Any, Any]) -> Any:
        """Connect to another socket's (host, port), or to an address spec."""
        spec = (target, target) if isinstance(target, DiffSocket) else target
        return await self._record("connect", await self.resolve(spec))

    async def connect_unspec(self) -> Any:
        return await self._record("connect_unspec")

    async def listen(self, backlog: int = 16) -> Any:
        return await self._record("listen", backlog)

    async def accept(self) -> DiffSocket | None:
        result = await self._record("accept")
        return None if result is None else result[0]

    async def send(self, data: bytes, flags: int = 0) -> Any:
        return await self._record("send", data, flags)

    async def sendto(self, data: bytes, target: DiffSocket | tuple[Any, Any]) -> Any:
        spec = (target, target) if isinstance(target, DiffSocket) else target
        return await self._record("sendto", data, await self.resolve(spec))

    async def recv(self, size: int, flags: int = 0) -> Any:
        return await self._record("recv", size, flags)

    async def recvfrom(self, size: int, flags: int = 0) -> Any:
        return await self._record("recvfrom", size, flags)

    async def recv_echo(self, size: int = 200, flags: int = 0) -> Any:
        """``recvfrom`` on a ping socket, recorded as what may be compared.

        The identifier and checksum differ between kernel and stack; what is
        recorded is (type, code, checksum valid, identifier is ours, sequence,
        payload) and the source.
        """
        env = self.env
        try:
            data, source = await self._op("recvfrom", size, flags)
        except TimeoutError:
            env.trace.append((f"{self.name}.recv_echo", "timeout"))
            return None
        except OSError as exc:
            assert exc.errno is not None
            env.trace.append((f"{self.name}.recv_echo", "err", errno.errorcode[exc.errno]))
            return None
        kind, code, ident, seq = struct.unpack_from("!BBxxHH", data)
        ours = ident == await self._bound_port()
        summary = (kind, code, _csum_ok(data), ours, seq, bytes(data[8:]))
        env.trace.append((f"{self.name}.recv_echo", "ok", (summary, env.normalise(source, self))))
        return data

    async def answer_with_icmp_error(self, icmp_type: int, code: int) -> None:
        """On a raw ICMP socket (not recorded): answer the next datagram with an ICMP error.

        A router's error quotes the IP header and the first 8 bytes after it.
        """
        data, source = await self._op("recvfrom", 2000, 0)
        quote = bytes(data[: (data[0] & 0xF) * 4 + 8])
        head = struct.pack("!BBHI", icmp_type, code, 0, 0)
        check = _checksum(head + quote)
        message = head[:2] + struct.pack("!H", check) + head[4:] + quote
        await self._op("sendto", message, (source[0], 0))

    async def shutdown(self, how: int) -> Any:
        return await self._record("shutdown", how)

    async def close(self) -> Any:
        return await self._record("close")

    async def setsockopt(self, level: int, option: int, value: int | bytes) -> Any:
        return await self._record("setsockopt", level, option, value)

    async def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        return await self._record("getsockopt", level, option, buflen)

    async def getsockname(self) -> Any:
        return await self._record("getsockname")

    async def getpeername(self) -> Any:
        return await self._record("getpeername")

    async def ioctl(self, request: int) -> Any:
        return await self._record("ioctl", request)

    async def poll(self) -> Any:
        """The poll(2) mask with every event asked for, recorded as its bit names."""
        return await self._record("poll")

    async def setblocking(self, flag: bool) -> Any:
        return await self._record("setblocking", flag)

    async def settimeout(self, value: float | None) -> Any:
        """``None`` makes a kernel socket truly blocking (so SO_RCVTIMEO applies there)."""
        return await self._record("settimeout", value)


_POLL_BITS = [
    (getattr(select, name), name)
    for name in (
        "POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL",
        "POLLRDNORM", "POLLRDBAND", "POLLWRNORM", "POLLWRBAND", "POLLRDHUP",
    )
]  # fmt: skip
POLL_ALL = sum(bit for bit, _ in _POLL_BITS)


def poll_names(mask: int) -> str:
    """``POLLIN|POLLOUT``...: a mask as a trace shows it (the first difference is readable)."""
    return "|".join(name for bit, name in _POLL_BITS if mask & bit) or "0"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _csum_ok(data: bytes) -> bool:
    return _checksum(bytes(data)) == 0


class Env:
    """A scenario's world: sockets on two sides and the trace of what they did."""

    def __init__(self) -> None:
        self.trace: list[Result] = []
        self._ports: dict[Any, str] = {}
        self._count = 0

    def host(self, side: str) -> str:
        raise NotImplementedError

    async def socket(
        self, side: str, kind: int = stdlib.SOCK_STREAM, *, nonblock: bool = False, proto: int = 0
    ) -> DiffSocket:
        raise NotImplementedError

    async def create(self, side: str, kind: int, proto: int = 0) -> DiffSocket | None:
        """``socket()`` itself as a recorded step (for its errno)."""
        try:
            sock = await self.socket(side, kind, proto=proto)
        except OSError as exc:
            assert exc.errno is not None
            self.trace.append(("socket", "err", errno.errorcode[exc.errno]))
            return None
        self.trace.append(("socket", "ok", sock.name))
        return sock

    async def settle(self) -> None:
        """Let the peers react to what was just sent (segments, ACKs, RSTs)."""
        raise NotImplementedError

    def note(self, label: str, value: Any) -> None:
        """Record a value the scenario computed itself (e.g. a length)."""
        self.trace.append((label, "ok", value))

    def _next_name(self) -> str:
        self._count += 1
        return f"s{self._count}"

    def port_key(self, host: str, port: int, sock: DiffSocket) -> Any:
        return port

    def normalise(self, value: Any, sock: DiffSocket) -> Any:
        if isinstance(value, DiffSocket):
            return value.name
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            host, port = value
            symbol = 0
            if port:
                key = self.port_key(host, port, sock)
                symbol_text = self._ports.get(key)
                if symbol_text is None:
                    symbol_text = self._ports[key] = f"p{len(self._ports) + 1}"
                return ("any" if host == "0.0.0.0" else "host", symbol_text)
            return ("any" if host == "0.0.0.0" else "host", symbol)
        if isinstance(value, tuple):
            return tuple(self.normalise(v, sock) for v in value)
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        return value


# -- Linux ----------------------------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _kernel_connect_unspec(fd: int) -> None:
    """``connect(fd, {AF_UNSPEC}, 16)``: the stdlib cannot express it."""
    sockaddr = struct.pack("H14s", stdlib.AF_UNSPEC, bytes(14))
    buf = ctypes.create_string_buffer(sockaddr, len(sockaddr))
    if _libc.connect(fd, buf, len(sockaddr)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, errno.errorcode.get(code, "?"))


class KernelSocket(DiffSocket):
    def __init__(self, env: KernelEnv, name: str, side: str, sock: stdlib.socket) -> None:
        super().__init__(env, name, side, sock.type)
        self.sock = sock

    async def _bound_port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def _op(self, op: str, *args: Any) -> Any:
        sock = self.sock
        if op == "accept":
            child, address = sock.accept()
            child.settimeout(GUARD)  # accept(2): a new, blocking socket
            assert isinstance(self.env, KernelEnv)
            return self.env.adopt(child, self.side), address
        if op == "connect_unspec":
            return _kernel_connect_unspec(sock.fileno())
        dontwait = op in ("recv", "recvfrom", "send") and args[-1] & stdlib.MSG_DONTWAIT
        if dontwait and sock.gettimeout():
            # The stdlib polls before a call on a socket with a timeout, even with
            # MSG_DONTWAIT; the kernel would not wait. Call it on the blocking fd.
            sock.settimeout(None)
            try:
                return getattr(sock, op)(*args)
            finally:
                sock.settimeout(GUARD)
        if op in ("recv", "recvfrom") and sock.gettimeout():
            # Likewise, a truly blocking receive (MSG_WAITALL waits, a shut-down
            # UDP socket returns b""), bounded by SO_RCVTIMEO instead.
            saved = sock.getsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVTIMEO, 16)
            sock.settimeout(None)
            sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVTIMEO, struct.pack("ll", int(GUARD), 0))
            try:
                return getattr(sock, op)(*args)
            except BlockingIOError:
                raise TimeoutError from None  # the guard ran out, as "timeout" on aiostack
            finally:
                sock.setsockopt(stdlib.SOL_SOCKET, stdlib.SO_RCVTIMEO, saved)
                sock.settimeout(GUARD)
        if op == "connect" and sock.gettimeout():
            # A stdlib timeout would run connect() non-blocking and leave the kernel
            # socket SS_CONNECTING; a blocking connect is what aiostack's models.
            # Loopback answers at once (SYN-ACK or RST), so this cannot hang.
            sock.settimeout(None)
            try:
                return sock.connect(*args)
            finally:
                sock.settimeout(GUARD)
        if op == "poll":
            poller = select.poll()
            poller.register(sock.fileno(), POLL_ALL)
            ready = poller.poll(0)
            return poll_names(ready[0][1] if ready else 0)
        if op == "ioctl":
            raw = fcntl.ioctl(sock.fileno(), args[0], b"\0" * 4)
            return struct.unpack("i", raw)[0]
        if op == "getsockopt":
            level, option, buflen = args
            return (
                sock.getsockopt(level, option, buflen) if buflen else sock.getsockopt(level, option)
            )
        if op == "setblocking":
            if args[0]:
                sock.settimeout(GUARD)
            else:
                sock.setblocking(False)
            return None
        if op == "close":
            sock.close()
            return None
        return getattr(sock, op)(*args)


class KernelEnv(Env):
    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[stdlib.socket] = []

    def host(self, side: str) -> str:
        return "127.0.0.1"

    def adopt(self, sock: stdlib.socket, side: str) -> KernelSocket:
        self.sockets.append(sock)
        return KernelSocket(self, self._next_name(), side, sock)

    async def socket(
        self, side: str, kind: int = stdlib.SOCK_STREAM, *, nonblock: bool = False, proto: int = 0
    ) -> DiffSocket:
        sock = stdlib.socket(stdlib.AF_INET, kind, proto)
        if nonblock:
            sock.setblocking(False)
        else:
            sock.settimeout(GUARD)
        return self.adopt(sock, side)

    async def settle(self) -> None:
        await asyncio.sleep(0.005)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class NetnsKernelEnv(KernelEnv):
    """The kernel in a network namespace of its own (root only), for per-namespace sysctls.

    Ping sockets need ``net.ipv4.ping_group_range`` to admit this process,
    and forged ICMP errors need ``icmp_echo_ignore_all``: changing them on
    the machine's own namespace is not ours to do. Sockets are created in
    the namespace and used from here as usual.
    """

    def __init__(self, sysctls: dict[str, str]) -> None:
        super().__init__()
        self.ns = NetNamespace(prefix="aiodiff").create()
        try:
            self.ns.run("ip", "link", "set", "lo", "up", check=True)
            for name, value in sysctls.items():
                self.ns.run("sysctl", "-q", "-w", f"{name}={value}", check=True)
        except BaseException:
            self.ns.delete()
            raise

    async def socket(
        self, side: str, kind: int = stdlib.SOCK_STREAM, *, nonblock: bool = False, proto: int = 0
    ) -> DiffSocket:
        sock = self.ns.socket(stdlib.AF_INET, kind, proto)
        if nonblock:
            sock.setblocking(False)
        else:
            sock.settimeout(GUARD)
        return self.adopt(sock, side)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.ns.delete()


# -- aiostack ---------------------------------------------------------------------------


class StackSocket(DiffSocket):
    def __init__(self, env: StackEnv, name: str, side: str, sock: Socket) -> None:
        super().__init__(env, name, side, sock.type)
        self.sock = sock

    async def _bound_port(self) -> int:
        return self.sock.getsockname()[1]

    async def _op(self, op: str, *args: Any) -> Any:
        sock = self.sock
        async with asyncio.timeout(GUARD):
            if op == "accept":
                child, address = await sock.accept()
                assert isinstance(self.env, StackEnv)
                return self.env.adopt(child, self.side), address
            if op == "connect_unspec":
                return await sock.connect(stdlib.AF_UNSPEC)
            if op == "poll":
                return poll_names(sock.poll() & POLL_ALL)
            if op == "getsockopt":
                level, option, buflen = args
                if buflen:
                    return sock.getsockopt(level, option, buflen)
                return sock.getsockopt(level, option)
            method = getattr(sock, op)
            result = method(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result


class StackEnv(Env):
    """Server side on stack ``b``, client side on stack ``a``."""

    def __init__(self, a: Stack, b: Stack, a_ip: str, b_ip: str) -> None:
        super().__init__()
        self.stacks = {"client": a, "server": b}
        self.ips = {"client": a_ip, "server": b_ip}

    def host(self, side: str) -> str:
        return self.ips[side]

    def adopt(self, sock: Socket, side: str) -> StackSocket:
        return StackSocket(self, self._next_name(), side, sock)

    async def socket(
        self, side: str, kind: int = stdlib.SOCK_STREAM, *, nonblock: bool = False, proto: int = 0
    ) -> DiffSocket:
        flags = stdlib.SOCK_NONBLOCK if nonblock else 0
        sock = self.stacks[side].socket(stdlib.AF_INET, kind | flags, proto)
        return self.adopt(sock, side)

    def port_key(self, host: str, port: int, sock: DiffSocket) -> Any:
        # Two stacks have two port spaces: tell their ports apart by host.
        return (host if host != "0.0.0.0" else sock.host(), port)

    async def settle(self) -> None:
        # The stacks' tasks need a few loop turns per hop; ARP, SYN/SYN-ACK/ACK and
        # a delayed ACK all complete well within this.
        for _ in range(20):
            await asyncio.sleep(0)
        await asyncio.sleep(0.06)


async def run(scenario: Scenario, env: Env) -> list[Result]:
    await scenario(env)
    return env.trace


__all__ = [
    "ANY",
    "SIOCINQ",
    "SIOCOUTQ",
    "DiffSocket",
    "Env",
    "KernelEnv",
    "NetnsKernelEnv",
    "StackEnv",
    "run",
]
