"""Tests for train_memory.py: one configuration trained alone equals the same one inside the
ensemble; the rank-one edit is rank one, least-norm and makes the new value the argmax; matched
widths match parameter counts; bits per parameter and the capacity search on crafted results;
plain vs GLU in --acts; unit counts and effective ranks on crafted inputs; one-line errors; a
tiny end-to-end run."""
import math
import os
import subprocess
import sys
import types

import pytest
import torch

import train_memory as tm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--d-model", "4", "--vocab", "8", "--steps", "12", "--lr", "0.02"]


def args_for(tmp_path, *extra):
    return tm.parse_args(TINY + ["--out", str(tmp_path)] + list(extra))


def test_one_configuration_alone_equals_the_same_one_in_the_ensemble(tmp_path):
    big = args_for(tmp_path, "--acts", "relu,gelu,swiglu,sqs", "--ratios", "1,2",
                   "--loads", "0.5,1", "--seeds", "2")
    alone = args_for(tmp_path, "--acts", "sqs", "--ratios", "2", "--loads", "0.5")
    groups, single = tm.build_groups(big), tm.build_groups(alone)
    tm.train(groups, 12, 0.02, records=4)
    tm.train(single, 12, 0.02, records=4)
    g = next(x for x in groups if x.family == "glu" and x.ratio == 2)
    one = next(x for x in single if x.family == "glu")
    m = g.member(g.labels.index("sqs"), 0, 0)            # load 0.5 (padded in the ensemble), seed 0
    assert one.memory.M == 1 and int(g.n_of[m]) == int(one.n_of[0]) < g.mask.shape[1]
    for name, p in one.memory.named_parameters():
        assert torch.allclose(p[0], getattr(g.memory, name)[m], rtol=1e-5, atol=1e-6), name
    assert torch.equal(one.recall[:, 0], g.recall[:, m])
    # and the weights moved: the test would pass trivially on untrained weights
    fresh = tm.Memory(one.memory.acts, True, [0], 4, 8)
    assert not torch.allclose(fresh.W_down, one.memory.W_down)


def test_rank_one_edit_is_rank_one_least_norm_and_exact():
    gen = torch.Generator().manual_seed(0)
    d, h, E = 5, 12, 3
    W = torch.randn(d, h, generator=gen, dtype=torch.float64)
    a = torch.rand(E, h, generator=gen, dtype=torch.float64)
    target = torch.randn(E, d, generator=gen, dtype=torch.float64)
    delta = tm.rank_one_edit(W, a, target)
    for e in range(E):
        assert torch.linalg.matrix_rank(delta[e]) == 1
        assert torch.allclose((W + delta[e]) @ a[e], target[e], atol=1e-12)
        # independent: the least-norm solution of Delta a = e, with vec(Delta) row-major
        system = torch.kron(torch.eye(d, dtype=torch.float64), a[e][None])      # [d, d h]
        least = torch.linalg.pinv(system) @ (target[e] - W @ a[e])
        assert torch.allclose(delta[e].flatten(), least, atol=1e-10)


def test_rank_one_edit_of_a_trained_memory_makes_the_new_value_the_argmax(tmp_path):
    args = args_for(tmp_path, "--acts", "relu,swiglu", "--ratios", "2", "--loads", "1",
                    "--steps", "60")
    groups = tm.build_groups(args)
    tm.train(groups, 60, 0.02, records=2)
    for g in groups:
        m = g.member(0, 0, 0)
        keys, values, U = g.facts(m)
        with torch.no_grad():
            _, a = g.memory.hidden_units(g.keys)
        a, W = a[m, :len(values)], g.memory.W_down[m].detach()
        new = (values + 1 + torch.arange(len(values)) % (U.shape[0] - 1)) % U.shape[0]
        target = (a @ W.T).norm(dim=1, keepdim=True) * U[new]
        delta = tm.rank_one_edit(W, a, target)                                    # one per fact
        for i in range(len(values)):
            logits = U @ ((W + delta[i]) @ a[i])                                  # recomputed here
            assert int(logits.argmax()) == int(new[i]) != int(values[i])
        assert tm.edit_member(g, m, 4, 3, 0.02)["rank-one"][0] == 1.0


def test_matched_widths_give_equal_parameter_counts_within_one_unit():
    for d in (4, 8, 16):
        for ratio in (1, 2, 4, 8):
            h = ratio * d
            hp = tm.matched_width(h)
            plain = tm.Memory([tm.activations.parse_act("relu")], False, [0], d, h)
            glu = tm.Memory([tm.activations.parse_act("silu")], True, [0], d, hp)
            count_plain = sum(p.numel() for p in plain.parameters())
            count_glu = sum(p.numel() for p in glu.parameters())
            assert count_plain == 2 * h * d and count_glu == 3 * hp * d
            assert abs(count_glu - count_plain) <= 1.5 * d            # half a GLU unit (3 d)
            for other in (hp - 1, hp + 1):                            # the nearest width
                assert abs(count_glu - count_plain) <= abs(3 * other * d - count_plain)


def test_bits_per_parameter_on_a_crafted_result():
    assert tm.bits_per_param(96, 16, 192) == 2.0
    cells = {}
    for ratio, params, capacity in ((1, 128, 64), (2, 256, 32), (4, 512, 384)):
        cells[("plain", ratio, "relu")] = dict(
            params=params, hidden=8 * ratio, capacity=capacity, cap=1, ns=[capacity // 2, capacity],
            most=capacity + 1.0, most_load=2.0, gain_above=0.0,
            act=tm.activations.parse_act("relu"))
    args = types.SimpleNamespace(vocab=16, loads=[1.0, 2.0], seeds=1, ratios=[1, 2, 4], d_model=8)
    lines, bits = tm.capacity_section(cells, args)
    assert bits["relu"] == {1: 64 * 4 / 128, 2: 32 * 4 / 256, 4: 384 * 4 / 512}   # 2, 0.5, 3
    rows = [line for line in lines[2].splitlines() if line.startswith("| relu")]
    assert [row.split(" | ")[6] for row in rows] == ["2.00", "0.50", "3.00"]
    assert "for 1 of 1 gates" in lines[4]                 # r = 4 stores the most bits per param


def test_capacity_search_on_crafted_recall_curves(tmp_path):
    assert tm.capacity_index([1.0, 0.995, 0.99, 0.98, 0.4]) == 2
    assert tm.capacity_index([1.0, 0.97, 0.995, 0.5]) == 2     # the largest load that passes
    assert tm.capacity_index([0.9, 0.5]) is None
    args = args_for(tmp_path, "--acts", "relu", "--ratios", "1", "--loads", "0.5,1,2,4")
    g = tm.build_groups(args)[0]
    g.record_steps = [0, 6, 9, 12]
    final = torch.tensor([1.0, 0.995, 0.9, 0.3])                    # loads 0.5, 1, 2, 4
    g.recall = torch.stack([final - 0.3, final - 0.2, final - 0.05, final]).clamp_min(0)
    g.recall = g.recall[:, [g.member(0, load, 0) for load in range(4)]]
    cell = tm.summarise([g], 12)[("plain", 1, "relu")]
    assert cell["cap"] == 1 and cell["capacity"] == g.ns[1]
    assert cell["most"] == pytest.approx(max(r * n for r, n in zip(final.tolist(), g.ns)))
    assert cell["gain_above"] == pytest.approx(0.05)                 # load 2, steps 9 -> 12


def test_acts_tell_plain_from_glu():
    gates = tm.parse_gates("relu,swiglu,glu-gensilu:1,1,sqs:0.01,0.5,1,reglu,gelu")
    assert [(label, glu) for label, _, glu in gates] == [
        ("relu", False), ("swiglu", True), ("glu-gensilu:1,1", True), ("sqs:0.01,0.5,1", True),
        ("reglu", True), ("gelu", False)]
    assert gates[2][1].params == {"left": 1.0, "right": 1.0, "period": 1.0}
    assert gates[1][1].name == "silu" and gates[4][1].name == "relu"


@pytest.mark.parametrize("bad", [
    ["--acts", "nope"], ["--acts", "relu,relu"], ["--acts", "swiglu,glu-silu"], ["--acts", ","],
    ["--ratios", "0"], ["--ratios", "1.5"], ["--loads", "2,1"], ["--loads", "-1"],
    ["--d-model", "0"], ["--vocab", "1"], ["--steps", "0"], ["--lr", "nan"], ["--seeds", "0"]])
def test_bad_input_is_a_one_line_error(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tm.parse_args(["--out", str(tmp_path)] + bad)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in errors[0]


def test_cli_error_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "train_memory.py", "--acts", "relu,bogus", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "error: --acts" in run.stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == []


def test_tiny_end_to_end_run_writes_five_measurements(tmp_path):
    flags = ["--acts", "relu,gelu,silu,swiglu,bilinear", "--ratios", "1,4", "--loads",
             "0.25,0.5,1", "--edits", "2", "--edit-steps", "2", "--out", str(tmp_path)]
    out = tm.main(TINY + flags)
    report = open(tmp_path / "report.md").read()
    assert report == out["report"]
    for k in range(1, 6):
        assert f"## {k}." in report
    assert report.count("verdict") >= 6
    assert sorted(os.listdir(tmp_path)) == ["memory_capacity.png", "memory_edits.png", "report.md"]
    for (family, ratio, label), cell in out["cells"].items():
        recalled = max(r * n for r, n in zip(cell["recall"], cell["ns"]))
        assert math.isclose(cell["most"], recalled)


def test_unit_counts_on_a_crafted_memory():
    # d = V = 2, U = identity; units 0 and 1 write (1, 0), unit 2 writes (0, 1).
    U = torch.eye(2)
    W_down = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a = torch.tensor([[2.0, 1.0, 0.5],          # output (3, 0.5): value 0, held by units 0 and 1
                      [0.1, 0.0, 1.0]])         # output (0.1, 1): value 1, held by unit 2 alone
    values = torch.tensor([0, 1])
    # fact 0: without unit 0 the output is (1, 0.5), still 0; without unit 1, (0, 0.5): forgotten
    assert tm.units_to_forget(a, W_down, U, values).tolist() == [2, 1]
    assert tm.units_for_half(a, W_down, U, values).tolist() == [1, 1]    # 2 of 3; 1 of 1
    assert tm.facts_per_unit(a, W_down, U, values).tolist() == [0, 0, 1]


def test_effective_rank_of_known_spectra():
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))
    assert tm.effective_rank(q[:, :4] * 3.0) == pytest.approx(4.0)     # four equal singular values
    assert tm.effective_rank(torch.outer(torch.arange(1.0, 6.0), torch.ones(3))) == pytest.approx(1)
