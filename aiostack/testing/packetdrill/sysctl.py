"""Back-quoted shell commands: the sysctls they set, as ``(name, value)`` pairs.

Scripts configure the stack under test with ``sysctl -q NAME=VALUE`` lines
and with ``../common/defaults.sh``, the Linux test suite's script that puts
the production defaults back before every test. The runner does not run a
shell: it reads the sysctls out of the command and hands them to the target
(aiostack's :class:`~aiostack.settings.Settings`, or ``sysctl`` inside the
Linux target's namespace). Any other command is unsupported.
"""

from __future__ import annotations

import shlex

from .packets import Unsupported

__all__ = ["DEFAULTS", "parse_command"]

#: What ``../common/defaults.sh`` sets: the production defaults the Linux
#: TCP tests assume (timestamps, SACK, D-SACK, window scaling, a 15 MiB
#: receive buffer maximum so the window scale is 8, CUBIC, SYN cookies on,
#: no slow start after idle, no ECN, no cached route metrics). Only
#: per-namespace sysctls: ``net.core.*`` buffer limits are global on Linux.
DEFAULTS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.tcp_timestamps", "1"),
    ("net.ipv4.tcp_sack", "1"),
    ("net.ipv4.tcp_dsack", "1"),
    ("net.ipv4.tcp_window_scaling", "1"),
    ("net.ipv4.tcp_rmem", "4096 540000 15728640"),
    ("net.ipv4.tcp_wmem", "4096 262144 4194304"),
    ("net.ipv4.tcp_congestion_control", "cubic"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv4.tcp_slow_start_after_idle", "0"),
    ("net.ipv4.tcp_ecn", "0"),
    ("net.ipv4.tcp_no_metrics_save", "1"),
    ("net.ipv4.tcp_fastopen", "0"),
)


def parse_command(text: str) -> list[tuple[str, str]]:
    """The sysctls a back-quoted command sets; Unsupported for anything else.

    Accepts ``sysctl [-q] [-w] NAME=VALUE ...``, several joined by ``;`` or
    ``&&``, and ``defaults.sh`` under any directory.
    """
    settings: list[tuple[str, str]] = []
    for part in text.replace("&&", ";").split(";"):
        words = shlex.split(part)
        if not words:
            continue
        if words[0].endswith("defaults.sh") and len(words) == 1:
            settings += DEFAULTS
            continue
        if words[0] != "sysctl":
            raise Unsupported(f"shell command `{part.strip()}` (only sysctl and defaults.sh)")
        for word in words[1:]:
            if word in ("-q", "-w", "-qw", "-wq"):
                continue
            name, sep, value = word.partition("=")
            if not sep or not name or word.startswith("-"):
                raise Unsupported(f"sysctl argument {word!r} (expected NAME=VALUE)")
            settings.append((name.replace("/", "."), value))
    return settings
