"""A user's registrations, loaded from their own folder by every entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from bench_runner import ROOT, small_data

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

# A user's file, in their own folder: one variant of their own.
USER_VARIANTS = textwrap.dedent(
    """
    import pipelines
    from pipelines.steps import Batch, Map, Read
    from pipelines.variants import Contract, Variant

    pipelines.register(Variant(
        "lab_plain",
        (Read(), Map(("decode", "standardize")), Batch()),
        Contract(),
        "the user's own: read, decode, batch",
    ))
    """
)


@pytest.fixture
def user_folder(tmp_path):
    (tmp_path / "my_variants.py").write_text(USER_VARIANTS)
    (tmp_path / "broken.py").write_text("raise ValueError('half-written')\n")
    return tmp_path


def run(folder, *command: str) -> subprocess.CompletedProcess[str]:
    # The suite on the path as `tasks.py` puts it there for its venv (`link_repository`),
    # whatever environment runs these tests.
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, cwd=folder, timeout=600, env=env
    )


def run_pytest(folder, target: str, *options: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``target`` from ``folder``, quiet and leaving no cache behind."""
    return run(folder, "-m", "pytest", target, "-q", "-p", "no:cacheprovider", *options)


def test_the_property_tests_check_a_variant_loaded_from_the_users_folder(user_folder):
    contracts = str(ROOT / "tests" / "test_contracts.py")
    done = run_pytest(user_folder, contracts, "--perf-plugin", "my_variants.py", "-k", "lab_plain")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    # Without it the variant is not there: nothing runs (pytest's exit 5).
    done = run_pytest(user_folder, contracts, "-k", "lab_plain")
    assert done.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, done.stdout[-2000:]


def test_training_and_the_report_load_the_same_file(user_folder):
    done = run(
        user_folder,
        "-m",
        "models.train",
        "--plugin",
        "my_variants.py",
        "--variant",
        "lab_plain",
        "--epochs",
        "1",
        "--data",
        str(small_data()),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("variant  lab_plain: read -> ")
    thresholds = user_folder / "thresholds.toml"
    thresholds.write_text("[variants.lab_plain]\nmin_speedup = 1.0\n")
    report = ["-m", "benchmarks.report", "--storage", str(user_folder / "none")]
    report += ["--thresholds", str(thresholds), "--output", str(user_folder / "r.html")]
    done = run(user_folder, *report)
    assert "unknown variant 'lab_plain'" in done.stderr
    # With the plugin the thresholds are valid; what is missing now is a saved run.
    done = run(user_folder, *report, "--plugin", "my_variants.py")
    assert done.returncode == 1 and "no saved runs to report on" in done.stderr, done.stderr


def test_a_broken_or_missing_plugin_is_one_line(user_folder):
    contracts = str(ROOT / "tests" / "test_contracts.py")
    done = run(user_folder, "-m", "pytest", contracts, "-q", "--perf-plugin", "broken.py")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert (
        "ERROR: --perf-plugin broken.py: importing broken failed: ValueError: half-written"
        in done.stderr.splitlines()
    ), done.stderr[-2000:]
    done = run(user_folder, "-m", "models.train", "--plugin", "nothere.py")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: --plugin nothere.py: no such file"
    assert "Traceback" not in done.stderr


def test_a_conftest_pytest_would_ignore_gets_a_warning(user_folder):
    (user_folder / "conftest.py").write_text(USER_VARIANTS)
    contracts = str(ROOT / "tests" / "test_contracts.py")
    done = run(
        user_folder, "-m", "pytest", contracts, "-q", "-p", "no:cacheprovider", "-k", "lab_plain"
    )
    assert f"{user_folder / 'conftest.py'} is not loaded" in done.stdout + done.stderr
    assert f"--perf-plugin {user_folder / 'conftest.py'}" in done.stdout + done.stderr


def test_a_plugin_that_makes_a_tensor_as_it_loads_does_not_block_the_core_budget(user_folder):
    # A module-level tensor starts TensorFlow's runtime while the file loads; the model's
    # threads must already be set by then, or every benchmark run stops at collection.
    (user_folder / "with_tensor.py").write_text(
        f"import tensorflow as tf\nSCALE = tf.constant(2.0)\n{USER_VARIANTS}"
    )
    done = run_pytest(
        user_folder,
        str(ROOT / "benchmarks"),
        "--collect-only",
        *("--perf-plugin", "with_tensor.py", "--perf-variants", "lab_plain"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_training[lab_plain]" in done.stdout
