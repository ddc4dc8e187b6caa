"""CartPole entry screen, round 2: a candidate on many seeds as one population (the same evaluations as screen.py).

python pop_screen.py OUT.jsonl CANDIDATE FIRST_SEED N_SEEDS
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.population import Population

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "screen"))
from screen import BASE, CANDIDATES as ROUND_1, Eval, lin  # round 1: its settings and evaluation

ENTRY = {**BASE, **ROUND_1["k3_lambda_clip_kl_adaptive"]}  # the shipped entry before this screen
CANDIDATES = {
    "entry": {},
    "gamma99": dict(gamma=0.99),
    "kl005": dict(kl_target=0.005),
    "epochs10": dict(n_epochs=10),
    "once": dict(recompute_advantage=False),
    "rollout_once": dict(advantage_scope="rollout", recompute_advantage=False),
    "budget2x": {},  # the entry trained twice as long, its linear schedules stretched over the longer budget
}
BUDGETS = {"budget2x": 200_000}  # env steps per seed where not 100k


def main(out, name, first_seed, n_seeds):
    th.set_num_threads(1)
    settings = {**ENTRY, **CANDIDATES[name]}
    seeds = list(range(first_seed, first_seed + n_seeds))
    members = [
        LecturePPO(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=8, seed=seed),
            learning_rate=lin(1e-3),
            clip_range=lin(0.2),
            seed=seed,
            device="cpu",
            **settings,
        )
        for seed in seeds
    ]
    evaluations = [Eval(make_vec_env("CartPole-v1", n_envs=20, seed=seed + 10_000), 2000) for seed in seeds]
    start = time.process_time()
    population = Population(members).learn(BUDGETS.get(name, 100_000), callbacks=evaluations)
    with open(out, "a") as file:
        for index, seed in enumerate(seeds):
            final_env = make_vec_env("CartPole-v1", n_envs=20, seed=seed + 20_000)
            returns, _ = evaluate_policy(
                population.member(index), final_env, n_eval_episodes=100, deterministic=True, return_episode_rewards=True
            )
            record = dict(name=name, seed=seed, final=float(np.mean(returns)), curve=evaluations[index].curve)
            file.write(json.dumps(record) + "\n")
    print(name, "CPU seconds", time.process_time() - start)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
