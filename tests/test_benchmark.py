"""
The benchmark: cells and their ids, where contestants' hyperparameters come from, the report's
statistics, bad input, and ``--quick`` end to end (every output file, resume, rerun).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sb3_lecture_ppo import benchmark
from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.contestants import SB3_POLICY, get_contestant, zoo_entry_name
from sb3_lecture_ppo.evaluation.report import (
    falls_after_reach,
    final_return_panels,
    markdown_table,
    plot_final_returns,
    steps_to_threshold,
    summarize,
)
from sb3_lecture_ppo.evaluation.runner import load_run, run_cells, run_path, thin_curve, train_cell

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
CELL = dict(
    contestant="ppo", env_id="CartPole-v1", seed=0, timesteps=1000, eval_freq=500, eval_episodes=2, final_eval_episodes=3
)


def test_cell_id_is_stable_and_names_every_setting():
    cell = Cell.make(**CELL, overrides={"gamma": 0.9, "n_steps": 64})
    assert cell.id == Cell.make(**CELL, overrides={"n_steps": 64, "gamma": 0.9}).id
    assert Cell.from_dict(json.loads(json.dumps(cell.to_dict()))) == cell
    changed = [Cell.make(**{**CELL, key: value}) for key, value in [("seed", 1), ("timesteps", 2000), ("eval_episodes", 3)]]
    changed.append(Cell.make(**CELL, overrides={"gamma": 0.8}))
    assert len({cell.id, *(other.id for other in changed)}) == len(changed) + 1


def test_stop_at_return_names_a_new_cell_and_leaves_older_ids_alone():
    cell = Cell.make(**CELL)
    assert "stop_at_return" not in cell.to_dict()
    assert cell.id == "b186f32e0a3bb622"  # its id before the field existed: runs saved then are still found
    stopping = Cell.make(**CELL, stop_at_return=475.0)
    assert stopping.id != cell.id and stopping.to_dict()["stop_at_return"] == 475.0
    assert Cell.from_dict(json.loads(json.dumps(stopping.to_dict()))) == stopping


def test_a_cell_that_stops_at_a_return_ends_at_its_first_evaluation_there(tmp_path):
    # A threshold every policy reaches: training ends at the first evaluation, the schedules still span 4,096 steps.
    cell = Cell.make(**{**CELL, "timesteps": 4096, "eval_freq": 512}, stop_at_return=1.0)
    record = train_cell(cell, tmp_path)
    assert record["evaluations"]["timesteps"] == [512]
    assert record["timesteps"] == 512
    assert load_run(run_path(tmp_path, cell)) == json.loads(json.dumps(record, default=str))


def test_evaluations_on_several_envs_play_the_same_episodes_and_name_a_new_cell(tmp_path):
    cell = Cell.make(**{**CELL, "eval_episodes": 4, "final_eval_episodes": 6}, eval_envs=2)
    assert "eval_envs" not in Cell.make(**CELL).to_dict() and cell.to_dict()["eval_envs"] == 2
    assert cell.id != Cell.make(**{**CELL, "eval_episodes": 4, "final_eval_episodes": 6}).id
    record = train_cell(cell, tmp_path)
    assert len(record["evaluations"]["timesteps"]) == 2  # every 500 steps (of 8 envs: 496, 992)
    assert record["final_evaluation"]["episodes"] == 6
    assert Cell.from_dict(record["cell"]) == cell


def test_the_sweep_bar_ends_full_when_a_run_stops_at_its_return(tmp_path, capsys):
    cell = Cell.make(**{**CELL, "timesteps": 4096, "eval_freq": 512}, stop_at_return=1.0)
    assert run_cells([cell], tmp_path, show_progress=True) == []
    assert "512/512" in capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]


def test_zoo_entry_falls_back_to_another_version_of_the_env_only():
    entries = {"HalfCheetah-v4": {}, "HalfCheetah-v3": {}, "default": {}, "Hopper-v4": {}}
    assert zoo_entry_name(entries, "HalfCheetah-v4") == "HalfCheetah-v4"
    assert zoo_entry_name(entries, "HalfCheetah-v5") == "HalfCheetah-v4"
    assert zoo_entry_name(entries, "Walker2d-v5") is None
    assert zoo_entry_name(entries, "NoVersion") is None


def test_contestants_read_the_installed_zoo_and_our_yml():
    entry, params = get_contestant("ppo").hyperparams("HalfCheetah-v5")
    assert entry == "HalfCheetah-v4" and params["normalize"] and params["n_epochs"] == 20  # the zoo's own entry
    _, ours = get_contestant("lecture_ppo").hyperparams("CartPole-v1")
    assert ours["seq_length"] == 16
    _, ppo_cartpole = get_contestant("ppo").hyperparams("CartPole-v1")
    _, in_sb3_settings = get_contestant("lecture_ppo:sb3").hyperparams("CartPole-v1")
    assert in_sb3_settings == {
        **ppo_cartpole,
        "policy": SB3_POLICY,
        "seq_length": 1,
        "advantage_scope": "rollout",
        "recompute_advantage": False,
        "value_target": "lambda",
    }
    with pytest.raises(ValueError, match="has no RL Zoo entry for Blackjack-v1"):
        get_contestant("ppo").hyperparams("Blackjack-v1")
    with pytest.raises(ValueError, match="unknown algorithm 'dqn2'"):
        get_contestant("dqn2")


def test_steps_to_threshold_first_reach_and_stay():
    steps = [10, 20, 30, 40, 50]
    assert steps_to_threshold(steps, [1, 5, 2, 5, 6], 5) == (20, 40)
    assert steps_to_threshold(steps, [5, 5, 5, 5, 5], 5) == (10, 10)
    assert steps_to_threshold(steps, [1, 5, 2, 5, 1], 5) == (20, None)
    assert steps_to_threshold(steps, [1, 1, 1, 1, 1], 5) == (None, None)


@pytest.mark.parametrize("n_points, max_points", [(0, 10), (7, 10), (10, 10), (11, 10), (200_000, 2_000), (199_999, 2_000)])
def test_training_curves_are_thinned_to_every_kth_point_ending_at_the_last(n_points, max_points):
    timesteps = [5 * (i + 1) for i in range(n_points)]
    values = [float(i) for i in range(n_points)]
    curve = thin_curve(timesteps, values, max_points)
    every = curve["thinned_every"]
    assert len(curve["timesteps"]) <= max_points and every == max(1, -(-n_points // max_points))
    reference = [i for i in range(n_points) if (n_points - 1 - i) % every == 0]
    assert curve["timesteps"] == [timesteps[i] for i in reference]
    assert curve["episode_return_mean"] == [values[i] for i in reference]
    assert n_points == 0 or curve["timesteps"][-1] == timesteps[-1]


def synthetic_run(contestant: str, seed: int, means: list[float], speed: float) -> dict:
    return {
        "cell": {**CELL, "contestant": contestant, "seed": seed},
        "evaluations": {"timesteps": [100, 200, 300], "mean": means, "std": [0.0] * 3},
        "final_evaluation": {"mean": means[-1]},
        "env_steps_per_cpu_second": speed,
        "peak_rss_mb": 300.0,
        "buffer_bytes_per_transition": 48.0,
        "pad_fraction": 0.0,
    }


def test_summary_medians_spreads_and_ratios():
    runs = [
        synthetic_run("ppo", 0, [0, 500, 500], 1000),
        synthetic_run("ppo", 1, [0, 0, 500], 1200),
        synthetic_run("ppo", 2, [0, 0, 0], 1100),
        synthetic_run("lecture_ppo", 0, [500, 500, 500], 1500),
        synthetic_run("lecture_ppo", 1, [0, 500, 400], 1300),
    ]
    rows = {row["contestant"]: row for row in summarize(runs, {"CartPole-v1": 475})}
    ppo, ours = rows["ppo"], rows["lecture_ppo"]
    assert ppo["steps_to_threshold"] == {"median": 250.0, "min": 200.0, "max": 300.0, "missing": 1}
    assert ppo["env_steps_per_cpu_second"]["median"] == 1100
    assert ours["steps_to_threshold"]["median"] == 150 and ours["steps_to_stay_above_threshold"]["missing"] == 1
    table = markdown_table(list(rows.values()))
    assert "1 not reached" in table and "(1.27x)" in table  # 1400 / 1100 steps per CPU-second


def test_seeds_falling_back_after_the_first_reach_are_counted():
    runs = [
        synthetic_run("ppo", 0, [500, 380, 500], 1000),  # reaches, falls below 400, recovers: counts
        synthetic_run("ppo", 1, [500, 450, 500], 1000),  # dips under 475 but not under 400: does not count
        synthetic_run("ppo", 2, [390, 0, 0], 1000),  # never reaches: does not count
    ]
    assert falls_after_reach([0, 500, 380, 500], 475, 400) is True
    assert falls_after_reach([390, 0], 475, 400) is None
    (row,) = summarize(runs, {"CartPole-v1": 475}, {"CartPole-v1": 400})
    assert row["seeds_falling_after_reach"] == 1
    assert "| 1 of 3 (below 400) |" in markdown_table([row])
    (row,) = summarize(runs, {"CartPole-v1": 475})
    assert row["seeds_falling_after_reach"] is None


def test_final_returns_per_env_and_contestant_one_value_per_seed(tmp_path):
    runs = [synthetic_run("ppo", seed, [0, 0, 100.0 * seed], 1000) for seed in range(3)]
    runs.append({**synthetic_run("a2c", 0, [0, 0, 7.0], 1000), "cell": {**CELL, "contestant": "a2c", "env_id": "Other-v0"}})
    panels = final_return_panels(runs)
    assert panels == {"CartPole-v1": {"ppo": [0.0, 100.0, 200.0]}, "Other-v0": {"a2c": [7.0]}}
    plot_final_returns(panels, tmp_path / "final.png", "final evaluation")
    assert (tmp_path / "final.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_main(capsys, *args: str) -> tuple[int, str]:
    code = benchmark.main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algos", "lecture_ppo", "sac2"], "--algos: unknown algorithm 'sac2'"),
        (["--envs", "CartPole-v9"], "--envs: unknown env 'CartPole-v9'"),
        (["--algos", "ppo", "--envs", "Blackjack-v1", "--timesteps", "100"], "--algos: contestant 'ppo' has no RL Zoo entry"),
        (["--timesteps", "0"], "--timesteps: the budget of CartPole-v1 must be a positive"),
        (["--timesteps", "Pendulum-v1=100"], "--timesteps 'Pendulum-v1=100': Pendulum-v1 is not among --envs"),
        (["--envs", "Acrobot-v1"], "--timesteps: no default budget for Acrobot-v1"),
        (["--eval-envs", "3"], "--eval-envs 3 must divide --eval-episodes (10) and --final-eval-episodes (100)"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(capsys, tmp_path, args, message):
    code, error = run_main(capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2
    assert error.count("\n") == 1 and message in error


def test_bad_counts_are_refused_by_the_parser(capsys):
    for option in ("--seeds", "--jobs", "--eval-episodes", "--eval-envs"):
        with pytest.raises(SystemExit):
            benchmark.main([option, "0"])
        assert f"{option} must be a positive integer" in capsys.readouterr().err


def test_first_seed_extends_a_sweep_with_the_same_cells():
    def cells(*args):
        return benchmark.sweep_cells(benchmark.parse_args(["--algos", "ppo", "a2c", *args]))[0]

    whole = cells("--seeds", "4")
    assert cells("--seeds", "2") + cells("--seeds", "2", "--first-seed", "2") == whole
    assert [cell.seed for cell in whole] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [cell.contestant for cell in whole[2:4]] == ["a2c", "ppo"]  # interleaved by seed, not by invocation


def test_a_negative_first_seed_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--first-seed", "-1"])
    assert "--first-seed must be a non-negative integer, got '-1'" in capsys.readouterr().err


def test_a_folder_with_other_settings_is_refused_unless_overwrite(capsys, tmp_path):
    out = tmp_path / "out"
    assert benchmark.main(["--timesteps", "1000", "--seeds", "1", "--out", str(out), "--report-only"]) == 0
    (out / "runs").mkdir(exist_ok=True)
    (out / "runs" / "old.json").write_text("{}")
    code, error = run_main(capsys, "--timesteps", "2000", "--seeds", "1", "--out", str(out), "--report-only")
    assert code == 2 and "holds CartPole-v1 runs made with other settings" in error and "--overwrite" in error
    assert (out / "runs" / "old.json").exists()  # nothing lost on refusal
    assert benchmark.main(["--timesteps", "2000", "--seeds", "1", "--out", str(out), "--report-only", "--overwrite"]) == 0
    assert not (out / "runs" / "old.json").exists()


def test_runs_of_a_changed_entry_are_refused_unless_overwrite(capsys, tmp_path):
    from sb3_lecture_ppo.evaluation.runner import RESULTS_FORMAT_VERSION, cell_hyperparams, run_path

    out = tmp_path / "out"
    args = ["--algos", "ppo", "--timesteps", "1000", "--seeds", "1", "--out", str(out), "--report-only"]
    assert benchmark.main(args) == 0
    cell = Cell.make(**{**CELL, "timesteps": 1000, "eval_freq": 2000, "eval_episodes": 10, "final_eval_episodes": 100})
    assert [cell] == benchmark.sweep_cells(benchmark.parse_args(args))[0]
    run_path(out, cell).parent.mkdir(parents=True, exist_ok=True)
    run = {"format_version": RESULTS_FORMAT_VERSION, "hyperparams": cell_hyperparams(cell)}
    run_path(out, cell).write_text(json.dumps(run))
    benchmark.check_stale_runs([cell], out, overwrite=False)  # the same entry: the run counts as done
    run["hyperparams"] = {**run["hyperparams"], "n_epochs": 1}  # the entry it trained with was retuned since
    run_path(out, cell).write_text(json.dumps(run))
    code, error = run_main(capsys, *args)
    assert code == 2 and error.count("\n") == 1
    assert (
        "1 finished runs whose zoo entry has changed" in error and "ppo CartPole-v1 seed 0" in error and "--overwrite" in error
    )
    assert run_path(out, cell).exists()
    assert benchmark.main([*args, "--overwrite"]) == 0
    assert not run_path(out, cell).exists()


def quick(out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sb3_lecture_ppo.benchmark", "--quick", "--jobs", "2", "--out", str(out)]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_quick_writes_every_output_and_resumes(tmp_path):
    out = tmp_path / "quick"
    quick(out)
    for name in benchmark.OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4  # lecture_ppo and ppo, 2 seeds
    results = json.loads((out / "results.json").read_text())
    assert {row["contestant"] for row in results["summary"]} == {"lecture_ppo", "ppo"}
    for run in results["runs"]:
        assert run["evaluations"]["timesteps"] and run["training_curve"]["timesteps"]
        assert run["final_evaluation"]["episodes"] == 20 and run["timesteps"] >= 20_000
        assert run["env_steps_per_cpu_second"] > 0 and run["peak_rss_mb"] > 0 and run["buffer_bytes_per_transition"] > 0
        assert run["train_cpu_seconds"] < run["cpu_seconds"]  # evaluation time is left out of the throughput
    lecture = [run for run in results["runs"] if run["cell"]["contestant"] == "lecture_ppo"]
    assert all(run["pad_fraction"] > 0 for run in lecture)  # CartPole's episodes end inside segments
    assert "| CartPole-v1 (>= 475) | `lecture_ppo` | 2 |" in (out / "results.md").read_text()

    # an interrupted sweep: one run missing; the rerun trains only that one
    stamps = {path.name: path.stat().st_mtime_ns for path in runs}
    runs[0].unlink()
    rerun = quick(out)
    assert "3/4 runs done" in rerun.stderr
    for path in runs[1:]:
        assert path.stat().st_mtime_ns == stamps[path.name]
    assert runs[0].exists()


def test_every_other_contestant_trains_through_the_benchmark(tmp_path):
    others = ["a2c", "trpo", "lecture_ac", "lecture_gae_ac", "lecture_mc_pg", "lecture_ppo:sb3", "lecture_ppo:lecture"]
    tiny = ["--timesteps", "1024", "--eval-freq", "512", "--eval-episodes", "1", "--final-eval-episodes", "1", "--seeds", "1"]
    command = [sys.executable, "-m", "sb3_lecture_ppo.benchmark", "--algos", *others, *tiny, "--jobs", "2", "--no-progress"]
    result = subprocess.run([*command, "--out", str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = [json.loads(path.read_text()) for path in (tmp_path / "runs").glob("*.json")]
    assert sorted(run["cell"]["contestant"] for run in runs) == sorted(others)
    by_name = {run["cell"]["contestant"]: run for run in runs}
    assert by_name["lecture_ppo:sb3"]["zoo_algo"] == "lecture_ppo"
    assert by_name["lecture_ppo:sb3"]["hyperparams"]["policy"] == SB3_POLICY


def _children(pid: int) -> list[int]:
    """Linux: the processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_killed_sweep_stops_its_training_processes(tmp_path):
    script = (
        "import sys; from pathlib import Path\n"
        "from sb3_lecture_ppo.evaluation.cells import Cell\n"
        "from sb3_lecture_ppo.evaluation.runner import run_cells\n"
        "cell = Cell.make(contestant='lecture_ppo', env_id='CartPole-v1', seed=0, timesteps=10**8, eval_freq=10**8,"
        " eval_episodes=1, final_eval_episodes=1)\n"
        "run_cells([cell], Path(sys.argv[1]), show_progress=False)\n"
    )
    sweep = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (children := [pid for pid in _children(sweep.pid) if b"spawn_main" in _cmdline(pid)]):
            assert time.monotonic() < deadline and sweep.poll() is None, "the sweep started no training process"
            time.sleep(0.2)
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=30) != 0
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in children), "training processes outlived their sweep"
    finally:
        sweep.kill()
        for pid in filter(_alive, children):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("module", ["sb3_lecture_ppo.benchmark", "sb3_lecture_ppo.ablation"])
def test_quick_with_an_option_it_sets_is_refused_in_one_line(module, tmp_path):
    command = [sys.executable, "-m", module, "--quick", "--timesteps", "0", "--seeds", "3", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--quick sets --seeds, --timesteps itself: drop --quick, or drop --seeds, --timesteps" in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_folder_of_another_results_format_is_refused_with_the_versions(capsys, tmp_path):
    from sb3_lecture_ppo import benchmark
    from sb3_lecture_ppo.evaluation.runner import run_path

    out = tmp_path / "out"
    args = ["--algos", "ppo", "--envs", "CartPole-v1", "--seeds", "1", "--timesteps", "64", "--out", str(out)]
    cells, _ = benchmark.sweep_cells(benchmark.parse_args(args))
    path = run_path(out, cells[0])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format_version": 0, "cell_id": cells[0].id}))
    assert benchmark.main([*args, "--report-only"]) == 2
    error = capsys.readouterr().err
    assert "is results format 0, this version of sb3_lecture_ppo reads and writes format 1" in error
    assert error.count("\n") == 1
    assert json.loads(path.read_text())["format_version"] == 0  # nothing overwritten
