"""The control socket of ``aiostack up``: a unix stream socket speaking JSON lines.

A client writes one request per line, a JSON object with an ``op``; the
server answers with one or more JSON lines, the last of which has
``"type": "result"`` (with ``"data"``) or ``"type": "error"`` (with
``"error"``, a message). Operations:

``{"op": "info"}``
    what the ready line says: TAP, namespace, addresses, services, pid.
``{"op": "ss"}``
    every TCP and UDP socket of the stack (:func:`socket_table`).
``{"op": "stats"}``
    :meth:`Stack.statistics` (SNMP MIB counters, drops by reason, device).
``{"op": "ping", "host": H, "count": N, "size": S, "interval": I, "timeout": T}``
    the stack pings ``H``; one ``{"type": "reply" | "timeout" | "error", "seq": n,
    ...}`` line per probe as it completes, then the result.

Where the socket lives: ``--control PATH``, else ``$AIOSTACK_CONTROL``,
else ``up-PID.sock`` in the first usable directory of
:func:`runtime_dirs` (``/run/aiostack`` for root, then
``$XDG_RUNTIME_DIR/aiostack``, then ``/tmp/aiostack-UID``), mode 0700. The
clients (``aiostack ss``/``stats``/``ping``) look in the same directories
and use the one socket whose ``aiostack up`` is still alive, so with one
``aiostack up`` running no option is needed; with none or several they
say so and list what they found.

The table is read straight from the stack's TCP demultiplexer, listeners
and UDP port table, and TCP_INFO from :func:`aiostack.core.tcp.info.tcp_info`:
read-only, on the loop thread, between two batches, so it is consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiostack.core.tcp.info import tcp_info
from aiostack.core.tcp.state import TcpState
from aiostack.wire import ipv4

if TYPE_CHECKING:
    from aiostack.core.tcp.connection import TcpConnection
    from aiostack.core.tcp.listener import TcpListener
    from aiostack.stack.stack import Stack

log = logging.getLogger("aiostack.control")

ENV_CONTROL = "AIOSTACK_CONTROL"
#: Longest request line the server reads.
MAX_REQUEST = 4096
#: Most probes one ping request may ask for.
MAX_PING_COUNT = 100_000
_SOCKET_NAME = re.compile(r"up-(\d+)\.sock\Z")

#: ``ss`` state names by TCP state.
SS_STATES = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECV: "SYN-RECV",
    TcpState.FIN_WAIT1: "FIN-WAIT-1",
    TcpState.FIN_WAIT2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSE: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
}


# ---------------------------------------------------------------- where sockets live


def runtime_dirs() -> list[Path]:
    """Directories for control sockets, in order of preference."""
    dirs = []
    if os.geteuid() == 0:
        dirs.append(Path("/run/aiostack"))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(Path(xdg) / "aiostack")
    dirs.append(Path(f"/tmp/aiostack-{os.getuid()}"))
    return dirs


def default_control_path(pid: int | None = None) -> Path:
    """Where a new ``aiostack up`` puts its socket (creating the directory, mode 0700)."""
    name = f"up-{os.getpid() if pid is None else pid}.sock"
    env = os.environ.get(ENV_CONTROL)
    if env:
        return Path(env)
    last_error: OSError | None = None
    for directory in runtime_dirs():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            last_error = exc
            continue
        if os.access(directory, os.W_OK | os.X_OK):
            return directory / name
    raise OSError(errno.EACCES, f"no usable directory for the control socket ({last_error})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_sockets(dirs: list[Path] | None = None) -> list[Path]:
    """Control sockets of ``aiostack up`` processes that are still alive."""
    found = []
    for directory in runtime_dirs() if dirs is None else dirs:
        with contextlib.suppress(OSError):
            for entry in sorted(directory.iterdir()):
                match = _SOCKET_NAME.match(entry.name)
                if match and entry.is_socket() and _alive(int(match.group(1))):
                    found.append(entry)
    return found


def find_control(explicit: str | None, dirs: list[Path] | None = None) -> Path:
    """The socket to talk to: ``explicit``, ``$AIOSTACK_CONTROL``, or the only one running.

    Raises LookupError with a message for the user when there is no
    obvious choice.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONTROL)
    if env:
        return Path(env)
    found = running_sockets(dirs)
    if len(found) == 1:
        return found[0]
    if not found:
        raise LookupError("no 'aiostack up' is running (or give its socket with --control PATH)")
    listing = ", ".join(str(p) for p in found)
    raise LookupError(f"several 'aiostack up' are running; choose with --control: {listing}")


# ---------------------------------------------------------------- what the stack holds


def _endpoint(addr: int, port: int) -> str:
    host = "*" if addr == 0 else ipv4.addr_str(addr)
    return f"{host}:{port if port else '*'}"


def _tcp_row(conn: TcpConnection, now: float) -> dict[str, Any]:
    info: dict[str, Any] = dict(tcp_info(conn, now).as_dict())
    info["cc"] = conn.cc.name
    return {
        "netid": "tcp",
        "state": SS_STATES.get(conn.state, conn.state.name),
        "recv_q": len(conn.rcvbuf),
        "send_q": len(conn.sndbuf),
        "local": _endpoint(conn.local_addr, conn.local_port),
        "peer": _endpoint(conn.remote_addr, conn.remote_port),
        "info": info,
    }


def socket_table(stack: Stack) -> list[dict[str, Any]]:
    """Every TCP listener and connection and every UDP socket, like ``ss -tuan``.

    Recv-Q/Send-Q mean what ``ss`` shows: for a listener the accept queue's
    length and the backlog; for a connection the bytes not yet read by the
    application and the bytes not yet acknowledged by the peer; for UDP the
    receive queue's memory charge.
    """
    now = stack.now()
    rows: list[dict[str, Any]] = []
    demux = stack.tcp.demux
    # Every member of an SO_REUSEPORT group is a listening socket of its own, with
    # its own accept queue; ``demux.listeners`` holds only each group's first.
    listeners: list[TcpListener] = [
        member for group in demux.reuseport_groups.values() for member in group
    ]
    for listener in listeners:
        rows.append(
            {
                "netid": "tcp",
                "state": "LISTEN",
                "recv_q": len(listener.accept_queue),
                "send_q": listener.backlog,
                "local": _endpoint(listener.local_addr, listener.local_port),
                "peer": "*:*",
            }
        )
    seen: set[int] = set()
    conns = list(demux.connections.values())
    for listener in listeners:
        conns.extend(listener.syn_queue.values())
    for conn in conns:
        if id(conn) in seen or conn.state is TcpState.CLOSE:
            continue
        seen.add(id(conn))
        rows.append(_tcp_row(conn, now))
    for port, endpoints in stack.udp.ports.items():
        for ep in endpoints:
            rows.append(
                {
                    "netid": "udp",
                    "state": "ESTAB" if ep.connected else "UNCONN",
                    "recv_q": ep.rmem,
                    "send_q": 0,
                    "local": _endpoint(ep.bound_addr, port),
                    "peer": _endpoint(ep.remote_addr, ep.remote_port),
                }
            )
    return rows


# ---------------------------------------------------------------- the server

Emit = Callable[[Mapping[str, Any]], Awaitable[None]]


class ControlServer:
    """Serve the protocol above for ``stack`` on a unix socket at ``path``."""

    def __init__(self, stack: Stack, path: Path, info: Mapping[str, Any]) -> None:
        self.stack = stack
        self.path = path
        self.info = dict(info)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (a stale socket file at the path, left by a dead process, is replaced)."""
        if self.path.is_socket():
            try:
                _reader, writer = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                self.path.unlink()  # nobody listens: left behind by a process that died
            else:
                writer.close()
                raise OSError(errno.EADDRINUSE, f"{self.path}: another process is serving it")
        self._server = await asyncio.start_unix_server(
            self._client, path=str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o600)

    async def aclose(self) -> None:
        """Stop listening, end the clients, remove the socket file."""
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)

        async def emit(message: Mapping[str, Any]) -> None:
            writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            await writer.drain()

        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("request: not a JSON object")
                    data = await self.dispatch(request, emit)
                except (ValueError, OSError, TimeoutError) as exc:
                    await emit({"type": "error", "error": str(exc) or type(exc).__name__})
                except (ConnectionError, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a bug: answer it, log it, keep serving
                    log.exception("control: %r failed", request)
                    await emit({"type": "error", "error": f"internal error: {exc!r}"})
                else:
                    await emit({"type": "result", "data": data})
        except (ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # Only aclose() cancels a client. Ending normally keeps the cancellation
            # away from asyncio's stream callback, which reports cancelled handlers.
            pass
        except Exception:
            log.exception("control: client failed")
        finally:
            self._clients.discard(task)
            writer.close()

    async def dispatch(self, request: Mapping[str, Any], emit: Emit) -> Any:
        op = request.get("op")
        if op == "info":
            return self.info
        if op == "ss":
            return socket_table(self.stack)
        if op == "stats":
            return self.stack.statistics()
        if op == "ping":
            return await self._ping(request, emit)
        raise ValueError(f"op: {op!r} is not one of info, ss, stats, ping")

    async def _ping(self, request: Mapping[str, Any], emit: Emit) -> dict[str, Any]:
        host = request.get("host")
        if not isinstance(host, str):
            raise ValueError("host: missing or not a string")
        ipv4.addr(host)  # ValueError for a bad address, before anything is sent
        count = _int(request, "count", 1, 1, MAX_PING_COUNT)
        size = _int(request, "size", 56, 0, 65507 - 8)
        interval = _number(request, "interval", 1.0, 0.001)
        timeout = _number(request, "timeout", 2.0, 0.001)
        payload = bytes(i & 0xFF for i in range(size))
        loop = asyncio.get_running_loop()
        transmitted = received = 0
        start = loop.time()
        for seq in range(1, count + 1):
            sent_at = loop.time()
            transmitted += 1
            try:
                rtt = await self.stack.ping(host, payload=payload, timeout=timeout)
            except TimeoutError:
                await emit({"type": "timeout", "seq": seq})
            except OSError as exc:
                await emit({"type": "error", "seq": seq, "errno": exc.errno, "error": exc.strerror})
            else:
                received += 1
                await emit({"type": "reply", "seq": seq, "bytes": size + 8, "rtt": rtt})
            if seq < count:
                await asyncio.sleep(max(0.0, sent_at + interval - loop.time()))
        return {
            "host": host,
            "transmitted": transmitted,
            "received": received,
            "time": loop.time() - start,
        }


def _int(request: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: {value!r} is not an integer in {low}..{high}")
    return value


def _number(request: Mapping[str, Any], name: str, default: float, low: float) -> float:
    value = request.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise ValueError(f"{name}: {value!r} is not a number >= {low}")
    return float(value)


# ---------------------------------------------------------------- the client


class ControlError(Exception):
    """The server answered with an error."""


async def request(path: Path, message: Mapping[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
    """Send ``message``; yield every answer line, the final result or error included."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 24)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ConnectionError(f"{path}: no 'aiostack up' answers there ({exc.strerror})") from exc
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        while line := await reader.readline():
            answer = json.loads(line)
            yield answer
            if answer.get("type") in ("result", "error"):
                return
        raise ConnectionError(f"{path}: the server closed the connection without an answer")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def call(path: Path, message: Mapping[str, Any]) -> Any:
    """One request, one result (``ControlError`` if the server answered with an error)."""
    async for answer in request(path, message):
        if answer["type"] == "error":
            raise ControlError(answer["error"])
        if answer["type"] == "result":
            return answer["data"]
    raise ConnectionError(f"{path}: no answer")
