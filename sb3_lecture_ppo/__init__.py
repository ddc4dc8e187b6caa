"""
The PPO lecture ("12강 Actor-Critic: PPO") as Stable-Baselines3 algorithms.

The algorithms are imported on first use, so that the RL Zoo start-up hook
(:mod:`sb3_lecture_ppo.zoo.hook`) can live in this package without importing torch.
"""

import importlib

TYPE_CHECKING = False  # not typing's: importing typing at every start-up (through the zoo hook) costs milliseconds

__version__ = "0.1.0"

_EXPORTS = {
    "LecturePPO": "sb3_lecture_ppo.ppo",
    "LectureActorCritic": "sb3_lecture_ppo.actor_critic",
    "LectureGAEActorCritic": "sb3_lecture_ppo.actor_critic",
    "LectureMonteCarloPG": "sb3_lecture_ppo.actor_critic",
}

if TYPE_CHECKING:
    from sb3_lecture_ppo.actor_critic import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG
    from sb3_lecture_ppo.ppo import LecturePPO


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sb3_lecture_ppo' has no attribute {name!r}")


__all__ = ["LectureActorCritic", "LectureGAEActorCritic", "LectureMonteCarloPG", "LecturePPO", "__version__"]
