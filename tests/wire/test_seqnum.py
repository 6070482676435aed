"""Sequence-number arithmetic, checked against Linux's (s32)(a - b) definitions."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.wire.seqnum import (
    SEQ_MASK,
    seq_add,
    seq_between,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_max,
    seq_min,
    seq_sub,
)

FAST = settings(max_examples=200, deadline=None)
u32 = st.integers(0, SEQ_MASK)
TOP = 0xFFFFFFFF


def s32(value: int) -> int:
    """The C cast (s32)(u32)value, done by struct rather than arithmetic."""
    return int(struct.unpack("<i", struct.pack("<I", value & SEQ_MASK))[0])


def linux_before(a: int, b: int) -> bool:
    return s32(a - b) < 0


def linux_after(a: int, b: int) -> bool:
    return linux_before(b, a)


def linux_between(seq1: int, seq2: int, seq3: int) -> bool:
    return (seq3 - seq2) & SEQ_MASK >= (seq1 - seq2) & SEQ_MASK


def test_add_sub_wrap() -> None:
    assert seq_add(TOP, 1) == 0
    assert seq_add(TOP - 9, 20) == 10
    assert seq_add(5, -10) == TOP - 4
    assert seq_sub(0, 1) == TOP
    assert seq_sub(10, 20) == TOP - 9
    assert seq_add(0, 1 << 32) == 0


def test_comparisons_across_wrap() -> None:
    assert seq_lt(TOP - 15, 16) and seq_gt(16, TOP - 15)
    assert not seq_lt(16, TOP - 15) and not seq_gt(TOP - 15, 16)
    assert seq_le(TOP, 0) and seq_ge(0, TOP)
    assert seq_le(7, 7) and seq_ge(7, 7) and not seq_lt(7, 7) and not seq_gt(7, 7)


def test_diff_across_wrap() -> None:
    assert seq_diff(16, TOP - 15) == 32
    assert seq_diff(TOP - 15, 16) == -32
    assert seq_diff(0, TOP) == 1
    assert seq_diff(5, 5) == 0


def test_half_ring_is_ambiguous_like_linux() -> None:
    a, b = 1000, 1000 + (1 << 31)
    # Linux: before(a, b) and before(b, a) are both true at exactly 2**31.
    assert seq_lt(a, b) and seq_lt(b, a)
    assert seq_gt(a, b) and seq_gt(b, a)
    assert not seq_le(a, b) and not seq_ge(a, b)
    assert seq_diff(a, b) == seq_diff(b, a) == -(1 << 31)


def test_min_max() -> None:
    assert seq_max(TOP, 3) == 3 and seq_min(TOP, 3) == TOP
    assert seq_max(3, TOP) == 3 and seq_min(3, TOP) == TOP


def test_in_window_across_wrap() -> None:
    start = TOP - 99  # window of 200 spans the wrap
    assert seq_in_window(start, start, 200)
    assert seq_in_window(TOP, start, 200)
    assert seq_in_window(0, start, 200)
    assert seq_in_window(99, start, 200)
    assert not seq_in_window(100, start, 200)  # start + size: excluded
    assert not seq_in_window(start - 1, start, 200)
    assert not seq_in_window(start, start, 0)


def test_between_inclusive_across_wrap() -> None:
    assert seq_between(TOP, TOP - 5, 5)
    assert seq_between(0, TOP - 5, 5)
    assert seq_between(TOP - 5, TOP - 5, 5) and seq_between(5, TOP - 5, 5)
    assert not seq_between(6, TOP - 5, 5) and not seq_between(TOP - 6, TOP - 5, 5)
    assert seq_between(9, 9, 9) and not seq_between(10, 9, 9)


@FAST
@given(a=u32, b=u32)
def test_comparisons_match_linux(a: int, b: int) -> None:
    assert seq_lt(a, b) == linux_before(a, b)
    assert seq_gt(a, b) == linux_after(a, b)
    assert seq_le(a, b) == (not linux_after(a, b))
    assert seq_ge(a, b) == (not linux_before(a, b))
    assert seq_diff(a, b) == s32(a - b)


@FAST
@given(a=u32, d=st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_add_then_diff_is_identity(a: int, d: int) -> None:
    b = seq_add(a, d)
    assert 0 <= b <= SEQ_MASK
    assert seq_diff(b, a) == d
    assert seq_sub(b, d) == a
    assert seq_lt(a, b) == (d > 0)
    assert seq_max(a, b) == (b if d > 0 else a)


@FAST
@given(x=u32, low=u32, size=st.integers(0, 1 << 31))
def test_in_window_and_between_agree(x: int, low: int, size: int) -> None:
    high = seq_add(low, size)
    if size:
        assert seq_in_window(x, low, size) == seq_between(x, low, seq_sub(high, 1))
    assert seq_between(x, low, high) == linux_between(x, low, high)


@pytest.mark.parametrize("start", [0, 1, TOP, TOP - 1000, 1 << 31])
def test_in_window_exhaustive_small(start: int) -> None:
    for offset in range(-3, 8):
        x = seq_add(start, offset)
        assert seq_in_window(x, start, 5) == (0 <= offset < 5)
