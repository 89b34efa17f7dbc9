"""The codebase's own rules that no linter checks: functions a reader can hold at once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "models", "benchmarks", "tests", "examples")
# The longest function (docstring included) the style allows.
MAX_FUNCTION_LINES = 60


def long_functions(root: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function under ``root``'s packages over ``limit``."""
    found = []
    files = [root / "tasks.py", root / "conftest.py"]
    for package in PACKAGES:
        files.extend(sorted((root / package).rglob("*.py")))
    for path in files:
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    where = path.relative_to(root)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_the_style_allows():
    assert long_functions(ROOT) == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "long.py").write_text(f"def long():\n{body}\n")
    expected = f"pipelines/long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"
    assert long_functions(tmp_path) == [expected]


def test_benchmarks_is_rooms_each_saying_what_it_holds():
    benchmarks = ROOT / "benchmarks"
    # At the top only what pytest loads: the plugin and the benchmarks themselves.
    assert {p.name for p in benchmarks.glob("*.py")} == {
        "__init__.py",
        "plugin.py",
        "bench_training.py",
    }
    rooms = [p for p in benchmarks.iterdir() if (p / "__init__.py").exists()]
    assert len(rooms) >= 5
    for room in rooms:
        said = ast.get_docstring(ast.parse((room / "__init__.py").read_text()))
        assert said and len(said) > 60, f"{room.name}/__init__.py does not say what it holds"


def test_every_pipelines_name_the_docs_call_is_there():
    """What README.md and docs/ tell a user to call as ``pipelines.NAME(...)`` exists."""
    import re

    import pipelines

    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    called = {
        (path.name, name)
        for path in texts
        for name in re.findall(r"\bpipelines\.([A-Za-z_]\w*)\(", path.read_text())
    }
    assert called, "the docs call no pipelines.NAME(...): the pattern is stale"
    assert [
        f"{page}: pipelines.{name}" for page, name in sorted(called) if not hasattr(pipelines, name)
    ] == []
