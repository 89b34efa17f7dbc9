"""The HTML report: built from real saved runs, never touching them; checked in a browser."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bench_runner import (
    NO_ACCURACY_FLOOR,
    ROOT,
    fingerprint,
    run_benchmarks,
    run_main,
    small_data,
)
from browser import check_page, find_chromium

from benchmarks.judging.gates import load_thresholds
from benchmarks.measuring.cores import default_model_threads
from benchmarks.report import page as report
from benchmarks.saving import schema
from pipelines import DataError

# A minute or more in all: the test job starts this module first (conftest.py).
pytestmark = pytest.mark.slow

NANOSECOND_US = 1e-3
TRACED = (
    "test_training or test_ceiling or test_timeline or test_tracing_overhead or test_suggestions"
    " or test_profiler_capture"
)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Path:
    """A real benchmark run of cache and optimized, traced, profiled and its suggestions
    verified, saved and reported (on the small set: its figures are not judged here)."""
    tmp_path = tmp_path_factory.mktemp("report")
    done = run_benchmarks(
        tmp_path,
        "--benchmark-autosave",
        "--perf-verify-suggestions",
        "--perf-profiler",
        "--perf-report",
        str(tmp_path / "run.html"),
        select=TRACED,
        variants="cache,optimized",
        data=small_data(),
        thresholds_text=NO_ACCURACY_FLOOR,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"performance report: {tmp_path / 'run.html'}" in done.stdout
    return tmp_path


def test_each_traced_run_is_a_trace_file_the_report_links(bench_run):
    trace = json.loads((bench_run / "traces" / "optimized.trace.json").read_text())
    events = trace["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"open", "read", "map(augment)", "wait for input", "train step"} <= tracks
    stages = {e["name"] for e in events if e["ph"] == "X"}
    assert {"read", "map(augment)", "train step", "epoch 1"} <= stages
    page = (bench_run / "run.html").read_text()
    assert 'href="traces/optimized.trace.json"' in page
    assert 'href="traces/cache.trace.json"' in page


def test_a_trace_file_keeps_the_rules_a_trace_viewer_loads_it_by(bench_run):
    # What Perfetto's and chrome://tracing's JSON importers need: every event
    # with its phase, pid, tid and a numeric time; complete events with a
    # duration; slices on one track nested, never partly overlapping (an
    # importer drops those). Every stage of the traced run has its track.
    # (Perfetto's own trace processor is a binary its Python package downloads
    # on first use; nothing is downloaded here.)
    trace = json.loads((bench_run / "traces" / "optimized.trace.json").read_text())
    saved = json.loads(next(storage_of(bench_run).glob("*/0001_*.json")).read_text())
    (timeline,) = [
        b["extra_info"]["timeline"]
        for b in saved["benchmarks"]
        if b["extra_info"]["kind"] == "timeline" and b["extra_info"]["variant"] == "optimized"
    ]
    events = trace["traceEvents"]
    for event in events:
        assert {"ph", "pid", "name"} <= set(event), event
        assert event["ph"] in {"X", "M", "i", "I", "C"}, event
        if event["ph"] == "X":
            assert "tid" in event, event
            assert isinstance(event["ts"], int | float) and event["dur"] >= 0, event
        elif event["ph"] == "M":
            # Metadata: a process's or a thread's (a track's) name.
            assert event["name"] in {"process_name", "thread_name", "thread_sort_index"}, event
            assert "tid" in event or event["name"] == "process_name", event
    tracks = {e["args"]["name"].split(" #")[0] for e in events if e["name"] == "thread_name"}
    assert {stage["name"] for stage in timeline["stages"]} <= tracks
    complete = [e for e in events if e["ph"] == "X"]
    for track in {(e["pid"], e["tid"]) for e in complete}:
        slices = sorted(
            (e["ts"], e["ts"] + e["dur"]) for e in complete if (e["pid"], e["tid"]) == track
        )
        open_ends: list[float] = []
        for start, end in slices:
            # Within a nanosecond (a viewer's resolution) counts as touching.
            while open_ends and open_ends[-1] <= start + NANOSECOND_US:
                open_ends.pop()
            assert not open_ends or end <= open_ends[-1] + NANOSECOND_US, (track, start, end)
            open_ends.append(end)


def test_each_suggestion_is_verified_and_reported(bench_run):
    saved = json.loads(next(storage_of(bench_run).glob("*/0001_*.json")).read_text())
    verified = {
        b["extra_info"]["variant"]: b["extra_info"]
        for b in saved["benchmarks"]
        if b["extra_info"]["kind"] == "suggestions"
    }
    assert "cache" in verified, saved["benchmarks"]
    page = (bench_run / "run.html").read_text()
    for info in verified.values():
        assert info["verdict"] in page
        for line in info["verified_suggestions"]:
            if line["contract"] == "contract kept":
                # Timed in the run's two passes, paired, with an interval.
                assert line["speedup"]["n"] == 2 and len(line["speedup"]["ci"]) == 2
            else:
                assert line["speedup"] is None
            assert line["label"] in page


def test_every_saved_benchmark_says_what_it_is(bench_run):
    saved = json.loads(next(storage_of(bench_run).glob("*/0001_*.json")).read_text())
    kinds = {(b["extra_info"]["kind"], b["extra_info"]["variant"]) for b in saved["benchmarks"]}
    captures = {("profiler_capture", "cache"), ("profiler_capture", "optimized")}
    assert {*captures, ("suggestions", "cache")} <= kinds
    # The run's profile name is not hidden by the capture's folder.
    assert {b["extra_info"]["profile"] for b in saved["benchmarks"]} == {"smoke"}


def test_each_traced_variant_has_a_profiler_capture_the_report_links(bench_run):
    for variant in ("cache", "optimized"):
        captures = list((bench_run / "profiles" / variant).glob("plugins/profile/*/*.xplane.pb"))
        assert len(captures) == 1 and captures[0].stat().st_size > 0
        assert f'href="profiles/{variant}/"' in (bench_run / "run.html").read_text()


def storage_of(tmp_path: Path) -> Path:
    return tmp_path / "storage"


def build(storage: Path, output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.report`` as a user runs it."""
    command = [sys.executable, "-m", "benchmarks.report", "--storage", str(storage)]
    command += ["--output", str(output), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT)


def build_here(
    capsys: pytest.CaptureFixture[str], storage: Path, output: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`build`'s command in this process (`bench_runner.run_main`); `build` checks the
    entry point itself."""
    return run_main(capsys, report.main, "--storage", str(storage), "--output", str(output), *args)


def test_the_run_saves_timelines_bottlenecks_and_the_overhead(bench_run):
    saved = json.loads(next(storage_of(bench_run).glob("*/0001_*.json")).read_text())
    infos = {(b["extra_info"]["kind"], b["extra_info"]["variant"]): b for b in saved["benchmarks"]}
    cache = infos[("timeline", "cache")]["extra_info"]
    # The cache's second epoch: no open, read or decode; augment and training go on.
    for stage in ("open", "read", "map(decode)"):
        assert cache["timeline"]["busy_s"][0][stage] > 0
        assert cache["timeline"]["busy_s"][1][stage] == 0
    assert cache["timeline"]["busy_s"][1]["map(augment)"] > 0
    assert cache["bottleneck"]["classification"].endswith("input-bound")
    overhead = infos[("tracing_overhead", "optimized")]["extra_info"]
    # Paired within each of the two passes, with an interval.
    assert len(overhead["traced_s"]) == len(overhead["untraced_s"]) == 2
    assert len(overhead["tracing_overhead"]["ci"]) == 2
    # The core budget is in force, and recorded.
    assert overhead["model_threads"] == default_model_threads()
    assert -0.5 < overhead["tracing_cpu_overhead"] < 1.0  # a ratio - 1, of real CPU times
    optimized = infos[("training", "optimized")]["extra_info"]
    ceiling = infos[("ceiling", "ceiling")]["extra_info"]
    assert optimized["cpu_s"] > 0 and ceiling["cpu_s"] > 0
    assert optimized["pipeline_cpu_s"] == pytest.approx(optimized["cpu_s"] - ceiling["cpu_s"])
    assert saved["perf_gates"]["checked"] == ["cache", "optimized"]
    # tf.data's runtime statistics, read in every timed epoch, with the variant's names.
    runtime = optimized["runtime"]
    assert len(runtime["busy_by_epoch"]) == len(optimized["epoch_times_s"])
    assert {"map(decode)", "map(augment)", "prefetch"} <= set(runtime["kinds"])
    assert runtime["tuned"]["prefetch"] == ["buffer_size"]
    assert runtime["limiting"] in runtime["shares"] and runtime["readings"] > 0
    # What reading it costs: the training against its unobserved twin, pass by pass.
    assert len(optimized["runtime_overhead"]["samples"]) == 2
    overhead, ratio = optimized["runtime_overhead"], optimized["observed_over_unobserved"]
    assert overhead["value"] == pytest.approx(ratio["value"] - 1)


def test_the_report_of_a_run_has_every_part(bench_run):
    page = (bench_run / "run.html").read_text()
    for part in (
        'id="summary"',
        'id="variants"',
        'id="phases"',
        "epoch start s",
        "steady examples/s",
        'id="throughput"',
        'id="accuracy"',
        'id="bottlenecks"',
        'id="history"',
        'id="suggestions"',
        "timeline of optimized",
        "input and compute per train step of optimized",
        "timeline of cache",
        "Tracing overhead",
        'id="runtime"',
        "optimized: busiest stage",
        "Reading the statistics cost",
        "One run so far",
        "2 randomized interleaved passes",
        # Each variant's steps, as its run saved them.
        '<div class="muted steps">interleave -&gt; batch -&gt; map(decode, parallel)',
    ):
        assert part in page, part
    # Throughput, accuracy, and per traced variant its timeline and its steps.
    assert page.count("data:image/png;base64,") == 6
    assert "http://" not in page and "https://" not in page  # nothing to fetch


def test_a_rebuilt_report_leaves_storage_untouched(bench_run, tmp_path):
    before = fingerprint(storage_of(bench_run))
    done = build(storage_of(bench_run), tmp_path / "again.html")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"performance report: {tmp_path / 'again.html'}"
    assert fingerprint(storage_of(bench_run)) == before


def make_history(bench_run: Path, tmp_path: Path) -> Path:
    """Storage with the real run and a second one whose cache throughput halved."""
    storage = tmp_path / "storage"
    shutil.copytree(storage_of(bench_run), storage)
    first = next(storage.glob("*/0001_*.json"))
    run = json.loads(first.read_text())
    second = copy.deepcopy(run)
    second["datetime"] = "2099-01-01T00:00:00"
    for bench in second["benchmarks"]:
        info = bench["extra_info"]
        if info["kind"] == "training" and info["variant"] == "cache":
            figure = info["fraction_of_ceiling"]  # beyond max_throughput_drop:
            figure["value"] *= 0.3
            figure["samples"] = [x * 0.3 for x in figure.get("samples", [])]
    (first.parent / first.name.replace("0001_", "0002_")).write_text(json.dumps(second))
    return storage


def test_history_across_runs_marks_a_regression(bench_run, tmp_path):
    storage = make_history(bench_run, tmp_path)
    thresholds = load_thresholds(report.DEFAULT_THRESHOLDS)
    views = report.load_views(storage)
    marks = report.regressions(views, thresholds)
    assert marks["fraction_of_ceiling"] == {"cache": [1]}
    assert marks["test_accuracy"] == {}
    target = report.write_report(tmp_path / "history.html", storage, thresholds=thresholds)
    page = target.read_text()
    assert "2 runs." in page
    assert "cache: fraction of the ceiling regressed in run 0002" in page
    # Plus a trend per metric the runs have: examples/s, fraction of the ceiling,
    # accuracy (no naive in these runs: no speedup over it).
    assert page.count("data:image/png;base64,") == 9
    for axis in ("training throughput", "fraction of the ceiling", "final test accuracy"):
        assert f'alt="{axis} across runs"' in page


def test_no_saved_runs_is_one_line(tmp_path, capsys):
    done = build_here(capsys, tmp_path / "empty", tmp_path / "out.html")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'empty'}: no saved runs to report on"
        " (save one: python3 tasks.py bench)"
    )
    assert not (tmp_path / "out.html").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"benchmarks": [{"name": "x", "extra', "saved run is not valid JSON"),
        ('{"machine_info": {}}', "not a pytest-benchmark run (no 'benchmarks' list)"),
    ],
)
def test_a_broken_run_file_is_named_and_the_old_report_kept(
    bench_run, tmp_path, capsys, content, problem
):
    storage = make_history(bench_run, tmp_path)
    broken = next(storage.glob("*/0002_*.json"))
    broken.write_text(content)
    old = tmp_path / "old.html"
    old.write_text("the previous report")
    done = build_here(capsys, storage, old)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {broken}: {problem}")
    assert "Traceback" not in done.stderr
    assert old.read_text() == "the previous report"
    assert broken.read_text() == content


def test_an_unknown_run_is_one_line(bench_run, tmp_path, capsys):
    done = build_here(capsys, storage_of(bench_run), tmp_path / "out.html", "--run", "42")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: --run: no saved run '42' under {storage_of(bench_run)}"
    )


def test_reading_a_run_names_the_file_on_every_problem(tmp_path):
    path = tmp_path / "0001_x.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=f"^{path}: saved run is not text"):
        schema.load(path)


@pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH (apt install chromium)")
def test_the_report_renders_in_a_real_browser(bench_run, tmp_path):
    storage = make_history(bench_run, tmp_path)
    target = report.write_report(
        tmp_path / "browser.html", storage, thresholds=load_thresholds(report.DEFAULT_THRESHOLDS)
    )
    page = check_page(target, find_chromium())
    assert page.errors == []
    assert page.images == 9 and page.images_loaded == 9
    assert page.title.startswith("tf.data performance report")
    assert "Timelines and bottlenecks" in page.text


def test_the_report_says_how_the_stages_inside_a_function_were_seen():
    inside = [
        {"name": "open", "kind": "open", "observed": True},
        {"name": "map(sharpen)", "kind": "map", "observed": True},
        {"name": "batch", "kind": "batch", "observed": True},
    ]
    said = report.stages_seen(inside)
    assert "from the tf.data calls it made while it built: open, map(sharpen), batch" in said
    assert report.stages_seen([{"name": "map(decode)", "kind": "map"}]) == ""  # steps
    outside = report.stages_seen([{"name": "function(mine)", "kind": "function"}])
    assert "timed from outside only" in outside
