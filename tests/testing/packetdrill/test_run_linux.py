"""Every corpus script, and every pending one, passes against the Linux kernel.

Each run creates its own network namespace with a TUN device (deleted
afterwards), so these need root and /dev/net/tun, like the other ``tap``
tests. Pending scripts are here too: they document Linux behaviour aiostack
does not match yet, so they must stay true on Linux.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aiostack.testing.netns import require_tap
from aiostack.testing.packetdrill.report import Status
from aiostack.testing.packetdrill.runner import run_script_file

CORPUS = Path(__file__).resolve().parents[2] / "packetdrill"
#: Scripts that pass on Linux but not yet on aiostack (known TCP-core gaps).
PENDING = Path(__file__).resolve().parents[2] / "packetdrill_pending"
ROOT = CORPUS.parent

pytestmark = pytest.mark.tap


@pytest.mark.parametrize(
    "script",
    sorted([*CORPUS.rglob("*.pkt"), *PENDING.rglob("*.pkt")]),
    ids=lambda p: str(p.relative_to(ROOT).with_suffix("")),
)
def test_script_passes_on_linux(script: Path) -> None:
    require_tap()
    result = run_script_file(script, "linux")
    assert result.status is Status.PASS, result.render(verbose=True)
