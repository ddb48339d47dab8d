"""Properties of activations.py that could fail: values, joins, derivatives, the [MLP1] identities,
and clear errors for bad parameters."""
import math

import pytest
import torch

import activations as A

TWO_PI = 2 * math.pi


def sig(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- values at hand-computed points
@pytest.mark.parametrize("spec,x,expected", [
    ("identity", -2.5, -2.5),
    ("relu", -1.0, 0.0),
    ("relu", 2.0, 2.0),
    ("relu2", 3.0, 9.0),
    ("relu2", -3.0, 0.0),
    ("silu", 1.0, 1.0 * sig(1.0)),
    ("silu2", 2.0, (2.0 * sig(2.0)) ** 2),
    ("gelu", 1.0, 0.5 * (1 + math.erf(1 / math.sqrt(2)))),
    ("tanh", 0.5, math.tanh(0.5)),
    ("sqs", 1.0, (1 - 0.01) / 1.5),          # (x - c)/(1 + lam x)
    ("sqs", -1.0, (-1 + 0.01) / 1.5),
    ("sqs", 0.0, -0.01),                      # sign(0) = +1 convention
    ("sqs:-0.01,0.5,1", 1.0, 1.01 / 1.5),     # the other reading of the shift
    ("sqs:0.01,0.5,2", 2.0, 1.99 / 3.0),      # 1 + 0.5 * 2^2
    # T = 2pi: the sine branch at its top (sin = 1), then the right linear branch, x - 2pi
    ("gensilu:1,1,6.283185307179586", math.pi / 2, sig(math.pi / 2)),
    ("gensilu:1,1,6.283185307179586", TWO_PI + 1, 1.0 * sig(TWO_PI + 1)),
    ("gensilu:1,1,6.283185307179586", -TWO_PI - 1, -1.0 * sig(-TWO_PI - 1)),  # left branch: x + 2pi
    ("gensilu:0,2", 0.25, (1 / TWO_PI) * sig(0.25)),      # default T = 1: A sin(2 pi x) at 1/4
    ("gensilu:1,1", 3.0, 2.0 * sig(3.0)),                       # T = 1: right branch x - 1
    ("gensilu:1,1", -0.75, (1 / TWO_PI) * sig(-0.75)),          # sin(-3 pi / 2) = 1
    ("igelu", 0.0, 0.0),                                        # integral from 0
    ("igelu", 1.0, 0.5 * (math.exp(-0.5) / math.sqrt(TWO_PI)) + 0.25),  # (x^2-1) term vanishes
])
def test_values(spec, x, expected):
    act = A.parse_act(spec)
    got = act(torch.tensor([x], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_gensilu_00_is_silu():
    x = torch.linspace(-20, 20, 10001)
    assert torch.allclose(A.gensilu(x, 0, 0), A.silu(x), rtol=0, atol=1e-6)
    assert torch.equal(A.gensilu(x, 0, 0), x * torch.sigmoid(x))


@pytest.mark.parametrize("a,b,T", [(1, 1, TWO_PI), (2, 0, TWO_PI), (0, 3, 1.0), (2, 2, 0.5),
                                   (1, 2, 3.0)])
def test_gensilu_c1_at_joins(a, b, T):
    """Continuous value and slope across x = -aT and x = bT (one-sided differences in float64)."""
    f = lambda x: A.gensilu(torch.tensor(x, dtype=torch.float64), a, b, T).item()
    h = 1e-7
    for j in (-a * T, b * T):
        assert f(j - h) == pytest.approx(f(j + h), abs=1e-6)
        left_slope = (f(j - h) - f(j - 2 * h)) / h
        right_slope = (f(j + 2 * h) - f(j + h)) / h
        assert left_slope == pytest.approx(right_slope, abs=1e-4)


def gensilu_three_way(x, a, b, T):
    """The definition as the blog writes it, with two torch.where: independent of the clamp form."""
    wave = T / TWO_PI * torch.sin(TWO_PI * x / T)
    y = torch.where(x < -a * T, x + a * T, torch.where(x > b * T, x - b * T, wave))
    return y * torch.sigmoid(x)


@pytest.mark.parametrize("left,right,period", [(0, 0, 1.0), (1, 0, TWO_PI), (0, 1, 1.0),
                                               (1, 1, 1.0), (3, 2, 1.0), (0.5, 1.3, 2.0),
                                               (2, 2, 0.5)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_gensilu_matches_the_definition_across_the_joins(left, right, period, dtype, tol):
    """The branch-free gensilu, its hand-written backward and gensilu_grad against the three-way
    definition through autograd -- on a grid that straddles both joins (|x| beyond aT and bT)
    closely."""
    joins = torch.tensor([-left * period, right * period], dtype=torch.float64)
    offsets = torch.tensor([-1e-3, -1e-6, 1e-6, 1e-3], dtype=torch.float64)
    near = (joins[:, None] + offsets).flatten()
    grid = torch.linspace(-9, 9, 4001, dtype=torch.float64) + 1e-3
    x = torch.cat([grid, near]).to(dtype).requires_grad_()
    y = A.gensilu(x, left, right, period)
    (g,) = torch.autograd.grad(y.sum(), x)
    xr = x.detach().double().requires_grad_()
    y_ref = gensilu_three_way(xr, left, right, period)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), xr)
    assert y.dtype == dtype
    assert (y.double() - y_ref).abs().max() < tol * 4
    assert (g.double() - g_ref).abs().max() < tol * 4
    assert (A.gensilu_grad(x.detach(), left, right, period).double() - g_ref).abs().max() < tol * 4


def test_gensilu_works_under_torch_func():
    from torch.func import grad, vmap
    x = torch.randn(3, 7, dtype=torch.float64)
    per_row = vmap(grad(lambda r: A.gensilu(r, 1, 1).sum()))(x)
    assert torch.allclose(per_row, A.gensilu_grad(x, 1, 1), rtol=1e-12, atol=1e-14)


def test_period_one_is_the_default_and_differs_from_two_pi():
    """gensilu:1,1 means the blog's figure setting T = 1, where (b, b) shapes differ on [-5, 5]."""
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    assert A.parse_act("gensilu:1,1").params["period"] == 1.0
    assert torch.equal(A.gensilu(x, 1, 1), A.gensilu(x, 1, 1, 1.0))
    # T = 1: the linear branch of (b, b) passes through (5, 5 - b) up to the sigmoid factor
    for b in (1, 2, 3):
        five = torch.tensor([5.0], dtype=torch.float64)
        assert A.gensilu(five, b, b).item() == pytest.approx((5 - b) * sig(5))
    # (1,1) and (2,2) differ on [-5, 5] at T = 1; at T = 2 pi, (2,2) and (3,3) are the same sine
    assert (A.gensilu(x, 1, 1) - A.gensilu(x, 2, 2)).abs().max() > 0.5
    assert torch.equal(A.gensilu(x, 2, 2, TWO_PI), A.gensilu(x, 3, 3, TWO_PI))


def test_igelu_is_the_integral_of_gelu():
    """d/dx igelu = gelu (autograd, float64), igelu(0) = 0, and a trapezoid integral agrees."""
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(A.igelu(x).sum(), x)
    assert torch.allclose(g, A.gelu(x.detach()), rtol=0, atol=1e-12)
    t = torch.linspace(0, 3, 30001, dtype=torch.float64)
    assert A.igelu(torch.tensor(3.0, dtype=torch.float64)).item() == pytest.approx(
        torch.trapezoid(A.gelu(t), t).item(), abs=1e-8)


@pytest.mark.parametrize("gate,integral", sorted(A.INTEGRAL_OF.items()))
def test_integral_of_has_the_gate_as_derivative(gate, integral):
    x = (torch.linspace(-4, 4, 801, dtype=torch.float64) + 1e-3).requires_grad_()
    (g,) = torch.autograd.grad(A.parse_act(integral)(x).sum(), x)
    ratio = g / A.parse_act(gate)(x.detach())
    ok = A.parse_act(gate)(x.detach()).abs() > 1e-6
    constant = ratio[ok][0].expand(int(ok.sum()))
    assert torch.allclose(ratio[ok], constant, rtol=1e-9)   # a constant factor


def test_gensilu_shape_differs_from_silu():
    """The oscillation is real: (1,1) dips below 0 right of 0 where SiLU is positive."""
    x = torch.tensor([4.0], dtype=torch.float64)  # sin(4) < 0 inside the right cycle of T = 2 pi
    assert A.gensilu(x, 1, 1, TWO_PI).item() < 0 < A.silu(x).item()
    x = torch.tensor([0.75], dtype=torch.float64)  # sin(3 pi / 2) = -1, right cycle of T = 1
    assert A.gensilu(x, 1, 1).item() < 0 < A.silu(x).item()


# ---------------------------------------------------------------- sqs properties
def test_sqs_odd_away_from_zero():
    x = torch.cat([torch.logspace(-6, 4, 500, dtype=torch.float64)])
    for c, lam, p in [(0.01, 0.5, 1.0), (-0.01, 0.5, 1.0), (0.1, 2.0, 1.5)]:
        assert torch.allclose(A.sqs(-x, c, lam, p), -A.sqs(x, c, lam, p), rtol=0, atol=1e-15)


def test_sqs_bounded_by_inverse_lambda():
    x = torch.cat([-torch.logspace(-6, 8, 400), torch.logspace(-6, 8, 400)]).double()
    for lam in (0.1, 0.5, 2.0):
        assert A.sqs(x, 0.01, lam, 1.0).abs().max().item() < 1 / lam


def test_sqs_quasi_linear_in_middle_range():
    """For c << |x| << 1/lam the gate is ~ x (what lets bilinear eigen-analysis carry over)."""
    c, lam = 1e-4, 1e-3
    x = torch.tensor([0.1, 0.3, -0.2, 0.05], dtype=torch.float64)
    rel = ((A.sqs(x, c, lam) - x) / x).abs().max().item()
    assert rel < 3e-3


def test_sqs_derivative_formula_matches_autograd():
    x = torch.cat([-torch.logspace(-3, 2, 200), torch.logspace(-3, 2, 200)]).double()
    x.requires_grad_()
    for c, lam in [(0.01, 0.5), (-0.01, 0.5), (0.2, 1.3)]:
        (g,) = torch.autograd.grad(A.sqs(x, c, lam, 1.0).sum(), x)
        analytic = (1 + lam * c) / (1 + lam * x.detach().abs()) ** 2
        assert torch.allclose(g, analytic, rtol=1e-12, atol=0)
        assert torch.allclose(A.sqs_grad(x.detach(), c, lam, 1.0), analytic, rtol=1e-12, atol=0)
    for p in (0.7, 1.5, 2.0, 3.0):  # general p: sqs_grad vs autograd
        (g,) = torch.autograd.grad(A.sqs(x, 0.01, 0.5, p).sum(), x)
        assert torch.allclose(A.sqs_grad(x.detach(), 0.01, 0.5, p), g, rtol=1e-10, atol=1e-12)


def test_sqs_derivative_at_zero_uses_positive_branch():
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    A.sqs(x, 0.01, 0.5, 1.0).sum().backward()
    assert x.grad.item() == pytest.approx(1 + 0.5 * 0.01)


# ---------------------------------------------------------------- gradcheck for every activation
ALL_SPECS = sorted(A.REGISTRY) + ["sqs:-0.01,0.5,1", "sqs:0.01,0.5,2", "gensilu:1,1",
                                  "gensilu:0,1,2", "sin:3", "xsin:0.5",
                                  "gensilu:1,1,6.283185307179586"]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gradcheck(spec):
    act = A.parse_act(spec)
    torch.manual_seed(0)
    x = torch.randn(64, dtype=torch.float64) * 3
    # keep finite differences away from kinks: 0 (relu, sqs) and the gensilu joins
    period = act.params.get("period", 1.0)
    kinks = [0.0] + [s * k * period for s in (-1, 1) for k in (1, 2, 3)]
    joins = torch.tensor(kinks, dtype=torch.float64)
    near = (x[:, None] - joins[None]).abs().min(dim=1).values < 1e-2
    x = torch.where(near, x + 0.1, x).requires_grad_()
    assert torch.autograd.gradcheck(act, (x,), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- the [MLP1] identities
def test_eps_identity_relu_exact():
    """relu((w+e)x) - relu((w-e)x) = 2 e x relu'(wx) exactly whenever |w| > e."""
    torch.manual_seed(0)
    x = torch.randn(1000, dtype=torch.float64)
    size = torch.rand(1000, dtype=torch.float64)
    w = torch.randn(1000, dtype=torch.float64).sign() * (0.5 + size)
    eps = 1e-3
    lhs = A.relu((w + eps) * x) - A.relu((w - eps) * x)
    rhs = 2 * eps * x * (w * x > 0).double()
    assert torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-15)


def test_eps_identity_silu_third_order():
    """silu((w+e)x) - silu((w-e)x) = 2 e x silu'(wx) + O(e^3): the error shrinks ~1000x per 10x
    in e."""
    torch.manual_seed(0)
    x, w = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    z = (w * x).requires_grad_()
    (dsilu,) = torch.autograd.grad(A.silu(z).sum(), z)
    errs = []
    for eps in (1e-1, 1e-2):
        lhs = A.silu((w + eps) * x) - A.silu((w - eps) * x)
        errs.append((lhs - 2 * eps * x * dsilu).abs().max().item())
    assert errs[0] < 1e-2 and 500 < errs[0] / errs[1] < 2000


def test_tied_gated_relu_mlp_is_relu2_mlp_exactly():
    """ReLU(Wx) * (Wx) == ReLU(Wx)^2 bit for bit, so the two MLPs give identical outputs."""
    torch.manual_seed(0)
    d, h = 16, 64
    W, U = torch.randn(h, d), torch.randn(1, h)
    x = torch.randn(4096, d)
    z = x @ W.T
    gated = A.glu(z, z, A.parse_act("relu")) @ U.T
    squared = A.relu2(z) @ U.T
    assert torch.equal(gated, squared)
    # and untied weights do differ (the test would catch a glu that ignored its value)
    assert not torch.allclose(A.glu(z, x @ torch.randn(h, d).T, A.parse_act("relu")) @ U.T, squared)


# ---------------------------------------------------------------- registry and errors
def test_parse_acts_list_with_parameters():
    acts = A.parse_acts("relu,gensilu:1,1,sqs:0.01,0.5,1,bilinear,swiglu")
    assert [a.name for a in acts] == ["relu", "gensilu", "sqs", "identity", "silu"]
    assert acts[1].params == {"left": 1.0, "right": 1.0, "period": 1.0}
    assert acts[2].params == {"c": 0.01, "lam": 0.5, "p": 1.0}
    assert A.parse_act(acts[1].spec).params == acts[1].params  # spec round trip


@pytest.mark.parametrize("spec", ALL_SPECS + sorted(A.ALIASES))
def test_every_spec_round_trips(spec):
    act = A.parse_act(spec)
    again = A.parse_act(act.spec)
    assert (again.name, again.params) == (act.name, act.params)
    x = torch.randn(50, dtype=torch.float64)
    assert torch.equal(again(x), act(x))


def test_negative_parameters_in_a_list():
    acts = A.parse_acts("relu,sqs:-0.01,0.5,1,gensilu:2,.5")
    assert acts[1].params["c"] == -0.01
    assert acts[2].params == {"left": 2.0, "right": 0.5, "period": 1.0}


@pytest.mark.parametrize("spec,needle", [
    ("gensilu:nan,0", "left=nan"),
    ("gensilu:1,1,inf", "period=inf"),
    ("sqs:inf", "c=inf"),
    ("sqs:0.01,nan", "lam=nan"),
    ("sqs:0.01,0.5,-1", "p=-1"),
    ("gensilu:-1,0", "left=-1"),
    ("gensilu:0,-2", "right=-2"),
    ("gensilu:1,1,0", "period=0"),
    ("gensilu:1,1,-3", "period=-3"),
    ("sqs:0.01,-0.5", "lam=-0.5"),
    ("sqs:0.01,0.5,0", "p=0"),
    ("softplus", "'softplus'"),
    ("relu:1", "at most 0"),
    ("sqs:a", "must be numbers"),
])
def test_bad_parameters_raise_valueerror_naming_value(spec, needle):
    with pytest.raises(ValueError) as e:
        A.parse_act(spec)
    assert needle in str(e.value)


def test_direct_calls_validate_too():
    with pytest.raises(ValueError, match="lam=-1"):
        A.sqs(torch.ones(2), lam=-1)
    with pytest.raises(ValueError, match="period=0"):
        A.gensilu(torch.ones(2), period=0)


def test_glu_on_cpu_is_the_formula_times_value():
    torch.manual_seed(0)
    g, v = torch.randn(100), torch.randn(100)
    for spec in ("sqs", "gensilu:1,1", "gelu", "bilinear"):
        act = A.parse_act(spec)
        for use_kernel in (True, False):
            assert torch.equal(A.glu(g, v, act, use_kernel=use_kernel), act(g) * v)
    assert torch.equal(A.glu(g, v, A.parse_act("bilinear")), g * v)


# ---------------------------------------------------------------- sines
@pytest.mark.parametrize("k", [0.5, 1.0, 7.0])
def test_sin_and_xsin_values(k):
    x = torch.linspace(-10, 10, 201, dtype=torch.float64)
    want_sin = torch.tensor([math.sin(k * v) for v in x.tolist()], dtype=torch.float64)
    got_sin = A.parse_act(f"sin:{k}")(x)
    got_xsin = A.parse_act(f"xsin:{k}")(x)
    assert torch.allclose(got_sin, want_sin, rtol=0, atol=1e-12)
    assert torch.allclose(got_xsin, x + want_sin, rtol=0, atol=1e-12)
    assert A.parse_act("sin").params == {"k": 1.0}


@pytest.mark.parametrize("spec,needle", [("sin:0", "k=0"), ("sin:-2", "k=-2"),
                                         ("xsin:nan", "k=nan"), ("xsin:inf", "k=inf"),
                                         ("sin:1,2", "at most 1")])
def test_sine_bad_frequency_refused(spec, needle):
    with pytest.raises(ValueError) as e:
        A.parse_act(spec)
    assert needle in str(e.value)
    with pytest.raises(ValueError, match="k=-1"):
        A.sin(torch.ones(2), k=-1.0)                     # a direct call validates too


@pytest.mark.parametrize("spec", ["sin:3", "xsin:0.25", "sin:6.283185307179586", "xsin"])
def test_sine_specs_round_trip(spec):
    act = A.parse_act(spec)
    again = A.parse_act(act.spec)
    assert (again.name, again.params) == (act.name, act.params)
    assert float(spec.partition(":")[2] or 1) == act.params["k"]


# ---------------------------------------------------------------- far out: limits, no NaN
INF = float("inf")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lam", [0.5, 2.0, 1e-3])
def test_sqs_limits_at_infinity_p1(dtype, lam):
    """p = 1: sqs(+-inf) = +-1/lam, sqs'(+-inf) = 0; huge finite x (where 1 + lam |x| would
    overflow for lam > 1) gives the same."""
    biggest = torch.finfo(dtype).max
    x = torch.tensor([INF, -INF, biggest, -biggest, biggest / 3], dtype=dtype)
    got = A.sqs(x, 0.01, lam, 1.0)
    want = torch.tensor([1 / lam, -1 / lam, 1 / lam, -1 / lam, 1 / lam], dtype=torch.float64)
    assert torch.allclose(got.double(), want, rtol=1e-6, atol=0)
    assert torch.equal(A.sqs_grad(x, 0.01, lam, 1.0), torch.zeros_like(x))
    xr = x.clone().requires_grad_()
    A.sqs(xr, 0.01, lam, 1.0).sum().backward()
    assert torch.isfinite(xr.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sqs_far_out_for_other_p_and_lam_zero(dtype):
    """p > 1 tends to 0, p < 1 and lam = 0 grow without bound: never NaN, the sign of x."""
    x = torch.tensor([INF, -INF, 1e30, -1e30], dtype=dtype)
    p2 = A.sqs(x, 0.1, 2.0, 2.0)
    assert torch.all(p2.abs() < 1e-29)
    assert torch.equal(p2.signbit(), x.signbit())                   # +0 right, -0 left
    for c, lam, p in [(0.05, 0.3, 0.5), (0.2, 0.0, 1.5), (0.01, 0.0, 1.0)]:
        y = A.sqs(x, c, lam, p)
        assert torch.isfinite(y).all() and torch.all(y * x.sign() > 1e14), (c, lam, p)
        assert torch.isfinite(A.sqs_grad(x, c, lam, p)).all()
    assert torch.isfinite(A.sqs_grad(x, 0.1, 2.0, 2.0)).all()
    assert A.sqs(torch.tensor([float("nan")], dtype=dtype)).isnan().all()


def igelu_by_math(x):
    """1/2 [(x^2 - 1) Phi + x phi] + 1/4 with Python's math (float64, Phi by erfc)."""
    cdf = 0.5 * math.erfc(-x / math.sqrt(2))
    pdf = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return 0.5 * ((x * x - 1) * cdf + x * pdf) + 0.25


def test_igelu_far_out_float32():
    """No NaN for huge |x| in float32 (x^2 overflows past 1.8e19): 1/4 on the left, x^2/2 on the
    right up to 2.6e19, inf beyond; moderate x agree with the math formula."""
    x = torch.tensor([-INF, -1e30, -1e20, -50.0, 1e10, 1e19, 2e19, 1e30, INF])
    got = A.igelu(x).tolist()
    assert got[:4] == [0.25] * 4
    assert got[4] == pytest.approx(0.5e20, rel=1e-6) and got[5] == pytest.approx(0.5e38, rel=1e-6)
    assert got[6] == pytest.approx(2e38, rel=1e-6) and got[7:] == [INF, INF]
    grid = [-30.0, -8.0, -3.0, -0.5, 0.0, 0.7, 4.0, 25.0, 1e3]
    got = A.igelu(torch.tensor(grid)).double()
    want = torch.tensor([igelu_by_math(v) for v in grid], dtype=torch.float64)
    assert torch.allclose(got, want, rtol=2e-6, atol=1e-7)
    xr = x.clone().requires_grad_()
    A.igelu(xr).sum().backward()
    assert not xr.grad.isnan().any()
