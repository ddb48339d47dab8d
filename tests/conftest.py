"""Shared test set-up: run from any directory, headless figures, Triton in interpreter mode where
there is no GPU.

TRITON_INTERPRET must be in the environment before `triton.jit` runs, so it is set here, before any
test module imports a kernel file. Scripts run as subprocesses inherit it too."""
import os
import sys

import torch  # noqa: E402

if not torch.cuda.is_available():  # with a GPU the kernels compile and their tests run on CUDA
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
