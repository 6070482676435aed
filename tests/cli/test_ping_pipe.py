"""``aiostack ping HOST | head -1``: the command ends as ping(8) does when its reader goes.

ping(8) dies of SIGPIPE at its first write after ``head`` exits: no message,
status 141 in the shell. The client runs as a real process on a real pipe;
the control server it talks to is stack B of the test (see test_control.py).
"""

from __future__ import annotations

import asyncio
import sys

from aiostack.cli import ping as ping_cli
from tests.cli.test_control import Lab, lab  # noqa: F401  (the fixture)
from tests.helpers import A_IP, TIMEOUT


async def test_ping_into_head_exits_quietly_with_sigpipe_status(lab: Lab) -> None:  # noqa: F811
    script = (
        f"{sys.executable} -m aiostack ping {A_IP} -i 0.01 --control {lab.path} | head -1;"
        ' echo "status=${PIPESTATUS[0]}"'
    )
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT * 4):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().splitlines()
    assert lines == [f"PING {A_IP} ({A_IP}) 56(84) bytes of data.", "status=141"], (out, err)
    assert err == b""  # no traceback, no "Broken pipe", no "Exception ignored"
    assert ping_cli.EXIT_SIGPIPE == 141
