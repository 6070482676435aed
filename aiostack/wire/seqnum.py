"""32-bit modular sequence-number arithmetic (RFC 9293 3.4, RFC 1982).

TCP sequence and acknowledgment numbers (and RFC 7323 timestamps) live in a
ring of 2**32 values, so "a comes before b" means "b is less than half the
ring ahead of a". These are plain functions on plain ``int`` in 0..2**32-1,
not wrapper objects: the control block compares sequence numbers several
times per segment, and a function call on ints is the cheapest thing CPython
offers (an object with rich comparisons costs an allocation per result).

The comparisons are Linux's ``before()``/``after()`` exactly: the signed
32-bit value of ``a - b`` decides. Consequently two numbers exactly 2**31
apart are each "before" (and "after") the other, as in the kernel, and
:func:`seq_le`/:func:`seq_ge` are exactly the negations of
:func:`seq_gt`/:func:`seq_lt`. TCP never lets a window grow that far
(RFC 7323 caps it at 2**30), so the ambiguity is never reached in a working
connection; matching the kernel keeps packetdrill traces identical when a
hostile peer probes it.

Every result that is a sequence number is reduced modulo 2**32; callers never
mask by hand.
"""

from __future__ import annotations

#: Size of the sequence space and the mask that reduces into it.
SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_add(seq: int, n: int) -> int:
    """``seq + n`` in sequence space; ``n`` may be negative."""
    return (seq + n) & SEQ_MASK


def seq_sub(seq: int, n: int) -> int:
    """``seq - n`` in sequence space: step back by an amount (not a distance)."""
    return (seq - n) & SEQ_MASK


def seq_diff(a: int, b: int) -> int:
    """Signed distance from ``b`` to ``a``: the ``(s32)(a - b)`` of the kernel.

    Positive when ``a`` is after ``b``; in ``-2**31 .. 2**31 - 1``. For
    in-window numbers this is the byte count between them, e.g.
    ``seq_diff(snd_nxt, snd_una)`` is the amount in flight.
    """
    return ((a - b + _HALF) & SEQ_MASK) - _HALF


def seq_lt(a: int, b: int) -> bool:
    """``a`` is before ``b`` (Linux ``before(a, b)``)."""
    return ((a - b) & SEQ_MASK) >= _HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` is before or equal to ``b`` (Linux ``!after(a, b)``)."""
    return ((b - a) & SEQ_MASK) < _HALF


def seq_gt(a: int, b: int) -> bool:
    """``a`` is after ``b`` (Linux ``after(a, b)`` == ``before(b, a)``)."""
    return ((b - a) & SEQ_MASK) >= _HALF


def seq_ge(a: int, b: int) -> bool:
    """``a`` is after or equal to ``b`` (Linux ``!before(a, b)``)."""
    return ((a - b) & SEQ_MASK) < _HALF


def seq_max(a: int, b: int) -> int:
    """The later of two sequence numbers."""
    return b if ((a - b) & SEQ_MASK) >= _HALF else a


def seq_min(a: int, b: int) -> int:
    """The earlier of two sequence numbers."""
    return a if ((a - b) & SEQ_MASK) >= _HALF else b


def seq_in_window(seq: int, start: int, size: int) -> bool:
    """``start <= seq < start + size`` in sequence space (half-open).

    This is the RFC 9293 3.4 test ``RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND`` in
    one subtraction: the offset of ``seq`` from ``start``, taken modulo 2**32,
    must be below ``size``. A zero-sized window contains nothing (the RFC's
    zero-window special cases are the caller's policy, not arithmetic).
    """
    return ((seq - start) & SEQ_MASK) < size


def seq_between(seq: int, low: int, high: int) -> bool:
    """``low <= seq <= high`` in sequence space, both ends included.

    Linux's ``between(seq1, seq2, seq3)``: true when ``seq`` lies on the arc
    going forward from ``low`` to ``high``. Used for the ACK acceptability
    test ``SND.UNA =< SEG.ACK =< SND.NXT``.
    """
    return ((high - low) & SEQ_MASK) >= ((seq - low) & SEQ_MASK)
