"""${VAR} and ${VAR:-default} in routes.yaml: secrets come from the environment, and a
missing one is an error at its line:col, never a silent empty string."""

from __future__ import annotations

from pathlib import Path

import pytest

from wxgated.compiler.validate import load_and_validate
from wxgated.config.errors import ConfigError
from wxgated.config.interpolate import interpolate
from wxgated.config.loader import load_document

ENV = {"HOST": "db.local", "PORT": "6380", "EMPTY": "", "SECRET": "s3cr3t"}


@pytest.mark.parametrize(("text", "result"), [
    ("plain", "plain"),
    ("${HOST}", "db.local"),
    ("redis://${HOST}:${PORT}/0", "redis://db.local:6380/0"),
    ("${MISSING:-fallback}", "fallback"),
    ("${MISSING:-}", ""),
    ("${EMPTY:-used when empty}", "used when empty"),
    ("${EMPTY}", ""),
    ("${HOST:-ignored}", "db.local"),
    ("${MISSING:-a:b/c d}", "a:b/c d"),
    ("cost: $5 and $$5", "cost: $5 and $$5"),
    ("$${HOST} is literal", "${HOST} is literal"),
    ("$${HOST}${HOST}", "${HOST}db.local"),
])
def test_interpolation(text: str, result: str) -> None:
    assert interpolate(text, ENV) == (result, [])


@pytest.mark.parametrize(("text", "problem"), [
    ("${NOPE}", 'environment variable "NOPE" is not set'),
    ("a ${OK:-1} b ${NOPE} c", 'environment variable "NOPE" is not set'),
    ("${1BAD}", 'invalid reference "${1BAD}"'),
    ("${}", 'invalid reference "${}"'),
    ("${HOST", 'unclosed "${"'),
    ("${A:-${B}}", "nested reference"),
])
def test_bad_references(text: str, problem: str) -> None:
    _, problems = interpolate(text, ENV)
    assert len(problems) == 1 and problem in problems[0]


def test_every_missing_variable_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('wechat:\n  appid: "${APPID}"\n  secret: x-${SECRET}-${NOPE}\n')
    with pytest.raises(ConfigError) as info:
        load_document(str(path), env={"SECRET": "s"})
    assert [(i.line, i.col) for i in info.value.issues] == [(2, 10), (3, 11)]
    assert '"APPID" is not set' in info.value.issues[0].message
    assert '"NOPE" is not set' in info.value.issues[1].message


def test_values_stay_strings_and_keys_are_not_interpolated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text('server:\n  workers: ${N:-2}\n  listen: "0.0.0.0:${PORT}"\n'
                    'upstreams:\n  "${HOST}":\n    targets: [{url: "http://${HOST}:80"}]\n')
    doc = load_document(str(path), env=ENV)
    assert doc.data["server"] == {"workers": "2", "listen": "0.0.0.0:6380"}
    assert list(doc.data["upstreams"]) == ["${HOST}"]
    assert doc.data["upstreams"]["${HOST}"]["targets"][0]["url"] == "http://db.local:80"


def test_interpolated_values_are_then_validated_by_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  workers: ${WORKERS:-auto}\n  timeouts:\n"
                    "    idle: ${IDLE:-75s}\n")
    assert load_and_validate(str(path), env={}).data["server"]["workers"] == "auto"
    with pytest.raises(ConfigError) as info:
        load_and_validate(str(path), env={"IDLE": "forever", "WORKERS": "3"})
    [issue] = info.value.issues
    assert (issue.line, issue.col) == (4, 11)
    assert 'invalid duration "forever"' in issue.message


def test_secrets_from_the_environment_are_not_echoed_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("state:\n  encryption_key: ${KEY}\n")
    with pytest.raises(ConfigError) as info:
        load_and_validate(str(path), env={"KEY": "not-base64-top-secret!"})
    assert "top-secret" not in str(info.value)
    assert "32 random bytes as base64 or 64 hex digits" in str(info.value)
