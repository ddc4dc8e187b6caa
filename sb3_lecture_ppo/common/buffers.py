"""
The lecture's per-trajectory batching as an SB3 rollout buffer.

Each env's stream of ``n_steps`` transitions is cut into segments of at most ``seq_length``
steps. A segment starts at the rollout start, at every episode start and ``seq_length`` steps
after the previous segment start. A segment that an episode end (or the rollout end) cuts short
is padded to ``seq_length`` by repeating its last step ("append the last data until the end"),
and its pad steps are masked out. Minibatches are sets of whole segments.
"""

import itertools
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch as th
from torch.nn import functional as nn_functional
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from sb3_lecture_ppo.common.distributions import distribution_params_dim
from sb3_lecture_ppo.common.observations import (
    TensorObs,
    split_observations,
    storage_dtype,
    take_observations,
)
from sb3_lecture_ppo.common.segments import (
    VALUE_TARGETS,
    advantages_and_targets,
    rollout_continues,
    segment_continues,
    uses_matrix_form,
)
from sb3_lecture_ppo.common.type_aliases import MinibatchSteps, SegmentLayout, SegmentRolloutBufferSamples

ADVANTAGE_SCOPES = ("segment", "rollout")
OBSERVATION_FIELDS = ("observations", "next_observations")
STEP_FIELDS = {
    "observations": "observations",
    "actions": "actions",
    "old_values": "values",
    "old_log_prob": "log_probs",
    "old_distribution_params": "distribution_params",
    "advantages": "advantages",
    "returns": "returns",
}
"""Field of :class:`MinibatchSteps` -> the rollout tensor it is gathered from."""


def segment_starts(episode_starts: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Start and length of every segment of one env's rollout.

    :param episode_starts: (n_steps,) True where step t is the first step of an episode
    :param seq_length: maximal segment length
    :return: starts and lengths, both (n_segments,) int64, in time order
    """
    n_steps = len(episode_starts)
    boundaries = np.flatnonzero(episode_starts[1:]) + 1
    episode_bounds = np.concatenate(([0], boundaries, [n_steps]))
    starts, lengths = [], []
    for begin, end in itertools.pairwise(episode_bounds):
        chunk_starts = np.arange(begin, end, seq_length)
        starts.append(chunk_starts)
        lengths.append(np.minimum(chunk_starts + seq_length, end) - chunk_starts)
    return np.concatenate(starts).astype(np.int64), np.concatenate(lengths).astype(np.int64)


def segment_indices(episode_starts: np.ndarray, seq_length: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Index of every segment step into the rollout flattened as ``t * n_envs + env``.

    :param episode_starts: (n_steps, n_envs) True where step t is the first step of an episode
    :param seq_length: maximal segment length
    :return: ``indices`` (seq_length, n_segments) int64, pad steps repeating the segment's last
        real step, and ``mask`` (seq_length, n_segments) bool, True on real steps
    """
    n_envs = episode_starts.shape[1]
    offsets = np.arange(seq_length)[:, None]  # (seq, 1)
    all_indices, all_masks = [], []
    for env in range(n_envs):
        starts, lengths = segment_starts(episode_starts[:, env].astype(bool), seq_length)
        steps = starts[None, :] + np.minimum(offsets, lengths[None, :] - 1)  # (seq, n_env_segments)
        all_indices.append(steps * n_envs + env)
        all_masks.append(offsets < lengths[None, :])
    return np.concatenate(all_indices, axis=1), np.concatenate(all_masks, axis=1)


class SegmentRolloutBuffer(RolloutBuffer):
    """
    Rollout buffer of the lecture: besides SB3's data it keeps, for every step, the next
    observation (the true final observation at an episode end), whether the episode terminated
    or was truncated there, and the parameters of the behaviour policy's action distribution;
    it cuts the rollout into padded, masked segments and returns minibatches of whole segments.

    :param buffer_size: steps per env in a rollout (``n_steps``)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: GAE lambda (0 = one-step TD advantage)
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    :param seq_length: maximal length of a segment
    :param advantage_scope: ``"segment"`` (the GAE sum stops at the segment end, as the lecture)
        or ``"rollout"`` (across the whole rollout of an env, as SB3)
    :param value_target: ``"td"``, ``"lambda"`` or ``"mc"``
    """

    observations: np.ndarray | dict[str, np.ndarray]  # type: ignore[assignment]
    next_observations: np.ndarray | dict[str, np.ndarray]
    terminations: np.ndarray
    dones: np.ndarray
    distribution_params: np.ndarray
    indices: np.ndarray
    mask: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 0.95,
        gamma: float = 0.99,
        n_envs: int = 1,
        seq_length: int = 16,
        advantage_scope: str = "segment",
        value_target: str = "td",
    ):
        if advantage_scope not in ADVANTAGE_SCOPES:
            raise ValueError(f"advantage_scope={advantage_scope!r} is unknown: use one of {ADVANTAGE_SCOPES}.")
        if value_target not in VALUE_TARGETS:
            raise ValueError(f"value_target={value_target!r} is unknown: use one of {VALUE_TARGETS}.")
        self.seq_length = seq_length
        self.advantage_scope = advantage_scope
        self.value_target = value_target
        self.n_distribution_params = distribution_params_dim(action_space)
        self._tensors: dict[str, th.Tensor] = {}
        self._observation_tensors: dict[str, TensorObs] = {}
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda=gae_lambda, gamma=gamma, n_envs=n_envs
        )

    def reset(self) -> None:
        self.next_observations = self._observation_storage()
        self.terminations = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=bool)
        self.distribution_params = np.zeros((self.buffer_size, self.n_envs, self.n_distribution_params), dtype=np.float32)
        self.indices = np.zeros((self.seq_length, 0), dtype=np.int64)
        self.mask = np.zeros((self.seq_length, 0), dtype=bool)
        self._tensors = {}
        self._observation_tensors = {}
        if isinstance(self.observation_space, spaces.Dict):
            DictRolloutBuffer.reset(self)  # type: ignore[arg-type]  # SB3's arrays, its observations key by key
        else:
            super().reset()
        stored_as = self.observations.dtype if isinstance(self.observations, np.ndarray) else None
        if stored_as != storage_dtype(self.observation_space):
            # SB3 stores the space's dtype; we store float32, and images as uint8 (4x smaller), which the policy
            # scales in its forward pass. Dict spaces: key by key.
            self.observations = self._observation_storage()

    def _observation_storage(self) -> np.ndarray | dict[str, np.ndarray]:
        """Zeroed ``(n_steps, n_envs, *obs_shape)`` storage for observations, one array per key of a Dict space."""
        if isinstance(self.observation_space, spaces.Dict):
            assert isinstance(self.obs_shape, dict)
            return {
                key: np.zeros((self.buffer_size, self.n_envs, *shape), dtype=storage_dtype(self.observation_space[key]))
                for key, shape in self.obs_shape.items()
            }
        return np.zeros((self.buffer_size, self.n_envs, *self.obs_shape), dtype=storage_dtype(self.observation_space))

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
        *,
        next_obs: np.ndarray | dict[str, np.ndarray],
        terminated: np.ndarray,
        done: np.ndarray,
        distribution_params: th.Tensor,
    ) -> None:
        """
        Add one step of every env (SB3's data, then the lecture's).

        :param next_obs: (n_envs, *obs_shape) next observation; the true final one where ``done``
        :param terminated: (n_envs,) the episode reached a terminal state
        :param done: (n_envs,) the episode ended (terminated or truncated)
        :param distribution_params: (n_envs, n_params) the behaviour policy's distribution
        """
        self._store_next_observations(next_obs)
        self.terminations[self.pos] = np.array(terminated, dtype=bool)
        self.dones[self.pos] = np.array(done, dtype=bool)
        self.distribution_params[self.pos] = distribution_params.detach().cpu().numpy()
        if isinstance(self.observation_space, spaces.Dict):
            DictRolloutBuffer.add(self, obs, action, reward, episode_start, value, log_prob)  # type: ignore[arg-type]
        else:
            super().add(obs, action, reward, episode_start, value, log_prob)  # type: ignore[arg-type]

    def _store_next_observations(self, next_obs: np.ndarray | dict[str, np.ndarray]) -> None:
        if isinstance(self.next_observations, dict):
            assert isinstance(next_obs, dict) and isinstance(self.observation_space, spaces.Dict)
            for key, storage in self.next_observations.items():
                storage[self.pos] = np.array(next_obs[key]).reshape(storage.shape[1:])
            return
        if isinstance(self.observation_space, spaces.Discrete):
            next_obs = np.asarray(next_obs).reshape((self.n_envs, *self.obs_shape))
        self.next_observations[self.pos] = np.array(next_obs)

    @property
    def n_segments(self) -> int:
        """Number of segments of the current rollout."""
        return self.indices.shape[1]

    @property
    def pad_fraction(self) -> float:
        """Fraction of segment steps that are padding."""
        return 1.0 - float(self.mask.mean()) if self.mask.size else 0.0

    def finalize(self) -> None:
        """Cut the full rollout into segments and move its data to torch, once per rollout."""
        assert self.full, "The rollout buffer must be full before it is cut into segments"
        self.indices, self.mask = segment_indices(self.episode_starts, self.seq_length)
        n_transitions = self.buffer_size * self.n_envs
        arrays = {
            "actions": self.actions.reshape(n_transitions, self.action_dim).astype(np.float32, copy=False),
            "rewards": self.rewards.reshape(-1),
            "terminations": self.terminations.reshape(-1),
            "dones": self.dones.reshape(-1),
            "values": self.values.reshape(-1),
            "log_probs": self.log_probs.reshape(-1),
            "distribution_params": self.distribution_params.reshape(n_transitions, -1),
        }
        # On the CPU the tensors share the arrays' memory (a rollout's arrays are not written again: reset makes new ones).
        self._tensors = {name: self.to_torch(array, copy=False) for name, array in arrays.items()}
        self._tensors["segment_indices"] = self.to_torch(self.indices)
        self._tensors["segment_mask"] = self.to_torch(self.mask)
        self._observation_tensors = {
            "observations": self._flat_observations(self.observations),
            "next_observations": self._flat_observations(self.next_observations),
        }

    def _flat_observations(self, storage: np.ndarray | dict[str, np.ndarray]) -> TensorObs:
        if isinstance(storage, dict):
            return {key: self._flat_observations(array) for key, array in storage.items()}  # type: ignore[misc]
        return self.to_torch(storage.reshape(self.buffer_size * self.n_envs, *storage.shape[2:]), copy=False)

    def tensor(self, name: str) -> th.Tensor:
        """A flat ``(n_steps * n_envs, ...)`` tensor of the rollout, in ``t * n_envs + env`` order."""
        return self._tensors[name]

    def observation_tensor(self, name: str = "observations") -> TensorObs:
        """:meth:`tensor` of ``"observations"`` or ``"next_observations"``: a dict of tensors for Dict spaces."""
        return self._observation_tensors[name]

    def _gather(self, name: str, index: th.Tensor | slice) -> TensorObs:
        """``tensor(name)[index]``, observations included."""
        if name in OBSERVATION_FIELDS:
            return take_observations(self._observation_tensors[name], index)
        return self._tensors[name][index]

    def compute_advantages(self, values: th.Tensor, next_values: th.Tensor) -> None:
        """
        GAE advantages and value targets of the whole rollout in the buffer's scope.

        :param values: (n_steps * n_envs,) V(s_t) of the critic to use
        :param next_values: (n_steps * n_envs,) V(s'_t) of the same critic
        """
        if self.advantage_scope == "rollout":
            compute_rollout_advantages([self], [values], [next_values])
            return
        rewards, terminations = self.tensor("rewards"), self.tensor("terminations")
        indices, mask = self._tensors["segment_indices"], self._tensors["segment_mask"]
        segment_advantages, segment_returns = advantages_and_targets(
            rewards[indices],
            values[indices],
            next_values[indices],
            terminations[indices],
            segment_continues(mask),
            self.gamma,
            self.gae_lambda,
            self.value_target,
            segment_mask=mask,
        )
        # Every real step belongs to exactly one segment: scatter the real steps back.
        advantages, returns = th.empty_like(rewards), th.empty_like(rewards)
        advantages[indices[mask]] = segment_advantages[mask]
        returns[indices[mask]] = segment_returns[mask]
        self.store_advantages(advantages, returns)

    def store_advantages(self, advantages: th.Tensor, returns: th.Tensor) -> None:
        """Keep the rollout's advantages and value targets, each ``(n_steps * n_envs,)`` in ``t * n_envs + env`` order."""
        self._tensors["advantages"], self._tensors["returns"] = advantages, returns
        shape = (self.buffer_size, self.n_envs)
        self.advantages = advantages.cpu().numpy().reshape(shape)
        self.returns = returns.cpu().numpy().reshape(shape)

    def get(self, batch_size: int | None = None) -> Generator[SegmentRolloutBufferSamples, None, None]:  # type: ignore[override]
        """
        One shuffled pass over the segments (SB3's epoch).

        :param batch_size: transitions per minibatch, a multiple of ``seq_length``;
            ``None`` for all segments in one minibatch
        """
        for segment_ids in self._epoch_segment_ids(batch_size):
            yield self._get_samples(segment_ids)

    def sample(self, batch_size: int) -> SegmentRolloutBufferSamples:  # type: ignore[override]
        """
        One minibatch of segments drawn at random without replacement
        (the lecture's ``random.sample(self.batch, minibatch_size)``).

        :param batch_size: transitions per minibatch, a multiple of ``seq_length``
        """
        return self._get_samples(self._random_segment_ids(batch_size))

    def get_steps(self, batch_size: int | None, with_segments: bool) -> Generator[MinibatchSteps, None, None]:
        """
        :meth:`get`'s minibatches (the same draws, the same steps in the same order), as flat real
        steps: what the training loop uses. Each field is gathered once for the whole epoch, in
        minibatch order, so that every minibatch is a slice of it.

        :param with_segments: also gather the segment layout (for advantages recomputed in segment scope)
        """
        if self.seq_length == 1 and not with_segments:
            steps, sizes = self.step_order(batch_size)
            if sizes:
                yield from self._step_minibatches(steps, sizes)
            return
        blocks = list(self._epoch_segment_ids(batch_size))
        if len(blocks) == 0:
            return
        block_size = len(blocks[0])
        permutation = th.as_tensor(np.concatenate(blocks), device=self.device)
        pad = (-len(permutation)) % block_size  # the last minibatch may hold fewer segments
        steps = nn_functional.pad(self._tensors["segment_indices"][:, permutation], (0, pad))  # (seq, n_blocks * block)
        mask = nn_functional.pad(self._tensors["segment_mask"][:, permutation], (0, pad), value=False)
        seq_length, n_blocks = steps.shape[0], len(blocks)
        # (n_blocks, seq, block): selecting the real steps row by row lists each minibatch's steps time-major
        block_steps = steps.reshape(seq_length, n_blocks, block_size).transpose(0, 1)
        block_mask = mask.reshape(seq_length, n_blocks, block_size).transpose(0, 1)
        real_steps = block_steps[block_mask]
        sizes = block_mask.sum(dim=(1, 2)).tolist()
        if not with_segments:
            yield from self._step_minibatches(real_steps, sizes)
            return
        data = self._tensors
        per_field = {field: split_observations(self._gather(name, real_steps), sizes) for field, name in STEP_FIELDS.items()}
        last_steps = steps[mask.sum(dim=0).clamp(min=1) - 1, th.arange(steps.shape[1], device=self.device)]
        rewards, terminations = data["rewards"][steps], data["terminations"][steps]
        last_next_observations = self._gather("next_observations", last_steps)
        layouts = [
            SegmentLayout(
                mask[:, columns],
                rewards[:, columns],
                terminations[:, columns],
                take_observations(last_next_observations, columns),
            )
            for block, _ in enumerate(blocks)
            for columns in [slice(block * block_size, block * block_size + len(blocks[block]))]
        ]
        for block in range(n_blocks):
            yield MinibatchSteps(**{field: parts[block] for field, parts in per_field.items()}, segments=layouts[block])  # type: ignore[arg-type]

    def step_order(
        self, batch_size: int | None, random_state: np.random.RandomState | None = None
    ) -> tuple[th.Tensor, list[int]]:
        """
        One epoch's draw of one-step segments (``seq_length=1``, never padded) as the flat steps of its minibatches
        in order, and each minibatch's size: :meth:`get_steps` gathers its fields at these steps (the same draw).

        :param random_state: draw with this NumPy random state (default: NumPy's global one, as :meth:`get`)
        """
        if self.seq_length != 1:
            raise ValueError(f"step_order needs one-step segments (seq_length=1), not seq_length={self.seq_length}")
        blocks = list(self._epoch_segment_ids(batch_size, random_state))
        if len(blocks) == 0:
            return self._tensors["segment_indices"][0, :0], []
        permutation = th.as_tensor(np.concatenate(blocks), device=self.device)
        return self._tensors["segment_indices"][0, permutation], [len(block) for block in blocks]

    def _step_minibatches(self, steps: th.Tensor, sizes: list[int]) -> Generator[MinibatchSteps, None, None]:
        """Minibatches of the given flat steps, ``sizes`` consecutive steps each, without segment layouts."""
        gathered = {field: self._gather(name, steps) for field, name in STEP_FIELDS.items()}
        if len(sizes) == 1:
            yield MinibatchSteps(**gathered, segments=None)  # type: ignore[arg-type]
            return
        per_field = {field: split_observations(tensor, sizes) for field, tensor in gathered.items()}
        for block in range(len(sizes)):
            yield MinibatchSteps(**{field: parts[block] for field, parts in per_field.items()}, segments=None)  # type: ignore[arg-type]

    def sample_steps(self, batch_size: int, with_segments: bool) -> MinibatchSteps:
        """:meth:`sample`'s minibatch (the same draw) as flat real steps."""
        return self.minibatch_steps(self._random_segment_ids(batch_size), with_segments)

    def _epoch_segment_ids(
        self, batch_size: int | None, random_state: np.random.RandomState | None = None
    ) -> Generator[np.ndarray, None, None]:
        segments_per_batch = self.n_segments if batch_size is None else batch_size // self.seq_length
        permutation = (np.random if random_state is None else random_state).permutation(self.n_segments)
        for start in range(0, self.n_segments, segments_per_batch):
            yield permutation[start : start + segments_per_batch]

    def _random_segment_ids(self, batch_size: int) -> np.ndarray:
        segments_per_batch = min(batch_size // self.seq_length, self.n_segments)
        return np.random.choice(self.n_segments, segments_per_batch, replace=False)

    def minibatch_steps(self, segment_ids: np.ndarray, with_segments: bool) -> MinibatchSteps:
        """
        The real steps of the given segments, gathered straight from the flat rollout tensors: equal
        to ``MinibatchSteps.from_segments(self._get_samples(segment_ids))`` without building the
        padded ``(seq, n_segments)`` copy of every field.
        """
        ids = th.as_tensor(segment_ids, device=self.device)
        steps = self._tensors["segment_indices"][:, ids]  # (seq, n_segments)
        mask = self._tensors["segment_mask"][:, ids]
        real_steps = steps[mask]  # (n_real,), time-major as samples.x[samples.mask]
        data = self._tensors
        layout = None
        if with_segments:
            last_real = mask.sum(dim=0) - 1
            last_steps = steps[last_real, th.arange(len(ids), device=self.device)]
            layout = SegmentLayout(
                mask, data["rewards"][steps], data["terminations"][steps], self._gather("next_observations", last_steps)
            )
        return MinibatchSteps(
            observations=self._gather("observations", real_steps),
            actions=data["actions"][real_steps],
            old_values=data["values"][real_steps],
            old_log_prob=data["log_probs"][real_steps],
            old_distribution_params=data["distribution_params"][real_steps],
            advantages=data["advantages"][real_steps],
            returns=data["returns"][real_steps],
            segments=layout,
        )

    def next_values(self, values: th.Tensor, critic: Callable[[TensorObs], th.Tensor]) -> th.Tensor:
        """
        V(s'_t) of the critic that gave ``values``: where the episode goes on inside the rollout,
        s'_t is the same env's next observation s_{t+1}, whose value is already in ``values``;
        only at episode ends and at the rollout's last step is the critic run (on s'_t).

        :param values: (n_steps * n_envs,) V(s_t), flat in ``t * n_envs + env`` order
        :param critic: observations -> values, without gradient
        :return: (n_steps * n_envs,)
        """
        dones = self.tensor("dones").reshape(self.buffer_size, self.n_envs)
        cut = ~rollout_continues(dones).reshape(-1)
        next_values = th.empty_like(values)
        next_values[: -self.n_envs] = values[self.n_envs :]
        next_values[cut] = critic(self._gather("next_observations", cut))
        return next_values

    def _get_samples(self, segment_ids: np.ndarray, env: object = None) -> SegmentRolloutBufferSamples:  # type: ignore[override]
        ids = th.as_tensor(segment_ids, device=self.device)
        steps = self._tensors["segment_indices"][:, ids]  # (seq, n_segments)
        data = self._tensors

        return SegmentRolloutBufferSamples(
            observations=self._gather("observations", steps),
            actions=data["actions"][steps],
            next_observations=self._gather("next_observations", steps),
            rewards=data["rewards"][steps],
            terminations=data["terminations"][steps],
            old_values=data["values"][steps],
            old_log_prob=data["log_probs"][steps],
            old_distribution_params=data["distribution_params"][steps],
            advantages=data["advantages"][steps],
            returns=data["returns"][steps],
            mask=data["segment_mask"][:, ids],
        )


def compute_rollout_advantages(
    buffers: Sequence["SegmentRolloutBuffer"], values: Sequence[th.Tensor], next_values: Sequence[th.Tensor]
) -> None:
    """
    GAE advantages and value targets over whole rollouts (``advantage_scope="rollout"``) of buffers with the same
    shape and settings: their envs side by side as the columns of one ``(n_steps, n_envs * len(buffers))`` sum (each
    column's recursion is its own, so each buffer gets what it would get alone). Where one buffer's sum takes the
    matrix form, which rounds differently from the step loop, the buffers are summed one by one.

    :param values: per buffer, (n_steps * n_envs,) V(s_t) of the critic to use
    :param next_values: per buffer, (n_steps * n_envs,) V(s'_t) of the same critic
    """
    first = buffers[0]
    shape = (first.buffer_size, first.n_envs)
    if len(buffers) > 1 and uses_matrix_form(*shape):
        for buffer, buffer_values, buffer_next_values in zip(buffers, values, next_values, strict=True):
            compute_rollout_advantages([buffer], [buffer_values], [buffer_next_values])
        return

    def columns(tensors: Sequence[th.Tensor]) -> th.Tensor:
        return th.cat([tensor.reshape(shape) for tensor in tensors], dim=1)

    advantages, returns = advantages_and_targets(
        columns([buffer.tensor("rewards") for buffer in buffers]),
        columns(values),
        columns(next_values),
        columns([buffer.tensor("terminations") for buffer in buffers]),
        rollout_continues(columns([buffer.tensor("dones") for buffer in buffers])),
        first.gamma,
        first.gae_lambda,
        first.value_target,
    )
    for index, buffer in enumerate(buffers):
        part = slice(index * first.n_envs, (index + 1) * first.n_envs)
        buffer.store_advantages(advantages[:, part].reshape(-1), returns[:, part].reshape(-1))
