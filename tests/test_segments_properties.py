"""
Property-based tests (Hypothesis) of the segment maths against the slow references of ``tests/reference.py``:
random episode lengths, dones and truncations at any position, seq_length 1..n_steps, n_envs 1..8.
Derandomized: the same examples on every run.
"""

import numpy as np
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sb3_lecture_ppo.common import segments
from sb3_lecture_ppo.common.buffers import segment_indices
from sb3_lecture_ppo.common.segments import advantages_and_targets, segment_continues
from tests.reference import RandomRollout, reference_advantages_and_targets, reference_segments
from tests.test_segments import filled_buffer

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[RandomRollout, int]:
    """A rollout with dones and truncations anywhere, and a seq_length in 1..n_steps."""
    n_steps = draw(st.integers(1, 24))
    n_envs = draw(st.integers(1, 8))
    shape = (n_steps, n_envs)
    dones = draw(hnp.arrays(np.bool_, shape))
    truncated = draw(hnp.arrays(np.bool_, shape))
    episode_starts = np.zeros(shape, dtype=bool)
    episode_starts[0] = draw(hnp.arrays(np.bool_, (n_envs,)))
    episode_starts[1:] = dones[:-1]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rollout = RandomRollout(
        rewards=rng.normal(size=shape).astype(np.float32),
        values=rng.normal(size=shape).astype(np.float32),
        next_values=rng.normal(size=shape).astype(np.float32),
        episode_starts=episode_starts,
        dones=dones,
        terminations=dones & ~truncated,
    )
    return rollout, draw(st.integers(1, n_steps))


@PROPERTY_SETTINGS
@given(rollouts())
def test_segments_and_masks_equal_the_reference(case):
    rollout, seq_length = case
    indices, mask = segment_indices(rollout.episode_starts, seq_length)
    expected = reference_segments(rollout.episode_starts, seq_length)
    assert indices.shape == mask.shape == (seq_length, len(expected))
    for column, segment in enumerate(expected):
        assert mask[:, column].tolist() == [True] * len(segment) + [False] * (seq_length - len(segment))
        assert indices[: len(segment), column].tolist() == segment
        assert (indices[len(segment) :, column] == segment[-1]).all()


@PROPERTY_SETTINGS
@given(
    rollouts(),
    st.sampled_from(["segment", "rollout"]),
    st.sampled_from(["td", "lambda", "mc"]),
    st.floats(0.0, 1.0),
    st.floats(0.5, 1.0),
    st.booleans(),
)
def test_gae_and_the_three_targets_equal_the_reference(case, scope, value_target, gae_lambda, gamma, loop_only):
    rollout, seq_length = case
    previous = segments.MATRIX_FORM_MAX_ELEMENTS
    try:
        if loop_only:
            segments.MATRIX_FORM_MAX_ELEMENTS = 0
        buffer = filled_buffer(rollout, seq_length, scope, value_target, gamma, gae_lambda)
    finally:
        segments.MATRIX_FORM_MAX_ELEMENTS = previous
    advantages, targets = reference_advantages_and_targets(rollout, scope, seq_length, gamma, gae_lambda, value_target)
    np.testing.assert_allclose(buffer.advantages.reshape(-1), advantages, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(buffer.returns.reshape(-1), targets, rtol=1e-4, atol=1e-4)


@PROPERTY_SETTINGS
@given(rollouts(), st.sampled_from([float("nan"), float("inf"), -float("inf")]), st.sampled_from(["td", "lambda", "mc"]))
def test_no_nan_or_inf_from_a_pad_reaches_a_real_step(case, poison, value_target):
    rollout, seq_length = case
    indices_np, mask_np = segment_indices(rollout.episode_starts, seq_length)
    indices, mask = th.as_tensor(indices_np), th.as_tensor(mask_np)

    def gather(array: np.ndarray, fill: float | None = None) -> th.Tensor:
        gathered = th.as_tensor(array.reshape(-1))[indices].clone()
        if fill is not None:
            gathered[~mask] = fill
        return gathered

    def compute(fill: float | None) -> tuple[th.Tensor, th.Tensor]:
        return advantages_and_targets(
            gather(rollout.rewards, fill),
            gather(rollout.values, fill),
            gather(rollout.next_values, fill),
            gather(rollout.terminations),
            segment_continues(mask),
            0.99,
            0.9,
            value_target,
            segment_mask=mask,
        )

    for clean, poisoned in zip(compute(None), compute(poison), strict=True):
        assert th.isfinite(poisoned[mask]).all()
        th.testing.assert_close(clean[mask], poisoned[mask])


@PROPERTY_SETTINGS
@given(rollouts(), st.integers(1, 4), st.booleans())
def test_an_epoch_of_minibatches_holds_every_real_step_once_and_no_pad(case, segments_per_batch, with_segments):
    rollout, seq_length = case
    buffer = filled_buffer(rollout, seq_length, "segment", "td", 0.99, 0.95)
    # each transition's reward is made its own flat index, so a minibatch's rewards name its steps
    buffer._tensors["rewards"] = th.arange(buffer.buffer_size * buffer.n_envs, dtype=th.float32)
    buffer._tensors["advantages"] = buffer._tensors["rewards"]
    seen = []
    for batch in buffer.get_steps(segments_per_batch * seq_length, with_segments):
        seen += batch.advantages.long().tolist()
        # the segment layout (for recomputed advantages) covers exactly the flat real steps
        if batch.segments is not None:
            assert int(batch.segments.mask.sum()) == len(batch.advantages)
    assert sorted(seen) == list(range(buffer.buffer_size * buffer.n_envs))
