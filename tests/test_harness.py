"""The trial tools' harness: a run of the suite that did not finish is one error naming
its exit and its log (a run that did is tested through `trials.ab`)."""

from __future__ import annotations

import pytest

from trials.harness import RunFailed, run_suite


def test_a_run_that_did_not_finish_names_its_exit_and_its_log(tmp_path):
    log = tmp_path / "run.log"
    with pytest.raises(RunFailed, match=rf"exit 4\); its output: {log}"):
        run_suite(["--no-such-option"], tmp_path / "run.json", log, cwd=tmp_path)
    assert "--no-such-option" in log.read_text()
