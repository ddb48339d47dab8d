"""
train_tinystories.py -- a small decoder-only transformer on TinyStories, one model per GLU gate.

Reproduces the set-up of the Tiny Stories rows of Table 1 and Appendix D of the SQS paper [SQS]
(section 4.2.2): a 4-layer transformer, model dim 128, GLU hidden dim 128, AdamW lr 1e-3, weight
decay 0.1, batch 512, cosine schedule; validation loss and perplexity at 25/50/75/100 % of training;
a sample from every model starting "once upon a time". Everything is built here, in stages that
skip finished work (the staging follows llama2.c's tinystories.py, written anew):

    1. download   TinyStories text files from Hugging Face        data/tinystories/*.txt
                  (or --synthetic: write a template-story stand-in    data/synthetic/*.txt)
    2. tokenizer  byte-level BPE trained from scratch (lowercased)   data/tinystories/tok4096.json
    3. pretokenize every story once into a uint16 memmap           data/tinystories/tok4096_train_*.bin
    4. train      one model per gate (--acts), checkpoints          out/train_tinystories/ckpt_*.pt
    5. evaluate   val loss / perplexity at 25/50/75/100 %           out/train_tinystories/table.md
    6. sample     "once upon a time ..." from each model            out/train_tinystories/samples.md

    python train_tinystories.py                  # CPU default: 20k stories, 400 steps, 5 gates
    python train_tinystories.py --synthetic      # offline: the same on a stand-in corpus (NOT TinyStories)
    python train_tinystories.py --quick          # classroom run (tiny model, ~15 s per gate)
    python train_tinystories.py --paper          # paper scale: all stories, batch 512, 3 epochs (GPU)
    torchrun --standalone --nproc_per_node 4 train_tinystories.py --paper   # the same on 4 GPUs (DDP)

Measured on this 2-core CPU with --synthetic (see the README): the CPU default trained all five
gates in 5.3 minutes on an idle machine (12,900-14,400 tok/s at d = 128, one process; 2-process torchrun with
--threads 1 ran at 16,300 tok/s against 12,300 for one process in a quieter moment); the BPE
learned 4096 tokens from 10 MB in 1.2 s (62.6 s on a stress text with 328k distinct words).

Sources
  [SQS]  "Preserving Bilinear Weight Spectra with a Signed and Shrunk Quadratic Activation
         Function", arXiv:2509.01874 -- section 4.2.2, Table 1, Appendix A and D
  [TS]   Eldan and Li, "TinyStories: How Small Can Language Models Be and Still Speak Coherent
         English?", arXiv:2305.07759; data: huggingface.co/datasets/roneneldan/TinyStories
  [BIL]  Pearce et al., "Bilinear MLPs enable weight-based mechanistic interpretability",
         arXiv:2410.08417 (their TinyStories models: lowercase BPE with 4096 tokens, context 256)
  [GLU]  Shazeer, "GLU Variants Improve Transformer", arXiv:2002.05202
  [BPE]  Sennrich et al., arXiv:1508.07909; byte-level variant and pre-split regex: GPT-2 (Radford
         et al. 2019). Staging and DDP loop in the spirit of karpathy/llama2.c and karpathy/nanoGPT.

What the paper leaves open, and what this script does about it (all are flags):
  * tokenizer, context length, heads: unstated. We follow [BIL]: lowercase byte-level BPE, 4096
    tokens, context 256; 4 heads of 32 dims.
  * normalisation: unstated. Pre-norm RMSNorm (the LLaMA-style block GLU models usually use);
    --norm layernorm for the GPT-2 block. Without any norm a bilinear GLU (a quadratic in its input)
    stacked 4 times can blow up; pre-norm feeds every GLU unit-RMS inputs.
  * epochs: section 4.2.2 says 3, the Appendix A table says 20. --paper uses 3; --epochs 20 is the other.
  * "Metric" is perplexity. We report exp(mean token loss) over the validation windows. The paper's
    perplexities are 12-14 % above exp(its loss) in every row (exp(1.9021) = 6.70 vs 7.6538), so
    it probably averaged per-batch or per-story perplexities (>= exp(mean loss) by Jensen); unknown.
  * --synthetic: no internet, no TinyStories? A generated corpus of simple template stories (written
    by synthetic_story below, same file format) exercises every stage and measures speed. It is NOT
    TinyStories: its losses say nothing about the paper's numbers, and every output says so.
"""
import os

# OpenMP's default busy-waiting makes torch's 2 CPU threads stall each other whenever another
# process takes a core for a moment: on this shared 2-core machine a default (d = 128) training step
# took 0.54-2.2 s with busy waiting and 0.33-0.38 s with passive waiting (the --quick model: 1.5 s vs
# 0.02 s). Passive waiting costs nothing measurable on an idle machine. Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import heapq
import http.client
import json
import math
import random
import re
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import activations

# ------------------------------------------------------------------------------------------------
# Data facts (the dataset card) and the paper's numbers (Table 1 of [SQS], Tiny Stories rows)
# ------------------------------------------------------------------------------------------------
HF_BASE = os.environ.get("MLPLAB_TINYSTORIES_URL",
                         "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main")
FILES = {"v1": ("TinyStories-train.txt", "TinyStories-valid.txt"),
         "v2": ("TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt"),
         "synthetic": ("synthetic-train.txt", "synthetic-valid.txt")}   # stand-in, NOT TinyStories
SIZES = {"TinyStories-train.txt": 1_924_281_556, "TinyStories-valid.txt": 19_447_282,
         "TinyStoriesV2-GPT4-train.txt": 2_227_753_162, "TinyStoriesV2-GPT4-valid.txt": 22_502_601}
EOT = "<|endoftext|>"   # the story separator in the files; token 256 marks a story start here
EOT_ID = 256
# gate name in the registry -> (row label, [(loss, perplexity) at 25, 50, 75, 100 %])
PAPER = {"relu": ("ReLU", [(2.1264, 9.4803), (1.9958, 8.3943), (1.9434, 7.9114), (1.9021, 7.6538)]),
         "gelu": ("GELU", [(2.1257, 9.4852), (1.9980, 8.5438), (1.9471, 8.0483), (1.9061, 7.8047)]),
         "silu": ("SwiGLU", [(2.1227, 9.3327), (1.9945, 8.2885), (1.9456, 7.9450), (1.9042, 7.7329)]),
         "identity": ("Bilinear", [(2.1177, 9.5730), (1.9952, 8.4898), (1.9483, 8.0583),
                                   (1.9065, 7.7987)]),
         "sqs": ("SQS", [(2.1327, 9.5220), (1.9939, 8.2721), (1.9434, 7.8579), (1.9020, 7.6286)])}
MARKS = (0.25, 0.5, 0.75, 1.0)

# Presets: a flag given explicitly on the command line always wins over a preset.
CPU_DEFAULT = dict(max_stories=20000, val_stories=0, vocab=4096, ctx=256, batch=8, steps=400,
                   eval_windows=128, ckpt_every=100)
QUICK = dict(max_stories=2000, val_stories=300, vocab=512, tok_mb=1.0, layers=2, d_model=64,
             hidden=64, heads=2, ctx=64, batch=16, steps=300, eval_windows=32, sample_tokens=60)
PAPER_SCALE = dict(max_stories=0, val_stories=0, vocab=4096, ctx=256, batch=512, epochs=3.0,
                   eval_windows=0, ckpt_every=1000)


def get_args(argv=None):
    p = argparse.ArgumentParser(
        description="Small transformer on TinyStories with each GLU gate (SQS paper 4.2.2). "
                    "Defaults are the CPU configuration; --paper is the paper's scale, --quick a "
                    "classroom run. Data stages (download, tokenizer, pretokenize) skip finished work.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", help="where the TinyStories .txt files are (or get downloaded) and "
                   "the tokenizer and .bin files are written (default data/tinystories, "
                   "data/synthetic with --synthetic)")
    g.add_argument("--version", choices=("v1", "v2"),
                   help="v1 = TinyStories-{train,valid}.txt (the paper's 2.12M/22k stories), "
                        "v2 = the GPT-4-only TinyStoriesV2 files (default: v1, or v2 if only the "
                        "v2 files are in --data-dir)")
    g.add_argument("--synthetic", action="store_true",
                   help="offline stand-in: generate simple template stories (NOT TinyStories) "
                        "instead of downloading; for speed measurements and classrooms")
    g.add_argument("--synthetic-stories", type=int, default=30000,
                   help="training stories to generate with --synthetic (validation: a tenth)")
    g.add_argument("--max-stories", type=int, help="train on the first N training stories (0 = all); "
                   f"default {CPU_DEFAULT['max_stories']} (CPU), all with --paper")
    g.add_argument("--val-stories", type=int, help="use the first N validation stories (0 = all)")
    g.add_argument("--vocab", type=int, help="BPE vocabulary size incl. 256 bytes and <|endoftext|> "
                   "(default 4096)")
    g.add_argument("--keep-case", action="store_true", help="do not lowercase the text")
    g.add_argument("--tok-mb", type=float, default=10.0,
                   help="train the tokenizer on the first this-many MB of training text")
    g.add_argument("--prepare-only", action="store_true",
                   help="stop after download/tokenizer/pretokenize (run this once before torchrun)")
    g = p.add_argument_group("model")
    g.add_argument("--layers", type=int, default=4)
    g.add_argument("--d-model", type=int, default=128)
    g.add_argument("--hidden", type=int, default=128, help="GLU hidden width (the paper's 128)")
    g.add_argument("--match-params", action="store_true",
                   help="GLU hidden = round(8 d/3): as many MLP parameters as a plain 4d MLP")
    g.add_argument("--heads", type=int, default=4)
    g.add_argument("--ctx", type=int, help="context length in tokens (default 256)")
    g.add_argument("--norm", choices=("rmsnorm", "layernorm"), default="rmsnorm",
                   help="pre-norm type in every block and before the output head")
    g.add_argument("--no-tie", action="store_true", help="separate output head (default: tied to "
                   "the token embedding)")
    g = p.add_argument_group("training")
    g.add_argument("--acts", default="relu,gelu,swiglu,bilinear,sqs",
                   help="GLU gates to compare: " + activations.act_choices())
    g.add_argument("--seeds", type=int, default=1, help="train seeds 0..N-1 per gate, table = mean")
    g.add_argument("--steps", type=int, help=f"optimizer steps (default {CPU_DEFAULT['steps']})")
    g.add_argument("--epochs", type=float, help="instead of --steps: passes over the training tokens "
                   "(--paper: 3)")
    g.add_argument("--batch", type=int, help="global batch in sequences (split over DDP ranks); "
                   f"default {CPU_DEFAULT['batch']}, --paper 512")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay (matrices and embeddings)")
    g.add_argument("--warmup", type=int, default=0, help="linear warm-up steps before the cosine")
    g.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0 = off)")
    g.add_argument("--eval-windows", type=int, help="validation windows of --ctx tokens, evenly "
                   "spread over the validation tokens (0 = all)")
    g.add_argument("--ckpt-every", type=int, help="checkpoint every N steps (and at the end)")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out; "
                   "finished models are only sampled again")
    g.add_argument("--stop-at", type=int, default=0,
                   help="stop after this step leaving a checkpoint (simulates an interruption)")
    g = p.add_argument_group("sampling")
    g.add_argument("--prompt", default="once upon a time")
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=40, help="0 = no top-k cut")
    g.add_argument("--sample-tokens", type=int, default=200)
    g.add_argument("--sample-seed", type=int, default=0)
    g = p.add_argument_group("run")
    g.add_argument("--out", default="out/train_tinystories")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    g.add_argument("--quick", action="store_true", help="classroom-sized run: " + str(QUICK))
    g.add_argument("--paper", action="store_true", help="paper scale: " + str(PAPER_SCALE))
    args = p.parse_args(argv)
    if args.quick and args.paper:
        p.error("--quick and --paper exclude each other")
    preset = PAPER_SCALE if args.paper else (QUICK if args.quick else CPU_DEFAULT)
    explicit = p.parse_args(argv, namespace=argparse.Namespace(**{k: None for k in vars(args)}))
    for k, v in preset.items():   # fill in only what the user did not set
        if getattr(explicit, k) is None:
            setattr(args, k, v)
    for k, v in dict(vocab=4096, ctx=256, val_stories=0, steps=CPU_DEFAULT["steps"]).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.epochs is not None and explicit.steps is not None and not args.paper:
        p.error("give --steps or --epochs, not both")
    if explicit.steps is not None:
        args.epochs = None
    try:
        args.act_list = activations.parse_acts(args.acts)
    except ValueError as e:
        p.error(str(e))
    if not 258 <= args.vocab <= 65535:
        p.error("--vocab must be in 258..65535 (256 bytes + <|endoftext|> + merges; uint16 files)")
    if args.d_model % args.heads:
        p.error(f"--d-model {args.d_model} is not divisible by --heads {args.heads}")
    if args.synthetic and args.version:
        p.error("--synthetic and --version exclude each other")
    if args.data_dir is None:
        args.data_dir = "data/synthetic" if args.synthetic else "data/tinystories"
    if args.synthetic:
        args.version = "synthetic"
    elif args.version is None:   # v1 unless only the v2 files are there
        have = lambda v: all(os.path.exists(os.path.join(args.data_dir, f)) for f in FILES[v])
        args.version = "v2" if have("v2") and not have("v1") else "v1"
    if args.match_params:
        args.hidden = round(8 * args.d_model / 3)
    for k in ("layers", "d_model", "hidden", "heads", "ctx", "batch", "seeds", "sample_tokens"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if (args.steps or 0) < 1 and args.epochs is None:
        p.error("--steps must be >= 1")
    return args


def pick_device(name):
    """'auto' -> cuda > mps > cpu; asking for a device this machine lacks is a one-line error."""
    there = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if there[d])
    if not there[name]:
        sys.exit(f"error: --device {name} is not available on this machine (try --device auto)")
    return name


def log(*a):
    if int(os.environ.get("RANK", 0)) == 0:
        print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# Stage 1: the TinyStories text files (find, or download with a progress bar)
# ------------------------------------------------------------------------------------------------
def download(url, path, timeout=30):
    """Stream `url` to `path`. Bytes go to path + '.part' first; a re-run resumes it with an HTTP
    Range request, and only a complete file is renamed to `path`, so a cut-off download is never
    mistaken for data. A server that ignores Range (status 200) makes us start over."""
    part = path + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:      # range past the end: the partial file is corrupt
            os.remove(part)
            return download(url, path, timeout)
        raise
    with resp:
        if resp.status != 206:
            have = 0
        total = None if resp.length is None else resp.length + have
        with open(part, "ab" if have else "wb") as f, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True,
                     desc=os.path.basename(path), disable=None) as bar:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and os.path.getsize(part) != total:
        raise OSError(f"download stopped at {os.path.getsize(part)} of {total} bytes")
    os.replace(part, path)


def text_files(args):
    """Paths of the train and valid text files, downloading any that are missing."""
    if args.version == "synthetic":
        return write_synthetic(args.data_dir, args.synthetic_stories)
    paths = []
    for name in FILES[args.version]:
        path = os.path.join(args.data_dir, name)
        if not os.path.exists(path):
            url = f"{HF_BASE}/{name}"
            log(f"{path} not found: downloading {url}")
            try:
                os.makedirs(args.data_dir, exist_ok=True)
                download(url, path)
            except (OSError, ValueError, http.client.HTTPException) as e:  # URLError, timeouts, cut
                want = "\n".join(f"  {n}  ({SIZES[n]:,} bytes)  {HF_BASE}/{n}"
                                 for n in FILES[args.version])
                sys.exit(f"error: could not download {url}: {getattr(e, 'reason', e)}\n"
                         f"TinyStories is not in {os.path.abspath(args.data_dir)}. Download these "
                         f"files elsewhere and put them there (or pass --data-dir DIR):\n{want}\n"
                         "(a partial download is kept as <name>.part and resumed on the next run; "
                         "--synthetic runs offline on a stand-in corpus that is NOT TinyStories)")
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# Stage 1 offline: a synthetic stand-in corpus (--synthetic). NOT TinyStories.
# ------------------------------------------------------------------------------------------------
# Simple stories from a small grammar: a character (a common name, or one made of random syllables
# so that the word list has a long tail as real text does), a pet, a place, a wish, a few events
# with dialogue, a problem solved with help, an ending. Mixed case (so lowercasing matters), curly
# apostrophes and a few accented words (so the UTF-8 paths are used). Its statistics are far
# simpler than TinyStories': losses on it are much lower and say nothing about the paper.
NAMES = ("lily tom ben mia max sue anna sam lucy jack emma leo zoe tim kate noah ella finn amy "
         "jake rosa oscar ruby theo nina hugo ivy omar lena").split()
SYLLABLES = "ba be bo da di do ka ki ko la li lo ma mi mo na ni no pa pi ra ri ro sa si ta ti to va zu".split()
WORDS = dict(
    animal="cat dog bird frog fish bunny duck puppy kitten bear fox mouse owl turtle horse pig cow "
           "lion monkey squirrel bee butterfly sheep goat".split(),
    adj="big small red blue green happy sad shiny old new soft tall little funny brave kind quiet "
        "loud yellow pink warm cold sleepy curious gentle bright".split(),
    place="park garden forest beach house school farm river hill town yard lake kitchen room "
          "castle zoo meadow store café playground".split(),
    thing="ball kite cake box tree toy car boat book hat flower rock stick apple cookie drum "
          "balloon blanket shell crayon puzzle swing train doll".split(),
    feel="happy sad scared excited proud angry surprised tired sorry glad".split(),
    act="play run jump dance sing swim climb read paint build hide look explore share bake "
        "draw fly laugh".split(),
    weather="sunny rainy windy snowy cloudy".split(),
    helper="mom dad grandma grandpa friend teacher neighbor sister brother".split())


def synthetic_story(rng):
    w = lambda k: rng.choice(WORDS[k])
    made_up = lambda: "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).title()
    name = made_up() if rng.random() < 0.3 else rng.choice(NAMES)   # made-up: rare words
    name, pet, place, thing, thing2 = name.title(), w("animal"), w("place"), w("thing"), w("thing")
    s = [rng.choice([f"Once upon a time, there was a {w('adj')} {pet} named {name}.",
                     f"Once upon a time, in a {w('adj')} {place}, there lived a little {pet} called {name}.",
                     f"One {w('weather')} day, {name} the {pet} went to the {place}.",
                     f"There once was a {w('adj')} girl named {name}. She had a {w('adj')} {pet}."])]
    s.append(f"{name} loved to {w('act')} with a {w('adj')} {thing}.")
    for _ in range(rng.randint(4, 12)):
        s.append(rng.choice([
            f"{name} met a {w('adj')} {w('animal')} named {made_up()}.",
            f"One day, {name} saw a {w('adj')} {thing2} near the {w('place')}.",
            f"\"Look at the {thing2}!\" said {name}. \"It is so {w('adj')}!\"",
            f"{name} felt {w('feel')} and wanted to {w('act')}.",
            f"The {w('animal')} said, \"Can I {w('act')} with you?\" {name} said, \"Yes, let’s {w('act')}!\"",
            f"They went to the {w('place')} to {w('act')} and {w('act')}.",
            f"But then the {thing} fell into the {w('place')}, and {name} was {w('feel')}.",
            f"{name}’s {w('helper')} came to help. Together they found the {thing}.",
            f"The sky was {w('weather')}, so they had a {w('adj')} picnic with a {w('thing')}.",
            f"{name} gave the {thing2} to the {w('adj')} {w('animal')}, who was very {w('feel')}.",
            f"\"Thank you,\" said the {w('animal')}. \"You are a good friend, {name}.\""]))
    s.append(rng.choice([f"From that day on, {name} and the {pet} played every day.",
                         f"{name} learned that sharing makes everyone {w('feel')}.",
                         f"At the end of the day, {name} went home, {w('feel')} and {w('adj')}.",
                         "They all lived happily ever after. The end."]))
    return " ".join(s)


def write_synthetic(data_dir, n_train, seed=1234):
    """Write synthetic-{train,valid}.txt (n_train and n_train // 10 stories) in TinyStories' file
    format, once (a finished file is kept). Deterministic for a seed."""
    os.makedirs(data_dir, exist_ok=True)
    paths = []
    for name, n, sd in zip(FILES["synthetic"], (n_train, max(10, n_train // 10)), (seed, seed + 1)):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            rng = random.Random(sd)
            write(path, f"\n{EOT}\n".join(synthetic_story(rng) for _ in range(n)) + "\n")
            log(f"wrote {path}: {n:,} synthetic stories (a stand-in, NOT TinyStories)")
        paths.append(path)
    return paths


def read_stories(path, limit=0, stats=None):
    """Yield the stories of a TinyStories file one by one (streamed: the train file is ~2 GB).
    Malformed UTF-8 is replaced (U+FFFD) and counted, empty stories are dropped and counted."""
    stats = Counter() if stats is None else stats
    sep = EOT.encode()
    rest = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 24)
            pieces = (rest + chunk).split(sep)
            rest = pieces.pop() if chunk else b""
            for raw in pieces:
                try:
                    text = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", errors="replace").strip()
                    stats["malformed_utf8"] += 1
                if not text:
                    stats["empty"] += 1
                    continue
                stats["stories"] += 1
                yield text
                if limit and stats["stories"] >= limit:
                    return
            if not chunk:
                return


# ------------------------------------------------------------------------------------------------
# Stage 2: byte-level BPE, from scratch
# ------------------------------------------------------------------------------------------------
# Text is first pre-split into "words" (GPT-2's idea): letters with an optional leading space,
# digits, punctuation runs, whitespace. Merges never cross a word boundary, so BPE only has to look
# at each *distinct* word once, weighted by how often it occurs. Python's `re` has no \p{L}, so
# letters are [^\W\d_] (word characters minus digits and underscore). The alternatives cover every
# character (whitespace, \w = letters | digits | _, and the rest), so the pieces concatenate back to
# the text and decode(encode(t)) == t exactly.
PAT = re.compile(r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+""")


def merge(ids, pair, new):
    """Replace every non-overlapping occurrence of `pair` in `ids`, left to right, by `new`."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(texts, vocab_size, lowercase=True):
    """Learn vocab_size - 257 merges. Ties in pair count go to the smallest (id, id) pair, so the
    merges are a deterministic function of the text.

    Cost: counting words is one regex pass. Each merge then only touches the words that contain the
    merged pair (an index pair -> words), updating pair counts incrementally, and a heap with lazy
    deletion finds the most frequent pair -- instead of recounting all pairs for every merge."""
    words = Counter()
    for t in texts:
        words.update(PAT.findall(t.lower() if lowercase else t))
    seqs, freqs = [list(w.encode()) for w in words], list(words.values())
    count, where = defaultdict(int), defaultdict(set)
    for i, (s, f) in enumerate(zip(seqs, freqs)):
        for pair in zip(s, s[1:]):
            count[pair] += f
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in count.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < vocab_size - 257 and heap:
        c, pair = heapq.heappop(heap)
        if count.get(pair, 0) != -c or c == 0:
            continue            # stale heap entry: this pair's count changed since it was pushed
        new, touched = 257 + len(merges), set()
        merges.append(pair)
        for i in where.pop(pair):
            s, f = seqs[i], freqs[i]
            for q in zip(s, s[1:]):
                count[q] -= f
                touched.add(q)
            s = seqs[i] = merge(s, pair, new)
            for q in zip(s, s[1:]):
                count[q] += f
                where[q].add(i)
                touched.add(q)
        del count[pair]
        for q in touched:
            if count.get(q, 0) > 0:
                heapq.heappush(heap, (-count[q], q))
    tok = Tokenizer(merges, lowercase)
    tok.trained_on = dict(words=sum(freqs), distinct=len(freqs))
    return tok


class Tokenizer:
    """ids 0..255 = bytes, 256 = <|endoftext|>, 257.. = merges in the order they were learned."""

    def __init__(self, merges, lowercase=True):
        self.merges, self.lowercase = [tuple(m) for m in merges], lowercase
        self.rank = {pair: 257 + i for i, pair in enumerate(self.merges)}
        self.vocab = [bytes([i]) for i in range(256)] + [EOT.encode()]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.cache = {}

    def encode_word(self, word):
        # Apply the earliest-learned merge present, then repeat: the same order training used.
        ids = list(word.encode())
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda q: self.rank.get(q, math.inf))
            if pair not in self.rank:
                break
            ids = merge(ids, pair, self.rank[pair])
        return ids

    def encode(self, text):
        out = []
        for w in PAT.findall(text.lower() if self.lowercase else text):
            ids = self.cache.get(w)
            if ids is None:
                ids = self.cache[w] = self.encode_word(w)
            out.extend(ids)
        return out

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def save(self, path):
        with open(path + ".tmp", "w") as f:
            json.dump({"vocab_size": len(self.vocab), "lowercase": self.lowercase,
                       "pattern": PAT.pattern, "merges": self.merges}, f)
        os.replace(path + ".tmp", path)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            d = json.load(f)
        return cls(d["merges"], d["lowercase"])


# ------------------------------------------------------------------------------------------------
# Stage 3: pretokenize once into uint16 memmaps; every story starts with <|endoftext|>
# ------------------------------------------------------------------------------------------------
def pretokenize(tok, src, dst, limit):
    stats, n, t0 = Counter(), 0, time.time()
    with open(dst + ".tmp", "wb") as f:
        buf = []
        for story in tqdm(read_stories(src, limit, stats), total=limit or None, unit=" stories",
                          desc=f"pretokenize {os.path.basename(src)}", disable=None, mininterval=2):
            buf.append(EOT_ID)
            buf.extend(tok.encode(story))
            if len(buf) > 1 << 20:
                f.write(np.array(buf, dtype=np.uint16).tobytes())
                n, buf = n + len(buf), []
        f.write(np.array(buf, dtype=np.uint16).tobytes())
        n += len(buf)
    os.replace(dst + ".tmp", dst)
    log(f"{src}: {stats['stories']:,} stories -> {n:,} tokens in {dst} (dropped "
        f"{stats['empty']} empty; {stats['malformed_utf8']} with malformed UTF-8, replaced) "
        f"in {time.time() - t0:.1f} s")


def prepare(args):
    """Stages 1-3, each skipped when its output exists. Returns (tokenizer, train path, val path)."""
    # file names keyed by vocab size (and case, and the corpus unless it is TinyStories v1)
    key = f"tok{args.vocab}" + ("_cased" if args.keep_case else "") + \
        ("" if args.version == "v1" else f"_{args.version}")
    tok_path = os.path.join(args.data_dir, f"{key}.json")
    bins = [os.path.join(args.data_dir, f"{key}_{split}_{n or 'all'}.bin")
            for split, n in (("train", args.max_stories), ("valid", args.val_stories))]
    stale = lambda b: not os.path.exists(b) or os.path.getmtime(b) < os.path.getmtime(tok_path)
    if not os.path.exists(tok_path) or any(map(stale, bins)):
        train_txt, valid_txt = text_files(args)
        if not os.path.exists(tok_path):
            t0, texts, size = time.time(), [], 0
            for s in read_stories(train_txt):
                texts.append(s)
                size += len(s.encode())
                if size >= args.tok_mb * 1e6:
                    break
            tok = train_bpe(texts, args.vocab, lowercase=not args.keep_case)
            tok.save(tok_path)
            log(f"tokenizer: {len(tok.vocab)} tokens learned from {size / 1e6:.1f} MB "
                f"({len(texts):,} stories, {tok.trained_on['words']:,} words, "
                f"{tok.trained_on['distinct']:,} distinct) in {time.time() - t0:.1f} s -> {tok_path}")
        tok = Tokenizer.load(tok_path)
        for src, dst, n in zip((train_txt, valid_txt), bins, (args.max_stories, args.val_stories)):
            if stale(dst):
                pretokenize(tok, src, dst, n)
    return Tokenizer.load(tok_path), bins[0], bins[1]


# ------------------------------------------------------------------------------------------------
# The model: pre-norm decoder-only transformer whose MLP is a GLU with a registry gate
# ------------------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)   # softmax(qk^T/sqrt(dh) + mask) v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class GLU(nn.Module):
    """out(act(W_g x) * (W_v x)), no biases (as in [SQS]). With act = identity this is the bilinear
    layer of [BIL]; activations.glu runs sqs/gensilu as a fused Triton kernel on CUDA."""

    def __init__(self, d, hidden, act):
        super().__init__()
        self.act = act
        self.gate, self.value = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        self.out = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.out(activations.glu(self.gate(x), self.value(x), self.act))


class Block(nn.Module):
    def __init__(self, d, heads, hidden, act, norm):
        super().__init__()
        Norm = nn.RMSNorm if norm == "rmsnorm" else nn.LayerNorm
        self.n1, self.attn, self.n2, self.mlp = Norm(d), Attention(d, heads), Norm(d), GLU(d, hidden, act)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.mlp(self.n2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads, hidden, act, norm="rmsnorm", tie=True):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)   # learned positions
        self.blocks = nn.ModuleList(Block(d, heads, hidden, act, norm) for _ in range(layers))
        self.norm = nn.RMSNorm(d) if norm == "rmsnorm" else nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.head.weight = self.tok.weight
        for name, p in self.named_parameters():   # GPT-2 init; residual outputs shrunk by sqrt(2L)
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


# ------------------------------------------------------------------------------------------------
# Batches, evaluation, sampling
# ------------------------------------------------------------------------------------------------
def get_batch(data, step, seed, batch, ctx, rank=0, world=1):
    """Random windows of the token stream. The *global* batch depends only on (seed, step), so a
    resumed run sees the same batches, every gate sees the same text, and DDP rank r takes rows
    r*B/W .. (r+1)*B/W of exactly the batch a single process would use."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(len(data) - ctx - 1, (batch,), generator=g)
    per = batch // world
    starts = starts[rank * per:(rank + 1) * per].tolist()
    x = torch.from_numpy(np.stack([data[s:s + ctx] for s in starts]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[s + 1:s + 1 + ctx] for s in starts]).astype(np.int64))
    return x, y


def autocast(device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=str(device).startswith("cuda"))


@torch.no_grad()
def evaluate(model, val, ctx, windows, batch, device, rank=0, world=1):
    """Mean next-token loss over fixed windows evenly spread over the validation tokens (the same
    windows for every gate and every checkpoint); perplexity = exp(loss)."""
    n = (len(val) - 1) // ctx
    starts = np.linspace(0, len(val) - ctx - 1, windows if windows and windows < n else n).astype(np.int64)
    starts = starts[rank::world]
    total = torch.zeros(2, dtype=torch.float64, device=device)
    model.eval()
    for i in range(0, len(starts), batch):
        s = starts[i:i + batch]
        x = torch.from_numpy(np.stack([val[a:a + ctx] for a in s]).astype(np.int64)).to(device)
        y = torch.from_numpy(np.stack([val[a + 1:a + 1 + ctx] for a in s]).astype(np.int64)).to(device)
        with autocast(device):
            logits = model(x)
        total[0] += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").double()
        total[1] += y.numel()
    model.train()
    if world > 1:
        dist.all_reduce(total)
    return (total[0] / total[1]).item()


@torch.no_grad()
def sample(model, tok, prompt, n, temperature, top_k, seed, ctx, device):
    """Continue <|endoftext|> + prompt token by token; same seed -> same text."""
    g = torch.Generator().manual_seed(seed)
    ids = [EOT_ID] + tok.encode(prompt)
    model.eval()
    for _ in range(n):
        logits = model(torch.tensor([ids[-ctx:]], device=device))[0, -1].float().cpu()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = -math.inf
            nxt = int(torch.multinomial(F.softmax(logits, -1), 1, generator=g))
        if nxt == EOT_ID:   # the model ended the story
            break
        ids.append(nxt)
    model.train()
    return tok.decode(ids[1:])


# ------------------------------------------------------------------------------------------------
# Training one model (one gate, one seed), with checkpoints and DDP
# ------------------------------------------------------------------------------------------------
def lr_at(step, args, steps):
    """Linear warm-up, then cosine annealing from lr to 0 over the remaining steps."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, steps - args.warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * t))


def slug(act):
    return re.sub(r"[^A-Za-z0-9.]+", "_", act.spec)


def build(args, act, vocab, device):
    return TinyLM(vocab, args.ctx, args.d_model, args.layers, args.heads, args.hidden, act,
                  args.norm, not args.no_tie).to(device)


def train_one(args, act, seed, vocab, train, val, steps, device, rank, world):
    torch.manual_seed(seed)    # same init for every gate (all gates have the same shapes)
    model = build(args, act, vocab, device)
    decay = [p for p in model.parameters() if p.dim() >= 2]     # matrices and embeddings
    rest = [p for p in model.parameters() if p.dim() < 2]       # norm gains
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    ckpt = os.path.join(args.out, f"ckpt_{slug(act)}_s{seed}.pt")
    state = dict(step=0, train_loss=[], val={}, seconds=0.0, tokens=0, diverged=False)
    # everything that shapes the loss trajectory; a resumed run must agree on all of it
    config = dict(vocab=vocab, steps=steps, train_tokens=len(train), val_tokens=len(val),
                  **{k: getattr(args, k) for k in ("layers", "d_model", "hidden", "heads", "ctx",
                     "norm", "no_tie", "batch", "lr", "wd", "warmup", "clip", "eval_windows")})
    if args.resume and os.path.exists(ckpt):
        c = torch.load(ckpt, map_location=device, weights_only=True)
        old = json.loads(c.get("config", "{}"))
        diff = [f"{k} {old.get(k)} -> {v}" for k, v in config.items() if old.get(k) != v]
        if diff:
            sys.exit(f"error: --resume: {ckpt} was made with other settings ({', '.join(diff)}); "
                     "repeat the original flags or use a new --out")
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        state = json.loads(c["state"])
        log(f"[{act.spec} seed {seed}] resumed at step {state['step']}/{steps}")
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    marks = {max(1, round(f * steps)): f for f in MARKS}

    def save():
        if rank == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "state": json.dumps(state), "config": json.dumps(config)}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)

    t0 = time.time()
    for step in range(state["step"], steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args, steps)
        x, y = get_batch(train, step, seed, args.batch, args.ctx, rank, world)
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = net(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()                 # under DDP: gradients averaged over ranks here
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        loss = loss.detach()
        if world > 1:                   # log the global-batch loss, identical on every rank
            dist.all_reduce(loss)
            loss = loss / world
        state["train_loss"].append(loss.item())
        state["step"] = step + 1
        state["tokens"] += args.batch * args.ctx
        if not math.isfinite(state["train_loss"][-1]):
            state["diverged"] = True
            log(f"[{act.spec} seed {seed}] diverged at step {step + 1} (loss not finite)")
            break
        if step + 1 in marks:
            state["seconds"] += time.time() - t0
            v = evaluate(model, val, args.ctx, args.eval_windows, args.batch, device, rank, world)
            state["val"][str(marks[step + 1])] = v
            log(f"[{act.spec} seed {seed}] step {step + 1:6d}/{steps} ({marks[step + 1]:.0%})  "
                f"train {state['train_loss'][-1]:.4f}  val {v:.4f}  ppl {math.exp(v):8.3f}  "
                f"{state['tokens'] / max(state['seconds'], 1e-9):,.0f} tok/s")
            t0 = time.time()
        if step + 1 == args.stop_at or (args.ckpt_every and (step + 1) % args.ckpt_every == 0) \
                or step + 1 == steps:
            state["seconds"] += time.time() - t0
            save()
            t0 = time.time()
        if step + 1 == args.stop_at:
            log(f"[{act.spec} seed {seed}] stopped at step {step + 1} (--stop-at); --resume continues")
            break
    state["seconds"] += time.time() - t0
    if state["diverged"]:
        save()
    return model, state


# ------------------------------------------------------------------------------------------------
# Table, samples, figure
# ------------------------------------------------------------------------------------------------
def fmt(v, digits=4):
    """'-' = not evaluated (fewer steps than marks), 'diverged' = NaN/inf."""
    return "-" if v is None else ("diverged" if not math.isfinite(v) else f"{v:.{digits}f}")


def table(results, args, data_note):
    head = ("| Activation | " + " | ".join(f"{int(m * 100)}% loss | {int(m * 100)}% ppl" for m in MARKS)
            + " | tok/s |\n|---" + "|---:" * (2 * len(MARKS) + 1) + "|\n")
    rows = []
    for spec, r in results.items():
        cells = []
        for m in MARKS:
            v = r["val"].get(str(m))
            cells += [fmt(v), fmt(math.exp(v), 3) if v is not None and math.isfinite(v) else "-"]
        label = f"{PAPER[r['name']][0]} = {spec}" if r["name"] in PAPER else spec
        rows.append(f"| {label} (this run) | " + " | ".join(cells) + f" | {r['tok_s']:,.0f} |")
        if r["name"] in PAPER:
            label, nums = PAPER[r["name"]]
            rows.append(f"| {label} (paper) | " + " | ".join(f"{a:.4f} | {b:.4f}" for a, b in nums)
                        + " | - |")
    done = {s: r["val"]["1.0"] for s, r in results.items() if "1.0" in r["val"] and math.isfinite(r["val"]["1.0"])}
    ours = " < ".join(sorted(done, key=done.get))
    paper = " < ".join(PAPER[n][0] for n in sorted(PAPER, key=lambda n: PAPER[n][1][3][0]))
    warn = ("**SYNTHETIC STAND-IN CORPUS (--synthetic), NOT TinyStories: the 'this run' rows "
            "cannot be compared with the paper rows at all; they only show that the pipeline "
            "works and how fast.**\n" if args.version == "synthetic" else "")
    return (warn + f"Validation loss / perplexity at 25/50/75/100 % of training ({data_note}).\n"
            "Paper rows: Table 1 of arXiv:2509.01874 (full TinyStories, their tokenizer and split, "
            "batch 512, 3 epochs) -- NOT directly comparable: a different tokenizer changes what a "
            "token is (loss per token), the validation text differs, and this run's scale differs; "
            "our perplexity is exp(loss), the paper's is 12-14 % above exp(its loss).\n\n"
            + head + "\n".join(rows) + "\n\n"
            f"Final val loss, lowest first -- this run: {ours or '(none finished)'}; paper: {paper}\n")


def figure(results, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for spec, r in results.items():
        tl = np.array(r["train_loss"])
        k = max(1, len(tl) // 50)
        sm = np.convolve(tl, np.ones(k) / k, mode="valid")
        line, = ax.plot(np.arange(len(sm)) + k, sm, lw=1, label=f"{spec} train")
        xs = [round(float(m) * r["steps"]) for m in r["val"]]
        ax.plot(xs, list(r["val"].values()), "o--", color=line.get_color(), ms=4)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token); dots = validation")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=100)
    os.replace(path + ".tmp.png", path)
    plt.close(fig)


def write(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None):
    args = get_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(args.device)
    if world > 1:
        if args.batch % world:
            sys.exit(f"error: --batch {args.batch} is not divisible by {world} ranks")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        import datetime
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=datetime.timedelta(hours=3))
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        os.makedirs(args.out, exist_ok=True)
        probe = os.path.join(args.out, f".writable.{os.getpid()}")   # one per DDP rank
        write(probe, "")
        os.remove(probe)
    except OSError as e:
        sys.exit(f"error: output directory {args.out} is not writable: {e}")

    # ---- data (rank 0 prepares, the others wait) ----
    t_start = time.time()
    if rank == 0:
        tok, train_bin, val_bin = prepare(args)
    if world > 1:
        dist.barrier()
        if rank:
            tok, train_bin, val_bin = prepare(args)   # now only loads
    if args.prepare_only:
        return
    train, val = np.memmap(train_bin, np.uint16, mode="r"), np.memmap(val_bin, np.uint16, mode="r")
    for name, d in ((train_bin, train), (val_bin, val)):
        if len(d) < args.ctx + 2:
            sys.exit(f"error: {name} has only {len(d)} tokens, fewer than --ctx {args.ctx} + 2")
    vocab = len(tok.vocab)
    steps = args.steps if args.epochs is None else max(1, math.ceil(args.epochs * len(train) / (args.batch * args.ctx)))
    n_params = sum(p.numel() for p in build(args, args.act_list[0], vocab, "cpu").parameters())
    data_note = (f"{train_bin}: {len(train):,} train tokens, {len(val):,} val tokens, "
                 f"vocab {vocab}; {args.layers} layers, d {args.d_model}, GLU hidden {args.hidden}, "
                 f"ctx {args.ctx}, batch {args.batch}, {steps} steps "
                 f"({steps * args.batch * args.ctx / len(train):.2f} epochs), {n_params:,} params, "
                 f"{world} process(es) on {device}")
    log(data_note)
    t_data = time.time() - t_start

    results = {}
    for act in args.act_list:
        runs = []
        for seed in range(args.seeds):
            model, st = train_one(args, act, seed, vocab, train, val, steps, device, rank, world)
            runs.append(st)
        if any(st["step"] < steps and not st["diverged"] for st in runs):
            continue                            # interrupted with --stop-at
        val_mean = {}                           # mean over seeds; NaN marks a diverged seed
        for m in MARKS:
            vs = [st["val"].get(str(m)) for st in runs]
            if all(v is not None for v in vs) or any(st["diverged"] for st in runs):
                val_mean[str(m)] = float(np.mean([math.nan if v is None else v for v in vs]))
        text = "" if runs[-1]["diverged"] or rank else sample(
            model, tok, args.prompt, args.sample_tokens, args.temperature, args.top_k,
            args.sample_seed, args.ctx, device)
        results[act.spec] = dict(name=act.name, val=val_mean, steps=steps, sample=text,
                                 tok_s=float(np.mean([st["tokens"] / max(st["seconds"], 1e-9) for st in runs])),
                                 train_loss=runs[0]["train_loss"], runs=runs)
    wall = dict(data=t_data, train=time.time() - t_start - t_data)   # train includes evals, samples
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank or not results:
        return
    out = args.out
    write(os.path.join(out, "results.json"), json.dumps(dict(config={k: v for k, v in vars(args).items()
                                                                    if k != "act_list"},
                                                            steps=steps, world=world, wall_seconds=wall,
                                                            results=results), indent=1))
    tab = table(results, args, data_note)
    write(os.path.join(out, "table.md"), tab)
    samples = ("**SYNTHETIC stand-in corpus, NOT TinyStories**\n\n" if args.version == "synthetic"
               else "") + "".join(f"### {s}\n(prompt {args.prompt!r}, temperature {args.temperature}, top-k "
                      f"{args.top_k}, seed {args.sample_seed})\n\n{r['sample'] or '(diverged)'}\n\n"
                      for s, r in results.items())
    write(os.path.join(out, "samples.md"), samples)
    figure(results, os.path.join(out, "loss.png"),
           ("SYNTHETIC stand-in corpus, NOT TinyStories" if args.version == "synthetic" else
            f"TinyStories {args.version}") + f": {args.layers} layers, d {args.d_model}, {steps} steps")
    print("\n" + tab + "\n" + samples + f"wrote {out}/table.md, samples.md, loss.png, results.json\n"
          f"wall time: data stages {wall['data']:.0f} s, training + evaluation + sampling of "
          f"{len(results)} gate(s) x {args.seeds} seed(s) {wall['train']:.0f} s")


if __name__ == "__main__":
    main()
