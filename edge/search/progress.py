"""Lines while a search runs: one per finished trial, with the rate and the time left."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from edge.search.pareto import trial_row

FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def describe(row: dict[str, Any]) -> str:
    """What became of one trial, in a few words."""
    if row["state"] == "PRUNED":
        return f"pruned ({row['why']})"
    if row["state"] == "FAIL":
        return f"failed: {row['why'] or 'see its log.txt'}"
    if row["rejected_before_training"]:
        return f"rejected before training: {row['why']}"
    energy = f"{row['energy_uJ']:,.0f} uJ per inference (estimated)" if row["energy_uJ"] else "no energy figure"
    verdict = "feasible" if row["feasible"] else f"infeasible ({', '.join(row['violated'])})"
    return f"val int8 top-1 {row['val_int8_top1']:.3f} (measured), {energy}, {verdict}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class Progress:
    """Prints a line for every trial that finishes after it started watching the study."""

    def __init__(self, study: Any, total: int | None, deadline: float | None, out: TextIO = sys.stderr) -> None:
        self.study, self.total, self.deadline, self.out = study, total, deadline, out
        self.started = time.time()
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED}
        self.done_here = 0
        self.counted = self.done()  # complete or pruned, as of the last line printed

    def done(self) -> int:
        """Trials that count towards --trials: complete or pruned."""
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED"))

    def poll(self) -> None:
        """Print the trials that finished since the last call."""
        fresh = [t for t in self.study.get_trials(deepcopy=False) if t.state.name in FINISHED
                 and t.number not in self.seen]
        for trial in sorted(fresh, key=lambda t: t.number):
            self.seen.add(trial.number)
            self.done_here += trial.state.name != "FAIL"
            self.counted += trial.state.name != "FAIL"
            print(f"[search] trial {trial.number}: {describe(trial_row(trial))} | {self.rate_line()}",
                  file=self.out, flush=True)

    def rate_line(self) -> str:
        """`N of M done, X min per trial, about Y left`."""
        elapsed = time.time() - self.started
        done = self.counted
        text = f"{done}{f' of {self.total}' if self.total else ''} done"
        if self.done_here:
            per = elapsed / self.done_here
            text += f", {_minutes(per)} per trial"
            left = [per * (self.total - done)] if self.total else []
            if self.deadline is not None:
                left.append(max(0.0, self.deadline - time.time()))
            if left:
                text += f", about {_minutes(min(left))} left"
        return text
