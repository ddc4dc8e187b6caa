"""
How much of the joint gradient norm that ``max_grad_norm`` clips is the critic's: trains a contestant's zoo entry
(the shipped LecturePPO CartPole-v1 entry by default) through the benchmark's experiment manager and records, at
every gradient step, the norm of all gradients and of the actor's and the critic's head parameters.

    python benchmarks/grad_norm_shares.py --contestant lecture_ppo --env CartPole-v1 --seed 0 --timesteps 12000
"""

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

import sb3_lecture_ppo.common.on_policy_algorithm as on_policy_algorithm
from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.runner import _experiment


def gradient_norm(parameters: list[th.nn.Parameter]) -> float:
    """The L2 norm of the gradients of ``parameters`` (those without one left out)."""
    norms = [parameter.grad.norm() for parameter in parameters if parameter.grad is not None]
    return float(th.linalg.vector_norm(th.stack(norms))) if norms else 0.0


def head_parameters(policy: Any) -> tuple[list[th.nn.Parameter], list[th.nn.Parameter]]:
    """The actor's and the critic's own parameters (a shared encoder, if any, is in neither)."""
    actor = [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]
    if isinstance(getattr(policy, "log_std", None), th.nn.Parameter):
        actor.append(policy.log_std)
    critic = [*policy.mlp_extractor.value_net.parameters(), *policy.value_net.parameters()]
    return actor, critic


def record_norms(contestant: str, env_id: str, seed: int, timesteps: int) -> tuple[np.ndarray, float]:
    """(total, actor, critic) gradient norms of every gradient step before clipping, and the entry's max_grad_norm."""
    # no evaluation runs here: the cell's evaluation fields only complete it
    cell = Cell.make(
        contestant=contestant,
        env_id=env_id,
        seed=seed,
        timesteps=timesteps,
        eval_freq=timesteps,
        eval_episodes=1,
        final_eval_episodes=1,
    )
    rows: list[tuple[float, float, float]] = []
    clip = on_policy_algorithm.clip_grad_norm

    with tempfile.TemporaryDirectory() as work_dir:
        manager, _, _ = _experiment(cell, Path(work_dir))
        model, _ = manager.setup_experiment()
        actor, critic = head_parameters(model.policy)

        def recording_clip(parameters: list[th.nn.Parameter], max_norm: float) -> None:
            rows.append((gradient_norm(parameters), gradient_norm(actor), gradient_norm(critic)))
            clip(parameters, max_norm)

        on_policy_algorithm.clip_grad_norm = recording_clip
        try:
            model.learn(timesteps)
        finally:
            on_policy_algorithm.clip_grad_norm = clip
    return np.array(rows), model.max_grad_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contestant", default="lecture_ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=12_000)
    args = parser.parse_args()
    norms, max_grad_norm = record_norms(args.contestant, args.env, args.seed, args.timesteps)
    if max_grad_norm is None or len(norms) == 0:
        parser.error("--contestant: its entry clips no gradient (max_grad_norm None) or trained no gradient step")
    total, actor, critic = norms.T
    print(f"gradient steps: {len(norms)}; max_grad_norm {max_grad_norm}")
    print(f"steps whose joint norm exceeds it: {np.mean(total > max_grad_norm):.0%}")
    print(f"median norms: joint {np.median(total):.2f}, actor {np.median(actor):.2f}, critic {np.median(critic):.2f}")
    print(f"largest joint norm {total.max():.1f}: the actor's step scaled by {max_grad_norm / total.max():.4f}")


if __name__ == "__main__":
    main()
