"""The request target rules (wxgated.http.target) and the bottom check before an
upstream head is written (wxgated.http.headers), on values a client controls."""

from __future__ import annotations

import re
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wxgated.http.framing import Refused
from wxgated.http.headers import check_request, field_lines, target_bytes
from wxgated.http.message import HTTPError
from wxgated.http.target import PathRules, encode_param, normalize_path, split_target

KEEP = PathRules(escaped_slashes="keep")
UNESCAPE = PathRules(escaped_slashes="unescape")
RAW = PathRules(normalize=False, merge_slashes=False, escaped_slashes="keep")


@pytest.mark.parametrize("path, want", [
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("/a/./b/../c", "/a/c"),
    ("/../../a", "/a"),
    ("/a/..", "/"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("//a///b//", "/a/b/"),
    ("/%7e%41%2d%5f%2E", "/~A-_."),
    ("/%c3%a9", "/%C3%A9"),
    ("/\xc3\xa9", "/%C3%A9"),  # the raw UTF-8 bytes, as the server decodes them (latin-1)
    ("/a b", "/a%20b"),
    ('/a"<>{}|^`', "/a%22%3C%3E%7B%7D%7C%5E%60"),
    ("/a%20b", "/a%20b"),
    ("/%70rivate", "/private"),
    ("/a/...", "/a/..."),
    ("/a/.b/..c", "/a/.b/..c"),
    ("*", "*"),
])
def test_normalised_paths(path: str, want: str) -> None:
    assert normalize_path(path) == want


@pytest.mark.parametrize("path", ["/a%2fb", "/a%2Fb", "/a\\b", "/a%5cb", "/%2e%2e/x",
                                  "/a/.%2E/b", "/a/%2e", "/a%", "/a%2", "/a%zz", "a/b", ""])
def test_refused_paths(path: str) -> None:
    with pytest.raises(Refused) as e:
        normalize_path(path)
    assert e.value.status == 400


def test_escaped_slash_actions() -> None:
    assert normalize_path("/a%2fb/%5c", KEEP) == "/a%2Fb/%5C"
    assert normalize_path("/a%2fb/../c", UNESCAPE) == "/a/c"
    assert normalize_path("/a\\..\\b", UNESCAPE) == "/b"
    assert normalize_path("/x/%2e%2e/y", KEEP) == "/y"  # an encoded dot is a dot once kept
    assert normalize_path("/a//./b/..", RAW) == "/a//./b/.."


def test_the_fragment_is_cut_and_the_query_kept_safe() -> None:
    assert split_target(b"/a?x=1#frag") == ("/a", "x=1")
    assert split_target(b"/a#frag?x=1") == ("/a", "")
    assert split_target(b"/a?x=\x01 \xff") == ("/a", "x=%01%20%FF")


_path_text = st.text(st.sampled_from(list("ab./%2eEfF5cC~-_ é?:@")), max_size=30)


@given(_path_text)
def test_normalising_is_idempotent_and_leaves_no_dot_segments(tail: str) -> None:
    try:
        once = normalize_path("/" + tail)
    except Refused:
        return
    assert normalize_path(once) == once
    assert re.fullmatch(r"[\x21-\x7e]+", once)
    segments = once.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "//" not in once


@given(st.text(max_size=20))
def test_a_param_stays_one_segment_and_decodes_back(value: str) -> None:
    enc = encode_param(value)
    assert re.fullmatch(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%]*", enc)
    assert enc not in (".", "..")
    assert urllib.parse.unquote(enc) == value


@pytest.mark.parametrize("uri", [b"/a\r\nb", b"/a b", b"/a#b", b"a", b"/\x00", b"/\x7f", b""])
def test_the_bottom_check_refuses_a_target_that_could_split_the_line(uri: bytes) -> None:
    with pytest.raises(HTTPError) as e:
        check_request(uri, b"")
    assert e.value.status == 400


@pytest.mark.parametrize("lines", [b"a: b\r\n\r\nGET /x HTTP/1.1\r\n", b"a: b\n", b"a: b\r",
                                   b"a: \x00\r\n", b"\r\na: b\r\n", b"a: b"])
def test_the_bottom_check_refuses_lines_that_are_not_one_head(lines: bytes) -> None:
    with pytest.raises(HTTPError):
        check_request(b"/x", lines)


def test_field_lines_count_their_lines() -> None:
    assert field_lines([(b"a", b"1"), (b"b", b"x\ty")]) == b"a: 1\r\nb: x\ty\r\n"
    assert field_lines([(b"x-A.b_c~9!#$%&'*+^`|", b"1")]) == b"x-A.b_c~9!#$%&'*+^`|: 1\r\n"
    for bad in ([(b"a", b"1\r\nx-wx-openid: o")], [(b"a b", b"1")], [(b"", b"1")],
                [(b"a", b"\x00")], [(b"a:", b"1")], [(b"(a)", b"1")], [(b"\xe4\xb8\x8a", b"1")],
                [(b"a\x7f", b"1")], [(b"a/b", b"1")]):
        with pytest.raises(HTTPError):
            field_lines(bad)


def test_target_bytes_refuses_what_ascii_cannot_carry() -> None:
    assert target_bytes("/a", "x=1") == b"/a?x=1"
    with pytest.raises(HTTPError):
        target_bytes("/\u0100", "")
