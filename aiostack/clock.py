"""Where time comes from: the shell reads it, the core is handed it.

The pure core never reads a clock; every entry point takes ``now`` in
seconds. The shell's one source of ``now`` is the running event loop's
``time()``, so a loop with a virtual clock (for tests) moves the whole stack
through time with it, protocol timers and application sleeps alike.
"""

from __future__ import annotations

import asyncio


def loop_time() -> float:
    """The running loop's monotonic time in seconds: the stack's ``now``."""
    return asyncio.get_running_loop().time()
