"""Tests for mlp.py (blog "MLP 2"): the R^2 measurement against an independent least-squares fit and
its guards, the batched students against students trained alone, the fixed training set, determinism,
the presets, the end-to-end run and one-line errors for bad input."""
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
TINY = ["--width", "8", "--depth", "3", "--expand", "2", "--steps", "12", "--eval-every", "4",
        "--eval-size", "64", "--train-size", "32"]


# ------------------------------------------------------------------------------------------------
# R^2
# ------------------------------------------------------------------------------------------------

def lstsq_r2(x, y):
    """Independent R^2: solve [X 1] beta = Y with torch.linalg.lstsq in float64, residuals directly."""
    x1 = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
    res = y.double() - x1 @ torch.linalg.lstsq(x1, y.double(), driver="gelsd").solution
    ss_res, ss_tot = res.square().sum(0), (y.double() - y.double().mean(0)).square().sum(0)
    return 1 - ss_res.sum() / ss_tot.sum(), (1 - ss_res / ss_tot).mean()


def test_r2_is_exactly_one_on_an_affine_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 400, 12, generator=g)                  # 3 independent fits in one call
    y = x @ torch.randn(3, 12, 7, generator=g) + torch.randn(3, 1, 7, generator=g)
    for out in mlp.r2(x, y):                                  # pooled and per coordinate
        assert torch.allclose(out, torch.ones(3, dtype=torch.float64), atol=1e-9, rtol=0)
    z = x[0] - x[0].mean(-1, keepdim=True)                    # LayerNorm-like rows: X^T X singular
    for out in mlp.r2(z, z @ torch.randn(12, 7, generator=g) - 3.0):
        assert abs(out.item() - 1) < 1e-9


def test_r2_matches_an_independent_lstsq_fit():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 6, generator=g)
    # columns of very different size and linearity, so pooled and per-coordinate R^2 differ
    y = torch.stack([torch.tanh(2 * x[:, 0]) + x[:, 1], 10 * torch.sin(3 * x[:, 2]), x[:, 3] ** 2,
                     0.1 * x[:, 4] + 0.01 * x[:, 5].abs()], 1)
    pooled, per_coord = mlp.r2(x, y)
    ref_pooled, ref_coord = lstsq_r2(x, y)
    assert pooled.item() == pytest.approx(ref_pooled.item(), abs=1e-9)
    assert per_coord.item() == pytest.approx(ref_coord.item(), abs=1e-9)
    assert abs(pooled.item() - per_coord.item()) > 0.05      # the two conventions really differ here


def test_r2_guards_constant_and_non_finite_outputs():
    x = torch.randn(100, 4)
    for y in (torch.full((100, 3), 5.0), torch.zeros(100, 3), torch.tensor([0.1, -3.7, 1e-3]).expand(100, 3)):
        assert [t.item() for t in mlp.r2(x, y)] == [1.0, 1.0]  # a constant is affine: 1, not 0/0
    y = torch.cat([torch.sin(3 * x[:, :2]), torch.full((100, 1), 2.0)], 1)   # one constant column
    ref = (lstsq_r2(x, y[:, :2])[1] * 2 + 1) / 3              # it counts as 1 per coordinate
    assert mlp.r2(x, y)[1].item() == pytest.approx(ref.item(), abs=1e-9)
    y = torch.stack([torch.sin(3 * x), x.clone()])            # [2, 100, 4]
    y[1, 7, 2] = float("nan")                                 # a diverged model's activations
    pooled, per_coord = mlp.r2(torch.stack([x, x]), y)
    assert math.isnan(pooled[1].item()) and math.isnan(per_coord[1].item())
    assert pooled[0].item() == pytest.approx(lstsq_r2(x, y[0])[0].item(), abs=1e-9)  # NaN stays put


# ------------------------------------------------------------------------------------------------
# The batched students
# ------------------------------------------------------------------------------------------------

def test_student_with_the_teachers_sigma_and_weights_has_zero_loss():
    """Three students hold the teacher's weights; only the one with its sigma (silu, the middle
    one) reproduces it -- model m really uses its own activation."""
    teacher = mlp.init_blocks(1, 3, 6, 24, torch.Generator().manual_seed(5))
    students = [{k: v.repeat(3, 1, 1) for k, v in p.items()} for p in teacher]
    x = torch.randn(256, 6)
    y = mlp.forward(teacher, x[None], [activations.parse_act("silu")], "pre", 1.0)[0]
    acts = activations.parse_acts("tanh,silu,relu")
    out, ins, outs = mlp.forward(students, x.expand(3, *x.shape), acts, "pre", 1.0)
    loss = (out - y).square().mean((1, 2))
    assert loss[1].item() == 0.0 and loss[0].item() > 1e-6 and loss[2].item() > 1e-6
    assert len(ins) == len(outs) == 3 and ins[0].shape == outs[0].shape == (3, 256, 6)


@pytest.mark.parametrize("extra", [[], ["--train-size", "0", "--batch", "32"]])
def test_a_student_alone_equals_the_same_student_in_the_batch(extra):
    a = mlp.get_args(TINY + ["--seeds", "2"] + extra)
    acts = activations.parse_acts("relu2,silu,gensilu:0,1,1")
    batched = mlp.train(a, acts)
    alone = mlp.train(a, acts[2:])                            # gensilu(0,1), both seeds
    assert torch.allclose(alone["train_loss"], batched["train_loss"][:, 4:], rtol=1e-5, atol=0)
    assert torch.allclose(alone["r2"], batched["r2"][:, 4:], rtol=1e-5, atol=0)
    assert not torch.allclose(batched["train_loss"][:, 2:4], batched["train_loss"][:, 4:])


def test_the_fixed_set_is_fixed_and_fresh_batches_are_not():
    acts = activations.parse_acts("silu")
    frozen = mlp.train(mlp.get_args(TINY + ["--lr", "1e-30"]), acts)["train_loss"][:, 0]
    assert torch.allclose(frozen, frozen[0].expand_as(frozen), rtol=1e-6)   # same points every step
    fresh = mlp.train(mlp.get_args(TINY + ["--lr", "1e-30", "--train-size", "0"]), acts)["train_loss"][:, 0]
    assert fresh.std() / fresh.mean() > 0.01
    # a handful of points is fitted far below the held-out loss: an exact fit is not generalisation
    fit = mlp.train(mlp.get_args(TINY + ["--train-size", "8", "--steps", "150", "--lr", "1e-2"]), acts)
    assert fit["train_loss"][-1, 0] < 0.05 * fit["eval_loss"][-1, 0]


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------

def test_end_to_end_run_is_deterministic(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        mlp.main(TINY + ["--out", str(tmp_path / name)] + (["--no-plots"] if name == "b" else []))
        runs.append(json.load(open(tmp_path / name / "results.json")))
    printed = capsys.readouterr().out
    assert runs[0]["train_loss"] == runs[1]["train_loss"] and runs[0]["r2"] == runs[1]["r2"]
    assert [r["student"] for r in runs[0]["rows"]] == ["tanh", "relu", "relu2", "silu", "silu2",
                                                       "gensilu(1,0)", "gensilu(0,1)", "gensilu(1,1)"]
    for name in ("curves.png", "gensilu_shapes.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path / "a") if ".tmp" in p]
    assert printed.count("verdict: ") == 6 and "| gensilu(1,1) |" in printed
    rows = {r["student"]: r for r in runs[0]["rows"]}
    ratio = rows["silu"]["train_loss"] / rows["gensilu(0,1)"]["train_loss"]
    assert f"gensilu(0,1) {rows['gensilu(0,1)']['train_loss']:.2e} ({ratio:.2g}x)" in printed


def test_presets_fill_only_what_was_not_given():
    a = mlp.get_args(["--quick", "--width", "8"])
    assert (a.width, a.steps, a.train_size) == (8, mlp.QUICK["steps"], mlp.QUICK["train_size"])
    b = mlp.get_args([])
    assert (b.width, b.steps, b.train_size) == (32, 1000, 512)
    assert [act.params["period"] for act in b.act_list if act.name == "gensilu"] == [1.0, 1.0, 1.0]


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["--acts", "relu,gensilu:-1,0"], "left cycles must be"),
    (["--acts", "gensilu:1,1,0"], "period must be"),
    (["--depth", "0"], "--depth must be a positive integer"),
    (["--train-size", "-5"], "--train-size must be a positive integer or 0"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--norm", "layer"], "invalid choice: 'layer'"),
    (["--width", "x"], "invalid int value: 'x'"),
    (["--acts", "swish"], "unknown activation 'swish'"),
])
def test_bad_arguments_fail_with_one_line(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        mlp.get_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and err.count("\n") == 1, err


def test_bad_input_from_the_command_line_no_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:                      # output dir under a regular file
        mlp.main(["--out", str(blocker / "sub")])
    assert "not writable" in str(e.value.code) and "\n" not in str(e.value.code)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "mlp.py"), "--acts", "gensilu:0,1,0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert not os.path.exists(tmp_path / "out")               # nothing written on bad input
