"""The public surface of ``import aiostack``: every listed name imports, nothing heavy comes too."""

from __future__ import annotations

import importlib
import inspect
import socket
import subprocess
import sys

import pytest

import aiostack


def test_all_has_no_duplicates() -> None:
    assert len(aiostack.__all__) == len(set(aiostack.__all__))


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper():
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted() -> None:
    assert aiostack.__all__ == sorted(aiostack.__all__, key=_isort_key)


@pytest.mark.parametrize("name", aiostack.__all__)
def test_every_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from aiostack import {name}", namespace)
    value = namespace[name]
    assert value is getattr(aiostack, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        # Re-exported, not redefined: the object is the one its own module defines.
        home = importlib.import_module(value.__module__)
        assert getattr(home, value.__qualname__) is value


def test_star_import_is_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from aiostack import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(aiostack.__all__)


@pytest.mark.parametrize("name", [n for n in aiostack.__all__ if n.isupper()])
def test_constants_are_the_stdlib_numbers(name: str) -> None:
    # Code ported from the stdlib's socket module keeps its constants.
    assert getattr(aiostack, name) == getattr(socket, name)


def test_the_asyncio_entry_points_are_the_stacks_methods() -> None:
    # ``aiostack.create_server(stack, ...)`` and ``stack.create_server(...)`` are one API.
    for name in (
        "create_connection",
        "create_datagram_endpoint",
        "create_server",
        "open_connection",
        "start_server",
    ):
        assert name in aiostack.__all__
        assert callable(getattr(aiostack.Stack, name))


def test_import_aiostack_stays_light() -> None:
    # Testing tools, services and framework adapters are opt-in imports.
    code = (
        "import sys, aiostack\n"
        "heavy = [m for m in sys.modules if m.split('.')[:2] in "
        "(['aiostack', 'testing'], ['aiostack', 'services'], ['aiostack', 'contrib'], "
        "['aiostack', 'cli']) or m in ('aiohttp', 'uvicorn', 'pytest')]\n"
        "print(','.join(sorted(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
