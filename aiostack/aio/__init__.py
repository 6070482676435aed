"""asyncio on aiostack: a Transport for TCP sockets, loop-style helpers and Streams.

``create_connection``/``create_server`` mirror the event loop's methods and
``open_connection``/``start_server`` mirror ``asyncio``'s, each taking the
stack first; the protocols, readers and writers are the stdlib's own.
"""

from aiostack.aio.streams import (
    Server,
    create_connection,
    create_server,
    open_connection,
    start_server,
)
from aiostack.aio.transport import TcpTransport, TransportSocket

__all__ = [
    "Server",
    "TcpTransport",
    "TransportSocket",
    "create_connection",
    "create_server",
    "open_connection",
    "start_server",
]
