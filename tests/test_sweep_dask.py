"""The dask backend gives the same results as the local one for the same seeds."""

from __future__ import annotations

import pytest

from moebench.sweep.config import validate_config
from moebench.sweep.runner import run_sweep
from moebench.sweep.store import consolidate

distributed = pytest.importorskip("dask.distributed", reason="needs the dask extra: "
                                  "pip install 'moebench[dask]'")

METRICS = ["expert_error", "gating_error", "train_log_likelihood", "test_log_likelihood",
           "test_mse", "true_train_log_likelihood", "n_iter", "status", "success"]


def test_dask_backend_matches_local(tmp_path):
    raw = {"seed": 11, "repetitions": 2,
           "data": {"n": 800, "d": 4, "k": 2, "n_test": 400},
           "budget": {"max_iter": 8, "max_time": 30.0},
           "algorithm": [{"name": "joint_em", "params": {"n_init": 1}},
                         {"name": "tensor_em", "label": "tensor_em_refine",
                          "params": {"refine": True, "refine_max_iter": 5}}]}
    cfg = validate_config(raw)
    local = run_sweep(cfg, tmp_path / "local", jobs=2, progress=False)
    assert local.ran == 4 and local.failures == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  processes=True, dashboard_address=None) as cluster:
        remote = run_sweep(cfg, tmp_path / "dask", jobs=2, executor="dask",
                           scheduler=cluster.scheduler_address, progress=False)
        assert remote.ran == 4 and remote.failures == 0
        again = run_sweep(cfg, tmp_path / "dask", jobs=2, executor="dask",
                          scheduler=cluster.scheduler_address, progress=False)
        assert again.ran == 0 and again.skipped == 4
    a, _ = consolidate(tmp_path / "local")
    b, _ = consolidate(tmp_path / "dask")
    a, b = a.set_index("run_id").sort_index(), b.set_index("run_id").sort_index()
    assert a.index.tolist() == b.index.tolist()
    for m in METRICS:
        assert a[m].tolist() == b[m].tolist(), m
