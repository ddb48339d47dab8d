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
    ("gensilu:1,1", math.pi / 2, sig(math.pi / 2)),             # sine branch, sin = 1
    ("gensilu:1,1", TWO_PI + 1, 1.0 * sig(TWO_PI + 1)),         # right linear branch: x - 2pi
    ("gensilu:1,1", -TWO_PI - 1, -1.0 * sig(-TWO_PI - 1)),      # left linear branch: x + 2pi
    ("gensilu:0,2,1", 0.25, (1 / TWO_PI) * sig(0.25)),          # T = 1: A sin(2 pi x) at x = 1/4
])
def test_values(spec, x, expected):
    act = A.parse_act(spec)
    got = act(torch.tensor([x], dtype=torch.float64)).item()
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_gensilu_00_is_silu():
    x = torch.linspace(-20, 20, 10001)
    assert torch.allclose(A.gensilu(x, 0, 0), A.silu(x), rtol=0, atol=1e-6)
    assert torch.equal(A.gensilu(x, 0, 0), x * torch.sigmoid(x))


@pytest.mark.parametrize("a,b,T", [(1, 1, TWO_PI), (2, 0, TWO_PI), (0, 3, 1.0), (2, 2, 0.5), (1, 2, 3.0)])
def test_gensilu_c1_at_joins(a, b, T):
    """Continuous value and slope across x = -aT and x = bT (one-sided differences in float64)."""
    f = lambda x: A.gensilu(torch.tensor(x, dtype=torch.float64), a, b, T).item()
    h = 1e-7
    for j in (-a * T, b * T):
        assert f(j - h) == pytest.approx(f(j + h), abs=1e-6)
        left_slope = (f(j - h) - f(j - 2 * h)) / h
        right_slope = (f(j + 2 * h) - f(j + h)) / h
        assert left_slope == pytest.approx(right_slope, abs=1e-4)


@pytest.mark.parametrize("left,right,period", [(0, 0, TWO_PI), (1, 0, TWO_PI), (0, 1, TWO_PI),
                                               (1, 1, TWO_PI), (3, 2, 1.0), (0.5, 1.3, 2.0)])
def test_branch_free_gensilu_matches_the_definition(left, right, period):
    """On the CPU the gensilu Activation runs a clamp form with its own backward; it must be the same
    function with the same derivative, also for non-integer cycles (where the sine does not end at 0)."""
    x = (torch.linspace(-9, 9, 4001, dtype=torch.float64) + 1e-3).requires_grad_()
    y_ref = A.gensilu(x, left, right, period)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), x)
    y = A.parse_act(f"gensilu:{left},{right},{period}")(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert (y - y_ref).abs().max() < 1e-12 and (g - g_ref).abs().max() < 1e-12


def test_gensilu_shape_differs_from_silu():
    """The oscillation is real: (1,1) dips below 0 right of 0 where SiLU is positive."""
    x = torch.tensor([4.0], dtype=torch.float64)  # sin(4) < 0 inside the right cycle
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
    x = torch.cat([-torch.logspace(-3, 2, 200), torch.logspace(-3, 2, 200)]).double().requires_grad_()
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
ALL_SPECS = ["identity", "relu", "relu2", "silu", "silu2", "gelu", "tanh",
             "sqs", "sqs:-0.01,0.5,1", "sqs:0.01,0.5,2", "gensilu", "gensilu:1,1", "gensilu:0,1,2"]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gradcheck(spec):
    act = A.parse_act(spec)
    torch.manual_seed(0)
    x = torch.randn(64, dtype=torch.float64) * 3
    # keep finite differences away from kinks: 0 (relu, sqs) and the gensilu joins
    joins = torch.tensor([0.0] + [s * k * act.params.get("period", 1.0) for s in (-1, 1) for k in (1, 2, 3)],
                         dtype=torch.float64)
    near = (x[:, None] - joins[None]).abs().min(dim=1).values < 1e-2
    x = torch.where(near, x + 0.1, x).requires_grad_()
    assert torch.autograd.gradcheck(act, (x,), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------- the [MLP1] identities
def test_eps_identity_relu_exact():
    """relu((w+e)x) - relu((w-e)x) = 2 e x relu'(wx) exactly whenever |w| > e."""
    torch.manual_seed(0)
    x = torch.randn(1000, dtype=torch.float64)
    w, eps = torch.randn(1000, dtype=torch.float64).sign() * (0.5 + torch.rand(1000, dtype=torch.float64)), 1e-3
    lhs = A.relu((w + eps) * x) - A.relu((w - eps) * x)
    rhs = 2 * eps * x * (w * x > 0).double()
    assert torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-15)


def test_eps_identity_silu_third_order():
    """silu((w+e)x) - silu((w-e)x) = 2 e x silu'(wx) + O(e^3): the error shrinks ~1000x per 10x in e."""
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
    assert acts[1].params == {"left": 1.0, "right": 1.0, "period": TWO_PI}
    assert acts[2].params == {"c": 0.01, "lam": 0.5, "p": 1.0}
    assert A.parse_act(acts[1].spec).params == acts[1].params  # spec round trip


@pytest.mark.parametrize("spec,needle", [
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


def test_glu_on_cpu_uses_reference():
    torch.manual_seed(0)
    g, v = torch.randn(100), torch.randn(100)
    for spec in ("sqs", "gensilu:1,1", "gelu"):
        act = A.parse_act(spec)
        assert torch.equal(A.glu(g, v, act), act.fn(g, **act.params) * v)
