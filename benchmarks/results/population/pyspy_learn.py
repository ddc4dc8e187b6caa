import torch as th
th.set_num_threads(1)
from sb3_lecture_ppo.population.speed import paper_member, cells
from sb3_lecture_ppo.ablation import VARIANTS
from sb3_lecture_ppo.population.population import Population
grid = cells(list(VARIANTS), 3)
pop = Population([paper_member("HalfCheetah-v5", s, v) for v, s in grid])
pop.learn(4096)
