"""The ARP neighbour table: NUD states, request pacing, pending queue, failures."""

from __future__ import annotations

from aiostack.core.counters import Counters
from aiostack.core.neighbor import NeighborTable, NudState, Solicitation
from aiostack.settings import Settings

from .builders import NEIGHBOR, NEIGHBOR_MAC, PEER, PEER_MAC

OTHER_MAC = bytes.fromhex("02dd00000004")
T0 = 1000.0


def make(**overrides: int) -> tuple[NeighborTable, Counters]:
    settings = Settings()
    for name, value in overrides.items():
        settings.set(name, value)
    counters = Counters()
    return NeighborTable(settings, counters), counters


def packet(tag: int, size: int = 100) -> bytearray:
    return bytearray([tag]) * size


def state(table: NeighborTable, address: int = PEER) -> NudState:
    """The entry's state, read afresh (so type checkers do not narrow it)."""
    return table.entries[address].state


def drain(table: NeighborTable) -> list[Solicitation]:
    out = list(table.solicitations)
    table.solicitations.clear()
    return out


def reachable(table: NeighborTable, now: float, address: int = PEER, mac: bytes = PEER_MAC) -> None:
    """Resolve ``address`` and answer the request with a reply at ``now``."""
    assert table.resolve(now, address, packet(0)) is None
    table.confirm(now, address, mac, create=False, reachable=True)
    drain(table)
    assert table.entries[address].state is NudState.REACHABLE


# -- INCOMPLETE ---------------------------------------------------------------


def test_unknown_address_queues_and_broadcasts_one_request() -> None:
    table, _ = make()
    assert table.resolve(T0, PEER, packet(1)) is None
    assert drain(table) == [Solicitation(PEER, None)]
    entry = table.entries[PEER]
    assert state(table) is NudState.INCOMPLETE and entry.mac is None
    assert list(entry.pending) == [packet(1)]
    assert table.poll_at() == T0 + 1.0


def test_requests_are_paced_not_sent_per_packet() -> None:
    table, _ = make()
    for i in range(50):
        assert table.resolve(T0 + i * 0.01, PEER, packet(i)) is None
    assert drain(table) == [Solicitation(PEER, None)]
    assert len(table.entries[PEER].pending) == 50
    table.poll(T0 + 0.999)
    assert drain(table) == []


def test_incomplete_retries_then_fails_with_queued_packets() -> None:
    table, counters = make()
    table.resolve(T0, PEER, packet(1))
    table.resolve(T0 + 0.5, PEER, packet(2))
    assert len(drain(table)) == 1
    table.poll(T0 + 1.0)
    assert drain(table) == [Solicitation(PEER, None)]
    table.poll(T0 + 2.0)
    assert drain(table) == [Solicitation(PEER, None)]
    assert table.failures == []
    table.poll(T0 + 2.999)
    assert table.failures == [] and PEER in table.entries
    # mcast_solicit (3) requests, retrans_time_ms apart, then failure.
    table.poll(T0 + 3.0)
    assert drain(table) == []
    assert table.failures == [(PEER, [packet(1), packet(2)])]
    assert PEER not in table.entries
    assert counters.ArpResolveFailures == 1
    assert table.poll_at() is None


def test_mcast_solicit_setting_is_read_live() -> None:
    table, counters = make(mcast_solicit=1, retrans_time_ms=250)
    table.resolve(T0, PEER, packet(1))
    assert table.poll_at() == T0 + 0.25
    table.poll(T0 + 0.25)
    assert drain(table) == [Solicitation(PEER, None)]  # the first one only
    assert counters.ArpResolveFailures == 1


def test_resolve_after_failure_starts_over() -> None:
    table, _ = make(mcast_solicit=1)
    table.resolve(T0, PEER, packet(1))
    table.poll(T0 + 1)
    table.failures.clear()
    drain(table)
    assert table.resolve(T0 + 2, PEER, packet(2)) is None
    assert drain(table) == [Solicitation(PEER, None)]
    assert list(table.entries[PEER].pending) == [packet(2)]


def test_reply_releases_queue_in_order_and_makes_reachable() -> None:
    table, counters = make()
    for i in range(3):
        table.resolve(T0, PEER, packet(i))
    released = table.confirm(T0 + 0.2, PEER, PEER_MAC, create=False, reachable=True)
    assert released == [packet(0), packet(1), packet(2)]
    entry = table.entries[PEER]
    assert state(table) is NudState.REACHABLE and entry.mac == PEER_MAC
    assert not entry.pending and entry.pending_bytes == 0
    drain(table)
    assert table.resolve(T0 + 0.3, PEER, packet(9)) == PEER_MAC
    assert drain(table) == []
    # The only deadline left is the confirmation ageing out (base_reachable_time).
    assert table.poll_at() == T0 + 0.2 + 30.0
    assert counters.ArpPendingDrops == 0


def test_reachable_entry_ages_to_stale_then_is_forgotten_when_unused() -> None:
    table, _ = make()
    table.resolve(T0, PEER, packet(1))
    table.confirm(T0 + 0.1, PEER, PEER_MAC, create=False, reachable=True)
    drain(table)
    table.poll(T0 + 30.0)
    assert state(table) is NudState.REACHABLE
    table.poll(T0 + 30.1)
    assert state(table) is NudState.STALE
    assert table.entries[PEER].mac == PEER_MAC
    assert drain(table) == []  # ageing sends nothing
    deadline = table.poll_at()
    assert deadline is not None and deadline == T0 + 30.1 + 60.0
    table.poll(deadline)
    assert PEER not in table.entries


def test_request_resolving_incomplete_entry_does_not_prove_reachability() -> None:
    # Linux: neigh_update(NUD_STALE) from the request, then sending the queued
    # packets moves the entry to DELAY; only a reply makes it REACHABLE.
    table, _ = make()
    table.resolve(T0, PEER, packet(1))
    drain(table)
    released = table.confirm(T0 + 0.1, PEER, PEER_MAC, create=False, reachable=False)
    assert released == [packet(1)]
    entry = table.entries[PEER]
    assert entry.mac == PEER_MAC
    assert state(table) is NudState.DELAY
    assert table.resolve(T0 + 0.2, PEER, packet(2)) == PEER_MAC
    table.poll(T0 + 0.1 + 5)
    assert drain(table) == [Solicitation(PEER, PEER_MAC)]
    assert state(table) is NudState.PROBE


def test_pending_queue_capped_by_bytes_oldest_dropped() -> None:
    table, counters = make(unres_qlen_bytes=3000)
    for i in range(4):
        table.resolve(T0, PEER, packet(i, 1000))
    entry = table.entries[PEER]
    assert list(entry.pending) == [packet(1, 1000), packet(2, 1000), packet(3, 1000)]
    assert entry.pending_bytes == 3000
    assert counters.ArpPendingDrops == 1
    # One packet larger than the cap replaces everything but is itself kept.
    table.resolve(T0, PEER, packet(7, 5000))
    assert list(entry.pending) == [packet(7, 5000)]
    assert entry.pending_bytes == 5000
    assert counters.ArpPendingDrops == 4


def test_pending_queues_are_per_neighbor() -> None:
    table, _ = make(unres_qlen_bytes=1000)
    table.resolve(T0, PEER, packet(1, 800))
    table.resolve(T0, NEIGHBOR, packet(2, 800))
    assert len(drain(table)) == 2
    assert table.confirm(T0, NEIGHBOR, NEIGHBOR_MAC, create=False, reachable=True) == [
        packet(2, 800)
    ]
    assert list(table.entries[PEER].pending) == [packet(1, 800)]


# -- REACHABLE / STALE / DELAY / PROBE -----------------------------------------


def test_reachable_for_base_reachable_time() -> None:
    table, _ = make()
    reachable(table, T0)
    assert table.resolve(T0 + 29.999, PEER, packet(1)) == PEER_MAC
    assert table.entries[PEER].state is NudState.REACHABLE
    assert drain(table) == []


def test_old_confirmation_goes_delay_then_probe_unicast_then_fails() -> None:
    table, counters = make()
    reachable(table, T0)
    now = T0 + 30.0
    # Still used: the MAC is returned while it is verified.
    assert table.resolve(now, PEER, packet(1)) == PEER_MAC
    assert state(table) is NudState.DELAY
    assert table.poll_at() == now + 5
    table.poll(now + 4.999)
    assert drain(table) == []
    table.poll(now + 5)
    assert state(table) is NudState.PROBE
    assert drain(table) == [Solicitation(PEER, PEER_MAC)]
    assert table.resolve(now + 5.5, PEER, packet(2)) == PEER_MAC
    table.poll(now + 6)
    table.poll(now + 7)
    assert drain(table) == [Solicitation(PEER, PEER_MAC)] * 2
    assert PEER in table.entries
    table.poll(now + 8)
    assert PEER not in table.entries
    assert counters.ArpResolveFailures == 1
    # Nothing was waiting, so there is nothing to report as undeliverable.
    assert table.failures == []
    assert drain(table) == []


def test_reply_while_probing_restores_reachable() -> None:
    table, _ = make()
    reachable(table, T0)
    table.resolve(T0 + 31, PEER, packet(1))
    table.poll(T0 + 36)
    assert table.entries[PEER].state is NudState.PROBE
    drain(table)
    assert table.confirm(T0 + 36.1, PEER, PEER_MAC, create=False, reachable=True) == []
    entry = table.entries[PEER]
    assert state(table) is NudState.REACHABLE and entry.probes == 0
    table.poll(T0 + 40)
    assert drain(table) == [] and PEER in table.entries
    assert table.resolve(T0 + 60, PEER, packet(2)) == PEER_MAC
    assert state(table) is NudState.REACHABLE


def test_request_to_us_creates_stale_entry_garbage_collected_when_unused() -> None:
    table, _ = make()
    assert table.confirm(T0, PEER, PEER_MAC, create=True, reachable=False) == []
    entry = table.entries[PEER]
    assert state(table) is NudState.STALE and entry.mac == PEER_MAC
    assert table.poll_at() == T0 + 60
    table.poll(T0 + 59.9)
    assert PEER in table.entries
    table.poll(T0 + 60)
    assert PEER not in table.entries
    assert drain(table) == [] and table.failures == []


def test_using_stale_entry_starts_verification() -> None:
    table, _ = make()
    table.confirm(T0, PEER, PEER_MAC, create=True, reachable=False)
    assert table.resolve(T0 + 1, PEER, packet(1)) == PEER_MAC
    assert drain(table) == []  # no request yet: DELAY first
    assert table.entries[PEER].state is NudState.DELAY
    assert table.poll_at() == T0 + 1 + 5


def test_confirm_without_create_ignores_unknown() -> None:
    table, _ = make()
    assert table.confirm(T0, PEER, PEER_MAC, create=False, reachable=True) == []
    assert table.entries == {}


def test_request_with_same_mac_keeps_reachable() -> None:
    table, _ = make()
    reachable(table, T0)
    table.confirm(T0 + 1, PEER, PEER_MAC, create=True, reachable=False)
    assert table.entries[PEER].state is NudState.REACHABLE


def test_request_with_new_mac_makes_stale_with_new_mac() -> None:
    table, _ = make()
    reachable(table, T0)
    table.confirm(T0 + 1, PEER, OTHER_MAC, create=True, reachable=False)
    entry = table.entries[PEER]
    assert state(table) is NudState.STALE and entry.mac == OTHER_MAC
    assert table.resolve(T0 + 2, PEER, packet(1)) == OTHER_MAC
    assert state(table) is NudState.DELAY


def test_poll_at_is_the_earliest_deadline() -> None:
    table, _ = make()
    table.confirm(T0, NEIGHBOR, NEIGHBOR_MAC, create=True, reachable=False)  # T0 + 60
    table.resolve(T0 + 10, PEER, packet(1))  # T0 + 11
    assert table.poll_at() == T0 + 11


def test_permanent_entry_is_used_never_aged_and_not_overwritten() -> None:
    table, _ = make()
    assert table.resolve(T0, PEER, packet(1)) is None
    drain(table)
    waiting = table.add_permanent(T0 + 0.1, PEER, PEER_MAC)
    assert waiting == [packet(1)]
    assert table.poll_at() is None
    table.poll(T0 + 10_000)
    assert table.resolve(T0 + 10_000, PEER, packet(2)) == PEER_MAC
    other = b"\x02\x00\x00\x00\x00\x99"
    assert table.confirm(T0 + 10_001, PEER, other, create=True, reachable=True) == []
    assert table.entries[PEER].mac == PEER_MAC
    assert state(table) is NudState.PERMANENT
    assert drain(table) == []
