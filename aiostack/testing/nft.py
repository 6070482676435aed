"""Kernel-side packet loss for TAP tests: nftables random-drop rules inside a test's namespace.

This kernel has no ``tc netem``, so loss on the kernel's side of a TAP is
an nftables rule that drops a random share of packets::

    async with tap_in_netns() as spec:
        async with KernelDrop(spec.namespace, percent=5, protocol="tcp") as drop:
            ...                                   # the kernel drops ~5 % of TCP, both ways
        print(drop.dropped)                       # {"input": 12, "output": 9}

The rules live in a table of their own (``inet aiostack_<hex>``) in the
namespace the test created, with chains at the ``input`` and/or ``output``
hooks, one rule each::

    meta l4proto tcp numgen random mod 100 < 5 counter drop

``numgen random`` draws a fresh number per packet (the kernel's
``prandom``: not seeded, so kernel-side loss is not replayable; aiostack's
own :class:`~aiostack.link.fault.FaultInjector` is the replayable kind).
Whole percentages use ``mod 100``; fractional ones ``mod 10000`` (0.01 %
steps); 100 % drops every matching packet without a draw. The table is
deleted on exit, whatever happened; deleting the namespace would remove
it too, so nothing can outlive the test.

Counters are read back (``nft -j list table``) before the table goes, so
a test can check that the loss it asked for really happened.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from typing import Literal

from aiostack.link import netlink
from aiostack.testing.netns import NetNamespace, _Scoped

__all__ = ["KernelDrop", "drop_rules", "nft_unavailable_reason"]

Direction = Literal["input", "output", "both"]
_PROTOCOLS = frozenset({"tcp", "udp", "icmp"})
#: Before the default filter chains (priority 0), so a test's drop comes first.
_PRIORITY = -10


def nft_unavailable_reason() -> str | None:
    """Why kernel-side drop rules cannot be used here, or None if they can."""
    if shutil.which("nft") is None:
        return "the 'nft' command (nftables) is not installed"
    return None


def drop_rules(
    table: str,
    percent: float,
    *,
    direction: Direction = "both",
    protocol: str | None = None,
    match: str | None = None,
) -> str:
    """The nftables script (for ``nft -f -``) that creates ``table`` with the drop rules.

    ``percent``: 0..100. ``protocol``: ``tcp``, ``udp`` or ``icmp`` (None:
    every packet). ``match``: any further nft match expression, for example
    ``"tcp dport 8080"`` or ``"ip saddr 198.18.0.2"``.
    """
    if not (isinstance(percent, int | float) and math.isfinite(percent) and 0 <= percent <= 100):
        raise ValueError(f"percent: {percent!r} is not a number in 0..100")
    if direction not in ("input", "output", "both"):
        raise ValueError(f"direction: {direction!r} is not 'input', 'output' or 'both'")
    if protocol is not None and protocol not in _PROTOCOLS:
        raise ValueError(f"protocol: {protocol!r} is not one of {sorted(_PROTOCOLS)}")
    if match is not None and any(c in match for c in ";{}\n#"):
        raise ValueError(f"match: {match!r} must be one match expression (no ; {{ }} # or newline)")
    if percent == 100:
        draw = ""  # every packet (nft refuses "mod 100 < 100": the value is out of range)
    elif float(percent).is_integer():
        draw = f"numgen random mod 100 < {int(percent)}"
    else:
        draw = f"numgen random mod 10000 < {round(percent * 100)}"
    parts = [f"meta l4proto {protocol}" if protocol else "", match or "", draw, "counter drop"]
    rule = " ".join(p for p in parts if p)
    hooks: Iterable[str] = ("input", "output") if direction == "both" else (direction,)
    chains = "".join(
        f"  chain {hook} {{\n"
        f"    type filter hook {hook} priority {_PRIORITY}; policy accept;\n"
        f"    {rule}\n"
        "  }\n"
        for hook in hooks
    )
    return f"table inet {table} {{\n{chains}}}\n"


class KernelDrop(_Scoped["KernelDrop"]):
    """Random drop by the kernel inside ``namespace`` while the ``with`` block runs.

    ``namespace``: a :class:`~aiostack.testing.netns.NetNamespace` or its
    name (the namespace must be one the test created). The other arguments
    are :func:`drop_rules`'. Works with ``with`` and ``async with`` (the
    ``nft`` calls then run on a thread). After exit, :attr:`dropped` holds
    the packets dropped per hook.
    """

    def __init__(
        self,
        namespace: NetNamespace | str,
        percent: float,
        *,
        direction: Direction = "both",
        protocol: str | None = None,
        match: str | None = None,
    ) -> None:
        self.namespace = (
            namespace if isinstance(namespace, NetNamespace) else NetNamespace(namespace)
        )
        self.table = "aiostack_" + secrets.token_hex(4)
        self.script = drop_rules(
            self.table, percent, direction=direction, protocol=protocol, match=match
        )
        #: Packets dropped per hook (``input``/``output``), read when the rules are removed.
        self.dropped: dict[str, int] = {}
        self._active = False

    def __repr__(self) -> str:
        state = "active" if self._active else "inactive"
        return f"<KernelDrop {self.table} in {self.namespace.name} {state}>"

    def _nft(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = self.namespace.run("nft", *args, input=input, timeout=30)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip()
            raise OSError(f"nft {' '.join(args)} in {self.namespace.name}: {message}")
        return result

    def create(self) -> KernelDrop:
        reason = nft_unavailable_reason()
        if reason is not None:
            raise OSError(reason)
        self._nft("-f", "-", input=self.script.encode())
        self._active = True
        return self

    def counters(self) -> dict[str, int]:
        """Packets dropped so far, per hook (read from the kernel now)."""
        listing = json.loads(self._nft("-j", "list", "table", "inet", self.table).stdout)
        counts: dict[str, int] = {}
        for entry in listing.get("nftables", []):
            rule = entry.get("rule")
            if rule is None:
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    counts[rule["chain"]] = counts.get(rule["chain"], 0) + int(
                        expr["counter"]["packets"]
                    )
        return counts

    def delete(self) -> None:
        """Read the counters into :attr:`dropped`, then remove the table; idempotent."""
        if not self._active:
            return
        self._active = False
        if not netlink.netns_exists(self.namespace.name):
            return  # the namespace went first, and the table with it
        try:
            self.dropped = self.counters()
        finally:
            self._nft("delete", "table", "inet", self.table)
