"""Which build of the hot modules runs: compiled (Cython, from setup.py) or interpreted.

The compiled modules are the `.py` files themselves, built in place beside them, and
Python's import prefers an extension module to a source file. WXGATED_NO_EXTENSIONS=1
turns that round for wxgated's own modules (aiohttp and yarl honour a variable of the
same kind): a finder placed before the standard one loads `.py` sources only, so one
installed tree can run both ways (the test suite runs a part of itself interpreted).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

ENV = "WXGATED_NO_EXTENSIONS"
# the module whose build stands for all: it is in setup.py's list of hot modules
PROBE = "wxgated.http.server"
_SOURCES = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)


class _SourceOnly(importlib.machinery.PathFinder):
    """Finds wxgated's modules as `.py` sources, never as extension modules."""

    @classmethod
    def find_spec(cls, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("wxgated.") or path is None:
            return None
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, _SOURCES).find_spec(fullname)
            if spec is not None and spec.loader is not None:
                return spec
        return None


def wanted_interpreted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def install_source_only() -> None:
    """Load wxgated's modules from source from now on (before any hot module loads)."""
    if not any(f is _SourceOnly for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceOnly)


def is_compiled(module: ModuleType) -> bool:
    return not (module.__file__ or "").endswith(".py")


def describe() -> str:
    """For the start-up line: "compiled" or "interpreted", and why when it matters."""
    probe = sys.modules.get(PROBE)
    if probe is None:
        probe = importlib.import_module(PROBE)
    if is_compiled(probe):
        return "compiled"
    if wanted_interpreted():
        return f"interpreted, {ENV}=1"
    return "interpreted"
