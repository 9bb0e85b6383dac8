import torch as th

# Small networks: one thread per test process is faster than contending threads under pytest-xdist.
th.set_num_threads(1)
