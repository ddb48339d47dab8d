"""
activations.py -- every nonlinearity mlplab studies, in one place, read top to bottom.

This is the only module (besides the two Triton kernel files) that the experiment scripts share.
Each activation is a plain PyTorch function of a tensor, written from its formula, followed by a
registry that turns a command-line spec such as "gensilu:1,1" or "sqs:0.01,0.5,1" into a callable.

Sources
  [MLP1]  Ziming Liu, "MLP 1 -- Gating is good for polynomials" (2026),
          https://KindXiaoming.github.io/blog/2026/mlp-1/
  [MLP2]  Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
          https://KindXiaoming.github.io/blog/2026/mlp-2/
  [SQS]   "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation
          Function", arXiv:2509.01874
  [BIL]   Pearce, Dooms, Rigg, Oramas, Sharkey, "Bilinear MLPs enable weight-based mechanistic
          interpretability", arXiv:2410.08417
  [GLU]   Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202

------------------------------------------------------------------------------------------------
Gated vs plain units, and the rough equivalence of [MLP1]
------------------------------------------------------------------------------------------------
A plain MLP hidden unit computes sigma(w.x). A gated (GLU) unit computes sigma(w_g.x) * (w_v.x):
the activation of one projection multiplies ("gates") a second, linear projection.

[MLP1] observes that a *difference* of two plain units is approximately a gated unit. Take two
plain units whose weights differ by a small +-eps around w (x scalar for simplicity) and Taylor
expand sigma around w*x:

    sigma((w+eps)x) = sigma(wx) + eps*x*sigma'(wx) + O(eps^2)
    sigma((w-eps)x) = sigma(wx) - eps*x*sigma'(wx) + O(eps^2)
    ---------------------------------------------------------
    sigma((w+eps)x) - sigma((w-eps)x) = 2*eps * x*sigma'(wx) + O(eps^3)

(the eps^2 terms cancel because they have the same sign in both lines). So two plain sigma-units
can emulate the product "x * sigma'(wx)": a gate sigma' applied to one projection multiplying a
linear value x. Read the other way round: a gate g(.) in a GLU behaves roughly like a plain
activation whose derivative is g, i.e. like its antiderivative.

Exact corollary for ReLU. ReLU(z) = z * 1[z>0], so with *tied* gate and value weights
(w_g = w_v = w) a gated ReLU unit is

    ReLU(w.x) * (w.x) = (w.x)^2 * 1[w.x > 0] = ReLU(w.x)^2,

i.e. it *is* a ReLU^2 unit, exactly, for every input. (With untied weights the GLU has more
freedom; the tied case is the bridge between the two families. train_poly.py measures how far the
two drift apart when the weights are untied.) The rough version for ReLU: sigma' of ReLU^2/2 is
ReLU, so a ReLU-gated network is "roughly" a ReLU^2 network.

The tests check both statements numerically (tests/test_activations.py).
"""
import math
import os

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------
# The plain activations
# ------------------------------------------------------------------------------------------------


def identity(x):
    """identity(x) = x. As a GLU gate this gives the *bilinear* layer (W_g x) * (W_v x) of
    [BIL]: no nonlinearity at all, yet the layer is quadratic in x, so its weights can be read
    as one symmetric matrix per output (see eigen.py)."""
    return x


def relu(x):
    """relu(x) = max(x, 0). Piecewise linear: its second derivative is 0 almost everywhere, so a
    plain ReLU net builds curvature only from many kinks -- bad at x^n for n >= 2 [MLP1]."""
    return torch.relu(x)


def relu2(x):
    """relu2(x) = max(x, 0)^2 ("squared ReLU"). By the corollary above it equals a ReLU-gated unit
    with tied weights; being quadratic on x > 0 it fits x^2 with a handful of units."""
    return torch.relu(x).square()


def silu(x):
    """silu(x) = x * sigmoid(x) (a.k.a. swish). Smooth, non-monotone near -1.28, and
    silu(x) ~ x for x >> 0. As a GLU gate this is SwiGLU [GLU]; it is also the teacher of [MLP2]."""
    return F.silu(x)


def silu2(x):
    """silu2(x) = silu(x)^2. The smooth analogue of relu2: quadratic growth for x >> 0."""
    return F.silu(x).square()


def gelu(x):
    """gelu(x) = x * Phi(x), Phi the standard normal CDF (exact erf form, not the tanh
    approximation). As a GLU gate this is GEGLU [GLU]."""
    return F.gelu(x)


def tanh(x):
    """tanh(x). Saturates at +-1 and is almost linear near 0; [MLP2] finds tanh MLPs the *most*
    linear (highest R^2) of all students."""
    return torch.tanh(x)


# ------------------------------------------------------------------------------------------------
# Signed Quadratic Shrink [SQS], reconstructed (its formula is garbled in the paper's text)
# ------------------------------------------------------------------------------------------------
#
#     sqs(x) = (x - c*sign(x)) / (1 + lam*|x|^p),     defaults c = 0.01, lam = 0.5, p = 1
#
# As a GLU gate, sqs(W_g x) * (W_v x) is "signed quadratic": for c << |x| << 1/lam the gate is
# ~ x, so the unit is ~ (W_g x)(W_v x) -- the bilinear layer, whose weights have an exact
# eigen-decomposition. For |x| >> 1/lam the gate saturates at +-1/lam (no exploding quadratic);
# for |x| < c the shift flips the gate's sign.
#
# UNCERTAINTY. The seed text lost the formula; this reconstruction agrees with one public
# re-implementation. Even the sign of the shift is uncertain (the paper's "cure for vanishing
# gradients near 0" reads like x + c*sign(x)), so c is *signed*: c = -0.01 gives that reading.
#
# CONVENTION sign(0) = +1 (as the re-implementation does), so sqs(0) = -c. With torch.sign(0)=0
# instead, sqs(0) would be 0; we prefer a rule where every x lies on one of the two smooth pieces,
# so the derivative below holds everywhere, 0 included. sqs is odd for every x != 0.
#
# Derivative (x != 0, s = sign(x), so d|x|/dx = s):
#     sqs'(x) = [(1 + lam|x|^p) - (x - c s) * lam p |x|^(p-1) s] / (1 + lam|x|^p)^2
# For p = 1, (x - c s) s = |x| - c and the numerator collapses to 1 + lam*c:
#     sqs'(x) = (1 + lam*c) / (1 + lam*|x|)^2
# At x = 0 we use the right-hand piece (sign(0) = +1): sqs'(0) = 1 + lam*c for p = 1. autograd
# agrees because the code routes x = 0 to the +1 branch and writes |x| as x*sign(x) (torch.abs
# would have gradient 0 at 0, giving sqs'(0) = 1 instead).


def sqs(x, c=0.01, lam=0.5, p=1.0):
    """Signed Quadratic Shrink gate: (x - c*sign(x)) / (1 + lam*|x|^p), with sign(0) = +1."""
    _check_sqs(c, lam, p)
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    absx = x * sign  # = |x|, but with d|x|/dx = sign(x) = +1 at 0 (torch's abs has gradient 0 there)
    shrink = 1 + lam * (absx if p == 1 else absx.pow(p))
    return (x - c * sign) / shrink


def sqs_grad(x, c=0.01, lam=0.5, p=1.0):
    """Analytic sqs'(x) (formula above); the Triton kernel and the tests compare against it."""
    _check_sqs(c, lam, p)
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    absx = x.abs()
    if p == 1:
        return (1 + lam * c) / (1 + lam * absx).square()
    xp = absx.pow(p)
    den = 1 + lam * xp
    dxp = p * absx.pow(p - 1) * sign  # d|x|^p/dx; infinite at 0 when p < 1
    return (den - (x - c * sign) * lam * dxp) / den.square()


def _check_sqs(c, lam, p):
    if not math.isfinite(c):
        raise ValueError(f"sqs: shift c must be finite, got c={c}")
    if not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"sqs: shrink lam must be >= 0, got lam={lam}")
    if not (p > 0 and math.isfinite(p)):
        raise ValueError(f"sqs: exponent p must be > 0, got p={p}")


# ------------------------------------------------------------------------------------------------
# Generalized SiLU [MLP2] (the formula is the one in the blog's code figure)
# ------------------------------------------------------------------------------------------------
#
# Bend the identity into `left` (a) sine cycles left of 0 and `right` (b) cycles right of 0,
# period T, amplitude A = T / (2 pi), then multiply by the sigmoid like SiLU does:
#
#     y(x) = x + a T            x < -a T
#          = x - b T            x >  b T
#          = A sin(2 pi x / T)  otherwise
#     gensilu(x) = y(x) * sigmoid(x)
#
# Joins: at x = b T the sine is A sin(2 pi b) = 0 for integer b, equal to the linear branch
# x - bT = 0, and its slope A * 2pi/T * cos(2 pi b) = 1 equals the linear slope 1 (same at -aT).
# So y is continuous with continuous slope (C^1) for integer cycles -- for non-integer cycles it
# jumps at the joins, which we allow but do not recommend. (0, 0) gives y = x: exactly SiLU.
#
# Derivative (also used by kernel_gensilu.py), with s = sigmoid(x), s' = s (1 - s):
#     gensilu'(x) = y'(x) s + y(x) s (1 - s),   y' = 1 on the linear branches,
#                                               y' = cos(2 pi x / T) on the sine branch.
#
# Computing it without branches. The three-way definition above needs two torch.where, and on a
# CPU torch.where (forward and its backward) is several times slower than sin or sigmoid: through
# autograd one gensilu cost as much as ten SiLUs. The same function with a clamp instead: with
# lo = -aT, hi = bT, w = 2 pi / T and c = clamp(x, lo, hi),
#
#     y(x) = (x - c) + sin(w c)/w - k_lo [x < lo] - k_hi [x > hi],   k_end = sin(w end)/w,
#
# because x - c is 0 inside [lo, hi] (leaving the sine) and x - lo or x - hi outside, where the sine
# term is the constant sin(w end)/w = k_end. For integer cycles k_end = 0 and the indicator terms
# vanish. The slope is cos(w c) inside and 1 outside: y' = cos(w c) + j_lo [x < lo] + j_hi [x > hi],
# j_end = 1 - cos(w end) (0 for integer cycles). One autograd.Function computes gensilu' in the
# forward pass and saves only that, so the backward is a single multiply. gensilu() below stays the
# definition as written (the reference); Activation.__call__ sends CPU tensors to
# gensilu_branch_free() (tests/test_activations.py checks values and gradients against the
# definition, and gradcheck checks the slope).


class _GenSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, left, right, period):
        lo, hi, w = -left * period, right * period, 2 * math.pi / period
        s = torch.sigmoid(x)
        c = x.clamp(lo, hi)
        wc = c * w
        y = (x - c).add_(torch.sin(wc), alpha=1 / w)
        dy = torch.cos(wc) if ctx.needs_input_grad[0] else None
        for end, below in ((lo, True), (hi, False)):
            k, j = math.sin(w * end) / w, 1 - math.cos(w * end)
            if abs(k) > 1e-12 * period or abs(j) > 1e-12:   # not an integer number of cycles
                side = (x < end if below else x > end).to(x.dtype)
                y.sub_(side, alpha=k)
                if dy is not None:
                    dy.add_(side, alpha=j)
        if dy is not None:
            ctx.save_for_backward(s.mul(dy.add_(y * (1 - s))))   # gensilu' = s (y' + y (1 - s))
        return y.mul_(s)

    @staticmethod
    @torch.autograd.function.once_differentiable   # the saved slope is a constant: no 2nd derivative
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        return grad * slope, None, None, None


def gensilu(x, left=0.0, right=0.0, period=2 * math.pi):
    """Generalized SiLU of [MLP2]: y(x) * sigmoid(x), y = identity bent into sine cycles. The
    definition as written -- the reference the kernels and the fast path below are checked against."""
    _check_gensilu(left, right, period)
    lo, hi = -left * period, right * period
    amp = period / (2 * math.pi)
    wave = amp * torch.sin(x * (2 * math.pi / period))
    y = torch.where(x < lo, x + left * period, torch.where(x > hi, x - right * period, wave))
    return y * torch.sigmoid(x)


def gensilu_branch_free(x, left=0.0, right=0.0, period=2 * math.pi):
    """The same function and derivative, fast on the CPU (Activation dispatches gensilu here)."""
    _check_gensilu(left, right, period)
    return _GenSiLU.apply(x, float(left), float(right), float(period))


def _check_gensilu(left, right, period):
    if not (left >= 0 and math.isfinite(left)):
        raise ValueError(f"gensilu: left cycles must be >= 0, got left={left}")
    if not (right >= 0 and math.isfinite(right)):
        raise ValueError(f"gensilu: right cycles must be >= 0, got right={right}")
    if not (period > 0 and math.isfinite(period)):
        raise ValueError(f"gensilu: period must be > 0, got period={period}")


# ------------------------------------------------------------------------------------------------
# Registry: "name" or "name:p1,p2,..." -> Activation
# ------------------------------------------------------------------------------------------------
# Each entry: function, names of its positional parameters (in spec order), and a one-line note.
# Aliases let the GLU scripts use the literature's names: swiglu = silu gate, geglu = gelu gate,
# reglu = relu gate, bilinear = identity gate.

REGISTRY = {
    "identity": (identity, (), "x (as a GLU gate: the bilinear layer)"),
    "relu": (relu, (), "max(x, 0)"),
    "relu2": (relu2, (), "max(x, 0)^2"),
    "silu": (silu, (), "x sigmoid(x)"),
    "silu2": (silu2, (), "(x sigmoid(x))^2"),
    "gelu": (gelu, (), "x Phi(x)"),
    "tanh": (tanh, (), "tanh(x)"),
    "sqs": (sqs, ("c", "lam", "p"), "(x - c sign x)/(1 + lam |x|^p); sqs:c,lam,p"),
    "gensilu": (gensilu, ("left", "right", "period"), "sine-bent SiLU; gensilu:left,right[,period]"),
}
ALIASES = {"bilinear": "identity", "swiglu": "silu", "geglu": "gelu", "reglu": "relu"}


def kernels_enabled():
    """Triton kernels (CUDA) and the branch-free CPU gensilu are used unless MLPLAB_KERNELS=0
    (for A/B checks against the reference definitions)."""
    return os.environ.get("MLPLAB_KERNELS", "1") != "0"


def _kernel(name):
    """The Triton module for `name` ('sqs' or 'gensilu'), or None if triton is not importable.
    Imported lazily so that machines without triton (macOS, CPU-only installs) never touch it."""
    try:
        if name == "sqs":
            import kernel_sqs as k
        elif name == "gensilu":
            import kernel_gensilu as k
        else:
            return None
        return k if k.available() else None
    except ImportError:
        return None


class Activation:
    """A registry activation with its parameters bound. `act(x)` applies it elementwise;
    `act.spec` is the canonical spec string ("gensilu:1,1,6.283185307179586"); parsing it
    gives back exactly the same parameters."""

    def __init__(self, name, fn, params):
        self.name, self.fn, self.params = name, fn, params

    @property
    def spec(self):
        if not self.params:
            return self.name
        short = lambda v: f"{v:g}" if float(f"{v:g}") == v else repr(v)  # exact round trip
        return self.name + ":" + ",".join(short(v) for v in self.params.values())

    def __call__(self, x):
        # THE dispatch point for faster implementations of the same function: on CUDA gensilu goes
        # through its fused Triton kernel, elsewhere through the branch-free form above.
        # MLPLAB_KERNELS=0 forces the reference definition (for A/B checks).
        if self.name == "gensilu" and kernels_enabled():
            k = _kernel("gensilu") if x.is_cuda else None
            if k is not None:
                return k.gensilu(x, **self.params)
            if not x.is_cuda:
                return gensilu_branch_free(x, **self.params)
        return self.fn(x, **self.params)

    def __repr__(self):
        return f"Activation({self.spec!r})"


def parse_act(spec):
    """'gensilu:1,1' -> Activation. Unknown names or bad parameters raise ValueError naming them."""
    spec = spec.strip()
    name, _, args = spec.partition(":")
    name = ALIASES.get(name.strip(), name.strip())
    if name not in REGISTRY:
        choices = ", ".join(sorted(REGISTRY) + sorted(ALIASES))
        raise ValueError(f"unknown activation {spec!r}; choose from: {choices}")
    fn, pnames, _ = REGISTRY[name]
    values = [a for a in args.split(",") if a.strip()] if args else []
    if len(values) > len(pnames):
        raise ValueError(f"activation {spec!r}: {name} takes at most {len(pnames)} parameters "
                         f"({','.join(pnames) or 'none'}), got {len(values)}")
    try:
        params = {k: float(v) for k, v in zip(pnames, values)}
    except ValueError:
        raise ValueError(f"activation {spec!r}: parameters must be numbers") from None
    if name == "sqs":
        full = dict(c=0.01, lam=0.5, p=1.0) | params
        _check_sqs(**full)
        params = full
    elif name == "gensilu":
        full = dict(left=0.0, right=0.0, period=2 * math.pi) | params
        _check_gensilu(**full)
        params = full
    return Activation(name, fn, params)


def parse_acts(text):
    """'relu,gensilu:1,1,sqs' -> [Activation, ...]. A comma starts a new activation unless the
    token is a number (then it is another parameter of the previous one)."""
    tokens, out = [t.strip() for t in text.split(",") if t.strip()], []
    for tok in tokens:
        if out and _is_number(tok):
            out[-1] += "," + tok
        else:
            out.append(tok)
    if not out:
        raise ValueError("no activation given")
    return [parse_act(s) for s in out]


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def act_choices():
    """Human-readable list of registry names for --help texts."""
    return ", ".join(sorted(REGISTRY) + sorted(ALIASES)) + " (parameters: name:p1,p2,...)"


def glu(gate, value, act):
    """GLU hidden state act(gate) * value, where gate = W_g x and value = W_v x [GLU].

    On CUDA tensors with triton available, sqs and gensilu gates run as one fused Triton kernel
    (read gate and value once, write the product once; recompute the gate in backward)."""
    if gate.is_cuda and act.name in ("sqs", "gensilu") and kernels_enabled():
        k = _kernel(act.name)
        if k is not None:
            return k.glu(gate, value, **act.params)
    return act(gate) * value


if __name__ == "__main__":
    # A quick look: print every registry entry at a few points.
    xs = torch.tensor([-3.0, -1.0, -0.005, 0.0, 0.005, 1.0, 3.0])
    print("x        ", " ".join(f"{v:8.3f}" for v in xs.tolist()))
    for nm in sorted(REGISTRY):
        a = parse_act(nm)
        print(f"{a.spec[:9]:9s}", " ".join(f"{v:8.3f}" for v in a(xs).tolist()))
