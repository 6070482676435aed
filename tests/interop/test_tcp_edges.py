"""TCP's edges against the Linux kernel: half-close, resets, refusal, keepalive, jumbo MSS, scaling.

Each test gets a fresh namespace with a TAP (kernel 198.18.0.1, stack
198.18.0.2), removed afterwards. Kernel sockets live in the namespace and
block on worker threads; waits are on events (a socket becoming readable,
data peeked, a connection dying) bounded by generous timeouts.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aiostack.socket import AF_INET, MSG_PEEK, SHUT_WR, SOCK_STREAM, Socket

from .harness import (
    TIMEOUT,
    Peer,
    Segment,
    kernel_listener,
    kernel_read_to_eof,
    kernel_snmp,
    kernel_tcp,
    max_in_flight,
    nft_drop_all,
    payload,
    read_tcp_capture,
    read_to_eof,
    sha256,
    stack_on_tap,
)

pytestmark = pytest.mark.tap

PORT = 8080


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with stack_on_tap() as peer:
        yield peer


async def stack_listener(peer: Peer, port: int = PORT) -> Socket:
    sock = peer.stack.socket(AF_INET, SOCK_STREAM)
    sock.bind(("", port))
    sock.listen(16)
    return sock


def kernel_connect(peer: Peer, port: int = PORT, timeout: float = TIMEOUT) -> socket.socket:
    sock = kernel_tcp(peer.ns, timeout)
    sock.connect((peer.spec.stack_ip, port))
    return sock


# ---------------------------------------------------------------------- half-close


async def test_stack_half_closes_and_still_receives(peer: Peer) -> None:
    """The stack sends its request and FIN; the kernel, in CLOSE_WAIT, answers 1 MB, then FIN."""
    listener = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT))
    answer = payload(1 << 20, 10)

    def serve() -> bytes:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TIMEOUT)
            request = kernel_read_to_eof(conn)  # our FIN arrived...
            conn.sendall(answer)  # ...and the kernel may still send
            return request

    client = peer.stack.socket(AF_INET, SOCK_STREAM)
    try:
        async with asyncio.timeout(TIMEOUT):
            served = asyncio.ensure_future(asyncio.to_thread(serve))
            await client.connect((peer.spec.kernel_ip, PORT))
            await client.sendall(b"request then FIN")
            client.shutdown(SHUT_WR)
            got = await read_to_eof(client)
            assert await served == b"request then FIN"
        assert sha256(got) == sha256(answer)
    finally:
        client.close()
        listener.close()


async def test_kernel_half_closes_and_still_receives(peer: Peer) -> None:
    """The kernel sends and half-closes; the stack reads EOF, answers 1 MB, then closes."""
    listener = await stack_listener(peer)
    answer = payload(1 << 20, 11)

    def client() -> bytes:
        sock = kernel_connect(peer)
        with sock:
            sock.sendall(b"request then FIN")
            sock.shutdown(socket.SHUT_WR)
            return kernel_read_to_eof(sock)

    try:
        async with asyncio.timeout(TIMEOUT):
            got = asyncio.ensure_future(asyncio.to_thread(client))
            conn, _ = await listener.accept()
            assert await read_to_eof(conn) == b"request then FIN"
            await conn.sendall(answer)
            conn.close()
            assert sha256(await got) == sha256(answer)
    finally:
        listener.close()


# ---------------------------------------------------------------------- resets


async def test_kernel_close_with_unread_data_resets_the_stack(peer: Peer) -> None:
    """Linux closes with our bytes unread: it sends RST (RFC 2525 2.17) and our recv sees it."""
    listener = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT))
    before = await kernel_snmp(peer.ns)

    def close_unread() -> None:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        # Wait until all of it is queued, unread, then close.
        assert len(conn.recv(1000, socket.MSG_PEEK | socket.MSG_WAITALL)) == 1000
        conn.close()

    client = peer.stack.socket(AF_INET, SOCK_STREAM)
    try:
        async with asyncio.timeout(TIMEOUT):
            closed = asyncio.ensure_future(asyncio.to_thread(close_unread))
            await client.connect((peer.spec.kernel_ip, PORT))
            await client.sendall(bytes(1000))
            await closed
            with pytest.raises(ConnectionResetError):
                await client.recv(100)
    finally:
        client.close()
        listener.close()
    after = await kernel_snmp(peer.ns)
    assert after["TcpExtTCPAbortOnClose"] == before["TcpExtTCPAbortOnClose"] + 1
    assert peer.stack.statistics()["mib"]["TcpEstabResets"] == 1


async def test_stack_close_with_unread_data_resets_the_kernel(peer: Peer) -> None:
    """The stack closes with the kernel's bytes unread: it must send RST, as Linux does."""
    listener = await stack_listener(peer)

    def client() -> int | None:
        sock = kernel_connect(peer)
        with sock:
            sock.sendall(bytes(100))  # one segment
            try:
                data = sock.recv(100)
            except ConnectionResetError as exc:
                return exc.errno
            raise AssertionError(f"recv returned {data!r} instead of a reset")

    try:
        async with asyncio.timeout(TIMEOUT):
            result = asyncio.ensure_future(asyncio.to_thread(client))
            conn, _ = await listener.accept()
            assert len(await conn.recv(100, MSG_PEEK)) == 100  # arrived, and left unread
            conn.close()
            assert await result == errno.ECONNRESET
    finally:
        listener.close()
    mib = peer.stack.statistics()["mib"]
    assert mib["TcpExtTCPAbortOnClose"] == 1
    assert mib["TcpOutRsts"] >= 1


async def test_kernel_connect_to_closed_stack_port_is_refused(peer: Peer) -> None:
    """The stack answers a SYN to a closed port with RST; the kernel reports ECONNREFUSED.

    (The stack connecting to a closed kernel port is in test_kernel_tcp.py.)
    """
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(kernel_connect, peer, 9)
    assert peer.stack.statistics()["mib"]["TcpOutRsts"] == 1


# ---------------------------------------------------------------------- keepalive


def _short_keepalive(sock: socket.socket | Socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)


async def test_keepalive_detects_a_vanished_peer_both_ways(peer: Peer) -> None:
    """Keepalive (idle 1 s, interval 1 s, 2 probes) on both ends; then nftables cuts the link.

    Before the cut the probes are answered and the idle connections live on;
    after it each end gives up with ETIMEDOUT, about 3 s later (bound: 60 s).
    """
    listener = await stack_listener(peer)
    kernel = await asyncio.to_thread(kernel_connect, peer)  # kernel probes the stack
    conn, _ = await listener.accept()
    _short_keepalive(kernel)
    client = peer.stack.socket(AF_INET, SOCK_STREAM)  # the stack probes the kernel
    _short_keepalive(client)
    kernel_server = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT + 1))
    try:
        async with asyncio.timeout(TIMEOUT):
            accepted = asyncio.ensure_future(asyncio.to_thread(kernel_server.accept))
            await client.connect((peer.spec.kernel_ip, PORT + 1))
            kernel_conn, _ = await accepted
            # While the link is up, probes are answered and keep both connections
            # alive: let each end send more probes than KEEPCNT, checking twice a
            # second (a pending peek would end with the error of a dead connection).
            while (
                peer.stack.statistics()["mib"]["TcpExtTCPKeepAlive"] < 3
                or (await kernel_snmp(peer.ns))["TcpExtTCPKeepAlive"] < 3
            ):
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await client.recv(1, MSG_PEEK)
            kernel.setblocking(False)  # (a timeout-mode socket would poll, blocking the loop)
            with pytest.raises(BlockingIOError):  # alive, nothing to read
                kernel.recv(1)
            await nft_drop_all(peer.ns)
            start = time.perf_counter()

            def kernel_waits() -> int:
                kernel.settimeout(TIMEOUT)
                try:
                    data = kernel.recv(1)
                except OSError as exc:
                    return exc.errno or 0
                raise AssertionError(f"kernel recv returned {data!r}")

            kernel_died = asyncio.ensure_future(asyncio.to_thread(kernel_waits))
            with pytest.raises(TimeoutError) as info:
                await client.recv(1)
            assert info.value.errno == errno.ETIMEDOUT
            assert await kernel_died == errno.ETIMEDOUT
            elapsed = time.perf_counter() - start
        kernel_conn.close()
    finally:
        client.close()
        conn.close()
        listener.close()
        kernel.close()
        kernel_server.close()
    assert elapsed < 30
    # Linux counts a keepalive death as an abort on timeout (tcp_write_err).
    assert (await kernel_snmp(peer.ns))["TcpExtTCPAbortOnTimeout"] == 1


# ---------------------------------------------------------------------- MTU 9000


async def test_mtu_9000_negotiates_a_jumbo_mss(tmp_path: Path) -> None:
    """On a 9000-byte link both ends offer MSS 8960 in their SYNs and send 8948-byte segments.

    Checked on a capture of the stack's frames, decoded by the test's own
    parser, for a connection in each direction, each carrying 1 MB each way.
    """
    capture = tmp_path / "jumbo.pcap"
    async with stack_on_tap(mtu=9000, offload=False, pcap=capture) as peer:
        assert peer.stack.device.mtu == 9000
        data = payload(1 << 20, 12)
        listener = await stack_listener(peer)
        kernel_server = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT))

        def kernel_side(sock: socket.socket) -> tuple[bytes, int]:
            sock.settimeout(TIMEOUT)
            got = kernel_read_to_eof(sock)
            mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)  # while connected
            sock.sendall(got)
            sock.shutdown(socket.SHUT_WR)
            sock.close()
            return got, mss

        def kernel_client() -> tuple[bytes, int]:
            sock = kernel_connect(peer)
            sock.sendall(data)
            mss = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)  # while connected
            sock.shutdown(socket.SHUT_WR)
            got = kernel_read_to_eof(sock)
            sock.close()
            return got, mss

        def kernel_accept() -> tuple[bytes, int]:
            conn, _ = kernel_server.accept()
            return kernel_side(conn)

        client = peer.stack.socket(AF_INET, SOCK_STREAM)
        try:
            async with asyncio.timeout(TIMEOUT):
                # Kernel -> stack connection: the stack echoes.
                from_kernel = asyncio.ensure_future(asyncio.to_thread(kernel_client))
                conn, _ = await listener.accept()
                # Read while connected: once closed, Linux and aiostack say 536.
                stack_mss_1 = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
                echoed = await read_to_eof(conn)
                await conn.sendall(echoed)
                conn.shutdown(SHUT_WR)
                got, kernel_mss_1 = await from_kernel
                assert sha256(got) == sha256(data)
                conn.close()
                # Stack -> kernel connection: the kernel echoes.
                served = asyncio.ensure_future(asyncio.to_thread(kernel_accept))
                await client.connect((peer.spec.kernel_ip, PORT))
                stack_mss_2 = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
                await client.sendall(data)
                client.shutdown(SHUT_WR)
                assert sha256(await read_to_eof(client)) == sha256(data)
                _, kernel_mss_2 = await served
        finally:
            client.close()
            listener.close()
            kernel_server.close()
    segments = read_tcp_capture(capture)
    syns = [s for s in segments if s.flags & 0x02]
    assert len(syns) == 4, syns  # SYN and SYN-ACK of each connection
    assert all(s.mss_option() == 8960 for s in syns), [(s.src, s.mss_option()) for s in syns]
    # MSS 8960 = 9000 - 20 (IP) - 20 (TCP); with timestamps 12 bytes less per segment.
    assert (stack_mss_1, stack_mss_2) == (8948, 8948)
    assert (kernel_mss_1, kernel_mss_2) == (8948, 8948), syns
    sent = [s.length for s in segments if s.src[0] == peer.spec.stack_ip]
    received = [s.length for s in segments if s.src[0] == peer.spec.kernel_ip]
    # Full-sized jumbo segments really went both ways, and none beyond the MSS.
    assert max(sent) == 8948
    assert max(received) == 8948
    assert max(s.frame_len for s in segments) <= 9014


# ---------------------------------------------------------------------- window scaling

#: One-way delay the fault injector adds to every frame the stack sends: RTT >= 20 ms.
DELAY = 0.020
#: What one unscaled window can carry in one round trip.
UNSCALED = 65535


def _wscale(sock: socket.socket | Socket) -> tuple[int, int]:
    """(snd_wscale, rcv_wscale) from TCP_INFO: byte 6 holds them, send scale in the low nibble."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    (byte,) = struct.unpack_from("B", info, 6)
    return byte & 0x0F, byte >> 4


async def test_window_scaled_transfer_over_20ms_keeps_more_than_64k_in_flight(
    tmp_path: Path,
) -> None:
    """4 MB each way over a 20 ms round trip: both senders need (and use) a window > 64 KiB.

    Window scaling is negotiated (TCP_INFO on both ends), and the capture
    at the stack shows more than 65,535 bytes unacknowledged at once in each
    direction: the stack's own flight when it sends, and a lower bound of the
    kernel's flight when the kernel sends. Bound: 60 s per direction.
    """
    capture = tmp_path / "scaled.pcap"
    size = 4 << 20
    async with stack_on_tap(faults=True, pcap=capture) as peer:
        # Default buffers: only auto-tuning (tcp_sndbuf_expand, tcp_rcv_space_adjust)
        # lets the 16 KiB send buffer and 128 KiB receive buffer grow to this.
        peer.faults.tx.delay = DELAY
        up, down = payload(size, 13), payload(size, 14)
        server = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT))
        rates: list[float] = []

        def serve() -> tuple[str, tuple[int, int]]:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                got = kernel_read_to_eof(conn)
                conn.sendall(down)
                conn.shutdown(socket.SHUT_WR)
                return sha256(got), _wscale(conn)

        client = peer.stack.socket(AF_INET, SOCK_STREAM)
        try:
            async with asyncio.timeout(2 * TIMEOUT):
                served = asyncio.ensure_future(asyncio.to_thread(serve))
                await client.connect((peer.spec.kernel_ip, PORT))
                stack_addr = client.getsockname()
                stack_scales = _wscale(client)
                start = time.perf_counter()
                await client.sendall(up)
                client.shutdown(SHUT_WR)
                first = await client.recv(1 << 20)  # the kernel answers once it has it all
                rates.append(size / (time.perf_counter() - start))
                start = time.perf_counter()
                rest = await read_to_eof(client)
                rates.append(size / (time.perf_counter() - start))
                up_digest, kernel_scales = await served
        finally:
            client.close()
            server.close()
    assert up_digest == sha256(up)
    assert sha256(first + rest) == sha256(down)
    assert min(stack_scales) > 0 and min(kernel_scales) > 0, (stack_scales, kernel_scales)
    # What the stack sends is scaled by what the kernel asked for, and vice versa.
    assert stack_scales == kernel_scales[::-1]
    segments = read_tcp_capture(capture)
    kernel_addr = (peer.spec.kernel_ip, PORT)
    up_flight = max_in_flight(segments, (peer.spec.stack_ip, stack_addr[1]))
    down_flight = max_in_flight(segments, kernel_addr, ack_delay=DELAY)
    print(
        f"\n20 ms RTT: up {rates[0] / 1e6:.1f} MB/s (flight {up_flight}), "
        f"down {rates[1] / 1e6:.1f} MB/s (flight >= {down_flight})"
    )
    assert up_flight > UNSCALED
    assert down_flight > UNSCALED


def test_capture_parser_reads_mss(tmp_path: Path) -> None:
    """The capture decoder this file relies on finds an MSS option among others."""
    # NOP NOP MSS=8960 SACK-permitted NOP NOP EOL EOL
    options = bytes([1, 1, 2, 4, 0x23, 0x00, 4, 2, 1, 1, 0, 0])
    tcp = struct.pack("!HHIIHHHH", 1, 2, 5, 0, (5 + len(options) // 4) << 12 | 0x02, 0, 0, 0)
    total = 20 + len(tcp) + len(options)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 6, 0, b"\1" * 4, b"\2" * 4)
    frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + options + b"\0\0"  # Ethernet padding
    path = tmp_path / "one.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    (segment,) = read_tcp_capture(path)
    assert segment.mss_option() == 8960
    assert segment.src == ("1.1.1.1", 1) and segment.length == 0


def test_max_in_flight_counts_only_acknowledgements_the_sender_can_have_seen() -> None:
    """Data at t=1.0 ends at 3000; the ACK of 2000 left at 0.995 and takes 0.02 s to arrive."""
    sender, receiver = ("1.1.1.1", 1), ("2.2.2.2", 2)

    def seg(src: tuple[str, int], seq: int, ack: int, length: int, at: float) -> Segment:
        return Segment(
            src, receiver if src == sender else sender, seq, ack, 0x10, 0, b"", length, 0, at
        )

    segments = [
        seg(sender, 0, 0, 1000, 0.90),
        seg(sender, 1000, 0, 1000, 0.95),
        seg(receiver, 0, 1000, 0, 0.96),
        seg(receiver, 0, 2000, 0, 0.995),
        seg(sender, 2000, 0, 1000, 1.00),
    ]
    assert max_in_flight(segments, sender) == 1000  # ACK 2000 counted at once
    assert max_in_flight(segments, sender, ack_delay=0.02) == 2000  # only ACK 1000 known
    assert max_in_flight(segments, sender, ack_delay=0.2) == 0  # no ACK known yet: no bound
