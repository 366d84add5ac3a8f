"""Tolerances for comparing a student's tensors with the reference, in one place.

| dtype / device                 | rtol  | atol  |
|--------------------------------|-------|-------|
| float64 (any device)           | 1e-9  | 1e-10 |
| float32 on CPU                 | 1e-4  | 1e-5  |
| float32 on CUDA or MPS         | 1e-3  | 1e-4  |
| float16 / bfloat16             | 1e-2  | 1e-2  |
| integers and bools             | exact | exact |

Why these numbers. A correct implementation written differently (einsum
instead of matmul, a loop instead of a vectorized op, the 1/sqrt(d_k) applied
to Q instead of to the scores) changes float32 results by a few units in the
last place, around 1e-7 relative; 1e-4 leaves three orders of magnitude of
room while every mistake the checks know (a missing 1/sqrt(d_k), a mask off by
one, eps forgotten in RMSNorm) changes results by far more than 1e-3.

On CUDA the checks turn TF32 off (torch.backends.cuda.matmul.allow_tf32 =
False, torch.backends.cudnn.allow_tf32 = False) before comparing, because
TF32 keeps only 10 mantissa bits in matmuls (relative error ~1e-3). GPU
kernels still sum in a different order than the CPU, hence the looser float32
row for CUDA and MPS.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


EXACT = Tolerance(0.0, 0.0)
TOLERANCES = {
    ("float64", "any"): Tolerance(1e-9, 1e-10),
    ("float32", "cpu"): Tolerance(1e-4, 1e-5),
    ("float32", "accelerator"): Tolerance(1e-3, 1e-4),
    ("half", "any"): Tolerance(1e-2, 1e-2),
}


def tolerance_for(dtype: torch.dtype, device="cpu") -> Tolerance:
    if not dtype.is_floating_point:
        return EXACT
    if dtype == torch.float64:
        return TOLERANCES[("float64", "any")]
    if dtype in (torch.float16, torch.bfloat16):
        return TOLERANCES[("half", "any")]
    kind = "cpu" if torch.device(device).type == "cpu" else "accelerator"
    return TOLERANCES[("float32", kind)]


def disable_tf32() -> None:
    """Full float32 matmuls on CUDA, so that the float32 tolerances hold."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def close(output: torch.Tensor, expected: torch.Tensor, tol: Tolerance) -> bool:
    """Elementwise |out - exp| <= atol + rtol * |exp|, NaN equal to NaN, inf equal to the same inf.

    Written out instead of torch.allclose so that a student who monkeypatches
    torch.allclose in a notebook cannot change the verdict.
    """
    out = output.detach().to("cpu")
    exp = expected.detach().to("cpu")
    if out.shape != exp.shape:
        return False
    if not exp.dtype.is_floating_point:
        return bool((out.to(exp.dtype) == exp).all())
    out, exp = out.double(), exp.double()
    both_nan = torch.isnan(out) & torch.isnan(exp)
    same_inf = torch.isinf(out) & torch.isinf(exp) & (torch.sign(out) == torch.sign(exp))
    diff = (out - exp).abs()
    ok = (diff <= tol.atol + tol.rtol * exp.abs()) | both_nan | same_inf
    return bool(ok.all())
