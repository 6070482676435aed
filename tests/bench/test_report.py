"""The page's verdicts: met or missed, and by how much, computed from the suite's JSON."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import report


def spread(*runs: float) -> dict[str, Any]:
    ordered = sorted(runs)
    return {
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "max": ordered[-1],
        "runs": list(runs),
    }


def test_at_least_target_missed_says_by_how_much() -> None:
    verdict = report.Verdict("bulk >= 150 MB/s", "50 MB/s", 50.0, 150.0, True)
    assert not verdict.met
    assert verdict.status == "**missed** by 3.0x"


def test_at_most_target_met_and_narrow_miss_keeps_two_decimals() -> None:
    assert report.Verdict("p50 <= 2x", "1.5x", 1.5, 2.0, False).status == "met"
    narrow = report.Verdict("<= 10 KiB", "10,263 B", 10263.0, 10240.0, False)
    assert narrow.status == "**missed** by 1.00x"


def test_unfinished_measurement_is_a_miss() -> None:
    verdict = report.Verdict("open all <= 5 s", "did not finish", math.inf, 5.0, False)
    assert verdict.status == "**missed** (not every run finished)"


def test_paired_ratio_is_the_median_of_per_run_ratios() -> None:
    # Runs drift together (a slow machine slows both); pairing cancels the drift.
    a = spread(10.0, 20.0, 40.0)
    b = spread(100.0, 200.0, 400.0)
    assert report.paired_ratio(a, b) == 0.1
    # Unequal run counts fall back to the ratio of medians.
    assert report.paired_ratio(spread(10.0), b) == 10.0 / 200.0


def test_cps_verdict_uses_the_kernel_on_the_same_loop() -> None:
    cps = {
        "loops": {
            "uvloop": {"aiostack": spread(600.0, 650.0), "kernel": spread(1000.0, 1100.0)},
        }
    }
    (verdict,) = report.cps_verdicts(cps)
    assert verdict.met
    assert "uvloop" in verdict.target


def test_page_keeps_everything_outside_its_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## Receive path\n\nhand written\n")
    meta = {"date": "d", "quick": True, "repeat": 1, "elapsed_s": 1.0, **report.machine()}
    cps = {
        "seconds": 1.0,
        "repeat": 2,
        "loops": {
            loop: {"aiostack": spread(100.0, 120.0), "kernel": spread(1000.0, 1200.0)}
            for loop in ("asyncio", "uvloop")
        },
    }
    report.write({"cps": cps, "meta": meta}, doc, tmp_path / "img")
    first = doc.read_text()
    assert first.startswith("# Benchmarks\n\nintro\n\n" + report.BEGIN)
    assert first.endswith("## Receive path\n\nhand written\n")
    assert "**missed** by 5.0x" in first
    # A second run replaces the block instead of adding another.
    report.write({"cps": cps, "meta": meta, "latency": {"error": "boom"}}, doc, tmp_path / "img")
    second = doc.read_text()
    assert second.count(report.BEGIN) == 1
    assert "`latency` failed in this run" in second
    assert second.endswith("## Receive path\n\nhand written\n")
