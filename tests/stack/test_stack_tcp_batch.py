"""Per-batch TCP receive work in the shell: checksums in one pass, GRO merging."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from typing import Any

from aiostack.core.ipv4 import Datagram
from aiostack.link.memory import MemoryWire
from aiostack.socket import AF_INET, SOCK_STREAM
from aiostack.stack.l4 import TransportTask
from aiostack.stack.stack import Stack
from aiostack.wire import tcp
from aiostack.wire.checksum import ones_sum, ones_sums
from aiostack.wire.ipv4 import addr
from tests.helpers import A_IP, B_IP, MAC_A, MAC_B, TIMEOUT

PORT = 7200


def test_ones_sums_matches_ones_sum() -> None:
    rng = random.Random(5)
    for _ in range(200):
        sizes = [
            rng.choice((1, 2, 3, 4, 5, 20, 1459, 1460, rng.randrange(1, 4000))) for _ in range(9)
        ]
        buffers = [memoryview(rng.randbytes(n)) for n in sizes]
        buffers.append(memoryview(bytes(40)))  # all zeros: sum 0
        buffers.append(memoryview(b"\xff" * 40))  # all ones: 0xFFFF
        buffers.append(memoryview(bytearray(b"x" + rng.randbytes(99)))[1:])  # unaligned
        assert ones_sums(buffers) == [ones_sum(b) for b in buffers]


def _segment(seq: int, payload: bytes, *, corrupt: bool = False) -> Datagram:
    buf = bytearray(tcp.HEADER_LEN + len(payload))
    buf[tcp.HEADER_LEN :] = payload
    src, dst = addr(A_IP), addr(B_IP)
    tcp.emit_into(
        buf,
        0,
        src_port=1000,
        dst_port=PORT,
        seq=seq,
        ack=1,
        flags=tcp.ACK,
        window=100,
        payload_len=len(payload),
        src=src,
        dst=dst,
    )
    if corrupt:
        buf[-1] ^= 0x40
    view = memoryview(bytes(buf))
    return Datagram(None, view, view, False, False, src=src, dst=dst, proto=tcp.PROTO)


async def test_verify_batch_marks_good_segments_and_leaves_bad_ones_to_be_counted() -> None:
    a_end, _b_end = MemoryWire.pair()
    stack = Stack(a_end, address=f"{B_IP}/24", mac=MAC_B, seed=1)
    async with stack:
        batch: list[Any] = [
            _segment(i * 1460, os.urandom(1460 - i), corrupt=i == 3) for i in range(8)
        ]
        stack.tcp.verify_batch(batch)
        assert [d.csum_ok for d in batch] == [i != 3 for i in range(8)]
        # Through the transport task: the bad one is counted as a checksum error.
        TransportTask(stack).receive(batch)
        mib = stack.statistics()["mib"]
        assert mib["TcpInCsumErrors"] == 1
        assert mib["TcpInErrs"] == 1


async def test_gro_merges_bursts_and_the_data_survives() -> None:
    a_end, b_end = MemoryWire.pair(mtu=1500, queue_len=4096)
    a = Stack(a_end, address=f"{A_IP}/24", mac=MAC_A, seed=1)
    b = Stack(b_end, address=f"{B_IP}/24", mac=MAC_B, seed=2)
    data = os.urandom(4 << 20)
    async with a, b:
        listener = b.socket(AF_INET, SOCK_STREAM)
        listener.bind(("", PORT))
        listener.listen(1)
        client = a.socket(AF_INET, SOCK_STREAM)
        got = hashlib.sha256()
        async with asyncio.timeout(TIMEOUT * 3):
            await client.connect((B_IP, PORT))
            server, _ = await listener.accept()
            conn = server.protocol_state.conn
            assert conn is not None

            async def write() -> None:
                await client.sendall(data)
                client.close()

            writer = asyncio.ensure_future(write())
            while chunk := await server.recv(1 << 20):
                got.update(chunk)
            await writer
        assert got.digest() == hashlib.sha256(data).digest()
        in_segs = b.statistics()["mib"]["TcpInSegs"]
        # Every wire segment is counted (as Linux counts GRO packets), but the
        # connection's input ran far fewer times.
        assert in_segs >= len(data) // 1448
        assert conn.segs_in < in_segs // 2, (conn.segs_in, in_segs)
        assert b.statistics()["drops"] == {}


async def test_gro_off_feeds_every_segment_to_the_core() -> None:
    a_end, b_end = MemoryWire.pair(mtu=1500, queue_len=4096)
    a = Stack(a_end, address=f"{A_IP}/24", mac=MAC_A, seed=1)
    b = Stack(b_end, address=f"{B_IP}/24", mac=MAC_B, seed=2)
    data = os.urandom(1 << 20)
    async with a, b:
        b.tcp.gro = False
        listener = b.socket(AF_INET, SOCK_STREAM)
        listener.bind(("", PORT))
        listener.listen(1)
        client = a.socket(AF_INET, SOCK_STREAM)
        got = bytearray()
        async with asyncio.timeout(TIMEOUT * 3):
            await client.connect((B_IP, PORT))
            server, _ = await listener.accept()
            writer = asyncio.ensure_future(client.sendall(data))
            while len(got) < len(data):
                got += await server.recv(1 << 20)
            await writer
        assert bytes(got) == data
        segs = b.statistics()["mib"]["TcpInSegs"]
        assert segs >= len(data) // 1448
        conn = server.protocol_state.conn
        assert conn is not None and conn.segs_in >= segs - 2  # the handshake went to the listener
