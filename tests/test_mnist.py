"""tests for train_mnist.py: the IDX reader and its failure modes, the MD5-checked download (file://
mirrors passed as an argument), the ensemble's train() against an independent one-model loop, R^2
against closed forms, checkpoints, and one-line CLI errors. Tiny synthetic IDX files, d = 16."""
import dataclasses
import gzip
import hashlib
import math
import os
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import activations as A
import train_mnist as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_mnist.py")


def idx_bytes(arr, magic):
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">i", magic) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def write(path, raw, gz):
    path += ".gz" if gz else ""
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if gz else raw)
    return path


def toy(n_train, n_test, seed=0):
    """Images whose class k lights up row band k (plus noise): a tiny run can learn them."""
    rng, out = np.random.default_rng(seed), {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(y):
            x[i, 2 + 2 * k:4 + 2 * k, 4:24] = 250
        out[split] = (x.astype(np.uint8), y.astype(np.uint8))
    return out


def write_dataset(folder, data, gz=(True, False, True, False)):
    os.makedirs(folder, exist_ok=True)
    arrays = (data["train"][0], data["train"][1], data["test"][0], data["test"][1])
    return [write(os.path.join(folder, n), idx_bytes(a, 2049 if a.ndim == 1 else 2051), z)
            for n, a, z in zip(T.FILES, arrays, gz)]


def run_cli(*args, cwd=None):
    r = subprocess.run([sys.executable, SCRIPT, "--no-progress", *args], capture_output=True,
                       text=True, timeout=300, cwd=cwd)
    return r.returncode, r.stdout, r.stderr


# ------------------------------------------------------------------------------------------ data
@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_idx_round_trip_gz_and_raw(tmp_path, gz):
    data = toy(50, 20)
    write_dataset(str(tmp_path), data, gz)
    got = T.load_data("fashion", str(tmp_path), mirrors=[])
    assert torch.equal(got["train_x"], torch.from_numpy(data["train"][0].reshape(50, 784)))
    assert got["train_y"].dtype == torch.int64
    assert got["train_y"].tolist() == data["train"][1].tolist()
    assert torch.equal(got["test_x"], torch.from_numpy(data["test"][0].reshape(20, 784)))
    assert got["test_y"].tolist() == data["test"][1].tolist()


BROKEN = {  # name -> (file index, raw bytes, word the message must contain)
    "truncated image header": (0, idx_bytes(np.zeros((5, 28, 28)), 2051)[:10], "header"),
    "truncated label header": (1, b"\x00\x00\x08\x01\x00", "header"),
    "wrong magic": (0, idx_bytes(np.zeros((5, 28, 28)), 2049), "magic"),
    "labels with image magic": (1, idx_bytes(np.zeros(5), 2051), "magic"),
    "bad dims": (2, idx_bytes(np.zeros((5, 27, 28)), 2051), "dims"),
    "truncated images": (0, idx_bytes(np.zeros((5, 28, 28)), 2051)[:-7], "truncated"),
    "trailing image bytes": (2, idx_bytes(np.zeros((5, 28, 28)), 2051) + b"\x00", "trailing"),
    "trailing label bytes": (3, idx_bytes(np.zeros(5), 2049) + b"\x01\x02", "trailing"),
    "truncated labels": (1, idx_bytes(np.zeros(50), 2049)[:-3], "truncated"),
    "label above 9": (3, idx_bytes(np.array([1, 2, 10, 3, 4]), 2049), "label 10"),
    "count mismatch": (3, idx_bytes(np.zeros(4), 2049), "labels"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_corrupt_files_raise_one_line_naming_the_file(tmp_path, kind):
    i, raw, word = BROKEN[kind]
    paths = write_dataset(str(tmp_path), toy(50, 5), gz=(False,) * 4)
    write(paths[i], raw, gz=False)
    with pytest.raises(T.DataError) as e:
        T.load_data("fashion", str(tmp_path), mirrors=[])
    msg = str(e.value)
    assert "\n" not in msg and word in msg
    assert paths[i] in msg or (kind == "count mismatch" and str(tmp_path) in msg)


def test_broken_gzip_is_a_data_error(tmp_path):
    paths = write_dataset(str(tmp_path), toy(20, 5), gz=(True,) * 4)
    with open(paths[1], "r+b") as f:
        f.truncate(os.path.getsize(paths[1]) - 9)
    with pytest.raises(T.DataError, match="cannot read"):
        T.load_data("fashion", str(tmp_path), mirrors=[])


def test_download_md5_checked_falls_back_to_next_mirror_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad, good = tmp_path / "bad", tmp_path / "good"
    write_dataset(str(bad), toy(30, 10, seed=3), gz=(True,) * 4)
    paths = write_dataset(str(good), toy(30, 10, seed=4), gz=(True,) * 4)
    md5 = tuple(hashlib.md5(open(p, "rb").read()).hexdigest() for p in paths)
    monkeypatch.setitem(T.MD5, "mnist", md5)            # the checksums of our synthetic files
    dest = tmp_path / "dl"
    with pytest.raises(T.DataError) as e:                # only wrong files on offer: nothing kept
        T.load_data("mnist", str(dest), mirrors=[f"file://{bad}/", f"file://{tmp_path}/missing/"])
    assert "MD5" in str(e.value) and "\n" not in str(e.value) and T.FILES[0] in str(e.value)
    assert not dest.exists() or os.listdir(dest) == []
    got = T.load_data("mnist", str(dest), mirrors=[f"file://{bad}/", f"file://{good}/"])
    assert sorted(os.listdir(dest)) == sorted(n + ".gz" for n in T.FILES)
    assert len(got["train_x"]) == 30


def test_offline_cli_is_one_line_and_writes_nothing(tmp_path):
    if os.path.isdir("/usr/share/datasets/mnist"):
        pytest.skip("MNIST installed system-wide here")
    rc, out, err = run_cli("--dataset", "mnist", "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert rc == 1 and err.startswith("error: ") and err.strip().count("\n") == 0
    assert T.FILES[0] in err
    folder = tmp_path / "data" / "mnist"
    assert not folder.exists() or os.listdir(folder) == []


@pytest.mark.parametrize("bad,word", [(dict(lr=-1.0), "--lr"), (dict(lr=math.nan), "--lr"),
                                      (dict(seeds=0), "--seeds"),
                                      (dict(noise_prob=1.5), "--noise-prob"),
                                      (dict(wd=math.inf), "--wd"), (dict(input="raw"), "--input"),
                                      (dict(acts="relu,relu"), "twice")])
def test_check_config_refuses_bad_settings_in_one_line(bad, word):
    with pytest.raises(ValueError) as e:
        T.check_config(T.Config(**bad))
    assert word in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("args,word", [(["--lr", "-1"], "--lr"), (["--acts", "relu,nope"], "nope"),
                                       (["--batch", "100000"], "larger than")])
def test_bad_flags_are_one_line_cli_errors(tmp_path, args, word):
    write_dataset(str(tmp_path / "d"), toy(40, 10))
    rc, out, err = run_cli("--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                           "--d-model", "8", *args)
    last = err.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in err and word in last, err


# ---------------------------------------------------------------------------------------- model
def small(seed=0, n_train=300, n_test=60):
    d = toy(n_train, n_test, seed)
    return dict(train_x=torch.from_numpy(d["train"][0].reshape(-1, 784)),
                train_y=torch.from_numpy(d["train"][1]).long(),
                test_x=torch.from_numpy(d["test"][0].reshape(-1, 784)),
                test_y=torch.from_numpy(d["test"][1]).long())


def reference_run(act, seed, data, cfg):
    """One model, written independently with nn.Linear, trained on the documented data stream:
    generator 10000 + seed draws per epoch a permutation, then per batch a noise mask and the noise.
    Initial weights: generator `seed` draws W_e, the GLU layers, the output projections (if any),
    W_u, in that order. --input standard: pixels / 255 standardised by the training mean/std."""
    gen, d = torch.Generator().manual_seed(seed), cfg.d_model

    def init(rows, cols):
        return nn_linear((torch.rand(rows, cols, generator=gen) * 2 - 1) / math.sqrt(cols))
    W_e = init(d, 784)
    W = [init(2 * d, d) for _ in range(cfg.layers)]
    W_o = [init(d, d) for _ in range(cfg.layers)] if cfg.out_proj else []
    W_u = init(10, d)
    params = [W_e.weight] + [w.weight for w in W] + [w.weight for w in W_o] + [W_u.weight]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    pixels = data["train_x"].double() / 255
    mean, std = (pixels.mean(), pixels.std()) if cfg.input == "standard" else (0.0, 1.0)
    data_gen, B = torch.Generator().manual_seed(10_000 + seed), cfg.batch
    x_all = ((data["train_x"].float() / 255 - float(mean)) / float(std))
    x_test = ((data["test_x"].float() / 255 - float(mean)) / float(std))

    def forward(x):
        h = W_e(x)
        for l, w in enumerate(W):
            z = w(h)
            h = act(z[:, :d]) * z[:, d:]
            if W_o:
                h = W_o[l](h)
        return W_u(h)
    losses = []
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x_all), generator=data_gen)
        for i in range(len(x_all) // B):                       # drop_last
            idx = perm[i * B:(i + 1) * B]
            x = x_all[idx].clone()
            mask = torch.rand(B, generator=data_gen) < cfg.noise_prob
            x[mask] += cfg.noise_std * torch.randn(int(mask.sum()), 784, generator=data_gen)
            loss = F.cross_entropy(forward(x), data["train_y"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            losses.append(F.cross_entropy(forward(x_test), data["test_y"]).item())
    return losses, params


def nn_linear(w):
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data.copy_(w)
    return lin


def check_against_reference(acts, cfg, seeds):
    data = small()
    net = T.Net(acts, seeds, d=cfg.d_model, layers=cfg.layers, out_proj=cfg.out_proj)
    res = T.train(net, data, cfg)
    ends = [res["step"].index(e * res["steps_per_epoch"]) for e in range(1, cfg.epochs + 1)]
    for g, act in enumerate(acts):
        for k, seed in enumerate(seeds):
            losses, params = reference_run(act, seed, data, cfg)
            m = g * len(seeds) + k
            want = torch.tensor(losses, dtype=torch.float64)
            torch.testing.assert_close(res["test_loss"][ends, m], want, rtol=2e-4, atol=2e-5)
            torch.testing.assert_close(net.W_e[m], params[0], rtol=1e-3, atol=2e-5)
            torch.testing.assert_close(net.W_u[m], params[-1], rtol=1e-3, atol=2e-5)
            if cfg.out_proj:
                W_o = params[1 + cfg.layers]
                torch.testing.assert_close(net.W_o[0][m], W_o, rtol=1e-3, atol=2e-5)
    return net, res


def test_ensemble_train_equals_independent_single_model_loops():
    cfg = T.Config(seeds=2, epochs=3, batch=64, d_model=16, noise_prob=0.5, lr=3e-3)
    acts = A.parse_acts("relu,sqs,bilinear")
    net, res = check_against_reference(acts, cfg, [0, 1])
    assert res["step"] == [3, 4, 6, 8, 9, 12]   # 4 steps per epoch (drop_last): ends + quarters
    # A member alone is bit-for-bit the member inside the ensemble (its seed fixes init and data).
    one = T.Net([acts[1]], [1], d=16)
    data = small()
    alone = T.train(one, data, dataclasses.replace(cfg, seeds=1))
    assert torch.equal(alone["test_loss"][:, 0], res["test_loss"][:, 3])


def test_standard_input_and_output_projection_equal_the_reference_loop():
    cfg = T.Config(seeds=1, epochs=2, batch=64, d_model=16, lr=3e-3, input="standard",
                   out_proj=True)
    net, res = check_against_reference(A.parse_acts("gelu,sqs"), cfg, [3])
    pixels = small()["train_x"].double() / 255
    assert abs(res["input_mean"] - pixels.mean().item()) < 1e-12
    assert abs(res["input_std"] - pixels.std().item()) < 1e-12
    assert res["input_std"] > 0.1                          # the toy images are far from constant


def test_gates_of_a_seed_share_their_initial_weights_and_seeds_differ():
    net = T.Net(["relu", "gelu"], [0, 1], d=8, layers=1, out_proj=True)
    for w in net.parameters():
        assert torch.equal(w[0], w[2]) and torch.equal(w[1], w[3]) and not torch.equal(w[0], w[1])


def test_checkpoint_round_trip_and_garbage(tmp_path):
    net = T.Net(["sqs", "identity"], [0, 5], d=8, layers=2, out_proj=True)
    cfg = {"acts": [a.spec for a in net.acts], "seeds": net.seeds, "d_model": 8, "layers": 2,
           "out_proj": True}
    T.save_checkpoint(str(tmp_path / "c.pt"), net, cfg)
    back, c = T.load_checkpoint(str(tmp_path / "c.pt"))
    x = torch.rand(3, 784)
    with torch.no_grad():
        assert torch.equal(back(x), net(x)) and c == cfg
    (tmp_path / "t.pt").write_text("not a checkpoint\n")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")      # a valid torch file, but not a dict
    for bad in ("t.pt", "missing.pt", "tensor.pt"):
        with pytest.raises(T.DataError) as e, warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            T.load_checkpoint(str(tmp_path / bad))
        assert "\n" not in str(e.value) and bad in str(e.value)
        assert not seen, [str(w.message) for w in seen]     # the one-line error, no warning first


def test_r2_exact_on_affine_maps_and_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g)
    x[:, 5] = 0                                              # a dead unit: rank-deficient input
    y = x @ torch.randn(6, 4, generator=g) + torch.randn(4, generator=g)
    assert abs(T.r2(x, y) - 1) < 1e-10
    s = torch.tensor([-1.0, 0.0, 1.0]).repeat(100)[:, None]  # symmetric: x^2 uncorrelated with x
    assert abs(T.r2(s, s ** 2)) < 1e-12
    noise = torch.randn(500, 4, generator=g)                 # independent: lstsq with intercept
    z = y + noise
    X1 = torch.cat([x[:, :5], torch.ones(500, 1)], 1).double()
    res = z.double() - X1 @ torch.linalg.lstsq(X1, z.double()).solution
    expect = 1 - res.square().sum() / (z.double() - z.double().mean(0)).square().sum()
    assert abs(T.r2(x, z) - expect.item()) < 1e-10
    assert math.isnan(T.r2(x, torch.full((500, 4), float("nan"))))


# ------------------------------------------------------------------------------- the verdicts
def curves(gelu, sqs):
    """acc [T, 2, S] from per-seed accuracy curves of GELU and SQS (lists of T rows of S values)."""
    acc = np.zeros((len(gelu), 2, len(gelu[0])))
    acc[:, 0] = gelu
    acc[:, 1] = sqs
    return acc


def first(acc, thr, dataset="fashion"):
    return T.verdict_first_to_reach(["GELU", "SQS"], [10, 20, 30, 40], acc, thr, dataset)


def test_first_to_reach_sqs_first_tied_and_behind():
    gelu = [[.50, .50], [.79, .81], [.86, .83], [.88, .88]]
    sqs = [[.50, .50], [.81, .79], [.87, .86], [.88, .88]]
    acc = curves(gelu, sqs)
    verdict, line = first(acc, 0.80)                  # seed means .80 and .80 at step 20: a tie
    assert verdict == "TIED" and "step 20" in line and "alone first in 1/2 seeds" in line
    verdict, line = first(acc, 0.85)                  # SQS mean .865 at step 30, GELU .845
    assert verdict == "HOLDS" and "step 30: SQS;" in line and "alone first in 1/2 seeds" in line
    verdict, line = first(curves(sqs, gelu), 0.85)         # the roles swapped: GELU first
    assert verdict == "DOES NOT HOLD" and "step 30: GELU;" in line and "0/2 seeds" in line


def test_first_to_reach_never_reached():
    acc = curves([[.5], [.7], [.8], [.86]], [[.5], [.6], [.8], [.85]])
    verdict, line = first(acc, 0.90, "fashion")            # Table 1's FMNIST rows stop at .8681 too
    assert verdict == "NOT TESTED" and "cannot be tested on this dataset" in line
    assert "best GELU 0.8600" in line
    verdict, line = first(acc, 0.90, "mnist")         # MNIST rows reach 90 %: only this run not
    assert verdict == "NOT TESTED" and "cannot be tested" not in line and "in this run" in line


def test_on_par_inside_and_outside_the_tolerance():
    names = ["GELU", "SQS"]
    inside = np.array([[.860, .862, .861], [.857, .858, .859]])       # GELU 0.30 pt above SQS
    verdict, (definition, line) = T.verdict_on_par(names, inside, "fashion")
    assert verdict == "HOLDS" and "on par" in definition and "0.65 pt" in definition
    assert "GELU +0.30 pt" in line
    outside = np.array([[.870, .871, .869], [.858, .859, .857]])      # 1.20 pt, seeds agree
    verdict, (definition, line) = T.verdict_on_par(names, outside, "fashion")
    assert verdict == "DOES NOT HOLD" and "GELU +1.20 pt" in line and "not on par" in line
    noisy = np.array([[.870, .850, .890], [.858, .859, .857]])    # same mean gap, seeds disagree
    assert T.verdict_on_par(names, noisy, "fashion")[0] == "HOLDS"


def test_lowest_final_loss_and_below_rivals():
    names = ["ReLU", "GELU", "Bilinear", "SQS"]
    final = np.array([[.50, .52], [.36, .37], [.55, .56], [.39, .38]])
    verdict, line = T.verdict_lowest_final_loss(names, final, "fashion")
    assert verdict == "DOES NOT HOLD" and "lowest other GELU 0.3650" in line
    assert "does not satisfy" in line and "0.3890" in line and "0.3599" in line   # Table 1, FMNIST
    final[3] = [.30, .31]
    assert T.verdict_lowest_final_loss(names, final, "fashion")[0] == "HOLDS"
    q_loss = np.zeros((4, 4, 2))
    q_loss[:, 0] = .6                                      # ReLU
    q_loss[:, 2] = [[.5, .5], [.5, .5], [.5, .5], [.5, .3]]   # Bilinear: below SQS at 100 %, seed 1
    q_loss[:, 3] = .45                                     # SQS
    verdict, line = T.verdict_below(names, q_loss, "ReLU", "fashion")
    assert verdict == "HOLDS" and "4/4 checkpoints" in line and "2/2 seeds" in line
    verdict, line = T.verdict_below(names, q_loss, "Bilinear", "fashion")
    assert verdict == "DOES NOT HOLD" and "3/4 checkpoints" in line   # 100 %: mean .40 < .45
    assert "1/2 seeds" in line


def test_cli_end_to_end_flags_win_over_quick(tmp_path):
    write_dataset(str(tmp_path / "d"), toy(600, 100))
    rc, out, err = run_cli("--data-dir", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                           "--quick", "--epochs", "2", "--seeds", "1", "--batch", "100",
                           "--d-model", "16", "--acts", "bilinear,sqs")
    assert rc == 0, err
    assert "| SQS | ours |" in out and "| | paper |" in out and "R^2" in out and "GEMM" in out
    assert "time: matmuls" in out and "fused kernel calls" not in out        # CPU: no kernel line
    assert sorted(os.listdir(tmp_path / "o")) == ["ckpt.pt", "curves.png", "report.md"]
    net, c = T.load_checkpoint(str(tmp_path / "o" / "ckpt.pt"))
    got = (c["epochs"], c["seeds"], c["train_subset"], c["acts"])
    assert got == (2, [0], 10_000, ["identity", "sqs:0.01,0.5,1"])
    assert c["step"][-1] == 12 and net.M == 2


def test_every_flag_has_a_help_text_with_its_default():
    r = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "200"})
    blocks = r.stdout.split("\n  --")[1:]                    # one block per option, after the usage
    flags = [b.split()[0] for b in blocks]
    assert "no-kernels" in flags and "device" in flags and "d-model" in flags and len(blocks) >= 19
    for block in blocks:
        assert "default" in block, block
