"""Tests for train_tinystories.py on a small TinyStories-format corpus written here (no network: the
download tests read a local file, or a local HTTP server on 127.0.0.1 for HTTP Range resumption).
Models are tiny (d 16, 2 layers, context 32)."""
import functools
import http.server
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import activations
import train_tinystories as ts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_tinystories.py")
TINY = ["--vocab", "300", "--stories", "0", "--val-stories", "0", "--layers", "2",
        "--d-model", "16", "--hidden", "16", "--heads", "2", "--ctx", "32", "--batch", "8",
        "--lr", "3e-3", "--warmup", "5", "--acts", "sqs", "--data-dir", "data"]
STEPS = 60


def make_stories(n, seed):
    rng = random.Random(seed)
    names, animals = ["lily", "tom", "sue", "ben", "mia"], ["cat", "dog", "bird", "frog", "fish"]
    feel, things = ["happy", "sad", "brave", "sleepy"], ["ball", "kite", "cake", "box", "tree"]
    stories = []
    for _ in range(n):
        start = (f"Once upon a time, there was a {rng.choice(feel)} {rng.choice(animals)} "
                 f"named {rng.choice(names)}.")
        middle = f" It liked the {rng.choice(things)}." * rng.randint(0, 6)
        stories.append(start + middle + " The end.")
    return stories


def run(args, cwd, launcher=()):
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return subprocess.run([sys.executable, *launcher, SCRIPT, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """TinyStories-format files (one empty story, one with malformed UTF-8) in data/, then the
    stages."""
    root = tmp_path_factory.mktemp("ts")
    (root / "data").mkdir()
    sep = b"\n<|endoftext|>\n"
    train = [s.encode() for s in make_stories(400, 0)]
    train[10:10] = [b"   ", b"a broken \xff\xfe story about caf\xc3\xa9"]
    (root / "data" / "TinyStories-train.txt").write_bytes(sep.join(train) + b"\n")
    valid = [s.encode() for s in make_stories(40, 1)]
    (root / "data" / "TinyStories-valid.txt").write_bytes(sep.join(valid))
    r = run(["--prepare-only", "--out", "out", *TINY], root)
    assert r.returncode == 0, r.stderr
    return root, r.stdout


@pytest.fixture(scope="module")
def full_run(prepared):
    root, _ = prepared
    r = run(["--out", "out_full", "--steps", str(STEPS), *TINY], root)
    assert r.returncode == 0, r.stderr
    return root, json.load(open(root / "out_full" / "results.json"))["results"]["sqs:0.01,0.5,1"]


def test_prepare_stages_and_skip(prepared, capsys, monkeypatch):
    root, out = prepared
    assert "401 stories" in out and "dropped 1 empty; 1 with malformed UTF-8" in out, out
    monkeypatch.chdir(root)
    ts.prepare(ts.get_args(TINY))                                   # everything is there now
    assert capsys.readouterr().out.count("is there, skipped") == 5


def test_memmap_matches_direct_encoding(prepared):
    root, _ = prepared
    tok = ts.Tokenizer(json.load(open(root / "data" / "tok300.json"))["merges"])
    for split in ("train", "valid"):
        want = []
        for s in ts.read_stories(str(root / "data" / f"TinyStories-{split}.txt")):
            want += [ts.EOT_ID] + tok.encode(s)
        got = np.memmap(root / "data" / f"tok300_{split}_all.bin", np.uint16, mode="r")
        assert got.tolist() == want + [ts.EOT_ID] and max(want) < 300


def random_unicode(rng, n):
    pools = [range(32, 127), range(0xA0, 0x250), range(0x370, 0x400), range(0x4E00, 0x4E80),
             range(0x1F600, 0x1F650), range(0x300, 0x370), [9, 10, 13, 32, 0x2028, 0x3000, 0x5F]]
    return "".join(chr(rng.choice(rng.choice(pools))) for _ in range(n))


def test_bpe_round_trip_is_lowercase_and_vocab_size():
    stories = make_stories(300, 2)
    tok = ts.train_bpe(stories, 300)
    assert len(tok.vocab) == 300 and len(tok.merges) == 300 - 257
    rng = random.Random(0)
    for _ in range(200):
        t = random_unicode(rng, rng.randint(0, 40)) + " Once upon a Time ÉÑ"
        ids = tok.encode(t)
        assert tok.decode(ids) == t.lower() and all(0 <= i < 300 for i in ids)
    assert tok.decode(tok.encode("Once upon a Time")) == "once upon a time"   # the case is lost
    assert len(tok.encode(stories[0])) < len(stories[0].encode()) / 1.5   # merges compress the text


def plain_merge(ids, pair, new):
    """Replace each non-overlapping occurrence of pair, scanning left to right, by new."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_bpe(texts, vocab_size):
    """Reference: recount every pair of every word before each merge (slow, obviously right)."""
    words = Counter(w for t in texts for w in ts.PAT.findall(t.lower()))
    seqs, merges = {w: list(w.encode()) for w in words}, []
    while len(merges) < vocab_size - 257:
        count = Counter()
        for w, s in seqs.items():
            for q in zip(s, s[1:]):
                count[q] += words[w]
        if not count:
            break
        merges.append(min(count, key=lambda pair: (-count[pair], pair)))
        seqs = {w: plain_merge(s, merges[-1], 256 + len(merges)) for w, s in seqs.items()}
    return merges


def test_bpe_equal_to_naive():
    texts = make_stories(80, 3) + ["aaaa aaa a_b__c 123 4567 ñandú ñandú!!"]
    assert ts.train_bpe(texts, 330).merges == naive_bpe(texts, 330)


def test_encode_is_canonical(tmp_path):
    """encode equals the textbook segmentation: every merge applied once, in the order learned, on
    the stand-in corpus at vocab 600, where merge order matters (applying the latest merge first
    gives another segmentation for many words; the test checks that too)."""
    train_txt, valid_txt = ts.write_synthetic(str(tmp_path), 1000)
    tok = ts.train_bpe(list(ts.read_stories(train_txt)), 600)
    merges = [tuple(m) for m in tok.merges]
    new_id = {pair: 257 + i for i, pair in enumerate(merges)}

    def in_rank_order(word):
        ids = list(word.encode())
        for pair in merges:
            ids = plain_merge(ids, pair, new_id[pair])
        return ids

    def latest_first(word):                     # a plausible bug
        ids = list(word.encode())
        while True:
            present = [pair for pair in zip(ids, ids[1:]) if pair in new_id]
            if not present:
                return ids
            pair = max(present, key=new_id.get)
            ids = plain_merge(ids, pair, new_id[pair])

    texts = list(ts.read_stories(valid_txt))[:30] + ["Zorateli's 42 kites... flew__away"]
    differ = 0
    for text in texts:
        words = ts.PAT.findall(text.lower())
        want = [i for w in words for i in in_rank_order(w)]
        assert tok.encode(text) == want
        differ += sum(latest_first(w) != in_rank_order(w) for w in words)
    assert differ > 20                          # the corpus tells the two orders apart


def serve(directory, range_ok):
    class Handler(http.server.SimpleHTTPRequestHandler):     # static files; Range answered with 206
        def do_GET(self):
            path, rng = self.translate_path(self.path), self.headers.get("Range")
            if not (range_ok and rng):
                return super().do_GET()
            data, start = open(path, "rb").read(), int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *a):
            pass
    handler = functools.partial(Handler, directory=directory)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def test_download_resumes_and_verifies_size(tmp_path):
    blob = os.urandom(300_000)
    (tmp_path / "f.bin").write_bytes(blob)
    # a local file (file:// URL; no Range there, so a .part is replaced)
    dst = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(b"junk")
    ts.download((tmp_path / "f.bin").as_uri(), str(dst), len(blob))
    assert dst.read_bytes() == blob and not (tmp_path / "a.bin.part").exists()
    with pytest.raises(ValueError, match="expected 300,001"):  # wrong size: nothing is left behind
        ts.download((tmp_path / "f.bin").as_uri(), str(tmp_path / "b.bin"), len(blob) + 1)
    assert not any(p.name.startswith("b.bin") for p in tmp_path.iterdir())
    # HTTP Range: a partial download is continued (206), or started over if the server ignores Range
    for range_ok, prefix in ((True, blob[:123_456]), (False, b"junk that must go")):
        (tmp_path / "c.bin.part").write_bytes(prefix)
        srv, url = serve(str(tmp_path), range_ok)
        try:
            ts.download(url + "/f.bin", str(tmp_path / "c.bin"), len(blob))
        finally:
            srv.shutdown()
        assert (tmp_path / "c.bin").read_bytes() == blob
        os.remove(tmp_path / "c.bin")


def test_offline_gives_one_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as e:     # sys.exit(message): one line on stderr, no traceback
        ts.main(["--prepare-only", "--data-dir", str(tmp_path / "nodata"),
                 "--out", str(tmp_path / "out"),
                 "--url", f"http://127.0.0.1:{port}"])
    msg = str(e.value)
    assert msg.startswith("error: could not download") and "\n" not in msg
    assert "TinyStories-valid.txt (19,447,282 bytes)" in msg and str(tmp_path / "nodata") in msg
    assert os.listdir(tmp_path / "nodata") == []


def tiny_model(seed=0, act="sqs"):
    args = ts.get_args(TINY)
    torch.manual_seed(seed)
    return args, ts.build(args, activations.parse_act(act), 300)


def test_causal_mask():
    _, model = tiny_model()
    x = torch.randint(0, 300, (2, 32))
    for t in (0, 7, 30):
        y = x.clone()
        y[:, t + 1:] = torch.randint(0, 300, (2, 31 - t))
        assert torch.equal(model(x)[:, :t + 1], model(y)[:, :t + 1])
        assert not torch.allclose(model(x)[:, t + 1:], model(y)[:, t + 1:])


def test_rope_scores_depend_on_relative_position_only():
    _, model = tiny_model()
    Q = model.cos.shape[1]
    q, k = torch.randn(Q), torch.randn(Q)

    def at(v, t):                                # v rotated to position t
        return ts.rope(v, model.cos[t], model.sin[t])
    assert abs(at(q, 3) @ at(k, 1) - at(q, 25) @ at(k, 23)) < 1e-4
    assert abs(at(q, 3) @ at(k, 1) - at(q, 3) @ at(k, 2)) > 1e-3
    # against complex numbers: pair (a_i, b_i) = a_i + i b_i times exp(i t theta_i)
    theta = 10000.0 ** (-torch.arange(0, Q, 2, dtype=torch.float64) / Q)
    z = torch.complex(q[:Q // 2].double(), q[Q // 2:].double()) * torch.exp(1j * 17 * theta)
    assert torch.allclose(at(q, 17).double(), torch.cat([z.real, z.imag]), atol=1e-5)


def test_lr_schedule_endpoints():
    lr, warmup, steps = 1e-3, 50, 1050
    assert ts.lr_at(0, lr, warmup, steps) == pytest.approx(lr / 50)
    assert ts.lr_at(49, lr, warmup, steps) == pytest.approx(lr)
    assert ts.lr_at(50, lr, warmup, steps) == pytest.approx(lr)       # the cosine's peak
    assert ts.lr_at(550, lr, warmup, steps) == pytest.approx(lr / 2)     # half way
    last = lr * (1 - math.cos(math.pi / 1000)) / 2
    assert ts.lr_at(1049, lr, warmup, steps) == pytest.approx(last)
    assert ts.lr_at(1050, lr, warmup, steps) == pytest.approx(0, abs=1e-15)


def test_epoch_two_starts_with_a_fresh_shuffle():
    n, batch = 50, 8                            # 6 batches per epoch; 2 stories left out each epoch
    per_epoch = n // batch
    for seed in range(5):
        ts.epoch_order.cache_clear()
        epoch2_first = ts.batch_rows(n, batch, seed, per_epoch).tolist()   # asked first: no state
        epoch1 = [ts.batch_rows(n, batch, seed, s).tolist() for s in range(per_epoch)]
        steps2 = range(per_epoch, 2 * per_epoch)
        epoch2 = [ts.batch_rows(n, batch, seed, s).tolist() for s in steps2]
        assert epoch2[0] == epoch2_first
        seen1 = [i for rows in epoch1 for i in rows]
        seen2 = [i for rows in epoch2 for i in rows]
        assert len(set(seen1)) == len(set(seen2)) == per_epoch * batch    # no story twice an epoch
        assert all(len(rows) == batch for rows in epoch1 + epoch2)
        assert epoch2[0] != epoch1[0]           # not the same order again
        order1 = seen1 + sorted(set(range(n)) - set(seen1))
        wrapped = (order1 + order1)[per_epoch * batch:per_epoch * batch + batch]
        assert epoch2[0] != wrapped             # not epoch 1's order continued
        assert seen2 != seen1
    seed0 = ts.batch_rows(n, batch, 0, per_epoch).tolist()
    assert seed0 != ts.batch_rows(n, batch, 1, per_epoch).tolist()    # the seed matters


def test_evaluate_equals_per_story_masked_loss(prepared):
    """evaluate() against each validation story run alone, cut at the context, no padding: the sum
    of the next-token losses over all stories divided by the number of real targets."""
    root, _ = prepared
    args, model = tiny_model(3)
    path = root / "data" / "tok300_valid_all.bin"
    data = np.fromfile(path, np.uint16).astype(np.int64).tolist()
    eots = [i for i, t in enumerate(data) if t == ts.EOT_ID]
    total, n, lengths = 0.0, 0, []
    for a, b in zip(eots, eots[1:]):
        story = torch.tensor(data[a:b + 1][:33])   # <eot> story <eot>, cut to ctx + 1 tokens
        lengths.append(b - a)
        with torch.no_grad():
            total += F.cross_entropy(model(story[None, :-1])[0], story[1:], reduction="sum").item()
        n += len(story) - 1
    assert min(lengths) < 32 < max(lengths)      # some stories padded, some cut
    got = ts.evaluate(model, ts.load_stories(str(path)), 32, 8, "cpu")
    assert got == pytest.approx(total / n, rel=1e-5)


def test_lr_schedule_read_back_from_the_optimizer(full_run):
    """The learning rate each step used, as the optimizer holds it: a linear warm-up reaching the
    peak at its last step, then a cosine that would reach 0 one step after the last."""
    root, res = full_run
    peak, warmup = 3e-3, 5                      # TINY's --lr and --warmup
    assert len(res["lr"]) == STEPS
    assert res["lr"][0] == pytest.approx(peak / warmup)
    assert res["lr"][warmup - 1] == pytest.approx(peak)            # the end of the warm-up
    last = peak * (1 + math.cos(math.pi * (STEPS - 1 - warmup) / (STEPS - warmup))) / 2
    assert res["lr"][STEPS - 1] == pytest.approx(last)
    opt = torch.load(root / "out_full" / "ckpt_sqs_0.01_0.5_1_s0.pt", weights_only=True)["opt"]
    assert opt["param_groups"][0]["lr"] == pytest.approx(last)     # what the last step ran with


def test_first_loss_is_mean_over_real_tokens_of_unpadded_stories(full_run):
    """Padding is masked: the logged loss of step 1 equals, independently, the mean next-token loss
    of the initial model run on each story of the first batch alone, cut at the context, without
    padding."""
    root, res = full_run
    args, model = tiny_model()
    data = np.memmap(root / "data" / "tok300_train_all.bin", np.uint16, mode="r").tolist()
    eots = [i for i, t in enumerate(data) if t == ts.EOT_ID]
    generator = torch.Generator().manual_seed(0 * 1_000_003 + 0)
    rows = torch.randperm(len(eots) - 1, generator=generator)[:8]
    total, n = 0.0, 0
    for i in rows.tolist():
        story = torch.tensor(data[eots[i]:eots[i + 1] + 1][:33])
        with torch.no_grad():
            total += F.cross_entropy(model(story[None, :-1])[0], story[1:], reduction="sum").item()
        n += len(story) - 1
    assert any(eots[i + 1] - eots[i] < 32 for i in rows.tolist())       # some rows are padded
    assert res["train_loss"][0] == pytest.approx(total / n, rel=1e-5)
    assert res["val"]["1.0"] < res["val"]["0.25"] - 0.3                 # and it learns


def test_resume_after_kill_equals_uninterrupted_run(full_run):
    root, full = full_run
    common = ["--out", "out_kill", "--steps", str(STEPS), "--ckpt-every", "5", *TINY]
    ckpt = root / "out_kill" / "ckpt_sqs_0.01_0.5_1_s0.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, SCRIPT, *common], cwd=root, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not ckpt.exists() and p.poll() is None:
        time.sleep(0.002)
    p.kill()
    p.wait()
    step = json.loads(torch.load(ckpt, weights_only=True)["state"])["step"]
    assert step < STEPS and not (root / "out_kill" / "results.json").exists()
    r = run([*common, "--resume"], root)
    assert r.returncode == 0, r.stderr
    assert f"resumed at step {step}/{STEPS}" in r.stdout
    resumed = json.load(open(root / "out_kill" / "results.json"))["results"]["sqs:0.01,0.5,1"]
    for key in ("train_loss", "val", "sample"):
        assert resumed[key] == full[key]                                # exact, not close


def test_resume_refuses_other_settings(full_run):
    root, _ = full_run
    ck = root / "out_full" / "ckpt_sqs_0.01_0.5_1_s0.pt"
    before = ck.read_bytes()
    with pytest.raises(SystemExit) as e:
        ts.main([*TINY, "--data-dir", str(root / "data"), "--out", str(root / "out_full"),
                 "--steps", str(STEPS + 10), "--resume"])
    assert str(e.value).startswith("error: --resume:")
    assert f"steps {STEPS} -> {STEPS + 10}" in str(e.value)
    assert ck.read_bytes() == before


def test_resume_from_a_corrupt_checkpoint_is_one_line_error(full_run):
    root, _ = full_run
    good = (root / "out_full" / "ckpt_sqs_0.01_0.5_1_s0.pt").read_bytes()
    (root / "out_bad").mkdir()
    ckpt = root / "out_bad" / "ckpt_sqs_0.01_0.5_1_s0.pt"
    ckpt.write_bytes(good[:len(good) // 2])              # cut short, as by a full disk
    r = run(["--out", "out_bad", "--steps", str(STEPS), "--resume", *TINY], root)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr     # one line, no traceback
    assert r.stderr.startswith("error: --resume:") and str(ckpt.relative_to(root)) in r.stderr
    assert ckpt.read_bytes() == good[:len(good) // 2]   # nothing overwritten
    assert sorted(os.listdir(root / "out_bad")) == [ckpt.name]
    noise = [random.Random(seed).randbytes(2000) for seed in (0, 2, 20, 195)]  # 4 kinds of error
    for junk in [b"", good[:100]] + noise:              # empty, a header only, not a checkpoint
        ckpt.write_bytes(junk)
        with pytest.raises(SystemExit) as e:
            ts.main([*TINY, "--data-dir", str(root / "data"), "--out", str(root / "out_bad"),
                     "--steps", str(STEPS), "--resume"])
        assert str(e.value).startswith("error: --resume:") and "\n" not in str(e.value)
        assert ckpt.read_bytes() == junk


def test_bad_settings_are_one_line_errors(tmp_path):
    r = run(["--lr", "-1", "--synthetic", "--out", "o"], tmp_path)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: --lr") and os.listdir(tmp_path) == []   # nothing written
    bad_settings = [(["--lr", "nan"], "--lr"), (["--wd", "-0.1"], "--wd"),
                    (["--epochs", "0"], "--epochs"), (["--warmup", "-1"], "--warmup"),
                    (["--vocab", "257"], "--vocab"), (["--ctx", "0"], "--ctx")]
    for bad, flag in bad_settings:
        with pytest.raises(SystemExit) as e:
            ts.get_args(bad)
        assert str(e.value).startswith("error: " + flag), (bad, str(e.value))


def test_seeds_give_one_model_each_and_seed_0_is_the_default_run(full_run, capsys):
    root, full = full_run
    ts.main([*TINY, "--data-dir", str(root / "data"), "--out", str(root / "out_seeds"),
             "--steps", str(STEPS),
             "--seeds", "2"])
    capsys.readouterr()
    res = json.load(open(root / "out_seeds" / "results.json"))["results"]
    assert sorted(res) == ["sqs:0.01,0.5,1 seed 0", "sqs:0.01,0.5,1 seed 1"]
    assert res["sqs:0.01,0.5,1 seed 0"]["train_loss"] == full["train_loss"]   # exact: the same run
    assert res["sqs:0.01,0.5,1 seed 1"]["train_loss"] != full["train_loss"]
    assert (root / "out_seeds" / "report.md").read_text().count("| SQS (paper) |") == 1


def test_ddp_two_processes_equal_one(full_run):
    root, full = full_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run(["--out", "out_ddp", "--steps", str(STEPS), *TINY], root, launcher=[
        "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1",
        "--master_port", str(port)])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = json.load(open(root / "out_ddp" / "results.json")), full
    assert a["world"] == 2
    a = a["results"]["sqs:0.01,0.5,1"]
    assert np.abs(np.array(a["train_loss"]) - b["train_loss"]).max() < 1e-5
    assert all(abs(a["val"][m] - b["val"][m]) < 1e-5 for m in b["val"])


def test_sampling_deterministic(full_run):
    root, full = full_run
    _, model = tiny_model()
    blob = torch.load(root / "out_full" / "ckpt_sqs_0.01_0.5_1_s0.pt", weights_only=True)
    model.load_state_dict(blob["model"])
    tok = ts.Tokenizer(json.load(open(root / "data" / "tok300.json"))["merges"])

    def go(seed, n=20):
        return ts.sample(model, tok, "once upon a time", n, seed, 32, "cpu")
    assert go(0, 200) == full["sample"]                  # the script's own sample
    assert full["sample"].startswith("once upon a time")
    assert go(5) == go(5) and any(go(s) != go(5) for s in (6, 7, 8))


def test_presets_and_explicit_flags():
    a = ts.get_args(["--quick", "--steps", "7", "--layers", "3"])
    # the flag wins, the rest is --quick
    assert (a.steps, a.layers, a.d_model, a.epochs) == (7, 3, 64, None)
    a = ts.get_args(["--paper"])
    assert (a.batch, a.epochs, a.stories, a.d_model) == (512, 3.0, 0, 128)
    assert ts.get_args(["--paper", "--steps", "9"]).epochs is None
    assert ts.get_args(["--paper", "--batch", "64"]).batch == 64
    for bad in (["--quick", "--paper"], ["--steps", "3", "--epochs", "1"], ["--acts", "nope"],
                ["--heads", "3"],
                ["--seeds", "0"]):
        with pytest.raises(SystemExit):
            ts.get_args(bad)


def test_synthetic_corpus(tmp_path):
    pa = ts.write_synthetic(str(tmp_path / "a"), 50)
    pb = ts.write_synthetic(str(tmp_path / "b"), 50)
    assert [open(x, "rb").read() for x in pa] == [open(y, "rb").read() for y in pb]  # deterministic
    stats = Counter()
    stories = list(ts.read_stories(pa[0], stats))
    assert len(stories) == 50 == len(set(stories)) and stats["empty"] == 0
    assert all(s.startswith("Once upon a time") for s in stories)
