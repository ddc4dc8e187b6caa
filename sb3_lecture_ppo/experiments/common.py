"""
What the experiments share: their configuration, the fixed CartPole-v1 policy several of them
study (trained here with a fixed seed, or loaded with ``--model``), and their outputs (a PNG, a
JSON of the numbers and a markdown summary in ``--out``).
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sb3_lecture_ppo.ppo import LecturePPO

ENV_ID = "CartPole-v1"
"""The env of the experiments that study one fixed policy."""

POLICY_SETTINGS: dict[str, Any] = dict(
    n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8, learning_rate=1e-3, seq_length=16
)
"""LecturePPO's shipped CartPole-v1 entry (constant learning rate: the policy is only partly trained)."""
POLICY_ENVS = 8


NO_PROGRESS_VARIABLE = "SB3_LECTURE_PPO_NO_PROGRESS"


class ExperimentError(ValueError):
    """Bad input to an experiment (shown as one line by the command)."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """
    :param out_dir: where the experiment writes its figure and numbers
    :param quick: small budgets (a few minutes on 2 cores), for tests and a first look
    :param seed: seeds everything the experiment draws
    :param model_path: a saved LecturePPO CartPole-v1 model to study instead of training one
    :param jobs: processes for the experiments that train several runs
    :param envs: restricts the envs of the experiments that train runs (None: all of theirs)
    :param seeds: number of seeds of the experiments that train runs (None: theirs)
    """

    out_dir: Path
    quick: bool = False
    seed: int = 0
    model_path: Path | None = None
    jobs: int = 1
    envs: tuple[str, ...] | None = None
    seeds: int | None = None

    @property
    def quiet(self) -> bool:
        """No progress bars (``SB3_LECTURE_PPO_NO_PROGRESS`` set, as in the tests)."""
        return bool(os.environ.get(NO_PROGRESS_VARIABLE))

    def seed_range(self, quick: int, full: int) -> range:
        """The seeds of the experiments that train runs: ``--seeds`` of them, else ``quick`` or ``full``."""
        return range(self.seed, self.seed + (self.seeds or self.size(quick, full)))

    def size(self, quick: Any, full: Any) -> Any:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full


def progress(iterable: Any = None, total: int | None = None, desc: str = "") -> Any:
    """A tqdm progress bar on stderr (disabled where ``SB3_LECTURE_PPO_NO_PROGRESS`` is set, as in the tests)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, disable=bool(os.environ.get(NO_PROGRESS_VARIABLE)))


def make_env(n_envs: int, seed: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(ENV_ID, n_envs=n_envs, seed=seed)


def fixed_policy(config: ExperimentConfig, timesteps: int, **settings: Any) -> "LecturePPO":
    """
    The CartPole-v1 policy an experiment studies: ``--model`` where given, else LecturePPO with
    the shipped CartPole settings (updated by ``settings``) trained ``timesteps`` steps on ``config.seed``.
    """
    from sb3_lecture_ppo.ppo import LecturePPO

    env = make_env(POLICY_ENVS, config.seed)
    if config.model_path is not None:
        return load_cartpole_model(config.model_path, env, **settings)
    model = LecturePPO("MlpPolicy", env, seed=config.seed, device="cpu", **{**POLICY_SETTINGS, **settings})
    if timesteps > 0:
        model.learn(timesteps)
    return model


def load_cartpole_model(path: Path, env: Any, **settings: Any) -> "LecturePPO":
    """A saved LecturePPO for CartPole-v1, or one line saying what is wrong with ``--model``."""
    from sb3_lecture_ppo.ppo import LecturePPO

    if not path.is_file() and not path.with_suffix(".zip").is_file():
        raise ExperimentError(f"--model: {path} does not exist (save one with LecturePPO.save or train it with the zoo).")
    try:
        return LecturePPO.load(path, env=env, device="cpu", **settings)
    except ValueError as error:
        if "spaces do not match" in str(error):  # SB3's check of the env against the saved spaces
            raise ExperimentError(
                f"--model: {path} was trained on another env ({error}); this experiment studies a {ENV_ID} policy."
            ) from None
        raise ExperimentError(f"--model: {error}") from None


def collect_rollout(model: "LecturePPO") -> None:
    """Fill the model's rollout buffer with one rollout of its current policy (no update)."""
    from stable_baselines3.common.callbacks import CallbackList

    if model._last_obs is None:  # a loaded model has not started its envs yet
        model._setup_learn(0, None)
    callback = CallbackList([])
    callback.init_callback(model)
    model.collect_rollouts(model.get_env(), callback, model.rollout_buffer, model.n_steps)  # type: ignore[arg-type]


def policy_parameters(model: "LecturePPO") -> list[Any]:
    """The parameters the actor objective reaches (its encoder and action head, not the critic's)."""
    critic_parts = ("value_net", "vf_features_extractor")
    return [parameter for name, parameter in model.policy.named_parameters() if not any(part in name for part in critic_parts)]


@dataclasses.dataclass
class ExperimentOutput:
    """The files of one experiment: ``<out>/<name>.png``, ``<name>.json`` and ``<name>.md``."""

    out_dir: Path
    name: str

    @property
    def figure_path(self) -> Path:
        return self.out_dir / f"{self.name}.png"

    @property
    def json_path(self) -> Path:
        return self.out_dir / f"{self.name}.json"

    @property
    def markdown_path(self) -> Path:
        return self.out_dir / f"{self.name}.md"

    def write(self, figure: "Figure", numbers: dict[str, Any], markdown: str) -> None:
        import matplotlib.pyplot as plt

        self.out_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.figure_path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        self.json_path.write_text(json.dumps(numbers, indent=1, default=_jsonable) + "\n")
        self.markdown_path.write_text(markdown.rstrip() + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; floats with 4 significant digits."""

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def seeded(seed: int) -> None:
    """Seed Python, numpy and torch (SB3's ``set_random_seed``)."""
    from stable_baselines3.common.utils import set_random_seed

    set_random_seed(seed)
