"""train_mnist.py -- MNIST / Fashion-MNIST with GLU gates (ReLU, GELU, SwiGLU, Bilinear, SQS): Table 1 of
the SQS paper, end to end, on a laptop CPU.

Sources: [SQS] "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation
Function", arXiv:2509.01874 (section 4.2.1, Table 1, Appendix A.2).  [BIL] Pearce, Dooms, Rigg, Oramas,
Sharkey, "Bilinear MLPs enable weight-based mechanistic interpretability", arXiv:2410.08417, whose
pipeline [SQS] follows (code: https://github.com/tdooms/bilinear-decomposition, src/image/).

All gates x seeds train as ONE network whose weights carry a leading member dimension (torch.bmm); a
seed fixes a member's initial weights and data stream for every gate alike (a paired comparison; the
next seed is an independent twin). Printed: our table beside the paper's, verdicts on its claims (ties
said as ties, per-seed counts), each layer's effective linearity R^2, and the training FLOP/s as a
share of a torch.mm GEMM timed at start-up. Expected on Fashion-MNIST: every gate within 2 points of
Table 1 and the paper's final-loss order GELU < SwiGLU < SQS < ReLU < Bilinear, but SQS is not first to
80 % and its layers are the most linear. docs/mnist.md: what the readings the paper leaves open do.

    python train_mnist.py --dataset fashion        # Table 1 for Fashion-MNIST (MNIST: --dataset mnist)
    python train_mnist.py --quick                  # classroom run: 10k images, 4 epochs, 2 seeds
Writes out/mnist/<dataset>/ report.md, curves.png, ckpt.pt (every member; load_checkpoint reads it).
"""
import argparse, dataclasses, gzip, hashlib, math, os, pathlib, struct, sys, time, urllib.request, zlib

import numpy as np
import torch
import torch.nn.functional as F

import activations as A

# ---- Config: [SQS] A.2.2 with [BIL]'s pipeline as defaults; the command line is built from it ---------
@dataclasses.dataclass
class Config:
    dataset: str = "fashion"       # fashion | mnist
    acts: str = "relu,gelu,swiglu,bilinear,sqs"
    seeds: int = 5                 # "average over 5 runs"
    epochs: int = 20
    batch: int = 512
    layers: int = 2
    d_model: int = 128             # also the gated width: Bilinear(d, d) has no output projection
    lr: float = 1e-3
    wd: float = 0.1
    noise_std: float = 1.0
    noise_prob: float = 0.5        # probability that a training image gets noise ([BIL]: kornia's default)
    input: str = "pixels01"        # pixels01 = x / 255 ([BIL]) | standard = (x / 255 - mean) / std
    out_proj: bool = False         # a d x d projection W_o after each gated product (ablation)
    train_subset: int = 0          # use only the first N training images (0 = all)
QUICK = dict(train_subset=10_000, epochs=4, seeds=2)   # --quick; flags given explicitly win

def build_parser():
    p = argparse.ArgumentParser(description="MNIST / Fashion-MNIST GLU gates: Table 1 of arXiv:2509.01874")
    for f in dataclasses.fields(Config):
        kw = dict(default=argparse.SUPPRESS, help=f"{A.act_choices() if f.name == 'acts' else ''} (default {f.default})")
        kw.update(action=argparse.BooleanOptionalAction) if f.type in (bool, "bool") else kw.update(type=type(f.default))
        p.add_argument("--" + f.name.replace("_", "-"), **kw)
    for flag, kw in (("--quick", dict(action="store_true", help=f"preset {QUICK}")), ("--data-dir", {}),
                     ("--out", dict(help="default out/mnist/<dataset>")), ("--device", dict(default="auto",
                      help="auto | cpu | cuda | mps")), ("--no-progress", dict(action="store_true"))):
        p.add_argument(flag, **kw)
    return p

def check_config(cfg):
    """-> the parsed gates; ValueError with a one-line message for any bad setting."""
    bad = [f"--{k.replace('_', '-')} {getattr(cfg, k)} (must be {want})" for k, ok, want in (
        ("dataset", cfg.dataset in DIRS, "mnist|fashion"), ("input", cfg.input in ("pixels01", "standard"),
         "pixels01|standard"), ("lr", 0 < cfg.lr < math.inf, "> 0"), ("wd", 0 <= cfg.wd < math.inf, ">= 0"),
        ("noise_std", 0 <= cfg.noise_std < math.inf, ">= 0"), ("noise_prob", 0 <= cfg.noise_prob <= 1, "in [0, 1]"),
        ("train_subset", cfg.train_subset >= 0, ">= 0"), *((k, getattr(cfg, k) >= 1, ">= 1") for k in (
            "seeds", "epochs", "batch", "layers", "d_model"))) if not ok]
    acts = [] if bad else A.parse_acts(cfg.acts)
    if bad or len({a.spec for a in acts}) < len(acts):
        raise ValueError("bad setting: " + (", ".join(bad) or f"--acts {cfg.acts} names a gate twice"))
    return acts

# ---- Data: IDX files, found locally or downloaded (MD5-checked) ---------------------------------------
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIRS = {"mnist": "mnist", "fashion": "fashion-mnist"}       # folder names, as Debian's packages use
MIRRORS = {"mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
           "fashion": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]}
MD5 = {"mnist": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",   # of FILES[i] + ".gz"
                 "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
       "fashion": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                   "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")}

class DataError(Exception):
    """A missing, corrupt or undownloadable data file, or an unusable checkpoint; one line naming it."""

def read_idx(path, magic):
    """IDX file (gzip or raw) -> uint8 array. Layout: big-endian int32 magic (2051 images, 2049 labels),
    the dims as big-endian int32, (n, 28, 28) or (n,), then exactly prod(dims) bytes."""
    try:
        raw = pathlib.Path(path).read_bytes()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    head = 16 if magic == 2051 else 8
    got, *dims = struct.unpack(f">{head // 4}i", raw[:head].ljust(head, b"\0"))
    need = head + math.prod(dims)
    for bad, why in ((len(raw) < head, f"truncated IDX header ({len(raw)} bytes)"),
                     (got != magic, f"magic number {got}, expected {magic}"),
                     (dims[0] < 0 or dims[1:] not in ([28, 28], []), f"dims {dims}, expected (n, 28, 28) or (n,)"),
                     (len(raw) != need, f"{'truncated' if len(raw) < need else 'trailing bytes'}: "
                                        f"{need} bytes expected, {len(raw)} found")):
        if bad:
            raise DataError(f"{path}: {why}")
    arr = np.frombuffer(raw, np.uint8, offset=head).reshape(dims)
    if magic == 2049 and arr.size and arr.max() > 9:
        raise DataError(f"{path}: label {arr.max()} outside 0..9")
    return arr

def load_data(dataset="fashion", data_dir=None, mirrors=None):
    """-> dict train_x uint8 [N, 784], train_y int64 [N], test_x, test_y, folder. Looks in data_dir,
    ./data/<name>/, /usr/share/datasets/<name>/; else downloads from mirrors into data_dir or ./data/<name>/."""
    dirs = [d for d in (data_dir, os.path.join("data", DIRS[dataset]), "/usr/share/datasets/" + DIRS[dataset]) if d]
    find = lambda d, n: next((f for f in (os.path.join(d, n + ".gz"), os.path.join(d, n)) if os.path.isfile(f)), None)
    folder = next((d for d in dirs if all(find(d, n) for n in FILES)), dirs[0])
    for name, md5 in zip(FILES, MD5[dataset]):
        errors = []
        for m in (MIRRORS[dataset] if mirrors is None else mirrors) if not find(folder, name) else []:
            try:   # a file is at most 10 MB: read it whole, check its MD5, only then write it (temp + rename)
                with urllib.request.urlopen(m + name + ".gz", timeout=30) as r:
                    raw = r.read()
                if hashlib.md5(raw).hexdigest() != md5:
                    raise ValueError(f"MD5 {hashlib.md5(raw).hexdigest()} != {md5}")
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, name + ".gz.part"), "wb") as f:
                    f.write(raw)
                os.replace(f.name, f.name[:-5])
                break
            except Exception as e:                          # offline, HTTP error, truncated, MD5 mismatch
                errors.append(f"{m}: {e}")
        if not find(folder, name):
            raise DataError(f"{name}.gz is in none of {', '.join(dirs)} and could not be downloaded "
                            f"({' | '.join(errors) or 'no mirror'}); put the four IDX files into {folder}/ or "
                            "pass --data-dir (Debian: apt-get install dataset-fashion-mnist)")
    out = {"folder": folder}
    for split, i in (("train", 0), ("test", 2)):
        x, y = read_idx(find(folder, FILES[i]), 2051), read_idx(find(folder, FILES[i + 1]), 2049)
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        out[split + "_x"], out[split + "_y"] = torch.from_numpy(x.reshape(-1, 784).copy()), torch.from_numpy(y.astype(int))
    return out

def to_input(x, mean=0.0, std=1.0):
    return (x.float() / 255 - mean) / std

# ---- The model: one definition, every weight with a leading member dimension M = G gates x S seeds ---
class Net(torch.nn.Module):
    """Member m = g*S + s (gate-major) uses acts[g] and starts from seed seeds[s]'s draw. Weights, in
    nn.Linear's [out, in] layout, no biases: W_e [M, d, 784]; W[l] [M, 2d, d] (rows :d = W_g, rows d: =
    W_v); W_o[l] [M, d, d] only with out_proj; W_u [M, 10, d]."""

    def __init__(self, acts, seeds, d=128, layers=2, out_proj=False):
        super().__init__()
        self.acts, self.seeds, self.d, self.out_proj = [A.parse_act(a) if isinstance(a, str) else a for a in acts], \
            list(seeds), d, out_proj
        self.G, self.S, self.M = len(self.acts), len(self.seeds), len(self.acts) * len(self.seeds)
        shapes = [(d, 784)] + [(2 * d, d)] * layers + [(d, d)] * (layers if out_proj else 0) + [(10, d)]
        gens = [torch.Generator().manual_seed(s) for s in self.seeds]   # one draw per seed, in this order
        draws = [[(torch.rand(*sh, generator=g) * 2 - 1) / math.sqrt(sh[1]) for sh in shapes] for g in gens]
        # nn.Linear's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)); every gate gets its seed's draw.
        ws = [torch.nn.Parameter(torch.stack(w).repeat(self.G, 1, 1)) for w in zip(*draws)]
        self.W_e, self.W, self.W_o, self.W_u = ws[0], torch.nn.ParameterList(ws[1:1 + layers]), \
            torch.nn.ParameterList(ws[1 + layers:-1]), ws[-1]

    def forward(self, x, layers=None):
        """x [S, B, 784] (seed s's batch for its G gates) or [B, 784] -> logits [M, B, 10]; appends each
        layer's input h and output u ([M, B, d] each) to the list `layers` if one is given."""
        S, x = self.S, x.expand(self.S, *x.shape) if x.dim() == 2 else x
        # Per-gate views by split (its backward is one cat; indexing would zero-fill a gradient per gate).
        W_e, W_u, W, W_o = self.W_e.split(S), self.W_u.split(S), [w.split(S) for w in self.W], [w.split(S) for w in self.W_o]
        logits, io = [], [([], []) for _ in self.W]
        for g, act in enumerate(self.acts):                  # gate g: a chain of bmm's over its S members
            h = torch.bmm(x, W_e[g].mT)                                          # [S, B, d]
            for l in range(len(W)):
                gate, value = torch.bmm(h, W[l][g].mT).chunk(2, -1)              # [S, B, d]: W_g h, W_v h
                u = A.glu(gate, value, act)                                      # act(W_g h) * (W_v h)
                u = torch.bmm(u, W_o[l][g].mT) if self.out_proj else u           # [S, B, d]
                io[l][0].append(h), io[l][1].append(u)
                h = u
            logits.append(torch.bmm(h, W_u[g].mT))                               # [S, B, 10]
        if layers is not None:
            layers.extend((torch.cat(i), torch.cat(o)) for i, o in io)
        return torch.cat(logits)

    def matmul_flops(self, batch):
        """Matmul FLOPs of one training step: the forward does 2*B*out*in per matrix; the backward the same
        for each weight gradient and each input gradient, except W_e's (the pixels need none)."""
        fwd = sum(2 * batch * w[0].numel() for w in self.parameters())
        return self.M * (3 * fwd - 2 * batch * self.W_e[0].numel())

# ---- Training and evaluation ---------------------------------------------------------------------------
def train(net, data, cfg, progress=False):
    """Train net in place with [BIL]'s recipe -> dict of test curves [T, M] and timings. Seed s's own
    generator draws its shuffles, noise masks and noise, so a member trained alone is the same member."""
    dev, B = net.W_e.device, cfg.batch
    xtr, ytr = data["train_x"][:cfg.train_subset or None], data["train_y"][:cfg.train_subset or None]
    steps = len(xtr) // B                                                        # drop_last
    if steps == 0:
        raise ValueError(f"--batch {B} is larger than the {len(xtr)} training images")
    mean, std = (xtr.double().mean().item() / 255, xtr.double().std().item() / 255) if cfg.input == "standard" else (0, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.wd, fused=dev.type in ("cpu", "cuda"))
    # Loss = sum of the members' mean losses: each member's gradient is its own, and AdamW is elementwise,
    # so the stacked optimiser is M independent ones. Epoch e runs at lr (1 + cos(pi e / epochs)) / 2.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gens = [torch.Generator().manual_seed(10_000 + s) for s in net.seeds]
    total, quarters = steps * cfg.epochs, [max(1, round(q * steps * cfg.epochs)) for q in (0.25, 0.5, 0.75, 1.0)]
    when = {e * steps for e in range(1, cfg.epochs + 1)} | set(quarters)       # every epoch's end, 25/50/75/100 %
    res = dict(step=[], test_loss=[], test_acc=[], input_mean=mean, input_std=std, steps_per_epoch=steps,
               quarters=quarters, eval_s=0.0, flops=net.matmul_flops(B) * total)
    t0 = time.perf_counter()
    for epoch in range(cfg.epochs):
        perms = [torch.randperm(len(xtr), generator=g) for g in gens]
        for i in range(steps):
            xs = []
            for p, gen in zip(perms, gens):
                x = to_input(xtr[p[i * B:(i + 1) * B]], mean, std)              # [B, 784]
                hit = torch.rand(B, generator=gen) < cfg.noise_prob             # images that get noise
                x[hit] += cfg.noise_std * torch.randn(int(hit.sum()), 784, generator=gen)
                xs.append(x)
            y = torch.stack([ytr[p[i * B:(i + 1) * B]] for p in perms]).to(dev).repeat(net.G, 1)  # [M, B]
            logits = net(torch.stack(xs).to(dev))                                # [M, B, 10]
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(net.M, B).mean(1)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            if (step := epoch * steps + i + 1) in when:
                t1, (tl, ta) = time.perf_counter(), evaluate(net, data["test_x"], data["test_y"], mean, std)
                res["step"].append(step), res["test_loss"].append(tl), res["test_acc"].append(ta)
                res["eval_s"] += time.perf_counter() - t1
                print(f"step {step}/{total}: mean test accuracy {ta.nanmean():.4f}") if progress else None
        sched.step()
    res["train_s"] = time.perf_counter() - t0 - res["eval_s"]
    res["test_loss"], res["test_acc"] = torch.stack(res["test_loss"]), torch.stack(res["test_acc"])
    return res

@torch.no_grad()
def evaluate(net, x, y, mean=0.0, std=1.0):
    """Clean images x (uint8), labels y -> (loss [M], accuracy [M]), float64 on the CPU."""
    logits, y = net(to_input(x, mean, std).to(net.W_e.device)), y.to(net.W_e.device).expand(net.M, -1)  # [M, N, 10]
    return F.cross_entropy(logits.mT, y, reduction="none").double().mean(1).cpu(), (logits.argmax(-1) == y).double().mean(1).cpu()

# Effective linearity. Fit a layer's output u [N, d] by an affine map of its input h [N, d]:
# min_{B,c} ||u - h B - c||^2. Centring both (hc, uc) fits c exactly; B solves the normal equations
# (hc^T hc) B = hc^T uc (a pseudo-inverse: dead units leave zero directions). Pooled over the d outputs,
#     R^2 = 1 - SS_res / SS_tot,   SS_res = ||uc - hc B||^2,   SS_tot = ||uc||^2.
# R^2 = 1: on these inputs the gated layer IS a linear map; 1 - R^2 is the share of its output variance
# that no affine map produces. A bilinear layer is a quadratic form in h: R^2 < 1 is the curvature it uses.
def r2(x, y, rtol=1e-12):
    """R^2 of the least-squares affine fit y ~ x B + c, pooled over columns. x [N, p], y [N, q]."""
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("nan")                                    # LAPACK may abort, not return NaN, on NaN
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    lam, V = torch.linalg.eigh(xc.T @ xc)                      # hc^T hc = V diag(lam) V^T
    B = V @ (torch.where(lam > rtol * lam[-1].clamp_min(0), 1 / lam, 0.0)[:, None] * (V.T @ (xc.T @ yc)))
    ss_tot = yc.square().sum().item()
    return 1.0 - (yc - xc @ B).square().sum().item() / ss_tot if ss_tot > 0 else 1.0   # a constant is affine

@torch.no_grad()
def effective_linearity(net, x, mean=0.0, std=1.0):
    """R^2 [M, layers] of every member's gated layers on the images x."""
    net(to_input(x, mean, std).to(net.W_e.device), layers=(io := []))
    return torch.tensor([[r2(h[m], u[m]) for h, u in io] for m in range(net.M)], dtype=torch.float64)

def gemm_rate(device, n=2048, reps=3):
    """FLOP/s of one fp32 n x n torch.mm, best of reps: the hardware yardstick (as in nanoGPT's MFU)."""
    a, times = torch.randn(n, n, device=device), []
    for _ in range(reps + 1):
        t = time.perf_counter()
        torch.mm(a, a)[0, 0].item()                              # .item() waits for an asynchronous device
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times)

# ---- Compare with the source: [SQS] Table 1, test loss and accuracy at 25/50/75/100 %, 5 runs --------
TABLE1 = """mnist ReLU .2703 .9550 .1803 .9690 .1433 .9748 .1305 .9770
mnist GELU .1305 .9606 .0943 .9713 .0747 .9769 .0680 .9789
mnist SwiGLU .1453 .9573 .1014 .9695 .0794 .9757 .0728 .9780
mnist Bilinear .2637 .9578 .1885 .9703 .1560 .9755 .1431 .9780
mnist SQS .1609 .9590 .1083 .9722 .0895 .9768 .0834 .9785
fashion ReLU .6852 .7939 .6099 .8173 .5546 .8348 .5322 .8422
fashion GELU .4723 .8251 .4109 .8481 .3746 .8616 .3599 .8681
fashion SwiGLU .4731 .8251 .4102 .8481 .3747 .8621 .3605 .8677
fashion Bilinear .7038 .7961 .6367 .8211 .5881 .8383 .5672 .8461
fashion SQS .5104 .8217 .4457 .8422 .4063 .8548 .3890 .8616"""
PAPER = {(r[0], r[1]): [float(v) for v in r[2:]] for r in map(str.split, TABLE1.splitlines())}
NAMES = {"relu": "ReLU", "gelu": "GELU", "silu": "SwiGLU", "identity": "Bilinear", "sqs:0.01,0.5,1": "SQS"}

def verdicts(names, steps, acc, q, r2s, dataset):
    """The paper's claims on our numbers, judged on seed means, with the per-seed count beside each.
    q [4, 2, G, S] (checkpoint, loss|acc, gate, seed), acc [T, G, S], r2s [G, S, layers]."""
    if "SQS" not in names:
        return ["(no default SQS gate: the paper's claims are not checked)"]
    i, S, paper = names.index("SQS"), acc.shape[2], {n: PAPER[dataset, n] for n in names if (dataset, n) in PAPER}
    order, gaps = lambda loss: " < ".join(sorted(loss, key=loss.get)), {n: q[3, 1, names.index(n)].mean() - v[7] for n, v in paper.items()}
    out = [f"final test loss order: ours {order({n: q[3, 0, g].mean() for g, n in enumerate(names)})}; paper "
           f"{order({n: v[6] for n, v in paper.items()})}", f"final accuracy within 2 pt of Table 1: "
           f"{sum(abs(v) <= 0.02 for v in gaps.values())}/{len(gaps)} gates ({', '.join(f'{n} {100 * v:+.1f}' for n, v in gaps.items())} pt)"]
    for r in [names.index(n) for n in ("ReLU", "Bilinear") if n in names]:
        below, seeds = (q[:, 0, i].mean(1) < q[:, 0, r].mean(1)).sum(), (q[:, 0, i] < q[:, 0, r]).all(0).sum()
        out.append(f"SQS test loss below {names[r]} at every checkpoint: {'HOLDS' if below == 4 else 'DOES NOT HOLD'} "
                   f"on seed means ({below}/4 checkpoints); in {seeds}/{S} seeds at all 4")
    first = lambda a, thr: next((steps[t] for t in range(len(steps)) if a[t] >= thr), math.inf)   # inf = never
    for thr in (0.80, 0.85, 0.90):
        mean = [first(acc[:, g].mean(1), thr) for g in range(len(names))]
        rival = lambda s: min([first(acc[:, g, s], thr) for g in range(len(names)) if g != i], default=math.inf)
        won, who = sum(first(acc[:, i, s], thr) < rival(s) for s in range(S)), [n for n, v in zip(names, mean) if v == min(mean)]
        word = ("NOT TESTED (no gate reaches it)" if min(mean) == math.inf else "HOLDS" if who == ["SQS"]
                else "TIED" if "SQS" in who else "DOES NOT HOLD")
        out.append(f"SQS first to reach {thr:.0%}: {word} on seed means (SQS at step {str(mean[i]).replace('inf', 'never')}, earliest "
                   f"{str(min(mean)).replace('inf', 'never')}: {', '.join(who)}); SQS strictly first in {won}/{S} seeds")
    if "Bilinear" in names and "GELU" in names:
        b, g, s = (r2s[names.index(n)].mean(0) for n in ("Bilinear", "GELU", "SQS"))
        inside = ((torch.minimum(b, g) <= s) & (s <= torch.maximum(b, g))).tolist()
        out.append(f"SQS's R^2 between Bilinear's and GELU's: {'HOLDS' if all(inside) else 'DOES NOT HOLD'} "
                   f"({sum(inside)}/{len(inside)} layers, seed means)")
    return out

def report(cfg, names, res, r2s, gemm, command):
    """Markdown: our table beside the paper's, verdicts, R^2 table, achieved FLOP/s. Also -> acc, loss [T, G, S]."""
    T, G, S, cell = len(res["step"]), len(names), cfg.seeds, lambda v: f"{v.mean():.4f} ± {v.std():.4f}"
    acc, loss = res["test_acc"].view(T, G, S).numpy(), res["test_loss"].view(T, G, S).numpy()
    q = np.stack([np.stack([loss[res["step"].index(s)], acc[res["step"].index(s)]]) for s in res["quarters"]])
    lines = [f"# {cfg.dataset}: Table 1 of arXiv:2509.01874\n\n`python train_mnist.py {command}`\n\nTest loss / "
             f"accuracy at 25/50/75/100 % of {res['quarters'][-1]} steps, mean ± std over {S} seed(s).\n",
             "| gate | | " + " | ".join(f"{p}% loss | {p}% acc" for p in (25, 50, 75, 100)) + " |", "|---" * 10 + "|"]
    for g, n in enumerate(names):
        lines.append(f"| {n} | ours | " + " | ".join(cell(q[k, j, g]) for k in range(4) for j in (0, 1)) + " |")
        lines += ["| | paper | " + " | ".join(f"{v:.4f}" for v in PAPER[cfg.dataset, n]) + " |"] * ((cfg.dataset, n) in PAPER)
    lines += ["\nVerdicts:\n"] + [f"- {v}" for v in verdicts(names, res["step"], acc, q, r2s, cfg.dataset)]
    lines += ["\nEffective linearity R^2 of each gated layer on the test set (mean ± std over seeds):\n",
              "| gate | " + " | ".join(f"layer {l + 1}" for l in range(cfg.layers)) + " |", "|---" * (cfg.layers + 1) + "|"]
    lines += [f"| {n} | " + " | ".join(cell(r2s[g, :, l].numpy()) for l in range(cfg.layers)) + " |" for g, n in enumerate(names)]
    lines.append(f"\nTraining {res['train_s']:.1f} s (+ {res['eval_s']:.1f} s evaluating): {res['flops'] / 1e12:.2f} "
                 f"TFLOP of matmuls = {(rate := res['flops'] / res['train_s']) / 1e9:.1f} GFLOP/s = {rate / gemm:.0%} of the fp32 GEMM rate timed at "
                 f"start-up ({gemm / 1e9:.1f} GFLOP/s, 2048x2048 torch.mm; {torch.get_num_threads()} threads).")
    return "\n".join(lines) + "\n", acc, loss

def plot(names, epochs, acc, loss, dataset, path):
    import matplotlib.pyplot as plt
    plt.switch_backend("Agg")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (g, n), (ax, v, j) in ((gn, a) for gn in enumerate(names) for a in ((axes[0], loss, 0), (axes[1], acc, 1))):
        ax.plot(epochs, v[:, g].mean(1), color=f"C{g}", label=n)
        ax.fill_between(epochs, v[:, g].min(1), v[:, g].max(1), color=f"C{g}", alpha=0.2, lw=0)
        ax.plot(epochs[-1] * np.array([.25, .5, .75, 1]), PAPER.get((dataset, n), [np.nan] * 8)[j::2], "x", color=f"C{g}")
    axes[0].set(xlabel="epoch", ylabel="test loss", title=f"{dataset}: seed mean, band min..max, x = paper"), axes[0].legend()
    axes[1].set(xlabel="epoch", ylabel="test accuracy"), fig.tight_layout()
    atomic(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png")), plt.close(fig)

def atomic(path, write):
    """write(path + '.tmp'), then rename: a crash never leaves a half-written file under the real name."""
    write(path + ".tmp"), os.replace(path + ".tmp", path)

def save_checkpoint(path, net, config):
    atomic(path, lambda tmp: torch.save({"config": config, "state_dict": net.state_dict()}, tmp))

def load_checkpoint(path):
    """ckpt.pt -> (Net, config), read with weights_only=True; DataError (one line) if unusable."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict):                            # e.g. a bare tensor saved with torch.save
            raise TypeError(f"it holds a {type(ck).__name__}, not a dict")
        net = Net(*(ck["config"][k] for k in ("acts", "seeds", "d_model", "layers", "out_proj")))
        net.load_state_dict(ck["state_dict"])
    except Exception as e:
        raise DataError(f"{path}: not a train_mnist.py checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:150]})") from None
    return net, ck["config"]

def main(argv=None):
    args = (parser := build_parser()).parse_args(argv)
    cfg = Config(**{**(QUICK if args.quick else {}), **{k: v for k, v in vars(args).items() if k in Config.__annotations__}})
    try:
        acts = check_config(cfg)
        dev = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
        torch.empty(1, device=dev)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e).splitlines()[0])
    out = args.out or os.path.join("out", "mnist", cfg.dataset)
    try:
        os.makedirs(out, exist_ok=True)
        data = load_data(cfg.dataset, args.data_dir)
    except (DataError, OSError) as e:
        sys.exit(f"error: {e}")
    gemm, net = gemm_rate(dev), Net(acts, range(cfg.seeds), cfg.d_model, cfg.layers, cfg.out_proj).to(dev)
    print(f"{cfg}\n{len(data['train_x'])} train images from {data['folder']}; {net.M} members; device {dev}")
    try:
        res = train(net, data, cfg, progress=not args.no_progress)
    except ValueError as e:
        parser.error(str(e))
    r2s = effective_linearity(net, data["test_x"], res["input_mean"], res["input_std"]).view(net.G, net.S, -1)
    names = [NAMES.get(a.spec, a.spec) for a in acts]
    text, acc, loss = report(cfg, names, res, r2s, gemm, " ".join(sys.argv[1:] if argv is None else argv))
    print(text)
    atomic(os.path.join(out, "report.md"), lambda tmp: open(tmp, "w", encoding="utf-8").write(text))
    plot(names, np.array(res["step"]) / res["steps_per_epoch"], acc, loss, cfg.dataset, os.path.join(out, "curves.png"))
    save_checkpoint(os.path.join(out, "ckpt.pt"), net, {**dataclasses.asdict(cfg), **{k: res[k] for k in (
        "input_mean", "input_std", "step")}, "acts": [a.spec for a in acts], "seeds": net.seeds, "r2": r2s.tolist(),
        "test_loss": res["test_loss"].tolist(), "test_acc": res["test_acc"].tolist()})
    print(f"wrote {out}/report.md, curves.png, ckpt.pt")

if __name__ == "__main__":
    main()
