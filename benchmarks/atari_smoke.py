"""A few LecturePPO updates on an Atari env on the given device (default: cuda when there is one)."""

import sys

import torch as th
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.atari import register_ale_envs

env_id = sys.argv[1] if len(sys.argv) > 1 else "BreakoutNoFrameskip-v4"
device = sys.argv[2] if len(sys.argv) > 2 else ("cuda" if th.cuda.is_available() else "cpu")
register_ale_envs(env_id)
env = VecFrameStack(make_atari_env(env_id, n_envs=2, seed=0), n_stack=4)
model = LecturePPO("CnnPolicy", env, n_steps=32, batch_size=32, seq_length=16, n_epochs=2, device=device, seed=0)
model.learn(256)
print(f"smoke ok on {model.device}: {model.num_timesteps} steps")
