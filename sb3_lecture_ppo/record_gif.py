"""
Record a GIF of a trained agent from the RL Zoo's log folder, headless::

    python -m sb3_lecture_ppo.record_gif --algo lecture_ppo --env CartPole-v1 -f logs/ -o cartpole.gif

The model, its saved hyperparameters and VecNormalize statistics are found and loaded as the zoo's
``enjoy`` and ``record_video`` do (``--exp-id``, ``--load-best``). MuJoCo renders offscreen
through ``MUJOCO_GL`` (``egl`` by default: Mesa's software EGL works on a CPU machine without a
display; set ``MUJOCO_GL=osmesa`` where only OSMesa is installed).
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_lecture_ppo.record_gif", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", default="lecture_ppo", help="zoo algorithm name (default: lecture_ppo)")
    parser.add_argument("--env", default="CartPole-v1", help="env id")
    parser.add_argument("-f", "--folder", default="logs", help="the zoo's log folder")
    parser.add_argument("--exp-id", type=int, default=0, help="experiment id (default 0: the latest)")
    parser.add_argument("--load-best", action="store_true", help="the best model of the evaluations instead of the last")
    parser.add_argument("-o", "--output", type=Path, default=None, help="GIF path (default: <folder>/<algo>/<env>.gif)")
    parser.add_argument("-n", "--n-timesteps", type=int, default=500, help="env steps to record")
    parser.add_argument("--every", type=int, default=2, help="keep one frame in this many (smaller GIFs)")
    parser.add_argument("--fps", type=int, default=25, help="frames per second of the GIF")
    parser.add_argument("--width", type=int, default=320, help="width of the GIF in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the env")
    parser.add_argument(
        "--camera",
        default=None,
        help="MuJoCo camera name (default: 'track', the camera that follows the body, where the env has one)",
    )
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic policy")
    return parser.parse_args(argv)


def load_agent(args: argparse.Namespace) -> tuple[Any, Any]:
    """The trained model and its rendering test env, as the zoo's ``record_video`` loads them."""
    from rl_zoo3.utils import ALGOS, create_test_env, get_model_path, get_saved_hyperparams

    from sb3_lecture_ppo.zoo import register

    register()
    if args.algo not in ALGOS:
        raise ValueError(f"--algo: unknown algorithm {args.algo!r} (zoo algorithms: {', '.join(sorted(ALGOS))})")
    try:
        _, model_path, log_path = get_model_path(args.exp_id, args.folder, args.algo, args.env, args.load_best)
    except (AssertionError, ValueError, FileNotFoundError) as error:
        raise ValueError(f"-f/--exp-id: no trained {args.algo} model for {args.env} under {args.folder} ({error})") from None
    hyperparams, stats_path = get_saved_hyperparams(os.path.join(log_path, args.env))
    env_kwargs: dict[str, Any] = {"render_mode": "rgb_array"}
    camera = args.camera or tracking_camera(args.env)
    if camera is not None:
        env_kwargs["camera_name"] = camera
    env = create_test_env(
        args.env,
        n_envs=1,
        stats_path=stats_path,
        seed=args.seed,
        log_dir=None,
        should_render=False,
        hyperparams=hyperparams,
        env_kwargs=env_kwargs,
    )
    custom_objects = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    model = ALGOS[args.algo].load(model_path, env=env, custom_objects=custom_objects, device="cpu")
    return model, env


def tracking_camera(env_id: str) -> str | None:
    """``"track"`` for a gymnasium MuJoCo env whose model has that camera (it follows the body), else None."""
    import gymnasium as gym

    spec = gym.spec(env_id)
    if "mujoco" not in str(spec.entry_point):
        return None
    env = gym.make(env_id)
    try:
        model = env.unwrapped.model  # type: ignore[attr-defined]
        names = {model.camera(index).name for index in range(model.ncam)}
    finally:
        env.close()
    return "track" if "track" in names else None


def record_frames(
    model: Any, env: Any, n_timesteps: int, every: int, deterministic: bool
) -> tuple[list[np.ndarray], list[float]]:
    """Every ``every``-th rendered frame of ``n_timesteps`` steps, and the returns of the episodes that ended."""
    frames, returns = [], []
    observation = env.reset()
    for step in range(n_timesteps):
        if step % every == 0:
            frames.append(env.render())
        action, _ = model.predict(observation, deterministic=deterministic)
        observation, _, _, infos = env.step(action)
        if "episode" in infos[0]:  # the Monitor's unnormalized return of an episode that ended
            returns.append(float(infos[0]["episode"]["r"]))
    return frames, returns


def save_gif(frames: list[np.ndarray], path: Path, fps: int, width: int) -> None:
    """Write ``frames`` as a looping GIF of ``width`` pixels (Pillow, a matplotlib dependency)."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    height = round(images[0].height * width / images[0].width)
    images = [image.resize((width, height), Image.Resampling.LANCZOS) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for option, value in (
        ("--n-timesteps", args.n_timesteps),
        ("--every", args.every),
        ("--fps", args.fps),
        ("--width", args.width),
    ):
        if value <= 0:
            sys.exit(f"python -m sb3_lecture_ppo.record_gif: error: {option} must be positive, got {value}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        model, env = load_agent(args)
        frames, returns = record_frames(model, env, args.n_timesteps, args.every, deterministic=not args.stochastic)
    except ValueError as error:
        sys.exit(f"python -m sb3_lecture_ppo.record_gif: error: {error}")
    except (ImportError, AttributeError, RuntimeError) as error:
        if "MuJoCo" in type(error).__name__ or "GL" in str(error) or "egl" in str(error).lower():
            sys.exit(
                f"python -m sb3_lecture_ppo.record_gif: error: offscreen rendering failed with MUJOCO_GL="
                f"{os.environ['MUJOCO_GL']} ({error}): install Mesa's EGL (libegl1) or OSMesa and set MUJOCO_GL accordingly"
            )
        raise
    output = args.output or Path(args.folder) / args.algo / f"{args.env}.gif"
    save_gif(frames, output, args.fps, args.width)
    finished = f", episode returns {', '.join(f'{value:.0f}' for value in returns)}" if returns else ""
    print(f"wrote {output}: {len(frames)} frames of {args.n_timesteps} steps{finished}")


if __name__ == "__main__":
    main()
