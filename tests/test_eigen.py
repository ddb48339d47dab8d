"""Tests for eigen.py: the decomposition rebuilds train_mnist's model logits exactly (bilinear), the
similarity of vector sets in closed form, one-line errors from the command line, and a whole run (train
in-process, then re-analyse the saved checkpoint) on tiny generated IDX files."""
import dataclasses
import gzip
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import eigen
import train_mnist as tm
from activations import parse_acts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_net(d=16, seed=0):
    """A train_mnist Net (bilinear and sqs, one seed) in float64 with random, non-initial weights."""
    net = tm.Net(["bilinear", "sqs"], [0], d=d, layers=1).double().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(p.shape[-1]))
    return net


def test_decomposition_rebuilds_the_models_logits_exactly():
    """sum_i lam_i (v_i . W_e x)^2 == train_mnist's Net(x) for the bilinear member, to 1e-10 (float64)."""
    net = random_net()
    x = torch.rand(64, 784, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want = net(x)[0].clone()                          # member 0 = bilinear, train_mnist's own forward
    m = eigen.members(net, parse_acts("bilinear"), x)[0]
    lam, V = eigen.decompose(m["W_g"], m["W_v"], m["W_u"])
    assert want.abs().max() > 0.1
    torch.testing.assert_close(eigen.eigen_logits(lam, V, x @ m["W_e"].T), want, rtol=1e-10, atol=1e-10)
    P = torch.einsum("cdi,dp->cip", V, m["W_e"])     # pixel space: sum_i lam_i ((W_e^T v_i) . x)^2
    torch.testing.assert_close(torch.einsum("ci,nci->nc", lam, torch.einsum("np,cip->nci", x, P) ** 2), want,
                               rtol=1e-10, atol=1e-10)
    assert (lam.abs()[:, :-1] >= lam.abs()[:, 1:]).all()               # ordered by importance
    torch.testing.assert_close(V.mT @ V, torch.eye(16, dtype=torch.float64).expand(10, 16, 16))
    # the SQS member's logits are NOT its quadratic form (the gate is not the identity)
    s = eigen.members(net, parse_acts("sqs"), x)[0]
    lam, V = eigen.decompose(s["W_g"], s["W_v"], s["W_u"])
    assert not torch.allclose(eigen.eigen_logits(lam, V, x @ s["W_e"].T), net(x)[1], rtol=1e-3)


def orthonormal(r, n, seed=0):
    return torch.linalg.qr(torch.randn(n, r, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)))[0].T


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, math.pi / 2 - 0.2, 2.5])
def test_similarity_of_a_rotated_copy_is_known_in_closed_form(theta):
    """Rotate vector 2j towards 2j+1 (and 2j+1 away from 2j) by theta: rank-matched |cos| = |cos theta|,
    best match = max(|cos theta|, |sin theta|), whatever the scale, sign or common rotation of the sets."""
    A = orthonormal(6, 784)
    c, s = math.cos(theta), math.sin(theta)
    B = A.clone()
    B[0::2], B[1::2] = c * A[0::2] + s * A[1::2], -s * A[0::2] + c * A[1::2]
    R = orthonormal(784, 784, seed=1)                                   # a rotation of the whole space
    B = (B @ R) * torch.tensor([3.0, -1, 0.5, -2, 1, 7], dtype=torch.float64)[:, None]
    match, best = eigen.similarity(A @ R, B)
    torch.testing.assert_close(match, torch.full((6,), abs(c), dtype=torch.float64))
    torch.testing.assert_close(best, torch.full((6,), max(abs(c), abs(s)), dtype=torch.float64))
    B[3] = 0                                            # a missing vector: NaN where it is compared, not 0
    match, best = eigen.similarity(A @ R, B)
    assert match[3].isnan() and not match[:3].isnan().any()
    assert float(best[3]) == pytest.approx(abs(s), abs=1e-12)          # its partner B_2 = c A_2 + s A_3
    assert eigen.similarity(B, A @ R)[1][3].isnan()                     # a missing vector has no best match


def test_ranked_picks_eigenvectors_by_sign_and_importance():
    lam = torch.tensor([[5.0, -4, 3, -2, 1]], dtype=torch.float64)     # already sorted by |lam|
    P = torch.eye(5, dtype=torch.float64)[None]                         # vector i = e_i
    top = eigen.ranked(P, lam, 3)                                       # C x 2 x R x n
    assert top[0, 0].argmax(1).tolist() == [0, 2, 4] and top[0, 1, :2].argmax(1).tolist() == [1, 3]
    assert (top[0, 1, 2] == 0).all()                                    # only two negative ones


def write_idx(folder, n_train=2048, n_test=200, seed=0):
    """Four small gz IDX files with class-dependent bright squares, so that a model can learn a little."""
    g = torch.Generator().manual_seed(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = torch.randint(0, 10, (n,), generator=g)
        img = torch.rand(n, 28, 28, generator=g) * 60
        for i in range(n):
            r, c = 2 + 5 * (int(y[i]) // 5), 2 + 5 * (int(y[i]) % 5)
            img[i, r:r + 8, c:c + 8] += 180
        for name, magic, dims, body in ((f"{split}-images-idx3-ubyte.gz", 2051, [n, 28, 28], img.to(torch.uint8)),
                                        (f"{split}-labels-idx1-ubyte.gz", 2049, [n], y.to(torch.uint8))):
            with gzip.open(os.path.join(folder, name), "wb") as f:
                f.write(b"".join(v.to_bytes(4, "big") for v in [magic] + dims) + body.numpy().tobytes())


def cli(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "eigen.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    r = cli("--ckpt", "notes.txt", "--out", "o", cwd=tmp_path)        # the real command line
    assert r.returncode != 0 and r.stderr.startswith("error:") and r.stderr.strip().count("\n") == 0, r.stderr
    assert "notes.txt" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "o").exists()
    two = tm.Net(["bilinear"], [0], d=8, layers=2)                      # the wrong kind: two layers
    cfg = {**dataclasses.asdict(tm.Config(layers=2, d_model=8)), "acts": ["identity"], "seeds": [0],
           "input_mean": 0.0, "input_std": 1.0}
    tm.save_checkpoint(str(tmp_path / "two.pt"), two, cfg)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for path, words in (("missing.pt", "not found"), ("two.pt", "layers=2"), ("tensor.pt", "tensor.pt")):
        with pytest.raises(SystemExit) as e:
            eigen.main(["--ckpt", str(tmp_path / path), "--out", str(tmp_path / "o")])
        msg = str(e.value.code)
        assert msg.startswith("error:") and words in msg and "\n" not in msg, msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [(["--device", "nonsense"], "--device nonsense"), (["--epochs", "0"], ">= 1"),
                                         (["--acts", "sqs:1,-2"], "lam"),
                                         (["--acts", "bilinear,identity"], "twice")])
def test_bad_flags_are_parser_errors(args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        eigen.main(args + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and ": error: " in err and words in err
    assert not (tmp_path / "o").exists()


def test_train_then_reanalyse_the_saved_checkpoint(tmp_path, capsys):
    """The training path (train_mnist in-process, 2 gates x 2 seeds) writes a checkpoint whose analysis
    (of its bilinear members, --acts bilinear) gives the same numbers; all figures appear, no temp files are left; the bilinear top-k curve ends at
    the model's own accuracy (k = d is the model, exactly)."""
    write_idx(tmp_path / "data")
    a, b = tmp_path / "a", tmp_path / "b"
    eigen.main(["--data-dir", str(tmp_path / "data"), "--epochs", "1", "--d-model", "16", "--out", str(a)])
    eigen.main(["--ckpt", str(a / "ckpt.pt"), "--acts", "bilinear", "--data-dir", str(tmp_path / "data"),
                "--out", str(b)])
    text = capsys.readouterr().out
    ra, rb = (json.loads((o / "results.json").read_text()) for o in (a, b))
    kind = "bilinear vs bilinear, independent init"                     # the checkpoint's bilinear members
    assert list(rb["similarity"]) == [kind] and rb["similarity"][kind] == ra["similarity"][kind]
    assert rb["models"] == {k: v for k, v in ra["models"].items() if k.startswith("bilinear")}
    assert set(ra["similarity"]) == {"bilinear vs bilinear, independent init", "bilinear vs sqs, shared init",
                                     "bilinear vs sqs, independent init", "sqs vs sqs, independent init"}
    assert list(ra["models"]) == ["bilinear s0", "bilinear s1", "sqs s0", "sqs s1"]
    for label, m in ra["models"].items():
        assert len(m["topk"]) == 16 and (m["first_order"] is None) == label.startswith("bilinear")
        if label.startswith("bilinear"):
            assert m["topk"][-1] == m["acc"]
    for o in (a, b):
        assert sorted(p.name for p in o.iterdir()) == sorted(
            ["eigenvectors.png", "overview.png", "explanations.png", "results.json"] + ["ckpt.pt"] * (o == a))
    assert text.count("\nverdict: ") >= 5 and "REPRODUCED" in text
    with pytest.raises(SystemExit) as e:                                # no member of that gate: no folder
        eigen.main(["--ckpt", str(a / "ckpt.pt"), "--acts", "relu", "--data-dir", str(tmp_path / "data"),
                    "--out", str(tmp_path / "c")])
    assert "no member" in str(e.value.code) and not (tmp_path / "c").exists()
