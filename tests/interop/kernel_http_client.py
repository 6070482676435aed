"""An HTTP/1.1 load client on the kernel's sockets, for the interop tests.

Run inside the test's namespace::

    python -u kernel_http_client.py HOST PORT sequential|concurrent COUNT SIZE

``sequential`` makes COUNT connections one after another, each fetching
``/bytes/SIZE`` with ``Connection: close`` and reading to EOF. ``concurrent``
opens COUNT connections, waits until every one is established (so they
really are open at the same time), then fetches ``/bytes/SIZE`` on each at
once. Every body is checked against the server's pattern (byte ``i`` is
``i % 251``). Prints one JSON line: how many fetches were correct, how many
distinct local ports were used, and the first failures. Standard library
only: this is the kernel-side reference client, not aiostack code.
"""

from __future__ import annotations

import asyncio
import json
import sys

PERIOD = 251


def expected(size: int) -> bytes:
    return (bytes(range(PERIOD)) * (size // PERIOD + 1))[:size]


async def fetch(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, size: int, close: bool
) -> bytes:
    connection = "close" if close else "keep-alive"
    writer.write(
        f"GET /bytes/{size} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"status {status!r}")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length != size:
        raise RuntimeError(f"Content-Length {length} for /bytes/{size}")
    return await reader.readexactly(size)


async def sequential(host: str, port: int, count: int, size: int) -> dict[str, object]:
    want = expected(size)
    ok, ports, errors = 0, set(), []
    for i in range(count):
        try:
            reader, writer = await asyncio.open_connection(host, port)
            ports.add(writer.get_extra_info("sockname")[1])
            body = await fetch(reader, writer, host, size, close=True)
            if await reader.read() != b"":  # the server closes after the response
                raise RuntimeError("data after the body")
            writer.close()
            await writer.wait_closed()
            if body == want:
                ok += 1
            else:
                errors.append(f"{i}: wrong body")
        except Exception as exc:  # reported, and counted as a failure
            errors.append(f"{i}: {exc!r}")
    return {"ok": ok, "ports": len(ports), "errors": errors[:5]}


async def concurrent(host: str, port: int, count: int, size: int) -> dict[str, object]:
    want = expected(size)
    connections = await asyncio.gather(
        *(asyncio.open_connection(host, port) for _ in range(count)), return_exceptions=True
    )
    opened = [c for c in connections if not isinstance(c, BaseException)]
    errors = [repr(c) for c in connections if isinstance(c, BaseException)]
    ports = {writer.get_extra_info("sockname")[1] for _, writer in opened}

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            return await fetch(reader, writer, host, size, close=False) == want
        finally:
            writer.close()
            await writer.wait_closed()

    results = await asyncio.gather(*(one(r, w) for r, w in opened), return_exceptions=True)
    errors += [repr(r) for r in results if isinstance(r, BaseException)]
    ok = sum(1 for r in results if r is True)
    return {"ok": ok, "ports": len(ports), "errors": errors[:5]}


def main() -> None:
    host, port, mode, count, size = sys.argv[1:6]
    run = {"sequential": sequential, "concurrent": concurrent}[mode]
    print(json.dumps(asyncio.run(run(host, int(port), int(count), int(size)))), flush=True)


if __name__ == "__main__":
    main()
