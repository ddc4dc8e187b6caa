"""
Atari envs come from the ALE (``ale-py``, with its ROMs), an extra of this package: a user who asks
for one without it gets one line naming the extra instead of gymnasium's "doesn't exist".
"""

import importlib.util
import re

ATARI_ENV_ID = re.compile(r"^(ALE/.+|.+NoFrameskip-v\d+|.+Deterministic-v\d+)$")
"""Env ids of the ALE: ``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ``BreakoutDeterministic-v4``."""
INSTALL_ATARI = 'pip install "sb3_lecture_ppo[atari]"'


def is_atari_env_id(env_id: str) -> bool:
    return bool(ATARI_ENV_ID.match(env_id))


def register_ale_envs(env_id: str) -> None:
    """Register the ALE's envs with gymnasium (gymnasium 1 no longer does it on its own) where ``env_id`` is one of them."""
    if is_atari_env_id(env_id) and importlib.util.find_spec("ale_py") is not None:
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)


def missing_ale_message(env_id: str) -> str | None:
    """One line saying how to install the ALE where ``env_id`` is an Atari env and ``ale-py`` is missing, else None."""
    if not is_atari_env_id(env_id) or importlib.util.find_spec("ale_py") is not None:
        return None
    return f"{env_id} is an Atari env and ale-py (the ALE and its ROMs) is not installed: {INSTALL_ATARI}"
