"""
The lecture's experiments: their maths against slow references on random data with dones and
truncations, bad input, and each experiment's ``--quick`` run writing its figure and numbers
(the cheap ones in the default run, all of them with ``-m slow``).
"""

import json

import numpy as np
import pytest
import torch as th

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.segments import monte_carlo_returns, rollout_continues, td_targets
from sb3_lecture_ppo.experiments import EXPERIMENTS, experiment_module
from sb3_lecture_ppo.experiments.__main__ import main
from sb3_lecture_ppo.experiments.baseline_variance import RolloutData, n_step_returns
from sb3_lecture_ppo.experiments.clip_gradient import expected_zero_gradient, measured_gradient
from sb3_lecture_ppo.experiments.common import (
    NO_PROGRESS_VARIABLE,
    ExperimentConfig,
    ExperimentError,
    load_cartpole_model,
    make_env,
)
from sb3_lecture_ppo.evaluation.cells import RESULTS_FORMAT_VERSION
from sb3_lecture_ppo.evaluation.runner import run_path, write_json_atomically
from sb3_lecture_ppo.experiments.gae_lambda import LAMBDAS, curve_cells, gae_at_start, report_runs
from sb3_lecture_ppo.experiments.importance_ratio import ratio_statistics, trajectory_ids

GAMMA = 0.9


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch):
    monkeypatch.setenv(NO_PROGRESS_VARIABLE, "1")


def random_rollout(seed: int, n_steps: int = 12, n_envs: int = 3) -> RolloutData:
    generator = th.Generator().manual_seed(seed)
    dones = th.rand(n_steps, n_envs, generator=generator) < 0.25
    terminations = dones & (th.rand(n_steps, n_envs, generator=generator) < 0.5)  # the other dones are truncations
    return RolloutData(
        rewards=th.randn(n_steps, n_envs, generator=generator),
        values=th.randn(n_steps, n_envs, generator=generator),
        next_values=th.randn(n_steps, n_envs, generator=generator),
        terminations=terminations,
        continues=rollout_continues(dones),
    )


def n_step_reference(data: RolloutData, gamma: float, n: int) -> th.Tensor:
    """Step by step: add rewards until n steps, a done or the rollout's end; bootstrap there unless terminated."""
    rewards, next_values = data["rewards"].numpy(), data["next_values"].numpy()
    terminations, continues = data["terminations"].numpy(), data["continues"].numpy()
    result = np.zeros_like(rewards)
    for env in range(rewards.shape[1]):
        for start in range(rewards.shape[0]):
            total, step = 0.0, start
            while True:
                total += gamma ** (step - start) * rewards[step, env]
                if not continues[step, env] or step - start + 1 == n:
                    if not terminations[step, env]:
                        total += gamma ** (step - start + 1) * next_values[step, env]
                    break
                step += 1
            result[start, env] = total
    return th.as_tensor(result)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 3, 50])
def test_n_step_returns_match_a_step_by_step_reference(seed, n):
    data = random_rollout(seed)
    th.testing.assert_close(n_step_returns(data, GAMMA, n), n_step_reference(data, GAMMA, n))


def test_n_step_returns_span_td_target_to_monte_carlo_return():
    data = random_rollout(7)
    th.testing.assert_close(
        n_step_returns(data, GAMMA, 1), td_targets(data["rewards"], data["next_values"], data["terminations"], GAMMA)
    )
    monte_carlo = monte_carlo_returns(data["rewards"], data["next_values"], data["terminations"], data["continues"], GAMMA)
    th.testing.assert_close(n_step_returns(data, GAMMA, 100), monte_carlo)


def test_trajectory_ids_follow_episode_starts_per_env():
    rng = np.random.default_rng(0)
    episode_starts = rng.random((9, 4)) < 0.3
    ids = trajectory_ids(episode_starts).numpy().reshape(9, 4)
    seen: dict[tuple[int, int], int] = {}
    for env in range(4):
        trajectory = -1
        for step in range(9):
            if step == 0 or episode_starts[step, env]:
                trajectory += 1
            seen.setdefault((env, trajectory), ids[step, env])
            assert ids[step, env] == seen[(env, trajectory)]
    assert len(set(seen.values())) == len(seen)  # no two trajectories share an id
    assert sorted(set(ids.flatten())) == list(range(len(seen)))


def test_ratio_statistics_products_are_per_trajectory():
    log_ratio = th.log(th.tensor([2.0, 5.0, 0.1, 1.0], dtype=th.float64))
    statistics = ratio_statistics(log_ratio, th.tensor([0, 0, 1, 1]))
    assert statistics["log10_product_max_abs"] == pytest.approx(1.0)  # log10(2 * 5) and log10(0.1 * 1)
    assert statistics["ratio_max"] == pytest.approx(5.0)
    assert statistics["outside_clip_range"] == pytest.approx(0.75)


def gae_reference(data: dict[str, th.Tensor], gamma: float, gae_lambda: float) -> th.Tensor:
    """The first step's GAE of each continuation: sum of (gamma lambda)^k delta_k over the steps taken."""
    result = []
    for column in range(data["rewards"].shape[1]):
        total = 0.0
        for step in range(data["rewards"].shape[0]):
            if not data["alive"][step, column]:
                break
            bootstrap = 0.0 if data["terminations"][step, column] else gamma * data["next_values"][step, column].item()
            delta = data["rewards"][step, column].item() + bootstrap - data["values"][step, column].item()
            total += (gamma * gae_lambda) ** step * delta
        result.append(total)
    return th.tensor(result)


@pytest.mark.parametrize("gae_lambda", [0.0, 0.5, 1.0])
def test_gae_of_a_continuation_matches_a_reference(gae_lambda):
    generator = th.Generator().manual_seed(3)
    horizon, count = 10, 6
    lengths = th.randint(1, horizon + 1, (count,), generator=generator)
    alive = th.arange(horizon)[:, None] < lengths[None, :]
    terminations = (th.arange(horizon)[:, None] == lengths[None, :] - 1) & (lengths[None, :] < horizon)
    data = {
        "rewards": th.randn(horizon, count, generator=generator),
        "values": th.randn(horizon, count, generator=generator),
        "next_values": th.randn(horizon, count, generator=generator),
        "terminations": terminations,
        "alive": alive,
    }
    th.testing.assert_close(gae_at_start(data, GAMMA, gae_lambda), gae_reference(data, GAMMA, gae_lambda))


def test_gae_lambda_report_keeps_earlier_runs_of_other_envs_and_seeds(tmp_path):
    """CartPole on 2 seeds, then HalfCheetah on 1: the second report shows all three; quick runs stay out."""
    full = ExperimentConfig(out_dir=tmp_path, seeds=2, envs=("CartPole-v1",))
    later = ExperimentConfig(out_dir=tmp_path, seeds=1, envs=("HalfCheetah-v5",))
    quick = ExperimentConfig(out_dir=tmp_path, quick=True)
    cells = [*curve_cells(full, LAMBDAS), *curve_cells(later, LAMBDAS), *curve_cells(quick, (0.0, 1.0))]
    for cell in cells:
        write_json_atomically(run_path(tmp_path, cell), {"format_version": RESULTS_FORMAT_VERSION, "cell": cell.to_dict()})
    reported = [run["cell"] for run in report_runs(later, LAMBDAS, tmp_path)]
    expected = [cell.to_dict() for cell in cells if cell.timesteps in (30_000, 300_000)]
    assert len(reported) == 2 * len(LAMBDAS) * 2 + len(LAMBDAS) * 2 and sorted(map(json.dumps, reported)) == sorted(
        map(json.dumps, expected)
    )
    assert [cell["env_id"] for cell in reported] == sorted(
        (cell["env_id"] for cell in reported), key=lambda env_id: env_id != "CartPole-v1"
    )
    assert len(report_runs(quick, (0.0, 1.0), tmp_path)) == 2 * 2


def test_clip_gradient_is_zero_exactly_where_the_slides_say():
    model = LecturePPO("MlpPolicy", "CartPole-v1", clip_range=0.2, device="cpu")
    model._current_progress_remaining = 1.0
    model._on_train_start()
    ratios = th.linspace(0.5, 1.5, 101, dtype=th.float64)
    for advantage in (2.0, -0.5):
        _, gradient = measured_gradient(model._policy_surrogate, ratios, advantage)
        np.testing.assert_array_equal(gradient == 0, expected_zero_gradient(ratios.numpy(), advantage, 0.2))
        np.testing.assert_allclose(gradient[gradient != 0], advantage)


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_experiment_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["baseline", "--quick"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'baseline'" in error and "clip-gradient" in error
    with pytest.raises(ValueError, match="Unknown experiment 'nope'"):
        experiment_module("nope")


def test_non_positive_seeds_is_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["value-target", "--seeds", "0"])
    assert "--seeds must be a positive integer, got '0'" in capsys.readouterr().err.strip().splitlines()[-1]
    assert ExperimentConfig(out_dir=None, seeds=2, seed=5).seed_range(1, 3) == range(5, 7)  # type: ignore[arg-type]


def test_missing_model_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--model: .*missing\.zip does not exist"):
        main(["importance-ratio", "--quick", "--out", str(tmp_path), "--model", str(tmp_path / "missing.zip")])


def test_model_of_another_env_is_one_line(tmp_path):
    LecturePPO("MlpPolicy", "MountainCar-v0", n_steps=32, batch_size=32, device="cpu").save(tmp_path / "mountain_car")
    with pytest.raises(ExperimentError, match=r"--model: .* was trained on another env .*CartPole-v1"):
        load_cartpole_model(tmp_path / "mountain_car.zip", make_env(1, 0))
    with pytest.raises(SystemExit, match="trained on another env"):
        main(["baseline-variance", "--quick", "--out", str(tmp_path), "--model", str(tmp_path / "mountain_car.zip")])


def test_a_saved_cartpole_model_is_studied(tmp_path):
    model = LecturePPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0, device="cpu")
    model.save(tmp_path / "cartpole")
    loaded = load_cartpole_model(tmp_path / "cartpole.zip", make_env(2, 0), n_steps=32)
    assert loaded.n_steps == 32 and loaded.n_envs == 2
    for name, parameter in model.policy.state_dict().items():
        th.testing.assert_close(loaded.policy.state_dict()[name], parameter)


# --------------------------------------------------------------------------------------- quick runs
def check_outputs(out_dir, name):
    assert (out_dir / f"{name}.png").stat().st_size > 10_000
    numbers = json.loads((out_dir / f"{name}.json").read_text())
    assert isinstance(numbers["claim_holds"], bool)
    markdown = (out_dir / f"{name}.md").read_text()
    assert markdown.startswith(f"# {name}") and "Claim holds:" in markdown
    return numbers


CHEAP = ["clip-gradient", "importance-ratio"]


@pytest.mark.parametrize("name", CHEAP)
def test_cheap_experiments_write_their_outputs(tmp_path, name, capsys):
    main([name, "--quick", "--out", str(tmp_path)])
    numbers = check_outputs(tmp_path, name)
    assert f"wrote {tmp_path / name}.png" in capsys.readouterr().out
    if name == "clip-gradient":
        assert numbers["claim_holds"]  # exact: no sampling involved
    else:
        history = numbers["by_objective"]["none"]
        assert len(history) == numbers["epochs"] + 1 and history[0]["ratio_max"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(EXPERIMENTS) - set(CHEAP)))
def test_every_experiment_runs_quick(tmp_path, name):
    config = ExperimentConfig(out_dir=tmp_path, quick=True)
    experiment_module(name).run(config)
    check_outputs(tmp_path, name)
    if name in ("gae-lambda", "value-target"):  # resumable: a rerun trains nothing and gives the same numbers
        first = json.loads((tmp_path / f"{name}.json").read_text())
        experiment_module(name).run(config)
        second = json.loads((tmp_path / f"{name}.json").read_text())
        key = "final_evaluations" if name == "gae-lambda" else "summary"
        assert first[key] == second[key]
