"""Where a study lives, and how a study left by killed workers is picked up again.

`--study` takes an RDB URL (`sqlite:///file.db`, `postgresql://user@host/db`, `mysql+pymysql://...`), a
journal file (`journal:PATH`, or a path ending in `.journal`), or nothing: the journal file
`runs/<run>/search/study.journal`. A journal file works for several processes on one machine and, on a
shared filesystem, for several machines; an RDB URL for machines that share a database server.

Every running trial stores who runs it (host, pid, process start time) and a heartbeat every
HEARTBEAT_S. `recover` fails a RUNNING trial whose process is gone (same host) or whose heartbeat is older
than GRACE_S (another host), and enqueues its parameters again as a new trial (`retry_of`), so a
killed search continues where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from edge.errors import ConfigError

HEARTBEAT_S = 20.0
GRACE_S = 180.0
DIRECTIONS: tuple[Literal["maximize"], Literal["minimize"]] = ("maximize", "minimize")  # val top-1, energy (uJ)
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


def open_storage(url: str | None, search_dir: Path) -> tuple[Any, str]:
    """(Optuna storage, its description) for `--study URL` (None: the run's journal file)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = Path(url.removeprefix("journal:")) if url else search_dir / "study.journal"
        if url is None:
            search_dir.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            raise ConfigError(f"folder '{path.parent}' of the journal file does not exist", where="--study",
                              hint="create it (on a shared filesystem for several machines) or pass another path")
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))), str(path)
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in RDB_SCHEMES:
        raise ConfigError(f"cannot read study storage {url!r}", where="--study",
                          hint="an RDB URL (sqlite:///search.db, postgresql://user:pass@host/db, mysql+pymysql://...) "
                          "or a journal file (journal:PATH or PATH.journal)")
    kwargs = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    try:
        return RDBStorage(url, engine_kwargs=kwargs), url.split("@")[-1]
    except Exception as exc:  # SQLAlchemy: a missing driver, an unreachable server, a bad URL
        raise ConfigError(f"cannot open study storage: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                          where="--study", hint="check the URL, the server and that its driver is installed "
                          "(e.g. pip install psycopg2-binary for postgresql)") from exc


def load_study(storage: Any, name: str, identity: dict[str, Any], seed: int) -> Any:
    """Create or load the study; a study made with other settings is refused (exit 2)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)  # reads the trials' set_constraint values
    study = optuna.create_study(storage=storage, study_name=name, directions=list(DIRECTIONS), sampler=sampler,
                                load_if_exists=True)
    saved = study.user_attrs.get("identity")
    if saved is None:
        study.set_user_attr("identity", identity)
    elif saved != identity:
        changed = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        raise ConfigError(f"study '{name}' was started with other settings ({', '.join(changed)} differ)",
                          where="--study", hint="resume it with the same --target/--device/--min-lifetime/--set, "
                          "or start another search (--run NAME or --study-name NAME)")
    return study


def warm_start(study: Any, params: dict[str, Any]) -> None:
    """Enqueue the default pipeline as the first trial of a new study."""
    if not study.trials:
        study.enqueue_trial(params, user_attrs={"warm_start": "the default pipeline"}, skip_if_exists=True)


def _process_started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


def owner_attrs() -> dict[str, Any]:
    """Who runs a trial: this host, pid and process start time."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_started": _process_started(os.getpid()),
            "heartbeat": time.time()}


@contextmanager
def heartbeat(study: Any, trial_id: int, every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Store the time in the trial's `heartbeat` attribute every `every_s` while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            # the trial may have finished meanwhile, or the storage blinked: the next beat tries again
            with contextlib.suppress(Exception):
                study._storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def is_stale(attrs: dict[str, Any], now: float, grace_s: float = GRACE_S) -> bool:
    """True when a RUNNING trial's process is gone (same host) or its heartbeat is older than grace_s."""
    if attrs.get("host") == socket.gethostname() and attrs.get("pid"):
        started = _process_started(int(attrs["pid"]))
        return started is None or abs(started - float(attrs.get("pid_started") or 0)) > 1.0
    return now - float(attrs.get("heartbeat", 0.0)) > grace_s


def recover(study: Any, grace_s: float = GRACE_S) -> list[int]:
    """Fail the stale RUNNING trials and enqueue each again; returns their numbers."""
    from optuna.trial import TrialState

    recovered = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(trial.user_attrs, now, grace_s):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "failed", "its worker died (killed); enqueued again")
            if not study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except RuntimeError:  # finished meanwhile (UpdateFinishedTrialError)
            continue
        retry(study, trial.params, trial.number, trial.user_attrs)
        recovered.append(trial.number)
    return recovered


def retry(study: Any, params: dict[str, Any], number: int, attrs: dict[str, Any] | None = None) -> None:
    """Enqueue a trial's parameters again, remembering which trial it repeats (and a warm start's mark)."""
    if not params:
        return  # stopped before it drew any: nothing to repeat
    keep = {k: v for k, v in (attrs or {}).items() if k == "warm_start"}
    study.enqueue_trial(params, user_attrs={"retry_of": number, **keep})
