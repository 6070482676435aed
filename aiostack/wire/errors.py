"""The one error the codecs raise.

Every malformed, truncated or hostile input becomes a :class:`ParseError` whose
``reason`` is a short snake_case name. The shell counts drops under that name
(``stack.statistics()["drops"]["ipv4.bad_checksum"]`` and so on), so a reason is
part of the public vocabulary: keep them stable and specific.
"""

from __future__ import annotations


class ParseError(ValueError):
    """A frame or header that cannot be decoded; ``reason`` names why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
