"""
Copied as ``conftest.py`` into the ``tests/`` folder of SB3's source distribution by
``tests/sb3_suite/run_sb3_suite.py``: every ``PPO`` that SB3's own tests import becomes
:class:`~sb3_lecture_ppo.LecturePPO`, and only the tests that use PPO (in their parameters or
their body) are kept. Not a conftest of this repository's own test run (its name keeps pytest
from loading it there).
"""

import inspect
import os
from typing import Any

import pytest
import stable_baselines3
import stable_baselines3.ppo
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_lecture_ppo import LecturePPO


class LecturePPOWithSB3Semantics(LecturePPO):
    """LecturePPO with SB3's advantage and value-target settings as defaults (rollout-scope GAE, lambda targets)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("advantage_scope", "rollout")
        kwargs.setdefault("value_target", "lambda")
        kwargs.setdefault("recompute_advantage", False)
        super().__init__(*args, **kwargs)


# SB3_SUITE_SEMANTICS=sb3 runs the suite with SB3's advantage semantics; the default is LecturePPO as it ships
PPO_CLASS = LecturePPOWithSB3Semantics if os.environ.get("SB3_SUITE_SEMANTICS") == "sb3" else LecturePPO
stable_baselines3.PPO = PPO_CLASS  # type: ignore[attr-defined]
stable_baselines3.ppo.PPO = PPO_CLASS  # type: ignore[attr-defined]


def _uses_ppo(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    algorithms = [
        value
        for value in (callspec.params.values() if callspec is not None else ())
        if inspect.isclass(value) and issubclass(value, BaseAlgorithm)
    ]
    if algorithms:
        # a test parametrized over algorithms: only its PPO cases
        return PPO_CLASS in algorithms
    function = getattr(item, "function", None)
    if function is None:
        return False
    try:
        return "PPO" in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if _uses_ppo(item)]
    deselected = [item for item in items if not _uses_ppo(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = kept
