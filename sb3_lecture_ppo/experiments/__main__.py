"""
Run one of the lecture's experiments and write its figure and numbers::

    python -m sb3_lecture_ppo.experiments clip-gradient --quick --out experiments
"""

import argparse
import os
import sys
from pathlib import Path

from sb3_lecture_ppo.benchmark import _positive_int
from sb3_lecture_ppo.evaluation.runner import StaleRunsError
from sb3_lecture_ppo.experiments import EXPERIMENTS, experiment_module
from sb3_lecture_ppo.experiments.common import ExperimentConfig, ExperimentError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_lecture_ppo.experiments",
        description="The PPO lecture's claims as experiments; each writes NAME.png, NAME.json and NAME.md into --out.",
    )
    parser.add_argument("name", choices=list(EXPERIMENTS), metavar="NAME", help=f"one of: {', '.join(EXPERIMENTS)}")
    parser.add_argument("--quick", action="store_true", help="small budgets (a few minutes on 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("experiments"), help="output folder (default: experiments)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything the experiment draws")
    parser.add_argument("--model", type=Path, default=None, help="a saved LecturePPO CartPole-v1 model to study")
    parser.add_argument("--envs", nargs="+", default=None, help="only these envs, for the experiments that train runs")
    parser.add_argument(
        "--seeds", type=_positive_int("--seeds"), default=None, help="seeds of the experiments that train runs"
    )
    parser.add_argument("--jobs", type=_positive_int("--jobs"), default=1, help="processes for experiments that train runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch as th

    th.set_num_threads(1)  # small networks: more threads only contend with the envs and other runs
    config = ExperimentConfig(
        out_dir=args.out,
        quick=args.quick,
        seed=args.seed,
        model_path=args.model,
        jobs=args.jobs,
        envs=None if args.envs is None else tuple(args.envs),
        seeds=args.seeds,
    )
    module = experiment_module(args.name)
    try:
        numbers = module.run(config)
    except (ExperimentError, StaleRunsError) as error:
        sys.exit(f"python -m sb3_lecture_ppo.experiments {args.name}: error: {error}")
    verdict = numbers.get("claim_holds")
    print(f"{args.name}: {module.CLAIM}")
    if verdict is not None:
        print(f"claim holds: {'yes' if verdict else 'no'}")
    print(f"wrote {args.out / args.name}.png, .json and .md")


if __name__ == "__main__":
    main()
