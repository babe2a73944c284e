"""Shared fixtures of the adversarial tests: a small finished sweep and a copy to damage."""

from __future__ import annotations

import shutil

import pytest

from moebench.cli import main


@pytest.fixture(scope="module")
def base(request, tmp_path_factory):
    """A finished sweep of the test module's ``CONFIG`` (unpacked: config.toml, runs/,
    summary.parquet, checkpoints.parquet), made once per module: (config path, folder).
    The module's ``N_RUNS`` is the number of run files it must leave."""
    module = request.module
    tmp = tmp_path_factory.mktemp(module.__name__.rsplit(".", 1)[-1])
    config = tmp / "adv.toml"
    config.write_text(module.CONFIG)
    out = tmp / "res"
    assert main(["run", str(config), "--out", str(out), "--jobs", "2", "--quiet",
                 "--no-plot"]) == 0
    assert len(list((out / "runs").glob("*.parquet"))) == module.N_RUNS
    return config, out


@pytest.fixture
def res(base, tmp_path):
    """A copy of :func:`base`'s folder for one test to damage (symbolic links kept)."""
    config, out = base
    copy = tmp_path / "res"
    shutil.copytree(out, copy, symlinks=True)
    return config, copy
