"""
mlp.py -- how linear is an MLP, really?  Blog "MLP 2": effective linearity (R^2) of the MLPs in
residual students of a frozen SiLU teacher, and the generalized SiLU.

    python mlp.py                   # 8 students x 1000 full-batch Adam steps -> out/mlp/
    python mlp.py --quick           # classroom size
    python mlp.py --train-size 0    # fresh Gaussian batches instead of one fixed training set

Source: Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
https://KindXiaoming.github.io/blog/2026/mlp-2/ ; its network is the Pre-LN residual MLP of
"Depth 1", https://KindXiaoming.github.io/blog/2026/depth-1/ .

A random residual SiLU network (the teacher) is frozen; students of the same shape with another
activation learn to imitate it by MSE. Each block's MLP is asked: how much of what you emit could an
affine map of what you received have emitted? That fraction is R^2 (r2()). The blog's claims: R^2
orders tanh > silu > relu > relu^2 > silu^2; lower R^2 goes with lower loss; generalized SiLUs (0,1)
and (1,1) reach "extremely low" loss (1e-13, float32's floor).

The setup read off the blog's figures (the text does not state it): gensilu with period T = 1 (its
shape panels: the linear branch of (b,b) passes through (5, 5-b)), and a FIXED training set trained
full batch with the training loss plotted (smooth curves down to 1e-13 = an exact fit of finitely
many points; fresh batches cannot show that). An exact fit of N points says nothing about
generalisation, so the held-out loss is printed beside it. Expect: (0,1) and (1,1) at ~1e-13, SiLU
near 1e-4, the blog's R^2 ordering, and lower R^2 with lower training loss.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

import activations

# -- Config: the blog's setup where its figures show it, a named choice where they do not -----------
CONFIG = dict(  # gensilu:left,right,period -- the blog's students (its two figures), period T = 1
    acts="tanh,relu,relu2,silu,silu2,gensilu:1,0,1,gensilu:0,1,1,gensilu:1,1,1",
    depth=10,               # blocks: the blog's R^2 curves are indexed 0..9
    width=32, expand=4,     # d and hidden = 4d (not stated)
    norm="pre", alpha=1.0,  # pre: h + alpha*MLP(LN(h)) as in "Depth 1"; post: LN(h + alpha*MLP(h)); none
    train_size=512,         # a fixed set of N inputs x ~ N(0, I), full batch; 0: fresh batches ...
    batch=512,              # ... of this size
    steps=1000, lr=1e-3,    # Adam; 1000 steps as in the blog; N and lr from the ablation in docs/mlp.md
    eval_every=10, eval_size=1024,   # R^2 and held-out loss every k steps on this many held-out inputs
    seeds=1, out="out/mlp", device="auto")
CHOICES = dict(norm=("pre", "post", "none"), device=("auto", "cpu", "cuda", "mps"))
QUICK = dict(width=16, steps=300, eval_every=20, eval_size=512, train_size=256)
TEACHER = "silu"
# Read off the blog's figures (approximate): final training loss, R^2 range over the 10 layers.
BLOG = [("tanh", "3e-4 (spiky)", "0.947-0.975"), ("relu", "1e-4 (noisy)", "0.74-0.77"),
        ("relu2", "4e-5", "0.56-0.62"), ("silu", "1.2e-4", "0.87-0.90"),
        ("silu2", "1e-6 (spiky)", "0.45-0.51"), ("gensilu:1,0,1", "1e-4..1e-6 (spiky)", "0.70-0.725"),
        ("gensilu:0,1,1", "1e-13", "0.68-0.735"), ("gensilu:1,1,1", "3e-14 plateau", "0.37-0.48")]
BLOG = [(activations.parse_act(s), loss, r2) for s, loss, r2 in BLOG]


def get_args(argv=None):
    p = argparse.ArgumentParser(prog="mlp.py", argument_default=argparse.SUPPRESS,
                                description="Effective linearity (R^2) of residual-MLP students.")
    p.error = lambda msg: p.exit(2, f"mlp.py: error: {msg}\n")   # one line, no usage dump
    for k, v in CONFIG.items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), choices=CHOICES.get(k),
                       help=(activations.act_choices() if k == "acts" else "") + f" (default {v})")
    for flag, help_ in (("--quick", f"classroom size: {QUICK}"), ("--no-plots", "skip the figures"),
                        ("--compare-naive", "also train the students one at a time, print the speed ratio")):
        p.add_argument(flag, action="store_true", default=False, help=help_)
    a = p.parse_args(argv)
    for k, v in (CONFIG | (QUICK if a.quick else {})).items():  # presets fill only what was not given
        setattr(a, k, getattr(a, k, v))
    for k in ("depth", "width", "expand", "batch", "steps", "eval_every", "eval_size", "seeds"):
        if getattr(a, k) <= 0:
            p.error(f"--{k.replace('_', '-')} must be a positive integer, got {getattr(a, k)}")
    if a.train_size < 0:
        p.error(f"--train-size must be a positive integer or 0 (fresh batches), got {a.train_size}")
    if not (a.lr > 0 and math.isfinite(a.lr)) or not math.isfinite(a.alpha):
        p.error(f"--lr must be a positive number and --alpha finite, got {a.lr} and {a.alpha}")
    if a.eval_size <= a.width + 1:
        p.error(f"--eval-size ({a.eval_size}) must exceed width+1 ({a.width + 1}) for the R^2 fit")
    try:
        a.act_list = activations.parse_acts(a.acts)
    except ValueError as e:
        p.error(str(e))
    there = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    a.device = next(d for d in ("cuda", "mps", "cpu") if there[d]) if a.device == "auto" else a.device
    if not there[a.device]:
        p.error(f"--device {a.device} is not available on this machine (try --device auto)")
    return a


def label(act):
    """'gensilu(1,1)' at period 1, 'gensilu(1,1,T=6.28)' at another period, other names as they are."""
    a, b, t = (act.params.get(k) for k in ("left", "right", "period"))
    return act.spec if act.name != "gensilu" else f"gensilu({a:g},{b:g}" + (t != 1) * f",T={t:.3g}" + ")"


# -- The measurement: effective linearity R^2 -------------------------------------------------------
# X (N x p): what enters FC1 on N held-out inputs; Y (N x q): what FC2 emits. Fit the best affine
# map Y ~ X B + 1 c^T: centring (Xc = X - mean, Yc = Y - mean) removes c, and B solves G B = C with
# G = Xc^T Xc, C = Xc^T Yc. The fit Xc B is orthogonal to the residual (Pythagoras), so per output
# column j, SS_tot_j = SS_fit_j + SS_res_j, with
#     SS_tot_j = ||Yc[:, j]||^2,   SS_fit_j = ||Xc B[:, j]||^2 = C[:, j]^T G^+ C[:, j].
# Pooled over the q columns:  R^2 = sum_j SS_fit_j / sum_j SS_tot_j  (the share of the output's
# variance an affine map reproduces); per coordinate (sklearn's `score`): mean_j SS_fit_j / SS_tot_j.
# R^2 = 1: on the data it sees, the MLP IS an affine map and could be one d x d linear layer;
# 1 - R^2 is the part of its output no affine map can produce -- the nonlinearity it uses.
# G is singular for Pre-LN inputs (every LN row sums to 0), hence the pseudo-inverse G^+ =
# V diag(1/lam) V^T over eigenvalues lam > 1e-10 lam_max. Guards: a constant output (SS_tot ~ 0,
# relative to ||Y||^2) is affine, R^2 = 1 rather than 0/0; non-finite X or Y (a diverged student)
# gives NaN without calling the solver (LAPACK can abort on NaN input).

def r2(x, y, rtol=1e-10, flat=1e-12):
    """x [..., N, p], y [..., N, q] -> [2, ...] float64: pooled R^2 and per-coordinate mean R^2."""
    finite = torch.isfinite(x.sum((-2, -1)) + y.sum((-2, -1)))[..., None, None]  # NaN/inf propagate
    x, y = torch.where(finite, x, 0.0).double(), torch.where(finite, y, 0.0).double()
    xc, yc = x - x.mean(-2, keepdim=True), y - y.mean(-2, keepdim=True)
    lam, v = torch.linalg.eigh(xc.mT @ xc)                          # G = V diag(lam) V^T
    keep = lam > rtol * lam[..., -1:].clamp_min(0)                  # lam ascending: lam_max last
    inv = torch.where(keep, 1 / torch.where(keep, lam, 1.0), 0.0)
    ss_fit = (inv[..., None] * (v.mT @ (xc.mT @ yc)).square()).sum(-2)  # [..., q]
    ss_tot, size = yc.square().sum(-2), y.square().sum(-2)          # [..., q]
    ratio = lambda f, t, s: torch.where(t <= flat * s, 1.0, f / torch.where(t <= flat * s, 1.0, t))
    pooled = ratio(ss_fit.sum(-1), ss_tot.sum(-1), size.sum(-1))
    per_coord = ratio(ss_fit, ss_tot, size).mean(-1)
    return torch.where(finite[..., 0, 0], torch.stack([pooled, per_coord]), float("nan"))


# -- Model: M residual MLPs at once, one leading "model" dimension on every weight ------------------
# Every weight is [M, ...] and every matmul a torch.bmm, so all students (x seeds) are one program;
# the sum of their losses has each model's own gradient, as they share no weights.

def init_blocks(n_models, depth, d, hidden, gen):
    """nn.Linear's default init U(+-1/sqrt(fan_in)) for weights and biases; LayerNorm gain 1, bias 0."""
    u = lambda fan_in, *shape: (torch.rand(n_models, *shape, generator=gen) * 2 - 1) / fan_in ** 0.5
    return [dict(w1=u(d, d, hidden), b1=u(d, 1, hidden), w2=u(hidden, hidden, d), b2=u(hidden, 1, d),
                 g=torch.ones(n_models, 1, d), b=torch.zeros(n_models, 1, d)) for _ in range(depth)]


def act_per_model(u, acts):
    """u [M, B, H]: models are grouped by activation (model m uses acts[m // (M / A)])."""
    return torch.cat([act(part) for act, part in zip(acts, u.chunk(len(acts)))])


def block(h, p, acts, norm, alpha):
    """One residual block, h <- h + alpha * FC2(sigma(FC1(LN(h)))) for Pre-LN, for all M models."""
    ln = lambda t: torch.nn.functional.layer_norm(t, t.shape[-1:]) * p["g"] + p["b"]  # per-model gain
    z = ln(h) if norm == "pre" else h                                 # [M, B, d]
    u = torch.baddbmm(p["b1"], z, p["w1"])                            # [M, B, d] @ [M, d, H] -> [M, B, H]
    o = torch.baddbmm(p["b2"], act_per_model(u, acts), p["w2"])       # [M, B, H] @ [M, H, d] -> [M, B, d]
    h = h + alpha * o
    return (ln(h) if norm == "post" else h), z, o


def forward(blocks, x, acts, norm, alpha):
    """x [M, B, d] -> (output [M, B, d], per block: what enters FC1 and what FC2 emits, [M, B, d])."""
    ins, outs = [], []
    for p in blocks:
        x, z, o = block(x, p, acts, norm, alpha)
        ins.append(z), outs.append(o)
    return x, ins, outs


# -- Training: every student of every seed in one loop ----------------------------------------------

def train(a, acts, log=print):
    """Train len(acts) x a.seeds students (model m = act m // seeds, seed m % seeds); return curves."""
    dev, S, A, d = a.device, a.seeds, len(acts), a.width
    make = lambda seed: init_blocks(1, a.depth, d, a.expand * d, torch.Generator().manual_seed(seed))
    cat = lambda nets, reps: [{k: torch.cat([n[l][k] for n in nets]).repeat(reps, 1, 1).to(dev)
                               for k in nets[0][l]} for l in range(a.depth)]
    teacher = cat([make(1000 + s) for s in range(S)], 1)              # one teacher per seed
    student = cat([make(2000 + s) for s in range(S)], A)              # seed s's init, once per act
    opt = torch.optim.Adam([t.requires_grad_() for p in student for t in p.values()], lr=a.lr)
    teacher_act = [activations.parse_act(TEACHER)]

    teach = torch.no_grad()(lambda x:                                 # [B, d] -> targets [M, B, d]
        forward(teacher, x.expand(S, *x.shape), teacher_act, a.norm, a.alpha)[0].repeat(A, 1, 1))
    gen = torch.Generator().manual_seed(0)                            # all training inputs
    x_fixed = torch.randn(a.train_size, d, generator=gen).to(dev)     # empty for --train-size 0
    y_fixed = teach(x_fixed)
    x_eval = torch.randn(a.eval_size, d, generator=torch.Generator().manual_seed(1)).to(dev)
    y_eval = teach(x_eval)
    students = lambda x: forward(student, x.expand(A * S, *x.shape), acts, a.norm, a.alpha)
    train_loss, evals, diverged = [], [], [None] * (A * S)
    t0, c0 = time.perf_counter(), time.process_time()  # wall time; CPU time (robust to a shared machine)
    for step in range(a.steps + 1):
        if step % a.eval_every == 0 or step == a.steps:
            with torch.no_grad():
                out, ins, outs = students(x_eval)                     # R^2 on held-out inputs
                fits = r2(torch.stack(ins, 1), torch.stack(outs, 1))  # [M, L, B, d] -> [M, L]
                evals.append((step, (out - y_eval).square().mean((1, 2)), *fits))
        # the fixed set (full batch), or a fresh batch; after the last step: loss at the final weights
        x = x_fixed if a.train_size else torch.randn(a.batch, d, generator=gen).to(dev)
        y = y_fixed if a.train_size else teach(x)
        with torch.set_grad_enabled(step < a.steps):
            loss = (students(x)[0] - y).square().mean((1, 2))         # [M]
        train_loss.append(loss.detach().cpu())
        for m, v in enumerate(train_loss[-1].tolist()):
            if not math.isfinite(v) and diverged[m] is None:     # its NaNs stay in its own slices
                diverged[m] = step
                log(f"  ! {label(acts[m // S])} (seed {m % S}) diverged at step {step}; others go on")
        if step < a.steps:
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()      # models share no weights: each gets exactly its own gradient
            opt.step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    steps, eval_loss, pooled, per_coord = zip(*evals)
    stack = lambda ts: torch.stack(ts).float().cpu()
    return dict(train_loss=torch.stack(train_loss), eval_steps=list(steps), eval_loss=stack(eval_loss),
                r2=stack(pooled), r2_coord=stack(per_coord), diverged=diverged, wall=wall, cpu=cpu)


# -- Compare with the source: table and verdicts ----------------------------------------------------

def summarize(a, acts, res):
    """One row per student: final losses (geometric mean over seeds that did not diverge), R^2."""
    rows, S = [], a.seeds
    for i, act in enumerate(acts):
        ok = [i * S + s for s in range(S) if res["diverged"][i * S + s] is None]
        gmean = lambda t: t[ok].log().mean().exp().item() if ok else float("nan")
        r, rc = res["r2"][-1, ok], res["r2_coord"][-1, ok]              # [seeds, L]
        blog = next((b for b in BLOG if (b[0].name, b[0].params) == (act.name, act.params)), (0, "", ""))
        rows.append(dict(student=label(act), spec=act.spec, diverged=S - len(ok),
                         train_loss=gmean(res["train_loss"][-1]), heldout_loss=gmean(res["eval_loss"][-1]),
                         r2=r.mean().item(), r2_min=r.amin(1).mean().item(), r2_max=r.amax(1).mean().item(),
                         r2_coord=rc.mean().item(), blog_loss=blog[1], blog_r2=blog[2]))
    return rows


def markdown(rows):
    out = ["| student | train loss | held-out loss | R² pooled: mean (layers min–max) | R² per coord. "
           "| blog loss | blog R² |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["student"] + (f" ({r['diverged']} diverged)" if r["diverged"] else "")
        out.append(f"| {name} | {r['train_loss']:.2e} | {r['heldout_loss']:.2e} | {r['r2']:.3f} "
                   f"({r['r2_min']:.3f}–{r['r2_max']:.3f}) | {r['r2_coord']:.3f} | {r['blog_loss']} "
                   f"| {r['blog_r2']} |")
    return "\n".join(out)


def spearman(u, v):
    """Rank correlation: the Pearson correlation of the ranks (no ties in measured floats)."""
    ranks = torch.tensor([u, v]).argsort(1).argsort(1).double()      # [2, n]
    return torch.corrcoef(ranks)[0, 1].item()


def verdicts(rows, acts):
    """The blog's three claims, each checked against this run's numbers and printed with them."""
    def find(name, **given):  # a student found by its activation's name and parameters
        return next((r for r, f in zip(rows, acts) if f.name == name and math.isfinite(r["r2"])
                     and all(f.params[k] == v for k, v in given.items())), None)
    out, order = [], [find(k) for k in ("tanh", "silu", "relu", "relu2", "silu2")]
    if all(order):
        held = sum(p["r2"] > q["r2"] for i, p in enumerate(order) for q in order[i + 1:])
        out.append(f"R² ordering tanh > silu > relu > relu2 > silu2: {held}/10 pairs in the blog's "
                   f"order ({'holds' if held == 10 else 'does not hold'}) -- "
                   + ", ".join(f"{r['student']} {r['r2']:.3f}" for r in order))
    silu, pair = find("silu"), [find("gensilu", left=0, right=1), find("gensilu", left=1, right=1)]
    if silu and all(pair):
        ratio = [silu["train_loss"] / max(r["train_loss"], 1e-300) for r in pair]
        out.append(f"gensilu (0,1) and (1,1) >= 1e4x below SiLU in training loss: "
                   f"{'holds' if min(ratio) >= 1e4 else 'does not hold'} -- " + ", ".join(
                       f"{r['student']} {r['train_loss']:.2e} ({q:.2g}x)" for r, q in zip(pair, ratio))
                   + f" vs silu {silu['train_loss']:.2e} (blog: 1e-13, 3e-14 vs 1.2e-4)")
    ok = [r for r in rows if math.isfinite(r["r2"]) and math.isfinite(r["train_loss"])]
    if len(ok) >= 3:
        rho, rho_out = (spearman([r["r2"] for r in ok], [r[k] for r in ok])
                        for k in ("train_loss", "heldout_loss"))
        out.append(f"lower R² goes with lower training loss: Spearman rank correlation {rho:+.2f} over "
                   f"{len(ok)} students ({'holds' if rho >= 0.5 else 'does not hold'} at >= +0.5; with "
                   f"the held-out loss {rho_out:+.2f}) -- R²/train/held-out " + ", ".join(
                       f"{r['student']} {r['r2']:.3f}/{r['train_loss']:.1e}/{r['heldout_loss']:.1e}"
                       for r in ok))
    return out


def compare_naive(a, res):
    """Train the same students one at a time (same inits, same data) and time them."""
    alone = [train(a, [act], log=lambda *_: None) for act in a.act_list]
    diff = max((r["train_loss"] - res["train_loss"][:, i * a.seeds:(i + 1) * a.seeds]).abs().max().item()
               for i, r in enumerate(alone))
    wall, cpu = (sum(r[k] for r in alone) for k in ("wall", "cpu"))
    print(f"one at a time: {wall:.1f} s wall, {cpu:.1f} s CPU; batched is {wall / res['wall']:.2f}x faster "
          f"(wall), {cpu / res['cpu']:.2f}x (CPU); largest loss difference, alone vs batched: {diff:.1e}")


# -- Figures (the blog's layout: loss on top, per-layer R^2 below, one column per student) ----------

def plot(a, acts, res, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, len(acts), figsize=(2.4 * len(acts), 4.8), squeeze=False)
    what = f"train (fixed set of {a.train_size})" if a.train_size else f"train (fresh {a.batch})"
    for i, act in enumerate(acts):
        m = slice(i * a.seeds, (i + 1) * a.seeds)
        ax[0, i].semilogy(res["train_loss"][:, m], lw=0.8, color="C0", label=what)
        ax[0, i].semilogy(res["eval_steps"], res["eval_loss"][:, m], "--", lw=0.8, color="gray",
                          label="held-out")
        for l, r in enumerate(res["r2"][:, m].nanmean(1).T):          # one curve per layer
            ax[1, i].plot(res["eval_steps"], r, lw=0.9, color=plt.cm.tab10(l % 10), label=str(l))
        ax[0, i].set_title(label(act), fontsize=9), ax[1, i].set_xlabel("training step")
    ax[0, 0].set_ylabel("loss (MSE)"), ax[1, 0].set_ylabel("R² (pooled) per layer")
    ax[0, 0].legend(fontsize=6), ax[1, -1].legend(fontsize=6, ncol=2, title="layer", title_fontsize=6)
    save(fig, out_dir, "curves.png")
    fig, ax = plt.subplots(1, 4, figsize=(12, 2.6))                  # the blog's shapes panel, T = 1
    xs = torch.linspace(-5, 5, 1001)
    for c in range(4):
        ax[c].plot(xs, activations.gensilu(xs, c, c, 1.0)), ax[c].set_title(f"gensilu ({c}, {c}), T = 1")
    save(fig, out_dir, "gensilu_shapes.png")
    plt.close("all")


def save(fig, out_dir, name):                                         # temp name + rename
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name + ".tmp.png"), dpi=80)
    os.replace(os.path.join(out_dir, name + ".tmp.png"), os.path.join(out_dir, name))


def main(argv=None):
    a = get_args(argv)
    try:                                                              # fail before training, not after
        os.makedirs(a.out, exist_ok=True)
        open(os.path.join(a.out, ".write_test"), "w").close()
        os.remove(os.path.join(a.out, ".write_test"))
    except OSError as e:
        sys.exit(f"mlp.py: error: output directory {a.out!r} is not writable ({e.strerror})")
    data = f"a fixed set of {a.train_size}, full batch" if a.train_size else f"fresh batches of {a.batch}"
    print(f"mlp.py: {len(a.act_list)} students x {a.seeds} seed(s) of a {TEACHER} teacher, d={a.width}, "
          f"hidden={a.expand * a.width}, L={a.depth}, {a.norm}-LN, Adam lr={a.lr:g}, {a.steps} steps "
          f"on {data}; R² every {a.eval_every} steps on {a.eval_size} held-out inputs; {a.device}")
    res = train(a, a.act_list)                                        # 1. all students at once
    rows = summarize(a, a.act_list, res)                              # 2. the table, blog beside
    lines = verdicts(rows, a.act_list)                                # 3. the blog's claims
    print("\n" + markdown(rows) + "\n\n" + "\n".join("verdict: " + v for v in lines))
    print(f"\ntraining, all students batched: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU")
    if a.compare_naive:                                               # 4. speed vs one at a time
        compare_naive(a, res)
    with open(os.path.join(a.out, "results.json.tmp"), "w") as f:    # 5. files (temp + rename)
        json.dump(dict(config={k: getattr(a, k) for k in CONFIG}, rows=rows, verdicts=lines,
                       **{k: v.tolist() if torch.is_tensor(v) else v for k, v in res.items()}), f)
    os.replace(os.path.join(a.out, "results.json.tmp"), os.path.join(a.out, "results.json"))
    if not a.no_plots:
        plot(a, a.act_list, res, a.out)
    print(f"wrote {a.out}/results.json" + ("" if a.no_plots else ", curves.png, gensilu_shapes.png"))


if __name__ == "__main__":
    main()
