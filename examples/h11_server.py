"""An HTTP/1.1 server and client built on h11, over aiostack streams only. No root needed.

h11 is a sans-I/O HTTP/1.1 library: it turns bytes into events and events
into bytes, and leaves the I/O to its caller. Here the I/O is aiostack's
``StreamReader``/``StreamWriter`` on two stacks on an in-memory wire: the
server on 198.18.0.2 answers ``GET /hello`` and echoes ``POST /echo``
bodies (chunked, as h11 sends a body of unknown length), the client on
198.18.0.1 makes three requests on one keep-alive connection.

    python examples/h11_server.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11

from aiostack import MemoryWire, Stack

PORT = 8080
MAX_RECV = 65536


async def next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    """The next h11 event, reading from the stream whenever h11 needs more bytes."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(MAX_RECV))


def send(conn: h11.Connection, writer: asyncio.StreamWriter, *events: Any) -> None:
    for event in events:
        data = conn.send(event)
        if data:
            writer.write(data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One connection: requests until the client closes (or h11 says it must end)."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = await next_event(conn, reader)
            if isinstance(event, h11.ConnectionClosed):
                break
            assert isinstance(event, h11.Request)
            body = bytearray()
            while not isinstance(part := await next_event(conn, reader), h11.EndOfMessage):
                body += part.data
            if event.target == b"/hello":
                status, payload = 200, b"Hello from h11 on aiostack\n"
            elif event.target == b"/echo" and event.method == b"POST":
                status, payload = 200, bytes(body)
            else:
                status, payload = 404, b"not found\n"
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))]
            send(
                conn,
                writer,
                h11.Response(status_code=status, headers=headers),
                h11.Data(data=payload),
                h11.EndOfMessage(),
            )
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    finally:
        writer.close()
        await writer.wait_closed()


async def request(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    target: str,
    body: bytes | None = None,
) -> tuple[int, bytes]:
    headers = [("Host", "198.18.0.2")]
    if body is not None:
        headers.append(("Transfer-Encoding", "chunked"))
    send(conn, writer, h11.Request(method=method, target=target, headers=headers))
    if body is not None:
        for start in range(0, len(body), 16384):
            send(conn, writer, h11.Data(data=body[start : start + 16384]))
    send(conn, writer, h11.EndOfMessage())
    await writer.drain()
    response = await next_event(conn, reader)
    assert isinstance(response, h11.Response)
    received = bytearray()
    while not isinstance(part := await next_event(conn, reader), h11.EndOfMessage):
        received += part.data
    conn.start_next_cycle()
    return response.status_code, bytes(received)


async def main() -> None:
    left_dev, right_dev = MemoryWire.pair()
    async with (
        Stack(left_dev, address="198.18.0.1/24") as left,
        Stack(right_dev, address="198.18.0.2/24") as right,
        await right.start_server(handle, "", PORT) as server,
    ):
        reader, writer = await left.open_connection("198.18.0.2", PORT)
        conn = h11.Connection(h11.CLIENT)
        status, body = await request(conn, reader, writer, "GET", "/hello")
        print(f"GET /hello -> {status} {body!r}")
        payload = bytes(range(256)) * 400
        status, body = await request(conn, reader, writer, "POST", "/echo", payload)
        print(f"POST /echo ({len(payload)} bytes, chunked) -> {status}, same: {body == payload}")
        status, body = await request(conn, reader, writer, "GET", "/missing")
        print(f"GET /missing -> {status}")
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
