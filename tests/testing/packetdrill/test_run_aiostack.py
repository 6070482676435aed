"""Every corpus script (``tests/packetdrill/``) passes on aiostack.

The same scripts pass against the Linux kernel (``test_run_linux.py``),
which is how they were written: Linux is the truth, aiostack must match it.
Scripts that pass on Linux but not yet on aiostack live in
``tests/packetdrill_pending/`` and are not collected here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from aiostack.testing.packetdrill.report import Status
from aiostack.testing.packetdrill.runner import run_script_file

CORPUS = Path(__file__).resolve().parents[2] / "packetdrill"


def corpus_scripts() -> list[Path]:
    return sorted(CORPUS.rglob("*.pkt"))


def test_corpus_is_substantial() -> None:
    scripts = corpus_scripts()
    assert len(scripts) >= 25
    areas = {p.relative_to(CORPUS).parts[0] for p in scripts}
    assert {"handshake", "close", "data", "rst", "options", "timers", "syscalls"} <= areas


@pytest.mark.parametrize(
    "script", corpus_scripts(), ids=lambda p: str(p.relative_to(CORPUS).with_suffix(""))
)
def test_script_passes_on_aiostack(script: Path) -> None:
    started = time.monotonic()
    result = run_script_file(script, "aiostack")
    elapsed = time.monotonic() - started
    assert result.status is Status.PASS, result.render(verbose=True)
    # Virtual time: even the scripts that span seconds of retransmissions run at once.
    assert elapsed < 1.0, f"{script.name} took {elapsed:.2f} s of wall time"
