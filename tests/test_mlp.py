"""Tests for mlp.py (blog "MLP 2"): the effective-linearity measurement R^2 (affine maps, strongly
nonlinear maps, scale invariance, the degenerate and non-finite guards), the batched network (a
student with the teacher's sigma and weights has zero loss), the quick run end to end, divergence
handling, and one-line errors for bad arguments."""
import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import activations
import mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# R^2
# ------------------------------------------------------------------------------------------------

def test_r2_of_an_affine_map_is_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 400, 12, generator=g)                  # 3 independent fits in one call
    y = x @ torch.randn(3, 12, 7, generator=g) + torch.randn(3, 1, 7, generator=g)
    assert torch.allclose(mlp.r2(x, y), torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)
    # Pre-LN inputs: every row sums to zero, so X^T X is singular -- the pseudo-inverse must cope
    z = x - x.mean(-1, keepdim=True)
    y = z @ torch.randn(12, 7, generator=g) - 3.0
    assert (mlp.r2(z, y) - 1).abs().max() < 1e-6


def test_r2_of_a_strongly_nonlinear_map_is_far_below_one():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 1, generator=g)
    # E[x sin 5x] = 5 exp(-12.5) ~ 2e-5: almost none of sin(5x) is linear in x
    assert mlp.r2(x, torch.sin(5 * x)).item() < 0.05
    # and a mildly curved map sits in between: tanh on unit-variance inputs is mostly linear
    r_tanh = mlp.r2(x, torch.tanh(x)).item()
    assert 0.8 < r_tanh < 0.99


def test_r2_is_invariant_to_rescaling_inputs_and_outputs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, 8, generator=g)
    y = torch.tanh(2 * x @ torch.randn(8, 5, generator=g)) + 0.1 * x[:, :5] ** 2
    base = mlp.r2(x, y).item()
    assert 0.2 < base < 0.95                                  # a case where R^2 is informative
    for a, b in [(1e-3, 1.0), (1.0, 1e3), (250.0, 1e-4), (-2.0, -0.5)]:
        assert mlp.r2(a * x, b * y).item() == pytest.approx(base, abs=1e-9)
    # also any invertible linear change of the inputs (a per-coordinate scale here)
    assert mlp.r2(x * torch.logspace(-2, 2, 8), y).item() == pytest.approx(base, abs=1e-9)


def test_r2_guards_constant_and_non_finite_outputs():
    x = torch.randn(100, 4)
    assert mlp.r2(x, torch.full((100, 3), 5.0)).item() == 1.0   # constant = affine, not 0/0
    assert mlp.r2(x, torch.zeros(100, 3)).item() == 1.0
    row = torch.tensor([0.1, -3.7, 1e-3])                        # float32 means of these are inexact
    assert mlp.r2(x, row.expand(100, 3)).item() == 1.0
    y = torch.stack([torch.sin(3 * x), x.clone()])               # [2, 100, 4]
    y[1, 7, 2] = float("nan")                                    # a diverged model's activations
    out = mlp.r2(torch.stack([x, x]), y)
    assert math.isnan(out[1].item()) and 0 <= out[0].item() < 1  # NaN stays in its own fit


# ------------------------------------------------------------------------------------------------
# The batched network
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["pre", "post", "none"])
def test_student_with_teachers_sigma_and_weights_has_zero_loss(norm):
    """Three students in one batched pass, all holding the teacher's weights; only the one whose
    sigma is the teacher's (silu, in the middle) reproduces it exactly -- a check that model m really
    uses activation m % A."""
    d, hidden, depth = 6, 24, 3
    teacher = mlp.init_params(1, depth, d, hidden, torch.Generator().manual_seed(5), "cpu")
    student = {k: v.repeat_interleave(3, 1) for k, v in teacher.items()}
    acts = [activations.parse_act(s) for s in ("tanh", "silu", "relu")]
    x = torch.randn(256, d)
    y, _, _ = mlp.forward(teacher, x[None], [activations.parse_act("silu")], norm, 1.0)
    out, ins, outs = mlp.forward(student, x.expand(3, *x.shape), acts, norm, 1.0, record=True)
    loss = (out - y).square().mean((1, 2))
    assert loss[1].item() == 0.0
    assert loss[0].item() > 1e-6 and loss[2].item() > 1e-6
    assert len(ins) == len(outs) == depth and ins[0].shape == (3, 256, d)


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------

SMALL = ["--quick", "--width", "8", "--depth", "4", "--steps", "30", "--r2-every", "10",
         "--r2-batch", "128", "--batch", "128"]


def test_quick_run_writes_all_figures_and_the_table(tmp_path, capsys):
    out = tmp_path / "res"
    mlp.main(SMALL + ["--out", str(out)])                   # the default 8 students
    printed = capsys.readouterr().out
    for name in ("curves.png", "losses.png", "gensilu_shapes.png", "loss_vs_r2.png"):
        assert (out / name).stat().st_size > 5000, name
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(out) if ".tmp" in p]  # temp name + rename left nothing behind
    rows = list(csv.DictReader(open(out / "results.csv")))
    students = [r["student"] for r in rows]
    assert students == ["tanh", "relu", "relu2", "silu", "silu2", "gensilu(1,0)", "gensilu(0,1)",
                        "gensilu(1,1)"]
    for r in rows:
        assert float(r["final_loss"]) > 0
        assert -0.1 < float(r["r2_min"]) <= float(r["r2_mean"]) <= float(r["r2_max"]) <= 1.0
        assert r["diverged"] == "0/1"
    blob = json.load(open(out / "results.json"))
    assert len(blob["r2_curves"]) == 4 and len(blob["r2_curves"][0][0]) == 4  # steps 0,10,20,30; L=4
    assert len(blob["verdicts"]) == 4
    # the printed markdown table and one verdict per claim, computed from the numbers
    assert "| student | final loss | mean R²" in printed and "| gensilu(1,1) |" in printed
    assert printed.count("verdict: ") == 4
    assert "R² ordering tanh > silu > relu > relu2 > silu2:" in printed
    assert "gensilu(0,1) reaches far (>=10x) lower loss" in printed
    assert "R² fits" in printed and "%)" in printed                  # the R^2 time fraction


def test_a_diverging_student_is_marked_and_the_sweep_goes_on(tmp_path, capsys):
    # no normalisation and a huge learning rate: relu2's squared units blow up, tanh's cannot
    out = tmp_path / "div"
    mlp.main(SMALL + ["--acts", "relu2,tanh", "--norm", "none", "--lr", "3", "--no-plots",
                      "--out", str(out)])
    printed = capsys.readouterr().out
    rows = {r["student"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert rows["relu2"]["diverged"] == "1/1" and "relu2 (seed 0) diverged at step" in printed
    assert rows["tanh"]["diverged"] == "0/1" and math.isfinite(float(rows["tanh"]["final_loss"]))


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["--acts", "relu,gensilu:-1,0"], "left cycles must be >= 0"),
    (["--acts", "gensilu:0,-2"], "right cycles must be >= 0"),
    (["--acts", "gensilu:1,1,0"], "period must be > 0"),
    (["--acts", "gensilu:1,1,-3"], "period must be > 0"),
    (["--depth", "0"], "--depth must be a positive integer"),
    (["--width", "-4"], "--width must be a positive integer"),
    (["--norm", "layer"], "invalid choice: 'layer'"),
    (["--acts", "swish"], "unknown activation 'swish'"),
])
def test_bad_arguments_fail_with_one_line(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        mlp.get_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and err.count("\n") == 1, err


def test_bad_arguments_from_the_command_line_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:                      # output dir under a regular file
        mlp.main(["--out", str(blocker / "sub")])
    assert "not writable" in str(e.value.code) and "\n" not in str(e.value.code)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "mlp.py"), "--acts", "gensilu:0,1,0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == "mlp.py: error: gensilu: period must be > 0, got period=0.0\n"
    assert not os.path.exists(tmp_path / "out")               # nothing written on bad input
