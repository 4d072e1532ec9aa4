"""The published JSON Schema: in step with the code and the docs, strict everywhere, and
the defaults the compiler reads from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import wxgated.filters
import wxgated.terminals
from wxgated.compiler.schema import build_schema, dumps
from wxgated.compiler.validate import apply_defaults, load_and_validate
from wxgated.config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m wxgated.compiler.schema > schema/wxgated.schema.json"


def test_committed_schema_file_is_current() -> None:
    committed = (ROOT / "schema" / "wxgated.schema.json").read_text()
    assert committed == dumps(build_schema()), f"the schema changed: run `{REGENERATE}`"


def test_schema_is_valid_draft_2020_12_with_a_stable_id() -> None:
    schema = build_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://") and schema["$id"].endswith(".schema.json")


def _objects(node: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        types = node.get("type")
        is_object = types == "object" or (isinstance(types, list) and "object" in types)
        if is_object or "properties" in node:
            found.append((where, node))
        for k, v in node.items():
            found += _objects(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += _objects(v, f"{where}/{i}")
    return found


def test_no_object_lets_unknown_keys_through() -> None:
    loose = [w for w, s in _objects(build_schema())
             if "additionalProperties" not in s and "unevaluatedProperties" not in s]
    assert loose == [], "set additionalProperties (false, or a schema for free-form maps)"


def _keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        keys.update(node.get("properties", {}) if isinstance(node.get("properties"), dict)
                    else {})
        for v in node.values():
            keys |= _keys(v)
    elif isinstance(node, list):
        for v in node:
            keys |= _keys(v)
    return keys


def test_config_docs_mention_every_key() -> None:
    docs = re.sub(r"```.*?```", "", (ROOT / "docs" / "CONFIG.md").read_text(), flags=re.S)
    mentioned = {word for span in re.findall(r"`([^`\n]+)`", docs)
                 for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", span)}
    missing = sorted(_keys(build_schema()) - mentioned)
    assert missing == [], f"docs/CONFIG.md does not document: {', '.join(missing)}"


def test_terminal_schemas_come_only_from_their_modules() -> None:
    """One source per terminal: the compiler keeps no copy that could drift (an old
    copy's aggregate timeout default once disagreed with the terminal's)."""
    route = build_schema()["properties"]["routes"]["items"]["properties"]
    for key, terminal in wxgated.terminals.TERMINALS.items():
        assert route[key] == terminal.schema, key
    aggregate = route["aggregate"]["properties"]["timeout"]["default"]
    assert aggregate == wxgated.terminals.aggregate.SCHEMA["properties"]["timeout"]["default"]


def test_a_terminal_no_module_registers_is_an_unknown_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wxgated.terminals, "TERMINALS", {})
    path = tmp_path / "core.yaml"
    path.write_text("""\
routes:
  - {name: b, match: {path: /b}, respond: {status: 204}}
""")
    with pytest.raises(ConfigError) as info:
        load_and_validate(str(path), env={})
    assert [i.message for i in info.value.issues] == ['unknown key "respond" in route "b"']


def test_defaults_fill_what_is_absent_and_keep_what_is_set(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("""\
server: {timeouts: {idle: 5s}}
upstreams:
  u: {targets: [{url: "http://127.0.0.1:9001"}], circuit_breaker: {open_for: 5s}}
routes:
  - {name: a, match: {path: /a}, upstream: u}
""")
    doc = load_and_validate(str(path), env={})
    full = apply_defaults(doc.data)
    assert full["server"]["timeouts"] == {"idle": "5s", "header": "10s", "body": "60s",
                                         "shutdown_grace": "15s"}
    assert full["server"]["listen"] == "0.0.0.0:8080" and full["server"]["workers"] == 1
    assert full["admin"] == {"listen": "127.0.0.1:9090"}
    assert full["state"] == {"backend": "memory"}
    up = full["upstreams"]["u"]
    assert up["targets"] == [{"url": "http://127.0.0.1:9001", "weight": 1}]
    assert up["circuit_breaker"]["open_for"] == "5s"
    assert up["circuit_breaker"]["min_requests"] == 20
    assert "health_check" not in up and "tls" not in full["server"]
    assert full["routes"][0]["filters"] == [] and full["routes"][0]["websocket"] is True
    assert doc.data["server"] == {"timeouts": {"idle": "5s"}}  # the document is untouched


def test_shipped_routes_yaml_validates_clean() -> None:
    shipped = ROOT / "routes.yaml"
    if not shipped.exists():
        pytest.skip("no routes.yaml shipped yet")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WX_", "JWT_"))}
    doc = load_and_validate(str(shipped), env=env)
    assert doc.data["routes"]
    first = shipped.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schema/wxgated.schema.json"


def test_check_command_prints_file_line_col_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  listne: x\nroutes: []\n")
    proc = subprocess.run([sys.executable, "-m", "wxgated", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f'{path}:2:3: unknown key "listne" in server '
                                   '(did you mean "listen"?)')
