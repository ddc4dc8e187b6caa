"""CartPole entry screen, round 2: a candidate on many seeds as one population (the same evaluations as screen.py).

python pop_screen.py OUT.jsonl CANDIDATE FIRST_SEED N_SEEDS
"""

import json
import sys
import time

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.population import Population

ENTRY = dict(  # the shipped entry (hyperparams/lecture_ppo.yml, CartPole-v1) before this screen
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    policy_kwargs=dict(encoder_layers=0, net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=th.nn.Tanh),
    seq_length=16,
    objective="clip_kl_adaptive",
    kl_target=0.01,
    value_target="lambda",
)
CANDIDATES = {
    "entry": {},
    "gamma99": dict(gamma=0.99),
    "seq32": dict(seq_length=32),
    "kl005": dict(kl_target=0.005),
    "lambda95": dict(gae_lambda=0.95),
    "gamma99_lambda95": dict(gamma=0.99, gae_lambda=0.95),
    "epochs10": dict(n_epochs=10),
    "once": dict(recompute_advantage=False),
    "rollout_once": dict(advantage_scope="rollout", recompute_advantage=False),
}


def linear(value):
    return lambda progress: progress * value


class Evaluation(BaseCallback):
    def __init__(self, env, every):
        super().__init__()
        self.env, self.every, self.curve, self.next = env, every, [], every

    def _on_step(self):
        if self.num_timesteps >= self.next:
            self.next += self.every
            mean, _ = evaluate_policy(self.model, self.env, n_eval_episodes=20, deterministic=True)
            self.curve.append((self.num_timesteps, float(mean)))
        return True


def main(out, name, first_seed, n_seeds):
    th.set_num_threads(1)
    settings = {**ENTRY, **CANDIDATES[name]}
    seeds = list(range(first_seed, first_seed + n_seeds))
    members = [
        LecturePPO(
            "MlpPolicy",
            make_vec_env("CartPole-v1", n_envs=8, seed=seed),
            learning_rate=linear(1e-3),
            clip_range=linear(0.2),
            seed=seed,
            device="cpu",
            **settings,
        )
        for seed in seeds
    ]
    evaluations = [Evaluation(make_vec_env("CartPole-v1", n_envs=20, seed=seed + 10_000), 2000) for seed in seeds]
    start = time.process_time()
    population = Population(members).learn(100_000, callbacks=evaluations)
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
