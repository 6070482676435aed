"""Ephemeral port selection shared by UDP and TCP (RFC 6056).

Linux picks a random starting point in ``ip_local_port_range`` and scans
upwards, wrapping, for the first port the caller accepts (RFC 6056's
"simple port randomization"): ports are not predictable, and an almost
full range still finds the one free port. Each protocol brings its own
idea of "free" (UDP's bind conflicts, TCP's bind table and 4-tuples).
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def ephemeral_candidates(rng: random.Random, port_range: tuple[int, int]) -> Iterator[int]:
    """Every port of ``port_range`` (inclusive) once, from a random start, wrapping."""
    low, high = port_range
    count = high - low + 1
    start = rng.randrange(count)
    for step in range(count):
        yield low + (start + step) % count
