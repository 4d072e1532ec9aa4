"""The YAML loader: positions for every value, YAML 1.2 scalars, strictness where YAML is
lenient (duplicate keys), and the facts the reloader needs (hash, referenced files)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from wxgated.compiler.validate import validate
from wxgated.config.errors import ConfigError
from wxgated.config.loader import load_document

TEXT = """\
server:
  listen: "0.0.0.0:8080"
routes:
  - name: a
    match: {path: /a, methods: [GET, POST]}
  - name: b
"""


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_key_value_and_item_has_a_position(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, TEXT), env={})
    assert doc.mark(("server", "listen")) == (2, 11)
    assert doc.key_mark(("server", "listen")) == (2, 3)
    assert doc.mark(("routes", 0)) == (4, 5)
    assert doc.mark(("routes", 0, "match", "methods", 1)) == (5, 38)
    assert doc.key_mark(("routes", 0, "match")) == (5, 5)
    assert doc.mark(("routes", 1, "name")) == (6, 11)


def test_a_missing_path_maps_to_its_nearest_parent(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, TEXT), env={})
    assert doc.mark(("routes", 1, "match", "path")) == doc.mark(("routes", 1))
    assert doc.mark(["nothing", "here"]) == (1, 1)
    issue = doc.issue_at(("routes", 0, "filters", 0), "boom")
    assert str(issue) == f"{doc.source}:4:5: boom"


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, """\
a: [on, off, yes, no, true, False, ~, null, 1_000, 0x1F, 0o17, 017, 1e3, .5, 2025-12-31, 1:30]
on: kept as a string key
200: also a string key
"""), env={})
    assert doc.data["a"] == ["on", "off", "yes", "no", True, False, None, None, "1_000", 31,
                             15, 17, 1000.0, 0.5, "2025-12-31", "1:30"]
    assert list(doc.data)[1:] == ["on", "200"]


def test_duplicate_keys_are_errors_at_the_second_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_document(write(tmp_path, "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 4\n"), env={})
    assert [(i.line, i.col, i.message) for i in info.value.issues] == [
        (5, 3, 'duplicate key "c" (first defined at line 3)'),
        (6, 1, 'duplicate key "a" (first defined at line 1)'),
    ]


def test_merge_keys_work_and_explicit_keys_win(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, """\
defaults: &d {connect: 1s, read: 10s}
x:
  <<: *d
  read: 30s
"""), env={})
    assert doc.data["x"] == {"connect": "1s", "read": "30s"}
    assert doc.mark(("x", "read")) == (4, 9)


def test_alias_cycles_and_unknown_tags_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_document(write(tmp_path, "a: &x [1, *x]\nb: !env HOME\n"), env={})
    messages = [(i.line, i.message) for i in info.value.issues]
    assert messages[0][0] == 1 and "cycle" in messages[0][1]
    assert messages[1] == (2, "unsupported YAML tag !env")


def test_alias_bombs_are_refused(tmp_path: Path) -> None:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ConfigError) as info:
        load_document(write(tmp_path, "\n".join(lines) + "\n"), env={})
    assert "expands to more than" in str(info.value)


def test_syntax_errors_and_several_documents(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_document(write(tmp_path, "a: [1, 2\nb: 3\n"), env={})
    [issue] = info.value.issues
    assert issue.message.startswith("YAML syntax error: ") and issue.line == 2
    with pytest.raises(ConfigError) as info:
        load_document(write(tmp_path, "a: 1\n---\nb: 2\n"), env={})
    assert info.value.issues[0].line == 2


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_document(str(tmp_path / "missing.yaml"), env={})
    assert "cannot read config: No such file or directory" in str(info.value)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_document(str(path), env={})
    assert [(i.line, i.col) for i in info.value.issues] == [(2, 7)]


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, "# nothing yet\n"), env={})
    [issue] = validate(doc)
    assert (issue.line, issue.col) == (1, 1) and "the config is empty" in issue.message


def test_hash_and_raw_text_describe_the_exact_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, TEXT)
    doc = load_document(path, env={})
    assert doc.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert doc.raw_text == TEXT and doc.source == path


def test_referenced_files_are_the_ones_the_reloader_must_watch(tmp_path: Path) -> None:
    doc = load_document(write(tmp_path, """\
server:
  tls: {cert: /etc/wxgated/cert.pem, key: certs/key.pem}
jwt:
  keys:
    - {kid: a, alg: RS256, pem_file: /etc/wxgated/jwt.pem}
    - {kid: b, alg: HS256, secret: x}
upstreams:
  u:
    targets: [{url: "http://127.0.0.1:1"}]
    tls: {ca_file: ca.pem}
routes:
  - {name: r, match: {path: /r}, filters: [{rate_limit: {key: claim.openid}}], upstream: u}
"""), env={})
    assert doc.referenced_files() == sorted([
        "/etc/wxgated/cert.pem", os.path.abspath("certs/key.pem"), "/etc/wxgated/jwt.pem",
        os.path.abspath("ca.pem")])
