"""
Train the cells of a sweep and save one JSON per finished run.

Each cell trains in a fresh child process (so that its CPU time and peak memory are its own and
nothing global leaks between contestants) through the RL Zoo's ``ExperimentManager``: the zoo
builds the envs (VecNormalize, wrappers, n_envs), schedules and model from the contestant's
entry plus the cell's overrides. SB3's ``EvalCallback`` evaluates the deterministic policy on an
env seeded apart from the training envs. The run's JSON is written atomically (to a temporary
file, then renamed) as ``<out>/runs/<cell id>.json``: a sweep resumes by skipping the cells whose
file exists.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import platform
import queue
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_lecture_ppo.common.files import write_atomically

from sb3_lecture_ppo.evaluation.cells import RESULTS_FORMAT_VERSION, Cell
from sb3_lecture_ppo.evaluation.contestants import get_contestant

EVAL_SEED_OFFSET = 10_000
"""The evaluation env of a cell of seed ``s`` is seeded with ``s + EVAL_SEED_OFFSET``."""
MAX_CURVE_POINTS = 2_000
"""Most points of a run's recorded training curve (see :func:`thin_curve`)."""

RUNS_FOLDER = "runs"
WORK_FOLDER = ".work"
"""Where a cell's zoo logs live while it trains (deleted when it ends)."""


def run_path(out_dir: Path, cell: Cell | str) -> Path:
    """The finished run's JSON of ``cell`` (a cell or its id) in ``out_dir``."""
    return out_dir / RUNS_FOLDER / f"{cell if isinstance(cell, str) else cell.id}.json"


def log_path(out_dir: Path, cell: Cell) -> Path:
    return out_dir / RUNS_FOLDER / f"{cell.id}.log"


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part."""
    write_atomically(path, lambda file: json.dump(data, file, indent=1, default=str))


def load_run(path: Path) -> dict[str, Any] | None:
    """A finished run's JSON, or None where the file is missing, unreadable or of another format version."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format_version") == RESULTS_FORMAT_VERSION else None


# --------------------------------------------------------------------------------------------- callbacks
def _callbacks_module() -> Any:
    """The callbacks, defined on first use: SB3 is imported only in the process that trains."""
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

    class TimedEvalCallback(EvalCallback):
        """SB3's ``EvalCallback`` that also adds up the CPU time of its evaluations."""

        cpu_seconds = 0.0

        def _on_step(self) -> bool:
            if not (self.eval_freq > 0 and self.n_calls % self.eval_freq == 0):
                return super()._on_step()  # no evaluation due: nothing to time (saves two clock reads per env step)
            start = time.process_time()
            result = super()._on_step()
            self.cpu_seconds += time.process_time() - start
            return result

    class RunRecorder(BaseCallback):
        """
        Training curve (mean return of the last 100 training episodes at every rollout end), the
        rollout buffer's pad fraction, and progress reports to the sweep's progress bar.
        """

        def __init__(self, progress: Any = None) -> None:
            super().__init__()
            self.progress = progress
            self.timesteps: list[int] = []
            self.episode_return_means: list[float] = []
            self.pad_fractions: list[float] = []
            self._reported = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            buffer = getattr(self.model, "rollout_buffer", None)
            if buffer is not None and hasattr(buffer, "pad_fraction") and getattr(buffer, "n_segments", 0) > 0:
                self.pad_fractions.append(float(buffer.pad_fraction))
            episodes = self.model.ep_info_buffer
            if episodes:
                self.timesteps.append(int(self.num_timesteps))
                self.episode_return_means.append(float(np.mean([info["r"] for info in episodes])))
            self._report()

        def _on_training_end(self) -> None:
            self._report()

        def _report(self) -> None:
            if self.progress is not None:
                self.progress.put(("steps", self.num_timesteps - self._reported))
            self._reported = self.num_timesteps

    return TimedEvalCallback, RunRecorder


# ------------------------------------------------------------------------------------------- one cell
def _zoo_args(cell: Cell) -> argparse.Namespace:
    """What ``ExperimentManager`` saves as the run's ``args.yml``."""
    return argparse.Namespace(algo=cell.contestant, env=cell.env_id, seed=cell.seed, n_timesteps=cell.timesteps)


def cell_entry(cell: Cell) -> tuple[str, dict[str, Any]]:
    """The zoo entry ``cell`` trains with today (its name and hyperparameters): its contestant's, with the cell's overrides."""
    entry_name, hyperparams = get_contestant(cell.contestant).hyperparams(cell.env_id)
    hyperparams.update(cell.overrides_dict())
    return entry_name, hyperparams


def _experiment(cell: Cell, work_dir: Path) -> tuple[Any, dict[str, Any], str]:
    """The zoo's experiment manager for ``cell``, its hyperparameters and the zoo entry they come from."""
    import yaml
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_lecture_ppo.zoo import register

    register()
    contestant = get_contestant(cell.contestant)
    entry_name, hyperparams = cell_entry(cell)
    config = work_dir / "hyperparams.yml"
    config.write_text(yaml.safe_dump({cell.env_id: hyperparams}))
    manager = ExperimentManager(
        _zoo_args(cell),
        contestant.zoo_algo,
        cell.env_id,
        str(work_dir / "logs"),
        n_timesteps=cell.timesteps,
        eval_freq=0,  # our own EvalCallback below, on a separately seeded env
        seed=cell.seed,
        verbose=0,
        device="cpu",
        config=str(config),
    )
    return manager, hyperparams, entry_name


def _evaluation_env(manager: Any, seed: int, n_envs: int = 1) -> Any:
    """The zoo's evaluation env of ``n_envs`` envs (VecNormalize frozen, rewards unnormalized), seeded from ``seed``."""
    training_seed = manager.seed
    manager.seed = seed
    try:
        return manager.create_envs(n_envs, eval_env=True)
    finally:
        manager.seed = training_seed


def buffer_bytes_per_transition(model: Any) -> float | None:
    """Bytes that the rollout buffer keeps per stored transition (numpy arrays and torch tensors, each storage once)."""
    import torch as th

    buffer = getattr(model, "rollout_buffer", None)
    if buffer is None:
        return None
    storages: dict[int, int] = {}  # start address -> bytes: memory that arrays and tensors share counts once
    for value in [*vars(buffer).values(), *getattr(buffer, "_tensors", {}).values()]:
        if isinstance(value, np.ndarray):
            base = value if not isinstance(value.base, np.ndarray) else value.base
            storages[base.ctypes.data] = max(base.nbytes, storages.get(base.ctypes.data, 0))
        elif isinstance(value, th.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = max(storage.nbytes(), storages.get(storage.data_ptr(), 0))
    return sum(storages.values()) / (buffer.buffer_size * buffer.n_envs)


def thin_curve(timesteps: list[int], values: list[float], max_points: int = MAX_CURVE_POINTS) -> dict[str, Any]:
    """
    A training curve of at most ``max_points`` points: every k-th point counted back from the last (which is kept).
    A2C records one point per 5-step rollout, 200k points over 1M steps: 10 MB of JSON per run unthinned.

    :return: the run record's ``training_curve`` entries, with ``thinned_every`` = k
    """
    every = max(1, math.ceil(len(timesteps) / max_points))
    kept = range((len(timesteps) - 1) % every, len(timesteps), every)
    return {
        "timesteps": [timesteps[i] for i in kept],
        "episode_return_mean": [values[i] for i in kept],
        "thinned_every": every,
    }


def _versions() -> dict[str, str]:
    import gymnasium
    import rl_zoo3
    import stable_baselines3
    import torch

    import sb3_lecture_ppo

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "rl_zoo3": rl_zoo3.__version__,
        "gymnasium": gymnasium.__version__,
        "sb3_lecture_ppo": sb3_lecture_ppo.__version__,
    }


def _stop_at_return(stop_at_return: float | None) -> Any:
    """SB3's callback that ends training once the evaluation's best mean return reaches ``stop_at_return``, or None."""
    if stop_at_return is None:
        return None
    from stable_baselines3.common.callbacks import StopTrainingOnRewardThreshold

    return StopTrainingOnRewardThreshold(reward_threshold=stop_at_return, verbose=0)


def train_cell(cell: Cell, out_dir: Path, progress: Any = None) -> dict[str, Any]:
    """
    Train ``cell``, evaluate it and write its JSON. Runs in the current process.

    :param progress: a queue that receives ``("steps", n)`` as training advances, or None
    :return: the run's record (also written to :func:`run_path`)
    """
    import torch as th

    th.set_num_threads(1)
    work_root = out_dir / WORK_FOLDER
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{cell.id}-", dir=work_root) as work:
        run = build_run(cell, Path(work), progress)
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        run.model.learn(cell.timesteps, callback=[run.evaluation, run.recorder])
        record = run_record(run, time.perf_counter() - wall_start, time.process_time() - cpu_start)
    write_json_atomically(run_path(out_dir, cell), record)
    return record


@dataclasses.dataclass
class BuiltRun:
    """A cell's model built by the zoo, with the callbacks that evaluate and record it."""

    cell: Cell
    manager: Any
    model: Any
    hyperparams: dict[str, Any]
    entry_name: str
    evaluation: Any
    recorder: Any


def build_run(cell: Cell, work: Path, progress: Any = None) -> BuiltRun:
    """The zoo's model of ``cell`` (its logs under ``work``), its evaluation callback and its recorder."""
    TimedEvalCallback, RunRecorder = _callbacks_module()
    work.mkdir(parents=True, exist_ok=True)
    manager, hyperparams, entry_name = _experiment(cell, work)
    model, _ = manager.setup_experiment()
    evaluation = TimedEvalCallback(
        _evaluation_env(manager, cell.seed + EVAL_SEED_OFFSET, cell.eval_envs),
        n_eval_episodes=cell.eval_episodes,
        eval_freq=max(cell.eval_freq // model.n_envs, 1),
        deterministic=manager.deterministic_eval,
        log_path=str(work),  # SB3 keeps the evaluations' results only where it logs them
        verbose=0,
        callback_on_new_best=_stop_at_return(cell.stop_at_return),
    )
    return BuiltRun(cell, manager, model, hyperparams, entry_name, evaluation, RunRecorder(progress))


def run_record(run: BuiltRun, wall_seconds: float, cpu_seconds: float, population_size: int | None = None) -> dict[str, Any]:
    """
    Evaluate the trained model of ``run`` (the final evaluation) and return the run's JSON record.

    :param wall_seconds: the training's wall time (a population's: the whole population's)
    :param cpu_seconds: the training's CPU time, evaluations included (a population's: its share, the
        population's CPU time divided by its size)
    :param population_size: the number of runs trained together with this one (None: trained alone)
    """
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    cell, model, evaluation, recorder = run.cell, run.model, run.evaluation, run.recorder
    final_env = _evaluation_env(run.manager, cell.seed + EVAL_SEED_OFFSET, cell.eval_envs)
    sync_envs_normalization(model.get_env(), final_env)
    final_returns, _ = evaluate_policy(
        model,
        final_env,
        n_eval_episodes=cell.final_eval_episodes,
        deterministic=run.manager.deterministic_eval,
        return_episode_rewards=True,
    )
    train_cpu_seconds = cpu_seconds - evaluation.cpu_seconds
    record = {
        "format_version": RESULTS_FORMAT_VERSION,
        "cell_id": cell.id,
        "cell": cell.to_dict(),
        "zoo_algo": get_contestant(cell.contestant).zoo_algo,
        "zoo_entry": run.entry_name,
        "hyperparams": recorded_hyperparams(run.hyperparams),
        "n_envs": model.n_envs,
        "evaluations": {
            "timesteps": [int(step) for step in evaluation.evaluations_timesteps],
            "mean": [float(np.mean(returns)) for returns in evaluation.evaluations_results],
            "std": [float(np.std(returns)) for returns in evaluation.evaluations_results],
        },
        "final_evaluation": {
            "mean": float(np.mean(final_returns)),
            "std": float(np.std(final_returns)),
            "episodes": len(final_returns),  # type: ignore[arg-type]
        },
        "training_curve": thin_curve(recorder.timesteps, recorder.episode_return_means),
        "last_100_training_episodes": recorder.episode_return_means[-1] if recorder.episode_return_means else None,
        "timesteps": int(model.num_timesteps),
        "wall_seconds": wall_seconds,
        "cpu_seconds": cpu_seconds,
        "eval_cpu_seconds": evaluation.cpu_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "env_steps_per_cpu_second": model.num_timesteps / train_cpu_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "buffer_bytes_per_transition": buffer_bytes_per_transition(model),
        "pad_fraction": float(np.mean(recorder.pad_fractions)) if recorder.pad_fractions else 0.0,
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if population_size is not None:
        record["population_size"] = population_size
    return record


def _unit_label(unit: Sequence[Cell]) -> str:
    if len(unit) == 1:
        return unit[0].label
    return f"population of {len(unit)} ({unit[0].env_id})"


def _child(cells_data: list[dict[str, Any]], out_dir: str, progress: Any) -> None:
    """
    Entry point of a child process: train one cell, or a group of cells as one population, the output going to
    the (first) cell's log file.
    """
    from sb3_lecture_ppo.evaluation.population_runner import containing_checkpoint, train_population_cells

    cells = [Cell.from_dict(data) for data in cells_data]
    out = Path(out_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    for cell in cells[1:]:
        log_path(out, cell).write_text(f"trained in a population of {len(cells)}: see {log_path(out, cells[0])}\n")
    with open(log_path(out, cells[0]), "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            if len(cells) == 1 and containing_checkpoint(out, cells) is None:  # else a population of one resumes it
                train_cell(cells[0], out, progress)
            else:
                train_population_cells(cells, out, progress)
        except BaseException:
            traceback.print_exc()
            raise


def recorded_hyperparams(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """``hyperparams`` as a run's JSON records them: numbers, strings and booleans as they are, the rest as repr."""
    return {key: value if isinstance(value, (int, float, str, bool)) else repr(value) for key, value in hyperparams.items()}


def cell_hyperparams(cell: Cell) -> dict[str, Any]:
    """The hyperparameters ``cell`` trains with today, as its run's JSON would record them."""
    return recorded_hyperparams(cell_entry(cell)[1])


# ------------------------------------------------------------------------------------------- a sweep
def stale_cells(cells: Iterable[Cell], out_dir: Path) -> list[Cell]:
    """
    The cells whose finished run in ``out_dir`` trained with other hyperparameters than the
    contestant's entry gives today (a shipped entry was retuned, rl_zoo3 was upgraded): their
    cell id names only the sweep's settings, so without this check a rerun would reuse them.
    """
    return [
        cell
        for cell in cells
        if (run := load_run(run_path(out_dir, cell))) is not None and run.get("hyperparams") != cell_hyperparams(cell)
    ]


class StaleRunsError(ValueError):
    """An output folder holds finished runs that trained with other hyperparameters than their entry gives now."""


def other_format_message(cells: Iterable[Cell], out_dir: Path) -> str | None:
    """Why ``out_dir`` cannot be resumed where a cell's run file has another results-format version; else None."""
    for cell in cells:
        try:
            version = json.loads(run_path(out_dir, cell).read_text()).get("format_version")
        except (OSError, ValueError, AttributeError):
            continue  # missing or unreadable (rerun): nothing finished of another version
        if version != RESULTS_FORMAT_VERSION:
            return (
                f"{run_path(out_dir, cell)} is results format {version}, this version of sb3_lecture_ppo reads and "
                f"writes format {RESULTS_FORMAT_VERSION}: use another output folder (or move those runs away)"
            )
    return None


def refuse_stale_runs(cells: Iterable[Cell], out_dir: Path) -> None:
    """
    Raise :class:`StaleRunsError` if any cell's finished run in ``out_dir`` is stale (see :func:`stale_cells`)
    or of another results-format version (it would be retrained over, its results lost).
    """
    cells = list(cells)
    if (message := other_format_message(cells, out_dir)) is not None:
        raise StaleRunsError(message)
    if stale := stale_cells(cells, out_dir):
        raise StaleRunsError(
            f"{out_dir} holds {len(stale)} finished runs whose zoo entry has changed since they trained "
            f"(first: {stale[0].label}, {run_path(out_dir, stale[0])}): delete them or use another output folder"
        )


def pending_cells(cells: Iterable[Cell], out_dir: Path) -> list[Cell]:
    """The cells without a finished run in ``out_dir``, in order."""
    return [cell for cell in cells if load_run(run_path(out_dir, cell)) is None]


BACKENDS = ("population", "runs")


def run_cells(
    cells: Sequence[Cell],
    out_dir: Path,
    jobs: int = 1,
    show_progress: bool = True,
    backend: str = "runs",
    population_size: int = 64,
) -> list[Cell]:
    """
    Train every cell of ``cells`` without a finished run, ``jobs`` child processes at a time,
    in the given order (interleave contestants there so that machine drift hits all alike).

    :param backend: ``"runs"``: one process per cell; ``"population"``: the cells that can share a population
        (:func:`~.population_runner.group_cells`) train as one in one process, at most ``population_size`` per
        population, and the others alone; a group some of whose cells other groups' checkpoints in ``out_dir`` trained
        further trains as one population per checkpoint (:func:`~.population_runner.checkpoint_aligned`)
    :return: the cells that failed (their tracebacks are in ``<out>/runs/<cell id>.log``)
    :raises StaleRunsError: if a finished run in ``out_dir`` trained with other hyperparameters than
        its entry gives now (its cell id names only the sweep's settings, so it would be reused)
    """
    from tqdm.auto import tqdm

    from sb3_lecture_ppo.evaluation.population_runner import checkpoint_aligned, group_cells

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown: use one of {BACKENDS}")
    refuse_stale_runs(cells, out_dir)
    (out_dir / RUNS_FOLDER).mkdir(parents=True, exist_ok=True)
    todo = pending_cells(cells, out_dir)
    if backend == "population":
        units = [part for group in group_cells(todo, population_size) for part in checkpoint_aligned(out_dir, group)]
    else:
        units = [[cell] for cell in todo]
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    running: dict[Any, list[Cell]] = {}
    failed: list[Cell] = []
    bar = tqdm(
        total=sum(cell.timesteps for cell in todo),
        unit="step",
        unit_scale=True,
        disable=not show_progress,
        desc=f"{len(cells) - len(todo)}/{len(cells)} runs done",
        file=sys.stderr,
    )
    finished = len(cells) - len(todo)
    try:
        with _sigterm_as_exit():
            while units or running:
                while units and len(running) < jobs:
                    unit = units.pop(0)
                    process = context.Process(
                        target=_child, args=([cell.to_dict() for cell in unit], str(out_dir), progress), daemon=True
                    )
                    process.start()
                    running[process] = unit
                    bar.set_postfix_str(", ".join(_unit_label(running_unit) for running_unit in running.values()))
                _drain(progress, bar, timeout=0.5)
                for process in [process for process in running if not process.is_alive()]:
                    unit = running.pop(process)
                    process.join()
                    for cell in unit:
                        finished += 1
                        if (run := load_run(run_path(out_dir, cell))) is None:
                            failed.append(cell)
                            bar.write(f"{cell.label} failed (exit code {process.exitcode}): see {log_path(out_dir, unit[0])}")
                        elif run.get("timesteps", cell.timesteps) < cell.timesteps:  # stopped at its return
                            bar.total -= cell.timesteps - run["timesteps"]
                            bar.refresh()
                    bar.set_description(f"{finished}/{len(cells)} runs done")
            _drain(progress, bar, timeout=0.0)
    finally:
        for process in running:
            process.terminate()
        bar.close()
    return failed


@contextlib.contextmanager
def _sigterm_as_exit() -> Any:
    """
    SIGTERM (``kill``, ``timeout``) raises SystemExit in the sweep's process, so that its children are
    stopped with it (the default would leave them training on, orphaned). Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_signal(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drain(progress: Any, bar: Any, timeout: float) -> None:
    """Move the children's step reports to the progress bar."""
    try:
        while True:
            _, steps = progress.get(timeout=timeout)
            bar.update(steps)
            timeout = 0.0
    except queue.Empty:
        return
