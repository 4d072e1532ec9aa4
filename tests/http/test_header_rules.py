"""The RFC 9110 §7.6 rules of wxgated.http.headers, both directions, on the values an
upstream or a client actually sends (the black-box side is in test_proxy.py)."""

from __future__ import annotations

import pytest

from wxgated.http.framing import head_fields
from wxgated.http.headers import request_block, response_headers
from wxgated.http.message import NO_BODY, HTTPError, Request

TRACE = "0af7651916cd43dd8448eb211c80319c"


def lines(block: bytes) -> list[tuple[str, str]]:
    out = []
    for line in block.decode().split("\r\n"):
        if line:
            name, _, value = line.partition(": ")
            out.append((name, value))
    return out


def forwarded(headers: list[tuple[bytes, bytes]], client_ip: str = "10.0.0.7",
              trace_hex: bytes = b"") -> dict[str, list[str]]:
    parsed = head_fields(headers, "1.1", 1 << 16)  # as the server parses a head
    req = Request("GET", "/", "", parsed, NO_BODY, scheme="https", client_ip=client_ip,
                  peer_ip="10.0.0.7", trace_id=TRACE)
    req.trace_hex = trace_hex
    block, _ = request_block(req, keep_host=False)
    out: dict[str, list[str]] = {}
    for name, value in lines(block):
        out.setdefault(name, []).append(value)
    return out


def test_a_plain_request_keeps_its_headers_and_gains_the_forwarded_set() -> None:
    h = forwarded([(b"host", b"mini.example.com"), (b"connection", b"keep-alive"),
                   (b"user-agent", b"MicroMessenger"), (b"content-length", b"3")])
    assert h["user-agent"] == ["MicroMessenger"]
    for gone in ("host", "connection", "content-length"):
        assert gone not in h
    assert h["x-forwarded-for"] == ["10.0.0.7"]
    assert h["x-forwarded-proto"] == ["https"]
    assert h["x-forwarded-host"] == ["mini.example.com"]
    assert h["x-real-ip"] == ["10.0.0.7"]
    assert h["via"] == ["1.1 wxgated"]
    assert h["x-trace-id"] == [TRACE]
    assert h["traceparent"][0].startswith(f"00-{TRACE}-")


def test_a_proxy_in_front_is_appended_to_not_replaced() -> None:
    h = forwarded([(b"host", b"h"), (b"x-forwarded-for", b"203.0.113.9"),
                   (b"x-forwarded-for", b"198.51.100.2"), (b"via", b"1.1 cdn")],
                  client_ip="203.0.113.9")
    assert h["x-forwarded-for"] == ["203.0.113.9, 198.51.100.2, 10.0.0.7"]
    assert h["via"] == ["1.1 cdn, 1.1 wxgated"]
    assert h["x-real-ip"] == ["203.0.113.9"]


def test_headers_named_by_connection_do_not_cross() -> None:
    h = forwarded([(b"host", b"h"), (b"connection", b"keep-alive, X-Secret-Hop"),
                   (b"x-secret-hop", b"1"), (b"x-kept", b"yes"),
                   (b"x-trace-id", b"forged"), (b"traceparent", b"00-forged")])
    assert "x-secret-hop" not in h
    assert h["x-kept"] == ["yes"]
    assert h["x-trace-id"] == [TRACE]  # ours, not the one sent
    assert len(h["traceparent"]) == 1


def test_an_nginx_answer_loses_its_hop_by_hop_fields_only() -> None:
    out = response_headers([(b"server", b"nginx"), (b"content-type", b"application/json"),
                            (b"content-length", b"98"), (b"connection", b"keep-alive"),
                            (b"keep-alive", b"timeout=60")])
    assert out == [(b"server", b"nginx"), (b"content-type", b"application/json"),
                   (b"content-length", b"98"), (b"via", b"1.1 wxgated")]


def test_an_answer_naming_headers_in_connection_drops_them_and_extends_via() -> None:
    out = response_headers([(b"connection", b"close, X-Internal"), (b"x-internal", b"1"),
                            (b"via", b"1.0 backend"), (b"x-kept", b"yes"),
                            (b"transfer-encoding", b"chunked")])
    assert out == [(b"x-kept", b"yes"), (b"via", b"1.0 backend, 1.1 wxgated")]


def test_a_switching_answer_keeps_upgrade() -> None:
    out = response_headers([(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                            (b"sec-websocket-accept", b"x")], switching=True)
    assert (b"upgrade", b"websocket") in out
    assert not any(name == b"connection" for name, _ in out)


@pytest.mark.parametrize("field", [
    (b"x-note", b"a\r\nx-wx-openid: forged"),  # a smuggled line
    (b"x-note", b"a\r\n\r\nGET /admin HTTP/1.1"),  # a smuggled request
    (b"x-note", b"a\nb"), (b"x-note", b"a\rb"), (b"x-note", b"a\x00b"), (b"x-note", b"\x7f"),
    (b"x-no\r\nte", b"1"),  # in a name
])
def test_the_writer_refuses_a_field_that_could_split_a_line(
        field: tuple[bytes, bytes]) -> None:
    """Whatever put it there (a filter after the parser), a control byte in a name or a
    value is refused before anything is written upstream."""
    req = Request("GET", "/", "", [(b"host", b"h"), field], NO_BODY, peer_ip="10.0.0.7",
                  client_ip="10.0.0.7", trace_id=TRACE)
    with pytest.raises(HTTPError) as err:
        request_block(req, keep_host=False)
    assert err.value.status == 400
    req.headers = [(b"host", b"h"), (b"x-note", b"a\tb")]  # HTAB is a value's own
    assert request_block(req, keep_host=False)[0].startswith(b"x-note: a\tb\r\n")
