"""
The RL Zoo's own entry points with our algorithms, run as subprocesses in fresh temporary
folders with tiny budgets, and the start-up hook of a regular (non-editable) install.
"""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import optuna
import pytest
import torch as th
import yaml

from sb3_lecture_ppo import LectureActorCritic, LecturePPO
from sb3_lecture_ppo.zoo.samplers import SAMPLERS, convert_lecture_params

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def zoo(module: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", module, *args], cwd=cwd, check=check)


def test_train_enjoy_plot_and_continue(tmp_path):
    # d_targ = 10: every update halves the adaptive beta
    params = ["-params", "objective:'kl_adaptive'", "kl_target:10.0"]
    zoo("rl_zoo3.train", "--algo", "lecture_ppo", "--env", "CartPole-v1", "-n", "2000", "--seed", "1", *params, cwd=tmp_path)
    run_folder = tmp_path / "logs" / "lecture_ppo" / "CartPole-v1_1"
    model = LecturePPO.load(run_folder / "CartPole-v1.zip")
    updates = model.num_timesteps // (model.n_steps * model.n_envs)
    assert model.seq_length == 16 and updates > 0
    assert model.adaptive_kl_coef == 0.5**updates
    assert "seq_length" in (run_folder / "CartPole-v1" / "config.yml").read_text()  # our yml's CartPole entry

    enjoy = ["--algo", "lecture_ppo", "--env", "CartPole-v1", "-f", "logs/", "--no-render", "-n", "300"]
    assert "Mean reward" in zoo("rl_zoo3.enjoy", *enjoy, cwd=tmp_path).stdout
    zoo("rl_zoo3.plots.plot_train", "--algo", "lecture_ppo", "--env", "CartPole-v1", "-f", "logs/", cwd=tmp_path)
    video = ["--algo", "lecture_ppo", "--env", "CartPole-v1", "-f", "logs/", "-n", "50", "--exp-id", "1"]
    run([sys.executable, "-m", "rl_zoo3.record_video", *video], cwd=tmp_path, env={**ENV, "SDL_VIDEODRIVER": "dummy"})
    assert list((run_folder / "videos").glob("*.mp4"))

    # -i: continue training from the saved agent: the adaptive beta carries over (the zoo passes the entry's
    # hyperparameters again, so the same -params keep d_targ = 10)
    zoo(
        "rl_zoo3.train",
        "--algo",
        "lecture_ppo",
        "--env",
        "CartPole-v1",
        "-n",
        "2048",
        "-i",
        str(run_folder / "CartPole-v1.zip"),
        *params,
        cwd=tmp_path,
    )
    continued = LecturePPO.load(tmp_path / "logs" / "lecture_ppo" / "CartPole-v1_2" / "CartPole-v1.zip")
    continued_updates = continued.num_timesteps // (continued.n_steps * continued.n_envs)
    assert continued.adaptive_kl_coef == model.adaptive_kl_coef * 0.5**continued_updates


def test_params_override_eval_save_freq_and_tensorboard(tmp_path):
    zoo(
        "rl_zoo3.train",
        "--algo",
        "lecture_ppo",
        "--env",
        "CartPole-v1",
        "-n",
        "4096",
        "--eval-freq",
        "2048",
        "--eval-episodes",
        "2",
        "--save-freq",
        "2048",
        "-tb",
        "tb",
        "-params",
        "objective:'kl_adaptive'",
        "kl_target:0.02",
        "n_steps:1024",
        cwd=tmp_path,
    )
    run_folder = tmp_path / "logs" / "lecture_ppo" / "CartPole-v1_1"
    model = LecturePPO.load(run_folder / "CartPole-v1.zip")
    assert (model.objective, model.kl_target, model.n_steps) == ("kl_adaptive", 0.02, 1024)
    assert model.adaptive_kl_coef != 1.0
    assert (run_folder / "evaluations.npz").exists()
    assert list(run_folder.glob("rl_model_*_steps.zip"))
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))


def test_rl_zoo3_console_script_with_a_precursor_and_progress_bar(tmp_path):
    console = Path(sys.executable).with_name("rl_zoo3")
    run([str(console), "train", "--algo", "lecture_ac", "--env", "CartPole-v1", "-n", "2000", "-P"], cwd=tmp_path)
    model = LectureActorCritic.load(tmp_path / "logs" / "lecture_ac" / "CartPole-v1_1" / "CartPole-v1.zip")
    assert model.gae_lambda == 0.0


@pytest.mark.parametrize("algo", ["lecture_gae_ac", "lecture_mc_pg"])
def test_every_precursor_trains_with_its_yml_on_subprocess_envs(tmp_path, algo):
    subproc = ["--vec-env", "subproc", "-params", "n_envs:2"]
    zoo("rl_zoo3.train", "--algo", algo, "--env", "CartPole-v1", "-n", "1000", *subproc, cwd=tmp_path)
    assert (tmp_path / "logs" / algo / "CartPole-v1_1" / "CartPole-v1.zip").exists()


TRAIN_EVERY_ENTRY = """
import sys
from rl_zoo3.train import train

for algo in sys.argv[1:]:
    for env_id in ("HalfCheetah-v5", "HalfCheetah-v4"):
        sys.argv = ["train", "--algo", algo, "--env", env_id, "-n", "600", "--seed", "0"]
        train()
"""


def test_every_halfcheetah_entry_trains(tmp_path):
    """Every algorithm's HalfCheetah-v5 and -v4 yml entry builds and trains through the zoo (one short rollout)."""
    algos = sorted(SAMPLERS)
    run([sys.executable, "-c", TRAIN_EVERY_ENTRY, *algos], cwd=tmp_path)
    for algo in algos:
        for env_id in ("HalfCheetah-v5", "HalfCheetah-v4"):
            saved = tmp_path / "logs" / algo / f"{env_id}_1" / f"{env_id}.zip"
            assert saved.exists(), saved


def test_optimize_with_two_workers_on_one_journal_and_trial_id(tmp_path):
    storage = str(tmp_path / "study.log")
    optimize = [
        sys.executable,
        "-m",
        "rl_zoo3.train",
        "--algo",
        "lecture_ppo",
        "--env",
        "CartPole-v1",
        "-n",
        "2000",
        "-optimize",
        "--n-trials",
        "2",
        "--storage",
        storage,
        "--study-name",
        "lecture",
        "--no-optim-plots",
    ]
    workers = [
        subprocess.Popen(optimize, cwd=tmp_path / ".", env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=600)[0].decode() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs

    study = optuna.load_study(
        study_name="lecture", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    )
    assert len(study.trials) == 4
    # the zoo reads --trial-id 0 as "no trial" (`if ... and self.trial_id:`): take a later one
    complete = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE and trial.number > 0]
    assert complete

    trained = zoo(
        "rl_zoo3.train",
        "--algo",
        "lecture_ppo",
        "--env",
        "CartPole-v1",
        "-n",
        "1000",
        "--storage",
        storage,
        "--study-name",
        "lecture",
        "--trial-id",
        str(complete[0].number),
        cwd=tmp_path,
    )
    assert "Loading from Optuna study" in trained.stdout
    (saved,) = (tmp_path / "logs" / "lecture_ppo").glob("CartPole-v1_*/CartPole-v1.zip")
    model = LecturePPO.load(saved)
    assert model.n_steps == convert_lecture_params(complete[0].params)["n_steps"]


def test_front_door_and_missing_env_entry(tmp_path):
    # Acrobot-v1 has no entry in lecture_ppo.yml: the zoo falls back to the documented `default` entry
    run(
        [sys.executable, "-m", "sb3_lecture_ppo.zoo", "train", "--algo", "lecture_ppo", "--env", "Acrobot-v1", "-n", "500"],
        cwd=tmp_path,
    )
    assert (tmp_path / "logs" / "lecture_ppo" / "Acrobot-v1_1" / "Acrobot-v1.zip").exists()


def test_front_door_train_with_gif(tmp_path):
    command = [sys.executable, "-m", "sb3_lecture_ppo.zoo", "train", "--algo", "lecture_ppo", "--env", "CartPole-v1"]
    result = run([*command, "-n", "256", "--gif", "agent.gif"], cwd=tmp_path)
    assert (tmp_path / "logs" / "lecture_ppo" / "CartPole-v1_1" / "CartPole-v1.zip").exists()
    assert "wrote agent.gif" in result.stdout and (tmp_path / "agent.gif").stat().st_size > 0


def test_gif_arguments_follow_the_zoo_command():
    from sb3_lecture_ppo.zoo.__main__ import gif_arguments

    assert gif_arguments("train", ["--algo", "lecture_ac", "--env", "Pendulum-v1"]) == (
        None,
        ["--algo", "lecture_ac", "--env", "Pendulum-v1"],
    )
    gif, zoo_argv = gif_arguments("train", ["--algo", "lecture_ac", "--gif", "--env", "Pendulum-v1", "-f", "runs"])
    assert gif == ["--algo", "lecture_ac", "--env", "Pendulum-v1", "-f", "runs"]
    assert zoo_argv == ["--algo", "lecture_ac", "--env", "Pendulum-v1", "-f", "runs"]
    gif, zoo_argv = gif_arguments("enjoy", ["--algo", "ppo", "--exp-id", "2", "--load-best", "--gif", "out.gif"])
    assert gif == ["--algo", "ppo", "--env", "CartPole-v1", "-f", "logs", "--exp-id", "2", "--load-best", "-o", "out.gif"]
    assert zoo_argv == ["--algo", "ppo", "--exp-id", "2", "--load-best"]
    assert gif_arguments("train", ["--gif=a.gif", "-n", "10"]) == (
        ["--algo", "ppo", "--env", "CartPole-v1", "-f", "logs", "-o", "a.gif"],
        ["-n", "10"],
    )
    with pytest.raises(SystemExit, match="--gif works with train and enjoy, not plot_train"):
        gif_arguments("plot_train", ["--gif"])


def test_malformed_entry_names_the_key(tmp_path):
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml.safe_dump({"CartPole-v1": {"n_timesteps": 100, "policy": "MlpPolicy", "seq_lenght": 16}}))
    result = zoo(
        "rl_zoo3.train", "--algo", "lecture_ppo", "--env", "CartPole-v1", "-conf", str(conf), cwd=tmp_path, check=False
    )
    assert result.returncode != 0 and "seq_lenght" in result.stderr
    conf.write_text(yaml.safe_dump({"CartPole-v1": {"n_timesteps": 100, "policy": "MlpPolicy", "seq_length": "16"}}))
    result = zoo(
        "rl_zoo3.train", "--algo", "lecture_ppo", "--env", "CartPole-v1", "-conf", str(conf), cwd=tmp_path, check=False
    )
    assert result.returncode != 0 and "seq_length='16' must be a positive integer" in result.stderr


def test_disabled_hook_leaves_the_zoo_alone(tmp_path):
    env = {**ENV, "SB3_LECTURE_PPO_NO_ZOO_HOOK": "1"}
    result = run([sys.executable, "-c", "import rl_zoo3; print('lecture_ppo' in rl_zoo3.ALGOS)"], cwd=tmp_path, env=env)
    assert result.stdout.strip() == "False"
    result = run([sys.executable, "-c", "import rl_zoo3; print('lecture_ppo' in rl_zoo3.ALGOS)"], cwd=tmp_path)
    assert result.stdout.strip() == "True"


def test_disabled_hook_tells_how_to_register(tmp_path):
    env = {**ENV, "SB3_LECTURE_PPO_NO_ZOO_HOOK": "1"}
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "lecture_ppo", "--env", "CartPole-v1"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--algo lecture_ppo is not registered" in result.stderr
    assert "SB3_LECTURE_PPO_NO_ZOO_HOOK" in result.stderr and "python -m sb3_lecture_ppo.zoo" in result.stderr
    result = run([sys.executable, "-c", "import rl_zoo3"], cwd=tmp_path, env=env)
    assert "sb3_lecture_ppo" not in result.stderr


def test_hook_knows_every_zoo_name():
    from sb3_lecture_ppo.zoo.hook import ALGORITHM_NAMES, requested_algorithm
    from sb3_lecture_ppo.zoo.registration import zoo_algorithms

    assert set(ALGORITHM_NAMES) == set(zoo_algorithms())
    assert requested_algorithm(["train.py", "--algo", "lecture_ac", "--env", "X"]) == "lecture_ac"
    assert requested_algorithm(["train.py", "--algo=lecture_mc_pg"]) == "lecture_mc_pg"
    assert requested_algorithm(["train.py", "--algo", "ppo", "--algo"]) is None


def test_no_torch_or_zoo_import_at_start_up(tmp_path):
    result = run([sys.executable, "-X", "importtime", "-c", "pass"], cwd=tmp_path)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "sb3_lecture_ppo.zoo.hook" in imported
    assert not {name for name in imported if name.split(".")[0] in ("torch", "rl_zoo3", "stable_baselines3", "typing")}


@pytest.mark.parametrize("algo", sorted(SAMPLERS))
@pytest.mark.parametrize("env_id, n_actions, n_envs", [("CartPole-v1", 0, 8), ("Pendulum-v1", 1, 1)])
def test_samplers_draw_consistent_settings(algo, env_id, n_actions, n_envs):
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_lecture_ppo.zoo.registration import zoo_algorithms

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        kwargs = SAMPLERS[algo](trial, n_actions, n_envs, {})
        assert convert_lecture_params(trial.params) == kwargs
        assert kwargs["n_steps"] * n_envs >= 64
        assert ("log_std_init" in kwargs["policy_kwargs"]) == (n_actions > 0)
        model = zoo_algorithms()[algo]("MlpPolicy", make_vec_env(env_id, n_envs=n_envs), **kwargs)  # no error
        head = kwargs["policy_kwargs"]["net_arch"]["pi"]
        assert model.policy.mlp_extractor.latent_dim_pi == (head[-1] if head else kwargs["policy_kwargs"]["hidden_size"])
        study.tell(trial, 0.0)


@pytest.mark.parametrize("algo", sorted(SAMPLERS))
def test_every_entry_uses_a_lecture_policy_that_optimize_can_resample(algo):
    """-optimize replaces an entry's policy_kwargs with the lecture's network (hidden_size, ...): the entry's
    policy must accept them (SB3's ActorCriticPolicy would fail with "unexpected keyword argument 'hidden_size'")."""
    from sb3_lecture_ppo.zoo.registration import hyperparams_file, zoo_algorithms

    entries = yaml.safe_load(hyperparams_file(algo).read_text())
    policies = {env_id: entry["policy"] for env_id, entry in entries.items()}
    assert set(policies.values()) <= set(zoo_algorithms()[algo].policy_aliases), policies


def test_converter_reads_trials_stored_before_the_network_was_sampled():
    params = dict(seq_length=16, n_steps_pow=5, one_minus_gamma=0.01, hidden_size=64)
    policy_kwargs = convert_lecture_params(params)["policy_kwargs"]
    assert policy_kwargs == dict(hidden_size=64, net_arch=dict(pi=[64], vf=[64]), share_features_extractor=True)


def test_regular_install_registers_and_uninstalls(tmp_path):
    """A non-editable install into a fresh venv that reuses this environment's packages."""
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip()
    )
    # this environment's packages, without processing its .pth files (so not its editable install of us)
    (site / "parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", str(REPO)],
        cwd=tmp_path,
    )
    assert (site / "sb3_lecture_ppo_zoo.pth").exists()
    check = (
        "import rl_zoo3, sb3_lecture_ppo; from sb3_lecture_ppo.zoo.registration import hyperparams_file; "
        f"print('lecture_ppo' in rl_zoo3.ALGOS, sb3_lecture_ppo.__file__.startswith({str(site)!r}), "
        "hyperparams_file('lecture_ppo').is_file())"
    )
    assert run([str(python), "-c", check], cwd=tmp_path).stdout.split() == ["True", "True", "True"]
    run([str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "sb3_lecture_ppo"], cwd=tmp_path)
    assert not (site / "sb3_lecture_ppo_zoo.pth").exists()


def test_the_lectures_code_ex1_configuration(tmp_path):
    from sb3_lecture_ppo.zoo.registration import hyperparams_file

    conf = hyperparams_file("lecture_code_ex1")
    zoo("rl_zoo3.train", "--algo", "lecture_ppo", "--env", "CartPole-v1", "-conf", str(conf), "-n", "1024", cwd=tmp_path)
    model = LecturePPO.load(tmp_path / "logs" / "lecture_ppo" / "CartPole-v1_1" / "CartPole-v1.zip")
    expected = dict(
        gamma=0.99,
        gae_lambda=0.95,
        n_epochs=4,
        sampling="random",
        vf_coef=1.0,
        pg_coef=0.5,
        ent_coef=0.001,
        n_envs=8,
        seq_length=16,
        n_steps=128,
        batch_size=256,
        advantage_scope="segment",
        recompute_advantage=True,
        value_target="td",
        normalize_advantage=False,
        max_grad_norm=None,
    )
    assert {name: getattr(model, name) for name in expected} == expected
    assert model.clip_range(1.0) == 100.0 and model.learning_rate(1.0) == 1e-4
    assert model.n_steps * model.n_envs // model.seq_length == 64  # trajectories per update
    assert model.policy.hidden_size == 128 and not model.policy.ortho_init
    # the lecture's torch.optim.Adam(params, lr=1e-4): torch's defaults, not SB3's eps=1e-5
    assert isinstance(model.policy.optimizer, th.optim.Adam)
    defaults = model.policy.optimizer.defaults
    assert defaults["eps"] == 1e-8 and defaults["betas"] == (0.9, 0.999) and defaults["weight_decay"] == 0
    assert not defaults["amsgrad"] and not defaults["maximize"]
