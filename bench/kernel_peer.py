"""The kernel side of the benchmark suite: a small program run inside a namespace.

Every benchmark needs a peer that is the Linux stack itself, driven by
plain blocking (or epoll) Python sockets, so that the only thing that
changes between a figure and its reference is the server or receiver under
test. The suite runs this file with ``ip netns exec NS python kernel_peer.py
COMMAND ...``; each command prints one JSON object per result line on
stdout (and ``ready`` when a listener is up), so the orchestrating process
can read them while the peer keeps running. It uses only the standard
library, so it runs in any namespace without aiostack.

Commands:

- ``send HOST PORT SECONDS [COUNT]``: COUNT times, connect and write as fast
  as possible for SECONDS, then close; prints bytes sent.
- ``recv HOST PORT COUNT``: listen, and for each of COUNT connections count
  the bytes until EOF; prints bytes and seconds from accept to EOF.
- ``cps HOST PORT SECONDS``: connect, send one byte, read the echo, close,
  one connection after another for SECONDS; prints connections and seconds.
- ``rtt HOST PORT ROUNDS SIZE``: one connection, ROUNDS echoes of SIZE
  bytes; prints the round-trip percentiles.
- ``hold HOST PORT COUNT INFLIGHT``: open COUNT connections (at most
  INFLIGHT handshakes at a time), print when done, then wait until every
  connection has seen the server's FIN and print that time.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is shared by every process
on the machine (network namespaces do not change it), so the orchestrator
can compare them with its own.
"""

from __future__ import annotations

import errno
import json
import resource
import select
import socket
import sys
import time

CHUNK = 1 << 20


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def send(host: str, port: int, seconds: float, count: int = 1) -> None:
    """Write for ``seconds`` on each of ``count`` connections in turn."""
    buf = memoryview(bytearray(CHUNK))
    for _ in range(count):
        s = socket.create_connection((host, port))
        total = 0
        start = time.monotonic()
        end = start + seconds
        while time.monotonic() < end:
            s.sendall(buf)
            total += CHUNK
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        emit(bytes=total, seconds=time.monotonic() - start)
        s.close()


def recv(host: str, port: int, count: int) -> None:
    """Accept ``count`` connections one after another and time each to EOF."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(16)
    print("ready", flush=True)
    buf = bytearray(CHUNK)
    for _ in range(count):
        conn, _ = listener.accept()
        start = time.monotonic()
        total = 0
        while n := conn.recv_into(buf):
            total += n
        seconds = time.monotonic() - start
        conn.close()
        emit(bytes=total, seconds=seconds)


def cps(host: str, port: int, seconds: float) -> None:
    """Connections per second, one at a time: connect, 1-byte echo, close."""
    done = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        s = socket.create_connection((host, port))
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise RuntimeError("echo server did not echo")
        s.close()
        done += 1
    emit(connections=done, seconds=time.monotonic() - start)


def rtt(host: str, port: int, rounds: int, size: int) -> None:
    """Round trips of ``size`` bytes on one connection; the first tenth warms up."""
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = b"x" * size
    warm = max(rounds // 10, 50)
    samples = []
    clock = time.perf_counter_ns
    for i in range(rounds + warm):
        t0 = clock()
        s.sendall(payload)
        got = 0
        while got < size:
            chunk = s.recv(size - got)
            if not chunk:
                raise RuntimeError("echo server closed the connection")
            got += len(chunk)
        if i >= warm:
            samples.append(clock() - t0)
    s.close()
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] / 1000

    emit(rounds=rounds, p50_us=pct(0.50), p99_us=pct(0.99), min_us=samples[0] / 1000)


def hold(host: str, port: int, count: int, inflight: int) -> None:
    """Open ``count`` connections, report, then wait for the server to close them all."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(want, hard)))
    poller = select.epoll()
    pending: dict[int, socket.socket] = {}
    established: dict[int, socket.socket] = {}
    started = 0
    t_start = time.monotonic()
    while len(established) < count:
        while started < count and len(pending) < inflight:
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            pending[s.fileno()] = s
            poller.register(s.fileno(), select.EPOLLOUT)
            started += 1
        for fd, _ in poller.poll(5.0):
            s = pending.pop(fd)
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            established[fd] = s
    emit(event="open", t_start=t_start, t_open=time.monotonic(), count=count)
    for fd in established:
        poller.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
    eof = 0
    first_fin = 0.0
    while eof < count:
        for fd, _ in poller.poll(30.0):
            if not first_fin:
                first_fin = time.monotonic()
            poller.unregister(fd)
            established[fd].close()
            eof += 1
    emit(event="eof", t_first=first_fin, t_eof=time.monotonic(), count=eof)


def main(argv: list[str]) -> None:
    command, host, port, *rest = argv
    if command == "send":
        send(host, int(port), float(rest[0]), int(rest[1]) if len(rest) > 1 else 1)
    elif command == "recv":
        recv(host, int(port), int(rest[0]))
    elif command == "cps":
        cps(host, int(port), float(rest[0]))
    elif command == "rtt":
        rtt(host, int(port), int(rest[0]), int(rest[1]))
    elif command == "hold":
        hold(host, int(port), int(rest[0]), int(rest[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
