"""The data-source interface of a sweep cell, the --executor flag, and matplotlib's backend."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moebench.sweep.config import Run, Variant, validate_config
from moebench.sweep.data_sources import (
    CellData,
    CSVSource,
    SyntheticSource,
    data_source,
    load_cell_data,
)

VARIANT = Variant("x", "x", {}, 1, 1.0, 1.0)
SYNTHETIC = {"n": 300, "d": 4, "k": 2, "activation": "relu", "sigma": 0.2, "gating": "generic",
             "gating_scale": 1.5, "min_angle": 0.0, "expert_angle": None, "gating_angle": 30.0,
             "input_distribution": "uniform", "n_test": 50}
#: sha256 (first 16 hex digits) of the cell's arrays as the worker built them before the
#: data-source interface (commit 0b9b69a: worker.synthetic_data / worker.csv_data)
DIGESTS = {"synthetic": "fcc8117db210cac4", "csv": "8713411301cc96e1"}
#: the csv rows are whitened with a BLAS product, whose last bits depend on the OpenBLAS
#: kernel that runs (OPENBLAS_CORETYPE): the csv digest per kernel, both from 0b9b69a's code
CSV_DIGESTS = {"Haswell": "8713411301cc96e1", "SkylakeX": "a44e5a37f827ad3b"}


def _blas_kernel() -> str:
    from threadpoolctl import threadpool_info
    return next((str(i.get("architecture")) for i in threadpool_info()
                 if i.get("internal_api") == "openblas"), "unknown")


def _write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=60)
    lines = ["a,b,c,t"] + [",".join(f"{v:.10g}" for v in (*r, t)) for r, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")


def _csv_data(fold: int = 1) -> dict:
    # a relative path: the seed hashes the source as given, so the digest is path-independent
    return {"source": {"csv": "src.csv", "target": "t", "features": ["a", "b", "c"],
                       "sep": "auto"}, "k": 2, "activation": "linear", "folds": 3, "fold": fold}


def _digest(data: CellData) -> str:
    h = hashlib.sha256()
    arrays = [data.X, data.y, data.X_test, data.y_test]
    if data.truth is not None:
        arrays += [data.truth.experts, data.truth.gating]
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "src.csv")
    return tmp_path


@pytest.mark.parametrize("kind", ["synthetic", "csv"])
def test_rows_are_bit_identical_to_the_previous_worker(in_tmp, kind):
    data = SYNTHETIC if kind == "synthetic" else _csv_data()
    got = load_cell_data(Run(data, VARIANT, 1, 7, 0.1))
    expected = DIGESTS[kind]
    if kind == "csv":
        kernel = _blas_kernel()
        if kernel not in CSV_DIGESTS:
            pytest.skip(f"no pinned csv digest for the BLAS kernel {kernel!r} "
                        f"(pinned: {', '.join(CSV_DIGESTS)})")
        expected = CSV_DIGESTS[kernel]
    assert _digest(got) == expected


def test_the_source_is_chosen_by_the_data_setting(in_tmp):
    assert isinstance(data_source(SYNTHETIC), SyntheticSource)
    assert isinstance(data_source(_csv_data()), CSVSource)
    syn = load_cell_data(Run(SYNTHETIC, VARIANT, 0, 3, 0.1))
    csv = load_cell_data(Run(_csv_data(), VARIANT, 0, 3, 0.1))
    assert syn.truth is not None and syn.truth.experts.shape == (2, 4)
    assert syn.X.shape == (300, 4) and syn.X_test.shape == (50, 4)
    assert csv.truth is None and len(csv.y) + len(csv.y_test) == 60
    # whitened with the training rows' statistics
    assert np.allclose(csv.X.mean(0), 0, atol=1e-12) and abs(csv.y.std() - 1) < 1e-12


def test_every_variant_and_k_of_a_repetition_sees_the_same_rows(in_tmp):
    raw = {"data": {"n": 200, "d": 3, "k": 2, "n_test": 40}, "repetitions": 2,
           "algorithm": [{"name": "joint_em"}, {"name": "sgd"}]}
    cells = validate_config(raw).cells()
    by_rep: dict[int, list[str]] = {}
    for c in cells:
        by_rep.setdefault(c.repetition, []).append(_digest(load_cell_data(c)))
    assert all(len(set(d)) == 1 for d in by_rep.values())
    assert by_rep[0][0] != by_rep[1][0]
    csv = validate_config({"data": {"source": {"csv": "src.csv", "target": "t"}, "k": [2, 3],
                                    "folds": 3}, "algorithm": [{"name": "joint_em"}]}).cells()
    fold0 = {_digest(load_cell_data(c)) for c in csv if c.data["fold"] == 0}
    assert len(fold0) == 1  # k = 2, k = 3 and the k = 1 reference share the fold


# --------------------------------------------------------------------------- --executor
def _config(folder: Path) -> Path:
    path = folder / "cfg.toml"
    path.write_text('name = "execcase"\n[data]\nn = 200\nd = 3\nk = 2\nn_test = 50\n'
                    '[[algorithm]]\nname = "joint_em"\n')
    return path


def test_executor_flag(in_tmp, capsys):
    from moebench.cli import main

    cfg = _config(in_tmp)
    # --scheduler needs the dask executor
    assert main(["run", str(cfg), "--scheduler", "tcp://127.0.0.1:1", "--dry-run"]) == 2
    assert "--scheduler needs --executor dask" in capsys.readouterr().err
    assert main(["run", str(cfg), "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1",
                 "--dry-run"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses an unknown executor
        main(["run", str(cfg), "--executor", "threads", "--dry-run"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'threads'" in capsys.readouterr().err
    # the old name of --executor is gone (pre-1.0; docs/changelog.md)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(cfg), "--backend", "dask", "--dry-run"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --backend" in capsys.readouterr().err
    assert "--backend" not in _run_help()


def _run_help() -> str:
    import argparse

    from moebench.cli.sweep import add_run_parser

    sub = argparse.ArgumentParser().add_subparsers()
    add_run_parser(sub)
    return sub.choices["run"].format_help()


def test_run_sweep_refuses_an_unknown_executor(in_tmp):
    from moebench.sweep.runner import run_sweep

    cfg = validate_config({"data": {"n": 200, "d": 3, "k": 2, "n_test": 50},
                           "algorithm": [{"name": "joint_em"}]})
    with pytest.raises(ValueError, match="unknown executor 'ray'; valid choices: local, dask"):
        run_sweep(cfg, in_tmp / "out", executor="ray")
    with pytest.raises(TypeError, match="backend"):  # the old keyword is gone
        run_sweep(cfg, in_tmp / "out", backend="dask")


# --------------------------------------------------------------------------- matplotlib
@pytest.mark.parametrize("module", ["moebench.sweep.report", "moebench.sweep.plots",
                                    "moebench.cli"])
def test_importing_the_figures_leaves_matplotlib_backend_alone(module, tmp_path):
    """A notebook's backend survives importing the report or the figures, and drawing one."""
    code = (
        "import matplotlib, sys\n"
        "matplotlib.use('svg')\n"
        f"import {module}\n"
        "from moebench.sweep.plots_maps import plot_phase_maps\n"
        "import pandas as pd\n"
        "rows = [dict(run_id=f'r{i}', data_id=f'd{i}', label='em', algorithm='em', k=k,\n"
        "             sigma=s, status='ok', success=True, expert_error=0.01,\n"
        "             train_log_likelihood=-1.0, true_train_log_likelihood=-1.0)\n"
        "        for i, (k, s) in enumerate([(2, 0.1), (3, 0.1), (2, 0.2), (3, 0.2)])]\n"
        f"files = plot_phase_maps(pd.DataFrame(rows), 'k', 'sigma', {str(tmp_path)!r})\n"
        "assert files and all(p.stat().st_size > 0 for p in files), files\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
