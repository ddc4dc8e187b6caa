"""
Registration of the lecture's algorithms into the RL Zoo: ``rl_zoo3.ALGOS``, the Optuna samplers
and converters of ``rl_zoo3.hyperparams_opt``, and our ``hyperparams/<name>.yml`` as the zoo's
default config for our algorithm names.
"""

import functools
import sys
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.zoo.samplers import CONVERTERS, SAMPLERS

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"


def zoo_algorithms() -> dict[str, type]:
    """Zoo name -> algorithm class."""
    from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO

    return {
        "lecture_ppo": LecturePPO,
        "lecture_ac": LectureActorCritic,
        "lecture_gae_ac": LectureGAEActorCritic,
        "lecture_mc_pg": LectureMonteCarloPG,
    }


def hyperparams_file(algo: str) -> Path:
    """Our zoo config of ``algo`` (package data)."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


def register_algorithms() -> None:
    """Add our algorithms to ``rl_zoo3.utils.ALGOS`` (the dict the zoo's CLIs read)."""
    from rl_zoo3.utils import ALGOS

    ALGOS.update(zoo_algorithms())
    refuse_atari_without_ale(sys.argv)


def refuse_atari_without_ale(argv: list[str]) -> None:
    """
    Exit with one line naming the extra where a zoo command line asks one of our algorithms for an
    Atari env and ``ale-py`` is missing (the zoo would say the env is not in gymnasium's registry).
    """
    from sb3_lecture_ppo.common.atari import missing_ale_message
    from sb3_lecture_ppo.zoo.hook import requested_algorithm

    if requested_algorithm(argv) is None:
        return
    for index, arg in enumerate(argv[:-1]):
        if arg == "--env" and (message := missing_ale_message(argv[index + 1])) is not None:
            sys.exit(f"sb3_lecture_ppo: --env {message}")


def register_samplers() -> None:
    """Add our Optuna samplers and converters (``-optimize`` and ``--trial-id``)."""
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    HYPERPARAMS_SAMPLER.update(SAMPLERS)
    HYPERPARAMS_CONVERTER.update(CONVERTERS)


def register_hyperparams_files() -> None:
    """Make ``ExperimentManager`` read our yml for our algorithms when no ``-conf`` is given."""
    from rl_zoo3.exp_manager import ExperimentManager

    original_init = ExperimentManager.__init__
    if getattr(original_init, "_lecture_hyperparams", False):
        return

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.algo in zoo_algorithms() and not kwargs.get("config"):
            self.config = str(hyperparams_file(self.algo))

    __init__._lecture_hyperparams = True  # type: ignore[attr-defined]
    ExperimentManager.__init__ = __init__  # type: ignore[method-assign]


def register() -> None:
    """Register everything now (for a program that imports rl_zoo3 without the start-up hook)."""
    register_algorithms()
    register_samplers()
    register_hyperparams_files()
