"""
kernel_sqs.py -- the SQS-GLU hidden state h = sqs(g) * v as one fused Triton kernel (forward and
backward), and the SQS paper's Table 5 -- a 1-layer GLU timed forward + backward -- as a benchmark.

    python kernel_sqs.py            check against activations.py (CPU: in the Triton interpreter);
                                    on CUDA then Table 5 with the fused SQS too
    python kernel_sqs.py --table5   Table 5, eager PyTorch, any device (--max-size 1024 on a laptop)

Source: "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation Function",
arXiv:2509.01874: sqs (reconstructed in activations.py) and Appendix C / Table 5, where a Triton
SQS runs on par with SwiGLU. Layout after the Triton tutorials (https://triton-lang.org).

Why fuse: an elementwise op is bound by memory traffic. Forward reads g, v and writes h (3 passes
over n elements), backward reads g, v, dh and writes dg, dv (5); no kernel can do fewer than 8.
Eager PyTorch runs sqs(g) * v as nine kernels forward and about as many backward, each reading and
writing whole tensors, and autograd keeps several of their outputs. Why recompute: sqs(g) and sqs'(g)
computed again in backward cost a few dozen flops per element, free next to the memory passes that
saving them would cost; so the autograd.Function saves only its inputs g and v.

The derivative, with s = sign(g) (sign(0) = +1, as activations.sqs) and den = 1 + lam |g|^p:
    sqs(g)  = (g - c s) / den
    sqs'(g) = [den - (g - c s) lam p |g|^(p-1) s] / den^2 = [1 - (|g| - c) lam p |g|^(p-1) / den] / den
since (g - c s) s = |g| - c. For p = 1 the bracket is (1 + lam c) / den: sqs'(g) = (1 + lam c) / den^2.
The product rule gives the GLU's gradients: dv = dh sqs(g), dg = dh v sqs'(g).
"""
import argparse
import os
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
    def _sqs_and_grad(g, c, lam, p, P_IS_ONE: tl.constexpr):
        """sqs(g) and sqs'(g) for an fp32 block g (formulas in the module docstring)."""
        s = tl.where(g >= 0, 1.0, -1.0)  # sign(0) = +1
        a = tl.abs(g)
        if P_IS_ONE:
            den = 1.0 + lam * a
            dsqs = (1.0 + lam * c) / den / den  # two divisions: den * den can overflow fp32
        else:
            # |g|^q = 2^(q log2|g|); at g = 0: 0^p = 0, 0^(p-1) = inf (p < 1) or 0, as torch.pow
            la = tl.log2(a)
            den = 1.0 + lam * tl.exp2(p * la)
            dsqs = (1.0 - (a - c) * lam * p * tl.exp2((p - 1.0) * la) / den) / den
        return (g - c * s) / den, dsqs

    @triton.jit
    def _sqs_glu_fwd(g_ptr,  # gate g = x W_g, n elements, fp32/fp16/bf16, contiguous
                     v_ptr,  # value v = x W_v, n elements
                     h_ptr,  # out: h = sqs(g) * v
                     n, c, lam, p, P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: no wrap at 2^31
        mask = offs < n  # the last block is ragged
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)  # fp32 math, any storage
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, _ = _sqs_and_grad(g, c, lam, p, P_IS_ONE)  # the unused derivative is compiled away
        tl.store(h_ptr + offs, (gate * v).to(h_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _sqs_glu_bwd(g_ptr,   # gate g, as saved by forward
                     v_ptr,   # value v, as saved by forward
                     dh_ptr,  # incoming gradient dL/dh
                     dg_ptr,  # out: dL/dg = dh v sqs'(g)
                     dv_ptr,  # out: dL/dv = dh sqs(g)
                     n, c, lam, p, P_IS_ONE: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dh = tl.load(dh_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        gate, dgate = _sqs_and_grad(g, c, lam, p, P_IS_ONE)  # recomputed, never saved
        tl.store(dg_ptr + offs, (dh * v * dgate).to(dg_ptr.dtype.element_ty), mask=mask)
        tl.store(dv_ptr + offs, (dh * gate).to(dv_ptr.dtype.element_ty), mask=mask)


def _launch(kernel, n, *args, params):
    """One program per BLOCK elements. The CPU interpreter computes in numpy, which warns about
    IEEE events (log2 0, 0 * inf in masked lanes) that a GPU performs silently: silenced."""
    if n > 0:
        with np.errstate(all="ignore"):
            kernel[(triton.cdiv(n, BLOCK),)](*args, n, *params, P_IS_ONE=params[2] == 1.0, BLOCK=BLOCK)


class SqsGlu(torch.autograd.Function):
    """h = sqs(gate) * value. Saves only gate and value; backward recomputes sqs and sqs'."""

    @staticmethod
    def forward(ctx, gate, value, c, lam, p):
        ctx.save_for_backward(gate, value)
        ctx.params = (c, lam, p)
        h = gate.new_empty(gate.shape, dtype=torch.promote_types(gate.dtype, value.dtype))
        _launch(_sqs_glu_fwd, h.numel(), gate.contiguous(), value.contiguous(), h, params=ctx.params)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh):
        gate, value = ctx.saved_tensors
        dg, dv = gate.new_empty(gate.shape), value.new_empty(value.shape)  # contiguous, as dh below
        _launch(_sqs_glu_bwd, dg.numel(), gate.contiguous(), value.contiguous(), dh.contiguous(),
                dg, dv, params=ctx.params)
        need_g, need_v = ctx.needs_input_grad[:2]
        return (dg if need_g else None), (dv if need_v else None), None, None, None


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
def check(device, n=3000):
    """Kernel in each dtype vs activations.sqs / sqs_grad in float64 on the same rounded inputs."""
    print(f"sqs_glu vs activations.py in float64, n={n}, {device}: worst |err| / (tol + tol |want|)"
          f" (<= 1 passes)\n{'dtype':9s} {'c,lam,p':14s} {'h':>6s} {'dgate':>6s} {'dvalue':>6s}")
    gen, ok = torch.Generator().manual_seed(0), True
    for dtype, tol in {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}.items():
        for c, lam, p in [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 2.0), (0.05, 0.3, 0.5)]:
            g, v, dh = torch.randn(n, generator=gen) * 3, *torch.randn(2, n, generator=gen)
            g[:5] = torch.tensor([0.0 if p >= 1 else 1e-3, c, -c, 1e4, -1e4])  # sqs'(0)=inf, p<1
            g, v, dh = (t.to(device, dtype) for t in (g, v, dh))
            gr, vr = g.clone().requires_grad_(), v.clone().requires_grad_()
            h = sqs_glu(gr, vr, c, lam, p)
            h.backward(dh)
            g64, v64, dh64 = g.double(), v.double(), dh.double()
            s64, ds64 = activations.sqs(g64, c, lam, p), activations.sqs_grad(g64, c, lam, p)
            want = (s64 * v64, dh64 * v64 * ds64, dh64 * s64)
            errs = [((got.double() - w).abs() / (tol + tol * w.abs())).max().item()
                    for got, w in zip((h, gr.grad, vr.grad), want)]
            ok &= (good := all(e <= 1 for e in errs))  # a NaN fails too
            print(f"{str(dtype)[6:]:9s} {f'{c:g},{lam:g},{p:g}':14s} "
                  + " ".join(f"{e:6.3f}" for e in errs) + ("" if good else "  FAIL"))
    return ok


# ----------------------------------------------------- the benchmark: Table 5 of arXiv:2509.01874
# Table 5 times forward + backward of "a 1-layer GLU" per gate. Our reading, fp32, no biases:
# x [B, d] -> h = act(x W_g) * (x W_v) [B, hidden] -> y = h W_o; x is data (no gradient): 3 matmuls
# forward, 4 backward (dW_o, dh, dW_g, dW_v), 2 B d hidden flops each. PAPER rows: B, d, hidden, then
# the times of GATES in order (the paper states neither units, likely ms, nor GPU).
GATES = {"ReLU": activations.relu, "SwiGLU": activations.silu, "GELU": activations.gelu,
         "Identity": activations.identity, "SQS": activations.sqs}
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


def glu_step(x, W_g, W_v, W_o, dy, act):
    """One forward + backward of the layer, gradients into the weights' .grad."""
    W_g.grad = W_v.grad = W_o.grad = None  # as optimizer.zero_grad(): no accumulation pass
    g, v = x @ W_g, x @ W_v  # [B, hidden] each
    h = act(g, v) if act is sqs_glu else act(g) * v
    (h @ W_o).backward(dy)  # y = h W_o [B, d]


def table5(device, max_size, reps):
    """Rows of PAPER with every size <= max_size, ours above the paper's. The gates are timed in
    turn (round robin) after one warm-up round: median times, and the median of the per-round
    ratios SQS/SwiGLU, which load changes on a shared machine disturb least."""
    gates = GATES | ({"SQS-Triton": sqs_glu} if device == "cuda" and HAVE_TRITON else {})
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    print(f"Table 5: 1-layer GLU fwd + bwd, fp32, ms (median of {reps}), torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}, threads: {torch.get_num_threads()}"
          "; paper rows: arXiv:2509.01874, units not stated (likely ms), GPU not stated")
    print(" ".join(f"{h:>10s}" for h in ["batch", "d", "hidden", "", *gates, "SQS/SwiGLU", "GFLOP/s"]))
    for line in PAPER.splitlines():
        B, d, hid = map(int, line.split()[:3])
        if max(B, d, hid) > max_size:
            continue
        x, dy = torch.randn(2, B, d, device=device)
        Ws = [(torch.randn(a, b, device=device) / a ** 0.5).requires_grad_()
              for a, b in ((d, hid), (d, hid), (hid, d))]  # W_g, W_v, W_o
        t = torch.zeros(reps + 1, len(gates))  # ms; round 0 is the warm-up
        for r in range(reps + 1):
            for i, act in enumerate(gates.values()):
                sync()
                t0 = time.perf_counter()
                glu_step(x, *Ws, dy, act)
                sync()
                t[r, i] = (time.perf_counter() - t0) * 1e3
        ms, ratio = t[1:].median(0).values.tolist(), (t[1:, 4] / t[1:, 1]).median().item()
        paper = [float(v) for v in line.split()[3:]]
        for row in ([B, d, hid, "ours", *ms, ratio, 14 * B * d * hid / ms[1] / 1e6],  # 7 matmuls
                    [B, d, hid, "paper", *paper] + [""] * (len(gates) - 5) + [paper[4] / paper[1]]):
            print(" ".join(f"{v:10.4f}" if isinstance(v, float) else f"{v:>10}" for v in row))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],  # the usage lines on top
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table5", action="store_true", help="time the paper's Table 5 layer")
    ap.add_argument("--max-size", type=int, default=2048, help="largest Table 5 size run (1024: laptop)")
    ap.add_argument("--reps", type=int, default=5, help="timed rounds per row (default 5)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if (device == "cuda" and not torch.cuda.is_available()) or args.max_size < 256 or args.reps < 1:
        ap.error("needs --max-size >= 256 (the smallest row), --reps >= 1, a CUDA GPU for --device cuda")
    if not args.table5:
        if not HAVE_TRITON or (device == "cpu" and not triton.knobs.runtime.interpret):
            sys.exit("error: the kernel needs triton, and on the CPU TRITON_INTERPRET=1 (set by "
                     "itself only where there is no GPU); --table5 runs without either")
        if not check(device):
            sys.exit("error: the kernel disagrees with activations.py (FAIL rows above)")
        if device == "cpu":
            return print("\nthe kernel benchmark needs CUDA; --table5 times the eager layer here")
    table5(device, args.max_size, args.reps)


if __name__ == "__main__":
    main()
