"""The runner's verdicts: the first mismatch with its line and expected-versus-actual text,
unsupported features as SKIP with "unsupported: ...", and no crash whatever a script does."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiostack.cli import main
from aiostack.testing.packetdrill import parse
from aiostack.testing.packetdrill.aiostack_target import AiostackTarget, run_on_aiostack
from aiostack.testing.packetdrill.report import Result, Status
from aiostack.testing.packetdrill.runner import run_script_file, run_target
from aiostack.testing.virtual_time import run_virtual

PASSIVE = """\
0   socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0  bind(3, ..., ...) = 0
+0  listen(3, 1) = 0
+0  < S 0:0(0) win 65535 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0  > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1 < . 1:1(0) ack 1 win 1000
+0  accept(3, ..., ...) = 4
"""  # 7 lines: appended lines start at line 8


def run(text: str) -> Result:
    return run_on_aiostack(parse(text))


def test_a_correct_script_passes() -> None:
    result = run(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 1:11(10) ack 1\n")
    assert result.status is Status.PASS, result.render()


def test_wrong_packet_fails_on_its_line_with_expected_and_actual() -> None:
    result = run(PASSIVE.replace("<mss 1460,nop", "<mss 1000,nop"))
    assert result.status is Status.FAIL
    assert result.line == 5
    assert result.message == (
        "outbound packet mismatch: TCP options <mss 1460,nop,nop,sackOK,nop,wscale 7> "
        "(expected <mss 1000,nop,nop,sackOK,nop,wscale 7>)"
    )
    assert result.expected == "> S. 0:0(0) ack 1 <mss 1000,nop,nop,sackOK,nop,wscale 7>"
    assert result.actual == "> S. 0:0(0) ack 1 win 64240 <mss 1460,nop,nop,sackOK,nop,wscale 7>"
    text = result.render()
    assert text.startswith("FAIL <string>:5 [aiostack]: outbound packet mismatch")
    assert "\n    expected: > S. 0:0(0) ack 1 <mss 1000" in text
    assert "\n    actual:   > S. 0:0(0) ack 1 win 64240 <mss 1460" in text


def test_wrong_sequence_number_is_shown_relative() -> None:
    result = run(PASSIVE + "+0 write(4, ..., 10) = 10\n+0 > P. 2:12(10) ack 1\n")
    assert (result.status, result.line) == (Status.FAIL, 9)
    assert result.message == "outbound packet mismatch: sequence number 1 (expected 2)"
    assert result.actual == "> P. 1:11(10) ack 1 win 502"


def test_wrong_return_value_and_errno() -> None:
    result = run(PASSIVE + "+0 write(4, ..., 10) = 9\n")
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message == "write() returned 10, expected 9"
    result = run(PASSIVE + "+0 read(3, ..., 10) = -1 EAGAIN (Resource temporarily unavailable)\n")
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("read() returned -1 ENOTCONN (")
    assert result.expected == "read(...) = -1 EAGAIN"


def test_timing_error_names_both_times() -> None:
    result = run(PASSIVE + "+0 write(4, ..., 10) = 10\n+.5 > P. 1:11(10) ack 1\n")
    assert (result.status, result.line) == (Status.FAIL, 9)
    assert result.message == (
        "timing error: outbound packet expected at 0.6 s but happened at 0.1 s (tolerance 0.004 s)"
    )
    assert result.expected == "+0.5 > P. 1:11(10) ack 1"
    assert result.actual == "0.1 > P. 1:11(10) ack 1 win 502"


def test_tolerance_option_and_ranges() -> None:
    late = PASSIVE + "+0 write(4, ..., 10) = 10\n+.01 > P. 1:11(10) ack 1\n"
    assert run(late).status is Status.FAIL
    assert run("--tolerance_usecs=20000\n" + late).status is Status.PASS
    ranged = PASSIVE + "+0 write(4, ..., 10) = 10\n+0~+.2 > P. 1:11(10) ack 1\n"
    assert run(ranged).status is Status.PASS
    anytime = PASSIVE + "+0 write(4, ..., 10) = 10\n* > P. 1:11(10) ack 1\n"
    assert run(anytime).status is Status.PASS


def test_missing_packet_times_out() -> None:
    result = run(PASSIVE + "+0 > F. 1:1(0) ack 1\n")
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message == "timed out waiting for an outbound packet"
    assert result.actual == "(no packet)"


def test_call_that_blocks_without_ellipsis_fails() -> None:
    result = run(PASSIVE + "+0 read(4, ..., 10) = 10\n")
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("read() blocked; the script expects it to return at once")


def test_blocking_call_checked_at_its_return() -> None:
    ok = PASSIVE + "+0...0.2 read(4, ..., 10) = 10\n+.2 < P. 1:11(10) ack 1 win 1000\n"
    assert run(ok).status is Status.PASS
    early = PASSIVE + "+0...0.5 read(4, ..., 10) = 10\n+.2 < P. 1:11(10) ack 1 win 1000\n"
    result = run(early)
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("timing error: return of read() expected at 0.6 s")
    never = PASSIVE + "+0...0.2 read(4, ..., 10) = 10\n"
    result = run(never)
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("blocking read() did not return by")


def test_code_block_sees_tcp_info() -> None:
    ok = PASSIVE + "+0 %{ assert tcpi_state == 1 and tcpi_snd_mss == 1000 }%\n"
    assert run(ok).status is Status.PASS
    result = run(PASSIVE + "+0 %{ assert tcpi_snd_mss == 1460 }%\n")
    assert (result.status, result.line) == (Status.FAIL, 8)
    assert result.message.startswith("assertion failed in %{ }% block")
    assert "'tcpi_snd_mss': 1000" in result.message
    result = run(PASSIVE + "+0 %{ 1 / 0 }%\n")
    assert result.message == "%{ }% block raised ZeroDivisionError: division by zero"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0 epoll_create(1) = 5\n", "unsupported: system call epoll_create()"),
        ("0 < udp (10)\n", "unsupported: inbound UdpDatagram packets (only TCP is supported)"),
        (
            "--ip_version=ipv6\n0 close(3) = -1\n",
            "unsupported: option --ip_version=ipv6 (IPv4 only)",
        ),
        ("0 `tc qdisc add dev x root netem`\n", "unsupported: shell command `tc qdisc"),
        ("--speed=100\n0 close(3) = -1\n", "unsupported: option --speed=100"),
    ],
)
def test_unsupported_features_skip_with_a_reason(text: str, reason: str) -> None:
    result = run(text)
    assert result.status is Status.SKIP
    assert result.message.startswith(reason)


def test_options_naming_the_defaults_are_accepted() -> None:
    options = "--ip_version=ipv4\n--local_ip=192.168.0.1\n--remote_ip=192.0.2.1\n--mtu=1500\n"
    assert run(options + PASSIVE).status is Status.PASS
    result = run("--remote_ip=192.0.2.9\n" + PASSIVE)
    assert (result.status, result.message) == (
        Status.SKIP,
        "unsupported: option --remote_ip=192.0.2.9",
    )


def test_sysctls_apply_and_unknown_ones_are_noted() -> None:
    text = "`sysctl -q net.ipv4.tcp_sack=0 net.ipv4.tcp_foo=1`\n" + PASSIVE.replace(
        "<mss 1460,nop,nop,sackOK,nop,wscale 7>", "<mss 1460,nop,wscale 7>"
    )
    result = run(text)
    assert result.status is Status.PASS, result.render()
    assert result.notes == ["sysctl net.ipv4.tcp_foo=1 ignored: aiostack has no such setting"]


class _BrokenTarget(AiostackTarget):
    async def open(self) -> None:
        raise RuntimeError("boom")


def test_internal_errors_are_reported_not_raised() -> None:
    result = run_virtual(run_target(parse(PASSIVE), _BrokenTarget()))
    assert result.status is Status.FAIL
    assert result.message.startswith("internal error: RuntimeError: boom")


def test_syntax_and_read_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkt"
    bad.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > S. 0:0(0) win 70000\n")
    result = run_script_file(bad)
    assert (result.status, result.line) == (Status.FAIL, 2)
    assert "TCP window value out of range" in result.message
    result = run_script_file(tmp_path / "missing.pkt")
    assert result.status is Status.FAIL and result.message.startswith("cannot read the script")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cli_reports_each_script_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path, "a/good.pkt", PASSIVE)
    _write(tmp_path, "a/bad.pkt", PASSIVE + "+0 write(4, ..., 10) = 9\n")
    _write(tmp_path, "b/skip.pkt", "0 epoll_create(1) = 5\n")
    assert main(["packetdrill", "-j", "2", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "1 passed, 1 failed, 1 skipped"
    assert f"FAIL {tmp_path}/a/bad.pkt:8 [aiostack]: write() returned 10, expected 9" in out
    assert f"PASS {tmp_path}/a/good.pkt [aiostack]" in out
    assert any(
        line.startswith(f"SKIP {tmp_path}/b/skip.pkt [aiostack]: unsupported:") for line in out
    )
    assert main(["packetdrill", "-j", "1", str(tmp_path / "a/good.pkt")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


def test_cli_linux_target_needs_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiostack.testing.packetdrill import linux

    monkeypatch.setattr(linux, "linux_unavailable_reason", lambda: "root (for namespaces)")
    path = _write(tmp_path, "x.pkt", PASSIVE)
    assert main(["packetdrill", "--target", "linux", str(path)]) == 2
    assert "the linux target needs root (for namespaces)" in capsys.readouterr().err


def test_linux_target_without_root_skips_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiostack.testing.packetdrill import linux

    monkeypatch.setattr(linux, "linux_unavailable_reason", lambda: "needs root")
    result = run_script_file(_write(tmp_path, "x.pkt", PASSIVE), "linux")
    assert (result.status, result.message) == (
        Status.SKIP,
        "unsupported: the linux target: needs root",
    )
