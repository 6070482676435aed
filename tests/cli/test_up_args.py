"""``aiostack up`` refuses bad arguments before touching the system (exit status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiostack.cli import main


def up(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["up", *argv])
    return code, capsys.readouterr().err


def test_bad_arguments_exit_2_naming_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = up(capsys, "--tap", "t0", "--addr", "198.18.0.2")
    assert code == 2 and "address: '198.18.0.2' lacks a prefix length" in err
    code, err = up(capsys, "--tap", "t0", "--addr", "198.18.0.2/24", "--fault", "loss=2")
    assert code == 2 and err.startswith("aiostack up: loss: ")
    code, err = up(capsys, "--tap", "t0", "--addr", "198.18.0.2/24", "--serve", "gopher")
    assert code == 2 and "'gopher' is not a built-in service" in err
    code, err = up(
        capsys, "--tap", "t0", "--addr", "198.18.0.2/24", "--serve", "echo", "--serve", "discard:7"
    )
    assert code == 2 and "two services on the same port" in err
    code, err = up(capsys, "--tap", "x" * 20, "--addr", "198.18.0.2/24")
    assert code == 2 and "x" * 20 in err
    code, err = up(capsys, "--tap", "t0", "--addr", "198.18.0.2/24", "--mtu", "20")
    assert code == 2 and "mtu: 20" in err
    code, err = up(capsys, "--tap", "t0", "--addr", "198.18.0.2/24", "--gateway", "1.2.3")
    assert code == 2 and "1.2.3" in err


def test_clients_without_a_running_up_say_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = f"{tmp_path}/none.sock"
    for argv in (["ss"], ["stats"], ["ping", "198.18.0.1", "-c", "1"]):
        code = main([*argv, "--control", missing])
        err = capsys.readouterr().err
        assert code in (1, 2) and "no 'aiostack up' answers there" in err, (argv, err)
