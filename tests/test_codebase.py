"""The codebase's own rules that no linter checks: functions a reader can hold at once,
and modules that import one another in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pipelines", "models", "benchmarks", "trials", "tests", "examples")
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


PRODUCT = ("pipelines", "models", "benchmarks")
# The suite's own studies (trials/): above the product, which never imports them.
STUDIES = ("trials",)


def module_imports(root: Path) -> dict[str, set[str]]:
    """Per module of the product's packages and the studies, the modules of them it imports
    (at any depth of its code, type-checking blocks included)."""
    paths = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for package in PRODUCT + STUDIES
        for path in sorted((root / package).rglob("*.py"))
    }
    edges: dict[str, set[str]] = {}
    for module, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named = {f"{node.module}.{alias.name}" for alias in node.names}
                found |= ({node.module} | named) & paths.keys()
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names} & paths.keys()
        edges[module] = found - {module}
    return edges


def import_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of modules importing each other (``a -> b -> a``), or [] where none does."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str]:
        for other in sorted(edges.get(module, ())):
            if other in path:
                return [*path[path.index(other) :], other]
            if other not in done:
                found = visit(other, [*path, other])
                if found:
                    return found
        done.add(module)
        return []

    for module in sorted(edges):
        found = visit(module, [module])
        if found:
            return found
    return []


def test_no_module_imports_one_that_imports_it_back():
    assert import_cycle(module_imports(ROOT)) == []


def room_imports(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with each sub-package's modules as one node (``benchmarks.measuring``);
    a module at a package's top (``benchmarks.plugin``, ``pipelines.steps``) is its own."""

    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 else module

    rooms: dict[str, set[str]] = {}
    for module, imported in edges.items():
        rooms.setdefault(room(module), set()).update(
            room(other) for other in imported if room(other) != room(module)
        )
    return rooms


def test_no_room_imports_one_that_imports_it_back():
    """measuring, diagnosing, judging, report, run: each only below the next."""
    assert import_cycle(room_imports(module_imports(ROOT))) == []


def test_the_check_finds_rooms_importing_each_other_through_different_modules(tmp_path):
    for room, module, imported in (("a", "one", "b.two"), ("b", "three", "a.four")):
        (tmp_path / "benchmarks" / room).mkdir(parents=True)
        (tmp_path / "benchmarks" / room / f"{module}.py").write_text(
            f"from benchmarks.{imported} import thing\n"
        )
    (tmp_path / "benchmarks" / "a" / "four.py").write_text("thing = 1\n")
    (tmp_path / "benchmarks" / "b" / "two.py").write_text("thing = 2\n")
    edges = module_imports(tmp_path)
    assert import_cycle(edges) == []
    assert import_cycle(room_imports(edges)) == ["benchmarks.a", "benchmarks.b", "benchmarks.a"]


def test_the_check_finds_an_import_cycle_through_a_type_checking_block(tmp_path):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "a.py").write_text("from pipelines.b import thing\n")
    (tmp_path / "pipelines" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipelines import a\n"
    )
    assert import_cycle(module_imports(tmp_path)) == ["pipelines.a", "pipelines.b", "pipelines.a"]


def test_no_function_is_longer_than_the_style_allows():
    assert long_functions(ROOT) == []


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "long.py").write_text(f"def long():\n{body}\n")
    expected = f"pipelines/long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"
    assert long_functions(tmp_path) == [expected]


def imports_of_the_studies(edges: dict[str, set[str]]) -> list[str]:
    """``module -> study`` for every module of the product that imports one of the studies."""
    return [
        f"{module} -> {other}"
        for module, imported in sorted(edges.items())
        if module.split(".")[0] in PRODUCT
        for other in sorted(imported)
        if other.split(".")[0] in STUDIES
    ]


def test_what_a_user_runs_imports_none_of_the_suites_own_studies():
    edges = module_imports(ROOT)
    assert any(module.startswith("trials.") for module in edges), "trials/ was not read"
    assert imports_of_the_studies(edges) == []
    # The check sees such an import.
    edges["benchmarks.plugin"] = {*edges["benchmarks.plugin"], "trials.inject"}
    assert imports_of_the_studies(edges) == ["benchmarks.plugin -> trials.inject"]


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


def test_pipelines_is_rooms_each_saying_what_it_holds():
    rooms = [p for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").exists()]
    assert {"observing", "data", "sources", "checks"} <= {room.name for room in rooms}
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


def metric_literals(root: Path) -> list[str]:
    """``path:line name`` for every declared metric's name (or its interval's key) written
    as a string under ``root``'s benchmarks/ outside `benchmarks.saving.metrics`, in code
    or in the report's templates. `Kind`'s values are benchmark kinds, not figures."""
    from benchmarks.saving.metrics import DECLARED
    from benchmarks.saving.schema import Kind

    names = (set(DECLARED) | {f"{name}_ci" for name in DECLARED}) - {kind.value for kind in Kind}
    found = []
    for path in sorted(
        path for top in ("benchmarks", *STUDIES) for path in (root / top).rglob("*.py")
    ):
        if path.parts[-2:] == ("saving", "metrics.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value}")
    for path in sorted((root / "benchmarks").rglob("*.j2")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for name in names:
                if f'"{name}"' in line or f".{name} " in line or f".{name})" in line:
                    found.append(f"{path.relative_to(root)}:{number} {name}")
    return found


def test_every_figure_is_read_through_its_declaration():
    assert metric_literals(ROOT) == []


def test_the_check_finds_a_figure_read_by_its_name(tmp_path):
    (tmp_path / "benchmarks" / "report" / "templates").mkdir(parents=True)
    (tmp_path / "benchmarks" / "report" / "page.py").write_text(
        'ratio = info.get("steady_fraction_of_ceiling")\nlow = info["epoch_s_ci"][0]\n'
    )
    (tmp_path / "benchmarks" / "report" / "templates" / "t.j2").write_text(
        "{{ row.info.examples_per_s }}\n"
    )
    assert metric_literals(tmp_path) == [
        "benchmarks/report/page.py:1 steady_fraction_of_ceiling",
        "benchmarks/report/page.py:2 epoch_s_ci",
        "benchmarks/report/templates/t.j2:1 examples_per_s",
    ]
