"""TCP core benchmark: bulk transfer between two control blocks in one process (issue 3).

What it measures. Two :class:`~aiostack.core.tcp.connection.TcpConnection`
objects, a client and a server, are joined back to back with no I/O and no
event loop: what one side's ``poll_transmit`` returns is handed to the other
side's ``on_segment`` at once, on virtual time. The client's application
writes into its send buffer whenever there is room and the server's reads
everything readable after each batch, so the figures are the control
block's own per-segment cost at full speed: segmentation, options, window
choice, ACK generation, ACK processing with RTT and congestion control,
timers, and the copies a socket needs anyway (a segment's payload is a view
of the send buffer; ``recv`` joins the received views into one ``bytes``).

Settings are the defaults, Linux's: timestamps, SACK, window scaling,
CUBIC with HyStart++, RACK-TLP (so every segment sent is logged for RACK
and every ACK re-arms nothing but records the time the loss probe counts
from). Nothing is lost here, so this is the no-loss fast path.

Two ways of handing segments across, both in the same run:

- ``core``: a :class:`~aiostack.wire.tcp.TcpHeader` is built straight from
  the :class:`~aiostack.core.tcp.output.Segment` (the options decoded by the
  codec's own fast path for the usual ``nop, nop, TS`` block), the payload
  passed as is. This is the control block alone.
- ``core+wire``: each segment is written into a frame buffer with
  :func:`aiostack.wire.tcp.emit_into` (payload copied in, checksum computed)
  and parsed back with :func:`aiostack.wire.tcp.parse` (checksum verified),
  as the stack does when the device offers no checksum offload.

Figures, medians over ``--repeat`` runs:

- payload MB/s (10**6 bytes per second) at MSS 1460 (MTU 1500) and at
  MSS 65,000 (MTU 65,040, as on a TAP with a 64 KB MTU);
- microseconds per data segment on the receiving side (segment in, the
  ACK it owes out, the application's read) and on the sending side
  (application write, segment out, its share of the ACKs in);
- memory: bytes per idle ESTABLISHED control block, from ``tracemalloc``
  over ``--pairs`` connected pairs (settings and counters shared, as a stack
  shares them).

Targets (issue 3, one core of this machine): >= 150 MB/s at MSS 1460,
>= 1.5 GB/s at MSS 65,000, <= 4 KiB per idle ESTABLISHED block.

    python bench/tcp_core.py [--repeat 5] [--mb 32] [--pairs 10000]
                             [--fastpath on|off|both] [--json]

``--fastpath`` switches the ESTABLISHED fast path (:mod:`aiostack.core.tcp.fastpath`);
``both`` runs each case with it off and on, interleaved run by run, and
reports the two medians and the median of the paired ratios (the machine's
speed drifts; a ratio of runs taken next to each other drifts less).

``--json`` also writes ``bench/results/tcp_core.json`` (or the path given).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from aiostack.core.counters import Counters
from aiostack.core.tcp import fastpath
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.output import Segment
from aiostack.core.tcp.state import TcpState
from aiostack.settings import Settings
from aiostack.wire import tcp as wtcp

A = 0xC6120002  # 198.18.0.2
B = 0xC6120001  # 198.18.0.1
RESULTS = Path(__file__).parent / "results" / "tcp_core.json"

#: (label, MTU, bytes moved per repeat at the default --mb scale factor 1).
CASES = (("mss1460", 1500, 1), ("mss65000", 65040, 16))

_EMPTY = wtcp.TcpOptions()
_ALIGNED_TS = wtcp._ALIGNED_TS
_ALIGNED_TS_WORD = wtcp._ALIGNED_TS_WORD
_new = object.__new__
#: How a segment crosses from one control block to the other.
Convert = Callable[[Segment], tuple[wtcp.TcpHeader, bytes | memoryview]]


def to_header_core(seg: Segment) -> tuple[wtcp.TcpHeader, bytes | memoryview]:
    """``seg`` as the peer's parsed header, without the wire (options decoded, nothing else).

    Built as :func:`aiostack.wire.tcp.parse` builds it: the aligned
    ``nop, nop, TS`` block decoded with one ``unpack_from``, and the
    ``TcpOptions``/``TcpHeader`` objects filled field by field.
    """
    opts = seg.options
    if not opts:
        options = _EMPTY
    elif len(opts) == 12 and (w := _ALIGNED_TS.unpack_from(opts))[0] == _ALIGNED_TS_WORD:
        options = _new(wtcp.TcpOptions)
        options.mss = None
        options.wscale = None
        options.sack_permitted = False
        options.sack_blocks = ()
        options.timestamps = (w[1], w[2])
        options.unknown = ()
    else:
        options = wtcp.parse_options(opts)
    hdr = _new(wtcp.TcpHeader)
    hdr.src_port = seg.src_port
    hdr.dst_port = seg.dst_port
    hdr.seq = seg.seq
    hdr.ack = seg.ack
    hdr.header_len = wtcp.HEADER_LEN + len(opts)
    hdr.flags = seg.flags
    hdr.window = seg.window
    hdr.checksum = 0
    hdr.urgent = 0
    hdr.options = options
    return hdr, seg.payload


def make_wire(src: int, dst: int) -> Convert:
    """A converter that writes ``seg`` as bytes (emit_into) and parses them back (parse)."""

    def to_header_wire(seg: Segment) -> tuple[wtcp.TcpHeader, bytes | memoryview]:
        payload = seg.payload
        plen = len(payload)
        hlen = wtcp.HEADER_LEN + len(seg.options)
        buf = bytearray(hlen + plen)
        buf[hlen:] = payload
        wtcp.emit_into(
            buf,
            0,
            src_port=seg.src_port,
            dst_port=seg.dst_port,
            seq=seg.seq,
            ack=seg.ack,
            flags=seg.flags,
            window=seg.window,
            options=seg.options,
            payload_len=plen,
            src=src,
            dst=dst,
        )
        return wtcp.parse(buf, src, dst)

    return to_header_wire


#: Segments handed across per round, like the stack's batches (DESIGN.md
#: principle 3: up to 64 frames per wake-up).
BATCH = 64


def _drain(conn: TcpConnection, now: float, out: list[Segment], limit: int = 1 << 30) -> None:
    poll = conn.poll_transmit
    while len(out) < limit and (seg := poll(now)) is not None:
        out.append(seg)


def connected_pair(
    now: float,
    settings: Settings,
    counters: Counters,
    *,
    mtu: int,
    buf: int | None,
    port: int = 40000,
    iss: int = 1_000_000,
) -> tuple[TcpConnection, TcpConnection]:
    """A client and a server in ESTABLISHED, after a three-way handshake through the core."""
    client = TcpConnection.connect(
        now,
        local_addr=A,
        local_port=port,
        remote_addr=B,
        remote_port=80,
        iss=iss,
        settings=settings,
        counters=counters,
        mtu=mtu,
        sndbuf=buf,
        rcvbuf=buf,
    )
    syn = client.poll_transmit(now)
    assert syn is not None
    hdr, _ = to_header_core(syn)
    server = TcpConnection.from_syn(
        now,
        hdr,
        local_addr=B,
        remote_addr=A,
        iss=iss ^ 0x5A5A5A5A,
        settings=settings,
        counters=counters,
        mtu=mtu,
        sndbuf=buf,
        rcvbuf=buf,
    )
    synack = server.poll_transmit(now)
    assert synack is not None
    hdr, payload = to_header_core(synack)
    client.on_segment(now, hdr, payload)
    ack = client.poll_transmit(now)
    assert ack is not None
    hdr, payload = to_header_core(ack)
    server.on_segment(now, hdr, payload)
    assert client.state is TcpState.ESTABLISHED and server.state is TcpState.ESTABLISHED
    assert client.poll_transmit(now) is None and server.poll_transmit(now) is None
    return client, server


def bulk(mtu: int, total: int, mode: str) -> dict[str, float]:
    """Move ``total`` bytes client -> server; return MB/s and per-segment microseconds."""
    st = Settings()
    counters = Counters()
    # Buffers as Linux autotunes them for a bulk flow (tcp_wmem[2]/tcp_rmem[2]-sized).
    bufsize = max(4 << 20, 64 * mtu)
    now = 1.0
    client, server = connected_pair(now, st, counters, mtu=mtu, buf=bufsize)
    fwd: Convert
    back: Convert
    if mode == "core":
        fwd = back = to_header_core
    else:
        fwd = make_wire(A, B)
        back = make_wire(B, A)
    chunk = bytes(range(256)) * 1024  # 256 KiB writes
    clen = len(chunk)
    sent = received = 0
    segs_data = 0
    t_tx = t_rx = 0.0
    dt = 20e-6  # virtual time per round: an RTT of a few tens of microseconds
    send = client.send
    recv = server.recv
    c_on = client.on_segment
    s_on = server.on_segment
    s_poll = server.poll_transmit
    s_events = server.take_events
    c_events = client.take_events
    out: list[Segment] = []
    acks: list[Segment] = []
    clock = time.perf_counter
    gc.collect()
    t0 = clock()
    while received < total:
        now += dt
        ta = clock()
        # Sender: the application writes while there is room, then everything sendable goes.
        while sent < total and client.sndbuf.free >= clen:
            sent += send(now, chunk)
        out.clear()
        _drain(client, now, out, BATCH)
        tb = clock()
        # Receiver: every segment in, the ACK it owes out, then the application reads.
        acks.clear()
        for seg in out:
            hdr, payload = fwd(seg)
            s_on(now, hdr, payload)
            # What the stack's drive() does after each segment: send, then wake.
            while (a := s_poll(now)) is not None:
                acks.append(a)
            s_events()
        segs_data += len(out)
        if server.readable:
            received += len(recv(now))
        while (a := s_poll(now)) is not None:
            acks.append(a)
        tc = clock()
        # Sender: the ACKs in.
        for a in acks:
            hdr, payload = back(a)
            c_on(now, hdr, payload)
            c_events()
        td = clock()
        t_tx += (tb - ta) + (td - tc)
        t_rx += tc - tb
    elapsed = clock() - t0
    assert server.error == 0 and client.error == 0
    return {
        "mb_s": received / elapsed / 1e6,
        "us_per_seg": elapsed / segs_data * 1e6,
        "us_rx_per_seg": t_rx / segs_data * 1e6,
        "us_tx_per_seg": t_tx / segs_data * 1e6,
        "segments": segs_data,
        "acks_per_seg": server.segs_out / segs_data,
    }


def idle_block_bytes(pairs: int) -> dict[str, float]:
    """Bytes per idle ESTABLISHED control block (tracemalloc, settings/counters shared)."""
    st = Settings()
    counters = Counters()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns: list[TcpConnection] = []
    for i in range(pairs):
        c, s = connected_pair(1.0, st, counters, mtu=1500, buf=None, port=1024 + i % 60000, iss=i)
        conns.append(c)
        conns.append(s)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(d.size_diff for d in after.compare_to(before, "filename"))
    total -= sys.getsizeof(conns)  # the harness's own list
    per = total / len(conns)
    del conns
    return {"bytes_per_block": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mb", type=float, default=16.0, help="MB moved per repeat at MSS 1460")
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--modes", default="core,core+wire")
    ap.add_argument("--fastpath", choices=("on", "off", "both"), default="on")
    ap.add_argument("--json", nargs="?", const=str(RESULTS), default=None)
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    results: dict[str, object] = {"bulk": {}, "memory": {}}
    rows = []
    switches = {"on": (True,), "off": (False,), "both": (False, True)}[args.fastpath]
    ratios: list[tuple[str, str, float]] = []
    for mode in modes:
        for label, mtu, scale in CASES:
            total = int(args.mb * scale * 1e6)
            runs: dict[bool, list[dict[str, float]]] = {sw: [] for sw in switches}
            for _ in range(args.repeat):
                for sw in switches:  # interleaved: off and on next to each other
                    fastpath.ENABLED = sw
                    runs[sw].append(bulk(mtu, total, mode))
            fastpath.ENABLED = True
            for sw in switches:
                med = {k: statistics.median(r[k] for r in runs[sw]) for k in runs[sw][0]}
                name = mode if len(switches) == 1 else f"{mode}/{'fast' if sw else 'slow'}"
                results["bulk"][f"{name}/{label}"] = med  # type: ignore[index]
                rows.append((name, label, med))
            if len(switches) == 2:
                paired = [
                    on["mb_s"] / off["mb_s"]
                    for off, on in zip(runs[False], runs[True], strict=True)
                ]
                ratios.append((mode, label, statistics.median(paired)))
    mem = [idle_block_bytes(args.pairs) for _ in range(max(1, min(args.repeat, 3)))]
    results["memory"] = {"bytes_per_block": statistics.median(m["bytes_per_block"] for m in mem)}
    head = ("mode", "case", "MB/s", "us/seg", "rx us", "tx us", "acks/seg")
    print("{:<15} {:<9} {:>9} {:>7} {:>7} {:>7} {:>8}".format(*head))
    for mode, label, med in rows:
        print(
            f"{mode:<15} {label:<9} {med['mb_s']:>9.1f} {med['us_per_seg']:>7.2f} "
            f"{med['us_rx_per_seg']:>7.2f} {med['us_tx_per_seg']:>7.2f} {med['acks_per_seg']:>8.2f}"
        )
    for mode, label, ratio in ratios:
        print(f"fast/slow {mode} {label}: x{ratio:.2f} (median of paired runs)")
        results.setdefault("fast_over_slow", {})[f"{mode}/{label}"] = ratio  # type: ignore[index]
    bpb = results["memory"]["bytes_per_block"]  # type: ignore[index]
    print(f"idle ESTABLISHED block: {bpb:,.0f} bytes ({args.pairs:,} pairs)")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        results["args"] = vars(args)
        path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
