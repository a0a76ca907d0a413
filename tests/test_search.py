"""edge search, the fast parts: the model config hook, the space table, bad input, the estimates that
reject before training, constraints, the Pareto front and recommendation, stale-trial recovery."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from search_helpers import run_search

from edge.config import RunConfig, load_config
from edge.errors import ConfigError
from edge.search import constraints as cons
from edge.search.estimate import DataShape, estimate
from edge.search.pareto import front, recommended, rows_of, write_outputs
from edge.search.space import SPACE, default_params, settings_of
from edge.search.storage import open_storage, recover
from edge.training.prune_plan import spec_macs, spec_params
from edge.vit_spec import family_spec

VIT = ["model.name=vit_lite_s"]  # the figures below are the patch tokenizer's, whatever the default model is


def test_model_widths_override_the_family_member_and_default_to_it():
    name = RunConfig().model.name
    assert RunConfig().model.spec(64, 1, 2, ["a", "b"]) == family_spec(name, 64, 1, 2, ["a", "b"])
    spec = load_config(overrides=[*VIT, "model.embed_dim=48", "model.depth=2", "model.num_heads=2",
                                  "model.patch_size=16", "model.mlp_ratio=3.0"]).model.spec(48, 1, 2)
    assert (spec.name, spec.embed_dim, spec.patch_size, len(spec.blocks)) == ("vit_lite_s-p16-e48-d2-h2-r3", 48, 16, 2)
    assert (spec.blocks[0].num_heads, spec.blocks[0].head_dim, spec.blocks[0].mlp_hidden) == (2, 24, 144)
    with pytest.raises(ConfigError, match=r"model\.embed_dim 64 is not a multiple of model\.num_heads 3"):
        load_config(overrides=[*VIT, "model.embed_dim=64"]).model.spec(64, 1, 2)
    with pytest.raises(ConfigError, match=r"data\.image_size 48 is not a multiple of model\.patch_size 32"):
        load_config(overrides=[*VIT, "model.patch_size=32"]).model.spec(48, 1, 2)


def test_the_warm_start_is_the_default_pipeline_and_every_choice_makes_a_model():
    config, default = load_config(overrides=settings_of(default_params())), RunConfig()
    assert config.model.spec(64, 1, 2) == default.model.spec(64, 1, 2)
    assert (config.prune, config.qat, config.data.image_size or 64) == (default.prune, default.qat, 64)
    by_name = {d.name: d.labels() for d in SPACE}
    assert all(e % h == 0 for e in by_name["embed_dim"] for h in by_name["num_heads"])
    assert all(i % p == 0 for i in by_name["image_size"] for p in by_name["patch_size"])


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "nope"], "error: --target: unknown target 'nope'"),
    (["--device", "nope"], "error: --device: no device profile named 'nope'"),
    (["--min-lifetime", "1x"], "error: --min-lifetime: cannot read duration '1x'"),
    (["--budget=-5m"], "edge search: error: argument --budget: must be a positive duration such as 30m, 2h or 90s, "
                       "got '-5m'"),
    (["--budget", "0h"], "edge search: error: argument --budget: must be a positive duration such as 30m, 2h or 90s, "
                         "got '0h'"),
    (["--trials", "0"], "edge search: error: argument --trials: must be at least 1, got 0"),
    (["--study", "ftp://host/x"], "error: --study: cannot read study storage 'ftp://host/x'"),
    (["--export", "BEST"], "no search in run 'default'"),
])
def test_bad_input_exits_2_with_the_flag_named_and_saves_nothing(tmp_path, args, message):
    result = run_search(tmp_path, *args, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_estimates_reject_what_cannot_fit_before_any_training():
    ok = estimate(load_config(overrides=VIT), DataShape(1, 2), math.inf)
    default = family_spec("vit_lite_s", 64, 1, 2)
    assert ok.reason is None and cons.feasible(ok.constraints)
    assert (ok.figures["params"], ok.figures["macs"]) == (spec_params(default), spec_macs(default))
    assert ok.figures["pruned_params"] == 57_468  # the prune stage's plan: the README's pruned model
    small = estimate(load_config(overrides=[*VIT, "target=cortex-m0plus"]), DataShape(1, 2), math.inf)
    assert small.reason == ("flash: needs at least 216,380 B, target 'cortex-m0plus' has 131,072 B; "
                            "RAM: needs at least 40,630 B, target 'cortex-m0plus' has 36,864 B")
    assert cons.violated(small.constraints) == ["flash", "ram"]
    energy = estimate(load_config(overrides=VIT), DataShape(1, 2), 100.0)
    assert cons.violated(energy.constraints) == ["lifetime"] and energy.reason.startswith("energy: at least 506 uJ")
    bad = estimate(load_config(overrides=[*VIT, "model.embed_dim=64"]), DataShape(1, 2), math.inf)
    assert bad.reason == "invalid settings: model.embed_dim 64 is not a multiple of model.num_heads 3"
    tight = estimate(load_config(overrides=[*VIT, "model.embed_dim=24", "model.depth=2", "data.image_size=32"]),
                     DataShape(1, 2), math.inf)
    assert tight.reason.startswith("prune: pruning budget cannot be met") and cons.violated(tight.constraints) == [
        "valid"]


def _study(tmp_path, rows):
    storage, _ = open_storage(None, tmp_path / "search")
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    dist = {"image_size": CategoricalDistribution([32, 48, 64])}
    for size, values, constraints, extra in rows:
        study.add_trial(create_trial(values=list(values), params={"image_size": size}, distributions=dist,
                                     user_attrs={"constraints": constraints, **extra}))
    return study


def test_front_and_recommendation_take_only_measured_feasible_trials(tmp_path):
    feasible = {name: -0.1 for name in cons.NAMES}
    study = _study(tmp_path, [
        (64, (0.92, 7000.0), feasible, {"warm_start": "default"}),
        (48, (0.93, 4000.0), feasible, {}),
        (32, (0.93, 3000.0), feasible, {}),  # as accurate, less energy: recommended
        (32, (0.95, 900.0), {**feasible, "flash": 0.2}, {}),  # infeasible, however good
        (32, (0.0, 10.0), {"valid": 1.0}, {"rejected": "invalid settings"}),  # never trained
        (48, (0.90, 2000.0), feasible, {}),
    ])
    rows = rows_of(study)
    assert [r["number"] for r in front(rows)] == [5, 2]
    assert recommended(rows)["number"] == 2
    assert rows[4]["val_int8_top1"] is None and not rows[4]["feasible"]
    files = write_outputs(rows, tmp_path, "test", {"study": "s"})
    data = json.loads(files["json"].read_text())
    assert data["recommended"]["number"] == 2 and len(data["trials"]) == 6
    assert files["csv"].read_text().splitlines()[0].startswith("number,state,feasible,val_int8_top1,energy_uJ")
    assert len(files["trials_csv"].read_text().splitlines()) == 7
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trial_of_a_killed_worker_is_failed_and_enqueued_again(tmp_path):
    storage, _ = open_storage(None, tmp_path / "search")
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    import psutil

    started = psutil.Process(dead.pid).create_time()
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    alive = {"host": os.uname().nodename, "pid": os.getpid(), "pid_started": psutil.Process().create_time(),
             "heartbeat": time.time()}
    for owner in ({**alive, "pid": dead.pid, "pid_started": started}, alive):
        trial = study.ask({"image_size": CategoricalDistribution([32, 64])})
        for key, value in owner.items():
            trial.set_user_attr(key, value)
    assert recover(study) == [0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    assert trials[2].user_attrs["retry_of"] == 0 and trials[2].params == {} and recover(study) == []
    assert study._storage.get_trial(trials[2]._trial_id).system_attrs["fixed_params"] == trials[0].params
