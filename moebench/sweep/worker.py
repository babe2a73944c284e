"""Run one sweep cell in one straight line: data source -> estimator -> evaluation -> record.

:func:`run_cell` loads the cell's rows from its data source
(:mod:`moebench.sweep.data_sources`), builds and fits the registered estimator the
variant names (:func:`fit_estimator`; budgets go to the parameters the class
declares), scores it (:func:`evaluate`), and writes the run file. The run's peak memory
and the fit's passes over an on-disk X are measured around it
(:mod:`moebench.sweep.resources`).

The local executor's forkserver imports :mod:`moebench.sweep.preload`, which
calls :func:`preload` so that every worker starts with the algorithms and torch
already imported.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from moebench.chunked import blocked_mean, is_out_of_core
from moebench.degenerate import DegenerateFitError, absurd_log_likelihood
from moebench.gate_voronoi import gate_voronoi_loss
from moebench.metrics import parameter_errors, prediction_mse, voronoi_loss
from moebench.model import MoEModel
from moebench.registry import algorithm_class, available_algorithms, get_algorithm
from moebench.regression_moe import RegressionMoE, equivalent_truth
from moebench.sweep.columns import METRIC_COLUMNS, RESOURCE_COLUMNS
from moebench.sweep.config import FAMILY_DATA_KEYS, Run
from moebench.sweep.data_sources import CellData, load_cell_data
from moebench.sweep.rerun import PARAMETERS_KEY, parameters_json
from moebench.sweep.resources import ResourceMeter
from moebench.sweep.store import provenance, write_run
from moebench.sweep.store.records import jsonable
from moebench.validation import rms

#: keys of a summary that hold final metrics
METRIC_KEYS = METRIC_COLUMNS
#: largest input dimension whose runs store the translation-minimised Voronoi loss
TRANSLATED_MAX_D = 2


def climbs_likelihood(est: Any) -> bool:
    """Whether a (fitted or unfitted) estimator climbs the likelihood: ``local_search``,
    or a moment method whose ``refine`` ends it in joint EM."""
    return bool(getattr(est, "local_search", False)) or bool(getattr(est, "refine", False))


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
def base_summary(cell: Run, config: str = "") -> dict[str, Any]:
    """Identifying columns of a run: ids, data setting, variant, seeds, budgets."""
    v = cell.variant
    data = dict(cell.data)
    source = data.pop("source", None)
    if source is not None:
        data["dataset"] = os.path.basename(source["csv"])
        data["target"] = source["target"]
    data.pop("memmap", None)  # where the data set lies here: not part of the result
    out: dict[str, Any] = {"run_id": cell.run_id, "data_id": cell.data_id, "config": config,
                           "label": v.label, "algorithm": v.algorithm}
    for key in FAMILY_DATA_KEYS:  # columns only where given (older summaries unchanged)
        if data.get(key) is None:
            data.pop(key, None)
        elif key != "k_fit":
            data[key] = json.dumps(data[key], separators=(",", ":"))
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


def failure_summary(cell: Run, status: str, message: str, config: str = "",
                    wall_time: float = math.nan) -> dict[str, Any]:
    """Summary of a run that produced no result (timeout, crashed worker)."""
    out = base_summary(cell, config)
    out.update({key: math.nan for key in METRIC_KEYS})
    out["success"] = False
    out.update({key: math.nan for key in RESOURCE_COLUMNS})
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
        elif (name.endswith("_") and not name.startswith("_") and isinstance(value, dict)
              and value and all(isinstance(k, str) and isinstance(v, (int, float, np.number))
                                and not isinstance(v, bool) for k, v in value.items())):
            # a dict of numbers (tensor_em's phase_times_): one column per key
            for key, v in value.items():
                out[f"fitted_{name}{key}"] = float(v)
    return out


@dataclass
class FitOutcome:
    """What fitting one estimator produced, besides the estimator itself."""

    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    warnings: str = ""
    fit_time: float = math.nan
    n_iter: int = 0
    stop_reason: str = ""


def build_estimator(cell: Run, truth: Any = None) -> Any:
    """The unfitted estimator of the cell's variant.

    The class declares which of its options carry the sweep budgets; the setting
    gives ``n_experts`` and ``activation``; ``sigma`` is the true one when the
    variant asks for ``known_sigma`` and the data has a truth.
    """
    v = cell.variant
    if v.module and v.module not in sys.modules:
        importlib.import_module(v.module)
    options = {**v.params, **algorithm_class(v.algorithm).budget_options(
        max_iter=v.max_iter, max_time=v.max_time)}
    sigma = truth.sigma if (v.known_sigma and truth is not None) else None
    k_fit = cell.data.get("k_fit")
    return get_algorithm(v.algorithm, n_experts=cell.data["k"] if k_fit is None else k_fit,
                         activation=cell.data["activation"], sigma=sigma,
                         random_state=cell.algorithm_seed(), **options)


def fit_estimator(est: Any, data: CellData, outcome: FitOutcome) -> None:
    """Fit ``est`` on the training rows, filling ``outcome`` (also when ``fit`` raises).

    The fit time is the estimator's own clock (the last checkpoint's ``time``, which
    excludes metric evaluation) or the wall time of ``fit`` when it records none.
    """
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            est.fit(data.X, data.y, truth=data.truth)
        finally:
            wall_fit = time.perf_counter() - t0
            outcome.checkpoints = list(getattr(est, "history_", []) or [])
            outcome.warnings = "; ".join(dict.fromkeys(
                f"{w.category.__name__}: {w.message}" for w in caught))
    outcome.fit_time = (float(outcome.checkpoints[-1]["time"]) if outcome.checkpoints
                        else wall_fit)
    outcome.n_iter = int(est.n_iter_)
    outcome.stop_reason = est.stop_reason_  # set by every fit (checked by MoEEstimator.fit)


def evaluate(est: Any, data: CellData, success_threshold: float) -> dict[str, Any]:
    """Final metrics of a fitted estimator: fitted diagnostics, scores, parameter errors.

    Scores use the estimator's own ``score`` (mean log-likelihood) and ``predict``;
    parameter errors and the truth's scores need a truth (synthetic data).
    """
    # one noise level, or the rms of the per-expert ones (all of them: fitted_parameters)
    out: dict[str, Any] = {"sigma_hat": float(np.sqrt(np.mean(np.square(est.sigma_)))),
                           PARAMETERS_KEY: parameters_json(est)}
    on_disk = is_out_of_core(data.X)
    if climbs_likelihood(est) and not on_disk:  # every likelihood-climbing fit in memory:
        # gradient norm and the smallest loss-Hessian eigenvalue (Lanczos if large); on
        # disk its (n, k) arrays and Hessian-vector passes are left out (grad_norm: NaN)
        est.stationarity(data.X, data.y)
    out.update(fitted_scalars(est))
    out["train_log_likelihood"] = _mean_score(est.score, data.X, data.y)
    out["test_log_likelihood"] = est.score(data.X_test, data.y_test)
    out["test_mse"] = prediction_mse(est, data.X_test, data.y_test)
    truth = data.truth
    if truth is not None:
        if isinstance(truth, MoEModel) and np.shape(est.experts_) == truth.experts.shape:
            # matched errors need the same k (and a mixture density's parameters)
            out.update(parameter_errors(est.experts_, est.gating_, truth, success_threshold))
        out.update(voronoi_losses(est.model_, truth))
        out["true_train_log_likelihood"] = _mean_score(truth.mean_log_likelihood, data.X,
                                                       data.y)
        out["true_test_log_likelihood"] = truth.mean_log_likelihood(data.X_test, data.y_test)
        out["true_test_mse"] = prediction_mse(truth, data.X_test, data.y_test)
    return out


def _mean_score(score: Any, X: np.ndarray, y: np.ndarray) -> float:
    """``score(X, y)`` (a mean over rows); over row blocks when X is on disk (a memmap), so
    that no (n, k) array is formed."""
    return float(blocked_mean(score, X, y))


def voronoi_losses(model: Any, truth: Any) -> dict[str, float]:
    """The Voronoi loss and, for d <= :data:`TRANSLATED_MAX_D`, its translation-minimised
    form (:mod:`moebench.voronoi`); NaN where a cell is larger than rbar is known for, or
    (translated) d is larger (its Nelder–Mead search costs seconds a run there).

    For a regression truth (:class:`~moebench.regression_moe.RegressionMoE`) the loss is
    :func:`~moebench.gate_voronoi.gate_voronoi_loss` against the truth written with the
    fit's gate (NaN where none exists, :func:`~moebench.regression_moe.equivalent_truth`);
    no translated form."""
    out = {"voronoi_loss": math.nan, "voronoi_loss_translated": math.nan}
    if isinstance(truth, RegressionMoE):  # the regression MoE's loss, in the fit's own gate
        same = equivalent_truth(truth, model.gate) if isinstance(model, RegressionMoE) else None
        if same is not None:
            out["voronoi_loss"] = gate_voronoi_loss(model, same)
        return out
    try:
        out["voronoi_loss"] = voronoi_loss(model, truth)
        if truth.n_features <= TRANSLATED_MAX_D:
            out["voronoi_loss_translated"] = voronoi_loss(model, truth, translation=True)
    except ValueError:  # a Voronoi cell of more than 3 fitted atoms: no known exponent
        pass
    return out


def score_status(summary: dict[str, Any], data: CellData) -> tuple[str, str]:
    """("nan", ...) for non-finite scores, ("degenerate", ...) for an absurd held-out
    log-likelihood, else ("ok", "")."""
    bad = [k for k in ("train_log_likelihood", "test_log_likelihood", "test_mse")
           if not np.isfinite(summary[k])]
    if bad:
        return "nan", f"non-finite {', '.join(bad)}"
    reason = absurd_log_likelihood(summary["test_log_likelihood"], data.y_test,
                                   scale=rms(data.y))
    return ("degenerate", f"held-out data: {reason}") if reason is not None else ("ok", "")


def run_cell(cell: Run, out: str, threads: int = 1, config: str = "",
             write: bool = True,
             prepare_data: Callable[[CellData], CellData] | None = None) -> dict[str, Any]:
    """Run one cell in this process and write its run file; returns its summary.

    Data source -> estimator -> evaluation -> record. Failures (an exception, a
    non-finite fit) are recorded with their status and message, never raised. A
    :class:`moebench.degenerate.DegenerateFitError` from ``fit`` (fewer rows than
    parameters, a collapsed sigma, an absurd training log-likelihood), or a held-out
    mean log-likelihood more than :data:`moebench.degenerate.ABSURD_LL_MARGIN` nats per
    sample below the null model N(0, rms(y_train)^2), is recorded with status
    ``"degenerate"``. ``prepare_data``, when given, is applied to the loaded rows before
    the fit (:func:`moebench.sweep.verify.check_run`'s conditioning probes perturb X).
    """
    start = time.perf_counter()
    limit_threads(threads)
    summary = base_summary(cell, config)
    summary.update({key: math.nan for key in METRIC_KEYS})
    summary["success"] = False
    summary["threads"] = threads
    summary["warnings"] = ""
    fit = FitOutcome()
    status, message = "ok", ""
    meter = ResourceMeter()
    try:
        with meter:
            data = load_cell_data(cell)
            if prepare_data is not None:
                data = prepare_data(data)
            est = build_estimator(cell, data.truth)
            try:
                with meter.counting_passes(data.X):
                    fit_estimator(est, data, fit)
            finally:
                summary["warnings"] = fit.warnings
            summary.update(evaluate(est, data, cell.success_threshold))
            status, message = score_status(summary, data)
    except DegenerateFitError as exc:
        status, message = "degenerate", f"{type(exc).__name__}: {exc}"
    except FloatingPointError as exc:
        status, message = "nan", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one run's failure must not end the sweep
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
        status, message = "error", f"{type(exc).__name__}: {exc}{where}"
    summary.update(meter.columns())
    summary.update({"status": status, "message": message, "stop_reason": fit.stop_reason,
                    "n_iter": fit.n_iter, "fit_time": fit.fit_time,
                    "wall_time": time.perf_counter() - start,
                    "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    summary["success"] = bool(summary["success"]) and status == "ok"
    summary.update(provenance())
    if write:
        write_run(out, summary, fit.checkpoints)
    return summary


#: exit status of a worker process that could not write its run file
WRITE_FAILED_EXIT = 74


def process_main(cell: Run, out: str, threads: int, config: str,
                 owner: int | None = None, conn: Any = None) -> None:
    """Entry point of a worker process started by the local executor.

    After writing the run file, the summary (JSON-safe, as stored) is sent over ``conn``
    (a :func:`multiprocessing.Pipe` end) when given, so the parent need not read it back.

    The worker ends when ``owner`` (the sweep's main process) or its parent (the
    forkserver) ends, and at its own deadline past the run's hard timeout, where
    it records the run as ``"timeout"`` itself (see :mod:`moebench.sweep.lifeline`).
    """
    from moebench.sweep.lifeline import guard_worker
    from moebench.sweep.store import run_path

    started = time.perf_counter()

    def record_timeout() -> None:
        if not run_path(out, cell.run_id).is_file():
            write_run(out, failure_summary(
                cell, "timeout", f"ended itself past the hard timeout of "
                f"{cell.variant.timeout:g} s", config, time.perf_counter() - started), [])

    guard_worker(owner if owner is not None else os.getppid(), cell.variant.timeout,
                 record_timeout)
    try:
        summary = run_cell(cell, out, threads, config)
    except OSError:
        # the run file could not be written (a full disk, a folder made read-only): no
        # traceback from every worker; the main process says it once, in one line, when
        # it records the run and meets the same error
        sys.stderr.flush()
        os._exit(WRITE_FAILED_EXIT)
    if conn is not None:
        try:
            conn.send(jsonable(summary))
        except OSError:  # the parent is gone or closed its end: the run file is the record
            pass
        finally:
            conn.close()

