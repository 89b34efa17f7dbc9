"""A user's own registrations (variants, transforms), loaded from their folder.

One way for every entry point: ``pytest ... --perf-plugin FILE_OR_MODULE``
(benchmarks and property tests), ``python -m models.train --plugin ...`` and
``python -m benchmarks.report --plugin ...``. A plugin is a Python file (or
a module importable from the current folder) whose top level calls
`pipelines.register` and `pipelines.register_transform`; its own folder is
put on the import path, so it can import the user's other modules.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from pipelines.errors import UsageError


def load_plugin(spec: str, option: str = "--perf-plugin") -> ModuleType:
    """Import ``spec``: a ``.py`` file's path, or a module name. Raises `UsageError` in
    one line naming it when it is missing or fails to import."""
    where = f"{option} {spec}"
    path = Path(spec).expanduser()
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise UsageError(where, "no such file")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        return _import(where, path.stem, lambda: _from_file(path))
    return import_user_module(spec, where)


def import_user_module(name: str, where: str) -> ModuleType:
    """Import a user's module ``name`` (the current folder on the path); a failure of
    any kind is a `UsageError` in one line, naming ``where`` it was asked for."""
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    return _import(where, name, lambda: importlib.import_module(name))


def import_file(path: Path, module_name: str, where: str, shown: str) -> ModuleType:
    """Import the file ``path`` as module ``module_name`` (once); a failure of any kind
    is a `UsageError` in one line naming ``where`` and ``shown``."""
    return _import(where, shown, lambda: _from_file(path, module_name))


def _from_file(path: Path, name: str | None = None) -> ModuleType:
    name = name or f"perf_plugin_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import(where: str, name: str, load) -> ModuleType:
    try:
        return load()
    except Exception as error:  # a user's module: any failure is one line
        raise UsageError(
            where, f"importing {name} failed: {type(error).__name__}: {error}"
        ) from None


def load_plugins(specs: Iterable[str], option: str = "--perf-plugin") -> list[ModuleType]:
    """`load_plugin` each of ``specs``, in order."""
    return [load_plugin(spec, option) for spec in specs]


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """``--plugin FILE_OR_MODULE`` (repeatable) for a command line entry point."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="FILE_OR_MODULE",
        help="load your own registrations (variants, transforms) first; repeat for several",
    )
