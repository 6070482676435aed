"""pcap: the pure codec, PcapWriter on a device, and files that tcpdump and tshark read."""

from __future__ import annotations

import asyncio
import io
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from aiostack.link.memory import MemoryWire
from aiostack.link.pcap import PcapWriter, read_pcap
from aiostack.wire import ethernet, ipv4, pcap, udp, virtio
from aiostack.wire.errors import ParseError
from tests.link.linkhelpers import MAC_A, MAC_B, numbered, recv_all, udp_frame

# ---------------------------------------------------------------- codec


def test_global_header_layout() -> None:
    header = pcap.global_header()
    assert header == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    nano = pcap.global_header(nanosecond=True, snaplen=65535)
    assert nano[:4] == bytes.fromhex("4d3cb2a1")
    parsed = pcap.parse_global_header(nano)
    assert parsed == pcap.PcapHeader(True, 65535, pcap.LINKTYPE_ETHERNET, (2, 4), False)


def test_record_round_trip_microseconds_and_nanoseconds() -> None:
    ts = 1_700_000_000_123_456_789
    frames = [numbered(i) for i in range(3)]
    for nano, expected_ts in ((False, 1_700_000_000_123_456_000), (True, ts)):
        data = pcap.global_header(nanosecond=nano) + b"".join(
            pcap.encode_record(ts + i, f, nanosecond=nano) for i, f in enumerate(frames)
        )
        header, records = pcap.read(data)
        assert header.nanosecond is nano
        assert [r.data for r in records] == frames
        assert [r.orig_len for r in records] == [60, 60, 60]
        assert records[0].timestamp_ns == expected_ts
        assert records[0].timestamp == pytest.approx(ts / 1e9)


def test_snaplen_cuts_but_keeps_the_original_length() -> None:
    big = bytes(range(256)) * 10
    data = pcap.global_header(snaplen=100) + pcap.encode_record(0, big, snaplen=100)
    (record,) = pcap.read(data)[1]
    assert record.data == big[:100] and record.orig_len == len(big)


def test_big_endian_files_are_read() -> None:
    data = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    data += struct.pack(">IIII", 10, 5, 4, 60) + b"abcd"
    header, records = pcap.read(data)
    assert header.big_endian and not header.nanosecond
    assert records == [pcap.PcapRecord(10_000_005_000, 60, b"abcd")]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 10, "truncated"),
        (b"\x00" * 24, "bad_magic"),
        (pcap.global_header() + b"\x00" * 8, "truncated"),
        (pcap.global_header() + struct.pack("<IIII", 0, 0, 100, 100) + b"x", "truncated"),
    ],
)
def test_malformed_files(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        pcap.read(data)
    assert info.value.reason == reason


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"^snaplen:"):
        pcap.global_header(snaplen=0)
    with pytest.raises(ValueError, match=r"^timestamp_ns:"):
        pcap.record_header(-1, 0, 0)


# ---------------------------------------------------------------- PcapWriter


async def test_writer_records_both_directions(tmp_path: Path) -> None:
    path = tmp_path / "cap.pcap"
    a, b = MemoryWire.pair()
    clock_values = iter([100.0, 200.5, 300.25])
    dev = PcapWriter(a, path, clock=lambda: next(clock_values))
    async with dev, b:
        dev.send_batch([numbered(0), numbered(1)])  # one batch: one timestamp
        await recv_all(b, 2)
        b.send_batch([numbered(2, src=MAC_B, dst=MAC_A)])
        await recv_all(dev, 1)
        dev.send_batch([numbered(3)])
        await recv_all(b, 1)
    header, records = read_pcap(path)
    assert header.linktype == pcap.LINKTYPE_ETHERNET
    assert [r.data for r in records] == [
        numbered(0),
        numbered(1),
        numbered(2, src=MAC_B, dst=MAC_A),
        numbered(3),
    ]
    assert [r.timestamp_ns for r in records] == [
        100_000_000_000,
        100_000_000_000,
        200_500_000_000,
        300_250_000_000,
    ]
    assert dev.written == 4


async def test_loop_clock_timestamps_are_monotonic_wall_time(tmp_path: Path) -> None:
    path = tmp_path / "loop.pcap"
    a, b = MemoryWire.pair()
    before = time.time_ns()
    async with PcapWriter(a, path, nanosecond=True) as dev, b:
        for i in range(5):
            dev.send_batch([numbered(i)])
            await recv_all(b, 1)
    after = time.time_ns()
    header, records = read_pcap(path)
    assert header.nanosecond
    stamps = [r.timestamp_ns for r in records]
    assert stamps == sorted(stamps)
    assert before - 1_000_000 <= stamps[0] and stamps[-1] <= after + 1_000_000


async def test_writer_to_a_file_object_and_direction_filter() -> None:
    buffer = io.BytesIO()
    a, b = MemoryWire.pair()
    async with PcapWriter(a, buffer, rx=False) as dev, b:
        dev.send_batch([numbered(1)])
        await recv_all(b, 1)
        b.send_batch([numbered(2)])
        await recv_all(dev, 1)
    assert not buffer.closed  # the caller's file stays open
    assert [r.data for r in pcap.read(buffer.getvalue())[1]] == [numbered(1)]


async def test_vnet_header_is_stripped_and_partial_checksum_completed(tmp_path: Path) -> None:
    path = tmp_path / "vnet.pcap"
    a, b = MemoryWire.pair()
    a.vnet_hdr = True
    partial = udp_frame(
        dst_mac=MAC_B,
        src_mac=MAC_A,
        src="198.18.0.2",
        dst="198.18.0.1",
        sport=1000,
        dport=2000,
        payload=b"offloaded",
        vnet="partial",
    )
    plain = udp_frame(
        dst_mac=MAC_B,
        src_mac=MAC_A,
        src="198.18.0.2",
        dst="198.18.0.1",
        sport=1000,
        dport=2000,
        payload=b"complete",
        vnet="none",
    )
    async with PcapWriter(a, path) as dev, b:
        dev.send_batch([partial, plain])
        sent = await recv_all(b, 2)
    assert sent == [partial, plain]  # the device still gets the virtio headers
    records = read_pcap(path)[1]
    assert records[1].data == plain[virtio.HEADER_LEN :]
    data = records[0].data
    assert len(data) == len(partial) - virtio.HEADER_LEN
    _, l3 = ethernet.parse(data)
    ip, l4 = ipv4.parse(l3)
    hdr, payload = udp.parse(l4, ip.src, ip.dst)  # verifies the now complete checksum
    assert bytes(payload) == b"offloaded" and hdr.checksum != 0


async def test_writer_follows_the_inner_device_attributes() -> None:
    a, _ = MemoryWire.pair(mtu=9000)
    dev = PcapWriter(a, io.BytesIO())
    assert (dev.mtu, dev.name, dev.vnet_hdr, dev.stats) == (9000, a.name, False, a.stats)
    a.mtu = 1280
    assert dev.mtu == 1280


def test_bad_snaplen_is_rejected_early() -> None:
    a, _ = MemoryWire.pair()
    with pytest.raises(ValueError, match=r"^snaplen:"):
        PcapWriter(a, io.BytesIO(), snaplen=-5)


# ---------------------------------------------------------------- real tools


async def write_sample(path: Path, nanosecond: bool) -> list[bytes]:
    frames = [
        udp_frame(
            dst_mac=MAC_B,
            src_mac=MAC_A,
            src="198.18.0.2",
            dst="198.18.0.1",
            sport=40000 + i,
            dport=53,
            payload=f"datagram {i}".encode(),
        )
        for i in range(3)
    ]
    a, b = MemoryWire.pair()
    async with PcapWriter(a, path, nanosecond=nanosecond) as dev, b:
        dev.send_batch(frames)
        await recv_all(b, 3)
    return frames


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


@pytest.mark.parametrize("nanosecond", [False, True])
async def test_tcpdump_reads_the_capture(tmp_path: Path, nanosecond: bool) -> None:
    path = tmp_path / "tcpdump.pcap"
    await write_sample(path, nanosecond)
    result = await asyncio.to_thread(
        subprocess.run,
        [tool("tcpdump"), "-nn", "-e", "-r", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert "02:aa:00:00:00:01 > 02:bb:00:00:00:02" in line
        assert f"198.18.0.2.{40000 + i} > 198.18.0.1.53" in line
    assert "EN10MB" in result.stderr  # link type Ethernet


async def test_tshark_decodes_the_capture(tmp_path: Path) -> None:
    path = tmp_path / "tshark.pcap"
    frames = await write_sample(path, nanosecond=False)
    result = await asyncio.wait_for(
        asyncio.to_thread(
            subprocess.run,
            [
                tool("tshark"),
                "-r",
                str(path),
                "-T",
                "fields",
                "-e",
                "eth.src",
                "-e",
                "ip.src",
                "-e",
                "udp.srcport",
                "-e",
                "frame.len",
                "-o",
                "udp.check_checksum:TRUE",
                "-e",
                "udp.checksum.status",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        ),
        130,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert len(rows) == 3
    for i, row in enumerate(rows):
        assert row[:4] == ["02:aa:00:00:00:01", "198.18.0.2", str(40000 + i), str(len(frames[i]))]
        assert row[4] in ("1", "Good")  # checksum verified good
