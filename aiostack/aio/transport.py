"""``TcpTransport``: an :class:`asyncio.Transport` over an aiostack TCP socket.

Existing asyncio code (a ``Protocol``, ``BufferedProtocol``, or the stdlib
``StreamReaderProtocol`` behind ``StreamReader``/``StreamWriter``) runs on
aiostack unchanged if the transport keeps the contract that
``asyncio.selector_events._SelectorSocketTransport`` keeps, so this class
follows that one almost line by line:

- callbacks come in the documented order ``connection_made ->
  data_received* -> eof_received? -> connection_lost``; ``connection_made``
  and ``connection_lost`` are scheduled with ``call_soon`` and
  ``connection_lost`` runs exactly once;
- ``write()`` never blocks: it tries the socket at once and queues the
  rest; ``pause_writing`` is called synchronously as soon as the queue is
  strictly over the high-water mark, ``resume_writing`` once it is at or
  under the low-water mark (defaults 64 KiB / 16 KiB);
- ``close()`` stops reading, flushes the queue and then releases the socket
  (a FIN); ``abort()`` drops the queue and releases with SO_LINGER {1, 0}
  (an RST); ``write_eof()`` sends a FIN after the queue drains;
- an ``OSError`` from the socket ends the connection with
  ``connection_lost(exc)``; any other exception (a protocol callback that
  raised) is also reported to the loop's exception handler.

**Readiness callbacks, no task.** An aiostack socket has no OS file
descriptor to hand to ``loop.add_reader``, but it has the next best thing:
the stack calls :attr:`Socket.on_wake <aiostack.socket.socket.Socket.on_wake>`
whenever the control block changes (data or a FIN arrived, send space freed
up, an error or a reset, a state change), the way Linux calls a socket's
``sk_data_ready``/``sk_write_space``/``sk_state_change``. The transport's
hook only sets a flag and schedules one callback (coalescing every wake
of a batch into one) for the end of the batch, in the same pass of the
loop (:meth:`Stack.call_after_batch <aiostack.stack.stack.Stack.call_after_batch>`;
woken by its own socket call, on the next pass); the callback then does
what a selector transport's ``_read_ready``/``_write_ready`` do. An idle connection therefore
costs no task, no future and no loop handle: at 100,000 connections the
loop holds nothing for those that have nothing to do (DESIGN.md principle 3).
Wake-ups are edge-triggered, so after delivering data the transport checks
the socket again on the next loop iteration until it is drained (one receive
per iteration keeps connections fair, as a level-triggered selector does),
and ``resume_reading`` re-checks on its own.

**Socket calls without awaiting.** ``write()`` and friends are plain
functions, and the socket's calls are coroutines. An aiostack socket call
with ``MSG_DONTWAIT`` never suspends (it completes or raises
``BlockingIOError``; see :mod:`aiostack.socket.socket`), so :func:`_nowait`
runs such a coroutine to completion on the spot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket as _socket
import struct
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from aiostack.errors import os_error
from aiostack.socket.address import Address
from aiostack.socket.socket import Socket

if TYPE_CHECKING:
    from aiostack.aio.streams import Server

logger = logging.getLogger("aiostack.aio")

T = TypeVar("T")

#: asyncio's defaults for write flow control.
DEFAULT_HIGH_WATER = 64 * 1024
#: The most a single receive asks for (asyncio's ``max_size`` is 256 KiB).
MAX_READ = 256 * 1024
#: Queued writes are joined up to this size per socket call.
MAX_JOIN = 256 * 1024
#: asyncio's threshold for "socket.send() raised exception." warnings.
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5

_MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
_LINGER_ABORT = struct.pack("ii", 1, 0)


def _nowait(coro: Coroutine[Any, Any, T]) -> T:
    """Run a socket coroutine that must not suspend (a MSG_DONTWAIT call) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("aiostack: a MSG_DONTWAIT socket call suspended")


def _send_nowait(sock: Socket, data: bytes | memoryview) -> int:
    """``sock.send(data, MSG_DONTWAIT)`` without the coroutine that wraps the protocol's."""
    if sock.closed:
        raise os_error(errno.EBADF)
    return _nowait(sock.ops.sendmsg(sock, data, None, _MSG_DONTWAIT))


class TransportSocket:
    """What ``get_extra_info("socket")`` and ``Server.sockets`` give: a socket that cannot do I/O.

    The counterpart of ``asyncio.trsock.TransportSocket``: it lets code read
    names and set options (``TCP_NODELAY`` is the usual one) but not
    receive, send or close behind the transport's back.
    """

    __slots__ = ("_sock",)

    def __init__(self, sock: Socket) -> None:
        self._sock = sock

    @property
    def family(self) -> int:
        return self._sock.family

    @property
    def type(self) -> int:
        return self._sock.type

    @property
    def proto(self) -> int:
        return self._sock.proto

    def fileno(self) -> int:
        """The stack's descriptor number (not an OS file descriptor)."""
        return self._sock.fileno()

    def getsockname(self) -> Address:
        return self._sock.getsockname()

    def getpeername(self) -> Address:
        return self._sock.getpeername()

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> int | bytes:
        if buflen is None:
            return self._sock.getsockopt(level, option)
        return self._sock.getsockopt(level, option, buflen)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> None:
        self._sock.setsockopt(level, option, value)

    def __repr__(self) -> str:
        if self._sock.closed:
            return "<aiostack.aio.TransportSocket [closed]>"
        text = f"<aiostack.aio.TransportSocket fd={self.fileno()}"
        with contextlib.suppress(OSError):
            text += f" laddr={self.getsockname()}"
        with contextlib.suppress(OSError):
            text += f" raddr={self.getpeername()}"
        return text + ">"


class TcpTransport(asyncio.Transport):
    """See the module docstring. Made by :func:`aiostack.aio.create_connection` and servers."""

    #: ``loop.start_tls`` (the stdlib loop's) may wrap this transport; uvloop's refuses
    #: any transport it did not make, which is why :func:`aiostack.aio.start_tls` exists.
    _start_tls_compatible = True

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: Socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
        server: Server | None = None,
    ) -> None:
        super().__init__(extra)
        # The base class keeps ``extra`` as ``_extra``; typeshed does not declare it.
        self._extra: dict[str, Any] = {} if extra is None else extra
        self._loop = loop
        self._sock = sock
        # asyncio's socket transports turn Nagle off (``base_events._set_nodelay``),
        # and servers written for them (uvicorn writes headers and body apart)
        # would otherwise wait a round trip for the second write.
        with contextlib.suppress(OSError):
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self._extra["socket"] = TransportSocket(sock)
        for key, getter in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[key] = getter()
            except OSError:
                self._extra[key] = None
        self._protocol: asyncio.BaseProtocol = protocol
        self._buffered = False
        self.set_protocol(protocol)
        self._server = server
        self._buffer: collections.deque[bytes | memoryview] = collections.deque()
        self._buffer_size = 0
        #: Failed writes after the connection was lost, as asyncio counts them;
        #: non-zero also means connection_lost has been scheduled.
        self._conn_lost = 0
        self._closing = False
        self._eof = False  # write_eof() was called
        self._read_eof = False  # the peer's EOF was delivered (or reading failed)
        self._paused = False
        #: Reading starts after connection_made, as asyncio's add_reader does.
        self._reading = False
        #: A call to :meth:`_ready` is scheduled (wakes of one batch coalesce).
        self._scheduled = False
        self._protocol_paused = False
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        if server is not None:
            server._attach(self)
        self._call_after_batch = sock.stack.call_after_batch
        sock.on_wake = self._on_wake
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        if self._sock.closed:
            state = "closed"
        elif self._closing:
            state = "closing"
        else:
            state = f"fd={self._sock.fileno()}"
        if self._read_eof or self._closing:
            reading = "eof" if self._read_eof else "closed"
        else:
            reading = "paused" if self._paused else "polling"
        writing = "idle" if not self._buffer else "writing"
        return (
            f"<TcpTransport {state} read={reading} write=<{writing}, bufsize={self._buffer_size}>>"
        )

    # -- BaseTransport ------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, asyncio.BufferedProtocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, send what is queued, then release the socket (FIN) and report."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    # -- ReadTransport --------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """No more data_received until resume_reading; the receive window closes meanwhile."""
        if not self.is_reading():
            return
        self._paused = True

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        # Data may have arrived while paused (no new wake will announce it).
        self._schedule()

    # -- WriteTransport -------------------------------------------------------

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water = high
        self._low_water = low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def get_write_buffer_size(self) -> int:
        """Bytes queued in the transport (not those in the TCP send buffer)."""
        return self._buffer_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        view = memoryview(data).cast("B")
        if not self._buffer:
            try:
                sent = _send_nowait(self._sock, view)
            except BlockingIOError:
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if sent == len(view):
                return
            view = view[sent:]
        # A copy: the caller may reuse a bytearray as soon as write() returns.
        self._buffer.append(bytes(view))
        self._buffer_size += len(view)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """One write of the joined buffers (asyncio may use sendmsg; the bytes are the same)."""
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """Half-close: a FIN once the queue has drained; reading goes on."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            try:
                self._sock.shutdown(_socket.SHUT_WR)
            except OSError as exc:
                self._fatal_error(exc, "Fatal error on write_eof")

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        """Drop the queue and reset the connection (SO_LINGER {1, 0}, then close).

        After close() has already finished flushing, abort() is a no-op, as in
        asyncio: connection_lost is scheduled and the FIN is on its way.
        """
        if not self._conn_lost and not self._sock.closed:
            with contextlib.suppress(OSError):
                self._sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, _LINGER_ABORT)
        self._force_close(None)

    # -- readiness ---------------------------------------------------------------

    def _on_wake(self) -> None:
        """The socket's hook: called by the stack mid-batch, so only schedule.

        :meth:`Stack.call_after_batch <aiostack.stack.stack.Stack.call_after_batch>`
        runs :meth:`_ready` when the batch is done, in the same pass of the
        loop; woken from anywhere else (our own socket call), on the next.
        """
        if not self._scheduled:
            self._scheduled = True
            self._call_after_batch(self._ready)

    def _schedule(self) -> None:
        self._on_wake()

    def _start_reading(self) -> None:
        if self._closing:
            return
        self._reading = True
        # A loop callback (call_soon), never mid-batch: look at the socket now, so
        # data that came with the handshake reaches the protocol in this pass.
        self._ready()

    def _ready(self) -> None:
        """One readiness event: flush what can be flushed, then deliver one receive."""
        self._scheduled = False
        sock = self._sock
        if sock.closed or self._conn_lost:
            return
        if self._buffer:
            self._write_ready()
            if self._conn_lost:
                return
        if (
            self._reading
            and not self._paused
            and not self._closing
            and not self._read_eof
            and sock.ops.readable(sock)
        ):
            delivered = self._read_buffered() if self._buffered else self._read_plain()
            if delivered and not sock.closed and sock.ops.readable(sock):
                # Edge-triggered wakes: no new wake announces what is left, so look
                # again next iteration (one receive per iteration keeps things fair).
                self._schedule()

    # -- reading ---------------------------------------------------------------

    def _read_plain(self) -> bool:
        """One receive and its callback; True if data was delivered."""
        try:
            data = _nowait(self._sock.recvfrom(MAX_READ, _MSG_DONTWAIT))[0]
        except BlockingIOError:
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_eof = True
            self._fatal_error(exc, "Fatal read error on socket transport")
            return False
        if not data:
            self._read_ready_eof()
            return False
        try:
            self._protocol.data_received(data)  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
            return False
        return True

    def _read_buffered(self) -> bool:
        """As :meth:`_read_plain`, into the protocol's own buffer (``get_buffer``)."""
        protocol = self._protocol
        assert isinstance(protocol, asyncio.BufferedProtocol)
        try:
            buf = memoryview(protocol.get_buffer(-1))
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return False
        try:
            nbytes = _nowait(self._sock.recv_into(buf, 0, _MSG_DONTWAIT))
        except BlockingIOError:
            return False
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._read_eof = True
            self._fatal_error(exc, "Fatal read error on socket transport")
            return False
        if not nbytes:
            self._read_ready_eof()
            return False
        try:
            protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return False
        return True

    def _read_ready_eof(self) -> None:
        self._read_eof = True
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -- writing ----------------------------------------------------------------

    def _write_ready(self) -> None:
        """Send the queue while the TCP send buffer takes it; then FIN or close if asked."""
        sock = self._sock
        buffer = self._buffer
        while buffer:
            if len(buffer) > 1 and len(buffer[0]) < MAX_JOIN:
                self._join_head()
            head = buffer[0]
            try:
                sent = _send_nowait(sock, head)
            except BlockingIOError:
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if not sent:
                break  # the next wake (ACKs freeing space) resumes
            if sent == len(head):
                buffer.popleft()
            else:
                buffer[0] = memoryview(head)[sent:]
            self._buffer_size -= sent
            self._maybe_resume_protocol()
        if buffer:
            return
        if self._closing:
            if not self._conn_lost:
                self._conn_lost += 1
                self._call_connection_lost(None)
        elif self._eof:
            try:
                sock.shutdown(_socket.SHUT_WR)
            except OSError as exc:
                self._fatal_error(exc, "Fatal error on write_eof")

    def _join_head(self) -> None:
        """Merge small queued writes into one socket call."""
        buffer = self._buffer
        parts: list[bytes | memoryview] = []
        size = 0
        while buffer and size < MAX_JOIN:
            part = buffer.popleft()
            parts.append(part)
            size += len(part)
        buffer.appendleft(b"".join(parts))

    def _maybe_pause_protocol(self) -> None:
        if self._buffer_size <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.pause_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    def _maybe_resume_protocol(self) -> None:
        if not self._protocol_paused or self._buffer_size > self._low_water:
            return
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.resume_writing() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )

    # -- ending -------------------------------------------------------------------

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """As asyncio: OSErrors are the peer's doing (debug log); anything else is a bug."""
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            # A protocol callback raised a BaseException such as CancelledError;
            # connection_lost() is typed for Exceptions, so say what happened in one.
            exc = ConnectionAbortedError(f"transport aborted by {exc!r}")
        try:
            self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            sock.on_wake = None
            sock.close()
            server, self._server = self._server, None
            if server is not None:
                server._detach(self)


def _set_result_unless_cancelled(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.set_result(None)
