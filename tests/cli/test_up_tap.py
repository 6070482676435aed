"""``aiostack up`` as a subprocess on a real TAP, the Linux kernel as the client.

Each test creates its own namespace (or has ``aiostack up`` create one),
waits for the ready line, talks to the services with curl, nc, ping and
kernel sockets from inside the namespace, queries the control socket
through ``aiostack ss``/``stats``/``ping``, stops the process with SIGTERM
and checks that what ``aiostack up`` created is gone and nothing else is.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiostack.cli.control import running_sockets
from aiostack.link import netlink
from aiostack.link.pcap import read_pcap
from aiostack.services import http
from aiostack.testing.netns import NetNamespace, TapNamespace, require_tap, unique_name

pytestmark = pytest.mark.tap

TIMEOUT = 60.0
STACK_IP = "198.18.0.2"
KERNEL_IP = "198.18.0.1"


class Up:
    """A running ``aiostack up``; always reaped by the test."""

    def __init__(self, *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiostack", "up", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> dict[str, str]:
        """The ready line's ``key=value`` fields, once it is printed."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(TIMEOUT):
                self.kill()
                pytest.fail("aiostack up printed no ready line in time")
        line = self.proc.stdout.readline()
        if not line.startswith("aiostack up: ready "):
            self.kill()
            stderr = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"aiostack up did not start: {line!r} {stderr}")
        return dict(field.split("=", 1) for field in line.split()[3:])

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and stderr."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("aiostack up did not exit after SIGTERM")
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def namespace() -> Iterator[NetNamespace]:
    require_tap()
    with NetNamespace() as ns:
        yield ns


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiostack", *argv], capture_output=True, text=True, timeout=TIMEOUT
    )


def sh(ns: NetNamespace, *argv: str) -> str:
    result = ns.run(*argv, timeout=TIMEOUT)
    assert result.returncode == 0, (argv, result.stderr.decode())
    return result.stdout.decode()


def kernel_tcp(ns: NetNamespace, port: int) -> socket.socket:
    sock = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect((STACK_IP, port))
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def test_up_creates_a_tap_serves_and_removes_everything(
    namespace: NetNamespace, tmp_path: Path
) -> None:
    tap = unique_name("tap")
    control = tmp_path / "up.sock"
    pcap = tmp_path / "up.pcap"
    up = Up(
        *("--tap", tap, "--netns", namespace.name, "--addr", f"{STACK_IP}/24"),
        *("--peer-addr", f"{KERNEL_IP}/24", "--serve", "http", "--serve", "echo"),
        *("--serve", "daytime:1313", "--control", str(control), "--pcap", str(pcap)),
        "--loop",
        "asyncio",
    )
    try:
        ready = up.wait_ready()
        assert ready["mode"] == "created" and ready["tap"] == tap
        assert ready["netns"] == namespace.name and ready["addr"] == f"{STACK_IP}/24"
        assert ready["services"] == "http:80/tcp,echo:7/tcp+udp,daytime:1313/tcp+udp"
        assert ready["control"] == str(control) and control.is_socket()
        assert netlink.link_exists(tap, netns=namespace.name)

        ping = sh(namespace, "ping", "-c", "3", "-i", "0.2", "-W", "5", STACK_IP)
        assert "3 packets transmitted, 3 received, 0% packet loss" in ping

        url = f"http://{STACK_IP}"
        assert sh(namespace, "curl", "-sS", "--max-time", "30", f"{url}/") == http.PAGE.decode()
        download = tmp_path / "bytes"
        size = 2_000_000
        sh(namespace, "curl", "-sS", "--max-time", "60", "-o", str(download), f"{url}/bytes/{size}")
        got = hashlib.sha256(download.read_bytes()).hexdigest()
        assert got == hashlib.sha256(http.pattern(0, size)).hexdigest()
        uploaded = sh(
            namespace, "curl", "-sS", "--max-time", "60", "--data-binary", f"@{download}",
            f"{url}/upload",
        )  # fmt: skip
        assert uploaded == f"{size}\n"
        chunked = sh(
            namespace, "curl", "-sS", "--max-time", "60", "-H", "Transfer-Encoding: chunked",
            "--data-binary", f"@{download}", f"{url}/upload",
        )  # fmt: skip
        assert chunked == f"{size}\n"
        status = sh(namespace, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/x")
        assert status == "404"

        daytime = sh(namespace, "nc", "-w", "10", STACK_IP, "1313")
        assert re.fullmatch(r"\w+day, \w+ \d\d, \d{4} \d\d:\d\d:\d\d-UTC\r\n", daytime)

        # Every port without a service is closed: RST for TCP, ICMP port unreachable for UDP.
        with pytest.raises(ConnectionRefusedError):
            kernel_tcp(namespace, 81)
        udp = namespace.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(TIMEOUT)
        udp.connect((STACK_IP, 9999))
        udp.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            udp.recv(100)
        udp.connect((STACK_IP, 7))
        udp.send(b"udp echo")
        assert udp.recv(100) == b"udp echo"
        udp.close()

        # A TCP echo connection stays open while the control socket is queried.
        echo = kernel_tcp(namespace, 7)
        payload = os.urandom(100_000)
        echo.sendall(payload)
        echoed = b""
        while len(echoed) < len(payload):
            echoed += echo.recv(65536)
        assert echoed == payload
        kernel_port = echo.getsockname()[1]

        ss = cli("ss", "-t", "-i", "--control", str(control))
        assert ss.returncode == 0, ss.stderr
        lines = ss.stdout.splitlines()
        row = next(i for i, line in enumerate(lines) if f"{KERNEL_IP}:{kernel_port}" in line)
        assert lines[row].split()[:2] == ["tcp", "ESTAB"]
        assert f"{STACK_IP}:7" in lines[row]
        assert lines[row + 1].lstrip().startswith("cubic wscale:")
        assert "bytes_received:100000" in lines[row + 1]
        acked = re.search(r"bytes_acked:(\d+)", lines[row + 1])
        assert acked is not None and int(acked.group(1)) <= 100_001  # echo data and SYN
        listening = cli("ss", "-l", "--control", str(control)).stdout
        for local in ("*:80", "*:7", "*:1313"):
            assert re.search(rf"tcp\s+LISTEN\s+0\s+\d+\s+{re.escape(local)}\s", listening)
        assert re.search(r"udp\s+UNCONN\s+0\s+0\s+\*:7\s", listening)

        stats = cli("stats", "--control", str(control))
        assert stats.returncode == 0, stats.stderr
        counters = dict(line.split() for line in stats.stdout.splitlines()[1:])
        assert int(counters["TcpPassiveOpens"]) >= 6
        assert int(counters["IcmpInEchos"]) == 3
        assert int(counters["TcpOutRsts"]) >= 1  # port 81
        assert int(counters["UdpNoPorts"]) == 1  # port 9999
        assert all(int(v) for v in counters.values())
        assert "TcpRetransSegs" in cli("stats", "-z", "--control", str(control)).stdout

        pinged = cli("ping", "-c", "3", "-i", "0.2", KERNEL_IP, "--control", str(control))
        assert pinged.returncode == 0, pinged.stderr
        assert pinged.stdout.startswith(f"PING {KERNEL_IP} ({KERNEL_IP}) 56(84) bytes of data.")
        assert f"64 bytes from {KERNEL_IP}: icmp_seq=3 time=" in pinged.stdout
        assert "3 packets transmitted, 3 received, 0% packet loss" in pinged.stdout
        assert "rtt min/avg/max/mdev = " in pinged.stdout

        echo.shutdown(socket.SHUT_WR)
        assert recv_all(echo) == b""  # the server closes after our FIN
        echo.close()

        status_code, stderr = up.stop()
        assert status_code == 0, stderr
    finally:
        up.kill()
    assert not netlink.link_exists(tap, netns=namespace.name)
    assert not control.exists()
    assert netlink.netns_exists(namespace.name)  # not ours to delete: the test made it
    _header, records = read_pcap(pcap)
    assert len(records) > 1000


def test_up_attaches_to_an_existing_tap_and_leaves_it(tmp_path: Path) -> None:
    require_tap()
    with TapNamespace() as spec:
        ns = spec.namespace
        before = sh(ns, "ip", "-4", "-o", "addr", "show", "dev", spec.name)
        up = Up(
            *("--tap", spec.name, "--netns", spec.netns, "--addr", f"{spec.stack_ip}/24"),
            *("--peer-addr", "198.18.0.9/24", "--serve", "echo:7007", "--loop", "uvloop"),
        )
        try:
            ready = up.wait_ready()
            assert ready["mode"] == "attached" and ready["peer"] == "-"
            control = Path(ready["control"])
            assert control.name == f"up-{up.proc.pid}.sock" and control.is_socket()
            ping = sh(ns, "ping", "-c", "2", "-i", "0.2", "-W", "5", spec.stack_ip)
            assert "2 packets transmitted, 2 received" in ping
            echo = sh(ns, "sh", "-c", f"printf 'via nc' | nc -N -w 10 {spec.stack_ip} 7007")
            assert echo == "via nc"
            # With one 'aiostack up' running the clients find it on their own.
            if running_sockets() == [control]:
                stats = cli("stats")
                assert stats.returncode == 0, stats.stderr
                assert "TcpPassiveOpens" in stats.stdout
            code, stderr = up.stop()
            assert code == 0
            assert "--peer-addr ignored" in stderr
        finally:
            up.kill()
        assert not control.exists()
        assert netlink.link_exists(spec.name, netns=spec.netns)
        assert sh(ns, "ip", "-4", "-o", "addr", "show", "dev", spec.name) == before


def test_up_creates_and_removes_its_namespace_with_faults(tmp_path: Path) -> None:
    require_tap()
    netns = unique_name("aiostk")
    assert not netlink.netns_exists(netns)
    control = tmp_path / "c.sock"
    up = Up(
        *("--tap", "aiotap0", "--netns", netns, "--addr", f"{STACK_IP}/24"),
        *("--peer-addr", f"{KERNEL_IP}/24", "--fault", "delay=10ms,seed=3"),
        *("--control", str(control), "--loop", "asyncio"),
    )
    try:
        ready = up.wait_ready()
        assert ready["netns"] == netns and netlink.netns_exists(netns)
        assert ready["fault_seed"] == "3"
        ns = NetNamespace(netns)  # a handle only: 'aiostack up' owns it
        ping = sh(ns, "ping", "-c", "2", "-i", "0.2", "-W", "5", STACK_IP)
        rtt_min = float(re.search(r"= ([\d.]+)/", ping).group(1))  # type: ignore[union-attr]
        assert rtt_min >= 20.0  # 10 ms each way
        code, stderr = up.stop()
        assert code == 0, stderr
    finally:
        up.kill()
        leftover = netlink.netns_exists(netns)
        if leftover:
            netlink.delete_netns(netns)
    assert not leftover
    assert not control.exists()


def test_up_exits_when_its_tap_is_deleted_under_it() -> None:
    """A TAP removed with ``ip link del`` ends ``aiostack up`` (status 1), cleaning up the rest."""
    require_tap()
    netns = unique_name("aiostk")
    up = Up(*("--tap", "aiotap0", "--netns", netns, "--addr", f"{STACK_IP}/24"))
    try:
        ready = up.wait_ready()
        control = Path(ready["control"])
        assert control.is_socket()
        sh(NetNamespace(netns), "ip", "link", "del", "aiotap0")
        try:
            _out, err = up.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail("aiostack up kept running after its TAP was deleted")
        assert up.proc.returncode == 1
        assert "'aiotap0' went away" in err
    finally:
        up.kill()
        leftover = netlink.netns_exists(netns)
        if leftover:
            netlink.delete_netns(netns)
    assert not leftover
    assert not control.exists()
