"""Tests for mlp.py (blog "MLP 2"): the R^2 measurement against an independent least-squares fit
and its guards, the batched model against a plain nn.Module (--norm, --alpha), students trained
alone and a diverging student inside the batch, the rank correlation with ties, the sine sweep's
trainability measures, determinism, the presets, the end-to-end run and one-line errors for bad
input."""
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import activations
import mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--width", "8", "--depth", "3", "--expand", "2", "--steps", "12", "--eval-every", "4",
        "--eval-size", "64", "--train-size", "32", "--sine-ks", "none"]


# ------------------------------------------------------------------------------------------------
# R^2
# ------------------------------------------------------------------------------------------------

def lstsq_r2(x, y):
    """Independent R^2: solve [X 1] beta = Y with torch.linalg.lstsq in float64, residuals
    directly."""
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
    assert abs(pooled.item() - per_coord.item()) > 0.05      # the two conventions differ here


def test_r2_guards_constant_and_non_finite_outputs():
    x = torch.randn(100, 4)
    constants = (torch.full((100, 3), 5.0), torch.zeros(100, 3),
                 torch.tensor([0.1, -3.7, 1e-3]).expand(100, 3))
    for y in constants:
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
# The batched model against a plain nn.Module
# ------------------------------------------------------------------------------------------------

class PlainBlock(torch.nn.Module):
    """The reference: one residual block written with nn.Linear and nn.LayerNorm."""

    def __init__(self, p, m, act, norm, alpha):
        super().__init__()
        d, hidden = p["w1"].shape[1:]
        self.fc1 = torch.nn.Linear(d, hidden)
        self.fc2 = torch.nn.Linear(hidden, d)
        self.ln = torch.nn.LayerNorm(d)
        with torch.no_grad():                               # model m's weights; nn.Linear is x W^T
            self.fc1.weight.copy_(p["w1"][m].T)
            self.fc1.bias.copy_(p["b1"][m, 0])
            self.fc2.weight.copy_(p["w2"][m].T)
            self.fc2.bias.copy_(p["b2"][m, 0])
            self.ln.weight.copy_(p["g"][m, 0])
            self.ln.bias.copy_(p["b"][m, 0])
        self.act, self.norm, self.alpha = act, norm, alpha

    def forward(self, h):
        if self.norm == "pre":
            return h + self.alpha * self.fc2(self.act(self.fc1(self.ln(h))))
        if self.norm == "post":
            return self.ln(h + self.alpha * self.fc2(self.act(self.fc1(h))))
        return h + self.alpha * self.fc2(self.act(self.fc1(h)))


def plain_network(blocks, m, act, norm, alpha):
    return torch.nn.Sequential(*[PlainBlock(p, m, act, norm, alpha) for p in blocks])


@pytest.mark.parametrize("norm,alpha", [("pre", 1.0), ("post", 0.5), ("none", 0.3)])
def test_forward_matches_a_plain_module(norm, alpha):
    gen = torch.Generator().manual_seed(3)
    blocks = mlp.init_blocks(2, 3, 6, 12, gen)
    for p in blocks:                                        # a learned gain and bias, not 1 and 0
        p["g"] = 1 + 0.5 * torch.randn(2, 1, 6, generator=gen)
        p["b"] = 0.3 * torch.randn(2, 1, 6, generator=gen)
    x = torch.randn(50, 6, generator=gen)
    acts = activations.parse_acts("tanh,silu")
    out = mlp.forward(blocks, x.expand(2, 50, 6), acts, norm, alpha)[0]
    for m, act in enumerate((torch.tanh, F.silu)):
        with torch.no_grad():
            ref = plain_network(blocks, m, act, norm, alpha)(x)
        assert torch.allclose(out[m], ref, rtol=1e-5, atol=1e-5), (norm, m)


@pytest.mark.parametrize("norm,alpha", [("post", 0.5), ("none", 0.3)])
def test_the_norm_and_alpha_flags_reach_training(norm, alpha):
    """The step-0 training loss of train() equals the plain modules' MSE: the teacher and student
    inits (generators 1000 and 2000), the training inputs (generator 0) and the flags as stated."""
    a = mlp.get_args(TINY + ["--norm", norm, "--alpha", str(alpha), "--steps", "1"])
    loss = mlp.train(a, activations.parse_acts("relu"))["train_loss"][0, 0]
    teacher = mlp.init_blocks(1, 3, 8, 16, torch.Generator().manual_seed(1000))
    student = mlp.init_blocks(1, 3, 8, 16, torch.Generator().manual_seed(2000))
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = plain_network(teacher, 0, F.silu, norm, alpha)(x)
        ref = (plain_network(student, 0, torch.relu, norm, alpha)(x) - y).square().mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    other = mlp.get_args(TINY + ["--norm", "pre", "--steps", "1"])
    assert mlp.train(other, activations.parse_acts("relu"))["train_loss"][0, 0] != loss


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


class TanhThenNaN:
    """tanh for its first `calls` calls, NaN afterwards: drives one student to NaN mid-run."""
    name, spec, params = "tanh_then_nan", "tanh_then_nan", {}

    def __init__(self, calls):
        self.left = calls

    def __call__(self, x, use_kernel=True):
        self.left -= 1
        if self.left < 0:
            return torch.tanh(x) * float("nan")
        return torch.tanh(x)


def test_a_diverging_student_leaves_the_others_bit_identical():
    a = mlp.get_args(TINY)
    healthy = mlp.train(a, activations.parse_acts("silu,tanh,relu"), log=lambda message: None)
    messages = []
    acts = [activations.parse_act("silu"), TanhThenNaN(20), activations.parse_act("relu")]
    sick = mlp.train(a, acts, log=messages.append)
    # 3 calls per forward pass (3 blocks), steps 0, 4, 8 add an evaluation: steps 0-3 make 15
    # calls, step 4's evaluation 18, and its training pass turns NaN in its third block (call 21)
    assert sick["diverged"] == [None, 4, None]
    assert len(messages) == 1 and "diverged at step 4" in messages[0]
    assert torch.isnan(sick["train_loss"][4:, 1]).all()
    assert torch.equal(sick["train_loss"][:4, 1], healthy["train_loss"][:4, 1])
    for key in ("train_loss", "eval_loss", "r2", "r2_coord"):
        for m in (0, 2):
            assert torch.equal(sick[key][:, m], healthy[key][:, m]), key
    assert torch.isnan(sick["r2"][-1, 1]).all()
    rows = mlp.summarize(a, acts, sick)
    assert [r["diverged"] for r in rows] == [0, 1, 0]
    assert "| tanh_then_nan (1 diverged) |" in mlp.markdown(rows)


class Recorder:
    """silu that records the use_kernel argument it is called with."""
    name, spec, params = "silu", "silu", {}

    def __init__(self):
        self.seen = set()

    def __call__(self, x, use_kernel=True):
        self.seen.add(use_kernel)
        return F.silu(x)


def test_no_kernels_reaches_the_activation():
    for extra, expected in (([], {True}), (["--no-kernels"], {False})):
        act = Recorder()
        mlp.train(mlp.get_args(TINY + ["--steps", "2"] + extra), [act])
        assert act.seen == expected


def test_the_fixed_set_is_fixed_and_fresh_batches_are_not():
    acts = activations.parse_acts("silu")
    frozen = mlp.train(mlp.get_args(TINY + ["--lr", "1e-30"]), acts)["train_loss"][:, 0]
    assert torch.allclose(frozen, frozen[0].expand_as(frozen), rtol=1e-6)   # same points each step
    fresh_args = mlp.get_args(TINY + ["--lr", "1e-30", "--train-size", "0"])
    fresh = mlp.train(fresh_args, acts)["train_loss"][:, 0]
    assert fresh.std() / fresh.mean() > 0.01
    # a handful of points is fitted far below the held-out loss: an exact fit is not generalisation
    few = mlp.get_args(TINY + ["--train-size", "8", "--steps", "150", "--lr", "1e-2"])
    fit = mlp.train(few, acts)
    assert fit["train_loss"][-1, 0] < 0.05 * fit["eval_loss"][-1, 0]


# ------------------------------------------------------------------------------------------------
# Rank correlation and the sweep's trainability measures
# ------------------------------------------------------------------------------------------------

def test_spearman_uses_mean_ranks_for_ties():
    # u = [10, 20, 20, 30] -> ranks [1, 2.5, 2.5, 4]; v = [1, 3, 2, 4] -> ranks [1, 3, 2, 4].
    # Centred (mean 2.5): [-1.5, 0, 0, 1.5] and [-1.5, 0.5, -0.5, 1.5];
    # covariance sum 2.25 + 2.25 = 4.5, squares 4.5 and 5: rho = 4.5 / sqrt(4.5 * 5).
    assert mlp.spearman([10, 20, 20, 30], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # ties on both sides: u ranks [1.5, 1.5, 3], v ranks [2.5, 1, 2.5]:
    # centred [-0.5, -0.5, 1] and [0.5, -1, 0.5]: sum 0.25 + 0.5 ... = -0.25 + 0.5 + 0.5 = 0.75,
    # squares 1.5 and 1.5: rho = 0.5.
    assert mlp.spearman([0.1, 0.1, 0.7], [5, 2, 5]) == pytest.approx(0.5)
    assert mlp.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)     # order only
    assert mlp.spearman([3, 1, 2], [1e-9, 1e3, 5]) == pytest.approx(-1.0)


def test_trainability_counts_spikes_and_the_first_step_at_the_target():
    #                 0    1    2    3    4    5    6    7     8      9      10
    curve = torch.tensor([1.0, 0.5, 0.2, 0.5, 0.6, 0.1, 0.3, 0.05, 1e-13, 5e-13, 1e-13])
    # spike 1 starts at step 3 (0.5 > 2 x 0.2) and lasts through step 4; spike 2 at step 6
    # (0.3 > 2 x 0.1); 5e-13 is 5x the lowest value but below the floor: not a spike
    assert mlp.trainability(curve, target=0.15) == (2, 5)
    assert mlp.trainability(curve, target=1e-20) == (2, None)
    assert mlp.trainability(torch.tensor([1.0, 0.4, float("nan"), 9.0]), 0.5) == (0, 1)


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------

MAIN_LABELS = ["tanh", "relu", "relu2", "silu", "silu2",
               "gensilu(1,0)", "gensilu(0,1)", "gensilu(1,1)"]


def test_end_to_end_run_is_deterministic(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        extra = []
        if name == "b":
            extra = ["--no-plots"]
        mlp.main(TINY + ["--out", str(tmp_path / name)] + extra)
        runs.append(json.load(open(tmp_path / name / "results.json")))
    printed = capsys.readouterr().out
    assert runs[0]["train_loss"] == runs[1]["train_loss"] and runs[0]["r2"] == runs[1]["r2"]
    assert [r["student"] for r in runs[0]["rows"]] == MAIN_LABELS
    for name in ("curves.png", "gensilu_shapes.png", "loss_vs_r2.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "a" / "sine_sweep.png").exists()      # --sine-ks none
    assert not [p for p in os.listdir(tmp_path / "a") if ".tmp" in p]
    assert printed.count("verdict: ") == 6 and "| gensilu(1,1) |" in printed
    assert "fused kernel calls" not in printed                   # printed on CUDA only
    rows = {r["student"]: r for r in runs[0]["rows"]}
    ratio = rows["silu"]["train_loss"] / rows["gensilu(0,1)"]["train_loss"]
    assert f"gensilu(0,1) {rows['gensilu(0,1)']['train_loss']:.2e} ({ratio:.2g}x)" in printed


def test_the_sine_sweep_end_to_end(tmp_path, capsys):
    mlp.main(TINY + ["--acts", "relu", "--sine-ks", "1,8", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    res = json.load(open(tmp_path / "results.json"))
    labels = [r["student"] for r in res["rows"]]
    assert labels == ["relu", "silu", "sin(1x)", "sin(8x)", "x+sin(1x)", "x+sin(8x)"]  # + SiLU
    assert (tmp_path / "sine_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss = torch.tensor(res["train_loss"])                       # [steps + 1, models]
    silu_final = loss[-1, 1].item()
    for m, row in enumerate(res["rows"]):                        # an independent first hit
        hits = (loss[:, m] <= silu_final).nonzero()
        first = hits[0, 0].item() if len(hits) else None
        assert row["reached"] == [first]
        assert row["fall"] == pytest.approx(loss[0, m].item() / loss[-1, m].item(), rel=1e-6)
    r2 = {row["student"]: row["r2"] for row in res["rows"]}
    assert r2["sin(8x)"] < r2["sin(1x)"]                         # a wiggle is less affine
    assert "verdict: sin(kx): lower R² with higher frequency: holds" in printed
    assert "verdict: x+sin(kx): lower R² with higher frequency:" in printed
    # one main student: no verdict of the blog's; the sweep: the test, two families, correlation
    assert printed.count("verdict: ") == 4


def test_presets_fill_only_what_was_not_given():
    a = mlp.get_args(["--quick", "--width", "8"])
    assert (a.width, a.steps, a.train_size) == (8, mlp.QUICK["steps"], mlp.QUICK["train_size"])
    assert a.ks == [1.0, 4.0, 16.0]
    b = mlp.get_args([])
    assert (b.width, b.steps, b.train_size, b.ks) == (32, 1000, 512, [1.0, 2.0, 4.0, 8.0, 16.0])
    assert [act.params["period"] for act in b.act_list if act.name == "gensilu"] == [1.0, 1.0, 1.0]
    assert mlp.get_args(["--quick", "--sine-ks", "none"]).ks == []


def test_every_flag_has_a_help_text_with_its_default():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "mlp.py"), "--help"],
                       capture_output=True, text=True, timeout=120)
    options = r.stdout.split("options:")[1]
    entries = {}
    for entry in re.split(r"\n  (?=-)", options):            # one entry per option
        words = entry.split()
        if words:
            entries[words[0].rstrip(",")] = " ".join(words)
    flags = [f"--{key.replace('_', '-')}" for key in mlp.CONFIG]
    flags += ["--quick", "--no-plots", "--no-kernels", "--compare-naive"]
    for flag in flags:
        assert "(default" in entries[flag], entries[flag]


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,msg", [
    (["--acts", "relu,gensilu:-1,0"], "left cycles must be"),
    (["--acts", "gensilu:1,1,0"], "period must be"),
    (["--depth", "0"], "--depth must be a positive integer"),
    (["--train-size", "-5"], "--train-size must be a positive integer or 0"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--alpha", "inf"], "--alpha finite"),
    (["--norm", "layer"], "invalid choice: 'layer'"),
    (["--width", "x"], "invalid int value: 'x'"),
    (["--acts", "swish"], "unknown activation 'swish'"),
    (["--sine-ks", "1,0"], "frequency k must be"),
    (["--sine-ks", "1,two"], "could not convert"),
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
