"""Receive memory as Linux accounts it: skb truesize, scaling_ratio, the window it gives.

The expected numbers are Linux 6.18's on a TUN (see docs/tcp.md and
tests/packetdrill/window/truesize_*.pkt, which check them on the kernel).
"""

from __future__ import annotations

import pytest

from aiostack.core.tcp.buffers import ReceiveBuffer, ReceiveWindow
from aiostack.core.tcp.rmem import (
    TCP_DEFAULT_SCALING_RATIO,
    measured_ratio,
    skb_memory,
    skb_truesize,
    space_from_win,
    win_from_space,
)

# -- the skb model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet_len", "truesize", "tail_room"),
    [
        (240, 1280, 400),  # 200 bytes of payload: a 1024-byte head
        (640, 1280, 0),  # 600 bytes: the same head, full
        (1040, 2304, 624),  # 1000 bytes: a 2048-byte head
        (1440, 2304, 224),
        (1500, 2304, 164),  # a full Ethernet MTU
        (5000, 768 + 8192, 0),  # over a page: a small head and two pages
    ],
)
def test_skb_memory(packet_len: int, truesize: int, tail_room: int) -> None:
    assert skb_memory(packet_len) == (truesize, tail_room)
    assert skb_truesize(packet_len) == truesize


def test_skb_memory_rejects_a_negative_length() -> None:
    with pytest.raises(ValueError, match="packet_len"):
        skb_memory(-1)


def test_window_and_space_conversions() -> None:
    assert TCP_DEFAULT_SCALING_RATIO == 128
    assert win_from_space(8192, 128) == 4096
    assert win_from_space(8192, 111) == 3552
    assert win_from_space(-256, 128) == -128  # tcp_space may go negative
    assert space_from_win(3552, 111) == 8192
    assert measured_ratio(1000, 2304) == 111
    assert measured_ratio(1460, 2304) == 162
    assert measured_ratio(1, 100_000) == 1  # never 0


# -- the receive buffer's account ---------------------------------------------------------


def rcvbuf_8192() -> ReceiveBuffer:
    rb = ReceiveBuffer(0, rcv_nxt=0, rcvbuf=8192)
    rb.advmss = 1460
    return rb


def test_skb_model_starts_at_half_the_buffer() -> None:
    rb = rcvbuf_8192()
    assert rb.capacity == 4096 and rb.free_space == 4096 and rb.rmem == 0


def test_a_segment_costs_its_truesize_and_measures_the_ratio() -> None:
    """receive_buffer_zero_window.pkt: after one 1000-byte segment Linux has 2553 free."""
    rb = rcvbuf_8192()
    assert rb.insert(0, b"x" * 1000).delivered == 1000
    assert rb.rmem == 2304 and rb.scaling_ratio == 111
    assert rb.capacity == 3552 and rb.free_space == 2553
    rb.insert(1000, b"x" * 1000)
    rb.insert(2000, b"x" * 1000)
    assert rb.free_space == 555  # under one MSS: the window closes


def test_memory_is_freed_only_when_a_segment_is_read_whole() -> None:
    """receiver_sws_small_read.pkt: reading 500 of 1000 bytes frees nothing."""
    rb = rcvbuf_8192()
    rb.insert(0, b"x" * 1000)
    rb.insert(1000, b"y" * 1000)
    rb.read(500)
    assert rb.rmem == 2 * 2304
    rb.read(500)
    assert rb.rmem == 2304
    rb.read()
    assert rb.rmem == 0 and rb.free_space == 3552


def test_small_segments_coalesce_into_the_tail_skb() -> None:
    """truesize_small_segments_coalesce.pkt: 300 and 310 bytes fit the 624-byte tail room."""
    rb = rcvbuf_8192()
    rb.insert(0, b"a" * 1000)
    rb.insert(1000, b"b" * 300)
    rb.insert(1300, b"c" * 310)
    assert rb.rmem == 2304
    rb.insert(1610, b"d" * 500)  # 14 bytes left: a new skb
    assert rb.rmem == 2304 + 1280
    # The merged skb is freed with its last byte, not its first segment's.
    rb.read(1000)
    assert rb.rmem == 2304 + 1280
    rb.read(610)
    assert rb.rmem == 1280


def test_append_next_keeps_the_same_account() -> None:
    """The fast path's append_next charges exactly as insert does."""
    a, b = rcvbuf_8192(), rcvbuf_8192()
    seq = 0
    for n in (1000, 300, 310, 500, 1000):
        a.insert(seq, b"x" * n)
        assert b.append_next(seq, b"x" * n)
        seq += n
    assert (a.rmem, a.scaling_ratio, a.capacity) == (b.rmem, b.scaling_ratio, b.capacity)


def test_out_of_order_data_is_charged_until_read() -> None:
    rb = rcvbuf_8192()
    rb.insert(1000, b"y" * 1000)  # beyond a hole
    assert rb.rmem == 2304
    rb.insert(0, b"x" * 1000)  # fills it: both readable, each charged once
    assert rb.rmem == 2 * 2304
    rb.read()
    assert rb.rmem == 0


def test_payload_accounting_without_rcvbuf() -> None:
    """A standalone buffer counts payload against its capacity, ratio 1:1."""
    rb = ReceiveBuffer(1000)
    rb.insert(0, b"x" * 300)
    rb.insert(500, b"y" * 200)
    assert rb.free_space == 500
    rb.insert(300, b"z" * 200)
    assert rb.free_space == 300
    rb.read()
    assert rb.free_space == 1000


def test_set_rcvbuf_moves_capacity_and_budget() -> None:
    rb = rcvbuf_8192()
    rb.set_rcvbuf(16384)
    assert rb.rcvbuf == rb.limit == 16384 and rb.capacity == 8192


# -- the window's clamp and growth ----------------------------------------------------------


def window(
    clamp: int, ssthresh: int, rcv_wnd: int, rb: ReceiveBuffer | None = None
) -> ReceiveWindow:
    rw = ReceiveWindow(rcv_wscale=0, window_clamp=clamp, rcv_ssthresh=ssthresh, rcv_wnd=rcv_wnd)
    rw.buffer = rb
    return rw


def test_init_buffer_space_clamps_one_segment_below_the_full_space() -> None:
    """Linux reports tcpi_rcv_ssthresh 64076 for the default 131072-byte buffer."""
    rw = window(0xFFFF << 14, 64240, 64240)
    rw.init_buffer_space(65536, 1460)
    assert rw.window_clamp == 64076 and rw.rcv_ssthresh == 64076
    small = window(4096, 2920, 2920)  # SO_RCVBUF 4096: the clamp is 2 * advmss
    small.init_buffer_space(4096, 1460)
    assert small.window_clamp == 2920 and small.rcv_ssthresh == 2920


def test_the_ratio_moves_the_clamp() -> None:
    """rcv_ssthresh_follows_scaling_ratio.pkt: 64076 -> 56832 after a 1000-byte segment."""
    rb = ReceiveBuffer(0, rcvbuf=131072)
    rw = window(64076, 64076, 64240, rb)
    rb.window = rw
    rb.insert(0, b"x" * 1000)
    assert rw.window_clamp == 56832 and rw.rcv_ssthresh == 56832
    up = window(14924, 14924, 16060)
    up.set_window_clamp(20736)  # a larger clamp: rcv_ssthresh may reach rcv_wnd
    assert up.window_clamp == 20736 and up.rcv_ssthresh == 16060


def test_grow_when_the_segment_cost_fits() -> None:
    """truesize_clamp_follows_scaling_ratio.pkt: rcv_ssthresh 16060 -> 18980."""
    rb = ReceiveBuffer(0, rcvbuf=32768)
    rb.advmss = 1460
    rw = window(20736, 16060, 16060, rb)
    rb.insert(0, b"x" * 1460)
    assert rw.grow(1460, advmss=1460, free_space=rb.free_space)
    assert rw.rcv_ssthresh == 18980


def test_grow_by_two_rcv_mss_when_the_segment_costs_more_than_its_length() -> None:
    """__tcp_grow_window: a 200-byte segment (ratio still 128) grows by 2 * rcv_mss."""
    rb = rcvbuf_8192()
    rw = window(4096, 2920, 2920, rb)
    rb.insert(0, b"x" * 200)
    assert rb.scaling_ratio == 128  # shorter than rcv_mss: not measured
    assert rw.grow(200, advmss=1460, free_space=rb.free_space)
    assert rw.rcv_ssthresh == min(2920 + 2 * 536, rb.free_space)
