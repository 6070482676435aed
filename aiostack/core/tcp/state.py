"""TCP connection states (RFC 9293 3.3.2) with Linux's names and numbers, and the transition table.

The states are Linux's ``include/net/tcp_states.h`` enum, so that the
numbers match ``struct tcp_info.tcpi_state``, ``ss`` and ``/proc/net/tcp``
(``TCP_ESTABLISHED`` = 1 ... ``TCP_CLOSING`` = 11). :attr:`TcpState.rfc_name`
gives the RFC 9293 spelling (``SYN-RECEIVED``, ``TIME-WAIT``) for docs.

:data:`TRANSITIONS` is the state diagram of RFC 9293 figure 5 as data: a
``(state, event) -> state`` map. The control block changes state only
through :meth:`aiostack.core.tcp.connection.TcpConnection.set_state`, which
asserts (under ``__debug__``) that the move is in this table, so the table
cannot drift from the code; docs/tcp.md's diagram is generated from it
(:func:`to_dot`). Rules for maintainers, after h11's ``_state.py``: every
state change in the control block names its :class:`Event`, and a new
transition is added here first.
"""

from __future__ import annotations

from enum import Enum, IntEnum, IntFlag

__all__ = [
    "EVENTS",
    "EV_ERROR",
    "EV_READABLE",
    "EV_STATE",
    "EV_WRITABLE",
    "TRANSITIONS",
    "ConnEvent",
    "Event",
    "TcpState",
    "to_dot",
]


class TcpState(IntEnum):
    """Linux's TCP states (``tcp_states.h``); values are ``tcpi_state``."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11

    @property
    def rfc_name(self) -> str:
        """The RFC 9293 name (``SYN-RECEIVED``, ``CLOSED``, ...)."""
        return _RFC_NAMES[self]

    @property
    def is_synchronized(self) -> bool:
        """RFC 9293 3.5.2: past the SYN exchange (SYN-RECEIVED and every later state)."""
        return self not in (TcpState.CLOSE, TcpState.LISTEN, TcpState.SYN_SENT)


_RFC_NAMES = {
    TcpState.ESTABLISHED: "ESTABLISHED",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECV: "SYN-RECEIVED",
    TcpState.FIN_WAIT1: "FIN-WAIT-1",
    TcpState.FIN_WAIT2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSE: "CLOSED",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
}


class Event(Enum):
    """What moved a connection, in RFC 9293 figure 5's vocabulary."""

    #: Application: active OPEN (``connect``).
    CONNECT = "connect"
    #: Application: passive OPEN (``listen``).
    LISTEN = "listen"
    #: A SYN without ACK arrived (passive open, or simultaneous open in SYN-SENT).
    RCV_SYN = "rcv SYN"
    #: A SYN-ACK acknowledging our SYN arrived in SYN-SENT.
    RCV_SYN_ACK = "rcv SYN,ACK"
    #: The ACK of our SYN arrived in SYN-RECEIVED.
    RCV_ACK_OF_SYN = "rcv ACK of SYN"
    #: Application: CLOSE or shutdown(SHUT_WR): a FIN is queued.
    CLOSE = "close"
    #: The peer's FIN arrived (in order).
    RCV_FIN = "rcv FIN"
    #: The ACK of our FIN arrived.
    RCV_ACK_OF_FIN = "rcv ACK of FIN"
    #: A timer ended the connection (TIME-WAIT 2MSL, orphan FIN-WAIT-2,
    #: retransmission or keepalive giving up).
    TIMEOUT = "timeout"
    #: An acceptable RST arrived.
    RCV_RST = "rcv RST"
    #: Application: ABORT (linger 0, close with unread data) or an error.
    ABORT = "abort"


S = TcpState
E = Event
_SYNC = (S.SYN_RECV, S.ESTABLISHED, S.FIN_WAIT1, S.FIN_WAIT2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK)

#: ``(state, event) -> new state``: RFC 9293 figure 5 plus the resets and
#: timeouts the figure leaves implicit.
TRANSITIONS: dict[tuple[TcpState, Event], TcpState] = {
    (S.CLOSE, E.CONNECT): S.SYN_SENT,
    (S.CLOSE, E.LISTEN): S.LISTEN,
    (S.LISTEN, E.RCV_SYN): S.SYN_RECV,
    (S.LISTEN, E.CLOSE): S.CLOSE,
    (S.SYN_SENT, E.RCV_SYN_ACK): S.ESTABLISHED,
    # Simultaneous open (RFC 9293 3.5 figure 8).
    (S.SYN_SENT, E.RCV_SYN): S.SYN_RECV,
    (S.SYN_SENT, E.CLOSE): S.CLOSE,
    (S.SYN_SENT, E.RCV_RST): S.CLOSE,
    (S.SYN_SENT, E.TIMEOUT): S.CLOSE,
    (S.SYN_SENT, E.ABORT): S.CLOSE,
    (S.SYN_RECV, E.RCV_ACK_OF_SYN): S.ESTABLISHED,
    (S.SYN_RECV, E.CLOSE): S.FIN_WAIT1,
    (S.ESTABLISHED, E.CLOSE): S.FIN_WAIT1,
    (S.ESTABLISHED, E.RCV_FIN): S.CLOSE_WAIT,
    (S.FIN_WAIT1, E.RCV_ACK_OF_FIN): S.FIN_WAIT2,
    # Simultaneous close (RFC 9293 3.6 figure 13).
    (S.FIN_WAIT1, E.RCV_FIN): S.CLOSING,
    (S.FIN_WAIT2, E.RCV_FIN): S.TIME_WAIT,
    (S.FIN_WAIT2, E.TIMEOUT): S.CLOSE,
    (S.CLOSE_WAIT, E.CLOSE): S.LAST_ACK,
    (S.CLOSING, E.RCV_ACK_OF_FIN): S.TIME_WAIT,
    (S.LAST_ACK, E.RCV_ACK_OF_FIN): S.CLOSE,
    (S.TIME_WAIT, E.TIMEOUT): S.CLOSE,
    (S.TIME_WAIT, E.RCV_RST): S.CLOSE,
    (S.TIME_WAIT, E.ABORT): S.CLOSE,
}
for _s in _SYNC:
    TRANSITIONS[(_s, E.RCV_RST)] = S.CLOSE
    TRANSITIONS[(_s, E.ABORT)] = S.CLOSE
    TRANSITIONS.setdefault((_s, E.TIMEOUT), S.CLOSE)
del _s


def to_dot() -> str:
    """The transition table as a Graphviz digraph (for docs/tcp.md's diagram)."""
    lines = ["digraph tcp {", "  rankdir=TB;", "  node [shape=box];"]
    for (src, event), dst in TRANSITIONS.items():
        lines.append(f'  "{src.rfc_name}" -> "{dst.rfc_name}" [label="{event.value}"];')
    lines.append("}")
    return "\n".join(lines)


class ConnEvent(IntFlag):
    """What changed, for the shell to wake sockets (read with :meth:`TcpConnection.take_events`).

    ``READABLE``: data or EOF arrived (``sk_data_ready``). ``WRITABLE``: send
    buffer space freed or the connection became established
    (``sk_write_space``). ``STATE``: the state changed (``sk_state_change``).
    ``ERROR``: :attr:`TcpConnection.error` was set (``sk_error_report``).
    ``URGENT``: a new urgent pointer arrived (``tcp_check_urg`` ->
    ``sk_send_sigurg``, the point where Linux sends SIGURG to the owner).
    """

    NONE = 0
    READABLE = 1
    WRITABLE = 2
    STATE = 4
    ERROR = 8
    URGENT = 16


# The control block accumulates events as a plain int (an IntFlag ``|=``
# is a Python-level call, once per segment); take_events() hands out a
# ConnEvent. These are the values of the members above, the one definition.
EV_READABLE = int(ConnEvent.READABLE)
EV_WRITABLE = int(ConnEvent.WRITABLE)
EV_STATE = int(ConnEvent.STATE)
EV_ERROR = int(ConnEvent.ERROR)
EV_URGENT = int(ConnEvent.URGENT)
#: Every combination as a ConnEvent, indexed by its int value: take_events()
#: runs after every segment, and calling ConnEvent(bits) costs a microsecond.
EVENTS: tuple[ConnEvent, ...] = tuple(ConnEvent(bits) for bits in range(32))
