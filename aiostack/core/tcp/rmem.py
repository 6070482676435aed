"""Receive-memory accounting as Linux does it: skb ``truesize`` and ``scaling_ratio``.

Linux charges every received segment's ``skb->truesize`` (the payload plus
the packet's headers, the head buffer's slab rounding, ``struct sk_buff``
and ``skb_shared_info``) to ``sk_rmem_alloc`` until the application has
read all of it, and turns buffer bytes into window bytes with
``tcp_win_from_space(space) = space * scaling_ratio >> 8`` (6.x).
``scaling_ratio`` starts at ``TCP_DEFAULT_SCALING_RATIO`` (128: half the
buffer is window) and ``tcp_measure_rcv_mss`` sets it to
``len * 256 / truesize`` of the segment that raises ``rcv_mss``. The
window offered is then ``tcp_win_from_space(sk_rcvbuf - sk_rmem_alloc)``
(``tcp_space``), so a small segment costs far more window than its length.

:func:`skb_truesize` models the skb that a packet received on a TUN or TAP
device gets (``tun_get_user`` -> ``tun_alloc_skb``): a packet under a page
is copied into one linear ``kmalloc`` head of ``NET_SKB_PAD + len`` bytes
plus ``skb_shared_info``, rounded up to the slab's power of two (at least
512: the socket's accounted allocation does not use the small-head cache),
and ``truesize`` adds ``struct sk_buff``; a larger packet gets a small head
and page fragments. What the head has left after the packet is its tail
room: Linux copies a following in-order segment that fits there into the
unread tail skb (``tcp_try_coalesce``) and charges nothing more.
Checked against Linux 6.18 (x86-64, 4 KiB pages) with ``SO_RCVBUF`` 4096,
8192 and 16384 and segments of 200, 600, 1000, 1400 and 1460 bytes (see
docs/tcp.md): 1000 bytes of payload in a 1040-byte packet cost 2304 bytes
(ratio 111), 600 bytes 1280 (ratio 120), 200 bytes 1280 with room for two
more such segments, which then cost nothing.

Limits: the model is the TUN/TAP receive path of a 64-bit kernel with 64-byte
cache lines and SLUB's power-of-two caches; a real NIC driver (page-frag
buffers, GRO merging several segments into one skb) gives other numbers.
Coalescing into page fragments and in the out-of-order queue is not modelled.
"""

from __future__ import annotations

__all__ = [
    "TCP_DEFAULT_SCALING_RATIO",
    "TCP_RMEM_TO_WIN_SCALE",
    "measured_ratio",
    "skb_memory",
    "skb_truesize",
    "space_from_win",
    "win_from_space",
]

#: ``TCP_RMEM_TO_WIN_SCALE``: ``scaling_ratio`` is a fraction of 256.
TCP_RMEM_TO_WIN_SCALE = 8
#: ``TCP_DEFAULT_SCALING_RATIO``: half of the buffer is window until measured.
TCP_DEFAULT_SCALING_RATIO = 1 << (TCP_RMEM_TO_WIN_SCALE - 1)
#: ``SMP_CACHE_BYTES``: ``SKB_DATA_ALIGN`` rounds to cache lines.
_CACHE_LINE = 64
#: ``NET_SKB_PAD``: headroom ``tun_get_user`` reserves in front of the packet.
_NET_SKB_PAD = 64
#: ``SKB_DATA_ALIGN(sizeof(struct skb_shared_info))``.
_SHINFO = 320
#: ``SKB_DATA_ALIGN(sizeof(struct sk_buff))``: what ``truesize`` adds to the head.
_SKB = 256
_PAGE = 4096


def _align(n: int) -> int:
    return (n + _CACHE_LINE - 1) & ~(_CACHE_LINE - 1)


def _kmalloc_size(n: int) -> int:
    """``kmalloc_size_roundup`` for the sizes a head can have (SLUB, powers of two)."""
    size = 512
    while size < n:
        size <<= 1
    return size


#: :func:`skb_truesize`'s last ``(packet_len, truesize)``: the receive
#: window's growth asks it once per in-order segment
#: (:meth:`.buffers.ReceiveWindow.grow`), nearly always for the same length.
#: A pure function's answer, so one entry shared by every connection is safe
#: (seeded below, once :func:`skb_memory` exists, with a valid length).
_truesize_memo: tuple[int, int]


def skb_truesize(packet_len: int) -> int:
    """``skb->truesize`` of a ``packet_len``-byte IP packet received on a TUN (TAP: add 14)."""
    global _truesize_memo
    memo = _truesize_memo
    if memo[0] == packet_len:
        return memo[1]
    ts = skb_memory(packet_len)[0]
    _truesize_memo = (packet_len, ts)
    return ts


def skb_memory(packet_len: int) -> tuple[int, int]:
    """``(truesize, tail room)`` of the skb a ``packet_len``-byte packet arrives in."""
    if packet_len < 0:
        raise ValueError(f"packet_len must not be negative, not {packet_len}")
    if _NET_SKB_PAD + packet_len < _PAGE:
        head = _kmalloc_size(_align(_NET_SKB_PAD + packet_len) + _SHINFO)
        return head + _SKB, head - _SHINFO - _NET_SKB_PAD - packet_len
    # tun_alloc_skb: a head for the pad alone, the packet in whole pages.
    head = _kmalloc_size(_align(_NET_SKB_PAD) + _SHINFO)
    return head + _SKB + ((packet_len + _PAGE - 1) & ~(_PAGE - 1)), 0


_truesize_memo = (0, skb_memory(0)[0])


def win_from_space(space: int, ratio: int) -> int:
    """Window bytes ``space`` buffer bytes give (Linux ``tcp_win_from_space``; may be negative)."""
    return (space * ratio) >> TCP_RMEM_TO_WIN_SCALE


def space_from_win(win: int, ratio: int) -> int:
    """Buffer bytes a window of ``win`` bytes needs (Linux ``tcp_space_from_win``)."""
    return (win << TCP_RMEM_TO_WIN_SCALE) // ratio


def measured_ratio(length: int, truesize: int) -> int:
    """``scaling_ratio`` from one segment (``tcp_measure_rcv_mss``): at least 1."""
    ratio = (length << TCP_RMEM_TO_WIN_SCALE) // truesize
    return ratio if ratio > 0 else 1
