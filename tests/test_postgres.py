"""
The sweep engine on a real PostgreSQL server (pgserver: the server binaries in a wheel, started by the tests):
workers started at the same instant on a fresh database, a worker killed with SIGKILL mid-cell, and the database
stopped mid-sweep then restarted. Each ends with every cell completed exactly once and every run file valid.
The last two are slow (about a minute each): ``python -m pytest -m slow tests/test_postgres.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sb3_lecture_ppo.evaluation.distributed import CELL_PARAM, open_storage
from tests.test_ablation import ENV, TINY

pgserver = pytest.importorskip("pgserver")
pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("pgdata")
    instance = pgserver.get_server(data, cleanup_mode="stop")
    yield data, instance
    pgserver.get_server(data, cleanup_mode="stop").cleanup()


@pytest.fixture
def database(server) -> str:
    """A fresh database on the server, as a ``postgresql://`` URL (the form a user gives)."""
    _, instance = server
    name = f"sweep_{uuid.uuid4().hex[:8]}"
    instance.psql(f"CREATE DATABASE {name};")
    return instance.get_uri(name)


def worker(out: Path, log_name: str, storage: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sb3_lecture_ppo.ablation", *TINY, "--out", str(out), "--no-progress"]
    command += ["--storage", storage, "--study-name", "sweep", *extra]
    log = open(out.parent / f"{log_name}.log", "w")  # the child keeps it open
    return subprocess.Popen(command, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def completed_cells(storage: str) -> list[str]:
    study = optuna.load_study(study_name="sweep", storage=open_storage(storage))
    return [trial.params[CELL_PARAM] for trial in study.get_trials(states=(TrialState.COMPLETE,))]


def assert_complete_once(storage: str, out: Path, n_cells: int = 3) -> None:
    completed = completed_cells(storage)
    assert len(completed) == len(set(completed)) == n_cells
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == n_cells
    for run in runs:
        assert json.loads(run.read_text())["cell_id"] in completed  # every run file whole and valid


def logs(tmp_path: Path) -> str:
    return "".join(path.read_text()[-1500:] for path in sorted(tmp_path.glob("*.log")))


def wait_for_running_trial(storage: str, timeout: float = 120.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            running = optuna.load_study(study_name="sweep", storage=open_storage(storage)).get_trials(
                states=(TrialState.RUNNING,)
            )
        except KeyError:  # the study is being created
            continue
        if running:
            return running
    return []


def test_three_workers_started_together_on_a_fresh_database_run_each_cell_once(tmp_path, database):
    out = tmp_path / "out"
    workers = [worker(out, name, database) for name in "abc"]
    for process in workers:
        assert process.wait(timeout=600) == 0, logs(tmp_path)
    assert "cannot be opened" not in logs(tmp_path)
    assert_complete_once(database, out)


@pytest.mark.slow
def test_a_worker_killed_mid_cell_has_its_cell_rerun(tmp_path, database):
    out = tmp_path / "out"
    first = worker(out, "a", database, "--heartbeat", "1", "--grace", "4")
    running = wait_for_running_trial(database)
    assert running, logs(tmp_path)
    os.killpg(first.pid, signal.SIGKILL)  # the worker and the process training its cell
    first.wait()
    second = worker(out, "b", database, "--heartbeat", "1", "--grace", "4")
    assert second.wait(timeout=600) == 0, logs(tmp_path)
    assert_complete_once(database, out)
    study = optuna.load_study(study_name="sweep", storage=open_storage(database))
    assert study.trials[running[0].number].state == TrialState.FAIL


@pytest.mark.slow
def test_the_database_stopped_mid_sweep_stops_workers_in_one_line_and_a_restart_completes(tmp_path, server, database):
    data, instance = server
    out = tmp_path / "out"
    first = worker(out, "a", database, "--heartbeat", "1", "--grace", "4")
    assert wait_for_running_trial(database), logs(tmp_path)
    instance.cleanup()  # stop the server in the middle of a cell
    try:
        assert first.wait(timeout=300) == 2, logs(tmp_path)
    finally:
        pgserver.get_server(data, cleanup_mode="stop")  # start it again, the same data
    error_lines = [line for line in (tmp_path / "a.log").read_text().splitlines() if line.startswith("ablation: error:")]
    assert len(error_lines) == 1 and f"--storage {database}: lost the storage" in error_lines[0]
    assert "Traceback" not in (tmp_path / "a.log").read_text()

    second = worker(out, "b", database, "--heartbeat", "1", "--grace", "4")
    assert second.wait(timeout=600) == 0, logs(tmp_path)
    assert_complete_once(database, out)
