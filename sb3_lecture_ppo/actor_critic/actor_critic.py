"""
The lecture's precursors of PPO: the actor-critic of the "Advantage function" slides, the
GAE actor-critic of the "GAE" slides and Monte-Carlo policy gradient (REINFORCE).

All three take one gradient step per rollout on the whole rollout (every segment in one
minibatch, one epoch) on ``c1 * L_critic + c2 * L_actor + c3 * L_exp`` with
``L_actor = -mean(sg(A) * log pi(a|s))``: no importance ratio. The mean over the ``n``
trajectories' steps is the slides' ``eta / n``. They share LecturePPO's buffer, advantage and
target functions, policy and loss.
"""

from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule

from sb3_lecture_ppo.actor_critic.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_lecture_ppo.common.buffers import SegmentRolloutBuffer
from sb3_lecture_ppo.common.objectives import policy_gradient_surrogate
from sb3_lecture_ppo.common.on_policy_algorithm import LectureOnPolicyAlgorithm, _check_bool
from sb3_lecture_ppo.common.type_aliases import MinibatchSteps, SegmentRolloutBufferSamples

SelfLectureActorCritic = TypeVar("SelfLectureActorCritic", bound="LectureActorCritic")


class LectureActorCritic(LectureOnPolicyAlgorithm):
    """
    The actor-critic of the lecture's "Advantage function" slides: ``n`` parallel trajectories of
    length ``L``, ``L_critic = (r + gamma sg(V(s')) - V(s))^2``, ``L_actor = -sg(delta) log pi(a|s)``
    with the one-step TD error ``delta`` (``gae_lambda=0``), ``L_exp = -H(pi(.|s))``, and one step
    ``theta <- theta - eta/n grad L_total`` per rollout.

    :param policy: The policy model to use ("MlpPolicy" is the lecture's actor-critic network,
        "CnnPolicy" the same on a NatureCNN trunk, for images)
    :param env: The environment to learn from (if registered in Gym, can be str); its ``n_envs``
        copies are the slides' ``n`` trajectories
    :param learning_rate: eta, a float or a schedule
    :param n_steps: Steps per env in a rollout (the slides' trajectory length ``L``)
    :param gamma: Discount factor
    :param gae_lambda: 0 for the one-step TD advantage of the slides; other values give GAE
    :param seq_length: Length of a segment; with ``advantage_scope="segment"`` the advantage sum
        stops at the segment end
    :param advantage_scope: ``"segment"`` or ``"rollout"`` (see :class:`~sb3_lecture_ppo.LecturePPO`)
    :param value_target: ``"td"`` (the slides), ``"lambda"`` or ``"mc"``
    :param normalize_advantage: Standardize the advantages of the rollout (off in the slides)
    :param vf_coef: c1, weight of the critic loss
    :param pg_coef: c2, weight of the actor loss
    :param ent_coef: c3, weight of the exploration (negative entropy) loss
    :param max_grad_norm: Maximum gradient norm; ``None`` for no clipping
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE) instead of action
        noise exploration (Box actions only; SB3's semantics)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE;
        -1 only samples at the beginning of each rollout
    :param rollout_buffer_class: Rollout buffer class to use, a
        :class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer` subclass; None for that class
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
        (not ``seq_length``, ``advantage_scope`` or ``value_target``: those are the algorithm's)
    :param stats_window_size: Episodes averaged in the rollout logs
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to the policy (``hidden_size``, ...)
    :param verbose: Verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 16,
        gamma: float = 0.99,
        gae_lambda: float = 0.0,
        seq_length: int = 16,
        advantage_scope: str = "segment",
        value_target: str = "td",
        normalize_advantage: bool = False,
        vf_coef: float = 0.5,
        pg_coef: float = 1.0,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[SegmentRolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=None,
            n_epochs=1,
            gamma=gamma,
            gae_lambda=gae_lambda,
            seq_length=seq_length,
            advantage_scope=advantage_scope,
            # one step per rollout: the rollout's critic is the current critic
            recompute_advantage=False,
            value_target=value_target,
            sampling="epochs",
            normalize_advantage=normalize_advantage,
            vf_coef=vf_coef,
            pg_coef=pg_coef,
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
            clip_range_vf=None,
            target_kl=None,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def _policy_surrogate(self, ratio: th.Tensor, log_prob: th.Tensor, advantages: th.Tensor, kl: th.Tensor) -> th.Tensor:
        return policy_gradient_surrogate(log_prob, advantages)

    def learn(
        self: SelfLectureActorCritic,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfLectureActorCritic:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


class LectureGAEActorCritic(LectureActorCritic):
    """
    The actor-critic of the lecture's "GAE" slides: :class:`LectureActorCritic` with
    ``L_actor = -sg(A_GAE(gamma, lambda)) log pi(a|s)``; ``gae_lambda=0`` is the TD actor-critic.
    All parameters are :class:`LectureActorCritic`'s; only the default ``gae_lambda`` differs.
    """

    def __init__(self, policy: str | type[MlpPolicy], env: GymEnv | str | None, gae_lambda: float = 0.95, **kwargs: Any):
        super().__init__(policy, env, gae_lambda=gae_lambda, **kwargs)


class LectureMonteCarloPG(LectureActorCritic):
    """
    Monte-Carlo policy gradient (the lecture's "Monte-Carlo Policy Gradient" slides, REINFORCE):
    ``grad J ~ E[R(e_t) grad log pi(a_t|s_t)]`` with ``R(e_t) = G_t``, the discounted reward-to-go,
    and with ``baseline=True`` the learned baseline ``A_t = G_t - V(s_t)``.

    Where the data cuts an episode, ``G_t`` cannot be summed to the episode's end: it is
    bootstrapped with the critic, ``G_t = r_t + gamma * V(s'_t)`` at the last step before the cut
    (the end of the rollout, a time-limit truncation, and with ``advantage_scope="segment"`` the
    end of every segment). The critic is therefore always trained on the Monte-Carlo target,
    with or without baseline; with ``advantage_scope="rollout"`` and ``n_steps`` longer than the
    episodes, cuts only happen at the end of each rollout. A terminal step ends ``G_t`` exactly.

    :param baseline: subtract ``V(s_t)`` from the return (``A = G - V``, GAE with lambda = 1)
    :param advantage_scope: ``"rollout"`` (the return runs to the end of the rollout) or ``"segment"``
    :param kwargs: the other parameters of :class:`LectureActorCritic` (not ``gae_lambda`` or
        ``value_target``, which Monte-Carlo fixes to 1 and ``"mc"``)
    """

    def __init__(
        self,
        policy: str | type[MlpPolicy],
        env: GymEnv | str | None,
        baseline: bool = True,
        n_steps: int = 512,
        seq_length: int = 16,
        advantage_scope: str = "rollout",
        **kwargs: Any,
    ):
        for fixed in ("gae_lambda", "value_target"):
            if fixed in kwargs:
                raise TypeError(f"LectureMonteCarloPG fixes {fixed}: drop it (the return is G_t, the critic's target too).")
        _check_bool("baseline", baseline)
        self.baseline = baseline
        super().__init__(
            policy,
            env,
            n_steps=n_steps,
            seq_length=seq_length,
            advantage_scope=advantage_scope,
            gae_lambda=1.0,
            value_target="mc",
            **kwargs,
        )

    def _minibatch_advantages(
        self,
        samples: MinibatchSteps | SegmentRolloutBufferSamples,
        values: th.Tensor,
        last_next_values: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        advantages, returns = super()._minibatch_advantages(samples, values, last_next_values)
        # GAE with lambda = 1 telescopes to G_t - V(s_t); without baseline the advantage is G_t itself
        return (advantages, returns) if self.baseline else (returns, returns)
