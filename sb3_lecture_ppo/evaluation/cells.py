"""
A cell of a sweep: one training run, named by everything that decides its outcome.

A cell's id is a hash of its canonical JSON, so the same settings always name the same file
(a rerun finds it done) and different settings never share one.
"""

import dataclasses
import hashlib
import json
from typing import Any

RESULTS_FORMAT_VERSION = 1
"""Version of a run's JSON file (see :mod:`sb3_lecture_ppo.evaluation.runner`); bump on incompatible changes."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """
    One training run of a sweep.

    :param contestant: contestant name (see :mod:`sb3_lecture_ppo.evaluation.contestants`)
    :param env_id: gymnasium env id
    :param seed: seed of the model and of the training envs (the evaluation env gets ``seed + EVAL_SEED_OFFSET``)
    :param timesteps: training budget in env steps
    :param eval_freq: env steps between two evaluations
    :param eval_episodes: episodes per evaluation
    :param final_eval_episodes: episodes of the evaluation after training
    :param overrides: hyperparameters replacing the contestant's (values as in a zoo yml: numbers, strings)
    :param stop_at_return: stop training at the first evaluation whose mean return reaches this (SB3's
        ``StopTrainingOnRewardThreshold``); schedules still run over ``timesteps``, so a run stopped at step
        ``t`` trained exactly as the first ``t`` steps of the full run. None: train the whole budget.
        Measures steps to a threshold at a fraction of a full run's cost.
    :param eval_envs: envs that an evaluation steps at once, its episodes split evenly over them (SB3's
        ``evaluate_policy`` on a vectorized env): the same evaluation of the deterministic policy, faster
    """

    contestant: str
    env_id: str
    seed: int
    timesteps: int
    eval_freq: int
    eval_episodes: int
    final_eval_episodes: int
    overrides: tuple[tuple[str, Any], ...] = ()
    stop_at_return: float | None = None
    eval_envs: int = 1

    @property
    def id(self) -> str:
        """Stable id: the first 16 hex digits of the SHA-1 of the canonical JSON."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``ppo CartPole-v1 seed 0``."""
        return f"{self.contestant} {self.env_id} seed {self.seed}"

    def overrides_dict(self) -> dict[str, Any]:
        return dict(self.overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["overrides"] = {key: value for key, value in self.overrides}
        if self.stop_at_return is None:
            del data["stop_at_return"]  # the ids of cells made before this field existed stay the same
        if self.eval_envs == 1:
            del data["eval_envs"]  # (likewise)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Cell":
        fields = dict(data)
        fields["overrides"] = tuple(sorted(dict(fields.get("overrides", {})).items()))
        return cls(**fields)

    @classmethod
    def make(cls, overrides: dict[str, Any] | None = None, **fields: Any) -> "Cell":
        """A cell with its overrides given as a dict (stored sorted, so that equal dicts give equal ids)."""
        return cls(overrides=tuple(sorted((overrides or {}).items())), **fields)
