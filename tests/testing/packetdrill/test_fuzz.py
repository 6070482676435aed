"""Property tests: no input escapes as anything but PacketdrillSyntaxError, and
whatever parses also formats to text that parses back to the same model.

Mutations start from the corpus, so most inputs are nearly valid and reach
deep into the grammar (a random string would die on its first token).
Generated packet lines check that the model holds exactly what was written.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiostack.testing.packetdrill import PacketdrillSyntaxError, parse
from aiostack.testing.packetdrill.ast import (
    Mss,
    Nop,
    PacketEvent,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamp,
    WindowScale,
)
from aiostack.testing.packetdrill.lexer import Source, tokenize

SCRIPTS = Path(__file__).parent / "scripts"
CORPUS = [path.read_text() for path in sorted(SCRIPTS.glob("*.pkt"))]
CORPUS_TOKENS = [[token.text for token in tokenize(Source(text))][:-1] for text in CORPUS]

# Characters that matter to the grammar, plus a few that never do.
ALPHABET = '<>[](){}:,.+-*~=|"`%/\\ \t\n0123456789xSF.PRUEWA_acekmnopstw#@\x00é'

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def character_mutants(draw: st.DrawFn) -> str:
    """A corpus script with a few characters deleted, inserted or duplicated."""
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        operation = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        size = draw(st.integers(1, 8))
        if operation == "delete":
            text = text[:position] + text[position + size :]
        elif operation == "insert":
            text = (
                text[:position]
                + draw(st.text(ALPHABET, min_size=1, max_size=size))
                + text[position:]
            )
        elif operation == "replace":
            text = text[:position] + draw(st.sampled_from(ALPHABET)) + text[position + 1 :]
        else:
            text = text[:position] + text[position : position + size] * 2 + text[position:]
    return text


@st.composite
def token_mutants(draw: st.DrawFn) -> str:
    """A corpus script with whole tokens dropped, repeated, swapped or borrowed."""
    tokens = list(draw(st.sampled_from(CORPUS_TOKENS)))
    donor = draw(st.sampled_from(CORPUS_TOKENS))
    for _ in range(draw(st.integers(1, 3))):
        if not tokens:
            break
        index = draw(st.integers(0, len(tokens) - 1))
        operation = draw(st.sampled_from(["drop", "repeat", "swap", "borrow"]))
        if operation == "drop":
            del tokens[index]
        elif operation == "repeat":
            tokens.insert(index, tokens[index])
        elif operation == "swap" and index + 1 < len(tokens):
            tokens[index], tokens[index + 1] = tokens[index + 1], tokens[index]
        else:
            tokens[index] = draw(st.sampled_from(donor))
    return " ".join(tokens)


def check_parses_or_fails_cleanly(text: str) -> None:
    try:
        script = parse(text, "fuzz.pkt")
    except PacketdrillSyntaxError as error:
        assert error.line >= 1 and error.column >= 1
        assert str(error).startswith(f"fuzz.pkt:{error.line}:{error.column}: ")
        return
    # Substitution is one level deep, so a formatted script with --define can
    # legitimately re-substitute; everything else must round-trip exactly.
    if script.option("define") is None:
        assert parse(str(script), "formatted.pkt") == script


@FUZZ_SETTINGS
@given(character_mutants())
def test_character_mutations_raise_only_syntax_errors(text: str) -> None:
    check_parses_or_fails_cleanly(text)


@FUZZ_SETTINGS
@given(token_mutants())
def test_token_mutations_raise_only_syntax_errors(text: str) -> None:
    check_parses_or_fails_cleanly(text)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_syntax_errors(text: str) -> None:
    check_parses_or_fails_cleanly(text)


U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)

OPTION_CHOICES: list[st.SearchStrategy[TcpOption]] = [
    st.just(Nop()),
    st.just(SackPermitted()),
    st.builds(Mss, U16),
    st.builds(WindowScale, st.none() | st.integers(0, 255)),
    st.builds(Timestamp, U32, U32),
    st.builds(Sack, st.lists(st.tuples(U32, U32), min_size=1, max_size=3).map(tuple)),
]


@st.composite
def tcp_lines(draw: st.DrawFn) -> tuple[str, TcpSegment]:
    """A TCP packet line written with random spacing, and the segment it means."""
    letters = draw(st.lists(st.sampled_from("FSRPU"), max_size=4, unique=True))
    flags = "".join(letters) + draw(st.sampled_from(["", "."]))
    start = draw(st.integers(0, 2**32 - 1 - 65535))
    length = draw(U16)
    ack = draw(st.none() | U32)
    window = draw(U16)
    urg = draw(st.none() | U16)
    options = draw(st.lists(st.one_of(OPTION_CHOICES), max_size=4))
    used = sum(option.wire_length for option in options)
    if used > 40:
        options = []
        used = 0
    options += [Nop()] * (-used % 4)
    segment = TcpSegment(flags, start, start + length, length, ack, window, urg, tuple(options))
    space = draw(st.sampled_from([" ", "  ", "\t", " \n "]))
    parts = [flags or "-", f"{start}:{start + length}({length})"]
    if ack is not None:
        parts.append(f"ack{space}{ack}")
    parts.append(f"win{space}{window}")
    if urg is not None:
        parts.append(f"urg {urg}")
    if options:
        parts.append("<" + f",{space}".join(str(option) for option in options) + ">")
    return "0 <" + space + space.join(parts) + "\n", segment


@settings(max_examples=150, deadline=None)
@given(tcp_lines())
def test_generated_tcp_lines_parse_to_what_was_written(
    line_and_segment: tuple[str, TcpSegment],
) -> None:
    line, segment = line_and_segment
    script = parse(line)
    (event,) = script.events
    assert isinstance(event.body, PacketEvent)
    assert event.body.packet == segment
    assert parse(str(script)) == script
