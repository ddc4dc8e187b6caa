"""
The machinery shared by every algorithm of the lecture: rollouts that keep the true next
observation and the old distribution, segment batching, GAE in segment or rollout scope,
the three value targets, the c1/c2/c3 loss and SB3's logging. The algorithms differ only in
their policy objective (:meth:`LectureOnPolicyAlgorithm._policy_surrogate`).
"""

import contextlib
import io
import json
import pathlib
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import open_path
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from sb3_lecture_ppo.common.atari import missing_ale_message, register_ale_envs
from sb3_lecture_ppo.common.buffers import ADVANTAGE_SCOPES, SegmentRolloutBuffer
from sb3_lecture_ppo.common.files import write_bytes_atomically
from sb3_lecture_ppo.common.distributions import (
    ActionTerms,
    SampledActions,
    action_terms,
    distribution_params,
    kl_from_params,
    sample_actions,
)
from sb3_lecture_ppo.common.observations import (
    TensorObs,
    concat_observations,
    copy_observations,
    n_observations,
    set_observation,
    take_observations,
)
from sb3_lecture_ppo.common.policies import (
    LectureActorCriticCnnPolicy,
    LectureActorCriticPolicy,
    LectureMultiInputActorCriticPolicy,
    actor_latent_and_values,
    overrides_sb3_methods,
)
from sb3_lecture_ppo.common.segments import (
    VALUE_TARGETS,
    advantages_and_targets,
    segment_continues,
)
from sb3_lecture_ppo.common.type_aliases import MinibatchSteps, SegmentRolloutBufferSamples

SelfLectureOnPolicyAlgorithm = TypeVar("SelfLectureOnPolicyAlgorithm", bound="LectureOnPolicyAlgorithm")

SAMPLINGS = ("epochs", "random")
SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class LectureOnPolicyAlgorithm(OnPolicyAlgorithm):
    """
    Base of the lecture's algorithms (see :class:`~sb3_lecture_ppo.LecturePPO` for the parameters).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": LectureActorCriticPolicy,
        "CnnPolicy": LectureActorCriticCnnPolicy,
        "MultiInputPolicy": LectureMultiInputActorCriticPolicy,
    }
    rollout_buffer: SegmentRolloutBuffer
    policy: LectureActorCriticPolicy

    def __init__(
        self,
        policy: str | type[LectureActorCriticPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule,
        n_steps: int,
        batch_size: int | None,
        n_epochs: int,
        gamma: float,
        gae_lambda: float,
        seq_length: int,
        advantage_scope: str,
        recompute_advantage: bool,
        value_target: str,
        sampling: str,
        normalize_advantage: bool,
        vf_coef: float,
        pg_coef: float,
        ent_coef: float,
        max_grad_norm: float | None,
        clip_range_vf: float | Schedule | None,
        target_kl: float | None,
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
        _check_env_argument("env", env)
        if isinstance(env, str):
            if (message := missing_ale_message(env)) is not None:
                raise ImportError(message)
            register_ale_envs(env)
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,  # type: ignore[arg-type]
            use_sde=False,  # set below: _check_arguments refuses it on other than Box actions, naming it
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
        )
        self.use_sde = use_sde
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.seq_length = seq_length
        self.advantage_scope = advantage_scope
        self.recompute_advantage = recompute_advantage
        self.value_target = value_target
        self.sampling = sampling
        self.normalize_advantage = normalize_advantage
        self.pg_coef = pg_coef
        self.clip_range_vf = clip_range_vf
        self.target_kl = target_kl
        # Saved with the model: `load` checks it names the loading class.
        self._lecture_algorithm = type(self).__name__
        self._check_arguments()
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ checks
    def _check_arguments(self) -> None:
        """Refuse inconsistent settings at construction, naming the argument and the fix."""
        _check_choice("advantage_scope", self.advantage_scope, ADVANTAGE_SCOPES)
        _check_choice("value_target", self.value_target, VALUE_TARGETS)
        _check_choice("sampling", self.sampling, SAMPLINGS)
        for name in ("vf_coef", "pg_coef", "ent_coef"):
            _check_number(name, getattr(self, name), minimum=0.0)
        if not callable(self.learning_rate):
            _check_number("learning_rate", self.learning_rate, minimum=0.0, strict=True, hint="(or a schedule)")
        _check_number("gamma", self.gamma, minimum=0.0, maximum=1.0)
        _check_number("gae_lambda", self.gae_lambda, minimum=0.0, maximum=1.0)
        if self.max_grad_norm is not None:
            _check_number("max_grad_norm", self.max_grad_norm, minimum=0.0, strict=True, hint="or None to turn it off")
        if self.target_kl is not None:
            _check_number("target_kl", self.target_kl, minimum=0.0, strict=True, hint="or None to turn it off")
        if isinstance(self.clip_range_vf, (int, float)):
            _check_number("clip_range_vf", self.clip_range_vf, minimum=0.0, strict=True, hint="or None to turn it off")
        self._check_rollout_buffer_arguments()
        for name in ("use_sde", "recompute_advantage", "normalize_advantage"):
            _check_bool(name, getattr(self, name))
        if self.use_sde and self.action_space is not None and not isinstance(self.action_space, spaces.Box):
            raise ValueError(
                f"use_sde=True needs a Box action space, not {self.action_space}: gSDE explores continuous actions; "
                "drop use_sde."
            )
        if isinstance(self.sde_sample_freq, bool) or not isinstance(self.sde_sample_freq, (int, np.integer)):
            raise TypeError(f"sde_sample_freq={self.sde_sample_freq!r} must be an integer (-1: only at each rollout start).")
        _check_integer("n_epochs", self.n_epochs)
        _check_integer("n_steps", self.n_steps)
        _check_integer("seq_length", self.seq_length)
        if self.seq_length > self.n_steps:
            raise ValueError(
                f"seq_length={self.seq_length} is longer than n_steps={self.n_steps}: a segment cannot be longer "
                "than a rollout; lower seq_length or raise n_steps."
            )
        if self.batch_size is not None:
            _check_integer("batch_size", self.batch_size)
            if self.batch_size % self.seq_length != 0:
                raise ValueError(
                    f"batch_size={self.batch_size} is not a multiple of seq_length={self.seq_length}: a minibatch holds "
                    f"whole segments; use batch_size={max(1, self.batch_size // self.seq_length) * self.seq_length} "
                    f"(batch_size = segments per minibatch * seq_length)."
                )
            if self.env is not None:
                segments_per_rollout = self.n_envs * -(-self.n_steps // self.seq_length)
                segments_per_batch = self.batch_size // self.seq_length
                if segments_per_rollout < segments_per_batch:
                    raise ValueError(
                        f"A rollout has at least {segments_per_rollout} segments (n_envs={self.n_envs} * "
                        f"ceil(n_steps={self.n_steps} / seq_length={self.seq_length})) but one minibatch needs "
                        f"{segments_per_batch} (batch_size={self.batch_size} / seq_length): lower batch_size or "
                        "raise n_steps or n_envs."
                    )

    def _check_rollout_buffer_arguments(self) -> None:
        if self.rollout_buffer_class is not None and not (
            isinstance(self.rollout_buffer_class, type) and issubclass(self.rollout_buffer_class, SegmentRolloutBuffer)
        ):
            raise TypeError(
                f"rollout_buffer_class={self.rollout_buffer_class!r} is not a SegmentRolloutBuffer: the lecture's "
                "algorithms train on segments; subclass sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer, or drop it."
            )
        given = set(self.rollout_buffer_kwargs or {}) & {"seq_length", "advantage_scope", "value_target"}
        if given:
            raise ValueError(
                f"rollout_buffer_kwargs {sorted(given)} are the algorithm's own arguments: pass them to "
                f"{type(self).__name__}(...) instead."
            )

    @classmethod
    def _wrap_env(cls, env: GymEnv, verbose: int = 0, monitor_wrapper: bool = True) -> VecEnv:  # type: ignore[override]
        """SB3's env wrapping, after refusing the spaces the lecture's algorithms do not support."""
        if isinstance(env.observation_space, spaces.Tuple):
            raise TypeError(
                f"{cls.__name__} does not support the observation space {env.observation_space}: "
                "flatten it with gymnasium.wrappers.FlattenObservation, or make it a Dict space."
            )
        if isinstance(env.observation_space, spaces.Dict):
            _check_dict_subspaces(cls.__name__, env.observation_space)
        if not isinstance(env.action_space, SUPPORTED_ACTION_SPACES):
            raise TypeError(
                f"{cls.__name__} does not support the action space {env.action_space}: "
                f"use one of {[space.__name__ for space in SUPPORTED_ACTION_SPACES]}."
            )
        return super()._wrap_env(env, verbose, monitor_wrapper)

    def _setup_model(self) -> None:
        self.rollout_buffer_class = self.rollout_buffer_class or SegmentRolloutBuffer
        self.rollout_buffer_kwargs = dict(
            self.rollout_buffer_kwargs or {},
            seq_length=self.seq_length,
            advantage_scope=self.advantage_scope,
            value_target=self.value_target,
        )
        self._use_fused_adam()
        super()._setup_model()
        if self.clip_range_vf is not None:
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)
        self._trainable_parameters = [param for param in self.policy.parameters() if param.requires_grad]
        # A user's policy class that overrides SB3's methods is trained through them (slower, but what it says)
        self._through_policy_methods = overrides_sb3_methods(self.policy)

    def _maybe_recommend_cpu(self, mlp_class_name: str = "LectureActorCriticPolicy") -> None:
        """SB3's warning that an MLP policy gains nothing from a GPU, for the lecture's MLP policy."""
        super()._maybe_recommend_cpu(mlp_class_name)

    def _use_fused_adam(self) -> None:
        """
        Adam's fused kernel (one call per step instead of about ten per parameter tensor: the
        largest cost of an update on small networks), unless the policy names another optimizer
        or an Adam implementation. Visible in ``policy_kwargs["optimizer_kwargs"]``.
        """
        optimizer_class = self.policy_kwargs.get("optimizer_class", th.optim.Adam)
        given_kwargs = self.policy_kwargs.get("optimizer_kwargs")
        optimizer_kwargs = dict(given_kwargs or {})
        chosen = {"fused", "foreach", "differentiable"} & optimizer_kwargs.keys()
        if optimizer_class not in (th.optim.Adam, th.optim.AdamW) or chosen or self.device.type not in ("cpu", "cuda"):
            return
        if given_kwargs is None and optimizer_class is th.optim.Adam:
            optimizer_kwargs["eps"] = 1e-5  # SB3's ActorCriticPolicy default, which it only sets without optimizer_kwargs
        self.policy_kwargs = {**self.policy_kwargs, "optimizer_kwargs": {**optimizer_kwargs, "fused": True}}

    # ---------------------------------------------------------------- rollouts
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: SegmentRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect ``n_rollout_steps`` steps per env (as SB3), keeping the true next observation,
        termination apart from truncation, and the behaviour distribution; then cut the rollout
        into segments and compute the advantages and value targets with the rollout's critic.

        :return: True if the rollout is complete, False if a callback stopped it
        """
        with distribution_validation_off():
            return self._collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)

    def _collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: SegmentRolloutBuffer, n_rollout_steps: int
    ) -> bool:
        assert self._last_obs is not None, "No previous observation was provided"
        check_finite(self._last_obs, "observation", self.num_timesteps)
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        for step in range(n_rollout_steps):
            if self.use_sde and self.sde_sample_freq > 0 and step % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)  # a new exploration matrix every sde_sample_freq steps
            with th.no_grad():
                obs_tensor = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
                actions_tensor, log_probs, behaviour_params, values = self._act(obs_tensor)
            actions, env_actions = self._env_actions(actions_tensor)
            new_obs, rewards, dones, infos = self._step_env(env, env_actions)
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._store_step(rollout_buffer, actions, new_obs, rewards, dones, infos, values, log_probs, behaviour_params)

        rollout_buffer.finalize()
        values = rollout_buffer.tensor("values")
        rollout_buffer.compute_advantages(values, rollout_buffer.next_values(values, self._critic_values))
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _env_actions(self, actions: th.Tensor) -> tuple[np.ndarray, Any]:
        """The actions as stored (the action space's shape) and as sent to the env (clipped to Box bounds, or unsquashed)."""
        stored = actions.cpu().numpy().reshape((-1, *(self.action_space.shape or ())))  # type: ignore[union-attr]
        if not isinstance(self.action_space, spaces.Box):
            return stored, stored
        if self.policy.squash_output:
            return stored, self.policy.unscale_action(stored)  # squashed to [-1, 1]: back to the env's bounds
        return stored, np.clip(stored, self.action_space.low, self.action_space.high)

    def _step_env(self, env: VecEnv, env_actions: Any) -> tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """``env.step``, counted, its observations and rewards checked before anything uses them."""
        new_obs, rewards, dones, infos = env.step(env_actions)
        self.num_timesteps += env.num_envs
        check_finite(new_obs, "observation", self.num_timesteps)
        check_finite(rewards, "reward", self.num_timesteps)
        return new_obs, rewards, dones, infos

    def _store_step(
        self,
        rollout_buffer: SegmentRolloutBuffer,
        actions: np.ndarray,
        new_obs: Any,
        rewards: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
        values: th.Tensor,
        log_probs: th.Tensor,
        behaviour_params: th.Tensor,
    ) -> None:
        """Write one step of every env into the buffer (with the true next observation) and move on to ``new_obs``."""
        self._update_info_buffer(infos, dones)
        next_obs, terminated = _true_next_observations(new_obs, dones, infos)
        rollout_buffer.add(
            self._last_obs,  # type: ignore[arg-type]
            actions,
            rewards,
            self._last_episode_starts,  # type: ignore[arg-type]
            values,
            log_probs,
            next_obs=next_obs,
            terminated=terminated,
            done=dones,
            distribution_params=behaviour_params,
        )
        self._last_obs = new_obs
        self._last_episode_starts = dones

    def _act(self, observations: TensorObs) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        The behaviour policy at a rollout step: actions, their log-probabilities, the distribution's
        flat parameters and the values, each ``(n_envs, ...)``.
        """
        if self._through_policy_methods:
            actions, values, log_probs = self.policy(observations)
            params = distribution_params(self.policy.get_distribution(observations))
            return actions, log_probs, params, values.flatten()
        latent_pi, values = actor_latent_and_values(self.policy, observations)
        sampled: SampledActions = sample_actions(self.policy, latent_pi)
        return sampled.actions, sampled.log_prob, sampled.params, values

    def _critic_values(self, observations: TensorObs) -> th.Tensor:
        """V(s) of the current critic for a flat batch of observations, without gradient."""
        with th.no_grad():
            return self.policy.predict_values(observations).flatten()

    # ------------------------------------------------------------------ update
    def _policy_surrogate(self, ratio: th.Tensor, log_prob: th.Tensor, advantages: th.Tensor, kl: th.Tensor) -> th.Tensor:
        """
        Per-step objective of the actor, to be maximized.

        :param ratio: (n_real,) pi / pi_old on the real steps of a minibatch
        :param log_prob: (n_real,) log pi(a|s)
        :param advantages: (n_real,)
        :param kl: (n_real,) exact KL[pi_old, pi]
        """
        raise NotImplementedError

    def _penalizes_kl(self) -> bool:
        """Whether :meth:`_policy_surrogate` uses its ``kl`` argument (which then needs its gradient)."""
        return False

    def _on_train_start(self) -> None:
        """Evaluate this update's schedules (clip range, KL coefficient)."""

    def _on_train_end(self) -> None:
        """Work done once after all epochs of an update (the adaptive KL rule)."""

    def _record_minibatch(self, stats: dict[str, list[th.Tensor]], ratio: th.Tensor, weights: th.Tensor | None) -> None:
        """Algorithm-specific minibatch statistics (PPO's clip fraction); ``weights`` as :func:`step_mean`'s."""

    def _recomputes_segment_advantages(self) -> bool:
        return self.recompute_advantage and self.advantage_scope == "segment"

    def _minibatches(self) -> Iterable[MinibatchSteps]:
        """The minibatches of one epoch: a shuffled pass, or one random draw (the lecture's)."""
        with_segments = self._recomputes_segment_advantages()
        if self.sampling == "epochs":
            return self.rollout_buffer.get_steps(self.batch_size, with_segments)
        batch_size = self.batch_size or self.rollout_buffer.n_segments * self.seq_length
        return [self.rollout_buffer.sample_steps(batch_size, with_segments)]

    def train(self) -> None:
        """
        Update the policy on the rollout: ``n_epochs`` epochs of minibatches of whole segments,
        each minimizing ``vf_coef * critic + pg_coef * actor + ent_coef * (-entropy)``.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self._on_train_start()
        buffer = self.rollout_buffer
        explained_var = explained_variance(buffer.values.flatten(), buffer.returns.flatten())

        stats: dict[str, list[th.Tensor]] = defaultdict(list)
        with distribution_validation_off():
            for epoch in range(self.n_epochs):
                # the rollout's advantages were computed with this very critic: recompute from the second epoch on
                if self.recompute_advantage and self.advantage_scope == "rollout" and epoch > 0:
                    values = self._critic_values(buffer.observation_tensor())
                    buffer.compute_advantages(values, buffer.next_values(values, self._critic_values))
                continue_training = self._train_epoch(epoch, stats)
                self._n_updates += 1
                if not continue_training:
                    break
        self._on_train_end()
        self._log_train(stats, explained_var)

    def _train_epoch(self, epoch: int, stats: dict[str, list[th.Tensor]]) -> bool:
        """
        One epoch of gradient steps; False where ``target_kl`` stopped it. Statistics stay tensors
        until the epoch ends (a host sync per minibatch costs as much as a small layer).
        """
        losses = []
        continue_training = True
        for batch in self._minibatches():
            loss, approx_kl = self._minibatch_loss(batch, stats)
            if self.target_kl is not None and approx_kl.item() > 1.5 * self.target_kl:
                if self.verbose >= 1:
                    print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl.item():.2f}")
                continue_training = False
                break
            self.policy.optimizer.zero_grad()
            loss.backward()
            if self.max_grad_norm is not None:
                clip_grad_norm(self._trainable_parameters, self.max_grad_norm)
            self.policy.optimizer.step()
            losses.append(loss.detach())
        if losses and not th.isfinite(th.stack(losses)).all():
            raise FloatingPointError(
                f"{type(self).__name__}: the loss became NaN or inf in update {self._n_updates}: lower learning_rate, "
                "set max_grad_norm, or look for NaN/inf in the observations and rewards (SB3's VecCheckNan finds them)."
            )
        stats["loss"].extend(losses)
        return continue_training

    def _minibatch_loss(
        self, samples: MinibatchSteps | SegmentRolloutBufferSamples, stats: dict[str, list[th.Tensor]]
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        The total loss of one minibatch of segments, every term a mean over its real steps.
        The networks only ever see real steps: pad steps are dropped by selection before the
        forward pass, so whatever they hold reaches no loss, gradient or statistic.

        :param samples: the minibatch's real steps (or its padded segments, selected here)
        :param stats: receives the minibatch's statistics as 0-d tensors
        :return: the loss and the approximate KL (SB3's, for ``target_kl``), a 0-d tensor
        """
        batch = self._as_steps(samples)
        n_real = batch.old_log_prob.shape[-1]  # (a population's minibatches carry a leading member axis: see below)
        weights = batch.step_weights
        observations = batch.observations
        if batch.segments is not None:
            # V(s') of each segment's last step rides along in the same forward pass (no actor head for it)
            observations = concat_observations(
                observations, batch.segments.last_next_observations, dim=batch.old_log_prob.dim() - 1
            )
        all_values, (log_prob, entropy, kl) = self._evaluate(observations, n_real, batch)
        values = all_values[..., :n_real]

        advantages, value_targets = self._minibatch_advantages(batch, values, all_values[..., n_real:].detach())
        if self.normalize_advantage:
            advantages = normalized_advantages(advantages, weights)

        log_ratio = log_prob - batch.old_log_prob
        ratio = th.exp(log_ratio)
        # Means over the last axis, the minibatch's steps: a population's (members, steps) gives one loss per member.
        policy_loss = -step_mean(self._policy_surrogate(ratio, log_prob, advantages, kl), weights)

        values_pred = values
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
            values_pred = batch.old_values + th.clamp(values - batch.old_values, -clip_range_vf, clip_range_vf)
        value_loss = step_mean((value_targets - values_pred) ** 2, weights)
        entropy_loss = -step_mean(entropy, weights)
        loss = self.vf_coef * value_loss + self.pg_coef * policy_loss + self.ent_coef * entropy_loss

        with th.no_grad():
            approx_kl = step_mean((ratio - 1) - log_ratio, weights)
            stats["policy_gradient_loss"].append(policy_loss.detach())
            stats["value_loss"].append(value_loss.detach())
            stats["entropy_loss"].append(entropy_loss.detach())
            stats["approx_kl"].append(approx_kl)
            stats["kl"].append(step_mean(kl, weights).detach())
            self._record_minibatch(stats, ratio, weights)
        return loss, approx_kl

    def _evaluate(self, observations: TensorObs, n_real: int, batch: MinibatchSteps) -> tuple[th.Tensor, ActionTerms]:
        """
        Values of all ``observations`` and the action terms of the first ``n_real`` (the minibatch's
        steps; the others are only valued). Entropy and exact KL enter the autograd graph only where
        the loss weighs them; else they are statistics.
        """
        if self._through_policy_methods:
            return self._evaluate_through_policy_methods(observations, n_real, batch)
        latent_pi, all_values = actor_latent_and_values(self.policy, observations, actor_rows=n_real)
        terms = action_terms(
            self.policy,
            latent_pi,
            batch.actions,
            batch.old_distribution_params,
            entropy_grad=self.ent_coef > 0,
            kl_grad=self._penalizes_kl(),
        )
        return all_values, terms

    def _evaluate_through_policy_methods(
        self, observations: TensorObs, n_real: int, batch: MinibatchSteps
    ) -> tuple[th.Tensor, ActionTerms]:
        """:meth:`_evaluate` through the policy's ``evaluate_actions`` / ``get_distribution`` / ``predict_values``."""
        step_observations = take_observations(observations, slice(0, n_real))
        actions = batch.actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else batch.actions
        values, log_prob, entropy = self.policy.evaluate_actions(step_observations, actions)
        kl = kl_from_params(batch.old_distribution_params, self.policy.get_distribution(step_observations))
        all_values = values.flatten()
        if n_observations(observations) > n_real:
            extra_values = self.policy.predict_values(take_observations(observations, slice(n_real, None))).flatten()
            all_values = th.cat([all_values, extra_values])
        return all_values, ActionTerms(log_prob, -log_prob if entropy is None else entropy, kl)

    def _as_steps(self, samples: MinibatchSteps | SegmentRolloutBufferSamples) -> MinibatchSteps:
        """Flat real steps, with the segment layout exactly where segment-scope advantages are recomputed."""
        with_segments = self._recomputes_segment_advantages()
        if isinstance(samples, SegmentRolloutBufferSamples):
            return MinibatchSteps.from_segments(samples, with_segments)
        assert (samples.segments is not None) == with_segments, "minibatch built for other advantage settings"
        return samples

    def _minibatch_advantages(
        self,
        samples: MinibatchSteps | SegmentRolloutBufferSamples,
        values: th.Tensor,
        last_next_values: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        Advantages and value targets of the real steps of a minibatch: recomputed with the
        current critic in segment scope with ``recompute_advantage`` (the lecture's Code Ex.1),
        else the buffer's.

        :param values: (n_real,) V(s) of the current critic on the real steps
        :param last_next_values: (n_segments,) V(s') of the current critic at each segment's last
            real step; computed here where not given
        :return: advantages and value targets, both (n_real,)
        """
        batch = self._as_steps(samples)
        if batch.segments is None:
            return batch.advantages, batch.returns
        layout = batch.segments
        mask = layout.mask  # (seq, n_segments); a population's (members, seq, n_segments_max), pad segments all False
        if last_next_values is None or last_next_values.shape[-1] == 0:
            last_next_values = self._critic_values(layout.last_next_observations)
        real = None if batch.step_weights is None else batch.step_weights.bool()
        real_values = values.detach() if real is None else values.detach()[real]  # in the mask's order
        segment_values = th.zeros_like(layout.rewards).masked_scatter(mask, real_values)
        # Inside a segment s'_t is s_{t+1}: its value is the next row's; the segment's last real step takes V(s').
        segment_next_values = th.zeros_like(segment_values)
        segment_next_values[..., :-1, :] = segment_values[..., 1:, :]
        last_real = (mask.sum(dim=-2, keepdim=True) - 1).clamp(min=0)
        segment_next_values.scatter_(-2, last_real, last_next_values.unsqueeze(-2))
        advantages, targets = advantages_and_targets(
            layout.rewards,
            segment_values,
            segment_next_values,
            layout.terminations,
            segment_continues(mask),
            self.gamma,
            self.gae_lambda,
            self.value_target,
            segment_mask=mask,
        )
        if real is None:  # every member's minibatch as many real steps (or one model's): (..., n_real)
            return advantages[mask].reshape(values.shape), targets[mask].reshape(values.shape)
        return _at_real_steps(advantages[mask], real), _at_real_steps(targets[mask], real)

    def _log_train(self, stats: dict[str, list[th.Tensor]], explained_var: float) -> None:
        """Record the mean of every minibatch statistic under ``train/``."""
        for key, values in stats.items():
            if key != "loss" and values:
                self.logger.record(f"train/{key}", th.stack(values).mean().item())
        if stats["loss"]:
            self.logger.record("train/loss", stats["loss"][-1].item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/pad_fraction", self.rollout_buffer.pad_fraction)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    # -------------------------------------------------------------- save/load
    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Iterable[str] | None = None,
        include: Iterable[str] | None = None,
    ) -> None:
        """
        SB3's ``save``; to a path, atomically: the zip is written beside it and renamed over it, so that a process
        killed while saving leaves the previous model or the new one, never a broken file.
        """
        if not isinstance(path, (str, pathlib.Path)):
            super().save(path, exclude, include)
            return
        target = pathlib.Path(path)
        if target.suffix == "":
            target = target.with_name(target.name + ".zip")  # SB3's default suffix
        buffer = io.BytesIO()
        super().save(buffer, exclude, include)
        write_bytes_atomically(target, buffer.getvalue())

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfLectureOnPolicyAlgorithm],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfLectureOnPolicyAlgorithm:
        """
        Load a model saved by this class (SB3's ``load``), refusing other files with a clear message.
        """
        saved_by = _saved_algorithm(path)
        if saved_by != cls.__name__:
            origin = "not saved by sb3_lecture_ppo" if saved_by is None else f"saved by {saved_by}"
            fix = f"load it with {saved_by}.load" if saved_by else "load it with the class that saved it"
            raise ValueError(f"{path!s} is {origin}, not by {cls.__name__}: {fix}.")
        _check_env_argument("env", env)
        if isinstance(env, str):  # as the constructor does (SB3's load takes env objects only)
            env = maybe_make_env(env, verbose=0)
        with _spaces_named("load", "the model in " + str(path)):
            return super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        """SB3's ``set_env``, saying what it got where that is not an env, and naming both spaces where they differ."""
        _check_env_argument("env", env)
        if isinstance(env, str):
            env = maybe_make_env(env, verbose=0)
        with _spaces_named("set_env", "the model"):
            super().set_env(env, force_reset)

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.env is None:
            raise ValueError(
                f"{type(self).__name__}.learn() needs an env: this model has none (loaded without one?); pass env= to "
                "load(), or call set_env(env) first."
            )
        return super()._setup_learn(*args, **kwargs)


def _check_env_argument(argument: str, env: object) -> None:
    """Refuse, in one line, an ``env`` that is neither None, an env id, nor an env (gymnasium's or an SB3 VecEnv)."""
    if env is None or isinstance(env, str) or (hasattr(env, "observation_space") and hasattr(env, "action_space")):
        return
    raise TypeError(
        f"{argument}={env!r} ({type(env).__name__}) is not an environment: pass a gymnasium.Env, an SB3 VecEnv or a "
        "registered env id such as 'CartPole-v1'."
    )


@contextlib.contextmanager
def _spaces_named(entry_point: str, model: str) -> Iterator[None]:
    """SB3's "X spaces do not match: A != B" as one line that says which space is the model's and which the env's."""
    try:
        yield
    except ValueError as error:
        message = str(error)
        kind, separator, spaces_text = message.partition(" spaces do not match: ")
        if not separator or " != " not in spaces_text:
            raise
        model_space, env_space = spaces_text.split(" != ", 1)
        raise ValueError(
            f"{entry_point}: {kind.lower()} spaces do not match: {model} has {model_space}, the env has {env_space}; "
            "use an env with the model's spaces, or train a new model for this env."
        ) from None


@contextlib.contextmanager
def distribution_validation_off() -> Iterator[None]:
    """
    Turn off torch.distributions' argument checks (a support and constraint check at every
    distribution built and every log_prob): the networks' outputs are valid by construction,
    and a NaN loss is caught once per minibatch instead (see ``_train_epoch``).
    """
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


def clip_grad_norm(parameters: list[th.nn.Parameter], max_norm: float) -> None:
    """
    ``torch.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)`` (the same total L2
    norm, the same ``max_norm / (norm + 1e-6)`` factor capped at 1), in three tensor calls:
    torch's wrapper costs twice as much as its maths on a small network.
    """
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if grads:
        total_norm = th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))
        th._foreach_mul_(grads, (max_norm / (total_norm + 1e-6)).clamp(max=1.0))


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown: use one of {', '.join(map(repr, choices))}.")


def _check_number(
    name: str, value: object, minimum: float, maximum: float | None = None, strict: bool = False, hint: str = ""
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise TypeError(f"{name}={value!r} must be a finite number.")
    too_low = value <= minimum if strict else value < minimum
    too_high = maximum is not None and value > maximum
    if too_low or too_high:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        if maximum is not None:
            bound += f" and <= {maximum}"
        raise ValueError(f"{name}={value!r} is out of range: it must be {bound}{' ' + hint if hint else ''}.")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} must be True or False.")


def _check_integer(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer.")


class NonFiniteEnvValueError(ValueError):
    """An env returned NaN or inf in an observation or a reward."""


def check_finite(values: Any, field: str, step: int | None, env_index: int | None = None) -> None:
    """
    Stop, naming the env, the step and the field, where an env's observation (an array, or a dict of them) or
    reward holds NaN or inf: before it reaches the network, the buffer's maths or a saved model. One vectorized
    check per step (integer observations, which cannot hold NaN, are skipped).
    """
    arrays = values.items() if isinstance(values, dict) else [(None, values)]
    for key, array in arrays:
        array = np.asarray(array)
        if array.dtype.kind != "f" or np.isfinite(array).all():
            continue
        if env_index is None:  # the first env (row of the batch) with a non-finite value
            env_index = int(np.flatnonzero((~np.isfinite(array.reshape(len(array), -1))).any(axis=1))[0])
        name = field if key is None else f"{field} {key!r}"
        when = "" if step is None else f" at step {step}"
        raise NonFiniteEnvValueError(
            f"env {env_index} returned a non-finite {name}{when}: fix the env (or wrap it in SB3's VecCheckNan to find "
            "the action that caused it); training stopped before the value reached the network."
        )


def _check_dict_subspaces(algorithm: str, observation_space: spaces.Dict) -> None:
    """Refuse a Dict observation space with a subspace that SB3's ``CombinedExtractor`` cannot flatten."""
    for key, subspace in observation_space.spaces.items():
        if not isinstance(subspace, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary, spaces.Dict)):
            raise TypeError(
                f"{algorithm} does not support the subspace {key!r}: {subspace} of the Dict observation space: "
                "use Box, Discrete, MultiDiscrete or MultiBinary subspaces (flatten the others with a wrapper)."
            )


def _true_next_observations(
    new_obs: np.ndarray | dict[str, np.ndarray], dones: np.ndarray, infos: list[dict[str, Any]]
) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray]:
    """
    The observation each step led to: the VecEnv's ``new_obs``, except where the episode ended,
    where it is the true final observation (SB3's ``terminal_observation``), not the reset one.

    :return: next observations and ``terminated`` (episode end that is not a time-limit truncation)
    """
    next_obs = copy_observations(new_obs)
    terminated = np.zeros(len(dones), dtype=bool)
    for env_index in np.flatnonzero(dones):
        info = infos[env_index]
        if info.get("terminal_observation") is None:
            raise ValueError(
                "The VecEnv ended an episode without info['terminal_observation']: wrap the env in an SB3 VecEnv "
                "(DummyVecEnv / SubprocVecEnv / make_vec_env), which records the true final observation."
            )
        set_observation(next_obs, int(env_index), info["terminal_observation"])
        check_finite(info["terminal_observation"], "terminal observation", None, env_index=int(env_index))
        terminated[env_index] = not info.get("TimeLimit.truncated", False)
    return next_obs, terminated


def _saved_algorithm(path: str | pathlib.Path | io.BufferedIOBase) -> str | None:
    """Name of the lecture algorithm that saved ``path`` (None if none did)."""
    file = open_path(path, "r", verbose=0, suffix="zip")
    position = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            data = json.loads(archive.read("data").decode())
    except zipfile.BadZipFile as error:
        # SB3's wording ("wasn't a zip-file"), which users and SB3's tests match
        raise ValueError(f"{path!s} wasn't a zip-file: it is not a model saved by model.save() ({error}).") from error
    except (KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path!s} is not a model saved by model.save() ({error}).") from error
    finally:
        if isinstance(path, (str, pathlib.Path)):
            file.close()
        else:
            file.seek(position)
    saved_by = data.get("_lecture_algorithm")
    return saved_by if isinstance(saved_by, str) else None


def step_mean(values: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    """The mean over a minibatch's steps (the last axis), weighted where a population's minibatch carries pads."""
    if weights is None:
        return values.mean(dim=-1)
    # a member sitting a minibatch out (all weights 0) gets 0, not 0 / 0
    return (values * weights).sum(dim=-1) / weights.sum(dim=-1).clamp(min=1)


def normalized_advantages(advantages: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    """SB3's advantage normalization over a minibatch's steps (none for a single step), pads weighted out."""
    if weights is None:
        if advantages.shape[-1] <= 1:
            return advantages
        return (advantages - advantages.mean(dim=-1, keepdim=True)) / (advantages.std(dim=-1, keepdim=True) + 1e-8)
    counts = weights.sum(dim=-1, keepdim=True)
    mean = step_mean(advantages, weights).unsqueeze(-1)
    std = (((advantages - mean) ** 2 * weights).sum(dim=-1, keepdim=True) / (counts - 1).clamp(min=1)).sqrt()
    return th.where(counts > 1, (advantages - mean) / (std + 1e-8), advantages)


def _at_real_steps(real_values: th.Tensor, real: th.Tensor) -> th.Tensor:
    """``(members, n_max)`` with the real steps' values where ``real`` and 0 on the pads."""
    padded = th.zeros(real.shape, dtype=real_values.dtype, device=real_values.device)
    padded[real] = real_values
    return padded
