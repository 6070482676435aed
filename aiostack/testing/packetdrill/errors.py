"""The one exception a packetdrill script can raise while it is being read."""

from __future__ import annotations

__all__ = ["PacketdrillSyntaxError"]


class PacketdrillSyntaxError(Exception):
    """A script could not be read: a lexical, grammatical or semantic error.

    packetdrill stops at the first error and names the file and line. We also
    name the column and show the line with a caret under the offending token,
    because one packet line packs a dozen fields (flags, seq, ack, win,
    options) and "line 12" alone leaves the reader to guess which one is
    wrong. ``str(error)`` is the whole report::

        tests/x.pkt:12:31: TCP window value out of range: 70000 (must be 0..65535)
        +0 < . 1:1001(1000) ack 1 win 70000
                                      ^

    The attributes stay available for tools (an editor jumping to the spot,
    the CLI reporting a script as failed rather than crashing).
    """

    file: str
    line: int
    column: int
    message: str
    source_line: str

    def __init__(
        self, message: str, file: str, line: int, column: int, source_line: str = ""
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.source_line = source_line.rstrip("\r\n")
        super().__init__(self.render())

    @property
    def location(self) -> str:
        """``file:line:column``, the prefix compilers use so editors can jump there."""
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """The report: location and message, then the source line and a caret.

        The caret's indentation copies the tabs of the source line so that it
        sits under the right character whatever the terminal's tab width.
        """
        head = f"{self.location}: {self.message}"
        if not self.source_line:
            return head
        before = self.source_line[: max(self.column - 1, 0)]
        pad = "".join(ch if ch == "\t" else " " for ch in before)
        return f"{head}\n{self.source_line}\n{pad}^"

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[type[PacketdrillSyntaxError], tuple[str, str, int, int, str]]:
        # The CLI parses scripts in worker processes; the default pickling of
        # an exception re-calls __init__ with self.args (the rendered text),
        # which does not fit this signature.
        return (
            type(self),
            (self.message, self.file, self.line, self.column, self.source_line),
        )
