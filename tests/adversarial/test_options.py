"""Adversarial attempts on estimator options and config params (issue 11 item 5, issue 12 item 1).

Each item is one attempt a careless user could make. On commit 032b10d each was accepted
silently (``sigma=True`` taken as 1.0), named no parameter (``random_state=-1``), or passed
``moebench run --dry-run`` and then failed every run; the sweep budget never reached
tensor_em. Now every estimator option is checked against its class's one declaration,
by ``fit`` and at config time, with a message naming the parameter, the value and the
valid values.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import moebench
from moebench.cli import main as cli_main


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(2000, 4, 2, activation="linear", sigma=0.1, random_state=3)


# --------------------------------------------------------------------------- Python API
@pytest.mark.parametrize("name, option, value, needle", [
    # was: float(True) = 1.0 used as the noise level
    ("joint_em", "sigma", True, "sigma must be a finite real number > 0 or None; got True"),
    ("tensor_em", "sigma", np.True_, "sigma must be a finite real number > 0 or None"),
    # was: float("0.1") accepted, a string silently converted
    ("sgd", "sigma", "0.1", "sigma must be a finite real number > 0 or None; got '0.1'"),
    # was: numpy's "expected non-negative integer", naming no parameter
    ("joint_em", "random_state", -1, "random_state must be None, an integer >= 0"),
    # was: True taken as the seed 1
    ("alt_min", "random_state", True, "random_state must be None, an integer >= 0"),
    # was: TypeError (tensor_em had no budget parameters)
    ("tensor_em", "max_iter", -1, "max_iter must be an integer >= 1 or None; got -1"),
    ("tensor_em", "max_time", float("nan"), "max_time must be a finite real number > 0 or None"),
], ids=lambda v: repr(v) if not isinstance(v, str) else v[:20])
def test_bad_option_is_refused_naming_it(data, name, option, value, needle):
    est = moebench.get_algorithm(name, n_experts=2, **{option: value})
    with pytest.raises(ValueError) as info:
        est.fit(data.X, data.y)
    assert needle in str(info.value)


def test_ambiguous_gating_max_iter_is_refused(data):
    # was: Newton steps in joint_em, EM iterations in tensor_em, under one name
    with pytest.raises(ValueError, match="unknown parameter.*gating_max_iter.*gating_em_iter"):
        moebench.get_algorithm("tensor_em", n_experts=2, gating_max_iter=5)


def test_tensor_em_honours_the_iteration_budget(data):
    # was: TypeError: tensor_em had no max_iter, so the sweep budget never reached it
    est = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0, max_iter=2)
    est.fit(data.X, data.y)
    assert est.n_iter_ == 2 and est.stop_reason_ == "max_iter" and not est.converged_


def test_tensor_em_honours_the_time_budget(data):
    est = moebench.get_algorithm("tensor_em", n_experts=2, random_state=0, refine=True,
                                 max_time=1e-9)
    est.fit(data.X, data.y)
    # one gating-EM iteration (the start), then the spent budget ends it and the joint EM
    # (refine) runs no iteration: n_iter_ counts joint-EM iterations, as joint_em's
    assert est.stop_reason_ == "max_time" and est.n_iter_ == 0 and est.gating_n_iter_ == 1
    assert {r["phase"] for r in est.history_} == {"moments", "decomposition", "gating_em"}


# --------------------------------------------------------------------------- configs, dry run
CONFIG = """
name = "options_attempt"
[data]
n = 500
d = 4
k = 2
n_test = 200
[[algorithm]]
name = "{name}"
{line}
"""


@pytest.mark.parametrize("name, line, needle", [
    ("joint_em", "params = {n_init = -2}", "params: n_init must be an integer >= 1; got -2"),
    ("joint_em", "params = {n_init = 0}", "n_init must be an integer >= 1; got 0"),
    ("joint_em", "params = {n_init = 2.5}", "n_init must be an integer >= 1; got 2.5"),
    ("joint_em", "params = {n_init = true}", "n_init must be an integer >= 1; got True"),
    ("joint_em", "params = {tol = nan}", "tol must be a finite real number >= 0; got nan"),
    ("joint_em", "grid = {n_init = [1, -3]}", "grid.n_init: n_init must be an integer >= 1"),
    ("sgd", "params = {lr = -1.0}", "lr must be a finite real number > 0; got -1.0"),
    ("sgd", "params = {lr = inf}", "lr must be a finite real number > 0; got inf"),
    ("sgd", "params = {lr = true}", "lr must be a finite real number > 0; got True"),
    ("sgd", "params = {max_epochs = 0}", "max_epochs must be an integer >= 1; got 0"),
    ("sgd", "params = {optimizer = \"rmsprop\"}", "unknown optimizer 'rmsprop'; valid choices"),
    ("sgd", "params = {batch_size = \"big\"}", "batch_size must be an integer >= 1, one of "
     "'auto' or None; got 'big'"),
    ("tensor_em", "params = {refine = \"yes\"}", "refine must be True or False; got 'yes'"),
    ("tensor_em", "params = {refine = 1}", "refine must be True or False; got 1"),
    ("tensor_em", "params = {n_starts = -5}", "n_starts must be an integer >= 1; got -5"),
    ("tensor_em", "params = {max_iter = 5}", "params.max_iter carries the max_iter budget"),
    ("alt_min", "params = {ridge = -0.5}", "ridge must be a finite real number >= 0; got -0.5"),
], ids=lambda v: v if len(v) < 40 else v[:40])
def test_dry_run_rejects_a_bad_option(tmp_path, capsys, name, line, needle):
    path = tmp_path / "attempt.toml"
    path.write_text(CONFIG.format(name=name, line=line))
    code = cli_main(["run", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2, f"dry run accepted {line!r}"
    assert needle in err and "algorithm[0]." in err
    assert "Traceback" not in err


def test_dry_run_checks_k_le_d_on_csv_data(tmp_path, capsys):
    # was: no "d" key on CSV data, so k > d passed and every tensor_em run errored
    rng = np.random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.4f}" for v in rng.standard_normal(4)) for _ in range(60))
    (tmp_path / "t.csv").write_text("a,b,c,y\n" + rows + "\n")
    (tmp_path / "c.toml").write_text(textwrap.dedent(f"""
        name = "csv_k_gt_d"
        [data]
        source = {{csv = "{tmp_path / 't.csv'}", target = "y"}}
        k = 4
        [[algorithm]]
        name = "tensor_em"
    """))
    code = cli_main(["run", str(tmp_path / "c.toml"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot run the data setting k=4, d=3" in err
    assert "n_experts <= d" in err
