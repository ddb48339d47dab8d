"""activations.py -- every nonlinearity mlplab studies, one formula after another, then the registry
that turns a command-line spec ("gensilu:1,1", "sqs:0.01,0.5,1", "swiglu") into a callable, and
`glu`.

[MLP1] Z. Liu, "MLP 1 -- Gating is good for polynomials",
       https://KindXiaoming.github.io/blog/2026/mlp-1/
[MLP2] Z. Liu, "MLP 2 -- Effective linearity, Generalized SiLU",
       https://KindXiaoming.github.io/blog/2026/mlp-2/
[SQS]  arXiv:2509.01874 (Signed Quadratic Shrink)      [BIL] arXiv:2410.08417 (Pearce et al.)
[GLU]  arXiv:2002.05202 (Shazeer, GLU variants)

Plain vs gated: a plain unit computes sigma(w x), a gated (GLU) unit g(w_g x) * (w_v x), with a
gate function g. [MLP1]'s rough equivalence starts from a Taylor expansion (eps^2 terms cancel):
    sigma((w+eps)x) - sigma((w-eps)x) = 2 eps x sigma'(wx) + O(eps^3):
the difference of two plain sigma-units (weights w +- eps) is, to first order in eps, a gated unit
with gate g = sigma' and value 2 eps x. [MLP1] reads this as a rough "equivalence" between sigma(x)
and x sigma'(x): a gated unit with gate sigma' behaves roughly like a plain unit with activation
sigma -- a first-order statement about units, not a pointwise identity between the functions.
Read backwards: a gate g acts roughly like its integral used as a plain activation (INTEGRAL_OF
below). One case is exact: with tied weights, ReLU(z) * z = ReLU(z)^2 for every z, so a tied
ReLU-gated unit IS a ReLU^2 unit.
"""
import importlib
import math

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------- plain ones


def identity(x):
    """x. As a GLU gate: the bilinear layer (W_g x)(W_v x) of [BIL], quadratic in x (eigen.py)."""
    return x


def relu(x):
    """max(x, 0). Piecewise linear, so a plain ReLU network is piecewise linear in its input."""
    return torch.relu(x)


def relu2(x):
    """max(x, 0)^2 = 2 * integral of ReLU: the plain twin of the ReLU gate (up to the factor 2)."""
    return torch.relu(x).square()


def silu(x):
    """x sigmoid(x) (swish). As a GLU gate: SwiGLU [GLU]; the teacher of [MLP2]."""
    return F.silu(x)


def silu2(x):
    """silu(x)^2: the smooth analogue of relu2, quadratic for x >> 0."""
    return F.silu(x).square()


def gelu(x):
    """x Phi(x), Phi the standard normal CDF (exact erf form). As a GLU gate: GEGLU [GLU]."""
    return F.gelu(x)


# igelu(x) = integral_0^x gelu. With phi the normal density (phi' = -t phi, Phi' = phi), by parts:
#   int t Phi = t^2/2 Phi - 1/2 int t^2 phi,
#   int t^2 phi = -t phi + Phi                      (since d(-t phi) = (t^2 - 1) phi dt),
#   so int t Phi = 1/2 [(t^2 - 1) Phi + t phi] + const, which is -1/4 at t = 0. Check:
#   d/dx 1/2 [(x^2 - 1) Phi + x phi] = 1/2 [2x Phi + (x^2 - 1) phi + phi - x^2 phi] = x Phi = gelu.
# Far out the formula meets inf * 0: x^2 Phi(x) once x^2 overflows (float32: |x| > 1.8e19) while
# Phi(x) = 0 for x << 0, x phi(x) at x = +-inf, and in the gradient x^2 phi(x). Beyond |x| = 40
# Phi is 0 or 1 and phi is 0 to every digit (Phi(-40) ~ 4e-350), so x is clamped to [-40, inf)
# (igelu(x) = 1/4 for x < -40) and, inside Phi and phi, to [-40, 40]; (x/2) x then overflows only
# where x^2/2 itself does. Phi is torch.special.ndtr, accurate in the left tail where
# 1 + erf(x/sqrt 2) cancels.
def igelu(x):
    """integral_0^x gelu: ~ x^2/2 for x >> 0, -> 1/4 for x << 0. The plain twin of GEGLU's gate."""
    t = x.clamp(min=-40.0)
    u = t.clamp(max=40.0)
    cdf = torch.special.ndtr(u)
    pdf = torch.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    half_square = 0.5 * t * t                   # (t/2) t: overflows only where x^2/2 does
    return (half_square - 0.5) * cdf + 0.5 * u * pdf + 0.25


def tanh(x):
    """tanh(x): near-linear around 0, saturating; [MLP2] finds tanh students the most linear."""
    return torch.tanh(x)


# -------------------------------------------------------------------- Signed Quadratic Shrink [SQS]
# Reconstructed from the paper's prose (a shift c, a shrink by lam and p, "factor out an x, add a
# sign"), agreeing with one public re-implementation; uncertain, so c, lam, p stay parameters:
#     sqs(x) = (x - c sign(x)) / (1 + lam |x|^p),    c = 0.01, lam = 0.5, p = 1.
# As a gate, sqs(W_g x) (W_v x) ~ (W_g x)(W_v x) -- bilinear -- for |c| << |x| << 1/lam; beyond, it
# saturates (at +-1/lam for p = 1), and it flips sign inside |x| < |c|. The shift's sign is
# uncertain too (the paper's cure for vanishing gradients near 0 reads like x + c sign x): c is
# signed, and c = -0.01 is that reading.
# At 0: sign(0) = +1 (as the re-implementation), so sqs(0) = -c while sqs(x) -> +c as x -> 0 from
# below: sqs jumps by -2c at 0 (continuous only for c = 0). Derivative (s = sign x, d|x|/dx = s):
#     sqs'(x) = [(1 + lam |x|^p) - (x - c s) lam p |x|^(p-1) s] / (1 + lam |x|^p)^2,
# and for p = 1, (x - c s) s = |x| - c collapses the numerator:
#     sqs'(x) = (1 + lam c) / (1 + lam |x|)^2.
# At 0 this is the one-sided derivative from the right, the side sign(0) = +1 puts 0 on; with the
# jump there is no two-sided one. Autograd agrees (|x| is written x * sign, slope +1 at 0).
# Far out: sqs(x) -> sign(x)/lam for p = 1, -> 0 for p > 1, grows like |x|^(1-p)/lam for p < 1
# and like x for lam = 0 (no shrink). At x = +-inf the formula is inf/inf = NaN, so x is first
# clamped to +-BIG (sqs_bound): the largest float, which turns +-inf into a finite input whose sqs
# is the limit to working precision (0 for p > 1, where lam |x|^p overflows and x / inf = 0; a
# large value of the right sign for p < 1); for p = 1 and lam > 1/2, BIG = largest / (2 lam), so
# that 1 + lam |x| cannot overflow (sqs is 1/lam to working precision beyond it).
def _require(ok, message):   # ok is False for NaN too: every comparison with NaN is False
    if not ok:
        raise ValueError(message)


def check_sqs(c, lam, p):
    _require(math.isfinite(c), f"sqs: shift c must be finite, got c={c}")
    _require(0 <= lam < math.inf, f"sqs: shrink lam must be finite and >= 0, got lam={lam}")
    _require(0 < p < math.inf, f"sqs: exponent p must be finite and > 0, got p={p}")


def sqs_bound(lam, p, dtype):
    """BIG of the comment above: where x is clamped before the formula."""
    largest = torch.finfo(dtype).max
    if p == 1:
        return largest / max(2 * lam, 1.0)
    return largest


def sqs(x, c=0.01, lam=0.5, p=1.0):
    """Signed Quadratic Shrink: (x - c sign x) / (1 + lam |x|^p), sign(0) = +1."""
    check_sqs(c, lam, p)
    big = sqs_bound(lam, p, x.dtype)
    x = x.clamp(-big, big)                                  # +-inf -> +-BIG: see above
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    absx = x * sign
    if lam == 0:
        return x - c * sign                                 # no shrink (and no 0 * inf)
    if p == 1:
        return (x - c * sign) / (1 + lam * absx)
    return (x - c * sign) / (1 + lam * absx.pow(p))         # p > 1, |x| large: x / inf = 0


def sqs_grad(x, c=0.01, lam=0.5, p=1.0):
    """sqs'(x) from the formula above (from the right at 0); the kernels' backward is checked
    against it. Where lam |x|^p overflows (p > 1 far out) it is its limit there, 0."""
    check_sqs(c, lam, p)
    big = sqs_bound(lam, p, x.dtype)
    x = x.clamp(-big, big)
    absx = x.abs()
    if lam == 0:
        return torch.ones_like(x)
    if p == 1:
        return (1 + lam * c) / (1 + lam * absx) / (1 + lam * absx)   # no (1 + lam |x|)^2 overflow
    sign = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    den = 1 + lam * absx.pow(p)
    slope = (den - (x - c * sign) * lam * p * absx.pow(p - 1) * sign) / den.square()
    return torch.where(den.isinf(), 0.0, slope)


# ---------------------------------------------------------------------------- sines [MLP2]
def check_sine(k):
    _require(0 < k < math.inf, f"sin: frequency k must be finite and > 0, got k={k}")


def sin(x, k=1.0):
    """sin(k x): amplitude 1, frequency k. [MLP2] names "high-frequency sine functions" as a way
    to lower R^2 further, at a likely cost in trainability; mlp.py sweeps k."""
    check_sine(k)
    return torch.sin(k * x)


def xsin(x, k=1.0):
    """x + sin(k x): the identity plus a wiggle of amplitude 1, frequency k (rising on average)."""
    check_sine(k)
    return x + torch.sin(k * x)


# -------------------------------------------------------------------------- Generalized SiLU [MLP2]
# Bend the identity into a = `left` sine cycles left of 0 and b = `right` cycles right of 0 (period
# T, amplitude T/2pi so that the slope at the joins is 1), then multiply by the sigmoid as SiLU
# does:
#     y(x) = x + aT (x < -aT),  x - bT (x > bT),  (T/2pi) sin(2 pi x/T) otherwise;
#     gensilu(x) = y(x) s(x),  s = sigmoid.
# (0, 0) is exactly SiLU. For whole cycles y is C^1. For a fractional number of cycles (a or b not
# an integer) y is discontinuous at that join, as in the blog's code: the sine meets the join at
# a value other than 0, where the linear branch starts. Read left to right, y jumps by
# -(T/2pi) sin(2 pi a) at -aT and by -(T/2pi) sin(2 pi b) at bT, and its slope between cos and 1.
# The blog's code defaults to T = 2pi, but its figures use T = 1 (the linear branch of (b, b) passes
# through (5, 5 - b); (1,1), (2,2), (3,3) differ on [-5, 5], impossible at 2pi): "gensilu:a,b" means
# T = 1, and "gensilu:a,b,6.283185307179586" is the code's default.
# Branch-free (no torch.where, slow on a CPU): with w = 2pi/T and c = clamp(x, -aT, bT),
#     y = (x - c) + sin(w c)/w,   y' = cos(w c),
# since x - c is 0 inside and x + aT or x - bT outside, where sin(w c) = 0 and cos(w c) = 1 for
# whole cycles (for fractional ones the forward below subtracts the constant and fixes the slope).
# gensilu'(x) = s (y' + y (1 - s)). The joins -aT and bT belong to the sine branch.
def check_gensilu(left, right, period):
    _require(0 <= left < math.inf, f"gensilu: left cycles must be finite and >= 0, got left={left}")
    _require(0 <= right < math.inf,
             f"gensilu: right cycles must be finite and >= 0, got right={right}")
    _require(0 < period < math.inf, f"gensilu: period must be finite and > 0, got period={period}")


class GenSiLU(torch.autograd.Function):
    """gensilu and gensilu' in one pass; only the slope is saved, so backward is one multiply."""
    generate_vmap_rule = True                           # torch.func.vmap / grad work through it

    @staticmethod
    def forward(x, left, right, period):
        lo = -left * period
        hi = right * period
        w = 2 * math.pi / period
        c = x.clamp(lo, hi)
        y = (x - c) + torch.sin(w * c) / w
        dy = torch.cos(w * c)
        for end, outside in ((lo, x < lo), (hi, x > hi)):
            if abs(1 - math.cos(w * end)) > 1e-9:         # a fractional number of cycles this side:
                outside = outside.to(x.dtype)             # y = x - end and y' = 1 outside, as the
                y = y - math.sin(w * end) / w * outside   # blog's three-way definition
                dy = dy + (1 - math.cos(w * end)) * outside
        s = torch.sigmoid(x)
        return y * s, s * (dy + y * (1 - s))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])            # the slope is saved, not differentiated
        ctx.save_for_backward(output[1])

    @staticmethod
    @torch.autograd.function.once_differentiable         # the saved slope has no derivative
    def backward(ctx, grad, _):
        return grad * ctx.saved_tensors[0], None, None, None


def gensilu(x, left=0.0, right=0.0, period=1.0):
    """Generalized SiLU: the identity bent into sine cycles, times sigmoid(x). (0, 0) is SiLU."""
    check_gensilu(left, right, period)
    return GenSiLU.apply(x, float(left), float(right), float(period))[0]


def gensilu_grad(x, left=0.0, right=0.0, period=1.0):
    """gensilu'(x) = s (y' + y (1 - s)) (the kernel's backward is checked against it)."""
    check_gensilu(left, right, period)
    return GenSiLU.forward(x, float(left), float(right), float(period))[1]


# ---------------------------------------------------------------------------------------- registry
# name -> (function, parameters with defaults, validator); aliases: the GLU literature's names.
REGISTRY = {
    "identity": (identity, {}, None),
    "relu": (relu, {}, None),
    "relu2": (relu2, {}, None),
    "silu": (silu, {}, None),
    "silu2": (silu2, {}, None),
    "gelu": (gelu, {}, None),
    "igelu": (igelu, {}, None),
    "tanh": (tanh, {}, None),
    "sqs": (sqs, {"c": 0.01, "lam": 0.5, "p": 1.0}, check_sqs),
    "gensilu": (gensilu, {"left": 0.0, "right": 0.0, "period": 1.0}, check_gensilu),
    "sin": (sin, {"k": 1.0}, check_sine),
    "xsin": (xsin, {"k": 1.0}, check_sine),
}
ALIASES = {"bilinear": "identity", "swiglu": "silu", "geglu": "gelu", "reglu": "relu"}
# [MLP1]: "Once we have a useful gate, it can be converted to a useful activation function for free
# (except for doing integration)." gate -> its integral (up to a constant factor).
INTEGRAL_OF = {"relu": "relu2", "gelu": "igelu"}


def _number_text(value):
    """1.0 -> '1', 0.01 -> '0.01'; repr where %g would round (6.283185307179586)."""
    short = f"{value:g}"
    if float(short) == value:
        return short
    return repr(value)


class Activation:
    """A registry function with its parameters bound: act(x), act.name, act.params, act.spec."""

    def __init__(self, name, params):
        self.name = name
        self.params = params
        self.fn = REGISTRY[name][0]

    @property
    def spec(self):
        """Canonical spec; parse_act(act.spec) gives back exactly the same parameters."""
        numbers = [_number_text(value) for value in self.params.values()]
        if not numbers:
            return self.name
        return self.name + ":" + ",".join(numbers)

    def __call__(self, x, use_kernel=True):
        """The function on x; for gensilu on CUDA (use_kernel=True) the fused Triton kernel."""
        kernel = _fused(self.name, self.name, x, use_kernel)     # see below
        if kernel is None:
            return self.fn(x, **self.params)
        return kernel(x, **self.params)


def parse_act(spec):
    """'gensilu:1,1' -> Activation. An unknown name or a bad parameter is a ValueError naming it."""
    name, _, args = spec.strip().partition(":")
    name = ALIASES.get(name.strip(), name.strip())
    if name not in REGISTRY:
        raise ValueError(f"unknown activation {spec!r}; choose from: {act_choices()}")
    _, defaults, check = REGISTRY[name]
    values = [v for v in args.split(",") if v.strip()]
    if len(values) > len(defaults):
        raise ValueError(f"activation {spec!r}: {name} takes at most {len(defaults)} parameters, "
                         f"got {len(values)}")
    try:
        given = {key: float(text) for key, text in zip(defaults, values)}
    except ValueError:
        raise ValueError(f"activation {spec!r}: parameters must be numbers") from None
    params = defaults | given
    if check is not None:
        check(**params)
    return Activation(name, params)


def parse_acts(text):
    """'relu,gensilu:1,1,sqs' -> [Activation, ...]: a number continues the previous spec."""
    specs = []
    for token in text.split(","):
        token = token.strip()
        if not token:
            continue
        if specs and not token[0].isalpha():        # "1", "-0.01", ".5": a parameter, not a name
            specs[-1] += "," + token
        else:
            specs.append(token)
    if not specs:
        raise ValueError("no activation given")
    return [parse_act(s) for s in specs]


def act_choices():
    return ", ".join(sorted(REGISTRY) + sorted(ALIASES)) + " (parameters: name:p1,p2,...)"


# ------------------------------------------------------------------------------------------ the GLU
# Fused Triton kernels for sqs/gensilu run on CUDA tensors when triton imports; use_kernel=False
# (the scripts' --no-kernels flag) runs the formulas above instead. FUSED_CALLS counts the calls
# that did run a fused kernel, so a script can print that its fused path actually ran.
FUSED_CALLS = {"sqs": 0, "gensilu": 0}


def _fused(name, function, x, use_kernel):
    """kernel_<name>.<function> (counted in FUSED_CALLS) when it should run: x on CUDA, triton
    importable (not macOS), the module has it (kernel_sqs has only sqs_glu); else None."""
    if not (use_kernel and x.is_cuda and name in FUSED_CALLS):
        return None
    try:
        module = importlib.import_module("kernel_" + name)
    except ImportError:
        return None
    if not module.HAVE_TRITON or not hasattr(module, function):
        return None
    FUSED_CALLS[name] += 1
    return getattr(module, function)


def glu(gate, value, act, use_kernel=True):
    """act(gate) * value, gate = W_g x, value = W_v x [GLU]; on CUDA one fused kernel for sqs and
    gensilu (use_kernel=False: the plain formula)."""
    kernel = _fused(act.name, act.name + "_glu", gate, use_kernel)
    if kernel is None:
        return act.fn(gate, **act.params) * value
    return kernel(gate, value, **act.params)
