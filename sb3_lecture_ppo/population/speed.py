"""
How fast the population trains the PPO paper's Table 1 cells, against the same cells run one by one and against
the physics alone (the same envs stepped with random actions and nothing else), in one process on one torch
thread, CPU time of this process::

    python -m sb3_lecture_ppo.population.speed --env HalfCheetah-v5 --seeds 3 --timesteps 4096

Prints env steps per CPU-second of each path and the ratios; ``--json`` writes them.
"""

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from sb3_lecture_ppo.ablation import VARIANTS
from sb3_lecture_ppo.evaluation.contestants import PAPER_MUJOCO, SB3_SEMANTICS
from sb3_lecture_ppo.population.population import Population
from sb3_lecture_ppo.ppo.ppo import LecturePPO

PAPER_KWARGS: dict[str, Any] = dict(
    policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh),
    **{
        key: PAPER_MUJOCO[key]
        for key in ("n_steps", "learning_rate", "n_epochs", "batch_size", "gamma", "gae_lambda", "ent_coef", "max_grad_norm")
    },
    **SB3_SEMANTICS,
)
"""The paper's MuJoCo setting (the ablation's ``--setting paper``) as LecturePPO keyword arguments."""


def paper_member(env_id: str, seed: int, variant: str) -> LecturePPO:
    """One Table 1 cell as a LecturePPO: the paper's setting, the variant's objective, observations normalized."""
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_obs=True, norm_reward=False)
    return LecturePPO(ActorCriticPolicy, env, seed=seed, device="cpu", **PAPER_KWARGS, **VARIANTS[variant])  # type: ignore[arg-type]


def cells(variants: Sequence[str], seeds: int) -> list[tuple[str, int]]:
    return [(variant, seed) for seed in range(seeds) for variant in variants]


def cpu_seconds(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return time.process_time() - start


def physics_limit(env_id: str, n_envs: int, steps: int) -> float:
    """
    Env steps per CPU-second of ``n_envs`` envs stepped with random actions and nothing else (``gymnasium.make``'s
    env, reset where an episode ends; actions drawn before the clock starts): the floor of any training loop.
    """
    envs = [gym.make(env_id) for _ in range(n_envs)]
    for seed, env in enumerate(envs):
        env.reset(seed=seed)
        env.action_space.seed(seed)
    actions = [[env.action_space.sample() for env in envs] for _ in range(steps)]

    def step_all() -> None:
        for step_actions in actions:
            for env, action in zip(envs, step_actions, strict=True):
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()

    return n_envs * steps / cpu_seconds(step_all)


def measure(env_id: str, variants: Sequence[str], seeds: int, timesteps: int) -> dict[str, Any]:
    """The three paths on the same cells and budget, side by side."""
    th.set_num_threads(1)
    grid = cells(variants, seeds)
    total = len(grid) * timesteps
    physics = physics_limit(env_id, len(grid), timesteps)
    population = Population([paper_member(env_id, seed, variant) for variant, seed in grid])
    population_rate = total / cpu_seconds(lambda: population.learn(timesteps))
    alone = [paper_member(env_id, seed, variant) for variant, seed in grid]
    per_run_rate = total / cpu_seconds(lambda: [model.learn(timesteps) for model in alone])
    return {
        "env_id": env_id,
        "members": len(grid),
        "timesteps_per_member": timesteps,
        "env_steps_per_cpu_second": {"physics": physics, "population": population_rate, "per_run": per_run_rate},
        "population_vs_per_run": population_rate / per_run_rate,
        "physics_vs_population": physics / population_rate,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch_threads": 1},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sb3_lecture_ppo.population.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="HalfCheetah-v5", help="gymnasium env id (MuJoCo for the paper's table)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (members = variants x seeds)")
    parser.add_argument("--timesteps", type=int, default=4096, help="env steps per member (a multiple of n_steps, 2048)")
    parser.add_argument("--json", type=Path, default=None, help="write the measurement as JSON")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.timesteps < 1:
        parser.error("--seeds and --timesteps must be positive")
    gym.spec(args.env)  # an unknown id fails here, before any training
    result = measure(args.env, args.variants, args.seeds, args.timesteps)
    rates = result["env_steps_per_cpu_second"]
    print(
        f"{args.env}, {result['members']} members x {args.timesteps} steps, env steps per CPU-second: "
        f"physics {rates['physics']:,.0f}, population {rates['population']:,.0f}, one by one {rates['per_run']:,.0f}; "
        f"population {result['population_vs_per_run']:.1f}x one by one, "
        f"physics {result['physics_vs_population']:.2f}x population"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
