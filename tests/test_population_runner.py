"""Sweeps through populations: which cells share one, their runs' records, memory refusal, resume."""

import pickle

import optuna
import pytest

from sb3_lecture_ppo.ablation import VARIANTS
from sb3_lecture_ppo.evaluation import population_runner
from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.population_runner import (
    PopulationMemoryError,
    checkpoint_folder,
    group_cells,
    train_population_cells,
)
from sb3_lecture_ppo.evaluation.runner import load_run, run_cells, run_path, train_cell
from sb3_lecture_ppo.population import Population

TINY = dict(n_steps=64, batch_size=32, n_epochs=2, n_timesteps=256)


def paper_cell(variant: str, seed: int, env_id: str = "Pendulum-v1", timesteps: int = 256, **fields) -> Cell:
    return Cell.make(
        contestant="lecture_ppo:paper",
        env_id=env_id,
        seed=seed,
        timesteps=timesteps,
        eval_freq=timesteps,
        eval_episodes=1,
        final_eval_episodes=2,
        overrides={**TINY, **VARIANTS[variant]},
        **fields,
    )


def test_cells_that_differ_only_in_seed_and_objective_share_a_population():
    table = [paper_cell(variant, seed) for seed in range(3) for variant in VARIANTS]
    assert [len(unit) for unit in group_cells(table, 64)] == [33]
    assert [len(unit) for unit in group_cells(table, 10)] == [10, 10, 10, 3]
    assert [len(unit) for unit in group_cells(table, 1)] == [1] * 33


def test_cells_that_cannot_share_are_grouped_apart_never_mixed():
    other_env = paper_cell("clip-0.2", 0, env_id="MountainCarContinuous-v0")
    other_budget = paper_cell("clip-0.2", 0, timesteps=512)
    other_rate = Cell.make(**{**paper_cell("none", 0).to_dict(), "overrides": {**TINY, "learning_rate": 1e-3}})
    stopping = paper_cell("clip-0.2", 1, stop_at_return=-200.0)
    sb3 = Cell.make(
        contestant="ppo", env_id="Pendulum-v1", seed=0, timesteps=256, eval_freq=256, eval_episodes=1, final_eval_episodes=2
    )
    lecture = Cell.make(**{**sb3.to_dict(), "contestant": "lecture_ppo"})  # its Pendulum entry uses gSDE: alone
    cells = [paper_cell("clip-0.2", 0), other_env, paper_cell("none", 0), other_budget, other_rate, stopping, sb3, lecture]
    units = group_cells(cells, 64)
    assert [[cells.index(cell) for cell in unit] for unit in units] == [[0, 2], [1], [3], [4], [5], [6], [7]]


LECTURE_CODE_EX1 = dict(seq_length=4, advantage_scope="segment", recompute_advantage=True, sampling="random")


def test_cells_in_the_lectures_setting_share_a_population_and_train(tmp_path):
    cells = [paper_cell(variant, seed, env_id="CartPole-v1") for seed in range(2) for variant in ("clip-0.2", "none")]
    cells = [Cell.make(**{**cell.to_dict(), "overrides": {**cell.overrides_dict(), **LECTURE_CODE_EX1}}) for cell in cells]
    epochs_draw = Cell.make(**{**cells[0].to_dict(), "overrides": {**cells[0].overrides_dict(), "sampling": "epochs"}})
    with_sde = Cell.make(**{**cells[0].to_dict(), "overrides": {**cells[0].overrides_dict(), "use_sde": True}})
    assert [len(unit) for unit in group_cells([*cells, epochs_draw, with_sde], 64)] == [4, 1, 1]
    records = train_population_cells(cells, tmp_path)
    for cell, record in zip(cells, records, strict=True):
        assert record["population_size"] == 4 and record["timesteps"] == 256
        assert record["hyperparams"]["seq_length"] == 4 and record["hyperparams"]["sampling"] == "random"
        assert load_run(run_path(tmp_path, cell)) == record


def test_a_populations_runs_are_written_as_a_run_alone_writes_them(tmp_path):
    cells = [paper_cell("clip-0.2", 0), paper_cell("kl_adaptive-0.01", 1)]
    records = train_population_cells(cells, tmp_path)
    alone = train_cell(paper_cell("none", 2), tmp_path)
    for cell, record in zip(cells, records, strict=True):
        assert load_run(run_path(tmp_path, cell)) == record
        assert set(record) == set(alone) | {"population_size"}
        assert record["population_size"] == 2 and record["timesteps"] == 256
        assert record["evaluations"]["timesteps"] == [256]  # the evaluation at the budget's last step
        assert record["last_100_training_episodes"] is not None  # Pendulum's 200-step episodes ended
        assert record["hyperparams"]["objective"] == cell.overrides_dict()["objective"]
        assert record["final_evaluation"]["episodes"] == 2


def test_run_cells_trains_groups_and_singles_in_one_sweep(tmp_path):
    cells = [paper_cell("clip-0.2", 0), paper_cell("none", 0), paper_cell("clip-0.2", 0, env_id="MountainCarContinuous-v0")]
    assert run_cells(cells, tmp_path, jobs=2, show_progress=False, backend="population") == []
    runs = [load_run(run_path(tmp_path, cell)) for cell in cells]
    assert [run.get("population_size") for run in runs] == [2, 2, None]


def test_a_population_too_large_for_memory_fails_before_training_naming_the_estimate(tmp_path):
    cells = [paper_cell(variant, 0) for variant in ("none", "clip-0.2", "clip-0.3")]
    with pytest.raises(PopulationMemoryError, match=r"3 members needs about .* GiB .* available: lower --population-size"):
        train_population_cells(cells, tmp_path, memory_limit_bytes=1)
    assert not list((tmp_path).glob("runs/*.json"))


def test_an_interrupted_population_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    cells = [paper_cell("clip-0.2", 0, timesteps=512), paper_cell("none", 1, timesteps=512)]
    monkeypatch.setattr(population_runner, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every update
    train = Population.train
    updates = []

    def interrupted(self):
        if len(updates) == 4:
            raise KeyboardInterrupt  # killed during the fifth update
        updates.append(self.members[0].num_timesteps)
        return train(self)

    monkeypatch.setattr(Population, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_population_cells(cells, tmp_path)
    assert (checkpoint_folder(tmp_path, cells) / "population.json").exists()
    assert not list((tmp_path).glob("runs/*.json"))

    monkeypatch.setattr(Population, "train", train)
    resumed_at = []
    load = Population.load
    monkeypatch.setattr(Population, "load", classmethod(lambda cls, *a, **k: resumed_at.append(1) or load(*a, **k)))
    records = train_population_cells(cells, tmp_path)
    assert resumed_at == [1]
    for record in records:
        assert record["timesteps"] == 512
        # the curve's point from before the interruption (the first episode ends at 200) kept, none repeated
        assert record["training_curve"]["timesteps"] == [256, 320, 384, 448, 512]
    assert not checkpoint_folder(tmp_path, cells).exists()  # removed once every run is written


def test_smaller_groups_resume_their_members_from_a_larger_groups_checkpoint(tmp_path, monkeypatch):
    """A sweep rerun with a smaller --population-size (to spread it over more --jobs) loses nothing trained."""
    cells = [paper_cell(variant, seed, timesteps=512) for seed in range(2) for variant in ("clip-0.2", "none")]
    monkeypatch.setattr(population_runner, "CHECKPOINT_SECONDS", 0.0)
    train = Population.train

    def interrupted(self):
        if self.members[0].num_timesteps >= 320:
            raise KeyboardInterrupt
        return train(self)

    monkeypatch.setattr(Population, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_population_cells(cells, tmp_path)
    monkeypatch.setattr(Population, "train", train)
    whole = checkpoint_folder(tmp_path, cells)
    halves = group_cells(cells, 2)
    assert population_runner.containing_checkpoint(tmp_path, halves[1]) == (whole, [2, 3])
    assert population_runner.containing_checkpoint(tmp_path, [cells[3], cells[0]]) == (whole, [3, 0])
    assert population_runner.containing_checkpoint(tmp_path, [paper_cell("clip-0.3", 0, timesteps=512)]) is None

    loaded = []
    load = Population.load
    monkeypatch.setattr(Population, "load", classmethod(lambda cls, *a, **k: loaded.append(k.get("members")) or load(*a, **k)))
    saved_state = Population.checkpoint_files(whole) / population_runner.CALLBACK_STATE
    saved_cpu = pickle.loads(saved_state.read_bytes())["cpu_seconds"]
    first = train_population_cells(halves[0], tmp_path)
    assert loaded == [[0, 1]] and whole.exists()  # the second half's members are still only there
    second = train_population_cells(halves[1], tmp_path)
    assert loaded == [[0, 1], [2, 3]] and not whole.exists()  # every cell finished: removed
    for record in first + second:
        assert record["timesteps"] == 512 and record["population_size"] == 2
        assert record["training_curve"]["timesteps"] == [256, 320, 384, 448, 512]  # kept from before the split
        assert record["cpu_seconds"] >= saved_cpu / 4  # each run's share of the CPU time before the split kept


def _checkpoints_of_a_split(tmp_path, monkeypatch) -> list[Cell]:
    """Four cells checkpointed as one population at 256 steps, then their first half as a population of its own at 384."""
    cells = [paper_cell(variant, seed, timesteps=512) for seed in range(2) for variant in ("clip-0.2", "none")]
    monkeypatch.setattr(population_runner, "CHECKPOINT_SECONDS", 0.0)
    train = Population.train
    stop_at = [320]  # the update of the rollout that ends there fails: the last checkpoint is the one before

    def interrupted(self):
        if self.members[0].num_timesteps >= stop_at[0]:
            raise KeyboardInterrupt
        return train(self)

    monkeypatch.setattr(Population, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_population_cells(cells, tmp_path)
    stop_at[0] = 448
    first_half = group_cells(cells, 2)[0]
    with pytest.raises(KeyboardInterrupt):
        train_population_cells(first_half, tmp_path)  # resumed from the whole's checkpoint (256 steps), checkpointed at 384
    monkeypatch.setattr(Population, "train", train)
    return cells


def test_a_larger_group_trains_as_populations_of_the_checkpoints_that_trained_its_cells_further(tmp_path, monkeypatch):
    """The sweep rerun with a larger --population-size: nothing trained starts again."""
    from sb3_lecture_ppo.evaluation.runner import _child

    cells = _checkpoints_of_a_split(tmp_path, monkeypatch)
    first_half, second_half = group_cells(cells, 2)
    assert population_runner.split_checkpoint_problem(tmp_path, first_half) is None
    assert population_runner.split_checkpoint_problem(tmp_path, second_half) is None
    message = r"2 of these 4 cells are trained further .*\(384 steps\).* \(256 steps\): train them in the groups"
    with pytest.raises(population_runner.SplitCheckpointError, match=message):
        train_population_cells(cells, tmp_path)
    assert population_runner.checkpoint_aligned(tmp_path, cells) == [first_half, second_half]
    # --population-size 3: the first three cells are two groups (at 384 and at 256 steps), the fourth one alone
    assert population_runner.checkpoint_aligned(tmp_path, cells[:3]) == [cells[:2], [cells[2]]]
    assert population_runner.checkpoint_aligned(tmp_path, cells[3:]) == [cells[3:]]

    loaded = []
    load = Population.load
    monkeypatch.setattr(Population, "load", classmethod(lambda cls, *a, **k: loaded.append(k.get("members")) or load(*a, **k)))
    records = train_population_cells(cells[:2], tmp_path)
    assert loaded == [None]  # its own checkpoint, at 384 steps
    for cell in cells[2:]:  # a group of one resumes as a population of one, not as a run alone from the start
        _child([cell.to_dict()], str(tmp_path), None)
        records.append(load_run(run_path(tmp_path, cell)))
    assert loaded == [None, [2], [3]]
    assert not any((tmp_path / population_runner.WORK_FOLDER).glob("population-*"))  # every cell finished
    for record in records:
        assert record["timesteps"] == 512
        assert record["training_curve"]["timesteps"] == [256, 320, 384, 448, 512]


def test_an_optuna_worker_handed_cells_of_two_checkpoints_resumes_both(tmp_path, monkeypatch):
    """The worker takes all four queued cells as one group; they train as the two checkpoints' populations."""
    from sb3_lecture_ppo.evaluation.distributed import run_sweep

    cells = _checkpoints_of_a_split(tmp_path, monkeypatch)
    failed = run_sweep(
        cells,
        tmp_path,
        lambda record: record["last_100_training_episodes"],
        storage=str(tmp_path / "study.log"),
        study_name="split",
        show_progress=False,
        backend="population",
        population_size=64,
    )
    assert failed == []
    records = [load_run(run_path(tmp_path, cell)) for cell in cells]
    assert all(record is not None and record["timesteps"] == 512 for record in records)
    assert [record["population_size"] for record in records] == [2, 2, 2, 2]  # the two checkpoints' groups
    assert not any((tmp_path / population_runner.WORK_FOLDER).glob("population-*"))


def test_an_optuna_worker_takes_the_next_queued_cells_of_one_population_together(tmp_path):
    """The worker's grouping on a journal storage, with a stand-in for training: every cell once, groups in order."""
    from sb3_lecture_ppo.evaluation.distributed import open_cell_study, open_storage, run_worker
    from sb3_lecture_ppo.evaluation.population_runner import population_key

    pendulum = [paper_cell(variant, seed) for seed in range(2) for variant in ("none", "clip-0.2", "clip-0.3")]
    alone = Cell.make(
        contestant="ppo", env_id="Pendulum-v1", seed=0, timesteps=256, eval_freq=256, eval_episodes=1, final_eval_episodes=2
    )
    cells = [*pendulum[:3], alone, *pendulum[3:]]
    study = open_cell_study(open_storage(str(tmp_path / "study.log")), "sweep", cells)
    groups: list[list[str]] = []

    def run(group):
        groups.append([cell.id for cell in group])
        return [{"score": float(index)} for index, _ in enumerate(group)]

    trained = run_worker(
        study, cells, run, lambda record: record["score"], group_key=population_key, max_group=4, log=lambda _: None
    )
    ids = [cell.id for cell in cells]
    assert trained == len(cells)
    assert groups == [ids[0:3], [ids[3]], ids[4:7]]  # the ppo cell between them trains alone
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(trial.params["cell"] for trial in complete) == sorted(ids)


def test_an_optuna_worker_caps_its_groups_at_the_population_size(tmp_path):
    from sb3_lecture_ppo.evaluation.distributed import open_cell_study, open_storage, run_worker
    from sb3_lecture_ppo.evaluation.population_runner import population_key

    cells = [paper_cell(variant, seed) for seed in range(3) for variant in ("none", "clip-0.2")]
    study = open_cell_study(open_storage(str(tmp_path / "study.log")), "sweep", cells)
    sizes: list[int] = []
    run_worker(
        study,
        cells,
        lambda group: sizes.append(len(group)) or [{} for _ in group],
        lambda record: 0.0,
        group_key=population_key,
        max_group=4,
        log=lambda _: None,
    )
    assert sizes == [4, 2]
