"""Cache-Control parsed as directives, never compared as a whole string.

Other gateways cached `private, no-store` because they looked for the literal value
"no-store". Here every header line is split into directives (case-insensitive names,
commas, optional quoted values), so order, case and spacing don't matter.

Unknown directives are ignored; qualified forms such as `private="Set-Cookie"` or
`no-cache="Foo"` are treated as the unqualified directive, which is the conservative
reading for a shared cache. Malformed or duplicate `max-age` values make the response
stale (RFC 9111 §4.2.1 / §5.2): we keep the smallest value and use 0 for garbage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# name [= token | "quoted"]; the rest of a malformed directive is skipped to the next comma
_DIRECTIVE = re.compile(
    r'[ \t]*([^\s,="]+)[ \t]*(?:=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*)))?[ \t]*'
)
_SKIP = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*"?)*')


@dataclass(frozen=True, slots=True)
class CacheControl:
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    public: bool = False
    max_age: int | None = None
    s_maxage: int | None = None

    @property
    def lifetime(self) -> int | None:
        """Freshness a shared cache may give: s-maxage wins over max-age."""
        return self.s_maxage if self.s_maxage is not None else self.max_age


EMPTY = CacheControl()


def _seconds(raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        return 0  # malformed: treat as already stale
    return int(raw)


def _directives(value: str) -> Iterable[tuple[str, str | None]]:
    pos, n = 0, len(value)
    while pos < n:
        m = _DIRECTIVE.match(value, pos)
        if m is not None and m.group(1):
            quoted, token = m.group(2), m.group(3)
            yield m.group(1).lower(), quoted if quoted is not None else token
            pos = m.end()
        if pos < n and value[pos] != ",":
            pos = _SKIP.match(value, pos).end()  # type: ignore[union-attr]
        pos += 1  # the comma


def parse_cache_control(values: Iterable[bytes | str] | bytes | str | None) -> CacheControl:
    """Directives from one or several Cache-Control header values."""
    if values is None:
        return EMPTY
    if isinstance(values, bytes | str):
        values = (values,)
    flags: dict[str, bool] = {}
    ages: dict[str, int] = {}
    for raw in values:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        for name, arg in _directives(text):
            if name in ("max-age", "s-maxage"):
                secs = _seconds(arg)
                ages[name] = min(secs, ages.get(name, secs))
            else:
                flags[name] = True
    if not flags and not ages:
        return EMPTY
    return CacheControl(
        no_store="no-store" in flags,
        no_cache="no-cache" in flags,
        private="private" in flags,
        public="public" in flags,
        max_age=ages.get("max-age"),
        s_maxage=ages.get("s-maxage"),
    )


