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
- Matching works on the request's normalised path (wxgated.http.target) split on "/":
  an encoded slash (%2F, when `escaped_slashes: keep`) stays inside its segment. Static segments compare raw; param and tail
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

from wxgated.routing.tree import (
    Entry,
    Leaf,
    Node,
    Tree,
    collect_allow,
    params_of,
    parse_pattern,
    walk,
)

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
        self._hostless = Tree()
        self._exact: dict[str, Tree] = {}
        self._wild: list[tuple[str, Tree]] = []  # (".suffix", tree), longest first
        self._host_cache: dict[str, tuple[Tree, ...]] = {}
        self._only: tuple[Tree, ...] | None = (self._hostless,)
        # (method, host, path) -> the lookup's answer, params as items: most traffic
        # repeats a few hundred URLs, and a hit costs one dict probe instead of a walk
        self._hits: dict[tuple[str, str, str], tuple[Any, tuple[tuple[str, str], ...],
                                                     tuple[str, ...]]] = {}
        self._routes: list[tuple[str | None, str, tuple[str, ...], Any]] = []

    # ---- building (compile time) ------------------------------------------------

    def add(self, pattern: str, methods: Sequence[str] | None, host: str | None,
            value: Any) -> None:
        """Add a route; raises ValueError on a malformed pattern, RouteConflict on a tie."""
        segs, shape = parse_pattern(pattern)
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
                    node.param = Node()
                node = node.param
            elif kind == "*":
                tail = (seg[1:], i)
                break
            else:
                nxt = node.static.get(seg)
                if nxt is None:
                    nxt = node.static[seg] = Node()
                node = nxt
        entry = Entry(value, tuple(params), tail)
        if tail is not None:
            if node.tail is None:
                node.tail = Leaf()
            node.tail.put(meths, entry)
        else:
            if node.leaf is None:
                node.leaf = Leaf()
            node.leaf.put(meths, entry)
            if not params:
                tree.exact[pattern] = node.leaf
        self._routes.append((hkey, pattern, meths, value))

    def _tree(self, hkey: str | None) -> Tree:
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
            tree = Tree()
            self._wild.append((suffix, tree))
            self._wild.sort(key=lambda st: -len(st[0]))
            return tree
        found = self._exact.get(hkey)
        if found is None:
            found = self._exact[hkey] = Tree()
        return found

    @staticmethod
    def _check_conflict(tree: Tree, shape: tuple[str, ...], meths: tuple[str, ...],
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
            e = walk(tree.root, segs, 1, len(segs), method)
            if e is not None:
                return e.value, params_of(e, segs), _NO_ALLOW
        if segs is None or segs[0] != "":
            return None, {}, _NO_ALLOW
        allow: set[str] = set()
        for tree in trees:
            collect_allow(tree.root, segs, 1, len(segs), allow)
        return None, {}, tuple(sorted(allow))

    def _trees_for(self, host: str) -> tuple[Tree, ...]:
        h = _request_host(host)
        trees: list[Tree] = []
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


