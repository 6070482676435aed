"""Datagram socket operations for UDP: ``inet_dgram_ops`` plus ``udp_prot``.

Linux semantics, kept call for call:

- ``bind``: see :meth:`aiostack.core.udp.UdpLayer.bind` for the order of
  checks (EADDRNOTAVAIL, EACCES, EINVAL, EADDRINUSE).
- ``connect``: autobinds, fixes the peer (only its datagrams are received
  from then on) and the source address; a broadcast peer needs SO_BROADCAST.
  ``connect(AF_UNSPEC)`` dissolves the association (``udp_disconnect``).
- ``sendto`` on an unconnected socket without an address: EDESTADDRREQ;
  after ``shutdown(SHUT_WR)``: EPIPE; a datagram over 65507 bytes:
  EMSGSIZE; larger than the MTU: fragmented.
- A pending error (SO_ERROR, e.g. ECONNREFUSED from an ICMP port
  unreachable on a connected socket) is raised once, by the next send or
  receive, and then cleared.
- ``recvfrom(n)`` returns one datagram, truncated to ``n`` bytes (the rest
  of it is discarded, unless MSG_PEEK); after ``shutdown(SHUT_RD)`` an empty
  queue returns ``b""`` instead of waiting (EAGAIN when non-blocking, as the
  kernel never gets as far as the shutdown check then).
"""

from __future__ import annotations

import errno
import socket as _socket
from typing import TYPE_CHECKING, Any

from aiostack.core.udp import UdpEndpoint
from aiostack.errors import os_error
from aiostack.socket import options
from aiostack.socket.address import Address, format_address, parse_address
from aiostack.socket.ops import ProtoOps
from aiostack.socket.poll import datagram_poll
from aiostack.wire.ipv4 import ANY

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket

#: Plain ints: the stdlib's are IntFlag members, whose ``&`` costs a microsecond.
MSG_PEEK = int(_socket.MSG_PEEK)
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
RCV_SHUTDOWN = 1
SEND_SHUTDOWN = 2


class UdpOps(ProtoOps):
    def endpoint(self, sock: Socket) -> UdpEndpoint:
        ep = sock.protocol_state
        assert isinstance(ep, UdpEndpoint)
        return ep

    def create(self, sock: Socket) -> None:
        ep = UdpEndpoint(rcvbuf=sock.stack.settings.rmem_default, owner=sock)
        sock.protocol_state = ep

    def bind(self, sock: Socket, address: Any) -> None:
        host, port = parse_address(address, "bind")
        stack = sock.stack
        code = stack.udp.bind(self.endpoint(sock), host, port, privileged=stack.privileged)
        if code:
            raise os_error(code)

    async def connect(self, sock: Socket, address: Any) -> None:
        ep = self.endpoint(sock)
        if options.is_unspec(address):
            sock.stack.udp.disconnect(ep)
            return
        host, port = parse_address(address, "connect")
        code = sock.stack.udp.connect(ep, host, port)
        if code:
            raise os_error(code)

    def getname(self, sock: Socket, peer: bool) -> Address:
        ep = self.endpoint(sock)
        if peer:
            if not ep.connected:
                raise os_error(errno.ENOTCONN)
            return format_address(ep.remote_addr, ep.remote_port)
        local = ep.bound_addr if ep.bound_addr != ANY else ep.source_addr
        return format_address(local, ep.port)

    def shutdown(self, sock: Socket, how: int) -> None:
        # inet_shutdown: the mask is applied even when ENOTCONN is reported.
        ep = self.endpoint(sock)
        sock.shutdown_mask |= how + 1
        sock.wake()
        if not ep.connected:
            raise os_error(errno.ENOTCONN)

    async def sendmsg(
        self, sock: Socket, data: bytes | memoryview, address: Any, flags: int
    ) -> int:
        ep = self.endpoint(sock)
        if not ep.port:
            # inet_sendmsg autobinds before udp_sendmsg checks anything, so even a
            # send that fails (EDESTADDRREQ, EINVAL...) leaves the socket bound.
            code = sock.stack.udp.autobind(ep)
            if code:
                raise os_error(code)
        if sock.shutdown_mask & SEND_SHUTDOWN:
            raise os_error(errno.EPIPE)
        pending = ep.take_error()
        if pending:
            raise os_error(pending)
        if address is None:
            if not ep.connected:
                raise os_error(errno.EDESTADDRREQ)
            host, port = ep.remote_addr, ep.remote_port
        else:
            host, port = parse_address(address, "sendto")
            if port == 0:
                raise os_error(errno.EINVAL)
        stack = sock.stack
        code = stack.udp.send(stack.now(), ep, data, host, port)
        if code:
            raise os_error(code)
        stack.flush_ip_output()
        return len(data)

    async def recvmsg(self, sock: Socket, bufsize: int, flags: int) -> tuple[bytes, Address | None]:
        if bufsize < 0:
            raise ValueError(f"bufsize: {bufsize} is negative")
        ep: UdpEndpoint = sock.protocol_state
        if not flags and ep.queue and not ep.error:
            # Fast path: a datagram is waiting and nothing needs checking first.
            item = ep.pop()
            assert item is not None
            data, (host, port) = item
            return data[:bufsize] if len(data) > bufsize else data, format_address(host, port)
        nonblocking = bool(flags & MSG_DONTWAIT) or not sock.blocking
        async with sock.deadline(sock.rcvtimeo):
            while True:
                pending = ep.take_error()
                if pending:
                    raise os_error(pending)
                if ep.queue:
                    if flags & MSG_PEEK:
                        data, (host, port) = ep.queue[0]
                    else:
                        item = ep.pop()
                        assert item is not None
                        data, (host, port) = item
                    return data[:bufsize], format_address(host, port)
                if sock.shutdown_mask & RCV_SHUTDOWN:
                    if nonblocking:
                        # Linux: a receive that may not wait never looks at the
                        # shutdown (__skb_recv_udp), so an empty queue is EAGAIN.
                        raise os_error(errno.EAGAIN)
                    return b"", None
                if sock.closed:
                    raise os_error(errno.EBADF)
                if nonblocking:
                    raise os_error(errno.EAGAIN)
                await sock.readers.wait()

    def readable(self, sock: Socket) -> bool:
        ep = self.endpoint(sock)
        return bool(ep.queue or ep.error or sock.shutdown_mask & RCV_SHUTDOWN)

    def poll(self, sock: Socket) -> int:
        return datagram_poll(sock, self.endpoint(sock))

    def ioctl(self, sock: Socket, request: int) -> int:
        ep = self.endpoint(sock)
        if request == options.SIOCINQ:
            return len(ep.queue[0][0]) if ep.queue else 0
        if request == options.SIOCOUTQ:
            return 0
        raise os_error(errno.ENOIOCTLCMD if hasattr(errno, "ENOIOCTLCMD") else errno.ENOTTY)

    def setsockopt(self, sock: Socket, level: int, option: int, value: int | bytes) -> None:
        ep = self.endpoint(sock)
        number = options.as_int(value)
        settings = sock.stack.settings
        if level == _socket.SOL_SOCKET:
            if option == _socket.SO_REUSEADDR:
                ep.reuseaddr = bool(number)
            elif option == _socket.SO_REUSEPORT:
                ep.reuseport = bool(number)
            elif option == _socket.SO_BROADCAST:
                ep.broadcast = bool(number)
            elif option == _socket.SO_RCVBUF:
                ep.rcvbuf = options.buffer_size(number, settings.rmem_max, options.MIN_RCVBUF)
            elif option == _socket.SO_SNDBUF:
                sock.sndbuf = options.buffer_size(number, settings.wmem_max, options.MIN_SNDBUF)
            else:
                raise os_error(errno.ENOPROTOOPT)
        elif level == _socket.IPPROTO_IP:
            if option == _socket.IP_TTL:
                ep.ttl = options.ip_ttl(number)
            elif option == _socket.IP_TOS:
                ep.tos = number & 0xFF
            elif option == options.IP_RECVERR:
                ep.recverr = bool(number)
            else:
                raise os_error(errno.ENOPROTOOPT)
        else:
            raise os_error(errno.ENOPROTOOPT)

    def getsockopt(self, sock: Socket, level: int, option: int) -> int:
        ep = self.endpoint(sock)
        if level == _socket.SOL_SOCKET:
            values = {
                _socket.SO_REUSEADDR: int(ep.reuseaddr),
                _socket.SO_REUSEPORT: int(ep.reuseport),
                _socket.SO_BROADCAST: int(ep.broadcast),
                _socket.SO_RCVBUF: ep.rcvbuf,
                _socket.SO_SNDBUF: sock.sndbuf,
                _socket.SO_TYPE: sock.type,
                _socket.SO_PROTOCOL: sock.proto,
                _socket.SO_DOMAIN: sock.family,
            }
            if option == _socket.SO_ERROR:
                return ep.take_error()
            if option in values:
                return values[option]
        elif level == _socket.IPPROTO_IP:
            if option == _socket.IP_TTL:
                return ep.ttl if ep.ttl is not None else sock.stack.settings.ip_default_ttl
            if option == _socket.IP_TOS:
                return ep.tos
            if option == options.IP_RECVERR:
                return int(ep.recverr)
        raise os_error(errno.ENOPROTOOPT)

    def release(self, sock: Socket) -> None:
        sock.stack.udp.unbind(self.endpoint(sock))
