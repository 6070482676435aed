"""``aiostack ss`` shows every listener of an SO_REUSEPORT group, each with its own queue.

Linux's ``ss -tln`` lists each listening socket of a group on its own line;
the demux keeps only a group's first member in ``listeners``, so the table
must read the groups.
"""

from __future__ import annotations

import asyncio
import socket as stdlib

from aiostack.cli.control import call, socket_table
from aiostack.socket import AF_INET, SOCK_STREAM, SOL_SOCKET
from tests.cli.test_control import Lab, lab  # noqa: F401  (the fixture)
from tests.helpers import B_IP, TIMEOUT

PORT = 9090


async def test_every_member_of_a_reuseport_group_is_listed(lab: Lab) -> None:  # noqa: F811
    members = []
    for backlog in (5, 6, 7):
        sock = lab.b.socket(AF_INET, SOCK_STREAM)
        sock.setsockopt(SOL_SOCKET, stdlib.SO_REUSEPORT, 1)
        sock.bind(("", PORT))
        sock.listen(backlog)
        members.append(sock)
    client = lab.a.socket(AF_INET, SOCK_STREAM)
    async with asyncio.timeout(TIMEOUT):
        await client.connect((B_IP, PORT))
        rows = await call(lab.path, {"op": "ss"})
    group = [r for r in rows if r["state"] == "LISTEN" and r["local"] == f"*:{PORT}"]
    assert sorted(r["send_q"] for r in group) == [5, 6, 7]  # each its own backlog
    assert sum(r["recv_q"] for r in group) == 1  # the one connection waits in one of them
    members[0].close()
    left = [r for r in socket_table(lab.b) if r["local"] == f"*:{PORT}" and r["state"] == "LISTEN"]
    assert sorted(r["send_q"] for r in left) == [6, 7]
    for sock in (*members, client):
        sock.close()
