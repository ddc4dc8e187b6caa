"""
Crashes: a model saved while the process dies is the old file or the new one; a sweep killed with SIGKILL at
random moments resumes to the same complete result as one never interrupted.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from sb3_lecture_ppo import LecturePPO
from tests.helpers import tiny_kwargs

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def test_a_save_that_dies_midway_leaves_the_previous_model(tmp_path, monkeypatch):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.save(tmp_path / "model")
    before = (tmp_path / "model.zip").read_bytes()

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped while the zip is being written

    monkeypatch.setattr(zipfile.ZipFile, "writestr", dies)
    with pytest.raises(KeyboardInterrupt):
        model.learn(32).save(tmp_path / "model")
    monkeypatch.undo()
    assert (tmp_path / "model.zip").read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["model.zip"]  # no temporary file left behind
    LecturePPO.load(tmp_path / "model")


SAVE_LOOP = """
import sys
from sb3_lecture_ppo import LecturePPO
model = LecturePPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seq_length=8, seed=0)
print("ready", flush=True)
while True:
    model.learn(32, reset_num_timesteps=False)
    model.save(sys.argv[1])
"""


@pytest.mark.slow
def test_a_model_saved_in_a_loop_and_killed_at_random_moments_always_loads(tmp_path):
    path = tmp_path / "model.zip"
    rng = random.Random(0)
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if path.exists():
            LecturePPO.load(path)  # the old model or the new one, never a broken file


SWEEP = ["--algos", "ppo", "lecture_ppo", "--envs", "CartPole-v1", "--seeds", "2", "--timesteps", "4096"]
SWEEP += ["--eval-freq", "2048", "--eval-episodes", "2", "--final-eval-episodes", "3", "--jobs", "2", "--no-progress"]


def sweep(out, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "sb3_lecture_ppo.benchmark", *SWEEP, "--out", str(out)]
    return subprocess.Popen(command, env=ENV, start_new_session=True, stdout=subprocess.DEVNULL, **kwargs)


def finals(out) -> dict[str, float]:
    return {
        path.stem: json.loads(path.read_text())["final_evaluation"]["mean"] for path in sorted((out / "runs").glob("*.json"))
    }


@pytest.mark.slow
def test_a_sweep_killed_at_20_random_moments_resumes_to_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    assert sweep(reference, stderr=subprocess.DEVNULL).wait(timeout=900) == 0
    expected = finals(reference)
    assert len(expected) == 4

    out = tmp_path / "killed"
    rng = random.Random(1)
    kills = 0
    while kills < 20:
        process = sweep(out, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 8.0))
        if process.poll() is not None:
            break  # finished before this kill
        os.killpg(process.pid, signal.SIGKILL)  # the sweep and the runs it trains
        process.wait()
        kills += 1
        for path in (out / "runs").glob("*.json"):
            json.loads(path.read_text())  # every run file on disk is whole
    assert sweep(out, stderr=subprocess.DEVNULL).wait(timeout=900) == 0
    assert finals(out) == expected  # nothing lost, nothing duplicated, the same numbers
    assert not list((out / "runs").glob(".*.tmp"))
    for name in ("results.json", "results.md", "curves.png"):
        assert (out / name).stat().st_size > 0
    print(f"{kills} kills")
