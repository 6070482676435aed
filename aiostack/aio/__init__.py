"""asyncio on aiostack: Transports for TCP and UDP sockets, loop-style helpers, Streams, TLS.

``create_connection``/``create_server``/``create_datagram_endpoint`` mirror
the event loop's methods and ``open_connection``/``start_server`` mirror
``asyncio``'s, each taking the stack first (or call them as methods of
:class:`~aiostack.stack.stack.Stack`); the protocols, readers, writers and
the TLS layer are the stdlib's own. No task runs per connection or endpoint:
transports are driven by the socket's readiness callback.
"""

from aiostack.aio.datagram import DatagramTransport, create_datagram_endpoint
from aiostack.aio.streams import (
    Server,
    create_connection,
    create_server,
    open_connection,
    start_server,
)
from aiostack.aio.tls import start_tls
from aiostack.aio.transport import TcpTransport, TransportSocket

__all__ = [
    "DatagramTransport",
    "Server",
    "TcpTransport",
    "TransportSocket",
    "create_connection",
    "create_datagram_endpoint",
    "create_server",
    "open_connection",
    "start_server",
    "start_tls",
]
