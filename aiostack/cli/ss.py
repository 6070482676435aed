"""``aiostack ss``: the sockets of a running ``aiostack up``, shaped like ``ss -tuni``.

Without ``-l`` it lists connections (as ``ss`` does: non-listening
sockets); ``-l`` lists only listeners and ``-a`` both. ``-t``/``-u`` choose
TCP/UDP (both by default). ``-i`` adds a line of TCP_INFO under each TCP
connection in ``ss -i``'s words::

    cubic wscale:7,7 rto:204 rtt:0.4/0.2 ato:40 mss:1448 pmtu:1500 rcvmss:536
    advmss:1448 cwnd:10 ssthresh:2147483647 bytes_acked:1 bytes_received:77
    segs_out:3 segs_in:4 send 290Mbps lastsnd:30 lastrcv:31 lastack:30
    rcv_space:65483 rcv_ssthresh:64088 retrans:0/0 notsent:0 minrtt:0.3

(rto, ato and the last* fields in milliseconds, rtt in ms with rttvar,
``send`` is cwnd * mss * 8 / srtt like ss computes it; ``retrans`` is
outstanding retransmissions / total retransmissions). Addresses are always
numeric. ``--json`` prints the table as the control socket returns it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiostack.cli.control import ControlError, call, find_control

_COLUMNS = ("Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port")
_UNLIMITED = 0x7FFFFFFF


def _rate(bits_per_second: float) -> str:
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.1f}{unit}"
    return f"{bits_per_second:.0f}bps"


def format_info(info: dict[str, Any]) -> str:
    """One ``ss -i`` line from a TCP_INFO dict (kernel field names, kernel units)."""
    parts = [str(info.get("cc", "?"))]
    if info["options"] & 4:
        parts.append(f"wscale:{info['snd_wscale']},{info['rcv_wscale']}")
    parts.append(f"rto:{info['rto'] / 1000:g}")
    if info["rtt"]:
        parts.append(f"rtt:{info['rtt'] / 1000:g}/{info['rttvar'] / 1000:g}")
    parts.append(f"ato:{info['ato'] / 1000:g}")
    parts.append(f"mss:{info['snd_mss']}")
    parts.append(f"pmtu:{info['pmtu']}")
    parts.append(f"rcvmss:{info['rcv_mss']}")
    parts.append(f"advmss:{info['advmss']}")
    parts.append(f"cwnd:{info['snd_cwnd']}")
    if info["snd_ssthresh"] < _UNLIMITED:
        parts.append(f"ssthresh:{info['snd_ssthresh']}")
    parts.append(f"bytes_acked:{info['bytes_acked']}")
    parts.append(f"bytes_received:{info['bytes_received']}")
    parts.append(f"segs_out:{info['segs_out']}")
    parts.append(f"segs_in:{info['segs_in']}")
    if info["rtt"]:
        parts.append(f"send {_rate(info['snd_cwnd'] * info['snd_mss'] * 8e6 / info['rtt'])}")
    if info["pacing_rate"] and info["pacing_rate"] != (1 << 64) - 1:  # ~0: unlimited, as ss
        parts.append(f"pacing_rate {_rate(info['pacing_rate'] * 8)}")
    if info["delivery_rate"]:
        parts.append(f"delivery_rate {_rate(info['delivery_rate'] * 8)}")
    parts.append(f"lastsnd:{info['last_data_sent']}")
    parts.append(f"lastrcv:{info['last_data_recv']}")
    parts.append(f"lastack:{info['last_ack_recv']}")
    parts.append(f"rcv_space:{info['rcv_space']}")
    parts.append(f"rcv_ssthresh:{info['rcv_ssthresh']}")
    parts.append(f"retrans:{info['retrans']}/{info['total_retrans']}")
    if info["lost"]:
        parts.append(f"lost:{info['lost']}")
    if info["sacked"]:
        parts.append(f"sacked:{info['sacked']}")
    if info["unacked"]:
        parts.append(f"unacked:{info['unacked']}")
    parts.append(f"notsent:{info['notsent_bytes']}")
    if info["min_rtt"]:
        parts.append(f"minrtt:{info['min_rtt'] / 1000:g}")
    return " ".join(parts)


def select_rows(
    rows: list[dict[str, Any]], *, tcp: bool, udp: bool, listening: bool, every: bool
) -> list[dict[str, Any]]:
    """The rows ``ss`` would show for these flags (UNCONN UDP counts as listening, as in ss)."""
    if not tcp and not udp:
        tcp = udp = True
    kept = []
    for row in rows:
        if not (tcp if row["netid"] == "tcp" else udp):
            continue
        is_listening = row["state"] in ("LISTEN", "UNCONN")
        if every or is_listening == listening:
            kept.append(row)
    return kept


def render(rows: list[dict[str, Any]], *, info: bool) -> str:
    """Aligned columns like ``ss``; with ``info`` a TCP_INFO line under each connection."""
    table = [
        (r["netid"], r["state"], str(r["recv_q"]), str(r["send_q"]), r["local"], r["peer"])
        for r in rows
    ]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(_COLUMNS)]

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, cell in enumerate(cells):
            right = i in (2, 3)
            out.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [line(_COLUMNS)]
    for row, cells in zip(rows, table, strict=True):
        lines.append(line(cells))
        if info and "info" in row:
            lines.append("\t " + format_info(row["info"]))
    return "\n".join(lines)


def cmd_ss(args: argparse.Namespace) -> int:
    try:
        path = find_control(args.control)
        rows = asyncio.run(call(path, {"op": "ss"}))
    except (LookupError, ConnectionError, ControlError) as exc:
        print(f"aiostack ss: {exc}", file=sys.stderr)
        return 1
    shown = select_rows(rows, tcp=args.tcp, udp=args.udp, listening=args.listening, every=args.all)
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(render(shown, info=args.info))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack ss``."""
    ss = sub.add_parser("ss", help="sockets of a running 'aiostack up', like ss -tuni")
    ss.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    ss.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    ss.add_argument("-l", "--listening", action="store_true", help="only listening sockets")
    ss.add_argument("-a", "--all", action="store_true", help="listening and connected sockets")
    ss.add_argument("-i", "--info", action="store_true", help="TCP_INFO of each connection")
    ss.add_argument("--json", action="store_true", help="machine-readable output")
    ss.add_argument("--control", metavar="PATH", help="control socket of the 'aiostack up'")
    ss.set_defaults(handler=cmd_ss)
