"""Segmenting, GAE and the value targets against plain-loop references on random rollouts."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_lecture_ppo.common.buffers import SegmentRolloutBuffer, compute_rollout_advantages, segment_indices
from sb3_lecture_ppo.common import segments
from sb3_lecture_ppo.common.segments import (
    advantages_and_targets,
    discounted_backward_sum,
    discounted_backward_sum_loop,
    discounted_backward_sum_matrix,
    segment_backward_sum,
    segment_continues,
    td_errors,
)
from tests.reference import random_rollout, reference_advantages_and_targets, reference_segments

SHAPES = [(1, 1, 1), (7, 1, 3), (50, 3, 16), (64, 4, 5), (33, 2, 33)]  # (n_steps, n_envs, seq_length)


@pytest.mark.parametrize("n_steps, n_envs, seq_length", SHAPES)
@pytest.mark.parametrize("seed", range(3))
def test_segment_indices_match_reference(n_steps, n_envs, seq_length, seed):
    rollout = random_rollout(n_steps, n_envs, seed)
    indices, mask = segment_indices(rollout.episode_starts, seq_length)
    expected = reference_segments(rollout.episode_starts, seq_length)

    assert indices.shape == mask.shape == (seq_length, len(expected))
    for column, segment in enumerate(expected):
        length = len(segment)
        assert mask[:, column].tolist() == [True] * length + [False] * (seq_length - length)
        assert indices[:length, column].tolist() == segment
        # pad steps repeat the segment's last real step ("append the last data until the end")
        assert (indices[length:, column] == segment[-1]).all()


@pytest.mark.parametrize("seed", range(5))
def test_every_transition_once_and_no_segment_crosses_an_episode_start(seed):
    n_steps, n_envs, seq_length = 40, 3, 8
    rollout = random_rollout(n_steps, n_envs, seed, end_probability=0.3)
    indices, mask = segment_indices(rollout.episode_starts, seq_length)

    real = np.sort(indices[mask])
    np.testing.assert_array_equal(real, np.arange(n_steps * n_envs))
    steps, envs = np.divmod(indices, n_envs)
    for column in range(indices.shape[1]):
        real_steps = steps[mask[:, column], column]
        assert len(set(envs[:, column])) == 1
        assert np.all(np.diff(real_steps) == 1)
        # an episode start may only be a segment's first step
        assert not rollout.episode_starts[real_steps[1:], envs[0, column]].any()
        assert mask[0, column]


def filled_buffer(rollout, seq_length, scope, value_target, gamma, gae_lambda):
    n_steps, n_envs = rollout.rewards.shape
    buffer = SegmentRolloutBuffer(
        n_steps,
        spaces.Box(-1, 1, (2,)),
        spaces.Discrete(3),
        device="cpu",
        gamma=gamma,
        gae_lambda=gae_lambda,
        n_envs=n_envs,
        seq_length=seq_length,
        advantage_scope=scope,
        value_target=value_target,
    )
    for step in range(n_steps):
        buffer.add(
            np.zeros((n_envs, 2), dtype=np.float32),
            np.zeros((n_envs, 1)),
            rollout.rewards[step],
            rollout.episode_starts[step],
            th.as_tensor(rollout.values[step]),
            th.zeros(n_envs),
            next_obs=np.zeros((n_envs, 2), dtype=np.float32),
            terminated=rollout.terminations[step],
            done=rollout.dones[step],
            distribution_params=th.zeros(n_envs, 3),
        )
    buffer.finalize()
    buffer.compute_advantages(th.as_tensor(rollout.values.reshape(-1)), th.as_tensor(rollout.next_values.reshape(-1)))
    return buffer


@pytest.fixture(params=["matrix", "loop"])
def summation(request, monkeypatch):
    """Run a test with the matrix form of the discounted sums where it applies, and with the loop only."""
    if request.param == "loop":
        monkeypatch.setattr(segments, "MATRIX_FORM_MAX_ELEMENTS", 0)
    return request.param


@pytest.mark.parametrize("scope", ["segment", "rollout"])
@pytest.mark.parametrize("value_target", ["td", "lambda", "mc"])
@pytest.mark.parametrize("gae_lambda", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_advantages_and_targets_match_reference(scope, value_target, gae_lambda, seed, summation):
    gamma, seq_length = 0.97, 6
    rollout = random_rollout(30, 3, seed)
    buffer = filled_buffer(rollout, seq_length, scope, value_target, gamma, gae_lambda)
    advantages, targets = reference_advantages_and_targets(rollout, scope, seq_length, gamma, gae_lambda, value_target)
    np.testing.assert_allclose(buffer.advantages.reshape(-1), advantages, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.returns.reshape(-1), targets, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_steps", [12, 200])  # the matrix form alone (summed one by one) and the step loop
@pytest.mark.parametrize("value_target", ["td", "lambda", "mc"])
def test_rollout_advantages_of_several_buffers_at_once_equal_each_alone_bit_for_bit(n_steps, value_target):
    rollouts = [random_rollout(n_steps, 2, seed) for seed in range(4)]
    buffers = [filled_buffer(rollout, 1, "rollout", value_target, 0.97, 0.9) for rollout in rollouts]
    alone = [(buffer.advantages.copy(), buffer.returns.copy()) for buffer in buffers]
    assert segments.uses_matrix_form(n_steps, 2) == (n_steps == 12)
    for buffer in buffers:
        buffer.store_advantages(th.full((n_steps * 2,), th.nan), th.full((n_steps * 2,), th.nan))
    compute_rollout_advantages(
        buffers,
        [th.as_tensor(rollout.values.reshape(-1)) for rollout in rollouts],
        [th.as_tensor(rollout.next_values.reshape(-1)) for rollout in rollouts],
    )
    for buffer, (advantages, returns) in zip(buffers, alone, strict=True):
        np.testing.assert_array_equal(buffer.advantages, advantages)
        np.testing.assert_array_equal(buffer.returns, returns)
        assert th.equal(buffer.tensor("advantages"), th.as_tensor(advantages.reshape(-1)))


@pytest.mark.parametrize("scope", ["segment", "rollout"])
def test_lambda_zero_is_the_one_step_td_error(scope):
    gamma = 0.9
    rollout = random_rollout(25, 2, seed=11)
    buffer = filled_buffer(rollout, 5, scope, "td", gamma, gae_lambda=0.0)
    bootstrap = np.where(rollout.terminations, 0.0, rollout.next_values)
    expected = rollout.rewards + gamma * bootstrap - rollout.values
    np.testing.assert_allclose(buffer.advantages, expected, rtol=1e-6, atol=1e-6)
    # the TD target is the advantage plus V(s) here
    np.testing.assert_allclose(buffer.returns, expected + rollout.values, rtol=1e-6, atol=1e-6)


def test_truncation_bootstraps_and_termination_does_not():
    """One env, two episodes: the first truncated at step 2, the second terminated at step 4."""
    gamma = 0.5
    rewards = th.ones(5, 1)
    values = th.zeros(5, 1)
    next_values = th.full((5, 1), 10.0)
    terminations = th.tensor([[False], [False], [False], [False], [True]])
    continues = th.tensor([[True], [True], [False], [True], [False]])
    _, mc_returns = advantages_and_targets(rewards, values, next_values, terminations, continues, gamma, 1.0, "mc")
    # step 2 is truncated: G_2 = r + gamma * V(final observation) = 1 + 5
    assert mc_returns[:, 0].tolist() == [1 + 0.5 * (1 + 0.5 * 6), 1 + 0.5 * 6, 6.0, 1 + 0.5 * 1, 1.0]
    _, td = advantages_and_targets(rewards, values, next_values, terminations, continues, gamma, 1.0, "td")
    assert td[:, 0].tolist() == [6.0, 6.0, 6.0, 6.0, 1.0]


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), -float("inf")])
def test_pad_steps_never_reach_real_steps(poison, summation):
    rollout = random_rollout(20, 2, seed=3)
    indices, mask_np = segment_indices(rollout.episode_starts, 4)
    mask = th.as_tensor(mask_np)

    def gather(array, fill=None):
        segments = th.as_tensor(array.reshape(-1))[th.as_tensor(indices)].clone()
        if fill is not None:
            segments[~mask] = fill
        return segments

    clean = advantages_and_targets(
        gather(rollout.rewards),
        gather(rollout.values),
        gather(rollout.next_values),
        gather(rollout.terminations),
        segment_continues(mask),
        0.99,
        0.95,
        "mc",
    )
    poisoned = advantages_and_targets(
        gather(rollout.rewards, poison),
        gather(rollout.values, poison),
        gather(rollout.next_values, poison),
        gather(rollout.terminations),
        segment_continues(mask),
        0.99,
        0.95,
        "mc",
    )
    for clean_part, poisoned_part in zip(clean, poisoned, strict=True):
        assert th.isfinite(poisoned_part[mask]).all()
        th.testing.assert_close(clean_part[mask], poisoned_part[mask])


def test_discounted_backward_sum_and_td_errors_by_hand():
    values = th.tensor([[1.0], [2.0], [3.0]])
    continues = th.tensor([[True], [True], [False]])
    assert discounted_backward_sum(values, 0.5, continues)[:, 0].tolist() == [1 + 0.5 * (2 + 0.5 * 3), 2 + 1.5, 3.0]
    deltas = td_errors(th.tensor([1.0]), th.tensor([0.5]), th.tensor([2.0]), th.tensor([False]), gamma=0.9)
    assert deltas.item() == pytest.approx(1 + 0.9 * 2 - 0.5)


@pytest.mark.parametrize("discount", [0.0, 0.5, 0.97, 1.0])
@pytest.mark.parametrize("seq, batch", [(1, 1), (5, 3), (16, 40), (37, 2)])
@pytest.mark.parametrize("seed", range(3))
def test_matrix_and_loop_sums_agree_and_unreached_nan_stays_out(discount, seq, batch, seed):
    generator = th.Generator().manual_seed(seed)
    values = th.randn(seq, batch, generator=generator)
    continues = th.rand(seq, batch, generator=generator) < 0.8
    # A NaN right after a break is reached by no earlier step: it may only show at its own step.
    poisoned = (th.rand(seq, batch, generator=generator) < 0.2) & th.cat([th.zeros(1, batch, dtype=th.bool), ~continues[:-1]])
    values[poisoned] = float("nan")
    loop = discounted_backward_sum_loop(values, discount, continues)
    matrix = discounted_backward_sum_matrix(values, discount, continues)
    th.testing.assert_close(matrix, loop, equal_nan=True, rtol=1e-5, atol=1e-5)
    assert th.isnan(matrix).eq(poisoned).all()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("discount", [0.0, 0.9, 1.0])
def test_segment_backward_sum_equals_the_loop(seed, discount):
    generator = th.Generator().manual_seed(seed)
    seq_length, n_segments = 7, 40
    lengths = th.randint(1, seq_length + 1, (n_segments,), generator=generator)
    mask = th.arange(seq_length)[:, None] < lengths[None, :]
    values = th.randn(seq_length, n_segments, generator=generator)
    values[~mask] = float("nan")  # pad steps may hold anything
    expected = discounted_backward_sum_loop(values, discount, segment_continues(mask))
    fast = segment_backward_sum(values, discount, mask)
    th.testing.assert_close(fast[mask], expected[mask], atol=1e-5, rtol=1e-5)
    assert th.isfinite(fast[mask]).all() and fast[~mask].isnan().all()
