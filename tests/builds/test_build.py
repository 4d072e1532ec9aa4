"""The two builds of the hot modules: compiled where setup.py could compile them, and
the same sources interpreted with WXGATED_NO_EXTENSIONS=1 (what the start-up line says)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import wxgated
from wxgated import build

ROOT = Path(wxgated.__file__).parent
# the setup.py list, as module names
HOT = [p.removesuffix(".py").replace("/", ".")
       for p in re.findall(r'"(wxgated/[\w/]+\.py)"', (ROOT.parent / "setup.py").read_text())]

PROBE = """
import importlib, json, sys
import wxgated.build as b
mods = {n: importlib.import_module(n).__file__ for n in sys.argv[1:]}
print(json.dumps({"describe": b.describe(), "files": mods}))
"""


def _load(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != build.ENV}
    if env_value is not None:
        env[build.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE, *HOT], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def _compiled_here() -> bool:
    return any(ROOT.joinpath(*m.split(".")[1:-1]).glob(m.rsplit(".", 1)[1] + ".*.so")
               for m in HOT)


def test_setup_lists_modules_that_exist() -> None:
    assert len(HOT) >= 10
    for name in HOT:
        assert (ROOT.parent / (name.replace(".", "/") + ".py")).is_file(), name


def test_no_extensions_runs_every_hot_module_from_source() -> None:
    got = _load("1")
    assert got["describe"] == "interpreted, WXGATED_NO_EXTENSIONS=1"
    for name, file in got["files"].items():
        assert file.endswith(".py"), (name, file)


@pytest.mark.skipif(not _compiled_here(), reason="this tree was installed without a compiler")
def test_default_runs_the_compiled_modules() -> None:
    got = _load(None)
    assert got["describe"] == "compiled"
    for name, file in got["files"].items():
        assert file.endswith(".so"), (name, file)  # every listed module compiled


def test_zero_means_not_set() -> None:
    assert _load("0")["describe"] in ("compiled", "interpreted")
