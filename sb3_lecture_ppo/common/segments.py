"""
Pure tensor functions on time-major ``(seq, batch)`` data: masks, masked statistics,
discounted backward sums, TD errors, GAE and the three value targets.

The same functions serve both advantage scopes of the lecture:

* segment scope: ``(seq_length, n_segments)`` tensors, the sums stop at the segment end
  (``continues = segment_continues(mask)``);
* rollout scope: ``(n_steps, n_envs)`` tensors, the sums stop at episode ends and at the
  end of the rollout (``continues = rollout_continues(dones)``).

Pad steps of a segment may hold anything, even NaN or inf: every function here selects with
``torch.where`` instead of multiplying by a 0/1 mask, so nothing on a pad step can reach a
real step. Losses then take their means over the real steps by boolean selection.
"""

import functools

import numpy as np
import torch as th

VALUE_TARGETS = ("td", "lambda", "mc")


def segment_continues(mask: th.Tensor) -> th.Tensor:
    """
    Whether step t of a segment is followed by another real step of the same segment.

    :param mask: (seq, n_segments) boolean, True on real steps (leading axes allowed: a population's members)
    :return: (seq, n_segments) boolean
    """
    continues = th.zeros_like(mask)
    continues[..., :-1, :] = mask[..., :-1, :] & mask[..., 1:, :]
    return continues


def rollout_continues(dones: th.Tensor) -> th.Tensor:
    """
    Whether step t of an env's rollout is followed by a step of the same episode
    inside the rollout.

    :param dones: (n_steps, n_envs) boolean, True where an episode ended (terminated or truncated)
    :return: (n_steps, n_envs) boolean
    """
    continues = ~dones.bool()
    continues[-1] = False
    return continues


MATRIX_FORM_MAX_ELEMENTS = 1 << 16
"""Largest ``seq * seq * batch`` summed in matrix form; longer data is summed step by step (measured faster beyond:
at ``(2048, 1)``, a paper-setting rollout, the matrix form took 170 ms and the step loop in NumPy 14 ms)."""


def discounted_backward_sum(values: th.Tensor, discount: float, continues: th.Tensor) -> th.Tensor:
    """
    ``y_t = x_t + discount * y_{t+1}`` where ``continues[t]``, else ``y_t = x_t``.

    Short sequences (segments) are summed in one matrix expression, long ones (whole rollouts)
    by a loop over the steps; both give the same sums.

    :param values: (seq, batch)
    :param discount: factor per step
    :param continues: (seq, batch) boolean
    :return: (seq, batch)
    """
    if uses_matrix_form(values.shape[0], values.shape[1]):
        return discounted_backward_sum_matrix(values, discount, continues)
    return discounted_backward_sum_loop(values, discount, continues)


def uses_matrix_form(seq: int, batch: int) -> bool:
    """Whether :func:`discounted_backward_sum` sums ``(seq, batch)`` data in matrix form (else step by step)."""
    return seq**2 * max(batch, 1) <= MATRIX_FORM_MAX_ELEMENTS


def discounted_backward_sum_loop(values: th.Tensor, discount: float, continues: th.Tensor) -> th.Tensor:
    """
    :func:`discounted_backward_sum`, one step at a time from the end: in NumPy where no gradient is needed (a
    tenth of torch's per-call cost; the same float operations in the same order, so the same numbers), else in torch.
    """
    if not values.requires_grad and values.device.type == "cpu":
        return _discounted_backward_sum_numpy(values, discount, continues)
    result = th.empty_like(values)
    running = th.zeros_like(values[0])
    for step in reversed(range(values.shape[0])):
        running = values[step] + discount * th.where(continues[step], running, th.zeros_like(running))
        result[step] = running
    return result


def _discounted_backward_sum_numpy(values: th.Tensor, discount: float, continues: th.Tensor) -> th.Tensor:
    steps = values.numpy()
    continuing = continues.bool().numpy()
    result = np.empty_like(steps)
    running = np.zeros_like(steps[0])
    zero = np.zeros_like(running)
    for step in range(len(steps) - 1, -1, -1):
        running = steps[step] + discount * np.where(continuing[step], running, zero)
        result[step] = running
    return th.from_numpy(result)


def discounted_backward_sum_matrix(values: th.Tensor, discount: float, continues: th.Tensor) -> th.Tensor:
    """
    :func:`discounted_backward_sum` as ``y_t = sum_k discount^(k - t) x_k`` over the steps ``k >= t``
    that ``t`` reaches without a break (``continues`` False at one of ``t .. k-1``), all ``t`` at once.
    Terms that ``t`` does not reach are selected away, not multiplied by 0: NaN there stays there.
    """
    seq = values.shape[0]
    breaks = (~continues.bool()).to(th.int32)
    breaks_before = th.cumsum(breaks, dim=0) - breaks  # (seq, batch): breaks at steps 0 .. k-1
    steps = th.arange(seq, device=values.device)
    distance = steps[None, :] - steps[:, None]  # (t, k)
    reaches = (distance >= 0)[:, :, None] & (breaks_before[None, :, :] == breaks_before[:, None, :])  # (t, k, batch)
    powers = th.tensor(discount, dtype=values.dtype, device=values.device) ** distance.clamp(min=0).to(values.dtype)
    terms = th.where(reaches, powers[:, :, None] * values[None, :, :], th.zeros((), dtype=values.dtype, device=values.device))
    return terms.sum(dim=1)


def segment_backward_sum(values: th.Tensor, discount: float, mask: th.Tensor) -> th.Tensor:
    """
    :func:`discounted_backward_sum` of segments, ``continues = segment_continues(mask)``, where each
    segment's real steps come first and its pad steps after (as the rollout buffer cuts them): the
    sums of the real steps are one product with the upper-triangular ``(seq, seq)`` matrix of
    discount powers, the pad steps (zeroed by selection first) adding nothing. Pad steps return
    their own value, as :func:`discounted_backward_sum` gives them.

    :param values: (seq, n_segments), or with leading axes (a population's members)
    :param discount: factor per step
    :param mask: (seq, n_segments) boolean, True on real steps, each column a run of True then False
    :return: (seq, n_segments)
    """
    weights = _discount_powers(values.shape[-2], discount, values.dtype, values.device)
    real_values = th.where(mask, values, th.zeros((), dtype=values.dtype, device=values.device))
    return th.where(mask, weights @ real_values, values)


@functools.lru_cache(maxsize=16)
def _discount_powers(seq: int, discount: float, dtype: th.dtype, device: th.device) -> th.Tensor:
    """(seq, seq): ``discount ** (k - t)`` at row t, column k >= t, else 0."""
    steps = th.arange(seq, device=device)
    distance = steps[None, :] - steps[:, None]
    powers = th.tensor(discount, dtype=dtype, device=device) ** distance.clamp(min=0).to(dtype)
    return th.where(distance >= 0, powers, th.zeros((), dtype=dtype, device=device))


def _backward_sum(values: th.Tensor, discount: float, continues: th.Tensor, segment_mask: th.Tensor | None) -> th.Tensor:
    if segment_mask is not None:
        return segment_backward_sum(values, discount, segment_mask)
    return discounted_backward_sum(values, discount, continues)


def bootstrapped_next_values(next_values: th.Tensor, terminations: th.Tensor) -> th.Tensor:
    """
    ``(1 - terminated) * V(s')`` by selection: a terminal state is worth 0, a truncated one
    is worth the value of its true final observation.
    """
    return th.where(terminations.bool(), th.zeros_like(next_values), next_values)


def td_errors(
    rewards: th.Tensor, values: th.Tensor, next_values: th.Tensor, terminations: th.Tensor, gamma: float
) -> th.Tensor:
    """
    One-step TD errors ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)``.

    :param rewards: (seq, batch)
    :param values: (seq, batch) V(s_t)
    :param next_values: (seq, batch) V(s'_t), s' the true next (or final) observation
    :param terminations: (seq, batch) True where s'_t is terminal (not on time-limit truncation)
    :param gamma: discount factor
    :return: (seq, batch)
    """
    return td_targets(rewards, next_values, terminations, gamma) - values


def td_targets(rewards: th.Tensor, next_values: th.Tensor, terminations: th.Tensor, gamma: float) -> th.Tensor:
    """
    One-step TD targets ``r_t + gamma * (1 - terminated_t) * V(s'_t)`` (the lecture's Code Ex.1).
    """
    return rewards + gamma * bootstrapped_next_values(next_values, terminations)


def generalized_advantages(
    deltas: th.Tensor, continues: th.Tensor, gamma: float, gae_lambda: float, segment_mask: th.Tensor | None = None
) -> th.Tensor:
    """
    GAE(gamma, lambda): ``A_t = sum_k (gamma * lambda)^k delta_{t+k}``, the sum stopping
    where ``continues`` is False. ``gae_lambda = 0`` gives the one-step TD error.

    :param deltas: (seq, batch) TD errors
    :param continues: (seq, batch) boolean
    :param segment_mask: for segments, their mask (``continues`` is then ``segment_continues(segment_mask)``):
        the sums take :func:`segment_backward_sum`'s faster form
    :return: (seq, batch)
    """
    return _backward_sum(deltas, gamma * gae_lambda, continues, segment_mask)


def monte_carlo_returns(
    rewards: th.Tensor,
    next_values: th.Tensor,
    terminations: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    segment_mask: th.Tensor | None = None,
) -> th.Tensor:
    """
    Discounted reward-to-go ``G_t = r_t + gamma * G_{t+1}`` (the "Value Loss" slide), which
    ends at a termination and is bootstrapped with ``gamma * V(s'_t)`` where the data is cut
    (time-limit truncation, segment end or rollout end).

    :return: (seq, batch)
    """
    cut_bootstrap = th.where(continues, th.zeros_like(next_values), bootstrapped_next_values(next_values, terminations))
    return _backward_sum(rewards + gamma * cut_bootstrap, gamma, continues, segment_mask)


def advantages_and_targets(
    rewards: th.Tensor,
    values: th.Tensor,
    next_values: th.Tensor,
    terminations: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    gae_lambda: float,
    value_target: str,
    segment_mask: th.Tensor | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """
    GAE advantages and the value targets of one scope.

    :param value_target: ``"td"`` (r + gamma V(s')), ``"lambda"`` (A + V(s), SB3's) or
        ``"mc"`` (bootstrapped reward-to-go)
    :param segment_mask: in segment scope, the segments' mask (``continues`` is ``segment_continues(segment_mask)``)
    :return: advantages and value targets, both (seq, batch)
    """
    deltas = td_errors(rewards, values, next_values, terminations, gamma)
    advantages = generalized_advantages(deltas, continues, gamma, gae_lambda, segment_mask)
    if value_target == "td":
        targets = td_targets(rewards, next_values, terminations, gamma)
    elif value_target == "lambda":
        targets = advantages + values
    elif value_target == "mc":
        targets = monte_carlo_returns(rewards, next_values, terminations, continues, gamma, segment_mask)
    else:
        raise ValueError(f"Unknown value_target {value_target!r}, expected one of {VALUE_TARGETS}")
    return advantages, targets
