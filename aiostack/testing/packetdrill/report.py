"""What a script run ends with: PASS, FAIL (first mismatch) or SKIP, and how it reads.

packetdrill stops at the first event that does not go as scripted and
prints the script line and what happened instead. :class:`ScriptFailure`
carries that (line, what was expected, what happened) from wherever it is
detected to :class:`Result`, which the CLI prints and the tests inspect.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Result", "ScriptFailure", "Status", "summary_line"]


class Status(enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


class ScriptFailure(Exception):
    """An event did not happen as scripted.

    ``expected``/``actual`` are script-notation lines when the failure is a
    packet or a system call result, so a reader compares them line by line.
    """

    def __init__(
        self, message: str, line: int = 0, expected: str | None = None, actual: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.expected = expected
        self.actual = actual


@dataclass(slots=True)
class Result:
    """One script's outcome. ``notes`` are things the run ignored and says so."""

    path: str
    target: str
    status: Status
    message: str = ""
    line: int = 0
    expected: str | None = None
    actual: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self, verbose: bool = False) -> str:
        """``PASS path`` or ``FAIL path:line: message`` plus expected/actual lines."""
        where = f"{self.path}:{self.line}" if self.line else self.path
        head = f"{self.status.value} {where} [{self.target}]"
        if self.status is Status.PASS:
            text = head
            if verbose:
                text += f" ({self.seconds * 1000:.0f} ms)"
        else:
            text = f"{head}: {self.message}"
            if self.expected is not None:
                text += f"\n    expected: {self.expected}"
            if self.actual is not None:
                text += f"\n    actual:   {self.actual}"
        if verbose:
            text += "".join(f"\n    note: {note}" for note in self.notes)
        return text


def summary_line(results: list[Result]) -> str:
    """``N passed, M failed`` and ``, K skipped`` when some were."""
    passed = sum(r.status is Status.PASS for r in results)
    failed = sum(r.status is Status.FAIL for r in results)
    skipped = sum(r.status is Status.SKIP for r in results)
    text = f"{passed} passed, {failed} failed"
    if skipped:
        text += f", {skipped} skipped"
    return text
