"""The layout stays one a newcomer can hold in their head: small modules, and packages
that import each other in one direction only (a cycle means two packages that can only
be understood together)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "wxgated"
TESTS = Path(__file__).resolve().parents[1]
MAX_LINES = 400
MAX_TEST_LINES = 500
# over the limit today, each to be split by the work that rebuilds it (the one engine)
OVERSIZED: set[str] = set()


def unit(path: Path) -> str:
    """The package a module belongs to, or the top-level module's own name."""
    rel = path.relative_to(ROOT).parts
    return rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")


def imports() -> dict[str, set[str]]:
    """unit → the other units it imports (function-level imports count too)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        here = unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "wxgated" and len(parts) > 1 and parts[1] != here:
                    graph[here].add(parts[1])
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    graph = {k: v & packages for k, v in imports().items() if k in packages}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def longer_than(root: Path, limit: int) -> dict[str, int]:
    """Python files under `root` with more than `limit` lines, by path relative to it."""
    return {str(p.relative_to(root)): n for p in root.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > limit}


def test_no_module_over_400_lines() -> None:
    long = longer_than(ROOT, MAX_LINES)
    assert set(long) <= OVERSIZED, long
    assert set(long) == OVERSIZED, f"split now: drop {OVERSIZED - set(long)} from OVERSIZED"


def test_no_test_file_over_500_lines() -> None:
    """A test file that long holds several topics; split it by topic (tests/<package>/
    mirrors wxgated/, shared helpers go to tests/support/)."""
    assert longer_than(TESTS, MAX_TEST_LINES) == {}


def test_the_length_check_finds_a_long_file(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "test_long.py").write_text("x = 1\n" * 501)
    (tmp_path / "test_short.py").write_text("x = 1\n" * 500)
    assert longer_than(tmp_path, MAX_TEST_LINES) == {"pkg/test_long.py": 501}


def imported_modules(path: Path) -> set[str]:
    """The `tests.…` modules a file imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("tests.")}


def test_no_test_file_imports_another() -> None:
    """A helper two test files need lives once in tests/support/, where the next person
    looks for it, not inside one of the two test files."""
    bad = {str(p.relative_to(TESTS)): sorted(m for m in imported_modules(p)
                                             if m.rsplit(".", 1)[-1].startswith("test_"))
           for p in TESTS.rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}
