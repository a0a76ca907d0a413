"""Multi-fidelity pruning on the val curve, with an Optuna pruner.

Optuna's `Trial.report` does not support multi-objective studies, so every search trial gets a partner
trial in a single-objective study `<study>.fidelity` (same storage, maximise val top-1): the train stage
appends each epoch's row to `epochs.jsonl` (run option `epoch_log`), `CurveWatcher` follows that file
from a thread, reports val top-1 per epoch to the partner trial and asks the pruner (PercentilePruner:
the bottom quarter at the same epoch, after 3 finished curves and 3 warm-up epochs) whether to stop.
When it says stop, the running stage processes are ended and the search trial is PRUNED.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Prune a curve in the bottom PERCENTILE at the same epoch, once STARTUP curves finished, after WARMUP epochs.
PERCENTILE, STARTUP, WARMUP = 25.0, 3, 3


def fidelity_study(storage: Any, study_name: str) -> Any:
    """The partner single-objective study that holds the val curves."""
    import optuna

    pruner = optuna.pruners.PercentilePruner(PERCENTILE, n_startup_trials=STARTUP, n_warmup_steps=WARMUP)
    return optuna.create_study(storage=storage, study_name=f"{study_name}.fidelity", direction="maximize",
                               pruner=pruner, load_if_exists=True)


class CurveWatcher:
    """Follows `epochs.jsonl` of a running trial; reports each epoch and calls `stop` once pruned."""

    def __init__(self, study: Any, search_trial: int, epoch_log: Path, stop: Callable[[], None],
                 poll_s: float = 0.5) -> None:
        self.trial = study.ask()
        self.trial.set_user_attr("search_trial", search_trial)
        self.study = study
        self.epoch_log = epoch_log
        self.stop = stop
        self.poll_s = poll_s
        self.pruned_at: int | None = None
        self.curve: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="curve-watcher", daemon=True)

    def __enter__(self) -> CurveWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self._read()  # epochs written after the last poll

    def _read(self) -> None:
        if not self.epoch_log.is_file() or self.pruned_at is not None:
            return
        lines = self.epoch_log.read_text(encoding="utf-8").splitlines()
        for line in lines[len(self.curve):]:
            if not line.endswith("}"):
                break  # a line still being written
            row = json.loads(line)
            self.curve.append(float(row["val_top1"]))
            self.trial.report(self.curve[-1], int(row["epoch"]))
            if self.trial.should_prune():
                self.pruned_at = int(row["epoch"])
                self.stop()
                return

    def _follow(self) -> None:
        while not self._done.wait(self.poll_s):
            self._read()
            if self.pruned_at is not None:
                return

    def finish(self, interrupted: bool = False) -> None:
        """Tell the partner trial: PRUNED when stopped here, FAIL when interrupted, else its best val."""
        import optuna

        if self.pruned_at is not None:
            self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        elif interrupted or not self.curve:
            self.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(self.trial, max(self.curve))
