"""The lexer: flex's longest-match rule, token values and positions."""

from __future__ import annotations

import pytest

from aiostack.testing.packetdrill import PacketdrillSyntaxError
from aiostack.testing.packetdrill.lexer import KEYWORDS, Source, TokenKind, tokenize

K = TokenKind


def kinds(text: str) -> list[tuple[TokenKind, str]]:
    return [(token.kind, token.text) for token in tokenize(Source(text))][:-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A dot alone is the ACK flag; with digits after it, a float.
        (".", [(K.PUNCT, ".")]),
        (".1", [(K.FLOAT, ".1")]),
        ("...", [(K.ELLIPSIS, "...")]),
        (
            "+.1...0.200",
            [(K.PUNCT, "+"), (K.FLOAT, ".1"), (K.ELLIPSIS, "..."), (K.FLOAT, "0.200")],
        ),
        ("0...1", [(K.INTEGER, "0"), (K.ELLIPSIS, "..."), (K.INTEGER, "1")]),
        ("1.5", [(K.FLOAT, "1.5")]),
        ("1.", [(K.INTEGER, "1"), (K.PUNCT, ".")]),
        ("192.0.2.1", [(K.IPV4_ADDR, "192.0.2.1")]),
        ("0x1f", [(K.HEX_INTEGER, "0x1f")]),
        ("0x1g", [(K.WORD, "0x1g")]),
        ("123abc", [(K.WORD, "123abc")]),
        ("-1", [(K.INTEGER, "-1")]),
        ("- 1", [(K.PUNCT, "-"), (K.INTEGER, "1")]),
        ("-.5", [(K.FLOAT, "-.5")]),
        ("--mss=1000", [(K.OPTION, "--mss"), (K.PUNCT, "="), (K.INTEGER, "1000")]),
        (
            "1:1001(1000)",
            [
                (K.INTEGER, "1"),
                (K.PUNCT, ":"),
                (K.INTEGER, "1001"),
                (K.PUNCT, "("),
                (K.INTEGER, "1000"),
                (K.PUNCT, ")"),
            ],
        ),
        ("S.", [(K.WORD, "S"), (K.PUNCT, ".")]),
        ("sackOK,nop", [(K.WORD, "sackOK"), (K.PUNCT, ","), (K.WORD, "nop")]),
        ("sequence# present", [(K.WORD, "sequence#"), (K.WORD, "present")]),
        ("2001:db8::1", [(K.IPV6_ADDR, "2001:db8::1")]),
        ("1::1111:", [(K.IPV6_ADDR, "1::1111"), (K.PUNCT, ":")]),
        ("::1", [(K.IPV6_ADDR, "::1")]),
        ("1:2:3:4:5:6:7:8", [(K.IPV6_ADDR, "1:2:3:4:5:6:7:8")]),
        ("::ffff:192.0.2.1", [(K.IPV6_ADDR, "::ffff:192.0.2.1")]),
        ("dead:beef", [(K.WORD, "dead"), (K.PUNCT, ":"), (K.WORD, "beef")]),
        ('"a\\"b" x', [(K.STRING, '"a\\"b"'), (K.WORD, "x")]),
        ("`a\nb` x", [(K.BACK_QUOTED, "`a\nb`"), (K.WORD, "x")]),
        ("%{ x }% y", [(K.CODE, "%{ x }%"), (K.WORD, "y")]),
        ("%{ d = {1: {2: 3}}}%", [(K.CODE, "%{ d = {1: {2: 3}}}%")]),
        ("1 // comment\n2", [(K.INTEGER, "1"), (K.INTEGER, "2")]),
        ("1 // comment at end of file", [(K.INTEGER, "1")]),
        ("1 /* a\n * b **/ 2", [(K.INTEGER, "1"), (K.INTEGER, "2")]),
        ("a/b", [(K.WORD, "a"), (K.PUNCT, "/"), (K.WORD, "b")]),
        (
            "0 close(3) = 0\r\n",
            [
                (K.INTEGER, "0"),
                (K.WORD, "close"),
                (K.PUNCT, "("),
                (K.INTEGER, "3"),
                (K.PUNCT, ")"),
                (K.PUNCT, "="),
                (K.INTEGER, "0"),
            ],
        ),
        ("#!", [(K.PUNCT, "#"), (K.PUNCT, "!")]),
    ],
)
def test_longest_match(text: str, expected: list[tuple[TokenKind, str]]) -> None:
    assert kinds(text) == expected


def test_values_strip_delimiters() -> None:
    tokens = tokenize(Source('--tolerance_usecs "x\\ty" `cmd` %{ \t a = 1\n }% word'))
    values = [(token.kind, token.value) for token in tokens]
    assert values == [
        (K.OPTION, "tolerance_usecs"),
        (K.STRING, "x\\ty"),  # escapes stay as written, as in packetdrill
        (K.BACK_QUOTED, "cmd"),
        (K.CODE, "a = 1\n"),  # spaces and tabs stripped at both ends, not newlines
        (K.WORD, "word"),
        (K.EOF, ""),
    ]


def test_positions_follow_multiline_tokens_and_tabs() -> None:
    text = "`a\nb`\n/* c\n d */\tx %{\n\n}% y\n"
    tokens = tokenize(Source(text))
    positions = [(token.text, token.line, token.column) for token in tokens]
    assert positions == [
        ("`a\nb`", 1, 1),
        ("x", 4, 7),  # the tab counts as one column
        ("%{\n\n}%", 4, 9),
        ("y", 6, 4),
        ("", 7, 1),
    ]
    assert [text[token.offset : token.end] for token in tokens[:-1]] == [
        token.text for token in tokens[:-1]
    ]


def test_eof_token_is_at_the_end() -> None:
    (eof,) = tokenize(Source(""))
    assert (eof.kind, eof.line, eof.column, eof.offset) == (K.EOF, 1, 1, 0)
    tokens = tokenize(Source("a\nbc"))
    assert (tokens[-1].line, tokens[-1].column) == (2, 3)


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ('0 x("abc\n', 1, 5, "unterminated string"),
        ("0 `sysctl\n-q", 1, 3, "unterminated back-quoted command"),
        ("0 /* x", 1, 3, "unterminated comment"),
        ("0\n  %{ x }", 2, 3, "unterminated code block"),
    ],
)
def test_unterminated(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(PacketdrillSyntaxError) as info:
        tokenize(Source(text, "t.pkt"))
    error = info.value
    assert (error.file, error.line, error.column) == ("t.pkt", line, column)
    assert message in error.message


def test_source_positions_clamp_and_lines() -> None:
    source = Source("ab\r\ncd", "s.pkt")
    assert source.position(0) == (1, 1)
    assert source.position(4) == (2, 1)
    assert source.position(99) == (2, 3)
    assert source.line_text(1) == "ab"
    assert source.line_text(3) == ""


def test_keywords_are_the_flex_keywords() -> None:
    assert {"ack", "win", "mss", "sackOK", "TS", "FO", "FOEXP", "ect01", "htons"} <= KEYWORDS
    assert "SOCK_STREAM" not in KEYWORDS
    assert kinds("ack") == [(K.WORD, "ack")]
