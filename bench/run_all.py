"""Run aiostack's benchmark suite and write its results and its page.

    sudo python -m bench [--quick] [--only bulk,cps,latency,conns] [--repeat N]

Runs, in this order: bulk throughput (``bench/bulk.py``), connections per
second (``bench/cps.py``), request/response latency (``bench/latency.py``)
and many idle connections (``bench/conns.py``); stores everything in
``bench/results/suite.json`` (``suite-quick.json`` with ``--quick``) and
rewrites the suite's block of ``docs/benchmarks.md`` with tables, verdicts
against the issue's targets and plots in ``docs/img/`` (``--quick`` writes
the page only with ``--doc``). ``--only`` reruns some benchmarks and keeps
the others' results from the JSON file.

The full run takes about 8 minutes, ``--quick`` under 2. Needs root and
/dev/net/tun (network namespaces and TAPs), ``wrk``, ``ping``; ``py-spy``
for the profiles (full mode, or ``--profile``).
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import bulk, conns, cps, latency, report

BENCHMARKS: dict[str, Callable[[bool, int, bool], dict[str, Any]]] = {
    "bulk": bulk.run,
    "cps": cps.run,
    "latency": latency.run,
    "conns": conns.run,
}


def run_suite(
    names: Sequence[str], *, quick: bool, repeat: int, profile: bool, previous: dict[str, Any]
) -> dict[str, Any]:
    """Run ``names`` and merge them over ``previous``; the suite's JSON."""
    results = dict(previous)
    start = time.monotonic()
    for name in names:
        print(f"{name} ...", flush=True)
        t0 = time.monotonic()
        try:
            results[name] = BENCHMARKS[name](quick, repeat, profile)
        except Exception as exc:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}
        results[name]["elapsed_s"] = time.monotonic() - t0
        print(f"{name}: {results[name]['elapsed_s']:.0f} s", flush=True)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": quick,
        "repeat": repeat,
        "elapsed_s": time.monotonic() - start,
        "ran": list(names),
        **report.machine(),
    }
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 2 minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--repeat", type=int, help="repetitions (default 5, quick 3)")
    parser.add_argument("--profile", action="store_true", help="py-spy profiles in quick mode")
    parser.add_argument("--no-profile", action="store_true", help="no profiles in full mode")
    parser.add_argument("--json", type=Path, help="results file (default: bench/results/)")
    parser.add_argument("--doc", type=Path, help="page to (re)write (default: docs/benchmarks.md)")
    parser.add_argument("--no-doc", action="store_true", help="do not touch any page")
    args = parser.parse_args(argv)

    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")
    repeat = args.repeat or (3 if args.quick else 5)
    if repeat < 1:
        parser.error("--repeat: at least 1")
    profile = (args.profile or not args.quick) and not args.no_profile
    out = args.json or report.RESULTS / ("suite-quick.json" if args.quick else "suite.json")
    previous = json.loads(out.read_text()) if args.only and out.exists() else {}

    results = run_suite(names, quick=args.quick, repeat=repeat, profile=profile, previous=previous)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    if not args.no_doc and (args.doc or not args.quick):
        doc = args.doc or report.DOC
        report.write(results, doc, report.IMG if doc == report.DOC else doc.parent / "img")
        print(f"page: {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
