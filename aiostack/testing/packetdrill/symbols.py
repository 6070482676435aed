"""The symbolic names a script may use, with Linux's numbers, and ``struct tcp_info``.

Names come from the C headers packetdrill compiles against; we take them
from the standard library modules that mirror those headers on Linux
(``socket``, ``os``, ``select``, ``errno``, ``fcntl``) and add the few they
do not name (``SOL_TCP``, ``SIOCINQ``, ...), so both targets evaluate a
script's words to the same numbers.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
from typing import Any

__all__ = ["SYMBOLS", "TCP_INFO_SIZE", "errno_name", "symbol", "unpack_tcp_info"]


def _collect() -> dict[str, int]:
    table: dict[str, int] = {}
    prefixes = (
        "AF_",
        "SOCK_",
        "IPPROTO_",
        "SOL_",
        "SO_",
        "TCP_",
        "IP_",
        "MSG_",
        "SHUT_",
        "POLL",
    )
    for module in (socket, select):
        for name in dir(module):
            if name.startswith(prefixes):
                value = getattr(module, name)
                if isinstance(value, int):
                    table[name] = int(value)
    for name in dir(os):
        if name.startswith("O_") and isinstance(getattr(os, name), int):
            table[name] = getattr(os, name)
    for name in ("F_GETFL", "F_SETFL", "F_GETFD", "F_SETFD", "FD_CLOEXEC"):
        table[name] = getattr(fcntl, name)
    table.update(
        SOL_TCP=6,
        SOL_IP=0,
        SIOCINQ=0x541B,
        SIOCOUTQ=0x5411,
        FIONREAD=0x541B,
        TCP_INFO=11,
        TCP_CONGESTION=13,
        TCP_USER_TIMEOUT=18,
        TCP_NOTSENT_LOWAT=25,
        INADDR_ANY=0,
    )
    return table


#: Every name a script may write as an integer argument or result.
SYMBOLS: dict[str, int] = _collect()


def symbol(name: str) -> int | None:
    """The value of a symbolic name (``SOCK_STREAM``, ``ECONNREFUSED``), or None."""
    value = SYMBOLS.get(name)
    if value is None and name.startswith("E"):
        value = getattr(errno, name, None)
    return value


def errno_name(number: int) -> str:
    """``ECONNREFUSED`` for 111."""
    return errno.errorcode.get(number, f"errno {number}")


# struct tcp_info (include/uapi/linux/tcp.h), in order, as far as tcpi_rcv_wnd.
_TCP_INFO_FIELDS = (  # noqa: SIM905 (one long field list reads better as words)
    "state ca_state retransmits probes backoff options wscale flags rto ato snd_mss "
    "rcv_mss unacked sacked lost retrans fackets last_data_sent last_ack_sent "
    "last_data_recv last_ack_recv pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd "
    "advmss reordering rcv_rtt rcv_space total_retrans pacing_rate max_pacing_rate "
    "bytes_acked bytes_received segs_out segs_in notsent_bytes min_rtt data_segs_in "
    "data_segs_out delivery_rate busy_time rwnd_limited sndbuf_limited delivered "
    "delivered_ce bytes_sent bytes_retrans dsack_dups reord_seen rcv_ooopack snd_wnd "
    "rcv_wnd"
).split()
_TCP_INFO = struct.Struct("@8B24I4Q6I4Q2I2Q2I3I")
#: Bytes of ``struct tcp_info`` asked for: the fields above.
TCP_INFO_SIZE = _TCP_INFO.size


def unpack_tcp_info(data: bytes) -> dict[str, Any]:
    """``tcpi_*`` names and values, as packetdrill puts them in scope of ``%{ }%`` code.

    A shorter struct (an older kernel) leaves the missing fields 0, as the
    kernel's ``getsockopt`` would by copying only what it has.
    """
    values = _TCP_INFO.unpack(data[: _TCP_INFO.size].ljust(_TCP_INFO.size, b"\0"))
    info = {f"tcpi_{name}": value for name, value in zip(_TCP_INFO_FIELDS, values, strict=True)}
    wscale = info.pop("tcpi_wscale")
    info.pop("tcpi_flags")
    info["tcpi_snd_wscale"] = wscale & 0xF
    info["tcpi_rcv_wscale"] = wscale >> 4
    return info
