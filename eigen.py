"""
eigen.py -- read an image classifier's features straight from its weights: the eigen-decomposition
of a bilinear layer and of an SQS-GLU, side by side.

Reproduces section 4.1 and Appendix B of [SQS], which applies the recipe of [BIL] to SQS-GLU weights:

  [SQS] "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation Function",
        arXiv:2509.01874 -- section 4.1, Figure 2, Appendix B.0.1 (spectra), B.0.2 (explanations)
  [BIL] Pearce, Dooms, Rigg, Oramas, Sharkey, "Bilinear MLPs enable weight-based mechanistic
        interpretability", arXiv:2410.08417

The model is the paper's section 4.1 network, trained by train_mnist.py (--layers 1 --no-residual):

    h      = W_e x                          x = pixels / 255 in [0, 1] (or standardised),  W_e: d_model x 784
    z      = act(W_g h) * (W_v h)           one GLU, d_hidden units, act = identity (bilinear) or sqs
    logits = W_head (W_out z)               no biases, no residual, no normalisation

Without --ckpt this script trains both models first by running train_mnist.py as a subprocess
(20 epochs of Fashion-MNIST take about a minute here); the analysis itself needs only the weight
tensors and the 10,000 test images, and takes seconds (budget: < 30 s on 2 CPU cores for d = 128,
both gates, 10 classes, all figures; timed in the README).

    python eigen.py --dataset fashion                       # train bilinear + SQS, then analyse
    python eigen.py --ckpt out/eigen/fashion/train/ckpt_*.pt # analyse existing checkpoints
    python eigen.py --quick                                 # 2 epochs, for a classroom

Outputs in --out (default out/eigen/<dataset>/): eigenvectors.png (Figure-2 layout), spectra.png,
similarity.png + similarity.md (cosine table), explanations.png, topk_accuracy.png + topk.csv,
results.json; verdicts for the paper's claims are printed at the end.
"""
import argparse
import glob
import gzip
import json
import math
import os
import subprocess
import sys
import time

# Idle OpenMP threads sleep instead of spinning: on this shared 2-core machine a spinning thread pool
# made one batched eigh take 8-10 s instead of 0.05 s whenever the other core was busy (measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402  (after the OpenMP setting, which is read when the runtime starts)

from activations import parse_act, parse_acts

# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
FASHION = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Boot"]
DIGITS = [str(i) for i in range(10)]


def get_args(argv=None):
    p = argparse.ArgumentParser(
        description="Eigen-decomposition of bilinear and SQS-GLU classifier weights "
                    "(SQS paper section 4.1 + Appendix B, Pearce et al. recipe).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=["mnist", "fashion"], default="fashion",
                   help="dataset to train on (ignored with --ckpt: the checkpoint says)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the four IDX files (.gz or raw); default: ./data/<dataset>/, "
                        "then /usr/share/datasets/<dataset>/ (fashion: .../fashion-mnist/)")
    p.add_argument("--ckpt", nargs="+", default=None, metavar="PT",
                   help="one or two train_mnist.py checkpoints (ckpt_*.pt) to analyse instead of "
                        "training; a bilinear and an SQS one enable the comparison")
    p.add_argument("--acts", default="bilinear,sqs",
                   help="gates to train when no --ckpt is given (1 or 2 registry specs)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (paper: 20)")
    p.add_argument("--d-model", type=int, default=128, help="embedding width d (paper: 128)")
    p.add_argument("--hidden", type=int, default=128, help="GLU hidden width (paper: unstated)")
    p.add_argument("--input", choices=["pixels01", "standard"], default="pixels01",
                   help="training input: pixels/255 (the paper's reading here) or standardised pixels "
                        "(train_mnist.py --input; a reading where the bilinear model trains well)")
    p.add_argument("--device", default="auto", help="training device, passed to train_mnist.py "
                   "(the analysis runs on the CPU in float64)")
    p.add_argument("--quick", action="store_true", help="train for 2 epochs only (seconds)")
    p.add_argument("--out", default=None, help="output directory (default out/eigen/<dataset>/)")
    p.add_argument("--ranks", type=int, default=5,
                   help="how many top positive and negative eigenvectors to compare per class")
    p.add_argument("--control", action="store_true",
                   help="also train an independently initialised twin of each model (own short loop, "
                        "same recipe) and compare: train_mnist.py starts all gates of a seed from the "
                        "SAME weights, so part of the bilinear/SQS similarity could be inherited")
    p.add_argument("--explain", default="auto",
                   help="test-image indices to explain, e.g. 0,1,2; 'auto' = one correct image of "
                        "each of three classes + the first image the second model gets wrong")
    args = p.parse_args(argv)
    try:
        args.gates = parse_acts(args.acts)
    except ValueError as e:
        p.error(str(e))
    if not 1 <= len(args.gates) <= 2:
        p.error(f"--acts: give one or two gates, got {len(args.gates)}")
    if args.ckpt is not None and len(args.ckpt) > 2:
        p.error(f"--ckpt: give one or two checkpoints, got {len(args.ckpt)}")
    if min(args.epochs, args.ranks, args.d_model, args.hidden) < 1:
        p.error("--epochs, --ranks, --d-model and --hidden must be >= 1")
    if args.quick:
        args.epochs = min(args.epochs, 2)
    if args.explain != "auto":
        try:
            args.explain = [int(s) for s in args.explain.split(",") if s.strip()]
        except ValueError:
            p.error(f"--explain: expected 'auto' or comma-separated integers, got {args.explain!r}")
    return args


def fail(msg):
    sys.exit(f"error: {msg}")


def atomic_savefig(fig, path):
    fig.savefig(path + ".tmp", format="png", dpi=80)   # README-sized: < 200 KB each
    os.replace(path + ".tmp", path)


def atomic_write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------------------
# Data: a minimal IDX reader for the test split (train_mnist.py has the full loader + download)
# ------------------------------------------------------------------------------------------------
# IDX: big-endian int32 magic (2051 images / 2049 labels), int32 counts (and 28, 28), then uint8.

def read_idx(path, magic):
    try:
        with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        fail(f"cannot read {path}: {e}")
    ndim = 3 if magic == 2051 else 1
    if len(raw) < 4 + 4 * ndim or int.from_bytes(raw[:4], "big") != magic:
        fail(f"{path}: not an IDX file with magic {magic}")
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    if len(body) != math.prod(shape) or (ndim == 3 and shape[1:] != [28, 28]):
        fail(f"{path}: header says shape {shape} but holds {len(body)} bytes (truncated or corrupt)")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def find_file(dirs, name):
    for d in dirs:
        for n in (name + ".gz", name):
            if d and os.path.isfile(os.path.join(d, n)):
                return os.path.join(d, n)
    fail(f"{name}(.gz) not found in {', '.join(d for d in dirs if d)}; run train_mnist.py "
         f"--dataset ... once (it downloads) or pass --data-dir")


def load_split(dataset, data_dir, split="t10k", dtype=torch.float64):
    """One split ('t10k' = test, 'train') as x in [0, 1] (N x 784) and labels (N,)."""
    sub = "fashion-mnist" if dataset == "fashion" else "mnist"   # train_mnist.py's folder names
    dirs = [data_dir] if data_dir else [os.path.join("data", sub), os.path.join("data", dataset),
                                        os.path.join("/usr/share/datasets", sub)]
    xpath, ypath = find_file(dirs, f"{split}-images-idx3-ubyte"), find_file(dirs, f"{split}-labels-idx1-ubyte")
    x, y = read_idx(xpath, 2051), read_idx(ypath, 2049)
    if len(x) != len(y):
        fail(f"{xpath} has {len(x)} images but {ypath} has {len(y)} labels")
    return x.reshape(len(x), -1).to(dtype) / 255, y.long()


# ------------------------------------------------------------------------------------------------
# Checkpoints (format written by train_mnist.py)
# ------------------------------------------------------------------------------------------------
# Folding the head. The block's output projection W_out (d_model x d_hidden) is followed directly by
# the head W_head (10 x d_model): no residual, bias, norm or nonlinearity sits between them, so
#     logits = W_head (W_out z) = (W_head W_out) z = W_u z,     W_u := W_head W_out  (10 x d_hidden)
# for every input z -- matrix multiplication is associative. Replacing the two matrices by their
# product is therefore exact, not an approximation; it just hides a factorisation the analysis does
# not need. (With a residual, logits would get an extra *linear* term W_head W_e x that no quadratic
# form can hold, and with two layers the logits are quartic in x -- so we refuse those checkpoints.)

def load_model(path):
    """-> dict(cfg, act, label, We, Wg, Wv, Wu) with float64 tensors; one clear line on any problem."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail(f"checkpoint not found: {path}")
    except Exception as e:  # pickle/zip errors: keep only the first line of the reason
        fail(f"cannot load checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if not isinstance(ck, dict) or not isinstance(ck.get("config"), dict) \
            or not isinstance(ck.get("state_dict"), dict):
        fail(f"{path}: not a train_mnist.py checkpoint (need a dict with 'config' and 'state_dict')")
    cfg, sd = ck["config"], ck["state_dict"]
    missing = [k for k in ("act", "dataset", "layers", "residual", "d_model", "d_hidden") if k not in cfg]
    if missing:
        fail(f"{path}: config lacks {', '.join(missing)}")
    if cfg["dataset"] not in ("mnist", "fashion"):
        fail(f"{path}: config dataset {cfg['dataset']!r} is neither 'mnist' nor 'fashion'")
    if cfg["layers"] != 1 or cfg["residual"]:
        fail(f"{path}: eigen.py reads the section-4.1 model (layers=1, residual=False), got "
             f"layers={cfg['layers']}, residual={cfg['residual']}; train it with train_mnist.py "
             f"--layers 1 --no-residual")
    if not cfg.get("glu", True):
        fail(f"{path}: a plain (non-gated) MLP checkpoint; eigen.py needs a GLU (gate and value)")
    # What the model saw: pixels/255 ('pixels01'), or ('standard') (pixels/255 - mean) / std with the
    # training set's scalar mean and std. A scalar affine map of x changes no direction in pixel space,
    # so the analysis below runs unchanged on model_input(m, x); only the images shown stay raw.
    inp = cfg.get("input", "pixels01")
    if inp == "pixels01":
        mean, std = 0.0, 1.0
    elif inp == "standard":
        mean, std = cfg.get("input_mean"), cfg.get("input_std")
        if not (isinstance(mean, float) and isinstance(std, float) and std > 0):
            fail(f"{path}: input 'standard' needs config input_mean and input_std > 0 (retrain with a "
                 f"current train_mnist.py), got {mean!r}, {std!r}")
    else:
        fail(f"{path}: config input {inp!r} is neither 'pixels01' nor 'standard'")
    try:
        act = parse_act(cfg["act"])
    except (ValueError, TypeError, AttributeError) as e:   # unknown name, bad parameters, not a string
        fail(f"{path}: config act {cfg['act']!r}: {e}")
    d, dh = cfg["d_model"], cfg["d_hidden"]
    if not all(isinstance(v, int) and v >= 1 for v in (d, dh)):
        fail(f"{path}: config d_model={d!r}, d_hidden={dh!r} must be positive integers")
    want = {"embed.weight": (d, 784), "blocks.0.gate.weight": (dh, d), "blocks.0.value.weight": (dh, d),
            "blocks.0.out.weight": (d, dh), "head.weight": (10, d)}
    for name, shape in want.items():
        if name not in sd:
            fail(f"{path}: missing tensor {name} (expected shape {list(shape)})")
        if not torch.is_tensor(sd[name]) or tuple(sd[name].shape) != shape:
            got = list(sd[name].shape) if torch.is_tensor(sd[name]) else type(sd[name]).__name__
            fail(f"{path}: tensor {name} has shape {got}, expected {list(shape)}")
    w = {k: sd[k].detach().double() for k in want}
    if not all(torch.isfinite(t).all() for t in w.values()):
        fail(f"{path}: weights contain NaN/inf (diverged model)")
    label = "bilinear" if act.name == "identity" else act.spec
    return dict(cfg=cfg, act=act, label=label, short=label if act.name == "identity" else act.name.upper(),
                path=path, input=(mean, std), We=w["embed.weight"],
                Wg=w["blocks.0.gate.weight"], Wv=w["blocks.0.value.weight"],
                Wu=w["head.weight"] @ w["blocks.0.out.weight"])  # the exact fold derived above


def model_input(m, x):
    """Pixels in [0, 1] -> what model m was trained on (see load_model)."""
    mean, std = m["input"]
    return x if (mean, std) == (0.0, 1.0) else (x - mean) / std


def forward(m, x):
    """The trained network itself (with its real gate) -> logits; the ground truth we explain."""
    h = x @ m["We"].T
    return (m["act"](h @ m["Wg"].T) * (h @ m["Wv"].T)) @ m["Wu"].T


# ------------------------------------------------------------------------------------------------
# The decomposition
# ------------------------------------------------------------------------------------------------
# Bilinear layer. With g_k, v_k the k-th rows of W_g, W_v (vectors in R^d) and h = W_e x,
#     logit_c = sum_k W_u[c,k] (g_k . h)(v_k . h) = h^T [ sum_k W_u[c,k] g_k v_k^T ] h = h^T B_c h,
# so each class is one quadratic form in h, with the d x d interaction matrix B_c.
#
# The antisymmetric part never contributes. Split B = Q + A with Q = (B + B^T)/2 symmetric and
# A = (B - B^T)/2 antisymmetric. h^T A h is a scalar, hence equal to its own transpose
#     h^T A h = (h^T A h)^T = h^T A^T h = -h^T A h   =>   h^T A h = 0   for every h.
# Both copies of h are the *same* vector, so only Q is ever seen: logit_c = h^T Q_c h.
#
# Q_c is real symmetric, so it has real eigenvalues and an orthonormal eigenbasis, Q_c = V L V^T:
#     logit_c = h^T V L V^T h = sum_i lam_i (v_i . h)^2 = sum_i lam_i ((W_e^T v_i) . x)^2
# -- exact for a bilinear layer: no approximation was made anywhere. W_e^T v_i (784 numbers) is the
# pixel-space eigenvector: the input pattern whose squared match adds (lam > 0) or removes (lam < 0)
# evidence for class c. Few large |lam_i| => the class is carried by a few readable images.
#
# SQS-GLU. The gate is sqs(s) = (s - c sign s) / (1 + lam_s |s|) with s = g_k . h. Expanding,
#     sqs(s) = s (1 - c/|s|) (1 - lam_s |s| + O(lam_s^2 s^2)) = s + O(c) + O(lam_s s^2),
# so for c << |s| << 1/lam_s the gate is the identity and the SQS-GLU *is* a bilinear layer to first
# order: the same B_c, Q_c, eigenvectors, but logit_c ~ h^T Q_c h only approximately. We measure how
# good that approximation is on the test set (sqs_first_order below).

def decompose(m):
    """Q_c for all classes and their eigenpairs, ordered by |lam| (importance), largest first."""
    B = torch.einsum("ck,ki,kj->cij", m["Wu"], m["Wg"], m["Wv"])   # sum_k W_u[c,k] g_k v_k^T
    Q = (B + B.transpose(1, 2)) / 2
    threads = torch.get_num_threads()   # ten 128 x 128 problems: LAPACK threading costs more than it
    torch.set_num_threads(1)            # saves (0.02 s on 1 thread vs 0.2 s on 2, measured here)
    try:
        lam, V = torch.linalg.eigh(Q)                               # V[c, :, i] = v_i of class c
    finally:
        torch.set_num_threads(threads)
    order = lam.abs().argsort(dim=1, descending=True)
    lam = lam.gather(1, order)
    V = V.gather(2, order[:, None, :].expand_as(V))
    return B, Q, lam, V


def eigen_logits(lam, V, h, k=None):
    """sum over the top-k (by |lam|) eigenvectors of lam_i (v_i . h)^2 -> logits (N x classes)."""
    k = lam.shape[1] if k is None else k
    return torch.einsum("ci,nci->nc", lam[:, :k], torch.einsum("nd,cdi->nci", h, V[:, :, :k]) ** 2)


def topk_accuracy(lam, V, h, y, chunk=2000):
    """Test accuracy of the truncated decomposition for every k = 1..d (argmax of the partial sums)."""
    correct = torch.zeros(lam.shape[1], dtype=torch.long)
    for s in range(0, len(h), chunk):
        contrib = lam * torch.einsum("nd,cdi->nci", h[s:s + chunk], V) ** 2   # N x C x d
        pred = contrib.cumsum(2).argmax(1)                                      # N x d: one per k
        correct += (pred == y[s:s + chunk, None]).sum(0)
    return correct.double() / len(h)


def pixel_eigvecs(m, V, h, y):
    """W_e^T v_i per class (C x d x 784), signs chosen so that class-c images project positively on
    average (an eigenvector's sign is arbitrary; this one makes red = 'looks like the class')."""
    P = torch.einsum("cdi,dp->cip", V, m["We"])
    for c in range(P.shape[0]):
        if (y == c).any():
            s = torch.sign(h[y == c].mean(0) @ V[c])
            P[c] *= torch.where(s == 0, 1.0, s).double()[:, None]
    return P


def signed_ranks(lam_c):
    """Indices of the positive eigenvalues in decreasing order, and of the negative ones in increasing
    order (i.e. both by importance) -- 'rank +r' and 'rank -r' in the figures."""
    # lam_c is sorted by |lam|, so within one sign it is already sorted by importance
    return (lam_c > 0).nonzero().flatten().tolist(), (lam_c < 0).nonzero().flatten().tolist()


def cosine(a, b):
    return float((a @ b).abs() / (a.norm() * b.norm() + 1e-300))


def similarity(P0, lam0, P1, lam1, R):
    """Rank-matched, sign-invariant cosine |cos(W_e0^T v_r, W_e1^T v_r)| in pixel space (the two models'
    d-dim bases are unrelated; pixels are the shared space). Columns +1..+R, -1..-R; NaN if a class
    has fewer than r eigenvalues of that sign.
    Also: `best`, the same table but matching model 0's rank r to the most similar of model 1's top-R
    of the same sign (two near-equal eigenvalues can swap ranks between models), and a chance
    baseline: model 0's top positive vector of class c vs model 1's of a *different* class."""
    C = P0.shape[0]
    table = torch.full((C, 2 * R), float("nan"), dtype=torch.float64)
    best = table.clone()
    unit = lambda P: P / P.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    U0, U1 = unit(P0), unit(P1)
    for c in range(C):
        for j, (a, b) in enumerate(zip(signed_ranks(lam0[c]), signed_ranks(lam1[c]))):
            a, b = a[:R], b[:R]
            if not a or not b:
                continue
            cos = (U0[c, a] @ U1[c, b].T).abs()                  # len(a) x len(b)
            n = min(len(a), len(b))
            table[c, j * R:j * R + n] = cos.diagonal()[:n]
            best[c, j * R:j * R + len(a)] = cos.max(1).values
    tops = [signed_ranks(lam0[c])[0][:1] + signed_ranks(lam1[c])[0][:1] for c in range(C)]
    base = [cosine(P0[c, tops[c][0]], P1[e, tops[e][1]]) for c in range(C) for e in range(C)
            if c != e and len(tops[c]) == 2 and len(tops[e]) == 2]
    return table, best, (sum(base) / len(base) if base else float("nan"))


def sqs_first_order(m, h, lam, V, y, true):
    """How well the bilinear reading h^T Q_c h explains `true`, the logits of a model whose gate is
    not the identity. A uniform shrink of the gate (sqs(s) ~ s/(1 + lam_s|s|) at typical |s|) only
    rescales the logits, which changes neither eigenvectors nor argmax -- so we also report the error
    left after the best single scale factor."""
    approx = eigen_logits(lam, V, h)
    s = h @ m["Wg"].T                                                   # gate pre-activations
    gate_err = ((m["act"](s) - s).abs() / s.abs().clamp_min(1e-12)).median()
    # where the SQS gate has shrunk by half or more: |s| > 1/lam_s (sqs(1/lam) ~ (1/lam)/2)
    sat = float((s.abs() > 1 / m["act"].params["lam"]).double().mean()) if m["act"].name == "sqs" \
        and m["act"].params["lam"] > 0 else float("nan")
    alpha = float((true * approx).sum() / (approx * approx).sum())    # best single rescaling
    rel = float((true - approx).norm() / true.norm())
    rel_scaled = float((true - alpha * approx).norm() / true.norm())
    return dict(rel_logit_error=rel, rel_logit_error_after_scale=rel_scaled, scale=alpha,
                pred_agreement=float((true.argmax(1) == approx.argmax(1)).double().mean()),
                acc_model=float((true.argmax(1) == y).double().mean()),
                acc_first_order=float((approx.argmax(1) == y).double().mean()),
                median_gate_rel_error=float(gate_err),
                median_abs_preact=float(s.abs().median()), frac_beyond_1_over_lam=sat), true, approx


# ------------------------------------------------------------------------------------------------
# Figures
# ------------------------------------------------------------------------------------------------

def show(ax, img, title=None):
    v = float(img.abs().max()) or 1.0
    ax.imshow(img.reshape(28, 28).numpy(), cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7, pad=2)


def fig_eigenvectors(plt, models, res, names, path):
    """Figure-2 layout: per class (rows) the top positive and negative eigenvectors, models side by side
    (the second model's sign aligned to the first's; |cos| = rank-matched similarity)."""
    cols = [("+", 0), ("+", 1), ("-", 0)]
    M = len(models)
    fig, axes = plt.subplots(len(names), len(cols) * M, figsize=(1.1 * len(cols) * M, 1.2 * len(names) + 0.6),
                             squeeze=False)
    for c, name in enumerate(names):
        ranks = [signed_ranks(res[m["label"]]["lam"][c]) for m in models]
        for j, (sgn, r) in enumerate(cols):
            si = 0 if sgn == "+" else 1
            for mi, m in enumerate(models):
                ax = axes[c, j * M + mi]
                if c == 0:
                    ax.set_title(f"{m['short']} {sgn}{r + 1}\n", fontsize=8, fontweight="bold")
                idx = ranks[mi][si]
                if r >= len(idx):
                    ax.axis("off")
                    continue
                img = res[m["label"]]["P"][c, idx[r]].clone()
                t = f"λ={float(res[m['label']]['lam'][c, idx[r]]):.2g}"
                if mi > 0 and r < len(ranks[0][si]):   # align the sign with the reference model's
                    ref = res[models[0]["label"]]["P"][c, ranks[0][si][r]]
                    img *= 1.0 if float(img @ ref) >= 0 else -1.0
                    t += f" |cos|={cosine(img, ref):.2f}"
                show(ax, img)
                ax.text(0.5, -0.02, t, transform=ax.transAxes, ha="center", va="top", fontsize=6)
        axes[c, 0].set_ylabel(name, fontsize=9)
    fig.suptitle("Top eigenvectors W_eᵀv of each class's Q_c (+r: r-th largest λ>0, −r: r-th most negative "
                 "λ<0);\nsigns oriented so that the class's test images project positively (red)", fontsize=7.5)
    fig.tight_layout(pad=0.3, h_pad=0.9, rect=(0, 0, 1, 0.985))
    atomic_savefig(fig, path)
    plt.close(fig)


def fig_spectra(plt, models, res, names, path):
    fig, axes = plt.subplots(2, (len(names) + 1) // 2, figsize=(13, 5), squeeze=False)
    for c, name in enumerate(names):
        ax = axes.flat[c]
        for m, mk in zip(models, ["o", "x"]):
            lam = res[m["label"]]["lam"][c].sort(descending=True).values
            ax.plot(range(1, len(lam) + 1), (lam / lam.abs().max()).numpy(), mk, ms=2.5, label=m["label"])
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("eigenvalue index (sorted)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("λ / max|λ|")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Eigenvalue spectra of Q_c per class, sorted, normalised by the largest |λ|", fontsize=9)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def fig_similarity(plt, table, best, base, R, labels, names, path):
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = list(range(1, R + 1))
    for j, (sgn, ls) in enumerate([("positive", "-"), ("negative", "--")]):
        block = table[:, j * R:(j + 1) * R]
        for c in range(len(names)):
            ax.plot(x, block[c].numpy(), ls, color="gray", lw=0.5, alpha=0.6)
        line, = ax.plot(x, block.nanmean(0).numpy(), ls, marker="o", lw=2, label=f"{sgn}, rank-matched, mean")
        ax.plot(x, best[:, j * R:(j + 1) * R].nanmean(0).numpy(), ls, marker="^", lw=1, ms=4,
                color=line.get_color(), alpha=0.6, label=f"{sgn}, best match in top-{R}, mean")
    ax.axhline(0.5, color="r", lw=0.8, label="paper: never below 0.5")
    ax.axhline(0.95, color="g", lw=0.8, label="paper: ≈0.95 for the top ones")
    ax.axhline(base, color="k", ls=":", lw=1, label=f"chance: other class's top vector ({base:.2f})")
    ax.set_xticks(x)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("rank r (r-th most important of that sign)")
    ax.set_ylabel("|cos| in pixel space")
    ax.set_title(f"{labels[1]} vs {labels[0]}: rank-matched eigenvector similarity (gray: classes)",
                 fontsize=9)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def fig_topk(plt, models, res, fo, path):
    n = 1 + len(fo)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    ax = axes[0, 0]
    for m in models:
        r = res[m["label"]]
        k = range(1, len(r["topk"]) + 1)
        line, = ax.plot(k, r["topk"].numpy(), label=f"{m['label']}: top-k eigenvectors")
        ax.axhline(r["acc"], color=line.get_color(), ls="--", lw=0.8, label=f"{m['label']}: model")
    ax.set_xscale("log")
    ax.set_xlabel("k (eigenvectors kept per class)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Truncated decomposition Σ_{i≤k} λ_i (v_iᵀh)²", fontsize=9)
    ax.legend(fontsize=7)
    for a, (label, (stats, true, approx)) in zip(axes[0, 1:], fo.items()):
        sel = torch.randperm(len(true), generator=torch.Generator().manual_seed(0))[:1000]
        a.plot(approx[sel].flatten().numpy(), true[sel].flatten().numpy(), ".", ms=1.5, alpha=0.4)
        lo, hi = float(approx[sel].min()), float(approx[sel].max())
        a.plot([lo, hi], [lo, hi], "k", lw=0.8, label="y = x")
        a.plot([lo, hi], [stats["scale"] * lo, stats["scale"] * hi], "r--", lw=0.8,
               label=f"y = {stats['scale']:.2f} x")
        a.set_xlabel("first-order (bilinear) logit hᵀQ_c h")
        a.set_ylabel(f"true {label} logit")
        a.set_title(f"{label}: rel. error {stats['rel_logit_error']:.2f}, argmax agree "
                    f"{stats['pred_agreement']:.1%}", fontsize=9)
        a.legend(fontsize=7)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def explain(r, n, top=6):
    """Contributions lam_i (v_i . h)^2 of each eigenvector to the model's predicted logit for image n."""
    pred = int(r["logits"][n].argmax())
    contrib = r["lam"][pred] * (r["h"][n] @ r["V"][pred]) ** 2
    order = contrib.abs().argsort(descending=True)[:top]
    pos, neg = signed_ranks(r["lam"][pred])
    name = {i: f"+{k + 1}" for k, i in enumerate(pos)} | {i: f"-{k + 1}" for k, i in enumerate(neg)}
    return pred, contrib, order, name


def fig_explanations(plt, models, res, x, y, picks, names, path):
    from matplotlib.gridspec import GridSpec
    M, top = len(models), 6
    fig = plt.figure(figsize=(2 + 5.2 * M, 1.9 * len(picks)))
    gs = GridSpec(len(picks), 1 + 3 * M, figure=fig, width_ratios=[1] + [2.4, 1, 1] * M)
    for row, n in enumerate(picks):
        ax = fig.add_subplot(gs[row, 0])
        ax.imshow(x[n].reshape(28, 28).numpy(), cmap="gray_r", interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"test #{n}\ntrue: {names[int(y[n])]}", fontsize=7)
        for mi, m in enumerate(models):
            r = res[m["label"]]
            pred, contrib, order, rk = explain(r, n, top)
            ax = fig.add_subplot(gs[row, 1 + 3 * mi])
            vals = contrib[order].numpy()
            ax.barh(range(top), vals[::-1], color=["tab:red" if v > 0 else "tab:blue" for v in vals[::-1]])
            ax.set_yticks(range(top), [rk[int(i)] for i in order.flip(0)], fontsize=6)
            ax.tick_params(axis="x", labelsize=6)
            ax.set_title(f"{m['short']} → {names[pred]}: logit {float(r['logits'][n, pred]):.3g}\n"
                         f"Σ_all λ(vᵀh)² = {float(contrib.sum()):.3g}, top-{top}: "
                         f"{float(contrib[order].sum()):.3g}", fontsize=6.5)
            for j in range(2):  # the two largest contributors, as images
                show(fig.add_subplot(gs[row, 2 + 3 * mi + j]), r["P"][pred, int(order[j])],
                     f"{rk[int(order[j])]}: {float(contrib[order[j]]):+.3g}")
    fig.suptitle("Eigenvectors as explanations: contribution λ_i (v_iᵀh)² to the predicted logit",
                 fontsize=9)
    fig.tight_layout(pad=0.4)
    atomic_savefig(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------
# Control: independently initialised twins (--control)
# ------------------------------------------------------------------------------------------------
# train_mnist.py draws ONE initialisation per seed and gives it to every gate, and the gates also see
# the same noisy batches. The eigen-decomposition ignores the gate, so at step 0 the bilinear and the
# SQS model have *identical* eigenvectors (|cos| = 1): a high similarity after training could be
# partly inherited rather than learned. The control retrains each model from a different random
# initialisation (same recipe: input noise, AdamW, cosine, batch 2048) and compares again. If
# bilinear vs SQS-twin is as similar as bilinear vs bilinear-twin, SQS learns the bilinear features.

def train_twin(m, x, y, epochs, seed, noise=1.0, lr=1e-3, wd=0.1, batch=2048):
    torch.manual_seed(seed)
    d, dh = m["cfg"]["d_model"], m["cfg"]["d_hidden"]
    L = lambda i, o: torch.nn.Linear(i, o, bias=False)
    net = torch.nn.ModuleDict(dict(embed=L(784, d), gate=L(d, dh), value=L(d, dh), out=L(dh, d), head=L(d, 10)))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * math.ceil(len(x) / batch))
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            h = net.embed(x[idx] + noise * torch.randn(len(idx), 784))
            logits = net.head(net.out(m["act"](net.gate(h)) * net.value(h)))
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    w = {k: v.weight.detach().double() for k, v in net.items()}
    return dict(m, label=m["label"] + " twin", We=w["embed"], Wg=w["gate"], Wv=w["value"],
                Wu=w["head"] @ w["out"])


def control(args, dataset, models, res, x, y, R):
    xtr, ytr = load_split(dataset, args.data_dir, "train", torch.float32)
    rows = {}
    for i, m in enumerate(models):
        t = time.perf_counter()
        epochs = int(m["cfg"].get("epochs", args.epochs))
        twin = train_twin(m, model_input(m, xtr), ytr, epochs, seed=1000 + i)
        _, _, lam, V = decompose(twin)
        xm = model_input(twin, x)
        h = xm @ twin["We"].T
        P = pixel_eigvecs(twin, V, h, y)
        acc = float((forward(twin, xm).argmax(1) == y).double().mean())
        print(f"control: trained {twin['label']} ({epochs} epochs, {time.perf_counter() - t:.0f} s), "
              f"test acc {acc:.4f}")
        for ref in models:
            rows[f"{ref['label']} vs {twin['label']}"] = similarity(
                res[ref["label"]]["P"], res[ref["label"]]["lam"], P, lam, R)[:2]
    rows[f"{models[0]['label']} vs {models[1]['label']} (shared init)"] = (res["sim"], res["sim_best"])
    print("\ncontrol: |cos| summary over classes (rank-matched; best match within top-%d in brackets)" % R)
    print("| pair | mean +1 | mean ±1..±%d | min ±1..±%d |\n|---|---|---|---|" % (R, R))
    out = {}
    for k, (t, tb) in rows.items():
        v, vb = t[~t.isnan()], tb[~tb.isnan()]
        out[k] = dict(top1=float(t[:, 0].nanmean()), mean=float(v.mean()), min=float(v.min()),
                      best_top1=float(tb[:, 0].nanmean()), best_mean=float(vb.mean()), best_min=float(vb.min()))
        print(f"| {k} | {out[k]['top1']:.2f} ({out[k]['best_top1']:.2f}) | {out[k]['mean']:.2f} "
              f"({out[k]['best_mean']:.2f}) | {out[k]['min']:.2f} ({out[k]['best_min']:.2f}) |")
    return out


# ------------------------------------------------------------------------------------------------
# Training (delegated to train_mnist.py: one experiment = one script; we share only activations.py)
# ------------------------------------------------------------------------------------------------

def train(args, out):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "train_mnist.py")
    if not os.path.isfile(script):
        fail(f"{script} not found; pass --ckpt with checkpoints of the section-4.1 model instead")
    tdir = os.path.join(out, "train")
    cmd = [sys.executable, script, "--layers", "1", "--batch", "2048", "--no-residual",
           "--acts", ",".join(g.spec for g in args.gates), "--seeds", "1", "--dataset", args.dataset,
           "--epochs", str(args.epochs), "--d-model", str(args.d_model), "--hidden", str(args.hidden),
           "--device", args.device, "--input", args.input, "--out", tdir]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    print("training:", " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd).returncode != 0:
        fail("train_mnist.py failed (see its message above)")
    paths = sorted(glob.glob(os.path.join(tdir, "ckpt_*.pt")))
    if not paths:
        fail(f"train_mnist.py wrote no ckpt_*.pt into {tdir}")
    print(f"re-analyse without training: python eigen.py --ckpt {' '.join(paths)}"
          + (f" --data-dir {args.data_dir}" if args.data_dir else ""))
    return paths


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------

def main(argv=None):
    args = get_args(argv)
    torch.manual_seed(0)
    t0 = time.perf_counter()  # ---- the analysis (restarted after training): weights + test set only
    # with --ckpt the checkpoints decide the dataset: load them before creating the output directory
    models = [load_model(p) for p in args.ckpt] if args.ckpt else None
    dataset = models[0]["cfg"]["dataset"] if models else args.dataset
    out = args.out or os.path.join("out", "eigen", dataset)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        fail(f"cannot create output directory {out}: {e.strerror}")
    if not os.access(out, os.W_OK):
        fail(f"output directory {out} is not writable")
    paths = args.ckpt
    if not models:
        paths = train(args, out)
        t0 = time.perf_counter()
        models = [load_model(p) for p in paths]
    if len(models) > 2:
        fail(f"found {len(models)} checkpoints ({', '.join(paths)}); pass two with --ckpt")
    if len({m["cfg"]["dataset"] for m in models}) > 1:
        fail("the checkpoints were trained on different datasets")
    models.sort(key=lambda m: m["act"].name != "identity")  # the bilinear model is the reference
    if len({m["label"] for m in models}) < len(models):
        models[1]["label"] += " (2)"
        models[1]["short"] += " (2)"
    dataset = models[0]["cfg"]["dataset"]
    names = FASHION if dataset == "fashion" else DIGITS
    x, y = load_split(dataset, args.data_dir)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res, fo = {}, {}
    print(f"\n== {dataset}: {len(x)} test images; models: "
          + ", ".join(f"{m['label']} (d={m['cfg']['d_model']}, hidden={m['cfg']['d_hidden']}, "
                      f"{m['cfg'].get('epochs', '?')} ep)" for m in models))
    for m in models:
        xm = model_input(m, x)
        h = xm @ m["We"].T
        B, Q, lam, V = decompose(m)
        logits = forward(m, xm)
        r = res[m["label"]] = dict(lam=lam, V=V, P=pixel_eigvecs(m, V, h, y), logits=logits, h=h,
                                   acc=float((logits.argmax(1) == y).double().mean()),
                                   topk=topk_accuracy(lam, V, h, y))
        share = (lam.abs()[:, :5].sum(1) / lam.abs().sum(1)).mean()
        # the smallest k whose truncated decomposition is within 1 point of the MODEL's accuracy
        # (None: never -- then the decomposition does not explain this model, however many we keep)
        hit = (r["topk"] >= r["acc"] - 0.01).nonzero()
        r["k_within_1pt"] = int(hit[0]) + 1 if len(hit) else None
        # the same against the FULL decomposition (k = d): how many eigenvectors carry the quadratic
        # form h^T Q_c h itself -- for a bilinear model the two coincide (the form is the model)
        r["k_form_1pt"] = int((r["topk"] >= r["topk"][-1] - 0.01).nonzero()[0]) + 1
        r["share5"] = float(share)
        saved = m["cfg"].get("test_acc")  # what train_mnist.py measured: a check of the loader + fold
        print(f"{m['label']:>16s}: model test acc {r['acc']:.4f}"
              + (f" (checkpoint says {saved:.4f})" if isinstance(saved, float) else "") + " | "
              f"Σλ(vᵀh)² with top-k per class: "
              f"k=1 {float(r['topk'][0]):.4f}, k=3 {float(r['topk'][min(2, len(r['topk']) - 1)]):.4f}, "
              f"all {float(r['topk'][-1]):.4f} | smallest k within 1 pt of the model: "
              f"{r['k_within_1pt'] or 'never'} of {lam.shape[1]} (of the full decomposition: "
              f"{r['k_form_1pt']}) | |λ| share of top-5: {float(share):.2f}")
        if m["act"].name != "identity":
            stats, true, approx = sqs_first_order(m, h, lam, V, y, logits)
            fo[m["label"]] = (stats, true, approx)
            print(f"{'':>16s}  first-order (gate≈identity) reading: relative logit error "
                  f"{stats['rel_logit_error']:.3f} ({stats['rel_logit_error_after_scale']:.3f} after one "
                  f"scale {stats['scale']:.2f}), argmax agreement {stats['pred_agreement']:.4f}, "
                  f"median |gate(s)-s|/|s| {stats['median_gate_rel_error']:.3f} at median |s| "
                  f"{stats['median_abs_preact']:.2f} ({stats['frac_beyond_1_over_lam']:.0%} of gate "
                  f"pre-activations beyond 1/λ, where the gate has shrunk by half)")

    R = args.ranks
    labels = [m["label"] for m in models]
    base = None
    if len(models) == 2:
        table, best, base = similarity(res[labels[0]]["P"], res[labels[0]]["lam"], res[labels[1]]["P"],
                                       res[labels[1]]["lam"], R)
        res["sim"], res["sim_best"], res["R"] = table, best, R
        fmt = lambda t: "\n".join(
            ["| class | " + " | ".join([f"+{r + 1}" for r in range(R)] + [f"−{r + 1}" for r in range(R)]) + " |",
             "|---" * (2 * R + 1) + "|"]
            + [f"| {name} | " + " | ".join("–" if math.isnan(v) else f"{v:.2f}" for v in t[c].tolist()) + " |"
               for c, name in enumerate(names)]
            + ["| mean | " + " | ".join(f"{v:.2f}" for v in t.nanmean(0).tolist()) + " |"])
        md = (f"Rank-matched |cos| between {labels[1]} and {labels[0]} pixel-space eigenvectors "
              f"(+r: r-th largest positive λ, −r: r-th most negative λ):\n\n{fmt(table)}\n\n"
              f"Best match of each {labels[0]} eigenvector among the {labels[1]} top-{R} of the same sign:"
              f"\n\n{fmt(best)}\n\nChance baseline (top positive vectors of two different classes): "
              f"{base:.2f}\n")
        print("\n" + md)
        atomic_write(os.path.join(out, "similarity.md"), md)

    # explanations: chosen test images
    if args.explain == "auto":
        ok = (res[labels[0]]["logits"].argmax(1) == y) & (res[labels[-1]]["logits"].argmax(1) == y)
        picks, seen = [], set()
        for n in range(len(y)):
            if ok[n] and int(y[n]) not in seen and len(picks) < 3:
                picks.append(n), seen.add(int(y[n]))
        wrong = (res[labels[-1]]["logits"].argmax(1) != y).nonzero()
        picks += [int(wrong[0])] if len(wrong) else []
    else:
        picks = args.explain
        if any(not 0 <= n < len(y) for n in picks):
            fail(f"--explain: indices must be in 0..{len(y) - 1}")
    for n in picks:
        for m in models:
            pred, contrib, order, rk = explain(res[m["label"]], n)
            print(f"test #{n} ({names[int(y[n])]}) {m['label']:>16s} → {names[pred]}: "
                  + ", ".join(f"{rk[int(i)]} {float(contrib[i]):+.3g}" for i in order[:4])
                  + f" (sum of all {len(contrib)}: {float(contrib.sum()):+.3g}, "
                  f"logit {float(res[m['label']]['logits'][n, pred]):+.3g})")

    plots = {}
    fig_eigenvectors(plt, models, res, names, plots.setdefault("eigenvectors", os.path.join(out, "eigenvectors.png")))
    fig_spectra(plt, models, res, names, plots.setdefault("spectra", os.path.join(out, "spectra.png")))
    if base is not None:
        fig_similarity(plt, res["sim"], res["sim_best"], base, R, labels, names,
                       plots.setdefault("similarity", os.path.join(out, "similarity.png")))
    fig_topk(plt, models, res, fo, plots.setdefault("topk", os.path.join(out, "topk_accuracy.png")))
    fig_explanations(plt, models, res, x, y, picks, names,
                           plots.setdefault("explanations", os.path.join(out, "explanations.png")))

    csv = "k," + ",".join(labels) + "\n" + "".join(
        f"{k + 1}," + ",".join(f"{float(res[l]['topk'][k]):.4f}" for l in labels) + "\n"
        for k in range(max(len(res[l]["topk"]) for l in labels)) if all(k < len(res[l]["topk"]) for l in labels))
    atomic_write(os.path.join(out, "topk.csv"), csv)

    ctrl, t_ctrl = None, 0.0
    if args.control and base is not None:
        t1 = time.perf_counter()
        ctrl = control(args, dataset, models, res, x, y, R)
        t_ctrl = time.perf_counter() - t1
        print(f"control wall time (training the twins + their analysis): {t_ctrl:.0f} s")

    # ---- verdicts, computed from the numbers above
    print("\n== verdicts")
    verdicts = {}
    for l in labels:
        r, d = res[l], len(res[l]["topk"])
        few = max(10, d // 10)
        ok = r["k_within_1pt"] is not None and r["k_within_1pt"] <= few
        verdicts[f"few_eigenvectors_{l}"] = ok
        how = (f"top-{r['k_within_1pt']} per class reach {float(r['topk'][r['k_within_1pt'] - 1]):.4f}"
               if r["k_within_1pt"] else f"no k gets there (all {d}: {float(r['topk'][-1]):.4f})")
        print(f"[{'REPRODUCED' if ok else 'NOT REPRODUCED'}] App. B.0.1 ({l}): a few eigenvectors carry "
              f"each class -- {how} vs the model's {r['acc']:.4f} (within 1 pt with 'few' = at most "
              f"max(10, d/10) = {few}); top-5 hold {r['share5']:.0%} of Σ|λ|")
        if r["k_form_1pt"] != r["k_within_1pt"]:   # a gated model: the form and the model differ
            ok = r["k_form_1pt"] <= few
            verdicts[f"few_eigenvectors_of_form_{l}"] = ok
            print(f"[{'HOLDS' if ok else 'DOES NOT HOLD'}] ... of {l}'s quadratic form h^T Q_c h only (not of "
                  f"the model): top-{r['k_form_1pt']} reach {float(r['topk'][r['k_form_1pt'] - 1]):.4f} vs "
                  f"{float(r['topk'][-1]):.4f} with all {d}")
    if base is not None:
        table = res["sim"]
        low = float(table[~table.isnan()].min())
        top1 = float(table[:, 0].nanmean())
        verdicts["never_below_0.5"] = low >= 0.5
        verdicts["top_about_0.95"] = top1 >= 0.9
        best = res["sim_best"]
        print(f"[{'REPRODUCED' if low >= 0.5 else 'NOT REPRODUCED'}] §4.1: |cos| never below 0.5 -- "
              f"min over {len(names)} classes × ranks ±1..{R} = {low:.2f} "
              f"({int((table < 0.5).sum())} of {int((~table.isnan()).sum())} pairs below 0.5; best match "
              f"within top-{R}: min {float(best[~best.isnan()].min()):.2f}, {int((best < 0.5).sum())} below)")
        print(f"[{'REPRODUCED' if top1 >= 0.9 else 'NOT REPRODUCED'}] §4.1: ≈0.95 for the most important "
              f"eigenvectors -- mean |cos| of the top positive eigenvector over classes = {top1:.2f} "
              f"(threshold 0.9; per class {', '.join(f'{v:.2f}' for v in table[:, 0].tolist())}; "
              f"chance {base:.2f}; best match within top-{R}: {float(best[:, 0].nanmean()):.2f})")
    if ctrl:
        indep = ctrl[f"{labels[0]} vs {labels[1]} twin"]
        bb = ctrl[f"{labels[0]} vs {labels[0]} twin"]
        for name, v in (("never_below_0.5_independent_init", indep["min"] >= 0.5),
                        ("top_about_0.95_independent_init", indep["top1"] >= 0.9)):
            verdicts[name] = v
        print(f"[{'REPRODUCED' if indep['top1'] >= 0.9 else 'NOT REPRODUCED'}] the same claims without the "
              f"shared initialisation ({labels[1]} twin vs {labels[0]}): top-1 mean |cos| {indep['top1']:.2f}, "
              f"min {indep['min']:.2f} (never-below-0.5 "
              f"{'holds' if indep['min'] >= 0.5 else 'fails'}); two bilinear models from different inits "
              f"agree to {bb['top1']:.2f} (top-1), min {bb['min']:.2f}")
    for l, (stats, _, _) in fo.items():
        ok = stats["pred_agreement"] >= 0.95
        verdicts[f"first_order_{l}"] = ok
        print(f"[{'HOLDS' if ok else 'DOES NOT HOLD'}] the bilinear reading of {l} (gate ≈ identity): its "
              f"argmax agrees with the model on {stats['pred_agreement']:.1%} of test images "
              f"(threshold 95%), accuracy {stats['acc_first_order']:.4f} vs model {stats['acc_model']:.4f}")

    summary = dict(dataset=dataset, checkpoints=paths, ranks=R, explained=picks, verdicts=verdicts,
                   models={l: dict(config=next(m["cfg"] for m in models if m["label"] == l),
                                   acc=res[l]["acc"], topk=[round(float(v), 5) for v in res[l]["topk"]],
                                   k_within_1pt=res[l]["k_within_1pt"], k_form_1pt=res[l]["k_form_1pt"],
                                   first_order=fo[l][0] if l in fo else None) for l in labels},
                   similarity=None if base is None else dict(table=res["sim"].tolist(), chance=base,
                                                             best_match=res["sim_best"].tolist()),
                   control=ctrl,
                   figures=plots)
    atomic_write(os.path.join(out, "results.json"), json.dumps(summary, indent=1))
    print(f"\nwrote {', '.join(sorted(os.path.basename(p) for p in plots.values()))}, topk.csv, "
          f"results.json to {out}")
    print(f"analysis wall time: {time.perf_counter() - t0 - t_ctrl:.1f} s "
          f"(load + decompose + top-k + figures, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
