"""
kernel_sqs.py -- the SQS-GLU hidden state h = sqs(g) * v as one fused Triton kernel, forward and
backward, written like the Triton tutorials' elementwise kernels and Liger-Kernel's fused SwiGLU.

    python kernel_sqs.py            correctness check against activations.py; on a CUDA GPU also a
                                    forward+backward benchmark (GB/s, % of the bandwidth floor)

Sources
  [SQS]  "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation
         Function", arXiv:2509.01874 -- Appendix C / Table 5 claims a Triton SQS is on par with
         SwiGLU for forward + backward. sqs itself is reconstructed in activations.py (see there).
  [GLU]  Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202 (SwiGLU, the baseline).
  Triton tutorial "Vector addition" (https://triton-lang.org/main/getting-started/tutorials/) for
  the masked block kernel and the perf_report/do_bench benchmark; Liger-Kernel's swiglu.py
  (https://github.com/linkedin/Liger-Kernel) for the idea of recomputing the gate in backward.

Why a kernel at all: memory traffic
  An elementwise op on a GPU is bound by memory bandwidth, not arithmetic. Count tensor passes
  (one pass = reading or writing n elements once):
    forward   read g, read v, write h                         = 3 passes
    backward  read g, read v, read dh, write dg, write dv     = 5 passes
  8 passes in all, and no fused kernel can do fewer: these are the inputs and outputs. Eager
  PyTorch runs sqs(g) * v as ~8 separate kernels (sign, abs, mul, add, sub, div, mul, ...), each a
  full read and write, and autograd *saves* several of their intermediates for backward -- more
  memory and more passes. Here backward saves only g and v and recomputes sqs(g) and sqs'(g) in
  registers: a few dozen flops per element are free next to one extra pass over memory.

The derivative (also in activations.py), with s = sign(g) and sign(0) = +1:
    sqs(g)  = (g - c s) / D,   D = 1 + lam |g|^p
    sqs'(g) = [D - (g - c s) lam p |g|^(p-1) s] / D^2
            = [1 - (|g| - c) lam p |g|^(p-1) / D] / D       because (g - c s) s = |g| - c
    p = 1:  sqs'(g) = (1 + lam c) / (1 + lam |g|)^2         (numerator collapses: the cheap path)
  At g = 0 the +1 branch is used, exactly as activations.sqs_grad: sqs'(0) = 1 + lam c for p = 1,
  1 for p > 1, and for p < 1 |g|^(p-1) = inf, so the value is +-inf (NaN if c = 0 or lam = 0) --
  the same IEEE arithmetic as the reference. The GLU gradients then follow by the product rule:
    dv = dh * sqs(g),   dg = dh * v * sqs'(g).

Numerics: every element is loaded, converted to fp32, computed in fp32 and rounded once on store,
whatever the storage dtype (fp32, fp16, bf16; the Triton interpreter needs the fp32 conversion
for bf16). Offsets are int64, so tensors above 2^31 elements are addressed correctly. Inputs are
made contiguous; outputs have the inputs' shape. float64 inputs and shapes that need broadcasting
go to the reference (this kernel exists for speed; float64 is for checking).

On CPU, Triton only runs in its interpreter (TRITON_INTERPRET=1 set before this module is
imported; `python kernel_sqs.py` sets it itself when there is no GPU). It is slow (~1 M elements
in a few seconds) and only good for checking correctness.
"""
import argparse
import contextlib
import importlib.util
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

import activations

if __name__ == "__main__" and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton.jit below
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

try:  # triton is optional: without it activations.py uses the reference and nothing breaks
    import triton
    import triton.language as tl
except Exception:  # ImportError, or a broken install (e.g. no compiler): treat as missing
    triton = None

BLOCK = 1024  # elements per program, as in the Triton tutorials; tests use sizes around it
NUM_WARPS = 4


def available():
    """True if triton imported, so sqs_glu can run (CUDA tensors, or CPU ones under the
    interpreter)."""
    return triton is not None


# ------------------------------------------------------------------------------------------------
# Triton kernels
# ------------------------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _sqs_and_grad(g, c, lam, p, P_IS_ONE: tl.constexpr):
        """sqs(g) and sqs'(g) for an fp32 block g (formulas in the module docstring)."""
        s = tl.where(g >= 0, 1.0, -1.0)  # sign with sign(0) = +1
        a = tl.abs(g)
        if P_IS_ONE:
            den = 1.0 + lam * a
            dsqs = (1.0 + lam * c) / den / den  # divide twice: den*den could overflow fp32
        else:
            # |g|^p = 2^(p log2|g|); at g = 0 log2 = -inf gives 0^p = 0 and 0^(p-1) = inf/0 for
            # p < 1 / p > 1, the same values torch.pow gives the reference.
            la = tl.log2(a)
            den = 1.0 + lam * tl.exp2(p * la)
            dpow = p * tl.exp2((p - 1.0) * la)  # d|g|^p / d|g|
            dsqs = (1.0 - (a - c) * lam * dpow / den) / den
        return (g - c * s) / den, dsqs

    @triton.jit
    def _sqs_glu_fwd_kernel(g_ptr, v_ptr, h_ptr, n, c, lam, p,
                            P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        # One program = one block of BLOCK elements; int64 so offsets past 2^31 do not wrap.
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, _ = _sqs_and_grad(g, c, lam, p, P_IS_ONE)  # the unused derivative is compiled away
        tl.store(h_ptr + offs, (gate * v).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _sqs_glu_bwd_kernel(g_ptr, v_ptr, dh_ptr, dg_ptr, dv_ptr, n, c, lam, p,
                            P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, dgate = _sqs_and_grad(g, c, lam, p, P_IS_ONE)  # recomputed, never saved
        tl.store(dg_ptr + offs, (dh * v * dgate).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offs, (dh * gate).to(dv_ptr.dtype.element_ty), mask=mask)


# ------------------------------------------------------------------------------------------------
# Launchers (no autograd) and the autograd Function
# ------------------------------------------------------------------------------------------------


def _new(shape, dtype, device):
    """Allocate an output. One place, so the tests can swap in NaN-filled buffers and see that
    every element is written."""
    return torch.empty(shape, dtype=dtype, device=device)


def _check_launchable(*tensors):
    for t in tensors:
        if t.device.type == "cpu" and not INTERPRET:
            raise RuntimeError("kernel_sqs: CPU tensors need the Triton interpreter; set "
                               "TRITON_INTERPRET=1 before importing kernel_sqs, or call "
                               "activations.glu, which falls back to the reference on CPU")
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"kernel_sqs: unsupported dtype {t.dtype} (fp32, fp16, bf16)")


def _grid(n):
    return (triton.cdiv(n, BLOCK),)


def _quiet():
    """The interpreter runs kernels in numpy, which warns about IEEE events (log2(0) in padding
    lanes, 0 * inf) that a GPU performs silently; silence them there."""
    if INTERPRET:
        import numpy as np
        return np.errstate(divide="ignore", invalid="ignore", over="ignore")
    return contextlib.nullcontext()


def forward(gate, value, c=0.01, lam=0.5, p=1.0):
    """h = sqs(gate) * value in one kernel (gate, value: same shape). No autograd."""
    _check_launchable(gate, value)
    g, v = gate.contiguous(), value.contiguous()
    h = _new(gate.shape, torch.promote_types(gate.dtype, value.dtype), gate.device)
    if h.numel() > 0:
        with _quiet():
            _sqs_glu_fwd_kernel[_grid(h.numel())](g, v, h, h.numel(), float(c), float(lam),
                                                  float(p), P_IS_ONE=(p == 1), BLOCK=BLOCK,
                                                  num_warps=NUM_WARPS)
    return h


def backward(gate, value, dh, c=0.01, lam=0.5, p=1.0):
    """(dgate, dvalue) for h = sqs(gate) * value, in one kernel. No autograd."""
    _check_launchable(gate, value, dh)
    # dh is often a stride-0 expand (from h.sum().backward()): materialize it
    g, v, dh = gate.contiguous(), value.contiguous(), dh.contiguous()
    dg = _new(gate.shape, gate.dtype, gate.device)
    dv = _new(value.shape, value.dtype, value.device)
    if dg.numel() > 0:
        with _quiet():
            _sqs_glu_bwd_kernel[_grid(dg.numel())](g, v, dh, dg, dv, dg.numel(), float(c),
                                                   float(lam), float(p), P_IS_ONE=(p == 1),
                                                   BLOCK=BLOCK, num_warps=NUM_WARPS)
    return dg, dv


class SqsGluFunction(torch.autograd.Function):
    """Autograd for h = sqs(gate) * value. Saves only gate and value (the inputs themselves, no
    copies); backward recomputes sqs and sqs' inside the kernel."""

    @staticmethod
    def forward(ctx, gate, value, c, lam, p):
        ctx.save_for_backward(gate, value)
        ctx.params = (c, lam, p)
        return forward(gate, value, c, lam, p)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        gate, value = ctx.saved_tensors
        dg, dv = backward(gate, value, dh, *ctx.params)
        need_g, need_v = ctx.needs_input_grad[:2]
        return (dg if need_g else None), (dv if need_v else None), None, None, None


def sqs_glu(gate, value, c=0.01, lam=0.5, p=1.0):
    """SQS-GLU hidden state sqs(gate) * value, differentiable, through the fused kernel.

    Parameters are checked like activations.sqs. float64 inputs and gate/value shapes that differ
    (broadcasting) use the reference composite instead -- same result, no kernel."""
    activations._check_sqs(c, lam, p)
    c, lam, p = float(c), float(lam), float(p)
    if gate.shape != value.shape or torch.float64 in (gate.dtype, value.dtype):
        return activations.sqs(gate, c, lam, p) * value
    if gate.device != value.device:
        raise ValueError(f"sqs_glu: gate on {gate.device} but value on {value.device}")
    return SqsGluFunction.apply(gate, value, c, lam, p)


def glu(gate, value, c=0.01, lam=0.5, p=1.0):
    """The name activations.glu calls: same as sqs_glu."""
    return sqs_glu(gate, value, c, lam, p)


# ------------------------------------------------------------------------------------------------
# Stand-alone check and benchmark
# ------------------------------------------------------------------------------------------------
# Tolerances vs a float64 reference: fp32 math, one rounding to the storage dtype at the end.
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
PARAMS = [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 2.0), (0.05, 0.3, 0.5)]


def reference(gate, value, dh, c, lam, p):
    """(h, dg, dv) in float64 from activations.sqs / sqs_grad."""
    g, v, dh = gate.double(), value.double(), dh.double()
    h = activations.sqs(g, c, lam, p) * v
    return h, dh * v * activations.sqs_grad(g, c, lam, p), dh * activations.sqs(g, c, lam, p)


def saved_bytes(fn, *inputs):
    """Bytes of all tensors autograd saves for backward while computing fn(*inputs)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return total


def check(device, n=3000):
    """Forward and both gradients vs float64 for every dtype and PARAMS; True if all pass."""
    gen = torch.Generator().manual_seed(0)
    ok = True
    print(f"correctness vs float64 reference, n={n}, device={device}"
          + (" (Triton interpreter)" if INTERPRET else ""))
    print("worst |error| / (atol + rtol |reference|) per output; <= 1 passes")
    print(f"{'dtype':9s} {'c,lam,p':16s} {'h':>7s} {'dgate':>7s} {'dvalue':>7s}  result")
    for dtype, (rtol, atol) in TOL.items():
        for c, lam, p in PARAMS:
            g = torch.randn(n, generator=gen) * 3
            g[:6] = torch.tensor([0.0, c, -c, 1e4, -1e4, 1e-3])  # 0, the shift, large |g|
            if p < 1:
                g[0] = 1e-3  # sqs'(0) is infinite for p < 1: checked in the tests, not here
            v, dh = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
            g, v, dh = (t.to(dtype).to(device) for t in (g, v, dh))
            gr, vr = g.clone().requires_grad_(), v.clone().requires_grad_()
            h = sqs_glu(gr, vr, c, lam, p)
            h.backward(dh)
            ratios = [((got.double().cpu() - want.cpu()).abs() / (atol + rtol * want.cpu().abs()))
                      .nan_to_num(nan=math.inf).max().item()
                      for got, want in zip((h, gr.grad, vr.grad), reference(g, v, dh, c, lam, p))]
            good = max(ratios) <= 1
            ok &= good
            print(f"{str(dtype)[6:]:9s} {f'{c:g},{lam:g},{p:g}':16s} "
                  + " ".join(f"{r:7.3f}" for r in ratios) + f"  {'ok' if good else 'FAIL'}")
    return ok


def eager_passes(fn, *inputs):
    """Memory passes (bytes read + written / bytes of one input tensor) of fn(*inputs) forward +
    backward, counted op by op as eager PyTorch runs them: every aten op reads its full-size tensor
    arguments and writes its result. Views and allocations move no data and are skipped. (Uses
    TorchDispatchMode, a semi-private but stable torch hook; a fused kernel is invisible to it.)"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    n, unit = inputs[0].numel(), inputs[0].numel() * inputs[0].element_size()
    dh = torch.randn(n, device=inputs[0].device)
    moved = 0

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            nonlocal moved
            out = func(*args, **(kwargs or {}))
            if not func.is_view and "empty" not in func.__name__:
                moved += sum(t.numel() * t.element_size() for t in tree_leaves((args, kwargs, out))
                             if isinstance(t, torch.Tensor) and t.numel() == n)
            return out

    for t in inputs:
        t.grad = None  # so no gradient accumulation is counted
    with Count():
        fn(*inputs).backward(dh)
    return moved / unit


def memory_report(device, n=4096):
    g = torch.randn(n, device=device, requires_grad=True)
    v = torch.randn(n, device=device, requires_grad=True)
    inputs = 2 * n * 4
    fused = saved_bytes(lambda a, b: sqs_glu(a, b), g, v)
    eager = saved_bytes(lambda a, b: activations.sqs(a) * b, g, v)
    print(f"saved for backward (fp32, n={n}): fused {fused} B = {fused / inputs:.2f}x the inputs, "
          f"eager {eager} B = {eager / inputs:.2f}x the inputs; eager/fused = {eager / fused:.2f}")
    sqs_passes = eager_passes(lambda a, b: activations.sqs(a) * b, g, v)
    swiglu_passes = eager_passes(lambda a, b: F.silu(a) * b, g, v)
    print(f"memory passes, forward + backward: fused kernel 8 (3 + 5, by construction); "
          f"eager SQS-GLU {sqs_passes:.1f}; eager SwiGLU {swiglu_passes:.1f}")


def benchmark(dtypes, out, peak_gbps, c=0.01, lam=0.5, p=1.0, device="cuda", exps=range(16, 27)):
    """Forward+backward time vs eager, torch.compile(eager) and SwiGLU, Triton-tutorial style,
    for n = 2^exps elements. (device and exps exist so a test can smoke-run this code on CPU.)"""
    peak = peak_gbps or triton.testing.get_dram_gbps()
    gpu = torch.cuda.get_device_name() if device == "cuda" else device
    print(f"\nGPU: {gpu}, bandwidth floor computed with {peak:.0f} GB/s "
          f"({'given' if peak_gbps else 'DRAM clock x bus width'})")
    eager = lambda g, v: activations.sqs(g, c, lam, p) * v  # noqa: E731
    providers = {"triton": lambda g, v: sqs_glu(g, v, c, lam, p), "eager": eager,
                 "compile": torch.compile(eager), "swiglu": lambda g, v: F.silu(g) * v}
    times = {}

    def run(n, provider, dtype):
        g = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
        dh = torch.randn(n, device=device, dtype=dtype)
        fn = providers[provider]
        step = lambda: fn(g, v).backward(dh)  # noqa: E731
        ms, lo, hi = triton.testing.do_bench(step, quantiles=[0.5, 0.2, 0.8], grad_to_none=[g, v])
        times[(str(dtype)[6:], n, provider)] = ms
        gbps = lambda t: 8 * n * g.element_size() / (t * 1e-3) / 1e9  # noqa: E731
        return gbps(ms), gbps(hi), gbps(lo)

    benches = [triton.testing.Benchmark(
        x_names=["n"], x_vals=[2 ** i for i in exps], x_log=True,
        line_arg="provider", line_vals=list(providers),
        line_names=["Triton SQS-GLU", "eager SQS-GLU", "torch.compile SQS-GLU", "eager SwiGLU"],
        styles=[("blue", "-"), ("green", "-"), ("orange", "-"), ("gray", "--")],
        ylabel="GB/s (8 passes of n elements / time)", plot_name=f"sqs_glu_fwd_bwd_{name}",
        args={"dtype": dtype}) for name, dtype in dtypes]
    run_benchmarks(run, benches, out)
    print(f"\nmedian fwd+bwd: ms, GB/s (8 passes moved / time) and % of the bandwidth floor "
          f"(time to move 8 passes at {peak:.0f} GB/s / measured time)")
    print(f"{'dtype':9s} {'n':>9s} " + " ".join(f"{k + ' ms':>11s} {'GB/s':>6s} {'%':>4s}"
                                                for k in providers))
    for name, dtype in dtypes:
        for i in exps:
            n, size = 2 ** i, torch.finfo(dtype).bits // 8
            floor_ms = 8 * n * size / (peak * 1e9) * 1e3  # the time just to move the 8 passes
            ms = [times[(name, n, k)] for k in providers]
            print(f"{name:9s} {n:9d} " + " ".join(
                f"{t:11.4f} {8 * n * size / t / 1e6:6.0f} {100 * floor_ms / t:4.0f}" for t in ms))


def run_benchmarks(run, benches, out):
    """Triton's perf_report prints GB/s tables and saves plots + csv, but needs pandas (not in
    requirements.txt); without pandas, run the same measurements in a plain loop."""
    os.makedirs(out, exist_ok=True)
    if importlib.util.find_spec("pandas") is not None:
        triton.testing.perf_report(benches)(run).run(print_data=True, save_path=out)
        print(f"perf_report plots and csv tables in {out}/")
        return
    print("(pandas is not installed, so triton's perf_report tables/plots are skipped)")
    for b in benches:
        for n in b.x_vals:
            for provider in b.line_vals:
                run(n, provider, **b.args)


def run_cli(doc, default_out, check, memory_report, benchmark):
    """The command line shared by kernel_sqs.py and kernel_gensilu.py: check, memory report, and
    on a CUDA GPU the benchmark."""
    ap = argparse.ArgumentParser(description="\n\n".join(doc.split("\n\n")[:2]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-only", action="store_true", help="skip the GPU benchmark")
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="benchmark dtypes, comma-separated (float32, float16, bfloat16)")
    ap.add_argument("--peak-gbps", type=float, default=0.0,
                    help="GPU memory bandwidth for the %% column (default: from triton)")
    ap.add_argument("--out", default=default_out, help="directory for benchmark plots/tables")
    args = ap.parse_args()
    try:
        dtypes = [(d, getattr(torch, d)) for d in args.dtypes.split(",")]
        assert all(dt in (torch.float32, torch.float16, torch.bfloat16) for _, dt in dtypes)
    except (AttributeError, AssertionError):
        ap.error(f"--dtypes: choose from float32, float16, bfloat16, got {args.dtypes!r}")
    if not available():
        sys.exit("error: triton is not importable (pip install triton; Linux only). "
                 "activations.py uses the reference implementation without it.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not args.check_only:  # fail now, not after the measurements
        try:
            os.makedirs(args.out, exist_ok=True)
            open(os.path.join(args.out, ".write_test"), "w").close()
            os.remove(os.path.join(args.out, ".write_test"))
        except OSError as e:
            ap.error(f"--out {args.out}: not writable ({e.strerror})")
    t0 = time.time()
    ok = check(device)
    memory_report(device)
    print(f"check took {time.time() - t0:.1f} s")
    if not ok:
        sys.exit("error: the kernel disagrees with the reference (see FAIL rows)")
    if device == "cpu":
        print("no CUDA GPU here: the check ran in the Triton interpreter; timings need a GPU, "
              "so no benchmark was run.")
    elif not args.check_only:
        benchmark(dtypes, args.out, args.peak_gbps)


def main():
    run_cli(__doc__, "out/kernel_sqs", check, memory_report, benchmark)


if __name__ == "__main__":
    main()
