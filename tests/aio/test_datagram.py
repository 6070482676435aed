"""``create_datagram_endpoint`` and ``DatagramTransport`` over aiostack UDP on a MemoryWire."""

from __future__ import annotations

import asyncio
import socket

import pytest

from aiostack.aio import DatagramTransport, TransportSocket, create_datagram_endpoint
from tests.aio.conftest import Net
from tests.helpers import A_IP, B_IP, TIMEOUT, eventually

PORT = 9999


class Recorder(asyncio.DatagramProtocol):
    """Keeps every callback in order, with its arguments."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.transport: DatagramTransport | None = None
        self.changed = asyncio.Event()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, DatagramTransport)
        self.transport = transport
        self.events.append(("made", None))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.events.append(("datagram", (data, addr)))
        self.changed.set()

    def error_received(self, exc: Exception) -> None:
        self.events.append(("error", exc))
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))
        self.lost.set_result(exc)

    async def wait_for(self, count: int, kind: str) -> list[object]:
        async with asyncio.timeout(TIMEOUT):
            while len(got := [a for k, a in self.events if k == kind]) < count:
                self.changed.clear()
                await self.changed.wait()
        return got


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def test_echo_unconnected_then_close(wired: Net) -> None:
    server, _ = await wired.b.create_datagram_endpoint(Echo, local_addr=("", PORT))
    transport, client = await create_datagram_endpoint(wired.a, Recorder, local_addr=(A_IP, 0))
    sockname = transport.get_extra_info("sockname")
    assert sockname[0] == A_IP and sockname[1] > 0
    assert transport.get_extra_info("peername") is None
    assert isinstance(transport.get_extra_info("socket"), TransportSocket)
    assert transport.get_write_buffer_size() == 0
    messages = [b"one", b"x" * 1472, b"y" * 20000, b""]
    for message in messages:
        transport.sendto(message, (B_IP, PORT))
    got = await client.wait_for(len(messages), "datagram")
    assert got == [(m, (B_IP, PORT)) for m in messages]
    transport.close()
    assert transport.is_closing()
    async with asyncio.timeout(TIMEOUT):
        assert await client.lost is None
    assert [k for k, _ in client.events] == ["made"] + ["datagram"] * 4 + ["lost"]
    assert transport.get_extra_info("socket").fileno() == -1
    transport.close()  # idempotent
    server.close()


async def test_connected_endpoint_and_port_unreachable(wired: Net) -> None:
    transport, client = await wired.a.create_datagram_endpoint(
        Recorder, remote_addr=(B_IP, PORT + 1)
    )
    assert transport.get_extra_info("peername") == (B_IP, PORT + 1)
    with pytest.raises(ValueError, match="Invalid address"):
        transport.sendto(b"x", (B_IP, PORT + 2))
    transport.sendto(b"nobody listens")  # ICMP port unreachable comes back
    errors = await client.wait_for(1, "error")
    assert isinstance(errors[0], ConnectionRefusedError)
    assert not transport.is_closing()
    # The endpoint lives on: a server appears and the next datagram is answered.
    server, _ = await wired.b.create_datagram_endpoint(Echo, local_addr=(B_IP, PORT + 1))
    transport.sendto(b"now", (B_IP, PORT + 1))
    assert await client.wait_for(1, "datagram") == [(b"now", (B_IP, PORT + 1))]
    transport.abort()
    async with asyncio.timeout(TIMEOUT):
        await client.lost
    server.close()


async def test_sendto_errors_go_to_error_received(wired: Net) -> None:
    transport, client = await wired.a.create_datagram_endpoint(Recorder, local_addr=(A_IP, 0))
    transport.sendto(b"z" * 70000, (B_IP, PORT))
    transport.sendto(b"z", ("203.0.113.9", PORT))  # no route off the /24
    transport.sendto(b"broadcast", ("198.18.0.255", PORT))  # SO_BROADCAST is off
    errors = [a for k, a in client.events if k == "error"]
    assert [type(e) for e in errors] == [OSError, OSError, PermissionError]
    assert [getattr(e, "errno", None) for e in errors][:2] == [90, 101]  # EMSGSIZE, ENETUNREACH
    with pytest.raises(TypeError):
        transport.sendto("text", (B_IP, PORT))  # type: ignore[arg-type]
    transport.close()


async def test_allow_broadcast_and_reuse_port(wired: Net) -> None:
    first, one = await wired.b.create_datagram_endpoint(
        Recorder, local_addr=("", PORT), reuse_port=True
    )
    second, two = await wired.b.create_datagram_endpoint(
        Recorder, local_addr=("", PORT), reuse_port=True
    )
    sock = first.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    sender, _ = await wired.a.create_datagram_endpoint(
        Recorder, local_addr=(A_IP, 0), allow_broadcast=True
    )
    assert sender.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
    sender.sendto(b"to all", ("198.18.0.255", PORT))
    await eventually(lambda: bool(one.events[1:] or two.events[1:]), what="the broadcast")
    received = [a for p in (one, two) for k, a in p.events if k == "datagram"]
    assert received[0] == (b"to all", (A_IP, sender.get_extra_info("sockname")[1]))
    for transport in (first, second, sender):
        transport.close()


async def test_argument_checks(wired: Net) -> None:
    with pytest.raises(ValueError, match="unexpected address family"):
        await create_datagram_endpoint(wired.a, Recorder)
    with pytest.raises(ValueError, match="IPv4 only"):
        await create_datagram_endpoint(wired.a, Recorder, ("", 0), family=socket.AF_INET6)
    sock = wired.a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ValueError, match="socket modifier"):
        await create_datagram_endpoint(wired.a, Recorder, ("", 0), sock=sock)
    sock.bind(("", 0))
    transport, protocol = await create_datagram_endpoint(wired.a, Recorder, sock=sock)
    assert transport.get_extra_info("sockname") == sock.getsockname()
    transport.close()
    async with asyncio.timeout(TIMEOUT):
        await protocol.lost
    stream = wired.a.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(ValueError, match="datagram socket was expected"):
        await create_datagram_endpoint(wired.a, Recorder, sock=stream)
    stream.close()
    assert wired.a.socket(socket.AF_INET, socket.SOCK_DGRAM).fileno() == 3  # nothing leaked


async def test_no_task_per_endpoint(wired: Net) -> None:
    before = len(asyncio.all_tasks())
    endpoints = [
        await wired.b.create_datagram_endpoint(Echo, local_addr=("", PORT + i)) for i in range(50)
    ]
    assert len(asyncio.all_tasks()) == before
    for transport, _ in endpoints:
        transport.close()
