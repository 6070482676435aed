"""Wire codec micro-benchmark: the per-call cost of what every frame pays (issue 6).

On a TAP without checksum offload every received TCP segment is split by
:func:`aiostack.wire.ethernet.parse` (or the link layer's inlined fast path),
:func:`aiostack.wire.ipv4.parse` and :func:`aiostack.wire.tcp.parse` with its
checksum verified, and every sent one is written by
:func:`aiostack.wire.tcp.emit_into` with its checksum computed. This prints
what each of those calls costs, one case per line:

- ``csum/N``: :func:`~aiostack.wire.checksum.ones_sum` of N random bytes
  (20, 40: headers; 1460: an MSS-1460 payload; 9000: a jumbo frame;
  65000: a TSO/GRO super-segment); ``csum/batch64x1492``:
  :func:`~aiostack.wire.checksum.ones_sums` of a batch of 64 segments, as the
  stack verifies a TAP read's worth (ns per batch: divide by 64);
- ``tcp.parse/data``: a 1492-byte segment (``nop, nop, TS`` options and 1460
  bytes of payload), checksum verified; ``tcp.parse/ack``: the pure ACK
  with the same options; ``tcp.parse/syn``: a Linux SYN's options
  (``mss, sackOK, TS, nop, wscale``);
- ``tcp.emit/data``, ``tcp.emit/ack``: :func:`~aiostack.wire.tcp.emit_into`
  of the same, checksum computed (payload already in the buffer);
  ``tcp.write/...``: the same through the positional
  :func:`~aiostack.wire.tcp.write_header` (``emit_into`` on a revision
  without it, so ``--against`` shows what a caller gains by switching);
- ``ipv4.parse``, ``ipv4.emit``, ``ipv4.write`` (likewise), ``eth.parse``,
  ``vnet.parse``, ``vnet.emit``, ``udp.parse_in/1472``.

Modes:

- default: wall-clock nanoseconds per call, the median (and minimum) of
  ``--repeat`` timings of ``--number`` calls each. The machine is shared, so
  compare figures from one run (``--against``), not across runs.
- ``--against REV``: also time the codecs as they were at git revision
  ``REV`` (loaded from ``git show`` into a private package, never into
  :mod:`aiostack.wire`), interleaved with the current ones, and print the
  ratio old/new per case.
- ``--calls N [--case NAME]``: make exactly N calls of each selected case,
  each case's calls inside one ``sys.call_tracing`` call (a C function
  nothing else here calls), for ``valgrind --tool=callgrind
  --toggle-collect=sys_call_tracing --dump-after=sys_call_tracing``: each
  dump then holds one case's calls and nothing else (no start-up, no set-up).
- ``--callgrind``: do that itself (one callgrind run per variant, with
  ``PYTHONHASHSEED=0``) and print instructions per call; with ``--against``
  also for the old codecs. Instruction counts are deterministic but count a
  64-bit division as one instruction, so they understate the big-integer
  modulo a pure-Python checksum does: quote both figures.

    python bench/wire_codec.py [--repeat 15] [--number 2000] [--against HEAD]
    python bench/wire_codec.py --callgrind [--against HEAD] [--case tcp.parse/data]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

A = 0xC6120002  # 198.18.0.2
B = 0xC6120001  # 198.18.0.1
MSS = 1460
#: The modules loaded from a git revision, dependencies first.
MODULES = ("types", "errors", "checksum", "ethernet", "ipv4", "tcp", "udp", "icmpv4", "virtio")

#: A case: name -> function(wire package namespace) -> (statement, globals).
Case = Callable[[Any], tuple[str, dict[str, Any]]]


def load_revision(rev: str) -> types.SimpleNamespace:
    """The wire codecs as they were at ``rev``, as a private package ``_wire_<rev>``."""
    package = "_wire_" + re.sub(r"\W", "_", rev)
    pkg = types.ModuleType(package)
    pkg.__path__ = []
    sys.modules[package] = pkg
    loaded: dict[str, types.ModuleType] = {}
    for name in MODULES:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:aiostack/wire/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        source = source.replace("aiostack.wire.", package + ".")
        spec = importlib.util.spec_from_loader(f"{package}.{name}", loader=None)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        exec(compile(source, f"{rev}:aiostack/wire/{name}.py", "exec"), module.__dict__)
        setattr(pkg, name, module)
        loaded[name] = module
    return types.SimpleNamespace(**loaded)


def current() -> types.SimpleNamespace:
    from aiostack.wire import checksum, ethernet, icmpv4, ipv4, tcp, udp, virtio

    return types.SimpleNamespace(
        checksum=checksum,
        ethernet=ethernet,
        ipv4=ipv4,
        tcp=tcp,
        udp=udp,
        icmpv4=icmpv4,
        virtio=virtio,
    )


def _random(n: int, seed: int = 1) -> bytes:
    # Deterministic bytes (callgrind runs must do the same work every time).
    x = seed * 0x9E3779B97F4A7C15 & (2**64 - 1)
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        out[i] = x & 0xFF
    return bytes(out)


PAYLOAD = _random(MSS)
#: Linux's SYN options: mss 1460, sackOK, TS val=123456 ecr=0, nop, wscale 7.
SYN_OPTIONS = bytes.fromhex("020405b4 0402080a 0001e240 00000000 01030307")
#: ``nop, nop, TS`` val=123456 ecr=654321, as on every established segment.
TS_OPTIONS = bytes.fromhex("0101080a 0001e240 0009fbf1")


def _tcp_segment(w: Any, payload: bytes, options: bytes, flags: int) -> bytearray:
    hlen = 20 + len(options)
    buf = bytearray(hlen + len(payload))
    buf[hlen:] = payload
    w.tcp.emit_into(
        buf,
        0,
        src_port=40000,
        dst_port=5001,
        seq=0x12345678,
        ack=0x9ABCDEF0,
        flags=flags,
        window=502,
        options=options,
        payload_len=len(payload),
        src=A,
        dst=B,
    )
    return buf


def case_csum(n: int) -> Case:
    def make(w: Any) -> tuple[str, dict[str, Any]]:
        data = memoryview((PAYLOAD * (n // MSS + 1))[:n])
        return "f(data)", {"f": w.checksum.ones_sum, "data": data}

    return make


def case_csum_batch(w: Any) -> tuple[str, dict[str, Any]]:
    """:func:`~aiostack.wire.checksum.ones_sums` of 64 segments of 1492 bytes (per call)."""
    views = [memoryview(bytes(20) + TS_OPTIONS + PAYLOAD[i:] + PAYLOAD[:i]) for i in range(64)]
    return "f(views)", {"f": w.checksum.ones_sums, "views": views}


def case_tcp_parse(kind: str) -> Case:
    def make(w: Any) -> tuple[str, dict[str, Any]]:
        if kind == "data":
            seg = _tcp_segment(w, PAYLOAD, TS_OPTIONS, w.tcp.ACK | w.tcp.PSH)
        elif kind == "ack":
            seg = _tcp_segment(w, b"", TS_OPTIONS, w.tcp.ACK)
        else:
            seg = _tcp_segment(w, b"", SYN_OPTIONS, w.tcp.SYN)
        view = memoryview(bytes(seg))
        w.tcp.parse(view, A, B)  # valid
        return "f(view, A, B)", {"f": w.tcp.parse, "view": view, "A": A, "B": B}

    return make


def case_tcp_emit(kind: str) -> Case:
    def make(w: Any) -> tuple[str, dict[str, Any]]:
        payload = PAYLOAD if kind == "data" else b""
        options = TS_OPTIONS
        buf = bytearray(20 + len(options) + len(payload))
        buf[20 + len(options) :] = payload
        stmt = (
            "f(buf, 0, src_port=40000, dst_port=5001, seq=0x12345678, ack=0x9ABCDEF0,"
            " flags=0x18, window=502, options=options, payload_len=plen, src=A, dst=B)"
        )
        g = {"f": w.tcp.emit_into, "buf": buf, "options": options, "plen": len(payload)}
        return stmt, g | {"A": A, "B": B}

    return make


def case_tcp_write(kind: str) -> Case:
    """:func:`~aiostack.wire.tcp.write_header` (positional); ``emit_into`` where it is missing."""

    def make(w: Any) -> tuple[str, dict[str, Any]]:
        if not hasattr(w.tcp, "write_header"):
            return case_tcp_emit(kind)(w)
        payload = PAYLOAD if kind == "data" else b""
        buf = bytearray(20 + len(TS_OPTIONS) + len(payload))
        buf[20 + len(TS_OPTIONS) :] = payload
        stmt = "f(buf, 0, 40000, 5001, SEQ, ACK, 24, 502, 0, options, plen, A, B, True)"
        g = {"f": w.tcp.write_header, "buf": buf, "options": TS_OPTIONS, "plen": len(payload)}
        return stmt, g | {"A": A, "B": B, "SEQ": 0x12345678, "ACK": 0x9ABCDEF0}

    return make


def case_ipv4_write(w: Any) -> tuple[str, dict[str, Any]]:
    """:func:`~aiostack.wire.ipv4.write_header`; ``emit_into`` where it is missing."""
    if not hasattr(w.ipv4, "write_header"):
        return case_ipv4_emit(w)
    stmt = "f(buf, 0, A, B, 6, 1480, 64, 0, 0x1234, 0x4000, b'')"
    return stmt, {"f": w.ipv4.write_header, "buf": bytearray(1500), "A": A, "B": B}


def _ip_packet(w: Any) -> bytearray:
    seg = _tcp_segment(w, PAYLOAD, TS_OPTIONS, 0x18)
    buf = bytearray(20) + seg
    w.ipv4.emit_into(buf, 0, src=A, dst=B, proto=6, payload_len=len(seg), ident=0x1234, frag=0x4000)
    return buf


def case_ipv4_parse(w: Any) -> tuple[str, dict[str, Any]]:
    view = memoryview(bytes(_ip_packet(w)))
    return "f(view)", {"f": w.ipv4.parse, "view": view}


def case_ipv4_emit(w: Any) -> tuple[str, dict[str, Any]]:
    buf = bytearray(1500)
    stmt = "f(buf, 0, src=A, dst=B, proto=6, payload_len=1480, ident=0x1234, frag=0x4000)"
    return stmt, {"f": w.ipv4.emit_into, "buf": buf, "A": A, "B": B}


def case_eth_parse(w: Any) -> tuple[str, dict[str, Any]]:
    frame = bytearray(14) + _ip_packet(w)
    w.ethernet.emit_into(frame, 0, b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02", 0x0800)
    return "f(view)", {"f": w.ethernet.parse, "view": memoryview(bytes(frame))}


def case_vnet_parse(w: Any) -> tuple[str, dict[str, Any]]:
    data = bytearray(10) + bytearray(14) + _ip_packet(w)
    w.virtio.emit_into(data, 0, flags=1, csum_start=34, csum_offset=16)
    return "f(view)", {"f": w.virtio.parse, "view": memoryview(bytes(data))}


def case_vnet_emit(w: Any) -> tuple[str, dict[str, Any]]:
    stmt = "f(buf, 0, flags=1, csum_start=34, csum_offset=16)"
    return stmt, {"f": w.virtio.emit_into, "buf": bytearray(10)}


def case_udp_parse_in(w: Any) -> tuple[str, dict[str, Any]]:
    payload = (PAYLOAD * 2)[:1472]
    buf = bytearray(8) + payload
    w.udp.emit_into(buf, 0, src_port=40000, dst_port=53, payload_len=len(payload), src=A, dst=B)
    view = memoryview(bytes(buf))
    return "f(view, A, B)", {"f": w.udp.parse_in, "view": view, "A": A, "B": B}


CASES: dict[str, Case] = {
    "csum/20": case_csum(20),
    "csum/40": case_csum(40),
    "csum/1460": case_csum(1460),
    "csum/9000": case_csum(9000),
    "csum/65000": case_csum(65000),
    "csum/batch64x1492": case_csum_batch,
    "tcp.parse/data": case_tcp_parse("data"),
    "tcp.parse/ack": case_tcp_parse("ack"),
    "tcp.parse/syn": case_tcp_parse("syn"),
    "tcp.emit/data": case_tcp_emit("data"),
    "tcp.emit/ack": case_tcp_emit("ack"),
    "tcp.write/data": case_tcp_write("data"),
    "tcp.write/ack": case_tcp_write("ack"),
    "ipv4.parse": case_ipv4_parse,
    "ipv4.emit": case_ipv4_emit,
    "ipv4.write": case_ipv4_write,
    "eth.parse": case_eth_parse,
    "vnet.parse": case_vnet_parse,
    "vnet.emit": case_vnet_emit,
    "udp.parse_in/1472": case_udp_parse_in,
}


def _timer(w: Any, name: str) -> Callable[[int], float]:
    stmt, g = CASES[name](w)
    code = compile(f"def _bench(_n):\n for _ in range(_n):\n  {stmt}\n", name, "exec")
    exec(code, g)
    bench = g["_bench"]
    clock = time.perf_counter_ns

    def run(number: int) -> float:
        t0 = clock()
        bench(number)
        return (clock() - t0) / number

    return run


def time_cases(
    names: list[str], variants: dict[str, Any], number: int, repeat: int
) -> dict[str, dict[str, list[float]]]:
    """Interleaved timings: every repeat times every variant of every case once."""
    timers = {n: {v: _timer(w, n) for v, w in variants.items()} for n in names}
    results: dict[str, dict[str, list[float]]] = {n: {v: [] for v in variants} for n in names}
    for name in names:
        scale = max(1, number * 1460 // max(1460, _size(name)))
        for timer in timers[name].values():
            timer(max(1, scale // 10))  # warm up (specialising interpreter, caches)
        for _ in range(repeat):
            for variant, timer in timers[name].items():
                results[name][variant].append(timer(scale))
    return results


def _size(name: str) -> int:
    if name.startswith("csum/batch"):
        return 64 * 1492
    return int(name.split("/")[1]) if name.startswith("csum/") else 0


def callgrind(names: list[str], against: str | None, calls: int) -> None:
    """Instructions per call of each case, from one callgrind run per variant.

    Each case's calls run inside ``sys.call_tracing`` (a C function nothing
    else here calls), which callgrind is told to collect in and to dump
    after, so every dump holds exactly one case: no start-up, no set-up.
    """
    variants = ["new"] + (["old"] if against else [])
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # byte-code cached outside the tree
    env["PYTHONPYCACHEPREFIX"] = "/tmp/aiostack-wire-codec-pycache"
    per_call: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            out = Path(tmp) / f"cg.{variant}"
            cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            cmd += ["--toggle-collect=sys_call_tracing", "--dump-after=sys_call_tracing"]
            cmd += [sys.executable, __file__, "--calls", str(calls)]
            cmd += [arg for name in names for arg in ("--case", name)]
            if variant == "old":
                cmd += ["--against", str(against), "--use-old"]
            subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            dumps = sorted(
                Path(tmp).glob(f"cg.{variant}.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])
            )
            totals = [_callgrind_total(p) for p in dumps]
            totals = [t for t in totals if t]  # the final dump at exit holds nothing
            if len(totals) != len(names):
                raise RuntimeError(f"callgrind: {len(totals)} dumps for {len(names)} cases")
            for name, total in zip(names, totals, strict=True):
                per_call.setdefault(name, []).append(total / calls)
    head = f"{'case':20} {'Ir/call':>10}"
    if against:
        head += f" {'old Ir/call':>12} {'old/new':>8}"
    print(head)
    for name in names:
        row = per_call[name]
        line = f"{name:20} {row[0]:10.0f}"
        if against:
            line += f" {row[1]:12.0f} {row[1] / row[0]:8.2f}"
        print(line)


def _callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--number", type=int, default=2000, help="calls per timing (1460 B)")
    parser.add_argument("--against", metavar="REV", help="also measure the codecs of git REV")
    parser.add_argument("--case", action="append", help="only this case (repeatable)")
    parser.add_argument("--calls", type=int, help="make N calls per case, print nothing")
    parser.add_argument("--use-old", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help="instructions per call")
    parser.add_argument("--callgrind-calls", type=int, default=2000, help="calls per case")
    args = parser.parse_args()
    names = args.case or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"--case: unknown {unknown}; known: {', '.join(CASES)}")
    if args.callgrind:
        callgrind(names, args.against, args.callgrind_calls)
        return
    if args.calls is not None:
        w = load_revision(args.against) if args.use_old else current()
        timers = [_timer(w, name) for name in names]
        for timer in timers:
            timer(1)  # specialise the byte-code outside the measured calls
        for timer in timers:
            sys.call_tracing(timer, (args.calls,))
        return
    variants: dict[str, Any] = {"new": current()}
    if args.against:
        variants["old"] = load_revision(args.against)
    results = time_cases(names, variants, args.number, args.repeat)
    head = f"{'case':20} {'ns/call median':>15} {'min':>9}"
    if args.against:
        head += f" {'old median':>11} {'min':>9} {'old/new':>8}"
    print(head)
    for name in names:
        new = results[name]["new"]
        line = f"{name:20} {statistics.median(new):15.0f} {min(new):9.0f}"
        if args.against:
            old = results[name]["old"]
            ratio = statistics.median(old) / statistics.median(new)
            line += f" {statistics.median(old):11.0f} {min(old):9.0f} {ratio:8.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
