"""``DatagramTransport`` and ``create_datagram_endpoint`` over aiostack UDP sockets.

The contract is ``asyncio.selector_events._SelectorDatagramTransport``'s:

- ``connection_made`` (scheduled), then ``datagram_received(data, addr)``
  per datagram and ``error_received(exc)`` per error, then
  ``connection_lost`` exactly once;
- a pending socket error is what ICMP reported, e.g. ``ConnectionRefusedError``
  after a port unreachable on a *connected* endpoint (Linux reports ICMP
  errors on unconnected UDP sockets only with IP_RECVERR, and so does
  aiostack); it reaches ``error_received`` and the endpoint stays open;
- ``sendto(data, addr)`` never blocks; on a connected endpoint ``addr`` must
  be None or the peer. An ``OSError`` from sending (EMSGSIZE, ENETUNREACH,
  a pending ECONNREFUSED...) goes to ``error_received`` and the datagram is
  dropped, as a kernel UDP socket drops it.

**No task.** Like :class:`~aiostack.aio.transport.TcpTransport`, the
transport hangs a readiness callback on the socket
(:attr:`~aiostack.socket.socket.Socket.on_wake`), which the stack calls once
per batch that queued datagrams or an error for it; the callback schedules
one drain of the queue for the end of that batch, in the same pass of the
loop (``Stack.call_after_batch``), at most :data:`MAX_BATCH` datagrams per
pass, for fairness. aiostack's UDP send completes or fails at
once (there is no transmit queue to wait on), so there is no write buffer:
``get_write_buffer_size()`` is always 0.
"""

from __future__ import annotations

import asyncio
import logging
import socket as _socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aiostack.aio.transport import LOG_THRESHOLD_FOR_CONNLOST_WRITES, TransportSocket, _nowait
from aiostack.socket.address import Address
from aiostack.socket.socket import Socket

if TYPE_CHECKING:
    from aiostack.stack.stack import Stack

logger = logging.getLogger("aiostack.aio")

P = TypeVar("P", bound=asyncio.BaseProtocol)

#: Datagrams delivered per loop iteration before yielding to other callbacks.
MAX_BATCH = 64
#: The largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP).
MAX_DATAGRAM = 65507

_MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)


class DatagramTransport(asyncio.DatagramTransport):
    """See the module docstring. Made by :func:`create_datagram_endpoint`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: Socket,
        protocol: asyncio.BaseProtocol,
        address: Address | None = None,
        waiter: asyncio.Future[None] | None = None,
    ) -> None:
        super().__init__({"socket": TransportSocket(sock)})
        self._extra: dict[str, Any] = {"socket": TransportSocket(sock)}
        for key, getter in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[key] = getter()
            except OSError:
                self._extra[key] = None
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._address = address
        self._closing = False
        self._conn_lost = 0
        self._reading = False
        self._scheduled = False
        self._call_after_batch = sock.stack.call_after_batch
        sock.on_wake = self._on_wake
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        state = "closed" if self._sock.closed else f"fd={self._sock.fileno()}"
        return f"<aiostack DatagramTransport {state}>"

    # -- BaseTransport ------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop receiving and release the socket; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """As :meth:`close`: a datagram socket has nothing queued to throw away."""
        self._force_close(None)

    def get_write_buffer_size(self) -> int:
        return 0

    # -- sending ------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram now; errors go to ``error_received`` (see the module docstring)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._address is not None and addr not in (None, self._address):
            raise ValueError(f"Invalid address: must be None or {self._address}")
        if self._conn_lost:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.sendto() raised exception.")
            self._conn_lost += 1
            return
        sock = self._sock
        try:
            if addr is None and self._address is not None:
                _nowait(sock.send(data, _MSG_DONTWAIT))
            else:
                _nowait(sock.sendto(data, _MSG_DONTWAIT, addr))
        except OSError as exc:
            self._error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")

    # -- receiving ----------------------------------------------------------

    def _on_wake(self) -> None:
        """The socket's hook, called by the stack mid-batch: only schedule.

        For the end of the batch when called mid-batch (``Stack.call_after_batch``),
        else for the next pass of the loop.
        """
        if not self._scheduled:
            self._scheduled = True
            self._call_after_batch(self._ready)

    def _start_reading(self) -> None:
        if self._closing:
            return
        self._reading = True
        self._on_wake()

    def _ready(self) -> None:
        """Deliver up to :data:`MAX_BATCH` datagrams or errors; reschedule if more wait."""
        self._scheduled = False
        sock = self._sock
        if not self._reading or self._closing or sock.closed:
            return
        readable = sock.ops.readable
        for _ in range(MAX_BATCH):
            if self._closing or not readable(sock):
                return
            try:
                data, addr = _nowait(sock.recvfrom(MAX_DATAGRAM, _MSG_DONTWAIT))
            except BlockingIOError:
                return
            except OSError as exc:
                self._error_received(exc)
                continue
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            if addr is None:
                return  # shut down for reading: nothing more will come
            try:
                self._protocol.datagram_received(data, addr)  # type: ignore[attr-defined]
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal error: protocol.datagram_received() call failed.")
                return
        self._on_wake()

    def _error_received(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as err:
            self._fatal_error(err, "Fatal error: protocol.error_received() call failed.")

    # -- ending -------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            exc = ConnectionAbortedError(f"transport aborted by {exc!r}")
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.on_wake = None
            self._sock.close()


async def create_datagram_endpoint(
    stack: Stack,
    protocol_factory: Callable[[], P],
    local_addr: tuple[str, int] | None = None,
    remote_addr: tuple[str, int] | None = None,
    *,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    reuse_port: bool | None = None,
    allow_broadcast: bool | None = None,
    sock: Socket | None = None,
) -> tuple[DatagramTransport, P]:
    """A UDP endpoint on ``stack``; as ``loop.create_datagram_endpoint``.

    ``local_addr`` binds, ``remote_addr`` connects (then only that peer's
    datagrams arrive, ``sendto`` needs no address, and ICMP errors are
    reported); ``reuse_port`` sets SO_REUSEPORT, ``allow_broadcast``
    SO_BROADCAST. ``sock`` is an existing aiostack datagram socket to use
    instead. Hosts are dotted quads: aiostack has no resolver.
    """
    if sock is not None:
        if sock.type != _socket.SOCK_DGRAM:
            raise ValueError(f"A datagram socket was expected, got {sock!r}")
        given = {
            "local_addr": local_addr,
            "remote_addr": remote_addr,
            "family": family,
            "proto": proto,
            "flags": flags,
            "reuse_port": reuse_port,
            "allow_broadcast": allow_broadcast,
        }
        problems = ", ".join(f"{k}={v}" for k, v in given.items() if v)
        if problems:
            raise ValueError(
                "socket modifier keyword arguments can not be used when sock is specified."
                f" ({problems})"
            )
    else:
        if family not in (0, _socket.AF_INET):
            raise ValueError(f"family: aiostack speaks IPv4 only, got {family!r}")
        if local_addr is None and remote_addr is None and not family:
            raise ValueError("unexpected address family")
        sock = stack.socket(_socket.AF_INET, _socket.SOCK_DGRAM, proto)
        try:
            if reuse_port:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
            if allow_broadcast:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_BROADCAST, 1)
            if local_addr is not None:
                sock.bind(local_addr)
            if remote_addr is not None:
                await sock.connect(remote_addr)
        except BaseException:
            sock.close()
            raise
    address: Address | None
    try:
        address = sock.getpeername()
    except OSError:
        address = None
    loop = asyncio.get_running_loop()
    try:
        protocol = protocol_factory()
    except BaseException:
        sock.close()
        raise
    waiter: asyncio.Future[None] = loop.create_future()
    transport = DatagramTransport(loop, sock, protocol, address, waiter)
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    return transport, protocol


def _set_result_unless_cancelled(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.set_result(None)
