"""Sweep config validation: every mistake is reported before anything runs."""

from __future__ import annotations

import pytest

from moebench.sweep.config import ConfigError, load_config, named_configs, validate_config


def base(**over):
    raw = {
        "seed": 0, "repetitions": 2,
        "data": {"n": [500, 1000], "d": 5, "k": 2, "activation": ["linear", "relu"]},
        "budget": {"max_iter": 5, "max_time": 10.0},
        "algorithm": [{"name": "joint_em", "label": "em"},
                      {"name": "tensor_em", "label": "tensor_refine", "params": {"refine": True}}],
    }
    raw.update(over)
    return raw


def test_valid_config_expands_to_cells():
    cfg = validate_config(base())
    assert len(cfg.data_grid) == 4
    assert [v.label for v in cfg.variants] == ["em", "tensor_refine"]
    cells = cfg.cells()
    assert len(cells) == 4 * 2 * 2
    assert len({c.run_id for c in cells}) == len(cells)
    # the data set of a repetition is shared by every variant, the algorithm seed is not
    by_data = {}
    for c in cells:
        by_data.setdefault((c.data_id, c.repetition), set()).add(c.algorithm_seed())
    assert all(len(seeds) == 2 for seeds in by_data.values())
    assert cells[0].variant.timeout == 2 * 10.0 + 30


@pytest.mark.parametrize("where, patch, needle", [
    ("top", {"repetitons": 3}, "unknown key 'repetitons'"),
    ("data", {"data": {"n": 500, "d": 5, "k": 2, "actvation": "linear"}},
     "unknown key data.'actvation'"),
    ("budget", {"budget": {"max_iters": 3}}, "unknown key budget.'max_iters'"),
    ("algorithm", {"algorithm": [{"name": "joint_em", "lable": "x"}]},
     "unknown key algorithm[0].'lable'"),
    ("param", {"algorithm": [{"name": "joint_em", "params": {"n_inits": 3}}]},
     "unknown key algorithm[0].params.'n_inits'"),
    ("grid", {"algorithm": [{"name": "sgd", "grid": {"learning_rate": [0.1]}}]},
     "unknown key algorithm[0].grid.'learning_rate'"),
])
def test_unknown_key_is_named_with_valid_choices(where, patch, needle):
    with pytest.raises(ConfigError) as err:
        validate_config(base(**patch))
    msg = str(err.value)
    assert needle in msg
    assert "valid" in msg


def test_unknown_param_lists_the_algorithm_options():
    with pytest.raises(ConfigError, match="n_init"):
        validate_config(base(algorithm=[{"name": "joint_em", "params": {"n_inits": 3}}]))


def test_unknown_algorithm_and_activation():
    with pytest.raises(ConfigError, match=r"unknown algorithm\[0\]\.name 'jointem'.*joint_em"):
        validate_config(base(algorithm=[{"name": "jointem"}]))
    with pytest.raises(ConfigError, match=r"unknown data.activation 'rleu'.*relu"):
        validate_config(base(data={"n": 500, "d": 5, "k": 2, "activation": ["linear", "rleu"]}))
    with pytest.raises(ConfigError, match="unknown data.gating 'orth'"):
        validate_config(base(data={"n": 500, "d": 5, "k": 2, "gating": "orth"}))


@pytest.mark.parametrize("patch, needle", [
    ({"repetitions": 0}, "repetitions must be an integer >= 1"),
    ({"seed": "x"}, "seed must be an integer"),
    ({"data": {"n": [], "d": 5, "k": 2}}, "data.n is an empty list"),
    ({"data": {"n": 500, "d": 5, "k": 2, "sigma": -1.0}},
     "data.sigma must be a finite real number > 0; got -1.0"),
    ({"data": {"n": 500, "d": 3, "k": 4}}, "invalid"),
    ({"data": {"n": 500, "d": 3, "k": 3, "gating": "orthogonal"}}, "needs d > k"),
    ({"budget": {"max_time": 0}}, "budget.max_time must be a finite real number > 0; got 0"),
    ({"algorithm": []}, "at least one"),
    ({"algorithm": [{"name": "joint_em"}, {"name": "joint_em"}]}, "used twice"),
    ({"algorithm": [{"name": "joint_em", "params": {"random_state": 1}}]}, "set by the runner"),
    ({"algorithm": [{"name": "joint_em", "params": {"max_iter": 3}}]}, "budgets"),
    ({"algorithm": [{"name": "joint_em", "grid": {"n_init": 3}}]}, "non-empty list"),
    ({"algorithm": [{"name": "alt_min"}]}, "does not support activation 'relu'"),
])
def test_bad_values_fail_before_running(patch, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(base(**patch))


def test_grid_makes_variants_and_activation_restriction_drops_cells():
    cfg = validate_config(base(algorithm=[
        {"name": "joint_em", "label": "em", "grid": {"n_init": [1, 3]}},
        {"name": "alt_min", "activations": ["linear"]},
    ]))
    labels = [v.label for v in cfg.variants]
    assert labels == ["em[n_init=1]", "em[n_init=3]", "alt_min"]
    cells = cfg.cells()
    assert all(c.data["activation"] == "linear" for c in cells if c.variant.label == "alt_min")
    assert len(cells) == 2 * 2 * 2 * 2 + 2 * 1 * 2


def test_shipped_configs_validate():
    assert {"quickstart", "paper"} <= set(named_configs())
    quick = load_config("quickstart")
    assert len(quick.cells()) == 24
    assert {v.label for v in quick.variants} == {"tensor_em", "tensor_em_refine", "joint_em",
                                                "sgd"}
    paper = load_config("paper")
    labels = {v.label for v in paper.variants}
    assert {"tensor_em", "tensor_em_refine", "joint_em", "sgd", "alt_min"} <= labels
    assert {s["k"] for s in paper.data_grid} == {2, 3, 4}
    assert {s["activation"] for s in paper.data_grid} == {"linear", "sigmoid", "relu"}
    assert paper.repetitions == 10


def test_config_by_path_and_unknown_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('seed = 3\n[data]\nn = 300\nd = 4\nk = 2\n[[algorithm]]\nname = "joint_em"\n')
    cfg = load_config(path)
    assert cfg.name == "mine" and cfg.seed == 3 and len(cfg.cells()) == 1
    with pytest.raises(FileNotFoundError, match="quickstart"):
        load_config("no_such_config")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    bad.write_text('[data]\nn = 300\nd = 4\nk = 2\nbogus = 1\n[[algorithm]]\nname = "joint_em"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key data.'bogus'"):
        load_config(bad)


def test_assumption_violation_keys_and_stable_ids():
    plain = validate_config(base())
    explicit = validate_config(base(data={"n": [500, 1000], "d": 5, "k": 2,
                                          "activation": ["linear", "relu"],
                                          "input_distribution": "gaussian"}))
    # an optional key at its default leaves run ids and seeds unchanged
    assert [c.run_id for c in plain.cells()] == [c.run_id for c in explicit.cells()]
    assert [c.algorithm_seed() for c in plain.cells()] == \
        [c.algorithm_seed() for c in explicit.cells()]
    varied = validate_config(base(data={"n": 500, "d": 5, "k": 2, "gating_angle": [45.0, 90.0],
                                        "input_distribution": ["gaussian", "student_t"]}))
    assert len(varied.data_grid) == 4
    assert len({c.data_id for c in varied.cells()}) == 4 * 2
    with pytest.raises(ConfigError, match="unknown data.input_distribution 'cauchy'.*laplace"):
        validate_config(base(data={"n": 500, "d": 5, "k": 2, "input_distribution": "cauchy"}))
    with pytest.raises(ConfigError, match="gating_angle"):
        validate_config(base(data={"n": 500, "d": 5, "k": 2, "gating_angle": 120.0}))


def test_data_cells_run_the_union_of_their_grids_once():
    """``cells`` lists explicit cells, each a grid over the other [data] values; an
    overlapping cell runs once, and a cell's runs (ids, data, seeds) are those of the same
    setting in a product grid with the same seed."""
    data = {"n": 500, "d": 5, "k": 2, "activation": ["linear", "relu"],
            "cells": [{"activation": "relu", "sigma": [0.05, 0.5]},
                      {"activation": "linear", "k": 3},
                      {"activation": "relu", "sigma": 0.5}]}
    cfg = validate_config(base(data=data))
    assert [(s["activation"], s["k"], s["sigma"]) for s in cfg.data_grid] == [
        ("relu", 2, 0.05), ("relu", 2, 0.5), ("linear", 3, 0.1)]
    product = validate_config(base(data={"n": 500, "d": 5, "k": [2, 3],
                                         "activation": ["linear", "relu"],
                                         "sigma": [0.05, 0.1, 0.5]}))
    ids = {c.run_id: c for c in product.cells()}
    for cell in cfg.cells():
        twin = ids[cell.run_id]
        assert cell.data_id == twin.data_id
        assert cell.algorithm_seed() == twin.algorithm_seed()
        assert (cell.data_seed().generate_state(2) == twin.data_seed().generate_state(2)).all()


@pytest.mark.parametrize("cells, needle", [
    ([], "data.cells must be a non-empty list, each a table of data keys; got"),
    ({"k": 2}, "data.cells must be a non-empty list, each a table of data keys; got"),
    ([{"k": 2}, 3], "data.cells must be a non-empty list, each a table of data keys; got"),
    ([{"kk": 2}], "unknown key data.cells[0].'kk'; valid keys: n, d, k"),
    ([{"k": 9}], "exceeds the input dimension d = 5"),
    ([{"sigma": -1.0}], "data.sigma"),
])
def test_data_cells_errors(cells, needle):
    with pytest.raises(ConfigError) as err:
        validate_config(base(data={"n": 500, "d": 5, "k": 2, "cells": cells}))
    assert needle in str(err.value)
