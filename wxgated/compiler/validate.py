"""Schema validation with errors an operator can act on, then the semantic checks.

jsonschema's own messages ("'listne' was unexpected", "'10 seconds' does not match
'^(?:[0-9]+...'") name neither the place nor the fix. Each error is mapped here to the
line:col of the offending key or value and to a sentence in config terms: the unknown key
with a did-you-mean, the expected kind of value, the duration syntax.

Entry point: `load_and_validate(path)`; stages run in order (YAML syntax and
interpolation → schema → semantic) and each stage reports all of its problems at once.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from wxgated.compiler import semantic
from wxgated.compiler.schema import build_schema
from wxgated.config import units
from wxgated.config.errors import ConfigError, Issue
from wxgated.config.fragments import PATTERN_HINTS, Schema
from wxgated.config.loader import Document, load_document, parse_document

_TYPES = {"object": "a mapping", "array": "a list", "string": "a string",
          "integer": "an integer", "number": "a number", "boolean": "true or false",
          "null": "null"}
_SECRET = re.compile(r"secret|password|encryption_key|push_token|aes_key|^pem$|^token$",
                     re.IGNORECASE)


def load_and_validate(path: str, env: Mapping[str, str] | None = None) -> Document:
    """The loaded config, or ConfigError listing every problem (sorted by position)."""
    return checked(load_document(path, env))


def parse_and_validate(text: str, source: str, env: Mapping[str, str] | None = None
                       ) -> Document:
    """As load_and_validate, for a config that did not come from a file (a config
    center): `source` names it in every issue, with positions within `text`."""
    return checked(parse_document(text, source, env))


def checked(doc: Document) -> Document:
    issues = validate(doc)
    if issues:
        raise ConfigError(issues)
    return doc


def validate(doc: Document, schema: Schema | None = None) -> list[Issue]:
    """Schema issues; when there are none, the semantic issues. Sorted by line:col."""
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"{_value(doc.data, ())}"
        return [Issue(doc.source, 1, 1, f"the config is {what}: expected a mapping with "
                      "server, upstreams, routes, ...")]
    validator = Draft202012Validator(schema or build_schema())
    issues: set[Issue] = set()
    for err in validator.iter_errors(doc.data):
        issues.update(_issues(doc, err))
    if not issues:
        issues.update(semantic.check(doc))
    return sorted(issues, key=lambda i: (i.line, i.col, i.message))


def _issues(doc: Document, err: ValidationError) -> list[Issue]:
    path = tuple(err.absolute_path)
    v = err.validator
    if v in ("oneOf", "anyOf") and err.context and all(
            e.validator == "required" for e in err.context):  # "one of these keys"
        keys = [k for e in err.context for k in _rule_value(e)]
        return [doc.issue_at(path, f"{_where(path)} needs one of: {', '.join(keys)}",
                             at_key=True)]
    if v in ("oneOf", "anyOf") and err.context:
        picked = _pick(err)
        if picked != [err]:
            return [issue for sub in picked for issue in _issues(doc, sub)]
    if "propertyNames" in err.absolute_schema_path:
        hint = PATTERN_HINTS.get(_schema(err).get("pattern", ""), err.message)
        return [doc.issue_at(path + (err.instance,), f'invalid name "{err.instance}" in '
                             f"{_where(path)}: {hint}", at_key=True)]
    if v == "additionalProperties":
        return [doc.issue_at(path + (k,), _unknown_key(doc, path, k, _schema(err)), at_key=True)
                for k in _extra_keys(err)]
    if v == "required":
        instance = _instance(err)
        missing = [k for k in _rule_value(err) if k not in instance]
        return [doc.issue_at(path, f'missing required key "{k}" in {_where(path)}', at_key=True)
                for k in missing]
    return [doc.issue_at(path, _message(err, path))]


# Errors from iter_errors always have these fields set; the jsonschema stubs also allow
# an unset sentinel (errors built by hand) and a boolean schema (build_schema has none).
def _schema(err: ValidationError) -> Schema:
    schema = err.schema
    assert isinstance(schema, dict)
    return schema


def _instance(err: ValidationError) -> Any:
    """The offending config value: any YAML value."""
    return err.instance


def _rule_value(err: ValidationError) -> Any:
    """The failed keyword's argument (the enum's options, the pattern, the bound...)."""
    return err.validator_value


def _pick(err: ValidationError) -> list[ValidationError]:
    """The sub-errors of a oneOf/anyOf that explain the failure: all errors of the one
    branch shaped like the value, else the best single match among the branches."""
    branches: dict[Any, list[ValidationError]] = {}
    for e in err.context or ():
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    fitting = [errs for errs in branches.values() if not any(_shape_mismatch(e) for e in errs)]
    if len(fitting) == 1:
        return fitting[0]
    pool = [e for errs in (fitting or branches.values()) for e in errs]
    best = best_match(pool)
    return [best] if best is not None else [err]


def _shape_mismatch(e: ValidationError) -> bool:
    """The branch wanted another kind of value altogether (a string, not a mapping)."""
    if e.relative_path:
        return False
    return e.validator == "type" or (
        e.validator in ("enum", "const") and isinstance(e.instance, dict | list))


def _extra_keys(err: ValidationError) -> list[str]:
    schema = _schema(err)
    props = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [k for k in _instance(err)
            if k not in props and not any(re.search(p, k) for p in patterns)]


def _unknown_key(doc: Document, path: tuple[Any, ...], key: str, schema: Schema) -> str:
    known = list(schema.get("properties", {}))
    hint = _suggest(key, known)
    if len(path) == 4 and path[0] == "routes" and path[2] == "filters":
        if not known:
            return f'unknown filter "{key}" (no filters are registered)'
        return f'unknown filter "{key}"' + (hint or f" (known filters: {', '.join(known)})")
    if len(path) == 2 and path[0] == "routes":
        return f'unknown key "{key}" in route "{_route_name(doc, path)}"{hint}'
    return f'unknown key "{key}" in {_where(path)}{hint}'


def _message(err: ValidationError, path: tuple[Any, ...]) -> str:
    v, where, schema = err.validator, _where(path), _schema(err)
    val = _value(err.instance, path)
    if v == "type":
        return f"{where}: expected {_expected(schema)}, got {val}{_filter_hint(err, path)}"
    if v == "pattern":
        return _pattern_message(err, where, val)
    if v == "enum":
        options = list(_rule_value(err))
        shown = ", ".join(str(o) for o in dict.fromkeys(str(o) for o in options))
        return f"{where}: invalid value {val}; expected one of: {shown}" + \
            _suggest(str(err.instance), [str(o) for o in options])
    if v == "const":
        return f"{where}: must be {err.validator_value!r}, got {val}"
    bounds = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than",
              "exclusiveMaximum": "less than"}
    if v in bounds:
        if schema.get("pattern") in (units.DURATION_PATTERN, units.POSITIVE_DURATION_PATTERN):
            return f"{where}: a duration must be {bounds[v]} {err.validator_value}, got {val}"
        return f"{where}: must be {bounds[v]} {err.validator_value}, got {val}"
    return _count_message(err, path, where)


def _count_message(err: ValidationError, path: tuple[Any, ...], where: str) -> str:
    v, n = err.validator, err.validator_value
    in_filters = len(path) == 4 and path[0] == "routes" and path[2] == "filters"
    if v == "minProperties" and in_filters:
        return f"{where}: empty filter item; write {{filter_name: options}}"
    if v == "maxProperties" and in_filters:
        names = ", ".join(_instance(err))
        return f"{where}: one list item holds one filter, found {names}; give each its own item"
    if v == "minItems":
        return f"{where}: needs at least {n} item{'s' if n != 1 else ''}"
    if v == "maxItems":
        return f"{where}: allows at most {n} item{'s' if n != 1 else ''}"
    if v == "uniqueItems":
        return f"{where}: lists the same item twice"
    if v == "minLength":
        return f"{where}: must not be empty" if n == 1 else f"{where}: needs ≥ {n} characters"
    if v == "not" and isinstance(n, dict) and "required" in n:
        return f"{where}: use only one of {', '.join(n['required'])}"
    return f"{where}: {err.message}"


def _pattern_message(err: ValidationError, where: str, val: str) -> str:
    pattern = _rule_value(err)
    if pattern in (units.DURATION_PATTERN, units.POSITIVE_DURATION_PATTERN):
        try:
            units.parse_duration(_instance(err))
        except ValueError as exc:
            return f"{where}: {exc}"
        return f"{where}: must be greater than 0, got {val}"
    if pattern == units.SIZE_PATTERN:
        try:
            units.parse_size(_instance(err))
        except ValueError as exc:
            return f"{where}: {exc}"
    hint = PATTERN_HINTS.get(pattern, f"must match {pattern}")
    return f"{where}: invalid value {val}: {hint}"


def _expected(schema: Schema) -> str:
    pattern = schema.get("pattern")
    if pattern in (units.DURATION_PATTERN, units.POSITIVE_DURATION_PATTERN):
        return 'a duration such as "10s"'
    if pattern == units.SIZE_PATTERN:
        return 'a size such as "1MiB"'
    if "enum" in schema:
        return "one of: " + ", ".join(str(o) for o in schema["enum"])
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    names = [_TYPES.get(t, t) for t in types]
    if "string" in types and schema.get("pattern") == r"^(?:auto|[1-9][0-9]*)$":
        names = ['a number or "auto"']
    return " or ".join(names) or "another value"


def _filter_hint(err: ValidationError, path: tuple[Any, ...]) -> str:
    if len(path) == 4 and path[0] == "routes" and path[2] == "filters" \
            and isinstance(err.instance, str):
        return f' (write "- {err.instance}: {{}}")'
    return ""


def _value(value: Any, path: tuple[Any, ...]) -> str:
    if path and isinstance(path[-1], str) and _SECRET.search(path[-1]):
        return "(value hidden)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return '"' + text.replace('"', '\\"') + '"'
    return repr(value)


def _where(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _route_name(doc: Document, path: tuple[Any, ...]) -> str:
    try:
        return str(doc.data["routes"][path[1]].get("name", f"#{path[1] + 1}"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return f"#{path[1] + 1}"


def _suggest(word: str, options: list[str]) -> str:
    lowered = {o.lower(): o for o in options}
    if word.lower() in lowered and word not in options:
        return f' (did you mean "{lowered[word.lower()]}"?)'
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def apply_defaults(data: Any, schema: Schema | None = None) -> Any:
    """A copy of validated `data` with every schema default filled in where absent.

    Sections with `default: {}` (server, state, ...) are created and filled; optional
    sections without one (server.tls, health_check) stay absent, since their presence
    turns them on. Filter and terminal fragments' defaults are filled the same way.
    """
    root = schema or build_schema()
    out = copy.deepcopy(data)
    _fill(out, root, root.get("$defs", {}))
    return out


def _resolve(s: Schema, defs: Schema) -> Schema:
    while "$ref" in s:
        target = defs[s["$ref"].rsplit("/", 1)[-1]]
        s = {**target, **{k: v for k, v in s.items() if k != "$ref"}}
    return s


def _fill(node: Any, s: Schema, defs: Schema) -> None:
    s = _resolve(s, defs)
    if isinstance(node, dict):
        props = s.get("properties", {})
        for key, sub in props.items():
            sub = _resolve(sub, defs)
            if key not in node and "default" in sub:
                node[key] = copy.deepcopy(sub["default"])
            if key in node:
                _fill(node[key], sub, defs)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in node.items():
                if key not in props:
                    _fill(value, extra, defs)
    elif isinstance(node, list) and isinstance(s.get("items"), dict):
        for item in node:
            _fill(item, s["items"], defs)
