"""CartPole screen: candidates on seeds, 20-episode evals every 2k steps (vectorized), final 100 episodes."""

import json
import sys
import time
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.callbacks import BaseCallback
from sb3_lecture_ppo import LecturePPO

BASE = dict(
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    policy_kwargs=dict(encoder_layers=0, net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=th.nn.Tanh),
    seq_length=16,
    advantage_scope="segment",
    recompute_advantage=True,
    value_target="td",
)
CANDIDATES = {
    "c1": {},
    "c2_seq32": dict(seq_length=32),
    "c3_gamma99": dict(gamma=0.99),
    "c4_lambda_target": dict(value_target="lambda"),
    "c5_seq32_gamma99": dict(seq_length=32, gamma=0.99),
    "c5_once": dict(recompute_advantage=False),
    "c6_lambda_once": dict(value_target="lambda", recompute_advantage=False),
    "c7_epochs10": dict(n_epochs=10),
    "c8_lambda_epochs10": dict(value_target="lambda", n_epochs=10),
    "ppo": {},
    "k1_clip_kl_adaptive": dict(objective="clip_kl_adaptive", kl_target=0.01),
    "k2_target_kl": dict(target_kl=0.02),
    "k3_lambda_clip_kl_adaptive": dict(objective="clip_kl_adaptive", kl_target=0.01, value_target="lambda"),
}


def lin(v):
    return lambda p: p * v


class Eval(BaseCallback):
    def __init__(self, env, every):
        super().__init__()
        self.env, self.every, self.curve = env, every, []
        self.next = every

    def _on_step(self):
        if self.num_timesteps >= self.next:
            self.next += self.every
            r, _ = evaluate_policy(self.model, self.env, n_eval_episodes=20, deterministic=True)
            self.curve.append((self.num_timesteps, float(r)))
        return True


def run(name, seed, n_envs=8, lr=1e-3):
    th.set_num_threads(1)
    kw = {**BASE, **CANDIDATES[name]}
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed)
    if name == "ppo":
        from stable_baselines3 import PPO

        for key in ("seq_length", "advantage_scope", "recompute_advantage", "value_target"):
            kw.pop(key)
        kw["policy_kwargs"] = {k: v for k, v in kw["policy_kwargs"].items() if k != "encoder_layers"}
        model = PPO("MlpPolicy", env, learning_rate=lin(lr), clip_range=lin(0.2), seed=seed, device="cpu", **kw)
    else:
        model = LecturePPO("MlpPolicy", env, learning_rate=lin(lr), clip_range=lin(0.2), seed=seed, device="cpu", **kw)
    ev_env = make_vec_env("CartPole-v1", n_envs=20, seed=seed + 10_000)
    cb = Eval(ev_env, 2000)
    t = time.process_time()
    model.learn(100_000, callback=cb)
    fin_env = make_vec_env("CartPole-v1", n_envs=20, seed=seed + 20_000)
    rets, _ = evaluate_policy(model, fin_env, n_eval_episodes=100, deterministic=True, return_episode_rewards=True)
    return dict(name=name, seed=seed, final=float(np.mean(rets)), curve=cb.curve, cpu=time.process_time() - t)


if __name__ == "__main__":
    out = sys.argv[1]
    names = sys.argv[2].split(",")
    seeds = [int(s) for s in sys.argv[3].split(",")]
    with open(out, "a") as f:
        for seed in seeds:
            for name in names:
                r = run(name, seed)
                f.write(json.dumps(r) + "\n")
                f.flush()
