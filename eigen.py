"""
eigen.py -- read an image classifier's features straight from its weights: eigen-decompose a
bilinear layer and an SQS-GLU layer trained on (Fashion-)MNIST, and measure how alike their
eigenvectors are.

Sources: [SQS] arXiv:2509.01874, section 4.1, Figure 2, App. B.0.1 (spectra), B.0.2 (explanations);
         [BIL] Pearce, Dooms, Rigg, Oramas, Sharkey, arXiv:2410.08417 (model, recipe, eigen).

The model of [SQS] 4.1, trained in-process by train_mnist.py with [BIL]'s recipe (batch 2048):
    h = W_e x,   z = act(W_g h) * (W_v h),   logits = W_u z        x = pixels/255, no biases
with act = identity (the bilinear layer) or sqs(t) = (t - c sign t) / (1 + lam |t|), c = 0.01,
lam = 0.5 (p = 1). The paper's text lost the SQS formula: ours is a reconstruction from its prose,
so c and lam are parameters (--acts sqs:c,lam,p).
[SQS] says the cosine similarity of the two layers' eigenvectors is "never below .5 and .95 for the
most important eigenvectors". All gates of one seed start from the same weights, so we train two
seeds and compare bilinear vs SQS (shared and independent init) with bilinear vs bilinear (a rerun).
Expected (Fashion-MNIST, 20 epochs): two bilinear runs share their top eigenvectors (|cos| ~0.9);
SQS's are further away (mean ~0.65, one class ~0.1), so neither ".5" nor ".95" holds as stated.
In both layers the top 5 of 128 eigenvalues of a class hold about a fifth of its sum |mu| (a
flat spectrum: 4 %), SQS's a little more: App. B.0.1's "first few ... more important" holds.
The SQS gate works mostly beyond 1/lam, where the bilinear reading of its weights is poor.

    python eigen.py --dataset fashion                 # train 2 gates x 2 seeds, analyse, verdicts
    python eigen.py --quick                           # 2 epochs, for a classroom
    python eigen.py --ckpt out/eigen/fashion/ckpt.pt  # re-analyse a saved checkpoint
Writes to --out (default out/eigen/<dataset>/): ckpt.pt, eigenvectors.png, overview.png,
explanations.png, results.json.
"""
import argparse
import json
import os
import sys
import time

import matplotlib
import torch

import activations as A
import train_mnist as tm

matplotlib.use("Agg")                # files only, no display
import matplotlib.pyplot as plt     # noqa: E402  (after choosing the backend)

# ==== CONFIG: the defaults of a run, our readings of the paper's words, and its claims
DATASET = "fashion"
ACTS = "bilinear,sqs"     # the paper's two gates; sqs = sqs:0.01,0.5,1 (c, lam, p)
SEEDS = 2                 # seed 0 and an independent twin: the rerun baseline needs two
EPOCHS = 20               # [SQS] App. A.2.1
QUICK_EPOCHS = 2          # --quick
BATCH = 2048              # [SQS] 4.1 and App. A.2.1; everything else: train_mnist.py's defaults
D_MODEL = 128             # the paper's model dimension (App. A.2.2); [BIL]'s code uses 256
RANKS = 5                 # compare the top RANKS eigenvectors of each sign (+1..+5, -1..-5)
TOP_K = (1, 2, 5, 10, 20)  # the eigenvalue-concentration table: share of sum |mu| in the top k
FEW = 5                   # our reading of "the first few eigenvectors": the top 5 by |mu|
FEW_RATIO = 2.0           # of "significantly more important": mean |mu| >= 2 x the others' mean
SAME_AS_RERUN = 0.05      # new: bilinear-vs-SQS within this of bilinear-vs-bilinear = "as a rerun"
AGREE_OK = 0.95           # new: the bilinear reading of SQS holds if its argmax agrees this often

# [SQS] 4.1 and App. B.0.1, word for word, and the numbers in them
QUOTE_SIMILAR = ("the cosine similarity between the eigenvectors from these two architectures is "
                 "relatively high (never below .5 and .95 for the most important eigenvectors)")
QUOTE_FEW = ("Similarly to the properties that bilinear MLPs exhibit [2], the first few "
             "eigenvectors for a given output class are consistently significantly more important "
             "than other eigenvectors.")
PAPER_MIN = 0.5           # "never below .5"
PAPER_TOP = 0.95          # ".95 for the most important eigenvectors"

GATE_NAMES = {"identity": "bilinear", "sqs:0.01,0.5,1": "sqs"}     # the paper's two gates
CLASS_NAMES = {
    "fashion": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    "mnist": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
}
HOLDS = "holds"
FAILS = "does not hold"


# ==== The models: trained by train_mnist.py in-process (or loaded from its checkpoint), then
# read out member by member in float64

def train_models(args, out):
    """Train the ensemble with train_mnist.py and save its checkpoint -> (net, config), data."""
    cfg = args.cfg
    try:
        data = tm.load_data(args.dataset, args.data_dir)
        net = tm.Net(args.gates, range(args.seeds), d=args.d_model, layers=1,
                     use_kernel=not args.no_kernels).to(args.device)
        print(f"training {net.M} models ({args.acts} x seeds 0..{args.seeds - 1}, {args.epochs} "
              f"epochs) on {args.device}")
        res = tm.train(net, data, cfg, progress=True)
    except (tm.DataError, ValueError, RuntimeError) as e:
        fail(str(e).splitlines()[0])
    net = net.cpu()
    config = tm.checkpoint_config(cfg, net, res)
    path = os.path.join(out, "ckpt.pt")
    tm.save_checkpoint(path, net, config)
    print(f"training {res['train_s']:.0f} s; saved {path} "
          f"(re-analyse: python eigen.py --ckpt {path})")
    return (net, config), data


def members(net, gates, x):
    """float64 weights and test logits (x: N x 784 inputs) of every member whose gate is in `gates`;
    bilinear first, then in the order of `gates`."""
    net = net.double().requires_grad_(False)
    specs = [a.spec for a in gates]
    logits = torch.cat([net(chunk) for chunk in x.split(1000)], dim=1)    # M x N x C
    out = []
    m = 0
    for act in net.acts:                          # members are gate-major: m = g * S + s
        for seed in net.seeds:
            if act.spec in specs:
                gate = GATE_NAMES.get(act.spec, act.spec)
                W_gv = net.W[0][m]                # [W_g; W_v]: 2d x d
                out.append(dict(label=f"{gate} s{seed}", gate=gate, seed=seed, act=act,
                                logits=logits[m], W_e=net.W_e[m], W_g=W_gv[:net.d],
                                W_v=W_gv[net.d:], W_u=net.W_u[m]))
            m += 1
    out.sort(key=lambda member: (member["gate"] != "bilinear", specs.index(member["act"].spec)))
    return out


# ==== The decomposition
# One GLU layer, rows g_k of W_g and v_k of W_v (vectors in R^d), h = W_e x, class y:
#     logit_y = sum_k W_u[y,k] act(g_k . h) (v_k . h).
# Bilinear (act = identity): (g_k . h)(v_k . h) = h^T g_k v_k^T h, hence
#     logit_y = h^T B_y h,       B_y = sum_k W_u[y,k] g_k v_k^T          (d x d).
# Only the symmetric part Q_y = (B_y + B_y^T)/2 is ever seen: with A = (B_y - B_y^T)/2 the number
# h^T A h equals its own transpose h^T A^T h = -h^T A h, so it is 0. Q_y is real symmetric,
# Q_y = E diag(mu) E^T with eigenvalues mu_i and orthonormal eigenvectors e_i (the columns of E), so
#     logit_y = sum_i mu_i (e_i . h)^2 = sum_i mu_i ((W_e^T e_i) . x)^2
# -- exact, nothing approximated. W_e^T e_i (784 numbers) is the pixel-space eigenvector: the
# pattern whose squared match adds (mu_i > 0) or removes (mu_i < 0) evidence for class y.
#
# SQS-GLU: the gate input is t = g_k . h and sqs(t) = (t - c sign t) / (1 + lam |t|). For
# c << |t| << 1/lam,   sqs(t) = t (1 - c/|t|) (1 - lam |t| + ...) = t + O(c) + O(lam t^2),
# so h^T Q_y h built from an SQS layer's W_g, W_v, W_u is its logit only to FIRST order; we measure
# how good that reading is. Outside that range the gate is not ~identity: at |t| = 1/lam it has
# shrunk t by about half, and for |t| < c its sign is flipped.

def decompose(W_g, W_v, W_u):
    """-> eigenvalues mu (C x d) and eigenvectors E (C x d x d; E[y, :, i] = e_i of class y), each
    class's ordered by |mu|, largest first."""
    B = torch.einsum("yk,ki,kj->yij", W_u, W_g, W_v)       # B_y = sum_k W_u[y,k] g_k v_k^T
    Q = (B + B.mT) / 2
    mu, E = torch.linalg.eigh(Q)
    order = mu.abs().argsort(dim=1, descending=True)
    mu = mu.gather(1, order)
    E = E.gather(2, order[:, None, :].expand_as(E))
    return mu, E


def eigen_logits(mu, E, h):
    """sum_i mu_i (e_i . h)^2 for every class -> N x C (a bilinear layer's logits themselves)."""
    proj = torch.einsum("nd,ydi->nyi", h, E)                 # N x C x d: e_i . h
    return torch.einsum("yi,nyi->ny", mu, proj ** 2)


def topk_accuracy(mu, E, h, labels, chunk=2000):
    """Accuracy of argmax_y sum_{i<=k} mu_i (e_i . h)^2, for every k = 1..d (top k by |mu|)."""
    correct = torch.zeros(mu.shape[1], dtype=torch.long)
    for start in range(0, len(h), chunk):
        proj = torch.einsum("nd,ydi->nyi", h[start:start + chunk], E)
        partial = (mu * proj ** 2).cumsum(2)                 # N x C x k: the sum over the top k
        hits = partial.argmax(1) == labels[start:start + chunk, None]
        correct += hits.sum(0)
    return correct.double() / len(h)


def concentration(mu, ks):
    """Share of sum_i |mu_i| held by the top k eigenvalues of each class -> C x len(ks) (new)."""
    cumulative = mu.abs().cumsum(1) / mu.abs().sum(1, keepdim=True)
    columns = []
    for k in ks:
        columns.append(min(k, mu.shape[1]) - 1)
    return cumulative[:, columns]


def pixel_eigenvectors(E, W_e, h, labels):
    """W_e^T e_i for every class and i -> C x d x 784. An eigenvector's sign is arbitrary: we orient
    each so that the images of its own class project positively on average."""
    one_hot = torch.nn.functional.one_hot(labels, E.shape[0]).T.double()    # C x N
    class_sum = one_hot @ h                                  # C x d: sum of h over class y's images
    orient = torch.einsum("yd,ydi->yi", class_sum, E).sign()
    orient = torch.where(orient == 0, 1.0, orient)
    P = torch.einsum("ydi,dp->yip", E, W_e)
    return P * orient[..., None]


def first_order(m, mu, E, h, labels):
    """New: how well the bilinear reading h^T Q_y h of a gated layer's weights gives the layer's own
    logits, and where its gate inputs t = g_k . h lie (below |c|: sign flipped; beyond 1/lam: shrunk
    by half or more)."""
    logits = m["logits"]
    approx = eigen_logits(mu, E, h)
    scale = float((logits * approx).sum() / (approx * approx).sum())   # the best single rescaling
    agree = (approx.argmax(1) == logits.argmax(1)).double().mean()
    acc = (approx.argmax(1) == labels).double().mean()
    rel_err = (logits - approx).norm() / logits.norm()
    rel_err_scaled = (logits - scale * approx).norm() / logits.norm()
    t = (h @ m["W_g"].T).abs()                               # N x d: |gate inputs|
    params = m["act"].params
    beyond = float("nan")
    below_c = float("nan")
    if params.get("lam", 0) > 0:
        beyond = float((t > 1 / params["lam"]).double().mean())
    if "c" in params:
        below_c = float((t < abs(params["c"])).double().mean())
    return dict(agree=float(agree), acc=float(acc), scale=scale, rel_err=float(rel_err),
                rel_err_scaled=float(rel_err_scaled), median_t=float(t.median()),
                beyond=beyond, below_c=below_c)


def analyse(m, x, labels):
    """Decompose member m (a dict from members()) and measure it on the test set x (as the model saw
    it) -> dict of tensors and numbers."""
    h = x @ m["W_e"].T                                       # N x d
    mu, E = decompose(m["W_g"], m["W_v"], m["W_u"])
    logits = m["logits"]                                     # the model's own, N x C
    acc = float((logits.argmax(1) == labels).double().mean())
    topk = topk_accuracy(mu, E, h, labels)
    r = dict(mu=mu, E=E, h=h, logits=logits, acc=acc, topk=topk,
             P=pixel_eigenvectors(E, m["W_e"], h, labels), share=concentration(mu, TOP_K))
    five = min(4, len(topk) - 1)
    print(f"{m['label']:>12s}: test acc {acc:.4f} | accuracy of the top-k eigenvectors per class: "
          f"k=1 {topk[0]:.4f}, k=5 {topk[five]:.4f}, all {len(topk)} {topk[-1]:.4f}")
    if m["act"].name != "identity":
        r["first_order"] = first_order(m, mu, E, h, labels)
    return r


# ==== Similarity of two models' eigenvectors
# The two models' d-dimensional bases are unrelated, so we compare in pixel space, W_e^T e. An
# eigenvector's sign is arbitrary, hence |cos|. "Rank r" is the r-th most important eigenvector of
# one sign: +r belongs to the r-th largest positive mu, -r to the r-th most negative. Rank-matched
# compares +r with +r; best match compares +r with the closest of the other model's top R of the
# same sign (two nearly equal eigenvalues can swap ranks between runs).

def ranked(P, mu, R):
    """C x 2 x R x 784: per class the R most important eigenvectors of each sign (zero rows if
    there are fewer)."""
    out = P.new_zeros(P.shape[0], 2, R, P.shape[2])
    for y in range(P.shape[0]):
        positive = (mu[y] > 0).nonzero().flatten()[:R]
        negative = (mu[y] < 0).nonzero().flatten()[:R]
        out[y, 0, :len(positive)] = P[y, positive]
        out[y, 1, :len(negative)] = P[y, negative]
    return out


def unit(X):
    """Rows of X scaled to length 1; a zero row gives 0/0 = NaN, which marks a missing vector."""
    return X / X.norm(dim=-1, keepdim=True)


def similarity(A, B):
    """|cos| between two ranked sets of vectors A, B (... x r x n) -> rank-matched (A_i vs B_i) and
    best match (A_i vs its closest B_j), each ... x r; NaN where a vector is missing (zero row)."""
    cos = (unit(A) @ unit(B).mT).abs()                       # ... x r x r
    matched = cos.diagonal(dim1=-2, dim2=-1)
    best = cos.nan_to_num(-1.0).amax(-1)
    best = torch.where(best < 0, float("nan"), best)
    return matched, best


def compare(ra, rb, R):
    """-> rank-matched and best-match |cos| (C x 2 x R), and chance: the mean |cos| of the +1
    vectors of two different classes y and y + offset."""
    A = ranked(ra["P"], ra["mu"], R)
    B = ranked(rb["P"], rb["mu"], R)
    chance = []
    for offset in range(1, len(A)):
        other_class = B.roll(offset, 0)
        matched_other, _ = similarity(A[:, 0, :1], other_class[:, 0, :1])
        chance.append(matched_other)
    matched, best = similarity(A, B)
    return matched, best, float(torch.stack(chance).nanmean())


def pair_kind(a, b):
    """'<gate> vs <gate>, shared|independent init'; None for two different non-bilinear gates."""
    if a["gate"] != b["gate"] and "bilinear" not in (a["gate"], b["gate"]):
        return None
    if a["seed"] == b["seed"]:
        return f"{a['gate']} vs {b['gate']}, shared init"
    return f"{a['gate']} vs {b['gate']}, independent init"


def pair_rows(models, res, R):
    """Every pair of members, grouped by pair_kind and pooled over the pairs of a kind."""
    kinds = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            kind = pair_kind(a, b)
            if kind is not None:
                kinds.setdefault(kind, []).append(compare(res[a["label"]], res[b["label"]], R))
    rows = {}
    for kind, pairs in kinds.items():
        matched = torch.cat([p[0] for p in pairs])           # (pairs * C) x 2 x R
        best = torch.cat([p[1] for p in pairs])
        plus1 = matched[:, 0, 0]                             # the +1 eigenvectors
        minus1 = matched[:, 1, 0]                            # the -1 eigenvectors
        ranks = matched[~matched.isnan()]
        chance = sum(p[2] for p in pairs) / len(pairs)
        rows[kind] = dict(
            pairs=len(pairs), top1=float(plus1.nanmean()), min1=float(plus1[~plus1.isnan()].min()),
            min_minus1=float(minus1[~minus1.isnan()].min()),
            best_top1=float(best[:, 0, 0].nanmean()), mean=float(ranks.mean()),
            min=float(ranks.min()), below=int((ranks < PAPER_MIN).sum()), n=len(ranks),
            chance=chance, by_rank=matched.nanmean(0).flatten().tolist(),
            plus1=plus1.tolist(), minus1=minus1.tolist())
    return rows


def print_pair_table(rows, R):
    print(f"\n|cos| of pixel-space eigenvectors, rank-matched, pooled over classes and pairs "
          f"(+1: largest positive μ, -1: most negative; ±1..±{R}: the top {R} of each sign)")
    print(f"| pair | pairs | +1 mean | +1 min | -1 min | +1 best match | mean ±1..±{R} "
          f"| min ±1..±{R} | below {PAPER_MIN} | chance |")
    print("|---" * 10 + "|")
    for kind, r in rows.items():
        print(f"| {kind} | {r['pairs']} | {r['top1']:.2f} | {r['min1']:.2f} "
              f"| {r['min_minus1']:.2f} | {r['best_top1']:.2f} | {r['mean']:.2f} "
              f"| {r['min']:.2f} | {r['below']}/{r['n']} | {r['chance']:.2f} |")


def print_concentration(models, res, names):
    """New: the share of each class's sum |mu| in its top k eigenvalues (App. B.0.1, in numbers)."""
    print("\nshare of Σ|μ| in the top k eigenvalues of each class (new), mean over the classes")
    header = "| model |"
    for k in TOP_K:
        header += f" k={k} |"
    print(header + "\n" + "|---" * (len(TOP_K) + 1) + "|")
    for m in models:
        line = f"| {m['label']} |"
        for value in res[m["label"]]["share"].mean(0).tolist():
            line += f" {value:.2f} |"
        print(line)
    print(f"\nper class, k = {FEW}")
    print("| model | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    column = TOP_K.index(FEW)
    for m in models:
        shares = res[m["label"]]["share"][:, column].tolist()
        print(f"| {m['label']} | " + " | ".join(f"{v:.2f}" for v in shares) + " |")


# ==== Figures (matplotlib Agg, dpi 80, temp file + rename)

def save(fig, path):
    fig.tight_layout(pad=0.4)
    fig.savefig(path + ".tmp.png", dpi=80)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def show(ax, img, text="", cmap="RdBu_r"):
    """A 28 x 28 image; the diverging map is centred on 0, the grey map starts at 0."""
    v = float(img.abs().max()) or 1.0
    low = -v
    if cmap != "RdBu_r":
        low = 0.0
    ax.imshow(img.reshape(28, 28).numpy(), cmap=cmap, vmin=low, vmax=v)
    ax.set(xticks=[], yticks=[])
    ax.text(0.5, -0.03, text, transform=ax.transAxes, ha="center", va="top", fontsize=6)


def fig_eigenvectors(models, res, names, path, classes=5):
    """[SQS] Figure 2: top eigenvectors (+1, -1) of five classes; |cos| to the first model's."""
    fig, axes = plt.subplots(2 * len(models), classes, figsize=(1.4 * classes, 2.7 * len(models)))
    first = ranked(res[models[0]["label"]]["P"], res[models[0]["label"]]["mu"], 1)[:, :, 0]
    for mi, m in enumerate(models):
        top = ranked(res[m["label"]]["P"], res[m["label"]]["mu"], 1)[:, :, 0]    # C x 2 x 784
        for sign in (0, 1):
            row = axes[2 * mi + sign]
            rank = "+1" if sign == 0 else "−1"
            row[0].set_ylabel(f"{m['label']}\n{rank}", fontsize=7)
            for y, ax in enumerate(row):
                a = top[y, sign]
                b = first[y, sign]
                dot = float(a @ b)
                text = ""
                if mi > 0:
                    text = f"|cos| {abs(dot) / float(a.norm() * b.norm()):.2f}"
                if dot < 0:
                    a = -a                                   # align the sign with the first model's
                show(ax, a, text)
                if mi == 0 and sign == 0:
                    ax.set_title(names[y], fontsize=8)
    save(fig, path)


def fig_overview(models, res, rows, names, R, path):
    """[SQS] App. B.0.1 eigenvalue spectra per class; accuracy of the top k eigenvectors;
    similarity by rank."""
    fig, axes = plt.subplots(2, 6, figsize=(17, 5), gridspec_kw=dict(width_ratios=[1] * 5 + [1.6]))
    markers = "ox+^*vsd"
    for y, ax in enumerate(axes[:, :5].flat):
        for m, marker in zip(models, markers):
            mu = res[m["label"]]["mu"][y].sort(descending=True).values
            ax.plot((mu / mu.abs().max()).numpy(), marker, ms=2, label=m["label"])
        ax.set_title(f"{names[y]}: μ / max|μ|", fontsize=8)
        ax.tick_params(labelsize=6)
    for m in models:
        topk = res[m["label"]]["topk"]
        axes[0, 5].plot(range(1, len(topk) + 1), topk.numpy(), label=m["label"])
    axes[0, 5].set(xscale="log", xlabel="k", ylim=(0, 1),
                   title="test accuracy of the top k per class")
    ticks = [f"+{i + 1}" for i in range(R)] + [f"−{i + 1}" for i in range(R)]
    for kind, r in rows.items():
        axes[1, 5].plot(ticks, r["by_rank"], "o-", label=kind)
    axes[1, 5].axhline(PAPER_MIN, color="r", ls=":")        # the paper's .5
    axes[1, 5].axhline(PAPER_TOP, color="g", ls=":")        # the paper's .95
    if rows:
        chance = next(iter(rows.values()))["chance"]
        axes[1, 5].axhline(chance, color="k", ls=":")
    axes[1, 5].set(ylim=(0, 1.02), title="mean |cos| (dotted: .5, .95, chance)")
    axes[0, 0].legend(fontsize=6)
    axes[0, 5].legend(fontsize=6)
    axes[1, 5].legend(fontsize=5)
    save(fig, path)


def fig_explanations(models, res, images, labels, names, path, top=6):
    """[SQS] App. B.0.2: the largest contributions mu_i (e_i . h)^2 to the predicted logit of a few
    test images: three the models get right (classes 0, 1, 2) and one the last model gets wrong."""
    pred_first = res[models[0]["label"]]["logits"].argmax(1)
    pred_last = res[models[-1]["label"]]["logits"].argmax(1)
    both_right = (pred_first == labels) & (pred_last == labels)
    picks = []
    for y in range(3):
        found = (both_right & (labels == y)).nonzero().flatten()
        if len(found) > 0:
            picks.append(int(found[0]))
    wrong = (pred_last != labels).nonzero().flatten()
    if len(wrong) > 0:
        picks.append(int(wrong[0]))
    fig, axes = plt.subplots(len(picks), 1 + 2 * len(models), squeeze=False,
                             figsize=(1.6 + 4 * len(models), 1.6 * len(picks)),
                             gridspec_kw=dict(width_ratios=[1] + [2.4, 1] * len(models)))
    for row, n in zip(axes, picks):
        show(row[0], images[n], f"#{n}: {names[int(labels[n])]}", cmap="gray_r")
        for mi, m in enumerate(models):
            bar_ax = row[1 + 2 * mi]
            img_ax = row[2 + 2 * mi]
            r = res[m["label"]]
            y = int(r["logits"][n].argmax())
            contrib = r["mu"][y] * (r["h"][n] @ r["E"][y]) ** 2     # sums to the logit if bilinear
            largest = contrib.abs().argsort(descending=True)[:top]
            values = contrib[largest].flip(0)
            colors = []
            for value in values:
                if value > 0:
                    colors.append("tab:red")
                else:
                    colors.append("tab:blue")
            bar_ax.barh(range(top), values.numpy(), color=colors)
            show(img_ax, r["P"][y, largest[0]], f"largest: μ={float(r['mu'][y, largest[0]]):.2g}")
            bar_ax.set_title(f"{m['label']} → {names[y]}: logit {float(r['logits'][n, y]):.3g}, "
                             f"Σ all {float(contrib.sum()):.3g}", fontsize=6)
    save(fig, path)


# ==== Compare with the source: the paper's words, our test, our numbers, a verdict

def word(ok):
    if ok:
        return HOLDS
    return FAILS


def similarity_verdicts(rows, gate):
    """[SQS] 4.1's two numbers, judged as stated, for bilinear vs `gate` -> {key: verdict}.
    ".95 for the most important": the +1 eigenvectors' |cos| >= .95 in every class (the minimum
    over classes). "never below .5": the top eigenvector of each sign, +1 and -1, >= .5 in every
    class."""
    out = {}
    rerun = rows.get("bilinear vs bilinear, independent init")
    for init in ("shared", "independent"):
        r = rows.get(f"bilinear vs {gate}, {init} init")
        if r is None:
            continue
        top_rerun = ""
        min_rerun = ""
        if rerun is not None:
            top_rerun = f"; bilinear rerun (new): min {rerun['min1']:.2f}, mean {rerun['top1']:.2f}"
            min_rerun = (f"; bilinear rerun (new): +1 {rerun['min1']:.2f}, "
                         f"-1 {rerun['min_minus1']:.2f}")
        key = f"{gate}, {init} init: .95 for the most important"
        out[key] = word(r["min1"] >= PAPER_TOP)
        print(f"verdict: {key}: +1 |cos| min over classes {r['min1']:.2f} (paper .95), mean "
              f"{r['top1']:.2f}{top_rerun} -- {out[key]}")
        key = f"{gate}, {init} init: never below .5"
        lowest = min(r["min1"], r["min_minus1"])
        out[key] = word(lowest >= PAPER_MIN)
        print(f"verdict: {key}: min over classes +1 {r['min1']:.2f}, -1 {r['min_minus1']:.2f} "
              f"(paper .5; over ±1..±{RANKS}: {r['min']:.2f}, {r['below']}/{r['n']} below .5)"
              f"{min_rerun} -- {out[key]}")
    independent = rows.get(f"bilinear vs {gate}, independent init")
    if independent is not None and rerun is not None:
        key = f"{gate}: as alike as a bilinear rerun (new)"
        out[key] = word(independent["top1"] >= rerun["top1"] - SAME_AS_RERUN)
        print(f"verdict: {key}: +1 mean |cos| {independent['top1']:.2f} vs {rerun['top1']:.2f} "
              f"(within {SAME_AS_RERUN} counts) -- {out[key]}")
    return out


def few_ratio(share, d):
    """Mean |mu| of the top FEW eigenvalues over the mean |mu| of the other d - FEW, per class, from
    the top-FEW share of sum |mu| (share: C x len(TOP_K), from concentration())."""
    top = share[:, TOP_K.index(FEW)]
    return (top / FEW) / ((1 - top) / (d - FEW))


def few_verdict(label, share, base_label, base_share, d):
    """App. B.0.1, our reading: in every class each of the top FEW eigenvalues holds on average at
    least FEW_RATIO times the |mu| of one of the others. base_*: the bilinear layer (reference)."""
    top = share[:, TOP_K.index(FEW)]
    ratio = few_ratio(share, d)
    key = f"{label}: the first few eigenvectors are significantly more important (B.0.1)"
    verdict = word(float(ratio.min()) >= FEW_RATIO)
    reference = ""
    if base_share is not None:
        base = base_share[:, TOP_K.index(FEW)]
        reference = (f"; {base_label}: share mean {float(base.mean()):.2f}, ratio min "
                     f"{float(few_ratio(base_share, d).min()):.1f}")
    print(f"verdict: {key}: top-{FEW} share of Σ|μ| mean {float(top.mean()):.2f} (flat: "
          f"{FEW / d:.2f}); ratio min over classes {float(ratio.min()):.1f}{reference} "
          f"-- {verdict}")
    return {key: verdict}


def first_order_verdict(label, f):
    """New, not a claim of the paper: does h^T Q_y h, read from a gated layer's weights, give the
    layer's predictions?"""
    key = f"{label}: the bilinear reading of its weights (new)"
    verdict = word(f["agree"] >= AGREE_OK)
    print(f"verdict: {key}: argmax agrees on {f['agree']:.1%} of test images "
          f"(>= {AGREE_OK:.0%} counts); rel. logit error {f['rel_err']:.2f} "
          f"({f['rel_err_scaled']:.2f} after one scale {f['scale']:.2f}); gate inputs t: "
          f"median |t| {f['median_t']:.2f}, {f['beyond']:.0%} beyond 1/λ (shrunk by half or "
          f"more), {f['below_c']:.1%} below |c| (sign flipped) -- {verdict}")
    return {key: verdict}


def verdicts(models, res, rows, d):
    """Every verdict line of the run -> {key: holds|does not hold}."""
    out = {}
    gates = []
    for m in models:
        if m["gate"] != "bilinear" and m["gate"] not in gates:
            gates.append(m["gate"])
    print(f'\n== compare with [SQS] 4.1: "{QUOTE_SIMILAR}"')
    print("test: '.95 for the most important' holds if the +1 eigenvectors (largest positive μ) "
          "of bilinear and SQS have |cos| >= .95 in every class; 'never below .5' holds if the top "
          "eigenvector of each sign (+1, -1) has |cos| >= .5 in every class (rank-matched, pixel "
          "space)")
    for gate in gates:
        out.update(similarity_verdicts(rows, gate))
    print(f'\n== compare with [SQS] App. B.0.1: "{QUOTE_FEW}"')
    print(f"test (our reading; the paper gives no number): 'the first few' = the top {FEW} "
          f"eigenvalues by |μ| of a class; 'significantly more important' = their mean |μ| is at "
          f"least {FEW_RATIO:g} times the mean |μ| of the other {d - FEW} (the ratio), in every "
          f"class")
    bilinear = {}
    for m in models:
        if m["gate"] == "bilinear":
            bilinear[m["seed"]] = m["label"]
    for m in models:
        if m["gate"] == "bilinear":
            continue
        base = bilinear.get(m["seed"])
        base_share = None
        if base is not None:
            base_share = res[base]["share"]
        out.update(few_verdict(m["label"], res[m["label"]]["share"], base, base_share, d))
    print("\n== new: the first-order (bilinear) reading of the gated layers")
    for m in models:
        if "first_order" in res[m["label"]]:
            out.update(first_order_verdict(m["label"], res[m["label"]]["first_order"]))
    return out


# ==== Plumbing a student may skip: arguments, training through train_mnist.py, checkpoints

def fail(msg):
    sys.exit(f"error: {msg}")


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    p.add_argument("--dataset", choices=["mnist", "fashion"], default=DATASET,
                   help="which IDX data set to train on (default: %(default)s)")
    p.add_argument("--data-dir", help="folder with the four IDX files (default: train_mnist.py's "
                                      "lookup: system folders, then a download)")
    p.add_argument("--ckpt", metavar="PT", help="a train_mnist.py checkpoint (ckpt.pt) to analyse "
                                                "instead of training (default: none, train)")
    p.add_argument("--acts", default=ACTS,
                   help="gates to train, or to pick from --ckpt; sqs:c,lam,p sets SQS's "
                        "parameters (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=SEEDS,
                   help="seeds per gate, 0..N-1; two are needed for the rerun baseline (default: "
                        "%(default)s)")
    p.add_argument("--epochs", type=int, help=f"training epochs (default: {EPOCHS}; --quick: "
                                              f"{QUICK_EPOCHS})")
    p.add_argument("--batch", type=int, default=BATCH,
                   help="training batch size (default: %(default)s, [SQS] 4.1)")
    p.add_argument("--d-model", type=int, default=D_MODEL,
                   help="width d of W_e and of the GLU (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="training device: auto|cpu|cuda|mps; auto picks cuda, then mps, then cpu; "
                        "the analysis runs on the CPU in float64 (default: %(default)s)")
    p.add_argument("--no-kernels", action="store_true",
                   help="run the gates' plain PyTorch formulas even where the fused Triton kernels "
                        "would run (CUDA with triton), to compare eager and fused (default: "
                        "kernels on)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_EPOCHS} epochs, for a classroom; --epochs wins (default: off)")
    p.add_argument("--out", help="output folder (default: out/eigen/<dataset>/)")
    args = p.parse_args(argv)
    if args.epochs is None:                       # the one place the preset applies: flags win
        if args.quick:
            args.epochs = QUICK_EPOCHS
        else:
            args.epochs = EPOCHS
    args.cfg = tm.Config(dataset=args.dataset, acts=args.acts, seeds=args.seeds, epochs=args.epochs,
                         layers=1, batch=args.batch, d_model=args.d_model)
    try:
        args.gates = tm.check_config(args.cfg)    # train_mnist's checks: one line for a bad value
    except ValueError as e:
        p.error(str(e))
    try:                                          # a bad device: one line now, not a traceback
        args.device = tm.pick_device(args.device)
        torch.empty(1, device=args.device)
    except (RuntimeError, AssertionError) as e:   # CPU-only builds assert on "cuda"
        p.error(f"--device {args.device}: {str(e).splitlines()[0]}")
    return args


def load_checkpoint(path, data_dir, gates):
    """-> (net, config), the data of its dataset; one line on stderr for anything unusable."""
    if not os.path.isfile(path):
        fail(f"checkpoint not found: {path}")
    try:
        net, cfg = tm.load_checkpoint(path)
        if cfg["layers"] != 1 or cfg["out_proj"]:
            fail(f"{path}: layers={cfg['layers']}, out_proj={cfg['out_proj']}; eigen.py needs "
                 f"train_mnist.py --layers 1")
        held = {a.spec for a in net.acts}
        wanted = {a.spec for a in gates}
        if not held & wanted:                     # checked here, before any folder exists
            fail(f"the checkpoint holds no member with a gate in --acts {','.join(sorted(wanted))}")
        return (net, cfg), tm.load_data(cfg["dataset"], data_dir)
    except tm.DataError as e:                     # its message is one line
        fail(str(e))


def write_json(path, summary):
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".tmp", path)


def main(argv=None):
    args = get_args(argv)
    t0 = time.perf_counter()
    ckpt = None
    if args.ckpt:
        ckpt = load_checkpoint(args.ckpt, args.data_dir, args.gates)    # fails before any folder
    dataset = args.dataset
    if ckpt:
        dataset = ckpt[0][1]["dataset"]
    out = args.out or os.path.join("out", "eigen", dataset)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        fail(f"cannot create output folder {out}: {e.strerror}")
    if ckpt is None:
        ckpt = train_models(args, out)
    (net, cfg), data = ckpt
    t1 = time.perf_counter()
    # 1. every member's weights and logits, decomposed and measured
    x = tm.to_input(data["test_x"], cfg["input_mean"], cfg["input_std"]).double()
    labels = data["test_y"]
    names = CLASS_NAMES[dataset]
    models = members(net, args.gates, x)
    res = {}
    for m in models:
        res[m["label"]] = analyse(m, x, labels)
    # 2. how alike the members' eigenvectors are; how concentrated their eigenvalues are
    rows = pair_rows(models, res, RANKS)
    print_pair_table(rows, RANKS)
    print_concentration(models, res, names)
    # 3. figures, verdicts, results.json
    fig_eigenvectors(models, res, names, os.path.join(out, "eigenvectors.png"))
    fig_overview(models, res, rows, names, RANKS, os.path.join(out, "overview.png"))
    same_seed = [m for m in models if m["seed"] == models[0]["seed"]]
    shown = same_seed[:1]                         # the first and the last gate of one seed
    if len(same_seed) > 1:
        shown.append(same_seed[-1])
    images = data["test_x"].double() / 255
    fig_explanations(shown, res, images, labels, names, os.path.join(out, "explanations.png"))
    summary = dict(dataset=dataset, similarity=rows, verdicts=verdicts(models, res, rows, net.d))
    summary["models"] = {}
    for m in models:
        r = res[m["label"]]
        summary["models"][m["label"]] = dict(acc=r["acc"], topk=r["topk"].tolist(),
                                             share=r["share"].tolist(),
                                             first_order=r.get("first_order"))
    write_json(os.path.join(out, "results.json"), summary)
    done = time.perf_counter()
    stage = "loading" if args.ckpt else "training"
    print(f"\nwrote figures and results.json to {out}; wall time {done - t0:.0f} s ({stage} "
          f"{t1 - t0:.0f} s, analysis {done - t1:.0f} s)")
    if args.device.type == "cuda":
        calls = A.FUSED_CALLS
        print(f"fused kernel calls: sqs={calls['sqs']} gensilu={calls['gensilu']}")


if __name__ == "__main__":
    main()
