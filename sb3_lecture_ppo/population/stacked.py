"""
A population's rollout forward pass without ``vmap``: a copy of the template policy whose layers read the stacked
parameters and run every member at once on ``(members, batch, ...)`` inputs (``torch.baddbmm`` for each linear
layer; activations are elementwise), so that the package's own forward code (:func:`actor_latent_and_values`,
:func:`sample_actions`) runs once for all members. Policies with other parameterized layers (convolutions,
normalization) or other action distributions keep ``vmap``.
"""

import copy
from typing import Any

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from sb3_lecture_ppo.common.distributions import sample_actions
from sb3_lecture_ppo.common.policies import actor_latent_and_values


class StackedLinear(nn.Module):
    """``nn.Linear`` of K members at once: ``(K, batch, in)`` to ``(K, batch, out)``."""

    def __init__(self, weight: th.Tensor, bias: th.Tensor | None) -> None:
        super().__init__()
        self.stacked_weight = weight  # (K, out, in): the population's tensor itself
        self.stacked_bias = bias  # (K, out)

    def forward(self, inputs: th.Tensor) -> th.Tensor:
        weight_t = self.stacked_weight.transpose(1, 2)
        if self.stacked_bias is None:
            return th.bmm(inputs, weight_t)
        return th.baddbmm(self.stacked_bias.unsqueeze(1), inputs, weight_t)


def stacked_policy(template: ActorCriticPolicy, params: dict[str, th.Tensor]) -> ActorCriticPolicy | None:
    """
    ``template`` with every layer reading ``params`` (name to ``(K, ...)`` tensor) for all members at once, or None
    where a layer or the action distribution is not one this covers. The layers read the tensors themselves: the
    update's gradients flow to them, the rollout runs them under ``no_grad``, and both see the optimizer's in-place
    steps.
    """
    if not isinstance(template.action_dist, CategoricalDistribution | DiagGaussianDistribution):
        return None
    policy = copy.deepcopy(template)
    for name, module in list(policy.named_modules()):
        if isinstance(module, nn.Linear):
            _replace(policy, name, StackedLinear(params[f"{name}.weight"], params.get(f"{name}.bias")))
        elif isinstance(module, nn.Flatten):
            _replace(policy, name, nn.Flatten(start_dim=module.start_dim + 1, end_dim=module.end_dim))
        elif any(True for _ in module.parameters(recurse=False)) and name != "":
            return None
    policy.stacked_direct = {name: params[name] for name, _ in template.named_parameters(recurse=False)}  # type: ignore[assignment]
    for name in policy.stacked_direct:  # type: ignore[union-attr]
        delattr(policy, name)
    refresh_direct_parameters(policy)
    policy.optimizer = None  # type: ignore[assignment]  # the population's optimizer steps the stacked tensors
    return policy


def refresh_direct_parameters(policy: ActorCriticPolicy) -> None:
    """
    The policy's own parameters (``log_std``) as ``(K, 1, ...)`` views of the stacked tensors, broadcast over each
    member's batch: made anew before each use where gradients flow (a view made once would outlive its graph).
    """
    for name, tensor in policy.stacked_direct.items():  # type: ignore[union-attr, operator]
        setattr(policy, name, tensor.unsqueeze(1))


def stacked_act(policy: ActorCriticPolicy, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """Actions, log-probabilities, distribution parameters and values of ``(K, batch, ...)`` observations."""
    latent_pi, values = actor_latent_and_values(policy, observations)
    sampled = sample_actions(policy, latent_pi)
    return sampled.actions, sampled.log_prob, sampled.params, values.reshape(observations.shape[:2])


def _replace(root: nn.Module, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
