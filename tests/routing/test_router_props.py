"""Property tests: the radix router against a brute-force reference matcher.

The reference tries every route on every request and ranks matches by their shape
(static < param < wildcard, leftmost difference first), trying host tiers in order:
exact host, wildcard hosts longest suffix first, then hostless. The router must pick the
same route with the same params, give the same 405 Allow list, and refuse exactly the
routes the reference says tie with an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wxgated.routing import RouteConflict, Router

STATIC = ["a", "b", "ab", "%61"]
METHODS = ["GET", "HEAD", "POST", "PUT"]
HOSTS = [None, None, "x.io", "*.io", "*.b.io", "a.b.io."]
REQUEST_HOSTS = ["x.io", "X.IO:8080", "y.io", "a.b.io", "c.B.io", "io", "other.org"]
NAMES = ["id", "x", "name"]

# request segments: plain, empty, encoded (valid, invalid, partial UTF-8, encoded slash)
SEGMENT = st.one_of(
    st.sampled_from(["a", "b", "ab", "c", "", "%61", "a%2Fb", "%E4%B8%AD", "%zz", "%E4", "é"]),
    st.text(alphabet="ab%2F4Eé", max_size=5),
)


@dataclass(frozen=True)
class Spec:
    segs: tuple[str, ...]  # pattern segments, e.g. ("a", ":id", "*rest")
    methods: tuple[str, ...] | None
    host: str | None

    @property
    def pattern(self) -> str:
        return "/" + "/".join(self.segs)

    @property
    def hkey(self) -> str | None:
        return self.host.lower().rstrip(".") if self.host else None

    @property
    def shape(self) -> tuple[str, ...]:
        return tuple(s[0] if s[:1] in (":", "*") else s for s in self.segs)

    @property
    def rank(self) -> tuple[int, ...]:
        return tuple({":": 1, "*": 2}.get(s[:1], 0) for s in self.segs)


def _segment(kind: str, static: str, name: str) -> str:
    return {"static": static, "param": ":" + name, "wild": "*" + name, "slash": ""}[kind]


def _spec(middle: list[tuple[str, str, str]], last: tuple[str, str, str],
          methods: tuple[str, ...] | None, host: str | None) -> Spec:
    parts = [*middle, last]
    # suffix the position so names are unique within a route but vary across routes
    segs = tuple(_segment(k, st_, f"{n}{i}") for i, (k, st_, n) in enumerate(parts))
    return Spec(segs, methods, host)


# Strategies are built once: building them inside a composite per draw is what is slow.
_MIDDLE = st.tuples(st.sampled_from(["static", "static", "param"]), st.sampled_from(STATIC),
                    st.sampled_from(NAMES))
_LAST = st.tuples(st.sampled_from(["static", "static", "param", "wild", "slash"]),
                  st.sampled_from(STATIC), st.sampled_from(NAMES))
# common sets (GET vs HEAD is where the implicit-HEAD rule bites) or random ones
_METHODS = st.sampled_from([None, ("GET",), ("HEAD",), ("POST",), ("GET", "POST"),
                            ("HEAD", "PUT")]) | st.lists(st.sampled_from(METHODS), min_size=1,
                                                         max_size=3, unique=True).map(tuple)
SPECS = st.builds(_spec, st.lists(_MIDDLE, max_size=3), _LAST, _METHODS,
                  st.sampled_from(HOSTS))
HOSTLESS_SPECS = st.builds(_spec, st.lists(_MIDDLE, max_size=3), _LAST, _METHODS, st.none())


def _with_twins(drawn: list[tuple[Spec, tuple[tuple[str, ...] | None] | None]]) -> list[Spec]:
    """Follow some specs by a twin: same shape, renamed params, other methods.

    Random shapes rarely collide; twins make same-shape routes (conflicts, HEAD given to
    another route, per-route param names) common.
    """
    out = []
    for spec, twin in drawn:
        out.append(spec)
        if twin is not None:
            segs = tuple(s + "t" if s[:1] in (":", "*") else s for s in spec.segs)
            out.append(Spec(segs, twin[0], spec.host))
    return out


def route_sets(specs: st.SearchStrategy[Spec], max_size: int) -> st.SearchStrategy[list[Spec]]:
    twin = st.none() | st.tuples(_METHODS)
    return st.lists(st.tuples(specs, twin), max_size=max_size).map(_with_twins)


def ref_params(spec: Spec, path: str) -> dict[str, str] | None:
    """The params if `spec` matches `path` by path alone, else None."""
    req = (path or "/").split("/")[1:]
    params: dict[str, str] = {}
    for i, p in enumerate(spec.segs):
        if p.startswith("*"):
            if i >= len(req):
                return None
            params[p[1:]] = unquote("/".join(req[i:]))
            return params
        if i >= len(req):
            return None
        if p.startswith(":"):
            if req[i] == "":
                return None
            params[p[1:]] = unquote(req[i])
        elif p != req[i]:
            return None
    return params if len(spec.segs) == len(req) else None


def methods_of(spec: Spec, routes: list[Spec]) -> set[str] | None:
    """Methods `spec` answers (None: any), with GET's implicit HEAD."""
    if spec.methods is None:
        return None
    out = set(spec.methods)
    head_elsewhere = any(r is not spec and r.hkey == spec.hkey and r.shape == spec.shape
                         and r.methods and "HEAD" in r.methods for r in routes)
    if "GET" in out and not head_elsewhere:
        out.add("HEAD")
    return out


def host_tiers(routes: list[Spec], host: str) -> list[list[Spec]]:
    h = host.lower().partition(":")[0]
    exact = [r for r in routes if r.hkey == h]
    wilds = sorted({r.hkey for r in routes if r.hkey and r.hkey.startswith("*.")
                    and h.endswith(r.hkey[1:]) and len(h) > len(r.hkey) - 1}, key=len,
                   reverse=True)
    tiers = [exact] + [[r for r in routes if r.hkey == w] for w in wilds]
    return tiers + [[r for r in routes if r.hkey is None]]


def reference(routes: list[Spec], method: str, host: str, path: str
              ) -> tuple[int | None, dict[str, str], tuple[str, ...]]:
    allow: set[str] = set()
    for tier in host_tiers(routes, host):
        hits = []
        for r in tier:
            params = ref_params(r, path)
            if params is None:
                continue
            ms = methods_of(r, routes)
            if ms is None or method in ms:
                hits.append((r.rank, routes.index(r), params))
            else:
                allow |= ms
        if hits:
            hits.sort(key=lambda h: h[0])
            assert len(hits) == 1 or hits[0][0] != hits[1][0], "reference found a tie"
            return hits[0][1], hits[0][2], ()
    return None, {}, tuple(sorted(allow))


def ties_with(spec: Spec, accepted: list[Spec]) -> int | None:
    """Index of an accepted route that `spec` could never be told apart from."""
    for i, r in enumerate(accepted):
        if r.hkey == spec.hkey and r.shape == spec.shape and (
                r.methods is None or spec.methods is None
                or set(r.methods) & set(spec.methods)):
            return i
    return None


def build(candidates: list[Spec]) -> tuple[Router, list[Spec]]:
    """Add every candidate; check conflicts are raised exactly when the reference ties."""
    router, accepted = Router(), []
    for spec in candidates:
        tie = ties_with(spec, accepted)
        value = len(accepted)
        try:
            router.add(spec.pattern, spec.methods, spec.host, value)
        except RouteConflict as exc:
            assert tie is not None, f"{spec} refused but the reference sees no tie"
            assert exc.first == tie and exc.second == value
            continue
        assert tie is None, f"{spec} accepted but ties with {accepted[tie]}"
        accepted.append(spec)
    return router, accepted


@dataclass(frozen=True)
class Req:
    """A request: half the time an instance of a route's pattern, so matches are common.

    Segments are indices into a per-example pool of drawn segments: drawing small ints
    is far cheaper for hypothesis than drawing fresh text for every request.
    """

    pick: int | None  # route index (mod len) to instantiate, or None for a random path
    fills: tuple[int, ...]  # values for params, in order
    tail: tuple[int, ...]  # segments for a wildcard
    segs: tuple[int, ...]  # the random path's segments
    method: str
    host: str

    def path(self, routes: list[Spec], pool: list[str]) -> str:
        if self.pick is None or not routes:
            return "/" + "/".join(pool[i] for i in self.segs)
        spec = routes[self.pick % len(routes)]
        out, fills = [], iter(self.fills)
        for p in spec.segs:
            if p.startswith(":"):
                out.append(pool[next(fills)] or "nonempty")
            elif p.startswith("*"):
                out.extend([pool[i] for i in self.tail] or [""])
            else:
                out.append(p)
        return "/" + "/".join(out)


POOL_SIZE = 8
POOL = st.lists(SEGMENT, min_size=POOL_SIZE, max_size=POOL_SIZE)
_IDX = st.integers(0, POOL_SIZE - 1)
REQS = st.lists(st.builds(
    Req, st.none() | st.integers(0, 100),
    st.tuples(_IDX, _IDX, _IDX, _IDX), st.lists(_IDX, max_size=3).map(tuple),
    st.lists(_IDX, max_size=5).map(tuple),
    st.sampled_from(METHODS + ["DELETE"]), st.sampled_from(REQUEST_HOSTS),
), min_size=10, max_size=10)


FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FAST
@given(candidates=route_sets(SPECS, 10), pool=POOL, reqs=REQS)
def test_match_agrees_with_the_reference(candidates: list[Spec], pool: list[str],
                                         reqs: list[Req]) -> None:
    router, routes = build(candidates)
    for req in reqs:
        path, method, host = req.path(routes, pool), req.method, req.host
        assert router.match(method, host, path) == reference(routes, method, host, path), (
            method, host, path)


@FAST
@given(candidates=route_sets(HOSTLESS_SPECS, 10), pool=POOL, reqs=REQS)
def test_params_are_the_decoded_segments_of_the_route(candidates: list[Spec], pool: list[str],
                                                      reqs: list[Req]) -> None:
    """Whatever route wins, its params are its own segments of the path, decoded."""
    router, routes = build(candidates)
    for req in reqs:
        path = req.path(routes, pool)
        value, params, _ = router.match("GET", "h", path)
        if value is None:
            continue
        spec = routes[value]
        assert set(params) == {s[1:] for s in spec.segs if s[:1] in (":", "*")}
        req = path.split("/")[1:]
        for i, p in enumerate(spec.segs):
            if p.startswith(":"):
                assert params[p[1:]] == unquote(req[i]) and req[i] != ""
            elif p.startswith("*"):
                assert params[p[1:]] == unquote("/".join(req[i:]))
            else:
                assert p == req[i]


@settings(max_examples=80, deadline=None)
@given(candidates=route_sets(SPECS, 8))
def test_adding_in_any_order_gives_the_same_answers(candidates: list[Spec]) -> None:
    """Priority is structural, not insertion order: reversed input, same winners."""
    _, routes = build(candidates)
    forward, backward = Router(), Router()
    for i, spec in enumerate(routes):
        forward.add(spec.pattern, spec.methods, spec.host, i)
    for i, spec in reversed(list(enumerate(routes))):
        backward.add(spec.pattern, spec.methods, spec.host, i)
    for spec in routes:
        path = "/" + "/".join("v" if s[:1] in (":", "*") else s for s in spec.segs)
        for method in METHODS:
            assert forward.match(method, "x.io", path) == backward.match(method, "x.io", path)
