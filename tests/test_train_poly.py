"""Tests for train_poly.py: the --quick run end to end, parameter matching, the batched trainer's
model independence and divergence handling, and clear one-line errors for bad arguments."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import activations
import train_poly as tp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_poly.py")


def run(args, cwd):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------------------------------------
# End to end: the classroom run
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("poly")
    r = run(["--quick", "--no-progress", "--out", str(out / "res")], cwd=out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out / "res", r


def test_quick_writes_figures_and_tables(quick):
    out, r = quick
    for name in ("poly_losses.png", "poly_equivalence.png", "poly_table.md", "poly_table.csv",
                 "poly_table.json", "poly_seeds.csv"):
        path = out / name
        assert path.stat().st_size > 200, name
        assert str(path) in r.stdout or name.endswith("seeds.csv"), f"{name} path not printed"
    assert (out / "poly_losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob("*.tmp")), "a half-written .tmp file was left behind"
    assert "wall time:" in r.stdout and "| x^4 |" in r.stdout
    rows = list(csv.DictReader(open(out / "poly_table.csv")))
    assert len(rows) == 2 * 3 * 4   # relu, silu x plain, squared, gated x n = 1..4


def test_quick_numbers_are_plausible(quick):
    out, _ = quick
    res = json.load(open(out / "poly_table.json"))
    assert res["config"]["steps"] == tp.QUICK["steps"]
    for r in res["per_seed"]:
        assert not r["diverged"], r
        assert math.isfinite(r["final"]) and r["final"] < r["initial"], r
        # initial loss ~ E[x^2n] = 1, 3, 15, 105 (outputs start small), up to the init's own output
        moment = [1, 3, 15, 105][r["n"] - 1]
        assert moment / 4 < r["initial"] < moment * 4, r
    final = {(r["act"], r["variant"], r["n"], r["seed"]): r["final"] for r in res["per_seed"]}
    assert final[("relu", "gated", 2, 0)] < final[("relu", "plain", 2, 0)]   # the blog's headline
    assert final[("silu", "gated", 2, 0)] < final[("silu", "plain", 2, 0)]
    assert {v["act"] for v in res["verdicts"]} == {"relu", "silu"}
    assert all(v["verdict"] for v in res["verdicts"])


def test_tied_gated_relu_is_relu2(quick):
    """Same init + same data: the tied gated-ReLU net and the ReLU^2 net agree to the last bit,
    while the untied gated net does not."""
    out, _ = quick
    eq = json.load(open(out / "poly_table.json"))["equivalence"]
    assert len(eq) == 4
    for r in eq:
        assert r["tied_identical"] and r["tied_gap"] == 0.0 and r["tied"] == r["relu2"]
        assert r["tied_fn_gap"] == 0.0                 # the same function, not just the same loss
        assert r["untied"] != r["relu2"] and r["untied_drift"] > 0.01


# ------------------------------------------------------------------------------------------------
# Parameter matching
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 5, 16, 64, 100, 257])
def test_matched_widths_match_parameter_counts(width):
    widths = tp.matched_widths(tp.VARIANTS, width)
    target = tp.n_params("plain", width)
    for v, h in widths.items():
        # the count of the model actually built, not just the formula
        assert tp.init_theta(v, h, seed=0).numel() == tp.n_params(v, h)
        # gated grows in steps of 5 parameters, so the best width is within 2 of the target
        assert abs(tp.n_params(v, h) - target) <= 2, (v, h)
        assert all(abs(tp.n_params(v, k) - target) >= abs(tp.n_params(v, h) - target)
                   for k in range(1, 4 * width + 2))
    assert widths["plain"] == widths["squared"] == width


def test_match_params_run_reports_matched_counts(tmp_path, capsys):
    res = tp.main(["--match-params", "--steps", "3", "--seeds", "1", "--no-progress",
                   "--out", str(tmp_path)])
    main = [r for r in res["rows"] if r["main"]]
    counts = {(r["act"], r["variant"]): r["params"] for r in main}
    assert counts[("relu", "plain")] == counts[("relu", "squared")] == 193
    assert abs(counts[("relu", "gated")] - 193) <= 2 and counts[("relu", "gated")] != 321
    table = (tmp_path / "poly_table.md").read_text()
    assert "| params | 193 | 193 | 191 |" in table
    assert "residual -2" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# The batched trainer: models are independent, a diverging model stops only itself
# ------------------------------------------------------------------------------------------------

def small_groups(seeds=1, width=8):
    return tp.make_groups(activations.parse_acts("relu"), ["plain", "gated"],
                          {"plain": width, "squared": width, "gated": width}, seeds, width)


def test_batched_models_are_independent():
    """A model's trajectory does not depend on which other models share the batch."""
    g1, g2 = small_groups(seeds=1), small_groups(seeds=2)
    tp.train(g1, 20, 32, 1e-2, 1, "cpu", progress=False)
    tp.train(g2, 20, 32, 1e-2, 2, "cpu", progress=False)
    for a, b in zip(g1, g2):
        rows_b = [i for i, (_, s) in enumerate(b["models"]) if s == 0]
        assert torch.equal(a["theta"], b["theta"][rows_b])


def test_diverging_model_is_frozen_and_others_train():
    groups = small_groups()
    plain = groups[0]
    H = plain["width"]
    plain["theta"][0, :H] = 1e20          # model (n=1, seed 0): w so large the loss is inf
    plain["theta"][0, 2 * H:3 * H] = 1e20
    before = plain["theta"][0].clone()
    loss0 = tp.test_losses(groups, "cpu")
    tp.train(groups, 100, 64, 1e-2, 1, "cpu", progress=False)
    loss1 = tp.test_losses(groups, "cpu")
    assert plain["died"][0] == 1 and (plain["died"][1:] == -1).all()
    assert torch.equal(plain["theta"][0], before)                 # frozen, not NaN-polluted
    assert torch.isnan(plain["curve"][:, 0]).all()
    for g, l0, l1 in zip(groups, loss0, loss1):
        alive = slice(1, None) if g is plain else slice(None)
        assert torch.isfinite(g["curve"][:, alive]).all() and torch.isfinite(g["theta"]).all()
        assert (l1[alive] < l0[alive]).all()                      # the others still learn


def test_untied_gated_relu_from_tied_init_stays_tied():
    """At u = w, d = b the gate and value receive identical gradients, so Adam keeps them equal:
    the symmetric point is invariant (this is why the untied comparison draws u, d separately)."""
    group = tp.make_groups(activations.parse_acts("relu"), ["gated"], {"gated": 8}, 1, 8)[0]
    H, theta = 8, group["theta"]
    theta[:, H:2 * H], theta[:, 3 * H:4 * H] = theta[:, :H], theta[:, 2 * H:3 * H]   # u=w, d=b
    tp.train([group], 50, 32, 1e-2, 1, "cpu", progress=False)
    theta = group["theta"]
    assert not torch.equal(theta[:, :H], tp.make_groups(
        activations.parse_acts("relu"), ["gated"], {"gated": 8}, 1, 8)[0]["theta"][:, :H])  # moved
    assert torch.equal(theta[:, :H], theta[:, H:2 * H])
    assert torch.equal(theta[:, 2 * H:3 * H], theta[:, 3 * H:4 * H])


# ------------------------------------------------------------------------------------------------
# Bad arguments: one clear line, no traceback
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, msg", [
    (["--acts", "relu,nope"], "unknown activation 'nope'"),
    (["--acts", "gensilu:-1"], "left cycles must be >= 0"),
    (["--variants", "plain,cubed"], "choose from: plain, squared, gated"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--width", "-3"], "--width must be a positive integer"),
    (["--seeds", "0"], "--seeds must be a positive integer"),
    (["--lr", "nan"], "--lr must be a positive number"),
])
def test_bad_arguments_fail_with_clear_message(args, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        tp.main([*args, "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err
    if "unknown activation" in msg:
        assert "relu" in err and "silu" in err   # lists the choices


def test_bad_arguments_subprocess_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for args, msg in ((["--variants", "cubed"], "unknown variant 'cubed'"),
                      (["--out", str(blocker / "sub")], "is not writable")):
        r = run(args, cwd=tmp_path)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("train_poly.py: error:")
        assert "wall time" not in r.stdout   # failed before training
