"""Tests for kernel_sqs.py and kernel_gensilu.py: on CPU in the Triton interpreter
(tests/conftest.py sets TRITON_INTERPRET=1 where there is no GPU), and the same tests on CUDA
where there is one.

Every kernel output is compared with activations.py evaluated in float64 on the same (already
rounded) inputs, gradients by float64 autograd through it. Tolerances per storage dtype,
|got - want| <= atol + rtol |want|:
  fp32  rtol = atol = 1e-5     fp32 math; a few ulp (6e-8) times the condition of sin / exp2 / log2
  fp16  rtol = atol = 2e-3     one rounding to fp16 on store: half an ulp = 2^-11 = 4.9e-4
  bf16  rtol = atol = 1.6e-2   one rounding to bf16 on store; the interpreter truncates fp32 -> bf16
                               (a full ulp, 2^-7 = 7.8e-3), a GPU rounds to nearest
While a test runs, deterministic mode is on, in which torch.empty returns NaN-filled memory
(torch.utils.deterministic.fill_uninitialized_memory): an element a kernel forgets to write fails.
"""
import math
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed (no macOS wheels); "
                             "activations.py uses plain PyTorch without it")

import activations  # noqa: E402
import kernel_gensilu  # noqa: E402
import kernel_sqs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
DTYPES = list(TOL)
DEVICES = [pytest.param("cpu", marks=pytest.mark.skipif(not triton.knobs.runtime.interpret,
                                                        reason="CPU needs TRITON_INTERPRET=1")),
           pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA GPU"))]
SQS_PARAMS = [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 2.0), (0.05, 0.3, 0.5),
              (0.2, 0.0, 1.5)]
GENSILU_PARAMS = [(0.0, 0.0, 1.0), (1.0, 1.0, 1.0), (2.0, 3.0, 2 * math.pi), (0.5, 1.5, 4.0)]
BLOCK = kernel_sqs.BLOCK
# 1 element, just below / above one block, several blocks with a ragged tail, a 3-D tensor
SHAPES = [(1,), (BLOCK - 1,), (BLOCK + 1,), (2 * BLOCK + 917,), (3, 5, 70)]
dtype_id = lambda d: str(d)[6:]  # noqa: E731


@pytest.fixture(autouse=True)
def nan_filled_empty():
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(before)


def close(got, want, dtype):
    rtol, atol = TOL[dtype]
    assert got.shape == want.shape
    torch.testing.assert_close(got.double().cpu(), want.double().cpu(), rtol=rtol, atol=atol)


def inputs(shape, dtype, device, special, scale, seed=0):
    """(x, v, dh): randn * scale with the special values scattered over the blocks."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    x = torch.randn(n, generator=gen) * scale
    k = min(n, len(special))
    x[:k] = special[:k]
    x = x[torch.randperm(n, generator=gen)]
    v = torch.randn(n, generator=gen).clamp(-3, 3)  # |gensilu(1e4) v| < 65504 in fp16
    dh = torch.randn(n, generator=gen)
    return [t.reshape(shape).to(device, dtype) for t in (x, v, dh)]


def reference(fn, x, v, dh):
    """float64 (fn(x) * v, d/dx, d/dv) by autograd through the plain PyTorch formula fn."""
    x, v = (t.double().requires_grad_() for t in (x, v))
    h = fn(x) * v
    h.backward(dh.double())
    return h.detach(), x.grad, v.grad


def sqs_special(c):
    return torch.tensor([0.0, c, -c, 1e-6, -1e-6, 1e-3, -1e-3, 1e4, -1e4, 1.0, -1.0])


def gensilu_special(left, right, period):
    """0, large |x|, and the joins -aT, bT with their fp32 neighbours."""
    joins = torch.tensor([-left * period, right * period])
    return torch.cat([torch.tensor([0.0, 1e4, -1e4, 1e-3, -1e-3, 20.0, -20.0]), joins,
                      joins.nextafter(joins + 1), joins.nextafter(joins - 1)])


# -------------------------------------------------------------------------------------- SQS-GLU
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("c,lam,p", SQS_PARAMS)
def test_sqs_glu_matches_float64(device, dtype, c, lam, p):
    special = sqs_special(c)[1:] if p < 1 else sqs_special(c)  # sqs'(0) = inf for p < 1: below
    for i, shape in enumerate(SHAPES):
        g, v, dh = inputs(shape, dtype, device, special, 3.0, seed=i)
        gr, vr = g.clone().requires_grad_(), v.clone().requires_grad_()
        h = kernel_sqs.sqs_glu(gr, vr, c, lam, p)
        h.backward(dh)
        want = reference(lambda t: activations.sqs(t, c, lam, p), g, v, dh)
        assert h.dtype == gr.grad.dtype == vr.grad.dtype == dtype
        for got, w in zip((h, gr.grad, vr.grad), want):
            close(got, w, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_sqs_at_zero_follows_the_sign_convention(device):
    """sign(0) = +1: sqs(0) = -c, sqs'(0) = 1 + lam c (p = 1), 1 (p = 2), +inf (p < 1, c > 0)."""
    cases = [((0.01, 0.5, 1.0), 1.005), ((0.01, 0.5, 2.0), 1.0), ((0.05, 0.3, 0.5), math.inf)]
    for (c, lam, p), slope in cases:
        g = torch.zeros(3, device=device, requires_grad=True)
        h = kernel_sqs.sqs_glu(g, torch.ones(3, device=device), c, lam, p)
        h.sum().backward()
        assert torch.all(h == torch.tensor(-c, device=device))
        assert torch.allclose(g.grad, torch.tensor(slope, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_sqs_glu_limits_at_infinity(device, dtype):
    """sqs(+-inf) = +-1/lam for p = 1 (lam = 0.5, and lam = 2 where 1 + lam |g| would overflow
    fp32 near the largest float), 0 for p = 2; gradients there: dg = 0, dv = dh sqs(g). The
    expected values are the limits written out here, not activations.py's."""
    inf = math.inf
    g = torch.tensor([inf, -inf, inf, -inf], device=device, dtype=dtype)
    v = torch.tensor([1.0, 1.0, -2.0, 0.5], device=device, dtype=dtype)
    dh = torch.tensor([1.0, -1.0, 0.5, 2.0], device=device, dtype=dtype)
    for lam, p, limit in [(0.5, 1.0, 2.0), (2.0, 1.0, 0.5), (0.1, 2.0, 0.0)]:
        gr = g.clone().requires_grad_()
        vr = v.clone().requires_grad_()
        h = kernel_sqs.sqs_glu(gr, vr, 0.01, lam, p)
        h.backward(dh)
        gate = torch.tensor([limit, -limit, limit, -limit], dtype=torch.float64)
        close(h, gate * v.double().cpu(), dtype)
        close(vr.grad, gate * dh.double().cpu(), dtype)
        assert torch.equal(gr.grad.cpu(), torch.zeros(4, dtype=dtype))
    huge = kernel_sqs.sqs_glu(g, v, 0.2, 0.0, 1.5)  # lam = 0: no shrink; huge (or inf), no NaN
    assert not huge.isnan().any() and torch.equal(huge.sign(), (g * v).sign())


@pytest.mark.parametrize("device", DEVICES)
def test_sqs_glu_strided_inputs_and_expanded_grad(device):
    """Strided views go in, gradients come out in the views' layout; h.sum() gives a stride-0 dh."""
    gbase = (torch.randn(70, 40, device=device) * 3).requires_grad_()
    vbase = torch.randn(40, 140, device=device).requires_grad_()
    g, v = gbase.t(), vbase[:, ::2]  # transposed, and every other column
    assert not g.is_contiguous() and not v.is_contiguous()
    h = kernel_sqs.sqs_glu(g, v)
    h.sum().backward()
    want = reference(activations.sqs, g.detach(), v.detach(), torch.ones(40, 70))
    for got, w in zip((h, gbase.grad.t(), vbase.grad[:, ::2]), want):
        close(got, w, torch.float32)
    assert torch.all(vbase.grad[:, 1::2] == 0)  # the skipped columns get no gradient


@pytest.mark.parametrize("device", DEVICES)
def test_sqs_glu_empty_and_mixed_dtypes(device):
    g, v = (torch.empty(0, 5, device=device, requires_grad=True) for _ in range(2))
    h = kernel_sqs.sqs_glu(g, v)
    h.sum().backward()
    assert h.shape == g.grad.shape == v.grad.shape == (0, 5)
    # bf16 gate, fp32 value: fp32 output (type promotion), each gradient in its input's dtype
    g, v, dh = inputs((500,), torch.float32, device, sqs_special(0.01), 3.0)
    gb, vr = g.bfloat16().requires_grad_(), v.clone().requires_grad_()
    h = kernel_sqs.sqs_glu(gb, vr)
    h.backward(dh)
    assert h.dtype == torch.float32
    assert gb.grad.dtype == torch.bfloat16 and vr.grad.dtype == torch.float32
    want_h, want_dg, want_dv = reference(activations.sqs, gb.detach(), v, dh)
    close(h, want_h, torch.float32)
    close(gb.grad, want_dg, torch.bfloat16)
    close(vr.grad, want_dv, torch.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fn", [kernel_sqs.sqs_glu, kernel_gensilu.gensilu_glu],
                         ids=["sqs_glu", "gensilu_glu"])
def test_gradient_for_one_input_only(device, fn):
    """needs_input_grad False for the gate or the value: that input gets no gradient, the other
    the right one."""
    g, v, dh = inputs((1500,), torch.float32, device, sqs_special(0.01), 3.0)
    plain = activations.sqs if fn is kernel_sqs.sqs_glu else activations.gensilu
    _, want_dg, want_dv = reference(plain, g, v, dh)
    for need_g in (True, False):
        gr, vr = g.clone().requires_grad_(need_g), v.clone().requires_grad_(not need_g)
        fn(gr, vr).backward(dh)
        got, other = (gr, vr) if need_g else (vr, gr)
        close(got.grad, want_dg if need_g else want_dv, torch.float32)
        assert other.grad is None


def test_sqs_glu_plain_paths_and_errors():
    g, v = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    # broadcasting shapes and float64 are served by the plain formula, with the same result
    assert torch.equal(kernel_sqs.sqs_glu(g, v), activations.sqs(g) * v)
    want = activations.sqs(g, 0.1, 1.0, 2.0) * g
    assert torch.equal(kernel_sqs.sqs_glu(g, g, 0.1, 1.0, 2.0), want)
    with pytest.raises(ValueError, match="lam"):
        kernel_sqs.sqs_glu(g.float(), g.float(), lam=-1.0)
    with pytest.raises(ValueError, match="exponent p"):
        kernel_sqs.sqs_glu(g.float(), g.float(), p=float("nan"))
    with pytest.raises(TypeError, match="dtypes"):
        kernel_sqs.sqs_glu(torch.ones(3, dtype=torch.int32), torch.ones(3, dtype=torch.int32))


# ------------------------------------------------------------------------ gensilu, plain and gated
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("left,right,period", GENSILU_PARAMS)
def test_gensilu_matches_float64(device, dtype, left, right, period):
    plain = lambda t: activations.gensilu(t, left, right, period)  # noqa: E731
    special = gensilu_special(left, right, period)
    for i, shape in enumerate(SHAPES):
        x, v, dh = inputs(shape, dtype, device, special, (left + right + 1) * period / 2, seed=i)
        xr = x.clone().requires_grad_()  # y = gensilu(x), dx = dy gensilu'(x)
        y = kernel_gensilu.gensilu(xr, left, right, period)
        y.backward(dh)
        want_y, want_dx, _ = reference(plain, x, torch.ones_like(x), dh)
        assert y.dtype == xr.grad.dtype == dtype
        close(y, want_y, dtype)
        close(xr.grad, want_dx, dtype)
        gr, vr = x.clone().requires_grad_(), v.clone().requires_grad_()  # h = gensilu(g) v
        h = kernel_gensilu.gensilu_glu(gr, vr, left, right, period)
        h.backward(dh)
        for got, w in zip((h, gr.grad, vr.grad), reference(plain, x, v, dh)):
            close(got, w, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_gensilu_zero_cycles_is_silu_and_finite_far_out(device):
    """Independent of activations.py: (0, 0) is x sigmoid(x), i.e. torch's own silu."""
    x = torch.tensor([-1e4, -100.0, -20.0, -1.0, 0.0, 0.5, 20.0, 100.0, 1e4], device=device)
    xr = x.clone().requires_grad_()
    y = kernel_gensilu.gensilu(xr)
    y.sum().backward()
    xs = x.double().requires_grad_()
    torch.nn.functional.silu(xs).sum().backward()
    close(y, torch.nn.functional.silu(xs).detach(), torch.float32)
    close(xr.grad, xs.grad, torch.float32)
    assert torch.isfinite(y).all() and torch.isfinite(xr.grad).all()


@pytest.mark.parametrize("device", DEVICES)
def test_gensilu_strided_and_empty(device):
    base = (torch.randn(50, 30, device=device) * 8).requires_grad_()
    x = base.t()[::2]
    assert not x.is_contiguous()
    y = kernel_gensilu.gensilu(x, 1.0, 2.0)
    y.sum().backward()
    want_y, want_dx, _ = reference(lambda t: activations.gensilu(t, 1.0, 2.0), x.detach(),
                                   torch.ones(x.shape), torch.ones(x.shape))
    close(y, want_y, torch.float32)
    close(base.grad.t()[::2], want_dx, torch.float32)
    assert torch.all(base.grad.t()[1::2] == 0)
    for fn in (kernel_gensilu.gensilu, lambda t: kernel_gensilu.gensilu_glu(t, t)):
        e = torch.empty(2, 0, device=device, requires_grad=True)
        out = fn(e)
        out.sum().backward()
        assert out.shape == e.grad.shape == (2, 0)


def test_gensilu_plain_paths_and_errors():
    x = torch.randn(6, 4, dtype=torch.float64)
    assert torch.equal(kernel_gensilu.gensilu(x, 1, 1), activations.gensilu(x, 1, 1))
    v = torch.randn(4, dtype=torch.float64)
    assert torch.equal(kernel_gensilu.gensilu_glu(x, v, 1.0, 0.0, 3.0),
                       activations.gensilu(x, 1.0, 0.0, 3.0) * v)
    with pytest.raises(ValueError, match="period"):
        kernel_gensilu.gensilu(x.float(), period=0.0)
    with pytest.raises(ValueError, match="left"):
        kernel_gensilu.gensilu_glu(x.float(), x.float(), left=-1.0)
    with pytest.raises(TypeError, match="dtypes"):
        kernel_gensilu.gensilu(torch.ones(3, dtype=torch.int64))
    assert kernel_gensilu.gensilu(x.float()).dtype == torch.float32  # default period 1


# ------------------------------------------------------- memory: the Functions save inputs only
def saved_bytes(fn):
    """Bytes of all tensors autograd saves for backward while fn() runs."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("name", ["sqs_glu", "gensilu", "gensilu_glu"])
def test_saves_only_inputs(name):
    g, v = (torch.randn(2048, requires_grad=True) for _ in range(2))
    if name == "sqs_glu":
        def fused():
            return kernel_sqs.sqs_glu(g, v)

        def eager():
            return activations.sqs(g) * v
        inputs_ = (g, v)
    elif name == "gensilu":
        def fused():
            return kernel_gensilu.gensilu(g, 1, 1)

        def eager():
            return activations.gensilu(g, 1, 1)
        inputs_ = (g,)
    else:
        def fused():
            return kernel_gensilu.gensilu_glu(g, v, 1, 1)

        def eager():
            return activations.gensilu(g, 1, 1) * v
        inputs_ = (g, v)
    input_bytes = sum(t.numel() * t.element_size() for t in inputs_)
    assert 0 < saved_bytes(fused) <= input_bytes
    if name != "gensilu":  # (activations.gensilu alone saves one tensor, its slope, too)
        assert saved_bytes(eager) > input_bytes


# ------------------------------------------------------------------ activations.py's dispatch
class FakeCuda(torch.Tensor):
    """A CPU tensor that claims to be on CUDA, to drive activations.py's dispatch on a CPU-only
    machine (the kernels still run in the interpreter on the CPU data)."""

    @property
    def is_cuda(self):
        return True


@pytest.fixture
def calls(monkeypatch):
    """Record which kernel entry points activations.py calls (and still run them)."""
    seen = []

    def recorder(real, key):
        def record(*args, **kwargs):
            seen.append(key)
            return real(*args, **kwargs)
        return record

    for mod, name in ((kernel_sqs, "sqs_glu"), (kernel_gensilu, "gensilu_glu"),
                      (kernel_gensilu, "gensilu")):
        monkeypatch.setattr(mod, name, recorder(getattr(mod, name), name))
    return seen


@pytest.mark.skipif(not triton.knobs.runtime.interpret, reason="drives CPU data as 'CUDA'")
@pytest.mark.parametrize("spec", ["sqs:0.01,0.5,1", "sqs:-0.02,1,2", "gensilu:1,1"])
def test_glu_on_cuda_uses_the_kernel_unless_told_not_to(spec, calls, monkeypatch):
    act = activations.parse_act(spec)
    g, v = torch.randn(300) * 3, torch.randn(300)
    fg = g.as_subclass(FakeCuda)
    fv = v.as_subclass(FakeCuda)
    want = act.fn(g.double(), **act.params) * v.double()
    close(activations.glu(fg, fv, act).as_subclass(torch.Tensor), want, torch.float32)
    assert calls == [act.name + "_glu"]
    if act.name == "gensilu":
        plain = act.fn(g.double(), **act.params)
        close(act(fg).as_subclass(torch.Tensor), plain, torch.float32)
        assert calls[-1] == "gensilu"
    calls.clear()
    before = dict(activations.FUSED_CALLS)
    activations.glu(fg, fv, act, use_kernel=False)  # what --no-kernels passes
    act(fg, use_kernel=False)
    assert calls == [] and activations.FUSED_CALLS == before
    for mod in (kernel_sqs, kernel_gensilu):  # as on a machine without triton
        monkeypatch.setattr(mod, "HAVE_TRITON", False)
    activations.glu(fg, fv, act)
    assert calls == []


def test_cpu_tensors_without_interpreter_give_a_clear_error(monkeypatch):
    monkeypatch.setattr(triton.knobs.runtime, "interpret", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernel_sqs.sqs_glu(torch.ones(3), torch.ones(3))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernel_gensilu.gensilu(torch.ones(3))


# -------------------------------------------------------------------- the scripts, as run by users
def run(*args, code=None):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_modules_import_and_table5_run_without_triton():
    """As on macOS: `import triton` fails; the modules import, float64 still works, the kernels
    refuse with one line, and --table5 (eager PyTorch) runs."""
    code = ("import sys, runpy, torch; sys.modules['triton'] = None\n"
            "import kernel_sqs, kernel_gensilu, activations\n"
            "assert not kernel_sqs.HAVE_TRITON and not kernel_gensilu.HAVE_TRITON\n"
            "x = torch.randn(5, dtype=torch.float64)\n"
            "assert torch.equal(kernel_sqs.sqs_glu(x, x), activations.sqs(x) * x)\n"
            "try:\n    kernel_gensilu.gensilu(x.float()); sys.exit('no error')\n"
            "except RuntimeError as e:\n    assert 'needs triton' in str(e)\n"
            "sys.argv = ['kernel_sqs.py', '--table5', '--max-size', '256', '--reps', '1',"
            " '--no-compile']\n"
            "runpy.run_path('kernel_sqs.py', run_name='__main__')\n")
    r = run(code=code)
    assert r.returncode == 0, r.stderr
    rows = table_rows(r.stdout)
    assert len(rows) == 2 and rows[0][11] is None  # the SQS-Triton column: '—', not run


def number(text):
    """A table cell: a float, or None for '—' (not run)."""
    if text == "—":
        return None
    return float(text)


def table_rows(out):
    """The numeric rows of --table5's output: [batch, d, hidden, source, cells...]."""
    rows = []
    for line in out.splitlines():
        cells = line.split()
        if cells[3:4] in (["ours"], ["paper"]):
            rows.append([int(cells[0]), int(cells[1]), int(cells[2]), cells[3]]
                        + [number(c) for c in cells[4:]])
    return rows


def test_table5_rows_and_ratios(capsys):
    """Compiling is slow on a CPU, so it is left out here: its columns show '—' and the reason."""
    kernel_sqs.table5("cpu", max_size=256, reps=1, compile_layers=False)
    out = capsys.readouterr().out
    assert "torch.compile, not run (--no-compile)" in out
    rows = table_rows(out)
    sizes = [(256, 256, 256)]  # of the 16 rows, only 256 x 256 x 256 is kept
    assert [tuple(x[:3]) for x in rows[::2]] == [tuple(x[:3]) for x in rows[1::2]] == sizes
    for ours, paper in zip(rows[::2], rows[1::2]):
        relu, swiglu, gelu, ident, sqs = ours[4:9]
        swiglu_c, sqs_c, triton_col, r_eager, r_compiled, r_triton, gflops = ours[9:]
        assert min(ours[4:9]) > 0
        assert swiglu_c is sqs_c is triton_col is r_compiled is r_triton is None
        assert r_eager == pytest.approx(sqs / swiglu, rel=1e-3)  # one round: its own median
        assert gflops == pytest.approx(14 * math.prod(ours[:3]) / swiglu / 1e6, rel=1e-3)
        assert paper[9] == pytest.approx(paper[8] / paper[5], abs=1e-4)  # SQS / SwiGLU


def test_table5_without_a_compiler_says_why(monkeypatch, capsys):
    """No C++ compiler on the PATH: the compiled columns are '—' and the header names the reason
    (nothing is compiled, so this is fast)."""
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    kernel_sqs.table5("cpu", max_size=256, reps=1)
    out = capsys.readouterr().out
    assert "no C++ compiler found" in out
    ours = table_rows(out)[0]
    assert ours[9] is None and ours[10] is None and ours[14] is None


BAD_FLAGS = [["--max-size", "100"], ["--reps", "0"], ["--device", "tpu"]]
if not torch.cuda.is_available():
    BAD_FLAGS.append(["--device", "cuda"])


@pytest.mark.parametrize("args", BAD_FLAGS)
def test_bad_flags_are_one_line_errors(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kernel_sqs.py", "--table5", *args])
    with pytest.raises(SystemExit) as e:
        kernel_sqs.main()
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("kernel_sqs.py: error:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the scripts run their benchmark")
@pytest.mark.parametrize("script", ["kernel_sqs.py", "kernel_gensilu.py"])
def test_scripts_check_passes_in_the_interpreter(script, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")  # each script turns the interpreter on by itself
    r = run(script)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_benchmarks_run_on_cuda(capsys):
    """On a GPU: the gensilu benchmark runs, and Table 5 has every column, compiled and fused."""
    kernel_gensilu.benchmark(sizes=(4096,))
    kernel_sqs.table5("cuda", 256, 1)
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert len(rows) == 2 and "SQS-Triton" in out
    assert None not in rows[0], out  # compiled, fused and all three ratios ran
