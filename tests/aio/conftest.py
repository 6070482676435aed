"""Fixtures for the asyncio layer's tests: two stacks on a wire, TLS material from trustme."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trustme

from aiostack.stack.stack import Stack
from tests.helpers import fast_arp, wired_stacks

#: The name the test certificates are issued for.
TLS_NAME = "aiostack.test"


@dataclass
class Net:
    """Stack ``a`` (198.18.0.1) runs clients, stack ``b`` (198.18.0.2) servers."""

    a: Stack
    b: Stack


@pytest.fixture
async def wired() -> AsyncIterator[Net]:
    async with wired_stacks(settings=(fast_arp(), fast_arp()), privileged=False) as (a, b):
        yield Net(a, b)


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    #: A client context that trusts nothing (the handshake must fail).
    untrusting: ssl.SSLContext


@pytest.fixture(scope="session")
def tls() -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert(TLS_NAME)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    untrusting = ssl.create_default_context()
    return Tls(server, client, untrusting)
