"""ICMP "ping" sockets: ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)``, Linux's ``ping_prot``.

They let a program without the raw capability send echo requests and read
the replies. Linux rules, each checked against the kernel
(``tests/socket/test_ping_socket.py``):

- **Who may** (``ping_init_sock``): only a process whose effective group
  or one of its supplementary groups lies in ``ping_group_range``
  (``net.ipv4.ping_group_range``, default ``(1, 0)``: nobody, *root
  included*); otherwise ``socket()`` fails with EACCES.
- **The identifier is the port.** ``bind((addr, ident))`` takes it
  (0: the next free one); the first send or connect picks one if bind did
  not. Sockets are created with SO_REUSEADDR on (``INET_PROTOSW_REUSE``), so
  two sockets may share an identifier; replies go to the newest.
- **Send**: the data is an ICMP echo request header and payload (anything
  else: EINVAL; shorter than 8 bytes: EINVAL; over 65535 bytes: EMSGSIZE);
  the stack writes the socket's identifier and the checksum. The
  destination's port is ignored.
- **Receive**: ``recvfrom`` returns an echo reply addressed to the
  identifier, ICMP header first, from ``(source, 0)``.
- **Errors** (no error queue): an ICMP error about one of our requests is
  kept (SO_ERROR, raised by the next receive) when it is hard and the
  socket connected, or always with IP_RECVERR; see :mod:`aiostack.core.ping`.
- ``connect`` fixes the destination and, as ``ip4_datagram_connect``, the
  local address; ``connect(AF_UNSPEC)`` forgets both, and an identifier
  that bind did not ask for. Ioctls are ENOTTY (``ping_prot`` has none).
"""

from __future__ import annotations

import errno
import os
import socket as _socket
import struct
from typing import TYPE_CHECKING, Any

from aiostack.core.ping import PingEndpoint
from aiostack.errors import os_error
from aiostack.socket import options
from aiostack.socket.address import Address, format_address, parse_address
from aiostack.socket.dgram import (
    datagram_readable,
    get_shared_option,
    recv_datagram,
    set_shared_option,
)
from aiostack.socket.ops import ProtoOps
from aiostack.socket.poll import datagram_poll
from aiostack.wire import icmpv4, ipv4
from aiostack.wire.icmpv4 import IcmpType
from aiostack.wire.ipv4 import ANY, is_multicast

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket
    from aiostack.stack.stack import Stack

MSG_OOB = int(_socket.MSG_OOB)
SEND_SHUTDOWN = 2
MAX_PING_LEN = 0xFFFF
_SEQ = struct.Struct("!H")


def caller_groups() -> set[int]:
    """The groups ``ping_init_sock`` looks at: the effective group and the supplementary ones."""
    return {os.getegid(), *os.getgroups()}


def may_create(stack: Stack) -> bool:
    """Whether this process may open a ping socket on ``stack`` (``ping_group_range``)."""
    low, high = stack.settings.ping_group_range
    return any(low <= group <= high for group in caller_groups())


class PingSock:
    """Per-socket state: the table endpoint plus what only sending needs."""

    __slots__ = (
        "addr_locked",
        "broadcast",
        "ep",
        "ident_locked",
        "remote_addr",
        "remote_port",
        "source",
        "tos",
        "ttl",
    )

    def __init__(self, ep: PingEndpoint) -> None:
        self.ep = ep
        self.remote_addr = ANY
        #: ``inet_dport``: kept from connect() though ICMP has no ports; getpeername needs it.
        self.remote_port = 0
        #: ``inet_saddr``: the source for sending (bound or chosen at connect), 0 = by route.
        self.source = ANY
        #: SOCK_BINDADDR_LOCK / SOCK_BINDPORT_LOCK: what a disconnect must keep.
        self.addr_locked = False
        self.ident_locked = False
        self.broadcast = False
        self.ttl: int | None = None
        self.tos = 0


class PingOps(ProtoOps):
    """See the module docstring."""

    @staticmethod
    def state(sock: Socket) -> PingSock:
        st = sock.protocol_state
        assert isinstance(st, PingSock)
        return st

    def permit(self, stack: Stack) -> None:
        if not may_create(stack):
            raise os_error(errno.EACCES)

    def create(self, sock: Socket) -> None:
        ep = PingEndpoint(rcvbuf=sock.stack.settings.rmem_default, owner=sock, reuseaddr=True)
        sock.protocol_state = PingSock(ep)

    def release(self, sock: Socket) -> None:
        sock.stack.ping_sockets.unbind(self.state(sock).ep)

    def _autobind(self, sock: Socket) -> None:
        """``inet_autobind``: pick an identifier; EAGAIN when all 65535 are taken."""
        ep = self.state(sock).ep
        if not ep.ident and not sock.stack.ping_sockets.bind(ep, 0):
            raise os_error(errno.EAGAIN)

    # -- addresses ------------------------------------------------------------

    def bind(self, sock: Socket, address: Any) -> None:
        """``ping_bind``: EADDRNOTAVAIL, then EINVAL once bound, then EADDRINUSE."""
        host, ident = parse_address(address, "bind")
        st = self.state(sock)
        routes = sock.stack.ip.routes
        special = routes.is_broadcast(host) or host == ipv4.LIMITED_BROADCAST or is_multicast(host)
        allowed = host == ANY or routes.is_local(host) or sock.stack.settings.ip_nonlocal_bind
        # ping_check_bind_addr turns broadcast and multicast addresses away.
        if special or not allowed:
            raise os_error(errno.EADDRNOTAVAIL)
        ep = st.ep
        if ep.ident:
            raise os_error(errno.EINVAL)
        if not sock.stack.ping_sockets.bind(ep, ident):
            raise os_error(errno.EADDRINUSE)
        ep.bound_addr = st.source = host
        st.addr_locked = host != ANY
        st.ident_locked = ident != 0
        st.remote_addr = ANY
        st.remote_port = 0
        ep.connected = False

    async def connect(self, sock: Socket, address: Any) -> None:
        """``inet_dgram_connect`` (autobind first) then ``ip4_datagram_connect``."""
        st = self.state(sock)
        ep = st.ep
        if options.is_unspec(address):
            # __udp_disconnect: forget the peer, and what bind did not fix.
            ep.connected = False
            st.remote_addr = ANY
            st.remote_port = 0
            if not st.addr_locked:
                ep.bound_addr = st.source = ANY
            if not st.ident_locked:
                sock.stack.ping_sockets.unbind(ep)
            return
        host, port = parse_address(address, "connect")
        self._autobind(sock)
        routes = sock.stack.ip.routes
        route = routes.lookup(host)
        broadcast = host == ipv4.LIMITED_BROADCAST or routes.is_broadcast(host)
        if route is None and not broadcast:
            raise os_error(errno.ENETUNREACH)
        if broadcast and not st.broadcast:
            raise os_error(errno.EACCES)
        if not st.source and route is not None:
            st.source = route.source
        if not ep.bound_addr:
            ep.bound_addr = st.source
        st.remote_addr = host
        st.remote_port = port
        ep.connected = True

    def getname(self, sock: Socket, peer: bool) -> Address:
        st = self.state(sock)
        if peer:
            if not st.ep.connected or not st.remote_port:
                raise os_error(errno.ENOTCONN)
            return format_address(st.remote_addr, st.remote_port)
        return format_address(st.ep.bound_addr or st.source, st.ep.ident)

    def shutdown(self, sock: Socket, how: int) -> None:
        """``inet_shutdown``: the mask is applied even when ENOTCONN is reported."""
        sock.shutdown_mask |= how + 1
        sock.wake()
        if not self.state(sock).ep.connected:
            raise os_error(errno.ENOTCONN)

    # -- data -----------------------------------------------------------------

    async def sendmsg(
        self, sock: Socket, data: bytes | memoryview, address: Any, flags: int
    ) -> int:
        """``ping_v4_sendmsg``, with ``inet_sendmsg``'s autobind before every check."""
        self._autobind(sock)
        st = self.state(sock)
        ep = st.ep
        length = len(data)
        if length > MAX_PING_LEN:
            raise os_error(errno.EMSGSIZE)
        if length < icmpv4.HEADER_LEN:
            raise os_error(errno.EINVAL)
        if flags & MSG_OOB:
            raise os_error(errno.EOPNOTSUPP)
        if data[0] != IcmpType.ECHO_REQUEST or data[1] != 0:
            raise os_error(errno.EINVAL)
        if address is None:
            if not ep.connected:
                raise os_error(errno.EDESTADDRREQ)
            dst = st.remote_addr
        else:
            dst, _port = parse_address(address, "sendto")  # ICMP has no ports: ignored
        stack = sock.stack
        ip = stack.ip
        routes = ip.routes
        broadcast = dst == ipv4.LIMITED_BROADCAST or routes.is_broadcast(dst)
        route = routes.lookup(dst)
        if route is None and not broadcast:
            stack.counters.IpOutNoRoutes += 1
            raise os_error(errno.ENETUNREACH)
        if broadcast and not st.broadcast:
            raise os_error(errno.EACCES)
        # ip_append_data -> sock_alloc_send_skb: a pending error, then the shutdown.
        pending = ep.take_error()
        if pending:
            raise os_error(pending)
        if sock.shutdown_mask & SEND_SHUTDOWN:
            raise os_error(errno.EPIPE)
        src = st.source or (route.source if route is not None else ANY)
        if not src:
            interfaces = routes.interfaces
            src = interfaces[0].address if interfaces else ANY
        buf = ip.alloc(length)
        offset = ip.transport_offset
        buf[offset:] = data
        (sequence,) = _SEQ.unpack_from(buf, offset + 6)
        icmpv4.emit_into(
            buf,
            offset,
            type=IcmpType.ECHO_REQUEST,
            code=0,
            rest=icmpv4.echo_rest(ep.ident, sequence),
            body_len=length - icmpv4.HEADER_LEN,
        )
        code = ip.output(
            stack.now(), buf, src=src, dst=dst, proto=icmpv4.PROTO, tos=st.tos, ttl=st.ttl
        )
        if code:
            raise os_error(code)
        stack.counters.IcmpOutEchos += 1
        stack.flush_ip_output()
        return length

    async def recvmsg(self, sock: Socket, bufsize: int, flags: int) -> tuple[bytes, Address | None]:
        """``ping_recvmsg``: one echo reply, ICMP header first, truncated to ``bufsize``."""
        if bufsize < 0:
            raise ValueError(f"bufsize: {bufsize} is negative")
        if flags & MSG_OOB:
            raise os_error(errno.EOPNOTSUPP)
        return await recv_datagram(sock, self.state(sock).ep, bufsize, flags)

    def readable(self, sock: Socket) -> bool:
        return datagram_readable(sock, self.state(sock).ep)

    def poll(self, sock: Socket) -> int:
        return datagram_poll(sock, self.state(sock).ep)

    # -- options --------------------------------------------------------------

    def setsockopt(self, sock: Socket, level: int, option: int, value: int | bytes) -> None:
        st = self.state(sock)
        number = options.as_int(value)
        if level == _socket.SOL_SOCKET and option == _socket.SO_REUSEADDR:
            st.ep.reuseaddr = bool(number)
        elif not set_shared_option(sock, st, level, option, number):
            raise os_error(errno.ENOPROTOOPT)

    def getsockopt(self, sock: Socket, level: int, option: int) -> int:
        st = self.state(sock)
        if level == _socket.SOL_SOCKET and option == _socket.SO_REUSEADDR:
            return int(st.ep.reuseaddr)
        value = get_shared_option(sock, st, level, option)
        if value is None:
            raise os_error(errno.ENOPROTOOPT)
        return value
