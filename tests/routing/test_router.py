"""The router's rules, one test per rule: what a client sees as 200-route, 404 or 405."""

from __future__ import annotations

import pytest

from wxgated.routing import RouteConflict, Router

NOT_FOUND = (None, {}, ())


def router(*routes: tuple[str, list[str] | None, str | None, str]) -> Router:
    r = Router()
    for pattern, methods, host, value in routes:
        r.add(pattern, methods, host, value)
    return r


# ---- segments ----------------------------------------------------------------------


def test_static_route_matches_only_its_exact_path() -> None:
    r = router(("/users", ["GET"], None, "users"))
    assert r.match("GET", "h", "/users") == ("users", {}, ())
    assert r.match("GET", "h", "/users/1") == NOT_FOUND
    assert r.match("GET", "h", "/user") == NOT_FOUND
    assert r.match("GET", "h", "/") == NOT_FOUND


def test_param_captures_one_non_empty_segment() -> None:
    r = router(("/users/:id", None, None, "user"))
    assert r.match("GET", "h", "/users/42") == ("user", {"id": "42"}, ())
    assert r.match("GET", "h", "/users/") == NOT_FOUND
    assert r.match("GET", "h", "/users/42/x") == NOT_FOUND


def test_several_params_are_all_captured() -> None:
    r = router(("/shops/:shop/items/:item", None, None, "item"))
    assert r.match("GET", "h", "/shops/s1/items/i9") == ("item", {"shop": "s1", "item": "i9"}, ())


def test_wildcard_takes_the_rest_of_the_path_including_slashes() -> None:
    r = router(("/static/*path", None, None, "static"))
    assert r.match("GET", "h", "/static/a/b/c.js") == ("static", {"path": "a/b/c.js"}, ())
    assert r.match("GET", "h", "/static/a") == ("static", {"path": "a"}, ())
    assert r.match("GET", "h", "/static/a/") == ("static", {"path": "a/"}, ())


def test_wildcard_matches_an_empty_tail_but_not_a_missing_slash() -> None:
    r = router(("/static/*path", None, None, "static"))
    assert r.match("GET", "h", "/static/") == ("static", {"path": ""}, ())
    assert r.match("GET", "h", "/static") == NOT_FOUND


def test_root_wildcard_matches_every_path() -> None:
    r = router(("/*all", None, None, "all"))
    assert r.match("GET", "h", "/") == ("all", {"all": ""}, ())
    assert r.match("GET", "h", "/x/y") == ("all", {"all": "x/y"}, ())


@pytest.mark.parametrize("pattern", [
    "users", "/a//b", "/*rest/x", "/:", "/*", "/:a/:a", "/:a/*a", "/:1x", "/a/:b-c",
])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        Router().add(pattern, None, None, "x")


# ---- priority and backtracking -----------------------------------------------------


def test_static_beats_param_beats_wildcard_at_the_same_level() -> None:
    r = router(
        ("/a/*rest", None, None, "wild"),
        ("/a/:x", None, None, "param"),
        ("/a/b", None, None, "static"),
    )
    assert r.match("GET", "h", "/a/b")[0] == "static"
    assert r.match("GET", "h", "/a/c") == ("param", {"x": "c"}, ())
    assert r.match("GET", "h", "/a/c/d") == ("wild", {"rest": "c/d"}, ())
    assert r.match("GET", "h", "/a/") == ("wild", {"rest": ""}, ())


def test_priority_is_decided_by_the_leftmost_differing_segment() -> None:
    r = router(
        ("/:x/b/c", None, None, "param-first"),
        ("/a/:y/:z", None, None, "static-first"),
    )
    assert r.match("GET", "h", "/a/b/c") == ("static-first", {"y": "b", "z": "c"}, ())


def test_backtracks_from_a_static_dead_end_to_a_param() -> None:
    r = router(("/a/:x/c", None, None, "param"), ("/a/b/d", None, None, "static"))
    assert r.match("GET", "h", "/a/b/c") == ("param", {"x": "b"}, ())
    assert r.match("GET", "h", "/a/b/d") == ("static", {}, ())


def test_backtracks_from_a_param_dead_end_to_a_wildcard() -> None:
    r = router(("/a/:x/c", None, None, "param"), ("/a/*rest", None, None, "wild"))
    assert r.match("GET", "h", "/a/b/zzz") == ("wild", {"rest": "b/zzz"}, ())


# ---- raw matching and decoding -----------------------------------------------------


def test_params_are_percent_decoded() -> None:
    r = router(("/u/:name", None, None, "u"), ("/f/*path", None, None, "f"))
    assert r.match("GET", "h", "/u/%E5%BC%A0%20san") == ("u", {"name": "张 san"}, ())
    assert r.match("GET", "h", "/f/a%20b/c") == ("f", {"path": "a b/c"}, ())
    assert r.match("GET", "h", "/u/100%") == ("u", {"name": "100%"}, ())


def test_an_encoded_slash_stays_inside_its_param() -> None:
    r = router(("/u/:name", None, None, "one"), ("/u/:a/:b", None, None, "two"))
    assert r.match("GET", "h", "/u/a%2Fb") == ("one", {"name": "a/b"}, ())
    assert r.match("GET", "h", "/u/a/b")[0] == "two"


def test_static_segments_compare_raw() -> None:
    r = router(("/users", None, None, "users"))
    assert r.match("GET", "h", "/us%65rs") == NOT_FOUND


def test_trailing_slash_is_significant() -> None:
    r = router(("/a", None, None, "no-slash"), ("/b/", None, None, "slash"))
    assert r.match("GET", "h", "/a")[0] == "no-slash"
    assert r.match("GET", "h", "/a/") == NOT_FOUND
    assert r.match("GET", "h", "/b/")[0] == "slash"
    assert r.match("GET", "h", "/b") == NOT_FOUND


def test_empty_path_is_the_root() -> None:
    r = router(("/", None, None, "root"))
    assert r.match("GET", "h", "") == ("root", {}, ())
    assert r.match("GET", "h", "/") == ("root", {}, ())


def test_a_path_without_leading_slash_matches_nothing() -> None:
    r = router(("/*all", None, None, "all"))
    assert r.match("OPTIONS", "h", "*") == NOT_FOUND


def test_empty_segments_do_not_satisfy_a_param() -> None:
    r = router(("/a/:x/b", None, None, "p"))
    assert r.match("GET", "h", "/a//b") == NOT_FOUND


# ---- methods -----------------------------------------------------------------------


def test_no_methods_means_any_method() -> None:
    r = router(("/x", None, None, "any"), ("/y", [], None, "any-too"))
    for m in ("GET", "POST", "DELETE", "BREW"):
        assert r.match(m, "h", "/x")[0] == "any"
        assert r.match(m, "h", "/y")[0] == "any-too"


def test_wrong_method_gives_405_with_sorted_allow_including_head() -> None:
    r = router(("/x", ["POST", "GET"], None, "x"))
    assert r.match("DELETE", "h", "/x") == (None, {}, ("GET", "HEAD", "POST"))
    r = router(("/p/:id", ["PUT"], None, "p"))
    assert r.match("GET", "h", "/p/1") == (None, {}, ("PUT",))


def test_get_route_answers_head() -> None:
    r = router(("/x", ["GET"], None, "x"))
    assert r.match("HEAD", "h", "/x") == ("x", {}, ())


def test_head_of_another_route_at_the_same_pattern_wins() -> None:
    r = router(("/x/:a", ["GET"], None, "get"), ("/x/:b", ["HEAD"], None, "head"))
    assert r.match("HEAD", "h", "/x/1") == ("head", {"b": "1"}, ())
    assert r.match("GET", "h", "/x/1") == ("get", {"a": "1"}, ())
    # order of adding does not matter
    r = router(("/x/:b", ["HEAD"], None, "head"), ("/x/:a", ["GET"], None, "get"))
    assert r.match("HEAD", "h", "/x/1")[0] == "head"


def test_methods_are_case_normalised_at_add_time() -> None:
    r = router(("/x", ["get"], None, "x"))
    assert r.match("GET", "h", "/x")[0] == "x"


def test_method_filters_before_priority() -> None:
    """The best route that accepts the method wins, even a less specific one."""
    r = router(("/a/b", ["POST"], None, "static-post"), ("/a/:x", ["GET"], None, "param-get"))
    assert r.match("GET", "h", "/a/b") == ("param-get", {"x": "b"}, ())
    assert r.match("POST", "h", "/a/b") == ("static-post", {}, ())
    assert r.match("PUT", "h", "/a/b") == (None, {}, ("GET", "HEAD", "POST"))
    assert r.match("PUT", "h", "/a/c") == (None, {}, ("GET", "HEAD"))


def test_405_allow_unions_all_routes_matching_the_path() -> None:
    r = router(("/f/*p", ["DELETE"], None, "wild"), ("/f/:x", ["PUT"], None, "param"))
    assert r.match("GET", "h", "/f/a") == (None, {}, ("DELETE", "PUT"))
    assert r.match("GET", "h", "/f/a/b") == (None, {}, ("DELETE",))


# ---- hosts -------------------------------------------------------------------------


def test_host_route_only_answers_its_host_case_insensitively_ignoring_port() -> None:
    r = router(("/x", None, "API.example.com", "api"))
    assert r.match("GET", "api.example.com", "/x")[0] == "api"
    assert r.match("GET", "Api.Example.COM:8443", "/x")[0] == "api"
    assert r.match("GET", "api.example.com.", "/x")[0] == "api"
    assert r.match("GET", "www.example.com", "/x") == NOT_FOUND
    assert r.match("GET", "", "/x") == NOT_FOUND


def test_wildcard_host_matches_one_or_more_labels_but_not_the_bare_domain() -> None:
    r = router(("/x", None, "*.example.com", "wild"))
    assert r.match("GET", "a.example.com", "/x")[0] == "wild"
    assert r.match("GET", "a.b.example.com:80", "/x")[0] == "wild"
    assert r.match("GET", "example.com", "/x") == NOT_FOUND
    assert r.match("GET", "badexample.com", "/x") == NOT_FOUND


def test_exact_host_beats_wildcard_host_beats_hostless() -> None:
    r = router(
        ("/x", None, None, "any-host"),
        ("/x", None, "*.example.com", "wild"),
        ("/x", None, "*.api.example.com", "wild-longer"),
        ("/x", None, "v1.api.example.com", "exact"),
    )
    assert r.match("GET", "v1.api.example.com", "/x")[0] == "exact"
    assert r.match("GET", "v2.api.example.com", "/x")[0] == "wild-longer"
    assert r.match("GET", "www.example.com", "/x")[0] == "wild"
    assert r.match("GET", "other.org", "/x")[0] == "any-host"


def test_host_tree_wins_even_with_a_less_specific_path() -> None:
    r = router(("/a/b", None, None, "hostless-static"), ("/a/:x", None, "h.io", "host-param"))
    assert r.match("GET", "h.io", "/a/b") == ("host-param", {"x": "b"}, ())


def test_host_tree_without_the_method_falls_back_to_hostless() -> None:
    r = router(("/x", ["POST"], "h.io", "host-post"), ("/x", ["GET"], None, "hostless-get"))
    assert r.match("GET", "h.io", "/x")[0] == "hostless-get"
    assert r.match("POST", "h.io", "/x")[0] == "host-post"
    assert r.match("PUT", "h.io", "/x") == (None, {}, ("GET", "HEAD", "POST"))
    assert r.match("POST", "other.io", "/x") == (None, {}, ("GET", "HEAD"))


def test_host_lookup_stays_right_after_many_distinct_hosts() -> None:
    """Junk Host headers fill the lookup cache; it must stay bounded and correct."""
    r = router(("/x", None, "*.example.com", "wild"), ("/x", None, None, "any"))
    for i in range(3000):
        assert r.match("GET", f"h{i}.example.com", "/x")[0] == "wild"
        assert r.match("GET", f"h{i}.other", "/x")[0] == "any"
    assert len(r._host_cache) <= 1024


@pytest.mark.parametrize("host", ["a.*.com", "*example.com", "*.", "**.a.com"])
def test_malformed_host_patterns_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        Router().add("/x", None, host, "x")


# ---- conflicts ---------------------------------------------------------------------


def test_same_shape_and_overlapping_methods_conflict() -> None:
    r = router(("/u/:id", ["GET", "POST"], None, "first"))
    with pytest.raises(RouteConflict) as exc:
        r.add("/u/:uid", ["POST", "PUT"], None, "second")
    assert exc.value.first == "first" and exc.value.second == "second"
    msg = str(exc.value)
    assert "/u/:uid" in msg and "/u/:id" in msg and "POST" in msg


def test_any_method_overlaps_everything() -> None:
    r = router(("/x/*a", None, None, "first"))
    with pytest.raises(RouteConflict):
        r.add("/x/*b", ["GET"], None, "second")
    r = router(("/x", ["GET"], None, "first"))
    with pytest.raises(RouteConflict):
        r.add("/x", None, None, "second")


def test_conflict_message_names_routes_that_have_a_name() -> None:
    class Route:
        def __init__(self, name: str) -> None:
            self.name = name

    r = Router()
    r.add("/x", ["GET"], "h.io", Route("alpha"))
    with pytest.raises(RouteConflict, match="'beta'.*'alpha'"):
        r.add("/x", ["GET"], "H.io", Route("beta"))


@pytest.mark.parametrize("a, b", [
    (("/u/:id", ["GET"], None), ("/u/:id", ["POST"], None)),  # disjoint methods
    (("/u/:id", ["GET"], None), ("/u/:uid/x", ["GET"], None)),  # different shape
    (("/u/:id", ["GET"], None), ("/u/me", ["GET"], None)),  # static vs param
    (("/u/:id", ["GET"], None), ("/u/*id", ["GET"], None)),  # param vs wildcard
    (("/u/:id", ["GET"], None), ("/u/:id", ["GET"], "h.io")),  # different host
    (("/u", ["GET"], "*.h.io"), ("/u", ["GET"], "a.h.io")),  # wildcard vs exact host
    (("/u", ["GET"], None), ("/u/", ["GET"], None)),  # trailing slash
    (("/u", ["GET"], None), ("/u", ["HEAD"], None)),  # implicit HEAD yields
])
def test_routes_that_can_be_told_apart_do_not_conflict(a: tuple, b: tuple) -> None:
    r = router((*a, "a"), (*b, "b"))
    assert [v for *_, v in r.routes()] == ["a", "b"]


def test_different_param_names_at_one_position_each_keep_their_own() -> None:
    r = router(
        ("/u/:id", ["GET"], None, "by-id"),
        ("/u/:uid/x", ["GET"], None, "x"),
        ("/u/:name", ["POST"], None, "by-name"),
    )
    assert r.match("GET", "h", "/u/7") == ("by-id", {"id": "7"}, ())
    assert r.match("GET", "h", "/u/7/x") == ("x", {"uid": "7"}, ())
    assert r.match("POST", "h", "/u/7") == ("by-name", {"name": "7"}, ())


def test_a_failed_add_leaves_the_router_unchanged() -> None:
    r = router(("/u/:id", ["GET"], None, "first"))
    with pytest.raises(RouteConflict):
        r.add("/u/:x", ["GET"], None, "second")
    assert r.match("GET", "h", "/u/1") == ("first", {"id": "1"}, ())
    assert len(r.routes()) == 1


# ---- routes() ----------------------------------------------------------------------


def test_routes_lists_what_was_added_in_order() -> None:
    r = router(("/b", ["post", "GET"], "API.io", "b"), ("/a/*p", None, None, "a"))
    assert r.routes() == [("api.io", "/b", ("POST", "GET"), "b"), (None, "/a/*p", (), "a")]


def test_params_dict_is_fresh_per_match() -> None:
    r = router(("/u/:id", None, None, "u"), ("/s", None, None, "s"))
    first = r.match("GET", "h", "/u/1")[1]
    first["id"] = "mutated"
    assert r.match("GET", "h", "/u/1")[1] == {"id": "1"}
    r.match("GET", "h", "/s")[1]["x"] = "y"
    assert r.match("GET", "h", "/s")[1] == {}
