"""Send buffer, receive buffer + assembler (RFC 2018 / RFC 2883), receive window (Linux)."""

from __future__ import annotations

import random
from array import array
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiostack.core.tcp.buffers import (
    COALESCE_BELOW,
    Assembler,
    InsertResult,
    ReceiveBuffer,
    ReceiveWindow,
    SendBuffer,
    select_initial_window,
    select_window,
)
from aiostack.wire.seqnum import SEQ_MASK, seq_add, seq_diff, seq_ge

FAST = settings(max_examples=150, deadline=None)
TOP = SEQ_MASK
u32 = st.integers(0, SEQ_MASK)
#: Initial sequence numbers that put the interesting part across the 2**32 wrap.
near_wrap = st.one_of(u32, st.integers(SEQ_MASK - 5000, SEQ_MASK))


def stream(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------------------
# SendBuffer
# ---------------------------------------------------------------------------


class TestSendBuffer:
    def test_write_is_bounded_by_capacity_like_sndbuf(self) -> None:
        buf = SendBuffer(1000, snd_una=500)
        assert buf.write(b"a" * 600) == 600
        assert buf.free == 400
        assert buf.write(b"b" * 600) == 400  # partial accept when nearly full
        assert buf.write(b"c") == 0  # full: the socket layer blocks or says EAGAIN
        assert len(buf) == 1000
        assert buf.end_seq == 1500
        assert buf.ack(700) == 200
        assert buf.write(b"d" * 300) == 200

    def test_large_bytes_write_is_kept_without_copy_and_peek_is_a_view(self) -> None:
        buf = SendBuffer(1 << 20, snd_una=0)
        data = stream(10_000)
        buf.write(data)
        seg = buf.peek(1448, 1448)
        assert isinstance(seg, memoryview)
        assert seg.obj is data  # no copy between write() and the frame builder
        assert seg.readonly
        assert bytes(seg) == data[1448:2896]
        assert buf.peek(0, 20_000) is data  # the whole chunk: the object itself

    def test_small_writes_coalesce_and_peek_copies_so_writes_may_continue(self) -> None:
        buf = SendBuffer(1 << 20, snd_una=7)
        for i in range(100):
            buf.write(bytes([i]) * 10)
        seg = buf.peek(7, 1000)
        assert isinstance(seg, bytes)
        # A live segment must not pin the open bytearray chunk: appending
        # after the peek works (a memoryview of it would raise BufferError).
        assert buf.write(b"z" * 10) == 10
        assert seg == b"".join(bytes([i]) * 10 for i in range(100))
        assert buf.peek(seq_add(7, 1000), 100) == b"z" * 10
        assert len(buf._chunks) == 1  # one chunk for 101 small writes

    def test_coalescing_stops_at_the_limit_so_memory_is_freed_in_pieces(self) -> None:
        buf = SendBuffer(1 << 20)
        for _ in range(70):
            buf.write(b"k" * 1024)
        assert [len(c) for c in buf._chunks] == [64 * 1024, 6 * 1024]

    def test_a_chunk_is_released_when_its_last_byte_is_acknowledged(self) -> None:
        buf = SendBuffer(1 << 20)
        first, second = stream(4096, 1), stream(4096, 2)
        buf.write(first)
        buf.write(second)
        buf.ack(4095)
        assert buf._chunks[0] is first
        buf.ack(4096)
        assert buf._chunks[0] == b"" and buf._first == 1
        assert bytes(buf.peek(4096, 10)) == second[:10]

    def test_peek_spans_chunks_of_both_kinds(self) -> None:
        buf = SendBuffer(1 << 20)
        parts = [b"a" * 100, stream(5000, 2), b"b" * 10, stream(COALESCE_BELOW, 3), b"c"]
        for part in parts:
            buf.write(part)
        whole = b"".join(parts)
        for start in (0, 50, 99, 100, 5099, 5100, 5105, 5110, len(whole) - 1):
            for n in (1, 7, 1448, 65_000):
                assert bytes(buf.peek(start, n)) == whole[start : start + n]

    def test_mutable_input_is_copied(self) -> None:
        buf = SendBuffer(1 << 20)
        small = bytearray(b"hello")
        large = bytearray(stream(4000))
        snapshot = bytes(large)
        buf.write(small)
        buf.write(memoryview(large))
        small[:] = b"XXXXX"
        large[:10] = b"Y" * 10
        large.extend(b"more")  # allowed: the buffer holds no view of it
        assert bytes(buf.peek(0, 5)) == b"hello"
        assert bytes(buf.peek(5, 4000)) == snapshot

    def test_non_byte_memoryview_counts_bytes(self) -> None:
        buf = SendBuffer(100)
        assert buf.write(memoryview(array("H", [1, 2, 3]))) == 6
        assert buf.write(memoryview(array("I", [7] * 100))) == 94
        assert len(buf) == 100

    def test_views_survive_ack_and_later_writes(self) -> None:
        buf = SendBuffer(10_000)
        data = stream(8000)
        buf.write(data)
        seg = buf.peek(4000, 1448)
        assert buf.ack(8000) == 8000
        assert len(buf) == 0
        buf.write(stream(9000, 9))
        assert bytes(seg) == data[4000:5448]

    def test_ack_rules(self) -> None:
        buf = SendBuffer(1000, snd_una=100)
        buf.write(b"x" * 500)
        assert buf.ack(100) == 0  # duplicate ACK
        assert buf.ack(50) == 0  # old ACK
        assert buf.ack(300) == 200
        assert buf.snd_una == 300
        with pytest.raises(ValueError):
            buf.ack(601)  # beyond the data: the FIN is the caller's to subtract
        assert buf.ack(600) == 300
        assert len(buf) == 0

    def test_unsent_and_peek_bounds(self) -> None:
        buf = SendBuffer(1000, snd_una=10)
        buf.write(b"0123456789")
        assert buf.unsent(10) == 10
        assert buf.unsent(15) == 5
        assert buf.unsent(20) == 0
        assert buf.peek(20, 100) == b""
        for bad in (9, 21):
            with pytest.raises(ValueError):
                buf.peek(bad, 1)
            with pytest.raises(ValueError):
                buf.unsent(bad)

    def test_sequence_wrap(self) -> None:
        buf = SendBuffer(1 << 16, snd_una=TOP - 999)
        data = stream(3000)
        buf.write(data)
        assert buf.end_seq == 2000
        assert bytes(buf.peek(TOP - 9, 20)) == data[990:1010]
        assert bytes(buf.peek(0, 10)) == data[1000:1010]
        assert buf.unsent(5) == 1995
        assert buf.ack(5) == 1005
        assert buf.snd_una == 5
        assert bytes(buf.peek(5, 10)) == data[1005:1015]

    def test_rebase_only_when_empty(self) -> None:
        buf = SendBuffer(100)
        buf.rebase(12345)
        buf.write(b"ab")
        assert buf.snd_una == 12345 and buf.end_seq == 12347
        with pytest.raises(ValueError):
            buf.rebase(0)

    def test_shrinking_capacity_keeps_data(self) -> None:
        buf = SendBuffer(1000)
        buf.write(b"x" * 800)
        buf.capacity = 500
        assert buf.free == 0 and buf.write(b"y") == 0
        assert len(buf) == 800
        buf.ack(400)
        assert buf.free == 100

    def test_streaming_keeps_the_chunk_list_short(self) -> None:
        """Acknowledged chunks are compacted away: no growth over a long stream."""
        buf = SendBuffer(64 * 1024)
        nxt = 0
        chunk = stream(4096)
        longest = 0
        for _ in range(2000):
            buf.write(chunk)
            while buf.unsent(nxt):
                seg = buf.peek(nxt, 1448)
                nxt = seq_add(nxt, len(seg))
            if len(buf) > 20_000:
                buf.ack(seq_add(nxt, -20_000))  # keep ~5 chunks unacknowledged
            longest = max(longest, len(buf._chunks))
        assert longest <= 80

    @FAST
    @given(isn=near_wrap, data=st.data())
    def test_random_operations_match_a_model(self, isn: int, data: st.DataObject) -> None:
        cap = data.draw(st.integers(1, 5000))
        buf = SendBuffer(cap, snd_una=isn)
        model = bytearray()  # bytes held, model[0] at snd_una
        una = isn
        written = 0
        ops = data.draw(st.lists(st.integers(0, 3), max_size=40))
        for op in ops:
            if op == 0:
                size = data.draw(st.sampled_from([0, 1, 5, 100, 1447, 2047, 2048, 3000, 6000]))
                kind = data.draw(st.sampled_from(["bytes", "bytearray", "memoryview"]))
                payload = stream(size, written)
                arg: bytes | bytearray | memoryview = (
                    payload
                    if kind == "bytes"
                    else bytearray(payload)
                    if kind == "bytearray"
                    else memoryview(payload)
                )
                took = buf.write(arg)
                assert took == min(size, max(cap - len(model), 0))
                model += payload[:took]
                written += took
            elif op == 1:
                n = data.draw(st.integers(0, len(model)))
                assert buf.ack(seq_add(una, n)) == n
                del model[:n]
                una = seq_add(una, n)
            else:
                at = data.draw(st.integers(0, len(model)))
                n = data.draw(st.integers(0, 5000))
                got = buf.peek(seq_add(una, at), n)
                assert bytes(got) == bytes(model[at : at + n])
            assert len(buf) == len(model)
            assert buf.snd_una == una
            assert buf.end_seq == seq_add(una, len(model))


# ---------------------------------------------------------------------------
# ReceiveBuffer and Assembler
# ---------------------------------------------------------------------------


def blocks_of(buf: ReceiveBuffer) -> list[tuple[int, int]]:
    """Every out-of-order block, ascending (RFC 2018 order aside)."""
    return sorted(buf.sack_blocks(10_000), key=lambda b: seq_diff(b[0], buf.rcv_nxt))


class TestReceiveBuffer:
    def test_in_order_fast_path_keeps_the_bytes_object(self) -> None:
        buf = ReceiveBuffer(10_000, rcv_nxt=1000)
        payload = stream(1448)
        assert buf.insert(1000, payload) == InsertResult(1448, 0, None, 0)
        assert buf.rcv_nxt == 2448
        assert len(buf) == 1448
        assert buf.read() is payload  # whole piece: handed over without a copy
        assert buf.read() == b""

    def test_reads_peeks_and_read_into_across_pieces(self) -> None:
        buf = ReceiveBuffer(10_000, rcv_nxt=0)
        parts: list[bytes | bytearray | memoryview] = [
            b"abc",
            memoryview(b"defgh"),
            b"ij",
            bytearray(b"klmnop"),
        ]
        seq = 0
        for part in parts:
            seq = seq_add(seq, buf.insert(seq, part).delivered)
        whole = b"abcdefghijklmnop"
        assert buf.peek(5) == whole[:5]
        assert buf.peek() == whole
        assert buf.read(2) == b"ab"
        assert buf.read(4) == b"cdef"
        target = bytearray(5)
        assert buf.read_into(target) == 5
        assert target == bytearray(b"ghijk")
        big = bytearray(100)
        assert buf.read_into(memoryview(big)[10:]) == 5
        assert big[10:15] == b"lmnop"
        assert len(buf) == 0 and buf.read_into(big) == 0
        assert buf.free_space == 10_000

    def test_read_into_a_non_byte_buffer(self) -> None:
        buf = ReceiveBuffer(100)
        buf.insert(0, b"\x01\x00\x02\x00")
        out = array("H", [0, 0])
        assert buf.read_into(memoryview(out)) == 4
        assert list(out) == [1, 2]

    def test_memoryview_payload_is_kept_as_a_view(self) -> None:
        frame = bytes(54) + stream(1448)
        buf = ReceiveBuffer(10_000, rcv_nxt=5)
        buf.insert(5, memoryview(frame)[54:])
        assert buf.read() == frame[54:]

    def test_bytearray_payload_is_copied(self) -> None:
        payload = bytearray(b"hello")
        buf = ReceiveBuffer(100, rcv_nxt=0)
        buf.insert(0, payload)
        payload[:] = b"XXXXX"
        payload.extend(b"!")  # no view of it is held
        assert buf.read() == b"hello"

    def test_out_of_order_then_fill(self) -> None:
        buf = ReceiveBuffer(100_000, rcv_nxt=0)
        data = stream(5000)
        assert buf.insert(2000, data[2000:3000]) == InsertResult(0, 1000, None, 0)
        assert buf.insert(4000, data[4000:5000]) == InsertResult(0, 1000, None, 0)
        assert buf.has_out_of_order and buf.out_of_order_bytes == 2000
        assert buf.sack_blocks() == [(4000, 5000), (2000, 3000)]
        assert buf.insert(0, data[:2000]) == InsertResult(3000, 0, None, 0)
        assert buf.rcv_nxt == 3000 and buf.sack_blocks() == [(4000, 5000)]
        assert buf.insert(3000, data[3000:4000]).delivered == 2000
        assert not buf.has_out_of_order
        assert buf.read() == data

    def test_overlapping_segments_keep_the_first_copy_and_report_the_repeat(self) -> None:
        buf = ReceiveBuffer(100_000, rcv_nxt=0)
        data = stream(3000)
        buf.insert(1000, data[1000:2000])
        # Overlaps the held block on both sides: the new parts are kept.
        assert buf.insert(500, data[500:2500]) == InsertResult(0, 1000, (1000, 2000), 0)
        assert buf.sack_blocks() == [(500, 2500)]
        assert buf.insert(0, data[:600]) == InsertResult(2500, 0, (500, 600), 0)
        assert buf.read() == data[:2500]

    def test_entirely_old_segment(self) -> None:
        buf = ReceiveBuffer(1000, rcv_nxt=0)
        buf.insert(0, b"x" * 100)
        assert buf.insert(10, b"x" * 20) == InsertResult(0, 0, (10, 30), 0)
        assert buf.dsack == (10, 30)
        assert buf.insert(50, b"x" * 100).delivered == 50

    def test_empty_payload_changes_nothing(self) -> None:
        buf = ReceiveBuffer(10, rcv_nxt=3)
        assert buf.insert(3, b"") == InsertResult(0, 0, None, 0)
        assert buf.insert(99, memoryview(b"")) == InsertResult(0, 0, None, 0)

    def test_reset_only_when_empty(self) -> None:
        buf = ReceiveBuffer(10)
        buf.reset(777)
        assert buf.rcv_nxt == 777
        buf.insert(780, b"x")  # held out of order
        with pytest.raises(ValueError):
            buf.reset(0)


class TestRfc2883:
    """RFC 2883 section 4's examples, receiver side: the ACK and SACK option sent."""

    def ack(self, buf: ReceiveBuffer) -> tuple[int, list[tuple[int, int]]]:
        return buf.rcv_nxt, buf.ack_blocks(4)

    def test_4_1_1_reporting_a_duplicate_segment(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=3000)
        buf.insert(3000, b"a" * 500)
        assert self.ack(buf) == (3500, [])  # ACK dropped
        buf.insert(3500, b"b" * 500)
        assert self.ack(buf) == (4000, [])  # ACK dropped
        buf.insert(3000, b"a" * 500)
        assert self.ack(buf) == (4000, [(3000, 3500)])
        assert self.ack(buf) == (4000, [])  # reported once

    def test_4_1_2_out_of_order_segment_and_a_duplicate_segment(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=3000)
        buf.insert(3000, b"a" * 500)
        buf.insert(3500, b"b" * 500)
        buf.insert(4500, b"d" * 500)  # 4000-4499 dropped
        assert self.ack(buf) == (4000, [(4500, 5000)])
        buf.insert(3000, b"a" * 500)
        assert self.ack(buf) == (4000, [(3000, 3500), (4500, 5000)])

    def test_4_1_3_duplicate_of_an_out_of_order_segment(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=3500)
        buf.insert(3500, b"b" * 500)
        assert self.ack(buf) == (4000, [])
        buf.insert(4500, b"d" * 500)
        assert self.ack(buf) == (4000, [(4500, 5000)])
        buf.insert(5000, b"e" * 500)
        assert self.ack(buf) == (4000, [(4500, 5500)])
        result = buf.insert(5000, b"e" * 500)  # duplicated packet
        assert result == InsertResult(0, 0, (5000, 5500), 0)
        assert self.ack(buf) == (4000, [(5000, 5500), (4500, 5500)])

    def test_4_2_1_single_duplicate_subsegment(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=500)
        data = stream(2500)
        buf.insert(500, data[500:1000])
        assert self.ack(buf) == (1000, [])
        # 1000-1499 delayed, 1500-1999 dropped
        buf.insert(2000, data[2000:2500])
        assert self.ack(buf) == (1000, [(2000, 2500)])
        buf.insert(1000, data[1000:1500])  # the delayed one
        assert self.ack(buf) == (1500, [(2000, 2500)])
        result = buf.insert(1000, data[1000:2000])  # the 1000-byte retransmission
        assert result == InsertResult(1000, 0, (1000, 1500), 0)
        assert self.ack(buf) == (2500, [(1000, 1500)])
        assert buf.read() == data[500:2500]

    def test_4_2_2_two_noncontiguous_duplicates_covered_by_the_cumulative_ack(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=500)
        data = stream(3500)
        buf.insert(500, data[500:1000])
        assert self.ack(buf) == (1000, [])
        buf.insert(3000, data[3000:3500])
        assert self.ack(buf) == (1000, [(3000, 3500)])
        buf.insert(1000, data[1000:1500])  # delayed
        assert self.ack(buf) == (1500, [(3000, 3500)])
        buf.insert(2000, data[2000:2500])  # delayed
        assert self.ack(buf) == (1500, [(2000, 2500), (3000, 3500)])
        result = buf.insert(1000, data[1000:2500])  # 1500-byte retransmission
        # Two duplicate subsegments (1000-1499, 2000-2499): only the first is reported.
        assert result == InsertResult(1000, 0, (1000, 1500), 0)
        assert self.ack(buf) == (2500, [(1000, 1500), (3000, 3500)])

    def test_4_2_3_noncontiguous_duplicates_above_the_cumulative_ack(self) -> None:
        """The whole repeated range is reported when it is contiguous (Linux)."""
        buf = ReceiveBuffer(65535, rcv_nxt=1000)
        data = stream(4000)
        buf.insert(3500, data[3500:4000])
        assert self.ack(buf) == (1000, [(3500, 4000)])
        buf.insert(1500, data[1500:2000])
        assert self.ack(buf) == (1000, [(1500, 2000), (3500, 4000)])
        buf.insert(2500, data[2500:3000])
        assert self.ack(buf) == (1000, [(2500, 3000), (1500, 2000), (3500, 4000)])
        # 1500-2999 again: 1500-1999 and 2500-2999 repeat, 2000-2499 is new.
        result = buf.insert(1500, data[1500:3000])
        assert result == InsertResult(0, 500, (1500, 2000), 0)
        assert self.ack(buf) == (1000, [(1500, 2000), (1500, 3000), (3500, 4000)])

    def test_latest_duplicate_wins_and_limit_counts_the_dsack(self) -> None:
        buf = ReceiveBuffer(65535, rcv_nxt=0)
        buf.insert(0, b"x" * 100)
        for start in (200, 400, 600, 800):
            buf.insert(start, b"y" * 100)
        buf.insert(0, b"x" * 10)
        buf.insert(20, b"x" * 10)
        assert buf.dsack == (20, 30)
        assert buf.ack_blocks(3) == [(20, 30), (800, 900), (600, 700)]
        assert buf.ack_blocks(3) == [(800, 900), (600, 700), (400, 500)]


class TestRfc2018Ordering:
    def test_section_6_example_with_holes(self) -> None:
        """RFC 2018 section 6, third case: the 2nd, 4th, 6th and 8th segments are lost."""
        buf = ReceiveBuffer(65535, rcv_nxt=5000)
        sent = {s: stream(500, s) for s in range(5000, 9000, 500)}
        lost = {5500, 6500, 7500, 8500}
        rows = []
        for s, payload in sent.items():
            if s in lost:
                continue
            buf.insert(s, payload)
            rows.append((buf.rcv_nxt, buf.ack_blocks(3)))
        assert rows == [
            (5500, []),
            (5500, [(6000, 6500)]),
            (5500, [(7000, 7500), (6000, 6500)]),
            (5500, [(8000, 8500), (7000, 7500), (6000, 6500)]),
        ]
        # The 4th segment arrives: two blocks remain, the merged one first.
        buf.insert(6500, sent[6500])
        assert (buf.rcv_nxt, buf.ack_blocks(3)) == (5500, [(6000, 7500), (8000, 8500)])
        # The 2nd: the first four segments are acknowledged.
        buf.insert(5500, sent[5500])
        assert (buf.rcv_nxt, buf.ack_blocks(3)) == (7500, [(8000, 8500)])

    def test_older_blocks_fill_the_option_when_recency_runs_out(self) -> None:
        buf = ReceiveBuffer(1 << 20, rcv_nxt=0)
        for start in range(100, 2000, 200):  # ten blocks with 100-byte holes between
            buf.insert(start, b"x" * 100)
        # Blocks at 100, 300, ..., 1900; the most recent 8 are remembered.
        first = buf.sack_blocks(4)
        assert first == [(1900, 2000), (1700, 1800), (1500, 1600), (1300, 1400)]
        everything = blocks_of(buf)
        assert everything == [(s, s + 100) for s in range(100, 2000, 200)]
        # Merging recent blocks frees recency slots; the option is still full.
        buf.insert(1400, b"x" * 500)  # joins 1300..2000 into one block
        assert buf.sack_blocks(4) == [(1300, 2000), (1100, 1200), (900, 1000), (700, 800)]


class TestReceiveBudget:
    def test_bytes_beyond_the_budget_are_dropped_and_reported(self) -> None:
        buf = ReceiveBuffer(1000, rcv_nxt=0)
        assert buf.insert(0, b"a" * 600) == InsertResult(600, 0, None, 0)
        # Budget edge: first unread byte (0) + capacity = 1000.
        assert buf.insert(600, b"b" * 600) == InsertResult(400, 0, None, 200)
        assert buf.free_space == 0
        # A zero-window probe: nothing fits.
        assert buf.insert(1000, b"c") == InsertResult(0, 0, None, 1)
        buf.read(300)
        assert buf.insert(1000, b"c" * 500) == InsertResult(300, 0, None, 200)
        assert len(buf) == 1000

    def test_the_whole_window_may_hold_out_of_order_data(self) -> None:
        """Pitfall: no fraction of the window is reserved; every byte of it can wait for a hole."""
        buf = ReceiveBuffer(10_000, rcv_nxt=0)
        data = stream(10_000)
        for s in range(1448, 10_000, 1448):
            result = buf.insert(s, data[s : s + 1448])
            assert result.dropped == 0
        assert buf.out_of_order_bytes == 10_000 - 1448
        assert buf.free_space == 1448
        assert buf.insert(0, data[:1448]).delivered == 10_000
        assert buf.read() == data

    def test_out_of_order_segment_straddling_the_edge(self) -> None:
        buf = ReceiveBuffer(1000, rcv_nxt=0)
        assert buf.insert(900, b"x" * 200) == InsertResult(0, 100, None, 100)
        assert buf.insert(1000, b"y") == InsertResult(0, 0, None, 1)
        assert buf.sack_blocks() == [(900, 1000)]

    def test_duplicate_and_overflow_together(self) -> None:
        buf = ReceiveBuffer(100, rcv_nxt=0)
        buf.insert(0, b"x" * 50)
        assert buf.insert(40, b"x" * 100) == InsertResult(50, 0, (40, 50), 40)

    def test_piece_cap_refuses_new_out_of_order_pieces_but_never_in_order_data(self) -> None:
        buf = ReceiveBuffer(1 << 20, rcv_nxt=0, max_ooo_pieces=3)
        for s in (10, 30, 50):
            assert buf.insert(s, b"z" * 5).queued == 5
        assert buf.insert(70, b"z" * 5) == InsertResult(0, 0, None, 5)
        # Repeating held data is still recognised as a duplicate.
        assert buf.insert(28, b"z" * 10) == InsertResult(0, 0, (30, 35), 5)
        # In-order data joins up with what is held whatever the cap.
        result = buf.insert(0, b"a" * 40)
        assert result.delivered == 40
        assert result.dropped == 0
        assert buf.sack_blocks() == [(50, 55)]

    def test_default_piece_cap_scales_with_capacity(self) -> None:
        assert ReceiveBuffer(4096).max_ooo_pieces == 64
        assert ReceiveBuffer(4 << 20).max_ooo_pieces == 16384


class TestReceiveWrap:
    def test_reassembly_and_sack_across_the_wrap(self) -> None:
        isn = TOP - 1500
        buf = ReceiveBuffer(100_000, rcv_nxt=isn)
        data = stream(5000)

        def at(off: int) -> int:
            return seq_add(isn, off)

        buf.insert(at(3000), data[3000:4000])  # seq 1499..2499
        buf.insert(at(1000), data[1000:2000])  # straddles the wrap
        assert buf.sack_blocks() == [(at(1000), at(2000)), (at(3000), at(4000))]
        assert buf.sack_blocks()[0] == (TOP - 500, 499)
        result = buf.insert(at(500), data[500:1500])
        assert result == InsertResult(0, 500, (at(1000), at(1500)), 0)
        assert buf.insert(isn, data[:500]).delivered == 2000
        assert buf.rcv_nxt == at(2000) == 499
        assert buf.insert(at(2000), data[2000:5000]).delivered == 3000
        assert buf.read() == data
        # A retransmission from before the wrap is recognised as old.
        assert buf.insert(TOP - 10, data[1490:1530]).dsack == (TOP - 10, 29)


class TestAssembler:
    def test_pieces_are_slices_of_the_arriving_segments(self) -> None:
        asm = Assembler()
        first = stream(100)
        assert asm.add(100, first, 99) == (100, 0, 0)
        wide = stream(300, 2)
        assert asm.add(0, wide, 99) == (200, 100, 200)
        assert asm.piece_count == 3
        assert asm.blocks() == [(0, 300)]
        pieces, end = asm.pop_front(0)
        assert end == 300
        assert b"".join(pieces) == wide[:100] + first + wide[200:]
        assert isinstance(pieces[0], memoryview) and pieces[0].obj is wide
        assert not asm and asm.size == 0

    def test_pop_front_only_when_the_hole_is_closed(self) -> None:
        asm = Assembler()
        asm.add(10, b"x", 9)
        assert asm.pop_front(5) == ([], 5)
        assert asm.size == 1

    def test_first_contiguous_duplicate_run(self) -> None:
        asm = Assembler()
        for s in (10, 20, 30, 50):
            asm.add(s, b"x" * 10, 99)
        # Repeats 10-40 (one run: 10-20, 20-30, 30-40 adjoin) then 50-60.
        assert asm.add(5, b"y" * 60, 99) == (20, 10, 40)


def test_many_shuffled_segments_reassemble() -> None:
    data = stream(2000 * 100, 5)
    segments = [(s, data[s : s + 100]) for s in range(0, len(data), 100)]
    random.Random(3).shuffle(segments)
    buf = ReceiveBuffer(len(data), rcv_nxt=TOP - 50_000, max_ooo_pieces=2000)
    for off, payload in segments:
        buf.insert(seq_add(TOP - 50_000, off), payload)
    assert buf.read() == data
    assert not buf.has_out_of_order


@FAST
@given(
    isn=near_wrap,
    size=st.integers(1, 3000),
    cuts=st.lists(st.integers(0, 3000), max_size=40),
    extras=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 600)), max_size=15),
    seed=st.integers(0, 2**32),
    capacity=st.sampled_from([None, 700, 1500]),
    reads=st.lists(st.integers(0, 900), max_size=10),
)
def test_random_arrival_orders_reassemble_exactly(
    isn: int,
    size: int,
    cuts: list[int],
    extras: list[tuple[int, int]],
    seed: int,
    capacity: int | None,
    reads: list[int],
) -> None:
    """Any segmentation, duplication, overlap and order gives back exactly the stream.

    Checked on every arrival against a byte-map model: rcv_nxt, the SACK
    blocks (all of them, and the first one holding the arriving segment), the
    D-SACK range (the first run of repeated bytes of the segment), the budget.
    With a small capacity, segments are sent again, round after round, until
    the application has read everything.
    """
    data = stream(size, seed)
    points = sorted({0, size, *(c for c in cuts if c < size)})
    segments = list(pairwise(points))
    segments += [(a, min(a + n, size)) for a, n in extras if a < size]
    random.Random(seed).shuffle(segments)
    cap = size if capacity is None else capacity
    buf = ReceiveBuffer(cap, rcv_nxt=isn, max_ooo_pieces=1 << 20)
    have = bytearray(size)  # 1 where the byte was received (held or delivered)
    nxt = 0
    out = bytearray()
    read_plan = list(reads)
    for _round in range(1000):
        if nxt == size:
            break
        for a, b in segments:
            result = buf.insert(seq_add(isn, a), data[a:b])
            # Expected D-SACK: the first run of bytes of [a, b) received before.
            lo = have.find(1, a, b)
            if lo < 0:
                assert result.dsack is None
            else:
                hi = have.find(0, lo, b)
                hi = b if hi < 0 else hi
                assert result.dsack == (seq_add(isn, lo), seq_add(isn, hi))
            edge = len(out) + cap  # the budget edge as a stream offset
            top = min(b, edge)
            stored = have.count(0, a, top) if a < top else 0
            if a < top:
                have[a:top] = b"\x01" * (top - a)
            assert result.dropped == max(0, b - max(a, edge))
            new_nxt = have.find(0, nxt)
            new_nxt = size if new_nxt < 0 else new_nxt
            assert result.delivered == new_nxt - nxt
            assert result.queued == (stored if a > nxt else 0)
            nxt = new_nxt
            assert buf.rcv_nxt == seq_add(isn, nxt)
            expected: list[tuple[int, int]] = []
            i = have.find(1, nxt)
            while i >= 0:
                j = have.find(0, i)
                j = size if j < 0 else j
                expected.append((seq_add(isn, i), seq_add(isn, j)))
                i = have.find(1, j)
            assert blocks_of(buf) == expected
            if a > nxt and b <= edge:
                # RFC 2018: the first block holds the segment that triggered the ACK.
                first = buf.sack_blocks(1)[0]
                assert seq_ge(seq_add(isn, a), first[0])
                assert seq_ge(first[1], seq_add(isn, b))
            assert len(buf) + buf.out_of_order_bytes <= cap
            if read_plan:
                out += buf.read(read_plan.pop())
        out += buf.read()
    assert nxt == size
    assert bytes(out) == data


# ---------------------------------------------------------------------------
# Receive window
# ---------------------------------------------------------------------------


class TestInitialWindow:
    def test_wscale_from_the_largest_buffer_as_linux(self) -> None:
        # tcp_rmem[2] = 6 MiB -> 7, 15 MiB -> 8 (ref/linux-socket-semantics.md).
        assert select_initial_window(131072, 1460, max_space=6 << 20)[2] == 7
        assert select_initial_window(131072, 1460, max_space=15 << 20)[2] == 8
        assert select_initial_window(60000, 1460, max_space=65535)[2] == 0
        assert select_initial_window(131072, 1460, max_space=65535)[2] == 1  # space counts too
        assert select_initial_window(131072, 1460, max_space=1 << 40)[2] == 14

    def test_window_rounded_to_mss_and_capped_unscaled(self) -> None:
        rcv_wnd, clamp, wscale = select_initial_window(65536, 1460, max_space=6 << 20)
        assert rcv_wnd == 64240  # 44 * 1460: whole segments, under 65535
        assert wscale == 7
        assert clamp == 65535 << 7
        assert select_initial_window(10_000, 1000, max_space=0)[0] == 10_000
        assert select_initial_window(10_500, 1000, max_space=0)[0] == 10_000
        assert select_initial_window(500, 1000, max_space=0)[0] == 500

    def test_clamp_and_init_rcv_wnd(self) -> None:
        rcv_wnd, clamp, wscale = select_initial_window(
            1 << 20, 1000, max_space=6 << 20, window_clamp=20_000
        )
        assert (rcv_wnd, clamp, wscale) == (20_000, 20_000, 0)
        assert select_initial_window(1 << 20, 1000, max_space=0, init_rcv_wnd=10)[0] == 10_000
        assert select_initial_window(1 << 20, 1000, max_space=0, wscale_ok=False)[1] == 65535


def win(**kw: int) -> int:
    args = {
        "allowed_space": 65535,
        "window_clamp": 65535,
        "rcv_ssthresh": 1 << 30,
        "rcv_mss": 1460,
        "rcv_wscale": 0,
        "rcv_wnd": 0,
    }
    args.update(kw)
    return select_window(**args)


class TestSelectWindow:
    """Linux's __tcp_select_window, value by value (RFC 1122 4.2.3.3 SWS avoidance)."""

    def test_unscaled_window_is_a_multiple_of_mss(self) -> None:
        assert win(free_space=65535) == 64240
        assert win(free_space=40000) == 39420

    def test_unscaled_window_is_kept_while_within_one_mss_of_free_space(self) -> None:
        assert win(free_space=65000, rcv_wnd=64240) == 64240
        assert win(free_space=64240 + 1459, rcv_wnd=64240) == 64240
        assert win(free_space=64240 + 1460, rcv_wnd=64240) == 65700  # re-rounded
        assert win(free_space=40000, rcv_wnd=41000) == 39420  # larger than free: re-rounded

    def test_less_than_one_mss_free_closes_the_window(self) -> None:
        assert win(free_space=30000) == 29200  # below half, still >= mss: offered
        assert win(free_space=1459) == 0
        assert win(free_space=1460) == 0  # below 1/16 of the buffer (4095)
        assert win(free_space=4094) == 0
        assert win(free_space=4095) == 2920

    def test_one_sixteenth_rule_with_a_large_buffer(self) -> None:
        big = {"allowed_space": 1 << 20, "window_clamp": 1 << 20}
        assert win(free_space=(1 << 16) - 1, **big) == 0
        assert win(free_space=1 << 16, **big) == 64240

    def test_rcv_ssthresh_limits_growth(self) -> None:
        assert win(free_space=65535, rcv_ssthresh=14600) == 14600
        assert win(free_space=65535, rcv_ssthresh=14601) == 14600

    def test_mss_larger_than_the_buffer(self) -> None:
        assert win(free_space=1000, allowed_space=1000, window_clamp=1000, rcv_mss=1460) == 1000
        assert win(free_space=0, allowed_space=0, window_clamp=0) == 0
        # mss == full space: the window may jump to the free space.
        assert (
            win(free_space=900, allowed_space=1000, window_clamp=1000, rcv_mss=1460, rcv_wnd=100)
            == 900
        )

    def test_scaled_window_is_rounded_up_to_the_unit(self) -> None:
        scaled = {"allowed_space": 1 << 20, "window_clamp": 65535 << 7, "rcv_wscale": 7}
        assert win(free_space=600_001, **scaled) == 600_064
        assert win(free_space=600_064, **scaled) == 600_064
        # Below half: rounded down first, so rounding can never enlarge it.
        assert win(free_space=300_001, **scaled) == 299_904
        assert win(free_space=65_536 + 127, **scaled) == 65_536
        assert win(free_space=65_535, **scaled) == 0  # 65_408 once rounded: under 1/16 of 1 MiB
        # ssthresh is not a multiple of the unit: rounded up, so not scaled to 0.
        assert win(free_space=600_000, rcv_ssthresh=1000, **scaled) == 1024

    def test_negative_free_space(self) -> None:
        assert win(free_space=-5000) == 0


class TestReceiveWindow:
    def test_right_edge_never_moves_back(self) -> None:
        rw = ReceiveWindow(rcv_wscale=0, window_clamp=65535, rcv_ssthresh=65535)
        assert rw.select(1000, free_space=65535, allowed_space=65535, rcv_mss=1460) == 64240
        assert rw.right_edge == 1000 + 64240
        # 60000 bytes arrive and sit unread: free space 4200 would allow 2920.
        field = rw.select(61000, free_space=4200, allowed_space=65535, rcv_mss=1460)
        assert field == 4240  # the window still promised, not a smaller one
        assert rw.right_edge == 1000 + 64240
        # 3000 more unread: free 2535 would say 0; the promise stands.
        assert rw.select(64000, free_space=2535, allowed_space=65535, rcv_mss=1460) == 1240
        assert rw.select(65240, free_space=1295, allowed_space=65535, rcv_mss=1460) == 0
        assert rw.right_edge == 65240

    def test_scaled_field_rounds_up_so_the_edge_does_not_shrink(self) -> None:
        rw = ReceiveWindow(rcv_wscale=7, window_clamp=65535 << 7, rcv_ssthresh=1 << 30)
        assert rw.select(0, free_space=600_001, allowed_space=1 << 20, rcv_mss=1448) == 4688
        assert rw.rcv_wnd == 600_064
        # 100 bytes arrive and the buffer is nearly full: 599_964 are still
        # promised; 599_964 >> 7 would pull the edge back by 28 bytes.
        field = rw.select(100, free_space=1000, allowed_space=1 << 20, rcv_mss=1448)
        assert field == 4688
        assert rw.rcv_wnd == 600_064

    def test_field_is_capped_at_16_bits(self) -> None:
        rw = ReceiveWindow(rcv_wscale=0, window_clamp=1 << 20, rcv_ssthresh=1 << 20)
        assert rw.select(0, free_space=1 << 20, allowed_space=1 << 20, rcv_mss=1000) == 65535
        assert rw.rcv_wnd == 1_048_000

    def test_receive_window_across_the_wrap(self) -> None:
        rw = ReceiveWindow(rcv_wscale=0, window_clamp=65535, rcv_ssthresh=65535)
        rw.select(TOP - 99, free_space=65535, allowed_space=65535, rcv_mss=1460)
        assert rw.right_edge == seq_add(TOP - 99, 64240)
        assert rw.receive_window(TOP - 99) == 64240
        assert rw.receive_window(900) == 64240 - 1000
        assert rw.receive_window(seq_add(TOP - 99, 70000)) == 0

    def test_window_update_after_the_application_drains_the_buffer(self) -> None:
        """Linux's tcp_cleanup_rbuf: an update at once, not after the delayed-ACK timer."""
        rw = ReceiveWindow(rcv_wscale=0, window_clamp=65535, rcv_ssthresh=65535)
        rw.select(0, free_space=65535, allowed_space=65535, rcv_mss=1460)
        rw.select(64240, free_space=1295, allowed_space=65535, rcv_mss=1460)  # window 0
        kw = {"allowed_space": 65535, "rcv_mss": 1460}
        assert not rw.update_due(64240, free_space=1295, **kw)  # nothing read
        assert not rw.update_due(64240, free_space=3000, **kw)  # SWS: still 0
        assert rw.update_due(64240, free_space=65535, **kw)  # drained
        rw.select(64240, free_space=65535, **kw)
        assert not rw.update_due(64240, free_space=65535, **kw)  # already open

    def test_grow(self) -> None:
        rw = ReceiveWindow(rcv_wscale=0, window_clamp=60000, rcv_ssthresh=14600)
        assert not rw.grow(100, advmss=1460, free_space=65535)  # tiny segment
        assert rw.grow(1460, advmss=1460, free_space=65535)
        assert rw.rcv_ssthresh == 14600 + 2920
        assert rw.grow(20000, advmss=1460, free_space=65535)
        assert rw.rcv_ssthresh == 57520
        assert rw.grow(20000, advmss=1460, free_space=65535)
        assert rw.rcv_ssthresh == 60000  # the clamp
        assert not rw.grow(20000, advmss=1460, free_space=65535)
        low = ReceiveWindow(rcv_wscale=0, window_clamp=60000, rcv_ssthresh=14600)
        assert not low.grow(1460, advmss=1460, free_space=10000)

    @FAST
    @given(
        wscale=st.integers(0, 14),
        isn=near_wrap,
        steps=st.lists(st.tuples(st.integers(0, 70000), st.integers(0, 70000)), max_size=30),
    )
    def test_right_edge_is_monotonic_and_the_field_covers_it(
        self, wscale: int, isn: int, steps: list[tuple[int, int]]
    ) -> None:
        capacity = 1 << 17
        rw = ReceiveWindow(rcv_wscale=wscale, window_clamp=65535 << wscale, rcv_ssthresh=1 << 30)
        nxt = isn
        held = 0
        edge = None
        for arrive, drain in steps:
            arrive = min(arrive, rw.receive_window(nxt) if edge is not None else capacity)
            nxt = seq_add(nxt, arrive)
            held = max(min(held + arrive, capacity) - drain, 0)
            field = rw.select(nxt, free_space=capacity - held, allowed_space=capacity, rcv_mss=1448)
            assert 0 <= field <= 65535
            new_edge = rw.right_edge
            if edge is not None:
                assert seq_ge(new_edge, edge)
            edge = new_edge
            if rw.rcv_wnd <= 65535 << wscale:
                assert seq_ge(seq_add(nxt, field << wscale), new_edge)
