"""train_mnist.py -- MNIST / Fashion-MNIST with GLU gates (ReLU, GELU, SwiGLU, Bilinear, SQS):
Table 1 of the SQS paper, end to end, on a laptop CPU.

Question: does the Signed Quadratic Shrink gate keep up with GELU and SwiGLU on (Fashion-)MNIST, as
the paper's Table 1 and section 4.2.1 say?
Sources: [SQS] "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation
Function", arXiv:2509.01874 (4.2.1, Table 1, A.2.2). [BIL] Pearce, Dooms, Rigg, Oramas, Sharkey,
"Bilinear MLPs enable weight-based mechanistic interpretability", arXiv:2410.08417; code:
https://github.com/tdooms/bilinear-decomposition (src/image/), which fills what A.2.2 leaves open.

The SQS formula is not in the paper's text. Ours, sqs(x) = (x - c sign x) / (1 + lam |x|^p) with
c = 0.01, lam = 0.5, p = 1 (activations.py), is a reconstruction; `--acts sqs:0.01,0.25,1` sets lam.

All gates x seeds train as ONE network whose weights carry a leading member dimension (torch.bmm).
A seed fixes a member's initial weights and its data stream for every gate alike: gates are compared
paired. Printed: our table beside the paper's, one verdict per claim of the paper (quoted), each
layer's effective linearity R^2 (new, not a claim of the paper), and where the time went.
Expected on Fashion-MNIST: every gate 0.7-1.6 pt of accuracy below Table 1, the paper's final-loss
order GELU < SwiGLU < SQS < ReLU < Bilinear; SQS below ReLU and Bilinear at every checkpoint, but
not the first to 80 % or 85 %, not the lowest final loss (nor in the paper's own table), and its
layers the most linear of all five gates.

    python train_mnist.py --dataset fashion   # Table 1, Fashion-MNIST (MNIST: --dataset mnist)
    python train_mnist.py --quick             # classroom run: 10k images, 4 epochs, 2 seeds
Writes out/mnist/<dataset>/report.md, curves.png, ckpt.pt (every member; load_checkpoint reads it).
"""
import argparse
import dataclasses
import gzip
import hashlib
import math
import os
import pathlib
import struct
import sys
import time
import urllib.request
import zlib

import numpy as np
import torch
import torch.nn.functional as F

import activations as A


# ==== CONFIG
# [SQS] A.2.2 states: 2 layers, model dim 128, input noise std 1.0, AdamW lr 1e-3 with weight
# decay 0.1, batch 512, cosine annealing, 20 epochs, "average over 5 runs". "We follow Pearce et
# al." is said for section 4.1 only; reading it for 4.2 too, [BIL]'s code fixes the rest (below:
# "BIL code").
@dataclasses.dataclass
class Config:
    dataset: str = "fashion"       # fashion | mnist
    acts: str = "relu,gelu,swiglu,bilinear,sqs"   # Table 1's gates; sqs = sqs:0.01,0.5,1
    seeds: int = 5                 # A.2.2: "average over 5 runs"
    epochs: int = 20               # A.2.2
    batch: int = 512               # A.2.2
    layers: int = 2                # A.2.2
    d_model: int = 128             # A.2.2; also the gated width: BIL code's Bilinear(d, d)
    lr: float = 1e-3               # A.2.2
    wd: float = 0.1                # A.2.2
    noise_std: float = 1.0         # A.2.2
    noise_prob: float = 0.5        # BIL code: kornia's RandomGaussianNoise, default p = 0.5
    input: str = "pixels01"        # BIL code: x / 255 | standard: (x / 255 - mean) / std (ours)
    out_proj: bool = False         # BIL code: no W_o after the gated product | True: our ablation
    train_subset: int = 0          # use only the first N training images (0 = all)
# Also from BIL code: no biases, nn.Linear's init, no residual, shuffled batches with drop_last, the
# cosine schedule stepped once per epoch. Our reading: the SQS formula; the same pipeline for 4.2.


QUICK = {"train_subset": 10_000, "epochs": 4, "seeds": 2}   # --quick; flags given explicitly win
HELP = {
    "dataset": "fashion | mnist",
    "acts": "comma-separated GLU gates: " + A.act_choices(),
    "seeds": "seeds per gate (seed s: initial weights and data stream)",
    "epochs": "training epochs",
    "batch": "images per step and seed",
    "layers": "GLU layers",
    "d_model": "width of the embedding and of each GLU",
    "lr": "AdamW learning rate (cosine-annealed to 0)",
    "wd": "AdamW weight decay",
    "noise_std": "std of the Gaussian noise added to training images",
    "noise_prob": "probability that a training image gets noise",
    "input": "pixels01 (x / 255) | standard ((x / 255 - mean) / std of the training set)",
    "out_proj": "a d x d projection W_o after each gated product",
    "train_subset": "train on the first N images only (0 = all)",
}


# ==== The model: every weight has a leading member dimension M = G gates x S seeds
class Net(torch.nn.Module):
    """Member m = g*S + s (gate-major) uses gate acts[g] and starts from seed seeds[s]'s draw.
    Weights in nn.Linear's [out, in] layout, no biases: W_e [M, d, 784]; W[l] [M, 2d, d] (rows :d
    are W_g, rows d: are W_v); W_o[l] [M, d, d] only with out_proj; W_u [M, 10, d]."""

    def __init__(self, acts, seeds, d=128, layers=2, out_proj=False, use_kernel=True):
        super().__init__()
        self.acts = [A.parse_act(a) if isinstance(a, str) else a for a in acts]
        self.seeds = list(seeds)
        self.d = d
        self.out_proj = out_proj
        self.use_kernel = use_kernel          # False: the gates' plain formulas (--no-kernels)
        self.G = len(self.acts)
        self.S = len(self.seeds)
        self.M = self.G * self.S
        shapes = [(d, 784)] + [(2 * d, d)] * layers
        if out_proj:
            shapes += [(d, d)] * layers
        shapes.append((10, d))
        # nn.Linear's default init U(-1/sqrt(fan_in), 1/sqrt(fan_in)), one draw per seed in this
        # order; every gate of a seed starts from that seed's draw.
        draws = []
        for seed in self.seeds:
            gen = torch.Generator().manual_seed(seed)
            draws.append([(torch.rand(*shape, generator=gen) * 2 - 1) / math.sqrt(shape[1])
                          for shape in shapes])
        weights = []
        for k in range(len(shapes)):
            per_seed = torch.stack([draw[k] for draw in draws])           # [S, out, in]
            weights.append(torch.nn.Parameter(per_seed.repeat(self.G, 1, 1)))  # [M, out, in]
        self.W_e = weights[0]
        self.W = torch.nn.ParameterList(weights[1:1 + layers])
        self.W_o = torch.nn.ParameterList(weights[1 + layers:-1])
        self.W_u = weights[-1]

    def forward(self, x, layers=None):
        """x [S, B, 784] (seed s's batch, for each of its G gates) or [B, 784] (for every member)
        -> logits [M, B, 10]. If a list `layers` is given, appends (input h, output u) of each GLU
        layer, [M, B, d] each."""
        S = self.S
        if x.dim() == 2:
            x = x.expand(S, -1, -1)
        # Per-gate views [S, ...] by split: its backward is one cat (indexing would zero-fill a
        # gradient per gate).
        W_e = self.W_e.split(S)
        W_u = self.W_u.split(S)
        W = [w.split(S) for w in self.W]
        W_o = [w.split(S) for w in self.W_o]
        logits = []
        seen = [([], []) for _ in self.W]
        for g, act in enumerate(self.acts):                  # gate g: a chain of bmm's, S members
            h = torch.bmm(x, W_e[g].mT)                                       # [S, B, d]
            for l in range(len(W)):
                # Two bmm's, one per half of W[l]: gate and value come out contiguous (a split of
                # one [S, B, 2d] output would give strided halves, on which the elementwise ops
                # and the backward's bmm's run up to ~2x slower on a CPU).
                W_g, W_v = W[l][g].chunk(2, dim=1)                            # [S, d, d] views
                gate = torch.bmm(h, W_g.mT)                                   # [S, B, d]: W_g h
                value = torch.bmm(h, W_v.mT)                                  # [S, B, d]: W_v h
                u = A.glu(gate, value, act, use_kernel=self.use_kernel)       # act(W_g h) * W_v h
                if self.out_proj:
                    u = torch.bmm(u, W_o[l][g].mT)                            # [S, B, d]
                seen[l][0].append(h)
                seen[l][1].append(u)
                h = u
            logits.append(torch.bmm(h, W_u[g].mT))                            # [S, B, 10]
        if layers is not None:
            for inputs, outputs in seen:
                layers.append((torch.cat(inputs), torch.cat(outputs)))
        return torch.cat(logits)                                              # [M, B, 10]

    def matmul_flops(self, batch):
        """Matmul FLOPs of one training step: the forward does 2*B*out*in per matrix; the backward
        the same for each weight gradient and each input gradient, except W_e's input gradient
        (the pixels need none)."""
        forward = 0
        for w in self.parameters():
            forward += 2 * batch * w[0].numel()
        return self.M * (3 * forward - 2 * batch * self.W_e[0].numel())


# ==== Training
def to_input(x, mean=0.0, std=1.0):
    """uint8 pixels -> float network input."""
    return (x.float() / 255 - mean) / std


def noisy_batch(x_all, y_all, perms, gens, step, cfg):
    """Batch `step` of every seed -> x [S, B, 784], y [S, B]. Seed s's generator draws which images
    get noise (each with probability noise_prob) and then the noise itself (std noise_std)."""
    B = cfg.batch
    S = len(perms)
    x = torch.empty(S, B, 784)
    y = torch.empty(S, B, dtype=torch.long)
    for s in range(S):
        rows = perms[s][step * B:(step + 1) * B]
        torch.index_select(x_all, 0, rows, out=x[s])
        torch.index_select(y_all, 0, rows, out=y[s])
        hit = torch.rand(B, generator=gens[s]) < cfg.noise_prob
        noisy = hit.nonzero().squeeze(1)
        noise = cfg.noise_std * torch.randn(len(noisy), 784, generator=gens[s])
        x[s].index_add_(0, noisy, noise)                    # x[noisy] += noise, in place
    return x, y


def member_losses(net, x, y):
    """x [S, B, 784], y [S, B] -> each member's mean cross-entropy [M]."""
    logits = net(x)                                          # [M, B, 10]
    labels = y.repeat(net.G, 1)                              # [M, B]: gate-major, like the members
    per_image = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
    return per_image.view(net.M, -1).mean(1)


def make_optimizer(net, cfg):
    # The loss is the sum of the members' mean losses: each member's gradient is its own, and AdamW
    # is elementwise, so one stacked optimiser is M independent ones.
    fused = net.W_e.device.type in ("cpu", "cuda")
    return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.wd, fused=fused)


def wait(device):
    """Wait for queued GPU work, so that a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    if device.type == "mps":
        torch.mps.synchronize()


def train(net, data, cfg, progress=False):
    """Train net in place with [BIL]'s recipe -> dict of test curves [T, M] and timings. Seed s's
    own generator draws its shuffles, noise masks and noise: a member trained alone is the same."""
    dev = net.W_e.device
    n = len(data["train_x"])
    if cfg.train_subset:
        n = min(n, cfg.train_subset)
    x_uint8 = data["train_x"][:n]
    steps = n // cfg.batch                                   # drop_last
    if steps == 0:
        raise ValueError(f"--batch {cfg.batch} is larger than the {n} training images")
    mean, std = 0.0, 1.0
    if cfg.input == "standard":
        mean = x_uint8.double().mean().item() / 255
        std = x_uint8.double().std().item() / 255
    x_all = to_input(x_uint8, mean, std)                     # [N, 784] float, converted once
    y_all = data["train_y"][:n]
    opt = make_optimizer(net, cfg)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)   # per epoch
    gens = [torch.Generator().manual_seed(10_000 + s) for s in net.seeds]
    total = steps * cfg.epochs
    quarters = [max(1, round(q * total)) for q in (0.25, 0.5, 0.75, 1.0)]
    when = set(quarters)                                     # evaluate at 25/50/75/100 % ...
    for e in range(1, cfg.epochs + 1):
        when.add(e * steps)                                  # ... and at every epoch's end
    res = {"step": [], "test_loss": [], "test_acc": [], "input_mean": mean, "input_std": std,
           "steps_per_epoch": steps, "quarters": quarters,
           "flops": net.matmul_flops(cfg.batch) * total,
           "data_s": 0.0, "step_s": 0.0, "eval_s": 0.0}
    for epoch in range(cfg.epochs):
        perms = [torch.randperm(n, generator=gen) for gen in gens]
        for i in range(steps):
            t0 = time.perf_counter()
            x, y = noisy_batch(x_all, y_all, perms, gens, i, cfg)
            x = x.to(dev)
            y = y.to(dev)
            wait(dev)
            t1 = time.perf_counter()
            loss = member_losses(net, x, y)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            wait(dev)
            t2 = time.perf_counter()
            res["data_s"] += t1 - t0
            res["step_s"] += t2 - t1
            step = epoch * steps + i + 1
            if step in when:
                test_loss, test_acc = evaluate(net, data["test_x"], data["test_y"], mean, std)
                res["eval_s"] += time.perf_counter() - t2
                res["step"].append(step)
                res["test_loss"].append(test_loss)
                res["test_acc"].append(test_acc)
                if progress:
                    print(f"step {step}/{total}: mean test accuracy {test_acc.nanmean():.4f}")
        sched.step()
    res["train_s"] = res["data_s"] + res["step_s"]
    res["test_loss"] = torch.stack(res["test_loss"])
    res["test_acc"] = torch.stack(res["test_acc"])
    return res


@torch.no_grad()
def evaluate(net, x, y, mean=0.0, std=1.0, chunk=1000):
    """Clean images x (uint8), labels y -> (loss [M], accuracy [M]), float64 on the CPU. In chunks
    of 1000 images, whose activations stay in cache (faster than one pass over all 10,000)."""
    dev = net.W_e.device
    loss_sum = torch.zeros(net.M, dtype=torch.float64)
    correct = torch.zeros(net.M, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        images = to_input(x[start:start + chunk], mean, std).to(dev)
        labels = y[start:start + chunk].to(dev).expand(net.M, -1)         # [M, n]
        logits = net(images)                                              # [M, n, 10]
        per_image = F.cross_entropy(logits.mT, labels, reduction="none")  # [M, n]
        loss_sum += per_image.double().sum(1).cpu()
        correct += (logits.argmax(-1) == labels).double().sum(1).cpu()
    return loss_sum / len(x), correct / len(x)


# ==== Measurements: effective linearity (new), FLOP rate, where the time went
# Fit a layer's output u [N, d] by an affine map of its input h [N, d]: min_{B,c} ||u - h B - c||^2.
# Centring both (hc, uc) fits c exactly; B solves the normal equations (hc^T hc) B = hc^T uc (a
# pseudo-inverse: dead units leave zero directions). Pooled over the d outputs,
#     R^2 = 1 - SS_res / SS_tot,   SS_res = ||uc - hc B||^2,   SS_tot = ||uc||^2.
# R^2 = 1: on these inputs the gated layer IS a linear map; 1 - R^2 is the share of its output
# variance that no affine map produces. A bilinear layer is a quadratic form in h: R^2 < 1 is the
# curvature it uses.
def r2(x, y, rtol=1e-12):
    """R^2 of the least-squares affine fit y ~ x B + c, pooled over columns. x [N, p], y [N, q]."""
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("nan")                      # LAPACK may abort, not return NaN, on NaN input
    xc = x.double() - x.double().mean(0)
    yc = y.double() - y.double().mean(0)
    lam, V = torch.linalg.eigh(xc.T @ xc)        # hc^T hc = V diag(lam) V^T
    keep = lam > rtol * lam[-1].clamp_min(0)
    inv = torch.where(keep, 1 / lam, 0.0)
    B = V @ (inv[:, None] * (V.T @ (xc.T @ yc)))
    ss_tot = yc.square().sum().item()
    if ss_tot == 0:
        return 1.0                               # a constant output is affine
    ss_res = (yc - xc @ B).square().sum().item()
    return 1.0 - ss_res / ss_tot


@torch.no_grad()
def effective_linearity(net, x, mean=0.0, std=1.0):
    """R^2 [M, layers] of every member's gated layers on the images x."""
    io = []
    net(to_input(x, mean, std).to(net.W_e.device), layers=io)
    out = torch.zeros(net.M, len(io), dtype=torch.float64)
    for m in range(net.M):
        for l, (h, u) in enumerate(io):
            out[m, l] = r2(h[m], u[m])
    return out


def gemm_rate(device, n=2048, reps=3):
    """FLOP/s of one fp32 n x n torch.mm, best of reps: the yardstick for the training FLOP rate."""
    a = torch.randn(n, n, device=device)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        torch.mm(a, a)[0, 0].item()              # .item() waits for an asynchronous device
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times)


def matmul_seconds(net, batch, reps=5):
    """Seconds of one training step's matmuls alone, median of reps: for each matrix [out, in] that
    forward() multiplies by, per gate, the forward bmm, the weight-gradient bmm and (except W_e's)
    the input-gradient bmm, on random operands of the same shapes (new ones per gate, as in a real
    step). The rest of a step is activations, loss and AdamW."""
    dev = net.W_e.device
    d = net.d
    matrices = [(d, 784)]                                  # W_e
    for _ in net.W:
        matrices += [(d, d), (d, d)]                       # W_g and W_v, one bmm each
    for _ in net.W_o:
        matrices.append((d, d))
    matrices.append((10, d))                               # W_u
    operands = []
    for _gate in range(net.G):
        for k, (out_dim, in_dim) in enumerate(matrices):
            a = torch.randn(net.S, batch, in_dim, device=dev)             # layer input
            grad = torch.randn(net.S, batch, out_dim, device=dev)         # gradient of its output
            weight = torch.randn(net.S, out_dim, in_dim, device=dev)
            operands.append((a, grad, weight, k == 0))
    times = []
    for _ in range(reps):
        wait(dev)
        t = time.perf_counter()
        for a, grad, weight, is_embedding in operands:
            torch.bmm(a, weight.mT)                                       # forward [S, B, out]
            torch.bmm(grad.mT, a)                                         # weight grad [S, out, in]
            if not is_embedding:
                torch.bmm(grad, weight)                                   # input grad [S, B, in]
        wait(dev)
        times.append(time.perf_counter() - t)
    return sorted(times)[reps // 2]


def time_breakdown(res, matmul_s):
    """One line: where the training run's time went. matmul_s: all steps' matmuls."""
    matmul_s = min(matmul_s, res["step_s"])
    parts = [("matmuls", matmul_s),
             ("activations+loss+optimizer", res["step_s"] - matmul_s),
             ("data+noise", res["data_s"]),
             ("evaluation", res["eval_s"])]
    total = res["train_s"] + res["eval_s"]
    words = []
    for name, seconds in parts:
        words.append(f"{name} {seconds:.1f} s ({seconds / total:.0%})")
    return "time: " + " / ".join(words) + " (matmuls: one step's bmm shapes timed alone, x steps)"


# ==== Compare with the paper: [SQS] Table 1, test loss and accuracy at 25/50/75/100 %, 5 runs
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


def parse_table(text):
    """-> {(dataset, gate): [loss, acc at 25 %, loss, acc at 50 %, ..., loss, acc at 100 %]}."""
    table = {}
    for row in text.splitlines():
        dataset, gate, *values = row.split()
        table[dataset, gate] = [float(v) for v in values]
    return table


PAPER = parse_table(TABLE1)
PAPER_NAME = {"mnist": "MNIST", "fashion": "FMNIST"}
NAMES = {"relu": "ReLU", "gelu": "GELU", "silu": "SwiGLU", "identity": "Bilinear",
         "sqs:0.01,0.5,1": "SQS"}
CHECKPOINTS = ("25 %", "50 %", "75 %", "100 %")
# [SQS] 4.2.1, word for word:
CLAIM_LOWEST = ("whilst achieving loss lower than all other activation functions at the end of "
                "training")
CLAIM_BELOW = {"mnist": "the SQS-GLU outperforms both the ReLU-GLU and Bilinear MLP at all "
                        "intermediate checkpoints",
               "fashion": "SQS-GLU consistently shows improved loss reduction over ReLU and "
                          "Bilinear MLPs"}
CLAIM_FIRST = "the SQS-GLU is the first to reach 80%, 85%, and 90% accuracy"
CLAIM_PAR = "achieves end-of-training accuracy on par with all other tested activation functions"


def paper_rows(names, dataset):
    """{gate: Table 1 row} for the gates of `names` that Table 1 has on this dataset."""
    rows = {}
    for name in names:
        if (dataset, name) in PAPER:
            rows[name] = PAPER[dataset, name]
    return rows


def earliest(curves, thr):
    """curves {gate: accuracies in evaluation order} -> (index of the first evaluation at which some
    gate reaches thr, [the gates that reach it there]); (None, []) if no gate ever does."""
    first = {}
    for name, curve in curves.items():
        for t, value in enumerate(curve):
            if value >= thr:
                first[name] = t
                break
    if not first:
        return None, []
    t_min = min(first.values())
    winners = [name for name, t in first.items() if t == t_min]
    return t_min, winners


def best_final(curves):
    """{gate: curve} -> (gate, value) with the highest last value."""
    best = None
    for name, curve in curves.items():
        if best is None or curve[-1] > curves[best][-1]:
            best = name
    return best, curves[best][-1]


def verdict_first_to_reach(names, steps, acc, thr, dataset):
    """acc [T, G, S] at evaluation steps `steps` -> (verdict, one line). Judged on seed means, with
    the count of seeds where SQS alone is first beside; a tie at the first step is TIED."""
    means = {}
    for g, name in enumerate(names):
        means[name] = acc[:, g].mean(1)
    t, who = earliest(means, thr)
    paper_acc = {}
    for name, row in paper_rows(names, dataset).items():
        paper_acc[name] = row[1::2]                        # accuracy at 25/50/75/100 %
    paper_t, paper_who = earliest(paper_acc, thr)
    if paper_t is not None:
        paper_text = f"first at {CHECKPOINTS[paper_t]}: {', '.join(paper_who)}"
    elif paper_acc:
        best, value = best_final(paper_acc)
        paper_text = f"no gate reaches it (best {best} {value:.4f})"
    else:
        paper_text = "no rows for this dataset"
    best, value = best_final(means)
    if t is None and paper_acc and paper_t is None:
        verdict = "NOT TESTED"
        ours = f"cannot be tested on this dataset: no gate reaches it (best {best} {value:.4f})"
    elif t is None:
        verdict = "NOT TESTED"
        ours = f"no gate reaches it in this run (best {best} {value:.4f})"
    else:
        if who == ["SQS"]:
            verdict = "HOLDS"
        elif "SQS" in who:
            verdict = "TIED"
        else:
            verdict = "DOES NOT HOLD"
        alone = 0
        for s in range(acc.shape[2]):
            seed_curves = {}
            for g, name in enumerate(names):
                seed_curves[name] = acc[:, g, s]
            if earliest(seed_curves, thr)[1] == ["SQS"]:
                alone += 1
        ours = (f"first at step {steps[t]}: {', '.join(who)}; SQS alone first in "
                f"{alone}/{acc.shape[2]} seeds")
    line = (f"{verdict} ({thr:.0%}): \"{CLAIM_FIRST}\" -- ours (seed means, evaluated at "
            f"every epoch's end): {ours}; paper's Table 1 (at 25/50/75/100 %): {paper_text}")
    return verdict, line


def verdict_lowest_final_loss(names, final_loss, dataset):
    """final_loss [G, S] -> (verdict, line): SQS's seed-mean final loss below every other gate's?"""
    i = names.index("SQS")
    means = final_loss.mean(1)
    rival = None
    for g in range(len(names)):
        if g != i and (rival is None or means[g] < means[rival]):
            rival = g
    verdict = "HOLDS" if means[i] < means[rival] else "DOES NOT HOLD"
    line = (f"{verdict}: \"{CLAIM_LOWEST}\" -- ours: SQS {means[i]:.4f}, lowest other "
            f"{names[rival]} {means[rival]:.4f}")
    paper = paper_rows(names, dataset)
    if "SQS" in paper and len(paper) > 1:
        paper_rival = None
        for name in paper:
            if name != "SQS" and (paper_rival is None or paper[name][6] < paper[paper_rival][6]):
                paper_rival = name
        paper_sqs = paper["SQS"][6]
        if paper_sqs < paper[paper_rival][6]:
            agree = "the paper's own Table 1 satisfies it"
        else:
            agree = "the paper's own Table 1 does not satisfy it"
        line += (f"; {agree} ({PAPER_NAME[dataset]}: SQS {paper_sqs:.4f} vs {paper_rival} "
                 f"{paper[paper_rival][6]:.4f})")
    return verdict, line


def verdict_below(names, q_loss, rival, dataset):
    """q_loss [4, G, S] (test loss at 25/50/75/100 %) -> (verdict, line): SQS's loss below the
    rival's at every checkpoint, on seed means; the per-seed count beside."""
    i = names.index("SQS")
    r = names.index(rival)
    below = int((q_loss[:, i].mean(1) < q_loss[:, r].mean(1)).sum())
    seeds = int((q_loss[:, i] < q_loss[:, r]).all(0).sum())
    verdict = "HOLDS" if below == 4 else "DOES NOT HOLD"
    line = (f"{verdict} (vs {rival}): \"{CLAIM_BELOW[dataset]}\" -- ours: SQS below {rival} at "
            f"{below}/4 checkpoints (seed means), in {seeds}/{q_loss.shape[2]} seeds at all 4")
    paper = paper_rows(names, dataset)
    if "SQS" in paper and rival in paper:
        paper_below = 0
        for k in range(4):
            if paper["SQS"][2 * k] < paper[rival][2 * k]:
                paper_below += 1
        line += f"; paper's Table 1: {paper_below}/4"
    return verdict, line


def on_par_tolerance(names, dataset):
    """The widest final-accuracy gap below another gate that the paper's own Table 1 shows for SQS
    on this dataset, calling them on par (FMNIST: GELU .8681 - SQS .8616 = 0.65 pt); 0 if none."""
    paper = paper_rows(names, dataset)
    widest = 0.0
    if "SQS" in paper:
        for name, row in paper.items():
            widest = max(widest, row[7] - paper["SQS"][7])
    return widest


def verdict_on_par(names, final_acc, dataset):
    """final_acc [G, S] -> (verdict, [definition line, verdict line]). On par with gate n: SQS's
    seed-mean final accuracy at most T_n below n's, T_n = the larger of the paper's own widest gap
    (on_par_tolerance) and twice the seed std of the paired per-seed gap (the seed spread)."""
    i = names.index("SQS")
    paper_gap = on_par_tolerance(names, dataset)
    definition = (f"definition (ours; the paper gives none): \"on par\" = SQS's final accuracy "
                  f"is at most T below the gate's, T = the larger of the widest gap the paper's "
                  f"own Table 1 calls on par ({100 * paper_gap:.2f} pt on {PAPER_NAME[dataset]}) "
                  f"and the seed spread (2 x std over seeds of the per-seed gap)")
    parts = []
    count = 0
    for g, name in enumerate(names):
        if g == i:
            continue
        gaps = final_acc[g] - final_acc[i]                   # > 0: SQS below the gate
        tolerance = max(paper_gap, 2 * gaps.std())
        if gaps.mean() <= tolerance:
            count += 1
            word = "on par"
        else:
            word = "not on par"
        parts.append(f"{name} {100 * gaps.mean():+.2f} pt (T = {100 * tolerance:.2f}): {word}")
    verdict = "HOLDS" if count == len(names) - 1 else "DOES NOT HOLD"
    line = (f"{verdict}: \"{CLAIM_PAR}\" -- gate minus SQS, final accuracy: " + "; ".join(parts)
            + f" ({count}/{len(names) - 1} on par)")
    return verdict, [definition, line]


def final_loss_order(names, final_loss, dataset):
    """One line: Table 1's final test-loss order, ours beside the paper's."""
    ours = [names[g] for g in np.argsort(final_loss.mean(1), kind="stable")]
    line = "Table 1's final test-loss order: ours " + " < ".join(ours)
    paper = paper_rows(names, dataset)
    if paper:
        theirs = sorted(paper, key=lambda gate: paper[gate][6])
        line += "; paper " + " < ".join(theirs)
    return line


def levels(names, final_acc, dataset):
    """One line: our final accuracy minus Table 1's, per gate. 2 pt is a tolerance we chose."""
    paper = paper_rows(names, dataset)
    parts = []
    within = 0
    for g, name in enumerate(names):
        if name in paper:
            diff = final_acc[g].mean() - paper[name][7]
            if abs(diff) <= 0.02:
                within += 1
            parts.append(f"{name} {100 * diff:+.1f}")
    return (f"final accuracy, ours minus Table 1: {', '.join(parts)} pt ({within}/{len(parts)} "
            f"within 2 pt -- a tolerance we chose, not a claim of the paper)")


def verdicts(names, steps, acc, q, r2s, dataset):
    """The paper's claims on our numbers, one line each (the on-par definition first).
    q [4, 2, G, S] (checkpoint, loss|acc, gate, seed), acc [T, G, S], r2s [G, S, layers]."""
    if "SQS" not in names or len(names) < 2:
        return ["(the paper's claims compare the default SQS gate, sqs:0.01,0.5,1, with other "
                "gates: not checked for these gates)"]
    final_loss = q[3, 0]
    final_acc = q[3, 1]
    lines = [final_loss_order(names, final_loss, dataset), levels(names, final_acc, dataset)]
    lines.append(verdict_lowest_final_loss(names, final_loss, dataset)[1])
    for rival in ("ReLU", "Bilinear"):
        if rival in names:
            lines.append(verdict_below(names, q[:, 0], rival, dataset)[1])
    for thr in (0.80, 0.85, 0.90):
        lines.append(verdict_first_to_reach(names, steps, acc, thr, dataset)[1])
    lines += verdict_on_par(names, final_acc, dataset)[1]
    if "Bilinear" in names and "GELU" in names:
        lines.append(linearity_line(names, r2s))
    return lines


def linearity_line(names, r2s):
    """New (not a claim of the paper): does SQS's R^2 lie between Bilinear's and GELU's?"""
    b = r2s[names.index("Bilinear")].mean(0)
    g = r2s[names.index("GELU")].mean(0)
    s = r2s[names.index("SQS")].mean(0)
    inside = ((torch.minimum(b, g) <= s) & (s <= torch.maximum(b, g))).tolist()
    highest = (r2s.mean(1).argmax(0) == names.index("SQS")).tolist()
    answer = "YES" if all(inside) else "NO"
    return (f"new (our measurement, not a claim of the paper): SQS's R^2 between Bilinear's and "
            f"GELU's? {answer} ({sum(inside)}/{len(inside)} layers, seed means); SQS has the "
            f"highest R^2 of all gates in {sum(highest)}/{len(highest)} layers")


def setup_line(cfg):
    """Which settings come from where (printed with the report)."""
    return ("setup: [SQS] A.2.2 gives layers, d_model, noise std, AdamW lr and wd, batch, cosine, "
            "epochs and 5 runs; from Pearce et al.'s code (the paper says it follows them in 4.1): "
            f"input {cfg.input}, noise on a share {cfg.noise_prob} of the images, output "
            f"projection {cfg.out_proj}, no biases, nn.Linear init, cosine stepped per epoch, "
            "drop_last; our reading: the SQS formula sqs(x) = (x - c sign x) / (1 + lam |x|^p), "
            "c 0.01, lam 0.5, p 1 (a reconstruction: the paper's text does not give it)")


def cell(values):
    return f"{values.mean():.4f} ± {values.std():.4f}"


def report(cfg, names, res, r2s, gemm, matmul_s, command):
    """Markdown: our table beside the paper's, verdicts, R^2 table, FLOP rate and time breakdown.
    Also -> acc, loss [T, G, S]."""
    T = len(res["step"])
    G = len(names)
    S = cfg.seeds
    acc = res["test_acc"].view(T, G, S).numpy()
    loss = res["test_loss"].view(T, G, S).numpy()
    rows = [res["step"].index(step) for step in res["quarters"]]
    q = np.stack([np.stack([loss[t], acc[t]]) for t in rows])        # [4, 2, G, S]
    lines = [f"# {cfg.dataset}: Table 1 of arXiv:2509.01874", "",
             f"`python train_mnist.py {command}`", "", setup_line(cfg), "",
             f"Test loss / accuracy at 25/50/75/100 % of {res['quarters'][-1]} steps, mean ± std "
             f"over {S} seed(s).", ""]
    header = "| gate | |"
    for p in (25, 50, 75, 100):
        header += f" {p}% loss | {p}% acc |"
    lines += [header, "|---" * 10 + "|"]
    for g, name in enumerate(names):
        row = f"| {name} | ours |"
        for k in range(4):
            row += f" {cell(q[k, 0, g])} | {cell(q[k, 1, g])} |"
        lines.append(row)
        if (cfg.dataset, name) in PAPER:
            paper = " | ".join(f"{v:.4f}" for v in PAPER[cfg.dataset, name])
            lines.append(f"| | paper | {paper} |")
    lines += ["", "Claims of [SQS] 4.2.1, quoted, judged on our numbers with Table 1's beside:", ""]
    for line in verdicts(names, res["step"], acc, q, r2s, cfg.dataset):
        lines.append(f"- {line}")
    lines += ["", "New (our measurement): effective linearity R^2 of each gated layer on the test "
              "set (mean ± std over seeds):", ""]
    lines.append("| gate | " + " | ".join(f"layer {l + 1}" for l in range(cfg.layers)) + " |")
    lines.append("|---" * (cfg.layers + 1) + "|")
    for g, name in enumerate(names):
        values = " | ".join(cell(r2s[g, :, l].numpy()) for l in range(cfg.layers))
        lines.append(f"| {name} | {values} |")
    rate = res["flops"] / res["train_s"]
    lines += ["", f"Training {res['train_s']:.1f} s (+ {res['eval_s']:.1f} s evaluating): "
              f"{res['flops'] / 1e12:.2f} TFLOP of matmuls = {rate / 1e9:.1f} GFLOP/s = "
              f"{rate / gemm:.0%} of the GEMM rate timed at start-up ({gemm / 1e9:.1f} GFLOP/s, "
              f"one 2048x2048 fp32 torch.mm; {torch.get_num_threads()} threads) -- not nanoGPT's "
              "MFU, which divides by a nominal peak.", "", time_breakdown(res, matmul_s)]
    return "\n".join(lines) + "\n", acc, loss


def plot(names, epochs, acc, loss, dataset, path):
    """Test loss and accuracy per evaluation: seed mean, min..max band; x = the paper's Table 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    table_x = epochs[-1] * np.array([0.25, 0.5, 0.75, 1.0])
    for g, name in enumerate(names):
        color = f"C{g}"
        paper = PAPER.get((dataset, name), [np.nan] * 8)
        for ax, values, offset in ((axes[0], loss, 0), (axes[1], acc, 1)):
            ax.plot(epochs, values[:, g].mean(1), color=color, label=name)
            ax.fill_between(epochs, values[:, g].min(1), values[:, g].max(1), color=color,
                            alpha=0.2, lw=0)
            ax.plot(table_x, paper[offset::2], "x", color=color)
    axes[0].set(xlabel="epoch", ylabel="test loss",
                title=f"{dataset}: seed mean, band min..max, x = paper")
    axes[0].legend()
    axes[1].set(xlabel="epoch", ylabel="test accuracy")
    fig.tight_layout()
    fig.savefig(path + ".tmp", dpi=80, format="png")
    plt.close(fig)
    os.replace(path + ".tmp", path)


# ==== Plumbing a student may skip: IDX files, downloads, checkpoints, command line
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
DIRS = {"mnist": "mnist", "fashion": "fashion-mnist"}      # folder names, as Debian's packages use
MIRRORS = {"mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                     "http://yann.lecun.com/exdb/mnist/"],
           "fashion": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]}
MD5 = {"mnist": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                 "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
       "fashion": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                   "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")}
# MD5[dataset][i] is the checksum of FILES[i] + ".gz".


class DataError(Exception):
    """A missing, corrupt or undownloadable data file, or an unusable checkpoint: one line."""


def idx_problem(raw, head, magic, got, dims):
    """-> what is wrong with an IDX file's bytes, or None."""
    if len(raw) < head:
        return f"truncated IDX header ({len(raw)} bytes)"
    if got != magic:
        return f"magic number {got}, expected {magic}"
    if dims[0] < 0 or dims[1:] not in ([28, 28], []):
        return f"dims {dims}, expected (n, 28, 28) or (n,)"
    need = head + math.prod(dims)
    if len(raw) < need:
        return f"truncated: {need} bytes expected, {len(raw)} found"
    if len(raw) > need:
        return f"trailing bytes: {need} bytes expected, {len(raw)} found"
    return None


def read_idx(path, magic):
    """IDX file (gzip or raw) -> uint8 array. Layout: big-endian int32 magic (2051 images, 2049
    labels), the dims as big-endian int32, (n, 28, 28) or (n,), then exactly prod(dims) bytes."""
    try:
        raw = pathlib.Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    head = 16 if magic == 2051 else 8
    got, *dims = struct.unpack(f">{head // 4}i", raw[:head].ljust(head, b"\0"))
    problem = idx_problem(raw, head, magic, got, dims)
    if problem:
        raise DataError(f"{path}: {problem}")
    arr = np.frombuffer(raw, np.uint8, offset=head).reshape(dims)
    if magic == 2049 and arr.size and arr.max() > 9:
        raise DataError(f"{path}: label {arr.max()} outside 0..9")
    return arr


def find_file(folder, name):
    """folder/name.gz or folder/name, whichever exists, else None."""
    for path in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
        if os.path.isfile(path):
            return path
    return None


def download(name, md5, folder, mirrors):
    """Fetch name.gz from the first mirror whose copy has the right MD5; -> list of errors."""
    errors = []
    for mirror in mirrors:
        try:           # a file is at most 10 MB: read it whole, check it, only then write it
            with urllib.request.urlopen(mirror + name + ".gz", timeout=30) as response:
                raw = response.read()
            got = hashlib.md5(raw).hexdigest()
            if got != md5:
                raise ValueError(f"MD5 {got} != {md5}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, name + ".gz")
            with open(path + ".part", "wb") as f:
                f.write(raw)
            os.replace(path + ".part", path)
            return []
        except Exception as e:                     # offline, HTTP error, truncated, MD5 mismatch
            errors.append(f"{mirror}: {e}")
    return errors


def load_data(dataset="fashion", data_dir=None, mirrors=None):
    """-> dict train_x uint8 [N, 784], train_y int64 [N], test_x, test_y, folder. Looks in data_dir,
    ./data/<name>/, /usr/share/datasets/<name>/; else downloads from mirrors into the first."""
    dirs = [os.path.join("data", DIRS[dataset]), "/usr/share/datasets/" + DIRS[dataset]]
    if data_dir:
        dirs.insert(0, data_dir)
    folder = dirs[0]
    for candidate in dirs:
        if all(find_file(candidate, name) for name in FILES):
            folder = candidate
            break
    if mirrors is None:
        mirrors = MIRRORS[dataset]
    for name, md5 in zip(FILES, MD5[dataset]):
        if find_file(folder, name):
            continue
        errors = download(name, md5, folder, mirrors)
        if not find_file(folder, name):
            why = " | ".join(errors) or "no mirror"
            raise DataError(f"{name}.gz is in none of {', '.join(dirs)} and could not be "
                            f"downloaded ({why}); put the four IDX files into {folder}/ or pass "
                            "--data-dir (Debian: apt-get install dataset-fashion-mnist)")
    out = {"folder": folder}
    for split, i in (("train", 0), ("test", 2)):
        x = read_idx(find_file(folder, FILES[i]), 2051)
        y = read_idx(find_file(folder, FILES[i + 1]), 2049)
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        out[split + "_x"] = torch.from_numpy(x.reshape(-1, 784).copy())
        out[split + "_y"] = torch.from_numpy(y.astype(np.int64))
    return out


def checkpoint_config(cfg, net, res):
    """The config saved beside the weights: the settings, the members, the input scaling and the
    test curves of train()'s result `res`."""
    config = dataclasses.asdict(cfg)
    config["acts"] = [a.spec for a in net.acts]
    config["seeds"] = net.seeds
    for key in ("input_mean", "input_std", "step"):
        config[key] = res[key]
    config["test_loss"] = res["test_loss"].tolist()
    config["test_acc"] = res["test_acc"].tolist()
    return config


def save_checkpoint(path, net, config):
    """{config, state_dict} -> path, written under a temporary name first."""
    torch.save({"config": config, "state_dict": net.state_dict()}, path + ".tmp")
    os.replace(path + ".tmp", path)


def load_checkpoint(path):
    """ckpt.pt -> (Net, config), read with weights_only=True; DataError (one line) if unusable."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ck, dict):                 # e.g. a bare tensor saved with torch.save
            raise TypeError(f"it holds a {type(ck).__name__}, not a dict")
        config = ck["config"]
        net = Net(config["acts"], config["seeds"], config["d_model"], config["layers"],
                  config["out_proj"])
        net.load_state_dict(ck["state_dict"])
    except Exception as e:
        message = " ".join(str(e).split())[:150]
        raise DataError(f"{path}: not a train_mnist.py checkpoint ({type(e).__name__}: "
                        f"{message})") from None
    return net, config


def check_config(cfg):
    """-> the parsed gates; ValueError with a one-line message for any bad setting."""
    rules = [("dataset", cfg.dataset in DIRS, "mnist|fashion"),
             ("input", cfg.input in ("pixels01", "standard"), "pixels01|standard"),
             ("lr", 0 < cfg.lr < math.inf, "> 0"),
             ("wd", 0 <= cfg.wd < math.inf, ">= 0"),
             ("noise_std", 0 <= cfg.noise_std < math.inf, ">= 0"),
             ("noise_prob", 0 <= cfg.noise_prob <= 1, "in [0, 1]"),
             ("train_subset", cfg.train_subset >= 0, ">= 0")]
    for name in ("seeds", "epochs", "batch", "layers", "d_model"):
        rules.append((name, getattr(cfg, name) >= 1, ">= 1"))
    bad = []
    for name, ok, want in rules:
        if not ok:
            flag = "--" + name.replace("_", "-")
            bad.append(f"{flag} {getattr(cfg, name)} (must be {want})")
    if bad:
        raise ValueError("bad setting: " + ", ".join(bad))
    acts = A.parse_acts(cfg.acts)
    specs = [a.spec for a in acts]
    if len(set(specs)) < len(specs):
        raise ValueError(f"bad setting: --acts {cfg.acts} names a gate twice")
    return acts


def build_parser():
    parser = argparse.ArgumentParser(
        description="MNIST / Fashion-MNIST GLU gates: Table 1 of arXiv:2509.01874")
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        text = f"{HELP[field.name]} (default: {field.default})"
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, type=type(field.default), default=argparse.SUPPRESS,
                                help=text)
    parser.add_argument("--quick", action="store_true",
                        help=f"classroom preset {QUICK}; flags given explicitly win (default: off)")
    parser.add_argument("--data-dir", help="folder with the four IDX files (default: ./data/<name>/"
                        ", then /usr/share/datasets/<name>/, else download into ./data/<name>/)")
    parser.add_argument("--out", help="output folder (default: out/mnist/<dataset>)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="auto picks cuda, then mps, then cpu (default: auto)")
    parser.add_argument("--no-kernels", action="store_true",
                        help="run the gates' plain PyTorch formulas even where the fused Triton "
                        "kernels would run (CUDA with triton), to compare eager and fused "
                        "(default: kernels on)")
    parser.add_argument("--no-progress", action="store_true",
                        help="do not print the test accuracy at each evaluation (default: print)")
    return parser


def pick_device(name):
    """'auto' -> cuda if available, else mps, else cpu; anything else as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def settings(parser, argv):
    """Command line -> (args, cfg, gates, device); a bad value is a one-line parser error."""
    args = parser.parse_args(argv)
    values = {}
    if args.quick:
        values.update(QUICK)
    for name, value in vars(args).items():
        if name in Config.__annotations__:
            values[name] = value                       # explicit flags win over the preset
    cfg = Config(**values)
    try:
        gates = check_config(cfg)
    except ValueError as e:
        parser.error(str(e).splitlines()[0])
    device = pick_device(args.device)
    try:
        torch.empty(1, device=device)                  # an unusable device fails here, in one line
    except (RuntimeError, AssertionError) as e:
        why = str(e).splitlines()[0][:100]
        parser.error(f"--device {args.device}: not usable with this torch ({why})")
    return args, cfg, gates, device


def write_outputs(out, text, net, cfg, res, r2s, names, acc, loss):
    """report.md, curves.png and ckpt.pt into out/, each under a temporary name first."""
    path = os.path.join(out, "report.md")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    epochs = np.array(res["step"]) / res["steps_per_epoch"]
    plot(names, epochs, acc, loss, cfg.dataset, os.path.join(out, "curves.png"))
    config = checkpoint_config(cfg, net, res)
    config["r2"] = r2s.tolist()
    save_checkpoint(os.path.join(out, "ckpt.pt"), net, config)


def main(argv=None):
    parser = build_parser()
    args, cfg, gates, device = settings(parser, argv)
    out = args.out or os.path.join("out", "mnist", cfg.dataset)
    try:
        os.makedirs(out, exist_ok=True)
        data = load_data(cfg.dataset, args.data_dir)
    except (DataError, OSError) as e:
        sys.exit(f"error: {e}")
    gemm = gemm_rate(device)
    net = Net(gates, range(cfg.seeds), cfg.d_model, cfg.layers, cfg.out_proj,
              use_kernel=not args.no_kernels).to(device)
    print(cfg)
    print(f"{len(data['train_x'])} train images from {data['folder']}; {net.M} members; "
          f"device {device}")
    try:
        res = train(net, data, cfg, progress=not args.no_progress)
    except ValueError as e:
        parser.error(str(e))
    matmul_s = matmul_seconds(net, cfg.batch) * res["quarters"][-1]
    r2s = effective_linearity(net, data["test_x"], res["input_mean"], res["input_std"])
    r2s = r2s.view(net.G, net.S, -1)
    names = [NAMES.get(a.spec, a.spec) for a in gates]
    if argv is None:
        argv = sys.argv[1:]
    text, acc, loss = report(cfg, names, res, r2s, gemm, matmul_s, " ".join(argv))
    print(text)
    write_outputs(out, text, net.cpu(), cfg, res, r2s, names, acc, loss)
    print(f"wrote {out}/report.md, curves.png, ckpt.pt")
    if device.type == "cuda":
        calls = A.FUSED_CALLS
        print(f"fused kernel calls: sqs={calls['sqs']} gensilu={calls['gensilu']}")


if __name__ == "__main__":
    main()
