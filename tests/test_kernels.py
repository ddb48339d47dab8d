"""Tests for kernel_sqs.py and kernel_gensilu.py, run on CPU in the Triton interpreter
(tests/conftest.py sets TRITON_INTERPRET=1 before the kernel modules are imported).

Every kernel output is compared with the reference of activations.py evaluated in float64 on the
same (already rounded) inputs. Tolerances per storage dtype, |got - want| <= atol + rtol |want|:
  fp32  rtol = atol = 1e-5     fp32 math; error ~ a few ulp of fp32 (6e-8) times the condition of
                               sin / exp2(p log2|x|) at the tested magnitudes
  fp16  rtol = atol = 2e-3     one rounding to fp16 on store: half an ulp = 2^-11 = 4.9e-4
  bf16  rtol = atol = 1.6e-2   one rounding to bf16 on store; the interpreter converts fp32 -> bf16
                               by truncation (a full ulp, 2^-7 = 7.8e-3), a GPU rounds to nearest
Every output buffer the kernels allocate is pre-filled with NaN (kernel_*._new is patched), so an
element the kernel forgets to write fails the comparison.
"""
import math

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed (Linux only); the Triton kernels "
                    "cannot be tested, activations.py uses the reference without them")

import activations  # noqa: E402
import kernel_gensilu  # noqa: E402
import kernel_sqs  # noqa: E402

TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
DTYPES = list(TOL)
SQS_PARAMS = [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 2.0), (0.05, 0.3, 0.5),
              (0.2, 0.0, 1.5)]
GENSILU_PARAMS = [(0.0, 0.0, 2 * math.pi), (1.0, 1.0, 2 * math.pi), (2.0, 3.0, 1.0),
                  (0.5, 1.5, 4.0)]
BLOCK = kernel_sqs.BLOCK
# Shapes: 1 element, just below / above one block, several blocks with a ragged tail, a 3-D tensor.
SHAPES = [(1,), (BLOCK - 1,), (BLOCK + 1,), (2 * BLOCK + 917,), (3, 5, 70)]


@pytest.fixture(autouse=True)
def nan_outputs(monkeypatch):
    """Every buffer a kernel module allocates starts as NaN: unwritten elements cannot hide."""
    def nan_new(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    monkeypatch.setattr(kernel_sqs, "_new", nan_new)
    monkeypatch.setattr(kernel_gensilu, "_new", nan_new)


def close(got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.shape == want.shape
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol, equal_nan=False)


def sqs_inputs(shape, dtype, c, seed=0):
    """Gate values straddling 0 and the shift c, tiny and huge (1e4) magnitudes, plus randn * 3."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    g = torch.randn(n, generator=gen) * 3
    special = torch.tensor([0.0, c, -c, 1e-6, -1e-6, 1e-3, -1e-3, 1e4, -1e4, 1.0, -1.0])
    k = min(n, len(special))
    g[:k] = special[:k]
    g = g[torch.randperm(n, generator=gen)]  # specials land in different blocks / positions
    v = torch.randn(n, generator=gen).clamp(-3, 3)
    dh = torch.randn(n, generator=gen)
    return [t.reshape(shape).to(dtype) for t in (g, v, dh)]


def gensilu_inputs(shape, dtype, left, right, period, seed=0):
    """Values at 0, at the joins -aT and bT and their fp32 neighbours, at +-1e4, plus a spread
    covering all three branches."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    x = torch.randn(n, generator=gen) * (left + right + 1) * period / 2
    special = kernel_gensilu.special_points(left, right, period)
    k = min(n, len(special))
    x[:k] = special[:k]
    x = x[torch.randperm(n, generator=gen)]
    v = torch.randn(n, generator=gen).clamp(-3, 3)  # |gensilu(1e4) v| < 65504 in fp16
    dh = torch.randn(n, generator=gen)
    return [t.reshape(shape).to(dtype) for t in (x, v, dh)]


def sqs_reference(g, v, dh, c, lam, p):
    """float64 (h, dgate, dvalue) from the analytic activations.sqs / sqs_grad."""
    g, v, dh = g.double(), v.double(), dh.double()
    return (activations.sqs(g, c, lam, p) * v, dh * v * activations.sqs_grad(g, c, lam, p),
            dh * activations.sqs(g, c, lam, p))


def gensilu_reference(x, v, dh, left, right, period):
    """float64 (h, dgate, dvalue) by autograd through activations.gensilu."""
    x = x.double().requires_grad_()
    v = v.double().requires_grad_()
    h = activations.gensilu(x, left, right, period) * v
    h.backward(dh.double())
    return h.detach(), x.grad, v.grad


# ------------------------------------------------------------------------------------------------
# SQS-GLU
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("c,lam,p", SQS_PARAMS)
def test_sqs_glu_forward_and_gradients(dtype, c, lam, p):
    for i, shape in enumerate(SHAPES):
        g, v, dh = sqs_inputs(shape, dtype, c, seed=i)
        gr, vr = g.clone().requires_grad_(), v.clone().requires_grad_()
        h = kernel_sqs.sqs_glu(gr, vr, c, lam, p)
        h.backward(dh)
        want_h, want_dg, want_dv = sqs_reference(g, v, dh, c, lam, p)
        assert h.dtype == dtype and gr.grad.dtype == dtype
        close(h, want_h, dtype)
        close(gr.grad, want_dg, dtype)
        close(vr.grad, want_dv, dtype)


def test_sqs_at_zero_follows_the_sign_convention():
    """sign(0) = +1: sqs(0) = -c and sqs'(0) = 1 + lam c (p = 1), 1 (p = 2), +inf (p < 1, c > 0)."""
    g = torch.zeros(3)
    one = torch.ones(3)
    h = kernel_sqs.forward(g, one, 0.01, 0.5, 1.0)
    assert torch.all(h == torch.tensor(-0.01))
    dg, _ = kernel_sqs.backward(g, one, one, 0.01, 0.5, 1.0)
    assert torch.allclose(dg, torch.tensor(1 + 0.5 * 0.01))
    dg, _ = kernel_sqs.backward(g, one, one, 0.01, 0.5, 2.0)
    assert torch.allclose(dg, torch.tensor(1.0))
    dg, _ = kernel_sqs.backward(g, one, one, 0.05, 0.3, 0.5)
    assert torch.all(dg == math.inf)
    assert torch.all(activations.sqs_grad(g.double(), 0.05, 0.3, 0.5) == math.inf)


def test_sqs_glu_non_contiguous_and_expanded_grad():
    """Strided views go in, gradients come out in the views' layout; h.sum() gives a stride-0 dh."""
    gbase = (torch.randn(70, 40) * 3).requires_grad_()
    vbase = torch.randn(40, 140).requires_grad_()
    g, v = gbase.t(), vbase[:, ::2]  # transposed, and every other column
    assert not g.is_contiguous() and not v.is_contiguous()
    kernel_sqs.sqs_glu(g, v).sum().backward()
    want_h, want_dg, want_dv = sqs_reference(g.detach(), v.detach(), torch.ones(40, 70),
                                             0.01, 0.5, 1.0)
    close(kernel_sqs.sqs_glu(g.detach(), v.detach()), want_h, torch.float32)
    close(gbase.grad.t(), want_dg, torch.float32)
    close(vbase.grad[:, ::2], want_dv, torch.float32)
    assert torch.all(vbase.grad[:, 1::2] == 0)  # the skipped columns get no gradient


def test_sqs_glu_empty_and_mixed_dtypes():
    g = torch.empty(0, 5, requires_grad=True)
    v = torch.empty(0, 5, requires_grad=True)
    h = kernel_sqs.sqs_glu(g, v)
    assert h.shape == (0, 5)
    h.sum().backward()
    assert g.grad.shape == (0, 5) and v.grad.shape == (0, 5)
    # bf16 gate, fp32 value: fp32 output (type promotion), each gradient in its input's dtype
    g, v, dh = sqs_inputs((500,), torch.float32, 0.01)
    gb = g.bfloat16().requires_grad_()
    vr = v.clone().requires_grad_()
    h = kernel_sqs.sqs_glu(gb, vr)
    assert h.dtype == torch.float32
    h.backward(dh)
    assert gb.grad.dtype == torch.bfloat16 and vr.grad.dtype == torch.float32
    want_h, want_dg, want_dv = sqs_reference(gb.detach(), v, dh, 0.01, 0.5, 1.0)
    close(h, want_h, torch.float32)
    close(gb.grad, want_dg, torch.bfloat16)
    close(vr.grad, want_dv, torch.float32)


def test_sqs_glu_reference_paths_and_validation():
    g, v = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    # broadcasting shapes and float64 are served by the reference, with the same result
    assert torch.equal(kernel_sqs.sqs_glu(g, v), activations.sqs(g) * v)
    assert torch.equal(kernel_sqs.glu(g, g, 0.1, 1.0, 2.0), activations.sqs(g, 0.1, 1.0, 2.0) * g)
    with pytest.raises(ValueError, match="lam"):
        kernel_sqs.sqs_glu(g.float(), g.float(), lam=-1.0)
    with pytest.raises(ValueError, match="exponent p"):
        kernel_sqs.sqs_glu(g.float(), g.float(), p=0.0)
    with pytest.raises(TypeError, match="dtype"):
        kernel_sqs.forward(torch.ones(3, dtype=torch.int32), torch.ones(3, dtype=torch.int32))


# ------------------------------------------------------------------------------------------------
# gensilu, elementwise and gated
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("left,right,period", GENSILU_PARAMS)
def test_gensilu_forward_and_gradients(dtype, left, right, period):
    for i, shape in enumerate(SHAPES):
        x, v, dh = gensilu_inputs(shape, dtype, left, right, period, seed=i)
        # elementwise: y = gensilu(x), dx = dy gensilu'(x)
        xr = x.clone().requires_grad_()
        y = kernel_gensilu.gensilu(xr, left, right, period)
        y.backward(dh)
        want_y, want_dx, _ = gensilu_reference(x, torch.ones_like(x), dh, left, right, period)
        assert y.dtype == dtype
        close(y, want_y, dtype)
        close(xr.grad, want_dx, dtype)
        # gated: h = gensilu(g) v
        gr, vr = x.clone().requires_grad_(), v.clone().requires_grad_()
        h = kernel_gensilu.gensilu_glu(gr, vr, left, right, period)
        h.backward(dh)
        want_h, want_dg, want_dv = gensilu_reference(x, v, dh, left, right, period)
        close(h, want_h, dtype)
        close(gr.grad, want_dg, dtype)
        close(vr.grad, want_dv, dtype)


def test_gensilu_zero_cycles_is_silu_and_large_inputs_are_finite():
    x = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]).requires_grad_()
    y = kernel_gensilu.gensilu(x)
    y.sum().backward()
    xs = x.detach().double().requires_grad_()
    torch.nn.functional.silu(xs).sum().backward()
    close(y, torch.nn.functional.silu(xs).detach(), torch.float32)
    close(x.grad, xs.grad, torch.float32)
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


def test_gensilu_non_contiguous_and_empty():
    base = (torch.randn(50, 30) * 8).requires_grad_()
    x = base.t()[::2]
    assert not x.is_contiguous()
    y = kernel_gensilu.gensilu(x, 1.0, 2.0)
    y.sum().backward()
    want_y, want_dx, _ = gensilu_reference(x.detach(), torch.ones(x.shape), torch.ones(x.shape),
                                           1.0, 2.0, 2 * math.pi)
    close(y, want_y, torch.float32)
    close(base.grad.t()[::2], want_dx, torch.float32)
    assert torch.all(base.grad.t()[1::2] == 0)
    for fn in (kernel_gensilu.gensilu, lambda t: kernel_gensilu.gensilu_glu(t, t)):
        e = torch.empty(2, 0, requires_grad=True)
        out = fn(e)
        assert out.shape == (2, 0)
        out.sum().backward()
        assert e.grad.shape == (2, 0)


def test_gensilu_reference_paths_and_validation():
    x = torch.randn(6, 4, dtype=torch.float64)
    assert torch.equal(kernel_gensilu.gensilu(x, 1, 1), activations.gensilu(x, 1, 1))
    v = torch.randn(4, dtype=torch.float64)
    assert torch.equal(kernel_gensilu.glu(x, v, 1.0, 0.0, 3.0),
                       activations.gensilu(x, 1.0, 0.0, 3.0) * v)
    with pytest.raises(ValueError, match="period"):
        kernel_gensilu.gensilu(x.float(), period=0.0)
    with pytest.raises(ValueError, match="left"):
        kernel_gensilu.gensilu_glu(x.float(), x.float(), left=-1.0)


# ------------------------------------------------------------------------------------------------
# Memory: the Functions save only their inputs
# ------------------------------------------------------------------------------------------------

saved_bytes = kernel_sqs.saved_bytes  # counts bytes via torch.autograd.graph.saved_tensors_hooks


@pytest.mark.parametrize("name", ["sqs_glu", "gensilu", "gensilu_glu"])
def test_saves_only_inputs(name):
    n = 2048
    g = torch.randn(n, requires_grad=True)
    v = torch.randn(n, requires_grad=True)
    fused, eager, inputs = {
        "sqs_glu": (lambda: kernel_sqs.sqs_glu(g, v), lambda: activations.sqs(g) * v, (g, v)),
        "gensilu": (lambda: kernel_gensilu.gensilu(g, 1, 1),
                    lambda: activations.gensilu(g, 1, 1), (g,)),
        "gensilu_glu": (lambda: kernel_gensilu.gensilu_glu(g, v, 1, 1),
                        lambda: activations.gensilu(g, 1, 1) * v, (g, v)),
    }[name]
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    fused_bytes, eager_bytes = saved_bytes(fused), saved_bytes(eager)
    print(f"\n{name}: saved for backward fused {fused_bytes} B ({fused_bytes / input_bytes:.2f}x "
          f"inputs), eager {eager_bytes} B ({eager_bytes / input_bytes:.2f}x); "
          f"eager/fused = {eager_bytes / fused_bytes:.2f}")
    assert 0 < fused_bytes <= input_bytes
    assert eager_bytes > fused_bytes


def test_eager_pass_counter():
    """The pass counter behind the README's traffic numbers: eager SwiGLU forward + backward is
    silu (read g, write s) 2 + mul 3, then dv = dh s 3, dh v 3, silu_backward 3 = 14 passes."""
    g = torch.randn(1000, requires_grad=True)
    v = torch.randn(1000, requires_grad=True)
    swiglu = lambda a, b: torch.nn.functional.silu(a) * b  # noqa: E731
    assert kernel_sqs.eager_passes(swiglu, g, v) == 14
    assert kernel_gensilu.eager_passes(swiglu, g, v) == 14
    assert kernel_sqs.eager_passes(lambda a, b: activations.sqs(a) * b, g, v) > 8


# ------------------------------------------------------------------------------------------------
# Wiring in activations.py
# ------------------------------------------------------------------------------------------------


class FakeCuda(torch.Tensor):
    """A CPU tensor that claims to be on CUDA, to drive activations.py's dispatch on this CPU-only
    machine (the kernels themselves still run in the interpreter on the CPU data)."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture
def calls(monkeypatch):
    """Record which kernel entry points activations.py calls (and still run them)."""
    seen = []
    for mod, names in ((kernel_sqs, ["glu"]), (kernel_gensilu, ["glu", "gensilu"])):
        for nm in names:
            real = getattr(mod, nm)
            monkeypatch.setattr(mod, nm, (lambda real, key: lambda *a, **k: (
                seen.append(key), real(*a, **k))[1])(real, f"{mod.__name__}.{nm}"))
    return seen


@pytest.mark.parametrize("spec", ["sqs:0.01,0.5,1", "sqs:-0.02,1,2", "gensilu:1,1"])
def test_dispatch_cuda_uses_kernel_and_matches_reference(spec, calls, monkeypatch):
    monkeypatch.delenv("MLPLAB_KERNELS", raising=False)
    act = activations.parse_act(spec)
    g, v = torch.randn(300) * 3, torch.randn(300)
    h = activations.glu(g.as_subclass(FakeCuda), v.as_subclass(FakeCuda), act)
    assert calls == [f"kernel_{act.name}.glu"]
    close(h.as_subclass(torch.Tensor), act.fn(g.double(), **act.params) * v.double(), torch.float32)
    if act.name == "gensilu":
        y = act(g.as_subclass(FakeCuda))
        assert calls[-1] == "kernel_gensilu.gensilu"
        close(y.as_subclass(torch.Tensor), act.fn(g.double(), **act.params), torch.float32)


@pytest.mark.parametrize("spec", ["sqs", "gensilu:1,1"])
def test_dispatch_falls_back_on_cpu_and_with_switch_off(spec, calls, monkeypatch):
    act = activations.parse_act(spec)
    g, v = torch.randn(50), torch.randn(50)
    want = act.fn(g, **act.params) * v
    assert torch.equal(activations.glu(g, v, act), want)  # plain CPU tensors: reference
    assert torch.equal(act(g), act.fn(g, **act.params))
    monkeypatch.setenv("MLPLAB_KERNELS", "0")  # the A/B switch: reference even on "CUDA"
    h = activations.glu(g.as_subclass(FakeCuda), v.as_subclass(FakeCuda), act)
    act(g.as_subclass(FakeCuda))
    assert torch.equal(h.as_subclass(torch.Tensor), want)
    monkeypatch.setenv("MLPLAB_KERNELS", "1")
    monkeypatch.setattr(kernel_sqs, "available", lambda: False)  # as if triton were missing
    monkeypatch.setattr(kernel_gensilu, "available", lambda: False)
    h = activations.glu(g.as_subclass(FakeCuda), v.as_subclass(FakeCuda), act)
    assert torch.equal(h.as_subclass(torch.Tensor), want)
    assert calls == []


def test_cpu_tensors_without_interpreter_give_a_clear_error(monkeypatch):
    monkeypatch.setattr(kernel_sqs, "INTERPRET", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernel_sqs.sqs_glu(torch.ones(3), torch.ones(3))
    monkeypatch.setattr(kernel_gensilu, "INTERPRET", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernel_gensilu.gensilu(torch.ones(3))


# ------------------------------------------------------------------------------------------------
# The GPU benchmark code, smoke-run on CPU (timings faked: do_bench needs a GPU)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mod", [kernel_sqs, kernel_gensilu], ids=lambda m: m.__name__)
def test_benchmark_code_runs(mod, monkeypatch, tmp_path, capsys):
    """Not a timing: checks that the benchmark's perf_report / table code runs end to end, so the
    first GPU user does not meet a typo. Each provider's fwd+bwd step is executed once."""
    import triton.testing
    ran = []

    def fake_do_bench(fn, quantiles=None, grad_to_none=None, **kw):
        fn()
        ran.append(1)
        return [1.0, 0.9, 1.1]

    monkeypatch.setattr(triton.testing, "do_bench", fake_do_bench)
    monkeypatch.setattr(torch, "compile", lambda f: f)  # inductor on CPU would be slow here
    mod.benchmark([("float32", torch.float32)], str(tmp_path), 1000.0, device="cpu",
                  exps=range(4, 6))
    out = capsys.readouterr().out
    groups = 2 if mod is kernel_gensilu else 1
    assert len(ran) == groups * 2 * 4  # groups x sizes x providers
    assert "% of the bandwidth floor" in out
    rows = [ln.split() for ln in out.splitlines() if ln.startswith("float32 ")]
    assert len(rows) == groups * 2 and all(len(r) == 2 + 3 * 4 for r in rows)
    assert all(float(r[2]) == 1.0 for r in rows)  # the faked median, in ms
    # 16 fp32 elements x 8 passes (5 for elementwise gensilu) = 512 B in 1 ms -> 0.000512 GB/s
    assert all(float(r[3]) == 0 for r in rows)
