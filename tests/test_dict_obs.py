"""Dict observations: the segment buffer key by key, MultiInputPolicy for every algorithm, predict and save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import CombinedExtractor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize

from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO
from sb3_lecture_ppo.common.buffers import SegmentRolloutBuffer
from sb3_lecture_ppo.common.policies import LectureMultiInputEncoder
from tests.helpers import SplitDictEnv, tiny_kwargs

ALGORITHMS = [LecturePPO, LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG]


def algorithm_kwargs(algo: type, **overrides):
    kwargs = tiny_kwargs(**overrides)
    if algo is not LecturePPO:
        for ppo_only in ("batch_size", "n_epochs"):
            kwargs.pop(ppo_only)
    return kwargs


def dict_env(env_id: str = "CartPole-v1", n_envs: int = 2, image: bool = False, seed: int = 0):
    return make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=SplitDictEnv, wrapper_kwargs=dict(image=image))


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("image", [False, True])
def test_multi_input_policy_learns_on_dict_observations(algo, env_id, image):
    model = algo("MultiInputPolicy", dict_env(env_id, image=image), **algorithm_kwargs(algo))
    assert isinstance(model.policy.features_extractor, LectureMultiInputEncoder)
    model.learn(64)
    buffer = model.rollout_buffer
    if image:
        # images stay uint8 in the buffer, as with CnnPolicy
        assert buffer.observations["image"].dtype == np.uint8
        assert buffer.observation_tensor()["image"].dtype == th.uint8
    assert buffer.observations["head"].dtype == np.float32
    for value in model.policy.state_dict().values():
        assert th.isfinite(value).all()


def test_encoder_layers_zero_is_sb3_combined_extractor():
    model = LecturePPO("MultiInputPolicy", dict_env(), **tiny_kwargs(policy_kwargs=dict(encoder_layers=0)))
    assert type(model.policy.features_extractor) is CombinedExtractor


def test_separate_trunks_on_dict_observations():
    kwargs = tiny_kwargs(policy_kwargs=dict(hidden_size=16, share_features_extractor=False))
    model = LecturePPO("MultiInputPolicy", dict_env(), **kwargs).learn(64)
    assert model.policy.pi_features_extractor is not model.policy.vf_features_extractor


def test_dict_buffer_gathers_the_same_steps_as_the_array_buffer():
    """Every way the buffer hands out steps gives, key by key, the array observations' steps (with dones and truncations)."""
    n_steps, n_envs, seq_length = 40, 3, 5
    box = gym.spaces.Box(-5, 5, (4,), dtype=np.float32)
    split_space = gym.spaces.Dict({"head": gym.spaces.Box(-5, 5, (1,)), "tail": gym.spaces.Box(-5, 5, (3,))})
    action_space = gym.spaces.Discrete(2)
    kwargs = dict(n_envs=n_envs, seq_length=seq_length, advantage_scope="segment", value_target="td", device="cpu")
    flat = SegmentRolloutBuffer(n_steps, box, action_space, **kwargs)
    split = SegmentRolloutBuffer(n_steps, split_space, action_space, **kwargs)
    rng = np.random.default_rng(0)
    dones = rng.random((n_steps, n_envs)) < 0.15
    episode_starts = np.vstack([np.ones((1, n_envs), dtype=bool), dones[:-1]])
    for t in range(n_steps):
        obs, next_obs = rng.normal(size=(n_envs, 4)).astype(np.float32), rng.normal(size=(n_envs, 4)).astype(np.float32)
        step = dict(
            action=rng.integers(0, 2, n_envs),
            reward=rng.normal(size=n_envs),
            episode_start=episode_starts[t],
            value=th.as_tensor(rng.normal(size=n_envs), dtype=th.float32),
            log_prob=th.as_tensor(rng.normal(size=n_envs), dtype=th.float32),
            terminated=dones[t] & (rng.random(n_envs) < 0.5),
            done=dones[t],
            distribution_params=th.as_tensor(rng.normal(size=(n_envs, 2)), dtype=th.float32),
        )
        flat.add(obs, next_obs=next_obs, **step)
        split.add(_split(obs), next_obs=_split(next_obs), **step)
    for buffer in (flat, split):
        buffer.finalize()
        values = buffer.tensor("values")
        buffer.compute_advantages(values, values + 1)

    def joined(observations):
        return th.cat([observations["head"], observations["tail"]], dim=-1)

    np.testing.assert_array_equal(flat.indices, split.indices)
    assert (~flat.mask).any(), "the data should have padded segments"
    for name in ("observations", "next_observations"):
        th.testing.assert_close(joined(split.observation_tensor(name)), flat.observation_tensor(name))
    segment_ids = np.array([4, 0, 7, 2])
    th.testing.assert_close(joined(split._get_samples(segment_ids).observations), flat._get_samples(segment_ids).observations)
    for with_segments in (False, True):
        dict_steps = split.minibatch_steps(segment_ids, with_segments)
        array_steps = flat.minibatch_steps(segment_ids, with_segments)
        th.testing.assert_close(joined(dict_steps.observations), array_steps.observations)
        if with_segments:
            th.testing.assert_close(
                joined(dict_steps.segments.last_next_observations), array_steps.segments.last_next_observations
            )
        np.random.seed(5)
        dict_epoch = list(split.get_steps(20, with_segments))
        np.random.seed(5)
        array_epoch = list(flat.get_steps(20, with_segments))
        assert len(dict_epoch) == len(array_epoch) > 1
        for dict_batch, array_batch in zip(dict_epoch, array_epoch, strict=True):
            th.testing.assert_close(joined(dict_batch.observations), array_batch.observations)
            th.testing.assert_close(dict_batch.advantages, array_batch.advantages)
    critic_inputs = []
    split.next_values(
        split.tensor("values"),
        lambda observations: critic_inputs.append(joined(observations)) or th.zeros(len(critic_inputs[-1])),
    )
    flat_inputs = []
    flat.next_values(
        flat.tensor("values"), lambda observations: flat_inputs.append(observations) or th.zeros(len(observations))
    )
    th.testing.assert_close(critic_inputs[0], flat_inputs[0])


def _split(observations: np.ndarray) -> dict[str, np.ndarray]:
    return {"head": observations[:, :1], "tail": observations[:, 1:]}


@pytest.mark.parametrize("advantage_scope", ["segment", "rollout"])
def test_one_update_on_dict_observations_equals_the_array_update(advantage_scope):
    """A Dict space of one Box key through the lecture's encoder is the Box space through it: the same update."""
    kwargs = tiny_kwargs(advantage_scope=advantage_scope, n_epochs=3, batch_size=16)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=1)
    one_key = make_vec_env(
        "CartPole-v1", n_envs=2, seed=1, wrapper_class=gym.wrappers.TransformObservation, wrapper_kwargs=_one_key()
    )
    arrays = LecturePPO("MlpPolicy", env, **kwargs)
    dicts = LecturePPO("MultiInputPolicy", one_key, **kwargs)
    for array_param, dict_param in zip(arrays.policy.parameters(), dicts.policy.parameters(), strict=True):
        th.testing.assert_close(array_param, dict_param)
    for model in (arrays, dicts):
        set_random_seed(7)  # the same draws for both (building the policies may consume different amounts)
        model.learn(128)
    for array_param, dict_param in zip(arrays.policy.parameters(), dicts.policy.parameters(), strict=True):
        th.testing.assert_close(array_param, dict_param, atol=1e-6, rtol=1e-5)


def _one_key():
    space = gym.spaces.Dict({"obs": gym.make("CartPole-v1").observation_space})
    return dict(func=lambda observation: {"obs": observation}, observation_space=space)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_predict_single_and_batched_dict_observations_and_save_load(tmp_path, algo):
    model = algo("MultiInputPolicy", dict_env("Pendulum-v1"), **algorithm_kwargs(algo)).learn(64)
    single = model.observation_space.sample()
    action, _ = model.predict(single, deterministic=True)
    assert action.shape == model.action_space.shape
    batch = {key: np.stack([model.observation_space.sample()[key] for _ in range(5)]) for key in single}
    actions, _ = model.predict(batch, deterministic=True)
    assert actions.shape == (5, *model.action_space.shape)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(loaded.predict(batch, deterministic=True)[0], actions)
    loaded.set_env(dict_env("Pendulum-v1"))
    loaded.learn(64)


def test_vec_normalize_on_dict_observations():
    env = VecNormalize(dict_env("Pendulum-v1"), norm_obs_keys=["head", "tail"])
    LecturePPO("MultiInputPolicy", env, **tiny_kwargs()).learn(64)


def test_multi_input_policy_on_a_box_space_says_so():
    with pytest.raises(ValueError, match=r"MultiInputPolicy needs a Dict observation space.*'MlpPolicy'"):
        LecturePPO("MultiInputPolicy", "CartPole-v1", **tiny_kwargs())


def test_mlp_policy_on_a_dict_space_says_so():
    with pytest.raises(ValueError, match="MultiInputPolicy"):
        LecturePPO("MlpPolicy", dict_env(), **tiny_kwargs())


def test_a_dict_space_with_an_unsupported_subspace_says_so():
    class TextEnv(gym.Env):
        observation_space = gym.spaces.Dict({"text": gym.spaces.Text(5), "x": gym.spaces.Box(-1, 1, (2,))})
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(TypeError, match=r"subspace 'text'.*Box, Discrete, MultiDiscrete or MultiBinary"):
        LecturePPO("MultiInputPolicy", TextEnv(), **tiny_kwargs())
