"""tests for train_mnist.py: IDX loader and its failure modes, the downloader (offline, MD5), the
batched ensemble == members one by one (outputs and training), and a tiny end-to-end run."""
import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import activations as A
import train_mnist as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = list(T.FILES.values())


def idx_bytes(arr, magic):
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">i", magic) + struct.pack(f">{arr.ndim}i", *arr.shape) + arr.tobytes()


def write(path, data, gz):
    if gz:
        data = gzip.compress(data)
        path += ".gz"
    with open(path, "wb") as f:
        f.write(data)
    return path


def toy_data(n_train, n_test, seed=0):
    """Images whose label is visible: class k lights up row band k (plus noise), so a tiny run learns."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(y):
            x[i, 2 + 2 * k:4 + 2 * k, 4:24] = 250
        out[split] = (x.astype(np.uint8), y.astype(np.uint8))
    return out


def write_dataset(folder, data, gz=(True, False, True, False)):
    os.makedirs(folder, exist_ok=True)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    for (arr, magic, name), z in zip(((xtr, 2051, NAMES[0]), (ytr, 2049, NAMES[1]),
                                      (xte, 2051, NAMES[2]), (yte, 2049, NAMES[3])), gz):
        write(os.path.join(folder, name), idx_bytes(arr, magic), z)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """cwd = tmp_path (so ./data/<dataset>/ is empty), no system dataset dir, unreachable mirrors."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(T, "SYSTEM_DIR", str(tmp_path / "nosystem"))
    monkeypatch.setenv("MLPLAB_MNIST_MIRRORS", "http://127.0.0.1:9/")   # discard port: refused at once
    return tmp_path


# ---------------------------------------------------------------------------------------- loader
@pytest.mark.parametrize("gz", [(True,) * 4, (False,) * 4, (True, False, False, True)])
def test_idx_round_trip_gz_and_raw(isolated, gz):
    data = toy_data(50, 20)
    write_dataset(str(isolated / "d"), data, gz)
    got = T.load_dataset("fashion", str(isolated / "d"), progress=False)
    assert torch.equal(got["train_x"], torch.from_numpy(data["train"][0].reshape(50, 784)))
    assert torch.equal(got["train_y"], torch.from_numpy(data["train"][1].astype(np.int64)))
    assert torch.equal(got["test_x"], torch.from_numpy(data["test"][0].reshape(20, 784)))
    assert got["test_y"].dtype == torch.int64 and got["test_y"].tolist() == data["test"][1].tolist()


def test_lookup_order_prefers_data_dir_then_local_data(isolated):
    write_dataset(str(isolated / "data" / "fashion-mnist"), toy_data(30, 10, seed=1))
    write_dataset(str(isolated / "mine"), toy_data(40, 10, seed=2))
    assert len(T.load_dataset("fashion", str(isolated / "mine"), progress=False)["train_x"]) == 40
    assert len(T.load_dataset("fashion", None, progress=False)["train_x"]) == 30


def corrupt(kind, folder):
    """Break one file of a good dataset; return the broken file's path."""
    x = np.zeros((30, 28, 28), np.uint8)
    img = os.path.join(folder, NAMES[0])
    if kind == "wrong_magic":
        return write(img, idx_bytes(x, 2049), gz=True)
    if kind == "truncated":
        return write(img, idx_bytes(x, 2051)[:-100], gz=False)
    if kind == "truncated_gzip":
        with open(img + ".gz", "wb") as f:
            f.write(gzip.compress(idx_bytes(x, 2051))[:-30])
        return img + ".gz"
    if kind == "count_mismatch":
        return write(img, idx_bytes(np.zeros((29, 28, 28), np.uint8), 2051), gz=True)
    if kind == "bad_shape":
        return write(img, idx_bytes(np.zeros((30, 27, 28), np.uint8), 2051), gz=True)


@pytest.mark.parametrize("kind", ["wrong_magic", "truncated", "truncated_gzip", "count_mismatch", "bad_shape"])
def test_corrupt_files_give_one_clear_error_naming_the_file(isolated, kind):
    folder = str(isolated / "d")
    write_dataset(folder, toy_data(30, 10), gz=(False, True, True, True))
    os.remove(os.path.join(folder, NAMES[0]))
    bad = corrupt(kind, folder)
    with pytest.raises(T.DataError) as e:
        T.load_dataset("fashion", folder, progress=False)
    msg = str(e.value)
    assert bad in msg and "\n" not in msg
    assert {"wrong_magic": "magic", "truncated": "truncated", "truncated_gzip": "decompress",
            "count_mismatch": "29 images but", "bad_shape": "27x28"}[kind] in msg


def test_corrupt_file_cli_error_is_one_line(tmp_path):
    folder = str(tmp_path / "d")
    write_dataset(folder, toy_data(30, 10), gz=(True,) * 4)
    write(os.path.join(folder, NAMES[2]), idx_bytes(np.zeros((10, 28, 28), np.uint8), 2049), gz=True)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_mnist.py"), "--data-dir", folder,
                        "--out", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and NAMES[2] in r.stderr and "magic" in r.stderr


# -------------------------------------------------------------------------------------- download
def test_offline_gives_one_clear_error_and_leaves_nothing(isolated):
    with pytest.raises(T.DataError) as e:
        T.load_dataset("fashion", None, progress=False)
    msg = str(e.value)
    for needle in NAMES + ["127.0.0.1:9", os.path.join(str(isolated), "data", "fashion-mnist"),
                           "apt-get install dataset-fashion-mnist"]:
        assert needle in msg, needle
    assert "\n" not in msg
    leftovers = [f for _, _, fs in os.walk(isolated) for f in fs]
    assert leftovers == []


def test_offline_cli_mnist(tmp_path):
    if os.path.isdir("/usr/share/datasets/mnist"):
        pytest.skip("MNIST installed system-wide here")
    env = dict(os.environ, MLPLAB_MNIST_MIRRORS="http://127.0.0.1:9/")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_mnist.py"), "--dataset", "mnist",
                        "--out", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert "train-images-idx3-ubyte.gz" in r.stderr and "127.0.0.1:9" in r.stderr
    assert not os.path.exists(tmp_path / "data" / "mnist") or os.listdir(tmp_path / "data" / "mnist") == []


def make_mirror(folder, data):
    """A file:// mirror holding the four .gz files; returns (url, {name.gz: md5})."""
    write_dataset(folder, data, gz=(True,) * 4)
    md5 = {}
    for n in NAMES:
        with open(os.path.join(folder, n + ".gz"), "rb") as f:
            md5[n + ".gz"] = hashlib.md5(f.read()).hexdigest()
    return "file://" + folder + "/", md5


def test_md5_mismatch_leaves_no_file_and_falls_back_to_next_mirror(isolated, monkeypatch):
    bad_url, _ = make_mirror(str(isolated / "bad"), toy_data(30, 10, seed=3))
    good_url, md5 = make_mirror(str(isolated / "good"), toy_data(30, 10, seed=4))
    monkeypatch.setitem(T.MD5, "mnist", md5)
    # Only the bad mirror: MD5 mismatch -> clear error, nothing written.
    monkeypatch.setenv("MLPLAB_MNIST_MIRRORS", bad_url)
    with pytest.raises(T.DataError) as e:
        T.load_dataset("mnist", None, progress=False)
    assert "MD5 mismatch" in str(e.value) and NAMES[0] + ".gz" in str(e.value)
    dest = isolated / "data" / "mnist"
    assert not dest.exists() or os.listdir(dest) == []
    # Bad mirror first, good one second: the download recovers, verified files land in ./data/mnist/.
    monkeypatch.setenv("MLPLAB_MNIST_MIRRORS", bad_url + "," + good_url)
    got = T.load_dataset("mnist", None, progress=False)
    assert sorted(os.listdir(dest)) == sorted(n + ".gz" for n in NAMES)
    assert got["folder"] == os.path.join("data", "mnist") and len(got["train_x"]) == 30


# -------------------------------------------------------------------------------------- ensemble
ACTS = "relu,sqs,bilinear"


@pytest.mark.parametrize("residual,glu", [(False, True), (True, True), (False, False)])
def test_ensemble_outputs_equal_members_run_one_by_one(residual, glu):
    acts, seeds = A.parse_acts(ACTS), [0, 3]
    ens = T.Ensemble(acts, seeds, d=16, hidden=12, layers=2, residual=residual, glu=glu)
    x = torch.rand(len(seeds), 7, 784)
    with torch.no_grad():
        logits = ens(x)
    for g, act in enumerate(acts):
        for s in range(len(seeds)):
            net = T.Net(act, 16, 12, 2, residual, glu)
            net.load_state_dict(ens.member_state_dict(g, s))
            with torch.no_grad():
                torch.testing.assert_close(net(x[s]), logits[g * len(seeds) + s], rtol=1e-5, atol=1e-5)
    # Same seed -> same initial weights for every gate (a paired comparison); different seed -> not.
    assert torch.equal(ens.member_state_dict(0, 0)["embed.weight"], ens.member_state_dict(2, 0)["embed.weight"])
    assert not torch.equal(ens.member_state_dict(0, 0)["embed.weight"], ens.member_state_dict(0, 1)["embed.weight"])
    # A member's weights depend only on its seed, not on what else is in the ensemble.
    alone = T.Ensemble(acts[1:2], [3], d=16, hidden=12, layers=2, residual=residual, glu=glu)
    for k, v in alone.member_state_dict(0, 0).items():
        assert torch.equal(v, ens.member_state_dict(1, 1)[k]), k


def test_ensemble_training_equals_members_trained_one_by_one():
    """Summed member losses + elementwise AdamW == each member trained on its own."""
    acts, seeds = A.parse_acts(ACTS), [0, 1]
    ens = T.Ensemble(acts, seeds, d=16, hidden=12, layers=2, residual=False)
    nets = []
    for g, act in enumerate(acts):
        for s in range(len(seeds)):
            net = T.Net(act, 16, 12, 2, False)
            net.load_state_dict(ens.member_state_dict(g, s))
            nets.append((g, s, net, torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1, eps=1e-4)))
    # eps = 1e-4 (not 1e-8): Adam's first steps are ~lr*sign(grad), so a grad of 1e-9 whose sign
    # differs by float rounding between bmm and mm would flip an update; that is not what we test.
    opt = torch.optim.AdamW(ens.parameters(), lr=1e-2, weight_decay=0.1, eps=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.rand(len(seeds), 9, 784, generator=gen)
        y = torch.randint(0, 10, (len(seeds), 9), generator=gen)
        opt.zero_grad()
        T.member_losses(ens(x), y.repeat(len(acts), 1)).sum().backward()
        opt.step()
        for g, s, net, o in nets:
            o.zero_grad()
            torch.nn.functional.cross_entropy(net(x[s]), y[s]).backward()
            o.step()
    for g, s, net, _ in nets:
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, ens.member_state_dict(g, s)[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------ end to end
def test_tiny_end_to_end_run(tmp_path):
    data_dir, out = str(tmp_path / "d"), tmp_path / "o"
    write_dataset(data_dir, toy_data(256, 100))
    cmd = [sys.executable, os.path.join(ROOT, "train_mnist.py"), "--data-dir", data_dir, "--out", str(out),
           "--acts", "relu,sqs", "--plain", "relu2", "--match-params", "--seeds", "2", "--epochs", "8",
           "--batch", "32", "--lr", "1e-2", "--noise-std", "0.3", "--d-model", "16", "--hidden", "16",
           "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    table = (out / "table.md").read_text()
    assert "| FMNIST | ReLU | measured |" in table and "| | | paper | 0.6852 |" in table
    assert "| FMNIST | plain relu2 | measured |" in table and "Δ (ours − paper)" in table
    assert "SQS test loss below ReLU-GLU at every checkpoint:" in table
    assert "Parameters per model: ReLU 14,240, SQS 14,240, plain relu2 14,240" in table   # matched
    for f in ("table.csv", "curves.csv", "results.json", "curves.png", "ckpt_relu.json", "ckpt_plain_relu2.pt"):
        assert (out / f).stat().st_size > 0, f
    assert not [f for f in os.listdir(out) if ".tmp" in f or f.endswith(".part")]   # temp names renamed
    res = json.loads((out / "results.json").read_text())
    assert res["total_steps"] == 64 and res["history"]["step"] == list(range(8, 65, 8))
    # The toy task is learnable: every GLU member ends well above chance (10 %).
    assert min(res["history"]["test_acc"][-1][:4]) > 0.5
    # Checkpoint: loads with weights_only=True, has exactly the agreed layout, and reproduces the
    # test accuracy the ensemble recorded for that member.
    ck = torch.load(out / "ckpt_sqs_0.01_0.5_1.pt", weights_only=True)
    assert set(ck["config"]) == {"dataset", "act", "d_model", "d_hidden", "layers", "residual", "input",
                                 "input_mean", "input_std", "seed", "epochs", "test_acc", "test_loss"}
    assert (ck["config"]["input_mean"], ck["config"]["input_std"]) == (0.0, 1.0)   # pixels01: x / 255 as is
    assert ck["config"]["act"] == "sqs:0.01,0.5,1" and ck["config"]["residual"] is False
    assert {k: tuple(v.shape) for k, v in ck["state_dict"].items()} == {
        "embed.weight": (16, 784), "blocks.0.gate.weight": (16, 16), "blocks.0.value.weight": (16, 16),
        "blocks.0.out.weight": (16, 16), "blocks.1.gate.weight": (16, 16), "blocks.1.value.weight": (16, 16),
        "blocks.1.out.weight": (16, 16), "head.weight": (10, 16)}
    assert json.loads((out / "ckpt_sqs_0.01_0.5_1.json").read_text()) == ck["config"]
    net, cfg = T.load_checkpoint(str(out / "ckpt_sqs_0.01_0.5_1.pt"))
    d = T.load_dataset("fashion", data_dir, progress=False)
    with torch.no_grad():
        acc = (net(d["test_x"].float() / 255).argmax(1) == d["test_y"]).float().mean().item()
    assert acc == pytest.approx(cfg["test_acc"], abs=1e-6)


def test_bad_flags_are_one_line_errors(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train_mnist.py"), "--acts", "relu,nope",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown activation 'nope'" in r.stderr and "Traceback" not in r.stderr


# -------------------------------------------------------------------------------------- verdicts
def test_verdicts_follow_the_numbers():
    paper = {T.label(s): p for s, p in T.PAPER["fashion"].items()}
    v = T.verdicts(paper, list(paper))
    assert all("HOLDS" in x and "NOT" not in x for x in v) and len(v) == 3, v
    # Make SQS worse than ReLU at the 50 % checkpoint and 3 points behind in final accuracy.
    worse = dict(paper, SQS=[paper["SQS"][0], (0.7, 0.8), paper["SQS"][2], (0.389, 0.838)])
    v = T.verdicts(worse, list(worse))
    assert "below ReLU-GLU at every checkpoint: DOES NOT HOLD (3/4" in v[0]
    assert "on par" in v[2] and "DOES NOT HOLD" in v[2]
    # Steps to a threshold: SQS first, a tie, and a threshold nobody reaches.
    rows = {"ReLU": {"glu": True, "steps_to": {"0.80": 300, "0.85": 500, "0.90": None},
                     "steps_to_per_seed": {"0.80": [100, 300], "0.85": [500, 500], "0.90": [None, None]}},
            "SQS": {"glu": True, "steps_to": {"0.80": 200, "0.85": 500, "0.90": None},
                    "steps_to_per_seed": {"0.80": [200, 200], "0.85": [500, None], "0.90": [None, None]}}}
    f = T.first_reach_verdict(rows)
    assert "HOLDS on the seed-mean curve (SQS at step 200" in f[0] and "in 1/2 seeds" in f[0]
    assert "HOLDS" in f[1] and "ReLU, SQS" in f[1] and "in 1/2 seeds" in f[1]
    assert "NOT TESTED" in f[2]
    rows["ReLU"]["steps_to"]["0.80"] = 150
    assert "DOES NOT HOLD on the seed-mean curve (SQS at step 200; earliest 150: ReLU" in T.first_reach_verdict(rows)[0]
    assert T.first_step([10, 20, 30], [0.5, 0.81, 0.79], 0.8) == 20
    assert T.first_step([10, 20], [0.5, 0.6], 0.8) is None
