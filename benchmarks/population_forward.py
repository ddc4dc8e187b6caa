"""
The population's batched rollout forward pass (``vmap`` + ``functional_call`` over 33 stacked members) against the
same 33 members' forward passes one by one, CPU time per rollout step: ``python benchmarks/population_forward.py``.
"""

import time

import torch as th

from sb3_lecture_ppo.common.distributions import sample_actions
from sb3_lecture_ppo.common.policies import actor_latent_and_values
from sb3_lecture_ppo.population import Population
from sb3_lecture_ppo.population.speed import paper_member

K = 33
REPEATS = 200


def main() -> None:
    th.set_num_threads(1)
    members = [paper_member("HalfCheetah-v5", seed, "clip-0.2") for seed in range(K)]
    population = Population(members)
    observations = th.randn(K, 1, members[0].observation_space.shape[0])
    params = population._detached_params()
    with th.no_grad():
        for _ in range(20):
            population._act(params, observations)
        start = time.process_time()
        for _ in range(REPEATS):
            population._act(params, observations)
        batched = (time.process_time() - start) / REPEATS
        start = time.process_time()
        for _ in range(REPEATS):
            for index, member in enumerate(members):
                latent_pi, _ = actor_latent_and_values(member.policy, observations[index])
                sample_actions(member.policy, latent_pi)
        one_by_one = (time.process_time() - start) / REPEATS
    print(
        f"K={K}: batched {batched * 1e3:.2f} ms per step, one by one {one_by_one * 1e3:.2f} ms ({one_by_one / batched:.1f}x)"
    )


if __name__ == "__main__":
    main()
