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


def test_divergence_end_to_end_marks_only_the_diverged(tmp_path):
    """lr 1 (100x the default) blows up some ReLU nets but not others: the run still finishes,
    the blown-up ones are "diverged" in the table, the rest have finite losses."""
    res = tp.main(["--acts", "relu", "--lr", "1", "--steps", "100", "--seeds", "1",
                   "--no-progress", "--out", str(tmp_path)])
    div = [r for r in res["per_seed"] if r["diverged"]]
    alive = [r for r in res["per_seed"] if not r["diverged"]]
    assert div and alive, "expected a mix of diverged and finished models at lr 1"
    assert all(r["diverged_step"] >= 1 for r in div if r["variant"] != "tied")
    assert all(math.isfinite(r["final"]) for r in alive)
    assert "diverged" in (tmp_path / "poly_table.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "poly_table.csv")))
    assert sum(int(r["diverged"]) for r in rows) >= 1
    assert (tmp_path / "poly_losses.png").stat().st_size > 200


def test_cpu_runs_are_deterministic(tmp_path):
    args = ["--acts", "relu,silu", "--variants", "plain,gated", "--steps", "40", "--seeds", "2",
            "--no-progress"]
    a = tp.main([*args, "--out", str(tmp_path / "a")])
    b = tp.main([*args, "--out", str(tmp_path / "b")])
    assert a["per_seed"] == b["per_seed"]           # exact floats, every model
    assert (tmp_path / "a" / "poly_table.csv").read_bytes() == \
        (tmp_path / "b" / "poly_table.csv").read_bytes()


# ------------------------------------------------------------------------------------------------
# Verdicts are computed from the numbers; --device auto prefers cuda > mps > cpu
# ------------------------------------------------------------------------------------------------

def fake_results(finals):
    """finals[(variant, n)] = per-seed final losses (None = diverged) -> (rows, per_seed)."""
    rows, per_seed = [], []
    for (v, n), losses in finals.items():
        ok = sorted(l for l in losses if l is not None)
        rows.append(dict(act="relu", variant=v, n=n,
                         median=float(torch.tensor(ok).median()) if ok else math.nan))
        per_seed += [dict(act="relu", variant=v, n=n, seed=s, final=math.nan if l is None else l,
                          diverged=l is None) for s, l in enumerate(losses)]
    return rows, per_seed


def test_verdicts_follow_the_numbers():
    acts = activations.parse_acts("relu")
    finals = {("plain", n): [1.0, 1.0, 1.0] for n in tp.TARGETS}
    finals.update({("gated", n): [0.1, 0.1, 2.0] for n in tp.TARGETS})        # median 0.1
    finals.update({("squared", 2): [0.2, 0.2, 0.2], ("squared", 3): [0.5, 0.5, 0.5],
                   ("squared", 4): [None, None, None], ("squared", 1): [1.0, 1.0, 1.0]})
    claims = {c["claim"][:5]: c for c in tp.verdicts(*fake_results(finals), acts, tp.VARIANTS)}
    assert claims["gated"]["verdict"] == "HOLDS" and claims["gated"]["holds"]
    assert "gated lower in 2/3 seeds" in claims["gated"]["detail"]    # the spread shows
    sq = claims["squar"]
    # x^2: 2x gated -> competitive; x^3: 5x -> not; x^4: all diverged -> not competitive
    assert sq["verdict"] == "PARTLY (1/3 targets)" and not sq["holds"]
    assert "n/a (diverged)" in sq["detail"]
    finals.update({("gated", n): [3.0, 3.0, 3.0] for n in tp.TARGETS})
    claims = tp.verdicts(*fake_results(finals), acts, ["plain", "gated"])
    assert len(claims) == 1 and claims[0]["verdict"] == "DOES NOT HOLD"


def test_device_auto_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert tp.pick_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="--device cuda is not available"):
        tp.pick_device("cuda")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert tp.pick_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tp.pick_device("auto") == "cuda"


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
