"""
Train one of the lecture's algorithms with its defaults and print the evaluation at the end::

    python -m sb3_lecture_ppo.train --env CartPole-v1 --timesteps 100000

For tuned hyperparameters, tuning and plots use the RL Zoo (see the docs' RL Zoo page).
"""

import argparse

import numpy as np

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO

ALGORITHMS = {
    "lecture_ppo": LecturePPO,
    "lecture_ac": LectureActorCritic,
    "lecture_gae_ac": LectureGAEActorCritic,
    "lecture_mc_pg": LectureMonteCarloPG,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="lecture_ppo")
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium env id")
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--save", default=None, help="path to save the trained model to")
    parser.add_argument("--verbose", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> float:
    args = parse_args(argv)
    env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    model = ALGORITHMS[args.algo]("MlpPolicy", env, seed=args.seed, verbose=args.verbose)
    model.learn(args.timesteps, progress_bar=args.verbose > 0)
    if args.save:
        model.save(args.save)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000)
    episode_rewards, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True, return_episode_rewards=True
    )
    mean_reward, std_reward = float(np.mean(episode_rewards)), float(np.std(episode_rewards))
    print(
        f"{args.algo} on {args.env}, {args.timesteps} steps, seed {args.seed}: "
        f"mean_reward={mean_reward:.2f} +/- {std_reward:.2f} over {args.eval_episodes} episodes"
    )
    return mean_reward


if __name__ == "__main__":
    main()
