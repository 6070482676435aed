"""``aiostack up --fault``: the spec is parsed strictly, errors name the field."""

from __future__ import annotations

import pytest

from aiostack.cli.up import parse_fault_spec


def test_full_spec() -> None:
    config = parse_fault_spec("loss=1%,dup=1%,reorder=5%,corrupt=0.5%,delay=20ms~5ms,seed=7")
    assert config.loss == pytest.approx(0.01)
    assert config.duplicate == pytest.approx(0.01)
    assert config.reorder == pytest.approx(0.05)
    assert config.corrupt == pytest.approx(0.005)
    assert config.delay == pytest.approx(0.020)
    assert config.jitter == pytest.approx(0.005)
    assert config.seed == 7
    assert config.rate == 0


def test_fractions_rates_and_spaces() -> None:
    config = parse_fault_spec(" loss = 0.02 , rate=10mbit, jitter=1ms, limit=50")
    assert config.loss == pytest.approx(0.02)
    assert config.rate == pytest.approx(10e6 / 8)
    assert config.jitter == pytest.approx(0.001)
    assert config.limit == 50


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("", "fault"),
        ("loss=1%,,dup=1%", "fault"),
        ("loss", "loss"),
        ("loss=150%", "loss"),
        ("loss=-1%", "loss"),
        ("loss=abc", "loss"),
        ("dup=1ms", "duplicate"),
        ("reorder=5", "reorder"),
        ("corrupt=nan", "corrupt"),
        ("delay=20parsecs", "delay"),
        ("delay=20ms~x", "jitter"),
        ("seed=1.5", "seed"),
        ("limit=0", "limit"),
        ("rate=10furlongs", "rate"),
        ("bogus=1", "bogus"),
        ("loss=1%,drop=2%", "loss"),
        ("delay=20ms~5ms,jitter=1ms", "jitter"),
    ],
)
def test_bad_specs_name_the_field(spec: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        parse_fault_spec(spec)
