"""
train_tinystories.py -- does an SQS-gated GLU train a small language model as well as the usual
gates? A 4-layer transformer on TinyStories, one model per gate: the Tiny Stories rows of Table 1
and the samples of Appendix D of the SQS paper [SQS] (section 4.2.2). Data stages print what they
did and skip finished work (--prepare-only runs only them): download (size-checked, resumable) ->
byte-level BPE trained here -> uint16 memmaps. Then per gate: training, validation loss and
perplexity at 25/50/75/100 %, tokens/s and MFU, a sample "once upon a time ...".

    python train_tinystories.py --synthetic   # offline stand-in corpus, NOT TinyStories (CPU)
    python train_tinystories.py --quick       # classroom run: tiny model (add --synthetic offline)
    python train_tinystories.py               # TinyStories, CPU-sized (20k stories, 400 steps)
    python train_tinystories.py --paper       # the paper's scale on a GPU: batch 512, 3 epochs
    torchrun --standalone --nproc_per_node 4 train_tinystories.py --paper     # the same, DDP

The paper gives 4 layers, model dim 128, GLU hidden 128, AdamW lr 1e-3, wd 0.1, batch 512, cosine.
Where it is silent we follow the transformer of [BIL] (4 layers, context 256, lr 1e-3, wd 0.1):
  * rotary position embeddings, 4 heads, context 256, no biases; untied output head
  * pre-norm RMSNorm without a learned gain; the attention branch scaled by 1/sqrt(2 * layers)
  * PyTorch's default nn.Linear / nn.Embedding init; AdamW betas (0.9, 0.95); 50 linear warm-up
    steps, then cosine to 0; gradient-norm clipping at 1
  * one story per sequence, "<eot> story <eot>" cut/padded to the context, padding masked in the loss
  * tokenizer: [BIL] downloads a lowercase 4096-token BPE; ours is the same kind but trained here,
    so losses per token are NOT comparable with the paper's (a token is another unit of text)
  * epochs: section 4.2.2 says 3, Appendix A's table 20; --paper uses 3 (--epochs 20 is the other)
Sources: [SQS] arXiv:2509.01874. [BIL] Pearce et al., arXiv:2410.08417, github.com/tdooms/bilinear-
decomposition (src/language/transformer.py). TinyStories: Eldan & Li, arXiv:2305.07759. BPE: Sennrich
et al., arXiv:1508.07909 (byte-level, GPT-2's pre-split). RoPE: Su et al., arXiv:2104.09864. The data
stages follow karpathy/llama2.c's tinystories.py, the MFU estimate karpathy/nanoGPT (both written anew).
"""
import argparse, heapq, http.client, json, math, os, pathlib, random, re, sys, tempfile, time, timeit, urllib.request
from collections import Counter, defaultdict
from functools import lru_cache, partial
from itertools import islice, product

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import activations

# ---- Config: data, the paper's numbers, presets (an explicit flag always wins over a preset) ---------
URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main"
FILES = {"TinyStories-train.txt": 1_924_281_556, "TinyStories-valid.txt": 19_447_282}   # bytes
EOT, EOT_ID, IGNORE = "<|endoftext|>", 256, -100    # the story separator, its id, "no target here"
# Table 1 of [SQS], Tiny Stories: gate -> (row label, [(loss, perplexity) at 25/50/75/100 %])
PAPER = {"relu": ("ReLU", [(2.1264, 9.4803), (1.9958, 8.3943), (1.9434, 7.9114), (1.9021, 7.6538)]),
         "gelu": ("GELU", [(2.1257, 9.4852), (1.9980, 8.5438), (1.9471, 8.0483), (1.9061, 7.8047)]),
         "silu": ("SwiGLU", [(2.1227, 9.3327), (1.9945, 8.2885), (1.9456, 7.9450), (1.9042, 7.7329)]),
         "identity": ("Bilinear", [(2.1177, 9.5730), (1.9952, 8.4898), (1.9483, 8.0583), (1.9065, 7.7987)]),
         "sqs": ("SQS", [(2.1327, 9.5220), (1.9939, 8.2721), (1.9434, 7.8579), (1.9020, 7.6286)])}
MARKS = (0.25, 0.5, 0.75, 1.0)
DEFAULTS = dict(stories=20000, val_stories=256, vocab=4096, layers=4, d_model=128, hidden=128, heads=4,
                ctx=256, batch=8, steps=400, epochs=None)                  # CPU-sized
QUICK = dict(stories=2000, val_stories=100, vocab=512, layers=2, d_model=64, hidden=64, heads=2, ctx=128,
             batch=16, steps=200)
PAPER_SCALE = dict(stories=0, val_stories=0, batch=512, epochs=3.0)       # 0 = all the stories

def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, text in dict(stories="train on the first N stories, 0 = all", val_stories="validate on the first "
                        "N stories, 0 = all", vocab="BPE tokens", layers="", d_model="", hidden="GLU width",
                        heads="", ctx="context", batch="global batch in stories", steps="",
                        epochs="instead of --steps: passes over the stories").items():
        p.add_argument("--" + k.replace("_", "-"), type=float if k == "epochs" else int, help=f"{text} "
                       f"(default {DEFAULTS[k]}, --quick {QUICK.get(k, '=')}, --paper {PAPER_SCALE.get(k, '=')})")
    p.add_argument("--acts", default="relu,gelu,swiglu,bilinear,sqs", help=activations.act_choices())
    p.add_argument("--seeds", type=int, default=1, help="N: seeds 0..N-1 per gate (initial weights, story order)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay")
    p.add_argument("--warmup", type=int, default=50, help="linear warm-up steps before the cosine")
    p.add_argument("--ckpt-every", type=int, default=100, help="checkpoint every N steps and at the end")
    p.add_argument("--data-dir", help="text, tokenizer, memmaps (default data/tinystories, data/synthetic)")
    p.add_argument("--url", default=URL, help="where to download the TinyStories files from")
    p.add_argument("--out", default="out/train_tinystories")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    for flag, text in (("--resume", "continue from the checkpoints in --out"), ("--prepare-only", "run the data "
                       "stages only (before torchrun)"), ("--synthetic", "offline stand-in corpus, NOT TinyStories"),
                       ("--quick", "classroom run (a tiny model)"), ("--paper", "the paper's scale (a GPU)")):
        p.add_argument(flag, action="store_true", help=text)
    a = p.parse_args(argv)
    given = {k for k in DEFAULTS if getattr(a, k) is not None}
    for k, v in {**DEFAULTS, **(QUICK if a.quick else PAPER_SCALE if a.paper else {})}.items():
        if k not in given:                  # the one place presets are applied
            setattr(a, k, v)
    a.epochs = None if "steps" in given else a.epochs
    try:
        a.act_list = activations.parse_acts(a.acts)
    except ValueError as e:
        p.error(str(e))
    sizes = (a.layers, a.d_model, a.hidden, a.heads, a.ctx, a.batch, a.steps, a.ckpt_every, a.seeds)
    if a.quick and a.paper or {"steps", "epochs"} <= given or not 258 <= a.vocab <= 65535 or min(sizes) < 1 \
            or a.d_model % (2 * a.heads) or min(a.stories, a.val_stories, a.warmup, a.epochs or 1) < 0:
        p.error("--quick excludes --paper, --steps excludes --epochs; sizes >= 1, counts >= 0, "
                "--vocab in 258..65535, --d-model a multiple of 2 x --heads")
    a.data_dir = a.data_dir or ("data/synthetic" if a.synthetic else "data/tinystories")
    return a

log = partial(print, flush=True) if int(os.environ.get("RANK", 0)) == 0 else lambda *a: None   # rank 0 talks
def write(path, text):                  # temp name + rename: never a half-written file
    pathlib.Path(path + ".tmp").write_text(text, encoding="utf-8")
    os.replace(path + ".tmp", path)

# ---- Data stage 1: the text files (download; offline: the stand-in corpus) ---------------------------
def download(url, path, size):
    """Stream url to path + '.part'; a re-run resumes it with an HTTP Range request (a server that
    answers 200, not 206, makes us start over). Renamed to path only if it has `size` bytes."""
    part = path + ".part"
    have = os.path.getsize(part) if os.path.exists(part) and os.path.getsize(part) <= size else 0
    if have != size:
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        with urllib.request.urlopen(req, timeout=30) as r, tqdm(unit="B", unit_scale=True, disable=None) as bar:
            have = have if getattr(r, "status", None) == 206 else 0
            with open(part, "ab" if have else "wb") as f:
                while chunk := r.read(1 << 20):
                    bar.update(f.write(chunk))
    if (got := os.path.getsize(part)) != size:
        os.remove(part)
        raise ValueError(f"got {got:,} bytes, expected {size:,}; removed the partial file")
    os.replace(part, path)

def stage_download(args):
    """Stage 1: the (train, valid) text files; downloads those that are missing."""
    os.makedirs(args.data_dir, exist_ok=True)
    for name, size in FILES.items():
        path = os.path.join(args.data_dir, name)
        log(f"download: {path} is there, skipped" if os.path.exists(path) else f"download: {args.url}/{name}")
        try:
            if not os.path.exists(path):
                download(f"{args.url}/{name}", path, size)
        except (OSError, ValueError, http.client.HTTPException) as e:    # offline, cut off, corrupt
            sys.exit(f"error: could not download {args.url}/{name} ({getattr(e, 'reason', e)}). Put " + ", ".join(
                f"{n} ({s:,} bytes)" for n, s in FILES.items()) + f" in {os.path.abspath(args.data_dir)} (or "
                "pass --data-dir), or run offline with --synthetic (NOT TinyStories)")
    return [os.path.join(args.data_dir, n) for n in FILES]

def synthetic_story(rng):
    """A simple story (mixed case, dialogue, rare made-up names); far simpler than TinyStories."""
    pick = lambda words: rng.choice(words.split())
    name = pick("Lily Tom Ben Mia Max Sue Anna Sam Lucy Jack Emma Leo Zoe Tim Kate Noah Ella Finn")
    name = "".join(pick("ba ko li mo nu ra si te vu zo") for _ in range(3)).title() if rng.random() < 0.3 else name
    pet, thing = pick("cat dog bird frog fish bunny duck bear fox owl"), pick("ball kite cake box boat book hat")
    adj = lambda: pick("big small red blue happy sad shiny old soft funny brave kind quiet sleepy")
    feel = lambda: pick("happy sad scared excited proud tired glad surprised")
    act = lambda: pick("play run jump dance sing swim climb read paint hide explore bake")
    return " ".join([f"Once upon a time, there was a {adj()} {pet} named {name}."] + [rng.choice([
        f"{name} loved to {act()} in the {pick('park garden forest beach café')} with a {adj()} {thing}.",
        f"\"Can I {act()} with you?\" asked the {pet}. \"Yes!\" said {name}.",
        f"{name} felt {feel()} and wanted to {act()}.",
        f"But the {thing} fell into the {pick('river hole mud')}. {name} was {feel()}.",
        f"{name}’s {pick('mom dad friend sister')} came to help. They found the {thing}.",
        f"\"Thank you,\" said {name}. \"You are a good friend.\""]) for _ in range(rng.randint(6, 20))]
        + [rng.choice([f"From that day on, {name} was {feel()}.", "They lived happily ever after."])])

def write_synthetic(data_dir, n, seed=1234):
    """synthetic-{train,valid}.txt: n and n // 10 stories in TinyStories' format, written once."""
    os.makedirs(data_dir, exist_ok=True)
    paths = [os.path.join(data_dir, f"synthetic-{s}.txt") for s in ("train", "valid")]
    for i, (path, count) in enumerate(zip(paths, (n, max(10, n // 10)))):
        if not os.path.exists(path):
            rng = random.Random(seed + i)
            write(path, f"\n{EOT}\n".join(synthetic_story(rng) for _ in range(count)) + "\n")
        log(f"synthetic: {path}, {count:,} stories (a stand-in, NOT TinyStories)")
    return paths

def read_stories(path, stats=None):
    """Yield the stories one at a time (the train file is ~2 GB); count malformed UTF-8 and empty ones."""
    stats, rest, sep = Counter() if stats is None else stats, b"", EOT.encode()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            *pieces, rest = (rest + chunk).split(sep) if chunk else [rest, b""]   # at the end: the last one
            for raw in pieces:
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    stats["malformed_utf8"] += 1
                    text = raw.decode("utf-8", errors="replace").strip()
                stats["stories" if text else "empty"] += 1
                if text:
                    yield text
            if not chunk:
                return

# ---- Data stage 2: byte-level BPE, from scratch ------------------------------------------------------
# Text is lowercased (as [BIL]'s tokenizer) and pre-split into "words" (GPT-2's idea): letters with an
# optional leading space, digits, punctuation runs, whitespace (`re` has no \p{L}: letters are [^\W\d_]).
# Merges never cross a word boundary, so BPE sees each distinct word once, weighted by its count. The
# pieces cover every character: decode(encode(t)) == t. ids: 0..255 bytes, 256 <eot>, 257.. merges.
PAT = re.compile(r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+""")

def merge(ids, pair, new):              # every non-overlapping `pair`, left to right, becomes `new`
    out, i = [], 0
    while i < len(ids):
        hit = i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair
        out.append(new if hit else ids[i])
        i += 2 if hit else 1
    return out

def train_bpe(texts, vocab_size):
    """Learn vocab_size - 257 merges, most frequent pair first (ties: the smallest pair). A merge only
    touches the words that contain its pair and updates the pair counts; a heap finds the next one."""
    words = Counter(w for t in texts for w in PAT.findall(t.lower()))
    seqs, freqs = [list(w.encode()) for w in words], list(words.values())
    count, where, merges, touched = defaultdict(int), defaultdict(set), [], set()

    def update(i, sign):                # add (+1) or remove (-1) the pairs of word i
        for q in zip(seqs[i], seqs[i][1:]):
            count[q] += sign * freqs[i]
            where[q].add(i)             # may go stale: merging a word without the pair is a no-op
            touched.add(q)
    for i in range(len(seqs)):
        update(i, 1)
    heap = [(-c, q) for q, c in count.items()]
    heapq.heapify(heap)
    while len(merges) < vocab_size - 257 and heap:
        c, pair = heapq.heappop(heap)
        if count[pair] != -c or c == 0:
            continue                    # a stale entry: the count changed since it was pushed
        merges.append(pair)
        touched.clear()
        for i in where.pop(pair):
            update(i, -1)
            seqs[i] = merge(seqs[i], pair, 256 + len(merges))
            update(i, 1)
        for q in touched:
            if count[q] > 0:
                heapq.heappush(heap, (-count[q], q))
    return Tokenizer(merges)

class Tokenizer:
    def __init__(self, merges):
        self.merges, self.cache = [tuple(m) for m in merges], {}
        self.rank = {pair: 257 + i for i, pair in enumerate(self.merges)}
        self.vocab = [bytes([i]) for i in range(256)] + [EOT.encode()]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])

    def encode_word(self, word):        # apply the earliest-learned merge present, as training did
        ids = list(word.encode())
        while len(ids) > 1 and (pair := min(zip(ids, ids[1:]), key=lambda q: self.rank.get(q, math.inf))) in self.rank:
            ids = merge(ids, pair, self.rank[pair])
        return ids

    def encode(self, text):             # a cache: most words recur
        return [i for w in PAT.findall(text.lower()) for i in self.cache.get(w) or self.cache.setdefault(
            w, self.encode_word(w))]

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

def stage_tokenizer(train_txt, path, vocab):
    if os.path.exists(path):
        log(f"tokenizer: {path} is there, skipped")
    else:
        t0, texts, size = time.time(), [], 0
        for s in read_stories(train_txt):
            texts.append(s)
            if (size := size + len(s.encode())) >= 10e6:    # the first 10 MB of stories
                break
        write(path, json.dumps({"pattern": PAT.pattern, "merges": (merges := train_bpe(texts, vocab).merges)}))
        log(f"tokenizer: {257 + len(merges)} tokens (--vocab {vocab}; fewer if no pair is left to merge) from "
            f"{size / 1e6:.1f} MB of stories in {time.time() - t0:.1f} s -> {path}")
    with open(path) as f:
        return Tokenizer(json.load(f)["merges"])

# ---- Data stage 3: pretokenize once: <eot> story_1 <eot> story_2 ... <eot> story_n <eot>, uint16 -----
def stage_pretokenize(tok, src, dst, limit):
    if os.path.exists(dst):
        return log(f"pretokenize: {dst} is there, skipped")
    stats, buf, t0 = Counter(), [], time.time()
    with open(dst + ".tmp", "wb") as f:
        for story in tqdm(islice(read_stories(src, stats), limit or None), desc="pretokenize", disable=None):
            buf += [EOT_ID] + tok.encode(story)
            if len(buf) > 1 << 20:
                f.write(np.array(buf, np.uint16).tobytes())
                buf = []
        f.write(np.array(buf + [EOT_ID], np.uint16).tobytes())
        n = f.tell() // 2
    os.replace(dst + ".tmp", dst)
    log(f"pretokenize: {stats['stories']:,} stories -> {n:,} tokens in {dst} in {time.time() - t0:.1f} s "
        f"(dropped {stats['empty']} empty; {stats['malformed_utf8']} with malformed UTF-8, replaced)")

def prepare(args):                      # the three stages -> (tokenizer, train memmap, valid memmap)
    key = os.path.join(args.data_dir, f"tok{args.vocab}")
    bins = [f"{key}_{split}_{n or 'all'}.bin" for split, n in (("train", args.stories), ("valid", args.val_stories))]
    train_txt, valid_txt = write_synthetic(args.data_dir, 30000) if args.synthetic else stage_download(args)
    tok = stage_tokenizer(train_txt, key + ".json", args.vocab)
    for src, dst, n in zip((train_txt, valid_txt), bins, (args.stories, args.val_stories)):
        stage_pretokenize(tok, src, dst, n)
    return tok, *bins

# ---- The model: pre-norm decoder-only transformer, RoPE attention, GLU MLP with a registry gate ------
# Rotary positions: split a head vector (Q dims) into pairs (x_i, x_{i+Q/2}), i < Q/2, and rotate pair
# i at position t by the angle t*theta_i, theta_i = 10000^(-2i/Q). With R(a) the rotation by a,
# <R(t theta) q, R(s theta) k> = <q, R((s - t) theta) k>: the score of query t and key s depends on
# the positions only through s - t, and no position vector enters the residual stream.
def rope(x, cos, sin):                  # x (..., T, Q): pair (a, b) -> (a cos - b sin, b cos + a sin)
    a, b = x.chunk(2, -1)
    return x * cos + torch.cat([-b, a], -1) * sin

rms_norm = lambda x: F.rms_norm(x, x.shape[-1:], eps=1e-8)   # x / sqrt(mean(x^2) + eps), no gain, as [BIL]

class Block(nn.Module):
    """x + scale * attention(norm x), then x + GLU(norm x), GLU = p(act(W_g x) * (W_v x)) with W_g, W_v
    the halves of one Linear(d, 2 hidden) as in [BIL]; act = identity is the bilinear layer."""

    def __init__(self, d, heads, hidden, act, scale):
        super().__init__()
        self.heads, self.act, self.scale = heads, act, scale
        self.qkv, self.o = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.w, self.p = nn.Linear(d, 2 * hidden, bias=False), nn.Linear(hidden, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(rms_norm(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos[:T], sin[:T]), rope(k, cos[:T], sin[:T])          # each (B, H, T, Q)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)         # softmax(q k^T/sqrt(Q) + mask) v
        x = x + self.scale * self.o(y.transpose(1, 2).reshape(B, T, C))     # (B, T, C)
        gate, value = self.w(rms_norm(x)).chunk(2, -1)                     # (B, T, hidden) each
        return x + self.p(activations.glu(gate, value, self.act))

class TinyLM(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads, hidden, act):
        super().__init__()
        self.emb, self.head = nn.Embedding(vocab, d), nn.Linear(d, vocab, bias=False)   # untied
        self.blocks = nn.ModuleList(Block(d, heads, hidden, act, 1 / math.sqrt(2 * layers)) for _ in range(layers))
        Q = d // heads
        ang = torch.outer(torch.arange(ctx).float(), 10000.0 ** (-torch.arange(0, Q, 2).float() / Q))
        self.register_buffer("cos", ang.repeat(1, 2).cos(), persistent=False)   # (T, Q): t theta_i, twice
        self.register_buffer("sin", ang.repeat(1, 2).sin(), persistent=False)

    def forward(self, idx):                                             # (B, T) -> (B, T, vocab)
        x = self.emb(idx)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return self.head(rms_norm(x))

def build(args, act, vocab):
    return TinyLM(vocab, args.ctx, args.d_model, args.layers, args.heads, args.hidden, act)

# ---- Training: one story per row, a fresh shuffle per epoch, warm-up + cosine, checkpoints, DDP -----
def story_bounds(data):                 # (start, end) of each "<eot> story <eot>"; neighbours share an <eot>
    eot = np.flatnonzero(np.asarray(data) == EOT_ID)
    return np.stack([eot[:-1], eot[1:] + 1], 1)

def make_batch(data, bounds, rows, ctx):
    """x, y (len(rows), ctx): stories cut to ctx + 1 tokens, y = x shifted by one, padding IGNORE in y."""
    x, y = np.full((len(rows), ctx), EOT_ID, np.int64), np.full((len(rows), ctx), IGNORE, np.int64)
    for j, (s, e) in enumerate(bounds[rows]):
        seq = data[s:min(e, s + ctx + 1)]
        x[j, :len(seq) - 1], y[j, :len(seq) - 1] = seq[:-1], seq[1:]
    return torch.from_numpy(x), torch.from_numpy(y)

@lru_cache(maxsize=2)                   # a fresh shuffle of the n stories per epoch, from (seed, epoch) only
def epoch_order(n, seed, epoch):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()

def lr_at(step, lr, warmup, steps):     # linear warm-up to lr, then cosine annealing to 0 at `steps`
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

def flops_per_token(model, args):
    """nanoGPT's estimate: 6 N for forward + backward through the N weights that multiply (the
    embedding is a lookup, left out) + 12 L d T for q k^T and (weights) v over T positions."""
    n = sum(p.numel() for p in model.parameters()) - model.emb.weight.numel()
    return 6 * n + 12 * args.layers * args.d_model * args.ctx

def gemm_rate(device):                  # FLOP/s of one large torch.mm in training's dtype, best of 10
    n, dt = (8192, torch.bfloat16) if device.startswith("cuda") else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dt)
    return 2 * n ** 3 / min(timeit.repeat(lambda: (a @ a)[0, 0].item(), number=1, repeat=10))   # .item(): wait

autocast = lambda device: torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

def train_one(args, act, seed, vocab, data, val, steps, device, rank, world):
    torch.manual_seed(seed)             # the same initial weights for every gate
    model = build(args, act, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=args.wd)
    ckpt = os.path.join(args.out, f"ckpt_{re.sub(r'[^A-Za-z0-9.]+', '_', act.spec)}_s{seed}.pt")
    state = dict(step=0, train_loss=[], val={}, seconds=0.0, tokens=0)
    config = dict(vocab=vocab, steps=steps, stories=len(data[1]), val_stories=len(val[1]), **{
        k: getattr(args, k) for k in ("layers", "d_model", "hidden", "heads", "ctx", "batch", "lr", "wd", "warmup")})
    if args.resume and os.path.exists(ckpt):
        c = torch.load(ckpt, map_location=device, weights_only=True)
        if diff := [f"{k} {v} -> {config[k]}" for k, v in json.loads(c["config"]).items() if config[k] != v]:
            sys.exit(f"error: --resume: {ckpt} was made with other settings ({', '.join(diff)}); "
                     "repeat the original flags or use a new --out")
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        state = json.loads(c["state"])
        log(f"[{act.spec} seed {seed}] resumed at step {state['step']}/{steps}")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    marks, per, t0 = {max(1, round(f * steps)): f for f in MARKS}, args.batch // world, time.time()
    for step in range(state["step"], steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, args.warmup, steps)
        # the global batch depends on (seed, step) only: a resumed run, every gate and every DDP layout
        # see the same stories; each epoch drops its last partial batch; rank r takes its slice
        epoch, i = divmod(step, len(data[1]) // args.batch)
        rows = epoch_order(len(data[1]), seed, epoch)[i * args.batch:(i + 1) * args.batch]
        x, y = make_batch(*data, rows[rank * per:(rank + 1) * per], args.ctx)
        n_real = np.minimum(np.diff(data[1][rows], axis=1)[:, 0] - 1, args.ctx).sum()   # global batch
        with autocast(device):
            logits = net(x.to(device))
        # the mean over the real targets of the global batch; DDP averages gradients over the ranks,
        # hence the factor world: the gradients equal those of one process on the whole batch
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(),
                               ignore_index=IGNORE, reduction="sum") * world / n_real
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss.detach() / world
        if world > 1:
            dist.all_reduce(loss)
        state["train_loss"].append(loss.item())
        state["step"], state["tokens"] = step + 1, state["tokens"] + args.batch * args.ctx
        if not math.isfinite(loss.item()):
            log(f"[{act.spec} seed {seed}] diverged at step {step + 1}")
            state["val"] = {str(m): state["val"].get(str(m), math.nan) for m in MARKS}
            break
        if step + 1 in marks or (step + 1) % args.ckpt_every == 0 or step + 1 == steps:
            state["seconds"] += time.time() - t0
            if step + 1 in marks:
                v = state["val"][str(marks[step + 1])] = evaluate(model, val, args, device, rank, world)
                log(f"[{act.spec} seed {seed}] step {step + 1}/{steps}  train {loss.item():.4f}  val {v:.4f}"
                    f"  ppl {math.exp(v):.3f}  {state['tokens'] / state['seconds']:,.0f} tok/s")
            if rank == 0:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                            "state": json.dumps(state), "config": json.dumps(config)}, ckpt + ".tmp")
                os.replace(ckpt + ".tmp", ckpt)
            t0 = time.time()
    return model, state

# ---- Evaluation and samples --------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, val, args, device, rank=0, world=1):
    """Mean loss over every real target of the validation stories; perplexity = exp(loss)."""
    model.eval()
    total, rows = torch.zeros(2, dtype=torch.float64, device=device), np.arange(len(val[1]))[rank::world]
    for i in range(0, len(rows), args.batch):
        x, y = make_batch(*val, rows[i:i + args.batch], args.ctx)
        with autocast(device):
            logits = model(x.to(device))
        total += torch.stack([F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(),
                                              ignore_index=IGNORE, reduction="sum"), (y != IGNORE).sum()])
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1]).item()

@torch.no_grad()
def sample(model, tok, prompt, n, seed, ctx, device, temperature=0.8, top_k=40):
    """Continue '<eot> prompt' token by token (temperature, top-k); the same seed, the same text."""
    g, ids = torch.Generator().manual_seed(seed), [EOT_ID] + tok.encode(prompt)
    model.eval()
    for _ in range(n):
        logits = model(torch.tensor([ids[-ctx:]], device=device))[0, -1].float().cpu() / temperature
        logits[logits < torch.topk(logits, min(top_k, len(logits))).values[-1]] = -math.inf
        if (nxt := int(torch.multinomial(F.softmax(logits, -1), 1, generator=g))) == EOT_ID:
            break                       # the model ended the story
        ids.append(nxt)
    model.train()
    return tok.decode(ids[1:])

# ---- Compare with the paper --------------------------------------------------------------------------
def report(results, note, synthetic):
    cell = lambda v: "-" if v is None else f"{v:.4f} | {math.exp(v):.3f}" if math.isfinite(v) else "diverged | -"
    rows = ["| gate | " + " | ".join(f"{int(m * 100)}% loss | ppl" for m in MARKS) + " | tok/s | MFU |",
            "|---" + "|---:" * (2 * len(MARKS) + 2) + "|"]
    for spec, r in results.items():
        label = PAPER.get(r["name"], (spec,))[0]
        rows.append(f"| {label} = {spec} (this run) | " + " | ".join(cell(r["val"].get(str(m))) for m in MARKS)
                    + f" | {r['tok_s']:,.0f} | {r['mfu']:.1%} |")
        if r["name"] in PAPER and spec == [k for k, q in results.items() if q["name"] == r["name"]][-1]:
            rows.append(f"| {label} (paper) | " + " | ".join(f"{a:.4f} | {b:.4f}" for a, b in PAPER[r["name"]][1])
                        + " | - | - |")
    ours = {s: r["val"]["1.0"] for s, r in results.items() if math.isfinite(r["val"].get("1.0", math.nan))}
    paper = {v[0]: v[1][3][0] for n, v in PAPER.items() if any(r["name"] == n for r in results.values())}
    order = lambda d: " < ".join(sorted(d, key=d.get)) + f" (spread {np.ptp(list(d.values())):.4f})" if d else "-"
    return ("**SYNTHETIC STAND-IN CORPUS (--synthetic), NOT TinyStories: the 'this run' rows cannot be compared "
            "with the paper's; they show that the pipeline works and how fast.**\n\n" if synthetic else "") + \
        (f"Validation loss / perplexity at 25/50/75/100 % of training. {note}\nPaper: Table 1 of arXiv:2509.01874 "
         "(all of TinyStories, its own tokenizer, batch 512, 3 epochs). Losses per token are NOT comparable across "
         "tokenizers; our ppl = exp(loss), the paper's is 12-14 % above exp(its loss). tok/s counts every position "
         "(padding too); MFU = FLOP/token x tok/s / GEMM rate.\n\n" + "\n".join(rows) +
         f"\n\nfinal loss, lowest first: this run {order(ours)}; paper {order(paper)}\n\n" + "".join(
             f"### Sample, {s} (temperature 0.8, top-k 40, seed 0)\n\n{r['sample']}\n\n" for s, r in results.items()))

def setup(args):
    """-> (rank, world, device); under torchrun one process per device (nccl on GPUs, gloo on CPU)."""
    rank, world, there = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), \
        {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    device = next(d for d in ("cuda", "mps", "cpu") if there[d]) if args.device == "auto" else args.device
    if not there[device] or args.batch % world:
        sys.exit(f"error: --device {device} is not available here" if not there[device] else
                 f"error: --batch {args.batch} is not divisible by {world} processes")
    if world > 1:
        if device == "cuda":
            torch.cuda.set_device(device := f"cuda:{os.environ.get('LOCAL_RANK', 0)}")
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        os.makedirs(args.out, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        sys.exit(f"error: --out {args.out} is not writable: {e}")
    return rank, world, device

def main(argv=None):
    args = get_args(argv)
    rank, world, device = setup(args)
    t_start = time.time()
    tok, *bins = prepare(args) if rank == 0 else (None, None, None)   # rank 0 prepares, the others wait
    if world > 1:
        dist.barrier()
        tok, *bins = prepare(args) if rank else (tok, *bins)
    if args.prepare_only:
        return
    data, val = [(d, story_bounds(d)) for d in (np.memmap(b, np.uint16, mode="r") for b in bins)]
    if len(data[1]) < args.batch or not len(val[1]):
        sys.exit(f"error: {len(data[1])} training stories, fewer than --batch {args.batch} (or no validation story)")
    steps = args.steps if args.epochs is None else max(1, math.ceil(args.epochs * (len(data[1]) // args.batch)))
    fpt, rate = flops_per_token(probe := build(args, args.act_list[0], len(tok.vocab)), args), gemm_rate(device)
    log(note := f"{'SYNTHETIC stand-in (NOT TinyStories)' if args.synthetic else 'TinyStories'}: {len(data[1]):,} "
        f"train stories ({len(data[0]):,} tokens), {len(val[1]):,} validation stories, vocab {len(tok.vocab)}; "
        f"{args.layers} layers, d {args.d_model}, hidden {args.hidden}, ctx {args.ctx}, batch {args.batch}, {steps} "
        f"steps ({steps / (len(data[1]) // args.batch):.2f} epochs), {sum(map(torch.numel, probe.parameters())):,} "
        f"params, {fpt / 1e6:.1f} MFLOP/token; {world} process(es) on {device}, GEMM {rate / 1e9:,.0f} GFLOP/s each")
    results, t_data = {}, time.time() - t_start
    for act, seed in product(args.act_list, range(args.seeds)):        # one row per gate (and seed)
        model, st = train_one(args, act, seed, len(tok.vocab), data, val, steps, device, rank, world)
        tok_s = st["tokens"] / max(st["seconds"], 1e-9)
        results[act.spec + f" seed {seed}" * (args.seeds > 1)] = dict(name=act.name, steps=steps, tok_s=tok_s,
            mfu=fpt * tok_s / (rate * world), **st, sample="(diverged)" if not math.isfinite(st["train_loss"][-1])
            else sample(model, tok, "once upon a time", 200, 0, args.ctx, device))
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        text = report(results, note, args.synthetic)
        write(os.path.join(args.out, "report.md"), text)
        write(os.path.join(args.out, "results.json"), json.dumps(dict(world=world, steps=steps, results=results)))
        print(f"\n{text}wrote {args.out}/report.md, results.json\nwall time: data stages {t_data:.0f} s,"
              f" training + evaluation + samples {time.time() - t_start - t_data:.0f} s")

if __name__ == "__main__":
    main()
