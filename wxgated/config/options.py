"""A filter's options as a frozen dataclass, every default read from its schema fragment.

The fragment is what `wxgated check` validates, what editors complete against and what
schema/wxgated.schema.json publishes, so its `default` is the one operators read. A
second default written in code (`cfg.get("x", 5)`) could drift from it unnoticed; here
the dataclass only names and types the options and `options()` takes every absent
key's value from the fragment (None when the fragment has no default: "not set").

Values are frozen on the way in (lists become tuples, mappings read-only proxies), so a
compiled filter cannot change the config it was built from, nor the document's lists.

A fragment may accept a bare value for one option (`concurrency_limit: 50` for
`{max: 50}`, `strip_prefix: 2`): the dataclass names that option in
`SHORTHAND: ClassVar[str]`. A fragment that is only a bare value then has exactly that
one option.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from types import MappingProxyType
from typing import Any, TypeVar

from wxgated.config.fragments import Schema

T = TypeVar("T")


def properties(schema: Schema, shorthand: str | None = None) -> dict[str, Schema]:
    """The options a fragment allows, by name: an object's `properties`, or those of the
    object branches of a `oneOf`/`anyOf`; a fragment with no object form at all is the
    bare value of `shorthand`."""
    if "properties" in schema:
        return dict(schema["properties"])
    props: dict[str, Schema] = {}
    for branch in [*schema.get("oneOf", ()), *schema.get("anyOf", ())]:
        props.update(branch.get("properties", {}))
    if not props and shorthand is not None:
        props[shorthand] = schema
    return props


def frozen_value(value: Any) -> Any:
    """`value` with its lists as tuples and its mappings read-only, all the way down."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: frozen_value(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(frozen_value(v) for v in value)
    return value


def options(cls: type[T], config: Any, schema: Schema) -> T:
    """`cls` (a dataclass) built from a validated option value: keys given in `config`
    as given, absent ones from the fragment's `default`, else None."""
    shorthand: str | None = getattr(cls, "SHORTHAND", None)
    if config is None:
        config = {}
    elif not isinstance(config, Mapping):
        if shorthand is None:
            raise TypeError(f"{cls.__name__} takes a mapping, got {config!r}")
        config = {shorthand: config}
    props = properties(schema, shorthand)
    names = [f.name for f in _fields(cls)]
    unknown = sorted(set(config) - set(names))
    if unknown:  # the schema let through a key the dataclass does not declare
        raise TypeError(f"{cls.__name__} has no option {', '.join(unknown)}")
    values = {}
    for name in names:
        value = config[name] if name in config else props.get(name, {}).get("default")
        values[name] = frozen_value(value)
    return cls(**values)


def _fields(cls: type[Any]) -> tuple[Field[Any], ...]:
    return fields(cls)


def python_defaults(cls: type[Any]) -> dict[str, Any]:
    """The defaults a dataclass writes itself (field = value / default_factory): the
    registry test requires each to equal the schema's, so none can disagree with it."""
    out: dict[str, Any] = {}
    for f in _fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out
