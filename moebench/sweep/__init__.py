"""Sweeps: TOML configs, a resumable parallel runner, stored results, plots and reports.

``moebench run CONFIG`` / ``moebench plot RESULTS`` / ``moebench report RESULTS`` are
the command-line faces of :func:`load_config`, :func:`run_sweep`,
:func:`moebench.sweep.plots.draw` and :func:`moebench.sweep.report.report_table`.
"""

from moebench.sweep.config import ConfigError, SweepConfig, load_config, named_configs
from moebench.sweep.runner import run_sweep
from moebench.sweep.store import consolidate, load_results

__all__ = ["ConfigError", "SweepConfig", "consolidate", "load_config", "load_results",
           "named_configs", "run_sweep"]
