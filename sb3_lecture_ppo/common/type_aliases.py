"""Named tuples returned by :class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer`."""

from typing import NamedTuple

import torch as th

from sb3_lecture_ppo.common.observations import TensorObs, take_observations


class SegmentRolloutBufferSamples(NamedTuple):
    """
    A minibatch of whole segments, time-major: every field is ``(seq_length, n_segments, ...)``.
    Pad steps (``mask == False``) repeat the last real step of their segment.
    """

    observations: TensorObs  # (seq, n_segments, *obs_shape), a dict of those for Dict spaces
    actions: th.Tensor  # (seq, n_segments, action_dim)
    next_observations: TensorObs  # (seq, n_segments, *obs_shape): true final observation at an episode end
    rewards: th.Tensor  # (seq, n_segments)
    terminations: th.Tensor  # (seq, n_segments) bool: s' is terminal (not a time-limit truncation)
    old_values: th.Tensor  # (seq, n_segments) V_old(s)
    old_log_prob: th.Tensor  # (seq, n_segments) log pi_old(a|s)
    old_distribution_params: th.Tensor  # (seq, n_segments, n_params)
    advantages: th.Tensor  # (seq, n_segments)
    returns: th.Tensor  # (seq, n_segments) value targets
    mask: th.Tensor  # (seq, n_segments) bool: real step


class SegmentLayout(NamedTuple):
    """
    What the advantages recomputed in segment scope need of a minibatch's segments besides its real steps.
    """

    mask: th.Tensor  # (seq, n_segments) bool: real step
    rewards: th.Tensor  # (seq, n_segments)
    terminations: th.Tensor  # (seq, n_segments) bool
    last_next_observations: TensorObs  # (n_segments, *obs_shape): s' of each segment's last real step


class MinibatchSteps(NamedTuple):
    """
    The real steps of a minibatch of segments, flat, in the segments' time-major order: each field
    is ``samples.<field>[samples.mask]`` of the :class:`SegmentRolloutBufferSamples` of the same
    segments. Pad steps are not there at all. ``segments`` is only filled where the advantages are
    recomputed in segment scope.
    """

    observations: TensorObs  # (n_real, *obs_shape)
    actions: th.Tensor  # (n_real, action_dim)
    old_values: th.Tensor  # (n_real,)
    old_log_prob: th.Tensor  # (n_real,)
    old_distribution_params: th.Tensor  # (n_real, n_params)
    advantages: th.Tensor  # (n_real,)
    returns: th.Tensor  # (n_real,)
    segments: SegmentLayout | None
    step_weights: th.Tensor | None = None
    """Only in a population's minibatches of members with different step counts, ``(members, n_max)``: 1 on a real
    step, 0 on a pad (a copy of a real step) that makes the members' minibatches one shape; every mean weighs by it."""

    @classmethod
    def from_segments(cls, samples: SegmentRolloutBufferSamples, with_segments: bool = True) -> "MinibatchSteps":
        """The real steps of ``samples``, selected by their mask (the plain, slow way)."""
        mask = samples.mask
        layout = None
        if with_segments:
            last_real = mask.sum(dim=0) - 1  # (n_segments,)
            columns = th.arange(mask.shape[1], device=mask.device)
            last_next_observations = take_observations(samples.next_observations, (last_real, columns))
            layout = SegmentLayout(mask, samples.rewards, samples.terminations, last_next_observations)
        return cls(
            observations=take_observations(samples.observations, mask),
            actions=samples.actions[mask],
            old_values=samples.old_values[mask],
            old_log_prob=samples.old_log_prob[mask],
            old_distribution_params=samples.old_distribution_params[mask],
            advantages=samples.advantages[mask],
            returns=samples.returns[mask],
            segments=layout,
        )


PER_STEP_FIELDS: tuple[str, ...] = tuple(name for name in MinibatchSteps._fields if name not in ("segments", "step_weights"))
"""The fields of :class:`MinibatchSteps` that hold one entry per step."""
