"""One search worker: a process that runs trials of the study until its share, the trial count or the
budget is reached. `edge search` starts N of them (`python -m edge.search.worker SPEC --n-trials K`);
each trial's output goes to `trials/<n>/log.txt`.

SIGTERM or SIGINT (and the death of `edge search`, through PR_SET_PDEATHSIG) interrupt the running trial:
its stage processes are ended, it is marked FAIL and enqueued again, and the worker exits 130. A worker
killed outright leaves its trial RUNNING; `edge search` started again fails and re-enqueues it
(`storage.recover`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, EdgeError


class SearchInterrupted(BaseException):
    """SIGTERM/SIGINT reached a worker (or its budget ran out): stop the trial, keep it for later."""


@dataclass(frozen=True)
class SearchSpec:
    """What every worker of one search shares (written by `edge search` to search/spec.json)."""

    study: str | None
    study_name: str
    search_dir: str
    base_settings: dict[str, Any]
    identity: dict[str, Any]
    seed: int
    channels: int
    num_classes: int
    energy_budget_uJ: float | None  # None: no limit from the lifetime target
    max_trials: int | None
    deadline: float | None  # time.time() at which the budget ends
    threads: int
    fidelity: bool = True

    @property
    def trials_dir(self) -> Path:
        """Where the trial runs live."""
        return Path(self.search_dir) / "trials"

    def save(self, path: Path) -> None:
        """Write as JSON."""
        from dataclasses import asdict

        from edge.atomic import atomic_write_json

        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> SearchSpec:
        """Read search/spec.json."""
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def trial_settings(spec: SearchSpec, params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The explicit settings of a trial's run: the search's base, the trial's parameters, its build folder and
    the torch threads a worker may use (unless the base sets them)."""
    from edge.config import user_settings
    from edge.search.space import settings_of

    overrides = [*settings_of(params), f"export.build_dir={(run_dir / 'build').resolve()}"]
    if "threads" not in spec.base_settings.get("train", {}):
        overrides.append(f"train.threads={spec.threads}")
    return user_settings(None, overrides, base=spec.base_settings)[0]


class Objective:
    """Optuna's objective: one trial, estimated first, then run as a normal pipeline run."""

    def __init__(self, spec: SearchSpec, study: Any, fidelity: Any | None) -> None:
        self.spec, self.study, self.fidelity = spec, study, fidelity

    def __call__(self, trial: Any) -> tuple[float, float]:
        import optuna

        from edge.search.space import suggest
        from edge.search.storage import heartbeat, owner_attrs
        from edge.search.trial import TrialPrunedError, redirect_output, restore_output

        run_dir = self.spec.trials_dir / str(trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = redirect_output(run_dir / "log.txt")
        try:
            for key, value in owner_attrs().items():
                trial.set_user_attr(key, value)
            params = suggest(trial)
            print(f"[search] trial {trial.number}: {json.dumps(params)}", file=sys.stderr, flush=True)
            with heartbeat(self.study, trial._trial_id):
                return self._evaluate(trial, params, run_dir)
        except TrialPrunedError as exc:
            trial.set_user_attr("pruned", str(exc))
            raise optuna.TrialPruned(str(exc)) from exc
        except SearchInterrupted:
            self._interrupted(trial)
            raise KeyboardInterrupt from None
        finally:
            sys.stderr.flush()
            restore_output(saved)

    def _evaluate(self, trial: Any, params: dict[str, Any], run_dir: Path) -> tuple[float, float]:
        from edge.search.constraints import record
        from edge.search.estimate import DataShape, estimate
        from edge.search.trial import run_trial, trial_config

        settings = trial_settings(self.spec, params, run_dir)
        try:
            config = trial_config(settings, f"trial {trial.number}")
        except ConfigError as exc:
            return self._reject(trial, f"invalid settings: {exc.message}", {"valid": 1.0}, {}, 0.0)
        budget = math.inf if self.spec.energy_budget_uJ is None else self.spec.energy_budget_uJ
        est = estimate(config, DataShape(self.spec.channels, self.spec.num_classes), budget)
        trial.set_user_attr("estimate", est.figures)
        if est.reason is not None:
            return self._reject(trial, est.reason, est.constraints, est.figures, est.energy_uJ)
        outcome = run_trial(run_dir, config, settings, self.fidelity)
        energy = outcome.energy_uJ or est.energy_uJ
        record(trial, outcome.constraints)
        trial.set_user_attr("figures", {**outcome.figures, "energy_basis": "measured" if outcome.energy_uJ else
                                        "MAC-only estimate (the model did not pass export)"})
        if outcome.note:
            trial.set_user_attr("note", outcome.note)
        return outcome.val_int8_top1, energy

    @staticmethod
    def _reject(trial: Any, reason: str, constraints: dict[str, float], figures: dict[str, Any],
                energy_uJ: float) -> tuple[float, float]:
        """Told COMPLETE with violated constraints: the sampler learns the region is infeasible. The
        accuracy 0.0 is a placeholder: nothing was trained (`rejected` says why)."""
        from edge.search.constraints import record

        print(f"[search] rejected before training: {reason}", file=sys.stderr, flush=True)
        trial.set_user_attr("rejected", reason)
        record(trial, constraints)
        trial.set_user_attr("figures", figures)
        return 0.0, energy_uJ

    def _interrupted(self, trial: Any) -> None:
        from edge.search.storage import retry
        from edge.search.trial import stop_stage_processes

        stop_stage_processes()
        trial.set_user_attr("failed", "interrupted (SIGTERM/SIGINT or the budget ran out); enqueued again")
        retry(self.study, trial.params, trial.number, trial.user_attrs)
        print("[search] interrupted: enqueued again", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SearchInterrupted(signal.Signals(signum).name)


def _budget_timer(deadline: float | None) -> None:
    """SIGTERM to this process when the budget ends (the running trial is interrupted and kept)."""
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.time()), os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()


def work(spec: SearchSpec, n_trials: int | None, worker: int) -> int:
    """Run trials until done; returns the exit code (130 when interrupted)."""
    import optuna
    from optuna.trial import TrialState

    from edge.search.fidelity import fidelity_study
    from edge.search.storage import load_study, open_storage

    storage, _ = open_storage(spec.study, Path(spec.search_dir))
    study = load_study(storage, spec.study_name, spec.identity, spec.seed + worker)
    fidelity = fidelity_study(storage, spec.study_name) if spec.fidelity else None
    callbacks = []
    if spec.max_trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(spec.max_trials, states=(TrialState.COMPLETE,
                                                                                 TrialState.PRUNED)))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    _budget_timer(spec.deadline)
    timeout = None if spec.deadline is None else max(0.0, spec.deadline - time.time())
    try:
        if n_trials != 0 and timeout != 0.0:
            study.optimize(Objective(spec, study, fidelity), n_trials=n_trials, timeout=timeout, callbacks=callbacks)
    except (KeyboardInterrupt, SearchInterrupted):
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m edge.search.worker SPEC [--n-trials K] [--worker I]`."""
    parser = argparse.ArgumentParser(prog="python -m edge.search.worker")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--worker", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return work(SearchSpec.load(args.spec), args.n_trials, args.worker)
    except EdgeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
