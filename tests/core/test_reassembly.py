"""IPv4 reassembly with Linux's rules: duplicates, overlaps, bad ends, timeout, memory."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.reassembly import FRAGMENT_OVERHEAD, Reassembled, Reassembler
from aiostack.settings import Settings
from aiostack.wire import ipv4
from aiostack.wire.ipv4 import IpProto

from .builders import PEER, US, fragment_at

DATA = bytes(range(256)) * 4  # 1024 bytes
T0 = 100.0


def make(**overrides: int) -> tuple[Reassembler, Counters]:
    settings = Settings()
    for name, value in overrides.items():
        settings.set(name, value)
    counters = Counters()
    return Reassembler(settings, counters), counters


def add(
    r: Reassembler,
    now: float,
    data: bytes,
    offset: int,
    *,
    more: bool,
    ident: int = 0x1234,
    src: int = PEER,
    proto: int = IpProto.UDP,
) -> Reassembled | None:
    packet = fragment_at(data, offset, more=more, ident=ident, src=src, proto=proto)
    header, payload = ipv4.parse(packet)
    return r.add(now, header, payload, memoryview(packet))


def split(sizes: list[int]) -> list[tuple[bytes, int, bool]]:
    """DATA cut into pieces of the given sizes: (data, offset, more)."""
    out = []
    offset = 0
    for i, size in enumerate(sizes):
        out.append((DATA[offset : offset + size], offset, i < len(sizes) - 1))
        offset += size
    assert offset == len(DATA)
    return out


def test_in_order_completes_on_last() -> None:
    r, counters = make()
    pieces = split([256, 512, 256])
    assert add(r, T0, *pieces[0][:2], more=True) is None
    assert add(r, T0, *pieces[1][:2], more=True) is None
    assert r.memory == 256 + 512 + 2 * FRAGMENT_OVERHEAD
    whole = add(r, T0 + 1, *pieces[2][:2], more=False)
    assert whole is not None
    assert whole.payload == DATA
    header = whole.header
    assert header.total_length == 20 + len(DATA)
    assert header.frag == 0 and not header.is_fragment
    assert (header.src, header.dst, header.proto, header.ident) == (PEER, US, IpProto.UDP, 0x1234)
    assert counters.IpReasmReqds == 3 and counters.IpReasmOKs == 1
    assert counters.IpReasmFails == 0
    assert len(r) == 0 and r.memory == 0
    assert r.poll_at() is None


def test_any_order_completes_when_the_last_hole_fills() -> None:
    r, counters = make()
    (a, b, c, d) = split([128, 256, 512, 128])
    assert add(r, T0, d[0], d[1], more=False) is None
    assert add(r, T0, b[0], b[1], more=True) is None
    assert add(r, T0, c[0], c[1], more=True) is None
    whole = add(r, T0, a[0], a[1], more=True)
    assert whole is not None and whole.payload == DATA
    assert counters.IpReasmOKs == 1


def test_exact_duplicate_is_ignored() -> None:
    r, counters = make()
    (a, b) = split([512, 512])
    add(r, T0, a[0], a[1], more=True)
    memory = r.memory
    assert add(r, T0, a[0], a[1], more=True) is None
    assert r.memory == memory
    assert counters.drops["ipv4.reassembly_duplicate"] == 1
    assert counters.IpReasmOverlaps == 0 and counters.IpReasmFails == 0
    whole = add(r, T0, b[0], b[1], more=False)
    assert whole is not None and whole.payload == DATA


def test_fragment_inside_data_already_held_is_a_duplicate() -> None:
    # Linux (since 5.1, "do not handle duplicate fragments as overlapping")
    # ignores a fragment that lies within what it holds, e.g. a copy that was
    # re-fragmented differently on another path.
    r, counters = make()
    (a, b, c) = split([256, 256, 512])
    add(r, T0, a[0], a[1], more=True)
    add(r, T0, b[0], b[1], more=True)
    assert add(r, T0, DATA[64:128], 64, more=True) is None  # inside a
    assert add(r, T0, DATA[128:384], 128, more=True) is None  # across a and b
    assert counters.drops["ipv4.reassembly_duplicate"] == 2
    assert counters.IpReasmOverlaps == 0
    whole = add(r, T0, c[0], c[1], more=False)
    assert whole is not None and whole.payload == DATA


def test_partial_overlap_discards_the_whole_datagram() -> None:
    r, counters = make()
    add(r, T0, DATA[:512], 0, more=True)
    assert add(r, T0, DATA[256:768], 256, more=True) is None
    assert counters.IpReasmOverlaps == 1 and counters.IpReasmFails == 1
    assert counters.drops["ipv4.reassembly_overlap"] == 1
    assert len(r) == 0 and r.memory == 0
    # What arrives afterwards starts a new datagram, which lacks the start.
    assert add(r, T0, DATA[512:], 512, more=False) is None
    assert len(r) == 1


def test_overlap_with_the_following_fragment_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[512:], 512, more=False)
    assert add(r, T0, DATA[:520], 0, more=True) is None
    assert counters.IpReasmOverlaps == 1
    assert len(r) == 0


def test_overlap_that_starts_in_a_hole_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[:256], 0, more=True)
    add(r, T0, DATA[512:768], 512, more=True)
    # Starts in the hole 256..512 but runs into 512..768.
    assert add(r, T0, DATA[384:640], 384, more=True) is None
    assert counters.IpReasmOverlaps == 1 and len(r) == 0


def test_non_final_fragment_trimmed_to_multiple_of_8() -> None:
    r, _ = make()
    # 13 bytes with MF: only the first 8 count.
    assert add(r, T0, DATA[:13], 0, more=True) is None
    whole = add(r, T0, DATA[8:40], 8, more=False)
    assert whole is not None and whole.payload == DATA[:40]


def test_empty_fragment_discards_and_leaves_nothing_behind() -> None:
    # Linux: "if (end == offset) goto discard_qp". A flood of tiny fragments
    # with fresh identifications must not pile up empty queues.
    r, counters = make()
    for ident in range(100):
        assert add(r, T0, DATA[:4], 0, more=True, ident=ident) is None
    assert len(r) == 0 and r.memory == 0
    assert counters.IpReasmFails == 100
    # An empty fragment of a datagram in progress kills that datagram too.
    add(r, T0, DATA[:64], 0, more=True)
    assert add(r, T0, b"", 64, more=False) is None
    assert len(r) == 0


def test_second_last_fragment_with_another_end_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[512:], 512, more=False)
    assert add(r, T0, DATA[256:512], 256, more=False) is None
    assert counters.drops["ipv4.reassembly_bad_end"] == 1
    assert counters.IpReasmFails == 1 and len(r) == 0


def test_last_fragment_before_data_already_held_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[512:768], 512, more=True)
    assert add(r, T0, DATA[:256], 0, more=False) is None
    assert counters.drops["ipv4.reassembly_bad_end"] == 1 and len(r) == 0


def test_fragment_beyond_known_end_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[256:512], 256, more=False)
    assert add(r, T0, DATA[:64], 512, more=True) is None
    assert counters.drops["ipv4.reassembly_bad_end"] == 1 and len(r) == 0


def test_datagram_over_65535_bytes_discards() -> None:
    r, counters = make()
    add(r, T0, DATA[:8], 0, more=True)
    assert add(r, T0, bytes(16), 65528, more=False) is None
    assert counters.drops["ipv4.reassembly_too_long"] == 1
    assert counters.IpReasmFails == 1 and len(r) == 0 and r.memory == 0


def test_largest_legal_datagram_reassembles() -> None:
    r, _ = make()
    total = 65535 - 20
    data = bytes(i & 0xFF for i in range(total))
    chunk = 1480
    result = None
    for offset in range(0, total, chunk):
        result = add(r, T0, data[offset : offset + chunk], offset, more=offset + chunk < total)
    assert result is not None and result.payload == data
    assert result.header.total_length == 65535


def test_keys_separate_datagrams() -> None:
    r, _ = make()
    add(r, T0, DATA[:512], 0, more=True, ident=1)
    add(r, T0, DATA[:512], 0, more=True, ident=2)
    add(r, T0, DATA[:512], 0, more=True, ident=1, src=US)
    add(r, T0, DATA[:512], 0, more=True, ident=1, proto=IpProto.ICMP)
    assert len(r) == 4
    whole = add(r, T0, DATA[512:], 512, more=False, ident=2)
    assert whole is not None and whole.header.ident == 2
    assert len(r) == 3


# -- timeout ------------------------------------------------------------------


def test_timeout_after_ipfrag_time_quotes_first_fragment() -> None:
    r, counters = make()
    packet = fragment_at(DATA[:512], 0, more=True)
    header, payload = ipv4.parse(packet)
    r.add(T0, header, payload, memoryview(packet))
    add(r, T0 + 10, DATA[768:], 768, more=False)
    assert r.poll_at() == T0 + 30
    r.poll(T0 + 29.999)
    assert len(r) == 1 and r.timed_out == []
    r.poll(T0 + 30)
    assert len(r) == 0 and r.memory == 0
    assert counters.IpReasmTimeout == 1 and counters.IpReasmFails == 1
    assert counters.drops["ipv4.reassembly_timeout"] == 1
    ((quoted_header, quote),) = r.timed_out
    assert quoted_header.frag_offset == 0 and quoted_header.ident == 0x1234
    assert quote == bytes(packet[:28])  # header + 8 bytes


def test_timeout_without_first_fragment_sends_nothing() -> None:
    r, counters = make()
    add(r, T0, DATA[512:], 512, more=False)
    r.poll(T0 + 30)
    assert counters.IpReasmTimeout == 1
    assert r.timed_out == []


def test_timeouts_expire_oldest_first() -> None:
    r, counters = make(ipfrag_time=5)
    add(r, T0, DATA[:8], 0, more=True, ident=1)
    add(r, T0 + 2, DATA[:8], 0, more=True, ident=2)
    add(r, T0 + 4, DATA[:8], 0, more=True, ident=3)
    assert r.poll_at() == T0 + 5
    r.poll(T0 + 7)
    assert counters.IpReasmTimeout == 2 and len(r) == 1
    assert [h.ident for h, _ in r.timed_out] == [1, 2]
    assert r.poll_at() == T0 + 9


# -- memory -------------------------------------------------------------------


def test_memory_cap_refuses_new_datagrams_only() -> None:
    cost = 512 + FRAGMENT_OVERHEAD
    r, counters = make(ipfrag_high_thresh=2 * cost)
    add(r, T0, DATA[:512], 0, more=True, ident=1)
    add(r, T0, DATA[:512], 0, more=True, ident=2)
    assert r.memory == 2 * cost
    assert add(r, T0, DATA[:512], 0, more=True, ident=3) is None
    assert len(r) == 2
    assert counters.drops["ipv4.reassembly_memory"] == 1 and counters.IpReasmFails == 1
    # A datagram already in progress may still complete, which frees memory.
    whole = add(r, T0, DATA[512:], 512, more=False, ident=1)
    assert whole is not None and whole.payload == DATA
    assert r.memory == cost
    assert add(r, T0, DATA[:512], 0, more=True, ident=3) is None
    assert len(r) == 2


def test_tiny_fragments_are_charged_overhead() -> None:
    r, _ = make(ipfrag_high_thresh=10 * FRAGMENT_OVERHEAD)
    for ident in range(100):
        add(r, T0, DATA[:8], 0, more=True, ident=ident)
    assert len(r) == 10
