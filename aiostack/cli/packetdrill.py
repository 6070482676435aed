"""``aiostack packetdrill``: run packetdrill scripts against aiostack or the Linux kernel.

::

    aiostack packetdrill tests/packetdrill                 # every *.pkt below, on aiostack
    aiostack packetdrill --target linux tests/packetdrill  # the same scripts on the kernel (root)

Scripts run in parallel worker processes (one script per process at a
time, so a script that wedges its event loop cannot stall another). Each
prints ``PASS``/``FAIL``/``SKIP``; a failure shows the script line and the
expected and actual packet or result. The last line is ``N passed, M
failed`` (and ``, K skipped`` for scripts using features the runner
declares unsupported); the exit status is 1 if any script failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from aiostack.testing.packetdrill.report import Result, Status, summary_line
from aiostack.testing.packetdrill.runner import run_script_file

__all__ = ["collect_scripts", "register"]


def collect_scripts(paths: list[str]) -> list[Path]:
    """Files as given, directories searched for ``*.pkt``, sorted, each once."""
    found: dict[Path, None] = {}
    for text in paths:
        path = Path(text)
        if path.is_dir():
            for script in sorted(path.rglob("*.pkt")):
                found[script] = None
        else:
            found[path] = None
    return list(found)


def _run_all(scripts: list[Path], target: str, jobs: int) -> list[Result]:
    if jobs <= 1 or len(scripts) <= 1:
        return [run_script_file(script, target) for script in scripts]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_script_file, scripts, [target] * len(scripts)))


def cmd_packetdrill(args: argparse.Namespace) -> int:
    scripts = collect_scripts(args.paths)
    if not scripts:
        print("packetdrill: no scripts found", file=sys.stderr)
        return 2
    if args.target == "linux":
        from aiostack.testing.packetdrill.linux import linux_unavailable_reason

        reason = linux_unavailable_reason()
        if reason is not None:
            print(f"packetdrill: the linux target needs {reason}", file=sys.stderr)
            return 2
    jobs = args.jobs if args.jobs is not None else min(len(scripts), os.cpu_count() or 1)
    results = _run_all(scripts, args.target, jobs)
    for result in results:
        print(result.render(args.verbose))
    print(summary_line(results))
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``aiostack packetdrill`` to the command's sub-commands."""
    parser = sub.add_parser("packetdrill", help="run packetdrill scripts against aiostack or Linux")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="script files or directories")
    parser.add_argument(
        "--target",
        choices=("aiostack", "linux"),
        default="aiostack",
        help="the stack under test: aiostack on virtual time (default) or the kernel (root)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="timings and notes")
    parser.add_argument(
        "--jobs", "-j", type=int, default=None, help="parallel processes (default: CPU count)"
    )
    parser.set_defaults(handler=cmd_packetdrill)
