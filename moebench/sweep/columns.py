"""The columns of a sweep's summary table, the run statuses, and how values are written.

One place for what the config checker, the worker, the report and the figures
share: which summary columns describe the data setting, which hold final
metrics, which statuses count as a result, and how a setting value is printed in
a table, a panel title or a figure annotation.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: data-setting keys of a synthetic sweep (``[data]`` keys, in the order they are listed)
SYNTHETIC_SETTING_COLUMNS = ("n", "d", "k", "activation", "sigma", "gating", "gating_scale",
                             "min_angle", "expert_angle", "gating_angle",
                             "input_distribution", "n_test")
#: summary columns that describe the data setting (``dataset``: the file of a real-data sweep)
SETTING_COLUMNS = ("dataset", *SYNTHETIC_SETTING_COLUMNS)
#: summary columns that hold final metrics (NaN where a run or an estimator has none)
METRIC_COLUMNS = ("expert_error", "expert_max_angle", "gating_error", "success", "sigma_hat",
                  "train_log_likelihood", "test_log_likelihood", "test_mse",
                  "true_train_log_likelihood", "true_test_log_likelihood", "true_test_mse",
                  "voronoi_loss", "voronoi_loss_translated")
#: summary columns of a run's resource use, measured in the worker
#: (:mod:`moebench.sweep.resources`): peak resident memory (kernel high-water mark, file
#: pages of a memmap included), peak anonymous resident memory (sampled), and the fit's
#: passes over an on-disk X (NaN in memory); NaN where not measured
RESOURCE_COLUMNS = ("peak_rss_mib", "peak_anon_mib", "passes_over_x")
#: resource columns that depend on the machine and the process, not on the fit:
#: ``moebench verify`` does not compare them (``passes_over_x`` is deterministic)
MACHINE_COLUMNS = ("peak_rss_mib", "peak_anon_mib")
#: the data-set column of a memmap sweep (``generate --seed``): like the repetition it
#: tells data sets of one setting apart, so it is not a setting column
DATA_SET_COLUMNS = ("generator_seed",)

#: statuses of a run with a result (figures and medians use these runs only)
OK_STATUSES = ("ok",)
#: statuses of a run without a usable result (``--retry-failed`` re-runs these; ``--strict``
#: fails on them)
FAILED_STATUSES = ("error", "nan", "timeout", "degenerate")
#: every status a run file can hold
STATUSES = OK_STATUSES + FAILED_STATUSES


def format_value(value: Any) -> str:
    """A setting value as tables, panel titles and annotations write it.

    Integral numbers (``3``, ``20000.0``) are written without a decimal point, other
    real numbers in the shortest ``g`` form (``0.1``, ``1e-05``), anything else
    with ``str``.

    Parameters
    ----------
    value : object

    Returns
    -------
    str
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return str(int(v)) if v.is_integer() else f"{v:g}"
    return str(value)


def varying_settings(summary: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Setting columns that take more than one value in the results."""
    cols = []
    for c in SETTING_COLUMNS:
        if c in summary.columns and c not in exclude:
            if summary[c].astype(str).nunique() > 1:
                cols.append(c)
    return cols


def is_real_data(summary: pd.DataFrame) -> bool:
    """Whether the results come from a real-data sweep (a ``dataset`` column)."""
    return "dataset" in summary.columns and bool(summary["dataset"].notna().any())
