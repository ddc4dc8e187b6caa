"""Print a zoo study's trials, best first: number, state, value, converted model kwargs."""

import sys

import optuna

from sb3_lecture_ppo.zoo.samplers import convert_lecture_params

if __name__ == "__main__":
    storage_path, study_name = sys.argv[1:3]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage_path))
    study = optuna.load_study(storage=storage, study_name=study_name)
    trials = sorted(study.trials, key=lambda trial: -(trial.value if trial.value is not None else float("-inf")))
    for trial in trials:
        value = "-" if trial.value is None else f"{trial.value:.1f}"
        print(f"trial {trial.number:3d} {trial.state.name:8s} {value:>8s} {convert_lecture_params(trial.params)}")
