"""
Train a sweep's compatible cells as populations (:mod:`sb3_lecture_ppo.population`): one process per group of
cells instead of one per cell, each cell's run written as the same JSON :func:`~.runner.train_cell` writes.

Cells share a population where they differ only in seed and in the objective's settings (``objective``,
``clip_range``, ``kl_coef``, ``kl_target``): the same contestant, env, budget, evaluation settings and every other
hyperparameter, and a LecturePPO entry the population trains: the paper setting (``seq_length=1``, rollout-scope
GAE computed once) or the lecture's segments (segment-scope GAE), with no ``target_kl``, no gSDE and no Dict
observations. Every other cell trains alone, as before.

A group checkpoints itself (the population, its members' callbacks and last episodes) into
``<out>/.work/population-<id>/`` every :data:`CHECKPOINT_SECONDS`: a group interrupted resumes from there, its
finished cells are never retrained. A group without a checkpoint of its own whose cells are all members of another
group's checkpoint (the sweep rerun with a smaller ``--population-size``, e.g. to spread one population over more
``--jobs``) resumes those members from it: members train independently, so nothing trained is lost. The other way
round (the sweep rerun with a larger size, or an Optuna worker handed cells that other groups checkpointed), a group
whose cells are trained further in other groups' checkpoints than it would resume them trains as one population per
checkpoint instead (:func:`checkpoint_aligned`). A checkpoint is removed once all of its cells have finished runs.
"""

import hashlib
import json
import os
import pickle
import resource
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.contestants import get_contestant
from sb3_lecture_ppo.evaluation.runner import (
    WORK_FOLDER,
    BuiltRun,
    build_run,
    cell_entry,
    load_run,
    run_path,
    run_record,
    write_json_atomically,
)

OBJECTIVE_SETTINGS = ("objective", "clip_range", "kl_coef", "kl_target")
"""The settings in which the members of one population may differ (besides the seed)."""
CHECKPOINT_SECONDS = 600.0
"""Seconds of training between two checkpoints of a group."""
CALLBACK_STATE = "callbacks.pkl"
CELLS_FILE = "cells.json"
"""The ids of a checkpointed group's cells, in the order of its members."""
DEFAULT_POPULATION_SIZE = 64


class PopulationMemoryError(MemoryError):
    """A population that would not fit in memory, found before it trains."""


class SplitCheckpointError(ValueError):
    """A population some of whose cells are trained further in other groups' checkpoints than it would resume."""


def population_key(cell: Cell) -> tuple[Any, ...] | None:
    """What a cell must share with the others of its population; None where it trains alone."""
    if get_contestant(cell.contestant).zoo_algo != "lecture_ppo" or cell.stop_at_return is not None:
        return None
    _, hyperparams = cell_entry(cell)
    plain = hyperparams.get("target_kl") is None and not hyperparams.get("use_sde", False)
    paper_setting = (
        hyperparams.get("seq_length") == 1
        and hyperparams.get("advantage_scope") == "rollout"
        and hyperparams.get("recompute_advantage") is False
    )
    # the lecture's semantics: segments with advantages computed in segment scope (per minibatch where recomputed)
    lecture_setting = hyperparams.get("advantage_scope", "segment") == "segment"
    if not (plain and (paper_setting or lecture_setting)) or "MultiInput" in str(hyperparams.get("policy", "")):
        return None
    shared = tuple(sorted((key, repr(value)) for key, value in hyperparams.items() if key not in OBJECTIVE_SETTINGS))
    return (cell.contestant, cell.env_id, cell.timesteps, cell.eval_freq, cell.eval_episodes, cell.final_eval_episodes, shared)


def group_cells(cells: Iterable[Cell], max_size: int) -> list[list[Cell]]:
    """
    ``cells`` as units of work, in their order: populations of at most ``max_size`` cells that share a
    :func:`population_key`, and every other cell alone.
    """
    if max_size < 1:
        raise ValueError(f"population size must be at least 1, got {max_size}")
    units: list[list[Cell]] = []
    open_groups: dict[tuple[Any, ...], list[Cell]] = {}
    for cell in cells:
        key = population_key(cell)
        if key is None or max_size == 1:
            units.append([cell])
            continue
        group = open_groups.get(key)
        if group is None or len(group) >= max_size:
            group = open_groups[key] = []
            units.append(group)
        group.append(cell)
    return units


def group_id(cells: Sequence[Cell]) -> str:
    """A stable id of a group of cells (the same cells, the same id)."""
    return hashlib.sha1(",".join(sorted(cell.id for cell in cells)).encode()).hexdigest()[:16]


def checkpoint_folder(out_dir: Path, cells: Sequence[Cell]) -> Path:
    return out_dir / WORK_FOLDER / f"population-{group_id(cells)}"


def train_population_cells(
    cells: Sequence[Cell], out_dir: Path, progress: Any = None, memory_limit_bytes: int | None = None
) -> list[dict[str, Any]]:
    """
    Train ``cells`` as one population, evaluate each member as :func:`~.runner.train_cell` evaluates a run, and
    write each cell's JSON. Runs in the current process.

    :param memory_limit_bytes: refuse a population whose estimated memory exceeds this (default: the memory
        available now)
    :raises PopulationMemoryError: before training, naming the estimate and the limit
    :raises SplitCheckpointError: before training, where some of ``cells`` are trained further in other groups'
        checkpoints (see :func:`split_checkpoint_problem`; :func:`checkpoint_aligned` gives the groups to train)
    """
    import torch as th

    from sb3_lecture_ppo.population import Population

    problem = split_checkpoint_problem(out_dir, cells)
    if problem is not None:
        raise SplitCheckpointError(problem)
    th.set_num_threads(1)
    folder = checkpoint_folder(out_dir, cells)
    work = folder / "zoo"
    runs = _build_runs(cells, work, progress, memory_limit_bytes)
    source = resume_source(out_dir, cells)
    resumed = source is not None
    if source is not None:
        population, cpu_before = _resume(source[0], runs, source[1])
    else:
        population, cpu_before = Population([run.model for run in runs]), 0.0
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    last_save = [time.perf_counter()]

    def checkpoint(trained: Any) -> None:
        if time.perf_counter() - last_save[0] >= CHECKPOINT_SECONDS:
            _save(folder, trained, runs, cpu_before + time.process_time() - cpu_start)
            last_save[0] = time.perf_counter()

    population.learn(
        cells[0].timesteps,
        reset_num_timesteps=not resumed,
        callbacks=[[run.evaluation, run.recorder] for run in runs],
        after_update=checkpoint,
    )
    wall_seconds = time.perf_counter() - wall_start
    cpu_seconds = cpu_before + time.process_time() - cpu_start
    records = []
    for index, run in enumerate(runs):
        run.model = population.member(index)
        record = run_record(run, wall_seconds, cpu_seconds / len(runs), population_size=len(runs))
        write_json_atomically(run_path(out_dir, run.cell), record)
        records.append(record)
    shutil.rmtree(folder, ignore_errors=True)  # every run is written: the checkpoint and zoo logs are done with
    _remove_finished_checkpoints(out_dir)
    return records


def split_checkpoint_problem(out_dir: Path, cells: Sequence[Cell]) -> str | None:
    """
    Why ``cells`` must not train as one population now, or None: some of them are trained further in other groups'
    checkpoints (a sweep resumed with another ``--population-size``) than this group would resume from, so training
    it would start those members again. Members at different steps cannot share a population.
    """
    source = resume_source(out_dir, cells)
    resumed_at = 0 if source is None else _trained_steps(source[0])
    ids = {cell.id for cell in cells}
    further: list[tuple[str, int, int]] = []  # (folder name, its members among cells, its steps)
    for folder in sorted((out_dir / WORK_FOLDER).glob("population-*")):
        member_ids = set(_checkpointed_cells(folder))
        shared, trained = len(ids & member_ids), _trained_steps(folder)
        if (source is None or folder != source[0]) and shared and not ids <= member_ids and trained > resumed_at:
            further.append((folder.name, shared, trained))
    if not further:
        return None
    where = ", ".join(f"{shared} in {name} ({trained:,} steps)" for name, shared, trained in further)
    return (
        f"{sum(shared for _, shared, _ in further)} of these {len(cells)} cells are trained further in other "
        f"populations' checkpoints under {out_dir / WORK_FOLDER} ({where}) than this population of {len(cells)} "
        f"would resume them ({resumed_at:,} steps): train them in the groups checkpoint_aligned() gives"
    )


def checkpoint_aligned(out_dir: Path, cells: Sequence[Cell]) -> list[list[Cell]]:
    """
    ``cells`` as populations that start no trained member again: ``[cells]`` itself, or, where some of them are
    trained further in other groups' checkpoints than ``cells`` would resume them (:func:`split_checkpoint_problem`),
    one population of the cells each checkpoint holds (the furthest trained checkpoint first) and one of the cells
    that none holds. Each resumes where its checkpoint stopped.
    """
    if len(cells) < 2 or split_checkpoint_problem(out_dir, cells) is None:
        return [list(cells)]
    checkpoints = sorted(
        ((_trained_steps(folder), folder.name, folder) for folder in (out_dir / WORK_FOLDER).glob("population-*")),
        reverse=True,
    )
    remaining, groups = list(cells), []
    for trained, _, folder in checkpoints:
        held_ids = set(_checkpointed_cells(folder)) if trained else set()
        held = [cell for cell in remaining if cell.id in held_ids]
        if held:
            groups.append(held)
            remaining = [cell for cell in remaining if cell.id not in held_ids]
    return [*groups, remaining] if remaining else groups


def _checkpointed_cells(folder: Path) -> list[str]:
    """The cell ids of the group checkpointed in ``folder``, [] where it holds no finished checkpoint."""
    try:
        return list(json.loads((folder / CELLS_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return []


def _trained_steps(folder: Path) -> int:
    """The steps each member of the checkpoint in ``folder`` has trained, 0 where it holds none."""
    from sb3_lecture_ppo.population.population import MANIFEST

    try:
        return int(json.loads((folder / MANIFEST).read_text())["num_timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def resume_source(out_dir: Path, cells: Sequence[Cell]) -> tuple[Path, list[int] | None] | None:
    """
    The checkpoint ``cells`` resume from as a population: their own (member indices None: all), else another group's
    that holds them all (:func:`containing_checkpoint`); None where they start afresh.
    """
    from sb3_lecture_ppo.population.population import MANIFEST

    own = checkpoint_folder(out_dir, cells)
    return (own, None) if (own / MANIFEST).exists() else containing_checkpoint(out_dir, cells)


def containing_checkpoint(out_dir: Path, cells: Sequence[Cell]) -> tuple[Path, list[int]] | None:
    """
    The checkpoint of another group in ``out_dir`` that holds every one of ``cells`` as a member, with their
    member indices in the order of ``cells`` (the furthest trained where several do); None where none does.
    """
    found: list[tuple[int, Path, list[int]]] = []
    for candidate in sorted((out_dir / WORK_FOLDER).glob("population-*")):
        member_ids, trained = _checkpointed_cells(candidate), _trained_steps(candidate)
        if trained and all(cell.id in member_ids for cell in cells):
            found.append((trained, candidate, [member_ids.index(cell.id) for cell in cells]))
    if not found:
        return None
    _, folder, indices = max(found, key=lambda entry: entry[0])
    return folder, indices


def _remove_finished_checkpoints(out_dir: Path) -> None:
    """Remove the checkpoints in ``out_dir`` whose cells all have finished runs (other groups resumed them)."""
    for folder in (out_dir / WORK_FOLDER).glob("population-*"):
        member_ids = _checkpointed_cells(folder)
        if member_ids and all(load_run(run_path(out_dir, cell_id)) is not None for cell_id in member_ids):
            shutil.rmtree(folder, ignore_errors=True)


def _build_runs(cells: Sequence[Cell], work: Path, progress: Any, memory_limit_bytes: int | None) -> list[BuiltRun]:
    """Every cell's zoo model and callbacks; after the first, the memory estimate of all of them is checked."""
    rss_before = _rss_bytes()
    runs = [build_run(cells[0], work / cells[0].id, progress)]
    per_member = max(_rss_bytes() - rss_before, 1 << 20)
    limit = _available_bytes() if memory_limit_bytes is None else memory_limit_bytes
    if limit is not None and per_member * len(cells) > limit:
        raise PopulationMemoryError(
            f"a population of {len(cells)} members needs about {per_member * len(cells) / 2**30:.1f} GiB "
            f"({per_member / 2**20:.0f} MiB per member, measured on the first), {limit / 2**30:.1f} GiB are "
            "available: lower --population-size"
        )
    runs.extend(build_run(cell, work / cell.id, progress) for cell in cells[1:])
    return runs


def _rss_bytes() -> int:
    """This process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _available_bytes() -> int | None:
    """Memory available to new allocations (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _callback_state(run: BuiltRun) -> dict[str, Any]:
    evaluation, recorder = run.evaluation, run.recorder
    return {
        "evaluation": {
            name: getattr(evaluation, name)
            for name in (
                "n_calls",
                "evaluations_results",
                "evaluations_timesteps",
                "evaluations_length",
                "best_mean_reward",
                "last_mean_reward",
                "cpu_seconds",
            )
        },
        "recorder": {name: getattr(recorder, name) for name in ("timesteps", "episode_return_means", "pad_fractions")},
        "ep_info_buffer": list(run.model.ep_info_buffer or []),
    }


def _save(folder: Path, population: Any, runs: Sequence[BuiltRun], cpu_seconds: float) -> None:
    """The population with its callbacks' state and CPU time so far, as one checkpoint (a resume reads both)."""
    state = {"cpu_seconds": cpu_seconds, "runs": [_callback_state(run) for run in runs]}
    write_json_atomically(folder / CELLS_FILE, [run.cell.id for run in runs])
    population.save(folder, extra_files={CALLBACK_STATE: pickle.dumps(state)})


def _resume(folder: Path, runs: list[BuiltRun], members: list[int] | None = None) -> tuple[Any, float]:
    """
    The checkpointed population with each run's callbacks and last training episodes as they were saved, and its
    CPU time so far.

    :param members: the checkpoint's members that ``runs`` are, in order (default: all); their share of the
        checkpoint's CPU time comes with them
    """
    from collections import deque

    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_lecture_ppo.population import Population

    def make_env(index: int) -> Any:
        env = runs[index].model.get_env()
        return env.venv if isinstance(env, VecNormalize) else env

    population = Population.load(folder, make_env, members=members)
    state = pickle.loads((Population.checkpoint_files(folder) / CALLBACK_STATE).read_bytes())
    saved_runs = state["runs"] if members is None else [state["runs"][index] for index in members]
    cpu_seconds = float(state["cpu_seconds"]) * len(saved_runs) / len(state["runs"])
    for run, model, saved in zip(runs, population.members, saved_runs, strict=True):
        run.model = model
        for name, value in saved["evaluation"].items():
            setattr(run.evaluation, name, value)
        for name, value in saved["recorder"].items():
            setattr(run.recorder, name, value)
        model.ep_info_buffer = deque(saved["ep_info_buffer"], maxlen=model._stats_window_size)
    return population, cpu_seconds
