import torch as th

# Tiny networks run several times faster on one thread than on two on this project's 2-core machines,
# and one thread keeps results deterministic.
th.set_num_threads(1)
