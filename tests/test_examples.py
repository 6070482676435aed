"""The programs in examples/ run and print what their docstrings promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiostack.link.netlink import list_netns
from aiostack.testing.netns import require_tap

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_memory_udp_echo() -> None:
    out = run("memory_udp_echo.py")
    assert "echoed 5 bytes from ('198.18.0.2', 7): True" in out
    assert "echoed 20000 bytes from ('198.18.0.2', 7): True" in out
    assert "'IpReasmOKs': 1" in out  # the 20000-byte datagram came in fragments


@pytest.mark.tap
def test_tap_udp_echo() -> None:
    require_tap()
    out = run("tap_udp_echo.py")
    assert "3 packets transmitted, 3 received" in out
    assert "kernel client got: (b'hello from the kernel', ('198.18.0.2', 7))" in out


def test_memory_demo_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aiostack", "demo", "--memory", "--loop", "asyncio"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "UDP echo: 100/100 echoed" in result.stdout


@pytest.mark.tap
def test_tap_demo_command(tmp_path: Path) -> None:
    require_tap()
    pcap = tmp_path / "demo.pcap"
    result = subprocess.run(
        [sys.executable, "-m", "aiostack", "demo", "--pcap", str(pcap)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kernel pings aiostack (5 x 56 bytes): 0% loss" in out
    assert "kernel pings with 8000 bytes (fragmented both ways): 0% loss" in out
    assert "kernel flood-pings aiostack (1000): 0% loss" in out
    assert "100/100 echoed" in out
    assert "the page arrived intact" in out
    assert "/bytes/5000000: OK 5000000 bytes verified" in out
    assert pcap.stat().st_size > 1000
    assert "namespace and TAP removed." in out
    namespace = re.search(r"in namespace (\S+):", out)
    assert namespace is not None, out
    assert namespace.group(1) not in list_netns()
