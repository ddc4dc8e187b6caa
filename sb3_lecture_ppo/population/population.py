"""
Many LecturePPO runs trained as one population in one process.

On a small network most of a run's CPU time is per-call overhead, not arithmetic. K runs that share a network
shape, an env and a rollout shape share every call here: each parameter is stacked with a leading member
dimension and the networks run once for all members (linear layers as ``torch.baddbmm`` over the stacked weights,
:mod:`sb3_lecture_ppo.population.stacked`; ``torch.func.functional_call`` under ``torch.func.vmap`` for other
policies); one Adam steps the stacked tensors (Adam is elementwise: K independent Adams); gradients are clipped per member.
Each member keeps its own env and VecNormalize statistics, rollout buffer, minibatch draws (its own NumPy random
state), learning-rate schedule, clip range and adaptive KL coefficient.

The maths is the package's: a member's rollout advantages come from its own
:class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer`, its loss from
:meth:`~sb3_lecture_ppo.common.on_policy_algorithm.LectureOnPolicyAlgorithm._minibatch_loss` run with the
member's parameters, and its objective settings enter as tensors: every member runs the clipped surrogate minus
the KL penalty, with epsilon = inf where it does not clip (then ``clip(r) = r``) and beta = 0 where it has no
KL penalty. A member's update equals the update of the same LecturePPO trained alone from the same weights and
data (``tests/test_population.py``).

Two settings train this way: the PPO paper's (one-step segments, advantages over each env's rollout computed once,
minibatches drawn by epochs: every member's minibatches have the same size) and the lecture's (segments cut by
episode ends, advantages recomputed per minibatch), where members' minibatches are ragged: each is padded to the
most the shared settings allow and weighted by its real steps (:func:`stack_minibatches`); drawn by epochs, members
take different numbers of steps, each its own (:class:`MaskedStackedAdam`).
"""

import contextlib
import json
import math
import pickle
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces as gym_spaces
from stable_baselines3.common.callbacks import BaseCallback, ConvertCallback
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn
from torch.func import functional_call, vmap

from sb3_lecture_ppo.common.buffers import STEP_FIELDS, compute_rollout_advantages
from sb3_lecture_ppo.common.distributions import sample_actions
from sb3_lecture_ppo.common.files import write_atomically, write_bytes_atomically
from sb3_lecture_ppo.common.objectives import OBJECTIVES, adapt_kl_coef
from sb3_lecture_ppo.common.on_policy_algorithm import NonFiniteEnvValueError, _true_next_observations, check_finite
from sb3_lecture_ppo.common.policies import actor_latent_and_values
from sb3_lecture_ppo.common.type_aliases import PER_STEP_FIELDS, MinibatchSteps, SegmentLayout
from sb3_lecture_ppo.population.envs import PopulationEnvs, can_vectorize
from sb3_lecture_ppo.population.stacked import FusedGaussianMlpAct, refresh_direct_parameters, stacked_act, stacked_policy
from sb3_lecture_ppo.ppo.ppo import LecturePPO

SHARED_SETTINGS = (
    "n_steps",
    "batch_size",
    "n_epochs",
    "n_envs",
    "seq_length",
    "advantage_scope",
    "recompute_advantage",
    "value_target",
    "sampling",
    "normalize_advantage",
    "vf_coef",
    "pg_coef",
    "ent_coef",
    "gamma",
    "gae_lambda",
    "clip_range_vf",
    "target_kl",
    "use_sde",
    "max_grad_norm",
)
"""Settings every member must share: they change a shape or the code path of an update."""

MANIFEST = "population.json"
CHECKPOINT_FORMAT_VERSION = 1
STATS = ("loss", "approx_kl", "policy_gradient_loss", "value_loss", "entropy_loss", "kl", "clip_fraction")


class PopulationError(ValueError):
    """Members that cannot train as one population, named with the setting that differs."""


class _MemberLoss(nn.Module):
    """``functional_call`` target: the template model's minibatch loss with the parameters it is called with."""

    def __init__(self, template: LecturePPO) -> None:
        super().__init__()
        self.policy = template.policy
        self.template = template

    def forward(self, fields: tuple[th.Tensor, ...], clip_range: th.Tensor, kl_coef: th.Tensor) -> tuple[th.Tensor, ...]:
        batch = MinibatchSteps(**dict(zip(PER_STEP_FIELDS, fields, strict=True)), segments=None)  # the paper setting's
        template = self.template
        saved = template.objective, template._current_clip_range, template._current_kl_coef
        # every member runs the clipped surrogate minus the KL penalty; its epsilon and beta say which it is
        template.objective = "clip_kl_fixed"
        template._current_clip_range = clip_range  # type: ignore[assignment]
        template._current_kl_coef = kl_coef  # type: ignore[assignment]
        try:
            stats: dict[str, list[th.Tensor]] = {name: [] for name in STATS}
            loss, approx_kl = template._minibatch_loss(batch, stats)
        finally:
            template.objective, template._current_clip_range, template._current_kl_coef = saved
        return loss, approx_kl, *(stats[name][-1] for name in STATS[2:])


class _MemberAct(nn.Module):
    """``functional_call`` target: actions, log-probabilities, distribution parameters and values of a batch."""

    def __init__(self, template: LecturePPO) -> None:
        super().__init__()
        self.policy = template.policy

    def forward(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        latent_pi, values = actor_latent_and_values(self.policy, observations)
        sampled = sample_actions(self.policy, latent_pi)
        return sampled.actions, sampled.log_prob, sampled.params, values


class Population:
    """
    K LecturePPO models trained together. Build each member as a LecturePPO (its own env, seed and objective
    settings), then train them as one::

        members = [LecturePPO("MlpPolicy", make_env(), seed=seed, objective=objective, ...) for ...]
        population = Population(members)
        population.learn(1_000_000)
        model = population.member(3)  # an ordinary LecturePPO: save, load, evaluate

    :param members: the models; they must share :data:`SHARED_SETTINGS`, the policy's class and shapes, the
        optimizer and the learning-rate schedule
    :param vectorize_envs: step all members' envs as one and normalize their observations together where every
        member's env is a ``VecNormalize`` over a ``DummyVecEnv`` set up alike (:mod:`sb3_lecture_ppo.population.envs`);
        else (or with False) each member's env steps on its own
    """

    def __init__(self, members: Sequence[LecturePPO], vectorize_envs: bool = True) -> None:
        if not members:
            raise PopulationError("a population needs at least one member")
        self.members = list(members)
        check_shareable(self.members)
        template = self.members[0]
        self.template = template
        self.names = [name for name, _ in template.policy.named_parameters()]
        self.params = {
            name: th.stack([dict(member.policy.named_parameters())[name].detach() for member in self.members]).clone()
            for name in self.names
        }
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        optimizer_kwargs = {
            key: value for key, value in template.policy.optimizer.defaults.items() if key in ("eps", "betas", "weight_decay")
        }
        parameters, learning_rate = list(self.params.values()), float(template.lr_schedule(1.0))
        if template.seq_length > 1 and template.sampling == "epochs":
            # members' rollouts cut into different numbers of segments draw different numbers of minibatches
            self.optimizer: th.optim.Optimizer = MaskedStackedAdam(parameters, self.size, lr=learning_rate, **optimizer_kwargs)
        else:
            self.optimizer = _stacked_adam(parameters, learning_rate, optimizer_kwargs)
        self.random_states = [np.random.RandomState(member.seed) for member in self.members]
        self.callbacks: list[BaseCallback] = []
        self._loss = vmap(self._member_loss, in_dims=(0, 0, 0, 0))
        self._vmapped_act = vmap(self._member_act, in_dims=(0, 0), randomness="different")
        self._stacked_policy = None if template._through_policy_methods else stacked_policy(template.policy, self.params)
        self._fused_act = FusedGaussianMlpAct.build(self._stacked_policy)
        if self._stacked_policy is None and (template.seq_length != 1 or template.sampling != "epochs"):
            raise PopulationError(
                "the lecture's segments and random draws in a population need a policy of linear layers with Box or "
                "Discrete actions (its stacked form); this policy trains under vmap, in the paper setting only "
                "(seq_length=1, sampling='epochs')"
            )
        self._loss_module = _MemberLoss(template)
        self._act_module = _MemberAct(template)
        envs = [member.env for member in self.members]
        self.envs = PopulationEnvs(envs) if vectorize_envs and can_vectorize(envs) else None  # type: ignore[arg-type]

    @property
    def size(self) -> int:
        return len(self.members)

    # ------------------------------------------------------------------ maths through the template
    def _prefixed(self, params: dict[str, th.Tensor]) -> dict[str, th.Tensor]:
        return {f"policy.{name}": value for name, value in params.items()}

    def _member_loss(
        self, params: dict[str, th.Tensor], fields: tuple[th.Tensor, ...], clip_range: th.Tensor, kl_coef: th.Tensor
    ) -> tuple[th.Tensor, ...]:
        return functional_call(self._loss_module, self._prefixed(params), (fields, clip_range, kl_coef))

    def _act(self, observations: th.Tensor) -> tuple[th.Tensor, ...]:
        """Every member's rollout step at once: through the stacked policy where it covers the policy, else ``vmap``."""
        if self._fused_act is not None:
            return self._fused_act(observations)
        if self._stacked_policy is not None:
            return stacked_act(self._stacked_policy, observations)
        return self._vmapped_act(self._detached_params(), observations)

    def _member_act(self, params: dict[str, th.Tensor], observations: th.Tensor) -> tuple[th.Tensor, ...]:
        return functional_call(self._act_module, self._prefixed(params), (observations,))

    # ------------------------------------------------------------------ training
    def learn(
        self,
        total_timesteps: int,
        reset_num_timesteps: bool = True,
        checkpoint: str | Path | None = None,
        callbacks: Sequence[MaybeCallback] | None = None,
        after_update: Callable[["Population"], None] | None = None,
    ) -> "Population":
        """
        Train every member until it has ``total_timesteps`` env steps, as ``LecturePPO.learn`` would.

        :param reset_num_timesteps: False continues a loaded population's count (and its schedules)
        :param checkpoint: a folder to save the whole population into after every update (:meth:`save`):
            a population interrupted at any moment resumes from the last update with :meth:`load`
        :param callbacks: one SB3 callback (or list, or None) per member, called as ``learn`` calls it: at the
            training's and each rollout's start and end, and after every env step (an ``EvalCallback`` evaluates
            the member's current weights with its current observation statistics). A callback that asks to stop
            raises :class:`PopulationError`: members train to one budget.
        :param after_update: called with the population after every update (e.g. to checkpoint less often)
        """
        if callbacks is not None and len(callbacks) != self.size:
            raise PopulationError(f"callbacks: one per member ({self.size}), got {len(callbacks)}")
        self.callbacks = [
            member._setup_learn(
                total_timesteps,
                callback=None if callbacks is None else callbacks[index],
                reset_num_timesteps=reset_num_timesteps,
                tb_log_name="Population",
            )[1]
            for index, member in enumerate(self.members)
        ]
        for callback in self.callbacks:
            callback.on_training_start(locals(), globals())
        while self.members[0].num_timesteps < total_timesteps:
            self.collect_rollouts()
            for member in self.members:
                member._update_current_progress_remaining(member.num_timesteps, total_timesteps)
            self.train()
            if checkpoint is not None:
                self.save(checkpoint)
            if after_update is not None:
                after_update(self)
        self.sync_members()
        for callback in self.callbacks:
            callback.on_training_end()
        return self

    def collect_rollouts(self) -> None:
        """One rollout of ``n_steps`` per env for every member, actions from one batched forward pass."""
        callbacks = self._member_callbacks()
        self.sync_members()  # the callbacks and the bootstrap values see each member's current weights
        if self._fused_act is not None:
            self._fused_act.refresh()  # the weights as the last update left them
        for index, (member, callback) in enumerate(zip(self.members, callbacks, strict=True)):
            member.policy.set_training_mode(False)
            member.rollout_buffer.reset()
            with naming_member(index):
                check_finite(member._last_obs, "observation", member.num_timesteps)
            callback.on_rollout_start()
        if self.envs is not None:
            self._collect_stacked(self.envs, callbacks)
        else:
            self._collect_member_by_member(callbacks)
        # each member's critic (synced above; no update since) computes its bootstrap values; the advantages of all
        # members are one sum over their envs side by side
        buffers = [member.rollout_buffer for member in self.members]
        values, next_values = [], []
        for member, buffer in zip(self.members, buffers, strict=True):
            buffer.finalize()
            values.append(buffer.tensor("values"))
            next_values.append(buffer.next_values(values[-1], member._critic_values))
        if self.template.advantage_scope == "rollout":
            compute_rollout_advantages(buffers, values, next_values)
        else:
            for buffer, buffer_values, buffer_next_values in zip(buffers, values, next_values, strict=True):
                buffer.compute_advantages(buffer_values, buffer_next_values)
        for callback in callbacks:
            callback.on_rollout_end()

    def _member_callbacks(self) -> list[BaseCallback]:
        """The members' callbacks of the current ``learn`` (SB3's no-op callback outside ``learn``)."""
        if len(self.callbacks) != self.size:
            self.callbacks = [ConvertCallback(None) for _ in self.members]
            for callback, member in zip(self.callbacks, self.members, strict=True):
                callback.init_callback(member)
        return self.callbacks

    @staticmethod
    def _step_callbacks(callbacks: Sequence[BaseCallback]) -> None:
        for index, callback in enumerate(callbacks):
            if not callback.on_step():
                raise PopulationError(
                    f"member {index}'s callback asked to stop training: a population trains every member to the same "
                    "budget (train that member alone to stop it early)"
                )

    def _collect_member_by_member(self, callbacks: Sequence[BaseCallback]) -> None:
        """The rollout where the envs step member by member: each member's step stored by its own code."""
        for _ in range(self.template.n_steps):
            observations = th.stack([th.as_tensor(member._last_obs, device=member.device) for member in self.members])
            with th.no_grad():
                actions, log_probs, behaviour_params, values = self._act(observations)
            stored, env_actions = zip(
                *(member._env_actions(actions[index]) for index, member in enumerate(self.members)), strict=True
            )
            steps = self._step_envs(env_actions)
            self._step_callbacks(callbacks)
            for index, member in enumerate(self.members):
                with naming_member(index):
                    member._store_step(
                        member.rollout_buffer,
                        stored[index],
                        *steps[index],
                        values[index],
                        log_probs[index],
                        behaviour_params[index],
                    )

    def _collect_stacked(self, envs: PopulationEnvs, callbacks: Sequence[BaseCallback]) -> None:
        """
        The rollout where all members' envs step as one: every array of a step handled once for all members (the
        actions, the finite checks, the buffer writes); the steps that end an episode go member by member through
        the package's own code (true final observation, episode records). Each member's buffer receives its slices
        at the rollout's end, the same arrays its own ``_store_step`` calls would have written.
        """
        members, template = self.members, self.template
        n_envs = template.n_envs
        rollout = _StackedRollout(template.rollout_buffer, self.size)
        last_obs = np.stack([np.asarray(member._last_obs) for member in members])  # (K, n_envs, *obs_shape)
        last_starts = np.stack([np.asarray(member._last_episode_starts) for member in members])
        envs.load()
        for step in range(template.n_steps):
            with th.no_grad():
                actions, log_probs, behaviour_params, values = self._act(th.as_tensor(last_obs))
            stored, env_actions = template._env_actions(actions.reshape(self.size * n_envs, *actions.shape[2:]))
            new_obs, rewards, dones, infos = envs.step_stacked(env_actions)
            for member in members:
                member.num_timesteps += n_envs
            self._check_finite_stacked(new_obs, "observation")
            self._check_finite_stacked(rewards, "reward")
            self._step_callbacks(callbacks)
            next_obs = new_obs.copy()
            terminated = np.zeros(dones.shape, dtype=bool)
            for ended in np.flatnonzero(dones.any(axis=1)):
                member_infos = infos[ended * n_envs : (ended + 1) * n_envs]
                members[ended]._update_info_buffer(member_infos, dones[ended])
                with naming_member(int(ended)):
                    next_obs[ended], terminated[ended] = _true_next_observations(new_obs[ended], dones[ended], member_infos)
            rollout.add(
                step, last_obs, stored, rewards, last_starts, values, log_probs, next_obs, terminated, dones, behaviour_params
            )
            last_obs, last_starts = new_obs, dones
        envs.store()
        for index, member in enumerate(members):
            member._last_obs = last_obs[index]
            member._last_episode_starts = last_starts[index]
            rollout.fill(index, member.rollout_buffer)

    def _check_finite_stacked(self, values: np.ndarray, field: str) -> None:
        """One check for all members; where it fails, the member's own check names the member, its env and step."""
        if np.isfinite(values).all():
            return
        for index, member in enumerate(self.members):
            with naming_member(index):
                check_finite(values[index], field, member.num_timesteps)

    def _step_envs(self, env_actions: Sequence[Any]) -> list[tuple[Any, np.ndarray, np.ndarray, list[dict[str, Any]]]]:
        """Every member's env step, member by member (the stacked rollout steps them as one: :meth:`_collect_stacked`)."""
        steps = []
        for index, (member, actions) in enumerate(zip(self.members, env_actions, strict=True)):
            with naming_member(index):
                steps.append(member._step_env(member.env, actions))  # type: ignore[arg-type]
        return steps

    def _detached_params(self) -> dict[str, th.Tensor]:
        return {name: tensor.detach() for name, tensor in self.params.items()}

    def train(self) -> dict[str, np.ndarray]:
        """
        One update of every member on its rollout: ``n_epochs`` epochs of minibatches, each member drawing its own.

        :return: each statistic of the update (mean over minibatches), one value per member
        """
        template = self.template
        for member in self.members:
            member._on_train_start()
        template._update_learning_rate(self.optimizer)
        clip_ranges, kl_coefs = self._objective_tensors()
        stats: list[tuple[th.Tensor, ...]] = []
        taking_part: list[th.Tensor] = []
        for batch in self._stacked_minibatches():
            loss, *statistics = self._minibatch_losses(batch, clip_ranges, kl_coefs)
            self.optimizer.zero_grad()
            loss.sum().backward()  # members share no parameter: each gets the gradient of its own loss
            if template.max_grad_norm is not None:
                clip_grad_norm_per_member(list(self.params.values()), template.max_grad_norm)
            active = th.ones(self.size, dtype=th.bool) if batch.step_weights is None else batch.step_weights.sum(dim=-1) > 0
            if isinstance(self.optimizer, MaskedStackedAdam):
                self.optimizer.step(active)  # a member whose epoch has no minibatch left takes no step
            else:
                self.optimizer.step()
            stats.append((loss.detach(), *(value.detach() for value in statistics)))
            taking_part.append(active)
        for member in self.members:
            member._n_updates += template.n_epochs
        if not th.isfinite(th.stack([step[0] for step in stats])).all():
            raise FloatingPointError("Population: a member's loss became NaN or inf: lower learning_rate or set max_grad_norm")
        self._adapt_kl_coefs()
        weights = th.stack(taking_part).float()  # (minibatches, K): the means over each member's own minibatches
        return {
            name: ((th.stack([step[index] for step in stats]) * weights).sum(dim=0) / weights.sum(dim=0)).numpy()
            for index, name in enumerate(STATS)
        }

    def _minibatch_losses(self, batch: MinibatchSteps, clip_ranges: th.Tensor, kl_coefs: th.Tensor) -> tuple[th.Tensor, ...]:
        """
        Every member's loss and statistics on its minibatch, ``(K,)`` each: the package's minibatch loss run once on
        ``(K, batch, ...)`` fields through the stacked layers (its means are over the last axis), or under ``vmap``
        where the stacked layers do not cover the policy.
        """
        if self._stacked_policy is None:  # the paper setting only (the constructor refuses the others)
            return self._loss(self.params, tuple(getattr(batch, name) for name in PER_STEP_FIELDS), clip_ranges, kl_coefs)
        refresh_direct_parameters(self._stacked_policy)
        template = self.template
        saved = template.policy, template.objective, template._current_clip_range, template._current_kl_coef
        template.policy = self._stacked_policy  # type: ignore[assignment]
        template.objective = "clip_kl_fixed"  # with each member's epsilon and beta, as in _MemberLoss
        template._current_clip_range = clip_ranges[:, None]  # type: ignore[assignment]  # (K, 1): over each batch
        template._current_kl_coef = kl_coefs[:, None]  # type: ignore[assignment]
        try:
            stats: dict[str, list[th.Tensor]] = {name: [] for name in STATS}
            loss, approx_kl = template._minibatch_loss(batch, stats)
        finally:
            template.policy, template.objective, template._current_clip_range, template._current_kl_coef = saved
        return loss, approx_kl, *(stats[name][-1] for name in STATS[2:])

    def _objective_tensors(self) -> tuple[th.Tensor, th.Tensor]:
        """Per member: epsilon (inf where it does not clip) and beta (0 where it has no KL penalty), this update's."""
        clip_ranges, kl_coefs = [], []
        for member in self.members:
            spec = OBJECTIVES[member.objective]
            clip_ranges.append(math.inf if member._current_clip_range is None else float(member._current_clip_range))
            kl_coefs.append(0.0 if spec.kl_penalty is None else float(member._current_kl_coef))
        return th.tensor(clip_ranges), th.tensor(kl_coefs)

    def _stacked_minibatches(self) -> Iterator[MinibatchSteps]:
        """
        Every epoch's minibatches of the update, member k's drawn with member k's random state, stacked as
        ``(K, batch, ...)``. In the paper setting (one-step segments drawn by epochs) each field is stacked once per
        update and gathered once per epoch for all members (the same draws and steps as each member's own
        ``get_steps``); else each member draws its own minibatch and they are stacked, ragged ones padded
        (:func:`stack_minibatches`).
        """
        rollout = self._stacked_rollout_fields()
        for _ in range(self.template.n_epochs):
            if rollout is None:
                yield from self._member_minibatches()
                continue
            orders = [
                member.rollout_buffer.step_order(member.batch_size, random_state)
                for member, random_state in zip(self.members, self.random_states, strict=True)
            ]
            sizes = {tuple(size) for _, size in orders}
            if len(sizes) != 1:
                raise PopulationError(f"members drew {sorted(sizes)} minibatch sizes: the population needs equal ones")
            steps = th.stack([order for order, _ in orders])  # (K, n_steps * n_envs) in minibatch order
            members = th.arange(self.size, device=steps.device).unsqueeze(1)
            split = [th.split(field[members, steps], list(orders[0][1]), dim=1) for field in rollout]
            for fields in zip(*split, strict=True):
                yield MinibatchSteps(**dict(zip(PER_STEP_FIELDS, fields, strict=True)), segments=None)

    def _stacked_rollout_fields(self) -> list[th.Tensor] | None:
        """Each minibatch field of every member's whole rollout as ``(K, n_steps * n_envs, ...)``, where that applies."""
        template = self.template
        if template.sampling != "epochs" or template.seq_length != 1 or template._recomputes_segment_advantages():
            return None  # minibatches of segments, or with their segment layouts: member by member
        return [
            th.stack([member.rollout_buffer._gather(name, slice(None)) for member in self.members])  # type: ignore[misc]
            for name in STEP_FIELDS.values()
        ]

    def _member_minibatches(self) -> Iterator[MinibatchSteps]:
        """One epoch's minibatches drawn member by member (the lecture's random draws and segments)."""
        per_member = []
        for index, member in enumerate(self.members):
            with _numpy_random_state(self.random_states[index]):
                per_member.append(list(member._minibatches()))
        counts = [len(batches) for batches in per_member]
        if len(set(counts)) != 1 and not isinstance(self.optimizer, MaskedStackedAdam):
            raise PopulationError(f"members drew {sorted(set(counts))} minibatches: the population needs equal counts")
        template = self.template
        all_steps = template.n_steps * template.n_envs
        rows = template.batch_size or all_steps  # the most real steps one member's minibatch can hold
        columns = rows // template.seq_length if template.batch_size else all_steps  # and the most segments
        for index in range(max(counts)):
            # a member with fewer minibatches this epoch sits the rest out: a copy of its last one, weighted 0
            active = [index < count for count in counts]
            batches = [batches[min(index, len(batches) - 1)] for batches in per_member]
            yield stack_minibatches(batches, rows, columns, weighted=template.seq_length > 1, active=active)

    def _adapt_kl_coefs(self) -> None:
        """The paper's adaptive beta of each member whose objective has it, from the update's mean exact KL."""
        adaptive = [member for member in self.members if OBJECTIVES[member.objective].kl_penalty == "adaptive"]
        if not adaptive:
            return
        self.sync_members()
        for member in adaptive:
            member.adaptive_kl_coef = adapt_kl_coef(member.adaptive_kl_coef, member._rollout_kl(), member.kl_target)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ members
    def sync_members(self) -> None:
        """Copy each member's slice of the stacked parameters into its own policy."""
        with th.no_grad():
            for index, member in enumerate(self.members):
                for name, parameter in member.policy.named_parameters():
                    parameter.copy_(self.params[name][index])

    def member(self, index: int) -> LecturePPO:
        """Member ``index`` as an ordinary LecturePPO (its weights, Adam state and env's statistics)."""
        self.sync_members()
        model = self.members[index]
        state = self.optimizer.state
        member_params = dict(model.policy.named_parameters())
        for name, stacked in self.params.items():
            if stacked in state:
                target = model.policy.optimizer.state[member_params[name]]
                for key, value in state[stacked].items():
                    target[key] = value.clone() if key == "step" and value.dim() == 0 else value[index].clone()
        return model

    # ------------------------------------------------------------------ checkpoints
    def save(self, folder: str | Path, extra_files: dict[str, bytes] | None = None) -> None:
        """
        Save every member (model, Adam state, VecNormalize statistics) and the population's own state into a new
        subfolder, then point ``folder/population.json`` at it in one atomic rename: a process killed while saving
        leaves the previous checkpoint whole. Older subfolders are removed after.

        :param extra_files: more files (name to content) of the same checkpoint, read back with
            :meth:`checkpoint_files`
        """
        folder = Path(folder)
        step = self.members[0].num_timesteps
        target = folder / f"step_{step:012d}"
        for index in range(self.size):
            model = self.member(index)
            model.save(target / f"member_{index}.zip")
            if isinstance(model.env, VecNormalize):
                # VecNormalize pickles its statistics, not its envs
                write_bytes_atomically(target / f"member_{index}_vecnormalize.pkl", pickle.dumps(model.env))
        state = {"random_states": [random.get_state() for random in self.random_states]}
        write_bytes_atomically(target / "population.pkl", pickle.dumps(state))
        for name, content in (extra_files or {}).items():
            write_bytes_atomically(target / name, content)
        manifest = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "members": self.size,
            "num_timesteps": step,
            "folder": target.name,
        }
        write_atomically(folder / MANIFEST, lambda file: json.dump(manifest, file, indent=1))
        for old in folder.glob("step_*"):
            if old.name != target.name:
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def checkpoint_files(folder: str | Path) -> Path:
        """The subfolder of the checkpoint ``folder/population.json`` points at (where ``extra_files`` are)."""
        folder = Path(folder)
        return folder / _read_manifest(folder)["folder"]

    @classmethod
    def load(
        cls,
        folder: str | Path,
        make_env: Callable[[int], VecEnv],
        device: str = "cpu",
        members: Sequence[int] | None = None,
    ) -> "Population":
        """
        The population saved in ``folder`` by :meth:`save`, each member on a fresh env from ``make_env(index)``
        (wrapped in the member's saved VecNormalize statistics where it had them); continue with
        ``learn(total_timesteps, reset_num_timesteps=False)``.

        :param members: the saved members to load, in this order, as a population of their own (default: all);
            ``make_env`` gets each one's position in this list. Each member's update depends on its own data
            only, so a part continues each member's training (with its own action noise from then on, as any
            resume on fresh envs does).
        """
        folder = Path(folder)
        manifest = _read_manifest(folder)
        target = folder / manifest["folder"]
        indices = list(range(manifest["members"])) if members is None else list(members)
        unknown = [index for index in indices if not 0 <= index < manifest["members"]]
        if unknown or len(set(indices)) < len(indices):
            raise PopulationError(
                f"members={list(members or [])} must be distinct indices below {manifest['members']}, the size of the "
                f"population saved in {folder}"
            )
        loaded = []
        for position, index in enumerate(indices):
            env = make_env(position)
            statistics = target / f"member_{index}_vecnormalize.pkl"
            if statistics.exists():
                env = VecNormalize.load(str(statistics), env)
            loaded.append(LecturePPO.load(target / f"member_{index}.zip", env=env, device=device))
        population = cls(loaded)
        population._restore_optimizer_state()
        saved_states = pickle.loads((target / "population.pkl").read_bytes())["random_states"]
        for random_state, index in zip(population.random_states, indices, strict=True):
            random_state.set_state(saved_states[index])
        return population

    def _restore_optimizer_state(self) -> None:
        """Stack the members' own Adam states (loaded with them) into the population's optimizer."""
        member_states = [member.policy.optimizer.state for member in self.members]
        for name, stacked in self.params.items():
            entries = [
                state.get(dict(m.policy.named_parameters())[name])
                for state, m in zip(member_states, self.members, strict=True)
            ]
            per_member = [entry for entry in entries if entry is not None]
            if len(per_member) < len(entries):
                return  # a member that never trained: fresh Adam for all, as each would have
            shared_step = not isinstance(self.optimizer, MaskedStackedAdam)  # else each member's own step count
            self.optimizer.state[stacked] = {
                key: per_member[0][key].clone()
                if key == "step" and shared_step
                else th.stack([entry[key] for entry in per_member])
                for key in per_member[0]
            }


class _StackedRollout:
    """
    One rollout of every member as ``(n_steps, K, n_envs, ...)`` arrays, written once per step for all members, with
    the dtypes and shapes of :class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer`; :meth:`fill` hands member
    k its slices.
    """

    def __init__(self, like: Any, n_members: int) -> None:
        self.n_steps = like.buffer_size
        lead = (like.buffer_size, n_members, like.n_envs)
        self.observations = np.zeros(lead + like.observations.shape[2:], dtype=like.observations.dtype)
        self.next_observations = np.zeros(lead + like.next_observations.shape[2:], dtype=like.next_observations.dtype)
        self.actions = np.zeros(lead + like.actions.shape[2:], dtype=like.actions.dtype)
        self.distribution_params = np.zeros(lead + like.distribution_params.shape[2:], dtype=np.float32)
        self.rewards, self.episode_starts, self.values, self.log_probs = (np.zeros(lead, dtype=np.float32) for _ in range(4))
        self.terminations, self.dones = np.zeros(lead, dtype=bool), np.zeros(lead, dtype=bool)

    def add(
        self,
        step: int,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        episode_starts: np.ndarray,
        values: th.Tensor,
        log_probs: th.Tensor,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        dones: np.ndarray,
        distribution_params: th.Tensor,
    ) -> None:
        self.observations[step] = obs
        self.actions[step] = actions.reshape(self.actions.shape[1:])
        self.rewards[step] = rewards
        self.episode_starts[step] = episode_starts
        self.values[step] = values.numpy().reshape(self.values.shape[1:])
        self.log_probs[step] = log_probs.numpy().reshape(self.log_probs.shape[1:])
        self.next_observations[step] = next_obs
        self.terminations[step] = terminated
        self.dones[step] = dones
        self.distribution_params[step] = distribution_params.numpy().reshape(self.distribution_params.shape[1:])

    def fill(self, member: int, buffer: Any) -> None:
        """Member ``member``'s slices into its (reset) buffer, which is then full."""
        for name in FIELDS_OF_A_STEP:
            getattr(buffer, name)[:] = getattr(self, name)[:, member]
        buffer.pos, buffer.full = self.n_steps, True


FIELDS_OF_A_STEP = (
    "observations",
    "actions",
    "rewards",
    "episode_starts",
    "values",
    "log_probs",
    "next_observations",
    "terminations",
    "dones",
    "distribution_params",
)
"""The arrays of a :class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer` that a rollout step writes."""


def stack_minibatches(
    batches: Sequence[MinibatchSteps], rows: int, columns: int, weighted: bool, active: Sequence[bool] | None = None
) -> MinibatchSteps:
    """
    The members' minibatches as one with a leading member axis, each padded to ``rows`` steps with copies of its
    first step, weighted out by ``step_weights`` (so every mean is over the member's own steps), and its segment
    layout to ``columns`` segments with empty ones (mask all False, reward 0), whose values nothing reads. The
    sizes come from the shared settings, never from the other members' data: a member's update does not depend on
    theirs, bit for bit.

    :param weighted: weigh the means even where no member needs pads (as the settings allow them)
    :param active: per member, False where its minibatch only fills the shape: all its steps weigh 0 and its
        segments are empty (its loss and gradient are 0)
    """
    active = [True] * len(batches) if active is None else list(active)
    sizes = [len(batch.old_log_prob) if taking_part else 0 for batch, taking_part in zip(batches, active, strict=True)]

    def padded_rows(tensor: th.Tensor, total: int) -> th.Tensor:
        if len(tensor) == total:
            return tensor
        return th.cat([tensor, tensor[:1].expand(total - len(tensor), *tensor.shape[1:])])

    fields = {name: th.stack([padded_rows(getattr(batch, name), rows) for batch in batches]) for name in PER_STEP_FIELDS}
    weights = None
    if weighted or not all(active) or any(size != rows for size in sizes):
        weights = th.stack([(th.arange(rows) < size).to(batches[0].old_log_prob.dtype) for size in sizes])
    layouts = [batch.segments for batch in batches]
    if any(layout is None for layout in layouts):
        return MinibatchSteps(**fields, segments=None, step_weights=weights)

    def padded_columns(tensor: th.Tensor) -> th.Tensor:
        pad = th.zeros((tensor.shape[0], columns - tensor.shape[1]), dtype=tensor.dtype, device=tensor.device)
        return th.cat([tensor, pad], dim=1)

    segments = SegmentLayout(
        mask=th.stack(
            [padded_columns(layout.mask) & taking_part for layout, taking_part in zip(layouts, active, strict=True)]  # type: ignore[union-attr]
        ),
        rewards=th.stack([padded_columns(layout.rewards) for layout in layouts]),  # type: ignore[union-attr]
        terminations=th.stack([padded_columns(layout.terminations) for layout in layouts]),  # type: ignore[union-attr]
        last_next_observations=th.stack(
            [padded_rows(layout.last_next_observations, columns) for layout in layouts]  # type: ignore[union-attr, arg-type]
        ),
    )
    return MinibatchSteps(**fields, segments=segments, step_weights=weights)


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise PopulationError(f"{folder} holds no population checkpoint ({error})") from None
    if manifest.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise PopulationError(
            f"{folder / MANIFEST} is checkpoint format {manifest.get('format_version')}, this version reads "
            f"format {CHECKPOINT_FORMAT_VERSION}"
        )
    return manifest


def _stacked_adam(parameters: list[th.Tensor], learning_rate: float, settings: dict[str, Any]) -> th.optim.Adam:
    """
    Adam over the stacked tensors: torch's fused kernel (one pass per tensor; 4x faster than ``foreach`` here), or
    ``foreach`` where this torch has no fused CPU Adam. Each element's update is Adam's arithmetic either way (to
    float rounding: the members alone use torch's per-tensor loop).
    """
    try:
        return th.optim.Adam(parameters, lr=learning_rate, fused=True, **settings)
    except RuntimeError:
        return th.optim.Adam(parameters, lr=learning_rate, foreach=True, **settings)


class MaskedStackedAdam(th.optim.Optimizer):
    """
    Adam over stacked ``(K, ...)`` tensors whose members may sit a step out: each member has its own step count
    (Adam's bias corrections), and :meth:`step` leaves a member that is not ``active`` untouched (parameters,
    moments, count). The same arithmetic as torch's Adam for each member that steps (to float rounding), for members
    that take different numbers of steps (the lecture's segments drawn by epochs).
    """

    def __init__(
        self,
        params: list[th.Tensor],
        n_members: int,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.n_members = n_members

    @th.no_grad()
    def step(self, active: th.Tensor | None = None) -> None:  # type: ignore[override]
        """One Adam step of every member where ``active`` (``(K,)`` bool; None: all)."""
        stepping = th.ones(self.n_members, dtype=th.bool) if active is None else active
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = th.zeros(self.n_members)
                    state["exp_avg"] = th.zeros_like(param)
                    state["exp_avg_sq"] = th.zeros_like(param)
                shape = (self.n_members,) + (1,) * (param.dim() - 1)
                mask = stepping.reshape(shape)
                grad = param.grad if group["weight_decay"] == 0 else param.grad.add(param, alpha=group["weight_decay"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.copy_(th.where(mask, exp_avg.lerp(grad, 1 - beta1), exp_avg))
                exp_avg_sq.copy_(th.where(mask, exp_avg_sq * beta2 + (1 - beta2) * grad * grad, exp_avg_sq))
                state["step"] = state["step"] + stepping.to(state["step"].dtype)
                steps = state["step"].clamp(min=1).reshape(shape)  # a member yet to step is left as it is below
                step_size = group["lr"] / (1 - beta1**steps)
                denom = exp_avg_sq.sqrt() / (1 - beta2**steps).sqrt() + group["eps"]
                param.copy_(th.where(mask, param - step_size * exp_avg / denom, param))


def clip_grad_norm_per_member(parameters: list[th.Tensor], max_norm: float) -> None:
    """Each member's joint gradient norm clipped to ``max_norm`` (torch's formula, as a run alone clips its own)."""
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    squares = th.stack([grad.reshape(len(grad), -1).pow(2).sum(dim=1) for grad in grads]).sum(dim=0)  # (K,)
    factors = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(factors.reshape(-1, *([1] * (grad.dim() - 1))))


@contextlib.contextmanager
def naming_member(index: int) -> Iterator[None]:
    """A non-finite value from an env names the population member whose env returned it."""
    try:
        yield
    except NonFiniteEnvValueError as error:
        raise NonFiniteEnvValueError(f"population member {index}: {error}") from None


@contextlib.contextmanager
def _numpy_random_state(state: np.random.RandomState) -> Iterator[None]:
    """Run NumPy's global draws (the buffer's permutations) from ``state``, and keep what they consumed."""
    saved = np.random.get_state()
    np.random.set_state(state.get_state())
    try:
        yield
    finally:
        state.set_state(np.random.get_state())
        np.random.set_state(saved)


def _check_update_setting(template: LecturePPO) -> None:
    """Refuse the update settings a population cannot train, naming the setting and the fix."""
    if template.recompute_advantage and template.advantage_scope == "rollout":
        raise PopulationError(
            "recompute_advantage=True with advantage_scope='rollout' (SB3-style recomputation each epoch) is not "
            "supported by the population: set recompute_advantage=False, or advantage_scope='segment' (the lecture's)"
        )
    if isinstance(template.observation_space, gym_spaces.Dict):
        raise PopulationError("Dict observation spaces are not supported by the population: train these models alone")


def check_shareable(members: Sequence[LecturePPO]) -> None:
    """Refuse, naming the setting, members that cannot share one population."""
    template = members[0]
    for member in members:
        if not isinstance(member, LecturePPO):
            raise PopulationError(f"a population trains LecturePPO models, not {type(member).__name__}")
        if member.env is None:
            raise PopulationError("every member needs its env (pass env= when building it)")
    for name in SHARED_SETTINGS:
        values = [getattr(member, name) for member in members]
        if any(value != values[0] for value in values if not callable(value)) or any(callable(value) for value in values):
            if name == "clip_range_vf" and all(value is None for value in values):
                continue
            raise PopulationError(f"members differ in {name} ({values}): group them into separate populations")
    _check_update_setting(template)
    if template.target_kl is not None:
        raise PopulationError("target_kl (SB3's early stop) is not supported by the population: drop it")
    spaces = {(str(member.observation_space), str(member.action_space)) for member in members}
    if len(spaces) != 1:
        raise PopulationError(f"members differ in their env's spaces ({sorted(spaces)}): group them by env")
    shapes = [[tuple(p.shape) for p in member.policy.parameters()] for member in members]
    classes = {type(member.policy).__name__ for member in members}
    if len(classes) != 1 or any(shape != shapes[0] for shape in shapes):
        raise PopulationError(f"members differ in their network (policy classes {sorted(classes)} or shapes)")
    progress_points = (1.0, 0.5, 0.0)
    rates = {tuple(member.lr_schedule(p) for p in progress_points) for member in members}
    if len(rates) != 1:
        raise PopulationError(f"members differ in learning_rate (at progress 1 / 0.5 / 0: {sorted(rates)})")
    adam_settings = {(m.policy.optimizer.defaults.get("eps"), m.policy.optimizer.defaults.get("betas")) for m in members}
    if len(adam_settings) != 1 or not isinstance(template.policy.optimizer, th.optim.Adam):
        raise PopulationError("members must use the same Adam settings (optimizer_kwargs)")
    buffers = [name for name, _ in template.policy.named_buffers()]
    if buffers:
        raise PopulationError(f"the policy holds buffers ({buffers}), which the population does not stack")
