"""The benchmark suite's quick path still runs and produces the JSON its page is built from.

Checks the shape of the results (fields, min <= median <= max, positive
figures), never the values: those belong to ``docs/benchmarks.md``. One
short repetition of two benchmarks, on a TAP in namespaces they create.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiostack.testing.netns import require_tap
from bench import cps, latency, report

pytestmark = pytest.mark.tap

SPREAD = {"min", "median", "max", "runs"}


def check_spread(value: Any) -> None:
    assert set(value) == SPREAD
    assert len(value["runs"]) >= 1
    assert value["min"] <= value["median"] <= value["max"]
    assert value["min"] > 0


def test_cps_quick_json_shape() -> None:
    require_tap()
    result = cps.run(True, 1, False)
    assert set(result["loops"]) == {"asyncio", "uvloop"}
    for loop in result["loops"].values():
        check_spread(loop["aiostack"])
        check_spread(loop["kernel"])
    assert report.cps_verdicts(result)


def test_latency_quick_json_shape(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    require_tap()
    monkeypatch.setattr(latency, "LOOPS", ("uvloop",))
    result = latency.run(True, 1, False)
    assert {"size", "rounds", "pings", "repeat", "loops"} <= set(result)
    data = result["loops"]["uvloop"]
    for name in ("echo_aiostack", "echo_kernel", "ping_aiostack", "ping_bare"):
        check_spread(data[name]["p50_us"])
        check_spread(data[name]["p99_us"])
    for name in ("http_aiostack", "http_kernel"):
        check_spread(data[name]["rps"])
    # The page renders from it, outside the real docs.
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nintro\n\n## Other\n\nkept\n")
    meta = {"date": "now", "quick": True, "repeat": 1, "elapsed_s": 1.0, **report.machine()}
    report.write({"latency": result, "meta": meta}, doc, tmp_path / "img")
    text = doc.read_text()
    assert report.BEGIN in text and "## Other\n\nkept\n" in text
    assert (tmp_path / "img" / "suite_latency.png").stat().st_size > 0
