"""Tests for eigen.py: the decomposition rebuilds train_mnist's model logits exactly (bilinear), the
similarity of vector sets in closed form, the eigenvalue shares and the first-order SQS
measurements against hand-built weights, the verdicts on crafted numbers, one-line errors from the
command line, and a whole run (train in-process, then re-analyse the saved checkpoint) on tiny
generated IDX files."""
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
from activations import parse_act, parse_acts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F64 = torch.float64


def random_net(d=16, seed=0):
    """A train_mnist Net (bilinear and sqs, one seed) in float64 with random, non-initial
    weights."""
    net = tm.Net(["bilinear", "sqs"], [0], d=d, layers=1).double().requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / math.sqrt(p.shape[-1]))
    return net


def test_decomposition_rebuilds_the_models_logits_exactly():
    """sum_i mu_i (e_i . W_e x)^2 == train_mnist's Net(x) for the bilinear member, to 1e-10."""
    net = random_net()
    x = torch.rand(64, 784, dtype=F64, generator=torch.Generator().manual_seed(1))
    want = net(x)[0].clone()                    # member 0 = bilinear, train_mnist's own forward
    m = eigen.members(net, parse_acts("bilinear"), x)[0]
    mu, E = eigen.decompose(m["W_g"], m["W_v"], m["W_u"])
    assert want.abs().max() > 0.1
    got = eigen.eigen_logits(mu, E, x @ m["W_e"].T)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    P = torch.einsum("ydi,dp->yip", E, m["W_e"])     # pixel space: sum_i mu_i ((W_e^T e_i) . x)^2
    pixel = torch.einsum("yi,nyi->ny", mu, torch.einsum("np,yip->nyi", x, P) ** 2)
    torch.testing.assert_close(pixel, want, rtol=1e-10, atol=1e-10)
    assert (mu.abs()[:, :-1] >= mu.abs()[:, 1:]).all()               # ordered by importance
    torch.testing.assert_close(E.mT @ E, torch.eye(16, dtype=F64).expand(10, 16, 16))
    # the SQS member's logits are NOT its quadratic form (the gate is not the identity)
    s = eigen.members(net, parse_acts("sqs"), x)[0]
    mu, E = eigen.decompose(s["W_g"], s["W_v"], s["W_u"])
    assert not torch.allclose(eigen.eigen_logits(mu, E, x @ s["W_e"].T), net(x)[1], rtol=1e-3)


def orthonormal(r, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, r, dtype=F64, generator=gen))[0].T


@pytest.mark.parametrize("theta", [0.0, 0.3, 1.0, math.pi / 2 - 0.2, 2.5])
def test_similarity_of_a_rotated_copy_is_known_in_closed_form(theta):
    """Rotate vector 2j towards 2j+1 (and 2j+1 away from 2j) by theta: rank-matched |cos| =
    |cos theta|, best match = max(|cos theta|, |sin theta|), whatever the scale, sign or common
    rotation of the sets."""
    A = orthonormal(6, 784)
    c, s = math.cos(theta), math.sin(theta)
    B = A.clone()
    B[0::2] = c * A[0::2] + s * A[1::2]
    B[1::2] = -s * A[0::2] + c * A[1::2]
    R = orthonormal(784, 784, seed=1)                                   # a rotation of the space
    B = (B @ R) * torch.tensor([3.0, -1, 0.5, -2, 1, 7], dtype=F64)[:, None]
    match, best = eigen.similarity(A @ R, B)
    torch.testing.assert_close(match, torch.full((6,), abs(c), dtype=F64))
    torch.testing.assert_close(best, torch.full((6,), max(abs(c), abs(s)), dtype=F64))
    B[3] = 0                                            # a missing vector: NaN where it is compared
    match, best = eigen.similarity(A @ R, B)
    assert match[3].isnan() and not match[:3].isnan().any()
    assert float(best[3]) == pytest.approx(abs(s), abs=1e-12)      # its partner B_2 = cA_2 + sA_3
    assert eigen.similarity(B, A @ R)[1][3].isnan()                 # a missing one: no best match


def test_ranked_picks_eigenvectors_by_sign_and_importance():
    mu = torch.tensor([[5.0, -4, 3, -2, 1]], dtype=F64)                # already sorted by |mu|
    P = torch.eye(5, dtype=F64)[None]                                   # vector i = e_i
    top = eigen.ranked(P, mu, 3)                                        # C x 2 x R x n
    assert top[0, 0].argmax(1).tolist() == [0, 2, 4]
    assert top[0, 1, :2].argmax(1).tolist() == [1, 3]
    assert (top[0, 1, 2] == 0).all()                                    # only two negative ones


def test_concentration_is_the_share_of_the_largest_eigenvalues():
    """Shares by hand: |mu| = 4, 3, 2, 1 (sum 10) -> top 1: .4, top 2: .7; k beyond d: all of it."""
    mu = torch.tensor([[4.0, -3, 2, -1], [-1.0, 1, 1, 1]], dtype=F64)
    share = eigen.concentration(mu, (1, 2, 10))
    want = torch.tensor([[0.4, 0.7, 1.0], [0.25, 0.5, 1.0]], dtype=F64)
    torch.testing.assert_close(share, want)


def gated_member(scales, seed=0, n=600, d=8):
    """A one-layer SQS member whose gate inputs are known: W_e copies the first d pixels
    (h = x[:d]), |h_k| in [0.5, 1), and W_g = diag(scales), so |t_k| = scales[k] |h_k| lies in
    [scale/2, scale).
    Its logits are computed here by hand -> (member dict, x, labels, bilinear-reading logits)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 784, dtype=F64)
    signs = torch.randint(0, 2, (n, d), generator=gen).double() * 2 - 1
    x[:, :d] = signs * (0.5 + 0.5 * torch.rand(n, d, generator=gen, dtype=F64))
    W_e = torch.zeros(d, 784, dtype=F64)
    W_e[:, :d] = torch.eye(d, dtype=F64)
    W_g = torch.diag(torch.tensor(scales, dtype=F64))
    W_v = torch.randn(d, d, generator=gen, dtype=F64)
    W_u = torch.randn(10, d, generator=gen, dtype=F64)
    act = parse_act("sqs:0.01,0.5,1")
    t = x[:, :d] @ W_g.T
    gate = (t - 0.01 * t.sign()) / (1 + 0.5 * t.abs())             # sqs written out, p = 1
    value = x[:, :d] @ W_v.T
    logits = (gate * value) @ W_u.T
    bilinear = (t * value) @ W_u.T                                   # the gate read as identity
    labels = logits.argmax(1)
    member = dict(label="sqs s0", gate="sqs", seed=0, act=act, logits=logits,
                  W_e=W_e, W_g=W_g, W_v=W_v, W_u=W_u)
    return member, x, labels, bilinear


@pytest.mark.parametrize("scales, below, beyond", [
    ([0.4] * 8, 0.0, 0.0),                                   # |t| in [0.2, 0.4): inside (c, 1/lam)
    ([6.0] * 8, 0.0, 1.0),                                   # |t| in [3, 6): beyond 1/lam = 2
    ([0.01, 0.01, 0.4, 0.4, 6, 6, 6, 6], 0.25, 0.5),        # |t| < c = 0.01 for two units of eight
])
def test_first_order_reading_of_sqs_on_built_weights(scales, below, beyond):
    member, x, labels, bilinear = gated_member(scales)
    r = eigen.analyse(member, x, labels)
    f = r["first_order"]
    assert f["below_c"] == below and f["beyond"] == beyond
    logits = member["logits"]
    rel_err = float((logits - bilinear).norm() / logits.norm())
    agree = float((bilinear.argmax(1) == logits.argmax(1)).double().mean())
    assert f["rel_err"] == pytest.approx(rel_err, rel=1e-9)
    assert f["agree"] == pytest.approx(agree, abs=1e-12)
    assert r["acc"] == 1.0                                    # the labels are the model's argmax
    if beyond == 0.0 and below == 0.0:                        # the quasi-linear range: close
        assert f["rel_err_scaled"] < 0.1 and f["agree"] > 0.9
    if beyond == 1.0:                                         # saturated gates: far off
        assert f["rel_err"] > 1.0


def row(min1, min_minus1, top1=0.97):
    return dict(min1=min1, min_minus1=min_minus1, top1=top1, min=0.0, below=3, n=100)


def test_similarity_verdicts_judge_the_papers_numbers_as_stated():
    rows = {
        "bilinear vs bilinear, independent init": row(0.81, 0.39, top1=0.90),
        "bilinear vs sqs, shared init": row(0.96, 0.50),            # every class >= .95 and >= .5
        "bilinear vs sqs, independent init": row(0.94, 0.6, top1=0.80),   # min .94 < .95
    }
    got = eigen.similarity_verdicts(rows, "sqs")
    assert got == {
        "sqs, shared init: .95 for the most important": "holds",
        "sqs, shared init: never below .5": "holds",
        "sqs, independent init: .95 for the most important": "does not hold",
        "sqs, independent init: never below .5": "holds",
        "sqs: as alike as a bilinear rerun (new)": "does not hold",     # 0.80 < 0.90 - 0.05
    }
    rows["bilinear vs sqs, shared init"] = row(0.96, 0.49)             # -1 below .5
    rows["bilinear vs sqs, independent init"] = row(0.94, 0.6, top1=0.87)
    got = eigen.similarity_verdicts(rows, "sqs")
    assert got["sqs, shared init: never below .5"] == "does not hold"
    assert got["sqs: as alike as a bilinear rerun (new)"] == "holds"    # 0.03 below the rerun


def test_few_verdict_needs_every_class_concentrated():
    """Top-5 share .2 of d = 128: each of the five holds (0.2/5) / (0.8/123) = 6.15 x the others'
    mean -> holds; one class with a flat spectrum (share 5/128, ratio 1) -> does not hold."""
    d = 128
    share = torch.full((10, len(eigen.TOP_K)), 0.2, dtype=F64)
    ratio = eigen.few_ratio(share, d)
    torch.testing.assert_close(ratio, torch.full((10,), (0.2 / 5) / (0.8 / 123), dtype=F64))
    (verdict,) = eigen.few_verdict("sqs s0", share, "bilinear s0", share, d).values()
    assert verdict == "holds"
    share[3] = 5 / d
    (verdict,) = eigen.few_verdict("sqs s0", share, None, None, d).values()
    assert verdict == "does not hold"


def write_idx(folder, n_train=4096, n_test=300, seed=0):
    """Four small gz IDX files with class-dependent bright squares, so that a model can learn."""
    g = torch.Generator().manual_seed(seed)
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = torch.randint(0, 10, (n,), generator=g)
        img = torch.rand(n, 28, 28, generator=g) * 60
        for i in range(n):
            r = 2 + 5 * (int(y[i]) // 5)
            c = 2 + 5 * (int(y[i]) % 5)
            img[i, r:r + 8, c:c + 8] += 180
        files = ((f"{split}-images-idx3-ubyte.gz", 2051, [n, 28, 28], img.to(torch.uint8)),
                 (f"{split}-labels-idx1-ubyte.gz", 2049, [n], y.to(torch.uint8)))
        for name, magic, dims, body in files:
            header = b"".join(v.to_bytes(4, "big") for v in [magic] + dims)
            with gzip.open(os.path.join(folder, name), "wb") as f:
                f.write(header + body.numpy().tobytes())


def cli(*args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "eigen.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_help_prints_the_whole_first_sentence():
    r = cli("--help", cwd=ROOT)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert "measure how alike their eigenvectors are." in text
    for flag in ("--acts", "--seeds", "--epochs", "--device", "--no-kernels", "--quick", "--out"):
        assert flag in text
    assert text.count("default") >= 10                  # every flag states its default


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    r = cli("--ckpt", "notes.txt", "--out", "o", cwd=tmp_path)        # the real command line
    assert r.returncode != 0 and r.stderr.startswith("error:"), r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "notes.txt" in r.stderr and "Traceback" not in r.stderr and not (tmp_path / "o").exists()
    two = tm.Net(["bilinear"], [0], d=8, layers=2)                      # the wrong kind: two layers
    cfg = {**dataclasses.asdict(tm.Config(layers=2, d_model=8)), "acts": ["identity"], "seeds": [0],
           "input_mean": 0.0, "input_std": 1.0}
    tm.save_checkpoint(str(tmp_path / "two.pt"), two, cfg)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    cases = (("missing.pt", "not found"), ("two.pt", "layers=2"), ("tensor.pt", "tensor.pt"))
    for path, words in cases:
        with pytest.raises(SystemExit) as e:
            eigen.main(["--ckpt", str(tmp_path / path), "--out", str(tmp_path / "o")])
        msg = str(e.value.code)
        assert msg.startswith("error:") and words in msg and "\n" not in msg, msg
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, words", [
    (["--device", "nonsense"], "--device nonsense"), (["--epochs", "0"], ">= 1"),
    (["--acts", "sqs:1,-2"], "lam"), (["--acts", "bilinear,identity"], "twice")])
def test_bad_flags_are_parser_errors(args, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        eigen.main(args + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and ": error: " in err and words in err
    assert not (tmp_path / "o").exists()


def test_train_then_reanalyse_the_saved_checkpoint(tmp_path, capsys):
    """The training path (train_mnist in-process, 2 gates x 2 seeds) learns (test accuracy well
    above chance), writes a checkpoint whose analysis (of its bilinear members, --acts bilinear)
    gives the same numbers, prints one verdict line per verdict, and each verdict on the paper's
    numbers follows from the per-class |cos| it saved; all figures appear, no temp files are left;
    the bilinear top-k curve ends at the model's own accuracy (k = d is the model, exactly)."""
    write_idx(tmp_path / "data")
    a, b = tmp_path / "a", tmp_path / "b"
    data = ["--data-dir", str(tmp_path / "data")]
    eigen.main(data + ["--epochs", "4", "--batch", "256", "--d-model", "16", "--out", str(a)])
    eigen.main(data + ["--ckpt", str(a / "ckpt.pt"), "--acts", "bilinear", "--out", str(b)])
    text = capsys.readouterr().out
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    kind = "bilinear vs bilinear, independent init"                     # the bilinear members
    assert list(rb["similarity"]) == [kind] and rb["similarity"][kind] == ra["similarity"][kind]
    bilinear_only = {k: v for k, v in ra["models"].items() if k.startswith("bilinear")}
    assert rb["models"] == bilinear_only
    assert set(ra["similarity"]) == {kind, "bilinear vs sqs, shared init",
                                     "bilinear vs sqs, independent init",
                                     "sqs vs sqs, independent init"}
    assert list(ra["models"]) == ["bilinear s0", "bilinear s1", "sqs s0", "sqs s1"]
    for label, m in ra["models"].items():
        assert m["acc"] > 0.5, (label, m["acc"])                        # chance is 0.1
        assert len(m["topk"]) == 16 and (m["first_order"] is None) == label.startswith("bilinear")
        if label.startswith("bilinear"):
            assert m["topk"][-1] == m["acc"]
    # the verdicts: one printed line each, values that follow from the saved per-class numbers
    verdicts = ra["verdicts"]
    lines = [line for line in text.splitlines() if line.startswith("verdict: ")]
    assert len(lines) == len(verdicts) + len(rb["verdicts"]) and len(verdicts) == 9
    assert set(verdicts.values()) <= {"holds", "does not hold"}
    for init in ("shared", "independent"):
        r = ra["similarity"][f"bilinear vs sqs, {init} init"]
        lowest_plus1 = min(r["plus1"])
        lowest_top = min(lowest_plus1, min(r["minus1"]))
        want_top = "holds" if lowest_plus1 >= 0.95 else "does not hold"
        want_min = "holds" if lowest_top >= 0.5 else "does not hold"
        assert verdicts[f"sqs, {init} init: .95 for the most important"] == want_top
        assert verdicts[f"sqs, {init} init: never below .5"] == want_min
    for line in lines:
        assert line.endswith("-- holds") or line.endswith("-- does not hold"), line
    for o in (a, b):
        names = ["eigenvectors.png", "overview.png", "explanations.png", "results.json"]
        if o == a:
            names.append("ckpt.pt")
        assert sorted(p.name for p in o.iterdir()) == sorted(names)
    with pytest.raises(SystemExit) as e:                                # no member of that gate
        eigen.main(data + ["--ckpt", str(a / "ckpt.pt"), "--acts", "relu", "--out",
                           str(tmp_path / "c")])
    assert "no member" in str(e.value.code) and not (tmp_path / "c").exists()
