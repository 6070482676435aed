"""The SACK scoreboard: RFC 6675 IsLost/SetPipe/NextSeg, RFC 2883 D-SACK, Linux's checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.sack import NextSeg, NextSegRule, SackScoreboard, SackUpdate
from aiostack.wire.seqnum import SEQ_MASK, seq_add

TOP = SEQ_MASK
HEAD, LOST, NEW, UNLOST, RESCUE = (
    NextSegRule.HEAD,
    NextSegRule.LOST,
    NextSegRule.NEW,
    NextSegRule.UNLOST,
    NextSegRule.RESCUE,
)
#: Where the scenario's sequence numbers start: plain, and so that the
#: outstanding data straddles the 2**32 wrap.
BASES = [1000, TOP - 450, TOP - 99, TOP]


class Scenario:
    """Ten 100-byte segments outstanding from ``base``; offsets are relative to it."""

    def __init__(self, base: int, *, segments: int = 10, mss: int = 100) -> None:
        self.base = base
        self.sb = SackScoreboard(base, seq_add(base, segments * mss), mss=mss)

    def seq(self, off: int) -> int:
        return seq_add(self.base, off)

    def ack(self, off: int, *blocks: tuple[int, int]) -> SackUpdate:
        return self.sb.update(self.seq(off), [(self.seq(s), self.seq(e)) for s, e in blocks])

    def seg(self, off: int, length: int, rule: NextSegRule) -> NextSeg:
        return NextSeg(self.seq(off), length, rule)


# ---------------------------------------------------------------------------
# Update(): marking, merging, validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_blocks_merge_when_adjacent_or_overlapping(base: int) -> None:
    t = Scenario(base)
    assert t.ack(0, (200, 300)) == SackUpdate(100, 0, None, 0)
    assert t.ack(0, (300, 400), (200, 300)) == SackUpdate(100, 0, None, 0)
    assert t.sb.blocks() == [(t.seq(200), t.seq(400))]
    assert t.ack(0, (150, 450)) == SackUpdate(100, 0, None, 0)
    assert t.ack(0, (600, 700), (150, 450)).newly_sacked == 100
    assert t.sb.blocks() == [(t.seq(150), t.seq(450)), (t.seq(600), t.seq(700))]
    assert t.sb.sacked_bytes == 400
    assert t.sb.high_sacked == t.seq(700)
    assert t.ack(0, (100, 1000)).newly_sacked == 500  # fills every gap
    assert t.sb.blocks() == [(t.seq(100), t.seq(1000))]


@pytest.mark.parametrize("base", BASES)
def test_invalid_blocks_are_discarded_as_linux(base: int) -> None:
    """tcp_is_sackblock_valid: snd_una < start < end <= snd_nxt."""
    t = Scenario(base)
    bad = [
        (0, 100),  # starts at snd_una
        (500, 500),  # empty
        (600, 500),  # reversed
        (900, 1001),  # beyond snd_nxt
        (1000, 1100),  # wholly beyond snd_nxt
    ]
    assert t.ack(0, (200, 300)).newly_sacked == 100
    for block in bad:
        assert t.ack(0, (200, 300), block) == SackUpdate(0, 0, None, 1)
    # A later block that reaches below snd_una is not a D-SACK: discarded.
    assert t.ack(0, (400, 500), (-50, 50)) == SackUpdate(100, 0, None, 1)
    assert t.sb.sacked_bytes == 200


def test_blocks_from_a_stale_ack_after_the_cumulative_ack_moved() -> None:
    t = Scenario(1000)
    t.ack(300)
    # An older, reordered ACK still carrying a block now below snd_una.
    upd = t.ack(100, (200, 250), (500, 600))
    assert upd.dsack is None and upd.discarded == 1 and upd.newly_sacked == 100


@pytest.mark.parametrize("base", BASES)
def test_cumulative_ack_prunes_and_trims(base: int) -> None:
    t = Scenario(base)
    t.ack(0, (100, 200), (300, 500), (700, 800))
    assert t.sb.on_cumulative_ack(t.seq(0)) == 0  # duplicate
    assert t.sb.on_cumulative_ack(t.seq(-10)) == 0  # old
    assert t.sb.on_cumulative_ack(t.seq(400)) == 200  # 100-200 and 300-400
    assert t.sb.blocks() == [(t.seq(400), t.seq(500)), (t.seq(700), t.seq(800))]
    assert t.sb.snd_una == t.seq(400)
    upd = t.ack(800, (900, 1000))
    assert upd == SackUpdate(100, 200, None, 0)
    assert t.sb.blocks() == [(t.seq(900), t.seq(1000))]
    with pytest.raises(ValueError):
        t.sb.on_cumulative_ack(t.seq(1001))


def test_is_sacked() -> None:
    t = Scenario(TOP - 150)
    t.ack(0, (100, 300))
    assert t.sb.is_sacked(t.seq(100), 200)
    assert t.sb.is_sacked(t.seq(150), 1)  # seq 0 after the wrap
    assert not t.sb.is_sacked(t.seq(99), 2)
    assert not t.sb.is_sacked(t.seq(299), 2)
    assert t.sb.is_sacked(t.seq(500), 0)
    t.ack(200)
    assert not t.sb.is_sacked(t.seq(150), 1)  # acknowledged, not SACKed
    assert t.sb.is_sacked(t.seq(200), 100)


# ---------------------------------------------------------------------------
# D-SACK, RFC 2883 section 4, seen by the sender
# ---------------------------------------------------------------------------


class TestDsack:
    def test_4_1_1_duplicate_below_the_cumulative_ack(self) -> None:
        sb = SackScoreboard(3000, 4000, mss=500)
        assert sb.update(4000, [(3000, 3500)]) == SackUpdate(0, 0, (3000, 3500), 0)
        assert sb.sacked_bytes == 0

    def test_4_1_2_duplicate_and_out_of_order(self) -> None:
        sb = SackScoreboard(3000, 5000, mss=500)
        assert sb.update(4000, [(4500, 5000)]) == SackUpdate(500, 0, None, 0)
        upd = sb.update(4000, [(3000, 3500), (4500, 5000)])
        assert upd == SackUpdate(0, 0, (3000, 3500), 0)

    def test_4_1_3_duplicate_of_an_out_of_order_segment(self) -> None:
        sb = SackScoreboard(3500, 5500, mss=500)
        sb.update(4000, [(4500, 5000)])
        sb.update(4000, [(4500, 5500)])
        # First block inside the second: a D-SACK although above the ACK.
        upd = sb.update(4000, [(5000, 5500), (4500, 5500)])
        assert upd == SackUpdate(0, 0, (5000, 5500), 0)
        assert sb.blocks() == [(4500, 5500)]

    def test_4_2_1_duplicate_subsegment(self) -> None:
        sb = SackScoreboard(500, 2500, mss=500)
        sb.update(1000, [])
        sb.update(1000, [(2000, 2500)])
        sb.update(1500, [(2000, 2500)])
        assert sb.update(2500, [(1000, 1500)]) == SackUpdate(0, 500, (1000, 1500), 0)
        assert sb.sacked_bytes == 0

    def test_first_block_inside_the_second_sharing_its_start(self) -> None:
        sb = SackScoreboard(4000, 6000, mss=500)
        sb.update(4000, [(4500, 5500)])
        assert sb.update(4000, [(4500, 5000), (4500, 5500)]).dsack == (4500, 5000)
        assert sb.update(4000, [(5000, 5500), (4500, 5500)]).dsack == (5000, 5500)
        assert sb.update(4000, [(4500, 5500), (4500, 5500)]).dsack == (4500, 5500)
        assert sb.update(4000, [(4400, 5000), (4500, 5500)]).dsack is None

    def test_4_2_2_covered_by_the_cumulative_ack(self) -> None:
        sb = SackScoreboard(500, 3500, mss=500)
        sb.update(1000, [(3000, 3500)])
        sb.update(1500, [(2000, 2500), (3000, 3500)])
        upd = sb.update(2500, [(1000, 1500), (3000, 3500)])
        assert upd == SackUpdate(0, 500, (1000, 1500), 0)
        assert sb.blocks() == [(3000, 3500)]

    def test_dsack_must_not_straddle_snd_una_or_pass_snd_nxt(self) -> None:
        sb = SackScoreboard(1000, 2000, mss=100)
        assert sb.update(1500, [(1400, 1600)]).discarded == 1  # straddles snd_una
        assert sb.update(1500, [(1700, 2100), (1600, 2100)]).discarded == 2
        assert sb.update(1500, [(1700, 1800), (1600, 1900)]).dsack == (1700, 1800)
        assert sb.sacked_bytes == 300

    def test_dsack_across_the_wrap(self) -> None:
        sb = SackScoreboard(TOP - 99, 401, mss=100)
        upd = sb.update(201, [(TOP - 49, 51), (301, 401)])
        assert upd == SackUpdate(100, 0, (TOP - 49, 51), 0)
        assert sb.blocks() == [(301, 401)]


# ---------------------------------------------------------------------------
# IsLost and SetPipe
# ---------------------------------------------------------------------------


class TestIsLost:
    def test_dupthresh_discontiguous_blocks_above(self) -> None:
        sb = SackScoreboard(0, 10_000, mss=1000)
        sb.update(0, [(100, 110), (200, 210), (300, 310)])
        assert sb.is_lost(0) and sb.is_lost(99)
        assert not sb.is_lost(100)  # SACKed
        assert not sb.is_lost(110)  # only two blocks (20 bytes) above
        assert not sb.is_lost(250)
        assert not sb.is_lost(9999)
        assert sb.lost_bytes == 100

    def test_more_than_dupthresh_minus_one_segments_of_bytes_above(self) -> None:
        sb = SackScoreboard(0, 10_000, mss=1000)
        sb.update(0, [(5000, 7000)])
        assert not sb.is_lost(4999)  # exactly 2 * SMSS: not more than
        sb.update(0, [(7000, 7001)])
        assert sb.is_lost(4999) and sb.is_lost(0)
        assert sb.lost_bytes == 5000

    def test_a_larger_dupthresh_after_reordering(self) -> None:
        sb = SackScoreboard(0, 10_000, mss=100, dup_thresh=5)
        sb.update(0, [(100, 110), (200, 210), (300, 310)])
        assert not sb.is_lost(0)
        sb.update(0, [(400, 410), (500, 510)])
        assert sb.is_lost(0) and not sb.is_lost(110)
        sb.dup_thresh = 3
        assert sb.is_lost(210) and not sb.is_lost(310)

    def test_outside_the_window(self) -> None:
        sb = SackScoreboard(100, 200, mss=10)
        sb.update(100, [(150, 160), (170, 180), (190, 200)])
        assert not sb.is_lost(99) and not sb.is_lost(200)
        assert sb.is_lost(100)


@pytest.mark.parametrize("base", BASES)
def test_pipe_follows_setpipe(base: int) -> None:
    t = Scenario(base)
    sb = t.sb
    assert sb.pipe() == 1000  # no SACK information: the flight size
    t.ack(0, (200, 300))
    assert sb.pipe() == 900
    t.ack(0, (400, 500), (200, 300))
    assert sb.pipe() == 800
    t.ack(0, (600, 700), (400, 500), (200, 300))
    # 0-200 lost (three blocks above); 300-400, 500-600, 700-1000 in flight.
    assert (sb.lost_bytes, sb.sacked_bytes, sb.pipe()) == (200, 300, 500)
    head = sb.enter_recovery()
    assert head == t.seg(0, 100, HEAD)
    sb.on_transmit(head)
    assert sb.pipe() == 600
    lost = sb.next_seg()
    assert lost == t.seg(100, 100, LOST)
    sb.on_transmit(lost)
    assert (sb.retrans_bytes, sb.pipe()) == (200, 700)
    unlost = sb.next_seg()
    assert unlost == t.seg(300, 100, UNLOST)
    sb.on_transmit(unlost)
    # Retransmitted without being lost: counted twice (RFC 6675 SetPipe note).
    assert (sb.retrans_bytes, sb.pipe()) == (300, 800)
    t.ack(0, (300, 400), (600, 700))  # the retransmission is SACKed
    assert (sb.retrans_bytes, sb.sacked_bytes, sb.pipe()) == (200, 400, 600)


def test_cumulative_ack_below_highrxt_keeps_the_retransmitted_count() -> None:
    t = Scenario(0)
    sb = t.sb
    t.ack(0, (200, 300), (400, 500), (600, 700))
    for _ in range(3):  # HEAD 0-100, LOST 100-200, UNLOST 300-400
        seg = sb.enter_recovery() if not sb.in_recovery else sb.next_seg()
        assert seg is not None
        sb.on_transmit(seg)
    assert (sb.retrans_bytes, sb.pipe()) == (300, 800)
    # The ACK covers 0-350, including the SACKed 200-300, still below HighRxt.
    assert t.ack(350).sacked_acked == 100
    assert (sb.retrans_bytes, sb.sacked_bytes, sb.lost_bytes) == (50, 200, 0)
    assert sb.pipe() == 650 - 200 + 50


# ---------------------------------------------------------------------------
# NextSeg and recovery
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("base", BASES)
def test_nextseg_rules_in_order(base: int) -> None:
    t = Scenario(base)
    sb = t.sb
    t.ack(0, (200, 300), (400, 500), (600, 700))
    assert sb.can_enter_recovery
    head = sb.enter_recovery()
    assert head == t.seg(0, 100, HEAD)
    assert sb.in_recovery and not sb.can_enter_recovery
    assert sb.recovery_point == t.seq(1000)
    sb.on_transmit(head)
    # Rule 1 comes before new data.
    seg = sb.next_seg(new_data=True)
    assert seg == t.seg(100, 100, LOST)
    sb.on_transmit(seg)
    # Nothing else is lost (300-400 has two blocks, 200 bytes, above): rule 2.
    seg = sb.next_seg(new_data=True)
    assert seg == t.seg(1000, 100, NEW)
    sb.on_transmit(seg._replace(length=60))  # the caller had only 60 bytes
    assert sb.snd_nxt == t.seq(1060)
    # Rule 3: unSACKed, below the highest SACK, not lost.
    seg = sb.next_seg()
    assert seg == t.seg(300, 100, UNLOST)
    sb.on_transmit(seg)
    seg = sb.next_seg()
    assert seg == t.seg(500, 100, UNLOST)
    sb.on_transmit(seg)
    # Rule 4 waits until the first retransmission is acknowledged; rule 5.
    assert sb.next_seg() is None
    assert sb.next_seg(new_data=True) == t.seg(1060, 100, NEW)


@pytest.mark.parametrize("base", BASES)
def test_rescue_retransmission_once_per_recovery(base: int) -> None:
    t = Scenario(base)
    sb = t.sb
    t.ack(0, (100, 200))  # one block: nothing counts as lost
    assert sb.lost_bytes == 0
    head = sb.enter_recovery()  # entered on DupAcks >= DupThresh
    assert head == t.seg(0, 100, HEAD)
    sb.on_transmit(head)
    assert sb.next_seg() is None  # RescueRxt = end of the head: not yet
    assert t.ack(200) == SackUpdate(0, 100, None, 0)  # the hole is filled
    seg = sb.next_seg()
    assert seg == t.seg(900, 100, RESCUE)  # holds the highest unSACKed byte
    sb.on_transmit(seg)
    assert sb.retrans_bytes == 0  # HighRxt is not moved by a rescue
    assert sb.next_seg() is None
    t.ack(300)
    assert sb.next_seg() is None  # once per recovery
    assert sb.in_recovery
    t.ack(1000)
    assert not sb.in_recovery and sb.can_enter_recovery


def test_rescue_waits_until_highack_passes_rescuerxt() -> None:
    """RFC 6675 rule (4): HighACK must be greater than RescueRxt, not equal."""
    t = Scenario(TOP - 450)
    sb = t.sb
    head = sb.enter_recovery()  # on DupAcks, with no SACK information
    assert head == t.seg(0, 100, HEAD)
    sb.on_transmit(head)  # RescueRxt = 99 (offsets), HighRxt = 99
    t.ack(100)  # HighACK = 99: equal, not greater
    assert sb.next_seg() is None
    t.ack(101)
    assert sb.next_seg() == t.seg(900, 100, RESCUE)


def test_rescue_stops_below_a_sacked_tail() -> None:
    t = Scenario(5000)
    sb = t.sb
    t.ack(0, (850, 900), (950, 1000))  # two blocks, 100 bytes: nothing lost
    head = sb.enter_recovery()
    assert head is not None
    sb.on_transmit(head)
    t.ack(850, (950, 1000))
    seg = sb.next_seg()
    assert seg == t.seg(900, 50, UNLOST)  # rule 3 first
    sb.on_transmit(seg)
    # Highest unSACKed byte is 949: the rescue ends there, not in SACKed data,
    # and starts no lower than the hole does.
    assert sb.next_seg() == t.seg(900, 50, RESCUE)


def test_retransmissions_stop_at_sacked_data_and_mss() -> None:
    t = Scenario(0, segments=5, mss=300)
    sb = t.sb
    t.ack(0, (50, 60), (400, 410), (800, 810), (1200, 1210))
    sb.on_transmit(sb.enter_recovery() or t.seg(0, 0, HEAD))
    assert sb.retrans_bytes == 50
    seg = sb.next_seg()
    assert seg == t.seg(60, 300, LOST)
    sb.on_transmit(seg)
    assert sb.next_seg() == t.seg(360, 40, LOST)


def test_recovery_ends_at_the_recovery_point_and_can_start_again() -> None:
    t = Scenario(0)
    sb = t.sb
    t.ack(0, (100, 200), (300, 400), (500, 600))
    sb.on_transmit(sb.enter_recovery() or t.seg(0, 0, HEAD))
    sb.on_send(t.seq(1500))  # new data sent during recovery
    t.ack(999)
    assert sb.in_recovery
    t.ack(1000)
    assert not sb.in_recovery and sb.can_enter_recovery
    assert sb.retrans_bytes == 0


def test_enter_recovery_with_nothing_outstanding() -> None:
    sb = SackScoreboard(10, 10, mss=100)
    assert sb.enter_recovery() is None
    assert sb.next_seg() is None
    assert sb.next_seg(new_data=True) == NextSeg(10, 100, NEW)
    assert sb.pipe() == 0


@pytest.mark.parametrize("base", BASES)
def test_rto_marks_everything_unsacked_lost(base: int) -> None:
    t = Scenario(base)
    sb = t.sb
    t.ack(0, (200, 300), (500, 600))
    sb.on_transmit(sb.enter_recovery() or t.seg(0, 0, HEAD))
    sb.on_rto()
    assert not sb.in_recovery and not sb.can_enter_recovery
    assert sb.lost_bytes == 800
    assert sb.pipe() == 0
    sent = []
    while (seg := sb.next_seg()) is not None:
        sent.append(seg)
        sb.on_transmit(seg)
    assert sent == [
        t.seg(0, 100, LOST),
        t.seg(100, 100, LOST),
        t.seg(300, 100, LOST),
        t.seg(400, 100, LOST),
        t.seg(600, 100, LOST),
        t.seg(700, 100, LOST),
        t.seg(800, 100, LOST),
        t.seg(900, 100, LOST),
    ]
    assert sb.pipe() == 800
    sb.on_send(t.seq(1200))
    assert sb.next_seg() is None  # the new data is not lost
    t.ack(1000)
    assert sb.can_enter_recovery and sb.lost_bytes == 0


def test_mark_lost_for_rack() -> None:
    t = Scenario(0)
    sb = t.sb
    t.ack(0, (300, 400))
    sb.mark_lost(t.seq(250))
    assert sb.lost_bytes == 250
    assert sb.is_lost(t.seq(249)) and not sb.is_lost(t.seq(250))
    assert sb.next_seg() == t.seg(0, 100, LOST)
    sb.mark_lost(t.seq(5000))  # clipped to snd_nxt
    assert sb.lost_bytes == 900


def test_clear_forgets_sack_information() -> None:
    t = Scenario(0)
    t.ack(0, (300, 400), (500, 600), (700, 800))
    t.sb.clear()
    assert t.sb.blocks() == [] and t.sb.sacked_bytes == 0 and t.sb.lost_bytes == 0
    assert t.sb.pipe() == 1000


def test_on_send_rules() -> None:
    sb = SackScoreboard(100, 200, mss=10)
    sb.on_send(150)  # not a step back
    assert sb.snd_nxt == 200
    sb.on_send(300)
    assert sb.snd_nxt == 300
    with pytest.raises(ValueError):
        sb.on_send(50)


# ---------------------------------------------------------------------------
# Differential test against a per-byte model of the RFC's definitions
# ---------------------------------------------------------------------------


class Model:
    """RFC 6675 by the letter: a byte map, IsLost counted per octet, SetPipe summed per octet."""

    def __init__(self, hd: int, mss: int, dt: int) -> None:
        self.una = 0
        self.hd = hd
        self.mss = mss
        self.dt = dt
        self.sacked = bytearray(4096)
        self.rxt = 0  # HighRxt + 1
        self.rescue: int | None = None
        self.rp = 0
        self.in_recovery = False
        self.floor = 0

    def lost(self) -> bytearray:
        lost = bytearray(len(self.sacked))
        runs = above = 0
        prev = False
        floor = min(self.floor, self.hd)
        for b in range(self.hd - 1, self.una - 1, -1):
            if self.sacked[b]:
                above += 1
                if not prev:
                    runs += 1
                prev = True
            else:
                prev = False
                if b < floor or runs >= self.dt or above > (self.dt - 1) * self.mss:
                    lost[b] = 1
        return lost

    def pipe(self, lost: bytearray) -> int:
        total = 0
        for b in range(self.una, self.hd):
            if not self.sacked[b]:
                total += (not lost[b]) + (b < self.rxt)
        return total

    def unsacked_from(self, x: int) -> int:
        while x < self.hd and self.sacked[x]:
            x += 1
        return x

    def next_seg(self, new_data: bool) -> tuple[int, int, NextSegRule] | None:
        lost = self.lost()
        x = self.unsacked_from(max(self.rxt, self.una))
        if x < self.hd and lost[x]:
            y = x
            while y < self.hd and y - x < self.mss and not self.sacked[y] and lost[y]:
                y += 1
            return x, y - x, LOST
        if new_data:
            return self.hd, self.mss, NEW
        top = self.sacked.rfind(1, self.una, self.hd)
        if top >= 0 and x < top:
            y = x
            while y < self.hd and y - x < self.mss and not self.sacked[y]:
                y += 1
            return x, y - x, UNLOST
        if self.in_recovery and (self.rescue is None or self.una > self.rescue):
            h = self.sacked.rfind(0, self.una, self.hd)
            if h >= 0:
                y = h
                while y > self.una and not self.sacked[y - 1] and h + 1 - (y - 1) <= self.mss:
                    y -= 1
                return y, h + 1 - y, RESCUE
        return None


@settings(max_examples=120, deadline=None)
@given(
    isn=st.one_of(st.integers(0, SEQ_MASK), st.integers(SEQ_MASK - 3000, SEQ_MASK)),
    mss=st.sampled_from([7, 50, 100]),
    dt=st.sampled_from([1, 3, 4]),
    first=st.integers(0, 1500),
    data=st.data(),
)
def test_scoreboard_matches_the_rfc_model(
    isn: int, mss: int, dt: int, first: int, data: st.DataObject
) -> None:
    sb = SackScoreboard(isn, seq_add(isn, first), mss=mss, dup_thresh=dt)
    m = Model(first, mss, dt)

    def seq(off: int) -> int:
        return seq_add(isn, off)

    offsets = st.integers(-200, 3500)
    for _ in range(data.draw(st.integers(1, 30))):
        op = data.draw(st.integers(0, 6))
        if op == 0:  # send new data
            k = data.draw(st.integers(0, 400))
            k = min(k, 3500 - m.hd)
            m.hd += k
            sb.on_send(seq(m.hd))
        elif op == 1:  # an ACK with SACK blocks, valid and not
            if data.draw(st.booleans()):
                ack = data.draw(st.integers(m.una - 50, m.hd))
            else:  # small steps keep HighRxt and SACKed data above snd_una
                ack = data.draw(st.integers(m.una, min(m.una + 3 * mss, m.hd)))
            blocks = []
            for _ in range(data.draw(st.integers(0, 4))):
                if data.draw(st.booleans()):
                    s = data.draw(st.integers(m.una + 1, max(m.una + 1, m.hd)))
                    e = data.draw(st.integers(s, max(s, m.hd)))
                else:
                    s, e = data.draw(offsets), data.draw(offsets)
                blocks.append((s, e))
            upd = sb.update(seq(ack), [(seq(s), seq(e)) for s, e in blocks])
            acked_sacked = 0
            if ack > m.una:
                acked_sacked = m.sacked.count(1, m.una, ack)
                m.sacked[m.una : ack] = bytes(ack - m.una)
                m.una = ack
                if m.rxt < m.una:
                    m.rxt = m.una
                if m.in_recovery and m.una >= m.rp:
                    m.in_recovery = False
            newly = discarded = 0
            dsack = None
            for i, (s, e) in enumerate(blocks):
                if i == 0 and (
                    s < ack or (len(blocks) > 1 and blocks[1][0] <= s and e <= blocks[1][1])
                ):
                    if s < e <= m.hd and (e <= m.una or s > m.una):
                        dsack = (seq(s), seq(e))
                    else:
                        discarded += 1
                    continue
                if not (m.una < s < e <= m.hd):
                    discarded += 1
                    continue
                newly += m.sacked.count(0, s, e)
                m.sacked[s:e] = b"\x01" * (e - s)
            assert upd == SackUpdate(newly, acked_sacked, dsack, discarded)
        elif op == 2:  # enter recovery
            if not sb.can_enter_recovery:
                assert m.in_recovery or m.una < m.rp
                continue
            head = sb.enter_recovery()
            m.in_recovery = True
            m.rp = m.hd
            m.rxt = m.una
            m.rescue = None
            x = m.unsacked_from(m.una)
            if x >= m.hd:
                assert head is None
                continue
            y = x
            while y < m.hd and y - x < mss and not m.sacked[y]:
                y += 1
            assert head == NextSeg(seq(x), y - x, HEAD)
            if data.draw(st.booleans()):
                sb.on_transmit(head)
                m.rxt = max(m.rxt, y)
                m.rescue = y
        elif op == 3:  # NextSeg, then send what it chose (possibly less)
            new_data = data.draw(st.booleans())
            seg = sb.next_seg(new_data=new_data)
            expect = m.next_seg(new_data)
            if expect is None:
                assert seg is None
                continue
            assert seg == NextSeg(seq(expect[0]), expect[1], expect[2])
            assert seg is not None
            length = data.draw(st.integers(1, seg.length)) if seg.length else 0
            if seg.rule is NEW:
                length = min(length, 3500 - m.hd)
            sb.on_transmit(seg._replace(length=length))
            start = expect[0]
            if seg.rule is NEW:
                m.hd = max(m.hd, start + length)
            elif seg.rule is RESCUE:
                m.rescue = m.rp
            else:
                m.rxt = max(m.rxt, min(start + length, m.hd))
        elif op == 4:  # retransmission timeout
            sb.on_rto()
            m.in_recovery = False
            m.rp = m.hd
            m.rescue = None
            m.rxt = m.una
            m.floor = max(m.floor, m.hd)
        elif op == 5:  # RACK marks a prefix lost
            end = data.draw(st.integers(m.una, m.hd + 100))
            sb.mark_lost(seq(end))
            m.floor = max(m.floor, min(end, m.hd))
        else:  # probe single bytes
            for _ in range(5):
                b = data.draw(st.integers(m.una - 5, m.hd + 5))
                lost = m.lost()
                assert sb.is_lost(seq(b)) == bool(m.una <= b < m.hd and lost[b])
                n = data.draw(st.integers(1, 50))
                expect_sacked = m.una <= b and m.sacked.count(1, b, b + n) == n
                assert sb.is_sacked(seq(b), n) == expect_sacked
        # Invariants after every operation.
        lost = m.lost()
        assert sb.snd_una == seq(m.una) and sb.snd_nxt == seq(m.hd)
        assert sb.sacked_bytes == m.sacked.count(1)
        assert sb.lost_bytes == lost.count(1)
        assert sb.retrans_bytes == m.sacked.count(0, m.una, m.rxt)
        assert sb.pipe() == m.pipe(lost)
        assert sb.in_recovery == m.in_recovery
        expected_blocks = []
        i = m.sacked.find(1)
        while i >= 0:
            j = m.sacked.find(0, i)
            expected_blocks.append((seq(i), seq(j)))
            i = m.sacked.find(1, j)
        assert sb.blocks() == expected_blocks
