"""Tests for eigen.py: the exact bilinear identity, the antisymmetric part, the top-k curve at k = d,
the end-to-end run on generated IDX files, and clear errors for broken checkpoints."""
import gzip
import json
import os

import pytest
import torch

import eigen
from activations import parse_act

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_model(d=12, dh=10, act="identity", seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {"embed.weight": torch.randn(d, 784, generator=g) / 28,
          "blocks.0.gate.weight": torch.randn(dh, d, generator=g) / d ** 0.5,
          "blocks.0.value.weight": torch.randn(dh, d, generator=g) / d ** 0.5,
          "blocks.0.out.weight": torch.randn(d, dh, generator=g) / dh ** 0.5,
          "head.weight": torch.randn(10, d, generator=g) / d ** 0.5}
    cfg = {"dataset": "mnist", "act": act, "d_model": d, "d_hidden": dh, "layers": 1, "residual": False,
           "input": "pixels01", "seed": seed, "epochs": 1, "test_acc": 0.0, "test_loss": 0.0}
    return cfg, sd


def save_ckpt(path, cfg, sd):
    torch.save({"config": cfg, "state_dict": sd}, path)
    return str(path)


def as_model(cfg, sd):
    """The dict eigen.load_model returns, built in memory (no file)."""
    w = {k: v.double() for k, v in sd.items()}
    return dict(cfg=cfg, act=parse_act(cfg["act"]), label=cfg["act"], We=w["embed.weight"],
                Wg=w["blocks.0.gate.weight"], Wv=w["blocks.0.value.weight"],
                Wu=w["head.weight"] @ w["blocks.0.out.weight"])


def unfolded_logits(sd, x):
    """The network exactly as train_mnist.py runs it (out projection, then head) -- no folding."""
    w = {k: v.double() for k, v in sd.items()}
    h = x @ w["embed.weight"].T
    z = (h @ w["blocks.0.gate.weight"].T) * (h @ w["blocks.0.value.weight"].T)
    return (z @ w["blocks.0.out.weight"].T) @ w["head.weight"].T


def write_idx(d, n_train=0, n_test=64, seed=0):
    """Small IDX files (gz) with class-dependent blobs, so that a model can learn something."""
    g = torch.Generator().manual_seed(seed)
    os.makedirs(d, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        if n == 0:
            continue
        y = torch.randint(0, 10, (n,), generator=g)
        img = torch.rand(n, 28, 28, generator=g) * 60
        for i in range(n):  # a bright square whose position encodes the class
            r, c = 2 + 5 * (int(y[i]) // 5), 2 + 5 * (int(y[i]) % 5)
            img[i, r:r + 8, c:c + 8] += 180
        img = img.clamp(0, 255).to(torch.uint8)
        for name, magic, dims, body in (
                (f"{split}-images-idx3-ubyte.gz", 2051, [n, 28, 28], img.numpy().tobytes()),
                (f"{split}-labels-idx1-ubyte.gz", 2049, [n], y.to(torch.uint8).numpy().tobytes())):
            head = b"".join(v.to_bytes(4, "big") for v in [magic] + dims)
            with gzip.open(os.path.join(d, name), "wb") as f:
                f.write(head + body)


def test_bilinear_logits_equal_eigen_sum():
    cfg, sd = random_model()
    m = as_model(cfg, sd)
    x = torch.rand(50, 784, dtype=torch.float64)
    _, _, lam, V = eigen.decompose(m)
    h = x @ m["We"].T
    want = unfolded_logits(sd, x)          # also checks that folding head @ out is exact
    got = eigen.eigen_logits(lam, V, h)    # sum_i lam_i (v_i . W_e x)^2
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(eigen.forward(m, x), want, rtol=1e-12, atol=1e-14)
    # pixel-space form: (W_e^T v_i) . x is the same number
    P = torch.einsum("cdi,dp->cip", V, m["We"])
    torch.testing.assert_close(torch.einsum("ci,nci->nc", lam, torch.einsum("np,cip->nci", x, P) ** 2),
                               want, rtol=1e-10, atol=1e-12)


def test_q_symmetric_and_antisymmetric_part_contributes_zero():
    cfg, sd = random_model(seed=1)
    m = as_model(cfg, sd)
    B, Q, lam, V = eigen.decompose(m)
    A = B - Q
    assert A.abs().max() > 1e-2 * B.abs().max()        # B itself is far from symmetric
    assert torch.equal(Q, Q.transpose(1, 2))
    h = torch.randn(200, cfg["d_model"], dtype=torch.float64)
    anti = torch.einsum("ni,cij,nj->nc", h, A, h)
    full = torch.einsum("ni,cij,nj->nc", h, B, h)
    assert anti.abs().max() < 1e-12 * full.abs().max()
    torch.testing.assert_close(torch.einsum("ni,cij,nj->nc", h, Q, h), full, rtol=1e-12, atol=1e-12)
    # eigenpairs reconstruct Q, ordered by |lambda|
    torch.testing.assert_close(V @ torch.diag_embed(lam) @ V.transpose(1, 2), Q, rtol=1e-10, atol=1e-12)
    assert (lam.abs()[:, :-1] >= lam.abs()[:, 1:]).all()


def test_sqs_reading_is_exact_at_identity_gate_and_first_order_in_the_quasilinear_range():
    """sqs(s) = (s - c sign s)/(1 + lam|s|) -> s as c, lam -> 0: the bilinear reading h^T Q_c h of the
    SQS-GLU logits is exact at c = lam = 0, and its error shrinks with the distance from identity."""
    cfg, sd = random_model(seed=5)
    x = torch.rand(300, 784, dtype=torch.float64)
    y = torch.zeros(300, dtype=torch.long)
    errs = []
    for spec in ("sqs:0,0,1", "sqs:0.0001,0.001,1", "sqs:0.01,0.5,1"):
        m = as_model(dict(cfg, act=spec), sd)
        _, _, lam, V = eigen.decompose(m)
        h = x @ m["We"].T
        stats, true, approx = eigen.sqs_first_order(m, h, lam, V, y, eigen.forward(m, x))
        errs.append(stats["rel_logit_error"])
        if spec == "sqs:0,0,1":
            torch.testing.assert_close(true, unfolded_logits(sd, x), rtol=1e-12, atol=1e-14)
            assert stats["pred_agreement"] == 1.0
    assert errs[0] < 1e-12 < errs[1] < 0.05 < errs[2], errs


def test_topk_accuracy_at_full_k_equals_model_accuracy():
    cfg, sd = random_model(d=16, dh=16, seed=2)
    m = as_model(cfg, sd)
    x = torch.rand(500, 784, dtype=torch.float64)
    pred = eigen.forward(m, x).argmax(1)
    g = torch.Generator().manual_seed(0)
    y = torch.where(torch.rand(500, generator=g) < 0.6, pred, torch.randint(0, 10, (500,), generator=g))
    acc = float((pred == y).double().mean())
    assert 0.55 < acc < 0.9
    _, _, lam, V = eigen.decompose(m)
    curve = eigen.topk_accuracy(lam, V, x @ m["We"].T, y, chunk=128)  # chunking must not matter
    assert curve.shape == (16,)
    assert float(curve[-1]) == acc
    assert not torch.allclose(curve, curve[-1].expand_as(curve))  # truncation does change something


def test_end_to_end_from_checkpoints_writes_all_figures(tmp_path, capsys, monkeypatch):
    """--ckpt path, in-process (saves a torch start-up): all figures, tables and verdicts appear."""
    write_idx(tmp_path / "data", n_test=120)
    a = save_ckpt(tmp_path / "ckpt_identity.pt", *random_model(seed=3))
    b = save_ckpt(tmp_path / "ckpt_sqs.pt", *random_model(act="sqs:0.01,0.5,1", seed=4))
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    eigen.main(["--ckpt", b, a, "--data-dir", str(tmp_path / "data"), "--out", str(out), "--ranks", "3"])
    stdout = capsys.readouterr().out
    for f in ("eigenvectors.png", "spectra.png", "similarity.png", "explanations.png", "topk_accuracy.png"):
        assert (out / f).stat().st_size > 5000, f
    assert not list(out.glob("*.tmp"))
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]) == ["bilinear", "sqs:0.01,0.5,1"]    # bilinear is the reference
    assert len(res["models"]["bilinear"]["topk"]) == 12
    assert res["models"]["bilinear"]["topk"][-1] == res["models"]["bilinear"]["acc"]
    assert 0 <= res["models"]["sqs:0.01,0.5,1"]["first_order"]["pred_agreement"] <= 1
    table, best = res["similarity"]["table"], res["similarity"]["best_match"]
    assert len(table) == 10 and len(table[0]) == 6
    assert all(0 <= v <= 1 + 1e-9 for row in table for v in row if v == v)
    assert all(bv >= tv - 1e-12 for br, tr in zip(best, table) for bv, tv in zip(br, tr) if tv == tv)
    assert (out / "topk.csv").read_text().count("\n") == 13
    assert "analysis wall time" in stdout and "never below 0.5" in stdout and "|cos|" in stdout


@pytest.mark.parametrize("breakage, message", [
    (lambda cfg, sd: sd.pop("blocks.0.value.weight"), "missing tensor blocks.0.value.weight"),
    (lambda cfg, sd: sd.__setitem__("head.weight", torch.zeros(10, 5)), "head.weight has shape [10, 5]"),
    (lambda cfg, sd: cfg.__setitem__("layers", 2), "layers=2"),
    (lambda cfg, sd: cfg.__setitem__("residual", True), "residual=True"),
    (lambda cfg, sd: cfg.pop("d_hidden"), "config lacks d_hidden"),
    (lambda cfg, sd: cfg.__setitem__("act", 7), "config act 7"),
    (lambda cfg, sd: cfg.__setitem__("act", "nonsense"), "unknown activation"),
    (lambda cfg, sd: cfg.__setitem__("d_model", "12"), "must be positive integers"),
    (lambda cfg, sd: cfg.__setitem__("dataset", "cifar"), "'cifar'"),
    (lambda cfg, sd: sd.__setitem__("embed.weight", torch.full((12, 784), float("nan"))), "NaN"),
])
def test_broken_checkpoint_gives_one_clear_line(tmp_path, breakage, message):
    cfg, sd = random_model()
    breakage(cfg, sd)
    path = save_ckpt(tmp_path / "bad.pt", cfg, sd)
    with pytest.raises(SystemExit) as e:
        eigen.load_model(path)
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("error:")


def test_garbage_file_through_main_gives_one_clear_line(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as e:    # sys.exit(str): printed as one line on stderr, exit code 1
        eigen.main(["--ckpt", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "out")])
    msg = str(e.value)
    assert msg.startswith("error: cannot load checkpoint") and "junk.pt" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()   # nothing created for a checkpoint that failed to load


@pytest.mark.skipif(not os.path.isfile(os.path.join(ROOT, "train_mnist.py")), reason="needs train_mnist.py")
def test_end_to_end_quick_training_path(tmp_path, monkeypatch, capsys):
    """Without --ckpt, eigen.py trains both gates through train_mnist.py (a subprocess) on a small
    generated IDX dataset, then analyses them: all figures and tables appear, and the model accuracy
    it recomputes from the checkpoint equals what train_mnist.py measured on the same test images."""
    write_idx(tmp_path / "data", n_train=256, n_test=64)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    eigen.main(["--dataset", "mnist", "--data-dir", str(tmp_path / "data"), "--quick", "--epochs", "1",
                "--out", str(out)])
    assert "analysis wall time" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]) == ["bilinear", "sqs:0.01,0.5,1"]
    for f in ("eigenvectors.png", "spectra.png", "similarity.png", "explanations.png", "topk_accuracy.png",
              "similarity.md", "topk.csv"):
        assert (out / f).stat().st_size > 0, f
    for m in res["models"].values():
        assert m["config"]["epochs"] == 1 and m["config"]["d_model"] == 128
        assert abs(m["acc"] - m["config"]["test_acc"]) <= 1 / 64 + 1e-9   # float64 vs float32: one tie


def test_standardised_input_checkpoint_is_analysed_on_its_own_inputs(tmp_path, capsys, monkeypatch):
    """A model trained on (pixels/255 - mean)/std ('standard'): eigen.py must feed it the same
    inputs, so the bilinear identity still gives the model's accuracy (k = d equals the model), and
    the accuracy it recomputes equals the one the checkpoint recorded. A 'standard' checkpoint
    without mean/std is refused with one clear line."""
    write_idx(tmp_path / "data", n_test=120)
    cfg, sd = random_model(seed=5)
    cfg.update(input="standard", input_mean=0.3, input_std=0.4)
    x, y = eigen.load_split("mnist", str(tmp_path / "data"))
    m = eigen.load_model(save_ckpt(tmp_path / "ckpt_identity.pt", cfg, sd))
    want = float((eigen.forward(m, (x - 0.3) / 0.4).argmax(1) == y).double().mean())
    assert want != float((eigen.forward(m, x).argmax(1) == y).double().mean())  # the scaling matters
    cfg["test_acc"] = want
    a = save_ckpt(tmp_path / "ckpt_identity.pt", cfg, sd)
    monkeypatch.chdir(tmp_path)
    eigen.main(["--ckpt", a, "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    r = res["models"]["bilinear"]
    assert r["acc"] == pytest.approx(want, abs=1e-5) == r["topk"][-1]   # json keeps 5 decimals
    del cfg["input_std"]
    b = save_ckpt(tmp_path / "ckpt_bad.pt", cfg, sd)
    with pytest.raises(SystemExit) as e:
        eigen.load_model(b)
    assert "input_mean and input_std" in str(e.value.code)
