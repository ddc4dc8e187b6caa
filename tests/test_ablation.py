"""
The objective ablation: its cells, scores and report, bad input, and the Optuna scale-out (two
workers on one journal file; a killed worker's cell rerun by another).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from sb3_lecture_ppo import ablation
from sb3_lecture_ppo.evaluation.distributed import CELL_PARAM, open_storage
from sb3_lecture_ppo.evaluation.report import normalized_scores

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
TINY = ["--envs", "CartPole-v1", "--seeds", "1", "--timesteps", "1024", "--variants", "none", "clip-0.2", "kl_fixed-1"]


def test_variants_are_the_papers_eleven_and_build_models():
    assert len(ablation.VARIANTS) == len(ablation.PAPER_TABLE) == 11
    from sb3_lecture_ppo import LecturePPO

    for settings in ablation.VARIANTS.values():
        LecturePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, **settings)  # each is a valid objective setting
    args = ablation.parse_args([*TINY, "--compare", "ppo", "--seeds", "2"])
    cells, _ = ablation.sweep_cells(args)
    assert len(cells) == 2 * (3 + 1)
    assert {cell.contestant for cell in cells} == {"lecture_ppo:paper", "ppo"}
    assert [cell.overrides_dict() for cell in cells[:3]] == [
        ablation.VARIANTS[name] for name in ("none", "clip-0.2", "kl_fixed-1")
    ]


def test_normalized_scores_random_zero_best_one():
    raw = {"a": {"X": [10.0, 20.0], "Y": [0.0, 0.0]}, "b": {"X": [0.0, 0.0], "Y": [5.0, 15.0]}}
    scores = normalized_scores(raw, {"X": 0.0, "Y": -10.0})
    np.testing.assert_allclose(scores["a"], [[2 / 3, 0.5], [4 / 3, 0.5]])
    np.testing.assert_allclose(scores["b"], [[0.0, 0.75], [0.0, 1.25]])
    assert scores["a"][:, 0].mean() == pytest.approx(1.0) and scores["b"][:, 1].mean() == pytest.approx(1.0)


def _run(variant: str, env_id: str, seed: int, score: float, curve: list) -> dict:
    cell = {"env_id": env_id, "seed": seed, "contestant": "lecture_ppo:paper", "overrides": ablation.VARIANTS[variant]}
    return {"cell": cell, "last_100_training_episodes": score, "training_curve": {"episode_return_mean": curve}}


def test_per_task_tables_list_each_seed_in_order_with_its_peak():
    runs = [
        _run("clip-0.2", "X", 1, 30.0, [None, 50.0, 30.0]),
        _run("clip-0.2", "X", 0, 10.0, [20.0, 10.0]),
        _run("none", "X", 0, 0.0, []),  # no episode logged: its peak is its score
        _run("none", "X", 1, 2.0, [4.0, 2.0]),
        _run("none", "Y", 0, 1.0, [1.0]),  # Y lacks seed 1 of clip-0.2 and none: no table for Y
    ]
    text = ablation._per_task_tables(runs, ["clip-0.2", "none"], {"X": -10.0, "Y": 0.0}, {"X": 20.0}, ["X", "Y"])
    lines = text.splitlines()
    assert "## X" in lines and "## Y" not in lines
    assert "| Clipping, epsilon = 0.2 | 10.0 / 30.0 | 20.0 / 50.0 | 1.00 |" in lines
    assert "| No clipping or penalty | 0.0 / 2.0 | 0.0 / 4.0 | 0.37 |" in lines  # (1 + 10) / (20 + 10)
    assert lines.index("| No clipping or penalty | 0.0 / 2.0 | 0.0 / 4.0 | 0.37 |") < lines.index(
        "| Clipping, epsilon = 0.2 | 10.0 / 30.0 | 20.0 / 50.0 | 1.00 |"
    )  # the paper's row order
    large = [_run("none", "X", seed, 1234.4 * (seed + 1), [1500.0]) for seed in (0, 1)]
    assert "| No clipping or penalty | 1,234 / 2,469 | 1,500 / 2,469 | 1.00 |" in ablation._per_task_tables(
        large, ["none"], {"X": 0.0}, None, ["X"]
    )  # thousands without decimals; the final score counts as a peak; 1 = the best here when no reference is given


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "clip-0.5"], "--variants: unknown variant 'clip-0.5'"),
        (["--setting", "best"], "--setting: unknown setting 'best'"),
        (["--envs", "Hopper-v9"], "--envs: unknown env 'Hopper-v9'"),
        (["--setting", "shipped", "--envs", "Hopper-v5"], "--setting shipped: contestant 'lecture_ppo' has no RL Zoo entry"),
        (["--compare", "sac3"], "--compare: unknown algorithm 'sac3'"),
        (
            ["--storage", "/no/such/folder/study.log", "--study-name", "s"],
            "--storage /no/such/folder/study.log: cannot be opened",
        ),
        (["--storage", "STORAGE"], "--storage needs --study-name"),
        (["--heartbeat", "10", "--grace", "5"], "--grace 5 must be longer than --heartbeat 10"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(capsys, tmp_path, args, message):
    args = [str(tmp_path / "study.log") if arg == "STORAGE" else arg for arg in args]
    code = ablation.main([*TINY, *args, "--out", str(tmp_path / "out"), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2 and message in error and error.count("\n") == 1


def test_seeds_zero_is_refused(capsys):
    with pytest.raises(SystemExit):
        ablation.main(["--seeds", "0"])
    assert "--seeds must be a positive integer" in capsys.readouterr().err


def worker(tmp_path, name: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "sb3_lecture_ppo.ablation", *TINY, "--out", str(tmp_path / "out"), "--no-progress"]
    command += ["--storage", str(tmp_path / "study.log"), "--study-name", "sweep", *extra]
    log = open(tmp_path / f"{name}.log", "w")  # the child keeps it open
    return subprocess.Popen(command, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def completed_cells(tmp_path) -> list[str]:
    study = optuna.load_study(study_name="sweep", storage=open_storage(str(tmp_path / "study.log")))
    return [trial.params[CELL_PARAM] for trial in study.get_trials(states=(TrialState.COMPLETE,))]


def test_two_workers_on_one_journal_run_each_cell_once(tmp_path):
    workers = [worker(tmp_path, "a"), worker(tmp_path, "b")]
    for process in workers:
        assert process.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-2000:] + (tmp_path / "b.log").read_text()[
            -2000:
        ]
    completed = completed_cells(tmp_path)
    assert len(completed) == len(set(completed)) == 3
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 3
    assert "Clipping, epsilon = 0.2" in (tmp_path / "out" / "results.md").read_text()


def test_a_killed_workers_cell_is_rerun_by_another(tmp_path):
    first = worker(tmp_path, "a", "--heartbeat", "1", "--grace", "4")
    storage = tmp_path / "study.log"
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline:  # wait until it holds a cell
        time.sleep(0.5)
        if storage.exists():
            try:
                study = optuna.load_study(study_name="sweep", storage=open_storage(str(storage)))
                running = study.get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # the study is being created
                continue
    assert running, (tmp_path / "a.log").read_text()[-2000:]
    os.killpg(first.pid, signal.SIGKILL)  # the worker and the process training its cell
    first.wait()

    second = worker(tmp_path, "b", "--heartbeat", "1", "--grace", "4")
    assert second.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()[-3000:]
    study = optuna.load_study(study_name="sweep", storage=open_storage(str(storage)))
    completed = completed_cells(tmp_path)
    assert len(completed) == len(set(completed)) == 3
    killed = study.trials[running[0].number]
    assert killed.state == TrialState.FAIL
    assert killed.params[CELL_PARAM] in completed  # its cell was rerun
    assert "lost its worker" in (tmp_path / "b.log").read_text()


@pytest.mark.slow
def test_quick_ablation_writes_every_output(tmp_path):
    out = tmp_path / "quick"
    command = [sys.executable, "-m", "sb3_lecture_ppo.ablation", "--quick", "--jobs", "2", "--out", str(out), "--no-progress"]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((out / "runs").glob("*.json"))) == 11 * 2 * 2
    for name in ("results.json", "results.md", "intervals.png", "curves_CartPole-v1.png", "curves_Pendulum-v1.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    assert all(row in table for row, _ in ablation.PAPER_TABLE.values())
    assert "## CartPole-v1" in table and "## Pendulum-v1" in table  # the per-task tables
    assert json.loads((out / "random_scores.json").read_text()).keys() == {"CartPole-v1", "Pendulum-v1"}


@pytest.mark.parametrize("option", ["--heartbeat", "--grace"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_non_positive_seconds_are_refused_naming_the_option(capsys, option, value):
    with pytest.raises(SystemExit):
        ablation.parse_args([option, value])
    assert f"{option} must be a positive number of seconds, got '{value}'" in capsys.readouterr().err
