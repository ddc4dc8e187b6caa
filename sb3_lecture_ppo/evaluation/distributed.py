"""
Spread a sweep's cells over processes or machines through Optuna.

A sweep is one study on a shared storage (an Optuna journal file on one machine, an RDB URL such
as PostgreSQL across machines) whose sampler is a ``GridSampler`` over the cell ids. The worker
that creates the study enqueues every cell once; Optuna hands a waiting trial to exactly one
worker, so each cell runs exactly once however many workers there are. A worker stamps a
heartbeat on its trial while the cell trains; a trial whose heartbeat is older than the grace
period (its worker died) is failed by the next worker that looks, and Optuna's
``RetryFailedTrialCallback`` enqueues the cell again. A finished run's record is stored in its
trial (user attribute ``run``), so that any machine can write the report from the study alone.
"""

import contextlib
import importlib.util
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from sb3_lecture_ppo.evaluation.cells import Cell

CELL_PARAM = "cell"
HEARTBEAT_ATTR = "heartbeat"
RUN_ATTR = "run"
MAX_RETRY = 3
"""Reruns of a cell whose worker died (or whose run failed) before it is given up."""


SCHEMA_ATTEMPTS = 8
"""Tries at opening an RDB storage whose schema other workers are creating at the same moment."""


class StorageError(ValueError):
    """The storage could not be opened or was lost, or holds another sweep under the study name."""


def open_storage(url: str) -> BaseStorage:
    """
    An RDB storage for a URL (``postgresql://...``, ``sqlite:///...``), else a journal file at that path.
    ``postgresql://`` uses psycopg (3) where psycopg2 is not installed (the ``[distributed]`` extra installs psycopg).
    """
    try:
        if "://" in url:
            return _open_rdb_storage(_with_installed_driver(url))
        path = Path(url)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"no folder {path.parent}")
        return JournalStorage(JournalFileBackend(str(path)))
    except Exception as error:  # a storage fails in many ways (driver missing, refused, bad path): one message
        raise StorageError(f"--storage {url}: cannot be opened ({type(error).__name__}: {error})") from None


def _with_installed_driver(url: str) -> str:
    """SQLAlchemy's default PostgreSQL driver is psycopg2: name psycopg (3) instead where only it is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        if importlib.util.find_spec("psycopg") is not None:
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _open_rdb_storage(url: str, attempts: int = SCHEMA_ATTEMPTS) -> BaseStorage:
    """
    ``RDBStorage(url)``, retried where workers started at the same moment race to create Optuna's schema on a
    fresh database (PostgreSQL: "duplicate key value violates unique constraint pg_type_typname_nsp_index"):
    the creation is idempotent (it checks what exists), so the loser's retry finds the winner's tables.
    """
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


def open_cell_study(storage: BaseStorage, study_name: str, cells: Sequence[Cell], wait_seconds: float = 60.0) -> optuna.Study:
    """
    The sweep's study: created with every cell enqueued once, or loaded (then it must hold the same cells).
    """
    ids = [cell.id for cell in cells]
    sampler = optuna.samplers.GridSampler({CELL_PARAM: ids}, seed=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
        _wait_for_queue(study, study_name, ids, wait_seconds)
        return study
    study.set_user_attr("cells", ids)
    for cell_id in ids:
        study.enqueue_trial({CELL_PARAM: cell_id})
    study.set_user_attr("enqueued", True)
    return study


def _wait_for_queue(study: optuna.Study, study_name: str, ids: list[str], wait_seconds: float) -> None:
    """Wait until the worker that created the study has enqueued its cells; refuse another sweep's study."""
    deadline = time.monotonic() + wait_seconds
    while not study.user_attrs.get("enqueued"):
        if time.monotonic() > deadline:
            raise StorageError(f"--study-name {study_name}: its cells were never enqueued; pick a new --study-name")
        time.sleep(0.5)
    if study.user_attrs.get("cells") != ids:
        raise StorageError(
            f"--study-name {study_name}: that study holds another sweep (other cells or settings); "
            "pick a new --study-name or the settings it was made with"
        )


def cell_trials(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """Cell id -> its trials."""
    trials: dict[str, list[FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        if CELL_PARAM in trial.params:
            trials.setdefault(trial.params[CELL_PARAM], []).append(trial)
    return trials


def finished_runs(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Cell id -> the run record of its completed trial."""
    return {
        cell_id: trial.user_attrs[RUN_ATTR]
        for cell_id, trials in cell_trials(study).items()
        for trial in trials
        if trial.state == TrialState.COMPLETE and RUN_ATTR in trial.user_attrs
    }


def fail_stale_trials(study: optuna.Study, grace_seconds: float) -> list[int]:
    """
    Fail the running trials whose heartbeat is older than ``grace_seconds`` and enqueue their cells
    again (Optuna's ``RetryFailedTrialCallback``). Only the worker whose ``tell`` wins re-enqueues.

    :return: the numbers of the trials failed here
    """
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        last_sign_of_life = max(float(trial.user_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
        if now - last_sign_of_life <= grace_seconds:
            continue
        try:
            frozen = study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker failed it first
        RetryFailedTrialCallback(max_retry=MAX_RETRY)(study, frozen)
        failed.append(trial.number)
    return failed


class Heartbeat:
    """Stamps ``time.time()`` on a trial every ``interval`` seconds while in a ``with`` block."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        self.trial = trial
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self.trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception:  # the storage is gone: stop beating; the worker meets the error at its next call
                return
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _from_queue(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether ``ask`` handed out an enqueued cell (not a fresh grid point, which may be running elsewhere)."""
    frozen = study.get_trials(deepcopy=False)[trial.number]
    return CELL_PARAM in frozen.params or "fixed_params" in frozen.system_attrs


def run_worker(
    study: optuna.Study,
    cells: Sequence[Cell],
    run: Callable[[list[Cell]], list[dict[str, Any] | None]],
    score: Callable[[dict[str, Any]], float],
    heartbeat_seconds: float = 30.0,
    grace_seconds: float = 120.0,
    poll_seconds: float = 5.0,
    log: Callable[[str], None] = print,
    group_key: Callable[[Cell], Any] | None = None,
    max_group: int = 1,
) -> int:
    """
    Take cells from the study until every cell has a completed trial, waiting while the last ones
    run elsewhere (so that a dead worker's cell is rerun here).

    :param run: trains a group of cells (one cell, or a population of them); each cell's run record, or None
        where it failed
    :param score: the trial's objective value of a run record
    :param group_key: cells with the same non-None key may train together: the worker takes, with a cell, the
        next queued cells of the same key (up to ``max_group`` in all), one trial each
    :return: the number of cells this worker trained
    """
    by_id = {cell.id: cell for cell in cells}
    ids = list(by_id)
    trained = 0
    while True:
        for number in fail_stale_trials(study, grace_seconds):
            log(f"trial {number} lost its worker: its cell is queued again")
        trials = cell_trials(study)
        completed = {
            cell_id for cell_id, cell_group in trials.items() if any(t.state == TrialState.COMPLETE for t in cell_group)
        }
        if completed >= set(ids):
            return trained
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            time.sleep(poll_seconds)  # the rest runs elsewhere: stay to rerun a dead worker's cell
            continue
        first = _ask_cell(study, by_id, ids, completed)
        if first is None:
            continue
        units = [[first]] if group_key is None else _take_group(study, by_id, ids, completed, first, group_key, max_group)
        for unit in units:
            log(", ".join(f"trial {trial.number}: {cell.label}" for trial, cell in unit))
            with contextlib.ExitStack() as beating:
                for trial, _ in unit:
                    beating.enter_context(Heartbeat(trial, heartbeat_seconds))
                records = run([cell for _, cell in unit])
            trained += len(unit)
            for (trial, _), record in zip(unit, records, strict=True):
                _tell(study, trial, record, score, log)


def _take_group(
    study: optuna.Study,
    by_id: dict[str, Cell],
    ids: list[str],
    completed: set[str],
    first: tuple[optuna.Trial, Cell],
    group_key: Callable[[Cell], Any],
    max_group: int,
) -> list[list[tuple[optuna.Trial, Cell]]]:
    """``first`` with the next queued cells of its key: one group, and a cell of another key where one slipped in."""
    units = [[first]]
    key = group_key(first[1])
    while key is not None and len(units[0]) < max_group and _next_queued_key(study, by_id, group_key) == key:
        taken = _ask_cell(study, by_id, ids, completed)
        if taken is None:
            break
        if group_key(taken[1]) != key:  # another worker took the one we looked at: this one trains alone
            units.append([taken])
            break
        units[0].append(taken)
    return units


def _ask_cell(
    study: optuna.Study, by_id: dict[str, Cell], ids: list[str], completed: set[str]
) -> tuple[optuna.Trial, Cell] | None:
    """The next queued cell with its trial, or None where there was none to take (the trial is closed as pruned)."""
    trial = study.ask()
    if not _from_queue(study, trial):
        study.tell(trial, state=TrialState.PRUNED)  # the queue emptied meanwhile
        return None
    cell = by_id[trial.suggest_categorical(CELL_PARAM, ids)]
    if cell.id in completed:  # a retry of a trial that was failed as stale but finished after all
        study.tell(trial, state=TrialState.PRUNED)
        return None
    return trial, cell


def _next_queued_key(study: optuna.Study, by_id: dict[str, Cell], group_key: Callable[[Cell], Any]) -> Any:
    """The group key of the cell that ``ask`` hands out next (the oldest waiting trial), None where there is none."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if not waiting:
        return None
    cell_id = min(waiting, key=lambda trial: trial.number).system_attrs.get("fixed_params", {}).get(CELL_PARAM)
    return None if cell_id not in by_id else group_key(by_id[cell_id])


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    record: dict[str, Any] | None,
    score: Callable[[dict[str, Any]], float],
    log: Callable[[str], None],
) -> None:
    try:
        if record is None:
            frozen = study.tell(trial, state=TrialState.FAIL)
            RetryFailedTrialCallback(max_retry=MAX_RETRY)(study, frozen)
            return
        trial.set_user_attr(RUN_ATTR, record)
        study.tell(trial, score(record))
    except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError) as error:
        log(f"trial {trial.number} was failed as stale while it ran ({error}); its retry is the one that counts")


def run_sweep(
    cells: Sequence[Cell],
    out_dir: Path,
    score: Callable[[dict[str, Any]], float],
    jobs: int = 1,
    storage: str | None = None,
    study_name: str | None = None,
    show_progress: bool = True,
    heartbeat_seconds: float = 30.0,
    grace_seconds: float = 120.0,
    backend: str = "runs",
    population_size: int = 64,
) -> list[Cell]:
    """
    Train the cells without a finished run: locally (``jobs`` processes, ``backend`` as in
    :func:`~sb3_lecture_ppo.evaluation.runner.run_cells`), or as one worker of the study ``study_name`` on
    ``storage`` (whose finished runs are also written to ``out_dir``; with ``backend="population"`` a worker takes
    the next queued cells that can share a population together, one trial each).

    :return: the cells that failed locally (the study retries its own)
    """
    from sb3_lecture_ppo.evaluation.population_runner import population_key
    from sb3_lecture_ppo.evaluation.runner import load_run, run_cells, run_path, write_json_atomically

    if storage is None:
        return run_cells(
            cells, out_dir, jobs=jobs, show_progress=show_progress, backend=backend, population_size=population_size
        )
    if not study_name:
        raise StorageError("--storage needs --study-name: the name every worker of the sweep uses")

    def run(group: list[Cell]) -> list[dict[str, Any] | None]:
        failed = run_cells(
            group, out_dir, jobs=1, show_progress=show_progress, backend=backend, population_size=population_size
        )
        return [None if cell in failed else load_run(run_path(out_dir, cell)) for cell in group]

    with storage_lost_is_one_line(storage):
        study = open_cell_study(open_storage(storage), study_name, cells)
        run_worker(
            study,
            cells,
            run,
            score,
            heartbeat_seconds=heartbeat_seconds,
            grace_seconds=grace_seconds,
            group_key=population_key if backend == "population" else None,
            max_group=population_size,
        )
        records = finished_runs(study)
    for cell_id, record in records.items():  # runs that other workers trained
        cell = next(cell for cell in cells if cell.id == cell_id)
        if load_run(run_path(out_dir, cell)) is None:
            write_json_atomically(run_path(out_dir, cell), record)
    return []


@contextlib.contextmanager
def storage_lost_is_one_line(url: str) -> Iterator[None]:
    """
    A storage that goes away mid-sweep (the database stopped, the network cut) as one :class:`StorageError` naming
    it. Nothing finished is lost: each run file is on disk, each completed trial in the study; restart the database
    and the workers, and the cells that were running then are rerun once their heartbeat is stale.
    """
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise StorageError(
            f"--storage {url}: lost the storage ({type(error).__name__}: {reason}); finished runs are kept: "
            "restart the database and the same command resumes"
        ) from None
