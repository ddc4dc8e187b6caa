"""
The contestants of a sweep and where their hyperparameters come from.

Every contestant trains with an RL Zoo entry: ours from our ``hyperparams/*.yml`` (package data),
SB3's and sb3-contrib's from the installed ``rl_zoo3`` package (read, never copied). Two more
contestants run LecturePPO with SB3 PPO's zoo entry and SB3's very network
(``ActorCriticPolicy``), so that only the training loop differs:

* ``lecture_ppo:sb3``: SB3's semantics (rollout-scope GAE computed once, lambda-return target,
  segments of one step, so minibatches hold the same transitions as SB3's);
* ``lecture_ppo:lecture``: the lecture's semantics (segments of 16, segment-scope GAE
  recomputed with the current critic in every minibatch, TD target).
"""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SB3_SEMANTICS: dict[str, Any] = dict(seq_length=1, advantage_scope="rollout", recompute_advantage=False, value_target="lambda")
LECTURE_SEMANTICS: dict[str, Any] = dict(seq_length=16, advantage_scope="segment", recompute_advantage=True, value_target="td")
SB3_POLICY = "stable_baselines3.common.policies.ActorCriticPolicy"
"""SB3 PPO's ``MlpPolicy``, named so that the zoo imports it for LecturePPO too."""


@dataclasses.dataclass(frozen=True)
class Contestant:
    """
    :param name: name on the command line
    :param zoo_algo: the RL Zoo algorithm that trains it (a key of ``rl_zoo3.utils.ALGOS``)
    :param entry_algo: whose zoo yml holds its entries
    :param description: one line for tables and ``--help``
    :param settings: applied on top of the zoo entry (LecturePPO in SB3 PPO's settings)
    """

    name: str
    zoo_algo: str
    entry_algo: str
    description: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    entry: dict[str, Any] | None = None
    """A fixed entry for every env (the PPO paper's setting) instead of a zoo yml's."""

    @property
    def ours(self) -> bool:
        return self.entry_algo.startswith("lecture_")

    def hyperparams_file(self) -> Path:
        if self.ours:
            from sb3_lecture_ppo.zoo.registration import hyperparams_file

            return hyperparams_file(self.entry_algo)
        import rl_zoo3

        return Path(rl_zoo3.__file__).parent / "hyperparams" / f"{self.entry_algo}.yml"

    def hyperparams(self, env_id: str) -> tuple[str, dict[str, Any]]:
        """
        This contestant's hyperparameters for ``env_id``, as a zoo yml entry.

        :return: the name of the zoo entry used (another version of the env where ``env_id`` has
            none, e.g. ``HalfCheetah-v4`` for ``HalfCheetah-v5``) and the entry
        """
        if self.entry is not None:
            return "paper", dict(self.entry)
        entries = yaml.safe_load(self.hyperparams_file().read_text())
        entry_name = zoo_entry_name(entries, env_id)
        if entry_name is None:
            known = sorted(key for key in entries if key not in ("default", "atari"))
            raise ValueError(
                f"contestant {self.name!r} has no RL Zoo entry for {env_id} in {self.hyperparams_file()} "
                f"(entries: {', '.join(known)}): drop it from --algos or pick another --envs."
            )
        params = dict(entries[entry_name])
        for key, value in self.settings.items():
            params[key] = value(params) if callable(value) else value
        return entry_name, params


def zoo_entry_name(entries: dict[str, Any], env_id: str) -> str | None:
    """
    ``env_id`` if the yml has an entry for it, else the newest other version of the same env
    (``HalfCheetah-v4`` for ``HalfCheetah-v5``: the zoo has no v5 entries), else None.
    The yml's ``default`` entry does not count: a benchmark compares tuned settings.
    """
    if env_id in entries:
        return env_id
    match = re.fullmatch(r"(.+)-v(\d+)", env_id)
    if match is None:
        return None
    versions = [
        (int(other.group(2)), key)
        for key in entries
        if (other := re.fullmatch(r"(.+)-v(\d+)", str(key))) is not None and other.group(1) == match.group(1)
    ]
    return max(versions)[1] if versions else None


def _lecture_in_ppo_settings(semantics: dict[str, Any]) -> dict[str, Any | Callable[[dict[str, Any]], Any]]:
    # SB3 PPO's zoo entries' gSDE settings (use_sde, sde_sample_freq) carry over as they are
    return {"policy": SB3_POLICY, **semantics}


PAPER_MUJOCO: dict[str, Any] = dict(
    policy=SB3_POLICY,
    # 64 x 2 tanh policy and value networks without shared parameters
    policy_kwargs="dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh)",
    # OpenAI baselines' ppo1, the paper's code, filtered observations with running statistics; rewards were not scaled
    normalize="dict(norm_obs=True, norm_reward=False)",
    n_envs=1,
    n_timesteps=1_000_000,
    n_steps=2048,
    learning_rate=3e-4,
    n_epochs=10,
    batch_size=64,
    gamma=0.99,
    gae_lambda=0.95,
    ent_coef=0.0,
    max_grad_norm=None,
    **SB3_SEMANTICS,
)
"""The PPO paper's MuJoCo setting (its Table 3 hyperparameters), as LecturePPO kwargs."""

CONTESTANTS: dict[str, Contestant] = {
    contestant.name: contestant
    for contestant in (
        Contestant("lecture_ppo", "lecture_ppo", "lecture_ppo", "LecturePPO, our shipped zoo entry"),
        Contestant("ppo", "ppo", "ppo", "SB3 PPO, the RL Zoo's entry"),
        Contestant("a2c", "a2c", "a2c", "SB3 A2C, the RL Zoo's entry"),
        Contestant("trpo", "trpo", "trpo", "sb3-contrib TRPO, the RL Zoo's entry"),
        Contestant("lecture_ac", "lecture_ac", "lecture_ac", "LectureActorCritic, our shipped zoo entry"),
        Contestant("lecture_gae_ac", "lecture_gae_ac", "lecture_gae_ac", "LectureGAEActorCritic, our shipped zoo entry"),
        Contestant("lecture_mc_pg", "lecture_mc_pg", "lecture_mc_pg", "LectureMonteCarloPG, our shipped zoo entry"),
        Contestant(
            "lecture_ppo:sb3",
            "lecture_ppo",
            "ppo",
            "LecturePPO with SB3 PPO's zoo entry and network, SB3's semantics (rollout GAE once, lambda target)",
            _lecture_in_ppo_settings(SB3_SEMANTICS),
        ),
        Contestant(
            "lecture_ppo:lecture",
            "lecture_ppo",
            "ppo",
            "LecturePPO with SB3 PPO's zoo entry and network, the lecture's semantics (segments, recomputed GAE)",
            _lecture_in_ppo_settings(LECTURE_SEMANTICS),
        ),
        Contestant(
            "lecture_ppo:paper",
            "lecture_ppo",
            "lecture_ppo",
            "LecturePPO in the PPO paper's MuJoCo setting (64x2 tanh, horizon 2048, 10 epochs, minibatch 64)",
            entry=PAPER_MUJOCO,
        ),
    )
}


def get_contestant(name: str) -> Contestant:
    if name not in CONTESTANTS:
        raise ValueError(f"unknown algorithm {name!r}: use one of {', '.join(CONTESTANTS)}.")
    return CONTESTANTS[name]
