"""
What the py-spy profile of the population samples: 33 members (the PPO paper's Table 1 cells of HalfCheetah-v5)
learning 4,096 steps each, one process, one torch thread::

    py-spy record -r 50 -f raw -o pyspy.txt -- python benchmarks/results/population/pyspy_learn.py
"""

import torch as th

from sb3_lecture_ppo.ablation import VARIANTS
from sb3_lecture_ppo.population.population import Population
from sb3_lecture_ppo.population.speed import cells, paper_member

if __name__ == "__main__":
    th.set_num_threads(1)
    members = [paper_member("HalfCheetah-v5", seed, variant) for variant, seed in cells(list(VARIANTS), 3)]
    Population(members).learn(4096)
