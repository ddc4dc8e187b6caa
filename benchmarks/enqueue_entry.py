"""
Enqueue the zoo's PPO HalfCheetah-v4 settings carried over to LecturePPO (the lecture_ppo.yml entry before
tuning; trial 0 of benchmarks/results/lecture_ppo_HalfCheetah-v5.study.log), as raw sampler parameters.
"""

import sys

import optuna

ENTRY = dict(
    seq_length=16,
    n_steps_pow=9,
    one_minus_gamma=0.02,
    learning_rate=2.0633e-05,
    vf_coef=0.58096,
    ent_coef=0.000401762,
    max_grad_norm=0.8,
    hidden_size=256,
    head_layers=0,
    share_features_extractor=False,
    log_std_init=-2.0,
    segments_per_batch=4,
    one_minus_gae_lambda=0.08,
    pg_coef=1.0,
    n_epochs=20,
    objective="clip",
    clip_range=0.1,
)

if __name__ == "__main__":
    storage_path, study_name = sys.argv[1:3]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_path))
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True)
    if not study.trials:
        study.enqueue_trial(ENTRY)
