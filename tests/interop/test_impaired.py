"""Transfers with Linux over impaired links: loss, delay, reordering, duplication, corruption.

The impairments come from aiostack's :class:`FaultInjector` wrapping the
stack's TAP (frames the stack receives and sends) and, for loss, also
from nftables' ``numgen random`` on the kernel's input inside the
namespace (this kernel has no ``tc netem``): with loss ``p`` each data
direction loses ``p`` of its packets, the kernel-to-stack direction in the
injector and the stack-to-kernel direction in the kernel's firewall.

The TAP runs without virtio-net offloads (but for one corruption case), so
every frame is one wire-sized segment: the percentages mean what they would
on a wire (with offloads one "frame" can be a 64 KB super-frame, and 1 % of
a hundred frames is one event), and both ends verify every checksum in
software.

Each test opens one connection (the handshake runs impaired too) and moves
``SIZE`` bytes each way at once, which must arrive identical (SHA-256)
within ``BOUND`` seconds: generous, about ten times what a loaded 2-core
machine needs for the slowest case (5 % loss). Corrupted frames must be
caught by the IPv4/TCP checksums on whichever end receives them: besides
the identical bytes, the test checks both ends counted checksum errors.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from aiostack.link.fault import FaultConfig
from aiostack.socket import AF_INET, SHUT_WR, SOCK_STREAM

from .harness import (
    Peer,
    hash_to_eof,
    kernel_listener,
    kernel_read_to_eof,
    kernel_send_then_shut,
    kernel_snmp,
    nft_counter,
    nft_random_drop,
    payload,
    sha256,
    stack_on_tap,
)

pytestmark = pytest.mark.tap

SIZE = 1 << 20
#: Seconds allowed for the whole exchange (connect, SIZE each way, close) under any impairment.
BOUND = 120.0
PORT = 9000


@dataclass(frozen=True)
class Impairment:
    #: Applied by the injector to frames the stack receives / sends.
    rx: FaultConfig
    tx: FaultConfig
    #: Percentage of TCP packets the kernel drops on input (nftables), 0 for none.
    kernel_drop: int = 0
    #: What must show that the impairment really happened, given the injector's stats
    #: (loss: checked with the firewall's counter too). Expected counts are in the
    #: tens, so a check on one direction alone would sometimes see none.
    happened: Callable[[Peer], bool] = lambda peer: True
    #: Run with virtio-net offloads (GSO super-frames both ways) instead of plain frames.
    offload: bool = False


def _both(text: str) -> tuple[FaultConfig, FaultConfig]:
    return FaultConfig.parse(text), FaultConfig.parse(text)


IMPAIRMENTS = {
    "loss-1%": Impairment(
        FaultConfig(loss=0.01),
        FaultConfig(),
        kernel_drop=1,
    ),
    "loss-5%": Impairment(
        FaultConfig(loss=0.05),
        FaultConfig(),
        kernel_drop=5,
    ),
    "delay-20ms~5ms": Impairment(
        *_both("delay=20ms~5ms"),
        happened=lambda peer: peer.faults.rx_stats.delayed > 0 and peer.faults.tx_stats.delayed > 0,
    ),
    "reorder-25%": Impairment(
        *_both("reorder=25%"),
        happened=lambda peer: (
            peer.faults.rx_stats.reordered > 0 and peer.faults.tx_stats.reordered > 0
        ),
    ),
    "duplicate-5%": Impairment(
        *_both("dup=5%"),
        happened=lambda peer: (
            peer.faults.rx_stats.duplicated > 0 and peer.faults.tx_stats.duplicated > 0
        ),
    ),
    "corrupt-1%": Impairment(
        *_both("corrupt=1%"),
        happened=lambda peer: (
            peer.faults.rx_stats.corrupted > 0 and peer.faults.tx_stats.corrupted > 0
        ),
    ),
    # Damage inside GSO super-frames must be caught too (a whole super-frame
    # is then lost): only the bytes are checked, the frames are too few for counts.
    "corrupt-5%-offload": Impairment(
        *_both("corrupt=5%"),
        happened=lambda peer: peer.faults.rx_stats.corrupted + peer.faults.tx_stats.corrupted > 0,
        offload=True,
    ),
}


@pytest.mark.parametrize("name", list(IMPAIRMENTS))
async def test_transfer_both_ways_over_an_impaired_link(name: str) -> None:
    impairment = IMPAIRMENTS[name]
    async with stack_on_tap(faults=True, offload=impairment.offload) as peer:
        peer.faults.rx = impairment.rx
        peer.faults.tx = impairment.tx
        if impairment.kernel_drop:
            await nft_random_drop(peer.ns, impairment.kernel_drop, hooks=["input"])
        kernel_before = await kernel_snmp(peer.ns)
        up, down = payload(SIZE, 20), payload(SIZE, 21)
        server = kernel_listener(peer.ns, (peer.spec.kernel_ip, PORT))
        server.settimeout(BOUND)

        def serve() -> str:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(BOUND)
                sender = threading.Thread(target=kernel_send_then_shut, args=(conn, down))
                sender.start()
                got = kernel_read_to_eof(conn)
                sender.join(BOUND)
                assert not sender.is_alive()
            return sha256(got)

        client = peer.stack.socket(AF_INET, SOCK_STREAM)

        async def send_up() -> None:
            await client.sendall(up)
            client.shutdown(SHUT_WR)

        start = time.perf_counter()
        try:
            async with asyncio.timeout(BOUND):
                served = asyncio.ensure_future(asyncio.to_thread(serve))
                await client.connect((peer.spec.kernel_ip, PORT))
                _, (received, down_digest), up_digest = await asyncio.gather(
                    send_up(), hash_to_eof(client), served
                )
        finally:
            client.close()
            server.close()
        elapsed = time.perf_counter() - start
        mib = peer.stack.statistics()["mib"]
        kernel_after = await kernel_snmp(peer.ns)
        print(
            f"\n{name}: {SIZE >> 20} MB each way in {elapsed:.2f} s; "
            f"injector rx {peer.faults.rx_stats} tx {peer.faults.tx_stats}; "
            f"stack retransmitted {mib['TcpRetransSegs']}, kernel "
            f"{kernel_after['TcpRetransSegs'] - kernel_before['TcpRetransSegs']}"
        )
        assert received == SIZE
        assert down_digest == sha256(down)
        assert up_digest == sha256(up)
        assert impairment.happened(peer), (peer.faults.rx_stats, peer.faults.tx_stats)
        # Checksum failures happen only to frames the injector corrupted (no
        # false alarms on either end), and with corruption on they do happen
        # (a flipped bit in an Ethernet header is dropped before any checksum,
        # hence "some", not "all").
        # (An IPv4 header checksum error counts in both IpInCsumErrors and
        # IpInHdrErrors, on Linux as here: count the second only.)
        stack_caught = mib["TcpInCsumErrors"] + mib["IpInHdrErrors"]
        kernel_caught = sum(
            kernel_after[key] - kernel_before[key] for key in ("TcpInCsumErrors", "IpInHdrErrors")
        )
        assert stack_caught <= peer.faults.rx_stats.corrupted
        assert kernel_caught <= peer.faults.tx_stats.corrupted
        if name.startswith("corrupt") and not impairment.offload:
            # About ten corrupted frames each way: both ends caught some.
            assert stack_caught > 0, peer.faults.rx_stats
            assert kernel_caught > 0, peer.faults.tx_stats
        if impairment.kernel_drop:
            kernel_dropped = await nft_counter(peer.ns, "aiostack_loss")
            assert peer.faults.rx_stats.dropped + kernel_dropped > 0
            retransmitted = kernel_after["TcpRetransSegs"] - kernel_before["TcpRetransSegs"]
            assert mib["TcpRetransSegs"] + retransmitted > 0
