"""
The lecture's actor-critic network as an SB3 ``ActorCriticPolicy``.

Code Ex.1's ``Agent``: a shared encoder ``Linear-ELU-Linear-ELU`` (hidden 128), a value head
``Linear-ELU-Linear -> 1`` and a policy head ``Linear-ELU-Linear -> actions`` (softmax for
Discrete; the mean of a diagonal Gaussian with a state-independent log std for Box).
In SB3 terms: the encoder is the features extractor, the heads' hidden layers are
``net_arch=dict(pi=[hidden], vf=[hidden])`` with ELU, and SB3's ``action_net`` / ``value_net``
are the heads' output layers. ``share_features_extractor=False`` gives separate actor and
critic networks (the PPO-Clip pseudo-code's theta and phi). For ``Dict`` observations the encoder
runs on SB3's ``CombinedExtractor`` (:class:`LectureMultiInputActorCriticPolicy`). ``encoder_layers=0`` drops the
encoder (SB3's ``FlattenExtractor``): with ``net_arch=dict(pi=[64, 64], vf=[64, 64])`` and
``activation_fn=nn.Tanh`` the network is SB3's ``ActorCriticPolicy``'s, weight for weight.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_lecture_ppo.common.observations import take_observations


class LectureEncoder(BaseFeaturesExtractor):
    """
    The lecture's shared encoder: flatten, then ``Linear-ELU-Linear-ELU``.

    :param observation_space: Observation space
    :param hidden_size: width of the layers (the lecture's ``hidden_size``)
    :param n_layers: how many ``Linear-ELU`` layers (the lecture's 2)
    """

    def __init__(self, observation_space: spaces.Space, hidden_size: int = 128, n_layers: int = 2) -> None:
        super().__init__(observation_space, features_dim=hidden_size)
        self.encoder = nn.Sequential(
            nn.Flatten(), *_elu_layers(get_flattened_obs_dim(observation_space), hidden_size, n_layers)
        )

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.encoder(observations)


class LectureMultiInputEncoder(BaseFeaturesExtractor):
    """
    The lecture's shared encoder for ``Dict`` observations: SB3's ``CombinedExtractor`` (a
    ``NatureCNN`` per image, a flatten per other key, concatenated), then ``Linear-ELU-Linear-ELU``.

    :param observation_space: a ``Dict`` observation space
    :param hidden_size: width of the encoder's layers (the lecture's ``hidden_size``)
    :param n_layers: how many ``Linear-ELU`` layers (the lecture's 2)
    :param cnn_output_dim: features of each image's ``NatureCNN`` (``CombinedExtractor``'s)
    :param normalized_image: images are already in [0, 1] (``CombinedExtractor``'s)
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        hidden_size: int = 128,
        n_layers: int = 2,
        cnn_output_dim: int = 256,
        normalized_image: bool = False,
    ) -> None:
        super().__init__(observation_space, features_dim=hidden_size)
        self.combined = CombinedExtractor(observation_space, cnn_output_dim, normalized_image)
        self.encoder = nn.Sequential(*_elu_layers(self.combined.features_dim, hidden_size, n_layers))

    def forward(self, observations: dict[str, th.Tensor]) -> th.Tensor:  # type: ignore[override]
        return self.encoder(self.combined(observations))


def _elu_layers(in_features: int, hidden_size: int, n_layers: int) -> list[nn.Module]:
    """``n_layers`` times ``Linear-ELU``, the first from ``in_features``."""
    if n_layers < 1:
        raise ValueError(f"The lecture's encoder needs n_layers={n_layers} >= 1; for no encoder pass encoder_layers=0.")
    layers: list[nn.Module] = []
    for _ in range(n_layers):
        layers += [nn.Linear(in_features, hidden_size), nn.ELU()]
        in_features = hidden_size
    return layers


class LectureActorCriticPolicy(ActorCriticPolicy):
    """
    The lecture's actor-critic network. All of :class:`~stable_baselines3.common.policies.ActorCriticPolicy`'s
    keyword arguments are accepted; the defaults differ only to give the lecture's architecture.

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule
    :param hidden_size: width of the encoder and of the heads' hidden layer (the lecture's ``hidden_size``)
    :param encoder_layers: ``Linear-ELU`` layers of the shared encoder (the lecture's 2); 0 for none (SB3's
        ``FlattenExtractor``: the heads, ``net_arch``, see the observation itself)
    :param net_arch: hidden layers of the heads; default ``dict(pi=[hidden_size], vf=[hidden_size])``
    :param activation_fn: activation of the heads' hidden layers (ELU as the lecture)
    :param features_extractor_class: the shared encoder (:class:`LectureEncoder`)
    :param features_extractor_kwargs: its kwargs; ``hidden_size`` is filled in for :class:`LectureEncoder`
    :param share_features_extractor: False for separate actor and critic encoders
    :param kwargs: the other ``ActorCriticPolicy`` arguments (``ortho_init``, ``log_std_init``, ``use_sde``, ...)
    """

    lecture_encoder_class: type[BaseFeaturesExtractor] = LectureEncoder
    """The lecture's encoder for this kind of observation, and what ``encoder_layers=0`` leaves of it."""
    bare_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        hidden_size: int = 128,
        encoder_layers: int = 2,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ELU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        **kwargs: Any,
    ) -> None:
        _check_policy_kwargs(type(self), kwargs)
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"policy_kwargs hidden_size={hidden_size!r} must be a positive integer, e.g. 128.")
        if not isinstance(encoder_layers, int) or encoder_layers < 0:
            raise ValueError(
                f"policy_kwargs encoder_layers={encoder_layers!r} must be an integer >= 0: 2 for the lecture's encoder, "
                "0 for none (SB3's FlattenExtractor)."
            )
        self.hidden_size = hidden_size
        self.encoder_layers = encoder_layers
        if net_arch is None:
            net_arch = dict(pi=[hidden_size], vf=[hidden_size])
        features_extractor_kwargs = dict(features_extractor_kwargs or {})
        if features_extractor_class is None:
            features_extractor_class = self.lecture_encoder_class
        if features_extractor_class is self.lecture_encoder_class and encoder_layers == 0:
            features_extractor_class = self.bare_extractor_class
        elif features_extractor_class is self.lecture_encoder_class:
            features_extractor_kwargs.setdefault("hidden_size", hidden_size)
            features_extractor_kwargs.setdefault("n_layers", encoder_layers)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            share_features_extractor=share_features_extractor,
            **kwargs,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            hidden_size=self.hidden_size,
            encoder_layers=self.encoder_layers,
            share_features_extractor=self.share_features_extractor,
        )
        return data


class LectureActorCriticCnnPolicy(LectureActorCriticPolicy):
    """
    The actor-critic for image observations (the PPO paper's Atari network): SB3's ``NatureCNN``
    trunk (3 convolutions, then ``Linear -> 512``, ReLU), shared by actor and critic by default
    (``share_features_extractor=False`` gives each its own trunk, the lecture's separate networks),
    and linear heads on the trunk's 512 features; ``net_arch=dict(pi=[h], vf=[h])`` adds the
    lecture's hidden head layer. Images are stored as uint8 in the rollout buffer and scaled to
    [0, 1] in the forward pass (SB3's ``normalize_images``).

    :param net_arch: hidden layers of the heads (default none, as the paper's network)
    :param activation_fn: activation of the heads' hidden layers
    :param features_extractor_class: the trunk (``NatureCNN``)
    :param kwargs: the other :class:`LectureActorCriticPolicy` arguments
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=dict(pi=[], vf=[]) if net_arch is None else net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class,
            **kwargs,
        )


class LectureMultiInputActorCriticPolicy(LectureActorCriticPolicy):
    """
    The lecture's actor-critic for ``Dict`` observations (``"MultiInputPolicy"``): the lecture's
    encoder (:class:`LectureMultiInputEncoder`) on SB3's ``CombinedExtractor``, then the same heads.
    ``encoder_layers=0`` leaves the ``CombinedExtractor`` alone (SB3's ``MultiInputActorCriticPolicy``'s trunk).
    All other arguments are :class:`LectureActorCriticPolicy`'s.
    """

    lecture_encoder_class = LectureMultiInputEncoder
    bare_extractor_class = CombinedExtractor

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, **kwargs: Any
    ) -> None:
        if not isinstance(observation_space, spaces.Dict):
            raise ValueError(
                f"MultiInputPolicy needs a Dict observation space, not {observation_space}: use 'MlpPolicy' "
                "(or 'CnnPolicy' for images)."
            )
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


POLICY_KWARGS = (
    "hidden_size, encoder_layers, net_arch, activation_fn, features_extractor_class, features_extractor_kwargs, "
    "share_features_extractor, ortho_init, use_sde, log_std_init, full_std, use_expln, squash_output, "
    "normalize_images, optimizer_class, optimizer_kwargs"
)


def _check_policy_kwargs(policy_class: type, kwargs: dict[str, Any]) -> None:
    """Name the policy and its accepted keys where ``policy_kwargs`` holds a key no policy takes."""
    accepted = set(POLICY_KWARGS.split(", "))
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"policy_kwargs {', '.join(map(repr, unknown))} unknown to {policy_class.__name__}: it takes {POLICY_KWARGS}."
        )


SB3_POLICY_METHODS = ("forward", "evaluate_actions", "predict_values", "get_distribution", "_get_action_dist_from_latent")
"""The public ``ActorCriticPolicy`` methods that a user's policy class may override."""


def overrides_sb3_methods(policy: ActorCriticPolicy) -> bool:
    """
    Whether the policy's class overrides one of :data:`SB3_POLICY_METHODS`: the algorithms then go
    through those methods (SB3's way) instead of reading the network's layers, so that what the
    class does (a constant value, another distribution) is what trains.
    """
    return any(getattr(type(policy), name) is not getattr(ActorCriticPolicy, name) for name in SB3_POLICY_METHODS)


def distribution_and_values(
    policy: ActorCriticPolicy, obs: PyTorchObs, actor_rows: int | None = None
) -> tuple[Distribution, th.Tensor]:
    """
    One forward pass through both heads of any SB3 actor-critic policy.

    :param policy: the policy
    :param obs: a batch of observations, already a tensor
    :param actor_rows: build the action distribution of the first ``actor_rows`` observations only
        (the others are only valued); None for all
    :return: the action distribution and the values, (batch,)
    """
    if overrides_sb3_methods(policy):
        actor_obs = obs if actor_rows is None else take_observations(obs, slice(0, actor_rows))
        return policy.get_distribution(actor_obs), policy.predict_values(obs).flatten()
    latent_pi, values = actor_latent_and_values(policy, obs, actor_rows)
    return policy._get_action_dist_from_latent(latent_pi), values


def actor_latent_and_values(
    policy: ActorCriticPolicy, obs: PyTorchObs, actor_rows: int | None = None
) -> tuple[th.Tensor, th.Tensor]:
    """
    :func:`distribution_and_values` up to the actor's latent (the input of the action head).

    :return: the actor's latent of the first ``actor_rows`` observations and the values, (batch,)
    """
    features = policy.extract_features(obs)
    if policy.share_features_extractor:
        latent_pi, latent_vf = policy.mlp_extractor(features)
    else:
        pi_features, vf_features = features
        latent_pi = policy.mlp_extractor.forward_actor(pi_features)
        latent_vf = policy.mlp_extractor.forward_critic(vf_features)
    if actor_rows is not None:
        latent_pi = latent_pi[..., :actor_rows, :]
    return latent_pi, policy.value_net(latent_vf).squeeze(-1)  # (batch,), or a population's (members, batch)
