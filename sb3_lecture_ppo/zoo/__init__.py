"""
RL Zoo integration: ``register()`` adds the lecture's algorithms (``lecture_ppo``, ``lecture_ac``,
``lecture_gae_ac``, ``lecture_mc_pg``) to the zoo. The installed start-up hook calls it when the zoo
is imported; ``python -m sb3_lecture_ppo.zoo train|enjoy ...`` runs the zoo with it done.
"""


def register() -> None:
    """Register the lecture's algorithms, samplers and hyperparameter files with rl_zoo3 now."""
    from sb3_lecture_ppo.zoo.registration import register as register_now

    register_now()


def __getattr__(name: str) -> object:
    if name in ("zoo_algorithms", "hyperparams_file"):
        from sb3_lecture_ppo.zoo import registration

        return getattr(registration, name)
    raise AttributeError(f"module 'sb3_lecture_ppo.zoo' has no attribute {name!r}")


__all__ = ["register"]
