"""train_memory.py -- the transformer MLP as a key-value memory: store N facts, measure how.

Source: the course card "MLP neurons as key-value-ish nonlinear transforms" (its sentences are
quoted below, then judged). Anchors: Geva et al., "Transformer Feed-Forward Layers Are Key-Value
Memories", arXiv:2012.14913; Allen-Zhu & Li, "Physics of Language Models: Part 3.3",
arXiv:2404.05405 (about 2 bits of knowledge per parameter); Meng et al., ROME, arXiv:2202.05262 (a
rank-one edit of the output matrix); Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202
(GLU width 2/3 keeps the parameter count).

A fact is (key -> value): a frozen random key k_i in R^d and a random value y_i among V classes,
read out through a frozen random unembedding U (V x d, unit rows): logits_i = U MLP(k_i), with
    plain  MLP(x) = W_down phi(W_up x)                      2 h d parameters
    GLU    MLP(x) = W_down (phi(W_gate x) * W_value x)      3 h d parameters
Only the MLP trains (Adam, full batch). Every configuration (gate x expansion r = h/d x load x seed)
trains at once: one ensemble, a leading "model" dimension on ordinary weights and torch.bmm.
Five measurements, each a table and a verdict against the card's sentence:
  1. capacity (facts recalled) and bits per parameter for r = 1, 2, 4, 8 and seven gates;
  2. GLU at the same width and at the same parameter count as the plain MLP;
  3. dead units and gradient through closed units, ReLU vs the smooth gates, during training;
  4. how many hidden units hold one fact, and the effective rank of the hidden activations;
  5. a rank-one edit and a gradient edit of one fact: how many other facts flip.
Expected: at >= 99 % recall each gate stores about 1.4 to 2 bits per parameter (Allen-Zhu & Li:
about 2), so capacity grows with r and 4x is not special -- except the bilinear gate, whose output
is d quadratic forms of the key: its capacity stops growing with width. GLU at the plain width
stores about 1.5x more, as it has 1.5x the parameters; at matched parameters it is roughly on par.
Units are shared by many facts, the hidden activations are far from low-rank (against the card),
and editing one fact flips others, more as the memory fills.

    python train_memory.py            # default run (docs/memory.md)
    python train_memory.py --quick    # classroom run, fewer ratios and steps
Writes out/memory/ report.md, memory_capacity.png, memory_edits.png.
"""
import argparse
import math
import os
import sys
import time

import matplotlib
import torch
import torch.nn.functional as F

import activations

matplotlib.use("Agg")            # figures go to files
import matplotlib.pyplot as plt  # noqa: E402

# ------------------------------------------------------------------------------------ CONFIG
DEFAULTS = dict(
    acts="relu,gelu,silu,swiglu,geglu,bilinear,sqs",   # plain gates, then GLU gates (see --help)
    d_model=8,           # d: width of keys and of the MLP's output; small, so that the 264 models
                         # (7 gates x 4 ratios x 6 loads, GLU twice) train in minutes on a CPU
    vocab=16,            # V: values per fact, log2 V = 4 bits per fact; V = 2d as in d 32, V 64
    ratios="1,2,4,8",    # expansion r = hidden / d; the card's "typical" 4x among them
    loads="0.5,0.71,1,1.41,2,2.83",   # facts asked for, in bits per parameter: N = load P / log2 V
    steps=1500,          # Adam steps, full batch (all facts at every step)
    lr=2e-2,             # Adam learning rate (1e-2 stores fewer facts in 1500 steps near capacity)
    seeds=1,             # seeds 0..S-1: a seed fixes the facts, U and the initial weights
    edits=16,            # facts edited one at a time, per model, in measurement 5
    edit_steps=10,       # Adam steps of the gradient edit (on the edited fact alone)
    out="out/memory",
    device="auto")
QUICK = dict(ratios="1,2,4", steps=300, edits=8)
THRESHOLD = 0.99         # a load is stored when at least 99 % of its facts are recalled
RECORDS = 8              # recall and gate statistics: recorded 8 times in training and at the end
CARD_RATIO = 4           # measurements 3-5 use the card's 4x (or the closest ratio trained)
GLU_NAMES = ("swiglu", "geglu", "reglu", "bilinear", "sqs")    # gates, in the GLU literature
ALLEN_ZHU_BITS = 2.0     # arXiv:2404.05405: about 2 bits of knowledge per parameter
BLOCK = 64               # facts are drawn in blocks of 64: the first n do not depend on the total


# ------------------------------------------------------------------------------------ the model
def n_params(glu, hidden, d):
    """Trained parameters of one MLP, no biases: W_up, W_down (plain) or W_gate, W_value, W_down."""
    matrices = 3 if glu else 2
    return matrices * hidden * d


# Why 2/3 matches parameters [Shazeer, arXiv:2002.05202]: a plain MLP of width h has two d x h
# matrices, 2 h d parameters; a GLU of width h' has three, 3 h' d. Equal counts need 3 h' d = 2 h d,
# h' = 2/3 h (PaLM and LLaMA widen "4x" to 2/3 * 4 = 8/3 for this reason). h' must be an integer:
# rounding 2h/3 misses by at most half a unit, i.e. |3 h' d - 2 h d| <= 3d / 2.
def matched_width(hidden):
    return max(1, round(2 * hidden / 3))


class Memory(torch.nn.Module):
    """M = len(acts) x len(seeds) MLPs of one shape, gate-major (member m = g S + s uses acts[g] and
    seed seeds[s]'s initial weights). Weights in nn.Linear's [out, in] layout with a leading member
    dimension: W_up or W_gate, W_value [M, h, d]; W_down [M, d, h]."""

    def __init__(self, acts, glu, seeds, d, hidden, use_kernel=True):
        super().__init__()
        self.acts, self.glu, self.seeds, self.use_kernel = list(acts), glu, list(seeds), use_kernel
        self.d = d
        self.hidden = hidden
        self.M = len(self.acts) * len(self.seeds)                  # members
        names = ("W_gate", "W_value", "W_down") if glu else ("W_up", "W_down")
        shapes = [(hidden, d)] * (len(names) - 1) + [(d, hidden)]
        draws = {name: [] for name in names}
        for seed in self.seeds:
            gen = torch.Generator().manual_seed(10_000 + seed)
            for name, (rows, cols) in zip(names, shapes):   # nn.Linear's U(+-1/sqrt(in))
                uniform = torch.rand(rows, cols, generator=gen) * 2 - 1
                draws[name].append(uniform / math.sqrt(cols))
        for name in names:                                # every gate starts from its seed's draw
            weight = torch.stack(draws[name]).repeat(len(self.acts), 1, 1)
            setattr(self, name, torch.nn.Parameter(weight))

    def hidden_units(self, keys):
        """keys [M, N, d] -> (z, a), [M, N, h] each: the gate's pre-activation z, the hidden a."""
        S = len(self.seeds)
        if self.glu:
            z = torch.bmm(keys, self.W_gate.mT)                           # [M, N, h]  W_gate k
            value = torch.bmm(keys, self.W_value.mT)                      # [M, N, h]  W_value k
            parts = zip(self.acts, z.split(S), value.split(S))
            a = [activations.glu(g, v, act, use_kernel=self.use_kernel) for act, g, v in parts]
        else:
            z = torch.bmm(keys, self.W_up.mT)                             # [M, N, h]  W_up k
            a = [act(g, use_kernel=self.use_kernel) for act, g in zip(self.acts, z.split(S))]
        return z, torch.cat(a)                      # per-gate slices by split: one cat in backward

    def forward(self, keys):
        """keys [M, N, d] -> MLP output [M, N, d]."""
        _, a = self.hidden_units(keys)
        return torch.bmm(a, self.W_down.mT)                               # [M, N, d]  W_down a

    def flops_per_fact(self, vocab):
        """Matmul FLOPs of one training step per fact and member, the readout U included: forward
        2 (P + d V); backward 2 P for the weight gradients, 2 h d into a, 2 d V into the output."""
        P = n_params(self.glu, self.hidden, self.d)
        forward = 2 * (P + self.d * vocab)
        backward = 2 * P + 2 * self.hidden * self.d + 2 * self.d * vocab
        return forward + backward


def make_facts(seed, n, d, vocab):
    """Seed's facts: keys [n, d] ~ N(0, 1), values [n] uniform in 0..V-1, and U [V, d] with unit
    rows (so that an output along u_v makes v the argmax: u_v . u_v = 1 > u_w . u_v for w != v)."""
    gen = torch.Generator().manual_seed(seed)
    U = F.normalize(torch.randn(vocab, d, generator=gen), dim=1)
    keys, values = [], []
    for _ in range(math.ceil(n / BLOCK)):
        keys.append(torch.randn(BLOCK, d, generator=gen))
        values.append(torch.randint(vocab, (BLOCK,), generator=gen))
    return torch.cat(keys)[:n], torch.cat(values)[:n], U


class Group:
    """One shape of the ensemble: a family (plain, GLU at the plain width, GLU at matched
    parameters) and a ratio r. Members: the family's gates x the loads x the seeds, member
    m = (gate L + load) S + seed.
    Every member sees the first N_load facts of its seed; shorter fact lists are padded to the
    longest and the padding is masked out of the loss (it costs compute, but one group per shape
    instead of one per load keeps the number of small kernel launches down)."""

    def __init__(self, family, acts, ratio, args):
        d, S, L = args.d_model, args.seeds, len(args.loads)
        glu = family != "plain"
        hidden = ratio * d if family != "glu-matched" else matched_width(ratio * d)
        self.family, self.ratio, self.loads = family, ratio, args.loads
        self.labels = [a[0] for a in acts]
        self.params = n_params(glu, hidden, d)
        self.S = S
        self.ns = [max(1, round(load * self.params / math.log2(args.vocab))) for load in args.loads]
        seeds = [s for _ in args.loads for s in range(S)]                   # members of one gate
        self.memory = Memory([a[1] for a in acts], glu, seeds, d, hidden, not args.no_kernels)
        self.memory.to(args.device)
        facts = [make_facts(s, max(self.ns), d, args.vocab) for s in range(S)]
        n_of = torch.tensor([n for n in self.ns for _ in range(S)] * len(acts))   # [M]
        keys = torch.stack([f[0] for f in facts]).repeat(L * len(acts), 1, 1)   # [M, N, d]
        values = torch.stack([f[1] for f in facts]).repeat(L * len(acts), 1)    # [M, N]
        U = torch.stack([f[2] for f in facts]).repeat(L * len(acts), 1, 1)      # [M, V, d]
        mask = torch.arange(max(self.ns))[None] < n_of[:, None]                 # [M, N] real facts
        self.keys, self.values = keys.to(args.device), values.to(args.device)
        self.U = U.to(args.device)
        self.mask, self.n_of = mask.to(args.device), n_of.to(args.device)

    def member(self, gate, load, seed):
        return (gate * len(self.loads) + load) * self.S + seed

    def facts(self, m):
        """Member m's own facts: keys [n, d], values [n], and its U [V, d]."""
        n = int(self.n_of[m])
        return self.keys[m, :n], self.values[m, :n], self.U[m]

    def logits(self):
        return torch.bmm(self.memory(self.keys), self.U.mT)                   # [M, N, V]


# ------------------------------------------------------------------------------------ training
def train(groups, steps, lr, records=RECORDS):
    """One Adam over every group's weights. The loss is the SUM of the members' own mean
    cross-entropies over their real facts, so each member gets its own gradient, and Adam is
    elementwise: each member trains as if alone. Records recall [R + 1, M] and gate statistics at
    steps 0, steps/R, 2 steps/R, ... and after the last step."""
    weights = [p for g in groups for p in g.memory.parameters()]
    opt = torch.optim.Adam(weights, lr=lr)
    every = max(1, steps // records)
    for g in groups:
        g.recall = []
        g.stats = []
        g.record_steps = []
    for t in range(steps + 1):
        total = 0.0
        for g in groups:
            logits = g.logits()                                                # [M, N, V]
            ce = F.cross_entropy(logits.flatten(0, 1), g.values.flatten(), reduction="none")
            ce = ce.view(g.values.shape) * g.mask                              # [M, N]
            total = total + (ce.sum(1) / g.n_of).sum()
            if t % every == 0 or t == steps:
                record(g, logits, t)
        if t == steps:
            break                                               # the last pass only records
        opt.zero_grad()
        total.backward()
        opt.step()
    for g in groups:
        g.recall = torch.stack(g.recall)                                       # [R + 1, M]


@torch.no_grad()
def record(group, logits, step):
    hits = (logits.argmax(-1) == group.values) & group.mask
    group.record_steps.append(step)
    group.recall.append((hits.sum(1) / group.n_of).cpu())
    group.stats.append(gate_stats(group.memory, group.keys, group.mask))


def gate_stats(memory, keys, mask):
    """Per member [M], over its real facts (mask [M, N]): the share of hidden units that get no
    gradient from any fact (phi(z) = 0 and phi'(z) = 0 for every fact: a dead ReLU unit), the share
    of units open per fact (z > 0), and the share of the gate's slope sum_ij |phi'(z_ij)| that flows
    through closed units (z < 0). For a GLU unit, phi is the gate's function of z = W_gate k."""
    with torch.no_grad():
        z, _ = memory.hidden_units(keys)
    size = len(memory.seeds)
    out = []
    for act, zg, real in zip(memory.acts, z.split(size), mask.split(size)):
        zg = zg.detach().requires_grad_()
        with torch.enable_grad():
            phi = act(zg, use_kernel=False)
            slope = torch.autograd.grad(phi.sum(), zg)[0].abs()               # |phi'(z)| [., N, h]
        real = real[:, :, None]
        silent = ((phi.detach() == 0) & (slope == 0)) | ~real
        dead = silent.all(1).float().mean(1)
        open_share = ((zg > 0) & real).sum((1, 2)) / (real.sum((1, 2)) * zg.shape[2])
        closed = (slope * ((zg < 0) & real)).sum((1, 2))
        closed_slope = closed / (slope * real).sum((1, 2)).clamp_min(1e-30)
        out.append(torch.stack([dead, open_share, closed_slope], 1))
    return torch.cat(out).cpu()                                               # [M, 3]


# ------------------------------------------------------------------------------------ evaluation
def capacity_index(recalls, threshold=THRESHOLD):
    """recalls[i]: recall at the i-th load (increasing N) -> index of the LARGEST load whose
    recall is at least threshold (a later load may pass after an earlier one failed), or None."""
    best = None
    for i, r in enumerate(recalls):
        if r >= threshold:
            best = i
    return best


def bits_per_param(stored, vocab, params):
    """Facts stored x log2 V bits each (a value among V), per trained parameter."""
    return stored * math.log2(vocab) / params


def effective_rank(matrix):
    """exp(entropy of the normalised singular values) (Roy & Vetterli 2007): n for n equal singular
    values, 1 for a rank-one matrix."""
    s = torch.linalg.svdvals(matrix.double())
    p = s / s.sum()
    p = p[p > 0]
    return math.exp(float(-(p * p.log()).sum()))


@torch.no_grad()
def units_to_forget(a, W_down, U, values):
    """For each fact (a [N, h] its hidden activations), remove hidden units one by one, the largest
    contribution a_j (u_y . W_down[:, j]) to its own logit first, until its argmax is no longer y.
    -> [N] the number of units removed (h + 1 if it is never forgotten)."""
    N, h = a.shape
    cols = W_down.T[None] * a[:, :, None]                        # [N, h, d] each unit's output
    own = cols @ U[values][:, :, None]                           # [N, h, 1] its share of the logit
    order = own[:, :, 0].argsort(1, descending=True)
    sorted_cols = torch.gather(cols, 1, order[:, :, None].expand(N, h, cols.shape[2]))
    out = cols.sum(1)                                                         # [N, d]
    remaining = out[:, None] - sorted_cols.cumsum(1)                          # [N, h, d] k removed
    forgotten = (remaining @ U.T).argmax(-1) != values[:, None]               # [N, h]
    return torch.where(forgotten.any(1), forgotten.float().argmax(1) + 1, h + 1)


@torch.no_grad()
def units_for_half(a, W_down, U, values):
    """-> [N] how many units, largest contribution first, carry half of the positive contributions
    a_j (u_y . W_down[:, j]) to each fact's own logit."""
    own = a * (U[values] @ W_down)                                            # [N, h]
    top = own.clamp_min(0).sort(1, descending=True).values.cumsum(1)
    return (top < 0.5 * top[:, -1:]).sum(1) + 1


@torch.no_grad()
def facts_per_unit(a, W_down, U, values):
    """-> [h] per unit, the recalled facts whose argmax changes when that unit alone is removed."""
    out = a @ W_down.T                                                        # [N, d]
    recalled = (out @ U.T).argmax(-1) == values
    without = out[None] - a.T[:, :, None] * W_down.T[:, None, :]              # [h, N, d]
    changed = (without @ U.T).argmax(-1) != values[None]                      # [h, N]
    return (changed & recalled[None]).sum(1)


# The rank-one edit in closed form. For a fact with hidden vector a (h) and wanted output o*,
# find the smallest change Delta (d x h, Frobenius norm) with (W_down + Delta) a = o*. Each row i
# of Delta only has to satisfy Delta_i . a = e_i, e = o* - W_down a; the shortest such row is
# along a, Delta_i = e_i a / (a . a) (any part orthogonal to a adds norm and does nothing). So
#     Delta = e a^T / (a . a),        rank one, and (W_down + Delta) a = W_down a + e = o* exactly.
# ROME (arXiv:2202.05262) weighs the norm by the covariance C of the hidden vectors a:
#     Delta = e (C^-1 a)^T / (a . C^-1 a);
# C = I here. With o* = |o| u_new (U's rows are unit vectors) the new value is the argmax.
def rank_one_edit(W_down, a, target):
    """W_down [d, h], a [E, h], target [E, d] -> Delta [E, d, h], one least-norm edit per row."""
    e = target - a @ W_down.T                                                 # [E, d]
    return e[:, :, None] * a[:, None, :] / (a * a).sum(1)[:, None, None]


def pick_edits(values, recalled, vocab, count, seed):
    """count recalled facts (indices) and a new value for each, never the old one."""
    gen = torch.Generator().manual_seed(seed)
    candidates = torch.nonzero(recalled.cpu()).flatten()
    facts = candidates[torch.randperm(len(candidates), generator=gen)[:count]]
    shift = torch.randint(1, vocab, (len(facts),), generator=gen)
    new = (values.cpu()[facts] + shift) % vocab
    return facts.to(values.device), new.to(values.device)


def edit_member(group, m, count, edit_steps, lr):
    """Edit `count` facts of member m, one at a time, each on a fresh copy of its weights:
    (a) the rank-one edit of W_down, (b) edit_steps Adam steps on that fact alone. -> per method:
    (success rate, share of the other recalled facts whose argmax flipped, share of edits that
    flipped at least one other fact), or None if the member recalls no fact."""
    mem = group.memory
    keys, values, U = group.facts(m)
    W_down = mem.W_down[m].detach()
    with torch.no_grad():
        _, a = mem.hidden_units(group.keys)
        a = a[m, :len(values)]                                                 # [N, h]
        out = a @ W_down.T                                                     # [N, d]
        before = (out @ U.T).argmax(-1)                                        # [N]
    facts, new = pick_edits(values, before == values, U.shape[0], count, 1000 + m)
    E = len(facts)
    if E == 0:
        return None
    target = out[facts].norm(dim=1, keepdim=True) * U[new]              # [E, d]  o* = |o| u_new
    delta = rank_one_edit(W_down, a[facts], target)                            # [E, d, h]
    after_rank_one = ((out[None] + a[None] @ delta.mT) @ U.T).argmax(-1)       # [E, N]
    gate = mem.acts[m // len(mem.seeds)]
    copies = Memory([gate], mem.glu, [0] * E, mem.d, mem.hidden, mem.use_kernel).to(keys.device)
    with torch.no_grad():
        for name, p in copies.named_parameters():
            p.copy_(getattr(mem, name)[m].expand_as(p))
    opt = torch.optim.Adam(copies.parameters(), lr=lr)
    for _ in range(edit_steps):
        logit = copies(keys[facts][:, None]) @ U.T                             # [E, 1, V]
        opt.zero_grad()
        F.cross_entropy(logit[:, 0], new, reduction="sum").backward()
        opt.step()
    with torch.no_grad():
        after_gradient = (copies(keys.expand(E, -1, -1)) @ U.T).argmax(-1)     # [E, N]
    others = (before == values)[None].expand(E, -1).clone()
    others[torch.arange(E), facts] = False                       # the edited fact is not an "other"
    result = {}
    for method, after in (("rank-one", after_rank_one), ("gradient", after_gradient)):
        success = (after[torch.arange(E), facts] == new).float().mean().item()
        flips = (after != before[None]) & others                                # [E, N]
        flipped = flips.float().sum().item() / max(others.sum().item(), 1)
        rippled = flips.any(1).float().mean().item()
        result[method] = (success, flipped, rippled)
    return result


# ------------------------------------------------------------------------------------ summaries
def summarise(groups, steps):
    """-> {(family, ratio, label): cell}: per load (increasing) the facts N, the member indices and
    the recall averaged over seeds; the capacity (largest N recalled at >= 99 %), the most facts
    recalled at any load, and the recall gained in the last quarter of training at the first load
    above capacity."""
    cells = {}
    for g in groups:
        distance = [abs(t - 0.75 * steps) for t in g.record_steps]
        late = distance.index(min(distance))                  # the record nearest 3/4 of training
        for i, label in enumerate(g.labels):
            cell = dict(group=g, params=g.params, hidden=g.memory.hidden, ns=g.ns, loads=g.loads,
                        act=g.memory.acts[i], members=[], recall=[], gain=[])
            for load in range(len(g.loads)):
                members = [g.member(i, load, s) for s in range(g.S)]
                curve = g.recall[:, members].mean(1)                          # [R + 1]
                cell["members"].append(members)
                cell["recall"].append(float(curve[-1]))
                cell["gain"].append(float(curve[-1] - curve[late]))
            cells[(g.family, g.ratio, label)] = cell
    for cell in cells.values():
        c = capacity_index(cell["recall"])
        cell["cap"] = c
        cell["capacity"] = 0 if c is None else cell["ns"][c]
        counts = [r * n for r, n in zip(cell["recall"], cell["ns"])]
        cell["most"] = max(counts)
        cell["most_load"] = cell["loads"][counts.index(cell["most"])]
        above = len(cell["ns"]) - 1 if c is None else min(c + 1, len(cell["ns"]) - 1)
        cell["gain_above"] = cell["gain"][above]
    return cells


def md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(x) for x in row) + " |")
    return "\n".join(lines)


def pct(x):
    return f"{100 * x:.1f} %"


def card_ratio(ratios):
    return min(ratios, key=lambda ratio: abs(math.log(ratio / CARD_RATIO)))


# ------------------------------------------------------------------------------------ the card
# The card's sentences, exactly as they stand (spaces before full stops included).
CARD = dict(
    analogy="The exposition draws a loose analogy to key-value memory: up-projection expands "
            "into a higher-dimensional space where nonlinear gates select features; "
            "down-projection compresses back .",
    ratio="Typical expansion ratio is $4\\times$: if $d_{\\text{model}} = 4096$, the intermediate "
          "layer may be 16384 wide before the second linear map shrinks back.",
    swiglu="SwiGLU variants gate one projection with a swish-activated branch, common in PaLM and "
           "LLaMA families .",
    bottleneck="The bottleneck structure enforces a low-rank pass through the nonlinear gate: "
               "intermediate features live in a compressed subspace before re-expansion.",
    smooth="GeLU and SiLU differ from ReLU in curvature near zero; smooth gates change gradient "
           "flow during training compared with hard zeroing .",
    edit="Editing one fact can ripple through overlapping features stored in superposition .",
    match="PaLM and LLaMA families increased FFN ratio and switched to gated activations; when "
          "comparing memory analogies across architectures, match expansion ratio and activation "
          "choice .")


def capacity_section(cells, args):
    """1. Capacity per gate and ratio (plain, and GLU at the plain width), bits per parameter."""
    rows = []
    bits = {}
    stored = {}
    quadratic = []
    for (family, ratio, label), c in cells.items():
        if family == "glu-matched":
            continue
        b99 = bits_per_param(c["capacity"], args.vocab, c["params"])
        bmost = bits_per_param(c["most"], args.vocab, c["params"])
        bits.setdefault(label, {})[ratio] = b99
        kind = "plain" if family == "plain" else "GLU"
        most = f"{c['most']:.0f} (load {c['most_load']:g})"
        capacity = capacity_text(c)
        b99_text = f"{b99:.2f}"
        if c["cap"] is None:                        # even the smallest load was not stored
            b99_text = f"< {bits_per_param(c['ns'][0], args.vocab, c['params']):.2f}"
        rows.append([label, kind, ratio, c["hidden"], c["params"], capacity, b99_text,
                     most, f"{bmost:.2f}", f"{100 * c['gain_above']:+.1f}"])
        stored.setdefault(label, []).append(c["capacity"])
        if family == "glu" and c["act"].name == "identity":
            quadratic.append(f"{capacity} at r = {ratio}")
    header = ["gate", "kind", "r", "hidden", "params", "capacity (facts, >= 99 %)", "bits/param",
              "most facts recalled", "bits/param", "recall gain, last quarter (points)"]
    all_bits = [b for per in bits.values() for b in per.values()]
    every = [b for b in all_bits if b > 0] or [0.0]
    median = sorted(every)[len(every) // 2]
    missed = all_bits.count(0)
    r4 = card_ratio(args.ratios)
    special = 0
    for per in bits.values():
        others = [b for r, b in per.items() if r != r4]
        if others and per[r4] > max(others):
            special += 1
    growing = 0
    for caps in stored.values():
        if caps == sorted(caps) and caps[-1] > caps[0]:
            growing += 1
    late = max(c["gain_above"] for c in cells.values())
    lines = [
        "## 1. Capacity and the 4x expansion",
        f"Capacity = the largest N (among loads {args.loads} bits per parameter, N = load x "
        f"params / log2 V) whose facts are recalled (argmax = value) at >= {THRESHOLD:.0%}, "
        f"recall averaged over {args.seeds} seed(s); bits/param = facts x log2 {args.vocab} / "
        "params. Most facts recalled: the largest recall x N over the loads (chance is 1/V). The "
        "last column is the recall gained in the last quarter of training at the first load above "
        "capacity: a large gain means more steps would store more (capacity is a lower bound).",
        md_table(header, rows),
        f"card: \"{CARD['ratio']}\"",
        "verdict: a description of practice, not a claim about memory: not testable as it stands. "
        f"New: capacity grows with r for {growing} of {len(stored)} gates; bits per parameter "
        f"at capacity range {min(every):.2f}..{max(every):.2f} (median {median:.2f}; {missed} "
        "cell(s) stored not even the smallest load), and r = "
        f"{r4} stores more bits per parameter than every other ratio for {special} of "
        f"{len(bits)} gates. Convergence: recall still rose by up to {100 * late:.1f} points in "
        "the last quarter just above capacity.",
        *bilinear_note(quadratic, args),
        f"beside the source: Allen-Zhu & Li (arXiv:2404.05405) report about {ALLEN_ZHU_BITS:g} "
        f"bits per parameter for language models; here the median is {median:.2f} at >= 99 % "
        "recall (random facts, one MLP, argmax recall: a different setting, so a comparison of "
        "orders of magnitude, not a reproduction)."]
    return lines, bits


# A bilinear layer (identity gate) computes a_j = (g_j . k)(v_j . k), so each output coordinate
# sum_j W_down[i, j] a_j = k^T Q_i k is a quadratic form of the key, Q_i symmetric d x d: whatever
# the width h, the layer is d such forms, at most d * d (d + 1) / 2 free numbers.
def bilinear_note(quadratic, args):
    if not quadratic:
        return []
    d = args.d_model
    free = d * d * (d + 1) // 2
    return [f"bilinear (new): capacity {', '.join(quadratic)}. Its output is d quadratic forms "
            f"k^T Q k of the key, at most d d (d + 1) / 2 = {free} free numbers whatever the "
            f"width, i.e. about {ALLEN_ZHU_BITS * free / math.log2(args.vocab):.0f} facts at "
            f"{ALLEN_ZHU_BITS:g} bits per free number: its capacity stops growing with r."]


def capacity_text(cell):
    """'96' for a stored capacity; '< 192' when not even the smallest load was stored."""
    if cell["capacity"] == 0:
        return f"< {cell['ns'][0]}"
    return str(cell["capacity"])


def ratio_text(cell, plain_capacity):
    """The cell's capacity over the plain gate's, '< x' when the cell stored no load at all."""
    if cell["capacity"] == 0:
        return f"< {cell['ns'][0] / max(plain_capacity, 1):.2f}"
    return f"{cell['capacity'] / max(plain_capacity, 1):.2f}"


def matched_section(cells, args):
    """2. GLU at the plain width (1.5x parameters) and at matched parameters (width 2/3 r d)."""
    plain = {}
    for (family, ratio, label), c in cells.items():
        if family == "plain" and c["capacity"] >= plain.get(ratio, ("", -1))[1]:
            plain[ratio] = (label, c["capacity"], c["params"])
    rows = []
    wins = {"glu": 0, "glu-matched": 0}            # cells where GLU beats the best plain gate
    for (family, ratio, label), c in cells.items():
        if family != "glu" or ratio not in plain:
            continue
        m = cells[("glu-matched", ratio, label)]   # build_groups trains both GLU widths
        best, cap, params = plain[ratio]
        for fam, cell in (("glu", c), ("glu-matched", m)):
            if cell["capacity"] > cap:
                wins[fam] += 1
        rows.append([label, ratio, f"{best}: {cap} ({params})",
                     f"{capacity_text(c)} ({c['params']})", f"{capacity_text(m)} ({m['params']})",
                     ratio_text(c, cap), ratio_text(m, cap)])
    header = ["GLU gate", "r", "best plain gate: capacity (params)", "GLU, same width",
              "GLU, width 2/3 r d (matched params)", "same width / plain",
              "matched / plain"]
    if wins["glu-matched"] < wins["glu"]:
        advice = ("new: part of the gated advantage at equal width is the parameter count, so "
                  "compare at matched parameters.")
    else:
        advice = "new: here the gated advantage survives matching the parameter count."
    lines = [
        "## 2. Gated vs plain at matched parameters",
        "A GLU of width h has 3 h d parameters, the plain MLP 2 h d; width round(2/3 h) matches "
        "(Shazeer, arXiv:2002.05202). \"Gated is better\" here: a capacity above the best plain "
        "gate's at the same r (equal capacities are ties; each capacity is known to within the "
        "load grid's step).",
        md_table(header, rows),
        f"card: \"{CARD['swiglu']}\"",
        f"card: \"{CARD['match']}\"",
        f"verdict: at the same width (1.5x parameters) GLU beats the best plain gate in "
        f"{wins['glu']} of {len(rows)} cells; at matched parameters in "
        f"{wins['glu-matched']} of {len(rows)}. Matching the expansion ratio, "
        "as the card advises, gives a GLU 1.5x the parameters of the plain MLP; " + advice]
    return lines


def card_cells(cells, r4):
    """Measurements 3-5: (family, label, cell) of the plain and same-width GLU gates at r4."""
    picked = []
    for (family, ratio, label), c in cells.items():
        if ratio == r4 and family != "glu-matched":
            picked.append((family, label, c))
    return picked


def at_capacity(cell):
    """The load index of a cell's capacity (the smallest load if none passed)."""
    return cell["cap"] if cell["cap"] is not None else 0


def gates_section(cells, args):
    """3. Dead units, open units per fact, and slope through closed units during training."""
    r4 = card_ratio(args.ratios)
    rows = []
    share = {}
    for family, label, c in card_cells(cells, r4):
        load = at_capacity(c)
        g = c["group"]
        stats = torch.stack(g.stats)[:, c["members"][load]].mean(1)           # [R + 1, 3]
        mid = len(stats) // 2
        share[label] = float(stats[-1, 2])
        rows.append([label, "plain" if family == "plain" else "GLU", c["ns"][load],
                     " / ".join(pct(float(stats[k, 0])) for k in (0, mid, -1)),
                     pct(float(stats[-1, 1])),
                     " / ".join(pct(float(stats[k, 2])) for k in (0, mid, -1))])
    header = ["gate", "kind", "facts", "dead units: start / middle / end", "open per fact (end)",
              "slope through closed units: start / middle / end"]
    smooth = [share[k] for k in ("gelu", "silu") if k in share]
    lines = [
        f"## 3. Smooth vs hard gates (r = {r4}, each gate at its capacity load)",
        "Dead unit: phi(z) = 0 and phi'(z) = 0 for every fact, so it gets no gradient at all. "
        "Open: z > 0. Slope through closed units: the share of sum |phi'(z)| over all facts and "
        "units that comes from z < 0 -- the gradient a hard gate zeroes (for a GLU, phi is the "
        "gate).",
        md_table(header, rows),
        f"card: \"{CARD['smooth']}\"",
        "test: \"change gradient flow\" holds when ReLU passes no slope through closed units and "
        "GELU and SiLU pass some."]
    if "relu" in share and smooth:
        holds = share["relu"] == 0 and min(smooth) > 0
        word = "HOLDS" if holds else "DOES NOT HOLD"
        smooth_text = ", ".join(pct(s) for s in smooth)
        lines.append(f"verdict: {word} -- at the end of training ReLU sends {pct(share['relu'])} "
                     f"of its slope through closed units, GELU/SiLU {smooth_text}; the dead-unit "
                     "columns show how many units hard zeroing cut off here.")
    else:
        lines.append("verdict: not measured (needs relu and gelu or silu in --acts).")
    return lines


@torch.no_grad()
def read_member(g, m):
    """Measurement 4 for member m of group g -> dict of per-fact and per-unit counts and effective
    ranks, or None if it recalls no fact."""
    keys, values, U = g.facts(m)
    z, a = g.memory.hidden_units(g.keys)
    z = z[m, :len(values)]
    a = a[m, :len(values)]
    W_down = g.memory.W_down[m]
    out = a @ W_down.T
    recalled = (out @ U.T).argmax(-1) == values
    if not recalled.any():
        return None
    return dict(
        forget=units_to_forget(a[recalled], W_down, U, values[recalled]).float().median(),
        half=units_for_half(a[recalled], W_down, U, values[recalled]).float().median(),
        per_unit=facts_per_unit(a, W_down, U, values).float().mean(),
        ranks=[effective_rank(x) for x in (keys, z, a, out)], n=len(values))


def reading_section(cells, args):
    """4. Units removed before a fact is forgotten; effective ranks of keys, z, a and the output."""
    r4 = card_ratio(args.ratios)
    rows = []
    found = []
    for family, label, c in card_cells(cells, r4):
        h = c["hidden"]
        r = read_member(c["group"], c["members"][at_capacity(c)][0])         # seed 0 at capacity
        if r is None:
            continue
        found.append((label, float(r["half"]), r["ranks"][1], r["ranks"][2], h,
                      float(r["per_unit"])))
        rows.append([label, r["n"], h, f"{r['n'] / h:.1f}", f"{float(r['forget']):.0f}",
                     f"{float(r['half']):.0f}", f"{float(r['per_unit']):.1f}"]
                    + [f"{x:.1f}" for x in r["ranks"]])
    header = ["gate", "facts N", "units h", "facts / units", "units removed to forget (median)",
              "units carrying half its logit (median)", "facts forgotten per unit removed",
              "erank keys", "erank z (<= d)", "erank a", "erank output"]
    lines = [
        f"## 4. Key-value reading and superposition (r = {r4}, seed 0, at capacity)",
        "For each recalled fact: remove hidden units, the largest contribution to its own logit "
        "first, until its argmax changes; and count the largest contributions that make up half of "
        "the positive ones. For each unit: how many recalled facts are forgotten when it alone is "
        "removed. A database with one unit per fact gives 1, 1 and 1, and needs N <= h. erank = "
        f"exp(entropy of normalised singular values) over the N facts; d = {args.d_model}.",
        md_table(header, rows),
        f"card: \"{CARD['analogy']}\"",
        f"card: \"{CARD['bottleneck']}\""]
    if not found:
        return lines + ["verdict: not measured (no fact recalled)."]
    median_half = sorted(f[1] for f in found)[len(found) // 2]
    most_per_unit = min(f[5] for f in found)
    one_per_fact = median_half <= 1 and most_per_unit <= 1
    if one_per_fact:
        word = "fits"
    else:
        word = "does not fit"
    lines.append(f"verdict (analogy): a \"loose analogy\" is not a testable claim as it stands; "
                 f"its sharp form, one unit per fact, {word} what we measure: half of a fact's "
                 f"own logit comes from its top {median_half:.0f} units (median over gates), and "
                 f"removing one unit forgets {most_per_unit:.1f} facts or more on average, so "
                 "units are shared by many facts (Geva et al., arXiv:2012.14913, read a unit's "
                 "key as a pattern that many inputs trigger).")
    z_ranks = ", ".join(f"{f[2]:.1f}" for f in found)
    a_ranks = ", ".join(f"{f[3]:.1f}/{f[4]}" for f in found)
    lifted = all(f[3] > args.d_model for f in found)
    if lifted:
        word = "the card and the measurement DISAGREE"
    else:
        word = "the measurement does not contradict the card"
    lines.append(f"verdict (bottleneck): {word} -- the gate's input z = W k has rank <= d = "
                 f"{args.d_model} (erank {z_ranks}); the gate's output a has erank/h {a_ranks}, "
                 f"{'above' if lifted else 'not above'} d for every gate. The low-rank passes are "
                 "the d-wide input and output; the nonlinear gate lifts features out of the "
                 "d-dimensional subspace.")
    return lines


def edit_section(cells, args):
    """5. Edits at loads N / capacity = 1/4, 1/2, 1 (the grid loads nearest these, within 10 %)."""
    r4 = card_ratio(args.ratios)
    rows = []
    curves = {}
    for family, label, c in card_cells(cells, r4):
        if c["cap"] is None:
            continue
        for fraction in (0.25, 0.5, 1.0):
            want = fraction * c["loads"][c["cap"]]
            distance = [abs(math.log(load / want)) for load in c["loads"]]
            j = distance.index(min(distance))
            if distance[j] > math.log(1.1):
                continue
            results = []
            for m in c["members"][j]:
                one = edit_member(c["group"], m, args.edits, args.edit_steps, args.lr)
                if one is not None:
                    results.append(one)
            if not results:
                continue
            mean = {k: [sum(r[k][q] for r in results) / len(results) for q in range(3)]
                    for k in ("rank-one", "gradient")}
            curves.setdefault(label, []).append((fraction, mean))
            rows.append([label, f"{fraction:g}", c["ns"][j]] + [
                f"{pct(mean[k][0])} / {pct(mean[k][1])} / {pct(mean[k][2])}"
                for k in ("rank-one", "gradient")])
    header = ["gate", "N / capacity", "facts N",
              "rank-one edit: success / others flipped / edits with a flip",
              f"{args.edit_steps} Adam steps: success / others flipped / edits with a flip"]
    lines = [
        f"## 5. Editing one fact (r = {r4}; {args.edits} edits per model, each on fresh weights)",
        "Rank-one: W_down += e a^T / (a . a), the least-norm change sending the fact's hidden "
        "vector a to |o| u_new (ROME, arXiv:2202.05262, with an identity covariance). Gradient: "
        f"{args.edit_steps} Adam steps (lr {args.lr:g}) on the edited fact alone. Others flipped: "
        "the share of the other recalled facts whose argmax changed.",
        md_table(header, rows),
        f"card: \"{CARD['edit']}\"",
        "test: it \"can ripple\" when an edit flips at least one other recalled fact."]
    if not rows:
        return lines + ["verdict: not measured (no gate stored a load)."], curves
    for method in ("rank-one", "gradient"):
        every = [m[method] for points in curves.values() for _, m in points]
        worst = min(e[0] for e in every)
        rippled = max(e[2] for e in every)
        word = "HOLDS" if rippled > 0 else "DOES NOT HOLD"
        pairs = 0
        grows = 0
        for points in curves.values():
            flipped = {f: m[method][1] for f, m in points}
            if 0.5 in flipped and 1.0 in flipped:
                pairs += 1
                if flipped[1.0] > flipped[0.5]:
                    grows += 1
        lines.append(f"verdict ({method}): {word} -- up to {pct(rippled)} of edits flip another "
                     f"fact; more other facts flip at capacity than at half of it for {grows} of "
                     f"{pairs} gates (new); the edit itself succeeds in at least {pct(worst)} of "
                     "the edits of every model.")
    return lines, curves


# ------------------------------------------------------------------------------------ figures
STYLE = {"plain": "-", "glu": "--", "glu-matched": ":"}


def plot_capacity(cells, args, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {}
    for label in dict.fromkeys(key[2] for key in cells):
        colors[label] = f"C{len(colors)}"
    for family, style in STYLE.items():
        for label in colors:
            keys = [k for k in cells if k[0] == family and k[2] == label]
            if not keys:
                continue
            params = [cells[k]["params"] for k in keys]
            stored = [cells[k]["capacity"] or math.nan for k in keys]   # none stored: a gap
            name = label if family != "glu-matched" else label + " (2/3 width)"
            ax.plot(params, stored, style, marker="o", color=colors[label], label=name)
    top = max(c["params"] for c in cells.values())
    bottom = min(c["params"] for c in cells.values())
    line = [ALLEN_ZHU_BITS * p / math.log2(args.vocab) for p in (bottom, top)]
    ax.plot([bottom, top], line, color="gray", lw=3, alpha=0.4, label="2 bits / parameter")
    ax.set(xscale="log", yscale="log", xlabel="trained parameters",
           ylabel=f"capacity (facts recalled at >= {THRESHOLD:.0%})",
           title="capacity vs parameters (solid plain, dashed GLU, dotted GLU at matched params)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, ncol=2)
    save(fig, path)


def plot_edits(curves, path):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, method in zip(axes, ("rank-one", "gradient")):
        for label, points in curves.items():
            loads = [f for f, _ in points]
            flipped = [100 * m[method][1] for _, m in points]
            ax.plot(loads, flipped, marker="o", label=label)
        ax.set(xlabel="load N / capacity", title=f"{method} edit", xscale="log")
        ax.set_xticks([0.25, 0.5, 1.0], ["1/4", "1/2", "1"])
    axes[0].set_ylabel("other facts flipped (%)")
    if curves:
        axes[0].legend(fontsize=7)
    save(fig, path)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path + ".tmp", format="png", dpi=80)          # temp name, then rename
    plt.close(fig)
    os.replace(path + ".tmp", path)


# ------------------------------------------------------------------------------------ plumbing
def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def gemm_rate(device, n=1024, reps=5):
    """FLOP/s of one fp32 n x n torch.mm, best of reps: the yardstick for the training FLOP rate."""
    a = torch.randn(n, n, device=device)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, a)[0, 0].item()                               # .item() waits for the device
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def parse_gates(text):
    """--acts -> [(label, Activation, glu)]. GLU: swiglu, geglu, reglu, bilinear, sqs, or a "glu-"
    prefix ("glu-gensilu:1,1"); any other name is a plain activation."""
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    stripped = ",".join(t.removeprefix("glu-") for t in tokens)
    acts = activations.parse_acts(stripped)                   # ValueError for a bad name or number
    specs = []
    for t in tokens:                                          # as parse_acts: a number continues
        if t[0].isalpha():
            specs.append(t)
        else:
            specs[-1] += "," + t
    gates = []
    seen = set()
    for spec, act in zip(specs, acts):
        glu = spec.startswith("glu-") or spec.split(":")[0] in GLU_NAMES
        if (act.spec, glu) in seen:
            raise ValueError(f"{spec!r} names a configuration twice")
        seen.add((act.spec, glu))
        gates.append((spec, act, glu))
    return gates


def parse_numbers(parser, flag, text, kind):
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        parser.error(f"{flag} must be a comma-separated list of {kind.__name__}s, got {text!r}")
    if not values or not all(0 < v < math.inf for v in values):
        parser.error(f"{flag} must list positive numbers, got {text!r}")
    if sorted(set(values)) != values:
        parser.error(f"{flag} must list distinct values in increasing order, got {text!r}")
    return values


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="the transformer MLP as a key-value memory, measured")
    D = DEFAULTS
    p.add_argument("--acts", help=f"gates (default {D['acts']}). GLU when named swiglu, geglu, "
                   "reglu, bilinear or sqs, or written glu-<name> (glu-relu, glu-gensilu:1,1); "
                   "plain otherwise. Names: " + activations.act_choices())
    p.add_argument("--d-model", type=int, help=f"key and output width d (default {D['d_model']})")
    p.add_argument("--vocab", type=int, help=f"values per fact V (default {D['vocab']})")
    p.add_argument("--ratios", help=f"expansions r = hidden/d, integers (default {D['ratios']}, "
                   f"--quick {QUICK['ratios']})")
    p.add_argument("--loads", help=f"facts asked for, in bits per parameter, increasing "
                   f"(default {D['loads']})")
    p.add_argument("--steps", type=int, help=f"Adam steps, full batch (default {D['steps']}, "
                   f"--quick {QUICK['steps']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {D['lr']:g})")
    p.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {D['seeds']})")
    p.add_argument("--edits", type=int, help=f"facts edited per model (default {D['edits']}, "
                   f"--quick {QUICK['edits']})")
    p.add_argument("--edit-steps", type=int, help=f"Adam steps of the gradient edit "
                   f"(default {D['edit_steps']})")
    p.add_argument("--out", help=f"output directory (default {D['out']})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--no-kernels", action="store_true", help="run the gates' plain PyTorch "
                   "formulas even where the fused Triton kernels would run (CUDA with triton), to "
                   "compare eager and fused (default: kernels on)")
    p.add_argument("--quick", action="store_true", help=f"classroom run: {QUICK} (default off)")
    a = p.parse_args(argv)
    a.command = " ".join(["python train_memory.py"] + (sys.argv[1:] if argv is None else argv))
    for k, v in (DEFAULTS | (QUICK if a.quick else {})).items():   # presets fill flags not given
        if getattr(a, k) is None:
            setattr(a, k, v)
    try:
        a.gates = parse_gates(a.acts)
    except ValueError as e:
        p.error(f"--acts: {e}")
    a.ratios = parse_numbers(p, "--ratios", a.ratios, int)
    a.loads = parse_numbers(p, "--loads", a.loads, float)
    for k, low in (("d_model", 1), ("vocab", 2), ("steps", 1), ("seeds", 1), ("edits", 1),
                   ("edit_steps", 0)):
        if getattr(a, k) < low:
            p.error(f"--{k.replace('_', '-')} must be >= {low}, got {getattr(a, k)}")
    if not 0 < a.lr < math.inf:
        p.error(f"--lr must be a positive number, got {a.lr}")
    there = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(),
             "cpu": True}
    if a.device == "auto":
        a.device = next(d for d in ("cuda", "mps", "cpu") if there[d])
    if not there[a.device]:
        p.error(f"--device {a.device} is not available on this machine")
    try:                                                    # a bad --out fails now, not at the end
        os.makedirs(a.out, exist_ok=True)
        write_atomic(os.path.join(a.out, ".probe"), "")
        os.remove(os.path.join(a.out, ".probe"))
    except OSError as e:
        p.error(f"--out {a.out!r} is not writable: {e.strerror or e}")
    return a


def build_groups(args):
    """One Group per (family, ratio); a family's gates x the loads x the seeds are its members."""
    families = {"plain": [], "glu": []}
    for label, act, glu in args.gates:
        families["glu" if glu else "plain"].append((label, act))
    families["glu-matched"] = families["glu"]
    groups = []
    for family, acts in families.items():
        for ratio in args.ratios:
            if acts:
                groups.append(Group(family, acts, ratio, args))
    return groups


def main(argv=None):
    args = parse_args(argv)
    gemm = gemm_rate(args.device)
    groups = build_groups(args)
    members = sum(g.memory.M for g in groups)
    print(f"train_memory: {members} models in {len(groups)} shapes, d {args.d_model}, V "
          f"{args.vocab}, r {args.ratios}, loads {args.loads} bits/param, {args.steps} Adam steps, "
          f"lr {args.lr:g}, {args.device}")
    t0 = time.perf_counter()
    train(groups, args.steps, args.lr)
    seconds = time.perf_counter() - t0
    facts = sum(int(g.mask.numel()) * g.memory.flops_per_fact(args.vocab) for g in groups)
    flops = args.steps * facts                                  # padded facts are computed too
    cells = summarise(groups, args.steps)
    lines1, bits = capacity_section(cells, args)
    lines5, curves = edit_section(cells, args)
    sections = [lines1, matched_section(cells, args), gates_section(cells, args),
                reading_section(cells, args), lines5]
    rate = flops / seconds
    speed = (f"wall time: training {seconds:.1f} s, {rate / 1e9:.1f} GFLOP/s of matmuls = "
             f"{rate / gemm:.0%} of the timed GEMM rate ({gemm / 1e9:.0f} GFLOP/s, "
             f"1024x1024 fp32 torch.mm; {torch.get_num_threads()} threads); total "
             f"{time.perf_counter() - START:.1f} s")
    report = [f"`{args.command}`"] + ["\n\n".join(s) for s in sections] + [speed]
    text = "\n\n".join(report) + "\n"
    paths = [os.path.join(args.out, name) for name in
             ("report.md", "memory_capacity.png", "memory_edits.png")]
    plot_capacity(cells, args, paths[1])
    plot_edits(curves, paths[2])
    write_atomic(paths[0], text)
    print("\n" + text + "\n".join(f"wrote {p}" for p in paths))
    if args.device == "cuda":
        calls = activations.FUSED_CALLS
        print(f"fused kernel calls: sqs={calls['sqs']} gensilu={calls['gensilu']}")
    return dict(cells=cells, bits=bits, curves=curves, report=text)


START = time.perf_counter()

if __name__ == "__main__":
    main()
