"""Re-run stored runs at HEAD and compare every stored metric: ``moebench verify``.

:func:`verify` picks runs of a results folder (a seeded random sample, or named run
ids), rebuilds each one's cell from the folder's ``config.toml``
(:func:`moebench.sweep.rerun.stored_cells`), runs it again in this process with one
thread (:func:`moebench.sweep.worker.run_cell`, nothing written) and compares the new
summary with the stored one:

* **compared**: every numeric (and boolean) column of the stored summary, plus
  ``status``, ``stop_reason`` and ``fitted_parameters`` (the fitted experts, gating,
  biases and sigma); a stored column missing from the new summary is a difference.
* **not compared** (:func:`excluded_column`): columns that are not deterministic or
  describe the process rather than the fit: every column whose name contains ``time``
  (``fit_time``, ``wall_time``, ``fitted_phase_times_*``, and the ``max_time`` budget),
  ``finished_at``, ``threads``, the memory columns (``peak_rss_mib``, ``peak_anon_mib``:
  :data:`moebench.sweep.columns.MACHINE_COLUMNS`) and the provenance columns.
* **bit-equal** when the stored run was made on the same *path* as the re-run: the same
  moment kernels (``kernel_path``: the fused C kernels or numpy's BLAS, see
  :data:`moebench.backend.FUSED_KERNELS` and ``MOEBENCH_FUSED_KERNELS``), the same
  BLAS library (``blas``) and one thread (``threads``), by the same code
  (``code_version``). Floats must be equal to the last bit (NaN equals NaN), and so must
  ``fitted_parameters`` (its JSON text: float64 round-trips exactly).
* **within a tolerance** across paths: each float (and each fitted parameter) within
  ``|a - b| <= RTOL * max(|a|, |b|) + ATOL`` (:data:`RTOL` = 1e-6, :data:`ATOL` = 1e-9);
  integers, booleans and strings (``n_iter``, ``status``, ``stop_reason``, seeds,
  ``success``) must still be equal. Rounding differs between paths at about 1e-16
  relative per operation; a fit that is well posed amplifies it by its conditioning over
  the iterations, and 1e-6 leaves room for an amplification of 1e9 while staying three
  orders below the two or three digits any report prints. ``ATOL`` covers quantities
  that are zero up to rounding (a gradient norm at convergence, ~1e-6 in scaled
  coordinates, moves by ~1e-12 when the end point does).
* **within the run's conditioning** across paths, when a float or a fitted parameter
  array is outside that tolerance and every integer, boolean and string agrees: a fit
  whose result is ill-determined (a gating EM that saturates on wrong experts, a
  flat likelihood) can amplify the paths' rounding beyond 1e-6 and stay the same fit.
  :data:`CONDITION_PROBES` re-runs on this path then measure the run's own conditioning:
  each perturbs every entry of X by a relative amount of at most
  :func:`probe_scale` (sqrt(n) units of 2**-53, the typical rounding error of a sum over
  the n rows, which is what the two kernel paths compute in another order). The run
  agrees when each differing value (a column, or a parameter array in its largest
  entry) is within :data:`CONDITION_FACTOR` times the most the probes moved it from the
  re-run, and never beyond :data:`CONDITION_RTOL` (1e-4) of its size, which a report's
  digits would show (so a decomposition whose components hinge on rounding still
  differs); a value the probes do not move (a well-conditioned fit) gets no room, and X
  on disk is not probed. The line says by how much and why.
* **runs ended by ``max_time``** (stored or re-run ``stop_reason``) stop wherever the
  machine's speed put them, so only what is deterministic is checked: that the run ran
  again and has the same ``status``; the output says so. Runs stored with status
  ``timeout`` (killed at the hard timeout) are not re-run (nothing deterministic to
  compare, and no hard timeout in this process).

Only runs made by the current code can be verified (``code_version`` =
:data:`moebench.version.NUMERICS_VERSION`; records without the column are version 1):
``moebench run CONFIG --out RESULTS --rerun-stale`` re-runs older ones first.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moebench.chunked import is_out_of_core
from moebench.sweep.columns import MACHINE_COLUMNS
from moebench.sweep.data_sources import CellData
from moebench.sweep.rerun import PARAMETERS_KEY, stored_cells
from moebench.sweep.store import (
    KERNEL_PATH_COLUMN,
    RunRecord,
    code_version_of,
    kernel_path,
    provenance,
    stored_runs,
)
from moebench.sweep.store.records import jsonable
from moebench.version import NUMERICS_VERSION

#: relative tolerance of a float across paths (see the module docstring)
RTOL = 1e-6
#: absolute tolerance of a float across paths (quantities that are zero up to rounding)
ATOL = 1e-9
#: re-runs on this path with X perturbed at rounding level, for a run outside RTOL
CONDITION_PROBES = 3
#: how far beyond the probes' largest move a cross-path difference may go
CONDITION_FACTOR = 10.0
#: however unstable the fit, a difference beyond this fraction of the value's size (a
#: parameter array's largest entry) is never put down to rounding: it would show in the
#: digits the reports print
CONDITION_RTOL = 1e-4
#: runs sampled by default
DEFAULT_SAMPLE = 20
#: the threads of a verify re-run (the path of a stored run includes its thread count)
THREADS = 1
#: string columns that are compared (every numeric column is)
COMPARED_STRINGS = ("status", "stop_reason", PARAMETERS_KEY)
#: columns never compared besides names containing "time" and the provenance columns
#: (the memory columns measure the machine and the process, not the fit)
NOT_COMPARED = ("finished_at", "threads", *MACHINE_COLUMNS)
#: how many differing columns a DIFFERS line names
SHOWN_DIFFERENCES = 3


def excluded_column(column: str) -> bool:
    """Whether a summary column is left out of the comparison (not deterministic, or the
    process's own description): names containing ``time``, ``finished_at``, ``threads``,
    the memory columns and the provenance columns of
    :func:`moebench.sweep.store.provenance`."""
    return "time" in column or column in NOT_COMPARED or column in provenance()


@dataclass
class RunCheck:
    """The verdict on one re-run stored run.

    ``verdict`` is ``"OK"``, ``"DIFFERS"``, ``"PARTIAL"`` (ended by ``max_time``: only the
    status was checked, and it agrees) or ``"SKIPPED"`` (not re-run: stored status
    ``timeout``). ``exact`` says whether bit-equality was required (same path).
    ``differences`` lists ``(column, stored, now)`` in column order; ``bit_equal`` says
    whether every compared value was equal to the bit (also across paths).
    """

    run_id: str
    label: str
    verdict: str
    exact: bool
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    note: str = ""
    bit_equal: bool = False
    #: agreed only within the run's conditioning (see the module docstring)
    conditioned: bool = False

    @property
    def agrees(self) -> bool:
        """True unless the verdict is DIFFERS."""
        return self.verdict != "DIFFERS"

    def line(self) -> str:
        """The run's one line of ``moebench verify`` output."""
        head = f"{self.run_id}  {self.label}  "
        if self.verdict == "DIFFERS":
            shown = "; ".join(f"{col}: stored {_show(a)}, now {_show(b)}"
                              for col, a, b in self.differences[:SHOWN_DIFFERENCES])
            more = len(self.differences) - SHOWN_DIFFERENCES
            rule = "bit-equal" if self.exact else f"rtol {RTOL:g}"
            return (f"{head}DIFFERS ({rule}) {shown}"
                    + (f" (+{more} more column(s))" if more > 0 else "")
                    + (f" ({self.note})" if self.note else ""))
        if self.verdict == "OK":
            if self.exact:
                return head + "OK (bit-equal)"
            how = ("bit-equal" if self.bit_equal else "within its conditioning"
                   if self.conditioned else f"within rtol {RTOL:g}, atol {ATOL:g}")
            return head + f"OK ({how}; {self.note})"
        return f"{head}OK, {self.note}" if self.verdict == "PARTIAL" else \
            f"{head}SKIPPED, {self.note}"


@dataclass
class VerifyOutcome:
    """Every :class:`RunCheck` of one :func:`verify` call, in the order run."""

    results: Path
    checks: list[RunCheck]

    @property
    def differing(self) -> int:
        """Runs whose re-run differs."""
        return sum(not c.agrees for c in self.checks)

    def summary_line(self) -> str:
        """The final count."""
        count = {v: sum(c.verdict == v for c in self.checks)
                 for v in ("OK", "PARTIAL", "SKIPPED", "DIFFERS")}
        exact = sum(c.verdict == "OK" and c.bit_equal for c in self.checks)
        conditioned = sum(c.verdict == "OK" and c.conditioned for c in self.checks)
        within = (f", {conditioned} within their conditioning" if conditioned else "")
        parts = [f"{count['OK'] + count['PARTIAL']} of {len(self.checks)} run(s) agree "
                 f"({exact} bit-equal, {count['OK'] - exact - conditioned} within rtol "
                 f"{RTOL:g}{within}, {count['PARTIAL']} ended by max_time: status only)",
                 f"{count['DIFFERS']} differ"]
        if count["SKIPPED"]:
            parts.append(f"{count['SKIPPED']} not re-run (status timeout)")
        return f"verify {self.results}: " + ", ".join(parts)


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) > 40:
        return repr(value[:37] + "...")
    if isinstance(value, float):
        return repr(value)
    return "missing" if value is _MISSING else repr(value)


_MISSING = object()


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * max(abs(a), abs(b)) + ATOL


def _same_value(a: Any, b: Any, exact: bool) -> bool:
    """Whether two stored values agree (NaN and None, JSON's NaN, are one missing value)."""
    if _is_nan(a) or _is_nan(b):
        return _is_nan(a) and _is_nan(b)
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b) or (not exact and _close(float(a), float(b)))
    return a == b


def _same_parameters(a: Any, b: Any, exact: bool) -> bool:
    """``fitted_parameters`` JSON texts: equal text on one path, close arrays across paths."""
    if exact or not (isinstance(a, str) and isinstance(b, str)):
        return a == b
    try:
        pa, pb = json.loads(a), json.loads(b)
    except ValueError:
        return a == b
    if not (isinstance(pa, dict) and isinstance(pb, dict)) or set(pa) != set(pb):
        return False
    for key in pa:
        x = np.asarray(pa[key], dtype=float)
        y = np.asarray(pb[key], dtype=float)
        if x.shape != y.shape or not np.all(
                (x == y) | (np.abs(x - y) <= RTOL * np.maximum(np.abs(x), np.abs(y)) + ATOL)):
            return False
    return True


def _compared(column: str, stored: Any, now: Any) -> bool:
    if column in COMPARED_STRINGS:
        return True
    if excluded_column(column):
        return False
    numeric = (bool, int, float)
    if isinstance(stored, numeric):
        return True
    # a stored null (a NaN metric) is compared unless the column holds text now
    return stored is None and (now is _MISSING or now is None or isinstance(now, numeric))


def as_stored(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh run's summary as a stored one reads back (JSON-decoded: NaN is None)."""
    return json.loads(json.dumps(jsonable(dict(summary))))


def compare_summaries(stored: Mapping[str, Any], now: Mapping[str, Any], exact: bool
                      ) -> list[tuple[str, Any, Any]]:
    """The compared columns of ``stored`` whose value differs in ``now``.

    Parameters
    ----------
    stored, now : mapping
        A run's summary as stored (JSON-decoded: NaN is None) and a re-run's (normalised
        the same way here).
    exact : bool
        Bit-equality (same path) or :data:`RTOL` / :data:`ATOL` on floats.

    Returns
    -------
    list of (column, stored value, new value)
        In the stored column order; a column missing from ``now`` shows as "missing".
    """
    now = as_stored(now)
    out = []
    for column, a in stored.items():
        b = now.get(column, _MISSING)
        if not _compared(column, a, b):
            continue
        if b is _MISSING:
            out.append((column, a, b))
        elif column == PARAMETERS_KEY:
            if not _same_parameters(a, b, exact):
                out.append((column, a, b))
        elif not _same_value(a, b, exact):
            out.append((column, a, b))
    return out


def same_path(stored: Mapping[str, Any]) -> bool:
    """Whether a stored run was made on this process's path: same kernel path, same BLAS,
    one thread (the code version is checked before)."""
    here = provenance()
    return (stored.get(KERNEL_PATH_COLUMN) == kernel_path()
            and stored.get("blas") == here["blas"]
            and stored.get("threads") == THREADS)


def _path_note(stored: Mapping[str, Any]) -> str:
    parts = []
    if stored.get(KERNEL_PATH_COLUMN) != kernel_path():
        parts.append(f"kernels {stored.get(KERNEL_PATH_COLUMN)} -> {kernel_path()}")
    if stored.get("blas") != provenance()["blas"]:
        parts.append(f"BLAS {stored.get('blas')!r} -> {provenance()['blas']!r}")
    if stored.get("threads") != THREADS:
        parts.append(f"threads {stored.get('threads')} -> {THREADS}")
    return "another path: " + ", ".join(parts)


def check_run(cell: Any, record: RunRecord, folder: str | os.PathLike) -> RunCheck:
    """Re-run one stored run in this process (one thread, nothing written) and judge it."""
    from moebench.sweep.worker import run_cell

    stored = record.summary
    label = str(stored.get("label", cell.variant.label))
    if stored.get("status") == "timeout":
        return RunCheck(record.run_id, label, "SKIPPED", False,
                        note="stored status timeout (killed at the hard timeout): not re-run")
    now = run_cell(cell, str(folder), threads=THREADS, config=str(stored.get("config", "")),
                   write=False)
    exact = same_path(stored)
    if "max_time" in (stored.get("stop_reason"), now.get("stop_reason")):
        if now.get("status") != stored.get("status"):
            return RunCheck(record.run_id, label, "DIFFERS", exact,
                            [("status", stored.get("status"), now.get("status"))],
                            note="ended by max_time")
        which = "stored run" if stored.get("stop_reason") == "max_time" else "re-run"
        return RunCheck(record.run_id, label, "PARTIAL", exact,
                        note=f"partially checked: the {which} ended by max_time, so only its "
                        f"status ({now.get('status')}) was compared")
    diffs = compare_summaries(stored, now, exact)
    bit_equal = not diffs and (exact or not compare_summaries(stored, now, True))
    note = "" if exact else _path_note(stored)
    normal = as_stored(now)
    if diffs and not exact and all(_is_float_difference(c, a, normal.get(c))
                                   for c, a, _ in diffs):
        probes, scale = conditioning_probes(cell, folder, str(stored.get("config", "")))
        explained = conditioning_explains(diffs, normal, probes, scale)
        if explained is not None:
            return RunCheck(record.run_id, label, "OK", exact, note=f"{note}; {explained}",
                            conditioned=True)
        failed = next((p["message"] for p in probes if p.get("status") != now.get("status")),
                      "")
        note += ("; conditioning probes: " + (failed or f"the difference is more than "
                 f"{CONDITION_FACTOR:g} times what X perturbed by rounding moves, or more "
                 f"than {CONDITION_RTOL:g} of the value"))
    return RunCheck(record.run_id, label, "DIFFERS" if diffs else "OK", exact, diffs,
                    note=note, bit_equal=bit_equal)


def conditioning_probes(cell: Any, folder: str | os.PathLike, config: str
                        ) -> tuple[list[dict[str, Any]], float]:
    """:data:`CONDITION_PROBES` re-runs of ``cell`` on this path with X perturbed (seeds 0,
    1, ...; :func:`perturb_inputs`), and the perturbation's relative size."""
    from moebench.sweep.worker import run_cell

    sizes: list[float] = []

    def perturb(data: CellData, seed: int) -> CellData:
        sizes.append(probe_scale(data.X.shape[0]))
        return perturb_inputs(data, seed)

    probes = [run_cell(cell, str(folder), threads=THREADS, config=config, write=False,
                       prepare_data=lambda d, s=seed: perturb(d, s))
              for seed in range(CONDITION_PROBES)]
    return probes, max(sizes, default=math.nan)


def probe_scale(n: int) -> float:
    """The largest relative change of an entry of X in a conditioning probe: sqrt(n)
    units of float64 rounding (2**-53), the typical rounding error of a sum over n rows."""
    return math.sqrt(n) * 2.0 ** -53


def perturb_inputs(data: CellData, seed: int) -> CellData:
    """``data`` with every entry of X times 1 + u, u uniform in +-:func:`probe_scale`
    (seeded); the labels and held-out rows unchanged.

    Raises
    ------
    ValueError
        X on disk (a probe would copy it into memory).
    """
    if is_out_of_core(data.X):
        raise ValueError("X is on disk: verify does not probe the conditioning of such runs")
    rng = np.random.default_rng(seed)
    eps = probe_scale(data.X.shape[0])
    return dataclasses.replace(data, X=data.X * (1.0 + eps * rng.uniform(-1.0, 1.0, data.X.shape)))


def _is_float_difference(column: str, stored: Any, new: Any) -> bool:
    """Whether a difference is between two floats or two fitted-parameter texts (the
    values a run's conditioning can explain; integers, booleans and strings never)."""
    if column == PARAMETERS_KEY:
        return isinstance(stored, str) and isinstance(new, str)
    return all(isinstance(v, float) and not isinstance(v, bool) and not _is_nan(v)
               for v in (stored, new))


def _arrays(text: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in json.loads(text).items()}


def _moves(column: str, stored: Any, new: Any, probes: list[Mapping[str, Any]]
           ) -> list[tuple[str, float, float]] | None:
    """(name, |stored - new|, the probes' largest |probe - new|, size) per differing value:
    a column, or each differing parameter array in its largest entry; None if the arrays
    do not match."""
    if column != PARAMETERS_KEY:
        return [(column, abs(stored - new),
                 max(abs(float(p.get(column, math.nan)) - new) for p in probes),
                 max(abs(stored), abs(new)))]
    a, b = _arrays(stored), _arrays(new)
    moved = [_arrays(p[PARAMETERS_KEY]) for p in probes]
    if set(a) != set(b) or any(a[k].shape != b[k].shape or set(m) != set(b)
                               or m[k].shape != b[k].shape for m in moved for k in a):
        return None
    return [(f"{column}.{k}", float(np.max(np.abs(a[k] - b[k]))),
             max(float(np.max(np.abs(m[k] - b[k]))) for m in moved),
             float(max(np.max(np.abs(a[k])), np.max(np.abs(b[k])))))
            for k in a if np.any(a[k] != b[k])]


def conditioning_explains(diffs: list[tuple[str, Any, Any]], now: Mapping[str, Any],
                          probes: list[Mapping[str, Any]], scale: float) -> str | None:
    """Whether the run's conditioning explains every cross-path difference.

    Parameters
    ----------
    diffs : list of (column, stored, now)
        The values outside RTOL: floats and ``fitted_parameters`` only.
    now : mapping
        The re-run's summary (its values as :func:`compare_summaries` normalises them).
    probes : list of mapping
        Summaries of re-runs on this path with X perturbed (:func:`perturb_inputs`).
    scale : float
        The probes' relative perturbation (:func:`probe_scale`), for the message.

    Returns
    -------
    str or None
        None when there is no probe, a probe ended with another status, or a difference
        exceeds :data:`CONDITION_FACTOR` times the probes' largest move of that value or
        :data:`CONDITION_RTOL` of its size; else what was found, for the run's line.
    """
    if not probes or any(p.get("status") != now.get("status") for p in probes):
        return None
    probes = [as_stored(p) for p in probes]
    found = []
    for column, stored, new in diffs:
        if not _is_float_difference(column, stored, new):
            return None
        moves = _moves(column, stored, new, probes)
        if moves is None:
            return None
        for name, diff, spread, size in moves:
            if not (diff <= CONDITION_FACTOR * spread and diff <= CONDITION_RTOL * size):
                return None  # (NaN fails)
            found.append(f"{name} {diff:.2g} apart, {spread:.2g} under the probes")
    return (f"within {CONDITION_FACTOR:g}x what {len(probes)} re-runs with X perturbed by "
            f"{scale:.2g} (relative) moved: " + "; ".join(found))


def choose_runs(records: Mapping[str, RunRecord], sample: int | None, seed: int,
                run_ids: Iterable[str] = (), folder: str | os.PathLike = "",
                max_run_time: float | None = None) -> list[str]:
    """The run ids to verify: ``run_ids`` when given, else a seeded sample of ``sample``.

    The sample is ``numpy.random.default_rng(seed).choice`` without replacement over the
    sorted run ids (those stored with ``wall_time <= max_run_time`` when given), listed in
    sorted order.

    Raises
    ------
    ValueError
        An unknown run id, or ``sample`` larger than the runs to choose from.
    """
    run_ids = list(dict.fromkeys(run_ids))
    if run_ids:
        unknown = [r for r in run_ids if r not in records]
        if unknown:
            raise ValueError(f"--run-id {unknown[0]}: no such run in {folder} "
                             f"({len(records)} stored runs)")
        return run_ids
    pool = sorted(records)
    what = "stored runs"
    if max_run_time is not None:
        pool = [r for r in pool if _wall_time(records[r]) <= max_run_time]
        what = f"stored runs with wall_time <= {max_run_time:g} s"
    if sample is None:
        sample = min(DEFAULT_SAMPLE, len(pool))
    if sample > len(pool):
        raise ValueError(f"--sample {sample} is larger than the {len(pool)} {what} of {folder}; "
                         f"give at most {len(pool)}")
    picked = np.random.default_rng(seed).choice(len(pool), size=sample, replace=False)
    return [pool[i] for i in sorted(picked)]


def _wall_time(record: RunRecord) -> float:
    value = record.summary.get("wall_time")
    return float(value) if isinstance(value, (int, float)) else math.inf


def verify(results: str | os.PathLike, sample: int | None = None, seed: int = 0,
           run_ids: Iterable[str] = (), max_run_time: float | None = None,
           on_check: Callable[[RunCheck], None] | None = None,
           on_start: Callable[[list[str]], None] | None = None) -> VerifyOutcome:
    """Re-run stored runs of a results folder at HEAD and compare them (see the module).

    Parameters
    ----------
    results : path
        A results folder of ``moebench run`` (packed or not) with its ``config.toml``.
    sample : int, optional
        How many runs to sample (default :data:`DEFAULT_SAMPLE`, or every run of a
        smaller folder).
    seed : int
        Seed of the sample.
    run_ids : iterable of str
        Verify these runs instead of a sample.
    max_run_time : float, optional
        Sample only among runs stored with ``wall_time`` at most this (seconds).
    on_check : callable, optional
        Called with each :class:`RunCheck` as soon as it is done (the command prints it).
    on_start : callable, optional
        Called with the chosen run ids once they are checked, before the first re-run.

    Raises
    ------
    ValueError
        A folder without ``config.toml`` or without runs, a bad sample size or run id,
        or chosen runs made by another code version.
    """
    from moebench.sweep.worker import limit_threads

    folder = Path(results)
    if not folder.is_dir():
        raise ValueError(f"no results folder {str(results)!r}")
    cells = stored_cells(folder)
    records = stored_runs(folder)
    if not records:
        raise ValueError(f"{folder} holds no runs (no runs/*.parquet and no records.parquet); "
                         f"run `moebench run {folder / 'config.toml'} --out {folder}` first")
    if sample is not None and sample < 1:
        raise ValueError(f"--sample must be >= 1; got {sample}")
    chosen = choose_runs(records, sample, seed, run_ids, folder, max_run_time)
    other = {rid: code_version_of(records[rid].summary) for rid in chosen
             if code_version_of(records[rid].summary) != NUMERICS_VERSION}
    if other:
        versions = ", ".join(str(v) for v in sorted(set(other.values())))
        raise ValueError(f"{folder}: {len(other)} of the {len(chosen)} chosen runs were made by "
                         f"code version {versions}: verify needs runs made by the current code "
                         f"(version {NUMERICS_VERSION}); re-run with --rerun-stale "
                         f"(`moebench run {folder / 'config.toml'} --out {folder} "
                         f"--rerun-stale`)")
    missing = [rid for rid in chosen if rid not in cells]
    if missing:
        raise ValueError(f"{folder}: run {missing[0]} is not a run of its config.toml (the "
                         f"config was changed after the sweep?); it cannot be rebuilt")
    limit_threads(THREADS)
    if on_start is not None:
        on_start(chosen)
    checks = []
    for rid in chosen:
        check = check_run(cells[rid], records[rid], folder)
        checks.append(check)
        if on_check is not None:
            on_check(check)
    return VerifyOutcome(folder, checks)

