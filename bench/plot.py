"""Draw bench/results/*.json as PNG bar charts for docs/benchmarks.md.

    python bench/plot.py bench/results/rx_path.json docs/img/rx_path.png

Needs matplotlib (not a dependency of aiostack: ``pip install matplotlib``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rx_path import FLOOR  # bench/ is on sys.path when run as a script


def plot_rx_path(results: dict[str, object], out: Path) -> None:
    rates = results["rates"]
    assert isinstance(rates, dict)
    loops = list(rates)
    kinds = list(next(iter(rates.values())))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(loops)
    for i, loop in enumerate(loops):
        xs = [k + i * width for k in range(len(kinds))]
        us = [1e6 / rates[loop][kind] for kind in kinds]
        left.bar(xs, us, width, label=loop)
        ratios = [rates[loop][FLOOR[kind]] / rates[loop][kind] for kind in kinds]
        right.bar(xs, ratios, width, label=loop)
    for axis in (left, right):
        axis.set_xticks([k + width * (len(loops) - 1) / 2 for k in range(len(kinds))], kinds)
        axis.legend()
    left.set_ylabel("microseconds per frame (lower is better)")
    right.set_ylabel("x the floor (bare or bare-echo)")
    right.axhline(3.0, color="grey", linestyle="--", linewidth=1)
    right.text(len(kinds) - 1, 3.05, "target 3x", ha="right", va="bottom", fontsize=8)
    offload = "on" if results.get("offload") else "off"
    fig.suptitle(
        f"Receive path: {results['frames']} frames of {results['payload']}-byte "
        f"UDP payloads, offloads {offload}, median of {results['repeat']}"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> int:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    plot_rx_path(json.loads(source.read_text()), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
