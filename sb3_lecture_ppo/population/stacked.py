"""
A population's rollout forward pass without ``vmap``: a copy of the template policy whose layers read the stacked
parameters and run every member at once on ``(members, batch, ...)`` inputs (``torch.baddbmm`` for each linear
layer; activations are elementwise), so that the package's own forward code (:func:`actor_latent_and_values`,
:func:`sample_actions`) runs once for all members. Policies with other parameterized layers (convolutions,
normalization) or other action distributions keep ``vmap``.
"""

import copy
import math
from typing import Any

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution, DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor, MlpExtractor
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


class FusedGaussianMlpAct:
    """
    The rollout's forward pass and sampling of SB3's MLP actor-critic with Gaussian actions (a flattening features
    extractor shared by actor and critic, an ``MlpExtractor`` of linear layers and activations, linear heads) for
    all members at once, in fewer and cheaper calls than the module tree: the actor's and critic's first layers as one
    matmul, every weight transposed into a contiguous copy, and ``exp(log_std)`` and the log-density's terms that do
    not depend on the action taken once per rollout (:meth:`refresh`, after each update). The operations after the
    matmuls are those of :func:`~sb3_lecture_ppo.common.distributions.sample_actions` (the same random draws give the
    same actions up to the matmuls' rounding; tested against :func:`stacked_act`).
    """

    def __init__(self, policy: ActorCriticPolicy) -> None:
        self.policy = policy
        self.actor_layers = list(policy.mlp_extractor.policy_net)
        self.critic_layers = list(policy.mlp_extractor.value_net)
        self.refresh()

    @classmethod
    def build(cls, policy: ActorCriticPolicy | None) -> "FusedGaussianMlpAct | None":
        """The fused forward pass of a stacked policy (:func:`stacked_policy`), or None where its shape is another."""
        if policy is None or not isinstance(policy.action_dist, DiagGaussianDistribution) or policy.use_sde:
            return None
        if not (policy.share_features_extractor and isinstance(policy.features_extractor, FlattenExtractor)):
            return None
        if type(policy.mlp_extractor) is not MlpExtractor or not isinstance(policy.action_net, StackedLinear):
            return None
        actor, critic = list(policy.mlp_extractor.policy_net), list(policy.mlp_extractor.value_net)
        firsts = [layers[0] if layers else None for layers in (actor, critic)]
        if not all(isinstance(layer, StackedLinear) and layer.stacked_bias is not None for layer in firsts):
            return None
        layers_known = all(
            isinstance(layer, StackedLinear) or not any(True for _ in layer.parameters()) for layer in actor + critic
        )
        return cls(policy) if layers_known and isinstance(policy.value_net, StackedLinear) else None

    @th.no_grad()
    def refresh(self) -> None:
        """Read the stacked parameters as they are now (call after every optimizer step that precedes a rollout)."""
        first_actor, first_critic = self.actor_layers[0], self.critic_layers[0]
        assert isinstance(first_actor, StackedLinear) and isinstance(first_critic, StackedLinear)
        assert first_actor.stacked_bias is not None and first_critic.stacked_bias is not None
        self.split = first_actor.stacked_weight.shape[1]
        self.first = _transposed(
            th.cat([first_actor.stacked_weight, first_critic.stacked_weight], dim=1),
            th.cat([first_actor.stacked_bias, first_critic.stacked_bias], dim=1),
        )
        self.actor = [_transposed_layer(layer) for layer in self.actor_layers[1:]]
        self.critic = [_transposed_layer(layer) for layer in self.critic_layers[1:]]
        self.action_head = _transposed_layer(self.policy.action_net)
        self.value_head = _transposed_layer(self.policy.value_net)
        self.std_unit = self.policy.stacked_direct["log_std"].detach().unsqueeze(1).exp()  # type: ignore[index]  # (K, 1, action_dim)
        self.inverse_two_variances = 1 / (2 * self.std_unit**2)
        self.log_prob_constant = (-self.std_unit.log() - math.log(math.sqrt(2 * math.pi))).sum(dim=-1)  # (K, 1)

    @th.no_grad()
    def __call__(self, observations: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """:func:`stacked_act` of ``(K, batch, *obs_shape)`` observations."""
        features = observations.reshape(*observations.shape[:2], -1).float()
        first = _apply(self.first, features)
        latent_pi = _run(self.actor, first[..., : self.split])
        latent_vf = _run(self.critic, first[..., self.split :])
        mean = _apply(self.action_head, latent_pi)
        std = self.std_unit.expand_as(mean)
        actions = mean + th.empty_like(mean).normal_() * std  # Normal.rsample, as sample_actions
        log_prob = self.log_prob_constant - ((actions - mean) ** 2 * self.inverse_two_variances).sum(dim=-1)
        values = _apply(self.value_head, latent_vf)
        return actions, log_prob, th.cat([mean, std], dim=-1), values.reshape(observations.shape[:2])


def _transposed(weight: th.Tensor, bias: th.Tensor | None) -> tuple[th.Tensor, th.Tensor | None]:
    """``(K, out, in)`` weights as a contiguous ``(K, in, out)`` copy and the bias as ``(K, 1, out)``."""
    return weight.detach().transpose(1, 2).contiguous(), None if bias is None else bias.detach().unsqueeze(1)


def _transposed_layer(layer: Any) -> Any:
    return _transposed(layer.stacked_weight, layer.stacked_bias) if isinstance(layer, StackedLinear) else layer


def _apply(weights: tuple[th.Tensor, th.Tensor | None], inputs: th.Tensor) -> th.Tensor:
    weight_t, bias = weights
    return th.bmm(inputs, weight_t) if bias is None else th.baddbmm(bias, inputs, weight_t)


def _run(layers: list[Any], inputs: th.Tensor) -> th.Tensor:
    """Transposed linear layers (pairs) and activations (modules), in order."""
    outputs = inputs
    for layer in layers:
        outputs = _apply(layer, outputs) if isinstance(layer, tuple) else layer(outputs)
    return outputs
