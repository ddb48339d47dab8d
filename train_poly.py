"""
train_poly.py -- blog "MLP 1: Gating is good for polynomials" (Ziming Liu, 2026), end to end.
Source: https://KindXiaoming.github.io/blog/2026/mlp-1/ ; the gated unit: arXiv:2002.05202.

Fit y = x^n (n = 1..4) on a fixed training set of x ~ N(0, 1), full batch, with one hidden layer of
H units (scalar in, scalar out) in four variants per activation sigma, each read out as a.h + c:
    plain     h = sigma(w x + b)                     params 3H + 1
    squared   h = sigma(w x + b)^2                   params 3H + 1
    gated     h = sigma(w x + b) * (u x + d)         params 5H + 1
    integral  h = S(w x + b) with S' ~ sigma: relu -> relu2 (= 2 int relu), gelu -> igelu (= int gelu)
The blog: gated beats plain for every n >= 2; squared is as good or better. Its rough equivalence
sigma((w+e)x) - sigma((w-e)x) ~ 2e x sigma'(wx) (measured here as e -> 0) says a gate g acts like
the plain activation whose derivative is g: the "integral" variant tests that. Expect gated 6-90x
below plain at n >= 2, and relu2 ~ gated relu (the blog has relu2 ~9x lower at x^4). An exact identity
that tests the code, not the blog: u = w, d = b make a gated ReLU unit ReLU(z) z = ReLU(z)^2 (tests).

All models train at once: every weight has a leading "model" dimension, the loss is the SUM of the
models' own mean losses (so each model gets its own gradient), and torch.optim.Adam is elementwise:
in effect one Adam per model. A model that diverges turns NaN in its own rows only and is reported.
Run:  python train_poly.py [--quick] [--match-params]   # figures and table in out/poly/
"""
import argparse
import math
import os
import sys
import time

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import activations

matplotlib.use("Agg")            # figures go to files
import matplotlib.pyplot as plt  # noqa: E402

# ------------------------------------------------------------- config: the blog's setup, ours where it is silent
TARGETS = (1, 2, 3, 4)                        # y = x^n
VARIANTS = ("plain", "squared", "gated", "integral")
DEFAULTS = dict(acts="relu,silu,gelu",        # the blog's relu and silu; gelu for its integral, igelu
                variants=",".join(VARIANTS), seeds=3, steps=3000, out="out/poly", device="auto",  # the blog: 3000
                width=16, train_size=256, lr=3e-3,   # unstated: the width x N x lr ablation in docs/poly.md
                batch=256)                    # only with --train-size 0 (a fresh batch every step)
QUICK = dict(seeds=1, steps=1000)
EVALS, TAIL = 30, 3        # held-out loss at 30 points of a run; "final" = mean over the last 3 windows (10%)
NAIVE_STEPS = 100          # steps of the one-model-at-a-time loop that are timed, then extrapolated
# Final training loss at step 3000, read off the blog's figure (x: "1e-5..1e-4" taken as 3e-5).
BLOG = {("relu", "plain"): (3e-5, 5e-3, 3e-2, 3), ("relu", "squared"): (3e-5, 1e-5, 4e-4, 7e-3),
        ("relu", "gated"): (3e-5, 1e-5, 2.5e-3, 6e-2), ("silu", "plain"): (3e-6, 1.3e-3, 1.5e-3, 0.4),
        ("silu", "squared"): (1e-4, 5e-5, 2e-4, 3e-3), ("silu", "gated"): (3e-6, 4e-5, 1.5e-3, 8e-3)}
COLORS = dict(plain="tab:blue", squared="tab:orange", gated="tab:green", integral="tab:red")
LABELS = dict(plain="{}", squared="{}²", gated="gated {}", integral="plain ∫{}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="plain vs squared vs gated vs integrated-gate MLPs on y = x^n")
    add = lambda flag, help, **kw: p.add_argument(flag, default=None, help=help, **kw)  # noqa: E731
    add("--acts", f"activations (default {DEFAULTS['acts']}); " + activations.act_choices())
    add("--variants", f"subset of {','.join(VARIANTS)} (default all)")
    add("--seeds", f"seeds 0..N-1 (default {DEFAULTS['seeds']}, --quick {QUICK['seeds']})", type=int)
    add("--steps", f"Adam steps (default {DEFAULTS['steps']}, --quick {QUICK['steps']})", type=int)
    add("--width", f"hidden units H (default {DEFAULTS['width']})", type=int)
    add("--lr", f"Adam learning rate (default {DEFAULTS['lr']:g})", type=float)
    add("--train-size", f"training set size, full batch; 0: fresh batches (default {DEFAULTS['train_size']})", type=int)
    add("--batch", f"samples per step with --train-size 0 (default {DEFAULTS['batch']})", type=int)
    add("--out", f"output directory (default {DEFAULTS['out']})")
    add("--device", "auto (cuda > mps > cpu), cpu, cuda or mps", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--match-params", action="store_true", help="gated width H' with 5H'+1 closest to 3H+1")
    p.add_argument("--quick", action="store_true", help=f"classroom run: {QUICK}")
    a = p.parse_args(argv)
    a.command = " ".join(["python train_poly.py", *(sys.argv[1:] if argv is None else argv)])
    for k, v in (DEFAULTS | (QUICK if a.quick else {})).items():     # presets fill only flags not given
        setattr(a, k, v if getattr(a, k) is None else getattr(a, k))
    try:
        a.acts = list({x.spec: x for x in activations.parse_acts(a.acts)}.values())   # each once
    except ValueError as e:
        p.error(f"--acts: {e}")
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if not a.variants or set(a.variants) - set(VARIANTS):
        p.error(f"--variants: choose from {','.join(VARIANTS)}, got {','.join(a.variants) or '(none)'}")
    for k in ("seeds", "steps", "width", "batch", "lr"):
        if not 0 < getattr(a, k) < math.inf:                    # NaN fails this too
            p.error(f"--{k} must be a positive number, got {getattr(a, k)}")
    if a.train_size < 0:
        p.error(f"--train-size must be >= 0 (0: fresh batches), got {a.train_size}")
    ok = dict(cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available(), cpu=True)
    a.device = next(d for d in ok if ok[d]) if a.device == "auto" else a.device
    if not ok[a.device]:
        p.error(f"--device {a.device} is not available on this machine")
    try:                                                        # a bad --out fails now, not after training
        os.makedirs(a.out, exist_ok=True)
        os.remove(write_atomic(os.path.join(a.out, ".probe"), b""))
    except OSError as e:
        p.error(f"--out {a.out!r} is not writable: {e.strerror or e}")
    return a


def write_atomic(path, data):                                 # path.tmp, then rename: never a half-written file
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)
    return path


# ---------------------------------------------------------------------------------------------- the model
def n_params(variant, width):
    return (5 if variant == "gated" else 3) * width + 1


def init_params(variant, width, seed):
    """nn.Linear's default init, U(+-1/sqrt(fan_in)): w, b (fan_in 1), a, c (fan_in H), then u, d.
    Drawn in this order from the seed, so every variant of one seed starts from the same w, b, a, c."""
    g = torch.Generator().manual_seed(seed)
    U = lambda n, bound: (2 * torch.rand(n, generator=g) - 1) * bound  # noqa: E731
    p = dict(w=U(width, 1.0), b=U(width, 1.0), a=U(width, width ** -0.5), c=U(1, width ** -0.5))
    return p | (dict(u=U(width, 1.0), d=U(width, 1.0)) if variant == "gated" else {})


def forward(p, x, act, variant):
    """M models at once. p: weights with a leading model dimension, w, b, u, d, a: (M, H), c: (M, 1);
    x: (M, N), one row of inputs per model -> predictions (M, N). For "integral", act is S."""
    X = x[:, :, None]                                                      # (M, N, 1)
    z = torch.addcmul(p["b"][:, None, :], X, p["w"][:, None, :])           # (M, N, H)  w x + b
    if variant == "gated":
        value = torch.addcmul(p["d"][:, None, :], X, p["u"][:, None, :])   # (M, N, H)  u x + d
        h = activations.glu(z, value, act)                                 # sigma(z) * value
    else:
        h = act(z).square() if variant == "squared" else act(z)           # (M, N, H)
    return (h * p["a"][:, None, :]).sum(-1) + p["c"]                       # (M, N)   a.h + c


class Group:
    """All models of one (activation, variant): one model per (target n, seed), as rows."""

    def __init__(self, act, variant, width, models, device="cpu"):
        self.name, self.variant, self.width, self.models = act.spec, variant, width, models
        self.act = activations.parse_act(activations.INTEGRAL_OF[act.name]) if variant == "integral" else act
        self.n = torch.tensor([n for n, _ in models], dtype=torch.float32, device=device)[:, None]  # (M, 1)
        self.seed = torch.tensor([s for _, s in models], device=device)   # which row of the data each model sees
        per = [init_params(variant, width, s) for _, s in models]
        self.params = {k: torch.stack([q[k] for q in per]).to(device).requires_grad_() for k in per[0]}

    def losses(self, x, weights=None):
        """Each model's mean squared error against x^n. x: (M, N) -> (M,); weights (N,): quadrature."""
        err = F.mse_loss(forward(self.params, x, self.act, self.variant), x ** self.n, reduction="none")
        return err.mean(1) if weights is None else (err * weights).sum(1)      # (M,)


def training_data(seeds, size, batch, device):
    """data(t) -> (seeds, N): row s holds seed s's inputs at step t. size > 0: one fixed set of x ~ N(0, 1)
    per seed, trained full batch (the blog's smooth curves); size 0: a fresh batch every step."""
    gens = [torch.Generator().manual_seed(1000 + s) for s in range(seeds)]
    fixed = torch.stack([torch.randn(size, generator=g) for g in gens]).to(device) if size else None
    return lambda t: fixed if size else torch.stack([torch.randn(batch, generator=g) for g in gens]).to(device)


def train(groups, data, steps, lr, device, evals=EVALS, progress=True):
    """One torch.optim.Adam over every group's weights. Records each model's training loss at every
    step (before the update) and its held-out loss at `evals` evenly spaced steps (after it): the
    population loss E_{x~N(0,1)} (f(x) - x^n)^2 by quadrature on [-8, 8] (all but 1e-15 of the mass),
    free of sampling noise, which matters for x^4, whose error lives in the tails (x^8)."""
    opt = torch.optim.Adam([t for g in groups for t in g.params.values()], lr=lr, foreach=True)
    xq = torch.linspace(-8, 8, 801, device=device)                         # quadrature nodes, and weights
    wq, every = torch.softmax(-xq * xq / 2, 0), max(1, steps // evals)      # exp(-x^2/2), normalised to sum 1
    for g in groups:
        g.curve, g.test, g.every = torch.empty(steps, len(g.models)), torch.empty(steps // every, len(g.models)), every
    for t in tqdm(range(steps), f"{sum(len(g.models) for g in groups)} models", disable=None if progress else True):
        x = data(t)                                                     # (seeds, N)
        opt.zero_grad()
        total = 0.0
        for g in groups:
            loss = g.losses(x[g.seed])                                  # (M,): each model's own mean loss
            g.curve[t] = loss.detach().cpu()
            total = total + loss.sum()         # d total / d(model m's weights) = d loss_m / d(the same)
        total.backward()
        opt.step()
        if (t + 1) % every == 0:
            with torch.no_grad():
                for g in groups:
                    g.test[t // every] = g.losses(xq.expand(len(g.models), -1), wq).cpu()


def time_naive(groups, data, steps, lr, device):
    """The loop one writes first, one model and one Adam at a time: NAIVE_STEPS steps timed, extrapolated."""
    k, total = min(steps, NAIVE_STEPS), 0.0
    for g in groups:
        one, t0 = Group(activations.parse_act(g.name), g.variant, g.width, g.models[-1:], device), time.perf_counter()
        train([one], data, k, lr, device, evals=1, progress=False)
        total += (time.perf_counter() - t0) / k * steps * len(g.models)
    return total


def summarise(groups):
    """Per model: the mean of log10 loss over the last TAIL evaluation windows (train and held-out), as a
    loss; a model that ever went NaN/inf counts as +inf (never dropped). Per cell: medians over seeds."""
    models, cells = [], {}
    for g in groups:
        bad = ~g.curve.isfinite().all(0)
        tr, te = (torch.where(bad, math.inf, 10 ** c.log10().mean(0)) for c in (g.curve[-TAIL * g.every:], g.test[-TAIL:]))
        for i, (n, s) in enumerate(g.models):
            step = int(torch.nonzero(~g.curve[:, i].isfinite())[0]) + 1 if bad[i] else 0
            models.append(dict(act=g.name, variant=g.variant, n=n, seed=s, params=n_params(g.variant, g.width),
                               train=float(tr[i]), heldout=float(te[i]), diverged_step=step))
            cells.setdefault((g.name, g.variant, n), []).append(models[-1])
    med = lambda rs, k: float(np.median([r[k] for r in rs]))  # noqa: E731
    return models, {k: dict(train=med(rs, "train"), heldout=med(rs, "heldout"), params=rs[0]["params"],
                            diverged=sum(r["diverged_step"] > 0 for r in rs), seeds=len(rs)) for k, rs in cells.items()}


def table(summary):
    fmt = lambda v: f"{v:.1e}" if math.isfinite(v) else "diverged"  # noqa: E731
    lines = ["| model | params | " + " | ".join(f"x^{n}: train / held-out / blog" for n in TARGETS) + " |",
             "|---" * (len(TARGETS) + 2) + "|"]
    for act, v in dict.fromkeys(k[:2] for k in summary):
        cells, blog = [summary[(act, v, n)] for n in TARGETS], BLOG.get((act, v), ("–",) * 4)
        lines.append(f"| {LABELS[v].format(act)} | {cells[0]['params']} | " + " | ".join(
            f"{fmt(c['train'])} / {fmt(c['heldout'])} / {b}" +
            (f" ({c['diverged']}/{c['seeds']} diverged)" if c["diverged"] else "") for c, b in zip(cells, blog)) + " |")
    return "\n".join(lines)


def verdicts(summary):
    """The blog's claims at n = 2..4 from the medians of the final training loss; A/B > 1: B is better."""
    L = {k: v["train"] for k, v in summary.items()}
    r = lambda act, v1, v2: np.array([L[(act, v1, n)] / L[(act, v2, n)] for n in TARGETS[1:]])  # noqa: E731
    word = lambda ok: ["DOES NOT HOLD", f"PARTLY ({ok.sum()}/{ok.size})", "HOLDS"][ok.any() + 1 * ok.all()]  # noqa: E731
    nums = lambda q, f=".3g": ", ".join(format(x, f) for x in q)  # noqa: E731
    out = []
    for act in dict.fromkeys(k[0] for k in L):
        has = lambda *vs: all((act, v, 2) in L for v in vs)  # noqa: E731
        if has("plain", "gated"):
            q = r(act, "plain", "gated")
            out.append(f"{act}: gated beats plain at x^2..x^4: {word(q > 1)}; plain/gated = {nums(q)}")
        if has("squared", "gated"):
            q = r(act, "squared", "gated")
            out.append(f"{act}: squared within 3x of gated, or better: {word(q <= 3)}; squared/gated = {nums(q)}")
        if has("plain", "gated", "integral"):     # the share of the plain -> gated log-gap that plain S closes
            q = r(act, "integral", "gated")
            with np.errstate(all="ignore"):
                closed = np.log(r(act, "plain", "integral")) / np.log(r(act, "plain", "gated"))
            out.append(f"{act}: plain ∫{act} tracks gated {act} (within 3x): {word((q >= 1 / 3) & (q <= 3))}; "
                       f"∫/gated = {nums(q)}; share of the plain->gated log-gap closed = {nums(closed, '.0%')}")
        out += [f"{act}: order at x^{n}: " + " < ".join(f"{v} {L[(act, v, n)]:.1e}" for v in sorted(
            (v for a, v, m in L if a == act and m == n), key=lambda v: L[(act, v, n)])) for n in TARGETS[2:]]
    d = [abs(math.log10(L[k + (n,)] / b[n - 1])) for k, b in BLOG.items() for n in TARGETS if k + (n,) in L]
    same = [L[(a, "squared", n)] < L[(a, "gated", n)] < L[(a, "plain", n)] for a in ("relu", "silu") for n in (3, 4)
            if all((a, v, n) in L for v in ("squared", "gated", "plain"))]      # the blog's order in these cells
    if d:
        out.append(f"distance to the blog's read-off values: mean |log10(ours/blog)| = {np.mean(d):.2f} decades over "
                   f"{len(d)} cells; its order squared < gated < plain at x^3, x^4 in {sum(same)}/{len(same)} cells")
    return out


def taylor_gaps(eps=(0.3, 0.1, 0.03, 0.01, 0.003, 0.001), w=1.0, b=0.5):
    """The rough equivalence itself: gap(x) = |[s((w+e)x+b) - s((w-e)x+b)]/(2e) - x s'(wx+b)|, in
    float64 on a fine grid, averaged over x ~ N(0, 1). Smooth s: the e^2 terms of the two Taylor
    expansions cancel, so the gap is O(e^2). ReLU: exact unless the kink lies between (w-e)x+b and
    (w+e)x+b, i.e. |wx+b| < e|x|, where the error is O(|x|); that set has width O(e), so the mean is O(e)."""
    x = torch.linspace(-6, 6, 240001, dtype=torch.float64)
    px = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi) * (x[1] - x[0])
    out = {}
    for name in ("relu", "silu", "gelu"):
        s, z = activations.parse_act(name), (w * x + b).requires_grad_()
        ds = torch.autograd.grad(s(z).sum(), z)[0]                         # s'(wx + b)
        gap = [((s((w + e) * x + b) - s((w - e) * x + b)) / (2 * e) - x * ds).abs() for e in eps]
        mean = [float(gk @ px) for gk in gap]
        slope = np.polyfit(np.log(eps[-3:]), np.log(mean[-3:]), 1)[0]      # 2 for O(e^2), 1 for O(e)
        out[name] = dict(eps=list(eps), mean=mean, slope=slope, x=x, gap01=gap[1])
    return out


def plot_losses(groups, path):
    acts = list(dict.fromkeys(g.name for g in groups))
    fig, axes = plt.subplots(len(acts), 4, figsize=(13, 2.6 * len(acts)), squeeze=False, sharex=True)
    for g in groups:
        for j, n in enumerate(TARGETS):
            ax, idx = axes[acts.index(g.name)][j], [i for i, (m, _) in enumerate(g.models) if m == n]
            ax.plot(g.curve[:, idx].median(1).values, color=COLORS[g.variant], lw=0.9,
                    ls="--" if g.variant == "integral" else "-",
                    label=f"{LABELS[g.variant].format(g.name)} ({n_params(g.variant, g.width)})")
            ax.plot(np.arange(1, len(g.test) + 1) * g.every, g.test[:, idx].median(1).values, ":",
                    color=COLORS[g.variant])
            ax.set(yscale="log", title=f"x^{n}, {g.name}")
    [ax.legend(fontsize=6, loc="upper right") for ax in axes[:, 0]]
    fig.suptitle("training loss (solid; median over seeds) and held-out population loss (dotted)", fontsize=10)
    save(fig, path)


def plot_taylor(gaps, path):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, r in gaps.items():
        a1.loglog(r["eps"], r["mean"], "o-", label=f"{name} (slope {r['slope']:.2f})")
        a2.plot(r["x"], r["gap01"], label=name)
    a1.set(xlabel="ε", ylabel="E|FD − x σ'(wx+b)|", title="[σ((w+ε)x+b) − σ((w−ε)x+b)]/2ε vs x σ'(wx+b)")
    a2.set(xlabel="x", yscale="log", ylim=(1e-6, 1), xlim=(-3, 3), title="gap at ε = 0.1: ReLU exact (0) but at its kink")
    a1.legend()
    save(fig, path)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path + ".tmp", format="png", dpi=80)          # temp name + rename, as in write_atomic
    os.replace(path + ".tmp", path), plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    gated = max(1, round(3 * args.width / 5)) if args.match_params else args.width   # 5H'+1 closest to 3H+1
    widths = {v: gated if v == "gated" else args.width for v in VARIANTS}
    groups = [Group(a, v, widths[v], [(n, s) for n in TARGETS for s in range(args.seeds)], args.device)
              for a in args.acts for v in args.variants if v != "integral" or a.name in activations.INTEGRAL_OF]
    data = training_data(args.seeds, args.train_size, args.batch, args.device)
    print(f"train_poly: {sum(len(g.models) for g in groups)} models, {args.steps} Adam steps, lr {args.lr:g}, widths "
          f"{widths}, {f'a fixed set of {args.train_size}' if args.train_size else 'fresh batches'}, {args.device}")
    t0 = time.perf_counter()
    train(groups, data, args.steps, args.lr, args.device)
    batched = time.perf_counter() - t0
    naive = time_naive(groups, data, args.steps, args.lr, args.device)
    models, summary = summarise(groups)
    speed = (f"wall time: all models at once {batched:.1f} s; one model at a time {naive:.1f} s ({NAIVE_STEPS} "
             f"steps per group timed, extrapolated): speed-up {naive / batched:.1f}x")
    return write_outputs(args, groups, models, summary, taylor_gaps(), speed)


def write_outputs(args, groups, models, summary, gaps, speed):
    """Two figures, a markdown report and one CSV row per model, each to a temp name, then renamed."""
    paths = [os.path.join(args.out, "poly_" + f) for f in ("losses.png", "equivalence.png", "table.md", "models.csv")]
    plot_losses(groups, paths[0])
    plot_taylor(gaps, paths[1])
    eps = gaps["relu"]["eps"]
    taylor = ["| σ | " + " | ".join(f"ε={e:g}" for e in eps) + " | slope |", "|---" * (len(eps) + 2) + "|"] + [
        f"| {k} | " + " | ".join(f"{m:.1e}" for m in r["mean"]) + f" | {r['slope']:.2f} |" for k, r in gaps.items()]
    report = "\n\n".join([
        f"`{args.command}`", table(summary),
        f"train = mean of log10 training loss over the last {TAIL} of {EVALS} evaluation windows; held-out = "
        f"the same for the population loss; medians over {args.seeds} seed(s); blog = read off the blog's figure.",
        "\n".join(f"- {v}" for v in verdicts(summary)),
        "Taylor gap E|[σ((w+ε)x+b) − σ((w−ε)x+b)]/2ε − x σ'(wx+b)|, x ~ N(0,1), w=1, b=0.5:",
        "\n".join(taylor), speed])
    write_atomic(paths[2], report.strip().encode() + b"\n")
    rows = [models[0].keys()] + [m.values() for m in models]                  # the header, then one row per model
    write_atomic(paths[3], "".join(",".join(map(str, r)) + "\n" for r in rows).encode())
    print("\n" + report.strip() + "\n\n" + "\n".join(f"{'figure' if p[-3:] == 'png' else 'table'}: {p}" for p in paths))
    return dict(models=models, summary=summary, verdicts=verdicts(summary), gaps=gaps, paths=paths)


if __name__ == "__main__":
    main()
