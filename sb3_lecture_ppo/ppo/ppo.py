from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule

from sb3_lecture_ppo.common.distributions import kl_from_params
from sb3_lecture_ppo.common.objectives import (
    OBJECTIVES,
    adapt_kl_coef,
    clipped_surrogate,
    kl_penalized_surrogate,
)
from sb3_lecture_ppo.common.buffers import SegmentRolloutBuffer
from sb3_lecture_ppo.common.on_policy_algorithm import LectureOnPolicyAlgorithm, _check_choice, _check_number, step_mean
from sb3_lecture_ppo.common.policies import distribution_and_values
from sb3_lecture_ppo.ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfLecturePPO = TypeVar("SelfLecturePPO", bound="LecturePPO")

DEFAULT_KL_COEF = 1.0
DEFAULT_KL_TARGET = 0.01


class LecturePPO(LectureOnPolicyAlgorithm):
    """
    Proximal Policy Optimization as taught in the lecture "12강 Actor-Critic: PPO": per-trajectory
    (segment) batching with done masks, separate c1/c2/c3 loss weights, GAE in segment or rollout
    scope, TD / lambda / Monte-Carlo value targets and the clip / no-clip / KL-penalty objectives.
    A drop-in for SB3's ``PPO``.

    :param policy: The policy model to use ("MlpPolicy" is the lecture's actor-critic network,
        "CnnPolicy" the same on a NatureCNN trunk, for images)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate (the lecture's ``lr``), a float or a schedule
    :param n_steps: Steps per env in a rollout; the lecture's ``batch_size`` trajectories of
        ``seq_length`` steps is ``n_steps * n_envs = batch_size * seq_length``
    :param batch_size: Transitions per minibatch (the lecture's ``minibatch_size * seq_length``),
        a multiple of ``seq_length``; ``None`` puts every segment in one minibatch
    :param n_epochs: With ``sampling="epochs"``, full shuffled passes over the rollout (SB3's);
        with ``sampling="random"``, the number of random minibatches (the lecture's ``k_epoch``)
    :param gamma: Discount factor
    :param gae_lambda: GAE lambda (the lecture's ``lam``); 0 gives the one-step TD advantage
    :param seq_length: Length of a segment (the lecture's ``seq_length``); segments never cross
        an episode start, and those an episode end cuts short are padded and masked
    :param advantage_scope: ``"segment"``: the GAE sum stops at the segment end (the lecture);
        ``"rollout"``: it runs over the env's whole rollout (SB3)
    :param recompute_advantage: Recompute TD errors with the current critic in every minibatch
        (segment scope, the lecture) or at the start of every epoch (rollout scope); if False they
        are computed once after the rollout (SB3)
    :param value_target: Critic target: ``"td"`` r + gamma V(s') (Code Ex.1), ``"lambda"`` A + V_old
        (SB3) or ``"mc"`` the discounted reward-to-go, bootstrapped where the data is cut
    :param sampling: ``"epochs"`` (SB3's n_epochs passes) or ``"random"`` (the lecture's k random
        minibatches of whole segments)
    :param objective: ``"clip"``, ``"none"``, ``"kl_fixed"``, ``"kl_adaptive"``, ``"clip_kl_fixed"`` or
        ``"clip_kl_adaptive"`` (see :mod:`sb3_lecture_ppo.common.objectives`)
    :param clip_range: PPO's epsilon (the lecture's ``eps_clip``), a float or a schedule; ``None``
        turns clipping off. The unclipped objectives ignore it
    :param clip_range_vf: Clipping of the value function as in SB3's PPO; ``None`` for none
    :param kl_coef: beta of the KL penalty (the starting beta of the adaptive rule), 1.0 by default;
        only for the KL objectives (a float or, for ``kl_fixed``, a schedule)
    :param kl_target: d_targ of the adaptive KL rule, 0.01 by default; only for the adaptive objectives.
        Not to be confused with ``target_kl``
    :param normalize_advantage: Standardize the advantages of each minibatch over its real steps
    :param vf_coef: c1, weight of the critic loss
    :param pg_coef: c2, weight of the actor loss
    :param ent_coef: c3, weight of the exploration (negative entropy) loss
    :param max_grad_norm: Maximum gradient norm; ``None`` for no clipping (the lecture)
    :param target_kl: SB3's early stop: the epoch loop ends once the approximate KL of a
        minibatch exceeds ``1.5 * target_kl``; ``None`` for no early stop
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
    :param policy_kwargs: additional arguments to the policy (``hidden_size``, ``share_features_extractor``, ...)
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
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int | None = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        seq_length: int = 16,
        advantage_scope: str = "segment",
        recompute_advantage: bool = True,
        value_target: str = "td",
        sampling: str = "epochs",
        objective: str = "clip",
        clip_range: float | Schedule | None = 0.2,
        clip_range_vf: float | Schedule | None = None,
        kl_coef: float | Schedule | None = None,
        kl_target: float | None = None,
        normalize_advantage: bool = True,
        vf_coef: float = 0.5,
        pg_coef: float = 1.0,
        ent_coef: float = 0.0,
        max_grad_norm: float | None = 0.5,
        target_kl: float | None = None,
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
        self.objective = objective
        self.clip_range = clip_range
        self.kl_coef = kl_coef
        self.kl_target = kl_target
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            seq_length=seq_length,
            advantage_scope=advantage_scope,
            recompute_advantage=recompute_advantage,
            value_target=value_target,
            sampling=sampling,
            normalize_advantage=normalize_advantage,
            vf_coef=vf_coef,
            pg_coef=pg_coef,
            ent_coef=ent_coef,
            max_grad_norm=max_grad_norm,
            clip_range_vf=clip_range_vf,
            target_kl=target_kl,
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
            _init_setup_model=False,
        )
        # Current beta of the adaptive rule: carried across rollouts and saved with the model.
        self.adaptive_kl_coef = float(DEFAULT_KL_COEF if kl_coef is None or callable(kl_coef) else kl_coef)
        if _init_setup_model:
            self._setup_model()

    def _check_arguments(self) -> None:
        super()._check_arguments()
        _check_choice("objective", self.objective, tuple(OBJECTIVES))
        spec = OBJECTIVES[self.objective]
        if isinstance(self.clip_range, (int, float)):
            _check_number("clip_range", self.clip_range, minimum=0.0, strict=True, hint="(None turns clipping off)")
        if spec.kl_penalty is None and self.kl_coef is not None:
            raise ValueError(
                f"kl_coef is ignored by objective={self.objective!r}: use a KL objective "
                "('kl_fixed', 'kl_adaptive', 'clip_kl_fixed', 'clip_kl_adaptive') or drop kl_coef."
            )
        if spec.kl_penalty != "adaptive" and self.kl_target is not None:
            raise ValueError(
                f"kl_target is ignored by objective={self.objective!r}: use 'kl_adaptive' or 'clip_kl_adaptive', "
                "or drop kl_target (SB3's early stop is target_kl)."
            )
        if isinstance(self.kl_coef, (int, float)):
            _check_number("kl_coef", self.kl_coef, minimum=0.0)
        elif self.kl_coef is not None and spec.kl_penalty == "adaptive":
            raise TypeError("kl_coef must be a float for the adaptive KL objectives: it is only beta's starting value.")
        if self.kl_target is not None:
            _check_number("kl_target", self.kl_target, minimum=0.0, strict=True)

    def _setup_model(self) -> None:
        super()._setup_model()
        spec = OBJECTIVES[self.objective]
        self.clip_range = FloatSchedule(self.clip_range) if spec.clipped and self.clip_range is not None else None
        if spec.kl_penalty == "fixed":
            self.kl_coef = FloatSchedule(DEFAULT_KL_COEF if self.kl_coef is None else self.kl_coef)
        if spec.kl_penalty == "adaptive" and self.kl_target is None:
            self.kl_target = DEFAULT_KL_TARGET

    def _on_train_start(self) -> None:
        progress = self._current_progress_remaining
        spec = OBJECTIVES[self.objective]
        self._current_clip_range = None if self.clip_range is None else self.clip_range(progress)  # type: ignore[operator]
        if spec.kl_penalty == "fixed":
            self._current_kl_coef = self.kl_coef(progress)  # type: ignore[operator, misc]
        else:
            self._current_kl_coef = self.adaptive_kl_coef

    def _penalizes_kl(self) -> bool:
        return OBJECTIVES[self.objective].kl_penalty is not None

    def _policy_surrogate(self, ratio: th.Tensor, log_prob: th.Tensor, advantages: th.Tensor, kl: th.Tensor) -> th.Tensor:
        surrogate = clipped_surrogate(ratio, advantages, self._current_clip_range)
        if OBJECTIVES[self.objective].kl_penalty is not None:
            surrogate = kl_penalized_surrogate(surrogate, kl, self._current_kl_coef)
        return surrogate

    def _record_minibatch(self, stats: dict[str, list[th.Tensor]], ratio: th.Tensor, weights: th.Tensor | None) -> None:
        if self._current_clip_range is not None:
            stats["clip_fraction"].append(step_mean((th.abs(ratio - 1) > self._current_clip_range).float(), weights))

    def _on_train_end(self) -> None:
        spec = OBJECTIVES[self.objective]
        if self._current_clip_range is not None:
            self.logger.record("train/clip_range", self._current_clip_range)
        if spec.kl_penalty is None:
            return
        if spec.kl_penalty == "adaptive":
            update_kl = self._rollout_kl()
            self.adaptive_kl_coef = adapt_kl_coef(self.adaptive_kl_coef, update_kl, self.kl_target)  # type: ignore[arg-type]
            self.logger.record("train/kl_update", update_kl)
            self.logger.record("train/kl_coef", self.adaptive_kl_coef)
        else:
            self.logger.record("train/kl_coef", self._current_kl_coef)

    def _rollout_kl(self) -> float:
        """d: the mean exact KL[pi_old, pi_new] over the rollout, after the update."""
        buffer = self.rollout_buffer
        with th.no_grad():
            distribution, _ = distribution_and_values(self.policy, buffer.observation_tensor())
            return kl_from_params(buffer.tensor("distribution_params"), distribution).mean().item()

    def learn(
        self: SelfLecturePPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "LecturePPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfLecturePPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
