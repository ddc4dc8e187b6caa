"""Named tuples returned by :class:`~sb3_lecture_ppo.common.buffers.SegmentRolloutBuffer`."""

from typing import NamedTuple

import torch as th


class SegmentRolloutBufferSamples(NamedTuple):
    """
    A minibatch of whole segments, time-major: every field is ``(seq_length, n_segments, ...)``.
    Pad steps (``mask == False``) repeat the last real step of their segment.
    """

    observations: th.Tensor  # (seq, n_segments, *obs_shape)
    actions: th.Tensor  # (seq, n_segments, action_dim)
    next_observations: th.Tensor  # (seq, n_segments, *obs_shape): true final observation at an episode end
    rewards: th.Tensor  # (seq, n_segments)
    terminations: th.Tensor  # (seq, n_segments) bool: s' is terminal (not a time-limit truncation)
    old_values: th.Tensor  # (seq, n_segments) V_old(s)
    old_log_prob: th.Tensor  # (seq, n_segments) log pi_old(a|s)
    old_distribution_params: th.Tensor  # (seq, n_segments, n_params)
    advantages: th.Tensor  # (seq, n_segments)
    returns: th.Tensor  # (seq, n_segments) value targets
    mask: th.Tensor  # (seq, n_segments) bool: real step
