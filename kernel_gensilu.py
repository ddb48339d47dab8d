"""
kernel_gensilu.py -- the generalized SiLU of "MLP 2" as Triton kernels: y = gensilu(x) and the gated
h = gensilu(g) * v, each one pass forward and one pass backward.

    python kernel_gensilu.py     check against activations.py (CPU: in the Triton interpreter);
                                 on CUDA then a forward + backward benchmark against eager PyTorch

Source: Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
https://KindXiaoming.github.io/blog/2026/mlp-2/. Layout after the Triton tutorials
(https://triton-lang.org).

The function, with a = left cycles, b = right cycles, period T (default 1, the blog's figures):
    y(x) = x + a T  (x < -a T),   x - b T  (x > b T),   (T / 2 pi) sin(2 pi x / T)  otherwise
    gensilu(x) = y(x) s(x),   s = sigmoid,   and by the product rule with s' = s (1 - s):
    gensilu'(x) = y'(x) s + y(x) s (1 - s),   y' = 1 on the linear branches, cos(2 pi x / T) between
(amplitude T / 2 pi cancels the chain rule's 2 pi / T); the joins -aT and bT belong to the sine
branch, as in activations.gensilu_grad. For a fractional number of cycles y is discontinuous at
that join, as in the blog's code (see activations.py); the kernels follow the same definition.
1 - s is computed as sigmoid(-x): in fp32, 1 - s rounds to 0 for x > 17 and loses the digits of
the y s (1 - s) term well before.

Why fuse: an elementwise op is bound by memory traffic. gensilu reads x, writes y (2 passes over n
elements), its backward reads x, dy, writes dx (3); the gated form moves 3 + 5. Eager PyTorch runs
a sin, a sigmoid, clamps and products, each a full read and write, and autograd keeps several of
their outputs. Why recompute: a sin, cos and exp per element are free next to a memory pass, so
the autograd.Functions save only their inputs (float64 goes to activations.gensilu).
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

import activations

if __name__ == "__main__" and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # run the kernels on the CPU; before triton.jit

try:  # triton is optional (no macOS wheels): activations.py then uses plain PyTorch
    import triton
    import triton.language as tl
except ImportError:
    triton = None
HAVE_TRITON = triton is not None
BLOCK = 1024  # elements per program

if HAVE_TRITON:  # the kernels exist only where triton does
    @triton.jit
    def _gensilu_and_grad(x, lo, hi, amp, freq):
        """gensilu(x), gensilu'(x) for an fp32 block x; lo = -aT, hi = bT, amp = T/2pi,
        freq = 2pi/T."""
        linear = (x < lo) | (x > hi)
        y = tl.where(x < lo, x - lo, tl.where(x > hi, x - hi, amp * tl.sin(x * freq)))
        dy = tl.where(linear, 1.0, tl.cos(x * freq))
        t = tl.exp(-tl.abs(x))  # in (0, 1]: no overflow for any x
        s = tl.where(x >= 0, 1.0 / (1.0 + t), t / (1.0 + t))  # sigmoid(x)
        one_minus_s = tl.where(x >= 0, t / (1.0 + t), 1.0 / (1.0 + t))  # sigmoid(-x), no cancel
        return y * s, dy * s + y * s * one_minus_s

    @triton.jit
    def _gensilu_fwd(x_ptr,  # input x, n elements, fp32/fp16/bf16, contiguous
                     y_ptr,  # out: gensilu(x)
                     n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: no wrap at 2^31
        mask = offs < n  # the last block is ragged
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # fp32 math, any storage
        y, _ = _gensilu_and_grad(x, lo, hi, amp, freq)  # the unused derivative is compiled away
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_bwd(x_ptr,   # input x, as saved by forward
                     dy_ptr,  # incoming gradient dL/dy
                     dx_ptr,  # out: dL/dx = dy gensilu'(x)
                     n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        _, dact = _gensilu_and_grad(x, lo, hi, amp, freq)  # recomputed, never saved
        tl.store(dx_ptr + offs, (dy * dact).to(dx_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_glu_fwd(g_ptr,  # gate g = x W_g, n elements
                         v_ptr,  # value v = x W_v, n elements
                         h_ptr,  # out: h = gensilu(g) * v
                         n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, _ = _gensilu_and_grad(g, lo, hi, amp, freq)
        tl.store(h_ptr + offs, (gate * v).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_glu_bwd(g_ptr,   # gate g, as saved by forward
                         v_ptr,   # value v, as saved by forward
                         dh_ptr,  # incoming gradient dL/dh
                         dg_ptr,  # out: dL/dg = dh v gensilu'(g)
                         dv_ptr,  # out: dL/dv = dh gensilu(g)
                         n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, dgate = _gensilu_and_grad(g, lo, hi, amp, freq)  # recomputed, never saved
        tl.store(dg_ptr + offs, (dh * v * dgate).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offs, (dh * gate).to(dv_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, n, *args, params):
    """One program per BLOCK elements; params (left, right, period) -> lo, hi, amp, freq. The CPU
    interpreter computes in numpy, which warns about IEEE events (inf * 0) a GPU does silently."""
    a, b, T = params
    with np.errstate(all="ignore"):
        if n > 0:
            kernel[(triton.cdiv(n, BLOCK),)](*args, n, -a * T, b * T, T / (2 * math.pi),
                                             2 * math.pi / T, BLOCK=BLOCK)


class GenSilu(torch.autograd.Function):
    """y = gensilu(x). Saves only x; backward recomputes gensilu'."""

    @staticmethod
    def forward(ctx, x, left, right, period):
        ctx.save_for_backward(x)
        ctx.params = (left, right, period)
        y = x.new_empty(x.shape)
        _launch(_gensilu_fwd, y.numel(), x.contiguous(), y, params=ctx.params)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        dx = x.new_empty(x.shape)  # contiguous; dy may be a stride-0 expand: made contiguous
        _launch(_gensilu_bwd, dx.numel(), x.contiguous(), dy.contiguous(), dx, params=ctx.params)
        return dx, None, None, None


class GenSiluGlu(torch.autograd.Function):
    """h = gensilu(gate) * value. Saves only gate and value; backward recomputes."""

    @staticmethod
    def forward(ctx, gate, value, left, right, period):
        ctx.save_for_backward(gate, value)
        ctx.params = (left, right, period)
        h = gate.new_empty(gate.shape, dtype=torch.promote_types(gate.dtype, value.dtype))
        _launch(_gensilu_glu_fwd, h.numel(), gate.contiguous(), value.contiguous(), h,
                params=ctx.params)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        gate, value = ctx.saved_tensors
        dg = gate.new_empty(gate.shape)  # contiguous, as dh below
        dv = value.new_empty(value.shape)
        _launch(_gensilu_glu_bwd, dg.numel(), gate.contiguous(), value.contiguous(),
                dh.contiguous(), dg, dv, params=ctx.params)
        need_g, need_v = ctx.needs_input_grad[:2]
        return (dg if need_g else None), (dv if need_v else None), None, None, None


def _kernel_ready(*tensors):  # refuse what the kernels cannot take, with a one-line reason
    if {t.dtype for t in tensors} - {torch.float32, torch.float16, torch.bfloat16}:
        dtypes = [t.dtype for t in tensors]
        raise TypeError(f"kernel_gensilu: dtypes {dtypes}; use fp32, fp16, bf16")
    if not HAVE_TRITON or (tensors[0].device.type == "cpu" and not triton.knobs.runtime.interpret):
        raise RuntimeError("kernel_gensilu needs triton, and for CPU tensors TRITON_INTERPRET=1 "
                           "set before it is imported; activations.py works without either")


def gensilu(x, left=0.0, right=0.0, period=1.0):
    """gensilu(x) through the kernel, differentiable (CUDA, or CPU under TRITON_INTERPRET=1)."""
    activations.check_gensilu(left, right, period)
    if x.dtype == torch.float64:
        return activations.gensilu(x, left, right, period)
    _kernel_ready(x)
    return GenSilu.apply(x, float(left), float(right), float(period))


def gensilu_glu(gate, value, left=0.0, right=0.0, period=1.0):
    """gensilu(gate) * value through one fused kernel; float64 or broadcasting shapes: the plain
    PyTorch formula."""
    activations.check_gensilu(left, right, period)
    if gate.shape != value.shape or torch.float64 in (gate.dtype, value.dtype):
        return activations.gensilu(gate, left, right, period) * value
    _kernel_ready(gate, value)
    return GenSiluGlu.apply(gate, value, float(left), float(right), float(period))


# ---------------------------------------------------------------------------- the check
def check(device, n=3000):
    """Both kernels in each dtype vs activations.gensilu / gensilu_grad in float64, joins
    included."""
    print(f"gensilu vs activations.py in float64, n={n}, {device}: worst |err| / (tol + tol |want|)"
          " (<= 1 passes)")
    print(f"{'dtype':9s} {'left,right,T':14s}      y     dx      h  dgate dvalue")
    gen = torch.Generator().manual_seed(0)
    ok = True
    for dtype, tol in {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.items():
        for a, b, T in [(0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (2.0, 3.0, 2 * math.pi), (0.5, 1.5, 4.0)]:
            x, v, dh = torch.randn(3, n, generator=gen)
            joins = torch.tensor([-a * T, b * T])
            special = torch.tensor([0.0, 20.0, -20.0, 1e4, -1e4])
            spread = x[11:] * (a + b + 1) * T
            x = torch.cat([joins, joins.nextafter(joins + 1), joins.nextafter(joins - 1), special,
                           spread])
            x, v, dh = x.to(device, dtype), v.to(device, dtype), dh.to(device, dtype)
            xr = x.clone().requires_grad_()
            gr = x.clone().requires_grad_()
            vr = v.clone().requires_grad_()
            y = gensilu(xr, a, b, T)
            h = gensilu_glu(gr, vr, a, b, T)
            torch.autograd.backward([y, h], [dh, dh])
            x64, v64, dh64 = x.double(), v.double(), dh.double()
            f64 = activations.gensilu(x64, a, b, T)
            df64 = activations.gensilu_grad(x64, a, b, T)
            pairs = [(y, f64), (xr.grad, dh64 * df64), (h, f64 * v64), (gr.grad, dh64 * v64 * df64),
                     (vr.grad, dh64 * f64)]
            errors = []
            for got, want in pairs:
                errors.append(((got.double() - want).abs() / (tol + tol * want.abs())).max().item())
            good = all(e <= 1 for e in errors)  # a NaN fails too
            ok = ok and good
            verdict = "" if good else "  FAIL"
            numbers = " ".join(f"{e:6.3f}" for e in errors)
            print(f"{str(dtype)[6:]:9s} {f'{a:g},{b:g},{T:.4g}':14s} {numbers}{verdict}")
    return ok


# ------------------------------------------------------------------------ the benchmark
def benchmark(sizes=(2 ** 16, 2 ** 20, 2 ** 24, 2 ** 26), params=(1.0, 1.0, 1.0)):
    """CUDA, fp32: forward + backward, median ms from triton.testing.do_bench: fused, eager
    gensilu and eager SiLU (the cheapest smooth gate), elementwise (y) and gated (glu). GB/s
    counts the passes a fused kernel must make (5 elementwise, 8 gated)."""
    def fused_y(x, v):
        return gensilu(x, *params)

    def eager_y(x, v):
        return activations.gensilu(x, *params)

    def silu_y(x, v):
        return activations.silu(x)

    def fused_glu(g, v):
        return gensilu_glu(g, v, *params)

    def eager_glu(g, v):
        return activations.gensilu(g, *params) * v

    def silu_glu(g, v):
        return activations.silu(g) * v

    cases = [("y", 5, [fused_y, eager_y, silu_y]), ("glu", 8, [fused_glu, eager_glu, silu_glu])]
    print(f"\n{torch.cuda.get_device_name()}, gensilu{params}, fp32")
    heads = " ".join(f"{name + ' ms':>10s} {'GB/s':>6s}" for name in ("fused", "eager", "SiLU"))
    print(f"{'form':4s} {'n':>9s} {heads}")
    for form, passes, fns in cases:
        for n in sizes:
            g = torch.randn(n, device="cuda", requires_grad=True)
            v = torch.randn(n, device="cuda", requires_grad=True)
            dh = torch.randn(n, device="cuda")
            cells = []
            for fn in fns:
                def step(fn=fn):
                    fn(g, v).backward(dh)
                ms = triton.testing.do_bench(step, grad_to_none=[g, v])
                cells.append(f"{ms:10.4f} {passes * n * 4 / ms / 1e6:6.0f}")
            print(f"{form:4s} {n:9d} " + " ".join(cells))


def main():
    argparse.ArgumentParser(description=__doc__.split("\n\n")[1],  # no options; -h prints usage
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not HAVE_TRITON:
        sys.exit("error: triton is not installed (pip install triton); activations.py works "
                 "without it")
    if not check(device):
        sys.exit("error: the kernels disagree with activations.py (FAIL rows above)")
    if device == "cpu":
        print("\nthe benchmark needs CUDA (the interpreter only checks correctness)")
        return
    benchmark()


if __name__ == "__main__":
    main()
