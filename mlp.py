"""
mlp.py -- how linear is an MLP, really?  Blog "MLP 2": the effective linearity (R^2) of the MLPs in
residual students of a frozen SiLU teacher, the generalized SiLU, and (new) sine students.

    python mlp.py                    # 8 students + 10 sine students, 1000 full-batch Adam steps
    python mlp.py --quick            # classroom size
    python mlp.py --sine-ks none     # the blog's 8 students only

Source: Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
https://KindXiaoming.github.io/blog/2026/mlp-2/ ; its network is the Pre-LN residual MLP of
"Depth 1", https://KindXiaoming.github.io/blog/2026/depth-1/ .

A random residual SiLU network (the teacher) is frozen; students of the same shape with another
activation learn to imitate it by MSE. Each block's MLP is asked: how much of what you emit could an
affine map of what you received have emitted? That fraction is R^2 (r2()). The blog: "lower R²
values tend to correspond to lower losses"; generalized SiLU (0,1) or (1,1) "can achieve extremely
low loss"; its R^2 figure orders tanh > silu > relu > relu^2 > silu^2. And, not measured there:
"One could attempt to minimize R² further—for example, by using high-frequency sine
functions—but this would likely harm trainability." Students sin(kx) and x + sin(kx),
k = 1..16, measure it (new).

Our setup is a reconstruction read off the blog's figures: gensilu with period T = 1, and a FIXED
training set trained full batch with its training loss plotted (smooth curves down to 1e-13 = an
exact fit of finitely many points). The held-out loss is printed beside it. Expect: the blog's R^2
ordering; gensilu (0,1) and (1,1) near 1e-13 against SiLU near 1e-4; lower R^2 with lower training
loss but higher held-out loss; the sine students' R^2 falling as k rises to 8, their loss spiking,
and training failing at k = 16.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

import activations

# -- Config: the blog's setup where its figures show it, a named choice where they do not ----------
CONFIG = dict(
    # the blog's eight students (its two figures); gensilu:left,right,period at period T = 1
    acts="tanh,relu,relu2,silu,silu2,gensilu:1,0,1,gensilu:0,1,1,gensilu:1,1,1",
    sine_ks="1,2,4,8,16",   # new: students sin(kx) and x + sin(kx) at these k; "none": no sweep
    depth=10,               # blocks: the blog's R^2 curves are indexed 0..9
    width=32,               # d (not stated in the blog)
    expand=4,               # hidden = 4d (not stated)
    norm="pre",             # pre: h + alpha*MLP(LN(h)) as in "Depth 1"; post: LN(h + alpha*MLP(h))
    alpha=1.0,              # scale of the residual branch
    # N = 512 was chosen by looking at the result: at this size SiLU's final training loss matches
    # the blog's (the N = 256 / 1024 runs are in docs/mlp.md). 0: a fresh batch every step instead.
    train_size=512,
    batch=512,              # size of the fresh batches (only with train_size 0)
    steps=1000,             # full-batch Adam steps, as in the blog
    lr=1e-3,                # Adam's default, not tuned
    eval_every=10,          # R^2 and the held-out loss every this many steps ...
    eval_size=1024,         # ... on this many held-out inputs
    seeds=1,                # seed s: teacher init 1000 + s, student init 2000 + s
    out="out/mlp",
    device="auto",
)
CHOICES = dict(norm=("pre", "post", "none"), device=("auto", "cpu", "cuda", "mps"))
QUICK = dict(width=16, steps=300, eval_every=20, eval_size=512, train_size=256, sine_ks="1,4,16")
TEACHER = "silu"
# Read off the blog's figures (approximate): final training loss, R^2 range over the 10 layers.
BLOG = [
    ("tanh", "3e-4 (spiky)", "0.947-0.975"),
    ("relu", "1e-4 (noisy)", "0.74-0.77"),
    ("relu2", "4e-5", "0.56-0.62"),
    ("silu", "1.2e-4", "0.87-0.90"),
    ("silu2", "1e-6 (spiky)", "0.45-0.51"),
    ("gensilu:1,0,1", "1e-4..1e-6 (spiky)", "0.70-0.725"),
    ("gensilu:0,1,1", "1e-13", "0.68-0.735"),
    ("gensilu:1,1,1", "3e-14 plateau", "0.37-0.48"),
]
# Trainability of a student (our definitions, printed with the sweep's verdict):
SPIKE = 2.0       # a spike: the training loss rises above SPIKE x its lowest value so far ...
FLOOR = 1e-10     # ... while above float32's floor region (jitter near 1e-13 is not a spike)
FALL = 100.0      # trainable: no seed diverged and the training loss fell >= FALL x from step 0


# -- The measurement: effective linearity R^2 ----------------------------------------------------
# X (N x p): what enters FC1 on N held-out inputs; Y (N x q): what FC2 emits. Fit the best affine
# map Y ~ X B + 1 c^T: centring (Xc = X - mean, Yc = Y - mean) removes c, and B solves G B = C with
# G = Xc^T Xc, C = Xc^T Yc. The fit Xc B is orthogonal to the residual (Pythagoras), so per output
# column j, SS_tot_j = SS_fit_j + SS_res_j, with
#     SS_tot_j = ||Yc[:, j]||^2,   SS_fit_j = ||Xc B[:, j]||^2 = C[:, j]^T G^+ C[:, j].
# Pooled over the q columns:  R^2 = sum_j SS_fit_j / sum_j SS_tot_j  (the share of the output's
# variance an affine map reproduces); per coordinate (sklearn's `score`): mean_j SS_fit_j/SS_tot_j.
# R^2 = 1: on the data it sees, the MLP IS an affine map and could be one d x d linear layer;
# 1 - R^2 is the part of its output no affine map can produce -- the nonlinearity it uses.
# G is singular for Pre-LN inputs. LN(h) = g * n + b with n's rows summing to 0, so the centred
# rows satisfy sum_j Xc_j / g_j = 0: a null vector 1/g (only with unit gain do the rows themselves
# sum to 0). Hence the pseudo-inverse G^+ = V diag(1/lam) V^T over eigenvalues lam > 1e-10 lam_max.
# Guards: a constant output (SS_tot ~ 0, relative to ||Y||^2) is affine, R^2 = 1 rather than 0/0;
# non-finite X or Y (a diverged student) gives NaN without calling the solver (LAPACK can abort on
# NaN input).

def safe_ratio(fit, tot, size, flat):
    """fit / tot, and 1 where tot is ~0 relative to size (a constant output is affine)."""
    constant = tot <= flat * size
    return torch.where(constant, 1.0, fit / torch.where(constant, 1.0, tot))


def r2(x, y, rtol=1e-10, flat=1e-12):
    """x [..., N, p], y [..., N, q] -> [2, ...] float64: pooled R^2 and per-coordinate mean R^2."""
    finite = torch.isfinite(x.sum((-2, -1)) + y.sum((-2, -1)))     # [...]; NaN and inf propagate
    x = torch.where(finite[..., None, None], x, 0.0).double()
    y = torch.where(finite[..., None, None], y, 0.0).double()
    xc = x - x.mean(-2, keepdim=True)
    yc = y - y.mean(-2, keepdim=True)
    lam, v = torch.linalg.eigh(xc.mT @ xc)                          # G = V diag(lam) V^T
    keep = lam > rtol * lam[..., -1:].clamp_min(0)                  # lam ascending: lam_max last
    inv = torch.where(keep, 1 / torch.where(keep, lam, 1.0), 0.0)
    projected = v.mT @ (xc.mT @ yc)                                 # V^T C, [..., p, q]
    ss_fit = (inv[..., None] * projected.square()).sum(-2)          # [..., q]
    ss_tot = yc.square().sum(-2)                                    # [..., q]
    size = y.square().sum(-2)                                       # [..., q]
    pooled = safe_ratio(ss_fit.sum(-1), ss_tot.sum(-1), size.sum(-1), flat)
    per_coord = safe_ratio(ss_fit, ss_tot, size, flat).mean(-1)
    both = torch.stack([pooled, per_coord])
    return torch.where(finite, both, float("nan"))


# -- Model: M residual MLPs at once, one leading "model" dimension on every weight ---------------
# Every weight is [M, ...] and every matmul a torch.baddbmm, so all students (x seeds) are one
# program; the sum of their losses has each model's own gradient, as they share no weights.

def uniform(n_models, fan_in, shape, gen):
    """U(-1/sqrt(fan_in), +1/sqrt(fan_in)), nn.Linear's default init, for n_models models."""
    return (torch.rand(n_models, *shape, generator=gen) * 2 - 1) / fan_in ** 0.5


def init_blocks(n_models, depth, d, hidden, gen):
    """Per block: FC1 (w1 [M, d, H], b1), FC2 (w2 [M, H, d], b2), LayerNorm gain g = 1, bias 0."""
    blocks = []
    for _ in range(depth):
        blocks.append(dict(
            w1=uniform(n_models, d, (d, hidden), gen),
            b1=uniform(n_models, d, (1, hidden), gen),
            w2=uniform(n_models, hidden, (hidden, d), gen),
            b2=uniform(n_models, hidden, (1, d), gen),
            g=torch.ones(n_models, 1, d),
            b=torch.zeros(n_models, 1, d)))
    return blocks


def layer_norm(h, p):
    """LayerNorm over the last dimension, with each model's own gain and bias."""
    return torch.nn.functional.layer_norm(h, h.shape[-1:]) * p["g"] + p["b"]


def act_per_model(u, acts, use_kernel):
    """u [M, B, H]; models are grouped by activation: model m uses acts[m // (M / len(acts))]."""
    outs = []
    for act, part in zip(acts, u.chunk(len(acts))):
        outs.append(act(part, use_kernel=use_kernel))
    return torch.cat(outs)


def block(h, p, acts, norm, alpha, use_kernel=True):
    """One residual block for all M models: (new h, what enters FC1, what FC2 emits)."""
    if norm == "pre":
        z = layer_norm(h, p)
    else:
        z = h
    u = torch.baddbmm(p["b1"], z, p["w1"])      # [M, B, d] @ [M, d, H] + [M, 1, H] -> [M, B, H]
    s = act_per_model(u, acts, use_kernel)
    o = torch.baddbmm(p["b2"], s, p["w2"])      # [M, B, H] @ [M, H, d] + [M, 1, d] -> [M, B, d]
    h = h + alpha * o
    if norm == "post":
        h = layer_norm(h, p)
    return h, z, o


def forward(blocks, x, acts, norm, alpha, use_kernel=True):
    """x [M, B, d] -> (output [M, B, d], per block: what enters FC1 and what FC2 emits)."""
    ins = []
    outs = []
    for p in blocks:
        x, z, o = block(x, p, acts, norm, alpha, use_kernel)
        ins.append(z)
        outs.append(o)
    return x, ins, outs


# -- Training: every student of every seed in one loop -------------------------------------------

def stack_inits(a, first_seed, copies):
    """One init per seed (generator first_seed + s), the whole set repeated `copies` times along
    the model dimension, so that model m holds seed m % a.seeds."""
    per_seed = []
    for s in range(a.seeds):
        gen = torch.Generator().manual_seed(first_seed + s)
        per_seed.append(init_blocks(1, a.depth, a.width, a.expand * a.width, gen))
    blocks = []
    for layer in range(a.depth):
        p = {}
        for key in per_seed[0][layer]:
            one_each = torch.cat([net[layer][key] for net in per_seed])        # [seeds, ...]
            p[key] = one_each.repeat(copies, 1, 1).to(a.device)
        blocks.append(p)
    return blocks


def teacher_targets(a, teacher, x, copies):
    """x [B, d] -> each seed's teacher output, repeated per activation: [copies*seeds, B, d]."""
    silu = [activations.parse_act(TEACHER)]
    with torch.no_grad():
        out = forward(teacher, x.expand(a.seeds, *x.shape), silu, a.norm, a.alpha,
                      use_kernel=not a.no_kernels)[0]
    return out.repeat(copies, 1, 1)


def run_students(a, student, acts, x):
    """x [B, d] -> forward() of every student on the same inputs."""
    xs = x.expand(len(acts) * a.seeds, *x.shape)
    return forward(student, xs, acts, a.norm, a.alpha, use_kernel=not a.no_kernels)


def evaluate(a, student, acts, x_eval, y_eval):
    """Held-out loss [M]; pooled and per-coordinate R^2 of every block's MLP, [M, L] each."""
    with torch.no_grad():
        out, ins, outs = run_students(a, student, acts, x_eval)
        loss = (out - y_eval).square().mean((1, 2))
        pooled, per_coord = r2(torch.stack(ins, 1), torch.stack(outs, 1))  # [M, L, B, d] -> [M, L]
    return loss, pooled, per_coord


def note_divergence(losses, step, diverged, acts, seeds, log):
    """Record the first step at which a model's loss is not finite; its NaNs stay in its slices."""
    for m, value in enumerate(losses.tolist()):
        if diverged[m] is None and not math.isfinite(value):
            diverged[m] = step
            log(f"  ! {label(acts[m // seeds])} (seed {m % seeds}) diverged at step {step}; "
                f"the others go on")


def train(a, acts, log=print):
    """Train len(acts) x a.seeds students at once (model m: acts[m // seeds], seed m % seeds).
    Returns the training loss at every step, the held-out loss and R^2 every eval_every steps,
    the step at which each model diverged (None if it did not), and the wall and CPU time."""
    teacher = stack_inits(a, 1000, copies=1)                # one teacher per seed
    student = stack_inits(a, 2000, copies=len(acts))        # seed s's init, once per activation
    weights = []
    for p in student:
        for t in p.values():
            weights.append(t.requires_grad_())
    opt = torch.optim.Adam(weights, lr=a.lr)
    gen = torch.Generator().manual_seed(0)                  # every training input
    x_fixed = torch.randn(a.train_size, a.width, generator=gen).to(a.device)  # empty for N = 0
    y_fixed = teacher_targets(a, teacher, x_fixed, len(acts))
    eval_gen = torch.Generator().manual_seed(1)
    x_eval = torch.randn(a.eval_size, a.width, generator=eval_gen).to(a.device)
    y_eval = teacher_targets(a, teacher, x_eval, len(acts))
    train_loss = []
    evals = []
    diverged = [None] * (len(acts) * a.seeds)
    t0 = time.perf_counter()
    c0 = time.process_time()          # CPU time: less sensitive to other jobs on the machine
    for step in range(a.steps + 1):
        if step % a.eval_every == 0 or step == a.steps:
            evals.append(evaluate(a, student, acts, x_eval, y_eval))
        if a.train_size > 0:          # the fixed set, full batch
            x, y = x_fixed, y_fixed
        else:                         # a fresh batch
            x = torch.randn(a.batch, a.width, generator=gen).to(a.device)
            y = teacher_targets(a, teacher, x, len(acts))
        last = step == a.steps        # after the last update: only the loss at the final weights
        with torch.set_grad_enabled(not last):
            out = run_students(a, student, acts, x)[0]
            loss = (out - y).square().mean((1, 2))          # [M]
        train_loss.append(loss.detach().cpu())
        note_divergence(train_loss[-1], step, diverged, acts, a.seeds, log)
        if not last:
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()     # no shared weights: each model gets exactly its own gradient
            opt.step()
    eval_steps = list(range(0, a.steps, a.eval_every)) + [a.steps]
    columns = list(zip(*evals))       # (held-out losses, pooled R^2s, per-coordinate R^2s)
    return dict(train_loss=torch.stack(train_loss),
                eval_steps=eval_steps,
                eval_loss=torch.stack(columns[0]).float().cpu(),
                r2=torch.stack(columns[1]).float().cpu(),
                r2_coord=torch.stack(columns[2]).float().cpu(),
                diverged=diverged,
                wall=time.perf_counter() - t0,
                cpu=time.process_time() - c0)


# -- Compare with the source: tables and verdicts ------------------------------------------------

def label(act):
    """'gensilu(1,1)' at period 1 ('gensilu(1,1,T=6.28)' otherwise), 'sin(4x)', 'x+sin(4x)'."""
    if act.name == "gensilu":
        text = f"gensilu({act.params['left']:g},{act.params['right']:g}"
        if act.params["period"] != 1:
            text += f",T={act.params['period']:.3g}"
        return text + ")"
    if act.name == "sin":
        return f"sin({act.params['k']:g}x)"
    if act.name == "xsin":
        return f"x+sin({act.params['k']:g}x)"
    return act.spec


def trainability(curve, target):
    """One model's training loss per step -> (spikes, first step with loss <= target or None).
    A spike starts when the loss rises above SPIKE x its lowest value so far (and above FLOOR)."""
    spikes = 0
    in_spike = False
    lowest = math.inf
    reached = None
    for step, value in enumerate(curve.tolist()):
        if not math.isfinite(value):
            break
        rising = value > SPIKE * lowest and value > FLOOR
        if rising and not in_spike:
            spikes += 1
        in_spike = rising
        lowest = min(lowest, value)
        if reached is None and value <= target:
            reached = step
    return spikes, reached


def geometric_mean(losses):
    if len(losses) == 0:
        return float("nan")
    return losses.double().log().mean().exp().item()


def summarize(a, acts, res):
    """One row per student: final losses (geometric mean over the seeds that did not diverge),
    final R^2 (mean over those seeds), and trainability against the first SiLU student's loss."""
    names = [act.name for act in acts]
    silu = names.index("silu") if "silu" in names else None
    blog = {}
    for spec, loss, r2_range in BLOG:
        blog[activations.parse_act(spec).spec] = (loss, r2_range)
    rows = []
    for i, act in enumerate(acts):
        models = range(i * a.seeds, (i + 1) * a.seeds)
        ok = [m for m in models if res["diverged"][m] is None]
        r = res["r2"][-1, ok]                                  # [seeds that did not diverge, L]
        spikes = 0
        reached = []
        for m in models:
            target = math.nan
            if silu is not None:
                target = res["train_loss"][-1, silu * a.seeds + m % a.seeds].item()
            count, step = trainability(res["train_loss"][:, m], target)
            spikes += count
            reached.append(step)
        first = res["train_loss"][0, ok]
        last = res["train_loss"][-1, ok]
        blog_loss, blog_r2 = blog.get(act.spec, ("", ""))
        rows.append(dict(student=label(act),
                         spec=act.spec,
                         diverged=a.seeds - len(ok),
                         train_loss=geometric_mean(last),
                         heldout_loss=geometric_mean(res["eval_loss"][-1, ok]),
                         fall=geometric_mean(first / last),
                         r2=r.mean().item(),
                         r2_min=r.amin(1).mean().item(),
                         r2_max=r.amax(1).mean().item(),
                         r2_coord=res["r2_coord"][-1, ok].mean().item(),
                         spikes=spikes,
                         reached=reached,
                         blog_loss=blog_loss,
                         blog_r2=blog_r2))
    return rows


def markdown(rows):
    out = ["| student | train loss | held-out loss | R² pooled: mean (layers min–max) "
           "| R² per coord. | blog loss | blog R² |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["student"]
        if r["diverged"]:
            name += f" ({r['diverged']} diverged)"
        out.append(f"| {name} | {r['train_loss']:.2e} | {r['heldout_loss']:.2e} | {r['r2']:.3f} "
                   f"({r['r2_min']:.3f}–{r['r2_max']:.3f}) | {r['r2_coord']:.3f} "
                   f"| {r['blog_loss']} | {r['blog_r2']} |")
    return "\n".join(out)


def ranks(values):
    """1-based ranks; tied values share the mean of their ranks: [5, 7, 7, 9] -> [1, 2.5, 2.5, 4]"""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            result[i] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(u, v):
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties: mean ranks)."""
    both = torch.tensor([ranks(u), ranks(v)], dtype=torch.float64)
    return torch.corrcoef(both)[0, 1].item()


def find_row(rows, acts, name, **params):
    """The row of the first finite student with this activation name and these parameters."""
    for row, act in zip(rows, acts):
        same = all(act.params.get(key) == value for key, value in params.items())
        if act.name == name and same and math.isfinite(row["r2"]):
            return row
    return None


def holds(ok):
    if ok:
        return "holds"
    return "does not hold"


def verdicts(rows, acts):
    """The blog's three claims, each checked against this run's numbers and printed with them."""
    out = []
    order = [find_row(rows, acts, name) for name in ("tanh", "silu", "relu", "relu2", "silu2")]
    if None not in order:
        in_order = 0
        for i, higher in enumerate(order):
            for lower in order[i + 1:]:
                if higher["r2"] > lower["r2"]:
                    in_order += 1
        values = ", ".join(f"{r['student']} {r['r2']:.3f}" for r in order)
        out.append(f"R² ordering tanh > silu > relu > relu2 > silu2: {in_order}/10 pairs in the "
                   f"blog's order ({holds(in_order == 10)}) -- {values}")
    silu = find_row(rows, acts, "silu")
    pair = [find_row(rows, acts, "gensilu", left=0, right=1, period=1),
            find_row(rows, acts, "gensilu", left=1, right=1, period=1)]
    if silu is not None and None not in pair:
        parts = []
        factors = []
        for r in pair:
            factors.append(silu["train_loss"] / max(r["train_loss"], 1e-300))
            parts.append(f"{r['student']} {r['train_loss']:.2e} ({factors[-1]:.2g}x)")
        out.append(f"gensilu (0,1) and (1,1) >= 1e4x below SiLU in training loss: "
                   f"{holds(min(factors) >= 1e4)} -- {', '.join(parts)} vs silu "
                   f"{silu['train_loss']:.2e} (blog: 1e-13, 3e-14 vs 1.2e-4)")
    ok = [r for r in rows if math.isfinite(r["r2"]) and math.isfinite(r["train_loss"])]
    if len(ok) >= 3:
        r2s = [r["r2"] for r in ok]
        rho = spearman(r2s, [r["train_loss"] for r in ok])
        rho_out = spearman(r2s, [r["heldout_loss"] for r in ok])
        values = ", ".join(f"{r['student']} {r['r2']:.3f}/{r['train_loss']:.1e}/"
                           f"{r['heldout_loss']:.1e}" for r in ok)
        out.append(f"lower R² goes with lower training loss: Spearman rank correlation {rho:+.2f} "
                   f"over {len(ok)} students ({holds(rho >= 0.5)} at >= +0.5; with the held-out "
                   f"loss {rho_out:+.2f}) -- R²/train/held-out {values}")
    return out


# -- New: the sine sweep, the blog's sentence on high-frequency sines measured -------------------

def sine_students(a):
    """sin:k and xsin:k for every k of --sine-ks, plus a SiLU reference if --acts has none."""
    sweep = []
    if a.ks and "silu" not in [act.name for act in a.act_list]:
        sweep.append(activations.parse_act("silu"))
    for family in ("sin", "xsin"):
        for k in a.ks:
            sweep.append(activations.parse_act(f"{family}:{k}"))
    return sweep


def steps_text(reached):
    """Median first step at which the seeds reached SiLU's loss, and how many seeds did."""
    hits = sorted(step for step in reached if step is not None)
    if not hits:
        return "never"
    text = f"{hits[len(hits) // 2]}"
    if len(hits) < len(reached):
        text += f" ({len(hits)}/{len(reached)} seeds)"
    return text


def sweep_markdown(rows):
    out = ["| student | R² pooled: mean (layers min–max) | train loss | held-out loss "
           "| diverged seeds | loss spikes | loss fell (step 0 ÷ final) "
           "| steps to SiLU's train loss |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['student']} | {r['r2']:.3f} ({r['r2_min']:.3f}–{r['r2_max']:.3f}) "
                   f"| {r['train_loss']:.2e} | {r['heldout_loss']:.2e} | {r['diverged']} "
                   f"| {r['spikes']} | {r['fall']:.2g}x | {steps_text(r['reached'])} |")
    return "\n".join(out)


def family_verdict(name, ks, rows):
    """'lower R² with higher frequency: ...; trainability lost beyond k = ...' for one family."""
    lower = 0
    for before, after in zip(rows, rows[1:]):
        if after["r2"] < before["r2"]:
            lower += 1
    r2s = ", ".join(f"{r['r2']:.3f}" for r in rows)
    trainable = []
    for r in rows:
        trainable.append(r["diverged"] == 0 and r["fall"] >= FALL)
    if all(trainable):
        lost = f"not lost up to k = {ks[-1]:g}"
    elif not trainable[0]:
        lost = f"lost already at k = {ks[0]:g}"
    else:
        kept = trainable.index(False)
        lost = f"lost beyond k = {ks[kept - 1]:g}"
    spiky = [f"{k:g}" for k, r in zip(ks, rows) if r["spikes"] > 0]
    if spiky:
        spikes = "loss spikes at k = " + ", ".join(spiky)
    else:
        spikes = "no loss spikes"
    if len(rows) < 2:
        falls = "not tested (one k)"
    else:
        falls = f"{holds(lower == len(rows) - 1)} (lower at {lower}/{len(rows) - 1} steps up in k)"
    k_text = ", ".join(f"{k:g}" for k in ks)
    return (f"{name}: lower R² with higher frequency: {falls}, R² {r2s} at k = {k_text}; "
            f"trainability {lost}; {spikes}")


def sweep_verdicts(a, rows, acts):
    """The definitions, then one verdict line per family (new, not a claim the blog measured)."""
    out = [f"new -- the blog: \"One could attempt to minimize R² further—for example, by "
           f"using high-frequency sine functions—but this would likely harm trainability.\" "
           f"Test: R² falls with k when it is lower at every step up in k; a student is trainable "
           f"when no seed diverged and its training loss fell >= {FALL:g}x from step 0; a spike: "
           f"the loss rises above {SPIKE:g}x its lowest value so far (above {FLOOR:g})"]
    for family, name in (("sin", "sin(kx)"), ("xsin", "x+sin(kx)")):
        picked = [r for r, act in zip(rows, acts) if act.name == family]
        out.append(family_verdict(name, a.ks, picked))
    sines = [r for r, act in zip(rows, acts) if act.name in ("sin", "xsin")]
    ok = [r for r in sines if math.isfinite(r["r2"]) and math.isfinite(r["train_loss"])]
    if len(ok) >= 3:
        r2s = [r["r2"] for r in ok]
        rho = spearman(r2s, [r["train_loss"] for r in ok])
        rho_out = spearman(r2s, [r["heldout_loss"] for r in ok])
        out.append(f"over the {len(ok)} sine students, Spearman(R², training loss) {rho:+.2f}, "
                   f"Spearman(R², held-out loss) {rho_out:+.2f}")
    return out


def compare_naive(a, acts, res):
    """Train the same students one activation at a time (same inits, same data) and time them."""
    wall = 0.0
    cpu = 0.0
    diff = 0.0
    for i, act in enumerate(acts):
        alone = train(a, [act], log=lambda message: None)   # divergence: already reported
        batched = res["train_loss"][:, i * a.seeds:(i + 1) * a.seeds]
        diff = max(diff, (alone["train_loss"] - batched).abs().max().item())
        wall += alone["wall"]
        cpu += alone["cpu"]
    print(f"one at a time: {wall:.1f} s wall, {cpu:.1f} s CPU; batched is "
          f"{wall / res['wall']:.2f}x faster (wall), {cpu / res['cpu']:.2f}x (CPU); "
          f"largest loss difference, alone vs batched: {diff:.1e}")


# -- Figures --------------------------------------------------------------------------------------

def plot_curves(a, acts, res, out_dir, plt):
    """The blog's layout: loss on top, per-layer R^2 below, one column per student."""
    fig, ax = plt.subplots(2, len(acts), figsize=(2.4 * len(acts), 4.8), squeeze=False)
    if a.train_size:
        what = f"train (fixed set of {a.train_size})"
    else:
        what = f"train (fresh {a.batch})"
    for i, act in enumerate(acts):
        models = slice(i * a.seeds, (i + 1) * a.seeds)
        ax[0, i].semilogy(res["train_loss"][:, models], lw=0.8, color="C0", label=what)
        ax[0, i].semilogy(res["eval_steps"], res["eval_loss"][:, models], "--", lw=0.8,
                          color="gray", label="held-out")
        per_layer = res["r2"][:, models].nanmean(1).T                   # [L, evals]
        for layer, curve in enumerate(per_layer):
            ax[1, i].plot(res["eval_steps"], curve, lw=0.9, color=plt.cm.tab10(layer % 10),
                          label=str(layer))
        ax[0, i].set_title(label(act), fontsize=9)
        ax[1, i].set_xlabel("training step")
    ax[0, 0].set_ylabel("loss (MSE)")
    ax[1, 0].set_ylabel("R² (pooled) per layer")
    ax[0, 0].legend(fontsize=6)
    ax[1, -1].legend(fontsize=6, ncol=2, title="layer", title_fontsize=6)
    save(fig, out_dir, "curves.png", plt)


def plot_shapes(out_dir, plt):
    """The blog's shapes panel: gensilu (c, c) at period T = 1."""
    fig, ax = plt.subplots(1, 4, figsize=(12, 2.6))
    xs = torch.linspace(-5, 5, 1001)
    for c in range(4):
        ax[c].plot(xs, activations.gensilu(xs, c, c, 1.0))
        ax[c].set_title(f"gensilu ({c}, {c}), T = 1")
    save(fig, out_dir, "gensilu_shapes.png", plt)


def plot_loss_vs_r2(rows, out_dir, plt):
    """The blog's central claim as a picture: final R^2 against final loss, a point per student."""
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = (("train_loss", "final training loss (the blog's)"),
              ("heldout_loss", "final held-out loss"))
    finite = [r for r in rows if math.isfinite(r["r2"])]
    for panel, (key, title) in zip(ax, panels):
        if len(finite) >= 3:
            rho = spearman([r["r2"] for r in finite], [r[key] for r in finite])
            title += f", Spearman {rho:+.2f}"
        for r in rows:
            panel.scatter(r["r2"], r[key], s=25)
            panel.annotate(r["student"], (r["r2"], r[key]), fontsize=7, xytext=(3, 3),
                           textcoords="offset points")
        panel.set_yscale("log")
        panel.set_xlabel("final R² (pooled, mean over layers)")
        panel.set_title(title, fontsize=10)
    ax[0].set_ylabel("loss (MSE)")
    save(fig, out_dir, "loss_vs_r2.png", plt)


def plot_sweep(a, acts, res, rows, first, out_dir, plt):
    """New: R^2, final losses and training curves of the sine students (acts[first:]) against k."""
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    silu = find_row(rows, acts, "silu")
    for family, style in (("sin", "-"), ("xsin", "--")):
        picked = []                                       # (model index of seed 0, row)
        for i in range(first, len(acts)):
            if acts[i].name == family:
                picked.append((i * a.seeds, rows[i]))
        name = picked[0][1]["student"].replace(f"{a.ks[0]:g}x", "kx")
        ax[0].plot(a.ks, [r["r2"] for _, r in picked], "o" + style, color="C0", label=name)
        ax[1].plot(a.ks, [r["train_loss"] for _, r in picked], "o" + style, color="C0",
                   label=name + ", train")
        ax[1].plot(a.ks, [r["heldout_loss"] for _, r in picked], "s" + style, color="C3",
                   label=name + ", held-out")
        for j, (m, r) in enumerate(picked):
            color = plt.cm.viridis(j / max(1, len(picked) - 1))
            ax[2].semilogy(res["train_loss"][:, m], style, lw=0.8, color=color, label=r["student"])
    if silu is not None:
        ax[0].axhline(silu["r2"], color="gray", lw=0.8, label="silu")
        ax[1].axhline(silu["train_loss"], color="C0", lw=0.8, ls=":", label="silu, train")
        ax[1].axhline(silu["heldout_loss"], color="C3", lw=0.8, ls=":", label="silu, held-out")
    for panel in ax[:2]:
        panel.set_xscale("log", base=2)
        panel.set_xlabel("frequency k")
    ax[1].set_yscale("log")
    ax[2].set_xlabel("training step")
    ax[0].set_title("R² (pooled, mean over layers)", fontsize=10)
    ax[1].set_title("final loss", fontsize=10)
    ax[2].set_title("training loss (seed 0)", fontsize=10)
    for panel in ax:
        panel.legend(fontsize=6)
    save(fig, out_dir, "sine_sweep.png", plt)


# -- Plumbing a student may skip: arguments, files ------------------------------------------------

def save(fig, out_dir, name, plt):
    """Write under a temporary name, then rename: no half-written figure."""
    fig.tight_layout()
    tmp = os.path.join(out_dir, name + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, os.path.join(out_dir, name))
    plt.close(fig)


def write_json(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


# the flags' help texts; get_args appends each default from CONFIG
HELP = dict(
    acts="the students' activations, comma separated; choose from: " + activations.act_choices(),
    sine_ks="frequencies k of the sine sweep (new): students sin(kx), x+sin(kx); 'none' skips it",
    depth="residual blocks",
    width="model width d",
    expand="hidden width = expand * d",
    norm="pre: h + alpha*MLP(LN(h)); post: LN(h + alpha*MLP(h)); none: h + alpha*MLP(h)",
    alpha="scale of each block's MLP output on the residual stream",
    train_size="size N of the fixed training set, trained full batch; 0: a fresh batch every step",
    batch="size of each fresh batch (with --train-size 0)",
    steps="Adam steps",
    lr="Adam learning rate",
    eval_every="measure R^2 and the held-out loss every this many steps",
    eval_size="held-out inputs for R^2 and the held-out loss",
    seeds="seeds per activation (one teacher and one student init per seed)",
    out="output folder",
    device="auto picks cuda, then mps, then cpu",
)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):                                  # one line, no usage dump
        self.exit(2, f"mlp.py: error: {message}\n")


def parse_ks(text):
    """'4,1,2' -> [1.0, 2.0, 4.0] (sorted: the verdict steps up in k); 'none' or '' -> []."""
    if text.strip().lower() in ("", "none"):
        return []
    return sorted(set(float(k) for k in text.split(",") if k.strip()))


def get_args(argv=None):
    p = OneLineParser(prog="mlp.py", argument_default=argparse.SUPPRESS,
                      description="Effective linearity (R^2) of residual-MLP students.")
    for key, default in CONFIG.items():                       # SUPPRESS: a flag not given is absent
        p.add_argument("--" + key.replace("_", "-"), type=type(default), choices=CHOICES.get(key),
                       help=f"{HELP[key]} (default: {default})")
    p.add_argument("--quick", action="store_true", default=False,
                   help=f"classroom size: {QUICK}; explicit flags win (default: off)")
    p.add_argument("--no-plots", action="store_true", default=False,
                   help="skip the figures (default: figures on)")
    p.add_argument("--no-kernels", action="store_true", default=False,
                   help="run gensilu's plain PyTorch formula even where the fused Triton kernel "
                        "would run (CUDA with triton), to compare eager and fused "
                        "(default: kernels on)")
    p.add_argument("--compare-naive", action="store_true", default=False,
                   help="also train the students one at a time and print the speed ratio "
                        "(default: off)")
    a = p.parse_args(argv)
    preset = dict(CONFIG)
    if a.quick:
        preset.update(QUICK)
    for key, value in preset.items():                         # presets fill what was not given
        if not hasattr(a, key):
            setattr(a, key, value)
    check_args(p, a)
    return a


def check_args(p, a):
    """One-line errors for bad values; resolves --acts, --sine-ks and --device."""
    for key in ("depth", "width", "expand", "batch", "steps", "eval_every", "eval_size", "seeds"):
        if getattr(a, key) <= 0:
            p.error(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(a, key)}")
    if a.train_size < 0:
        p.error(f"--train-size must be a positive integer or 0 (fresh batches), got {a.train_size}")
    if not (a.lr > 0 and math.isfinite(a.lr)) or not math.isfinite(a.alpha):
        p.error(f"--lr must be a positive number and --alpha finite, got {a.lr} and {a.alpha}")
    if a.eval_size <= a.width + 1:
        p.error(f"--eval-size ({a.eval_size}) must exceed width+1 ({a.width + 1}) for the R^2 fit")
    try:
        a.act_list = activations.parse_acts(a.acts)
    except ValueError as e:
        p.error(f"--acts: {e}")
    try:
        a.ks = parse_ks(a.sine_ks)
        for k in a.ks:
            activations.check_sine(k)
    except ValueError as e:
        p.error(f"--sine-ks {a.sine_ks!r}: {e}")
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if a.device == "auto":
        a.device = [d for d in ("cuda", "mps", "cpu") if available[d]][0]
    if not available[a.device]:
        p.error(f"--device {a.device} is not available on this machine (try --device auto)")


def check_output_dir(out):
    """Fail before training, not after it."""
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, ".write_test")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        sys.exit(f"mlp.py: error: output directory {out!r} is not writable ({e.strerror})")


def header(a, acts):
    if a.train_size:
        data = f"a fixed set of {a.train_size}, full batch"
    else:
        data = f"fresh batches of {a.batch}"
    return (f"mlp.py: {len(acts)} students x {a.seeds} seed(s) of a {TEACHER} teacher, "
            f"d={a.width}, hidden={a.expand * a.width}, L={a.depth}, {a.norm}-LN, "
            f"alpha={a.alpha:g},"
            f"\n  Adam lr={a.lr:g}, {a.steps} steps on {data}; R² every {a.eval_every} steps on "
            f"{a.eval_size} held-out inputs; {a.device}")


def make_figures(a, acts, res, rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n_main = len(a.act_list)
    plot_curves(a, a.act_list, res, a.out, plt)
    plot_shapes(a.out, plt)
    plot_loss_vs_r2(rows[:n_main], a.out, plt)
    names = ["curves.png", "gensilu_shapes.png", "loss_vs_r2.png"]
    if a.ks:
        plot_sweep(a, acts, res, rows, n_main, a.out, plt)
        names.append("sine_sweep.png")
    return names


def main(argv=None):
    a = get_args(argv)
    check_output_dir(a.out)
    acts = a.act_list + sine_students(a)                   # the blog's students, then the sweep's
    n_main = len(a.act_list)
    print(header(a, acts))
    res = train(a, acts)                                   # 1. every student at once
    rows = summarize(a, acts, res)                         # 2. one row per student
    lines = verdicts(rows[:n_main], a.act_list)            # 3. the blog's claims
    print("\n" + markdown(rows[:n_main]) + "\n")
    for line in lines:
        print("verdict: " + line)
    if a.ks:                                               # 4. new: the sine sweep
        sweep = sweep_verdicts(a, rows[n_main:], acts[n_main:])
        table = rows[n_main:]
        if "silu" not in [act.name for act in acts[n_main:]]:
            table = [find_row(rows, acts, "silu")] + table     # the reference, from the main run
        print("\n" + sweep_markdown(table) + "\n")
        for line in sweep:
            print("verdict: " + line)
        lines += sweep
    print(f"\ntraining, all {len(acts)} students batched: {res['wall']:.1f} s wall, "
          f"{res['cpu']:.1f} s CPU")
    if a.compare_naive:                                    # 5. speed against one at a time
        compare_naive(a, acts, res)
    results = dict(config={key: getattr(a, key) for key in CONFIG}, rows=rows, verdicts=lines)
    for key, value in res.items():
        if torch.is_tensor(value):
            value = value.tolist()
        results[key] = value
    write_json(os.path.join(a.out, "results.json"), results)
    written = ["results.json"]
    if not a.no_plots:
        written += make_figures(a, acts, res, rows)
    print(f"wrote {a.out}/: " + ", ".join(written))
    if a.device == "cuda":
        calls = activations.FUSED_CALLS
        print(f"fused kernel calls: sqs={calls['sqs']} gensilu={calls['gensilu']}")


if __name__ == "__main__":
    main()
