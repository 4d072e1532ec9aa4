"""Field selection on a backend's JSON answer: `unwrap`, `allow`, `deny`, `rename`.

Paths are dotted (`profile.avatar`). A list on the way is walked element by element,
so `allow: [items.id, items.title]` keeps those two fields of every item. Path sets
are compiled once into tries. `allow` builds new objects (only what was asked for);
`deny` copies only the objects it changes; `rename` then renames keys in place (the
parsed answer belongs to this request alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Trie = dict[str, "Trie | None"]  # None: take (or drop) the whole value at this key
_ABSENT = object()


def compile_paths(paths: list[str]) -> Trie:
    trie: Trie = {}
    for raw in paths:
        keys = raw.split(".")
        if not all(keys):
            raise ValueError(f"field path {raw!r}: empty segment")
        node = trie
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if last:
                node[key] = None
            else:
                sub = node.get(key, {})
                if sub is None:
                    break  # a shorter path already covers this one
                node[key] = sub
                node = sub
    return trie


def _allow(value: Any, trie: Trie) -> Any:
    if isinstance(value, list):
        return [v for v in (_allow(x, trie) for x in value) if v is not _ABSENT]
    if not isinstance(value, dict):
        return _ABSENT
    out = {}
    for key, sub in trie.items():
        if key in value:
            picked = value[key] if sub is None else _allow(value[key], sub)
            if picked is not _ABSENT:
                out[key] = picked
    return out


def allow(value: Any, trie: Trie) -> Any:
    picked = _allow(value, trie)
    return {} if picked is _ABSENT else picked


def deny(value: Any, trie: Trie) -> Any:
    if isinstance(value, list):
        return [deny(x, trie) for x in value]
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for key, sub in trie.items():
        if key not in out:
            continue
        if sub is None:
            del out[key]
        else:
            out[key] = deny(out[key], sub)
    return out


def rename(value: Any, path: tuple[str, ...], new: str) -> None:
    """Rename the last key of `path` to `new`, in place."""
    if isinstance(value, list):
        for x in value:
            rename(x, path, new)
        return
    if not isinstance(value, dict):
        return
    if len(path) == 1:
        if path[0] in value:
            value[new] = value.pop(path[0])
        return
    child = value.get(path[0])
    if child is not None:
        rename(child, path[1:], new)


@dataclass(frozen=True)
class Shape:
    """What one step keeps of its answer, applied in this order."""

    unwrap: tuple[str, ...] = ()
    allow: Trie | None = None
    deny: Trie | None = None
    renames: tuple[tuple[tuple[str, ...], str], ...] = ()

    @classmethod
    def parse(cls, cfg: dict[str, Any]) -> Shape:
        unwrap = cfg.get("unwrap")
        renames = []
        for src, new in (cfg.get("rename") or {}).items():
            if not new or "." in new:
                raise ValueError(f"rename {src!r}: the new name must be a plain key")
            renames.append((tuple(src.split(".")), new))
        return cls(
            unwrap=tuple(unwrap.split(".")) if unwrap else (),
            allow=compile_paths(cfg["allow"]) if cfg.get("allow") is not None else None,
            deny=compile_paths(cfg["deny"]) if cfg.get("deny") else None,
            renames=tuple(renames),
        )

    def apply(self, value: Any) -> Any:
        for key in self.unwrap:
            value = value.get(key) if isinstance(value, dict) else None
        if self.allow is not None:
            value = allow(value, self.allow)
        if self.deny:
            value = deny(value, self.deny)
        for path, new in self.renames:
            rename(value, path, new)
        return value
