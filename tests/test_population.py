"""The population engine: a member's update is the update of the same LecturePPO trained alone."""

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.population import Population, PopulationError
from sb3_lecture_ppo.common.type_aliases import PER_STEP_FIELDS
from sb3_lecture_ppo.population.population import FIELDS_OF_A_STEP, MaskedStackedAdam
from sb3_lecture_ppo.population.stacked import stacked_act
from tests.helpers import SplitDictEnv

PAPER = dict(
    n_steps=64,
    batch_size=16,
    n_epochs=3,
    seq_length=1,
    advantage_scope="rollout",
    recompute_advantage=False,
    value_target="lambda",
    max_grad_norm=None,
    ent_coef=0.0,
    learning_rate=3e-3,
    policy_kwargs=dict(net_arch=dict(pi=[16, 16], vf=[16, 16]), activation_fn=nn.Tanh),
    device="cpu",
)
LECTURE = dict(seq_length=4, advantage_scope="segment", recompute_advantage=True, sampling="random", batch_size=32)
"""The lecture's Code Ex.1 semantics at a small scale (8 segments of 4 steps per minibatch)."""
OBJECTIVES = [
    dict(objective="clip", clip_range=0.2),
    dict(objective="none"),
    dict(objective="kl_fixed", kl_coef=1.0),
    dict(objective="kl_adaptive", kl_target=0.003),
    dict(objective="clip", clip_range=0.1),
    dict(objective="clip_kl_adaptive", clip_range=0.3, kl_target=0.01),
]


def member(seed: int, env_id: str = "Pendulum-v1", **overrides) -> LecturePPO:
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), norm_reward=False)
    return LecturePPO(ActorCriticPolicy, env, seed=seed, **{**PAPER, **overrides})


def collected(members):
    for model in members:
        _, callback = model._setup_learn(10 * model.n_steps, callback=None)
        assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
        model._update_current_progress_remaining(model.num_timesteps, 10 * model.n_steps)
    return members


def parameters(model) -> dict[str, th.Tensor]:
    return {name: value.detach().clone() for name, value in model.policy.named_parameters()}


def trained_alone(members) -> list[dict[str, th.Tensor]]:
    """Each member's parameters after one update alone, its minibatches drawn from NumPy seeded with its seed."""
    results = []
    for model in members:
        saved = (copy.deepcopy(parameters(model)), model.adaptive_kl_coef)
        np.random.seed(model.seed)
        model.train()
        results.append((parameters(model), model.adaptive_kl_coef))
        with th.no_grad():
            for name, value in model.policy.named_parameters():
                value.copy_(saved[0][name])
        model.adaptive_kl_coef = saved[1]
    return results


def assert_population_update_is_each_update_alone(members) -> list:
    """One population update against each member updated alone from the same weights and rollout (1e-5)."""
    population = Population(members)
    alone = trained_alone(members)
    population.train()
    for index, model in enumerate(population.members):
        population.member(index)
        for name, value in parameters(model).items():
            th.testing.assert_close(value, alone[index][0][name], atol=1e-5, rtol=1e-5, msg=f"member {index} {name}")
    return alone


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_a_members_update_equals_its_update_alone_for_every_objective(env_id, max_grad_norm):
    members = collected(
        [member(seed, env_id, max_grad_norm=max_grad_norm, **settings) for seed, settings in enumerate(OBJECTIVES)]
    )
    alone = assert_population_update_is_each_update_alone(members)
    for model, (_, kl_coef) in zip(members, alone, strict=True):
        assert model.adaptive_kl_coef == kl_coef


def test_a_members_update_ignores_every_other_members_data_and_settings():
    def update(changed: bool):
        members = [member(seed, **settings) for seed, settings in enumerate(OBJECTIVES[:3])]
        if changed:  # member 2: other data (another env seed) and other objective settings
            members[2] = member(7, objective="kl_fixed", kl_coef=10.0)
            with th.no_grad():
                for mine, other in zip(
                    members[2].policy.parameters(), member(2, **OBJECTIVES[2]).policy.parameters(), strict=True
                ):
                    mine.copy_(other)
        population = Population(collected(members))
        population.random_states[2] = np.random.RandomState(99)
        population.train()
        return [parameters(population.member(index)) for index in range(2)]

    for before, after in zip(update(False), update(True), strict=True):
        for name in before:
            assert th.equal(before[name], after[name]), name  # bit for bit


def test_stacked_minibatches_are_each_members_own_draws():
    """The fields gathered once per epoch for all members equal each member's own minibatches, drawn alike."""
    members = collected([member(seed, **settings) for seed, settings in enumerate(OBJECTIVES[:3])])
    population = Population(members)
    draws = [member_state.get_state() for member_state in population.random_states]
    stacked = list(population._stacked_minibatches())
    for random_state, state in zip(population.random_states, draws, strict=True):
        random_state.set_state(state)
    one_by_one = [fields for _ in range(members[0].n_epochs) for fields in population._member_minibatches()]
    assert len(stacked) == len(one_by_one) == members[0].n_epochs * members[0].n_steps // members[0].batch_size
    for batch, expected in zip(stacked, one_by_one, strict=True):
        assert batch.segments is None and batch.step_weights is None and expected.step_weights is None
        for name in PER_STEP_FIELDS:
            assert th.equal(getattr(batch, name), getattr(expected, name)), name


def test_member_is_an_ordinary_model_that_saves_and_loads(tmp_path):
    population = Population([member(seed, **OBJECTIVES[seed]) for seed in range(2)])
    population.learn(128)
    model = population.member(1)
    assert model.num_timesteps == 128 and model.policy.optimizer.state
    observations = np.stack([model.observation_space.sample() for _ in range(5)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "member")
    loaded = LecturePPO.load(tmp_path / "member", device="cpu")
    np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], actions)
    assert loaded.objective == "none"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n_steps=32), "members differ in n_steps"),
        (dict(policy_kwargs=dict(net_arch=dict(pi=[8, 8], vf=[16, 16]), activation_fn=nn.Tanh)), "differ in their network"),
        (dict(learning_rate=1e-3), "members differ in learning_rate"),
        (dict(seq_length=4, batch_size=16), "members differ in seq_length"),
    ],
)
def test_members_that_cannot_share_a_population_are_refused_naming_the_setting(overrides, message):
    with pytest.raises(PopulationError, match=message):
        Population([member(0), member(1, **overrides)])


def test_members_on_other_envs_are_refused():
    with pytest.raises(PopulationError, match="differ in their env's spaces"):
        Population([member(0), member(1, "CartPole-v1")])


def test_dict_observations_are_refused_with_the_fix():
    def dict_member(seed: int) -> LecturePPO:
        env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed, wrapper_class=SplitDictEnv)
        return LecturePPO("MultiInputPolicy", env, seed=seed, **{**PAPER, "policy_kwargs": {}})

    with pytest.raises(PopulationError, match="Dict observation spaces are not supported by the population: train"):
        Population([dict_member(0), dict_member(1)])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(recompute_advantage=True), "advantage_scope='segment'"),
    ],
)
def test_update_settings_a_population_cannot_train_are_refused_with_the_fix(overrides, message):
    with pytest.raises(PopulationError, match=message):
        Population([member(0, **overrides)])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("value_target, normalize_advantage", [("td", False), ("lambda", True), ("mc", False)])
def test_a_members_update_equals_its_update_alone_in_the_lectures_setting(env_id, value_target, normalize_advantage):
    """
    Segments of 4 steps cut by episode ends, advantages recomputed in every minibatch with the current critic, one
    random draw of segments per epoch: each member's minibatch has its own number of real steps and segments
    (padded and weighted out in the population), and its update is still its update alone.
    """
    members = collected(
        [
            member(
                seed,
                env_id,
                max_grad_norm=0.5,
                normalize_advantage=normalize_advantage,
                value_target=value_target,
                **LECTURE,
                **settings,
            )
            for seed, settings in enumerate(OBJECTIVES)
        ]
    )
    batches = list(Population(members)._stacked_minibatches())
    assert all(batch.segments is not None for batch in batches)
    if env_id == "CartPole-v1":  # episode ends cut segments short: members' minibatches are ragged, padded
        assert any(batch.step_weights is not None for batch in batches)
    alone = assert_population_update_is_each_update_alone(members)
    for model, (_, kl_coef) in zip(members, alone, strict=True):
        assert model.adaptive_kl_coef == pytest.approx(kl_coef, rel=1e-5)


@pytest.mark.parametrize(
    "setting",
    [
        dict(seq_length=1, advantage_scope="segment", recompute_advantage=True),  # one-step segments, recomputed
        dict(seq_length=4, advantage_scope="rollout", recompute_advantage=False),  # SB3's GAE, minibatches of segments
    ],
    ids=["one-step-segments", "rollout-gae-segments"],
)
def test_other_segment_settings_give_each_member_its_update_alone(setting):
    members = collected([member(seed, "CartPole-v1", **setting, **settings) for seed, settings in enumerate(OBJECTIVES[:4])])
    assert_population_update_is_each_update_alone(members)


def test_segments_drawn_by_epochs_give_each_member_its_own_number_of_steps_and_its_update_alone():
    """
    The lecture's segments in SB3's epochs: members whose rollouts are cut into different numbers of segments take
    different numbers of minibatch steps per epoch; the others' extra steps leave a member (and its Adam) as it is.
    """
    epochs = {**LECTURE, "sampling": "epochs", "batch_size": 16}
    members = collected([member(seed, "CartPole-v1", **epochs, **settings) for seed, settings in enumerate(OBJECTIVES)])
    assert len({member.rollout_buffer.n_segments for member in members}) > 1
    assert_population_update_is_each_update_alone(members)
    for model in members:
        steps = model.policy.optimizer.state[next(iter(model.policy.parameters()))]["step"]
        assert steps.dim() == 0 and int(steps) == model.n_epochs * -(-model.rollout_buffer.n_segments // 4)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_masked_stacked_adam_is_torchs_adam_for_each_member_that_steps(weight_decay):
    generator = th.Generator().manual_seed(0)
    stacked = th.randn(3, 4, 5, generator=generator, requires_grad=True)
    alone = [stacked[index].detach().clone().requires_grad_(True) for index in range(3)]
    optimizer = MaskedStackedAdam([stacked], 3, lr=0.01, eps=1e-5, weight_decay=weight_decay)
    references = [th.optim.Adam([tensor], lr=0.01, eps=1e-5, weight_decay=weight_decay) for tensor in alone]
    for step in range(6):
        grad = th.randn(3, 4, 5, generator=generator)
        active = th.tensor([True, step % 2 == 0, step >= 3])
        stacked.grad = grad
        optimizer.step(active)
        for index in range(3):
            if active[index]:
                alone[index].grad = grad[index].clone()
                references[index].step()
    for index in range(3):
        th.testing.assert_close(stacked[index].detach(), alone[index].detach(), atol=1e-6, rtol=1e-6)
    assert optimizer.state[stacked]["step"].tolist() == [6, 3, 3]


def test_in_the_lectures_setting_a_members_update_ignores_the_others_bit_for_bit():
    def update(changed: bool):
        members = [member(seed, "CartPole-v1", **LECTURE, **settings) for seed, settings in enumerate(OBJECTIVES[:3])]
        if changed:  # member 2: other data, other segment counts, other objective
            members[2] = member(7, "CartPole-v1", **LECTURE, objective="kl_fixed", kl_coef=10.0)
        th.manual_seed(0)  # the members' rollouts draw their actions from torch's global generator
        population = Population(collected(members))
        population.train()
        return [parameters(population.member(index)) for index in range(2)]

    for before, after in zip(update(False), update(True), strict=True):
        for name in before:
            th.testing.assert_close(before[name], after[name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("setting", [{}, {**LECTURE, "sampling": "epochs", "batch_size": 16}], ids=["paper", "segments"])
def test_a_population_checkpoint_loads_with_every_member_and_its_adam_and_normalizer_state(tmp_path, setting):
    population = Population([member(seed, **setting, **OBJECTIVES[seed]) for seed in range(3)])
    population.learn(128, checkpoint=tmp_path / "ckpt")
    saved_steps = population.optimizer.state[next(iter(population.params.values()))]["step"].clone()
    assert [path.name for path in (tmp_path / "ckpt").iterdir() if path.is_dir()] == ["step_000000000128"]
    saved_params = {name: tensor.detach().clone() for name, tensor in population.params.items()}
    saved_adam = {name: population.optimizer.state[tensor]["exp_avg"].clone() for name, tensor in population.params.items()}
    saved_means = [model.env.obs_rms.mean.copy() for model in population.members]

    def make_env(index: int):
        return make_vec_env("Pendulum-v1", n_envs=1, seed=100 + index)

    loaded = Population.load(tmp_path / "ckpt", make_env)
    assert type(loaded.optimizer) is type(population.optimizer)
    for name, tensor in loaded.params.items():
        assert th.equal(tensor.detach(), saved_params[name])
        assert th.equal(loaded.optimizer.state[tensor]["exp_avg"], saved_adam[name])
        assert th.equal(loaded.optimizer.state[tensor]["step"], saved_steps)  # per member where segments drew apart
    for model, mean in zip(loaded.members, saved_means, strict=True):
        assert isinstance(model.env, VecNormalize) and np.array_equal(model.env.obs_rms.mean, mean)
        assert model.num_timesteps == 128
    assert [model.objective for model in loaded.members] == [settings["objective"] for settings in OBJECTIVES[:3]]
    loaded.learn(256, reset_num_timesteps=False, checkpoint=tmp_path / "ckpt")
    assert loaded.members[0].num_timesteps == 256
    assert [path.name for path in (tmp_path / "ckpt").iterdir() if path.is_dir()] == ["step_000000000256"]


@pytest.mark.parametrize("setting", [{}, {**LECTURE, "sampling": "epochs", "batch_size": 16}], ids=["paper", "segments"])
def test_part_of_a_checkpoint_loads_as_a_population_with_those_members_states(tmp_path, setting):
    population = Population([member(seed, **setting, **OBJECTIVES[seed]) for seed in range(3)])
    population.learn(128, checkpoint=tmp_path / "ckpt")
    part = [2, 0]

    def make_env(saved_index: int):
        return make_vec_env("Pendulum-v1", n_envs=1, seed=100 + saved_index)

    whole = Population.load(tmp_path / "ckpt", make_env)
    loaded = Population.load(tmp_path / "ckpt", lambda position: make_env(part[position]), members=part)
    assert [model.objective for model in loaded.members] == [OBJECTIVES[index]["objective"] for index in part]
    for model, index in zip(loaded.members, part, strict=True):
        assert model.num_timesteps == 128
        assert np.array_equal(model.env.obs_rms.mean, whole.members[index].env.obs_rms.mean)
    for random_state, index in zip(loaded.random_states, part, strict=True):
        assert random_state.get_state()[2] == whole.random_states[index].get_state()[2]
        assert np.array_equal(random_state.get_state()[1], whole.random_states[index].get_state()[1])
    for name, tensor in loaded.params.items():
        assert th.equal(tensor.detach(), whole.params[name].detach()[part])
        assert th.equal(loaded.optimizer.state[tensor]["exp_avg"], whole.optimizer.state[whole.params[name]]["exp_avg"][part])
    loaded.learn(256, reset_num_timesteps=False)  # the rollout's action noise is drawn for the part, not the whole
    assert [model.num_timesteps for model in loaded.members] == [256, 256]


def test_loading_members_a_checkpoint_does_not_hold_names_them_and_the_size(tmp_path):
    Population([member(seed) for seed in range(2)]).learn(64, checkpoint=tmp_path / "ckpt")
    for members in ([0, 2], [1, 1]):
        with pytest.raises(PopulationError, match=rf"members=\[{members[0]}, {members[1]}\] must be distinct indices below 2"):
            Population.load(tmp_path / "ckpt", lambda index: make_vec_env("Pendulum-v1", seed=index), members=members)


def test_a_checkpoint_interrupted_while_saving_leaves_the_previous_one(tmp_path, monkeypatch):
    population = Population([member(seed, **OBJECTIVES[seed]) for seed in range(2)])
    population.learn(64, checkpoint=tmp_path / "ckpt")
    manifest = (tmp_path / "ckpt" / "population.json").read_text()
    calls = []
    original = LecturePPO.save

    def dies_on_the_second_member(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process stops in the middle of the checkpoint
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(LecturePPO, "save", dies_on_the_second_member)
    with pytest.raises(KeyboardInterrupt):
        population.learn(128, reset_num_timesteps=False, checkpoint=tmp_path / "ckpt")
    monkeypatch.undo()
    assert (tmp_path / "ckpt" / "population.json").read_text() == manifest
    loaded = Population.load(tmp_path / "ckpt", lambda index: make_vec_env("Pendulum-v1", n_envs=1, seed=index))
    assert loaded.members[0].num_timesteps == 64


def test_a_folder_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(PopulationError, match="holds no population checkpoint"):
        Population.load(tmp_path, lambda index: make_vec_env("Pendulum-v1"))


@pytest.mark.parametrize("norm_reward, n_envs", [(False, 2), (True, 2), (True, 1)])
def test_all_envs_as_one_give_each_members_own_vecnormalize_steps_exactly(norm_reward, n_envs):
    """
    The same rollout (same actions) stepped member by member (each member's own buffer writes) and as one (one
    stacked write per step): identical buffers, advantages and statistics.
    """

    def rollout(vectorize: bool):
        members = []
        for seed in range(3):
            env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=n_envs, seed=seed), norm_reward=norm_reward)
            members.append(LecturePPO(ActorCriticPolicy, env, seed=seed, **{**PAPER, "n_steps": 256}))  # episodes end
        population = Population(members, vectorize_envs=vectorize)
        assert (population.envs is not None) == vectorize
        for model in members:
            model._setup_learn(1024, callback=None)
        th.manual_seed(0)
        population.collect_rollouts()
        return members

    apart, together = rollout(False), rollout(True)
    for one, other in zip(apart, together, strict=True):
        for name in (*FIELDS_OF_A_STEP, "advantages", "returns"):
            np.testing.assert_array_equal(getattr(one.rollout_buffer, name), getattr(other.rollout_buffer, name), err_msg=name)
        np.testing.assert_array_equal(one._last_episode_starts, other._last_episode_starts)
        assert one.num_timesteps == other.num_timesteps == 256 * n_envs
        assert one.rollout_buffer.dones.any()  # terminal observations were normalized too
        for stats in ("obs_rms", "ret_rms"):
            a, b = getattr(one.env, stats), getattr(other.env, stats)
            assert np.array_equal(a.mean, b.mean) and np.array_equal(a.var, b.var) and a.count == b.count, stats
        np.testing.assert_array_equal(one.env.returns, other.env.returns)
        np.testing.assert_array_equal(one.env.get_original_obs(), other.env.get_original_obs())
        np.testing.assert_array_equal(one._last_obs, other._last_obs)
        assert [info["r"] for info in one.ep_info_buffer] == [info["r"] for info in other.ep_info_buffer]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("policy", ["MlpPolicy", ActorCriticPolicy])
def test_the_stacked_rollout_forward_equals_vmap_of_each_members_forward(env_id, policy):
    """The rollout's forward pass through the stacked layers: the same actions, log-probabilities, parameters, values."""
    members = [member(seed, env_id) for seed in range(3)]
    for model in members:  # the lecture's encoder too ("MlpPolicy" is LectureActorCriticPolicy)
        if policy == "MlpPolicy":
            model.policy = LecturePPO("MlpPolicy", model.env, seed=model.seed, **{**PAPER, "policy_kwargs": {}}).policy
    population = Population(members)
    assert population._stacked_policy is not None
    observations = th.randn(3, 5, *members[0].observation_space.shape)
    th.manual_seed(1)
    stacked = stacked_act(population._stacked_policy, observations)
    th.manual_seed(1)
    vmapped = population._vmapped_act(population._detached_params(), observations)
    for one, other in zip(stacked, vmapped, strict=True):
        assert one.shape == other.shape
        th.testing.assert_close(one, other, rtol=1e-6, atol=1e-6)
    population.optimizer.param_groups[0]["lr"] = 0.1  # the stacked layers follow the optimizer's in-place steps
    for tensor in population.params.values():
        tensor.grad = th.ones_like(tensor)
    population.optimizer.step()
    th.manual_seed(2)
    after = stacked_act(population._stacked_policy, observations)
    th.manual_seed(2)
    th.testing.assert_close(after[3], population._vmapped_act(population._detached_params(), observations)[3])
    assert not th.allclose(after[3], stacked[3])


@pytest.mark.parametrize("env_id, fused", [("Pendulum-v1", True), ("CartPole-v1", False)])
def test_the_fused_gaussian_forward_is_the_stacked_forward(env_id, fused):
    """SB3's MLP with Gaussian actions takes the fused rollout forward pass: the same draws, outputs to rounding."""
    population = Population([member(seed, env_id) for seed in range(3)])
    assert (population._fused_act is not None) == fused
    if not fused:
        return
    observations = th.randn(3, 2, *population.template.observation_space.shape)
    for _ in range(2):  # before and after an optimizer step, read back by refresh()
        th.manual_seed(3)
        expected = stacked_act(population._stacked_policy, observations)
        th.manual_seed(3)
        population._fused_act.refresh()
        for one, other in zip(population._act(observations), expected, strict=True):
            assert one.shape == other.shape
            th.testing.assert_close(one, other, rtol=1e-5, atol=1e-6)
        for tensor in population.params.values():
            tensor.grad = th.ones_like(tensor)
        population.optimizer.param_groups[0]["lr"] = 0.1
        population.optimizer.step()


class _Recorder(BaseCallback):
    """What a member's callback sees at every env step: the step, the member's weights and its normalizer's mean."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float, np.ndarray]] = []
        self.rollout_ends: list[int] = []

    def _on_step(self) -> bool:
        weights = sum(float(p.detach().sum()) for p in self.model.policy.parameters())
        self.seen.append((self.num_timesteps, weights, self.model.env.obs_rms.mean.copy()))
        return True

    def _on_rollout_end(self) -> None:
        assert self.model.rollout_buffer.n_segments > 0  # after the buffer's segments and advantages
        self.rollout_ends.append(self.num_timesteps)


@pytest.mark.parametrize("vectorize", [False, True])
def test_member_callbacks_see_each_step_with_the_members_current_weights_and_statistics(vectorize):
    def train(vectorize: bool):
        members = [member(seed, n_steps=32) for seed in range(2)]
        recorders = [_Recorder() for _ in members]
        th.manual_seed(0)
        Population(members, vectorize_envs=vectorize).learn(96, callbacks=recorders)
        return recorders

    recorders, reference = train(vectorize), train(False)
    for recorder, expected in zip(recorders, reference, strict=True):
        assert [step for step, _, _ in recorder.seen] == list(range(1, 97))
        assert recorder.rollout_ends == [32, 64, 96]
        assert len({weights for _, weights, _ in recorder.seen[:32]}) == 1  # one update per rollout
        assert recorder.seen[31][1] != recorder.seen[32][1]
        for (_, weights, mean), (_, weights_expected, mean_expected) in zip(recorder.seen, expected.seen, strict=True):
            assert weights == weights_expected
            np.testing.assert_array_equal(mean, mean_expected)  # the statistics of that very step, stacked or not


def test_a_callback_that_stops_is_refused():
    class Stop(BaseCallback):
        def _on_step(self) -> bool:
            return False

    members = [member(seed, n_steps=32) for seed in range(2)]
    with pytest.raises(PopulationError, match="member 1's callback asked to stop"):
        Population(members).learn(64, callbacks=[None, Stop()])


@pytest.mark.slow
def test_a_population_of_four_seeds_learns_cartpole_at_a_single_runs_budget(tmp_path):
    """
    SB3 PPO's zoo entry for CartPole-v1 in the paper setting (``lecture_ppo:sb3``: SB3's semantics, its network), four
    seeds as one population, at the entry's own budget of 100k steps: every member's deterministic policy reaches 475
    (mean of 5 episodes, evaluated every 4k steps by an ``EvalCallback`` per member), the benchmark's "first reach",
    which a LecturePPO trained alone with this entry reaches at a median of 18k steps (docs, CartPole results).
    """
    from stable_baselines3.common.callbacks import EvalCallback

    from sb3_lecture_ppo.evaluation.contestants import SB3_SEMANTICS

    entry = dict(
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda progress: progress * 0.001,
        clip_range=lambda progress: progress * 0.2,
        policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh),
        device="cpu",
        **SB3_SEMANTICS,
    )
    members = [
        LecturePPO(ActorCriticPolicy, make_vec_env("CartPole-v1", n_envs=8, seed=seed), seed=seed, **entry)
        for seed in range(4)
    ]
    evaluations = [
        EvalCallback(
            make_vec_env("CartPole-v1", seed=100 + seed),
            n_eval_episodes=5,
            eval_freq=4000 // 8,
            log_path=str(tmp_path / str(seed)),  # SB3 keeps the results only where it logs them
            verbose=0,
        )
        for seed in range(4)
    ]
    Population(members).learn(100_000, callbacks=evaluations)
    for index, evaluation in enumerate(evaluations):
        means = [float(np.mean(returns)) for returns in evaluation.evaluations_results]
        assert len(means) == 25 and max(means) >= 475, (index, means)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("field", ["observation", "reward", "terminal"])
def test_a_non_finite_value_from_a_members_env_names_the_member_env_and_step(vectorize, field):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_lecture_ppo.common.on_policy_algorithm import NonFiniteEnvValueError
    from tests.test_errors import NonFiniteEnv

    def model(seed: int, bad_step: int) -> LecturePPO:
        env = VecNormalize(DummyVecEnv([lambda: NonFiniteEnv(field, bad_step=bad_step)]), norm_reward=False)
        return LecturePPO(ActorCriticPolicy, env, seed=seed, **{**PAPER, "n_steps": 16, "batch_size": 8})

    population = Population([model(0, 10**6), model(1, 5)], vectorize_envs=vectorize)
    assert (population.envs is not None) == vectorize
    name = "terminal observation" if field == "terminal" else f"{field} at step 5"
    with pytest.raises(NonFiniteEnvValueError, match=f"population member 1: env 0 returned a non-finite {name}"):
        population.learn(64)
