"""Config errors as operators see them: `FILE:LINE:COL: message`, every one at once.

Everything that rejects a config (YAML syntax, interpolation, schema, semantic checks,
and filters or terminals at compile time) ends as an `Issue` with a position, so
`wxgated check` and a failed reload report all problems in one pass instead of one per
attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Issue:
    """One problem in a config file. `line` and `col` are 1-based."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    """A config that must not be served; `issues` holds every problem found."""

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues: list[Issue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


class SemanticError(Exception):
    """Raised by filters and terminals at compile time about their own options.

    `path` is the JSON path of the offending value inside the whole config, e.g.
    ("routes", 2, "filters", 0, "rate_limit", "per"); the compiler turns it into an
    Issue with `Document.issue_at(err.path, err.message)`. A path that does not exist
    (a missing key) is reported at its nearest existing parent.
    """

    def __init__(self, message: str, path: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path: tuple[Any, ...] = tuple(path)

    def __str__(self) -> str:
        return self.message
