"""Path and header templates: `/users/{claim.openid}/orders?since={query.since}`.

Parsed once at compile time into literal parts and placeholders; filling one is a join.
Filled values are percent-encoded (everything but RFC 3986 unreserved characters), so a
value can never add a path segment, a query parameter or a fragment. Header templates
are filled raw (`encode=False`): headers are not URLs.

Sources: `param.<name>` (route params, already decoded by the router),
`query.<name>` (first value), `claim.<name>` (JWT claims), `header.<name>` (request
header), `resp.<step>.<dotted.path>` (the JSON answer of an earlier step).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from wxgated.http.message import Request

SOURCES = ("param", "query", "claim", "header", "resp")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class MissingValue(Exception):
    """A placeholder had nothing to fill it; `status` says whose fault that is."""

    def __init__(self, placeholder: str, status: int) -> None:
        super().__init__(f"no value for {{{placeholder}}}")
        self.placeholder = placeholder
        self.status = status  # 400 client input, 401 no identity, 502 an upstream's answer


@dataclass(frozen=True)
class Placeholder:
    source: str
    name: str  # param/query/claim name, lower-case header name, or the step name
    path: tuple[str, ...] = ()  # dotted path inside a step's answer (resp only)

    @property
    def text(self) -> str:
        return ".".join((self.source, self.name, *self.path))


@dataclass(frozen=True)
class Template:
    parts: tuple[str | Placeholder, ...]
    encode: bool = True

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def steps(self) -> frozenset[str]:
        """Steps whose answers this template reads (they must run first)."""
        return frozenset(p.name for p in self.placeholders if p.source == "resp")


def compile_template(text: str, encode: bool = True) -> Template:
    """Raises ValueError naming the bad placeholder."""
    parts: list[str | Placeholder] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        if m.start() > pos:
            parts.append(text[pos:m.start()])
        source, _, rest = m.group(1).strip().partition(".")
        if source not in SOURCES or not rest:
            raise ValueError(f"placeholder {m.group(0)}: use {{source.name}} with source one "
                             f"of {', '.join(SOURCES)}")
        if source == "resp":
            step, _, dotted = rest.partition(".")
            parts.append(Placeholder("resp", step, tuple(dotted.split(".")) if dotted else ()))
        elif source == "header":
            parts.append(Placeholder(source, rest.lower()))
        else:
            parts.append(Placeholder(source, rest))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    if any(isinstance(p, str) and ("{" in p or "}" in p) for p in parts):
        raise ValueError(f"template {text!r}: unbalanced braces")
    return Template(tuple(parts), encode)


def dig(value: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path (list indexes are numbers), None when absent."""
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def claim_value(claims: dict[str, Any] | None, name: str) -> Any:
    """A claim; `openid` falls back to `sub`, where the gateway's own tokens keep it."""
    if claims is None:
        return None
    v = claims.get(name)
    if v is None and name == "openid":
        v = claims.get("sub")
    return v


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _lookup(p: Placeholder, req: Request, answers: dict[str, Any],
            query: dict[str, str] | None) -> tuple[Any, dict[str, str] | None]:
    src = p.source
    if src == "param":
        return req.params.get(p.name), query
    if src == "query":
        if query is None:
            query = {}
            for k, v in parse_qsl(req.query, keep_blank_values=True):
                query.setdefault(k, v)
        return query.get(p.name), query
    if src == "claim":
        return claim_value(req.claims, p.name), query
    if src == "header":
        raw = req.header(p.name.encode("latin-1"))
        # surrogateescape: the raw bytes survive to the percent-encoding untouched
        return (None if raw is None else raw.decode("utf-8", "surrogateescape")), query
    return dig(answers.get(p.name), p.path), query


_STATUS = {"param": 400, "query": 400, "header": 400, "claim": 401, "resp": 502}


def render(t: Template, req: Request, answers: dict[str, Any]) -> str:
    """The filled template; raises MissingValue when a placeholder has no value."""
    if t.encode:
        return _fill(t, req, answers,
                     lambda text: quote(text, safe="-._~", errors="surrogateescape"))
    # a header value: no line breaks, or it could smuggle headers
    return _fill(t, req, answers,
                 lambda text: text.replace("\r", " ").replace("\n", " ").replace("\0", " "))


def render_text(t: Template, req: Request, answers: dict[str, Any]) -> str:
    """The filled template with values verbatim, for callers that escape the whole
    result themselves (a JSON string value: json.dumps quotes it)."""
    return _fill(t, req, answers, lambda text: text)


def _fill(t: Template, req: Request, answers: dict[str, Any],
          escape: Callable[[str], str]) -> str:
    out: list[str] = []
    query: dict[str, str] | None = None
    for part in t.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value, query = _lookup(part, req, answers, query)
        if value is None:
            raise MissingValue(part.text, _STATUS[part.source])
        out.append(escape(_text(value)))
    return "".join(out)
