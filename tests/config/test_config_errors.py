"""Config mistakes an operator makes, each reported at the exact LINE:COL with a message
that names the problem. The position is computed from the YAML text itself (`at`), so
each case shows where the finger should point."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.configcheck import problems
from wxgated.compiler.validate import load_and_validate

BASE_UPSTREAMS = """\
upstreams:
  users:
    targets: [{url: "http://127.0.0.1:9001"}]
"""


def at(text: str, needle: str, nth: int = 0) -> str:
    """1-based `LINE:COL` of the nth occurrence of `needle` in the dedented text."""
    text = textwrap.dedent(text)
    idx = -1
    for _ in range(nth + 1):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return f"{line}:{col}"


def test_typo_in_a_key_points_at_the_key_and_suggests_the_right_one(tmp_path: Path) -> None:
    text = """\
    server:
      listne: "0.0.0.0:8080"
    """
    assert problems(tmp_path, text) == [
        '2:3: unknown key "listne" in server (did you mean "listen"?)']


def test_typo_in_a_route_key_names_the_route(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users, mehtods: [GET]}
    upstream: users
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "mehtods")}: unknown key "mehtods" in routes[0].match '
        '(did you mean "methods"?)']


def test_wrong_type_names_expected_and_actual(tmp_path: Path) -> None:
    text = """\
    upstreams:
      users:
        targets:
          - url: "http://127.0.0.1:9001"
            weight: heavy
    """
    assert problems(tmp_path, text) == [
        f'{at(text, "heavy")}: upstreams.users.targets[0].weight: expected an integer, '
        'got "heavy"']


def test_bad_duration_explains_the_syntax(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
    timeouts: {connect: 1s, read: 10 seconds}
"""
    [issue] = problems(tmp_path, text)
    assert issue.startswith(f'{at(text, "10 seconds")}: upstreams.users.timeouts.read: '
                            'invalid duration "10 seconds": use a number and a unit')


def test_zero_where_a_positive_duration_is_needed(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
    health_check: {interval: 0s}
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "0s")}: upstreams.users.health_check.interval: must be greater than 0, '
        'got "0s"']


def test_bad_size_explains_the_syntax(tmp_path: Path) -> None:
    text = """\
    server:
      limits:
        max_body: 1 MB
    """
    [issue] = problems(tmp_path, text)
    assert issue.startswith('3:15: server.limits.max_body: invalid size "1 MB": use a number '
                            "and a unit")


def test_missing_upstream_suggests_a_close_name(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users}
    upstream: user
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "user", 3)}: unknown upstream "user" (did you mean "users"?)']


def test_missing_upstream_in_an_aggregate_backend(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: home
    match: {path: /home}
    aggregate:
      backends:
        - {upstream: users, path: /me, as: me}
        - {upstream: orders, path: /orders, as: orders}
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "orders")}: unknown upstream "orders" (defined: users)']


def test_duplicate_route_name_points_at_the_second(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users}
    upstream: users
  - name: users
    match: {path: /users/:id}
    upstream: users
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "users", 4)}: duplicate route name "users" (first used at line 5)']


def test_two_terminals_points_at_the_second(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users}
    upstream: users
    respond: {status: 204}
"""
    assert problems(tmp_path, text) == [
        f'{at(text, "respond")}: route "users" has two terminals: upstream and respond']


def test_no_terminal(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: lost
    match: {path: /lost}
"""
    [issue] = problems(tmp_path, text)
    assert issue.startswith(f'{at(text, "name: lost")}: route "lost" has no terminal: add one '
                            "of aggregate, respond, upstream, wechat")


def test_two_routes_that_tie_name_each_other(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: a
    match: {path: "/users/:id", methods: [GET, PUT]}
    upstream: users
  - name: static
    match: {path: "/users/me", methods: [GET]}
    upstream: users
  - name: b
    match: {path: "/users/:user_id", methods: [GET, POST]}
    upstream: users
"""
    where = at(text, '"/users/:user_id')
    assert problems(tmp_path, text) == [
        f'{where}: route "b" conflicts with route "a" (line 5): same '
        "host, path shape and method GET"]


def test_routes_on_different_hosts_or_methods_do_not_tie(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(BASE_UPSTREAMS + """\
routes:
  - {name: a, match: {path: "/x/:id", methods: [GET]}, upstream: users}
  - {name: b, match: {path: "/x/:id", methods: [POST]}, upstream: users}
  - {name: c, match: {path: "/x/:id", host: api.example.com}, upstream: users}
  - {name: d, match: {path: "/x/*rest"}, upstream: users}
  - {name: e, match: {path: "/x/:id", version: v2}, upstream: users}
""")
    assert load_and_validate(str(path), env={}).data["routes"][4]["name"] == "e"


def test_missing_environment_variable_names_it(tmp_path: Path) -> None:
    text = """\
    wechat:
      appid: wx123
      secret: ${WX_SECRET}
    """
    assert problems(tmp_path, text) == [
        '3:11: environment variable "WX_SECRET" is not set (give it a default: '
        "${WX_SECRET:-...})"]


def test_yaml_syntax_error_at_the_parser_mark(tmp_path: Path) -> None:
    text = """\
    server:
      listen: "0.0.0.0:8080"
     workers: 2
    """
    [issue] = problems(tmp_path, text)
    assert issue.startswith("3:2: YAML syntax error:")


def test_duplicate_yaml_key_is_an_error_not_an_override(tmp_path: Path) -> None:
    text = """\
    server:
      listen: "0.0.0.0:8080"
      workers: 2
      listen: "0.0.0.0:9999"
    """
    assert problems(tmp_path, text) == ['4:3: duplicate key "listen" (first defined at line 2)']


def test_bad_method_suggests_the_upper_case_one(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users, methods: [GET, post]}
    upstream: users
"""
    [issue] = problems(tmp_path, text)
    assert issue.startswith(f'{at(text, "post")}: routes[0].match.methods[1]: invalid value '
                            '"post"; expected one of: GET, HEAD, POST')
    assert issue.endswith('(did you mean "POST"?)')


@pytest.mark.parametrize(("path", "reason"), [
    ("/files/*rest/raw", '"*rest" matches the rest of the path, so it must be the last segment'),
    ("/users/:/x", '":": a parameter needs a name'),
    ("/a/:id/b/:id", 'parameter name "id" is used twice'),
    ("users", 'must start with "/"'),
    ("/a//b", "has an empty segment (//)"),
])
def test_bad_path_syntax(tmp_path: Path, path: str, reason: str) -> None:
    text = BASE_UPSTREAMS + f"""\
routes:
  - name: r
    match:
      path: "{path}"
    upstream: users
"""
    [issue] = problems(tmp_path, text)
    assert issue.startswith(f'{at(text, chr(34) + path)}: invalid path "{path}": {reason}')


def test_redis_backend_without_url(tmp_path: Path) -> None:
    text = """\
    state:
      backend: redis
      redis: {cluster: false}
    """
    assert problems(tmp_path, text) == [
        '2:12: state.backend is "redis" but state.redis.url is not set']


def test_sessions_in_redis_need_an_encryption_key(tmp_path: Path) -> None:
    text = """\
    state:
      backend: redis
      redis: {url: "redis://127.0.0.1:6379/0"}
    wechat: {appid: wx1, secret: s}
    """
    [issue] = problems(tmp_path, text)
    assert issue.startswith("2:12: sessions are stored in Redis, so state.encryption_key is "
                            "required")


def test_unknown_filter_is_reported_at_its_name(tmp_path: Path) -> None:
    text = BASE_UPSTREAMS + """\
routes:
  - name: users
    match: {path: /users}
    filters:
      - no_such_filter_xyz: {}
    upstream: users
"""
    [issue] = problems(tmp_path, text)
    assert issue.startswith(f'{at(text, "no_such_filter_xyz")}: unknown filter '
                            '"no_such_filter_xyz"')


def test_missing_required_key_points_at_the_parent(tmp_path: Path) -> None:
    text = """\
    upstreams:
      users:
        targets:
          - weight: 2
    """
    assert problems(tmp_path, text) == [
        '4:9: missing required key "url" in upstreams.users.targets[0]']


def test_duplicate_jwt_kid(tmp_path: Path) -> None:
    text = """\
    jwt:
      keys:
        - {kid: k1, alg: HS256, secret: one-secret-that-is-long-enough-000}
        - {kid: k1, alg: HS512, secret: two-secret-that-is-long-enough-000}
    """
    assert problems(tmp_path, text) == [
        f'{at(text, "k1", 1)}: duplicate jwt key id "k1" (first used at line 3)']


def test_secret_values_never_appear_in_messages(tmp_path: Path) -> None:
    text = """\
    jwt:
      keys:
        - {kid: k1, alg: HS256, secret: [hunter2-secret]}
    """
    [issue] = problems(tmp_path, text)
    assert "hunter2" not in issue
    assert "jwt.keys[0].secret: expected a string" in issue


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = """\
    server:
      workers: many
    admin:
      listn: "127.0.0.1:9090"
    upstreams:
      users:
        targets: []
    """
    found = problems(tmp_path, text)
    assert [f.split(": ")[0] for f in found] == ["2:12", "4:3", "7:14"]
    assert 'expected a number ≥ 1 or "auto"' in found[0]
    assert "needs at least 1 item" in found[2]


def test_one_of_reports_the_branch_the_value_was_meant_for(tmp_path: Path) -> None:
    """A plug-in fragment with a short and a long form: a typo inside the long form is
    reported inside it, not as "not a string"."""
    from wxgated.compiler.validate import validate
    from wxgated.config.loader import load_document

    actions = {"enum": ["login", "logout"]}
    schema = {"type": "object", "additionalProperties": False, "properties": {"wechat": {
        "oneOf": [actions, {"type": "object", "additionalProperties": False,
                            "properties": {"action": actions, "upstream": {"type": "string"}}}]
    }}}
    path = tmp_path / "c.yaml"
    path.write_text("wechat: {action: logn, upstrem: x}\n")
    issues = validate(load_document(str(path), env={}), schema)
    assert [f"{i.line}:{i.col}: {i.message}" for i in issues] == [
        '1:18: wechat.action: invalid value "logn"; expected one of: login, logout '
        '(did you mean "login"?)',
        '1:24: unknown key "upstrem" in wechat (did you mean "upstream"?)']
    path.write_text("wechat: logn\n")
    [issue] = validate(load_document(str(path), env={}), schema)
    assert issue.message.startswith('wechat: invalid value "logn"; expected one of')


def test_observe_tracing_errors_point_at_the_value(tmp_path: Path) -> None:
    text = """\
    observe:
      tracing:
        otlp: "http://127.0.0.1:99999/v1/traces"
        sample: 0.5
        headers: {"bad name": x, authorization: "Bearer ${OTLP_TOKEN}"}
    """
    got = problems(tmp_path, text, env={"OTLP_TOKEN": "t"})
    assert got == [at(text, '"http://') + ": observe.tracing.otlp: bad port",
                   at(text, '"bad name"') + ": observe.tracing.headers: 'bad name' is not "
                   "a header name"]
    text = """\
    observe:
      tracing: {otlp: "http:///v1/traces", sample: 2}
    """
    assert problems(tmp_path, text) == [
        at(text, '"http:///') + ': observe.tracing.otlp: invalid value "http:///v1/traces": '
        'expected an http(s) URL of an OTLP/HTTP traces endpoint, e.g. '
        '"http://127.0.0.1:4318/v1/traces"',
        at(text, "2}") + ": observe.tracing.sample: must be at most 1, got 2"]
