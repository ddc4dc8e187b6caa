"""
The paper's Atari setting: the zoo's ``atari`` entry trains, saves, loads and plays on Pong; the
CnnPolicy (shared or separate trunks) on the segment buffer with uint8 frames; a one-line error
naming the extra where ``ale-py`` is missing.
"""

import importlib.util
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.atari import INSTALL_ATARI, is_atari_env_id, missing_ale_message, register_ale_envs
from sb3_lecture_ppo.evaluation.monitor_scores import FRAME_SKIP, score_at, training_scores
from sb3_lecture_ppo.evaluation.runner import buffer_bytes_per_transition
from sb3_lecture_ppo.zoo.registration import refuse_atari_without_ale

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
PONG = "PongNoFrameskip-v4"
BREAKOUT = "BreakoutNoFrameskip-v4"


def pong(n_envs: int = 2):
    register_ale_envs(PONG)
    return VecFrameStack(make_atari_env(PONG, n_envs=n_envs, seed=0), n_stack=4)


def zoo(*args: str, cwd, env: dict[str, str] = ENV, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_zoo_atari_entry_trains_saves_loads_and_plays(tmp_path):
    zoo(
        "rl_zoo3.train", "--algo", "lecture_ppo", "--env", PONG, "-n", "1024", "--eval-freq", "-1", "--seed", "0", cwd=tmp_path
    )
    run_folder = tmp_path / "logs" / "lecture_ppo" / f"{PONG}_1"
    model = LecturePPO.load(run_folder / f"{PONG}.zip", device="cpu")
    # the paper's table, from the zoo's `atari` key of our yml
    assert (model.n_steps, model.n_epochs, model.batch_size, model.vf_coef, model.ent_coef) == (128, 3, 256, 1.0, 0.01)
    assert model.policy.share_features_extractor and model.observation_space.shape == (4, 84, 84)
    assert model.num_timesteps == 1024
    assert "frame_stack" in (run_folder / PONG / "config.yml").read_text()
    enjoy = zoo(
        "rl_zoo3.enjoy", "--algo", "lecture_ppo", "--env", PONG, "-f", "logs/", "--no-render", "-n", "200", cwd=tmp_path
    )
    assert f"Loading {run_folder / PONG}.zip".replace(str(tmp_path) + "/", "") in enjoy.stdout


@pytest.mark.slow
def test_breakout_learns_in_250k_steps(tmp_path):
    """
    The paper's table learns Breakout. This test (seed 0; ``-n 250000``, so the schedule anneals to 0 by the end) measured 1.5
    for the first 100 training games and 4.9 for the last 100 at 250k agent steps, on a GPU machine in 214 s
    (benchmarks/results/atari/slow_test). The side-by-side runs, annealed over a longer budget, had 7.4 and 9.3 near
    250k (SB3 PPO's zoo entry: 9.1 and 11.3). About an hour on a 2-core CPU (~77 steps per second).
    """
    budget = 250_000
    # the same envs and seeds either way; where there are cores to spare, they step in subprocesses
    vec_env = "subproc" if (os.cpu_count() or 1) > 8 else "dummy"
    zoo(
        "rl_zoo3.train", "--algo", "lecture_ppo", "--env", BREAKOUT, "-n", str(budget), "--eval-freq", "-1",
        "--seed", "0", "--device", "auto", "--vec-env", vec_env, cwd=tmp_path, env={**ENV, "OMP_NUM_THREADS": "2"},
        timeout=3 * 3600,
    )  # fmt: skip
    steps, scores = training_scores(tmp_path / "logs" / "lecture_ppo" / f"{BREAKOUT}_1", frames_per_step=FRAME_SKIP)
    untrained, trained = scores[:100].mean(), score_at(steps, scores, budget)
    assert trained >= 3.5 and trained >= 2 * untrained, (untrained, trained)


@pytest.mark.parametrize("share", [True, False])
def test_cnn_policy_on_the_segment_buffer_keeps_frames_uint8(share):
    env = pong()
    model = LecturePPO(
        "CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
        policy_kwargs=dict(share_features_extractor=share),
    )  # fmt: skip
    assert (model.policy.pi_features_extractor is model.policy.vf_features_extractor) == share
    before = {name: parameter.clone() for name, parameter in model.policy.named_parameters()}
    model.learn(64)
    buffer = model.rollout_buffer
    assert buffer.observations.dtype == np.uint8 and buffer.observation_tensor("observations").dtype == th.uint8
    frame_bytes = int(np.prod(env.observation_space.shape))
    # observation and next observation at one byte a pixel (SB3 keeps float32: 4 bytes each)
    assert 2 * frame_bytes <= buffer_bytes_per_transition(model) < 2.1 * frame_bytes
    changed = [name for name, parameter in model.policy.named_parameters() if not th.equal(parameter, before[name])]
    assert any("features_extractor.cnn" in name for name in changed)
    if not share:
        assert any(name.startswith("vf_features_extractor") for name in changed)


def test_atari_env_ids():
    assert all(map(is_atari_env_id, [PONG, "BreakoutNoFrameskip-v4", "ALE/Pong-v5", "SpaceInvadersDeterministic-v4"]))
    assert not any(map(is_atari_env_id, ["CartPole-v1", "HalfCheetah-v5", "Pendulum-v1"]))
    register_ale_envs(PONG)
    assert PONG in gym.envs.registry


def test_missing_ale_is_one_line_naming_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ale_py" else real_find_spec(name, *a))
    assert missing_ale_message("CartPole-v1") is None
    with pytest.raises(
        ImportError, match=rf"{PONG} is an Atari env and ale-py .* is not installed: {re.escape(INSTALL_ATARI)}"
    ):
        LecturePPO("CnnPolicy", PONG)
    with pytest.raises(SystemExit, match=rf"--env {PONG} is an Atari env .*sb3_lecture_ppo\[atari\]"):
        refuse_atari_without_ale(["train.py", "--algo", "lecture_ppo", "--env", PONG])
    refuse_atari_without_ale(["train.py", "--algo", "ppo", "--env", PONG])  # the zoo's own algorithms: not ours to refuse


def test_zoo_command_without_ale_exits_with_one_line(tmp_path):
    code = (
        "import sys, runpy; sys.modules['ale_py'] = None; "
        f"sys.argv = ['train', '--algo', 'lecture_ppo', '--env', '{PONG}']; "
        "runpy.run_module('rl_zoo3.train', run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"sb3_lecture_ppo: --env {missing_ale_message_for_test()}"


def missing_ale_message_for_test() -> str:
    return f"{PONG} is an Atari env and ale-py (the ALE and its ROMs) is not installed: {INSTALL_ATARI}"
