"""System call lines: evaluate the arguments, make the call on a :class:`Kernel`, check the result.

``...`` arguments are filled in as packetdrill does: ``bind(3, ..., ...)``
binds the stack's address and port 8080, ``connect(3, ..., ...)`` connects
to the script side at port 8080, buffers are zeroes of the given length.
The expected result is a number (checked), an errno (``= -1 ECONNREFUSED``,
checked), or ``...`` (not checked). Values passed by reference
(``ioctl(4, SIOCINQ, [1000])``, ``getsockopt(..., [ECONNREFUSED], [4])``)
are checked after the call.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .ast import (
    AssignExpr,
    BitOrExpr,
    BraceExpr,
    CallExpr,
    EllipsisExpr,
    Expr,
    IntegerExpr,
    ListExpr,
    StringExpr,
    SyscallEvent,
    WordExpr,
)
from .flows import Flows
from .kernel import Kernel
from .packets import LOCAL_IP, REMOTE_IP, SCRIPT_PORT, Unsupported
from .report import ScriptFailure
from .symbols import SYMBOLS, TCP_INFO_SIZE, errno_name, symbol, unpack_tcp_info

__all__ = ["SyscallContext", "run_syscall"]

_SOL_SOCKET = SYMBOLS["SOL_SOCKET"]
_IPPROTO_TCP = SYMBOLS["IPPROTO_TCP"]
_TCP_INFO = SYMBOLS["TCP_INFO"]
_TCP_CONGESTION = SYMBOLS["TCP_CONGESTION"]
_SO_LINGER = SYMBOLS["SO_LINGER"]
_F_GETFL = SYMBOLS["F_GETFL"]
_F_SETFL = SYMBOLS["F_SETFL"]
#: connect() errors that mean no connection attempt was made.
_NO_ATTEMPT_ERRNOS = frozenset(
    {errno.EISCONN, errno.EINVAL, errno.EBADF, errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL}
)


@dataclass(slots=True)
class SyscallContext:
    """What system calls share with the rest of the run."""

    kernel: Kernel
    #: The script's connections; bind() and connect() start new ones.
    flows: Flows
    #: The socket packetdrill's ``%{ }%`` code reads ``tcpi_*`` of (the latest one opened).
    socket_under_test: int | None = None
    #: The socket whose connect() set up the flow.
    connecting_fd: int | None = None
    #: ``tcpi_*`` of the last TCP_INFO read by a script line.
    tcp_info: dict[str, Any] = field(default_factory=dict)


def int_value(expr: Expr, what: str) -> int:
    """An integer argument: a number, a symbol, ``A|B``, or ``[N]`` (an int by reference)."""
    if isinstance(expr, IntegerExpr):
        return expr.value
    if isinstance(expr, WordExpr):
        value = symbol(expr.name)
        if value is None:
            raise Unsupported(f"symbol {expr.name} in {what}")
        return value
    if isinstance(expr, BitOrExpr):
        result = 0
        for operand in expr.operands:
            result |= int_value(operand, what)
        return result
    if isinstance(expr, ListExpr) and len(expr.items) == 1:
        return int_value(expr.items[0], what)
    if isinstance(expr, CallExpr) and expr.name in ("htons", "htonl") and len(expr.args) == 1:
        return int_value(expr.args[0], what)
    raise Unsupported(f"{what} {expr}")


def _is_ellipsis(expr: Expr) -> bool:
    return isinstance(expr, EllipsisExpr)


def _iov_total(expr: Expr, what: str) -> int:
    """Total length of ``[{..., 10}, {..., 20}]`` (or ``{iov_base=..., iov_len=10}`` items)."""
    if not isinstance(expr, ListExpr):
        raise Unsupported(f"{what} {expr}")
    total = 0
    for item in expr.items:
        if not isinstance(item, BraceExpr):
            raise Unsupported(f"{what} item {item}")
        named = item.fields()
        if "iov_len" in named:
            total += int_value(named["iov_len"], what)
        elif len(item.items) == 2:
            total += int_value(item.items[1], what)
        else:
            raise Unsupported(f"{what} item {item}")
    return total


def _msghdr_total(expr: Expr) -> int:
    if not isinstance(expr, BraceExpr):
        raise Unsupported(f"msghdr {expr}")
    for item in expr.items:
        if isinstance(item, AssignExpr) and item.name == "msg_iov":
            return _iov_total(item.value, "msg_iov")
    raise Unsupported(f"msghdr without msg_iov: {expr}")


def _option_bytes(level: int, option: int, expr: Expr) -> bytes:
    """A setsockopt value as the C bytes: an int, a linger struct, a string."""
    if isinstance(expr, StringExpr):
        return expr.value.encode() + b"\0"
    if isinstance(expr, BraceExpr):
        named = expr.fields()
        onoff = named.get("l_onoff", named.get("onoff"))
        linger = named.get("l_linger", named.get("linger"))
        if level == _SOL_SOCKET and option == _SO_LINGER and onoff and linger:
            return struct.pack("ii", int_value(onoff, "l_onoff"), int_value(linger, "l_linger"))
        raise Unsupported(f"socket option value {expr}")
    return struct.pack("i", int_value(expr, "socket option value"))


def _args(call: SyscallEvent, count: int | tuple[int, ...]) -> tuple[Expr, ...]:
    counts = (count,) if isinstance(count, int) else count
    if len(call.args) not in counts:
        raise ScriptFailure(
            f"{call.name}() takes {' or '.join(map(str, counts))} arguments, "
            f"the script gives {len(call.args)}"
        )
    return call.args


Handler = Callable[[SyscallEvent, SyscallContext], Any]


async def _socket(call: SyscallEvent, ctx: SyscallContext) -> int:
    domain, type_, proto = _args(call, 3)
    fd = await ctx.kernel.socket(
        SYMBOLS["AF_INET"] if _is_ellipsis(domain) else int_value(domain, "domain"),
        int_value(type_, "type"),
        int_value(proto, "protocol"),
    )
    ctx.socket_under_test = fd
    return fd


async def _bind(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, address, _len = _args(call, 3)
    if not _is_ellipsis(address):
        raise Unsupported(f"bind() to an explicit address {address}")
    ctx.flows.passive_open()
    ctx.connecting_fd = None
    await ctx.kernel.bind(int_value(fd, "fd"), (LOCAL_IP, SCRIPT_PORT))
    return 0


async def _listen(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, backlog = _args(call, 2)
    await ctx.kernel.listen(int_value(fd, "fd"), int_value(backlog, "backlog"))
    return 0


async def _connect(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, address, _len = _args(call, 3)
    if not _is_ellipsis(address):
        raise Unsupported(f"connect() to an explicit address {address}")
    number = int_value(fd, "fd")
    if ctx.connecting_fd == number:
        # A second connect() on the same socket (EALREADY, EISCONN) is the same flow.
        await ctx.kernel.connect(number, (REMOTE_IP, SCRIPT_PORT))
        return 0
    saved = ctx.flows.save(), ctx.connecting_fd, ctx.socket_under_test
    ctx.flows.active_open()
    ctx.connecting_fd = ctx.socket_under_test = number
    try:
        await ctx.kernel.connect(number, (REMOTE_IP, SCRIPT_PORT))
    except OSError as exc:
        if exc.errno in _NO_ATTEMPT_ERRNOS:
            # Refused before any SYN (connect() on a listener, a bad descriptor...):
            # the script's connection is still the one it had.
            flows, ctx.connecting_fd, ctx.socket_under_test = saved
            ctx.flows.restore(flows)
        raise
    return 0


async def _accept(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, _address, _len = _args(call, 3)
    child = await ctx.kernel.accept(int_value(fd, "fd"))
    ctx.socket_under_test = child
    return child


async def _write(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, _buf, length = _args(call, 3)
    return await ctx.kernel.send(int_value(fd, "fd"), int_value(length, "length"), 0)


async def _send(call: SyscallEvent, ctx: SyscallContext) -> int:
    args = _args(call, (4, 6))
    fd, _buf, length, flags = args[:4]
    if len(args) == 6 and not _is_ellipsis(args[4]):
        raise Unsupported(f"{call.name}() to an explicit address")
    return await ctx.kernel.send(
        int_value(fd, "fd"), int_value(length, "length"), int_value(flags, "flags")
    )


async def _writev(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, iov, _count = _args(call, 3)
    return await ctx.kernel.send(int_value(fd, "fd"), _iov_total(iov, "iovec"), 0)


async def _sendmsg(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, msg, flags = _args(call, 3)
    return await ctx.kernel.send(int_value(fd, "fd"), _msghdr_total(msg), int_value(flags, "flags"))


async def _read(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, _buf, length = _args(call, 3)
    return await ctx.kernel.recv(int_value(fd, "fd"), int_value(length, "length"), 0)


async def _recv(call: SyscallEvent, ctx: SyscallContext) -> int:
    args = _args(call, (4, 6))
    fd, _buf, length, flags = args[:4]
    return await ctx.kernel.recv(
        int_value(fd, "fd"), int_value(length, "length"), int_value(flags, "flags")
    )


async def _readv(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, iov, _count = _args(call, 3)
    return await ctx.kernel.recv(int_value(fd, "fd"), _iov_total(iov, "iovec"), 0)


async def _recvmsg(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, msg, flags = _args(call, 3)
    return await ctx.kernel.recv(int_value(fd, "fd"), _msghdr_total(msg), int_value(flags, "flags"))


async def _shutdown(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, how = _args(call, 2)
    await ctx.kernel.shutdown(int_value(fd, "fd"), int_value(how, "how"))
    return 0


async def _close(call: SyscallEvent, ctx: SyscallContext) -> int:
    (fd,) = _args(call, 1)
    await ctx.kernel.close(int_value(fd, "fd"))
    return 0


async def _fcntl(call: SyscallEvent, ctx: SyscallContext) -> int:
    args = _args(call, (2, 3))
    fd = int_value(args[0], "fd")
    command = int_value(args[1], "fcntl command")
    if command == _F_GETFL and len(args) == 2:
        return await ctx.kernel.get_flags(fd)
    if command == _F_SETFL and len(args) == 3:
        await ctx.kernel.set_flags(fd, int_value(args[2], "flags"))
        return 0
    raise Unsupported(f"fcntl command {args[1]}")


async def _ioctl(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, request, value = _args(call, 3)
    got = await ctx.kernel.ioctl(int_value(fd, "fd"), int_value(request, "ioctl request"))
    if not _is_ellipsis(value):
        want = int_value(value, "ioctl value")
        if got != want:
            raise ScriptFailure(
                f"ioctl {request} returned the value {got}, expected {want}",
                expected=str(call),
                actual=str(call).replace(str(value), f"[{got}]", 1),
            )
    return 0


async def _setsockopt(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd, level_expr, option_expr, value, _len = _args(call, 5)
    level = int_value(level_expr, "level")
    option = int_value(option_expr, "option")
    await ctx.kernel.setsockopt(
        int_value(fd, "fd"), level, option, _option_bytes(level, option, value)
    )
    return 0


async def _getsockopt(call: SyscallEvent, ctx: SyscallContext) -> int:
    fd_expr, level_expr, option_expr, value, _len = _args(call, 5)
    fd = int_value(fd_expr, "fd")
    level = int_value(level_expr, "level")
    option = int_value(option_expr, "option")
    if level == _IPPROTO_TCP and option == _TCP_INFO:
        info = unpack_tcp_info(await ctx.kernel.getsockopt(fd, level, option, TCP_INFO_SIZE))
        ctx.tcp_info = info
        if isinstance(value, BraceExpr):
            for name, expr in value.fields().items():
                if name not in info:
                    raise Unsupported(f"tcp_info field {name}")
                if not _is_ellipsis(expr) and info[name] != int_value(expr, name):
                    raise ScriptFailure(
                        f"getsockopt TCP_INFO: {name} is {info[name]}, expected {expr}"
                    )
        return 0
    if level == _IPPROTO_TCP and option == _TCP_CONGESTION:
        raw = await ctx.kernel.getsockopt(fd, level, option, 16)
        got_name = raw.split(b"\0", 1)[0].decode()
        if isinstance(value, StringExpr) and got_name != value.value:
            raise ScriptFailure(f'getsockopt TCP_CONGESTION is "{got_name}", expected {value}')
        return 0
    if level == _SOL_SOCKET and option == _SO_LINGER:
        onoff, linger = struct.unpack("ii", await ctx.kernel.getsockopt(fd, level, option, 8))
        if isinstance(value, BraceExpr):
            named = value.fields()
            wanted = (
                named.get("l_onoff", named.get("onoff")),
                named.get("l_linger", named.get("linger")),
            )
            for got_value, want_expr in zip((onoff, linger), wanted, strict=True):
                if (
                    want_expr is not None
                    and not _is_ellipsis(want_expr)
                    and got_value != int_value(want_expr, "linger")
                ):
                    raise ScriptFailure(
                        f"getsockopt SO_LINGER is {{{onoff}, {linger}}}, expected {value}"
                    )
        return 0
    raw = await ctx.kernel.getsockopt(fd, level, option, 4)
    got = struct.unpack("i", raw[:4].ljust(4, b"\0"))[0]
    if not _is_ellipsis(value):
        want = int_value(value, "option value")
        if got != want:
            shown = errno_name(got) if option == SYMBOLS["SO_ERROR"] and got else str(got)
            raise ScriptFailure(
                f"getsockopt {option_expr} returned the value {shown}, expected {value}",
                expected=str(call),
                actual=str(call).replace(str(value), f"[{shown}]", 1),
            )
    return 0


async def _poll(call: SyscallEvent, ctx: SyscallContext) -> int:
    fds_expr, _nfds, timeout = _args(call, 3)
    if not isinstance(fds_expr, ListExpr):
        raise Unsupported(f"poll fds {fds_expr}")
    entries: list[tuple[int, int, Expr | None]] = []
    for item in fds_expr.items:
        if not isinstance(item, BraceExpr):
            raise Unsupported(f"pollfd {item}")
        named = item.fields()
        events = named.get("events")
        entries.append(
            (
                int_value(named["fd"], "fd"),
                0 if events is None else int_value(events, "events"),
                named.get("revents"),
            )
        )
    revents = await ctx.kernel.poll(
        [(fd, ev) for fd, ev, _ in entries], int_value(timeout, "timeout")
    )
    for (fd, _events, want), got in zip(entries, revents, strict=True):
        if want is not None and not _is_ellipsis(want) and got != int_value(want, "revents"):
            raise ScriptFailure(
                f"poll: fd {fd} revents {_poll_names(got)}, expected {want}",
            )
    return sum(1 for got in revents if got)


def _poll_names(bits: int) -> str:
    names = [
        n
        for n in ("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP", "POLLNVAL", "POLLRDHUP")
        if bits & SYMBOLS.get(n, 0)
    ]
    return "|".join(names) or "0"


HANDLERS: dict[str, Handler] = {
    "socket": _socket,
    "bind": _bind,
    "listen": _listen,
    "connect": _connect,
    "accept": _accept,
    "accept4": _accept,
    "write": _write,
    "send": _send,
    "sendto": _send,
    "writev": _writev,
    "sendmsg": _sendmsg,
    "read": _read,
    "recv": _recv,
    "recvfrom": _recv,
    "readv": _readv,
    "recvmsg": _recvmsg,
    "shutdown": _shutdown,
    "close": _close,
    "fcntl": _fcntl,
    "ioctl": _ioctl,
    "setsockopt": _setsockopt,
    "getsockopt": _getsockopt,
    "poll": _poll,
}


async def run_syscall(call: SyscallEvent, ctx: SyscallContext) -> None:
    """Make the call and compare its outcome with the script's; ScriptFailure if they differ."""
    handler = HANDLERS.get(call.name)
    if handler is None:
        raise Unsupported(f"system call {call.name}()")
    if call.name == "accept4" and len(call.args) == 4:
        raise Unsupported("accept4() flags")
    try:
        result: int = await handler(call, ctx)
        error = 0
    except OSError as exc:
        if exc.errno is None:
            raise
        result, error = -1, exc.errno
    except TimeoutError:
        result, error = -1, errno.EAGAIN
    check_result(call, result, error)


def check_result(call: SyscallEvent, result: int, error: int) -> None:
    """``= N`` or ``= -1 ERRNO``: the same return value and errno."""
    expected = call.result
    actual = f"{result}" + (f" {errno_name(error)} ({_strerror(error)})" if error else "")
    want_text = f"{expected}" + (f" {call.errno}" if call.errno else "")
    if _is_ellipsis(expected):
        if error and call.errno is None:
            raise ScriptFailure(
                f"{call.name}() failed with {errno_name(error)}",
                expected=f"{call.name}(...) = {want_text}",
                actual=f"{call.name}(...) = {actual}",
            )
        return
    if isinstance(expected, (IntegerExpr, WordExpr, BitOrExpr)):
        want = int_value(expected, "result")
    else:
        raise Unsupported(f"result {expected}")
    want_errno = 0
    if call.errno is not None:
        number = symbol(call.errno)
        if number is None:
            raise Unsupported(f"errno {call.errno}")
        want_errno = number
    if want != result or (want == -1 and want_errno != error) or (want != -1 and error):
        raise ScriptFailure(
            f"{call.name}() returned {actual}, expected {want_text}",
            expected=f"{call.name}(...) = {want_text}",
            actual=f"{call.name}(...) = {actual}",
        )


def _strerror(number: int) -> str:
    import os

    return os.strerror(number)
