"""Filter options: one frozen dataclass per filter, every default taken from the schema.

The rule is checked for every registered filter, so a new filter module is held to it
without editing this file: its `config_class` names exactly the options its schema
fragment allows, and any default the dataclass writes itself equals the schema's.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from wxgated.config.context import CompileContext
from wxgated.config.options import frozen_value, options, properties, python_defaults
from wxgated.filters import FILTERS
from wxgated.filters.base import Filter
from wxgated.registry import Registry


def rule_problems(cls: type[Filter]) -> list[str]:
    """What breaks the rule in one filter class; [] when it holds."""
    dc = getattr(cls, "config_class", None)
    if dc is None or not dataclasses.is_dataclass(dc):
        return [f"{cls.name}: no config_class dataclass"]
    out = []
    if not dc.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        out.append(f"{cls.name}: {dc.__name__} is not frozen")
    props = properties(cls.schema, getattr(dc, "SHORTHAND", None))
    names = {f.name for f in dataclasses.fields(dc)}
    if names != set(props):
        out.append(f"{cls.name}: fields {sorted(names)} != schema options {sorted(props)}")
    for name, value in python_defaults(dc).items():
        schema_default = props.get(name, {}).get("default", None)
        if "default" not in props.get(name, {}) or frozen_value(schema_default) != value:
            out.append(f"{cls.name}.{name}: Python default {value!r} is not the schema's "
                       f"({schema_default!r})")
    return out


def test_every_registered_filter_declares_its_options_as_the_schema_does() -> None:
    assert len(FILTERS) >= 11  # every module of the package registered itself
    problems = [p for cls in FILTERS.values() for p in rule_problems(cls)]
    assert problems == []


@dataclass(frozen=True, slots=True)
class _DriftingConfig:
    size: str = "2MiB"  # the schema says 1MiB
    extra: int | None = None  # no such option in the schema


@dataclass(slots=True)
class _MutableConfig:
    size: str


class _Drifting(Filter):
    name = "drifting"
    config_class = _DriftingConfig
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"size": {"type": "string", "default": "1MiB"},
                             "mode": {"enum": ["a", "b"]}}}


class _Mutable(Filter):
    name = "mutable"
    config_class = _MutableConfig
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"size": {"type": "string"}}}


def test_the_rule_flags_a_drifting_default_a_missing_option_and_a_mutable_config() -> None:
    problems = rule_problems(_Drifting)
    assert any("fields ['extra', 'size'] != schema options ['mode', 'size']" in p
               for p in problems)
    assert any("drifting.size: Python default '2MiB'" in p for p in problems)
    assert any("drifting.extra: Python default None" in p for p in problems)
    assert rule_problems(_Mutable) == ["mutable: _MutableConfig is not frozen"]


def test_absent_options_take_the_schema_default_and_given_ones_are_kept() -> None:
    cors = FILTERS["cors"]
    cfg = options(cors.config_class, {"origins": ["https://a.example"], "credentials": True},
                  cors.schema)
    assert cfg.origins == ("https://a.example",)  # lists arrive as tuples
    assert cfg.credentials is True
    assert cfg.headers == tuple(cors.schema["properties"]["headers"]["default"])
    assert cfg.expose_headers == ()
    assert cfg.methods is None and cfg.max_age is None  # no default: not set
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.credentials = False  # type: ignore[misc]


def test_mappings_are_read_only_and_the_document_is_not_shared() -> None:
    jwt = FILTERS["jwt_auth"]
    raw = {"claim_headers": {"role": "X-User-Role"}, "apps": ["prod"]}
    cfg = options(jwt.config_class, raw, jwt.schema)
    assert dict(cfg.claim_headers) == {"role": "X-User-Role"}
    with pytest.raises(TypeError):
        cfg.claim_headers["role"] = "X-Other"  # type: ignore[index]
    raw["claim_headers"]["role"] = "X-Changed"
    raw["apps"].append("dev")
    assert cfg.claim_headers["role"] == "X-User-Role" and cfg.apps == ("prod",)


def test_a_bare_value_is_the_shorthand_option() -> None:
    limit = FILTERS["concurrency_limit"]
    short = options(limit.config_class, 50, limit.schema)
    long = options(limit.config_class, {"max": 50}, limit.schema)
    assert short == long and short.max == 50 and short.on_missing_key == "ip"
    strip = FILTERS["strip_prefix"]
    assert options(strip.config_class, 2, strip.schema).segments == 2


def test_an_option_the_dataclass_does_not_declare_is_a_programming_error() -> None:
    env = FILTERS["envelope"]
    with pytest.raises(TypeError, match="has no option max_sise"):
        options(env.config_class, {"max_sise": "1KiB"}, env.schema)
    with pytest.raises(TypeError, match="takes a mapping"):
        options(env.config_class, 5, env.schema)


def _ctx(config: dict[str, Any] | None = None) -> CompileContext:
    return CompileContext(config=config or {}, registry=Registry(), route_name="r",
                          route={"name": "r", "match": {"path": "/r"}})


@pytest.mark.parametrize(("name", "option", "new_default", "attribute", "expected"), [
    ("envelope", "max_size", "2KiB", "max_size", 2048),
    ("cache", "max_entry", "3KiB", "max_entry", 3072),
    ("cache", "stale_if_error", "7s", "stale_for", 7.0),
    ("rate_limit", "max_keys", 7, "cfg", 7),
])
def test_a_filter_reads_its_defaults_from_the_schema_and_nowhere_else(
        monkeypatch: pytest.MonkeyPatch, name: str, option: str, new_default: Any,
        attribute: str, expected: Any) -> None:
    """Changing the schema's default changes what the compiled filter does: no second
    copy of the default in code can win."""
    cls = FILTERS[name]
    schema = copy.deepcopy(cls.schema)
    schema["properties"][option]["default"] = new_default
    monkeypatch.setattr(cls, "schema", schema)
    config: dict[str, Any] = {"rate": 1} if name == "rate_limit" else {}
    built = cls(config, _ctx())
    value = getattr(built, attribute)
    if attribute == "cfg":
        value = getattr(value, option)
    assert value == expected


def test_rate_limit_default_store_follows_the_state_backend() -> None:
    """`store` has no static default (it depends on state.backend): None in the config,
    decided when the filter is built."""
    cls = FILTERS["rate_limit"]
    local = cls({"rate": 1}, _ctx({"state": {"backend": "memory"}}))
    assert local.cfg.store is None and local.local is not None and local.remote is None


def test_cors_allows_the_schema_default_headers_when_none_are_given() -> None:
    cls = FILTERS["cors"]
    built = cls({"origins": ["*"]}, _ctx())
    assert built.headers == frozenset(cls.schema["properties"]["headers"]["default"])
    assert built.methods == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


class _Shorthand:
    SHORTHAND: ClassVar[str] = "n"


def test_properties_of_a_bare_value_fragment_name_the_shorthand() -> None:
    frag = {"type": "integer", "minimum": 1}
    assert properties(frag, _Shorthand.SHORTHAND) == {"n": frag}
    assert properties(frag) == {}
