"""Read routes.yaml into plain data that remembers where every value came from.

Why not `yaml.safe_load`: every later stage (schema, semantic checks, filters at compile
time) must report `FILE:LINE:COL`, so we compose the node graph ourselves and record
the position of each mapping key, each value and each list item under its JSON path.

Choices that differ from PyYAML's defaults, on purpose:
- YAML 1.2 core scalars: only true/false are booleans (`on`, `no`, `yes` stay
  strings, so `retries: {on: [...]}` means what it says), no sexagesimal numbers, no
  timestamps (a `sunset: 2025-12-31` stays a string). Mapping keys are always strings.
- A key given twice in one mapping is an error; YAML would silently keep the last one.
- `${VAR}` interpolation runs here, per string scalar, so its errors carry a position.
- Merge keys (`<<: *defaults`) work; explicit keys override merged ones.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from wxgated.config.errors import ConfigError, Issue
from wxgated.config.interpolate import interpolate

Path = tuple[Any, ...]
Mark = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_MAX_NODES = 200_000  # aliases can expand a small file into a huge tree ("billion laughs")
_FILE_KEYS = frozenset({"file", "cert"})


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit typing."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _regexp, _first in (
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
    ("merge", r"^(?:<<)$", ["<"]),
):
    _Loader.add_implicit_resolver(_TAG + _tag, re.compile(_regexp), _first)


@dataclass(frozen=True, eq=False)
class Document:
    """A loaded, interpolated config plus the position of everything in it."""

    source: str
    data: Any
    raw_text: str
    sha256: str
    _marks: Mapping[Path, Mark] = field(repr=False, default_factory=dict)
    _key_marks: Mapping[Path, Mark] = field(repr=False, default_factory=dict)

    def mark(self, path: Sequence[Any]) -> Mark:
        """(line, col), 1-based, of the value at `path`, or of its nearest existing parent."""
        p = tuple(path)
        for n in range(len(p), -1, -1):
            hit = self._marks.get(p[:n])
            if hit is not None:
                return hit
        return (1, 1)

    def key_mark(self, path: Sequence[Any]) -> Mark:
        """Where the key naming `path` is written (the item itself for list items)."""
        p = tuple(path)
        for n in range(len(p), -1, -1):
            hit = self._key_marks.get(p[:n]) or self._marks.get(p[:n])
            if hit is not None:
                return hit
        return (1, 1)

    def issue_at(self, path: Sequence[Any], message: str, *, at_key: bool = False) -> Issue:
        line, col = self.key_mark(path) if at_key else self.mark(path)
        return Issue(self.source, line, col, message)

    def resolve_path(self, value: str) -> str:
        """A file path from the config, absolute. Relative paths are relative to the
        daemon's working directory, as every component that opens them reads them."""
        return os.path.abspath(os.path.expanduser(value))

    def referenced_files(self) -> list[str]:
        """Files the config reads, which the reloader must watch too (see iter_file_refs),
        resolved with `resolve_path`."""
        return sorted({self.resolve_path(v) for _, v in iter_file_refs(self.data)})


def iter_file_refs(node: Any, path: Path = (), parent_key: Any = None
                   ) -> Iterator[tuple[Path, str]]:
    """(path, value) of every file path in the config.

    The rule: every non-empty string under a key named `file`, `cert` or ending in
    `_file` (`pem_file`, `ca_file`, ...), plus `key` inside a `tls` mapping.
    """
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str) and v and (
                k in _FILE_KEYS or k.endswith("_file") or (k == "key" and parent_key == "tls")
            ):
                yield path + (k,), v
            else:
                yield from iter_file_refs(v, path + (k,), k)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from iter_file_refs(item, path + (i,), parent_key)


def load_document(path: str, env: Mapping[str, str] | None = None) -> Document:
    """Read and interpolate `path`; raises ConfigError with every problem found."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError([Issue(path, 1, 1, f"cannot read config: {exc.strerror or exc}")]) \
            from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([Issue(path, line, col, "the file is not valid UTF-8")]) from None
    return parse_document(text, path, env, raw=raw)


def parse_document(text: str, source: str, env: Mapping[str, str] | None = None,
                   raw: bytes | None = None) -> Document:
    """Like load_document, for text already in memory (`source` names it in messages)."""
    digest = hashlib.sha256(raw if raw is not None else text.encode()).hexdigest()
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_issue(exc, text, source)]) from None
    except RecursionError:
        raise ConfigError([Issue(source, 1, 1, "the YAML is nested too deeply")]) from None
    builder = _Builder(source, os.environ if env is None else env)
    data = None if root is None else builder.node(root, ())
    builder.marks.setdefault((), (1, 1))
    if builder.issues:
        raise ConfigError(sorted(set(builder.issues)))
    return Document(source, data, text, digest, builder.marks, builder.key_marks)


def _syntax_issue(exc: yaml.YAMLError, text: str, source: str) -> Issue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        ctx = exc.context_mark
        if exc.problem and exc.context:
            where = f" at line {ctx.line + 1}, column {ctx.column + 1}" if ctx else ""
            msg += f" ({exc.context}{where})"
        if mark is not None:
            return Issue(source, mark.line + 1, mark.column + 1, msg)
        return Issue(source, 1, 1, msg)
    position = getattr(exc, "position", None)
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        col = position - (text.rfind("\n", 0, position) + 1) + 1
        return Issue(source, line, col, f"YAML error: {exc}")
    return Issue(source, 1, 1, f"YAML error: {exc}")


def _at(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns composed YAML nodes into plain data, recording marks and issues."""

    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.issues: list[Issue] = []
        self.marks: dict[Path, Mark] = {}
        self.key_marks: dict[Path, Mark] = {}
        self._active: set[int] = set()  # nodes being built: an alias back to one is a cycle
        self._count = 0

    def issue(self, node: yaml.Node, message: str) -> None:
        line, col = _at(node)
        self.issues.append(Issue(self.source, line, col, message))

    def node(self, node: yaml.Node, path: Path) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            if self._count == _MAX_NODES + 1:
                self.issue(node, f"the config expands to more than {_MAX_NODES} values "
                                 "(aliases nested too deeply?)")
            return None
        self.marks[path] = _at(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self._active:
            self.issue(node, "a YAML alias refers to one of its own parents (a cycle)")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.node(item, path + (i,)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)  # the composer makes only these three
            return self.mapping(node, path)
        finally:
            self._active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges = [v for k, v in node.value if k.tag == _TAG + "merge"]
        for source in reversed(merges):  # earlier merge sources win over later ones
            for item in reversed(source.value) if isinstance(source, yaml.SequenceNode) \
                    else [source]:
                if not isinstance(item, yaml.MappingNode):
                    self.issue(item, "a merge key (<<) needs a mapping or a list of mappings")
                    continue
                self._active.add(id(item))
                out.update(self.mapping(item, path))
                self._active.discard(id(item))
        first: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            if knode.tag == _TAG + "merge":
                continue
            if not isinstance(knode, yaml.ScalarNode):
                self.issue(knode, "a mapping key must be a plain value, not a list or mapping")
                continue
            key = knode.value
            if key in first:
                line = first[key].start_mark.line + 1
                self.issue(knode, f'duplicate key "{key}" (first defined at line {line})')
                continue
            first[key] = knode
            self.key_marks[path + (key,)] = _at(knode)
            out[key] = self.node(vnode, path + (key,))
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag, value = node.tag, node.value
        if tag == _TAG + "str" or tag == _TAG + "merge":
            result, problems = interpolate(value, self.env)
            for problem in problems:
                self.issue(node, problem)
            return result
        if tag == _TAG + "null":
            return None
        try:
            if tag == _TAG + "bool":
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower() == "true"
            if tag == _TAG + "int":
                return _to_int(value)
            if tag == _TAG + "float":
                return _to_float(value)
        except ValueError:
            self.issue(node, f'"{value}" is not a valid {tag.replace(_TAG, "!!")}')
            return None
        self.issue(node, f"unsupported YAML tag {tag.replace(_TAG, '!!')}")
        return None


def _to_int(value: str) -> int:
    if value.startswith("0o"):
        return int(value[2:], 8)
    if value.startswith("0x"):
        return int(value[2:], 16)
    return int(value)


def _to_float(value: str) -> float:
    low = value.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(value)
