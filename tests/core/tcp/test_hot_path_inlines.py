"""The per-segment code written out for speed gives what the functions it copies give.

The fast path's fourth pass (docs/benchmarks.md, "TCP core") wrote a few
rules out where they run once per segment instead of calling their home:
``poll_transmit``'s timer test (``Timers.poll_at``), the truesize memo of
``rmem.skb_truesize`` and ``ReceiveWindow.grow``'s arithmetic. The
fast-path keep-equal tests cannot see these (both paths share them), so
each is compared here with its reference directly; ``ReceiveWindow.select``
(the no-shrink rule around ``_select_window``) is checked the same way.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.counters import Counters
from aiostack.core.tcp import rmem
from aiostack.core.tcp.buffers import ReceiveWindow, select_window
from aiostack.core.tcp.connection import TcpConnection
from aiostack.core.tcp.timers import TIMER_NAMES
from aiostack.settings import Settings
from aiostack.wire.seqnum import SEQ_MASK, seq_diff

_u32 = st.integers(0, SEQ_MASK)


@settings(max_examples=1000)
@given(
    rcv_nxt=_u32,
    wup_back=st.integers(-3000, 70000),
    rcv_wnd=st.integers(0, 1 << 18),
    free_64ths=st.integers(-4, 70),
    allowed=st.integers(0, 1 << 18),
    clamp_64ths=st.integers(0, 80),
    ssthresh_64ths=st.integers(0, 80),
    mss=st.integers(0, 3000),
    wscale=st.integers(0, 14) | st.just(0),
)
def test_select_equals_select_window(
    rcv_nxt: int,
    wup_back: int,
    rcv_wnd: int,
    free_64ths: int,
    allowed: int,
    clamp_64ths: int,
    ssthresh_64ths: int,
    mss: int,
    wscale: int,
) -> None:
    """``select`` == ``select_window`` + the no-shrink rule.

    Free space, clamp and ``rcv_ssthresh`` are drawn as 64ths of the buffer
    so that every branch of the choice (the half-buffer and 1/16 tests, the
    MSS rounding) is reached often.
    """
    rcv_wup = (rcv_nxt - wup_back) & SEQ_MASK
    free = allowed * free_64ths // 64
    clamp = allowed * clamp_64ths // 64
    ssthresh = allowed * ssthresh_64ths // 64
    rw = ReceiveWindow(
        rcv_wscale=wscale, window_clamp=clamp, rcv_ssthresh=ssthresh, rcv_wnd=rcv_wnd
    )
    rw.rcv_wup = rcv_wup
    new = select_window(
        free_space=free,
        allowed_space=allowed,
        window_clamp=clamp,
        rcv_ssthresh=ssthresh,
        rcv_mss=mss,
        rcv_wscale=wscale,
        rcv_wnd=rcv_wnd,
    )
    cur = rcv_wnd - seq_diff(rcv_nxt, rcv_wup)
    if new < cur:
        unit = 1 << wscale
        new = (cur + unit - 1) & ~(unit - 1)
    field = rw.select(rcv_nxt, free, allowed, mss)
    assert rw.rcv_wnd == new
    assert rw.rcv_wup == rcv_nxt
    assert field == min(new, 0xFFFF << wscale) >> wscale


@given(st.lists(st.integers(0, 70000), min_size=1, max_size=20))
def test_skb_truesize_memo_equals_skb_memory(lengths: list[int]) -> None:
    """The one-entry memo answers as ``skb_memory`` does, for repeats and changes alike."""
    for n in lengths:
        assert rmem.skb_truesize(n) == rmem.skb_memory(n)[0]
        assert rmem.skb_truesize(n) == rmem.skb_memory(n)[0]  # from the memo


def test_skb_truesize_negative_still_raises() -> None:
    """The memo never answers for a length ``skb_memory`` rejects."""
    rmem.skb_truesize(0)
    with pytest.raises(ValueError, match="packet_len"):
        rmem.skb_truesize(-1)


def _reference_grow(
    rw: ReceiveWindow, seg_len: int, advmss: int, free_space: int
) -> tuple[bool, int]:
    """``grow`` as it read before being written out: min/max and win_from_space calls."""
    ssthresh = rw.rcv_ssthresh
    if seg_len < 128 or not (ssthresh < rw.window_clamp and ssthresh < free_space):
        return False, ssthresh
    room = min(rw.window_clamp, free_space) - ssthresh
    if room <= 0:
        return False, ssthresh
    incr = 2 * advmss
    rb = rw.buffer
    if rb is not None and rb.skb_model:
        ratio = rb.scaling_ratio
        cost = rmem.win_from_space(rmem.skb_memory(seg_len + rb.header_len)[0], ratio)
        if cost > seg_len:
            cost >>= 1
            bound = rmem.win_from_space(rw.max_space, ratio) >> 1
            incr = 0
            while ssthresh <= bound:
                if cost <= seg_len:
                    incr = 2 * rb.ratio_mss
                    break
                cost >>= 1
                bound >>= 1
            if not incr:
                return False, ssthresh
    return True, ssthresh + min(room, max(incr, 2 * seg_len))


@settings(max_examples=500)
@given(
    seg_len=st.integers(0, 3000) | st.integers(0, 70000),
    advmss=st.integers(88, 9000),
    free=st.integers(0, 1 << 22),
    clamp=st.integers(0, 1 << 22),
    ssthresh=st.integers(0, 1 << 17),
    rcvbuf=st.integers(2304, 1 << 22),
    seg_first=st.integers(1, 3000) | st.integers(1, 65000),
)
def test_grow_equals_reference(
    seg_len: int, advmss: int, free: int, clamp: int, ssthresh: int, rcvbuf: int, seg_first: int
) -> None:
    """``grow`` with its arithmetic written out moves ``rcv_ssthresh`` as before."""
    conn = TcpConnection.connect(
        1.0,
        local_addr=0xC6120002,
        local_port=40000,
        remote_addr=0xC6120001,
        remote_port=80,
        iss=1,
        settings=Settings(),
        counters=Counters(),
        rcvbuf=rcvbuf,
    )
    rw = conn.rwnd
    rb = conn.rcvbuf
    rb.reset(5)
    rb.insert(5, bytes(seg_first))  # measures scaling_ratio on a first segment
    rw.window_clamp = clamp
    rw.rcv_ssthresh = ssthresh
    want = _reference_grow(rw, seg_len, advmss, free)
    assert (rw.grow(seg_len, advmss, free), rw.rcv_ssthresh) == want


@pytest.mark.parametrize("name", TIMER_NAMES)
def test_poll_transmit_runs_each_due_timer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``poll_transmit``'s written-out timer test covers every timer, due at or before now."""
    ran: list[float] = []
    monkeypatch.setattr(TcpConnection, "run_timers", lambda self, now: ran.append(now))
    conn = TcpConnection.connect(
        1.0,
        local_addr=0xC6120002,
        local_port=40000,
        remote_addr=0xC6120001,
        remote_port=80,
        iss=1,
        settings=Settings(),
        counters=Counters(),
    )
    conn.poll_transmit(1.0)  # the SYN; its retransmission timer is armed
    t = conn.timers
    for other in TIMER_NAMES:
        setattr(t, other, None)
    ran.clear()
    setattr(t, name, 5.0)
    conn.poll_transmit(4.999)
    assert ran == []  # armed, not due
    conn.poll_transmit(5.0)
    assert ran == [5.0]  # due at its deadline, as poll_at() <= now
    for other in TIMER_NAMES:  # a later timer in front does not hide it
        if other != name:
            setattr(t, other, 9.0)
    conn.poll_transmit(6.0)
    assert ran == [5.0, 6.0]
    assert t.poll_at() == 5.0
