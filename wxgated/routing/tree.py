"""The radix tree under the router: one node per path segment, leaves by method.

Everything a lookup needs is prepared when a route is added (see wxgated.routing.router
for the matching rules); the functions here are the per-request walk, kept apart so
the router module reads as the contract and this one as the data structure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote


class Entry:
    """One route as seen by a leaf: its value and where its params sit in the path."""

    __slots__ = ("value", "params", "tail")

    def __init__(self, value: Any, params: tuple[tuple[str, int], ...],
                 tail: tuple[str, int] | None) -> None:
        self.value = value
        self.params = params  # (name, index into path.split("/"))
        self.tail = tail


class Leaf:
    """The routes ending at one node, by method."""

    __slots__ = ("any", "explicit", "table", "allow")

    def __init__(self) -> None:
        self.any: Entry | None = None
        self.explicit: dict[str, Entry] = {}
        self.table: dict[str, Entry] = {}  # explicit + implicit HEAD
        self.allow: tuple[str, ...] = ()

    def put(self, methods: tuple[str, ...], entry: Entry) -> None:
        if not methods:
            self.any = entry
            return
        for m in methods:
            self.explicit[m] = entry
        self.table = dict(self.explicit)
        if "GET" in self.table and "HEAD" not in self.table:
            self.table["HEAD"] = self.table["GET"]
        self.allow = tuple(sorted(self.table))

    def get(self, method: str) -> Entry | None:
        return self.any or self.table.get(method)


class Node:
    __slots__ = ("static", "param", "tail", "leaf")

    def __init__(self) -> None:
        self.static: dict[str, Node] = {}
        self.param: Node | None = None
        self.tail: Leaf | None = None  # routes whose `*name` starts at this depth
        self.leaf: Leaf | None = None  # routes that end exactly here


class Tree:
    """The routes of one host spec."""

    __slots__ = ("root", "exact", "shapes")

    def __init__(self) -> None:
        self.root = Node()
        self.exact: dict[str, Leaf] = {}  # fully static pattern -> its leaf
        # shape -> [(methods, value, pattern)], for conflict checks only
        self.shapes: dict[tuple[str, ...], list[tuple[tuple[str, ...], Any, str]]] = {}


def pattern_problem(pattern: str) -> str | None:
    """Why a route path pattern is malformed, in the words `wxgated check` prints (None
    when fine): the one statement of the rules, for the router and the config checks."""
    if not pattern.startswith("/"):
        return 'must start with "/"'
    if any(c in pattern for c in "?# \t"):
        return "must not contain a query (?), a fragment (#) or spaces"
    segs = pattern.split("/")[1:]
    names: set[str] = set()
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "" and not last:
            return "has an empty segment (//)"
        if seg[:1] in (":", "*"):
            name = seg[1:]
            if not name.isidentifier():
                return f'"{seg}": a parameter needs a name (letters, digits, _), e.g. :id'
            if name in names:
                return f'parameter name "{name}" is used twice'
            names.add(name)
            if seg[0] == "*" and not last:
                return f'"{seg}" matches the rest of the path, so it must be the last segment'
    return None


def pattern_shape(pattern: str) -> tuple[str, ...]:
    """The pattern with params as ":" and tails as "*": two routes of one shape (on one
    host, for one method) can never be told apart."""
    return tuple(s[0] if s[:1] in (":", "*") else s for s in pattern.split("/")[1:])


def parse_pattern(pattern: str) -> tuple[list[str], tuple[str, ...]]:
    """A valid pattern's raw segments and its shape; ValueError otherwise."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise ValueError(f"route path {pattern!r} {problem}")
    return pattern.split("/")[1:], pattern_shape(pattern)


def walk(node: Node, segs: list[str], i: int, n: int, method: str) -> Entry | None:
    """Depth-first in priority order; each node is visited at most once per lookup."""
    while node.param is None and node.tail is None:  # static-only stretch: no branching
        if i == n:
            leaf = node.leaf
            return None if leaf is None else (leaf.any or leaf.table.get(method))
        node = node.static.get(segs[i])  # type: ignore[assignment]
        if node is None:
            return None
        i += 1
    if i == n:
        leaf = node.leaf
        return None if leaf is None else (leaf.any or leaf.table.get(method))
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        e = walk(child, segs, i + 1, n, method)
        if e is not None:
            return e
    if seg and node.param is not None:
        e = walk(node.param, segs, i + 1, n, method)
        if e is not None:
            return e
    leaf = node.tail
    if leaf is not None:
        return leaf.any or leaf.table.get(method)
    return None


def collect_allow(node: Node, segs: list[str], i: int, n: int, allow: set[str]) -> None:
    """Union of the methods of every route whose path matches (the 405 case only)."""
    if i == n:
        if node.leaf is not None:
            allow.update(node.leaf.allow)
        return
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        collect_allow(child, segs, i + 1, n, allow)
    if seg and node.param is not None:
        collect_allow(node.param, segs, i + 1, n, allow)
    if node.tail is not None:
        allow.update(node.tail.allow)


def params_of(e: Entry, segs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, k in e.params:
        v = segs[k]
        params[name] = _decode(v) if "%" in v else v
    if e.tail is not None:
        name, k = e.tail
        v = "/".join(segs[k:])
        params[name] = _decode(v) if "%" in v else v
    return params


_HEX = {(a + b).encode(): bytes([int(a + b, 16)])
        for a in "0123456789abcdefABCDEF" for b in "0123456789abcdefABCDEF"}


def _decode(s: str) -> str:
    """Exactly urllib.parse.unquote, about twice as fast on ASCII input (raw paths are)."""
    try:
        raw = s.encode("ascii")
    except UnicodeEncodeError:
        return unquote(s)
    parts = raw.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        byte = _HEX.get(part[:2])
        if byte is None:
            out.append(b"%")
            out.append(part)
        else:
            out.append(byte)
            out.append(part[2:])
    return b"".join(out).decode("utf-8", "replace")
