"""
Optuna samplers and converters for the zoo's ``-optimize`` and ``--trial-id``.

A sampler draws raw parameters on the trial and returns them converted to model kwargs; the
converter alone rebuilds the same kwargs from a stored trial's ``params``. The draws are
consistent by construction: ``batch_size = segments_per_batch * seq_length`` and
``n_steps >= batch_size``, so a rollout always holds at least one minibatch, whatever ``n_envs``.
"""

import math
from collections.abc import Callable
from typing import Any

import optuna

Sampler = Callable[[optuna.Trial, int, int, dict], dict[str, Any]]

MIN_ROLLOUT_TRANSITIONS = 64  # n_steps * n_envs drawn by the samplers


def _sample_common(trial: optuna.Trial, n_actions: int, n_envs: int, max_n_steps_pow: int) -> None:
    trial.suggest_categorical("seq_length", [8, 16, 32])
    # with one env, 8-step rollouts and 20 epochs waste a trial's time
    min_n_steps_pow = max(3, math.ceil(math.log2(MIN_ROLLOUT_TRANSITIONS / max(n_envs, 1))))
    trial.suggest_int("n_steps_pow", min(min_n_steps_pow, max_n_steps_pow), max_n_steps_pow)
    trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True)
    trial.suggest_float("vf_coef", 0.2, 1.0)
    trial.suggest_float("ent_coef", 1e-8, 0.05, log=True)
    trial.suggest_float("max_grad_norm", 0.3, 2.0)
    _sample_network(trial, n_actions)


def _sample_network(trial: optuna.Trial, n_actions: int) -> None:
    """The whole ``policy_kwargs`` (as the zoo's own samplers, they replace the yml's)."""
    trial.suggest_categorical("hidden_size", [64, 128, 256])
    trial.suggest_categorical("head_layers", [0, 1])
    trial.suggest_categorical("share_features_extractor", [True, False])
    if n_actions > 0:  # the zoo passes the action dimension for Box action spaces only
        trial.suggest_float("log_std_init", -2.0, 0.0)


def sample_lecture_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """LecturePPO: segments, the three coefficients, GAE, gamma, learning rate, objective and network size."""
    _sample_common(trial, n_actions, n_envs, max_n_steps_pow=11)
    trial.suggest_categorical("segments_per_batch", [2, 4, 8, 16])
    trial.suggest_float("one_minus_gae_lambda", 0.001, 0.2, log=True)
    trial.suggest_float("pg_coef", 0.5, 1.0)
    trial.suggest_categorical("n_epochs", [1, 4, 10, 20])
    objective = trial.suggest_categorical("objective", ["clip", "kl_adaptive"])
    if objective == "clip":
        trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3])
    else:
        trial.suggest_categorical("kl_target", [0.003, 0.01, 0.03])
    kwargs = convert_lecture_params(trial.params)
    trial.set_user_attr("n_steps", kwargs["n_steps"])
    trial.set_user_attr("batch_size", kwargs["batch_size"])
    return kwargs


def sample_actor_critic_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """The TD actor-critic (lambda stays 0)."""
    _sample_common(trial, n_actions, n_envs, max_n_steps_pow=7)
    trial.suggest_categorical("normalize_advantage", [False, True])
    return convert_lecture_params(trial.params)


def sample_gae_actor_critic_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """The GAE actor-critic: the actor-critic's parameters and lambda."""
    trial.suggest_float("one_minus_gae_lambda", 0.001, 0.2, log=True)
    return sample_actor_critic_params(trial, n_actions, n_envs, additional_args)


def sample_monte_carlo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """Monte-Carlo policy gradient: the actor-critic's parameters and whether to use the baseline."""
    trial.suggest_categorical("baseline", [True, False])
    return sample_actor_critic_params(trial, n_actions, n_envs, additional_args)


def convert_lecture_params(params: dict[str, Any]) -> dict[str, Any]:
    """Model kwargs from a trial's raw parameters (the zoo's ``HYPERPARAMS_CONVERTER``)."""
    kwargs = dict(params)
    seq_length = kwargs["seq_length"]
    n_steps = 2 ** kwargs.pop("n_steps_pow")
    if "segments_per_batch" in kwargs:
        kwargs["batch_size"] = kwargs.pop("segments_per_batch") * seq_length
        n_steps = max(n_steps, kwargs["batch_size"])
    kwargs["n_steps"] = max(n_steps, seq_length)
    kwargs["gamma"] = 1 - kwargs.pop("one_minus_gamma")
    if "one_minus_gae_lambda" in kwargs:
        kwargs["gae_lambda"] = 1 - kwargs.pop("one_minus_gae_lambda")
    kwargs["policy_kwargs"] = _policy_kwargs(kwargs)
    if kwargs.get("objective") == "clip":
        kwargs["kl_target"] = None  # the entry's KL target (of a KL objective) does not apply to the sampled clip
    return kwargs


def _policy_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the network's raw parameters out of ``kwargs``; trials stored before they were sampled get the defaults."""
    hidden_size = kwargs.pop("hidden_size")
    head_layers = kwargs.pop("head_layers", 1)
    policy_kwargs: dict[str, Any] = dict(
        hidden_size=hidden_size,
        net_arch=dict(pi=[hidden_size] * head_layers, vf=[hidden_size] * head_layers),
        share_features_extractor=kwargs.pop("share_features_extractor", True),
    )
    if "log_std_init" in kwargs:
        policy_kwargs["log_std_init"] = kwargs.pop("log_std_init")
    return policy_kwargs


SAMPLERS: dict[str, Sampler] = {
    "lecture_ppo": sample_lecture_ppo_params,
    "lecture_ac": sample_actor_critic_params,
    "lecture_gae_ac": sample_gae_actor_critic_params,
    "lecture_mc_pg": sample_monte_carlo_params,
}
CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = dict.fromkeys(SAMPLERS, convert_lecture_params)
