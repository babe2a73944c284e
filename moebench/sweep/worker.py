"""Run one sweep cell: build its data, fit its estimator, score it, write its run file.

The local backend's forkserver imports :mod:`moebench.sweep.preload`, which
calls :func:`preload` so that every worker starts with the algorithms and torch
already imported.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
import traceback
import warnings
from datetime import datetime, timezone
from typing import Any

import numpy as np

from moebench.generator import iter_moe_blocks, make_moe_model
from moebench.metrics import parameter_errors, prediction_mse
from moebench.model import MoEModel
from moebench.registry import algorithm_class, available_algorithms, get_algorithm
from moebench.sweep.config import REFERENCE, Cell
from moebench.sweep.data_sources import (
    fold_split,
    linear_regression,
    load_csv_source,
    standardized_fold,
)
from moebench.sweep.results import provenance, write_run
from moebench.validation import DegenerateFitError, absurd_log_likelihood, rms

#: keys of a summary that hold final metrics
METRIC_KEYS = ("expert_error", "expert_max_angle", "gating_error", "success", "sigma_hat",
               "train_log_likelihood", "test_log_likelihood", "test_mse",
               "true_train_log_likelihood", "true_test_log_likelihood", "true_test_mse")


# --------------------------------------------------------------------------- data
def _rows(model: MoEModel, n: int, seed: np.random.SeedSequence, distribution: str
          ) -> tuple[np.ndarray, np.ndarray]:
    Xs, ys = [], []
    for X, y, _ in iter_moe_blocks(model, n, seed, input_distribution=distribution):
        Xs.append(X)
        ys.append(y)
    return np.concatenate(Xs), np.concatenate(ys)


def synthetic_data(cell: Cell) -> tuple[MoEModel, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The true model, training rows and held-out rows of a synthetic cell.

    The true parameters depend on the setting without ``n``, ``n_test`` and
    ``input_distribution`` (so every sample size and input law of a repetition
    learns the same model), the training rows on ``n`` too, the held-out rows on
    ``n_test``; none depend on the algorithm.
    """
    s = cell.data
    base = cell.data_seed("n", "n_test", "input_distribution")
    entropy = base.entropy
    model = make_moe_model(s["d"], s["k"], s["activation"], s["sigma"], s["gating"],
                           s["gating_scale"], s["min_angle"], s["expert_angle"],
                           random_state=np.random.SeedSequence(entropy, spawn_key=(0,)),
                           gating_angle=s["gating_angle"])
    dist = s["input_distribution"]
    X, y = _rows(model, s["n"], np.random.SeedSequence(entropy, spawn_key=(1, s["n"])), dist)
    Xt, yt = _rows(model, s["n_test"],
                   np.random.SeedSequence(entropy, spawn_key=(2, s["n_test"])), dist)
    return model, X, y, Xt, yt


def csv_data(cell: Cell) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised train/held-out rows of a real-data cell's fold.

    The split depends on (base seed, source, number of folds, repetition) only, so
    every k and algorithm sees the same folds.
    """
    s = cell.data
    table = load_csv_source(s["source"])
    seed = cell.data_seed("k", "activation", "fold")
    train, test = fold_split(len(table.y), s["folds"], s["fold"], seed)
    return standardized_fold(table, train, test)


# --------------------------------------------------------------------------- threads
def limit_threads(threads: int) -> Any:
    """Cap BLAS/OpenMP (threadpoolctl) and torch threads of this process; returns the limiter."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    # torch's intra-op pool ignores threadpoolctl (an unset one oversubscribes badly): set it
    # when torch is loaded (forkserver workers); a later import reads OMP_NUM_THREADS
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return limiter


def preload() -> None:
    """Import every registered algorithm and torch (the forkserver does it once for all)."""
    available_algorithms()
    try:
        import torch  # (sgd imports it lazily; 2-3 s per worker otherwise)
    except ImportError:  # pragma: no cover
        return
    # The first optimizer built in a process imports torch's lazily loaded optimizer
    # machinery (~1.4 s here); do it once here so that no run's fit time pays it.
    # No tensor work is done, so no thread pool exists to be forked.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


# --------------------------------------------------------------------------- one run
def base_summary(cell: Cell, config: str = "") -> dict[str, Any]:
    """Identifying columns of a run: ids, data setting, variant, seeds, budgets."""
    v = cell.variant
    data = dict(cell.data)
    source = data.pop("source", None)
    if source is not None:
        data["dataset"] = os.path.basename(source["csv"])
        data["target"] = source["target"]
    out: dict[str, Any] = {"run_id": cell.run_id, "data_id": cell.data_id, "config": config,
                           "label": v.label, "algorithm": v.algorithm}
    out.update(data)
    out.update({"repetition": cell.repetition, "seed": cell.seed,
                "algorithm_seed": str(cell.algorithm_seed()),
                "params": _params_json(v.params), "max_iter": v.max_iter, "max_time": v.max_time,
                "timeout": v.timeout, "known_sigma": v.known_sigma,
                "success_threshold": cell.success_threshold})
    for key, value in v.params.items():
        out[f"param_{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _params_json(params: dict[str, Any]) -> str:
    import json

    return json.dumps(params, sort_keys=True, default=str)


def failure_summary(cell: Cell, status: str, message: str, config: str = "",
                    wall_time: float = math.nan) -> dict[str, Any]:
    """Summary of a run that produced no result (timeout, crashed worker)."""
    out = base_summary(cell, config)
    out.update({key: math.nan for key in METRIC_KEYS})
    out["success"] = False
    out.update({"status": status, "message": message, "stop_reason": "", "n_iter": 0,
                "fit_time": math.nan, "wall_time": wall_time,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    out.update(provenance())
    return out


def fitted_scalars(est: Any) -> dict[str, Any]:
    """Scalar fitted attributes (diagnostics such as tensor_em's ``assumption_check_``
    or ``t2_eigengap_``, joint_em's ``converged_``) as ``fitted_<name>`` columns."""
    out: dict[str, Any] = {}
    for name, value in vars(est).items():
        if (name.endswith("_") and not name.startswith("_") and name not in ("sigma_", "n_iter_")
                and isinstance(value, (bool, int, float, np.number))):
            out[f"fitted_{name[:-1]}"] = value.item() if isinstance(value, np.number) else value
    return out


def run_cell(cell: Cell, out: str, threads: int = 1, config: str = "",
             write: bool = True) -> dict[str, Any]:
    """Run one cell in this process and write its run file; returns its summary.

    Failures (an exception, a non-finite fit) are recorded with their status and
    message, never raised. A :class:`moebench.validation.DegenerateFitError` from
    ``fit`` (fewer rows than parameters, a collapsed sigma, an absurd training
    log-likelihood), or a held-out mean log-likelihood more than
    :data:`moebench.validation.ABSURD_LL_MARGIN` nats per sample below the null model
    N(0, rms(y_train)^2), is recorded with status ``"degenerate"``.
    """
    start = time.perf_counter()
    limit_threads(threads)
    v = cell.variant
    summary = base_summary(cell, config)
    summary.update({key: math.nan for key in METRIC_KEYS})
    summary["success"] = False
    summary["threads"] = threads
    summary["warnings"] = ""
    checkpoints: list[dict[str, Any]] = []
    status, message, stop, n_iter, fit_time = "ok", "", "", 0, math.nan
    try:
        if "source" in cell.data:
            X, y, Xt, yt = csv_data(cell)
            truth = None
        else:
            truth, X, y, Xt, yt = synthetic_data(cell)
        if v.algorithm == REFERENCE:
            t0 = time.perf_counter()
            summary.update(linear_regression(X, y, Xt, yt))
            summary.pop("train_mse", None)
            fit_time, n_iter, stop = time.perf_counter() - t0, 1, "converged"
        else:
            if v.module and v.module not in sys.modules:
                importlib.import_module(v.module)
            # the class says which of its options carry the budgets
            options = {**v.params, **algorithm_class(v.algorithm).budget_options(
                max_iter=v.max_iter, max_time=v.max_time)}
            sigma = truth.sigma if (v.known_sigma and truth is not None) else None
            est = get_algorithm(v.algorithm, n_experts=cell.data["k"],
                                activation=cell.data["activation"], sigma=sigma,
                                random_state=cell.algorithm_seed(), **options)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    est.fit(X, y, truth=truth)
                finally:
                    wall_fit = time.perf_counter() - t0
                    checkpoints = list(getattr(est, "history_", []) or [])
                    summary["warnings"] = "; ".join(dict.fromkeys(
                        f"{w.category.__name__}: {w.message}" for w in caught))
            fit_time = float(checkpoints[-1]["time"]) if checkpoints else wall_fit
            n_iter = int(est.n_iter_)
            stop = est.stop_reason_  # set by every fit (checked by MoEEstimator.fit)
            fitted = est.model_
            summary["sigma_hat"] = float(est.sigma_)
            summary.update(fitted_scalars(est))
            summary["train_log_likelihood"] = fitted.mean_log_likelihood(X, y)
            summary["test_log_likelihood"] = fitted.mean_log_likelihood(Xt, yt)
            summary["test_mse"] = prediction_mse(fitted, Xt, yt)
            if truth is not None:
                summary.update(parameter_errors(est.experts_, est.gating_, truth,
                                                cell.success_threshold))
        if truth is not None:
            summary["true_train_log_likelihood"] = truth.mean_log_likelihood(X, y)
            summary["true_test_log_likelihood"] = truth.mean_log_likelihood(Xt, yt)
            summary["true_test_mse"] = prediction_mse(truth, Xt, yt)
        bad = [k for k in ("train_log_likelihood", "test_log_likelihood", "test_mse")
               if not np.isfinite(summary[k])]
        if bad:
            status, message = "nan", f"non-finite {', '.join(bad)}"
            summary["success"] = False
        else:
            reason = absurd_log_likelihood(summary["test_log_likelihood"], yt, scale=rms(y))
            if reason is not None:
                status, message = "degenerate", f"held-out data: {reason}"
    except DegenerateFitError as exc:
        status, message = "degenerate", f"{type(exc).__name__}: {exc}"
    except FloatingPointError as exc:
        status, message = "nan", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one run's failure must not end the sweep
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        status, message = "error", f"{type(exc).__name__}: {exc}{where}"
    summary.update({"status": status, "message": message, "stop_reason": stop, "n_iter": n_iter,
                    "fit_time": fit_time, "wall_time": time.perf_counter() - start,
                    "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    summary["success"] = bool(summary["success"]) and status == "ok"
    summary.update(provenance())
    if write:
        write_run(out, summary, checkpoints)
    return summary


def process_main(cell: Cell, out: str, threads: int, config: str,
                 owner: int | None = None) -> None:
    """Entry point of a worker process started by the local backend.

    The worker ends when ``owner`` (the sweep's main process) or its parent (the
    forkserver) ends, and at its own deadline past the run's hard timeout, where
    it records the run as ``"timeout"`` itself (see :mod:`moebench.sweep.lifeline`).
    """
    from moebench.sweep.lifeline import guard_worker
    from moebench.sweep.results import run_path

    started = time.perf_counter()

    def record_timeout() -> None:
        if not run_path(out, cell.run_id).is_file():
            write_run(out, failure_summary(
                cell, "timeout", f"ended itself past the hard timeout of "
                f"{cell.variant.timeout:g} s", config, time.perf_counter() - started), [])

    guard_worker(owner if owner is not None else os.getppid(), cell.variant.timeout,
                 record_timeout)
    run_cell(cell, out, threads, config)

