"""`rewrite: {regex, to}` rewrites the upstream path with a regex compiled once.

`to` may use regex groups (`\\1`, `\\g<name>`) and route params (`{param.id}`). A
param is the client's percent-decoded text, so it is spliced in after the template is
expanded, re-encoded as one path segment (`encode_param`): it can never be read as a
regex template, add a segment, a query, or split the request line. Groups come from the
normalised path, which is visible ASCII already; `to` itself must be too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wxgated.config.errors import SemanticError
from wxgated.config.options import options
from wxgated.filters.base import Filter, register
from wxgated.http.message import Request
from wxgated.http.target import encode_param

_PARAM = re.compile(r"\{param\.([A-Za-z_][A-Za-z0-9_]*)\}")
# what `to` may hold: visible ASCII, no query or fragment (the client's query is kept)
_TO = re.compile(r"[\x21-\x22\x24-\x3e\x40-\x7e]*")


@dataclass(frozen=True, slots=True)
class RewriteConfig:
    """The `rewrite` options as written; both are required."""

    regex: str
    to: str


@register
class Rewrite(Filter):
    name = "rewrite"
    config_class = RewriteConfig
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["regex", "to"],
        "properties": {
            "regex": {"type": "string", "description": "matched against the request path"},
            "to": {"type": "string", "description": "replacement; \\1 and {param.x} allowed"},
        },
    }

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        cfg = self.cfg = options(RewriteConfig, config, self.schema)
        try:
            self.regex = re.compile(cfg.regex)
        except re.error as exc:
            raise SemanticError(f"invalid regex: {exc}", ("regex",)) from None
        to = cfg.to
        if not _TO.fullmatch(to):
            raise SemanticError("`to` must be a path of visible ASCII characters, without "
                                "? or # (percent-encode anything else)", ("to",))
        parts = _PARAM.split(to)  # literal, param name, literal, …
        self.literals = tuple(parts[0::2])
        self.params = tuple(parts[1::2])
        for literal in self.literals:
            try:
                self.regex.sub(literal, "")  # parses the template: bad group refs fail now
            except re.error as exc:
                raise SemanticError(f"invalid `to`: {exc}", ("to",)) from None

    def request(self, req: Request) -> None:
        m = self.regex.search(req.path)
        if m is None:
            return
        literals = self.literals
        out = [m.expand(literals[0])]
        for i, p in enumerate(self.params, 1):
            out.append(encode_param(req.params.get(p, "")))
            out.append(m.expand(literals[i]))
        path = req.path[:m.start()] + "".join(out) + req.path[m.end():]
        req.path = path if path.startswith("/") else "/" + path
