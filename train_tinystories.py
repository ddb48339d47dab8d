"""
train_tinystories.py -- does an SQS-gated GLU train a small language model as well as other gates?

A 4-layer transformer on TinyStories, one model per gate (ReLU, GELU, SwiGLU, bilinear, SQS): the
Tiny Stories rows of Table 1 and the samples of Appendix D of the SQS paper [SQS], section 4.2.2.
The paper's answer: after 3 epochs the five final validation losses lie within 0.0045 nats of each
other, SQS lowest. Expect gates that all learn and a spread too small for one seed to rank them.

    python train_tinystories.py --quick --synthetic  # offline stand-in (NOT TinyStories), tiny
    python train_tinystories.py --synthetic          # offline, the CPU-sized model
    python train_tinystories.py                      # TinyStories, CPU-sized: 20k stories
    python train_tinystories.py --paper              # the paper's scale, a GPU: batch 512, 3 epochs
    torchrun --standalone --nproc_per_node 4 train_tinystories.py --paper     # the same, DDP

The data stages (download -> byte-level BPE trained here -> uint16 memmaps) print what they did and
skip finished work; --prepare-only runs only them. Then per gate: training, validation loss and
perplexity at 25/50/75/100 % of the steps, tokens/s, and a sample "once upon a time ...".

The paper gives 4 layers, model dim 128, GLU hidden 128, AdamW lr 1e-3, wd 0.1, batch 512, cosine.
Where it is silent we follow the language model of [BIL]: rotary positions, 4 heads, context 256, no
biases, untied head, pre-norm RMSNorm without gain, attention branch x 1/sqrt(2 layers), PyTorch's
default init, AdamW betas (0.9, 0.95), 50 warm-up steps, gradient clipping at 1, one story per row.
Our tokenizer is trained here, so losses per token are NOT comparable with the paper's.

Sources: [SQS] arXiv:2509.01874. [BIL] Pearce et al., arXiv:2410.08417, github.com/tdooms/
bilinear-decomposition (src/language/transformer.py). TinyStories: Eldan & Li, arXiv:2305.07759.
BPE: Sennrich et al., arXiv:1508.07909 (byte-level, GPT-2's pre-split). RoPE: Su et al.,
arXiv:2104.09864. The data stages follow karpathy/llama2.c's tinystories.py, the FLOP count
karpathy/nanoGPT (both written anew).
"""
import argparse
import heapq
import http.client
import json
import math
import os
import pathlib
import random
import re
import sys
import tempfile
import time
import timeit
import urllib.request
from collections import Counter, defaultdict
from functools import lru_cache
from itertools import islice
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import activations

# ---- Config -------------------------------------------------------------------------------------
# One row per setting: its default, the --quick and --paper presets, its help. A preset fills only
# what the command line leaves unset: an explicit flag always wins. "=" under a preset means "the
# preset keeps the default"; --help prints the same notation: "(default 4, --quick 2, --paper =)".
SETTINGS = [
    # name        default  --quick  --paper  help
    ("stories",     20000,    2000,       0, "train on the first N stories, 0 = all (2.12M)"),
    ("val_stories",   256,     100,       0, "validate on the first N stories, 0 = all (22k)"),
    ("vocab",        4096,     512,     "=", "BPE vocabulary size, 258..65535 ([BIL]: 4096)"),
    ("layers",          4,       2,     "=", "transformer blocks (the paper: 4)"),
    ("d_model",       128,      64,     "=", "model width (the paper: 128)"),
    ("hidden",        128,      64,     "=", "GLU hidden width (the paper: 128)"),
    ("heads",           4,       2,     "=", "attention heads ([BIL]: 4)"),
    ("ctx",           256,     128,     "=", "context: first N tokens of each story ([BIL]: 256)"),
    ("batch",           8,      16,     512, "global batch in stories (the paper: 512)"),
    ("steps",         400,     200,     "=", "optimizer steps per gate (--paper: --epochs 3)"),
    ("epochs",       None,     "=",     3.0, "passes over the stories, instead of --steps"),
    ("lr",           1e-3,     "=",     "=", "AdamW peak learning rate (the paper: 1e-3)"),
    ("wd",            0.1,     "=",     "=", "AdamW weight decay (the paper: 0.1)"),
    ("warmup",         50,     "=",     "=", "linear warm-up steps before the cosine ([BIL]: 50)"),
    ("ckpt_every",    100,     "=",     "=", "write a checkpoint every N steps and at the end"),
]
# Section 4.2.2 says 3 epochs, Appendix A's table 20: --paper uses 3 (--epochs 20 is the other one).
FLOATS = ("epochs", "lr", "wd")           # the other settings are integers
MARKS = (0.25, 0.5, 0.75, 1.0)            # validate at these fractions of training, as Table 1
BETAS = (0.9, 0.95)                       # AdamW, [BIL]
CLIP = 1.0                                # gradient-norm clipping, [BIL] (HF Trainer's default)
URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
FILES = {"TinyStories-train.txt": 1_924_281_556, "TinyStories-valid.txt": 19_447_282}   # bytes
EOT = "<|endoftext|>"                     # the story separator in the text files
EOT_ID = 256                              # its token id (0..255 are the bytes)
IGNORE = -100                             # target of a padding position: not in the loss


# ---- The model: a pre-norm decoder-only transformer, RoPE attention, a GLU MLP in every block
def rms_norm(x):                          # x / sqrt(mean(x^2) + eps) over features; no gain, [BIL]
    return F.rms_norm(x, x.shape[-1:], eps=1e-8)


# Rotary positions: split a head vector (Q dims) into pairs (x_i, x_{i+Q/2}), i < Q/2, and rotate
# pair i at position t by the angle t*theta_i, theta_i = 10000^(-2i/Q). With R(a) the rotation by a,
# <R(t theta) q, R(s theta) k> = <q, R((s - t) theta) k>: the score of query t and key s depends on
# the positions only through s - t, and no position vector enters the residual stream.
def rope_tables(ctx, head_dim):           # -> cos, sin (ctx, Q): angle t*theta_i, each i twice
    theta = 10000.0 ** (-torch.arange(0, head_dim, 2).float() / head_dim)       # (Q/2,)
    angle = torch.outer(torch.arange(ctx).float(), theta).repeat(1, 2)          # (ctx, Q)
    return angle.cos(), angle.sin()


def rope(x, cos, sin):          # x (..., T, Q): pair (a, b) -> (a cos - b sin, b cos + a sin)
    a, b = x.chunk(2, -1)
    return x * cos + torch.cat([-b, a], -1) * sin


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)       # W_q, W_k, W_v side by side
        self.out = nn.Linear(d, d, bias=False)           # W_o

    def forward(self, x, cos, sin):                      # x (B, T, C)
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)             # each (B, H, T, Q)
        q = rope(q, cos[:T], sin[:T])
        k = rope(k, cos[:T], sin[:T])
        # softmax(q k^T / sqrt(Q) + causal mask) v
        heads = F.scaled_dot_product_attention(q, k, v, is_causal=True)     # (B, H, T, Q)
        joined = heads.transpose(1, 2).reshape(B, T, C)  # (B, T, C): the heads side by side
        return self.out(joined)


class GLU(nn.Module):
    """down(act(gate) * value) with gate = W_g x, value = W_v x: the two halves of one
    Linear(d, 2 hidden), as in [BIL]. act = identity is the bilinear layer; activations.glu
    computes act(gate) * value (one fused kernel on CUDA for sqs and gensilu)."""

    def __init__(self, d, hidden, act, use_kernel):
        super().__init__()
        self.act = act
        self.use_kernel = use_kernel                     # False: --no-kernels
        self.up = nn.Linear(d, 2 * hidden, bias=False)   # [W_g; W_v]
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):                                # x (B, T, C)
        gate, value = self.up(x).chunk(2, -1)            # (B, T, hidden) each
        mixed = activations.glu(gate, value, self.act, use_kernel=self.use_kernel)
        return self.down(mixed)                          # (B, T, C)


class Block(nn.Module):
    """x + scale * attention(norm x), then x + GLU(norm x); scale = 1/sqrt(2 layers), as [BIL]."""

    def __init__(self, d, heads, hidden, act, scale, use_kernel):
        super().__init__()
        self.attn = Attention(d, heads)
        self.mlp = GLU(d, hidden, act, use_kernel)
        self.scale = scale

    def forward(self, x, cos, sin):
        attn_out = self.attn(rms_norm(x), cos, sin)
        x = x + self.scale * attn_out
        mlp_out = self.mlp(rms_norm(x))
        return x + mlp_out


class TinyLM(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads, hidden, act, use_kernel=True):
        super().__init__()
        scale = 1 / math.sqrt(2 * layers)
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(Block(d, heads, hidden, act, scale, use_kernel))
        self.head = nn.Linear(d, vocab, bias=False)      # untied from the embedding
        cos, sin = rope_tables(ctx, d // heads)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, idx):                              # (B, T) token ids -> (B, T, vocab) logits
        x = self.emb(idx)                                # (B, T, C)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(rms_norm(x))


def build(args, act, vocab):
    use_kernel = not args.no_kernels
    return TinyLM(vocab, args.ctx, args.d_model, args.layers, args.heads, args.hidden, act,
                  use_kernel)


# ---- Training: one story per row, a fresh shuffle per epoch, warm-up + cosine --------------------
def log(*parts):                         # under torchrun only rank 0 talks
    if int(os.environ.get("RANK", 0)) == 0:
        print(*parts, flush=True)


def write(path, text):                   # temp name + rename: never a half-written file
    pathlib.Path(path + ".tmp").write_text(text, encoding="utf-8")
    os.replace(path + ".tmp", path)


class Stories(NamedTuple):
    tokens: np.ndarray   # uint16 memmap: <eot> story_1 <eot> story_2 ... <eot> story_n <eot>
    bounds: np.ndarray   # (n, 2): start, end of each "<eot> story <eot>"; neighbours share an <eot>


def load_stories(path):
    tokens = np.memmap(path, np.uint16, mode="r")
    eot = np.flatnonzero(np.asarray(tokens) == EOT_ID)
    bounds = np.stack([eot[:-1], eot[1:] + 1], 1)
    return Stories(tokens, bounds)


def lr_at(step, lr, warmup, steps):      # linear warm-up to lr, then cosine annealing to 0 at steps
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


@lru_cache(maxsize=2)                    # a fresh shuffle per epoch, from (seed, epoch) only
def epoch_order(n, seed, epoch):
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).numpy()


def batch_rows(n_stories, batch, seed, step):
    """The stories of the global batch of `step`. It depends on (seed, step) only, so a resumed run,
    every gate and every DDP layout see the same stories. Each epoch drops its last partial batch.
    """
    per_epoch = n_stories // batch
    epoch, i = divmod(step, per_epoch)
    order = epoch_order(n_stories, seed, epoch)
    return order[i * batch:(i + 1) * batch]


def make_batch(stories, rows, ctx):
    """x, y (len(rows), ctx): each story cut to ctx + 1 tokens, y = x shifted by one; padding is
    <eot> in x and IGNORE in y."""
    x = np.full((len(rows), ctx), EOT_ID, np.int64)
    y = np.full((len(rows), ctx), IGNORE, np.int64)
    for j, row in enumerate(rows):
        start, end = stories.bounds[row]
        seq = stories.tokens[start:min(end, start + ctx + 1)]
        n = len(seq) - 1
        x[j, :n] = seq[:-1]
        y[j, :n] = seq[1:]
    return torch.from_numpy(x), torch.from_numpy(y)


def count_targets(stories, rows, ctx):   # the real (not padding) targets of these stories
    lengths = stories.bounds[rows, 1] - stories.bounds[rows, 0] - 1
    return int(np.minimum(lengths, ctx).sum())


def rank_batch(train, seed, step, batch, ctx, rank, world):
    """x, y: this rank's slice of the global batch of `step`; n_real: the real targets of the whole
    global batch (the loss is their mean)."""
    rows = batch_rows(len(train.bounds), batch, seed, step)
    per_rank = batch // world
    mine = rows[rank * per_rank:(rank + 1) * per_rank]
    x, y = make_batch(train, mine, ctx)
    return x, y, count_targets(train, rows, ctx)


def autocast(device):                    # bf16 matmuls on CUDA; full fp32 elsewhere
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))


def loss_sum(logits, y):                 # cross-entropy summed over the real targets (no padding)
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE,
                           reduction="sum")


def train_step(net, opt, x, y, n_real, lr, world):
    """One AdamW step at learning rate lr; -> the mean loss over the real targets of the global
    batch. Each rank sums over its slice, divides by n_real of the whole batch and multiplies by
    world: DDP averages gradients over the ranks, so they equal one process's on the whole batch."""
    for group in opt.param_groups:
        group["lr"] = lr
    with autocast(str(x.device)):
        logits = net(x)                  # (B, T, vocab)
    loss = loss_sum(logits, y) * world / n_real
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), CLIP)
    opt.step()
    loss = loss.detach() / world
    if world > 1:
        dist.all_reduce(loss)
    return loss.item()


@torch.no_grad()
def evaluate(model, stories, ctx, batch, device, rank=0, world=1):
    """Mean loss over every real target of the stories (padding excluded); ppl = exp(loss)."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)     # (loss sum, targets)
    rows = np.arange(len(stories.bounds))[rank::world]
    for i in range(0, len(rows), batch):
        x, y = make_batch(stories, rows[i:i + batch], ctx)
        x = x.to(device)
        y = y.to(device)
        with autocast(device):
            logits = model(x)
        total[0] += loss_sum(logits, y)
        total[1] += (y != IGNORE).sum()
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()


def train_one(args, act, seed, vocab, train, val, steps, device, rank, world):
    """Train the model of one gate and seed; -> (model, state: losses, learning rates, speed)."""
    torch.manual_seed(seed)              # the same initial weights for every gate
    model = build(args, act, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=BETAS, weight_decay=args.wd)
    ckpt = checkpoint_path(args.out, act, seed)
    config = run_config(args, vocab, steps, train, val)
    state = dict(step=0, train_loss=[], lr=[], val={}, seconds=0.0, tokens=0)
    if args.resume and os.path.exists(ckpt):
        state = load_checkpoint(ckpt, model, opt, config, state, device)
        log(f"[{act.spec} seed {seed}] resumed at step {state['step']}/{steps}")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    marks = {max(1, round(f * steps)): f for f in MARKS}      # step -> fraction of training
    t0 = time.time()
    for step in range(state["step"], steps):
        x, y, n_real = rank_batch(train, seed, step, args.batch, args.ctx, rank, world)
        lr = lr_at(step, args.lr, args.warmup, steps)
        loss = train_step(net, opt, x.to(device), y.to(device), n_real, lr, world)
        done = step + 1
        state["train_loss"].append(loss)
        state["lr"].append(opt.param_groups[0]["lr"])          # read back: what the step used
        state["step"] = done
        state["tokens"] += args.batch * args.ctx
        if not math.isfinite(loss):
            log(f"[{act.spec} seed {seed}] diverged at step {done}")
            for m in MARKS:
                state["val"].setdefault(str(m), math.nan)
            break
        if done in marks or done % args.ckpt_every == 0 or done == steps:
            state["seconds"] += time.time() - t0               # training time only
            if done in marks:
                v = evaluate(model, val, args.ctx, args.batch, device, rank, world)
                state["val"][str(marks[done])] = v
                speed = state["tokens"] / state["seconds"]
                log(f"[{act.spec} seed {seed}] step {done}/{steps}  train {loss:.4f}  val {v:.4f}  "
                    f"ppl {math.exp(v):.3f}  {speed:,.0f} tok/s")
            if rank == 0:
                save_checkpoint(ckpt, model, opt, state, config)
            t0 = time.time()
    return model, state


@torch.no_grad()
def sample(model, tok, prompt, n, seed, ctx, device, temperature=0.8, top_k=40):
    """Continue '<eot> prompt' token by token (temperature, top-k); the same seed, the same text."""
    generator = torch.Generator().manual_seed(seed)
    ids = [EOT_ID] + tok.encode(prompt)
    model.eval()
    for _ in range(n):
        context = torch.tensor([ids[-ctx:]], device=device)
        logits = model(context)[0, -1].float().cpu() / temperature
        kth = torch.topk(logits, min(top_k, len(logits))).values[-1]
        logits[logits < kth] = -math.inf
        probs = F.softmax(logits, -1)
        nxt = int(torch.multinomial(probs, 1, generator=generator))
        if nxt == EOT_ID:
            break                        # the model ended the story
        ids.append(nxt)
    model.train()
    return tok.decode(ids[1:])


# How close to the hardware: FLOPs per token (nanoGPT's count) x tokens/s, divided by the FLOP/s of
# one large matrix product timed at start-up, "the timed GEMM rate" (nanoGPT's MFU divides by the
# GPU's datasheet peak instead).
def flops_per_token(model, args):
    """6 N for forward + backward through the N weights that multiply (the embedding is a lookup,
    left out) + 12 L d T for q k^T and (weights) v over T positions."""
    n_params = sum(p.numel() for p in model.parameters())
    n_multiply = n_params - model.emb.weight.numel()
    return 6 * n_multiply + 12 * args.layers * args.d_model * args.ctx


def gemm_rate(device):                   # FLOP/s of a big torch.mm in training's dtype, best of 10
    if device.startswith("cuda"):
        n, dtype = 8192, torch.bfloat16
    else:
        n, dtype = 1024, torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)

    def one_product():
        return (a @ a)[0, 0].item()      # .item() waits for the GPU
    best = min(timeit.repeat(one_product, number=1, repeat=10))
    return 2 * n ** 3 / best


# ---- Data stage 1: the text files (download; offline: the stand-in corpus) -----------------------
def download(url, path, size):
    """Stream url to path + '.part'; a re-run resumes it with an HTTP Range request (a server that
    answers 200, not 206, makes us start over). Renamed to path only if it has `size` bytes."""
    part = path + ".part"
    have = 0
    if os.path.exists(part) and os.path.getsize(part) <= size:
        have = os.path.getsize(part)
    if have != size:
        headers = {"Range": f"bytes={have}-"} if have else {}
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            if getattr(response, "status", None) != 206:
                have = 0                 # the whole file is coming: start over
            with open(part, "ab" if have else "wb") as f:
                with tqdm(unit="B", unit_scale=True, disable=None) as bar:
                    chunk = response.read(1 << 20)
                    while chunk:
                        bar.update(f.write(chunk))
                        chunk = response.read(1 << 20)
    got = os.path.getsize(part)
    if got != size:
        os.remove(part)
        raise ValueError(f"got {got:,} bytes, expected {size:,}; removed the partial file")
    os.replace(part, path)


def stage_download(args):
    """Stage 1: the (train, valid) text files; downloads those that are missing."""
    os.makedirs(args.data_dir, exist_ok=True)
    for name, size in FILES.items():
        path = os.path.join(args.data_dir, name)
        if os.path.exists(path):
            log(f"download: {path} is there, skipped")
            continue
        log(f"download: {args.url}/{name}")
        try:
            download(f"{args.url}/{name}", path, size)
        except (OSError, ValueError, http.client.HTTPException) as e:    # offline, cut off, corrupt
            reason = getattr(e, "reason", e)
            wanted = ", ".join(f"{n} ({s:,} bytes)" for n, s in FILES.items())
            sys.exit(f"error: could not download {args.url}/{name} ({reason}). Put {wanted} in "
                     f"{os.path.abspath(args.data_dir)} (or pass --data-dir), or run offline with "
                     "--synthetic (NOT TinyStories)")
    return [os.path.join(args.data_dir, name) for name in FILES]


def synthetic_story(rng):
    """A simple story (mixed case, dialogue, rare made-up names); far simpler than TinyStories."""
    def pick(words):
        return rng.choice(words.split())
    name = pick("Lily Tom Ben Mia Max Sue Anna Sam Lucy Jack Emma Leo Zoe Tim Kate Noah Ella Finn")
    if rng.random() < 0.3:               # a rare name: three made-up syllables
        syllables = "ba ko li mo nu ra si te vu zo"
        name = (pick(syllables) + pick(syllables) + pick(syllables)).title()
    pet = pick("cat dog bird frog fish bunny duck bear fox owl")
    thing = pick("ball kite cake box boat book hat")
    adjectives = "big small red blue happy sad shiny old soft funny brave kind quiet sleepy"
    feelings = "happy sad scared excited proud tired glad surprised"
    actions = "play run jump dance sing swim climb read paint hide explore bake"
    sentences = [f"Once upon a time, there was a {pick(adjectives)} {pet} named {name}."]
    for _ in range(rng.randint(6, 20)):
        options = [
            f"{name} loved to {pick(actions)} in the {pick('park garden forest beach café')} "
            f"with a {pick(adjectives)} {thing}.",
            f"\"Can I {pick(actions)} with you?\" asked the {pet}. \"Yes!\" said {name}.",
            f"{name} felt {pick(feelings)} and wanted to {pick(actions)}.",
            f"But the {thing} fell into the {pick('river hole mud')}. {name} was {pick(feelings)}.",
            f"{name}’s {pick('mom dad friend sister')} came to help. They found the {thing}.",
            f"\"Thank you,\" said {name}. \"You are a good friend.\""]
        sentences.append(rng.choice(options))
    endings = [f"From that day on, {name} was {pick(feelings)}.", "They lived happily ever after."]
    sentences.append(rng.choice(endings))
    return " ".join(sentences)


def write_synthetic(data_dir, n, seed=1234):
    """synthetic-{train,valid}.txt: n and max(10, n // 10) stories in TinyStories' format, written
    once."""
    os.makedirs(data_dir, exist_ok=True)
    paths = []
    for i, (split, count) in enumerate([("train", n), ("valid", max(10, n // 10))]):
        path = os.path.join(data_dir, f"synthetic-{split}.txt")
        if not os.path.exists(path):
            rng = random.Random(seed + i)
            stories = [synthetic_story(rng) for _ in range(count)]
            write(path, f"\n{EOT}\n".join(stories) + "\n")
        log(f"synthetic: {path}, {count:,} stories (a stand-in, NOT TinyStories)")
        paths.append(path)
    return paths


def read_stories(path, stats=None):
    """Yield the stories one at a time (the train file is ~2 GB); count malformed UTF-8 and empty
    ones in stats."""
    if stats is None:
        stats = Counter()
    sep = EOT.encode()
    rest = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            if chunk:
                pieces = (rest + chunk).split(sep)
                rest = pieces.pop()      # may go on in the next chunk
            else:
                pieces = [rest]          # the end of the file: the last story
            for raw in pieces:
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    stats["malformed_utf8"] += 1
                    text = raw.decode("utf-8", errors="replace").strip()
                if text:
                    stats["stories"] += 1
                    yield text
                else:
                    stats["empty"] += 1
            if not chunk:
                return


# ---- Data stage 2: byte-level BPE, from scratch --------------------------------------------------
# Text is lowercased (as [BIL]'s tokenizer) and pre-split into "words" (GPT-2's idea): letters with
# an optional leading space, digits, punctuation runs, whitespace (`re` has no \p{L}: letters are
# [^\W\d_]). Merges never cross a word boundary, so BPE sees each distinct word once, weighted by
# its count. The pieces cover every character, so decode(encode(t)) == t.lower(): the case is lost,
# nothing else.
# ids: 0..255 the bytes, 256 <eot>, 257.. the merges in the order they were learned.
PAT = re.compile(r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+""")


def merge(ids, pair, new):               # each non-overlapping `pair`, left to right, becomes `new`
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(texts, vocab_size):
    """Learn vocab_size - 257 merges, most frequent pair first (ties: the smallest pair). A merge
    only touches the words that contain its pair and updates the pair counts; a heap finds the next
    one."""
    words = Counter(w for t in texts for w in PAT.findall(t.lower()))
    seqs = [list(w.encode()) for w in words]
    freqs = list(words.values())
    count = defaultdict(int)             # pair -> occurrences, weighted by word counts
    where = defaultdict(set)             # pair -> the words that may contain it
    touched = set()                      # pairs whose count changed during this merge
    merges = []

    def update(i, sign):                 # add (+1) or remove (-1) the pairs of word i
        for pair in zip(seqs[i], seqs[i][1:]):
            count[pair] += sign * freqs[i]
            where[pair].add(i)           # may go stale: merging a word without the pair is a no-op
            touched.add(pair)
    for i in range(len(seqs)):
        update(i, 1)
    heap = [(-c, pair) for pair, c in count.items()]
    heapq.heapify(heap)
    while len(merges) < vocab_size - 257 and heap:
        neg_count, pair = heapq.heappop(heap)
        if count[pair] != -neg_count:
            continue                     # a stale entry: the count changed since it was pushed
        merges.append(pair)
        new_id = 256 + len(merges)
        touched.clear()
        for i in where.pop(pair):
            update(i, -1)
            seqs[i] = merge(seqs[i], pair, new_id)
            update(i, 1)
        for q in touched:
            if count[q] > 0:
                heapq.heappush(heap, (-count[q], q))
    return Tokenizer(merges)


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.rank = {pair: 257 + i for i, pair in enumerate(self.merges)}   # pair -> its new id
        self.vocab = [bytes([i]) for i in range(256)] + [EOT.encode()]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.cache = {}                  # word -> ids: most words recur

    def encode_word(self, word):
        """Apply the earliest-learned merge present, again and again, as training did. A merge only
        creates pairs that contain its new id, learned later, so this equals applying every merge
        once in the order they were learned."""
        ids = list(word.encode())
        while len(ids) > 1:
            pairs = zip(ids, ids[1:])
            first = min(pairs, key=lambda pair: self.rank.get(pair, math.inf))
            if first not in self.rank:
                break                    # no learned pair left
            ids = merge(ids, first, self.rank[first])
        return ids

    def encode(self, text):              # lowercased, like training: decode(encode(t)) == t.lower()
        ids = []
        for word in PAT.findall(text.lower()):
            if word not in self.cache:
                self.cache[word] = self.encode_word(word)
            ids += self.cache[word]
        return ids

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")


def stage_tokenizer(train_txt, path, vocab):
    """Stage 2: train the BPE on the first 10 MB of stories (or read the one trained before)."""
    if os.path.exists(path):
        log(f"tokenizer: {path} is there, skipped")
    else:
        t0 = time.time()
        texts = []
        size = 0
        for story in read_stories(train_txt):
            texts.append(story)
            size += len(story.encode())
            if size >= 10e6:
                break
        merges = train_bpe(texts, vocab).merges
        write(path, json.dumps({"pattern": PAT.pattern, "merges": merges}))
        log(f"tokenizer: {257 + len(merges)} tokens (--vocab {vocab}; fewer if no pair is left to "
            f"merge) from {size / 1e6:.1f} MB of stories in {time.time() - t0:.1f} s -> {path}")
    with open(path) as f:
        return Tokenizer(json.load(f)["merges"])


# ---- Data stage 3: pretokenize once: <eot> story_1 <eot> story_2 ... <eot> story_n <eot>, uint16
def stage_pretokenize(tok, src, dst, limit):
    if os.path.exists(dst):
        log(f"pretokenize: {dst} is there, skipped")
        return
    stats = Counter()
    buf = []
    t0 = time.time()
    stories = islice(read_stories(src, stats), limit or None)
    with open(dst + ".tmp", "wb") as f:
        for story in tqdm(stories, desc="pretokenize", disable=None):
            buf += [EOT_ID] + tok.encode(story)
            if len(buf) > 1 << 20:
                f.write(np.array(buf, np.uint16).tobytes())
                buf = []
        f.write(np.array(buf + [EOT_ID], np.uint16).tobytes())
        n_tokens = f.tell() // 2
    os.replace(dst + ".tmp", dst)
    log(f"pretokenize: {stats['stories']:,} stories -> {n_tokens:,} tokens in {dst} in "
        f"{time.time() - t0:.1f} s (dropped {stats['empty']} empty; {stats['malformed_utf8']} with "
        "malformed UTF-8, replaced)")


def prepare(args):                       # the three stages -> (tokenizer, train .bin, valid .bin)
    key = os.path.join(args.data_dir, f"tok{args.vocab}")
    train_bin = f"{key}_train_{args.stories or 'all'}.bin"
    valid_bin = f"{key}_valid_{args.val_stories or 'all'}.bin"
    if args.synthetic:
        train_txt, valid_txt = write_synthetic(args.data_dir, 30000)
    else:
        train_txt, valid_txt = stage_download(args)
    tok = stage_tokenizer(train_txt, key + ".json", args.vocab)
    stage_pretokenize(tok, train_txt, train_bin, args.stories)
    stage_pretokenize(tok, valid_txt, valid_bin, args.val_stories)
    return tok, train_bin, valid_bin


# ---- Compare with the paper ----------------------------------------------------------------------
# Table 1 of [SQS], Tiny Stories: gate -> (row label, [(loss, perplexity) at 25/50/75/100 %])
PAPER = {
    "relu": ("ReLU", [(2.1264, 9.4803), (1.9958, 8.3943), (1.9434, 7.9114), (1.9021, 7.6538)]),
    "gelu": ("GELU", [(2.1257, 9.4852), (1.9980, 8.5438), (1.9471, 8.0483), (1.9061, 7.8047)]),
    "silu": ("SwiGLU", [(2.1227, 9.3327), (1.9945, 8.2885), (1.9456, 7.9450), (1.9042, 7.7329)]),
    "identity": ("Bilinear",
                 [(2.1177, 9.5730), (1.9952, 8.4898), (1.9483, 8.0583), (1.9065, 7.7987)]),
    "sqs": ("SQS", [(2.1327, 9.5220), (1.9939, 8.2721), (1.9434, 7.8579), (1.9020, 7.6286)]),
}


def cell(loss):                          # "loss | ppl" of one mark
    if loss is None:
        return "- | -"
    if not math.isfinite(loss):
        return "diverged | -"
    return f"{loss:.4f} | {math.exp(loss):.3f}"


def results_table(results):
    marks = " | ".join(f"{int(m * 100)}% loss | ppl" for m in MARKS)
    header = f"| gate | {marks} | tok/s | of GEMM rate |"
    rule = "|---" + "|---:" * (2 * len(MARKS) + 2) + "|"
    lines = [header, rule]
    last_row = {r["name"]: key for key, r in results.items()}   # gate -> its last row
    for key, r in results.items():
        label = PAPER[r["name"]][0] + " = " + key if r["name"] in PAPER else key
        cells = " | ".join(cell(r["val"].get(str(m))) for m in MARKS)
        lines.append(f"| {label} (this run) | {cells} | {r['tok_s']:,.0f} | {r['gemm_use']:.1%} |")
        if r["name"] in PAPER and last_row[r["name"]] == key:
            paper_label, values = PAPER[r["name"]]
            paper_cells = " | ".join(f"{loss:.4f} | {ppl:.4f}" for loss, ppl in values)
            lines.append(f"| {paper_label} (paper) | {paper_cells} | - | - |")
    return lines


def ordering(final):                     # {label: loss} -> "a < b < c (spread 0.0123)"
    if not final:
        return "-"
    names = sorted(final, key=final.get)
    spread = max(final.values()) - min(final.values())
    return " < ".join(names) + f" (spread {spread:.4f})"


def report(results, note, synthetic):
    ours = {}
    for key, r in results.items():
        final = r["val"].get("1.0", math.nan)
        if math.isfinite(final):
            ours[key] = final
    gates_run = {r["name"] for r in results.values()}
    paper = {}                           # the paper's final losses of the gates we ran
    excess = []                          # how far the paper's ppl is above exp(its loss), per cell
    for name, (label, values) in PAPER.items():
        if name in gates_run:
            paper[label] = values[-1][0]
        for loss, ppl in values:
            excess.append(ppl / math.exp(loss) - 1)
    text = []
    if synthetic:
        text += ["**SYNTHETIC STAND-IN CORPUS (--synthetic), NOT TinyStories: the 'this run' rows "
                 "cannot be compared with the paper's; they show that the pipeline works and how "
                 "fast.**", ""]
    text += [f"Validation loss / perplexity at 25/50/75/100 % of training. {note}",
             "Paper: Table 1 of arXiv:2509.01874 (all of TinyStories, its own tokenizer, batch "
             "512, 3 epochs). Losses per token are NOT comparable across tokenizers. Our ppl = "
             f"exp(loss); the paper's ppl is {min(excess):.1%} to {max(excess):.1%} above exp(its "
             "loss) in its rows, so it is not exp of the same mean. tok/s counts every position "
             "(padding too); 'of GEMM rate' = FLOP/token (nanoGPT's count) x tok/s / the timed "
             "GEMM rate.", ""]
    text += results_table(results)
    final_line = f"final loss, lowest first: this run {ordering(ours)}; paper {ordering(paper)}"
    text += ["", final_line, ""]
    for key, r in results.items():
        text += [f"### Sample, {key} (temperature 0.8, top-k 40, seed 0)", "", r["sample"], ""]
    return "\n".join(text) + "\n"


# ---- Plumbing: checkpoints, devices and DDP, the command line ------------------------------------
def checkpoint_path(out, act, seed):
    safe = re.sub(r"[^A-Za-z0-9.]+", "_", act.spec)
    return os.path.join(out, f"ckpt_{safe}_s{seed}.pt")


def run_config(args, vocab, steps, train, val):   # what a checkpoint must agree with to be resumed
    config = dict(vocab=vocab, steps=steps, stories=len(train.bounds), val_stories=len(val.bounds))
    for key in ("layers", "d_model", "hidden", "heads", "ctx", "batch", "lr", "wd", "warmup"):
        config[key] = getattr(args, key)
    return config


def save_checkpoint(path, model, opt, state, config):
    blob = {"model": model.state_dict(), "opt": opt.state_dict(), "state": json.dumps(state),
            "config": json.dumps(config)}
    torch.save(blob, path + ".tmp")      # temp name + rename: a kill never leaves half a checkpoint
    os.replace(path + ".tmp", path)


def load_checkpoint(path, model, opt, config, fresh, device):
    """Restore model and opt from path; -> the saved training state. One-line error if the file is
    unreadable or was made with other settings (the file is left as it is)."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        saved = json.loads(blob["config"])
        state = json.loads(blob["state"])
        if set(state) != set(fresh):
            raise ValueError("its training state has other fields")
    except Exception as e:               # a damaged file makes torch.load raise almost anything
        reason = (str(e).split(". ")[0] or "empty or cut short")[:120]
        sys.exit(f"error: --resume: {path} is not a readable checkpoint ({type(e).__name__}: "
                 f"{reason}); delete it or use a new --out")
    diff = [f"{k} {v} -> {config.get(k)}" for k, v in saved.items() if config.get(k) != v]
    if diff:
        sys.exit(f"error: --resume: {path} was made with other settings ({', '.join(diff)}); "
                 "repeat the original flags or use a new --out")
    try:
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["opt"])
    except (KeyError, RuntimeError, ValueError) as e:
        reason = str(e).splitlines()[0][:120]
        sys.exit(f"error: --resume: {path} does not fit this model ({reason}); use a new --out")
    return state


def pick_device(choice):                 # auto: cuda, then mps, then cpu
    there = dict(cpu=True, cuda=torch.cuda.is_available(), mps=torch.backends.mps.is_available())
    if choice == "auto":
        for device in ("cuda", "mps", "cpu"):
            if there[device]:
                return device
    if not there[choice]:
        sys.exit(f"error: --device {choice} is not available here")
    return choice


def setup(args):
    """-> (rank, world, device); under torchrun one process per device (nccl on GPUs, gloo on
    CPU)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(args.device)
    if args.batch % world:
        sys.exit(f"error: --batch {args.batch} is not divisible by {world} processes")
    if world > 1:
        if device == "cuda":
            device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        os.makedirs(args.out, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        sys.exit(f"error: --out {args.out} is not writable: {e}")
    return rank, world, device


def prepare_on_rank0(args, rank, world):
    """Rank 0 runs the data stages; under torchrun the others wait, then find every stage done."""
    paths = None
    if rank == 0:
        paths = prepare(args)
    if world > 1:
        dist.barrier()
    if rank != 0:
        paths = prepare(args)
    return paths


def check_args(a, given):                # -> what is wrong with the settings, or None
    sizes = dict(layers=a.layers, d_model=a.d_model, hidden=a.hidden, heads=a.heads, ctx=a.ctx,
                 batch=a.batch, steps=a.steps, ckpt_every=a.ckpt_every, seeds=a.seeds)
    if a.quick and a.paper:
        return "--quick and --paper exclude each other"
    if "steps" in given and "epochs" in given:
        return "give --steps or --epochs, not both"
    for name, value in sizes.items():
        if value < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {value}"
    for name in ("stories", "val_stories", "warmup"):
        if getattr(a, name) < 0:
            return f"--{name.replace('_', '-')} must be >= 0, got {getattr(a, name)}"
    if not 258 <= a.vocab <= 65535:
        return f"--vocab must be in 258..65535 (uint16 ids), got {a.vocab}"
    if a.d_model % (2 * a.heads):
        return f"--d-model {a.d_model} must be a multiple of 2 x --heads {a.heads} (RoPE pairs)"
    if a.epochs is not None and not (math.isfinite(a.epochs) and a.epochs > 0):
        return f"--epochs must be > 0, got {a.epochs}"
    if not (math.isfinite(a.lr) and a.lr > 0):
        return f"--lr must be a number > 0, got {a.lr}"
    if not (math.isfinite(a.wd) and a.wd >= 0):
        return f"--wd must be a number >= 0, got {a.wd}"
    return None


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0],
                                epilog="In a help text, '--quick =' or '--paper =' means that the "
                                "preset keeps the default. An explicit flag always wins.")
    for name, default, quick, paper, text in SETTINGS:
        kind = float if name in FLOATS else int
        flag = "--" + name.replace("_", "-")
        shown = "off" if default is None else default
        help_text = f"{text} (default {shown}, --quick {quick}, --paper {paper})"
        p.add_argument(flag, type=kind, help=help_text)
    p.add_argument("--acts", default="relu,gelu,swiglu,bilinear,sqs",
                   help="the gates, one model each (default relu,gelu,swiglu,bilinear,sqs); "
                   "choose from " + activations.act_choices())
    p.add_argument("--seeds", type=int, default=1,
                   help="N: seeds 0..N-1 per gate, one row each (initial weights, story order; "
                   "default 1)")
    p.add_argument("--data-dir", help="text, tokenizer, memmaps (default data/tinystories, "
                   "with --synthetic data/synthetic)")
    p.add_argument("--url", default=URL, help=f"where to download the TinyStories files from "
                   f"(default {URL})")
    p.add_argument("--out", default="out/train_tinystories",
                   help="report, results, checkpoints (default out/train_tinystories)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--no-kernels", action="store_true",
                   help="run the gates' plain PyTorch formulas even where the fused Triton kernels "
                   "would run (CUDA with triton), to compare eager and fused (default: kernels on)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out (default off)")
    p.add_argument("--prepare-only", action="store_true",
                   help="run the data stages only, e.g. before torchrun (default off)")
    p.add_argument("--synthetic", action="store_true",
                   help="an offline stand-in corpus, NOT TinyStories (default off)")
    p.add_argument("--quick", action="store_true", help="classroom run: a tiny model (default off)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's scale, for a GPU (default off)")
    a = p.parse_args(argv)
    given = {name for name, *_ in SETTINGS if getattr(a, name) is not None}
    for name, default, quick, paper, _ in SETTINGS:
        preset = quick if a.quick else paper if a.paper else "="
        if name not in given:            # the one place presets are applied
            setattr(a, name, default if preset == "=" else preset)
    if "steps" in given:
        a.epochs = None                  # --steps wins over --paper's epochs
    try:
        a.act_list = activations.parse_acts(a.acts)
    except ValueError as e:
        sys.exit(f"error: --acts: {e}")
    problem = check_args(a, given)
    if problem:
        sys.exit("error: " + problem)
    if a.data_dir is None:
        a.data_dir = "data/synthetic" if a.synthetic else "data/tinystories"
    return a


def describe(args, tok, train, val, steps, n_params, fpt, world, device, rate):
    corpus = "SYNTHETIC stand-in (NOT TinyStories)" if args.synthetic else "TinyStories"
    epochs = steps / (len(train.bounds) // args.batch)
    return (f"{corpus}: {len(train.bounds):,} train stories ({len(train.tokens):,} tokens), "
            f"{len(val.bounds):,} validation stories, vocab {len(tok.vocab)}; "
            f"{args.layers} layers, d {args.d_model}, hidden {args.hidden}, ctx {args.ctx}, "
            f"batch {args.batch}, {steps} steps ({epochs:.2f} epochs), {n_params:,} params, "
            f"{fpt / 1e6:.1f} MFLOP/token; "
            f"{world} process(es) on {device}, GEMM {rate / 1e9:,.0f} GFLOP/s each")


def train_gates(args, tok, train, val, steps, device, rank, world, fpt, gemm_flops):
    """One model per gate and seed -> {row name: losses, learning rates, speed, sample}."""
    results = {}
    for act in args.act_list:
        for seed in range(args.seeds):
            model, state = train_one(args, act, seed, len(tok.vocab), train, val, steps, device,
                                     rank, world)
            tok_s = state["tokens"] / max(state["seconds"], 1e-9)
            text = "(diverged)"
            if math.isfinite(state["train_loss"][-1]):
                text = sample(model, tok, "once upon a time", 200, 0, args.ctx, device)
            key = act.spec if args.seeds == 1 else f"{act.spec} seed {seed}"
            results[key] = dict(name=act.name, steps=steps, tok_s=tok_s,
                                gemm_use=fpt * tok_s / gemm_flops, sample=text, **state)
    return results


def main(argv=None):
    args = get_args(argv)
    rank, world, device = setup(args)
    t_start = time.time()
    tok, train_bin, valid_bin = prepare_on_rank0(args, rank, world)
    if args.prepare_only:
        return
    train = load_stories(train_bin)
    val = load_stories(valid_bin)
    if len(train.bounds) < args.batch or len(val.bounds) == 0:
        sys.exit(f"error: {len(train.bounds)} training stories, fewer than --batch {args.batch} "
                 f"(or no validation story)")
    steps = args.steps
    if args.epochs is not None:
        steps = max(1, math.ceil(args.epochs * (len(train.bounds) // args.batch)))
    counted = build(args, args.act_list[0], len(tok.vocab))
    n_params = sum(p.numel() for p in counted.parameters())
    fpt = flops_per_token(counted, args)
    rate = gemm_rate(device)
    note = describe(args, tok, train, val, steps, n_params, fpt, world, device, rate)
    log(note)
    t_data = time.time() - t_start
    gemm_flops = rate * world            # the yardstick of all processes together
    results = train_gates(args, tok, train, val, steps, device, rank, world, fpt, gemm_flops)
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        text = report(results, note, args.synthetic)
        write(os.path.join(args.out, "report.md"), text)
        write(os.path.join(args.out, "results.json"),
              json.dumps(dict(world=world, steps=steps, results=results)))
        print(f"\n{text}wrote {args.out}/report.md, results.json")
        print(f"wall time: data stages {t_data:.0f} s, training + evaluation + samples "
              f"{time.time() - t_start - t_data:.0f} s")
    if rank == 0 and device.startswith("cuda"):
        calls = activations.FUSED_CALLS
        print(f"fused kernel calls: sqs={calls['sqs']} gensilu={calls['gensilu']}")


if __name__ == "__main__":
    main()
