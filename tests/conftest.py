"""One CPU thread per test process.

The suite runs two pytest workers on two cores (tasks.py test: -n 2). With torch's default of one
thread per core, both workers' torch (and every notebook kernel or `course` subprocess they start)
would each run two OpenMP threads on two cores: four spinning threads for two cores, which made a
forward pass of the reference model over 20 times slower than on one thread (measured on the 2-core
test machine under load). The environment is set before any test module imports torch, and is
inherited by the kernels and subprocesses the tests start.
"""
import os

for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[name] = "1"

try:
    import torch
except ImportError:                                        # the setup checks run without torch
    pass
else:
    torch.set_num_threads(1)
