"""Route lookup: a radix tree over path segments, one tree per host spec.

This runs on every request, so all the work that can be done at `add` time is: patterns
are parsed once, each route remembers at which segment index its params sit (so a match
needs no capture stack), implicit HEAD and the sorted `Allow` list are precomputed per
leaf, and fully static paths get a one-dict-lookup fast path.

Semantics (the contract the config layer and the server rely on):

- Patterns are split on "/". A segment is static (`users`), a param (`:id`, matches one
  non-empty segment) or a tail (`*rest`, last segment only). The tail matches everything
  after the slash before it, possibly empty, possibly with slashes: `/static/*p`
  matches `/static/` (p="") and `/static/a/b` (p="a/b") but not `/static`.
- Matching works on the raw path (without the query string) split on "/": an encoded
  slash (%2F) stays inside its segment. Static segments compare raw; param and tail
  values are percent-decoded. A trailing slash is significant; "" means "/".
- Priority is static > param > tail, compared segment by segment from the left, with
  backtracking: with `/a/:x/c` and `/a/b/d`, `/a/b/c` matches the param route.
- Methods filter before priority: the highest-priority route whose path matches *and*
  that accepts the method wins. When some route matches the path but none accepts the
  method, the answer is 405 and `allow` is the sorted union of the methods those routes
  accept. None or an empty list means any method. A route with GET also answers HEAD
  unless another route at the same pattern lists HEAD.
- Hosts: None means any host. An exact host matches case-insensitively, ignoring the
  request's port; `*.example.com` matches one or more labels before `.example.com`
  (not `example.com` itself). Trees are tried in order: the exact host's, then matching
  wildcard hosts' (longest suffix first), then the hostless tree; the first tree with a
  route that accepts the method wins. 405 only when no tree accepts the method but some
  tree matches the path (Allow is then the union over all trees).
- Two routes on the same host spec with the same shape (param and tail names ignored)
  and overlapping methods can never be told apart: `add` raises RouteConflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

_NO_ALLOW: tuple[str, ...] = ()
_HOST_CACHE_MAX = 1024
_HITS_MAX = 4096  # cached lookups (matches only, paths up to _HIT_PATH_MAX)
_HIT_PATH_MAX = 256


class RouteConflict(Exception):
    """Two routes that no request could tell apart; `first` was added before `second`."""

    def __init__(self, first: Any, second: Any, message: str) -> None:
        super().__init__(message)
        self.first = first
        self.second = second


class _Entry:
    """One route as seen by a leaf: its value and where its params sit in the path."""

    __slots__ = ("value", "params", "tail")

    def __init__(self, value: Any, params: tuple[tuple[str, int], ...],
                 tail: tuple[str, int] | None) -> None:
        self.value = value
        self.params = params  # (name, index into path.split("/"))
        self.tail = tail


class _Leaf:
    """The routes ending at one node, by method."""

    __slots__ = ("any", "explicit", "table", "allow")

    def __init__(self) -> None:
        self.any: _Entry | None = None
        self.explicit: dict[str, _Entry] = {}
        self.table: dict[str, _Entry] = {}  # explicit + implicit HEAD
        self.allow: tuple[str, ...] = ()

    def put(self, methods: tuple[str, ...], entry: _Entry) -> None:
        if not methods:
            self.any = entry
            return
        for m in methods:
            self.explicit[m] = entry
        self.table = dict(self.explicit)
        if "GET" in self.table and "HEAD" not in self.table:
            self.table["HEAD"] = self.table["GET"]
        self.allow = tuple(sorted(self.table))

    def get(self, method: str) -> _Entry | None:
        return self.any or self.table.get(method)


class _Node:
    __slots__ = ("static", "param", "tail", "leaf")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.tail: _Leaf | None = None  # routes whose `*name` starts at this depth
        self.leaf: _Leaf | None = None  # routes that end exactly here


class _Tree:
    """The routes of one host spec."""

    __slots__ = ("root", "exact", "shapes")

    def __init__(self) -> None:
        self.root = _Node()
        self.exact: dict[str, _Leaf] = {}  # fully static pattern -> its leaf
        # shape -> [(methods, value, pattern)], for conflict checks only
        self.shapes: dict[tuple[str, ...], list[tuple[tuple[str, ...], Any, str]]] = {}


def _parse(pattern: str) -> tuple[list[str], tuple[str, ...]]:
    """Split a pattern into raw segments and its shape (params ':' and tails '*')."""
    if not pattern.startswith("/"):
        raise ValueError(f"route path {pattern!r} must start with '/'")
    segs = pattern.split("/")[1:]
    shape: list[str] = []
    names: set[str] = set()
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "" and not last:
            raise ValueError(f"route path {pattern!r} has an empty segment")
        if seg[:1] in (":", "*"):
            name = seg[1:]
            if not name.isidentifier():
                raise ValueError(f"route path {pattern!r}: bad name in segment {seg!r}")
            if name in names:
                raise ValueError(f"route path {pattern!r}: {name!r} is used twice")
            names.add(name)
            if seg[0] == "*" and not last:
                raise ValueError(f"route path {pattern!r}: {seg!r} must be the last segment")
            shape.append(seg[0])
        else:
            shape.append(seg)
    return segs, tuple(shape)


def _host_key(host: str | None) -> str | None:
    if host is None or host == "":
        return None
    h = host.lower().rstrip(".")
    if h.startswith("*"):
        if not h.startswith("*.") or len(h) < 3 or "*" in h[1:]:
            raise ValueError(f"host {host!r}: a wildcard must be a leading '*.'")
    elif "*" in h:
        raise ValueError(f"host {host!r}: a wildcard must be a leading '*.'")
    return h


def _request_host(host: str) -> str:
    """Lower-case host without port or trailing dot; keeps [v6] literals whole."""
    h = host.lower()
    if h.startswith("["):
        return h[: h.find("]") + 1]
    return h.partition(":")[0].rstrip(".")


def _methods(methods: Sequence[str] | None) -> tuple[str, ...]:
    if not methods:
        return ()
    out = tuple(dict.fromkeys(m.upper() for m in methods))
    for m in out:
        if not m or not m.isascii() or not m.isalpha():
            raise ValueError(f"bad HTTP method {m!r}")
    return out


def _describe(host: str | None, pattern: str, methods: tuple[str, ...], value: Any) -> str:
    name = getattr(value, "name", None)
    label = f"route {name!r} " if isinstance(name, str) else ""
    meth = ",".join(methods) if methods else "any method"
    return f"{label}({meth} {pattern}{' host ' + host if host else ''})"


class Router:
    """Maps (method, host, path) to the value of the best route; see the module doc."""

    def __init__(self) -> None:
        self._hostless = _Tree()
        self._exact: dict[str, _Tree] = {}
        self._wild: list[tuple[str, _Tree]] = []  # (".suffix", tree), longest first
        self._host_cache: dict[str, tuple[_Tree, ...]] = {}
        self._only: tuple[_Tree, ...] | None = (self._hostless,)
        # (method, host, path) -> the lookup's answer, params as items: most traffic
        # repeats a few hundred URLs, and a hit costs one dict probe instead of a walk
        self._hits: dict[tuple[str, str, str], tuple[Any, tuple[tuple[str, str], ...],
                                                     tuple[str, ...]]] = {}
        self._routes: list[tuple[str | None, str, tuple[str, ...], Any]] = []

    # ---- building (compile time) ------------------------------------------------

    def add(self, pattern: str, methods: Sequence[str] | None, host: str | None,
            value: Any) -> None:
        """Add a route; raises ValueError on a malformed pattern, RouteConflict on a tie."""
        segs, shape = _parse(pattern)
        meths = _methods(methods)
        hkey = _host_key(host)
        tree = self._tree(hkey)
        self._check_conflict(tree, shape, meths, hkey, pattern, value)

        node = tree.root
        params: list[tuple[str, int]] = []
        tail: tuple[str, int] | None = None
        for i, seg in enumerate(segs, start=1):  # index into request path.split("/")
            kind = seg[:1]
            if kind == ":":
                params.append((seg[1:], i))
                if node.param is None:
                    node.param = _Node()
                node = node.param
            elif kind == "*":
                tail = (seg[1:], i)
                break
            else:
                nxt = node.static.get(seg)
                if nxt is None:
                    nxt = node.static[seg] = _Node()
                node = nxt
        entry = _Entry(value, tuple(params), tail)
        if tail is not None:
            if node.tail is None:
                node.tail = _Leaf()
            node.tail.put(meths, entry)
        else:
            if node.leaf is None:
                node.leaf = _Leaf()
            node.leaf.put(meths, entry)
            if not params:
                tree.exact[pattern] = node.leaf
        self._routes.append((hkey, pattern, meths, value))

    def _tree(self, hkey: str | None) -> _Tree:
        self._host_cache.clear()
        self._hits.clear()
        if hkey is None:
            return self._hostless
        self._only = None
        if hkey.startswith("*."):
            suffix = hkey[1:]
            for s, t in self._wild:
                if s == suffix:
                    return t
            tree = _Tree()
            self._wild.append((suffix, tree))
            self._wild.sort(key=lambda st: -len(st[0]))
            return tree
        found = self._exact.get(hkey)
        if found is None:
            found = self._exact[hkey] = _Tree()
        return found

    @staticmethod
    def _check_conflict(tree: _Tree, shape: tuple[str, ...], meths: tuple[str, ...],
                        hkey: str | None, pattern: str, value: Any) -> None:
        same = tree.shapes.setdefault(shape, [])
        for other_meths, other_value, other_pattern in same:
            if meths and other_meths:
                both = sorted(set(meths) & set(other_meths))
                if not both:
                    continue
                shown = ",".join(both)
            else:
                shown = ",".join(meths or other_meths) or "any method"
            raise RouteConflict(
                other_value, value,
                f"{_describe(hkey, pattern, meths, value)} can never be told apart from "
                f"{_describe(hkey, other_pattern, other_meths, other_value)}: same path "
                f"shape, both answer {shown}",
            )
        same.append((meths, value, pattern))

    def routes(self) -> list[tuple[str | None, str, tuple[str, ...], Any]]:
        """(host, pattern, methods, value) in the order added; () methods means any."""
        return list(self._routes)

    # ---- lookup (hot path) ------------------------------------------------------

    def match(self, method: str, host: str, path: str
              ) -> tuple[Any | None, dict[str, str], tuple[str, ...]]:
        """(value, params, ()) on a match, (None, {}, allow) for 405, (None, {}, ()) for 404."""
        key = (method, host if self._only is None else "", path)
        hit = self._hits.get(key)
        if hit is not None:
            return hit[0], dict(hit[1]) if hit[1] else {}, hit[2]
        value, params, allow = found = self._match(method, host, path)
        if value is not None and len(path) <= _HIT_PATH_MAX:
            if len(self._hits) >= _HITS_MAX:
                self._hits.clear()  # bounded: a scan of random URLs cannot grow it
            self._hits[key] = (value, tuple(params.items()), allow)
        return found

    def _match(self, method: str, host: str, path: str
               ) -> tuple[Any | None, dict[str, str], tuple[str, ...]]:
        trees = self._only
        if trees is None:
            trees = self._host_cache.get(host)
            if trees is None:
                trees = self._trees_for(host)
        if not path:
            path = "/"
        segs: list[str] | None = None
        for tree in trees:
            leaf = tree.exact.get(path)
            if leaf is not None:
                e = leaf.any or leaf.table.get(method)
                if e is not None:
                    return e.value, {}, _NO_ALLOW
            if segs is None:
                segs = path.split("/")
                if segs[0] != "":
                    return None, {}, _NO_ALLOW
            e = _walk(tree.root, segs, 1, len(segs), method)
            if e is not None:
                return e.value, _params(e, segs), _NO_ALLOW
        if segs is None or segs[0] != "":
            return None, {}, _NO_ALLOW
        allow: set[str] = set()
        for tree in trees:
            _collect(tree.root, segs, 1, len(segs), allow)
        return None, {}, tuple(sorted(allow))

    def _trees_for(self, host: str) -> tuple[_Tree, ...]:
        h = _request_host(host)
        trees: list[_Tree] = []
        exact = self._exact.get(h)
        if exact is not None:
            trees.append(exact)
        for suffix, tree in self._wild:
            if len(h) > len(suffix) and h.endswith(suffix):
                trees.append(tree)
        trees.append(self._hostless)
        out = tuple(trees)
        if len(self._host_cache) >= _HOST_CACHE_MAX:
            self._host_cache.clear()  # bounded: junk Host headers cannot grow it
        self._host_cache[host] = out
        return out


def _walk(node: _Node, segs: list[str], i: int, n: int, method: str) -> _Entry | None:
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
        e = _walk(child, segs, i + 1, n, method)
        if e is not None:
            return e
    if seg and node.param is not None:
        e = _walk(node.param, segs, i + 1, n, method)
        if e is not None:
            return e
    leaf = node.tail
    if leaf is not None:
        return leaf.any or leaf.table.get(method)
    return None


def _collect(node: _Node, segs: list[str], i: int, n: int, allow: set[str]) -> None:
    """Union of the methods of every route whose path matches (the 405 case only)."""
    if i == n:
        if node.leaf is not None:
            allow.update(node.leaf.allow)
        return
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        _collect(child, segs, i + 1, n, allow)
    if seg and node.param is not None:
        _collect(node.param, segs, i + 1, n, allow)
    if node.tail is not None:
        allow.update(node.tail.allow)


def _params(e: _Entry, segs: list[str]) -> dict[str, str]:
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
