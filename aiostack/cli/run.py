"""Running a sub-command's coroutine on the loop the user chose."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

LOOPS = ("uvloop", "asyncio")


def run_main(coro: Coroutine[Any, Any, int], loop: str) -> int:
    """Run ``coro`` to completion on uvloop or the stdlib loop; return its exit status."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)
