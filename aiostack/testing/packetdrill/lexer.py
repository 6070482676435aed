"""The packetdrill lexer: script text to tokens, with flex's longest-match rule.

packetdrill's scanner (``lexer.l``) is a flex specification, and flex picks,
at every position, the rule that matches the *longest* text, the earliest
rule winning a tie. That rule is what makes ``.1`` a float but ``.`` the ACK
flag, ``1.1.1.1`` an address but ``1.5`` a float, ``0x1f`` a hex integer but
``0x1g`` a word, ``-1`` a negative integer but ``- 1`` a "no flags" dash
followed by a sequence number. Python's ``re`` alternation takes the first
alternative that matches instead, so this lexer tries every rule that can
start with the current character and keeps the longest match itself.

Two deliberate differences from flex, both only about input flex rejects or
mangles: ``\\r`` is whitespace (so CRLF files work), and comments and code
blocks end at the first ``*/`` / ``}%`` (flex's regular expressions for them
fail on ``**/`` and ``}}%``). An unterminated string, command, comment or code
block is reported at its opening character instead of as a stray quote.

Keywords (``ack``, ``win``, ``mss``, ...) are lexed as ordinary words: the
parser recognises them where the grammar expects them. :data:`KEYWORDS` lists
the words flex turns into keyword tokens, which matters for ``--define``
substitution (keywords are never substituted, as in packetdrill).
"""

from __future__ import annotations

import bisect
import enum
import re
from dataclasses import dataclass

from .errors import PacketdrillSyntaxError

__all__ = ["KEYWORDS", "Source", "Token", "TokenKind", "tokenize"]


class TokenKind(enum.Enum):
    """The lexical categories of ``lexer.l`` (keywords folded into WORD)."""

    WORD = "word"
    INTEGER = "integer"
    HEX_INTEGER = "hex integer"
    FLOAT = "number"
    STRING = "string"
    BACK_QUOTED = "back-quoted command"
    CODE = "%{ }% code block"
    OPTION = "option"
    ELLIPSIS = "'...'"
    IPV4_ADDR = "IPv4 address"
    IPV6_ADDR = "IPv6 address"
    PUNCT = "character"
    EOF = "end of file"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, exact source text, decoded value and position.

    ``value`` is the text with its delimiters removed for STRING (the raw
    characters between the quotes, escapes left as written, as packetdrill
    does), BACK_QUOTED (the command), CODE (the code, with spaces and tabs
    stripped from both ends, as packetdrill does so Python indentation stays
    sane) and OPTION (the name after ``--``); for every other kind it equals
    ``text``. ``line`` and ``column`` are 1-based; ``offset``/``end`` index
    the source string.
    """

    kind: TokenKind
    text: str
    value: str
    offset: int
    end: int
    line: int
    column: int

    def describe(self) -> str:
        """How an error message names this token ("'win'", "integer 12", ...)."""
        kind = self.kind
        if kind is TokenKind.EOF:
            return "end of file"
        if kind in (TokenKind.WORD, TokenKind.PUNCT, TokenKind.ELLIPSIS):
            return f"'{self.text}'"
        if kind in (TokenKind.STRING, TokenKind.BACK_QUOTED, TokenKind.CODE):
            return str(kind.value)
        if kind is TokenKind.OPTION:
            return f"option '{self.text}'"
        return f"{kind.value} {self.text}"


#: Words that packetdrill's flex scanner returns as keyword tokens rather than
#: WORD; ``--define`` never substitutes them.
KEYWORDS: frozenset[str] = frozenset(
    [
        "sa_family",
        "sin_port",
        "sin_addr",
        "msg_name",
        "msg_iov",
        "msg_flags",
        "msg_control",
        "cmsg_data",
        "cmsg_level",
        "cmsg_type",
        "ee_errno",
        "ee_origin",
        "ee_type",
        "ee_code",
        "ee_info",
        "ee_data",
        "scm_sec",
        "scm_nsec",
        "fd",
        "u32",
        "u64",
        "ptr",
        "events",
        "revents",
        "onoff",
        "linger",
        "htons",
        "ipv4",
        "ipv6",
        "icmp",
        "udp",
        "GREv0",
        "gre",
        "raw",
        "sum",
        "off",
        "key",
        "seq",
        "none",
        "checksum",
        "sequence#",
        "present",
        "mpls",
        "label",
        "tc",
        "ttl",
        "inet_addr",
        "inet6_addr",
        "ack",
        "eol",
        "ecr",
        "mss",
        "mtu",
        "nop",
        "sack",
        "sackOK",
        "md5",
        "TS",
        "FO",
        "FOEXP",
        "tos",
        "flowlabel",
        "flags",
        "Flags",
        "val",
        "win",
        "urg",
        "wscale",
        "ect01",
        "ect0",
        "ect1",
        "noecn",
        "ce",
        "id",
    ]
)


class Source:
    """A script's text with its file name: turns offsets into positions and errors.

    Shared by the lexer and the parser so that every error, whichever stage
    finds it, is reported the same way: ``file:line:column``, the line, a caret.
    """

    __slots__ = ("_line_starts", "filename", "text")

    def __init__(self, text: str, filename: str = "<string>") -> None:
        self.text = text
        self.filename = filename
        starts = [0]
        find = text.find
        pos = find("\n")
        while pos >= 0:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        self._line_starts = starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset (clamped to the text)."""
        offset = min(max(offset, 0), len(self.text))
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1, offset - self._line_starts[index] + 1

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line ending ('' if out of range)."""
        if not 1 <= line <= len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        if end < 0:
            end = len(self.text)
        return self.text[start:end].rstrip("\r")

    def error_at(self, offset: int, message: str) -> PacketdrillSyntaxError:
        """The error to raise for a problem found at ``offset``."""
        line, column = self.position(offset)
        return PacketdrillSyntaxError(message, self.filename, line, column, self.line_text(line))


# The rules of lexer.l, in its order (which breaks ties between equally long
# matches). ``None`` as the kind means "skip" (whitespace and comments).
_Rule = tuple[TokenKind | None, "re.Pattern[str]"]

_IPV4 = r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+"
_SEG = r"[0-9a-fA-F]{1,4}"
# lexer.l's IPv6 alternatives; each is matched on its own so that the longest
# wins, as flex would choose. (They are strict about '::' so that a sequence
# range such as 1:1001 never reads as an address.)
_IPV6_ALTERNATIVES = (
    r"::",
    rf"(?:{_SEG}:){{7}}{_SEG}",
    rf"(?:{_SEG}:){{1,7}}:",
    rf"(?:{_SEG}:){{1,6}}:{_SEG}",
    rf"(?:{_SEG}:){{1,5}}(?::{_SEG}){{1,2}}",
    rf"(?:{_SEG}:){{1,4}}(?::{_SEG}){{1,3}}",
    rf"(?:{_SEG}:){{1,3}}(?::{_SEG}){{1,4}}",
    rf"(?:{_SEG}:){{1,2}}(?::{_SEG}){{1,5}}",
    rf"{_SEG}:(?::{_SEG}){{1,6}}",
    rf":(?::{_SEG}){{1,7}}",
    rf"::ffff:{_IPV4}",
    rf"::ffff:0{{1,4}}:{_IPV4}",
    rf"(?:{_SEG}:){{1,4}}:{_IPV4}",
)

_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_HEXLETTERS = "abcdefABCDEF"
_SPACE = " \t\r\n\f\v"


def _rule(kind: TokenKind | None, pattern: str) -> _Rule:
    return (kind, re.compile(pattern))


# (first characters the rule can start with, rule); "" means any character.
_RULES: tuple[tuple[str, _Rule], ...] = (
    (".", _rule(TokenKind.ELLIPSIS, r"\.\.\.")),
    ("-", _rule(TokenKind.OPTION, r"--[A-Za-z0-9_]+")),
    ("-." + _DIGITS, _rule(TokenKind.FLOAT, r"-?[0-9]*\.[0-9]+")),
    ("-" + _DIGITS, _rule(TokenKind.INTEGER, r"-?[0-9]+")),
    ("0", _rule(TokenKind.HEX_INTEGER, r"0x[0-9a-fA-F]+")),
    ("s", _rule(TokenKind.WORD, r"sequence#")),
    (_LETTERS + _DIGITS, _rule(TokenKind.WORD, r"[A-Za-z0-9_]+")),
    ('"', _rule(TokenKind.STRING, r'"(?:\\[\s\S]|[^"\\])*"')),
    ("`", _rule(TokenKind.BACK_QUOTED, r"`(?:\\[\s\S]|[^`\\])*`")),
    ("", _rule(TokenKind.PUNCT, r"[^ \t\r\n\f\v]")),
    (_SPACE, _rule(None, r"[ \t\r\n\f\v]+")),
    ("/", _rule(None, r"//[^\n]*")),
    ("/", _rule(None, r"/\*[\s\S]*?\*/")),
    ("%", _rule(TokenKind.CODE, r"%\{[\s\S]*?\}%")),
    (_DIGITS, _rule(TokenKind.IPV4_ADDR, _IPV4)),
)
# The IPv6 rules come last in lexer.l, so they win only by being strictly
# longer; they are tried only where an address is possible at all (every
# alternative but the full 8-group form contains "::"), which keeps the
# common tokens (numbers, words) to a handful of regex matches.
_IPV6_RULES: tuple[_Rule, ...] = tuple(
    _rule(TokenKind.IPV6_ADDR, alt) for alt in _IPV6_ALTERNATIVES
)
_IPV6_FIRST = frozenset(":" + _DIGITS + _HEXLETTERS)
_IPV6_RUN = re.compile(r"[0-9a-fA-F:.]+")
# Characters that can only ever be a one-character token.
_LONE_PUNCT = frozenset("()[]{}<>,=+*~|;!?#$&'@^\\")

_candidates_cache: dict[str, tuple[_Rule, ...]] = {}


def _candidates(ch: str) -> tuple[_Rule, ...]:
    """The rules that can match at a position starting with ``ch``, in rule order."""
    rules = _candidates_cache.get(ch)
    if rules is None:
        rules = tuple(rule for first, rule in _RULES if not first or ch in first)
        if len(_candidates_cache) < 4096:
            _candidates_cache[ch] = rules
    return rules


# Openers whose matching rule failed: a clearer message than "unexpected '%'".
_UNTERMINATED = (
    ('"', "unterminated string: missing closing '\"'"),
    ("`", "unterminated back-quoted command: missing closing '`'"),
    ("/*", "unterminated comment: missing closing '*/'"),
    ("%{", "unterminated code block: missing closing '}%'"),
)


def _value(kind: TokenKind, text: str) -> str:
    if kind in (TokenKind.STRING, TokenKind.BACK_QUOTED):
        return text[1:-1]
    if kind is TokenKind.CODE:
        return text[2:-2].strip(" \t")
    if kind is TokenKind.OPTION:
        return text[2:]
    return text


def tokenize(source: Source) -> list[Token]:
    """All tokens of ``source``, ending with one EOF token.

    Raises :class:`PacketdrillSyntaxError` for an unterminated string,
    command, comment or code block; every other character becomes some token
    (a stray one as PUNCT), and the parser decides whether it belongs there.
    """
    text = source.text
    length = len(text)
    tokens: list[Token] = []
    pos = 0
    line = 1
    line_start = 0
    while pos < length:
        ch = text[pos]
        best_kind: TokenKind | None = None
        best_end = pos
        if ch in _LONE_PUNCT:
            best_kind, best_end = TokenKind.PUNCT, pos + 1
        else:
            for kind, pattern in _candidates(ch):
                match = pattern.match(text, pos)
                if match is not None and match.end() > best_end:
                    best_kind, best_end = kind, match.end()
            if ch in _IPV6_FIRST:
                run = _IPV6_RUN.match(text, pos)
                if run is not None and ("::" in run.group() or run.group().count(":") >= 7):
                    for kind, pattern in _IPV6_RULES:
                        match = pattern.match(text, pos)
                        if match is not None and match.end() > best_end:
                            best_kind, best_end = kind, match.end()
        if best_end == pos:  # cannot happen: PUNCT or whitespace always matches
            raise source.error_at(pos, f"unexpected character {text[pos]!r}")
        lexeme = text[pos:best_end]
        if best_kind is TokenKind.PUNCT:
            for opener, message in _UNTERMINATED:
                if text.startswith(opener, pos):
                    raise source.error_at(pos, message)
        if best_kind is not None:
            tokens.append(
                Token(
                    best_kind,
                    lexeme,
                    _value(best_kind, lexeme),
                    pos,
                    best_end,
                    line,
                    pos - line_start + 1,
                )
            )
        newlines = lexeme.count("\n")
        if newlines:
            line += newlines
            line_start = pos + lexeme.rindex("\n") + 1
        pos = best_end
    end_line, end_column = source.position(length)
    tokens.append(Token(TokenKind.EOF, "", "", length, length, end_line, end_column))
    return tokens
