"""The scripts in benchmarks/: their tables of finished and stopped runs, read back and plotted."""

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sb3_lecture_ppo import LectureMonteCarloPG
from sb3_lecture_ppo.evaluation.cells import RESULTS_FORMAT_VERSION
from sb3_lecture_ppo.evaluation.report import interval_estimates
from sb3_lecture_ppo.evaluation.runner import RUNS_FOLDER, WORK_FOLDER, StaleRunsError, cell_hyperparams, run_cells, run_path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "diagnose_precursors.py"


def load_script(path: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_of_finished_and_stopped_runs(tmp_path):
    script = load_script()
    cells = {(name, 3): script.variant_cell(name, 1_000_000, 3, eval_freq=50_000) for name in ("ac_a2c", "gae_lambda_0.25")}
    assert cells[("ac_a2c", 3)].eval_freq == 50_000 and script.variant_cell("ac_a2c", 900, 0).eval_freq == 300
    finished, stopped = cells[("ac_a2c", 3)], cells[("gae_lambda_0.25", 3)]
    evaluations = {"timesteps": [50_000, 100_000], "mean": [-10.0, 250.0], "std": [1.0, 2.0]}
    path = run_path(tmp_path, finished)
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"format_version": RESULTS_FORMAT_VERSION, "evaluations": evaluations, "final_evaluation": {"mean": 260.0}})
    )
    work = tmp_path / WORK_FOLDER / f"{stopped.id}-abc"
    work.mkdir(parents=True)
    np.savez(work / "evaluations.npz", timesteps=np.array([50_000]), results=np.array([[1.0, 3.0]]))

    rows = script.variant_rows(cells, tmp_path)
    assert rows == [
        {"variant": "ac_a2c", "seed": 3, "evaluations": evaluations, "final": 260.0},
        {"variant": "gae_lambda_0.25", "seed": 3, "evaluations": {"timesteps": [50_000], "mean": [2.0]}, "final": None},
    ]
    (work / "evaluations.npz").write_bytes(b"cut off")  # a file the stop cut short is skipped, not an error
    assert [row["variant"] for row in script.variant_rows(cells, tmp_path)] == ["ac_a2c"]


def test_gae_on_monte_carlo_settings_changes_only_lambda_and_the_critic_target():
    script = load_script()
    entry = yaml.safe_load((Path(__file__).parents[1] / "hyperparams" / "lecture_mc_pg.yml").read_text())["HalfCheetah-v5"]
    contestant, settings = script.VARIANTS["gae_mc_pg_settings"]
    assert contestant == "lecture_gae_ac" and settings["policy_kwargs"] == entry["policy_kwargs"]
    monte_carlo_defaults = inspect.signature(LectureMonteCarloPG).parameters  # the entry keeps the class's rollout
    expected = (entry["n_envs"], monte_carlo_defaults["n_steps"].default, monte_carlo_defaults["advantage_scope"].default)
    assert (settings["n_envs"], settings["n_steps"], settings["advantage_scope"]) == expected
    assert (settings["gae_lambda"], settings["value_target"]) == (0.95, "td")  # Monte-Carlo PG: 1 and "mc"
    assert script.VARIANTS["ac_mc_pg_settings"][1]["gae_lambda"] == 0.0


def test_tables_read_back_print_and_plot(tmp_path):
    rows = [
        {"variant": "ac_a2c", "seed": seed, "evaluations": {"timesteps": [1], "mean": [float(seed)]}, "final": 100.0 * seed}
        for seed in range(3)
    ]
    rows.append({"variant": "gae_lambda_0.25", "seed": 0, "evaluations": {"timesteps": [1], "mean": [5.0]}, "final": None})
    (tmp_path / "screen.json").write_text(json.dumps(rows))
    command = [sys.executable, str(SCRIPT), "--from-json", str(tmp_path / "screen.json")]
    plots = ["--plot", str(tmp_path / "final.png"), "--curves", str(tmp_path / "curves.png")]
    printed = subprocess.run([*command, *plots], check=True, capture_output=True, text=True).stdout
    assert "| `ac_a2c` | 2 | 2 | 2 | 200 |" in printed and "| `gae_lambda_0.25` | 0 | 5 | 5 | unfinished |" in printed
    assert (tmp_path / "final.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    curves = load_script().curve_runs(rows)  # finished runs only, labelled by variant
    assert [(run["cell"]["contestant"], run["cell"]["seed"]) for run in curves] == [
        ("ac_a2c", 0),
        ("ac_a2c", 1),
        ("ac_a2c", 2),
    ]


def test_cartpole_screen_first_reach_table_and_plot(tmp_path):
    screen = load_script(BENCHMARKS / "screen_cartpole.py")
    evaluations = {"timesteps": [2000, 4000, 6000], "mean": [100.0, 475.0, 300.0]}
    assert screen.first_reach(evaluations) == 4000 and screen.first_reach(evaluations, threshold=500) is None
    cell = screen.screen_cell("lead_batch_128", 7, 100_000)
    assert cell.overrides_dict() == {"batch_size": 128}
    assert cell.timesteps == 100_000 and cell.stop_at_return == 475.0  # the benchmark's schedules, stopped at 475
    rows = [
        {"variant": "ppo", "seed": 5, "first_reach": 8000, "final": 500.0},
        {"variant": "ppo", "seed": 6, "first_reach": None, "final": 300.0},
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    command = [sys.executable, str(BENCHMARKS / "screen_cartpole.py"), "--from-json", str(tmp_path / "rows.json")]
    printed = subprocess.run([*command, "--plot", str(tmp_path / "reach.png")], check=True, capture_output=True, text=True)
    assert "| `ppo` | 2 | 8,000 / - | 54,000 |" in printed.stdout  # not reached counts as the 100k budget
    assert (tmp_path / "reach.png").exists()


def test_cartpole_screen_full_runs_report_their_final_evaluations(capsys):
    screen = load_script(BENCHMARKS / "screen_cartpole.py")
    full = screen.screen_cell("shipped_target_kl_0.02", 6, 100_000, full=True)
    assert full.overrides_dict() == {"target_kl": 0.02}
    assert full.stop_at_return is None and full.final_eval_episodes == 100  # the benchmark's whole run and final
    assert full.id != screen.screen_cell("shipped_target_kl_0.02", 6, 100_000).id  # never mistaken for a stopped run
    rows = [
        {"variant": "shipped", "seed": 5, "first_reach": 6000, "final": 500.0, "stays": 8000, "falls": False},
        {"variant": "shipped", "seed": 6, "first_reach": 26000, "final": 171.8, "stays": None, "falls": True},
        {"variant": "shipped", "seed": 7, "first_reach": 12000, "final": 480.0, "stays": 14000, "falls": False},
    ]
    screen.print_final_table(rows, 100_000)
    # a seed that never stays above 475 counts at the budget
    assert "| `shipped` | 500.0 / 171.8 / 480.0 | 480.0 | 1 of 3 | 14,000 | 1 of 3 |" in capsys.readouterr().out


def test_cartpole_screen_report_only_trains_nothing(tmp_path):
    screen = load_script(BENCHMARKS / "screen_cartpole.py")
    finished = screen.screen_cell("shipped_clip_0.3", 21, 100_000)
    evaluations = {"timesteps": [2000, 4000], "mean": [200.0, 480.0], "std": [1.0, 2.0]}
    path = run_path(tmp_path, finished)
    path.parent.mkdir(parents=True)
    run = {"format_version": RESULTS_FORMAT_VERSION, "evaluations": evaluations, "final_evaluation": {"mean": 480.0}}
    path.write_text(json.dumps({**run, "hyperparams": cell_hyperparams(finished)}))

    def report_only(out: Path) -> list[str]:
        return [sys.executable, str(BENCHMARKS / "screen_cartpole.py"), "--out", str(out), "--report-only"]

    variants = ["--variants", "shipped_clip_0.3", "shipped_envs_2", "--seeds", "20", "21"]
    printed = subprocess.run([*report_only(tmp_path), *variants], check=True, capture_output=True, text=True, timeout=120)
    assert "| `shipped_clip_0.3` | 1 | 4,000 | 4,000 |" in printed.stdout and "shipped_envs_2" not in printed.stdout
    assert sorted(path.name for path in path.parent.glob("*.json")) == [path.name]  # nothing trained
    empty = subprocess.run(report_only(tmp_path / "none"), capture_output=True, text=True)
    assert empty.returncode == 0, empty.stderr  # no finished run: an empty table, not a crash

    path.write_text(json.dumps({**run, "hyperparams": {**cell_hyperparams(finished), "n_envs": 3}}))  # entry retuned since
    stale = subprocess.run([*report_only(tmp_path), *variants], capture_output=True, text=True, timeout=120)
    assert stale.returncode == 2 and "--out:" in stale.stderr and "entry has changed" in stale.stderr
    assert "Traceback" not in stale.stderr
    with pytest.raises(StaleRunsError, match="delete them or use another output folder"):
        run_cells([finished], tmp_path, show_progress=False)  # never reused as today's run, never silently retrained


def test_compare_finals_pools_run_folders_and_rows(tmp_path):
    compare = load_script(BENCHMARKS / "compare_finals.py")
    folder = tmp_path / "sweep"
    (folder / "runs").mkdir(parents=True)
    for seed, final in enumerate([100.0, 300.0]):
        run = {"format_version": RESULTS_FORMAT_VERSION, "cell": {"contestant": "lecture_ac", "seed": seed}}
        (folder / "runs" / f"{seed}.json").write_text(json.dumps({**run, "final_evaluation": {"mean": final}}))
    rows = [
        {"variant": "gae_lambda_0.25", "seed": 5, "evaluations": {}, "final": 500.0},
        {"variant": "ac_a2c", "seed": 5, "evaluations": {}, "final": 200.0},
        {"variant": "ac_a2c", "seed": 6, "evaluations": {}, "final": None},  # unfinished: not a sample
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    finals = compare.collect([folder], [tmp_path / "rows.json"], {"gae_lambda_0.25": "lecture_gae_ac", "ac_a2c": "lecture_ac"})
    assert sorted(value for _, value in finals["lecture_ac"]) == [100.0, 200.0, 300.0]
    assert finals["lecture_gae_ac"] == [("rows.json seed 5", 500.0)]
    a2c_run = {"format_version": RESULTS_FORMAT_VERSION, "cell": {"contestant": "a2c", "seed": 0}}
    (folder / "runs" / "a2c_0.json").write_text(json.dumps({**a2c_run, "final_evaluation": {"mean": 50.0}}))
    only_a2c = compare.collect([folder], [], {}, only={folder: {"a2c"}})
    assert only_a2c == {"a2c": [("sweep seed 0", 50.0)]}  # the folder's other contestants left out

    script = str(BENCHMARKS / "compare_finals.py")
    command = [sys.executable, script, "--runs", str(folder), "--rows", str(tmp_path / "rows.json")]
    labels = ["--label", "lecture_gae_ac=gae_lambda_0.25", "--label", "lecture_ac=ac_a2c"]
    printed = subprocess.run([*command, *labels, "--order", "lecture_gae_ac", "lecture_ac"], capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert "| `lecture_ac` | 3 | 200 | 200 |" in printed.stdout and "| 1.00 [1.00, 1.00] |" in printed.stdout
    filtered = subprocess.run(
        [sys.executable, script, "--runs", f"{folder}:a2c", "--order", "a2c", "lecture_ac"], capture_output=True, text=True
    )
    assert filtered.returncode == 2 and "--order: no finished run of lecture_ac (found: a2c)" in filtered.stderr
    refused = subprocess.run([*command, "--order", "lecture_mc_pg"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--order: no finished run of lecture_mc_pg" in refused.stderr


def test_interval_estimates_are_reproducible_and_leave_numpy_global_generator_alone():
    scores = {"ahead": np.arange(7.0).reshape(7, 1) + 10.0, "behind": np.arange(7.0).reshape(7, 1)}
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = interval_estimates(scores, best="ahead", reps=200)
    assert np.random.rand() == expected_next  # the global generator's state is put back
    assert interval_estimates(scores, best="ahead", reps=200) == first  # rliable draws from it: seeded per call
    aggregates, improvements = first
    assert aggregates["ahead"][0] == 13.0 and aggregates["ahead"][1] <= 13.0 <= aggregates["ahead"][2]
    assert improvements == {"behind": (1.0, 1.0, 1.0)}  # every seed of one beats every seed of the other
    assert interval_estimates(scores, best="ahead", reps=200, seed=1)[0] != first[0]  # another seed, other resamples


def _figure_run(folder: Path, contestant: str, env_id: str, seed: int, score: float, **hyperparams) -> None:
    run = {
        "format_version": RESULTS_FORMAT_VERSION,
        "cell": {"contestant": contestant, "env_id": env_id, "seed": seed},
        "hyperparams": hyperparams,
        "training_curve": {"timesteps": [1, 2], "episode_return_mean": [0.0, score]},
        "last_100_training_episodes": score,
    }
    (folder / RUNS_FOLDER).mkdir(parents=True, exist_ok=True)
    (folder / RUNS_FOLDER / f"{contestant.replace(':', '_')}_{env_id}_{seed}_{score}.json").write_text(json.dumps(run))


def test_figure3_reads_clip_02_and_the_precursors_per_task_and_names_the_best(tmp_path):
    figure = load_script(BENCHMARKS / "figure3.py")
    for seed in range(4):  # seed 3 is past --seeds 3
        _figure_run(tmp_path / "table1", "lecture_ppo:paper", "Hopper-v5", seed, 2000.0, objective="clip", clip_range=0.2)
        _figure_run(tmp_path / "table1", "lecture_ppo:paper", "Hopper-v5", seed, 9000.0, objective="none")
        _figure_run(tmp_path / "figure3", "lecture_mc_pg", "Hopper-v5", seed, 900.0 + seed)
        _figure_run(tmp_path / "figure3", "lecture_gae_ac", "Swimmer-v5", seed, 50.0)
    _figure_run(tmp_path / "table1", "lecture_ppo:paper", "Swimmer-v5", 0, 40.0, objective="clip", clip_range=0.2)
    _figure_run(tmp_path / "precursors", "a2c", "Hopper-v5", 0, 5000.0)  # not one of the default contestants
    runs = figure.load_runs(tmp_path, ["Hopper-v5", "Swimmer-v5"], seeds=3)
    cells = sorted((run["cell"]["contestant"], run["cell"]["env_id"], run["cell"]["seed"]) for run in runs)
    assert cells == sorted(
        [("lecture_ppo:paper", "Hopper-v5", seed) for seed in range(3)]
        + [("lecture_mc_pg", "Hopper-v5", seed) for seed in range(3)]
        + [("lecture_gae_ac", "Swimmer-v5", seed) for seed in range(3)]
        + [("lecture_ppo:paper", "Swimmer-v5", 0)]
    )
    assert figure.medians(runs, "Hopper-v5") == {"lecture_ppo:paper": 2000.0, "lecture_mc_pg": 901.0}
    assert "| Hopper-v5 | Monte-Carlo PG (lecture_mc_pg) | 0, 1, 2 | 901 (900 to 902) | 900 / 901 / 902 |" in figure.table(
        runs, ["Hopper-v5"]
    )
    # Hopper has no GAE actor-critic run and Swimmer no Monte-Carlo PG run: no task to compare on
    assert figure.summary(runs, ["Hopper-v5", "Swimmer-v5"]) == "No task has runs of every contestant yet."
    two = [run for run in runs if run["cell"]["contestant"] != "lecture_gae_ac"]
    assert figure.summary(two, ["Hopper-v5", "Swimmer-v5"]).endswith(
        "on the 1 of 2 tasks where every contestant has runs: LecturePPO, clip 0.2 (paper setting) 1; "
        "Monte-Carlo PG (lecture_mc_pg) 0."
    )
    _figure_run(tmp_path / "figure3", "lecture_mc_pg", "Swimmer-v5", 0, 40.0)  # the same score as clip 0.2's
    tied = figure.load_runs(tmp_path, ["Swimmer-v5"], seeds=3, algos=["lecture_ppo:paper", "lecture_mc_pg"])
    assert figure.summary(tied, ["Swimmer-v5"]).endswith(
        "(paper setting) 0; Monte-Carlo PG (lecture_mc_pg) 0; tied for the highest on Swimmer-v5."
    )

    out = tmp_path / "figure" / "f.png"
    command = [sys.executable, str(BENCHMARKS / "figure3.py"), "--results", str(tmp_path), "--out", str(out)]
    printed = subprocess.run([*command, "--envs", "Hopper-v5", "Swimmer-v5"], capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert out.read_bytes()[:4] == b"\x89PNG" and out.with_suffix(".md").read_text() == printed.stdout
    refused = subprocess.run([*command, "--envs", "Walker2d-v5"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--envs: no finished run on Walker2d-v5" in refused.stderr
