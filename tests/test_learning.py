"""
Learning runs on real envs: slow, out of the default run (``pytest -m slow``).
Each run is seeded; the thresholds are the issues' (100-episode mean >= 475 on CartPole-v1).
"""

import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from stable_baselines3.common.utils import LinearSchedule

from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO

pytestmark = pytest.mark.slow

CARTPOLE_THRESHOLD = 475


def evaluate_on_cartpole(model, seed: int) -> float:
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1000)
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=100, deterministic=True)
    return mean_reward


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lecture_ppo_defaults_learn_cartpole_in_100k_steps(seed):
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    model = LecturePPO("MlpPolicy", env, seed=seed, device="cpu").learn(100_000)
    assert evaluate_on_cartpole(model, seed) >= CARTPOLE_THRESHOLD


OBJECTIVE_SETTINGS = {
    "clip": dict(objective="clip", clip_range=0.2),
    "none": dict(objective="none"),
    "kl_fixed": dict(objective="kl_fixed", kl_coef=1.0),
    "kl_adaptive": dict(objective="kl_adaptive", kl_target=0.01),
    "clip_kl_adaptive": dict(objective="clip_kl_adaptive", kl_target=0.01),
}


@pytest.mark.parametrize("objective", list(OBJECTIVE_SETTINGS))
def test_each_objective_learns_cartpole_in_150k_steps(objective):
    seed = 0
    env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
    model = LecturePPO("MlpPolicy", env, seed=seed, device="cpu", **OBJECTIVE_SETTINGS[objective]).learn(150_000)
    assert evaluate_on_cartpole(model, seed) >= CARTPOLE_THRESHOLD


def zoo_entry(env_id: str, algo: str = "lecture_ppo") -> dict:
    """Our yml entry of ``algo`` as model kwargs (policy_kwargs strings evaluated as the zoo does)."""
    import yaml
    from torch import nn

    from sb3_lecture_ppo.zoo.registration import hyperparams_file

    params = dict(yaml.safe_load(hyperparams_file(algo).read_text())[env_id])
    if "policy_kwargs" in params:
        params["policy_kwargs"] = eval(params["policy_kwargs"], {"nn": nn})
    for key in ("learning_rate", "clip_range"):
        if isinstance(params.get(key), str):  # the zoo's "lin_<initial value>"
            params[key] = LinearSchedule(float(params[key].split("_")[1]), 0.0, 1.0)
    return params


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lecture_ppo_zoo_cartpole_entry_learns_within_100k_steps(seed):
    """
    hyperparams/lecture_ppo.yml, CartPole-v1 (100k steps, 8 envs, SB3's network): the issues' 475 on 100 episodes.
    Measured: see the docs' results, "CartPole-v1" (100-episode evaluations at 100k).
    """
    params = zoo_entry("CartPole-v1")
    n_timesteps = int(params.pop("n_timesteps"))
    env = make_vec_env("CartPole-v1", n_envs=params.pop("n_envs"), seed=seed)
    model = LecturePPO(env=env, seed=seed, device="cpu", **params).learn(n_timesteps)
    assert n_timesteps <= 100_000
    assert evaluate_on_cartpole(model, seed) >= CARTPOLE_THRESHOLD


PENDULUM_THRESHOLD = -250.0
"""
SB3 PPO's zoo entry (gSDE) on Pendulum-v1 at 100k steps ends near -170 (the benchmark's seeds 0-2, docs'
"Pendulum-v1" page); a policy that does not swing up scores -1,000 to -1,500. The margin of 80 leaves room for
the seeds' spread (about +-100 per episode over 100 episodes).
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lecture_ppo_pendulum_entry_with_gsde_reaches_sb3_ppos_level(seed):
    """hyperparams/lecture_ppo.yml, Pendulum-v1 (SB3 PPO's zoo entry with gSDE, 100k steps, 4 envs)."""
    params = zoo_entry("Pendulum-v1")
    assert params["use_sde"] and params["sde_sample_freq"] == 4
    n_timesteps = int(params.pop("n_timesteps"))
    env = make_vec_env("Pendulum-v1", n_envs=params.pop("n_envs"), seed=seed)
    model = LecturePPO(env=env, seed=seed, device="cpu", **params).learn(n_timesteps)
    eval_env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed + 1000)
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=100, deterministic=True)
    print(f"Pendulum-v1 seed {seed}: evaluation {mean_reward:.1f}")  # shown with pytest -s
    assert mean_reward >= PENDULUM_THRESHOLD


PRECURSORS = {"lecture_ac": LectureActorCritic, "lecture_gae_ac": LectureGAEActorCritic, "lecture_mc_pg": LectureMonteCarloPG}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(PRECURSORS))
def test_precursors_cartpole_entries_learn_in_500k_steps(name, seed):
    """The precursors' yml entries for CartPole-v1 (8 envs, 500k steps)."""
    params = zoo_entry("CartPole-v1", name)
    n_timesteps = int(params.pop("n_timesteps"))
    assert n_timesteps <= 500_000
    env = make_vec_env("CartPole-v1", n_envs=params.pop("n_envs"), seed=seed)
    model = PRECURSORS[name](env=env, seed=seed, device="cpu", **params).learn(n_timesteps)
    mean_reward = evaluate_on_cartpole(model, seed)
    print(f"{name} seed {seed}: evaluation {mean_reward:.1f}")  # shown with pytest -s
    assert mean_reward >= CARTPOLE_THRESHOLD


HALFCHEETAH_THRESHOLD = 4000  # zoo runs of the entry: 5702 / 5220 / 5887; SB3 PPO, zoo settings: 6722 / 5038 / 4994


def test_lecture_ppo_halfcheetah_entry_at_1m_steps():
    """hyperparams/lecture_ppo.yml, HalfCheetah-v5, seed 0, 10-episode evaluation at 1M steps (about 30 min)."""
    from stable_baselines3.common.vec_env import VecNormalize

    seed = 0
    params = zoo_entry("HalfCheetah-v5")
    n_timesteps = int(params.pop("n_timesteps"))
    assert params.pop("normalize") and params.pop("n_envs") == 1
    env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=1, seed=seed), gamma=params["gamma"])
    model = LecturePPO(env=env, seed=seed, device="cpu", **params).learn(n_timesteps)

    eval_env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=1, seed=seed + 1000), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    print(f"HalfCheetah-v5 seed {seed}: evaluation {mean_reward:.1f}")  # shown with pytest -s
    assert mean_reward >= HALFCHEETAH_THRESHOLD


PRECURSOR_HALFCHEETAH_THRESHOLDS = {"lecture_ac": 1000, "lecture_gae_ac": 800, "lecture_mc_pg": 1000}
"""
Seed 0 at 1M steps in the benchmark: lecture_ac 1232 and lecture_gae_ac (lambda 0.25) 1070
(benchmarks/results/precursors-10-seeds), lecture_mc_pg 2677 (this test, 2026-11-26); SB3's A2C with the
zoo's entry 992. A cheetah that does not advance scores -700 to 0, so each threshold says "learned to run", with a
margin for other machines' floating point (which changes a run's whole course). Which actor-critic is better is a
claim about many seeds, not one: the README's 10-seed table.
"""


@pytest.mark.parametrize("name", sorted(PRECURSOR_HALFCHEETAH_THRESHOLDS))
def test_precursors_halfcheetah_entries_at_1m_steps(name, tmp_path):
    """Each precursor's HalfCheetah-v5 entry through the zoo as the benchmark trains it: seed 0, 1M steps (5-10 min each)."""
    from sb3_lecture_ppo.evaluation.cells import Cell
    from sb3_lecture_ppo.evaluation.runner import train_cell

    cell = Cell.make(
        contestant=name,
        env_id="HalfCheetah-v5",
        seed=0,
        timesteps=1_000_000,
        eval_freq=1_000_000,
        eval_episodes=1,
        final_eval_episodes=100,
    )
    mean_reward = train_cell(cell, tmp_path)["final_evaluation"]["mean"]
    print(f"{name} HalfCheetah-v5 seed 0: evaluation {mean_reward:.1f}")  # shown with pytest -s
    assert mean_reward >= PRECURSOR_HALFCHEETAH_THRESHOLDS[name]
