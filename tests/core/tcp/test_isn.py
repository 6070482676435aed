"""RFC 6528 initial sequence numbers and Linux-style timestamp offsets (secure_tcp_ts_off)."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.isn import (
    LINUX_ISN_TICKS_PER_SECOND,
    IsnGenerator,
    tcp_time_stamp,
)
from aiostack.wire.ipv4 import addr

FAST = settings(max_examples=200, deadline=None)
KEY = bytes(range(32))
US = addr("198.18.0.2")
PEER = addr("198.18.0.1")
TUPLE = (US, 41970, PEER, 80)

u32 = st.integers(0, 0xFFFFFFFF)
port = st.integers(0, 0xFFFF)


def test_isn_is_keyed_hash_plus_clock() -> None:
    """RFC 6528 3: ISN = M + F(4-tuple, key); F is keyed BLAKE2s over (local, remote, ports)."""
    gen = IsnGenerator(KEY)
    expected_f = int.from_bytes(
        hashlib.blake2s(
            struct.pack("!IIHH", US, PEER, 41970, 80), key=KEY, digest_size=4, person=b"tcp-isn"
        ).digest(),
        "big",
    )
    assert gen.hash(*TUPLE) == expected_f
    assert gen.isn(0.0, *TUPLE) == expected_f
    assert gen.isn(1.0, *TUPLE) == (expected_f + 250_000) & 0xFFFFFFFF


def test_clock_ticks_every_4_microseconds() -> None:
    """M is a 4 us timer: 250,000 ticks per second."""
    gen = IsnGenerator(KEY)
    assert gen.clock(0.0) == 0
    assert gen.clock(0.5) == 125_000
    assert gen.clock(2.0) == 500_000
    assert gen.clock(0.000_003) == 0  # less than one tick
    assert gen.clock(0.000_0045) == 1


def test_isn_grows_monotonically_with_time() -> None:
    """Later incarnations of one 4-tuple start above earlier ones (RFC 9293 3.4.1)."""
    gen = IsnGenerator(KEY)
    isns = [gen.isn(t / 8, *TUPLE) for t in range(100)]
    steps = {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(isns)}
    assert steps == {250_000 // 8}


def test_clock_wraps_modulo_2_32() -> None:
    """After 2**32 ticks the clock term wraps (about 4.8 h at 4 us)."""
    gen = IsnGenerator(KEY, ticks_per_second=1 << 20)
    assert gen.clock(float(1 << 12)) == 0
    assert gen.isn(float(1 << 12), *TUPLE) == gen.isn(0.0, *TUPLE)
    assert gen.clock(float(1 << 12) + 0.5) == 1 << 19


def test_linux_rate_option() -> None:
    """Linux's seq_scale adds ktime_get_real_ns() >> 6: a 64 ns tick."""
    gen = IsnGenerator(KEY, ticks_per_second=LINUX_ISN_TICKS_PER_SECOND)
    assert gen.clock(1.0) == 15_625_000


def test_isn_depends_on_every_tuple_element_and_the_key() -> None:
    gen = IsnGenerator(KEY)
    base = gen.isn(1.0, *TUPLE)
    variants = [
        (US + 1, 41970, PEER, 80),
        (US, 41971, PEER, 80),
        (US, 41970, PEER + 1, 80),
        (US, 41970, PEER, 81),
        (PEER, 80, US, 41970),  # the other direction
    ]
    values = {gen.isn(1.0, *v) for v in variants}
    assert base not in values
    assert len(values) == len(variants)
    assert IsnGenerator(bytes(32)).isn(1.0, *TUPLE) != base
    assert IsnGenerator(KEY).isn(1.0, *TUPLE) == base  # deterministic for a key


def test_isns_spread_over_ports() -> None:
    """Different source ports give unrelated ISNs (no collisions over 4096 ports)."""
    gen = IsnGenerator(KEY)
    values = {gen.hash(US, p, PEER, 80) for p in range(32768, 32768 + 4096)}
    assert len(values) == 4096
    # Not a counter in disguise: consecutive ports are far apart on average.
    diffs = [
        abs(gen.hash(US, p + 1, PEER, 80) - gen.hash(US, p, PEER, 80)) for p in range(1000, 1100)
    ]
    assert sum(diffs) / len(diffs) > 1 << 28


def test_secret_length_is_checked() -> None:
    with pytest.raises(ValueError):
        IsnGenerator(b"short")
    with pytest.raises(ValueError):
        IsnGenerator(bytes(33))
    with pytest.raises(ValueError):
        IsnGenerator(KEY, ts_secret=b"x")
    with pytest.raises(ValueError):
        IsnGenerator(KEY, ticks_per_second=0)


def test_ts_offset_per_host_pair() -> None:
    """secure_tcp_ts_off: keyed on (saddr, daddr) only, with its own key."""
    gen = IsnGenerator(KEY)
    off = gen.ts_offset(US, PEER)
    assert off == gen.ts_offset(US, PEER)
    assert off != gen.ts_offset(PEER, US)
    assert off != gen.ts_offset(US, PEER + 1)
    assert off != gen.hash(US, 0, PEER, 0)  # separated from the ISN function
    assert IsnGenerator(KEY, ts_secret=bytes(16)).ts_offset(US, PEER) != off
    assert IsnGenerator(KEY, ts_secret=bytes(16)).isn(1.0, *TUPLE) == gen.isn(1.0, *TUPLE)


def test_tcp_time_stamp() -> None:
    """TSval = 1 ms clock + offset, modulo 2**32 (tcp_time_stamp_ts + tsoffset)."""
    assert tcp_time_stamp(1.5) == 1500
    assert tcp_time_stamp(1.0, 0xFFFFFFFF) == 999
    assert tcp_time_stamp(0.0009) == 0


@FAST
@given(st.integers(0, 1 << 40), st.integers(0, (1 << 32) - 1), u32, port, u32, port)
def test_isn_difference_is_elapsed_ticks(
    start: int, elapsed: int, la: int, lp: int, ra: int, rp: int
) -> None:
    """For any tuple, ISN(t2) - ISN(t1) = ticks elapsed mod 2**32 (times on a 2**-20 s grid)."""
    gen = IsnGenerator(KEY, ticks_per_second=1 << 20)
    t1 = start / (1 << 20)
    t2 = (start + elapsed) / (1 << 20)
    assert (gen.isn(t2, la, lp, ra, rp) - gen.isn(t1, la, lp, ra, rp)) & 0xFFFFFFFF == elapsed


@FAST
@given(st.floats(0, 10_000), st.floats(0, 1_000))
def test_clock_is_monotonic(t: float, dt: float) -> None:
    """Below the wrap (about 17,180 s) the clock term never goes backwards."""
    gen = IsnGenerator(KEY)
    assert gen.clock(t) <= gen.clock(t + dt) <= gen.clock(t) + dt * 250_000 + 1
