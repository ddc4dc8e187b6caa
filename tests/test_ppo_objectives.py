"""The objective family inside LecturePPO: equivalences, the vanilla PG step and the adaptive beta."""

import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.policies import distribution_and_values
from tests.helpers import assert_train_is_one_sgd_step, collected_model, parameters, tiny_kwargs

SGD_POLICY = dict(hidden_size=16, optimizer_class=th.optim.SGD, optimizer_kwargs={})


def trained_parameters(env_id: str = "CartPole-v1", **overrides) -> dict[str, th.Tensor]:
    model = LecturePPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), **tiny_kwargs(**overrides))
    model.learn(128)
    return parameters(model)


def assert_same_parameters(first: dict[str, th.Tensor], second: dict[str, th.Tensor]) -> None:
    for name, value in first.items():
        th.testing.assert_close(value, second[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize(
    "variant",
    [
        dict(objective="kl_fixed", kl_coef=0.0),
        dict(objective="clip", clip_range=1e6),
        dict(objective="clip", clip_range=100.0),  # the lecture's Code Ex.1 eps_clip = 100
        dict(objective="clip", clip_range=None),
    ],
)
def test_variants_equal_to_the_unclipped_objective(env_id, variant):
    assert_same_parameters(trained_parameters(env_id, objective="none"), trained_parameters(env_id, **variant))


def test_clipping_changes_the_update():
    unclipped = trained_parameters(objective="none", learning_rate=1e-2, n_epochs=4)
    clipped = trained_parameters(objective="clip", clip_range=0.05, learning_rate=1e-2, n_epochs=4)
    assert any(not th.allclose(value, clipped[name]) for name, value in unclipped.items())


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_none_one_epoch_one_minibatch_is_the_vanilla_policy_gradient_step(env_id):
    learning_rate = 0.05
    model = collected_model(
        env_id,
        objective="none",
        n_epochs=1,
        batch_size=None,
        learning_rate=learning_rate,
        vf_coef=0.0,
        ent_coef=0.0,
        normalize_advantage=False,
        max_grad_norm=None,
        policy_kwargs=SGD_POLICY,
    )
    buffer = model.rollout_buffer

    # -sg(A) * grad log pi, averaged over every step of the rollout
    actions = buffer.tensor("actions")
    if env_id == "CartPole-v1":
        actions = actions.long().flatten()
    distribution, _ = distribution_and_values(model.policy, buffer.observation_tensor("observations"))
    loss = -(buffer.tensor("advantages").detach() * distribution.log_prob(actions)).mean()
    assert_train_is_one_sgd_step(model, loss, learning_rate)


def test_adaptive_beta_carries_over_save_load_and_continued_training(tmp_path):
    # d_targ so large that every update halves beta
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(objective="kl_adaptive", kl_target=10.0))
    assert model.adaptive_kl_coef == 1.0
    model.learn(32 * 3)
    assert model.adaptive_kl_coef == 1.0 / 8
    assert model.logger.name_to_value["train/kl_coef"] == 1.0 / 8
    model.save(tmp_path / "model")

    loaded = LecturePPO.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=1, seed=0))
    assert loaded.adaptive_kl_coef == 1.0 / 8
    loaded.learn(32, reset_num_timesteps=False)
    assert loaded.adaptive_kl_coef == 1.0 / 16


def test_adaptive_beta_doubles_when_the_update_moves_too_far():
    model = LecturePPO(
        "MlpPolicy", "CartPole-v1", **tiny_kwargs(objective="kl_adaptive", kl_target=1e-12, kl_coef=0.5, learning_rate=1e-2)
    )
    model.learn(32 * 2)
    assert model.adaptive_kl_coef == 2.0
    assert model.logger.name_to_value["train/kl_update"] > 1.5e-12


def test_fixed_beta_schedule_is_logged():
    model = LecturePPO(
        "MlpPolicy", "CartPole-v1", **tiny_kwargs(objective="kl_fixed", kl_coef=lambda progress: 3 * progress + 1)
    )
    model.learn(64)
    # the last update of a run happens at progress_remaining = 0
    assert model._current_progress_remaining == 0.0
    assert model.logger.name_to_value["train/kl_coef"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        (dict(objective="clip", kl_coef=1.0), ValueError, "kl_coef is ignored by objective='clip'"),
        (dict(objective="kl_fixed", kl_target=0.01), ValueError, "kl_target is ignored by objective='kl_fixed'"),
        (dict(objective="none", kl_target=0.01), ValueError, "kl_target is ignored"),
        (dict(objective="kl_fixed", kl_coef=-1.0), ValueError, "kl_coef=-1.0 is out of range"),
        (dict(objective="kl_adaptive", kl_target=0.0), ValueError, "kl_target=0.0 is out of range"),
        (dict(objective="kl_adaptive", kl_coef=lambda _: 1.0), TypeError, "kl_coef must be a float for the adaptive"),
    ],
)
def test_bad_objective_settings(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(**overrides))
