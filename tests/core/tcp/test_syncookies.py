"""SYN cookies in Linux's layout (__cookie_v4_init_sequence / __cookie_v4_check,
cookie_init_timestamp / cookie_timestamp_decode), RFC 4987 3.6."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.isn import IsnGenerator
from aiostack.core.tcp.syncookies import (
    COOKIE_MSS_TABLE,
    TCP_SYNCOOKIE_VALID,
    CookieOptions,
    SynCookies,
    cookie_init_timestamp,
    cookie_timestamp_decode,
    recent_overflow,
)
from aiostack.wire.ipv4 import addr

FAST = settings(max_examples=200, deadline=None)
MASK = 0xFFFFFFFF
PEER = addr("198.18.0.1")
US = addr("198.18.0.2")
SECRETS = (bytes(range(16)), bytes(range(100, 132)))
# A SYN from the peer as the listener sees it: src = peer, dst = us.
SYN = (PEER, US, 41970, 80)
PEER_ISN = 0x01020304

u32 = st.integers(0, MASK)
port = st.integers(0, 0xFFFF)


def cookies() -> SynCookies:
    return SynCookies(*SECRETS)


def make(now: float, mss: int = 1460, seq: int = PEER_ISN) -> tuple[int, int]:
    return cookies().init_sequence(now, *SYN, seq, mss)


def check(now: float, cookie: int, seq: int = PEER_ISN) -> int:
    """The ACK completing the handshake carries seq = ISN + 1, ack = cookie + 1."""
    return cookies().check(now, *SYN, (seq + 1) & MASK, (cookie + 1) & MASK)


@pytest.mark.parametrize(
    ("offered", "encoded"),
    [
        (536, 536),
        (1300, 1300),
        (1440, 1440),
        (1460, 1460),
        (65495, 1460),  # loopback-sized MSS: the largest bucket
        (1452, 1440),  # PPPoE
        (1399, 1300),
        (1000, 536),
        (100, 536),  # below the table: index 0, as Linux
    ],
)
def test_round_trip_each_mss_bucket(offered: int, encoded: int) -> None:
    """The MSS is rounded down to msstab and recovered by the check."""
    cookie, mss = make(1000.0, offered)
    assert mss == encoded
    assert check(1000.0, cookie) == encoded


def test_cookie_layout_is_linear_in_peer_isn_and_counts_minutes() -> None:
    """secure_tcp_syn_cookie: H0 + sseq + (count << 24) + (H1 + data) mod 2**24."""
    c1, _ = make(1000.0, seq=PEER_ISN)
    c2, _ = make(1000.0, seq=PEER_ISN + 12345)
    assert (c2 - c1) & MASK == 12345
    assert SynCookies.count(0.0) == 0
    assert SynCookies.count(59.999) == 0
    assert SynCookies.count(60.0) == 1
    # Same minute, same tuple: the same cookie (it is a function, not a nonce).
    assert make(1000.0) == make(1019.0)


@pytest.mark.parametrize(
    ("made", "checked", "valid"),
    [
        (0.0, 0.0, True),
        (0.0, 60.0, True),
        (0.0, 119.999, True),
        (0.0, 120.0, False),  # count advanced by MAX_SYNCOOKIE_AGE = 2
        (59.9, 119.9, True),  # made late in its minute: valid for just 60 s
        (59.9, 120.0, False),
        (120.0, 60.0, False),  # from the future
        (6000.0, 6119.0, True),
        (6000.0, 6300.0, False),
    ],
)
def test_expiry_after_two_minutes(made: float, checked: float, valid: bool) -> None:
    cookie, _ = make(made)
    assert check(checked, cookie) == (1460 if valid else 0)


def test_minute_field_wraps_but_replay_still_fails() -> None:
    """The age check compares only 8 bits of the minute (Linux), so 256 minutes later it
    passes; but H1 is keyed with the full minute count, so the MSS index comes out wrong."""
    cookie, _ = make(0.0)
    assert check(256 * 60.0, cookie) == 0
    assert check(256 * 60.0 + 30.0, cookie) == 0


def test_bit_flips_are_detected() -> None:
    """Altering any bit of the cookie fails the check or (lowest 2 bits) changes the MSS.

    Flipping bit 0 or 1 moves the MSS index by 1..3: Linux's cookie adds the
    index to the hash, so those come out as another table entry or invalid,
    never as the original.
    """
    cookie, _ = make(1000.0, 1300)
    for bit in range(32):
        result = check(1000.0, cookie ^ (1 << bit))
        if bit < 2:
            assert result != 1300
        else:
            assert result == 0, bit


def test_wrong_tuple_secret_or_peer_isn_is_rejected() -> None:
    cookie, _ = make(1000.0)
    jar = cookies()
    ack = (cookie + 1) & MASK
    seq = PEER_ISN + 1
    assert jar.check(1000.0, PEER, US, 41971, 80, seq, ack) == 0
    assert jar.check(1000.0, PEER, US, 41970, 81, seq, ack) == 0
    assert jar.check(1000.0, PEER + 1, US, 41970, 80, seq, ack) == 0
    assert jar.check(1000.0, PEER, US + 1, 41970, 80, seq, ack) == 0
    assert jar.check(1000.0, PEER, US, 41970, 80, seq + 0x10000, ack) == 0
    assert SynCookies(SECRETS[1], SECRETS[0]).check(1000.0, *SYN, seq, ack) == 0


def test_secret_lengths_are_checked() -> None:
    with pytest.raises(ValueError):
        SynCookies(b"short", SECRETS[1])
    with pytest.raises(ValueError):
        SynCookies(SECRETS[0], bytes(33))


# -- options in the timestamp --------------------------------------------------


def test_cookie_timestamp_encodes_options_in_low_6_bits() -> None:
    """cookie_init_timestamp: wscale in bits 0-3, SACK bit 4, ECN bit 5; never in the future."""
    # ts_now = 10000; 9984 | 23 = 10007 > 10000, so step back 64.
    assert cookie_init_timestamp(10.0, wscale=7, sack=True, ecn=False) == 9943
    # No window scaling is 0xf; with ECN: 47.
    assert cookie_init_timestamp(10.0625, wscale=None, sack=False, ecn=True) == 10031
    # Low bits already at or below the clock: no step back.
    assert cookie_init_timestamp(10.0, wscale=0, sack=False, ecn=False) == 9984


def test_cookie_timestamp_decode() -> None:
    """cookie_timestamp_decode recovers what the SYN offered."""
    assert cookie_timestamp_decode(9943) == CookieOptions(True, 7, True, False)
    assert cookie_timestamp_decode(10031) == CookieOptions(True, None, False, True)
    assert cookie_timestamp_decode(9984) == CookieOptions(True, 0, False, False)


def test_cookie_without_timestamps_has_no_options() -> None:
    """No TS in the ACK: no window scaling, no SACK, no ECN (tcp_clear_options)."""
    assert cookie_timestamp_decode(None) == CookieOptions(False, None, False, False)
    assert cookie_timestamp_decode(None, timestamps_enabled=False) is not None


def test_cookie_timestamp_decode_rejects_disabled_options() -> None:
    """An echo claiming an option our sysctls disable cannot answer our SYN-ACK."""
    assert cookie_timestamp_decode(9943, timestamps_enabled=False) is None
    assert cookie_timestamp_decode(9943, sack_enabled=False) is None
    assert cookie_timestamp_decode(9943, window_scaling_enabled=False) is None
    # Without wscale in the cookie, window scaling being off does not matter.
    assert cookie_timestamp_decode(10031, window_scaling_enabled=False) is not None


def test_full_handshake_with_timestamp_offset() -> None:
    """SYN -> cookie SYN-ACK with TSval = cookie ts + ts_off -> ACK echo -> rebuilt options."""
    jar = cookies()
    isn = IsnGenerator(bytes(range(32)))
    now = 500.25
    cookie, mss = jar.init_sequence(now, *SYN, PEER_ISN, 1460)
    ts_off = isn.ts_offset(US, PEER)  # ours-then-theirs, as secure_tcp_ts_off
    tsval = (cookie_init_timestamp(now, wscale=7, sack=True, ecn=False) + ts_off) & MASK
    # 300 ms later the ACK arrives, echoing our TSval.
    assert jar.check(now + 0.3, *SYN, PEER_ISN + 1, (cookie + 1) & MASK) == mss == 1460
    options = cookie_timestamp_decode((tsval - isn.ts_offset(US, PEER)) & MASK)
    assert options == CookieOptions(timestamps=True, wscale=7, sack=True, ecn=False)


def test_recent_overflow_gate() -> None:
    """tcp_synq_no_recent_overflow: cookies are checked for two minutes after an overflow."""
    assert not recent_overflow(10.0, None)
    assert recent_overflow(10.0, 10.0)
    assert recent_overflow(130.0, 10.0)
    assert not recent_overflow(130.001, 10.0)
    assert TCP_SYNCOOKIE_VALID == 120


# -- properties ----------------------------------------------------------------


@FAST
@given(u32, u32, port, port, u32, st.integers(0, 0xFFFF), st.floats(0, 1e7), st.floats(0, 59.99))
def test_round_trip_any_syn(
    src: int, dst: int, sport: int, dport: int, seq: int, mss: int, made: float, delay: float
) -> None:
    """Any SYN's cookie checks within a minute and yields the rounded-down MSS."""
    jar = cookies()
    cookie, encoded = jar.init_sequence(made, src, dst, sport, dport, seq, mss)
    assert encoded in COOKIE_MSS_TABLE
    assert encoded <= max(mss, COOKIE_MSS_TABLE[0])
    got = jar.check(made + delay, src, dst, sport, dport, (seq + 1) & MASK, (cookie + 1) & MASK)
    assert got == encoded


@FAST
@given(u32, port, u32, st.floats(0, 1e6), st.integers(2, 255))
def test_stale_cookie_rejected(src: int, sport: int, seq: int, made: float, minutes: int) -> None:
    jar = cookies()
    cookie, _ = jar.init_sequence(made, src, US, sport, 80, seq, 1460)
    later = (SynCookies.count(made) + minutes) * 60.0 + 1.0
    assert jar.check(later, src, US, sport, 80, (seq + 1) & MASK, (cookie + 1) & MASK) == 0


@FAST
@given(st.floats(0.064, 4e6), st.none() | st.integers(0, 14), st.booleans(), st.booleans())
def test_timestamp_options_round_trip_and_never_in_future(
    now: float, wscale: int | None, sack: bool, ecn: bool
) -> None:
    ts = cookie_init_timestamp(now, wscale=wscale, sack=sack, ecn=ecn)
    ts_now = int(now * 1000)
    assert ts_now - 64 < ts <= ts_now
    assert cookie_timestamp_decode(ts) == CookieOptions(True, wscale, sack, ecn)
