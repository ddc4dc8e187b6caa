"""``python -m sb3_lecture_ppo.record_gif``: a GIF from a zoo log folder, and one-line errors."""

import pytest
from PIL import Image

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.record_gif import main, tracking_camera


def zoo_folder(tmp_path, env_id="CartPole-v1"):
    """A zoo log folder holding one saved (untrained) LecturePPO, laid out as ``rl_zoo3.train`` writes it."""
    run = tmp_path / "logs" / "lecture_ppo" / f"{env_id}_1"
    run.mkdir(parents=True)
    LecturePPO("MlpPolicy", env_id, n_steps=32, batch_size=32, seed=0, device="cpu").save(run / env_id)
    return tmp_path / "logs"


def test_gif_of_a_zoo_model(tmp_path, capsys):
    folder = zoo_folder(tmp_path)
    output = tmp_path / "cartpole.gif"
    main(["--env", "CartPole-v1", "-f", str(folder), "-n", "40", "--every", "2", "--width", "160", "-o", str(output)])
    assert "wrote" in capsys.readouterr().out
    with Image.open(output) as gif:
        assert gif.size[0] == 160
        assert 1 < gif.n_frames <= 20  # identical consecutive frames may be merged
        assert gif.info["loop"] == 0


def test_missing_model_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"-f/--exp-id: no trained lecture_ppo model for CartPole-v1"):
        main(["--env", "CartPole-v1", "-f", str(tmp_path / "nowhere")])


def test_non_positive_options_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="--every must be positive, got 0"):
        main(["-f", str(tmp_path), "--every", "0"])
    with pytest.raises(SystemExit, match="--algo: unknown algorithm 'nope'"):
        main(["-f", str(tmp_path), "--algo", "nope"])


@pytest.mark.slow
def test_gif_of_a_mujoco_model_renders_offscreen(tmp_path):
    folder = zoo_folder(tmp_path, "HalfCheetah-v5")
    output = tmp_path / "halfcheetah.gif"
    main(["--env", "HalfCheetah-v5", "-f", str(folder), "-n", "10", "--every", "1", "-o", str(output)])
    with Image.open(output) as gif:
        assert gif.n_frames > 1


def test_mujoco_envs_are_filmed_with_their_tracking_camera():
    assert tracking_camera("HalfCheetah-v5") == "track"
    assert tracking_camera("CartPole-v1") is None
