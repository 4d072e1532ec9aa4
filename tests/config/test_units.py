"""Durations and sizes: what operators may write, and that the schema and the parsers
agree on every string (a value `wxgated check` accepts must parse at compile time)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from wxgated.config.fragments import DEFS
from wxgated.config.units import parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("10s", 10), ("1m", 60), ("2h", 7200), ("1d", 86400),
    ("1m30s", 90), ("1h0m5s", 3605), ("1.5h", 5400), ("0s", 0), ("30", 30), ("0.5", 0.5),
    (5, 5), (0.25, 0.25),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10 seconds", "10sec", "s", "", "-1s", "1.s", "5 s", "1y",
                                  "ten", "1h-5m"])
def test_bad_durations_name_the_value_and_the_syntax(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert f'invalid duration "{text}"' in str(info.value)
    assert '"250ms"' in str(info.value)


def test_booleans_and_negative_numbers_are_not_durations() -> None:
    for bad in (True, -1, -0.5):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(("text", "size"), [
    ("512", 512), (512, 512), ("10KB", 10_000), ("64KiB", 65_536), ("1MiB", 1_048_576),
    ("1GiB", 1 << 30), ("2MB", 2_000_000), ("1.5KiB", 1536), ("0", 0), ("7B", 7),
    ("1TiB", 1 << 40),
])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1 MB", "1mb", "10k", "MiB", "", "-5", "1.5.5KiB", "1KiBs"])
def test_bad_sizes_name_the_value_and_the_syntax(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(text)
    assert f'invalid size "{text}"' in str(info.value)
    assert "KiB" in str(info.value)


def _accepts(schema_name: str, value: object) -> bool:
    schema = {"$defs": DEFS, "$ref": f"#/$defs/{schema_name}"}
    return Draft202012Validator(schema).is_valid(value)


def _parses(parse: object, value: object) -> bool:
    try:
        parse(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


@given(st.text(alphabet="0123456789.msdhx \n", max_size=8))
def test_duration_schema_and_parser_agree(text: str) -> None:
    assert _accepts("duration", text) == _parses(parse_duration, text)
    if _accepts("positive_duration", text):
        assert parse_duration(text) > 0
    elif _accepts("duration", text):
        assert parse_duration(text) == 0


@given(st.text(alphabet="0123456789.KMGTiB k\n", max_size=8))
def test_size_schema_and_parser_agree(text: str) -> None:
    assert _accepts("size", text) == _parses(parse_size, text)
