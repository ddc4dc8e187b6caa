"""
The lecture's claims as experiments: ``python -m sb3_lecture_ppo.experiments NAME [--quick] [--out DIR]``.

Each experiment is a module with ``NAME``, ``CLAIM`` (the slide's claim) and
``run(config) -> numbers``, which writes ``<out>/<NAME>.png``, ``.json`` and ``.md``. They use the
package's own buffer, GAE, value targets and objectives, never copies of them.
"""

import importlib
from types import ModuleType

EXPERIMENTS: dict[str, str] = {
    "baseline-variance": "sb3_lecture_ppo.experiments.baseline_variance",
    "gae-lambda": "sb3_lecture_ppo.experiments.gae_lambda",
    "importance-ratio": "sb3_lecture_ppo.experiments.importance_ratio",
    "clip-gradient": "sb3_lecture_ppo.experiments.clip_gradient",
    "value-target": "sb3_lecture_ppo.experiments.value_target",
}
"""Experiment name -> its module, in the lecture's order."""


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}: use one of {', '.join(EXPERIMENTS)}.")
    return importlib.import_module(EXPERIMENTS[name])
