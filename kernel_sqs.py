"""
kernel_sqs.py -- the SQS-GLU hidden state h = sqs(g) * v as one fused Triton kernel (forward and
backward), and the SQS paper's Table 5 -- a 1-layer GLU timed forward + backward -- as a benchmark.

    python kernel_sqs.py            check against activations.py (CPU: in the Triton interpreter);
                                    on CUDA then Table 5 with the fused SQS too
    python kernel_sqs.py --table5   Table 5 only: eager, torch.compile'd and (CUDA) fused layers
                                    (--max-size 1024 on a laptop, --no-compile to skip compiling)

Source: "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation Function",
arXiv:2509.01874: sqs (reconstructed in activations.py) and Appendix C / Table 5, where a Triton
SQS runs on par with SwiGLU. Layout after the Triton tutorials (https://triton-lang.org).

Why fuse: an elementwise op is bound by memory traffic. Forward reads g, v and writes h (3 passes
over n elements), backward reads g, v, dh and writes dg, dv (5); no kernel can do fewer than 8.
Eager PyTorch runs sqs(g) * v as about ten kernels forward and about as many backward, each
reading and writing whole tensors, and autograd keeps several of their outputs. Why recompute:
sqs(g) and sqs'(g) computed again in backward cost a few dozen flops per element, free next to
the memory passes that saving them would cost; so the autograd.Function saves only g and v.

The derivative, with s = sign(g) (sign(0) = +1, as activations.sqs) and den = 1 + lam |g|^p:
    sqs(g)  = (g - c s) / den = s (|g| - c) / den
    sqs'(g) = [den - (g - c s) lam p |g|^(p-1) s] / den^2
            = [1 - (|g| - c) lam p |g|^(p-1) / den] / den,       since (g - c s) s = |g| - c.
For p = 1 the bracket is (1 + lam c) / den:  sqs'(g) = (1 + lam c) / den^2.
At g = 0 this is the slope from the right (sqs jumps by -2c there). Far out, |g| is clamped to the
bound of activations.sqs_bound, so sqs(+-inf) = +-1/lam for p = 1 (the limit) and 0 for p > 1.
The product rule gives the GLU's gradients: dv = dh sqs(g), dg = dh v sqs'(g).
"""
import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch

import activations

if __name__ == "__main__" and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # run the kernels on the CPU; before triton.jit

try:  # triton is optional (no macOS wheels): activations.glu then uses plain PyTorch
    import triton
    import triton.language as tl
except ImportError:
    triton = None
HAVE_TRITON = triton is not None
BLOCK = 1024  # elements per program

if HAVE_TRITON:  # the kernels exist only where triton does
    @triton.jit
    def _sqs_and_grad(g, c, lam, p, big, P_IS_ONE: tl.constexpr):
        """sqs(g) and sqs'(g) for an fp32 block g (formulas in the module docstring)."""
        s = tl.where(g >= 0, 1.0, -1.0)  # sign(0) = +1
        a = tl.abs(g)
        a = tl.where(a > big, big, a)  # |g| <= big, as activations.sqs (NaN stays NaN)
        if P_IS_ONE:
            den = 1.0 + lam * a  # finite: big <= largest / (2 lam)
            dsqs = (1.0 + lam * c) / den / den  # two divisions: den * den can overflow fp32
        else:
            # |g|^q = 2^(q log2|g|); at g = 0: 0^p = 0, 0^(p-1) = inf (p < 1) or 0, as torch.pow
            la = tl.log2(a)
            den = 1.0 + lam * tl.exp2(p * la)  # inf far out for p > 1: sqs = 0 there
            dsqs = (1.0 - (a - c) * lam * p * tl.exp2((p - 1.0) * la) / den) / den
            dsqs = tl.where(den > 3.4028234663852886e38, 0.0, dsqs)  # den = inf: the limit, 0
        return s * (a - c) / den, dsqs

    @triton.jit
    def _sqs_glu_fwd(g_ptr,  # gate g = x W_g, n elements, fp32/fp16/bf16, contiguous
                     v_ptr,  # value v = x W_v, n elements
                     h_ptr,  # out: h = sqs(g) * v
                     n, c, lam, p, big, P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: no wrap at 2^31
        mask = offs < n  # the last block is ragged
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # fp32 math, any storage
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, _ = _sqs_and_grad(g, c, lam, p, big, P_IS_ONE)  # the unused derivative: compiled away
        tl.store(h_ptr + offs, (gate * v).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _sqs_glu_bwd(g_ptr,   # gate g, as saved by forward
                     v_ptr,   # value v, as saved by forward
                     dh_ptr,  # incoming gradient dL/dh
                     dg_ptr,  # out: dL/dg = dh v sqs'(g)
                     dv_ptr,  # out: dL/dv = dh sqs(g)
                     n, c, lam, p, big, P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, dgate = _sqs_and_grad(g, c, lam, p, big, P_IS_ONE)  # recomputed, never saved
        tl.store(dg_ptr + offs, (dh * v * dgate).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offs, (dh * gate).to(dv_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, n, *args, params):
    """One program per BLOCK elements. The CPU interpreter computes in numpy, which warns about
    IEEE events (log2 0, 0 * inf in masked lanes) that a GPU performs silently: silenced."""
    c, lam, p = params
    if lam == 0:
        p = 1.0  # no shrink: 1 + 0 |g|^p = 1 for every p, and p = 1 avoids 0 * inf
    big = activations.sqs_bound(lam, p, torch.float32)  # the math is fp32
    if n > 0:
        with np.errstate(all="ignore"):
            grid = (triton.cdiv(n, BLOCK),)
            kernel[grid](*args, n, c, lam, p, big, P_IS_ONE=p == 1.0, BLOCK=BLOCK)


class SqsGlu(torch.autograd.Function):
    """h = sqs(gate) * value. Saves only gate and value; backward recomputes sqs and sqs'."""

    @staticmethod
    def forward(ctx, gate, value, c, lam, p):
        ctx.save_for_backward(gate, value)
        ctx.params = (c, lam, p)
        h = gate.new_empty(gate.shape, dtype=torch.promote_types(gate.dtype, value.dtype))
        _launch(_sqs_glu_fwd, h.numel(), gate.contiguous(), value.contiguous(), h,
                params=ctx.params)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        gate, value = ctx.saved_tensors
        dg = gate.new_empty(gate.shape)  # contiguous, as dh below
        dv = value.new_empty(value.shape)
        _launch(_sqs_glu_bwd, dg.numel(), gate.contiguous(), value.contiguous(), dh.contiguous(),
                dg, dv, params=ctx.params)
        need_g, need_v = ctx.needs_input_grad[:2]
        if not need_g:
            dg = None
        if not need_v:
            dv = None
        return dg, dv, None, None, None


def sqs_glu(gate, value, c=0.01, lam=0.5, p=1.0):
    """sqs(gate) * value through the fused kernel, differentiable (CUDA tensors, or CPU tensors
    under TRITON_INTERPRET=1). float64 or broadcasting shapes use the plain PyTorch formula."""
    activations.check_sqs(c, lam, p)
    if gate.shape != value.shape or torch.float64 in (gate.dtype, value.dtype):
        return activations.sqs(gate, c, lam, p) * value
    if {gate.dtype, value.dtype} - {torch.float32, torch.float16, torch.bfloat16}:
        raise TypeError(f"sqs_glu: dtypes {gate.dtype}, {value.dtype}; use fp32, fp16 or bf16")
    if not HAVE_TRITON or (gate.device.type == "cpu" and not triton.knobs.runtime.interpret):
        raise RuntimeError("kernel_sqs needs triton, and for CPU tensors TRITON_INTERPRET=1 set "
                           "before it is imported; activations.glu works without either")
    return SqsGlu.apply(gate, value, float(c), float(lam), float(p))


# ---------------------------------------------------------------------------- the check
CHECK_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
CHECK_PARAMS = [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 2.0), (0.05, 0.3, 0.5)]


def worst_error(got, want, tol):
    """max |got - want| / (tol + tol |want|): <= 1 passes; NaN (a NaN anywhere) fails."""
    return ((got.double() - want).abs() / (tol + tol * want.abs())).max().item()


def check(device, n=3000):
    """Kernel in each dtype vs activations.sqs / sqs_grad in float64 on the same rounded inputs,
    with 0, +-c, +-1e4 and +-inf (p >= 1) among them."""
    print(f"sqs_glu vs activations.py in float64, n={n}, {device}: worst |err| / (tol + tol |want|)"
          " (<= 1 passes)")
    print(f"{'dtype':9s} {'c,lam,p':14s} {'h':>6s} {'dgate':>6s} {'dvalue':>6s}")
    gen = torch.Generator().manual_seed(0)
    ok = True
    for dtype, tol in CHECK_TOL.items():
        for c, lam, p in CHECK_PARAMS:
            g = torch.randn(n, generator=gen) * 3
            v = torch.randn(n, generator=gen)
            dh = torch.randn(n, generator=gen)
            zero = 0.0 if p >= 1 else 1e-3  # sqs'(0) = inf for p < 1
            far = float("inf") if p >= 1 else 6e4  # p < 1: sqs(inf) is "large", not a limit
            g[:7] = torch.tensor([zero, c, -c, 1e4, -1e4, far, -far])
            g, v, dh = g.to(device, dtype), v.to(device, dtype), dh.to(device, dtype)
            gr = g.clone().requires_grad_()
            vr = v.clone().requires_grad_()
            h = sqs_glu(gr, vr, c, lam, p)
            h.backward(dh)
            g64, v64, dh64 = g.double(), v.double(), dh.double()
            s64 = activations.sqs(g64, c, lam, p)
            ds64 = activations.sqs_grad(g64, c, lam, p)
            errors = [worst_error(h, s64 * v64, tol),
                      worst_error(gr.grad, dh64 * v64 * ds64, tol),
                      worst_error(vr.grad, dh64 * s64, tol)]
            good = all(e <= 1 for e in errors)  # a NaN fails too
            ok = ok and good
            verdict = "" if good else "  FAIL"
            numbers = " ".join(f"{e:6.3f}" for e in errors)
            print(f"{str(dtype)[6:]:9s} {f'{c:g},{lam:g},{p:g}':14s} {numbers}{verdict}")
    return ok


# ----------------------------------------------------- the benchmark: Table 5 of arXiv:2509.01874
# Table 5 times forward + backward of "a 1-layer GLU" per gate. Our reading, fp32, no biases:
# x [B, d] -> h = act(x W_g) * (x W_v) [B, hidden] -> y = h W_o; x is data (no gradient): 3 matmuls
# forward, 4 backward (dW_o, dh, dW_g, dW_v), 2 B d hidden flops each. PAPER rows: B, d, hidden,
# then the times of GATES in order (the paper states neither units, likely ms, nor GPU).
# Beside the eager layers: the SwiGLU and SQS layers through torch.compile (its own fused kernels,
# what a user would try before writing one), and on CUDA the layer with the fused SQS kernel.
GATES = {"ReLU": activations.relu, "SwiGLU": activations.silu, "GELU": activations.gelu,
         "Identity": activations.identity, "SQS": activations.sqs}
COMPILED = {"SwiGLU-c": activations.silu, "SQS-c": activations.sqs}
PAPER = """\
 256  256  256  0.5516  0.5617  0.6310  0.4941  0.5753
 256  512  512  0.5993  0.5765  0.5934  0.4984  0.5755
 256 1024 1024  0.6804  0.6914  0.6903  0.6663  0.6417
 256 2048 2048  2.5219  2.6016  2.6284  2.5625  2.3355
 512  256  256  0.5889  0.6403  0.5591  0.5053  0.5688
 512  512  512  0.5535  0.5563  0.5300  0.4947  0.5822
 512 1024 1024  1.2429  1.2648  1.2655  1.2195  1.1716
 512 2048 2048  4.5534  4.6016  4.6078  4.5101  4.3259
1024  256  256  0.5610  0.5525  0.5537  0.5097  0.5827
1024  512  512  0.7347  0.7535  0.7549  0.7105  0.6834
1024 1024 1024  2.7023  2.7947  2.8036  2.6920  2.5393
1024 2048 2048  8.4728  8.5362  8.5190  8.3451  8.0269
2048  256  256  0.5717  0.5603  0.5627  0.5106  0.5894
2048  512  512  1.4109  1.4287  1.4314  1.3428  1.3002
2048 1024 1024  5.0301  5.1295  5.1456  5.0276  4.7280
2048 2048 2048 16.8498 16.9756 16.9970 16.6761 16.0520"""


def make_layer(gate):
    """The 1-layer GLU with this gate: y = (gate(x W_g) * (x W_v)) W_o."""
    def layer(x, W_g, W_v, W_o):
        g = x @ W_g  # [B, hidden]
        v = x @ W_v  # [B, hidden]
        return (gate(g) * v) @ W_o  # [B, d]
    return layer


def fused_sqs_layer(x, W_g, W_v, W_o):
    """The same layer with h = sqs(g) * v as one fused Triton kernel."""
    return sqs_glu(x @ W_g, x @ W_v) @ W_o


def glu_step(layer, x, weights, dy):
    """One forward + backward of the layer, gradients into the weights' .grad."""
    for W in weights:
        W.grad = None  # as optimizer.zero_grad(): no accumulation pass
    layer(x, *weights).backward(dy)


def compiled_layers(device, wanted):
    """The torch.compile'd columns, compiled and run once on the smallest row: (layers, note).
    Without them, layers is {} and note says why."""
    if not wanted:
        return {}, "not run (--no-compile)"
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if device == "cpu" and compiler is None:
        return {}, "not run: no C++ compiler found (torch.compile on a CPU needs one)"
    layers = {}
    for name, gate in COMPILED.items():
        layers[name] = torch.compile(make_layer(gate))
    x, dy, weights = row_tensors(256, 256, 256, device)
    t0 = time.perf_counter()
    try:
        for layer in layers.values():
            glu_step(layer, x, weights, dy)
    except Exception as error:  # a missing or broken compiler shows here: report it, go on
        reason = str(error).strip().splitlines()[0][:80]
        return {}, f"not run: torch.compile failed ({type(error).__name__}: {reason})"
    return layers, f"compiled in {time.perf_counter() - t0:.0f} s"


def row_tensors(B, d, hidden, device):
    """x, dy [B, d] and the weights W_g, W_v [d, hidden], W_o [hidden, d] (gradients on)."""
    x = torch.randn(B, d, device=device)
    dy = torch.randn(B, d, device=device)
    weights = []
    for rows, cols in ((d, hidden), (d, hidden), (hidden, d)):
        W = torch.randn(rows, cols, device=device) / rows ** 0.5
        weights.append(W.requires_grad_())
    return x, dy, weights


def time_row(layers, B, d, hidden, device, reps):
    """ms per step, [reps, columns]: the layers take turns (round robin) after one warm-up round,
    so that a load change on a shared machine hits them alike."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    x, dy, weights = row_tensors(B, d, hidden, device)
    times = torch.zeros(reps + 1, len(layers))  # round 0 is the warm-up
    for r in range(reps + 1):
        for i, layer in enumerate(layers.values()):
            sync()
            t0 = time.perf_counter()
            glu_step(layer, x, weights, dy)
            sync()
            times[r, i] = (time.perf_counter() - t0) * 1e3
    return times[1:]


def print_row(values):
    cells = []
    for v in values:
        if isinstance(v, float):
            cells.append(f"{v:10.4f}")
        else:
            cells.append(f"{v:>10}")
    print(" ".join(cells))


def table5(device, max_size, reps, compile_layers=True):
    """Rows of PAPER with every size <= max_size, ours above the paper's: median ms per column,
    and per family (eager, compiled, Triton) the median of the per-round ratios SQS / SwiGLU."""
    columns = {name: make_layer(gate) for name, gate in GATES.items()}
    compiled, compile_note = compiled_layers(device, compile_layers)
    columns |= compiled
    if device == "cuda" and HAVE_TRITON:
        columns["SQS-Triton"] = fused_sqs_layer
    ratios = {"r_eager": ("SQS", "SwiGLU"), "r_compiled": ("SQS-c", "SwiGLU-c"),
              "r_Triton": ("SQS-Triton", "SwiGLU")}
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"Table 5: 1-layer GLU fwd + bwd, fp32, ms (median of {reps}), torch {torch.__version__},"
          f" {device_name}, threads: {torch.get_num_threads()}")
    print(f"columns: eager PyTorch; -c: torch.compile, {compile_note}; SQS-Triton: the fused kernel"
          " (CUDA only); r_*: SQS / SwiGLU per family (r_Triton: SQS-Triton / eager SwiGLU)")
    print("paper rows: arXiv:2509.01874, its five columns and its ratio in the eager places;"
          " units (likely ms), GPU and how each gate ran are not stated; '—': not run")
    names = list(COMPILED) + ["SQS-Triton"]
    found = {family: [] for family in ratios}    # per family, each row's ratio SQS / SwiGLU
    found["paper"] = []
    index = {name: i for i, name in enumerate(columns)}  # column of each layer in time_row's times
    print_row(["batch", "d", "hidden", "", *GATES, *names, *ratios, "GFLOP/s"])
    for line in PAPER.splitlines():
        B, d, hidden = map(int, line.split()[:3])
        if max(B, d, hidden) > max_size:
            continue
        times = time_row(columns, B, d, hidden, device, reps)
        ms = dict(zip(columns, times.median(0).values.tolist()))
        ours = [B, d, hidden, "ours"] + [ms.get(name, "—") for name in [*GATES, *names]]
        for family, (top, bottom) in ratios.items():
            if top in index and bottom in index:
                ratio = (times[:, index[top]] / times[:, index[bottom]]).median().item()
                ours.append(ratio)
                found[family].append(ratio)
            else:
                ours.append("—")
        ours.append(14 * B * d * hidden / ms["SwiGLU"] / 1e6)  # 7 matmuls; GFLOP/s of eager SwiGLU
        paper = [float(v) for v in line.split()[3:]]
        paper_ratio = paper[4] / paper[1]
        print_row(ours)
        print_row([B, d, hidden, "paper", *paper, "", "", "", paper_ratio])
        found["paper"].append(paper_ratio)
    print_summary(found, device)


# The paper's sentence and our test of it. "On par" is not defined in the paper; ours: the median
# over the rows of SQS-Triton / SwiGLU is at most ON_PAR (a 10 % margin we chose).
CLAIM = "a triton implementation of SQS runs in time on par"
ON_PAR = 1.10


def median_text(values):
    """'1.17 (1.06-1.48, 9 rows)' for a list of ratios, '—' for none."""
    if not values:
        return "—"
    t = torch.tensor(values)
    low = t.min().item()
    high = t.max().item()
    return f"{t.median().item():.2f} ({low:.2f}-{high:.2f}, {len(values)} rows)"


def print_summary(found, device):
    """The medians of SQS / SwiGLU per family beside the paper's, then one verdict line."""
    print(f"SQS / SwiGLU, median (range): eager {median_text(found['r_eager'])}; compiled "
          f"{median_text(found['r_compiled'])}; paper {median_text(found['paper'])}")
    head = f'verdict: "{CLAIM}" (arXiv:2509.01874, §4, see its App. C) --'
    if not found["r_Triton"]:
        print(f"{head} NOT TESTED here: it needs the fused kernel on a CUDA GPU ({device} run; the "
              "eager and compiled ratios above are PyTorch's own layers, not the paper's kernel)")
        return
    median = torch.tensor(found["r_Triton"]).median().item()
    if median <= ON_PAR:
        word = "HOLDS"
    else:
        word = "DOES NOT HOLD"
    print(f"{head} {word}: SQS-Triton / eager SwiGLU median {median_text(found['r_Triton'])}; "
          f"on par = median <= {ON_PAR} (our margin)")

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],  # the usage lines on top
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table5", action="store_true",
                    help="time the paper's Table 5 layer only, no kernel check (default: off)")
    ap.add_argument("--max-size", type=int, default=2048,
                    help="largest Table 5 size run (default 2048; 1024 on a laptop)")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds per row (default 5)")
    ap.add_argument("--no-compile", action="store_true",
                    help="leave out the torch.compile columns (default: compile them)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: cuda if available, else cpu (default auto)")
    args = ap.parse_args()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda needs a CUDA GPU")
    if args.max_size < 256 or args.reps < 1:
        ap.error("needs --max-size >= 256 (the smallest row) and --reps >= 1")
    if not args.table5:
        if not HAVE_TRITON or (device == "cpu" and not triton.knobs.runtime.interpret):
            sys.exit("error: the kernel needs triton, and on the CPU TRITON_INTERPRET=1 (set by "
                     "itself only where there is no GPU); --table5 runs without either")
        if not check(device):
            sys.exit("error: the kernel disagrees with activations.py (FAIL rows above)")
        if device == "cpu":
            print("\nthe kernel benchmark needs CUDA; --table5 times the eager and compiled layers")
            return
        print()
    table5(device, args.max_size, args.reps, compile_layers=not args.no_compile)


if __name__ == "__main__":
    main()
