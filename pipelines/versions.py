"""A user's registrations at another version, beside the current ones (``--perf-against``).

"Did my change make it slower?" is best answered inside one run: base and head
timed in the same interleaved passes, with the same per-pass seeds, so that
the machine's drift between runs cannot enter the comparison. A user's
pipelines live in their own files (``--perf-plugin my_pipelines.py``), so the
base is those files as they were at a git ref of the repository that holds
them (or as they are in another folder). Each is loaded under a module name
of its own, and every variant it registers is renamed ``NAME@REF``; a
transform it registers under a name the current files use is renamed the
same way, and its variants' maps follow.

What is taken at the ref is the plugin file itself; modules it imports come
from the current folder (they are already imported under their names).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pipelines import registry, steps
from pipelines.errors import UsageError
from pipelines.plugins import import_file
from pipelines.variants import Variant

OPTION = "--perf-against"


def base_name(name: str, label: str) -> str:
    """The base version's name of variant ``name``: ``name@label``."""
    return f"{name}@{label}"


def label_of(against: str) -> str:
    """A short label for ``against`` (a ref, or a folder's name) usable in test ids."""
    path = Path(against)
    text = path.name if path.is_dir() else against
    return re.sub(r"[^\w.\-]", "_", text) or "base"


def base_source(plugin: Path, against: str) -> str:
    """The text of ``plugin`` at ``against``: a folder holding a file of the same name, or
    a git ref of the repository that holds ``plugin``. `UsageError` naming what is missing."""
    folder = Path(against).expanduser()
    if folder.is_dir():
        other = folder / plugin.name
        if not other.is_file():
            raise UsageError(f"{OPTION} {against}", f"no {plugin.name} in that folder")
        return other.read_text()
    where = plugin.resolve().parent
    top = _git(where, "rev-parse", "--show-toplevel", against=against).strip()
    relative = plugin.resolve().relative_to(Path(top).resolve()).as_posix()
    _git(where, "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}", against=against)
    return _git(where, "show", f"{against}:{relative}", against=against)


def _git(folder: Path, *args: str, against: str) -> str:
    """``git -C folder ARGS``'s output; a failure is one line naming the ref."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UsageError(f"{OPTION} {against}", "git is not installed") from None
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1]
        if args[0] == "rev-parse" and "--verify" in args:
            said = f"no commit {against!r} in {folder}"
        raise UsageError(f"{OPTION} {against}", said.removeprefix("fatal: "))
    return done.stdout


def load_base(plugins: Iterable[str], against: str) -> dict[str, str]:
    """Load each plugin file's version at ``against`` beside the current one.

    Returns current variant name -> its base's name, for every variant the base
    files register. A plugin given as a module name (not a file) is skipped:
    it has no file to take at a ref. Raises `UsageError` in one line (a ref or
    file that does not exist, a base that fails to import).
    """
    label = label_of(against)
    pairs: dict[str, str] = {}
    renamed_transforms: dict[str, str] = {}

    def rename(variant: Variant) -> Variant:
        pairs[variant.name] = base_name(variant.name, label)
        return dataclasses.replace(variant, name=pairs[variant.name])

    files = [Path(spec).expanduser() for spec in plugins if spec.endswith(".py")]
    with tempfile.TemporaryDirectory(prefix="perf-against-") as scratch:
        for plugin in files:
            copy = Path(scratch) / plugin.name
            copy.write_text(base_source(plugin, against))
            before = dict(steps.TRANSFORMS)
            with registry.renaming(rename):
                module_name = f"perf_plugin_{plugin.stem}@{label}"
                shown = f"{plugin.name} at the base"
                import_file(copy, module_name, f"{OPTION} {against}", shown)
            for name, factory in list(steps.TRANSFORMS.items()):
                if name in before and before[name] is not factory:
                    # The base redefined a current transform: both stay, each its own.
                    steps.TRANSFORMS[base_name(name, label)] = factory
                    steps.TRANSFORMS[name] = before[name]
                    renamed_transforms[name] = base_name(name, label)
    # The base's variants use the base's transforms, known only once it has loaded.
    for base in pairs.values():
        variant = registry.VARIANTS[base]
        fixed = tuple(_renamed_maps(step, renamed_transforms) for step in variant.steps)
        registry.VARIANTS[base] = dataclasses.replace(variant, steps=fixed)
    return pairs


def _renamed_maps(step: object, renamed: dict[str, str]) -> object:
    """``step`` with its transforms renamed where the base redefined them."""
    if isinstance(step, steps.Map) and any(name in renamed for name in step.transforms):
        names = tuple(renamed.get(name, name) for name in step.transforms)
        return dataclasses.replace(step, transforms=names)
    return step
