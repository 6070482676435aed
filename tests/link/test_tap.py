"""TapDevice against the real kernel, in a namespace the test creates.

The kernel is the peer: it sends ARP, UDP, ICMP and TCP to the device, and
kernel sockets inside the namespace receive what the device sends.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aiostack.link import netlink
from aiostack.link.base import DeviceClosed
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.pcap import PcapWriter, read_pcap
from aiostack.link.tap import TapDevice
from aiostack.testing.netns import NetNamespace, TapNamespace, TapSpec, require_tap, unique_name
from aiostack.wire import arp, ethernet, ipv4, tcp, udp, virtio
from tests.link.linkhelpers import TIMEOUT, arp_packet, icmp_echo_reply, recv_until, udp_frame

pytestmark = pytest.mark.tap

KERNEL_PORT = 5000
STACK_PORT = 6000


@pytest.fixture
def spec() -> Iterator[TapSpec]:
    require_tap()
    with TapNamespace() as made:
        yield made


@pytest.fixture
def spec_static() -> Iterator[TapSpec]:
    """A TAP whose kernel side has a permanent ARP entry for the stack."""
    require_tap()
    with TapNamespace(static_neighbor=True) as made:
        yield made


def kernel_udp(spec: TapSpec) -> socket.socket:
    sock = spec.namespace.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((spec.kernel_ip, KERNEL_PORT))
    sock.settimeout(TIMEOUT)
    return sock


def strip(data: bytes, vnet: bool) -> tuple[virtio.VnetHeader | None, memoryview]:
    if not vnet:
        return None, memoryview(data)
    return virtio.parse(data)


def is_arp_request_for(ip: str, vnet: bool = False) -> Callable[[bytes], bool]:
    def match(data: bytes) -> bool:
        _, frame = strip(data, vnet)
        eth, payload = ethernet.parse(frame)
        if eth.ethertype != ethernet.EtherType.ARP:
            return False
        packet = arp.parse(payload)
        return packet.op == arp.ArpOp.REQUEST and packet.target_ip == ipv4.addr(ip)

    return match


def is_udp_to(port: int, vnet: bool = False) -> Callable[[bytes], bool]:
    def match(data: bytes) -> bool:
        _, frame = strip(data, vnet)
        eth, payload = ethernet.parse(frame)
        if eth.ethertype != ethernet.EtherType.IPV4:
            return False
        ip, l4 = ipv4.parse(payload)
        return ip.proto == udp.PROTO and struct.unpack_from("!H", l4, 2)[0] == port

    return match


def answer_arp(tap: TapDevice, request: bytes, spec: TapSpec) -> None:
    packet = arp.parse(ethernet.parse(request)[1])
    tap.send_batch(
        [
            arp_packet(
                arp.ArpOp.REPLY,
                spec.stack_mac,
                spec.stack_ip,
                packet.sender_mac,
                spec.kernel_ip,
                dst=packet.sender_mac,
            )
        ]
    )


def to_kernel(spec: TapSpec, payload: bytes, vnet: str | None = None) -> bytes:
    return udp_frame(
        dst_mac=spec.kernel_mac,
        src_mac=spec.stack_mac,
        src=spec.stack_ip,
        dst=spec.kernel_ip,
        sport=STACK_PORT,
        dport=KERNEL_PORT,
        payload=payload,
        vnet=vnet,
    )


async def kernel_recv(sock: socket.socket) -> tuple[bytes, tuple[str, int]]:
    data, addr = await asyncio.to_thread(sock.recvfrom, 65536)
    return data, addr


# ---------------------------------------------------------------- plain frames


async def test_kernel_arp_request_reaches_the_device(spec: TapSpec) -> None:
    async with spec.device() as tap, asyncio.timeout(TIMEOUT):
        assert tap.mtu == 1500 and not tap.vnet_hdr and tap.link is not None
        assert tap.link.mac == spec.kernel_mac
        with kernel_udp(spec) as sock:
            sock.sendto(b"who is there", (spec.stack_ip, STACK_PORT))
            request = await recv_until(tap, is_arp_request_for(spec.stack_ip))
        eth, payload = ethernet.parse(request)
        packet = arp.parse(payload)
        assert eth.dst == ethernet.BROADCAST and eth.src == spec.kernel_mac
        assert packet.sender_ip == ipv4.addr(spec.kernel_ip)
        assert packet.sender_mac == spec.kernel_mac
        assert tap.stats.rx_frames >= 1 and tap.stats.rx_bytes >= 42


async def test_udp_both_ways_after_answering_arp(spec: TapSpec) -> None:
    async with spec.device() as tap:
        with kernel_udp(spec) as sock:
            sock.sendto(b"ping over udp", (spec.stack_ip, STACK_PORT))
            request = await recv_until(tap, is_arp_request_for(spec.stack_ip))
            answer_arp(tap, request, spec)
            datagram = await recv_until(tap, is_udp_to(STACK_PORT))
            eth, l3 = ethernet.parse(datagram)
            assert eth.dst == spec.stack_mac
            ip, l4 = ipv4.parse(l3)
            header, payload = udp.parse(l4, ip.src, ip.dst)  # the kernel computed the checksum
            assert bytes(payload) == b"ping over udp" and header.dst_port == STACK_PORT

            tap.send_batch([to_kernel(spec, b"pong over udp")])
            data, addr = await asyncio.wait_for(kernel_recv(sock), TIMEOUT)
        assert data == b"pong over udp" and addr == (spec.stack_ip, STACK_PORT)
        assert tap.stats.tx_frames == 2 and tap.stats.drops == {}


async def test_kernel_pings_the_device(spec: TapSpec) -> None:
    async with spec.device() as tap:

        async def responder() -> None:
            while True:
                for data in await tap.recv_batch():
                    if is_arp_request_for(spec.stack_ip)(data):
                        answer_arp(tap, data, spec)
                    elif (reply := icmp_echo_reply(data, spec.stack_mac)) is not None:
                        tap.send_batch([reply])

        task = asyncio.ensure_future(responder())
        try:
            result = await spec.namespace.run_async(
                "ping", "-n", "-c", "3", "-i", "0.2", "-W", "5", spec.stack_ip, timeout=30
            )
        finally:
            task.cancel()
            await asyncio.wait({task})
        assert result.returncode == 0, result.stdout + result.stderr
        assert b"3 received" in result.stdout


async def test_static_neighbour_needs_no_arp(spec_static: TapSpec) -> None:
    spec = spec_static
    async with spec.device() as tap:
        with kernel_udp(spec) as sock:
            sock.sendto(b"direct", (spec.stack_ip, STACK_PORT))
            frames = await asyncio.wait_for(tap.recv_batch(), TIMEOUT)
    eth, _ = ethernet.parse(frames[0])
    assert eth.ethertype == ethernet.EtherType.IPV4 and eth.dst == spec.stack_mac


async def test_each_wakeup_drains_up_to_max_batch(spec_static: TapSpec) -> None:
    spec = spec_static
    async with spec.device(max_batch=16) as tap:
        assert tap.max_batch == 16
        with kernel_udp(spec) as sock:
            for i in range(300):
                sock.sendto(struct.pack("!I", i), (spec.stack_ip, STACK_PORT))
            # All 300 are queued on the TAP before the first read.
            sizes: list[int] = []
            numbers: list[int] = []
            while len(numbers) < 300:
                batch = await asyncio.wait_for(tap.recv_batch(), TIMEOUT)
                sizes.append(len(batch))
                for data in batch:
                    if is_udp_to(STACK_PORT)(data):
                        numbers.append(struct.unpack_from("!I", data, 42)[0])
        assert numbers == list(range(300))
        assert max(sizes) == 16 and sizes[0] == 16


async def test_a_created_tap_queues_a_burst_larger_than_linux_default(
    spec_static: TapSpec,
) -> None:
    # The kernel's queue towards the device is txqueuelen frames (1000 by
    # default); a TAP aiostack creates holds netlink.TAP_TXQUEUELEN, so a burst
    # three times Linux's default waits for the reader instead of being dropped.
    spec = spec_static
    burst = 3000
    assert burst < netlink.TAP_TXQUEUELEN
    async with spec.device(max_batch=256) as tap:
        with kernel_udp(spec) as sock:
            for i in range(burst):
                sock.sendto(struct.pack("!I", i), (spec.stack_ip, STACK_PORT))
            numbers: list[int] = []
            while len(numbers) < burst:
                batch = await asyncio.wait_for(tap.recv_batch(), TIMEOUT)
                for data in batch:
                    if is_udp_to(STACK_PORT)(data):
                        numbers.append(struct.unpack_from("!I", data, 42)[0])
        assert numbers == list(range(burst))


async def test_mtu_is_enforced_on_send(spec: TapSpec) -> None:
    async with spec.device() as tap:
        assert tap.mtu == 1500
        dst, src = spec.kernel_mac, spec.stack_mac
        fits = dst + src + b"\x88\xb5" + bytes(1500)
        oversize = fits + b"x"
        tagged = dst + src + b"\x81\x00\x00\x07\x88\xb5" + bytes(1500)
        runt = bytes(10)
        tap.send_batch([fits, oversize, tagged, tagged + b"x", runt])
        assert tap.stats.tx_frames == 2
        assert tap.stats.drops == {"oversize": 2, "runt": 1}


async def test_mtu_is_read_from_the_kernel() -> None:
    require_tap()
    with TapNamespace(mtu=9000) as spec:
        async with spec.device() as tap:
            assert tap.mtu == 9000
            jumbo = spec.kernel_mac + spec.stack_mac + b"\x88\xb5" + bytes(9000)
            tap.send_batch([jumbo, jumbo + b"x"])
            assert tap.stats.tx_frames == 1 and tap.stats.drops == {"oversize": 1}


# ---------------------------------------------------------------- offloads


async def test_offload_kernel_udp_arrives_with_a_virtio_header(spec_static: TapSpec) -> None:
    spec = spec_static
    async with spec.device(offload=True) as tap:
        assert tap.vnet_hdr and tap.tso
        with kernel_udp(spec) as sock:
            sock.sendto(b"offloaded datagram", (spec.stack_ip, STACK_PORT))
            data = await recv_until(tap, is_udp_to(STACK_PORT, vnet=True))
    header, frame = virtio.parse(data)
    assert header.checksum_trusted
    _, l3 = ethernet.parse(frame)
    ip, l4 = ipv4.parse(l3)
    if header.needs_csum:
        assert (header.csum_start, header.csum_offset) == (34, virtio.CSUM_OFFSET_UDP)
    _, payload = udp.parse(l4, ip.src, ip.dst, verify_checksum=False)
    assert bytes(payload) == b"offloaded datagram"
    assert tap.stats.rx_bytes == len(frame)  # counted without the virtio header


@pytest.mark.parametrize("form", ["partial", "zero", "none"])
async def test_offload_kernel_accepts_frames_we_leave_to_it(spec: TapSpec, form: str) -> None:
    async with spec.device(offload=True) as tap:
        with kernel_udp(spec) as sock:
            tap.send_batch([to_kernel(spec, f"checksum {form}".encode(), vnet=form)])
            data, addr = await asyncio.wait_for(kernel_recv(sock), TIMEOUT)
        assert data == f"checksum {form}".encode() and addr == (spec.stack_ip, STACK_PORT)
        assert tap.stats.drops == {}


async def test_offload_tcp_superframes_arrive_whole(spec_static: TapSpec) -> None:
    """With TSO negotiated the kernel hands over TCP data larger than the MTU in one read."""
    spec = spec_static
    stack, kernel = ipv4.addr(spec.stack_ip), ipv4.addr(spec.kernel_ip)
    port = 7777
    async with spec.device(offload=True) as tap:
        client = spec.namespace.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.settimeout(TIMEOUT)

        def tcp_of(data: bytes) -> tuple[virtio.VnetHeader, tcp.TcpHeader, memoryview] | None:
            header, frame = virtio.parse(data)
            eth, l3 = ethernet.parse(frame)
            if eth.ethertype != ethernet.EtherType.IPV4:
                return None
            ip, l4 = ipv4.parse(l3)
            if ip.proto != tcp.PROTO:
                return None
            seg, payload = tcp.parse(l4, ip.src, ip.dst, verify_checksum=False)
            return header, seg, payload

        def reply(seq: int, ack: int, flags: int, options: bytes = b"") -> bytes:
            hlen = tcp.HEADER_LEN + len(options)
            buf = bytearray(virtio.HEADER_LEN + 14 + 20 + hlen)
            ethernet.emit_into(buf, 10, spec.kernel_mac, spec.stack_mac, ethernet.EtherType.IPV4)
            ipv4.emit_into(buf, 24, src=stack, dst=kernel, proto=tcp.PROTO, payload_len=hlen)
            tcp.emit_into(
                buf,
                44,
                src_port=port,
                dst_port=seg.src_port,
                seq=seq,
                ack=ack,
                flags=flags,
                window=65535,
                options=options,
                payload_len=0,
                src=stack,
                dst=kernel,
            )
            return bytes(buf)

        connecting = asyncio.ensure_future(asyncio.to_thread(client.connect, (spec.stack_ip, port)))
        try:
            async with asyncio.timeout(TIMEOUT):
                syn = None
                while syn is None:
                    for data in await tap.recv_batch():
                        parsed = tcp_of(data)
                        if parsed and parsed[1].flags & tcp.TcpFlags.SYN:
                            syn = parsed
                _, seg, _ = syn
                isn = 1000
                tap.send_batch(
                    [
                        reply(
                            isn,
                            seg.seq + 1,
                            tcp.TcpFlags.SYN | tcp.TcpFlags.ACK,
                            tcp.encode_options(mss=1460),
                        )
                    ]
                )
                await connecting
                sending = asyncio.ensure_future(asyncio.to_thread(client.sendall, bytes(60000)))
                biggest = 0
                gso = None
                while gso is None:
                    for data in await tap.recv_batch():
                        parsed = tcp_of(data)
                        if parsed is None or not len(parsed[2]):
                            continue
                        biggest = max(biggest, len(data))
                        if parsed[0].is_gso:
                            gso = parsed
                            gso_len = len(data)
        finally:
            client.close()
            await asyncio.wait({connecting})
        header, _, payload = gso
        assert header.gso_type & ~virtio.GSO_ECN == virtio.GSO_TCPV4
        assert header.gso_size == 1460
        assert gso_len > tap.mtu + 14 + virtio.HEADER_LEN
        assert len(payload) > header.gso_size
        await asyncio.wait({sending})


async def test_offload_flags_are_reset_when_reattached_without(spec_static: TapSpec) -> None:
    spec = spec_static
    with kernel_udp(spec) as sock:
        async with spec.device(offload=True) as tap:
            sock.sendto(b"first", (spec.stack_ip, STACK_PORT))
            data = await recv_until(tap, is_udp_to(STACK_PORT, vnet=True))
            assert virtio.parse(data)[0].checksum_trusted
        async with spec.device() as tap:
            sock.sendto(b"second", (spec.stack_ip, STACK_PORT))
            data = await recv_until(tap, is_udp_to(STACK_PORT))
    # No virtio header any more, and a checksum the kernel really computed.
    eth, l3 = ethernet.parse(data)
    assert eth.dst == spec.stack_mac
    ip, l4 = ipv4.parse(l3)
    header, payload = udp.parse(l4, ip.src, ip.dst)
    assert bytes(payload) == b"second" and header.checksum != 0


# ---------------------------------------------------------------- lifecycle and errors


async def test_close_semantics(spec: TapSpec) -> None:
    tap = spec.device()
    await tap.open()
    waiting = asyncio.ensure_future(tap.recv_batch())
    await asyncio.sleep(0)
    await tap.aclose()
    with pytest.raises(DeviceClosed):
        await asyncio.wait_for(waiting, TIMEOUT)
    with pytest.raises(DeviceClosed):
        tap.send_batch([bytes(60)])
    with pytest.raises(DeviceClosed):
        await tap.recv_batch()
    await tap.aclose()  # idempotent
    assert tap.fileno == -1
    # Attached, not created: the TAP is still there, and can be opened again.
    assert netlink.link_exists(spec.name, netns=spec.netns)
    with pytest.raises(DeviceClosed):
        await tap.open()
    async with spec.device() as again:
        assert again.fileno >= 0


async def test_create_makes_and_close_deletes_the_tap() -> None:
    require_tap()
    async with NetNamespace() as ns:
        tap = TapDevice.create(
            "aiocreate0",
            netns=ns.name,
            mtu=4000,
            kernel_mac="02:00:00:00:00:11",
            kernel_address="198.18.0.1/24",
        )
        assert not netlink.link_exists("aiocreate0", netns=ns.name)
        async with tap:
            assert tap.created and tap.mtu == 4000
            assert tap.link is not None and tap.link.mac_str == "02:00:00:00:00:11"
            addrs = (await ns.run_async("ip", "-o", "-4", "addr", check=True)).stdout
            assert b"198.18.0.1/24" in addrs
        assert not tap.created
        assert not netlink.link_exists("aiocreate0", netns=ns.name)


async def test_cancelled_open_leaves_nothing_behind() -> None:
    require_tap()
    async with NetNamespace() as ns:
        tap = TapDevice.create("aiocancel0", netns=ns.name)
        opening = asyncio.ensure_future(tap.open())
        await asyncio.sleep(0)  # let it start the worker thread
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert not netlink.link_exists("aiocancel0", netns=ns.name)
        assert tap.fileno == -1 and not tap.created


async def test_create_validates_arguments_before_any_io() -> None:
    with pytest.raises(ValueError, match=r"^address:"):
        TapDevice.create("aiobad0", kernel_address="10.0.0.1")
    with pytest.raises(ValueError, match=r"^mac:"):
        TapDevice.create("aiobad0", kernel_mac="ff:ff:ff:ff:ff:ff")
    with pytest.raises(ValueError, match=r"^mtu:"):
        TapDevice.create("aiobad0", mtu=10)
    with pytest.raises(ValueError, match=r"^name:"):
        TapDevice.attach("this-name-is-too-long")
    with pytest.raises(ValueError, match=r"^max_batch:"):
        TapDevice.attach("aiobad0", max_batch=0)


async def test_attach_errors(spec: TapSpec) -> None:
    with pytest.raises(OSError, match="create it first") as missing:
        await TapDevice.attach("aionone0", netns=spec.netns).open()
    assert missing.value.errno == errno.ENODEV

    with pytest.raises(FileNotFoundError, match="does not exist"):
        await TapDevice.attach(spec.name, netns=unique_name("aiostk")).open()

    with pytest.raises(OSError, match="is not a TAP device") as not_tap:
        await TapDevice.attach("lo", netns=spec.netns).open()
    assert not_tap.value.errno == errno.EINVAL

    async with spec.device():
        with pytest.raises(OSError, match="attached by another process") as busy:
            await spec.device().open()
        assert busy.value.errno == errno.EBUSY

    with pytest.raises(FileExistsError, match="already in use"):
        await TapDevice.create(spec.name, netns=spec.netns).open()
    assert netlink.link_exists(spec.name, netns=spec.netns)  # the failed create left it alone


async def test_tap_deleted_under_the_device(spec: TapSpec) -> None:
    async with spec.device() as tap:
        waiting = asyncio.ensure_future(tap.recv_batch())
        await asyncio.sleep(0)
        await asyncio.to_thread(netlink.delete_link, spec.name, netns=spec.netns)
        with pytest.raises(DeviceClosed, match="went away"):
            await asyncio.wait_for(waiting, TIMEOUT)
        with pytest.raises(DeviceClosed):
            tap.send_batch([bytes(60)])


# ---------------------------------------------------------------- wrappers on a TAP


async def test_pcap_of_an_offloaded_tap(spec_static: TapSpec, tmp_path: Path) -> None:
    spec = spec_static
    path = tmp_path / "tap.pcap"
    async with PcapWriter(spec.device(offload=True), path) as dev:
        assert dev.vnet_hdr and dev.mtu == 1500
        with kernel_udp(spec) as sock:
            sock.sendto(b"captured", (spec.stack_ip, STACK_PORT))
            await recv_until(dev, is_udp_to(STACK_PORT, vnet=True))
            dev.send_batch([to_kernel(spec, b"sent back", vnet="partial")])
            await asyncio.wait_for(kernel_recv(sock), TIMEOUT)
    records = read_pcap(path)[1]
    payloads = []
    for record in records:
        eth, l3 = ethernet.parse(record.data)
        if eth.ethertype != ethernet.EtherType.IPV4:
            continue
        ip, l4 = ipv4.parse(l3)
        if ip.proto == udp.PROTO:
            payloads.append(bytes(udp.parse(l4, ip.src, ip.dst)[1]))  # checksums complete
    assert payloads == [b"captured", b"sent back"]


async def test_fault_injector_on_a_tap(spec: TapSpec) -> None:
    async with FaultInjector(spec.device(), tx=FaultConfig(duplicate=1.0), seed=1) as dev:
        with kernel_udp(spec) as sock:
            dev.send_batch([to_kernel(spec, b"twice")])
            first = await asyncio.wait_for(kernel_recv(sock), TIMEOUT)
            second = await asyncio.wait_for(kernel_recv(sock), TIMEOUT)
        assert first[0] == second[0] == b"twice"
        assert dev.tx_stats.duplicated == 1 and dev.stats.tx_frames == 2


async def test_receiver_takes_batches_in_the_readiness_callback(spec_static: TapSpec) -> None:
    """With a receiver and a parked reader, frames go to the receiver; the reader stays parked."""
    spec = spec_static
    async with spec.device(max_batch=16) as tap:
        got: list[int] = []
        sizes: list[int] = []
        done = asyncio.Event()

        def receiver(batch: list[bytes]) -> None:
            sizes.append(len(batch))
            for data in batch:
                if is_udp_to(STACK_PORT)(data):
                    got.append(struct.unpack_from("!I", data, 42)[0])
            if len(got) == 100:
                done.set()

        assert tap.set_receiver(receiver) is True
        reader = asyncio.create_task(tap.recv_batch())
        await asyncio.sleep(0)  # the reader parks: the device has nothing yet
        with kernel_udp(spec) as sock:
            for i in range(100):
                sock.sendto(struct.pack("!I", i), (spec.stack_ip, STACK_PORT))
            await asyncio.wait_for(done.wait(), TIMEOUT)
        assert got == list(range(100))  # in order, none lost
        assert max(sizes) <= 16  # still one bounded batch per readiness event
        assert not reader.done()  # nothing was handed to the parked reader
    # Closing the device fails the parked reader, as without a receiver.
    with pytest.raises(DeviceClosed):
        await asyncio.wait_for(reader, TIMEOUT)


async def test_poll_batch_takes_what_is_queued_without_waiting(spec_static: TapSpec) -> None:
    """The timer task's look at waiting input: frames already queued, in order, bounded."""
    spec = spec_static
    async with spec.device(max_batch=16) as tap:
        got: list[int] = []
        sizes: list[int] = []
        loop = asyncio.get_running_loop()
        with kernel_udp(spec) as sock:
            for i in range(100):
                sock.sendto(struct.pack("!I", i), (spec.stack_ip, STACK_PORT))
            deadline = loop.time() + TIMEOUT
            while len(got) < 100 and loop.time() < deadline:
                batch = tap.poll_batch()
                assert batch is not None
                if not batch:  # the kernel has not queued the rest yet: look again
                    await asyncio.sleep(0.001)
                    continue
                sizes.append(len(batch))
                for data in batch:
                    if is_udp_to(STACK_PORT)(data):
                        got.append(struct.unpack_from("!I", data, 42)[0])
        assert got == list(range(100))  # in order, none lost
        assert max(sizes) == 16  # never more than max_batch at once
        assert tap.stats.rx_frames >= 100
    assert tap.poll_batch() is None  # closed: nothing to tell
