"""Config errors as `wxgated check` reports them, for tests of where each error points."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from wxgated.compiler.validate import load_and_validate
from wxgated.config.errors import ConfigError


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """`LINE:COL: message` for every issue `wxgated check` would print (file name cut)."""
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as info:
        load_and_validate(str(path), env=env or {})
    out = []
    for issue in info.value.issues:
        assert issue.file == str(path)
        assert str(issue).startswith(f"{path}:{issue.line}:{issue.col}: ")
        out.append(f"{issue.line}:{issue.col}: {issue.message}")
    return out
