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


def run(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120
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
    assert "HTTP GET /bytes/5000000: OK 5000000 bytes" in result.stdout


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
    assert "/bytes/52428800: OK 52428800 bytes, sha256 verified" in out
    assert "262144 bytes echoed intact" in out
    assert "the echo server closed after the kernel's FIN: yes" in out
    assert re.search(r"tcp\s+ESTAB\s+\d+\s+\d+\s+198\.18\.0\.2:7\s", out), out
    assert 1000 < pcap.stat().st_size < 20_000_000  # headers only, not the 50 MB
    assert "namespace and TAP removed." in out
    namespace = re.search(r"in namespace (\S+):", out)
    assert namespace is not None, out
    assert namespace.group(1) not in list_netns()


def test_echo_server() -> None:
    out = run("echo_server.py")
    assert "server: listening on ('0.0.0.0', 7)" in out
    assert out.count("client: echoed") == 3
    assert "client: echoed 50001 bytes: True" in out
    assert "False" not in out
    assert "server: ('198.18.0.1'" in out and "disconnected" in out


@pytest.mark.tap
def test_echo_server_tap() -> None:
    require_tap()
    out = run("echo_server.py", "--tap")
    assert "kernel client got: b'hello from the kernel\\n'" in out


def test_http_get() -> None:
    out = run("http_get.py")
    assert "GET / -> HTTP/1.1 200 OK, 55 bytes" in out
    assert "<h1>Hello from aiostack</h1>" in out
    assert "GET /bytes/1000000 -> HTTP/1.1 200 OK, intact: True" in out


def test_udp_echo() -> None:
    out = run("udp_echo.py")
    assert "echoed 5 bytes: True" in out
    assert "echoed 20000 bytes: True" in out
    assert "port 8: error_received(ConnectionRefusedError)" in out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_tls_echo(loop: str) -> None:
    out = run("tls_echo.py", *(["--uvloop"] if loop == "uvloop" else []))
    assert re.search(r"handshake: TLSv1\.[23] \S+, server certificate for", out), out
    assert "(('DNS', 'echo.aiostack.test'),)" in out
    assert "echoed 14 bytes: True" in out
    assert "echoed 256000 bytes: True" in out
    assert "closed cleanly" in out


def test_h11_server() -> None:
    out = run("h11_server.py")
    assert "GET /hello -> 200 b'Hello from h11 on aiostack\\n'" in out
    assert "POST /echo (102400 bytes, chunked) -> 200, same: True" in out
    assert "GET /missing -> 404" in out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_http_server(loop: str) -> None:
    out = run("http_server.py", *(["--uvloop"] if loop == "uvloop" else []))
    assert "serving on http://198.18.0.2:8080 (host 'server')" in out
    assert "GET /kv/blob: 256000 bytes intact: True (1 attempt)" in out
    assert out.count("GET /health: {'ok': True, 'keys': 1, 'peer': '198.18.0.1'}") == 3
    assert "TCP connections opened by the client: 1 (keep-alive)" in out


def run_pytest_file(name: str) -> str:
    """Run an example test file as its own pytest session, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLES.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_app_virtual() -> None:
    out = run_pytest_file("test_app_virtual.py")
    assert re.search(r"\b3 passed\b", out), out


@pytest.mark.tap
def test_app_tap() -> None:
    require_tap()
    out = run_pytest_file("test_app_tap.py")
    assert re.search(r"\b2 passed\b", out), out
