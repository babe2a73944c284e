"""Going back from a stored run to what made it: its cell, its data, its fitted model.

A results folder holds the config it ran (``config.toml``) and, for every run, a summary
with its ``run_id`` and (from code version 2 on) its fitted parameters
(``fitted_parameters``: JSON with ``experts``, ``gating`` and ``sigma``, full float64
precision). These two are enough to rebuild a run's data set and to continue, re-score or
re-classify its fit without re-running it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moebench.model import MoEModel
from moebench.sweep.config import Run, load_config
from moebench.sweep.store import PARAMETERS_KEY, stored_summaries

__all__ = ["PARAMETERS_KEY", "fitted_model", "fitted_parameters", "parameters_json",
           "stored_cells", "with_parameters"]


def stored_cells(results: str | os.PathLike) -> dict[str, Run]:
    """Every run of the folder's stored config, by ``run_id``.

    Raises
    ------
    ValueError
        When the folder holds no ``config.toml``.
    """
    path = Path(results) / "config.toml"
    if not path.is_file():
        raise ValueError(f"{results}: no config.toml (the config the sweep ran); "
                         "the runs cannot be rebuilt without it")
    return {cell.run_id: cell for cell in load_config(path).cells()}


def parameters_json(est: Any) -> str:
    """A fitted estimator's parameters as compact JSON (float64 round-trips exactly)."""
    sigma = np.asarray(est.sigma_, dtype=float)
    out: dict[str, Any] = {"experts": np.asarray(est.experts_, dtype=float).tolist(),
                           "gating": np.asarray(est.gating_, dtype=float).tolist(),
                           "sigma": sigma.tolist()}
    for name in ("expert_bias_", "gating_bias_", "sigmoid_gating_"):
        value = getattr(est, name, None)
        if value is not None:
            out[name[:-1]] = np.asarray(value, dtype=float).tolist()
    return json.dumps(out, separators=(",", ":"))


def fitted_parameters(summary: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The fitted parameters stored in a run's summary, as arrays (None when absent)."""
    text = summary.get(PARAMETERS_KEY)
    if not isinstance(text, str) or not text:
        return None
    return {key: np.asarray(value, dtype=float) for key, value in json.loads(text).items()}


def fitted_model(summary: Mapping[str, Any]) -> MoEModel | None:
    """The fitted model of a stored run (None when its summary holds no parameters)."""
    params = fitted_parameters(summary)
    if params is None:
        return None
    sigma = params["sigma"]
    return MoEModel(params["experts"], params["gating"],
                    float(sigma) if sigma.ndim == 0 else sigma, summary["activation"],
                    expert_bias=params.get("expert_bias"), gating_bias=params.get("gating_bias"))


def with_parameters(summary: pd.DataFrame, results: str | os.PathLike) -> pd.DataFrame:
    """``summary`` with the column ``fitted_parameters`` from the folder's verified run
    records (the tables leave it out; empty where a record holds none)."""
    stored = stored_summaries(results)
    out = summary.copy()
    out[PARAMETERS_KEY] = out["run_id"].map(
        lambda rid: stored.get(rid, {}).get(PARAMETERS_KEY) or "")
    return out
