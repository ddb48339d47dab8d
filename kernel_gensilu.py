"""
kernel_gensilu.py -- the generalized SiLU of [MLP2] as Triton kernels: elementwise y = gensilu(x)
and the gated form h = gensilu(g) * v, each one pass forward and one pass backward.

    python kernel_gensilu.py        correctness check against activations.gensilu; on a CUDA GPU
                                    also a forward+backward benchmark (GB/s, % of bandwidth floor)

Sources
  [MLP2] Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
         https://KindXiaoming.github.io/blog/2026/mlp-2/ (the function; see activations.py)
  [GLU]  Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202 (SwiGLU, the baseline).
  Triton tutorial "Vector addition" (https://triton-lang.org/main/getting-started/tutorials/) for
  the masked block kernel and perf_report/do_bench; Liger-Kernel's swiglu.py
  (https://github.com/linkedin/Liger-Kernel) for recomputing the activation in backward.

The function (activations.py), with a = left cycles, b = right cycles, T = period, A = T/(2 pi):
    y(x) = x + a T  (x < -a T),   x - b T  (x > b T),   A sin(2 pi x / T)  otherwise
    gensilu(x) = y(x) s(x),       s = sigmoid
Its derivative, by the product rule, with s' = s (1 - s):
    gensilu'(x) = y'(x) s + y(x) s (1 - s)
    y'(x) = 1                                     on the two linear branches
    y'(x) = A cos(2 pi x / T) 2 pi / T = cos(2 pi x / T)   on the sine branch (A 2pi/T = 1)
  At the joins x = -aT and x = bT the comparison puts the point itself on the sine branch, as the
  reference's torch.where does; for whole cycles both branches meet there with value 0 and slope 1.
  1 - s is computed as sigmoid(-x) from t = exp(-|x|) (s = 1/(1+t) or t/(1+t)), never as 1 - s,
  which would round to 0 for x > 17 in fp32 and lose the y s (1 - s) term's digits well before.

Memory traffic (one pass = reading or writing n elements once; see kernel_sqs.py for the argument):
  elementwise  forward read x, write y = 2 passes;  backward read x, dy, write dx = 3 passes
  gated        forward read g, v, write h = 3;       backward read g, v, dh, write dg, dv = 5
  Backward saves only the inputs and recomputes y, y', s -- a sin, a cos and an exp per element are
  free next to a memory pass; eager PyTorch saves several intermediates instead.

Numerics and layout as in kernel_sqs.py: fp32 math, one rounding on store, int64 offsets,
contiguous copies of strided inputs, empty in -> empty out; float64 and broadcasting shapes go to
the reference. On CPU the kernels run only in the Triton interpreter (TRITON_INTERPRET=1 before
import; `python kernel_gensilu.py` sets it itself when there is no GPU).
"""
import contextlib
import math
import os

import torch
import torch.nn.functional as F

import activations

if __name__ == "__main__" and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton.jit below
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# The measuring tools (saved bytes, eager memory passes, benchmark loop, command line) are the
# same for every elementwise kernel; they live in kernel_sqs.py.
from kernel_sqs import eager_passes, run_benchmarks, run_cli, saved_bytes  # noqa: E402

try:  # triton is optional: without it activations.py uses the reference and nothing breaks
    import triton
    import triton.language as tl
except Exception:  # ImportError, or a broken install: treat as missing
    triton = None

BLOCK = 1024  # elements per program, as in the Triton tutorials
NUM_WARPS = 4


def available():
    """True if triton imported, so the kernels can run (CUDA tensors, or CPU under the
    interpreter)."""
    return triton is not None


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _gensilu_and_grad(x, lo, hi, amp, freq):
        """gensilu(x) and gensilu'(x) for an fp32 block x; lo = -aT, hi = bT, freq = 2 pi / T."""
        linear = (x < lo) | (x > hi)
        y = tl.where(x < lo, x - lo, tl.where(x > hi, x - hi, amp * tl.sin(x * freq)))
        dy = tl.where(linear, 1.0, tl.cos(x * freq))
        t = tl.exp(-tl.abs(x))  # in (0, 1]: no overflow for any x
        r = 1.0 / (1.0 + t)
        s = tl.where(x >= 0, r, t * r)  # sigmoid(x)
        one_minus_s = tl.where(x >= 0, t * r, r)  # sigmoid(-x), accurate when s ~ 1
        return y * s, dy * s + y * s * one_minus_s

    @triton.jit
    def _gensilu_fwd_kernel(x_ptr, y_ptr, n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: no wrap
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y, _ = _gensilu_and_grad(x, lo, hi, amp, freq)  # the derivative is compiled away
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_bwd_kernel(x_ptr, dy_ptr, dx_ptr, n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        _, dact = _gensilu_and_grad(x, lo, hi, amp, freq)
        tl.store(dx_ptr + offs, (dy * dact).to(dx_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_glu_fwd_kernel(g_ptr, v_ptr, h_ptr, n, lo, hi, amp, freq, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, _ = _gensilu_and_grad(g, lo, hi, amp, freq)
        tl.store(h_ptr + offs, (gate * v).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _gensilu_glu_bwd_kernel(g_ptr, v_ptr, dh_ptr, dg_ptr, dv_ptr, n, lo, hi, amp, freq,
                                BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, dgate = _gensilu_and_grad(g, lo, hi, amp, freq)  # recomputed, never saved
        tl.store(dg_ptr + offs, (dh * v * dgate).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offs, (dh * gate).to(dv_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------
# Launchers (no autograd) and the autograd Functions
# ------------------------------------------------------------------------------------------------


def _new(shape, dtype, device):
    """Allocate an output. One place, so the tests can swap in NaN-filled buffers."""
    return torch.empty(shape, dtype=dtype, device=device)


def _check_launchable(*tensors):
    for t in tensors:
        if t.device.type == "cpu" and not INTERPRET:
            raise RuntimeError("kernel_gensilu: CPU tensors need the Triton interpreter; set "
                               "TRITON_INTERPRET=1 before importing kernel_gensilu, or use "
                               "activations.py, which falls back to the reference on CPU")
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"kernel_gensilu: unsupported dtype {t.dtype} (fp32, fp16, bf16)")


def _consts(left, right, period):
    """Kernel scalars: lo = -aT, hi = bT, amplitude T/(2 pi), frequency 2 pi/T."""
    return (float(-left * period), float(right * period), float(period / (2 * math.pi)),
            float(2 * math.pi / period))


def _launch(kernel, n, *args):
    """Launch an elementwise kernel over n elements (nothing to do for n = 0)."""
    if n == 0:
        return
    ctx = contextlib.nullcontext()
    if INTERPRET:  # numpy warns about IEEE events (inf * 0) that a GPU performs silently
        import numpy as np
        ctx = np.errstate(divide="ignore", invalid="ignore", over="ignore")
    with ctx:
        kernel[(triton.cdiv(n, BLOCK),)](*args, BLOCK=BLOCK, num_warps=NUM_WARPS)


def forward(x, left=0.0, right=0.0, period=2 * math.pi):
    """y = gensilu(x) in one kernel. No autograd."""
    _check_launchable(x)
    y = _new(x.shape, x.dtype, x.device)
    _launch(_gensilu_fwd_kernel, y.numel(), x.contiguous(), y, y.numel(),
            *_consts(left, right, period))
    return y


def backward(x, dy, left=0.0, right=0.0, period=2 * math.pi):
    """dx = dy * gensilu'(x) in one kernel. No autograd."""
    _check_launchable(x, dy)
    dx = _new(x.shape, x.dtype, x.device)
    _launch(_gensilu_bwd_kernel, dx.numel(), x.contiguous(), dy.contiguous(), dx, dx.numel(),
            *_consts(left, right, period))
    return dx


def glu_forward(gate, value, left=0.0, right=0.0, period=2 * math.pi):
    """h = gensilu(gate) * value in one kernel (same shapes). No autograd."""
    _check_launchable(gate, value)
    h = _new(gate.shape, torch.promote_types(gate.dtype, value.dtype), gate.device)
    _launch(_gensilu_glu_fwd_kernel, h.numel(), gate.contiguous(), value.contiguous(), h,
            h.numel(), *_consts(left, right, period))
    return h


def glu_backward(gate, value, dh, left=0.0, right=0.0, period=2 * math.pi):
    """(dgate, dvalue) for h = gensilu(gate) * value in one kernel. No autograd."""
    _check_launchable(gate, value, dh)
    dg = _new(gate.shape, gate.dtype, gate.device)
    dv = _new(value.shape, value.dtype, value.device)
    _launch(_gensilu_glu_bwd_kernel, dg.numel(), gate.contiguous(), value.contiguous(),
            dh.contiguous(), dg, dv, dg.numel(), *_consts(left, right, period))
    return dg, dv


class GenSiluFunction(torch.autograd.Function):
    """Autograd for y = gensilu(x); saves only x and recomputes in backward."""

    @staticmethod
    def forward(ctx, x, left, right, period):
        ctx.save_for_backward(x)
        ctx.params = (left, right, period)
        return forward(x, left, right, period)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        return backward(x, dy, *ctx.params), None, None, None


class GenSiluGluFunction(torch.autograd.Function):
    """Autograd for h = gensilu(gate) * value; saves only gate and value."""

    @staticmethod
    def forward(ctx, gate, value, left, right, period):
        ctx.save_for_backward(gate, value)
        ctx.params = (left, right, period)
        return glu_forward(gate, value, left, right, period)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        gate, value = ctx.saved_tensors
        dg, dv = glu_backward(gate, value, dh, *ctx.params)
        need_g, need_v = ctx.needs_input_grad[:2]
        return (dg if need_g else None), (dv if need_v else None), None, None, None


def gensilu(x, left=0.0, right=0.0, period=2 * math.pi):
    """Generalized SiLU through the kernel, differentiable; parameters checked like
    activations.gensilu. float64 input uses the reference."""
    activations._check_gensilu(left, right, period)
    if x.dtype == torch.float64:
        return activations.gensilu(x, left, right, period)
    return GenSiluFunction.apply(x, float(left), float(right), float(period))


def gensilu_glu(gate, value, left=0.0, right=0.0, period=2 * math.pi):
    """Gated generalized SiLU gensilu(gate) * value through the fused kernel, differentiable.
    float64 inputs and gate/value shapes that differ (broadcasting) use the reference."""
    activations._check_gensilu(left, right, period)
    if gate.shape != value.shape or torch.float64 in (gate.dtype, value.dtype):
        return activations.gensilu(gate, left, right, period) * value
    if gate.device != value.device:
        raise ValueError(f"gensilu_glu: gate on {gate.device} but value on {value.device}")
    return GenSiluGluFunction.apply(gate, value, float(left), float(right), float(period))


def glu(gate, value, left=0.0, right=0.0, period=2 * math.pi):
    """The name activations.glu calls: same as gensilu_glu."""
    return gensilu_glu(gate, value, left, right, period)


# ------------------------------------------------------------------------------------------------
# Stand-alone check and benchmark
# ------------------------------------------------------------------------------------------------
# Tolerances vs float64 (fp32 math, one rounding on store; the interpreter's fp32 -> bf16 store
# truncates instead of rounding, so bf16 allows a full ulp, 2^-7).
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
PARAMS = [(0.0, 0.0, 2 * math.pi), (1.0, 1.0, 2 * math.pi), (2.0, 3.0, 1.0), (0.5, 1.5, 4.0)]


def reference(x, value, dh, left, right, period):
    """(h, dgate, dvalue) in float64 by autograd through activations.gensilu."""
    g = x.double().requires_grad_()
    v = value.double().requires_grad_()
    h = activations.gensilu(g, left, right, period) * v
    h.backward(dh.double())
    return h.detach(), g.grad, v.grad


def special_points(left, right, period):
    """Where gensilu is delicate: 0, the joins -aT and bT and their fp32 neighbours, large |x|."""
    pts = [0.0, 1e4, -1e4, 1e-3, -1e-3, 20.0, -20.0]
    for j in (-left * period, right * period):
        jt = torch.tensor(j, dtype=torch.float32)
        pts += [j, torch.nextafter(jt, jt + 1).item(), torch.nextafter(jt, jt - 1).item()]
    return torch.tensor(pts)


def check(device, n=3000):
    """gensilu and gensilu_glu, forward and gradients, vs float64; True if all pass."""
    gen = torch.Generator().manual_seed(0)
    ok = True
    print(f"correctness vs float64 reference, n={n}, device={device}"
          + (" (Triton interpreter)" if INTERPRET else ""))
    print("worst |error| / (atol + rtol |reference|); <= 1 passes")
    print(f"{'dtype':9s} {'left,right,T':16s} {'y':>7s} {'dx':>7s} {'h':>7s} {'dgate':>7s} "
          f"{'dvalue':>7s}  result")
    for dtype, (rtol, atol) in TOL.items():
        for left, right, period in PARAMS:
            x = torch.randn(n, generator=gen) * (left + right + 1) * period / 2
            sp = special_points(left, right, period)
            x[:len(sp)] = sp
            v, dh = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
            x, v, dh = (t.to(dtype).to(device) for t in (x, v, dh))
            xr, gr, vr = (t.clone().requires_grad_() for t in (x, x, v))
            y = gensilu(xr, left, right, period)
            y.backward(dh)
            h = gensilu_glu(gr, vr, left, right, period)
            h.backward(dh)
            want_h, want_dg, want_dv = reference(x, v, dh, left, right, period)
            want_y, want_dx, _ = reference(x, torch.ones_like(x), dh, left, right, period)
            pairs = [(y, want_y), (xr.grad, want_dx), (h, want_h), (gr.grad, want_dg),
                     (vr.grad, want_dv)]
            ratios = [((got.double().cpu() - want.cpu()).abs() / (atol + rtol * want.cpu().abs()))
                      .nan_to_num(nan=math.inf).max().item() for got, want in pairs]
            good = max(ratios) <= 1
            ok &= good
            print(f"{str(dtype)[6:]:9s} {f'{left:g},{right:g},{period:.4g}':16s} "
                  + " ".join(f"{r:7.3f}" for r in ratios) + f"  {'ok' if good else 'FAIL'}")
    return ok


def memory_report(device, n=4096):
    x = torch.randn(n, device=device, requires_grad=True)
    v = torch.randn(n, device=device, requires_grad=True)
    p = (1.0, 1.0, 2 * math.pi)
    for label, fused_fn, eager_fn, inputs in [
            ("gensilu", lambda a: gensilu(a, *p), lambda a: activations.gensilu(a, *p), (x,)),
            ("gensilu_glu", lambda a, b: gensilu_glu(a, b, *p),
             lambda a, b: activations.gensilu(a, *p) * b, (x, v))]:
        nbytes = sum(t.numel() * t.element_size() for t in inputs)
        fused, eager = saved_bytes(fused_fn, *inputs), saved_bytes(eager_fn, *inputs)
        print(f"saved for backward, {label} (fp32, n={n}, gensilu:1,1): fused {fused} B = "
              f"{fused / nbytes:.2f}x the inputs, eager {eager} B = {eager / nbytes:.2f}x; "
              f"eager/fused = {eager / fused:.2f}")
    eager_glu = eager_passes(lambda a, b: activations.gensilu(a, *p) * b, x, v)
    print(f"memory passes, forward + backward: fused gensilu 5 (2 + 3), fused gensilu-GLU 8 "
          f"(3 + 5); eager gensilu {eager_passes(lambda a: activations.gensilu(a, *p), x):.1f}, "
          f"eager gensilu-GLU {eager_glu:.1f}, "
          f"eager SiLU {eager_passes(F.silu, x):.1f}, "
          f"eager SwiGLU {eager_passes(lambda a, b: F.silu(a) * b, x, v):.1f}")


def benchmark(dtypes, out, peak_gbps, left=1.0, right=1.0, period=2 * math.pi, device="cuda",
              exps=range(16, 27)):
    """Forward+backward time vs eager, torch.compile(eager) and SiLU/SwiGLU, Triton-tutorial
    style, for n = 2^exps elements. (device and exps let a test smoke-run this code on CPU.)"""
    peak = peak_gbps or triton.testing.get_dram_gbps()
    gpu = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"\nGPU: {gpu}, bandwidth floor computed with {peak:.0f} GB/s "
          f"({'given' if peak_gbps else 'DRAM clock x bus width'})")
    act = lambda x: activations.gensilu(x, left, right, period)  # noqa: E731
    glu_eager = lambda g, v: act(g) * v  # noqa: E731
    groups = {  # name: (passes, providers, line names); unary ones ignore v
        "gensilu": (5, {"triton": lambda g, v: gensilu(g, left, right, period),
                        "eager": lambda g, v: act(g),
                        "compile": (lambda f: lambda g, v: f(g))(torch.compile(act)),
                        "silu": lambda g, v: F.silu(g)},
                    ["Triton gensilu", "eager gensilu", "torch.compile gensilu", "eager SiLU"]),
        "gensilu_glu": (8, {"triton": lambda g, v: gensilu_glu(g, v, left, right, period),
                            "eager": glu_eager, "compile": torch.compile(glu_eager),
                            "swiglu": lambda g, v: F.silu(g) * v},
                        ["Triton gensilu-GLU", "eager gensilu-GLU", "torch.compile gensilu-GLU",
                         "eager SwiGLU"]),
    }
    times = {}
    os.makedirs(out, exist_ok=True)
    for group, (passes, providers, names) in groups.items():
        def run(n, provider, dtype):
            g = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
            v = torch.randn(n, device=device, dtype=dtype, requires_grad=group == "gensilu_glu")
            dh = torch.randn(n, device=device, dtype=dtype)
            fn = providers[provider]
            step = lambda: fn(g, v).backward(dh)  # noqa: E731
            ms, lo, hi = triton.testing.do_bench(step, quantiles=[0.5, 0.2, 0.8],
                                                 grad_to_none=[g, v])
            times[(group, str(dtype)[6:], n, provider)] = ms
            gbps = lambda t: passes * n * g.element_size() / (t * 1e-3) / 1e9  # noqa: E731
            return gbps(ms), gbps(hi), gbps(lo)

        benches = [triton.testing.Benchmark(
            x_names=["n"], x_vals=[2 ** i for i in exps], x_log=True,
            line_arg="provider", line_vals=list(providers), line_names=names,
            styles=[("blue", "-"), ("green", "-"), ("orange", "-"), ("gray", "--")],
            ylabel=f"GB/s ({passes} passes of n elements / time)",
            plot_name=f"{group}_fwd_bwd_{name}", args={"dtype": dtype}) for name, dtype in dtypes]
        run_benchmarks(run, benches, out)
        print(f"\n{group}: median fwd+bwd: ms, GB/s ({passes} passes moved / time) and % of the "
              f"bandwidth floor (time to move {passes} passes at {peak:.0f} GB/s / measured time)")
        print(f"{'dtype':9s} {'n':>9s} " + " ".join(f"{k + ' ms':>11s} {'GB/s':>6s} {'%':>4s}"
                                                    for k in providers))
        for name, dtype in dtypes:
            for i in exps:
                n, size = 2 ** i, torch.finfo(dtype).bits // 8
                floor_ms = passes * n * size / (peak * 1e9) * 1e3
                ms = [times[(group, name, n, k)] for k in providers]
                print(f"{name:9s} {n:9d} " + " ".join(
                    f"{t:11.4f} {passes * n * size / t / 1e6:6.0f} {100 * floor_ms / t:4.0f}"
                    for t in ms))


def main():
    run_cli(__doc__, "out/kernel_gensilu", check, memory_report, benchmark)


if __name__ == "__main__":
    main()
