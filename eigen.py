"""
eigen.py -- read an image classifier's features straight from its weights: the eigen-decomposition of a
bilinear layer and of an SQS-GLU, and how alike the two are, measured against seed-to-seed variation.

Sources: [SQS] arXiv:2509.01874, section 4.1, Figure 2, Appendix B.0.1 (spectra), B.0.2 (explanations);
         [BIL] Pearce, Dooms, Rigg, Oramas, Sharkey, arXiv:2410.08417 (model, recipe, decomposition).

The model of [SQS] 4.1, trained in-process by train_mnist.py (its defaults: [BIL]'s pipeline, noise std 1
on half the training images, AdamW 1e-3, wd 0.1, cosine per epoch; here batch 2048, 20 epochs, d = 128):
    h = W_e x,  z = act(W_g h) * (W_v h),  logits = W_u z      x = pixels/255, act = identity or sqs,
    W_e: d x 784, W_g, W_v: d x d, W_u: 10 x d; no output projection, biases or residual.
[SQS] finds SQS and bilinear eigenvectors with |cos| "never below .5 and .95 for the most important". All
gates of one train_mnist seed start from the same weights, so part of that may be inherited: we train both
gates with two seeds and compare bilinear vs SQS (shared init), bilinear vs SQS (independent inits) and
bilinear vs bilinear (independent inits: how alike two runs of the SAME model are).
Expected (Fashion-MNIST): two bilinear runs share their top eigenvectors (|cos| ~0.9), SQS's differ (~0.65,
some classes < 0.1), so the paper's claims do not reproduce; its gate works mostly beyond 1/lam, not ~linearly.

    python eigen.py --dataset fashion                 # train 2 gates x 2 seeds, analyse, verdicts
    python eigen.py --quick                           # 2 epochs, for a classroom
    python eigen.py --ckpt out/eigen/fashion/ckpt.pt  # re-analyse a train_mnist.py checkpoint
Writes to --out (out/eigen/<dataset>/): ckpt.pt, eigenvectors.png, overview.png, explanations.png, results.json.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import matplotlib
import torch

import train_mnist as tm

matplotlib.use("Agg")                # files only, no display
import matplotlib.pyplot as plt     # noqa: E402  (after choosing the backend)

# ==== Config: the paper's claims and the thresholds of our verdicts
PAPER_MIN, PAPER_TOP = 0.5, 0.95   # [SQS] 4.1: |cos| "never below .5 and .95 for the most important"
TOP_OK = 0.90          # a mean top-1 |cos| we accept as "about 0.95"
SAME_AS_BASE = 0.05    # bilinear-vs-SQS within this of bilinear-vs-bilinear = "as alike as a rerun"
AGREE_OK = 0.95        # first-order reading holds if its argmax agrees with the model this often
RANKS = 5              # compare the top RANKS eigenvectors of each sign (+1..+5, -1..-5)
GATES = {"identity": "bilinear", "sqs:0.01,0.5,1": "sqs"}      # short names of the paper's two gates
NAMES = {"fashion": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                     "Bag", "Boot"], "mnist": [str(i) for i in range(10)]}


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--dataset", choices=["mnist", "fashion"], default="fashion")
    p.add_argument("--data-dir", help="folder with the four IDX files (else train_mnist.py's lookup/download)")
    p.add_argument("--ckpt", metavar="PT", help="a train_mnist.py checkpoint (ckpt.pt) to analyse instead of training")
    p.add_argument("--acts", default="bilinear,sqs", help="gates to train or to pick from --ckpt (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per gate (default 2: seed 0 and an independent twin)")
    p.add_argument("--epochs", type=int, help="default 20 ([SQS] A.2.1); --quick: 2")
    p.add_argument("--d-model", type=int, default=128, help="width d of W_e and of the GLU (default %(default)s)")
    p.add_argument("--device", default="auto", help="training: auto|cpu|cuda|mps (the analysis runs on the CPU in float64)")
    p.add_argument("--quick", action="store_true", help="2 epochs")
    p.add_argument("--out", help="output folder (default out/eigen/<dataset>/)")
    args = p.parse_args(argv)
    if args.epochs is None:                         # the one place the preset applies: explicit flags win
        args.epochs = 2 if args.quick else 20
    args.cfg = tm.Config(dataset=args.dataset, acts=args.acts, seeds=args.seeds, epochs=args.epochs, layers=1,
                         batch=2048, d_model=args.d_model)                 # [SQS] A.2.1; the rest: defaults
    try:
        args.gates = tm.check_config(args.cfg)      # train_mnist's checks: one line for a bad value
    except ValueError as e:
        p.error(str(e))
    try:                                            # an unusable device: one line now, not a traceback later
        args.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
        torch.empty(1, device=args.device)
    except (RuntimeError, AssertionError) as e:     # CPU-only builds assert on "cuda"
        p.error(f"--device {args.device}: {str(e).splitlines()[0]}")
    return args


def fail(msg):
    sys.exit(f"error: {msg}")


# ==== Models: train the ensemble with train_mnist.py, or load its checkpoints; one dict per member

def train_models(args, out):
    cfg = args.cfg
    try:
        data = tm.load_data(args.dataset, args.data_dir)
        net = tm.Net(args.gates, range(args.seeds), d=args.d_model, layers=1).to(args.device)
        print(f"training {net.M} models ({args.acts} x seeds 0..{args.seeds - 1}, {args.epochs} epochs) on {args.device}")
        res = tm.train(net, data, cfg, progress=True)
    except (tm.DataError, ValueError, RuntimeError) as e:
        fail(str(e).splitlines()[0])
    net, path = net.cpu(), os.path.join(out, "ckpt.pt")
    config = {**dataclasses.asdict(cfg), "acts": [a.spec for a in net.acts], "seeds": net.seeds,
              **{k: res[k] for k in ("input_mean", "input_std", "step")}, "test_acc": res["test_acc"].tolist()}
    tm.save_checkpoint(path, net, config)
    print(f"training {res['train_s']:.0f} s; saved {path} (re-analyse: python eigen.py --ckpt {path})")
    return (net, config), data


def load_checkpoint(path, data_dir, gates):
    """-> (net, config), the test data of its dataset; one line on stderr for anything unusable."""
    if not os.path.isfile(path):
        fail(f"checkpoint not found: {path}")
    try:
        net, cfg = tm.load_checkpoint(path)
        if cfg["layers"] != 1 or cfg["out_proj"]:
            fail(f"{path}: layers={cfg['layers']}, out_proj={cfg['out_proj']}; eigen.py needs train_mnist.py --layers 1")
        if not {a.spec for a in net.acts} & {a.spec for a in gates}:    # checked here, before any folder exists
            fail(f"the checkpoint holds no member with a gate in --acts {','.join(a.spec for a in gates)}")
        return (net, cfg), tm.load_data(cfg["dataset"], data_dir)
    except tm.DataError as e:                                               # its message is one line
        fail(str(e))


def members(net, gates, x):
    """float64 weights and test logits (x: N x 784 inputs) of every member whose gate is in `gates`."""
    net, out, specs = net.double().requires_grad_(False), [], [a.spec for a in gates]
    logits = torch.cat([net(xc) for xc in x.split(1000)], dim=1)          # the models themselves: M x N x C
    for m, (act, seed) in enumerate([(a, s) for a in net.acts for s in net.seeds]):     # gate-major
        if act.spec in specs:
            d, gate = net.d, GATES.get(act.spec, act.spec)
            out.append(dict(label=f"{gate} s{seed}", gate=gate, seed=seed, act=act, logits=logits[m], W_e=net.W_e[m],
                            W_g=net.W[0][m, :d], W_v=net.W[0][m, d:], W_u=net.W_u[m]))   # W[0] = [W_g; W_v]
    return sorted(out, key=lambda m: (m["gate"] != "bilinear", specs.index(m["act"].spec)))


# ==== The decomposition
# One GLU layer, rows g_k of W_g and v_k of W_v (vectors in R^d), h = W_e x:
#     logit_c = sum_k W_u[c,k] act(g_k . h) (v_k . h).
# Bilinear (act = identity): (g_k . h)(v_k . h) = h^T g_k v_k^T h, hence
#     logit_c = h^T B_c h,       B_c = sum_k W_u[c,k] g_k v_k^T          (d x d).
# Only the symmetric part Q_c = (B_c + B_c^T)/2 is ever seen: with A = (B_c - B_c^T)/2 the scalar h^T A h
# equals its own transpose h^T A^T h = -h^T A h, so it is 0. Q_c is real symmetric, Q_c = V diag(lam) V^T
# with orthonormal columns v_i of V, and
#     logit_c = h^T V diag(lam) V^T h = sum_i lam_i (v_i . h)^2 = sum_i lam_i ((W_e^T v_i) . x)^2
# -- exact, nothing approximated. W_e^T v_i (784 numbers) is the pixel-space eigenvector: the pattern whose
# squared match adds (lam_i > 0) or removes (lam_i < 0) evidence for class c.
#
# SQS-GLU: act(s) = (s - c sign s) / (1 + lam_s |s|)  (p = 1). For c << |s| << 1/lam_s,
#     act(s) = s (1 - c/|s|) (1 - lam_s |s| + ...) = s + O(c) + O(lam_s s^2),
# so the SQS layer is the bilinear layer built from its W_g, W_v, W_u only to FIRST order: logit_c ~ h^T Q_c h,
# an approximation whose quality we measure. Outside that range the gate is not ~identity: at |s| = 1/lam_s
# it has shrunk s by half (act(s) ~ s/2), and for |s| < c it has the opposite sign.

def decompose(W_g, W_v, W_u):
    """-> lam (C x d) and V (C x d x d), V[c, :, i] = v_i of class c, ordered by |lam|, largest first."""
    B = torch.einsum("ck,ki,kj->cij", W_u, W_g, W_v)        # B_c = sum_k W_u[c,k] g_k v_k^T
    lam, V = torch.linalg.eigh((B + B.mT) / 2)              # Q_c = (B_c + B_c^T) / 2
    order = lam.abs().argsort(dim=1, descending=True)
    return lam.gather(1, order), V.gather(2, order[:, None, :].expand_as(V))


def eigen_logits(lam, V, h):
    """sum_i lam_i (v_i . h)^2 for every class -> N x C (the logits themselves, for a bilinear layer)."""
    return torch.einsum("ci,nci->nc", lam, torch.einsum("nd,cdi->nci", h, V) ** 2)


def topk_accuracy(lam, V, h, y, chunk=2000):
    """Accuracy of argmax_c sum_{i<=k} lam_i (v_i . h)^2, for every k = 1..d (top-k by |lam|)."""
    correct = torch.zeros(lam.shape[1], dtype=torch.long)
    for s in range(0, len(h), chunk):
        contrib = lam * torch.einsum("nd,cdi->nci", h[s:s + chunk], V) ** 2    # N x C x d
        correct += (contrib.cumsum(2).argmax(1) == y[s:s + chunk, None]).sum(0)
    return correct.double() / len(h)


def analyse(m, x, y):
    """Decompose member m; measure on the test set (x as the model saw it) -> dict of tensors and numbers."""
    h = x @ m["W_e"].T                                                      # N x d
    lam, V = decompose(m["W_g"], m["W_v"], m["W_u"])
    # pixel-space eigenvectors W_e^T v_i (C x d x 784); a sign is arbitrary: orient each so that the
    # images of its class project positively on average
    s = torch.einsum("cd,cdi->ci", torch.nn.functional.one_hot(y, len(lam)).T.double() @ h, V).sign()
    P = torch.einsum("cdi,dp->cip", V, m["W_e"]) * torch.where(s == 0, 1.0, s)[..., None]
    logits, topk = m["logits"], topk_accuracy(lam, V, h, y)              # logits: the model itself, N x C
    acc = float((logits.argmax(1) == y).double().mean())
    r = dict(lam=lam, V=V, P=P, h=h, logits=logits, acc=acc, topk=topk)
    print(f"{m['label']:>12s}: test acc {acc:.4f} | accuracy of the top-k eigenvectors per class: k=1 {topk[0]:.4f}, "
          f"k=5 {topk[min(4, len(topk) - 1)]:.4f}, all {len(topk)} {topk[-1]:.4f}")
    if m["act"].name == "identity":
        return r
    # A gated model: how well the bilinear reading h^T Q_c h reproduces its logits, and how often its
    # gate inputs s = g_k . h leave the quasi-linear range c < |s| < 1/lam_s
    approx, s, p = eigen_logits(lam, V, h), (h @ m["W_g"].T).abs(), m["act"].params
    scale = float((logits * approx).sum() / (approx * approx).sum())     # a uniform shrink only rescales
    r["first_order"] = dict(agree=float((approx.argmax(1) == logits.argmax(1)).double().mean()),
                            acc=float((approx.argmax(1) == y).double().mean()), scale=scale,
                            rel_err=float((logits - approx).norm() / logits.norm()),
                            rel_err_scaled=float((logits - scale * approx).norm() / logits.norm()),
                            median_s=float(s.median()),
                            beyond=float((s > 1 / p["lam"]).double().mean()) if p.get("lam") else float("nan"),
                            below_c=float((s < abs(p["c"])).double().mean()) if "c" in p else float("nan"))
    return r


# ==== Similarity of two models' eigenvectors
# The two models' d-dimensional bases are unrelated, so we compare in pixel space, W_e^T v. An
# eigenvector's sign is arbitrary, hence |cos|. "Rank r" is the r-th most important eigenvector of one
# sign: +r the r-th largest positive lam, -r the r-th most negative. Rank-matched compares +r with +r;
# best match compares +r with the closest of the other model's top-R of the same sign (two nearly equal
# eigenvalues can swap ranks between runs).

def ranked(P, lam, R):
    """C x 2 x R x 784: per class the R most important eigenvectors of each sign (zero rows if fewer)."""
    out = P.new_zeros(P.shape[0], 2, R, P.shape[2])
    for c in range(P.shape[0]):
        for j, idx in enumerate([(lam[c] > 0).nonzero().flatten()[:R], (lam[c] < 0).nonzero().flatten()[:R]]):
            out[c, j, :len(idx)] = P[c, idx]
    return out


def similarity(A, B):
    """|cos| between two ranked sets of vectors A, B (... x r x n) -> rank-matched (A_i vs B_i) and best
    match (A_i vs its closest B_j), each ... x r; NaN where a vector is missing (a zero row)."""
    unit = lambda X: X / X.norm(dim=-1, keepdim=True)                     # 0/0 = NaN marks a missing one
    cos = (unit(A) @ unit(B).mT).abs()                                     # ... x r x r
    best = cos.nan_to_num(-1.0).amax(-1)
    return cos.diagonal(dim1=-2, dim2=-1), torch.where(best < 0, float("nan"), best)


def compare(ra, rb, R):
    """-> rank-matched, best match (C x 2 x R), chance: |cos| of +1 vectors of classes c and c + k != c."""
    A, B = ranked(ra["P"], ra["lam"], R), ranked(rb["P"], rb["lam"], R)
    chance = torch.stack([similarity(A[:, 0, :1], B.roll(k, 0)[:, 0, :1])[0] for k in range(1, len(A))])
    return *similarity(A, B), float(chance.nanmean())


def pair_table(models, res, R):
    """Every pair of members, grouped by kind ('<gate> vs <gate>, shared|independent init') and pooled."""
    kinds = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            kind = f"{a['gate']} vs {b['gate']}, {'shared' if a['seed'] == b['seed'] else 'independent'} init"
            kinds.setdefault(kind, []).append(compare(res[a["label"]], res[b["label"]], R))
    rows = {}
    for kind, pairs in kinds.items():
        match, best = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])   # (pairs*C) x 2 x R
        v = match[~match.isnan()]
        t = match[:, 0, 0][~match[:, 0, 0].isnan()]                        # the +1 eigenvectors
        rows[kind] = dict(pairs=len(pairs), top1=float(t.mean()), min1=float(t.min()),
                          best_top1=float(best[:, 0, 0].nanmean()), mean=float(v.mean()), min=float(v.min()),
                          below=int((v < PAPER_MIN).sum()), n=len(v), chance=sum(p[2] for p in pairs) / len(pairs),
                          by_rank=match.nanmean(0).flatten().tolist(), plus1=match[:, 0, 0].tolist())
    print(f"\n|cos| of pixel-space eigenvectors, pooled over classes and pairs (+1: largest positive lam; ±1..±{R}:"
          f" the top {R} of each sign, rank-matched)\n| pair | pairs | +1 mean | +1 min | +1 best match | "
          f"mean ±1..±{R} | min ±1..±{R} | below {PAPER_MIN} | chance |\n" + "|---" * 9 + "|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['pairs']} | {r['top1']:.2f} | {r['min1']:.2f} | {r['best_top1']:.2f} | {r['mean']:.2f} "
              f"| {r['min']:.2f} | {r['below']}/{r['n']} | {r['chance']:.2f} |")
    return rows


# ==== Figures (matplotlib Agg, dpi 80, temp file + rename)

def save(fig, path):
    fig.tight_layout(pad=0.4)
    fig.savefig(path + ".tmp.png", dpi=80)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def show(ax, img, text="", cmap="RdBu_r"):
    v = float(img.abs().max()) or 1.0
    ax.imshow(img.reshape(28, 28).numpy(), cmap=cmap, vmin=-v * (cmap == "RdBu_r"), vmax=v)
    ax.set(xticks=[], yticks=[])
    ax.text(0.5, -0.03, text, transform=ax.transAxes, ha="center", va="top", fontsize=6)


def fig_eigenvectors(models, res, names, path, classes=5):
    """[SQS] Figure 2: top eigenvectors (+1, -1) of five classes; |cos| to the first model's, sign aligned."""
    top = [ranked(res[m["label"]]["P"], res[m["label"]]["lam"], 1)[:, :, 0] for m in models]   # C x 2 x 784
    fig, axes = plt.subplots(2 * len(models), classes, figsize=(1.4 * classes, 2.7 * len(models)))
    for (mi, j), row in zip([(mi, j) for mi in range(len(models)) for j in (0, 1)], axes):
        row[0].set_ylabel(f"{models[mi]['label']}\n{'+1' if j == 0 else '−1'}", fontsize=7)
        for c, ax in enumerate(row):
            a, b = top[mi][c, j], top[0][c, j]
            show(ax, a * (1 if a @ b >= 0 else -1), f"|cos| {float((a @ b).abs() / a.norm() / b.norm()):.2f}" * (mi > 0))
            ax.set_title(names[c] * (mi == j == 0), fontsize=8)
    save(fig, path)


def fig_overview(models, res, rows, names, R, path):
    """[SQS] App. B.0.1 eigenvalue spectra per class; accuracy of the top-k eigenvectors; similarity by rank."""
    fig, axes = plt.subplots(2, 6, figsize=(17, 5), gridspec_kw=dict(width_ratios=[1] * 5 + [1.6]))
    for c, ax in enumerate(axes[:, :5].flat):
        for m, mk in zip(models, "ox+^"):
            lam = res[m["label"]]["lam"][c].sort(descending=True).values
            ax.plot((lam / lam.abs().max()).numpy(), mk, ms=2, label=m["label"])
        ax.set_title(f"{names[c]}: λ / max|λ|", fontsize=8), ax.tick_params(labelsize=6)
    for m in models:
        axes[0, 5].plot(range(1, len(res[m["label"]]["topk"]) + 1), res[m["label"]]["topk"].numpy(), label=m["label"])
    axes[0, 5].set(xscale="log", xlabel="k", title="test accuracy of the top-k per class", ylim=(0, 1))
    for kind, r in rows.items():
        axes[1, 5].plot([f"+{i + 1}" for i in range(R)] + [f"−{i + 1}" for i in range(R)], r["by_rank"], "o-", label=kind)
    for v, c in ((PAPER_MIN, "r"), (PAPER_TOP, "g"), (next(iter(rows.values()), {}).get("chance", 0), "k")):
        axes[1, 5].axhline(v, color=c, ls=":")                         # paper's 0.5 and 0.95; chance level
    axes[1, 5].set(ylim=(0, 1.02), title="mean |cos| (dotted: 0.5, 0.95, chance)")
    axes[0, 0].legend(fontsize=6), axes[0, 5].legend(fontsize=6), axes[1, 5].legend(fontsize=5)
    save(fig, path)


def fig_explanations(models, res, x, y, names, path, top=6):
    """[SQS] App. B.0.2: top contributions lam_i (v_i . h)^2 to the predicted logit of a few test images."""
    pred = [res[m["label"]]["logits"].argmax(1) for m in models]
    ok = (pred[0] == y) & (pred[-1] == y)
    picks = [int((ok & (y == c)).nonzero()[0]) for c in range(3) if (ok & (y == c)).any()]
    picks += (pred[-1] != y).nonzero().flatten()[:1].tolist()
    fig, axes = plt.subplots(len(picks), 1 + 2 * len(models), figsize=(1.6 + 4 * len(models), 1.6 * len(picks)),
                             squeeze=False, gridspec_kw=dict(width_ratios=[1] + [2.4, 1] * len(models)))
    for row, n in zip(axes, picks):
        show(row[0], x[n], f"#{n}: {names[int(y[n])]}", cmap="gray_r")
        for ax, im, m in zip(row[1::2], row[2::2], models):
            r = res[m["label"]]
            c = int(r["logits"][n].argmax())
            contrib = r["lam"][c] * (r["h"][n] @ r["V"][c]) ** 2      # sum = the logit, for a bilinear layer
            i = contrib.abs().argsort(descending=True)[:top]                 # the largest contributions
            v = contrib[i].flip(0)
            ax.barh(range(top), v.numpy(), color=[("tab:blue", "tab:red")[e > 0] for e in v])
            show(im, r["P"][c, i[0]], f"largest: λ={float(r['lam'][c, i[0]]):.2g}")
            ax.set_title(f"{m['label']} → {names[c]}: logit {float(r['logits'][n, c]):.3g}, Σ all "
                         f"{float(contrib.sum()):.3g}", fontsize=6)
    save(fig, path)


# ==== Compare with the source: verdict lines computed from the numbers above

def verdicts(models, res, rows, R):
    out, other = {}, next((m["gate"] for m in models if m["gate"] != "bilinear"), None)

    def say(key, ok, text, words=("REPRODUCED", "NOT REPRODUCED")):
        out[key] = ok
        print(f"verdict: {text} -- {words[not ok]}")
    BB = rows.get("bilinear vs bilinear, independent init")
    bb = lambda k: f"; bilinear vs bilinear: {BB[k]:.2f}" if BB else ""
    print(f"\n== compare with [SQS] §4.1 (|cos| never below 0.5, ≈0.95 for the most important) and App. B")
    for init in ("shared", "independent"):
        if r := rows.get(f"bilinear vs {other}, {init} init"):
            say(f"never_below_0.5 ({init} init)", r["min1"] >= PAPER_MIN, f"never below 0.5, bilinear vs {other}, "
                f"{init} init: min |cos| of the +1 eigenvectors {r['min1']:.2f}, of ±1..±{R} {r['min']:.2f} "
                f"({r['below']}/{r['n']} below){bb('min1')}")
            say(f"top_0.95 ({init} init)", r["top1"] >= TOP_OK, f"≈0.95 for the most important, bilinear vs {other},"
                f" {init} init: mean |cos| of the +1 eigenvectors {r['top1']:.2f} (≥ {TOP_OK} counts; best match "
                f"{r['best_top1']:.2f}){bb('top1')}")
    if (I := rows.get(f"bilinear vs {other}, independent init")) and BB:
        say("as_alike_as_a_rerun", I["top1"] >= BB["top1"] - SAME_AS_BASE, f"{other}'s eigenvectors are as close to "
            f"bilinear's as a second bilinear run's (within {SAME_AS_BASE}): +1 |cos| {I['top1']:.2f} vs {BB['top1']:.2f}, "
            f"mean over ±1..±{R} {I['mean']:.2f} vs {BB['mean']:.2f}", ("HOLDS", "DOES NOT HOLD"))
    for m in [m for m in models if m["seed"] == models[0]["seed"]]:
        r, d = res[m["label"]], len(res[m["label"]]["topk"])
        k = int((r["topk"] >= r["acc"] - 0.01).nonzero()[0]) + 1 if (r["topk"] >= r["acc"] - 0.01).any() else None
        say(f"few_eigenvectors {m['label']}", (k or d + 1) <= max(10, d // 10), f"App. B.0.1, a few eigenvectors carry "
            f"each class ({m['label']}): the top {k or '(none)'} of {d} come within 1 point of the model's accuracy "
            f"{r['acc']:.4f} (few: ≤ {max(10, d // 10)})")
        if f := r.get("first_order"):
            say(f"first_order {m['label']}", f["agree"] >= AGREE_OK, f"the bilinear reading hᵀQ_c h of {m['label']}: "
                f"argmax agrees on {f['agree']:.1%} of test images (≥ {AGREE_OK:.0%} counts), rel. logit error "
                f"{f['rel_err']:.2f} ({f['rel_err_scaled']:.2f} after one scale {f['scale']:.2f}); gate inputs: median "
                f"|s| {f['median_s']:.2f}, {f['beyond']:.0%} > 1/λ (shrunk by half or more), {f['below_c']:.1%} < |c| "
                f"(sign flipped)", ("HOLDS", "DOES NOT HOLD"))
    return out


def main(argv=None):
    args = get_args(argv)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(args.ckpt, args.data_dir, args.gates) if args.ckpt else None  # fails before mkdir
    dataset = ckpt[0][1]["dataset"] if ckpt else args.dataset
    out = args.out or os.path.join("out", "eigen", dataset)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        fail(f"cannot create output folder {out}: {e.strerror}")
    (net, cfg), data = ckpt or train_models(args, out)
    t1 = time.perf_counter()
    x, y = tm.to_input(data["test_x"], cfg["input_mean"], cfg["input_std"]).double(), data["test_y"]
    names = NAMES[dataset]
    models = members(net, args.gates, x)
    res = {m["label"]: analyse(m, x, y) for m in models}
    rows = pair_table(models, res, RANKS)
    fig_eigenvectors(models, res, names, os.path.join(out, "eigenvectors.png"))
    fig_overview(models, res, rows, names, RANKS, os.path.join(out, "overview.png"))
    same = [m for m in models if m["seed"] == models[0]["seed"]]
    fig_explanations(same[:1] + same[1:][-1:], res, data["test_x"].double() / 255, y, names,
                     os.path.join(out, "explanations.png"))
    summary = dict(dataset=dataset, similarity=rows, verdicts=verdicts(models, res, rows, RANKS), models={
        m["label"]: dict(acc=r["acc"], topk=r["topk"].tolist(), first_order=r.get("first_order"))
        for m, r in zip(models, res.values())})
    with open(os.path.join(out, "results.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(os.path.join(out, "results.json.tmp"), os.path.join(out, "results.json"))
    print(f"\nwrote figures and results.json to {out}; wall time {time.perf_counter() - t0:.0f} s "
          f"({'loading' if args.ckpt else 'training'} {t1 - t0:.0f} s, analysis {time.perf_counter() - t1:.0f} s)")


if __name__ == "__main__":
    main()
