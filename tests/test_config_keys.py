"""Config keys are declared once (moebench.sweep.config_keys): the validator checks through
the declaration, and the command line's argparse types come from the same constraints."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest

from moebench.cli import build_parser
from moebench.constraints import Interval, ListOf, Matches, Options, argparse_type
from moebench.sweep.columns import SYNTHETIC_SETTING_COLUMNS
from moebench.sweep.config import ConfigError, load_config, named_configs, validate_config
from moebench.sweep.config_keys import (
    CELLS_KEY,
    FAMILY_DATA_KEYS,
    JOBS,
    REQUIRED,
    SYNTHETIC,
    TABLES,
    TOP,
    ConfigKey,
)

BASE = {"seed": 0, "repetitions": 1,
        "data": {"n": 500, "d": 5, "k": 2},
        "budget": {"max_iter": 5, "max_time": 10.0},
        "algorithm": [{"name": "joint_em", "label": "em"}]}
CSV = {"source": {"csv": "no_such_file.csv", "target": "y"}, "k": 2}


def patched(path: str, value, base=BASE):
    """``base`` with ``value`` at the dotted ``path`` (``algorithm.0.label``)."""
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(last) if isinstance(node, list) else last] = value
    return raw


# --------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("name", named_configs())
def test_every_shipped_config_loads(name):
    from moebench.sweep.config import resolve_config, tomllib

    raw = tomllib.loads(resolve_config(name)[0])
    csv = raw.get("data", {}).get("source", {}).get("csv")
    if csv and not Path(csv).is_file():
        pytest.skip(f"{name} reads {csv}, absent here")
    config = load_config(name)
    assert config.variants and config.data_grid


# --------------------------------------------------------------------------- the declaration
def test_every_key_is_declared_with_a_doc_and_a_valid_default():
    for table in TABLES:
        assert len(set(table.names())) == len(table.keys), table.name
        for key in table:
            assert key.doc and "\n" not in key.doc, f"{table.name}.{key.name}"
            if key.default is not None and key.default is not REQUIRED:
                key.check(key.default, key.name)  # a default is a valid value
    # every synthetic key is a setting column, but the softmax family's optional keys (left
    # out of ids and summaries while None)
    assert tuple(k for k in SYNTHETIC.names()
                 if k not in (CELLS_KEY, *FAMILY_DATA_KEYS)) == SYNTHETIC_SETTING_COLUMNS


def test_the_validator_accepts_exactly_the_declared_keys():
    """An undeclared key is refused in every table; the message lists the declared ones."""
    for path, table in [("bogus", TOP), ("data.bogus", SYNTHETIC),
                        ("budget.bogus", None), ("algorithm.0.bogus", None),
                        ("report.bogus", None)]:
        with pytest.raises(ConfigError, match="unknown key .*'bogus'.*valid keys: ") as err:
            validate_config(patched(path, 1, {**BASE, "report": {}}))
        if table is not None:
            assert ", ".join(table.names()) in str(err.value)
    assert validate_config(BASE).raw == BASE


# --------------------------------------------------------------------------- adversarial values
@pytest.mark.parametrize("path, value, message", [
    # top level
    ("seed", -1, "seed must be an integer >= 0; got -1"),
    ("repetitions", 1.5, "repetitions must be an integer >= 1; got 1.5"),
    ("success_threshold", 0, "success_threshold must be a finite real number > 0; got 0"),
    ("success_threshold", float("inf"), "must be a finite real number > 0; got inf"),
    ("description", 3, "description must be a string; got 3"),
    ("name", "../x", "name must be a plain name: 1 to 100 letters, digits"),
    ("data", [1], "data must be a table ([data]); got [1]"),
    # synthetic [data]
    ("data.n", 0, "data.n must be an integer >= 1; got 0"),
    ("data.k", [2, 1], "data.k must be an integer >= 2; got 1"),
    ("data.n_test", True, "data.n_test must be an integer >= 2; got True"),
    ("data.sigma", float("nan"), "data.sigma must be a finite real number > 0; got nan"),
    ("data.min_angle", 95.0, "data.min_angle must be a finite real number in [0, 90]; got 95.0"),
    ("data.expert_angle", 0, "data.expert_angle must be a finite real number in (0, 90]; "
                             "got 0"),
    ("data.gating_angle", -1, "data.gating_angle must be a finite real number in [0, 90]"),
    ("data.gating", "orth", "unknown data.gating 'orth'; valid choices are 'orthogonal', "
                            "'generic'"),
    ("data.activation", ["linear", 3], "unknown data.activation 3; valid choices are 'linear'"),
    ("data.d", [], "data.d is an empty list; give at least one value"),
    # [budget]
    ("budget.max_iter", 0, "budget.max_iter must be an integer >= 1; got 0"),
    ("budget.max_time", -1.0, "budget.max_time must be a finite real number > 0; got -1.0"),
    ("budget.timeout", "60", "budget.timeout must be a finite real number > 0; got '60'"),
    # [[algorithm]]
    ("algorithm.0.max_iter", 0, "algorithm[0].max_iter must be an integer >= 1; got 0"),
    ("algorithm.0.known_sigma", "yes", "algorithm[0].known_sigma must be True or False; "
                                       "got 'yes'"),
    ("algorithm.0.label", "", "algorithm[0].label must be a non-empty string; got ''"),
    ("algorithm.0.activations", ["rleu"], "algorithm[0].activations must be a non-empty "
                                          "list, each one of 'linear'"),
    ("algorithm.0.only", {"k": 1}, "algorithm[0].only.k must be an integer >= 2; got 1"),
    ("algorithm.0.params", [1], "algorithm[0].params must be a table of estimator options"),
    ("algorithm.0.name", "jointem", "unknown algorithm[0].name 'jointem'; valid choices are "
                                    "'alt_min', 'joint_em'"),
    ("algorithm", [3], "algorithm must be a non-empty list, each an [[algorithm]] "
                          "table; got [3]"),
    # [report]
    ("report", {"references": "em"}, "report.references must be a non-empty list, each a "
                                     "string; got 'em'"),
    ("report", {"colors": ["red"]}, "report.colors must be a table {label = \"colour\"}; got"),
])
def test_bad_values_name_the_key_and_the_valid_values(path, value, message):
    with pytest.raises(ConfigError) as err:
        validate_config(patched(path, value))
    assert message in str(err.value)


@pytest.mark.parametrize("path, value, message", [
    ("data.folds", 1, "data.folds must be an integer >= 2; got 1"),
    ("data.k", [2, 0], "data.k must be an integer >= 2; got 0"),
    ("data.activation", "rleu", "unknown data.activation 'rleu'; valid choices are 'linear'"),
    ("data.source", "x.csv", "data.source must be a table {csv = \"path\", target = "
                             "\"column\", ...}; got 'x.csv'"),
    ("data.source.csv", 3, "data.source.csv must be a string; got 3"),
    ("data.source.features", "a", "data.source.features must be a list, each a string"),
    ("data.source.bogus", 1, "unknown key data.source.'bogus'; valid keys: csv, target, "
                             "features, sep"),
])
def test_bad_csv_data_values_fail_before_the_file_is_read(path, value, message):
    with pytest.raises(ConfigError) as err:  # the file does not exist: checked before
        validate_config(patched(path, value, {**BASE, "data": CSV}))
    assert message in str(err.value)
    with pytest.raises(ConfigError, match=r"data\.source\.target is required; valid: a string"):
        validate_config(patched("data.source", {"csv": "x.csv"}, {**BASE, "data": CSV}))


def test_a_file_error_names_the_file_the_key_and_the_range(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[data]\nn = 300\nd = 4\nk = 2\nmin_angle = 120\n'
                    '[[algorithm]]\nname = "joint_em"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: data.min_angle must be a finite real number in "
                              f"[0, 90]; got 120")


# --------------------------------------------------------------------------- the command line
def _parse_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("option, key, text, value", [
    ("--sigma", "sigma", "-1", -1.0),
    ("--k", "k", "1", 1),
    ("--n", "n", "0", 0),
    ("--min-angle", "min_angle", "91", 91.0),
    ("--gating-scale", "gating_scale", "-0.5", -0.5),
])
def test_generate_options_refuse_what_the_config_key_refuses_in_the_same_words(
        capsys, option, key, text, value):
    argv = ["generate", "--n", "10", "--d", "3", "--k", "2", "--out", "x.npz", option, text]
    line = _parse_error(capsys, argv)
    with pytest.raises(ConfigError) as err:
        validate_config(patched(f"data.{key}", value))
    wording = str(err.value).split(f"data.{key} ", 1)[1]  # "must be ...; got ..."
    assert line.endswith(f"argument {option}: {wording}")


def test_jobs_is_one_constraint_on_the_command_line_and_in_the_api(capsys, tmp_path):
    from moebench.sweep.classify import classify_results
    from moebench.sweep.runner import run_sweep

    assert "argument --jobs/-j: must be an integer >= 1; got 0" in _parse_error(
        capsys, ["run", "quickstart", "--jobs", "0"])
    assert "argument --jobs/-j: must be an integer >= 1; got 'two'" in _parse_error(
        capsys, ["classify", str(tmp_path), "--jobs", "two"])
    config = validate_config(BASE)
    for call in (lambda: run_sweep(config, tmp_path / "out", jobs=0),
                 lambda: classify_results(tmp_path, jobs=True)):
        with pytest.raises(ValueError, match=f"jobs must be {JOBS}; got (0|True)"):
            call()
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_argparse_type_parses_by_the_constraint_kind():
    count = argparse_type(Interval(int, 1))
    assert count("3") == 3 and count.__name__ == "an integer >= 1"
    for text, shown in (("1.5", "'1.5'"), ("0", "0"), ("x", "'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=f"integer >= 1; got {shown}$"):
            count(text)
    ratio = argparse_type(Interval(float, 0, 1, closed="left"))
    assert ratio("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"in \[0, 1\); got 1.0$"):
        ratio("1")
    with pytest.raises(argparse.ArgumentTypeError, match="got '1e999'$"):
        ratio("1e999")
    pick = argparse_type(Options(("a", "b")))
    assert pick("a") == "a"
    with pytest.raises(argparse.ArgumentTypeError, match="must be one of 'a', 'b'; got 'c'"):
        pick("c")


def test_list_matches_and_lazy_options_constraints():
    names = ["a"]
    lazy = Options(lambda: names)
    assert not lazy.is_satisfied_by("b")
    names.append("b")  # a registry's names are read at each check
    assert lazy.is_satisfied_by("b") and str(lazy) == "one of 'a', 'b'"
    lst = ListOf(Interval(int, 0))
    assert lst.is_satisfied_by([0, 2]) and not lst.is_satisfied_by([])
    assert not lst.is_satisfied_by([1, -1]) and not lst.is_satisfied_by((1,))
    assert all(lst.is_satisfied_by(v) for v in lst.valid_examples())
    assert not any(lst.is_satisfied_by(v) for v in lst.invalid_examples())
    word = Matches(r"[a-z]+", "lower-case letters")
    assert word.is_satisfied_by("abc") and not word.is_satisfied_by("abc1")
    key = ConfigKey("word", word, "x", "a word")
    with pytest.raises(ConfigError, match="w must be lower-case letters; got 'A'"):
        key.check("A", "w")
