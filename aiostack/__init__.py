"""aiostack: a user-space TCP/IP stack for asyncio.

The public names are re-exported here; everything else is importable from
its module but not part of the stable surface.
"""

from aiostack.aio import (
    Server,
    TcpTransport,
    create_connection,
    create_server,
    open_connection,
    start_server,
)
from aiostack.link.base import DeviceStats, NetDevice
from aiostack.link.fault import FaultConfig, FaultInjector
from aiostack.link.memory import MemoryWire, VirtualSwitch
from aiostack.link.pcap import PcapWriter
from aiostack.link.tap import TapDevice
from aiostack.settings import Settings
from aiostack.socket import (
    AF_INET,
    SOCK_DGRAM,
    SOCK_NONBLOCK,
    SOCK_STREAM,
    Socket,
)
from aiostack.stack.stack import Stack

__all__ = [
    "AF_INET",
    "SOCK_DGRAM",
    "SOCK_NONBLOCK",
    "SOCK_STREAM",
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
    "create_server",
    "open_connection",
    "start_server",
]
