"""Linux-shaped awaitable sockets: family registry -> inet protocol switch -> proto ops.

The constants are the stdlib ``socket`` module's, re-exported so that
``from aiostack.socket import AF_INET, SOCK_DGRAM`` reads like the code it
replaces.
"""

from socket import (
    AF_INET,
    IPPROTO_ICMP,
    IPPROTO_IP,
    IPPROTO_RAW,
    IPPROTO_TCP,
    IPPROTO_UDP,
    MSG_DONTWAIT,
    MSG_MORE,
    MSG_OOB,
    MSG_PEEK,
    MSG_WAITALL,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_BROADCAST,
    SO_ERROR,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_SNDBUF,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_RAW,
    SOCK_STREAM,
    SOL_SOCKET,
)

from aiostack.socket.options import IP_RECVERR, SIOCATMARK, SIOCINQ, SIOCOUTQ
from aiostack.socket.socket import Socket

__all__ = [
    "AF_INET",
    "IPPROTO_ICMP",
    "IPPROTO_IP",
    "IPPROTO_RAW",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IP_RECVERR",
    "MSG_DONTWAIT",
    "MSG_MORE",
    "MSG_OOB",
    "MSG_PEEK",
    "MSG_WAITALL",
    "SHUT_RD",
    "SHUT_RDWR",
    "SHUT_WR",
    "SIOCATMARK",
    "SIOCINQ",
    "SIOCOUTQ",
    "SOCK_DGRAM",
    "SOCK_NONBLOCK",
    "SOCK_RAW",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_BROADCAST",
    "SO_ERROR",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_REUSEPORT",
    "SO_SNDBUF",
    "Socket",
]
