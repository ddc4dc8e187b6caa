"""
Batches of observations that are either one tensor or, for ``Dict`` observation spaces, a dict
of tensors with the same leading (batch) dimension. The rollout buffer and the update gather,
join and count them with these functions, whatever the space.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

TensorObs = th.Tensor | dict[str, th.Tensor]
"""A batch of observations as the policy takes it: ``(batch, *obs_shape)`` or a dict of those."""


def map_observations(observations: TensorObs, function: Callable[[th.Tensor], th.Tensor]) -> TensorObs:
    """``function`` applied to the tensor, or to each tensor of the dict."""
    if isinstance(observations, dict):
        return {key: function(value) for key, value in observations.items()}
    return function(observations)


def take_observations(observations: TensorObs, index: Any) -> TensorObs:
    """``observations[index]`` along the batch dimension."""
    return map_observations(observations, lambda tensor: tensor[index])


def concat_observations(first: TensorObs, second: TensorObs, dim: int = 0) -> TensorObs:
    """The two batches, one after the other (along ``dim``, the batch axis: 1 for a population's)."""
    if isinstance(first, dict):
        assert isinstance(second, dict)
        return {key: th.cat([value, second[key]], dim=dim) for key, value in first.items()}
    assert isinstance(second, th.Tensor)
    return th.cat([first, second], dim=dim)


def split_observations(observations: TensorObs, sizes: list[int]) -> list[TensorObs]:
    """``torch.split`` of the batch into consecutive parts of the given sizes."""
    if isinstance(observations, dict):
        parts = {key: th.split(value, sizes) for key, value in observations.items()}
        return [{key: part[index] for key, part in parts.items()} for index in range(len(sizes))]
    return list(th.split(observations, sizes))


def n_observations(observations: TensorObs) -> int:
    """Size of the batch."""
    if isinstance(observations, dict):
        return len(next(iter(observations.values())))
    return len(observations)


def storage_dtype(space: spaces.Space) -> np.dtype:
    """How the rollout buffer stores a (sub)space: images stay uint8 (4x smaller), the rest float32 (as SB3)."""
    dtype = np.dtype(space.dtype) if space.dtype is not None else np.dtype(np.float32)
    return dtype if dtype == np.uint8 else np.dtype(np.float32)


def copy_observations(observations: Any) -> Any:
    """A copy of a VecEnv's batch of observations (an array, or a dict of arrays)."""
    if isinstance(observations, dict):
        return {key: np.array(value, copy=True) for key, value in observations.items()}
    return np.array(observations, copy=True)


def set_observation(batch: Any, env_index: int, observation: Any) -> None:
    """Write one env's observation into a batch (an array, or a dict of arrays)."""
    if isinstance(batch, dict):
        for key, value in batch.items():
            value[env_index] = observation[key]
    else:
        batch[env_index] = observation
