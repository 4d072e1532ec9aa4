"""Cache-Control is parsed as directives: case, order, spacing and quoting don't matter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wxgated.cache.control import parse_cache_control


@pytest.mark.parametrize("value", [
    "private, no-store", "no-store, private", "PRIVATE,NO-STORE", "  private ,  no-store  ",
    'private="Set-Cookie", no-store', "max-age=60, private, no-store",
])
def test_private_no_store_in_any_spelling(value: str) -> None:
    cc = parse_cache_control(value)
    assert cc.private and cc.no_store


def test_values_spread_over_several_header_lines_combine() -> None:
    cc = parse_cache_control([b"public", b"max-age=30", b"no-cache"])
    assert cc.public and cc.no_cache and cc.max_age == 30


def test_s_maxage_wins_over_max_age_for_a_shared_cache() -> None:
    assert parse_cache_control("max-age=600, s-maxage=20").lifetime == 20
    assert parse_cache_control("max-age=600").lifetime == 600
    assert parse_cache_control("public").lifetime is None


def test_quoted_numbers_are_accepted() -> None:
    assert parse_cache_control('max-age="45"').max_age == 45


@pytest.mark.parametrize("value", ["max-age=abc", "max-age=", "max-age=-5", "max-age"])
def test_malformed_max_age_means_stale(value: str) -> None:
    assert parse_cache_control(value).max_age == 0


def test_duplicate_max_age_keeps_the_smallest() -> None:
    assert parse_cache_control("max-age=100, max-age=5").max_age == 5


def test_commas_inside_quotes_do_not_split_directives() -> None:
    cc = parse_cache_control('no-cache="a, no-store, b", max-age=10')
    assert cc.no_cache and not cc.no_store and cc.max_age == 10


def test_substrings_are_not_directives() -> None:
    cc = parse_cache_control("x-no-store, privateish, no-storex")
    assert not cc.no_store and not cc.private


def test_garbage_between_directives_is_skipped() -> None:
    cc = parse_cache_control('x="a,b" junk, =7, ;;, no-cache')
    assert cc.no_cache


@given(st.text(alphabet=st.sampled_from(list('a-z=",; \t\\privatenostoremax0123456789')),
               max_size=60))
def test_any_input_parses_without_error(value: str) -> None:
    cc = parse_cache_control(value)
    assert cc.max_age is None or cc.max_age >= 0
