"""Seconds have one parser and one canonical form: whatever `parse_seconds` accepts is stored by
`format_seconds` in a form that `parse_seconds` reads back to the identical value."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from gpu_worker.contract import SECONDS_PATTERN, format_seconds, parse_seconds

# Everything a client can send as seconds (JSON strings and numbers), plus exact Fractions.
ANY_SECONDS = st.one_of(
    st.from_regex(re.compile(SECONDS_PATTERN, re.ASCII), fullmatch=True),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.fractions(),
)


def accepted(value: object) -> Fraction:
    """The parsed value, or the example is discarded when the parser refuses it."""
    try:
        parsed = parse_seconds(value)
    except ValueError:
        assume(False)
        raise
    assume(parsed >= 0)  # negative times parse only so that validation can name them
    return parsed


@given(ANY_SECONDS)
@example(1.3333333333333333)
@example(1.0000000001)
@example(5e-324)
@example("999999999.5/7")
@example("0.000000001/9999999999")
def test_the_canonical_form_of_an_accepted_value_parses_back_to_it(value: object) -> None:
    parsed = accepted(value)
    stored = format_seconds(parsed)
    assert re.fullmatch(SECONDS_PATTERN, stored, re.ASCII), stored
    assert parse_seconds(stored) == parsed


@given(ANY_SECONDS)
def test_formatting_is_a_fixed_point_of_parse_and_format(value: object) -> None:
    stored = format_seconds(accepted(value))
    assert format_seconds(parse_seconds(stored)) == stored


@pytest.mark.parametrize(
    "value", [1.3333333333333333, 1.0000000001, 5e-324, "0.000000007/3000000000", "0.000000001/9999999999"]
)
def test_seconds_more_precise_than_the_canonical_form_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"^more precise than seconds are kept: at most 9 decimal places"):
        parse_seconds(value)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (0.1, "0.1"),
        (1.000000001, "1.000000001"),
        ("1001/30000", "1001/30000"),
        ("999999999.5/7", "1999999999/14"),
        (Fraction(4, 3), "4/3"),
        (12, "12"),
    ],
)
def test_accepted_seconds_are_stored_as_a_decimal_or_else_a_reduced_ratio(value: object, stored: str) -> None:
    assert format_seconds(parse_seconds(value)) == stored


def test_ratios_larger_than_a_billion_seconds_are_refused() -> None:
    with pytest.raises(ValueError, match="must be less than 1000000000 seconds"):
        parse_seconds("9999999999999999999/9")
