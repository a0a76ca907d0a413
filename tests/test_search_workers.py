"""edge search with real worker processes: two workers share one study; a killed search continues; the
recommended trial becomes a normal run that passes the export gates and the battery check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState
from search_helpers import TINY, run_search, search_cmd, study_of

from edge.search.space import default_params

#: 50 years is beyond what the camera trap's cells give even with free inference: every trial is rejected
#: before training (the lifetime budget is 0 uJ), so a trial takes milliseconds and the workers race.
IMPOSSIBLE = ["--min-lifetime", "50y", *TINY]


def test_two_workers_share_one_study_with_no_trial_duplicated_or_lost(tmp_path):
    result = run_search(tmp_path, "--workers", "2", "--trials", "12", *IMPOSSIBLE)
    assert result.returncode == 1, result.stderr  # the verdict: nothing feasible
    assert "lifetime allows up to 0 uJ per inference (estimated)" in result.stderr
    assert "[search] verdict: no trial met every limit yet" in result.stderr
    trials = study_of(tmp_path, "default").get_trials()
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    reasons = [t.user_attrs["rejected"] for t in trials]
    assert all("energy: at least" in r or r.startswith("prune: pruning budget cannot be met") for r in reasons)
    for t in trials:  # what Optuna's sampler reads
        assert t.system_attrs["constraints:lifetime"] == 1.0 or t.system_attrs["constraints:valid"] == 1.0
    assert trials[0].params == default_params() and "warm_start" in trials[0].user_attrs
    pids = [t.user_attrs["pid"] for t in trials]
    assert sorted(pids.count(p) for p in set(pids)) == [6, 6]  # each worker its share, no trial twice
    search = tmp_path / "runs" / "default" / "search"
    assert sorted(int(p.name) for p in (search / "trials").iterdir()) == list(range(12))
    for n in range(12):
        assert f"[search] trial {n}: " in (search / "trials" / str(n) / "log.txt").read_text()
    assert len((search / "trials.csv").read_text().splitlines()) == 13
    assert sum(line.startswith("[search] trial ") for line in result.stderr.splitlines()) == 12

    again = run_search(tmp_path, "--workers", "2", "--trials", "12", *IMPOSSIBLE)
    assert again.returncode == 1 and "12 trials finished" in again.stderr and "0 trial(s) to go" in again.stderr
    assert len(study_of(tmp_path, "default").get_trials()) == 12


def test_a_search_with_other_settings_is_refused(tmp_path):
    assert run_search(tmp_path, "--trials", "1", *IMPOSSIBLE).returncode == 1
    other = run_search(tmp_path, "--trials", "1", *IMPOSSIBLE, "--set", "train.epochs=3")
    assert other.returncode == 2
    assert "error: --study: study 'edge-search-default' was started with other settings (settings differ)" in (
        other.stderr)


def _wait_for(path, proc, timeout_s=600):
    deadline = time.time() + timeout_s
    while not path.is_file():
        assert proc.poll() is None, "the search ended before training started"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_killed_search_continues_and_its_best_trial_becomes_a_normal_run(tmp_path):
    args = ["--trials", "2", "--no-fidelity", *TINY]
    env = {**os.environ, "NNCF_EXTENSION_LOAD_TIMEOUT": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(search_cmd(tmp_path, *args), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    search = tmp_path / "runs" / "default" / "search"
    _wait_for(search / "trials" / "0" / "epochs.jsonl", proc)  # trial 0 is training
    proc.send_signal(signal.SIGKILL)  # the coordinator dies; its worker gets SIGTERM (PR_SET_PDEATHSIG)
    proc.wait()
    deadline = time.time() + 120
    while study_of(tmp_path, "default").get_trials()[0].state == TrialState.RUNNING and time.time() < deadline:
        time.sleep(1)
    trials = study_of(tmp_path, "default").get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["failed"].startswith("interrupted")
    assert trials[1].state == TrialState.WAITING and trials[1].user_attrs["retry_of"] == 0

    resumed = run_search(tmp_path, *args, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr
    assert "[search] study 'edge-search-default' in " in resumed.stderr and "2 trial(s) to go" in resumed.stderr
    trials = study_of(tmp_path, "default").get_trials()
    assert trials[1].params == default_params() and trials[1].state == TrialState.COMPLETE
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 2
    pareto = json.loads((search / "pareto.json").read_text())
    best = pareto["recommended"]
    assert best is not None and best["feasible"] and best["figures"]["gate_passed"]

    exported = run_search(tmp_path, "--export", "BEST", "--to", "best", timeout=900)
    assert exported.returncode == 0, exported.stderr
    run = json.loads((tmp_path / "runs" / "best" / "manifest.json").read_text())
    assert "build_dir" not in run["settings"].get("export", {})
    assert {"export", "profile", "battery", "report"} <= set(run["stages"])
    assert (tmp_path / "build" / "cortex-m" / "model_int8.tflite").is_file()  # build/ next to runs/
    check = subprocess.run([sys.executable, "-m", "edge", "battery", "check", "--run", "best", "--runs-dir",
                            str(tmp_path / "runs")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stderr
