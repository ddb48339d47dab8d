"""
mlp.py -- how linear is an MLP, really?  Effective linearity (R^2) of residual-MLP students of a
frozen SiLU teacher, and the generalized-SiLU sweep of blog "MLP 2".

    python mlp.py                 # 8 students x 1000 steps, figures + table in out/mlp/ (~80 s)
    python mlp.py --quick         # classroom-sized version (~11 s on a 2-core CPU)
    python mlp.py --acts relu,gensilu:2,2 --norm post --lr 3e-3

Sources
  [MLP2]   Ziming Liu, "MLP 2 -- Effective linearity, Generalized SiLU" (2026),
           https://KindXiaoming.github.io/blog/2026/mlp-2/
  [DEPTH1] Ziming Liu, "Depth 1 -- Understanding Pre-LN and Post-LN" (2026),
           https://KindXiaoming.github.io/blog/2026/depth-1/   (the network the MLP-2 post reuses)
  [CARD]   course card "MLP neurons as key-value-ish nonlinear transforms" (the 4x hidden expansion)

The experiment
  A teacher network of L residual blocks  h <- h + alpha * FC2(sigma(FC1(norm(h))))  with sigma = SiLU
  is drawn at random and frozen. Students with the same architecture but another sigma (tanh, relu,
  relu^2, silu, silu^2, generalized SiLU, ... -- any name of activations.py) learn to imitate it by
  MSE on fresh Gaussian inputs. Every k steps we ask each block's MLP: how much of what you emit
  could a plain affine map of what you received have emitted?  That fraction is R^2 (see r2()).
  [MLP2] finds that students with lower R^2 (more nonlinearity actually used) reach lower loss, and
  that generalized SiLUs with extra sine cycles, gensilu (0,1) and (1,1), reach "extremely low" loss.

Choices the blog leaves open (all are flags; the defaults are the reading used in the README)
  width d = 32, hidden = 4d = 128 (the course card's 4x expansion), depth L = 10 (the blog's R^2
  curves are indexed 0..9), alpha = 1 (the blog's [DEPTH1] knob, at its "untrained" value 1),
  Pre-LN with a learnable LayerNorm (gain 1, bias 0 at init) before every MLP, no final norm.
  Init: PyTorch's nn.Linear default, every weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  Teacher and students are drawn from different seeds; all students of one seed start from the SAME
  weights, so only sigma differs between them. Data: a fresh batch x ~ N(0, I_d) every step
  (batch 512), target = teacher(x), loss = mean squared error per output coordinate.
  Optimiser: Adam, lr 1e-3, no schedule, 1000 steps. R^2 every 10 steps on one fixed held-out batch of
  1024 inputs; the reported "final loss" is the MSE on that held-out batch after the last step.
  A one-seed calibration probe of this reading on the same machine found that the R^2 ordering
  reproduces but the losses stay near 1e-3 and gensilu (0,1)/(1,1) do not beat SiLU; --lr, --width,
  --alpha, --teacher-gain are the knobs to explore other readings.

Speed: all students (and seeds) are trained as ONE batched program: every weight carries a leading
"model" dimension and the matmuls are batched (torch.baddbmm), so 8 students cost one Python loop
instead of eight. Only the elementwise activation is applied per student (activations.gensilu is
branch-free on the CPU for this reason). Adam is fused over six stacked parameter tensors.
"""
import os

# On this shared 2-core machine libgomp's default busy-waiting OpenMP threads stall each other whenever
# one is preempted: a --quick run took 8x longer under load. Passive waiting costs nothing measurable
# on an idle machine. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sys
import time

import torch

import activations

DEFAULT_ACTS = "tanh,relu,relu2,silu,silu2,gensilu:1,0,gensilu:0,1,gensilu:1,1"

# Approximate numbers read off the blog's figures: final loss after 1000
# steps and the range of the 10 layers' R^2. Used only as a comparison column and in the verdicts'
# wording, never as a result.
BLOG = {
    "tanh": ("3e-4 (spiky)", (0.947, 0.975)),
    "relu": ("1e-4 (noisy)", (0.74, 0.77)),
    "relu2": ("4e-5", (0.56, 0.62)),
    "silu": ("1.2e-4", (0.87, 0.90)),
    "silu2": ("1e-6 (spiky)", (0.45, 0.51)),
    "gensilu(1,0)": ("1e-4..1e-6 (spiky)", (0.70, 0.725)),
    "gensilu(0,1)": ("1e-13", (0.68, 0.735)),
    "gensilu(1,1)": ("3e-14 plateau", (0.37, 0.48)),
}


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message):  # bad input -> exactly one line on stderr, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def get_args(argv=None):
    p = Parser(prog="mlp.py",
        description="Effective linearity (R^2) of residual-MLP students of a frozen SiLU teacher "
                    "[MLP2], and the generalized-SiLU sweep.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--acts", default=DEFAULT_ACTS,
                   help="student activations, comma separated: " + activations.act_choices())
    p.add_argument("--teacher-act", default="silu", help="the teacher's activation")
    p.add_argument("--depth", type=int, default=10, help="number of residual blocks L")
    p.add_argument("--width", type=int, default=32, help="residual-stream width d")
    p.add_argument("--expand", type=int, default=4, help="hidden width = expand * d")
    p.add_argument("--norm", default="pre", choices=["pre", "post", "none"],
                   help="pre: h+a*MLP(LN(h)); post: LN(h+a*MLP(h)); none: h+a*MLP(h)")
    p.add_argument("--alpha", type=float, default=1.0, help="scale of each block's update (FC2)")
    p.add_argument("--teacher-gain", type=float, default=1.0,
                   help="multiply the teacher's FC1/FC2 weights by this (a bigger gain makes the "
                        "teacher more nonlinear and larger)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps")
    p.add_argument("--batch", type=int, default=512, help="fresh Gaussian inputs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--r2-every", type=int, default=10, help="measure R^2 every k steps")
    p.add_argument("--r2-batch", type=int, default=1024, help="held-out inputs for R^2 and eval loss")
    p.add_argument("--target", type=float, default=1e-3, help="report the first step with loss <= this")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (one teacher per seed)")
    p.add_argument("--out", default="out/mlp", help="output directory")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (the ops are small: a 2nd thread measured no faster "
                        "here, and slower whenever the other core was busy)")
    p.add_argument("--quick", action="store_true",
                   help="classroom-sized run: width 16, 300 steps, R^2 every 20 steps")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (table only)")
    args = p.parse_args(argv)
    if args.quick:  # quick changes the defaults only: explicit flags still win
        p.set_defaults(width=16, steps=300, r2_every=20, r2_batch=512)
        args = p.parse_args(argv)
    for name in ("depth", "width", "expand", "steps", "batch", "r2_every", "r2_batch", "seeds",
                 "threads"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    for name in ("lr", "target", "teacher_gain"):
        v = getattr(args, name)
        if not (v > 0 and math.isfinite(v)):
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {v}")
    if not math.isfinite(args.alpha):
        p.error(f"--alpha must be finite, got {args.alpha}")
    if args.r2_batch <= args.width + 1:
        p.error(f"--r2-batch ({args.r2_batch}) must exceed width+1 ({args.width + 1}) for a "
                f"meaningful least-squares fit")
    try:
        args.act_list = activations.parse_acts(args.acts)
        args.teacher = activations.parse_act(args.teacher_act)
    except ValueError as e:
        p.error(str(e))
    args.device = pick_device(args.device).type   # 'auto' resolved; a missing device fails here
    return args


def pick_device(name):
    """'auto' -> cuda > mps > cpu; asking for a device this machine lacks is a one-line error."""
    there = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if there[d])
    if not there[name]:
        sys.exit(f"mlp.py: error: --device {name} is not available on this machine (try --device auto)")
    return torch.device(name)


def label(act):
    """Short display name: 'gensilu(1,1)' (period shown only if not the default 2 pi)."""
    if act.name != "gensilu":
        return act.spec
    a, b, t = act.params["left"], act.params["right"], act.params["period"]
    extra = "" if abs(t - 2 * math.pi) < 1e-12 else f",T={t:g}"
    return f"gensilu({a:g},{b:g}{extra})"


# ------------------------------------------------------------------------------------------------
# The measurement: effective linearity R^2
# ------------------------------------------------------------------------------------------------
#
# Let X (N x p) be what enters FC1 over N held-out inputs and Y (N x q) what FC2 emits. Fit the best
# AFFINE map Y ~ X B + 1 c^T by least squares. The intercept c is handled by centring: with
# Xc = X - mean, Yc = Y - mean the optimal B solves the normal equations (Xc^T Xc) B = Xc^T Yc and
# c = mean(Y) - mean(X) B. Pool the error over all q output coordinates:
#
#     SS_res = || Yc - Xc B ||_F^2,   SS_tot = || Yc ||_F^2,   R^2 = 1 - SS_res / SS_tot.
#
# Only second moments are needed. With G = Xc^T Xc and C = Xc^T Yc (so B = G^-1 C), Pythagoras below
# gives SS_res = SS_tot - SS_fit with SS_fit = || Xc B ||_F^2 = tr(C^T G^-1 C), hence
#
#     R^2 = SS_fit / SS_tot = tr(C^T G^-1 C) / tr(Yc^T Yc):
#
# two small Gram products per fit and no N x q residual matrix (the fit costs ~4% of a run).
#
# Why R^2 ~ 1 means the nonlinearity is wasted. SS_tot splits exactly (Pythagoras: the residual is
# orthogonal to the column space of Xc) into SS_fit + SS_res, where SS_fit is the part of the MLP's
# output that the affine map reproduces. If R^2 = 1 the MLP, on the data it actually sees, IS the
# affine map x -> xB + c: we could replace FC2 o sigma o FC1 by one d x d linear layer and the network
# would compute the same function. Its 4d hidden units, and sigma itself, then buy nothing that a
# linear layer could not -- e.g. tanh units whose pre-activations stay in tanh's near-linear range,
# or nonlinear parts that FC2 cancels. 1 - R^2 is the fraction of the output variance that NO affine
# map can produce: the nonlinearity the block effectively uses. (A stack of affine blocks is itself
# affine, so a network whose blocks all have R^2 = 1 can only learn the linear part of the teacher.)
#
# R^2 is invariant to rescaling inputs (B absorbs the scale) and outputs (numerator and denominator
# scale alike); the tests check both. It is measured in-sample: with p + 1 fitted coefficients per
# output and N samples, pure noise already gets R^2 ~ p/N (3% for p = 32, N = 1024), so keep N >> p.
#
# Numerics. Pre-LN inputs are LayerNorm outputs: every row of (LN(h) - bias)/gain sums to zero, so Xc
# has a (numerically) null direction and Xc^T Xc is singular. We therefore solve the normal equations
# with a pseudo-inverse: eigendecompose G = V diag(lam) V^T and drop directions with lam < 1e-10 *
# lam_max (they carry no signal, only float32 round-off); then SS_fit = sum_k ||(V^T C)_k||^2 / lam_k.
# The Grams are formed in float64 from data already centred once in its own precision (any leftover
# mean m is removed exactly by Xc^T Yc = X^T Y - N mx my^T), and batched over any leading dimensions,
# so all models x layers are fitted in one call.
#
# Guards. (1) Non-finite X or Y (a diverged student): return NaN for that fit without calling the
# solver -- LAPACK routines can abort, not return NaN, on NaN input. (2) SS_tot ~ 0 (the MLP emits a
# constant, e.g. all its units are dead): a constant is an affine function of anything, so the
# block is perfectly linear and we return R^2 = 1, not 0/0 = NaN. "~ 0" is relative to the output's
# size, SS_tot <= 1e-12 * ||Y||^2, so the test is also scale invariant.

def r2(x, y, rtol=1e-10, degenerate=1e-12):
    """Effective linearity of y given x: R^2 of the affine least-squares fit y ~ x B + c, pooled
    over y's columns. x: [..., N, p], y: [..., N, q] (any leading batch dims). Returns [...] float64:
    1 for a perfectly affine (or constant) y, NaN where x or y is not finite."""
    n = x.shape[-2]
    x = (x - x.mean(-2, keepdim=True)).double()               # centred up to round-off ...
    y_mean = y.mean(-2, keepdim=True)
    y = (y - y_mean).double()
    # A float64 sum of float32 entries cannot overflow, so it is finite iff every entry is (NaN and
    # inf propagate, inf - inf = NaN): one cheap reduction instead of an elementwise isfinite.
    finite = torch.isfinite(x.sum((-1, -2)) + y.sum((-1, -2)))
    if not finite.all():  # keep NaN/inf away from the solver
        x = torch.where(finite[..., None, None], x, 0.0)
        y = torch.where(finite[..., None, None], y, 0.0)
    mx, my = x.mean(-2), y.mean(-2)                           # ... and the rest removed exactly
    g = x.mT @ x - n * mx[..., :, None] * mx[..., None, :]    # G = Xc^T Xc
    c = x.mT @ y - n * mx[..., :, None] * my[..., None, :]    # C = Xc^T Yc
    yy = torch.linalg.vector_norm(y, dim=(-2, -1)).square()
    ss_tot = yy - n * my.square().sum(-1)                     # tr(Yc^T Yc)
    lam, v = torch.linalg.eigh(g)                             # G = V diag(lam) V^T
    keep = lam > rtol * lam[..., -1:].clamp_min(0)            # eigh sorts ascending: lam_max last
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, 1.0), 0.0)
    ss_fit = (inv[..., None] * (v.mT @ c).square()).sum((-1, -2))  # tr(C^T G^+ C)
    size = yy + n * y_mean.double().square().sum((-1, -2))    # ||Y||^2 before centring
    flat = ss_tot <= degenerate * size                        # constant output (or all zero)
    out = torch.where(flat, 1.0, ss_fit / torch.where(flat, 1.0, ss_tot))
    return torch.where(finite, out, float("nan"))


# ------------------------------------------------------------------------------------------------
# Model: M residual-MLP networks stored in one set of tensors
# ------------------------------------------------------------------------------------------------
# Each kind of parameter is ONE tensor with a leading layer dimension: W1 is [L, M, d, H], b1 is
# [L, M, 1, H], W2 is [L, M, H, d], b2 is [L, M, 1, d], LayerNorm gain/bias [L, M, 1, d]. Six tensors
# in all, so Adam runs six fused updates per step instead of 6L small ones. Model m of a sweep with A
# activations and S seeds is (seed m // A, activation m % A). An input batch [M, B, d] flows through
# all models at once.

def init_params(n_models, depth, d, hidden, gen, device, gain=1.0):
    """nn.Linear's default init, U(-1/sqrt(fan_in), +1/sqrt(fan_in)), for weights and biases;
    LayerNorm gain 1, bias 0. `gain` scales the FC weights (not the biases)."""
    def unif(fan_in, *shape):
        return (torch.rand(*shape, generator=gen) * 2 - 1) / math.sqrt(fan_in)
    p = {k: [] for k in ("w1", "b1", "w2", "b2", "g", "beta")}
    for _ in range(depth):
        p["w1"].append(gain * unif(d, n_models, d, hidden))
        p["b1"].append(unif(d, n_models, 1, hidden))
        p["w2"].append(gain * unif(hidden, n_models, hidden, d))
        p["b2"].append(unif(hidden, n_models, 1, d))
        p["g"].append(torch.ones(n_models, 1, d))
        p["beta"].append(torch.zeros(n_models, 1, d))
    return {k: torch.stack(v).to(device) for k, v in p.items()}


def layer_norm(h, g, b, eps=1e-5):
    """(h - mean) / sqrt(var + eps) over the last dim, then a per-model gain g and bias b [M, 1, d]
    (F.layer_norm's own affine is per-feature only, shared by all models, so it is applied here)."""
    return torch.nn.functional.layer_norm(h, h.shape[-1:], eps=eps) * g + b


def apply_acts(u, acts):
    """u: [S*A, B, H] -> act_a applied to the models of activation a (model m uses acts[m % A])."""
    if len(acts) == 1:
        return acts[0](u)
    # unbind (not u[:, i]): its backward is one stack, while each u[:, i] would back-propagate
    # through a full-size zero tensor
    parts = u.view(u.shape[0] // len(acts), len(acts), *u.shape[1:]).unbind(1)
    return torch.stack([act(part) for act, part in zip(acts, parts)], 1).flatten(0, 1)


def forward(p, x, acts, norm, alpha, record=False):
    """x: [M, B, d] -> (output [M, B, d], MLP inputs, MLP outputs) -- the last two are lists of
    [M, B, d] per block when record=True (what enters FC1 and what FC2 emits, before alpha)."""
    h, ins, outs = x, [], []
    p = {k: v.unbind(0) for k, v in p.items()}  # per-layer views; unbind's backward is one stack
    for l in range(len(p["w1"])):
        z = layer_norm(h, p["g"][l], p["beta"][l]) if norm == "pre" else h
        u = torch.baddbmm(p["b1"][l], z, p["w1"][l])       # FC1
        o = torch.baddbmm(p["b2"][l], apply_acts(u, acts), p["w2"][l])  # FC2(sigma(.))
        if record:
            ins.append(z)
            outs.append(o)
        h = h + alpha * o
        if norm == "post":
            h = layer_norm(h, p["g"][l], p["beta"][l])
    return h, ins, outs


# ------------------------------------------------------------------------------------------------
# Training: all students (x all seeds) in one loop
# ------------------------------------------------------------------------------------------------

def run(args, log=print):
    """Train every student of every seed; return a dict of curves and timings (CPU tensors)."""
    dev = torch.device(args.device)
    acts, n_act, n_seed = args.act_list, len(args.act_list), args.seeds
    n_models, d, hidden = n_seed * n_act, args.width, args.expand * args.width
    # one teacher and one student init per seed, drawn from separate streams
    teachers, students = [], []
    for s in range(n_seed):
        teachers.append(init_params(1, args.depth, d, hidden,
                                    torch.Generator().manual_seed(1000 + s), "cpu", args.teacher_gain))
        students.append(init_params(1, args.depth, d, hidden,
                                    torch.Generator().manual_seed(2000 + s), "cpu"))
    teacher = {k: torch.cat([t[k] for t in teachers], 1).to(dev) for k in teachers[0]}
    # seed s's init repeated for each of its A students: model m = s*A + a
    student = {k: torch.cat([t[k] for t in students], 1).repeat_interleave(n_act, 1).to(dev)
               .requires_grad_() for k in students[0]}
    # fused: one kernel per tensor (the default for-loop Adam launches ~10 small ops per tensor)
    opt = torch.optim.Adam(student.values(), lr=args.lr, fused=True)

    def teach(x):  # [B, d] -> the S teachers' outputs repeated per student: [M, B, d]
        with torch.no_grad():
            y, _, _ = forward(teacher, x.expand(n_seed, *x.shape), [args.teacher], args.norm, args.alpha)
        return y.repeat_interleave(n_act, 0)

    gen = torch.Generator(device=dev).manual_seed(0)           # training data stream
    x_eval = torch.randn(args.r2_batch, d, generator=torch.Generator().manual_seed(12345)).to(dev)
    y_eval = teach(x_eval)
    with torch.no_grad():  # how big is the teacher's nonlinear part? and its own MLPs' R^2
        yt, t_in, t_out = forward(teacher, x_eval.expand(n_seed, *x_eval.shape), [args.teacher],
                                  args.norm, args.alpha, record=True)
        teacher_r2 = r2(torch.stack(t_in, 1), torch.stack(t_out, 1)).float().cpu()  # [S, L]
        teacher_var = yt.var().item()
        teacher_update_var = (yt - x_eval).var().item()

    train_loss = torch.full((args.steps, n_models), float("nan"))
    eval_steps, eval_loss, r2_curves = [], [], []
    diverged_at = [None] * n_models
    t_r2 = t_eval = 0.0
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.r2_every == 0 or step == args.steps:
            te = time.perf_counter()
            with torch.no_grad():
                out, ins, outs = forward(student, x_eval.expand(n_models, *x_eval.shape), acts,
                                         args.norm, args.alpha, record=True)
                eval_loss.append((out - y_eval).square().mean((1, 2)).cpu())
                tr = time.perf_counter()
                r2_curves.append(r2(torch.stack(ins, 1), torch.stack(outs, 1)).float().cpu())
                t_r2 += time.perf_counter() - tr
            eval_steps.append(step)
            t_eval += time.perf_counter() - te
        if step == args.steps:
            break
        x = torch.randn(args.batch, d, generator=gen, device=dev)
        y = teach(x)
        out, _, _ = forward(student, x.expand(n_models, *x.shape), acts, args.norm, args.alpha)
        per_model = (out - y).square().mean((1, 2))            # [M]
        opt.zero_grad(set_to_none=True)
        # Models never interact (batched matmuls, elementwise Adam), so the sum's gradient is each
        # model's own gradient, and a diverged model's NaNs stay in its own slice of the tensors.
        per_model.sum().backward()
        opt.step()
        train_loss[step] = per_model.detach().cpu()
        for m in torch.nonzero(~torch.isfinite(train_loss[step])).flatten().tolist():
            if diverged_at[m] is None:
                diverged_at[m] = step
                log(f"  ! {label(acts[m % n_act])} (seed {m // n_act}) diverged at step {step}; "
                    f"marked, the others go on")
    wall = time.perf_counter() - t0
    return dict(train_loss=train_loss, eval_steps=eval_steps, eval_loss=torch.stack(eval_loss),
                r2=torch.stack(r2_curves), diverged_at=diverged_at, wall=wall, t_r2=t_r2,
                t_eval=t_eval, teacher_r2=teacher_r2, teacher_var=teacher_var,
                teacher_update_var=teacher_update_var, n_seed=n_seed, n_act=n_act)


# ------------------------------------------------------------------------------------------------
# Summary table and verdicts
# ------------------------------------------------------------------------------------------------

def summarize(args, res):
    """One row per student, aggregated over seeds (diverged seeds excluded from loss and R^2)."""
    rows, A = [], res["n_act"]
    for a, act in enumerate(args.act_list):
        ms = [s * A + a for s in range(res["n_seed"])]
        ok = [m for m in ms if res["diverged_at"][m] is None
              and math.isfinite(res["eval_loss"][-1, m].item())]
        final = [res["eval_loss"][-1, m].item() for m in ok]
        r2_last = res["r2"][-1][ok] if ok else torch.full((1, args.depth), float("nan"))
        hits = []
        for m in ms:
            below = torch.nonzero(res["train_loss"][:, m] <= args.target).flatten()
            hits.append(int(below[0]) + 1 if len(below) else None)  # +1: loss after that many steps
        reached = [h for h in hits if h is not None]
        blog = BLOG.get(label(act)) or (BLOG["silu"] if label(act) == "gensilu(0,0)" else None)
        rows.append(dict(
            student=label(act), spec=act.spec,
            final_loss=math.exp(sum(map(math.log, final)) / len(final)) if final and min(final) > 0
            else (0.0 if final else float("nan")),
            r2_mean=r2_last.mean().item(), r2_min=r2_last.min(1).values.mean().item(),
            r2_max=r2_last.max(1).values.mean().item(),
            steps_to_target=(round(sum(reached) / len(reached)) if reached else None),
            reached=f"{len(reached)}/{len(ms)}",
            diverged=f"{sum(res['diverged_at'][m] is not None for m in ms)}/{len(ms)}",
            blog_loss=blog[0] if blog else "", blog_r2=f"{blog[1][0]:.3g}-{blog[1][1]:.3g}" if blog else ""))
    return rows


def markdown_table(rows, target):
    head = ["student", "final loss", "mean R²", "min R²", "max R²", f"steps to {target:g}",
            "diverged", "blog loss", "blog R²"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = "never" if r["steps_to_target"] is None else str(r["steps_to_target"])
        if not r["reached"].startswith(r["reached"].split("/")[1]) and r["steps_to_target"]:
            steps += f" ({r['reached']} seeds)"
        lines.append(f"| {r['student']} | {r['final_loss']:.2e} | {r['r2_mean']:.3f} | "
                     f"{r['r2_min']:.3f} | {r['r2_max']:.3f} | {steps} | {r['diverged']} | "
                     f"{r['blog_loss']} | {r['blog_r2']} |")
    return "\n".join(lines)


def spearman(a, b):
    """Rank correlation (no ties expected for continuous measurements)."""
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return (ra @ rb / (ra.norm() * rb.norm())).item()


def verdicts(rows):
    """Each blog claim, checked against this run's numbers. Returns a list of strings."""
    by = {r["student"]: r for r in rows if math.isfinite(r["r2_mean"])}
    if "gensilu(0,0)" not in by and "silu" in by:
        by["gensilu(0,0)"] = by["silu"]
    out = []
    # 1. the R^2 ordering
    order = ["tanh", "silu", "relu", "relu2", "silu2"]
    if all(k in by for k in order):
        got = sorted(order, key=lambda k: -by[k]["r2_mean"])
        pairs = [(p, q) for i, p in enumerate(order) for q in order[i + 1:]]
        held = sum(by[p]["r2_mean"] > by[q]["r2_mean"] for p, q in pairs)
        status = "REPRODUCED" if got == order else ("PARTLY reproduced" if held >= 7 else "NOT reproduced")
        measured = " > ".join(f"{k} ({by[k]['r2_mean']:.3f})" for k in got)
        out.append(f"R² ordering tanh > silu > relu > relu2 > silu2: {status} -- measured order "
                   f"{measured}; "
                   f"{held}/{len(pairs)} pairs in the blog's order")
    else:
        out.append("R² ordering: skipped (needs tanh, silu, relu, relu2, silu2 among --acts)")
    # 2. gensilu (0,1) and (1,1) reach far (>= 10x) lower loss than (0,0) = SiLU
    if "gensilu(0,0)" in by:
        base = by["gensilu(0,0)"]["final_loss"]
        for k in ("gensilu(0,1)", "gensilu(1,1)"):
            if k not in by:
                out.append(f"{k} far below gensilu(0,0): skipped ({k} not run or diverged)")
                continue
            ratio = base / by[k]["final_loss"] if by[k]["final_loss"] > 0 else float("inf")
            status = "REPRODUCED" if ratio >= 10 else ("lower, but not far lower" if ratio > 1
                                                       else "NOT reproduced")
            out.append(f"{k} reaches far (>=10x) lower loss than gensilu(0,0)=silu: {status} -- "
                       f"{by[k]['final_loss']:.2e} vs {base:.2e} ({ratio:.3g}x lower; blog: ~1e-13 vs ~1e-4)")
    else:
        out.append("gensilu far below silu: skipped (needs silu or gensilu:0,0 among --acts)")
    # 3. lower R^2 <-> lower loss, across all students that did not diverge
    ks = [k for k in by if k != "gensilu(0,0)" or "silu" not in by or by[k] is not by["silu"]]
    if len(ks) >= 3:
        rho = spearman([by[k]["r2_mean"] for k in ks], [math.log(max(by[k]["final_loss"], 1e-300))
                                                         for k in ks])
        status = ("REPRODUCED" if rho >= 0.5 else "weakly reproduced" if rho > 0 else "NOT reproduced")
        out.append(f"lower R² goes with lower loss: {status} -- Spearman rank correlation of mean R² "
                   f"and log final loss over {len(ks)} students = {rho:+.2f} (+1: perfectly aligned)")
    else:
        out.append("lower R² <-> lower loss: skipped (needs >= 3 non-diverged students)")
    return out


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def plot_all(args, res, rows, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    A, S, L = res["n_act"], res["n_seed"], args.depth
    paths = []

    # 1. the blog's layout: per student, loss (log) on top and the L per-layer R^2 curves below
    fig, ax = plt.subplots(2, A, figsize=(2.3 * A + 0.6, 4.8), squeeze=False, sharex=True)
    colors = plt.cm.viridis(torch.linspace(0, 0.9, L).tolist())
    steps = torch.arange(1, args.steps + 1)
    for a, act in enumerate(args.act_list):
        for s in range(S):
            ax[0, a].plot(steps, res["train_loss"][:, s * A + a], lw=0.7, alpha=0.9 if S == 1 else 0.5)
        ax[0, a].set_yscale("log")
        ax[0, a].set_title(label(act), fontsize=9)
        r2s = res["r2"][:, a::A].nanmean(1) if S > 1 else res["r2"][:, a]  # [T, L]
        for l in range(L):
            ax[1, a].plot(res["eval_steps"], r2s[:, l], color=colors[l], lw=0.9, label=f"{l}")
        ax[1, a].set_xlabel("step")
    ax[0, 0].set_ylabel("train loss (MSE)")
    ax[1, 0].set_ylabel("R² per layer")
    ax[1, -1].legend(title="layer", fontsize=6, title_fontsize=7, ncol=2, loc="lower right")
    fig.suptitle(f"students of a SiLU teacher: loss and per-layer effective linearity R² "
                 f"(d={args.width}, L={L}, {args.norm}-LN, lr={args.lr:g})", fontsize=10)
    fig.tight_layout()
    paths.append(save(fig, out_dir, "curves.png"))

    # 1b. all loss curves on one axis (the blog's generalized-SiLU figure compares them this way)
    fig, ax1 = plt.subplots(figsize=(6, 4))
    for a, act in enumerate(args.act_list):
        ax1.plot(steps, res["train_loss"][:, a::A].nanmean(1) if S > 1 else res["train_loss"][:, a],
                 lw=0.8, label=label(act))
    ax1.set_yscale("log"), ax1.set_xlabel("step"), ax1.set_ylabel("train loss (MSE)")
    ax1.legend(fontsize=7), ax1.set_title("all students", fontsize=10)
    fig.tight_layout()
    paths.append(save(fig, out_dir, "losses.png"))

    # 2. generalized-SiLU shapes. With the default period 2 pi one sine cycle already spans
    # [-2 pi, 2 pi], so on [-5, 5] the shapes (1,1), (2,2), (3,3) coincide; a second panel with
    # period 1 shows the cycles and the linear branches (shifted by -a T and +b T) inside the window.
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.8))
    xs = torch.linspace(-5, 5, 1001)
    for ax2, period in zip(axs, (2 * math.pi, 1.0)):
        for c in range(4):
            ax2.plot(xs, activations.gensilu(xs, c, c, period), lw=1.2,
                     ls=("-", "--", "-.", ":")[c], label=f"({c},{c})" + (" = SiLU" if c == 0 else ""))
        ax2.axhline(0, color="gray", lw=0.5), ax2.axvline(0, color="gray", lw=0.5)
        ax2.set_xlabel("x"), ax2.legend(fontsize=8)
    axs[0].set_ylabel("gensilu(x; left, right, period)")
    axs[0].set_title("period 2π (the default; (1,1)-(3,3) coincide here)", fontsize=9)
    axs[1].set_title("period 1 (cycles visible on [-5, 5])", fontsize=9)
    fig.tight_layout()
    paths.append(save(fig, out_dir, "gensilu_shapes.png"))

    # 3. final loss vs mean R^2: does lower R^2 go with lower loss?
    fig, ax3 = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        if math.isfinite(r["r2_mean"]) and r["final_loss"] > 0:
            ax3.scatter(r["r2_mean"], r["final_loss"], s=25)
            ax3.annotate(r["student"], (r["r2_mean"], r["final_loss"]), fontsize=7,
                         xytext=(3, 3), textcoords="offset points")
    ax3.set_yscale("log"), ax3.set_xlabel("mean R² over layers (final)")
    ax3.set_ylabel("final held-out loss"), ax3.set_title("lower R² ↔ lower loss?", fontsize=10)
    fig.tight_layout()
    paths.append(save(fig, out_dir, "loss_vs_r2.png"))
    plt.close("all")
    return paths


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    fig.savefig(path + ".tmp.png", dpi=80)  # small PNGs (< 200 KB) for the README
    os.replace(path + ".tmp.png", path)
    return path


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def main(argv=None):
    t_start = time.perf_counter()
    args = get_args(argv)
    try:
        os.makedirs(args.out, exist_ok=True)
        write_atomic(os.path.join(args.out, ".write_test"), "")
        os.remove(os.path.join(args.out, ".write_test"))
    except OSError as e:
        sys.exit(f"error: output directory {args.out!r} is not writable ({e.strerror})")
    torch.manual_seed(0)
    torch.set_flush_denormal(True)  # tiny late-training gradients would otherwise slow the CPU down
    A = len(args.act_list)
    print(f"mlp.py: {A} students x {args.seeds} seed(s), d={args.width}, hidden={args.expand * args.width}, "
          f"L={args.depth}, {args.norm}-LN, alpha={args.alpha:g}, Adam lr={args.lr:g}, "
          f"batch {args.batch}, {args.steps} steps, R² every {args.r2_every} on {args.r2_batch} "
          f"held-out inputs, teacher {args.teacher.spec} (gain {args.teacher_gain:g}), "
          f"{args.threads} CPU thread(s)")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        res = run(args)
    finally:  # main() may run inside a bigger process (the tests): leave its setting as it was
        torch.set_num_threads(threads)
    print(f"teacher: output variance {res['teacher_var']:.3f}, variance of its residual updates "
          f"(output - input) {res['teacher_update_var']:.4f}, its MLPs' R² "
          f"{res['teacher_r2'].min():.3f}-{res['teacher_r2'].max():.3f}")
    rows = summarize(args, res)
    table = markdown_table(rows, args.target)
    print("\n" + table + "\n")
    verdict_lines = verdicts(rows)
    for v in verdict_lines:
        print("verdict: " + v)
    frac_r2, frac_eval = res["t_r2"] / res["wall"], res["t_eval"] / res["wall"]
    print(f"\ntraining wall time {res['wall']:.1f} s; R² fits {res['t_r2']:.2f} s "
          f"({100 * frac_r2:.1f}%), whole evaluation incl. held-out forward {res['t_eval']:.2f} s "
          f"({100 * frac_eval:.1f}%)")

    # files: table as CSV + JSON (with curves), figures
    cols = list(rows[0])
    csv = ",".join(cols) + "\n" + "".join(
        ",".join(f'"{r[c]}"' if isinstance(r[c], str) else ("" if r[c] is None else f"{r[c]:.6g}")
                 for c in cols) + "\n" for r in rows)
    write_atomic(os.path.join(args.out, "results.csv"), csv)
    config = {k: v for k, v in vars(args).items() if k not in ("act_list", "teacher")}
    blob = dict(config=config, rows=rows, verdicts=verdict_lines, wall_s=res["wall"],
                r2_s=res["t_r2"], eval_s=res["t_eval"], teacher_r2=res["teacher_r2"].tolist(),
                eval_steps=res["eval_steps"], eval_loss=res["eval_loss"].tolist(),
                r2_curves=res["r2"].tolist(), diverged_at=res["diverged_at"],
                models=[f"{label(args.act_list[m % A])} seed {m // A}" for m in range(A * args.seeds)])
    write_atomic(os.path.join(args.out, "results.json"),
                 json.dumps(blob, allow_nan=True).replace("NaN", "null"))
    paths = [] if args.no_plots else plot_all(args, res, rows, args.out)
    print("wrote " + ", ".join([os.path.join(args.out, "results.csv"),
                                os.path.join(args.out, "results.json")] + paths))
    print(f"total wall time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
