"""aiostack: a user-space TCP/IP stack for asyncio.

The public names are re-exported here; everything else is importable from
its module but not part of the stable surface. What is here is what an
application needs to build a stack on a device and talk through it: the
stack and its settings, the devices and their wrappers, the socket type
and the constants that create sockets, and the asyncio entry points.
Socket option and flag constants (``SOL_SOCKET``, ``SHUT_WR``, ...) come
from :mod:`aiostack.socket` (or the stdlib ``socket`` module: they are the
same numbers). Testing tools stay in :mod:`aiostack.testing`, the built-in
services in :mod:`aiostack.services`, framework adapters in
:mod:`aiostack.contrib`: none of them is imported by ``import aiostack``.
"""

from aiostack.aio import (
    DatagramTransport,
    Server,
    TcpTransport,
    create_connection,
    create_datagram_endpoint,
    create_server,
    open_connection,
    start_server,
    start_tls,
)
from aiostack.link.base import DeviceStats, NetDevice
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.memory import MemoryWire, VirtualSwitch
from aiostack.link.pcap import PcapWriter
from aiostack.link.tap import TapDevice
from aiostack.settings import Settings
from aiostack.socket import (
    AF_INET,
    IPPROTO_ICMP,
    IPPROTO_RAW,
    IPPROTO_TCP,
    IPPROTO_UDP,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_RAW,
    SOCK_STREAM,
    Socket,
)
from aiostack.stack.stack import Stack

__all__ = [
    "AF_INET",
    "IPPROTO_ICMP",
    "IPPROTO_RAW",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "SOCK_DGRAM",
    "SOCK_NONBLOCK",
    "SOCK_RAW",
    "SOCK_STREAM",
    "DatagramTransport",
    "DeviceStats",
    "FaultConfig",
    "FaultInjector",
    "MemoryWire",
    "NetDevice",
    "PcapWriter",
    "Server",
    "Settings",
    "Socket",
    "Stack",
    "TapDevice",
    "TcpTransport",
    "VirtualSwitch",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "open_connection",
    "start_server",
    "start_tls",
]
