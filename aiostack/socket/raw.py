"""Raw IPv4 sockets: Linux's ``inet_sockraw_ops`` plus ``raw_prot``.

``socket(AF_INET, SOCK_RAW, proto)`` needs the raw capability (the stack's
``privileged``; EPERM otherwise) and an explicit protocol (see
:mod:`aiostack.socket.inet` for the order of those checks).

- **Receive**: every IPv4 datagram of the socket's protocol that reaches
  this host, copied before the transport sees it (:mod:`aiostack.core.raw`),
  header included; ``recvfrom`` gives ``(source, 0)``. An ICMP raw socket
  therefore sees echo requests the stack answers itself, and replies to its
  own echo requests. ICMP_FILTER (``SOL_RAW``) drops ICMP types by bit.
- **Send** without IP_HDRINCL: the data is the transport header and payload;
  the stack builds the IP header (protocol = the socket's, TTL/TOS from
  IP_TTL/IP_TOS) and fragments if needed. The stack computes no transport
  checksum (an ICMP sender computes its own, as ``ping`` does).
- **Send** with IP_HDRINCL (implied by IPPROTO_RAW): the data is a whole IP
  datagram; as ``raw_send_hdrinc``, the stack fills in the total length and
  the header checksum always, the ID when zero and the source when zero,
  routes by the ``sendto`` address, and refuses a datagram larger than the
  MTU (EMSGSIZE) or shorter than its header (EINVAL).
- Errors in ``raw_sendmsg``'s order: over 65535 bytes EMSGSIZE; no address
  and not connected EDESTADDRREQ; no route ENETUNREACH; a broadcast without
  SO_BROADCAST EACCES; after ``shutdown(SHUT_WR)`` EPIPE.
- ``bind`` sets only the local address (no ports: ``getsockname`` reports
  the protocol number as the port, as Linux does); ``bind`` after
  ``connect`` is EINVAL; ``connect`` fixes the peer (``ip4_datagram_connect``);
  ``getpeername`` reports the port given to ``connect`` and, like Linux's
  ``inet_getname``, ENOTCONN when that port was 0.
- ICMP errors about the socket's own datagrams (``raw_icmp_error``/``raw_err``):
  with IP_RECVERR every one is kept; without, only a hard one (port or
  protocol unreachable, parameter problem, fragmentation needed...) and only
  on a connected socket. A kept error is raised by the next receive (before
  any queued datagram) or read by SO_ERROR, once. There is no error queue.
"""

from __future__ import annotations

import errno
import socket as _socket
import struct
from typing import TYPE_CHECKING, Any

from aiostack.core.raw import IPPROTO_ICMP, RawEndpoint
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
from aiostack.wire import ipv4
from aiostack.wire.checksum import internet_checksum
from aiostack.wire.ipv4 import ANY, is_multicast

if TYPE_CHECKING:
    from aiostack.socket.socket import Socket

MSG_OOB = int(_socket.MSG_OOB)
SEND_SHUTDOWN = 2
IPPROTO_RAW = 255
SOL_RAW = 255
ICMP_FILTER = 1
MAX_RAW_LEN = 0xFFFF
_IP_HDRINCL = _socket.IP_HDRINCL


class RawSock:
    """Per-socket state: the receive endpoint plus what only sending needs."""

    __slots__ = ("broadcast", "ep", "hdrincl", "remote_port", "reuseaddr", "source", "tos", "ttl")

    def __init__(self, ep: RawEndpoint, hdrincl: bool) -> None:
        self.ep = ep
        self.hdrincl = hdrincl
        #: On from creation for raw sockets (``INET_PROTOSW_REUSE``), though nothing uses it.
        self.reuseaddr = True
        #: ``inet_dport``: kept from connect() though raw IP has no ports; getpeername needs it.
        self.remote_port = 0
        #: The source address for sending (bound or chosen at connect), 0 = by route.
        self.source = ANY
        self.broadcast = False
        self.ttl: int | None = None
        self.tos = 0

    @property
    def connected(self) -> bool:
        return self.ep.connected


class RawOps(ProtoOps):
    """See the module docstring."""

    @staticmethod
    def state(sock: Socket) -> RawSock:
        st = sock.protocol_state
        assert isinstance(st, RawSock)
        return st

    def create(self, sock: Socket) -> None:
        ep = RawEndpoint(sock.proto, rcvbuf=sock.stack.settings.rmem_default, owner=sock)
        sock.protocol_state = RawSock(ep, hdrincl=sock.proto == IPPROTO_RAW)
        sock.stack.ip.raw.add(ep)

    def release(self, sock: Socket) -> None:
        sock.stack.ip.raw.remove(self.state(sock).ep)

    # -- addresses ------------------------------------------------------------

    def bind(self, sock: Socket, address: Any) -> None:
        """``raw_bind``: EINVAL once connected, EADDRNOTAVAIL for a foreign address."""
        host, _port = parse_address(address, "bind")
        st = self.state(sock)
        if st.connected:
            raise os_error(errno.EINVAL)
        routes = sock.stack.ip.routes
        special = host == ANY or routes.is_broadcast(host) or is_multicast(host)
        if not (special or routes.is_local(host) or sock.stack.settings.ip_nonlocal_bind):
            raise os_error(errno.EADDRNOTAVAIL)
        st.ep.bound_addr = host
        st.source = ANY if special else host

    async def connect(self, sock: Socket, address: Any) -> None:
        """``ip4_datagram_connect``: route, SO_BROADCAST, then the peer is fixed."""
        st = self.state(sock)
        if options.is_unspec(address):
            # __udp_disconnect: forget the peer (and an address the route chose).
            st.ep.connected = False
            st.remote_port = 0
            st.ep.remote_addr = ANY
            if not st.ep.bound_addr:
                st.source = ANY
            return
        host, port = parse_address(address, "connect")
        routes = sock.stack.ip.routes
        route = routes.lookup(host)
        broadcast = host == ipv4.LIMITED_BROADCAST or routes.is_broadcast(host)
        if route is None and not broadcast:
            raise os_error(errno.ENETUNREACH)
        if broadcast and not st.broadcast:
            raise os_error(errno.EACCES)
        if not st.source and route is not None:
            st.source = route.source
        st.ep.remote_addr = host
        st.remote_port = port
        st.ep.connected = True

    def getname(self, sock: Socket, peer: bool) -> Address:
        st = self.state(sock)
        if peer:
            # inet_getname: no peer port, no peer (so a raw socket connected to
            # port 0 has none, although it is connected).
            if not st.connected or not st.remote_port:
                raise os_error(errno.ENOTCONN)
            return format_address(st.ep.remote_addr, st.remote_port)
        return format_address(st.ep.bound_addr or st.source, sock.proto)

    def shutdown(self, sock: Socket, how: int) -> None:
        """``inet_shutdown``: the mask is applied even when ENOTCONN is reported."""
        sock.shutdown_mask |= how + 1
        sock.wake()
        if not self.state(sock).connected:
            raise os_error(errno.ENOTCONN)

    # -- data -----------------------------------------------------------------

    async def sendmsg(
        self, sock: Socket, data: bytes | memoryview, address: Any, flags: int
    ) -> int:
        """``raw_sendmsg``: see the module docstring for the checks and their order."""
        st = self.state(sock)
        length = len(data)
        if length > MAX_RAW_LEN:
            raise os_error(errno.EMSGSIZE)
        if flags & MSG_OOB:
            raise os_error(errno.EOPNOTSUPP)
        if address is None:
            if not st.connected:
                raise os_error(errno.EDESTADDRREQ)
            dst = st.ep.remote_addr
        else:
            dst, _port = parse_address(address, "sendto")
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
        if sock.shutdown_mask & SEND_SHUTDOWN:
            raise os_error(errno.EPIPE)
        src = st.source or (route.source if route is not None else ANY)
        if not src:
            interfaces = routes.interfaces
            src = interfaces[0].address if interfaces else ANY
        now = stack.now()
        if st.hdrincl:
            self._send_hdrincl(sock, bytes(data), src, dst, broadcast)
        else:
            buf = ip.alloc(length)
            buf[ip.transport_offset :] = data
            code = ip.output(now, buf, src=src, dst=dst, proto=sock.proto, tos=st.tos, ttl=st.ttl)
            if code:
                raise os_error(code)
        stack.flush_ip_output()
        return length

    def _send_hdrincl(self, sock: Socket, packet: bytes, src: int, dst: int, bcast: bool) -> None:
        """``raw_send_hdrinc``: the caller's header, with length, checksum, ID, source fixed."""
        ip = sock.stack.ip
        length = len(packet)
        if length > ip.route_mtu(sock.stack.now(), dst):
            raise os_error(errno.EMSGSIZE)
        if length < ipv4.MIN_HEADER_LEN:
            raise os_error(errno.EINVAL)
        ihl = (packet[0] & 0xF) << 2
        if ihl > length:
            raise os_error(errno.EINVAL)
        headroom = ip.headroom
        buf = bytearray(headroom + length)
        buf[headroom:] = packet
        if ihl >= ipv4.MIN_HEADER_LEN:
            if not struct.unpack_from("!I", buf, headroom + 12)[0]:
                struct.pack_into("!I", buf, headroom + 12, src)
            struct.pack_into("!H", buf, headroom + 2, length)
            if not struct.unpack_from("!H", buf, headroom + 4)[0]:
                struct.pack_into("!H", buf, headroom + 4, sock.stack.rng.getrandbits(16) or 1)
            struct.pack_into("!H", buf, headroom + 10, 0)
            checksum = internet_checksum(buf[headroom : headroom + ihl])
            struct.pack_into("!H", buf, headroom + 10, checksum)
        if bcast:
            next_hop = ipv4.LIMITED_BROADCAST
        else:
            route = ip.routes.lookup(dst)
            assert route is not None
            next_hop = route.next_hop(dst)
        ip.counters.IpOutRequests += 1
        ip.outbox.append((next_hop, buf))

    async def recvmsg(self, sock: Socket, bufsize: int, flags: int) -> tuple[bytes, Address | None]:
        """``raw_recvmsg``: one datagram with its IP header, truncated to ``bufsize``."""
        if bufsize < 0:
            raise ValueError(f"bufsize: {bufsize} is negative")
        return await recv_datagram(sock, self.state(sock).ep, bufsize, flags)

    def readable(self, sock: Socket) -> bool:
        return datagram_readable(sock, self.state(sock).ep)

    def poll(self, sock: Socket) -> int:
        return datagram_poll(sock, self.state(sock).ep)

    def ioctl(self, sock: Socket, request: int) -> int:
        ep = self.state(sock).ep
        if request == options.SIOCINQ:
            return len(ep.queue[0][0]) if ep.queue else 0
        if request == options.SIOCOUTQ:
            return 0
        raise os_error(errno.ENOTTY)

    # -- options --------------------------------------------------------------

    def setsockopt(self, sock: Socket, level: int, option: int, value: int | bytes) -> None:
        st = self.state(sock)
        if level == SOL_RAW:
            if option != ICMP_FILTER:
                raise os_error(errno.ENOPROTOOPT)
            if sock.proto != IPPROTO_ICMP:
                raise os_error(errno.EOPNOTSUPP)
            # raw_seticmpfilter copies at most the 4-byte mask, fewer if given fewer.
            raw = struct.pack("I", value & 0xFFFFFFFF) if isinstance(value, int) else value[:4]
            old = struct.pack("I", st.ep.icmp_filter)
            st.ep.icmp_filter = struct.unpack("I", raw + old[len(raw) :])[0]
            return
        number = options.as_int(value)
        if level == _socket.SOL_SOCKET and option == _socket.SO_REUSEADDR:
            st.reuseaddr = bool(number)
        elif level == _socket.IPPROTO_IP and option == _IP_HDRINCL:
            st.hdrincl = bool(number)
        elif not set_shared_option(sock, st, level, option, number):
            raise os_error(errno.ENOPROTOOPT)

    def getsockopt(self, sock: Socket, level: int, option: int) -> int:
        st = self.state(sock)
        if level == SOL_RAW:
            if option != ICMP_FILTER:
                raise os_error(errno.ENOPROTOOPT)
            if sock.proto != IPPROTO_ICMP:
                raise os_error(errno.EOPNOTSUPP)
            return int(struct.unpack("i", struct.pack("I", st.ep.icmp_filter))[0])
        if level == _socket.SOL_SOCKET and option == _socket.SO_REUSEADDR:
            return int(st.reuseaddr)
        if level == _socket.IPPROTO_IP and option == _IP_HDRINCL:
            return int(st.hdrincl)
        value = get_shared_option(sock, st, level, option)
        if value is None:
            raise os_error(errno.ENOPROTOOPT)
        return value
