"""
train_poly.py -- blog "MLP 1: Gating is good for polynomials", reproduced end to end.

Source: Ziming Liu, "MLP 1 -- Gating is good for polynomials" (2026),
        https://KindXiaoming.github.io/blog/2026/mlp-1/
Also:   the course card's advice to compare MLP variants at matched parameters (--match-params),
        and Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202 (the gated unit).

The experiment. Fit y = x^n (n = 1..4, x ~ N(0, 1)) with a one-hidden-layer MLP, scalar in, scalar
out, in three variants built from one registry activation sigma (relu and silu by default):

    plain    f(x) = sum_k a_k sigma(w_k x + b_k)                     + c     params 3H + 1
    squared  f(x) = sum_k a_k sigma(w_k x + b_k)^2                   + c     params 3H + 1
    gated    f(x) = sum_k a_k sigma(w_k x + b_k) * (u_k x + d_k)     + c     params 5H + 1

The blog's claims: gated beats plain for every n >= 2, for both activations, and the squared
activation is competitive with gating, sometimes better. A third figure tests the blog's "rough
equivalence" where it is exact: a gated ReLU unit whose value weights are *tied* to its gate weights
(u = w, d = b) computes ReLU(z) * z = ReLU(z)^2 -- it is a ReLU^2 unit (activations.py derives it).
Started from the same init on the same data, the tied gated-ReLU net and the ReLU^2 net must follow
the same loss curve to the last bit; the untied gated net (its own u, d) is free to drift away.
(Untied but *initialised* with u = w, d = b it would stay tied forever: at z_g = z_v = z both
projections get the same gradient g * ReLU(z), so Adam moves them identically -- tests check it.)

Choices the blog does not state -- ours, all flags:
  width   H = 64 hidden units (--width). With --match-params every variant gets the width whose
          parameter count is closest to the plain net's 3H + 1 (gated: round(3H/5) units).
  init    PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases:
          w, b, u, d ~ U(-1, 1) (fan_in 1), a, c ~ U(-1/sqrt(H), 1/sqrt(H)).
          Same seed => same w, b, a, c for every activation, variant and target (u, d are drawn
          after them), and the same data stream, so the variants differ only in what they compute.
  optim   Adam, lr 1e-2 (--lr), betas (0.9, 0.999), eps 1e-8, constant lr, 3000 steps (--steps).
          Why 1e-2: with 1e-3 the x^3 and x^4 fits are still far from converged after 3000 steps
          (x^4 losses ~1-10, the blog's are 3e-3..3); 1e-2 lands nearer the blog's levels and
          orderings. It also makes the constant-lr Adam noise floor visible on x (curves wiggle).
  data    a fresh batch of 256 x ~ N(0, 1) every step (--batch), so the training loss is an
          unbiased estimate of the population loss; the curves show it. The table's "final loss"
          is the MSE on a fixed held-out set of 8192 x ~ N(0, 1) after the last step (and
          "initial loss" the same before the first step; about E[x^2n] = 1, 3, 15, 105).

Speed. The 2 x 3 x 4 x 3 = 72 (+12 tied) models are tiny, so a Python loop over them is all
overhead (about 5 minutes here). Instead every model is one row of a parameter matrix theta
(models x params): one forward computes all models of one (activation, variant) group at once
with a leading "model" dimension, one backward of the *summed* per-model losses gives every model
exactly its own gradient (the models share no parameters), and Adam -- elementwise -- updates all
rows as if each had its own optimizer. A model whose loss turns NaN/inf -- or blows up to more
than 1e4 x its first-step loss, which Adam's bounded steps reach long before float32 overflows
(try --lr 1e3) -- is frozen (its Adam update masked out) and reported as "diverged"; the others
go on.

Run:  python train_poly.py              # full sweep, 84 models x 3000 steps: ~25 s on 2 CPU cores
      python train_poly.py --quick      # classroom size (2 seeds x 600 steps): ~6 s
      python train_poly.py --acts relu,silu,gelu --match-params --seeds 5
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

T_START = time.perf_counter()    # the printed wall time includes importing torch and matplotlib

import numpy as np
import torch
from tqdm import tqdm

import activations

# ------------------------------------------------------------------------------------------------
# Config: defaults are visible here and in --help
# ------------------------------------------------------------------------------------------------
VARIANTS = ("plain", "squared", "gated")
TARGETS = (1, 2, 3, 4)           # y = x^n
DEFAULTS = dict(acts="relu,silu", variants="plain,squared,gated", seeds=3, steps=3000, width=64,
                lr=1e-2, batch=256, out="out/poly", device="auto")
QUICK = dict(seeds=2, steps=600)  # --quick: classroom size, a few seconds
TEST_SIZE, TEST_SEED = 8192, 12345
COLORS = {"plain": "tab:blue", "squared": "tab:orange", "gated": "tab:green"}  # the blog's colours
COMPETITIVE = 3.0                # "squared is competitive": median within 3x of gated's (or better)
DIVERGED = 1e4                   # a model whose batch loss is NaN/inf or > 1e4 x its first-step loss


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Fit y = x^n (n=1..4) with plain, squared and gated one-hidden-layer MLPs "
                    "(blog 'MLP 1: Gating is good for polynomials').",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--acts", default=DEFAULTS["acts"],
                   help="comma-separated registry activations; choices: " + activations.act_choices())
    p.add_argument("--variants", default=DEFAULTS["variants"],
                   help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--seeds", type=int, default=None, help=f"number of seeds 0..N-1 "
                   f"(default {DEFAULTS['seeds']}, --quick {QUICK['seeds']})")
    p.add_argument("--steps", type=int, default=None, help=f"Adam steps "
                   f"(default {DEFAULTS['steps']}, --quick {QUICK['steps']})")
    p.add_argument("--width", type=int, default=DEFAULTS["width"],
                   help="hidden units H (of the plain net when --match-params)")
    p.add_argument("--match-params", action="store_true",
                   help="size each variant's width to the plain net's parameter count 3H+1")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate")
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="fresh samples per step")
    p.add_argument("--out", default=DEFAULTS["out"], help="output directory")
    p.add_argument("--device", default=DEFAULTS["device"], choices=("auto", "cpu", "cuda", "mps"),
                   help="auto: cuda > mps > cpu")
    p.add_argument("--quick", action="store_true",
                   help=f"classroom run: {QUICK['seeds']} seeds x {QUICK['steps']} steps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 1 is fastest for these small tensors (see main())")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    a = p.parse_args(argv)
    base = QUICK if a.quick else DEFAULTS
    a.seeds = base["seeds"] if a.seeds is None else a.seeds
    a.steps = base["steps"] if a.steps is None else a.steps
    try:
        a.acts = activations.parse_acts(a.acts)
    except ValueError as e:
        p.error(f"--acts: {e}")
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in a.variants if v not in VARIANTS]
    if bad or not a.variants:
        p.error(f"--variants: unknown variant {', '.join(map(repr, bad)) or '(none given)'}; "
                f"choose from: {', '.join(VARIANTS)}")
    for name in ("seeds", "steps", "width", "batch", "threads"):
        if getattr(a, name) <= 0:
            p.error(f"--{name} must be a positive integer, got {getattr(a, name)}")
    if not (a.lr > 0 and math.isfinite(a.lr)):
        p.error(f"--lr must be a positive number, got {a.lr}")
    try:
        a.device = pick_device(a.device)
    except RuntimeError as e:
        p.error(str(e))
    try:
        check_writable(a.out)
    except OSError as e:
        p.error(f"--out {a.out!r} is not writable: {e.strerror or e}")
    return a


def pick_device(name):
    """'auto' -> cuda > mps > cpu; an explicit device that is not there is an error."""
    ok = dict(cpu=True, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if ok[d])
    if not ok[name]:
        raise RuntimeError(f"--device {name} is not available on this machine")
    return name


def check_writable(out):
    """Create `out` and write a probe file there *before* training, so a bad --out fails fast."""
    os.makedirs(out, exist_ok=True)
    probe = os.path.join(out, ".write_probe.tmp")
    with open(probe, "w") as f:
        f.write("ok")
    os.remove(probe)


def write_atomic(path, text):
    """Never leave a half-written file: write path.tmp, then rename over path."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------------------
# The model: one row of theta per model
# ------------------------------------------------------------------------------------------------
# theta[m] = [w | u | b | d | a | c]: first-layer weights, first-layer biases, output weights a (H),
# output bias c. u, d (the value projection, H each) exist only for "gated"; "tied" is the
# gated-ReLU net with u = w, d = b, so it has the plain net's parameters.

def n_params(variant, width):
    return (5 if variant == "gated" else 3) * width + 1


def matched_widths(variants, width):
    """Width per variant whose parameter count is closest to the plain net's 3*width + 1
    (ties -> the smaller width). E.g. width 64: plain/squared 64 (193 params), gated 38 (191)."""
    target = n_params("plain", width)
    return {v: min(range(1, 4 * width), key=lambda h: (abs(n_params(v, h) - target), h))
            for v in variants}


def init_theta(variant, width, seed):
    """nn.Linear's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn in a fixed order from
    the seed, so w, b, a, c are the same for every variant of the same width and seed; the gated
    value u, d is drawn last."""
    g = torch.Generator().manual_seed(seed)
    def uniform(size, bound):
        return (torch.rand(size, generator=g) * 2 - 1) * bound
    w, b = uniform(width, 1.0), uniform(width, 1.0)                      # fan_in 1
    a, c = uniform(width, width ** -0.5), uniform(1, width ** -0.5)      # fan_in H
    if variant == "gated":
        u, d = uniform(width, 1.0), uniform(width, 1.0)
        return torch.cat([w, u, b, d, a, c])
    return torch.cat([w, b, a, c])


def predict(group, theta, x):
    """All models of one group at once. x: (M, B) inputs -> (M, B) outputs."""
    H, act, variant = group["width"], group["act"], group["variant"]
    K = 2 * H if variant == "gated" else H           # first-layer outputs: gate (and value)

    def linear(w, b):
        # z[m, i, k] = x[m, i] * w[m, k] + b[m, k]: a batched (B x 1) @ (1 x H) matmul per model.
        return torch.baddbmm(b[:, None, :], x[:, :, None], w[:, None, :])          # (M, B, H)
    z = linear(theta[:, :H], theta[:, K:K + H])      # gate pre-activation w x + b
    if variant == "plain":
        h = act(z)
    elif variant == "squared":
        h = act(z).square()
    elif variant == "gated":
        # value u x + d as its own (M, B, H) tensor: slicing one (M, B, 2H) tensor instead would
        # make autograd zero-fill and copy a full-size gradient per slice (twice as slow here).
        h = activations.glu(z, linear(theta[:, H:K], theta[:, K + H:2 * K]), act)
    else:  # "tied": value = gate pre-activation, so for ReLU h = ReLU(z) * z = ReLU(z)^2 exactly
        h = activations.glu(z, z, act)
    a, c = theta[:, 2 * K:2 * K + H], theta[:, 2 * K + H]
    return torch.bmm(h, a[:, :, None])[..., 0] + c[:, None]                     # (M, B)


def make_groups(acts, variants, widths, seeds, tied_width):
    """One group per (activation, variant); its models are every (target n, seed) pair. Adds the
    groups the tied-ReLU equivalence needs (ReLU^2, gated ReLU, tied gated ReLU) if missing."""
    specs = [(act, v, widths[v], True) for act in acts for v in variants]
    relu = activations.parse_act("relu")
    have = {(act.spec, v) for act, v, _, _ in specs}
    for v, width in (("squared", tied_width), ("gated", tied_width), ("tied", tied_width)):
        if ("relu", v) not in have:
            specs.append((relu, v, width, False))   # extra: shown only in the equivalence figure
    groups = []
    for act, v, width, main in specs:
        models = [(n, s) for n in TARGETS for s in range(seeds)]
        groups.append(dict(act=act, variant=v, width=width, main=main, models=models,
                           n=torch.tensor([n for n, _ in models], dtype=torch.float32),
                           seed=torch.tensor([s for _, s in models]),
                           theta=torch.stack([init_theta(v, width, s) for _, s in models])))
    return groups


# ------------------------------------------------------------------------------------------------
# Training: all groups, one loop, one backward, one (masked, per-model) Adam
# ------------------------------------------------------------------------------------------------

def mse(group, theta, x):
    """Per-model mean squared error against y = x^n. x: (M, B) -> (M,)."""
    return (predict(group, theta, x) - x ** group["n"][:, None]).square().mean(1)


def test_inputs(device):
    """One fixed held-out set of x ~ N(0, 1), the same for every model."""
    return torch.randn(TEST_SIZE, generator=torch.Generator().manual_seed(TEST_SEED)).to(device)


def test_losses(groups, device):
    """Per-model MSE on the held-out set."""
    xt = test_inputs(device)
    with torch.no_grad():
        return [mse(g, g["theta"], xt.expand(len(g["models"]), -1)).cpu() for g in groups]


def train(groups, steps, batch, lr, n_seeds, device, progress=True):
    """Adam on every model at once. Returns per-group loss curves (steps, M) (NaN once diverged)
    and the step at which each model diverged (-1 = never): its batch loss was NaN/inf or more
    than DIVERGED x its first-step loss.

    Why one Adam is many: Adam's update m/(sqrt(v)+eps) is elementwise, so stacking independent
    models as rows changes nothing for any one of them; the loss is a *sum* of per-model losses,
    so d(total)/d(theta[m]) = d(loss_m)/d(theta[m]). A diverged model is frozen by masking its
    update with torch.where (not by multiplying: 0 * NaN is NaN)."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for g in groups:
        g["theta"] = g["theta"].to(device).requires_grad_(True)
        g["n"], g["seed"] = g["n"].to(device), g["seed"].to(device)
        g["m"], g["v"] = torch.zeros_like(g["theta"]), torch.zeros_like(g["theta"])
        g["alive"] = torch.ones(len(g["models"]), dtype=torch.bool, device=device)
        g["curve"] = torch.empty(steps, len(g["models"]), device=device)
        g["died"] = torch.full((len(g["models"]),), -1, device=device)
    # one data stream per seed, shared by every model with that seed
    streams = [torch.Generator().manual_seed(1000 + s) for s in range(n_seeds)]
    bar = tqdm(range(1, steps + 1), desc=f"training {sum(len(g['models']) for g in groups)} models",
               disable=not progress, mininterval=0.5, file=sys.stderr)
    for t in bar:
        xs = torch.stack([torch.randn(batch, generator=s) for s in streams]).to(device)  # (S, B)
        total = 0.0
        for g in groups:
            loss = mse(g, g["theta"], xs.repeat(len(TARGETS), 1))  # models are ordered (n, seed)
            if t == 1:
                g["first"] = loss.detach()
            ok = torch.isfinite(loss) & (loss <= DIVERGED * g["first"])   # NaN compares False
            g["died"] = torch.where(g["alive"] & ~ok, t, g["died"])
            g["alive"] &= ok
            g["curve"][t - 1] = torch.where(g["alive"], loss.detach(), math.nan)
            total = total + torch.where(g["alive"], loss, 0.0).sum()
        grads = torch.autograd.grad(total, [g["theta"] for g in groups])
        with torch.no_grad():
            for g, grad in zip(groups, grads):
                g["m"].mul_(beta1).add_(grad, alpha=1 - beta1)
                g["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = lr * (g["m"] / (1 - beta1 ** t)) / ((g["v"] / (1 - beta2 ** t)).sqrt() + eps)
                g["theta"].copy_(torch.where(g["alive"][:, None], g["theta"] - step, g["theta"]))
    for g in groups:
        g["theta"] = g["theta"].detach()
        g["curve"], g["died"] = g["curve"].cpu(), g["died"].cpu()


# ------------------------------------------------------------------------------------------------
# Tables and verdicts (from the numbers, never hard-coded)
# ------------------------------------------------------------------------------------------------

def label(act, variant):
    return {"plain": act, "squared": f"{act}²", "gated": f"gated {act}",
            "tied": f"tied gated {act}"}[variant]


def summarise(groups, init, final):
    """One row per (act, variant, n): median/min/max of the final loss over the seeds that did
    not diverge, with the diverged count; plus one row per model for the per-seed CSV."""
    rows, per_seed = [], []
    for g, l0, l1 in zip(groups, init, final):
        for n in TARGETS:
            idx = [i for i, (nn, _) in enumerate(g["models"]) if nn == n]
            ok = [i for i in idx if g["died"][i] < 0 and math.isfinite(l1[i])]
            vals = sorted(float(l1[i]) for i in ok)
            rows.append(dict(act=g["act"].spec, variant=g["variant"], n=n, main=g["main"],
                             width=g["width"], params=n_params(g["variant"], g["width"]) if
                             g["variant"] != "tied" else n_params("plain", g["width"]),
                             median=float(np.median(vals)) if vals else math.nan,
                             min=vals[0] if vals else math.nan, max=vals[-1] if vals else math.nan,
                             seeds=len(idx), diverged=len(idx) - len(ok),
                             initial_median=float(np.median([float(l0[i]) for i in idx]))))
            for i in idx:
                per_seed.append(dict(act=g["act"].spec, variant=g["variant"], n=n,
                                     seed=g["models"][i][1], width=g["width"],
                                     initial=float(l0[i]), final=float(l1[i]),
                                     diverged=bool(g["died"][i] >= 0 or not math.isfinite(l1[i])),
                                     diverged_step=int(g["died"][i])))
    return rows, per_seed


def cell(r):
    if r["diverged"] == r["seeds"]:
        return "diverged"
    s = f"{r['median']:.1e}" if r["seeds"] == 1 else \
        f"{r['median']:.1e} [{r['min']:.1e}–{r['max']:.1e}]"
    return s + (f" ({r['diverged']}/{r['seeds']} diverged)" if r["diverged"] else "")


def markdown_table(rows, acts, variants):
    find = {(r["act"], r["variant"], r["n"]): r for r in rows}
    cols = [(a.spec, v) for a in acts for v in variants]
    head = "| target | " + " | ".join(label(a, v) for a, v in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for n in TARGETS:
        lines.append(f"| x^{n} | " + " | ".join(cell(find[(a, v, n)]) for a, v in cols) + " |")
    lines.append("| params | " + " | ".join(str(find[(a, v, 1)]["params"]) for a, v in cols) + " |")
    return "\n".join(lines)


def verdicts(rows, per_seed, acts, variants):
    """The blog's two claims, per activation, judged on medians over seeds for n >= 2 (a diverged
    median counts as +inf). The details add how many seeds agree, pairing the runs of one seed
    (same w, b, a, c init, same data), so a median win inside the seed spread shows as e.g. 2/3.
    Claim 1: gated beats plain (lower median) for every n >= 2.
    Claim 2: squared is competitive (median <= COMPETITIVE x gated's) or better, for every n >= 2."""
    find = {(r["act"], r["variant"], r["n"]): r["median"] for r in rows}
    med = lambda a, v, n: find[(a, v, n)] if math.isfinite(find[(a, v, n)]) else math.inf
    loss = {(r["act"], r["variant"], r["n"], r["seed"]):
            math.inf if r["diverged"] else r["final"] for r in per_seed}
    seeds = sorted({r["seed"] for r in per_seed})

    def paired(a, v1, v2, n):  # "k/S seeds": in how many seeds v1 ends below v2
        return f"{sum(loss[(a, v1, n, s)] < loss[(a, v2, n, s)] for s in seeds)}/{len(seeds)} seeds"

    def ratio(a, v1, v2, n):   # median of v1 / median of v2
        r1, r2 = med(a, v1, n), med(a, v2, n)
        return f"{r1 / r2:.3g}" if math.isfinite(r1) and math.isfinite(r2) else "n/a (diverged)"
    out, ns = [], TARGETS[1:]
    for a in (act.spec for act in acts):
        if {"plain", "gated"} <= set(variants):
            wins = [n for n in ns if med(a, "gated", n) < med(a, "plain", n)]
            detail = "; ".join(f"x^{n}: plain/gated = {ratio(a, 'plain', 'gated', n)}, gated lower "
                               f"in {paired(a, 'gated', 'plain', n)}" for n in ns)
            out.append(dict(act=a, claim="gated beats plain for n >= 2", holds=len(wins) == len(ns),
                            verdict=_word(len(wins), len(ns)), detail=detail))
        if {"squared", "gated"} <= set(variants):
            comp = [n for n in ns if med(a, "squared", n) < math.inf and
                    med(a, "squared", n) <= COMPETITIVE * med(a, "gated", n)]
            better = [n for n in ns if med(a, "squared", n) < med(a, "gated", n)]
            detail = "; ".join(f"x^{n}: squared/gated = {ratio(a, 'squared', 'gated', n)}, squared "
                               f"lower in {paired(a, 'squared', 'gated', n)}" for n in ns) + \
                f" (median better at n = {', '.join(map(str, better)) or 'none'})"
            out.append(dict(act=a, claim=f"squared competitive (<= {COMPETITIVE:g}x gated) or better"
                            " for n >= 2", holds=len(comp) == len(ns),
                            verdict=_word(len(comp), len(ns)), detail=detail))
    return out


def _word(k, of):
    return "HOLDS" if k == of else ("DOES NOT HOLD" if k == 0 else f"PARTLY ({k}/{of} targets)")


def equivalence(groups, device):
    """Tied gated ReLU vs ReLU^2 and untied gated ReLU vs ReLU^2 (same w, b, a, c init, same data),
    per target n (medians over seeds): are the tied loss curves bit-identical, the largest gap
    between the two trained functions on the test inputs, and how far (in decades) the untied
    net's smoothed loss curve strays from ReLU^2's during training."""
    by = {g["variant"]: g for g in groups if g["act"].spec == "relu"}
    sq, tied, gated = by["squared"], by["tied"], by["gated"]
    xt = test_inputs(device)
    with torch.no_grad():
        f_sq, f_tied = (predict(g, g["theta"], xt.expand(len(g["models"]), -1)).cpu()
                        for g in (sq, tied))
    rows = []
    for n in TARGETS:
        idx = [i for i, (nn, _) in enumerate(sq["models"]) if nn == n]
        c_tied, c_sq = tied["curve"][:, idx], sq["curve"][:, idx]
        both_nan = c_tied.isnan() & c_sq.isnan()      # frozen at the same step: the same, too
        rel = torch.where(both_nan, 0.0, (c_tied - c_sq).abs() / c_sq).nan_to_num(math.inf)
        with warnings.catch_warnings(), np.errstate(all="ignore"):   # all-NaN if all diverged
            warnings.simplefilter("ignore", RuntimeWarning)
            med = lambda g: float(np.nanmedian(g["final"][idx].numpy()))
            drift = np.log10(curve_band(gated["curve"], idx)[0] / curve_band(sq["curve"], idx)[0])
            rows.append(dict(n=n, relu2=med(sq), tied=med(tied), untied=med(gated),
                             tied_identical=bool(((c_tied == c_sq) | both_nan).all()),
                             tied_gap=float(rel.max()),
                             tied_fn_gap=float((f_tied[idx] - f_sq[idx]).abs().max()),
                             untied_ratio=med(gated) / med(sq),
                             untied_drift=float(np.nanmax(np.abs(drift))),
                             untied_width=gated["width"]))
    return rows


def equivalence_markdown(rows, width):
    lines = [f"| target | ReLU² (H={width}) | tied gated ReLU | tied vs ReLU² loss curves | "
             f"max abs(f_tied − f_ReLU²) | untied gated ReLU (H={rows[0]['untied_width']}) | "
             "untied / ReLU² final | largest drift of untied from ReLU² (decades) |",
             "|---" * 8 + "|"]
    for r in rows:
        same = "bit-identical" if r["tied_identical"] else f"max rel. gap {r['tied_gap']:.1e}"
        f = lambda v, fmt: format(v, fmt) if math.isfinite(v) else "diverged"
        lines.append(f"| x^{r['n']} | {f(r['relu2'], '.1e')} | {f(r['tied'], '.1e')} | {same} | "
                     f"{r['tied_fn_gap']:.1e} | {f(r['untied'], '.1e')} | "
                     f"{f(r['untied_ratio'], '.2g')} | {r['untied_drift']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def smooth(c, w):
    """Trailing geometric moving average over w steps (mean of log-loss): tames Adam's step-to-step
    noise on a log axis without shifting the level. c: (steps, k)."""
    if w <= 1:
        return c
    cs = np.cumsum(np.vstack([np.zeros((1, c.shape[1])), np.log(c)]), 0)
    end = np.arange(1, len(c) + 1)
    k = np.minimum(end, w)                       # shorter window over the first w - 1 steps
    return np.exp((cs[end] - cs[end - k]) / k[:, None])


def curve_band(curve, idx):
    """Smoothed median and min/max over seeds, per step (NaN steps of diverged models ignored)."""
    c = smooth(curve[:, idx].double().numpy(), max(1, len(curve) // 100))
    with warnings.catch_warnings():   # all-NaN steps (every seed diverged) are left as NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(c, 1), np.nanmin(c, 1), np.nanmax(c, 1)


def plot_losses(groups, acts, variants, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(acts), len(TARGETS), figsize=(3.2 * len(TARGETS), 2.6 * len(acts)),
                             squeeze=False, sharex=True)
    by = {(g["act"].spec, g["variant"]): g for g in groups if g["main"]}
    for i, act in enumerate(acts):
        for j, n in enumerate(TARGETS):
            ax = axes[i][j]
            for v in variants:
                g = by[(act.spec, v)]
                idx = [k for k, (nn, _) in enumerate(g["models"]) if nn == n]
                med, lo, hi = curve_band(g["curve"], idx)
                steps = np.arange(1, len(med) + 1)
                ax.plot(steps, med, color=COLORS[v], lw=0.8,
                        label=f"{label(act.spec, v)} (H={g['width']}, {n_params(v, g['width'])} params)")
                ax.fill_between(steps, lo, hi, color=COLORS[v], alpha=0.2, lw=0)
            ax.set_yscale("log")
            ax.set_title(f"{act.spec}: y = x^{n}", fontsize=9)
            if j == 0:
                ax.set_ylabel("MSE (train batch)")
                ax.legend(fontsize=7, loc="lower left")
            if i == len(acts) - 1:
                ax.set_xlabel("step")
    fig.suptitle("plain vs squared vs gated MLPs fitting x^n (median over seeds, band = min–max, "
                 f"{max(1, len(g['curve']) // 100)}-step moving geometric mean)",
                 fontsize=10)
    _save(fig, path)


def plot_equivalence(groups, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    by = {g["variant"]: g for g in groups if g["act"].spec == "relu"}
    fig, axes = plt.subplots(2, len(TARGETS), figsize=(3.2 * len(TARGETS), 5), sharex=True,
                             squeeze=False)
    styles = (("squared", "relu²", COLORS["squared"], "-", 2.5),
              ("tied", "tied gated relu", "black", "--", 0.9),
              ("gated", "untied gated relu", COLORS["gated"], "-", 0.8))
    for j, n in enumerate(TARGETS):
        idx = [k for k, (nn, _) in enumerate(by["squared"]["models"]) if nn == n]
        steps = np.arange(1, by["squared"]["curve"].shape[0] + 1)
        med = {v: curve_band(by[v]["curve"], idx)[0] for v, *_ in styles}
        for v, name, col, ls, lw in styles:
            axes[0][j].plot(steps, med[v], ls, color=col, lw=lw, label=name)
            with np.errstate(all="ignore"):
                axes[1][j].plot(steps, np.log10(med[v] / med["squared"]), ls, color=col, lw=lw)
        axes[0][j].set_yscale("log")
        axes[0][j].set_title(f"y = x^{n}", fontsize=9)
        axes[1][j].axhline(0, color="gray", lw=0.5)
        axes[1][j].set_xlabel("step")
    axes[0][0].set_ylabel("MSE (median over seeds)")
    axes[1][0].set_ylabel("log10(loss / loss of relu²)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("ReLU(z)·z = ReLU(z)²: tied gated ReLU and ReLU² coincide; untied drifts",
                 fontsize=10)
    _save(fig, path)


def _save(fig, path):
    """Fixed margins (in inches) instead of tight_layout, which costs ~1 s of tick measuring on
    these log axes -- a tenth of the --quick run."""
    import matplotlib.pyplot as plt
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.15 / w, bottom=0.5 / h, top=1 - 0.5 / h,
                        wspace=0.3, hspace=0.3)
    fig.savefig(path + ".tmp", format="png", dpi=80)    # ~1000 px wide, < 200 KB
    os.replace(path + ".tmp", path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    t0 = T_START if argv is None else time.perf_counter()   # called from a test: time this call
    # One thread: each op here touches < 1 MB, so splitting it over threads costs more in
    # synchronisation than it gains (measured on this 2-core box: 2 threads ran the training
    # loop ~5x slower when the other core was busy). Several runs can then share the machine.
    torch.set_num_threads(args.threads)
    widths = matched_widths(VARIANTS, args.width) if args.match_params else \
        {v: args.width for v in VARIANTS}
    groups = make_groups(args.acts, args.variants, widths, args.seeds, widths["squared"])
    n_models = sum(len(g["models"]) for g in groups)
    print(f"train_poly: {len(args.acts)} acts x {len(args.variants)} variants x {len(TARGETS)} "
          f"targets x {args.seeds} seeds (+ tied/equivalence models) = {n_models} models, "
          f"{args.steps} steps, batch {args.batch}, lr {args.lr:g}, device {args.device}")
    if args.match_params:
        target = n_params("plain", args.width)
        print("matched widths: " + ", ".join(
            f"{v} H={widths[v]} ({n_params(v, widths[v])} params, residual "
            f"{n_params(v, widths[v]) - target:+d})" for v in args.variants))
    init = test_losses(groups, args.device)
    train(groups, args.steps, args.batch, args.lr, args.seeds, args.device,
          progress=not args.no_progress)
    final = test_losses(groups, args.device)
    for g, l in zip(groups, final):   # a model that was frozen on divergence has no final loss
        l[g["died"] >= 0] = math.nan
        g["final"] = l

    rows, per_seed = summarise(groups, init, final)
    main_rows = [r for r in rows if r["main"]]
    table = markdown_table(main_rows, args.acts, args.variants)
    claims = verdicts(main_rows, per_seed, args.acts, args.variants)
    eq = equivalence(groups, args.device)
    eq_table = equivalence_markdown(eq, widths["squared"])

    out = args.out
    paths = {k: os.path.join(out, f) for k, f in dict(
        figure="poly_losses.png", equivalence="poly_equivalence.png", table_md="poly_table.md",
        table_csv="poly_table.csv", table_json="poly_table.json", seeds_csv="poly_seeds.csv").items()}
    plot_losses(groups, args.acts, args.variants, paths["figure"])
    plot_equivalence(groups, paths["equivalence"])
    wall = time.perf_counter() - t0
    cmd = "python train_poly.py " + " ".join(sys.argv[1:] if argv is None else argv)
    verdict_md = "\n".join(f"- **{c['act']}: {c['claim']}: {c['verdict']}** — {c['detail']}"
                           for c in claims)
    md = (f"Command: `{cmd.strip()}`\n\nFinal MSE on {TEST_SIZE} held-out x ~ N(0,1) after "
          f"{args.steps} steps, median [min–max] over {args.seeds} seeds:\n\n{table}\n\n"
          f"Verdicts:\n\n{verdict_md}\n\nTied-weight equivalence (ReLU(z)·z = ReLU(z)²):\n\n"
          f"{eq_table}\n\nWall time: {wall:.1f} s\n")
    write_atomic(paths["table_md"], md)
    cols = ["act", "variant", "n", "width", "params", "median", "min", "max", "seeds", "diverged",
            "initial_median"]
    write_atomic(paths["table_csv"], ",".join(cols) + "\n" + "".join(
        ",".join(str(r[c]) for c in cols) + "\n" for r in main_rows))
    scols = list(per_seed[0])
    write_atomic(paths["seeds_csv"], ",".join(scols) + "\n" + "".join(
        ",".join(str(r[c]) for c in scols) + "\n" for r in per_seed))
    config = dict(acts=[a.spec for a in args.acts], variants=args.variants, seeds=args.seeds,
                  steps=args.steps, width=args.width, widths=widths, match_params=args.match_params,
                  lr=args.lr, batch=args.batch, device=args.device, test_size=TEST_SIZE,
                  torch=torch.__version__)
    write_atomic(paths["table_json"], json.dumps(dict(
        command=cmd.strip(), config=config, summary=rows, per_seed=per_seed, verdicts=claims,
        equivalence=eq, wall_time_s=wall), indent=1, allow_nan=True))

    print(f"\nFinal MSE (median [min–max] over {args.seeds} seeds), {args.steps} steps:\n")
    print(table)
    print("\nVerdicts:")
    for c in claims:
        print(f"  {c['act']}: {c['claim']}: {c['verdict']}\n      {c['detail']}")
    print("\nTied-weight equivalence, ReLU(z)*z = ReLU(z)^2:\n")
    print(eq_table)
    n_div = sum(r["diverged"] for r in per_seed)
    if n_div:
        print(f"\n{n_div} model(s) diverged (loss NaN/inf or > {DIVERGED:g} x its first step's) "
              "and were frozen; see poly_seeds.csv")
    print(f"\nwall time: {wall:.1f} s")
    print(f"figure: {paths['figure']}\nfigure: {paths['equivalence']}\n"
          f"table:  {paths['table_md']}\ntable:  {paths['table_csv']}\ntable:  {paths['table_json']}")
    return dict(rows=rows, per_seed=per_seed, verdicts=claims, equivalence=eq, paths=paths)


if __name__ == "__main__":
    main()
