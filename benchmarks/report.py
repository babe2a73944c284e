"""Performance report: asv results -> ``results/performance/``, or direct measurement.

Three modes::

    asv run --python=same --set-commit-hash $(git rev-parse HEAD)   # saves results
    python benchmarks/report.py             # read .asv/results, write table + figure
    python benchmarks/report.py --measure   # time the issue-6 targets in one process
    python benchmarks/report.py --algorithms  # issue 13: moebench vs benchmarks/plain.py
    python benchmarks/report.py --asv-algorithms  # an asv run of AlgorithmsVsPlain alone

(asv saves no results from an existing environment such as ``--python=same``
unless ``--set-commit-hash`` is given; ``--quick`` runs are for smoke tests only.)

The first reads the latest asv run of one machine (``--machine``, default: the
machine with the newest results) and writes

* ``results/performance/benchmarks.csv`` -- every benchmark and parameter set (long format),
* ``results/performance/table.md`` -- ratios to the floor, float32 speed-ups, peak memory
  beyond the data, speed-up over the dense d^3 kernel, then the raw timings,
* ``results/performance/speedup.png`` -- speed-up over the dense kernel and ratio to floor.

``--measure`` times, at one setting (default n = 10^6, d = 100, k = 10, float64), the
floor kernels (``X @ W``, ``X^T X``) and the moment kernels interleaved in one process
(best of ``--rounds``), measures peak memory beyond ``X`` with tracemalloc (numpy
reports its allocations to it), the float32 error, and records threadpoolctl's BLAS
information; it writes ``results/performance/measure_<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "performance"

# targets of issue 6 (n = 10^6, d = 100, k = 10, float64)
TARGET_T3_OVER_PROJECTION = 2.5
TARGET_T2T3_OVER_GRAM = 2.0
TARGET_PEAK_MIB = 64.0
TARGET_F32_SPEEDUP = 1.5
#: asked-for ratio moebench / plain (issue 13 item 1)
TARGET_VS_PLAIN = 0.5


# --------------------------------------------------------------------------- asv results
def _latest_results(results_dir: Path, machine: str | None) -> tuple[dict, Path]:
    machines = [p for p in results_dir.iterdir() if p.is_dir()] if results_dir.is_dir() else []
    files = []
    for mdir in machines:
        if machine is not None and mdir.name != machine:
            continue
        for f in mdir.glob("*.json"):
            if f.name == "machine.json":
                continue
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if "results" in data:
                files.append((data.get("date", 0), f.stat().st_mtime, f, data))
    if not files:
        where = f"machine {machine!r} in " if machine else ""
        raise SystemExit(
            f"no asv results for {where}{results_dir}; run `asv run --python=same "
            "--set-commit-hash $(git rev-parse HEAD)` first (without --set-commit-hash asv "
            "does not save results from the current environment)"
        )
    files.sort(key=lambda t: (t[0], t[1]))
    _, _, path, data = files[-1]
    return data, path


def _parse_params(values: list) -> list:
    out = []
    for v in values:
        try:
            out.append(json.loads(v.replace("'", '"')))
        except (json.JSONDecodeError, AttributeError):
            out.append(v)
    return out


def asv_rows(data: dict) -> list[dict]:
    """One row per (benchmark, parameter set) with its value (seconds or bytes)."""
    import itertools

    columns = data.get("result_columns", ["result", "params"])
    rows = []
    for name, entry in data["results"].items():
        rec = dict(zip(columns, entry, strict=False))
        values = rec.get("result")
        params = rec.get("params") or []
        if values is None:
            continue
        combos = list(itertools.product(*[_parse_params(p) for p in params])) if params else [()]
        if not isinstance(values, list):
            values = [values]
        module, _, func = name.rpartition(".")
        kind = func.split("_", 1)[0]
        for combo, value in zip(combos, values, strict=False):
            ok = value is not None and not (isinstance(value, float) and math.isnan(value))
            rows.append({
                "benchmark": name,
                "suite": module.split(".")[-1] if module else "",
                "kind": kind,
                "params": combo,
                "value": float(value) if ok else float("nan"),
                "unit": "bytes" if kind == "peakmem" else ("s" if kind == "time" else ""),
            })
    return rows


def _lookup(rows: list[dict]) -> dict:
    return {(r["benchmark"], tuple(r["params"])): r["value"] for r in rows}


def _get(tab: dict, suffix: str, params: tuple) -> float:
    for (name, p), v in tab.items():
        if name.endswith(suffix) and p == params:
            return v
    return float("nan")


def derived_tables(rows: list[dict]) -> list[dict]:
    """Ratios to the floor, float32 speed-ups, peak memory and dense speed-ups per (n, d, k)."""
    tab = _lookup(rows)
    settings = sorted({tuple(r["params"]) for r in rows if r["benchmark"].endswith(
        "Floor.time_gram")})
    out = []
    for n, d, k in settings:
        proj = _get(tab, "Floor.time_projection", (n, d, k))
        projt = _get(tab, "Floor.time_projection_transposed", (n, d, k))
        gram = _get(tab, "Floor.time_gram", (n, d, k))
        t3 = {impl: _get(tab, "WhitenedThirdMoment.time_whitened_third_moment", (n, d, k, impl))
              for impl in ("numpy-float64", "numpy-float32", "torch-float64", "torch-float32")}
        t2 = _get(tab, "SecondMoment.time_second_moment", (n, d, "float64"))
        t2f = _get(tab, "SecondMoment.time_second_moment", (n, d, "float32"))
        step = _get(tab, "MomentStep.time_moment_step", (n, d, k))
        base = _get(tab, "Floor.peakmem_data_only", (n, d, k))
        pk3 = _get(tab, "WhitenedThirdMoment.peakmem_whitened_third_moment",
                   (n, d, k, "numpy-float64"))
        pk2 = _get(tab, "SecondMoment.peakmem_second_moment", (n, d, "float64"))
        dense = _get(tab, "DenseThirdMoment.time_dense_third_moment", (n, d))
        f64 = t3["numpy-float64"]
        out.append({
            "n": n, "d": d, "k": k,
            "t3_s": f64, "projection_s": proj, "projection_T_s": projt, "gram_s": gram,
            "t3/projection": f64 / proj, "t3/projection_T": f64 / projt,
            "t2_s": t2, "(t2+t3)/gram": (t2 + f64) / gram,
            "moment_step/gram": step / gram,
            "f32_speedup_t3": f64 / t3["numpy-float32"], "f32_speedup_t2": t2 / t2f,
            "torch64/numpy64": t3["torch-float64"] / f64,
            "peak_t3_MiB": (pk3 - base) / 2**20, "peak_t2_MiB": (pk2 - base) / 2**20,
            "dense_s": dense, "speedup_vs_dense": dense / f64,
        })
    return out


def _large_d(rows: list[dict]) -> list[dict]:
    """WhiteningLargeD: time of each method and the randomised path's speed-up."""
    out = []
    tab = _lookup(rows)
    for name in sorted({r["benchmark"] for r in rows if "WhiteningLargeD.time_" in r["benchmark"]}):
        settings = sorted({tuple(p[:3]) for (b, p) in tab if b == name})
        for n, d, k in settings:
            dense = tab.get((name, (n, d, k, "dense-eigh")), float("nan"))
            rand = tab.get((name, (n, d, k, "randomized")), float("nan"))
            out.append({"n": n, "d": d, "k": k, "benchmark": name.rsplit(".", 1)[-1],
                        "dense-eigh_s": dense, "randomized_s": rand, "speedup": dense / rand})
    return out


def algorithm_ratios(rows: list[dict]) -> list[dict]:
    """The ``AlgorithmsVsPlain`` ``track_`` values of an asv run: per (setting, algorithm,
    activation), the ratio to the plain implementation, to the floor GEMM, and the error."""
    out: dict[tuple, dict] = {}
    for r in rows:
        suite, _, func = r["benchmark"].rpartition(".")
        if not suite.endswith("AlgorithmsVsPlain") or not func.startswith("track_"):
            continue
        setting, algorithm, activation = r["params"]
        n, d, k = (int(v) for v in str(setting).split(","))
        row = out.setdefault((n, d, k, algorithm, activation), {
            "n": n, "d": d, "k": k, "algorithm": algorithm, "g": activation})
        row[func.removeprefix("track_")] = r["value"]
    return [out[key] for key in sorted(out)]


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if v == 0 or 1e-3 <= abs(v) < 1e4:
            return f"{v:.3g}"
        return f"{v:.3e}"
    return str(v)


def _md_table(dicts: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in dicts:
        lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines)


_ALGORITHMS_INTRO = (
    "`AlgorithmsVsPlain`: medians of three interleaved rounds in one process; goal "
    f"moebench / plain <= {TARGET_VS_PLAIN}. `ratio_to_floor` is the fit's time over one "
    "`X @ A.T` (A the true (k, d) experts). Skipped combinations (joint EM at d = 100) "
    "show n/a.")
_ALGORITHM_KEYS = ["n", "d", "k", "algorithm", "g", "ratio_to_plain", "ratio_to_floor",
                   "expert_error"]


def _source_line(data: dict, path: Path) -> str:
    env = data.get("env_vars", {})
    return (f"Source: `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` "
            f"(commit {data.get('commit_hash', '?')[:10]}, python {data.get('python', '?')}, "
            f"env vars {env or 'none'}).")


def write_algorithms_report(results_dir: Path, machine: str | None, out: Path) -> Path:
    """``algorithms_asv.md``: the ``AlgorithmsVsPlain`` ratios of the latest asv run
    (e.g. ``asv run ... --bench AlgorithmsVsPlain``), leaving ``table.md`` as it is.

    Raises
    ------
    SystemExit
        When there are no asv results, or the latest run has no AlgorithmsVsPlain results.
    """
    data, path = _latest_results(results_dir, machine)
    rows = algorithm_ratios(asv_rows(data))
    if not rows:
        raise SystemExit(f"{path} has no AlgorithmsVsPlain results; run `asv run "
                         "--python=same --set-commit-hash $(git rev-parse HEAD) --bench "
                         "AlgorithmsVsPlain` first")
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join([
        "# Algorithms end to end against the plain implementation (asv `track_` ratios)", "",
        _source_line(data, path) + " Regenerate with `python benchmarks/report.py "
        "--asv-algorithms`.", "", _ALGORITHMS_INTRO, "", _md_table(rows, _ALGORITHM_KEYS), ""])
    from moebench.io import atomic_write_bytes

    atomic_write_bytes(out / "algorithms_asv.md", text.encode())
    print(f"wrote {out / 'algorithms_asv.md'}")
    return out / "algorithms_asv.md"


def write_report(results_dir: Path, machine: str | None, out: Path) -> None:
    data, path = _latest_results(results_dir, machine)
    rows = asv_rows(data)
    derived = derived_tables(rows)
    if not derived:
        raise SystemExit(
            f"{path} has no moment-kernel results (a partial asv run, e.g. --bench): "
            "table.md is left as it is; for an AlgorithmsVsPlain run use "
            "`python benchmarks/report.py --asv-algorithms`")
    out.mkdir(parents=True, exist_ok=True)

    import csv

    with open(out / "benchmarks.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["benchmark", "params", "value", "unit"])
        for r in rows:
            w.writerow([r["benchmark"], json.dumps(list(r["params"])), r["value"], r["unit"]])

    keys = ["n", "d", "k", "t3/projection", "t3/projection_T", "(t2+t3)/gram",
            "moment_step/gram", "f32_speedup_t3", "f32_speedup_t2", "torch64/numpy64",
            "peak_t3_MiB", "peak_t2_MiB", "speedup_vs_dense"]
    parts = [
        "# Performance of the moment kernels (asv)",
        "",
        _source_line(data, path) + " Regenerate with `python benchmarks/report.py`.",
        "",
        "Ratios are kernel time over the floor kernel's time in the same asv run: "
        "`projection` = `X @ W`, `projection_T` = `W^T X^T` (the layout the kernel uses), "
        "`gram` = `X^T X` (numpy dispatches it to SYRK). Peak memory is the benchmark's "
        "peak RSS minus `Floor.peakmem_data_only` (same data, no kernel). Targets at "
        f"n = 10^6, d = 100, k = 10: t3/projection <= {TARGET_T3_OVER_PROJECTION}, "
        f"(t2+t3)/gram <= {TARGET_T2T3_OVER_GRAM}, peak <= {TARGET_PEAK_MIB:g} MiB, "
        f"float32 speed-up >= {TARGET_F32_SPEEDUP}.",
        "",
        _md_table(derived, keys),
        "",
        "## Large d: dense T2 + eigh against the randomised implicit whitening",
        "",
        _md_table(_large_d(rows), ["n", "d", "k", "benchmark", "dense-eigh_s", "randomized_s",
                                   "speedup"]),
        "",
        "## Algorithms end to end against the plain implementation (asv `track_` ratios)",
        "",
        _ALGORITHMS_INTRO,
        "",
        _md_table(algorithm_ratios(rows), _ALGORITHM_KEYS),
        "",
        "## All benchmarks",
        "",
        _md_table([{"benchmark": r["benchmark"].split(".", 1)[-1],
                    "params": ", ".join(map(str, r["params"])),
                    "value": r["value"], "unit": r["unit"]} for r in rows],
                  ["benchmark", "params", "value", "unit"]),
        "",
    ]
    (out / "table.md").write_text("\n".join(parts))
    _figure(derived, out / "speedup.png")
    print(f"wrote {out / 'table.md'}, {out / 'benchmarks.csv'}, {out / 'speedup.png'}")


def _figure(derived: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [f"n=1e{round(math.log10(r['n']))}\nd={r['d']}\nk={r['k']}" for r in derived]
    x = list(range(len(derived)))
    ax = axes[0]
    width = 0.38
    ax.bar([i - width / 2 for i in x], [r["t3/projection"] for r in derived], width,
           label="T3(W,W,W) / (X @ W)")
    ax.bar([i + width / 2 for i in x], [r["(t2+t3)/gram"] for r in derived], width,
           label="(T2 + T3(W,W,W)) / (X^T X)")
    ax.axhline(TARGET_T3_OVER_PROJECTION, color="C0", ls="--", lw=1)
    ax.axhline(TARGET_T2T3_OVER_GRAM, color="C1", ls="--", lw=1)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("time / floor time (same run, log scale)")
    ax.set_title("Ratio to the machine's floor (dashed: targets)")
    ax.legend(fontsize=8)
    ax = axes[1]
    dense = [(i, r) for i, r in enumerate(derived) if not math.isnan(r["speedup_vs_dense"])]
    if dense:
        ax.bar([labels[i] for i, _ in dense], [r["speedup_vs_dense"] for _, r in dense],
               color="C2")
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=7)
    else:
        ax.text(0.5, 0.5, "dense kernel not measured", ha="center", transform=ax.transAxes)
    ax.set_ylabel("dense d^3 time / whitened T3 time")
    ax.set_title("Speed-up of T3(W,W,W) over the dense d^3 kernel")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- --measure
def _best(fns: dict, rounds: int) -> dict:
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def _peak_beyond(fn) -> float:
    """Peak traced allocation (MiB) during ``fn()``, beyond what was allocated before."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def measure(n: int, d: int, k: int, rounds: int, threads: int, tag: str, out: Path) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    from moebench.tensor.moments import second_moment, whitened_third_moment
    from moebench.tensor.whitening import whiten

    if threads > 0:
        threadpool_limits(limits=threads)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    X32 = X.astype(np.float32)
    y = rng.standard_normal(n)
    s2 = y**2                      # S2(y) = y^2 (linear experts): non-negative weights
    s2_mixed = y**2 - 1.0          # a transform with mixed signs (gamma != 0 style)
    s3 = y**3 - 3.0 * y
    W = np.linalg.qr(rng.standard_normal((d, k)))[0]
    Wt = np.ascontiguousarray(W.T)

    def step():
        T2 = second_moment(X, s2)
        Wh = whiten(T2, k).W
        whitened_third_moment(X, s3, Wh)

    fns = {
        "floor_projection X@W": lambda: X @ W,
        "floor_projection W^T X^T": lambda: Wt @ X.T,
        "floor_gram X^T X": lambda: X.T @ X,
        "t3 float64": lambda: whitened_third_moment(X, s3, W),
        "t2 float64": lambda: second_moment(X, s2),
        "t2 float64 mixed-sign s2": lambda: second_moment(X, s2_mixed),
        "moment step float64 (t2+eigh+t3)": step,
        "t3 float32 (X float32)": lambda: whitened_third_moment(X32, s3, W, dtype=np.float32),
        "t2 float32 (X float32)": lambda: second_moment(X32, s2, dtype=np.float32),
        "t3 float32 (X float64, cast per chunk)":
            lambda: whitened_third_moment(X, s3, W, dtype=np.float32),
        "floor_projection X32@W32": lambda: X32 @ W.astype(np.float32),
        "floor_gram X32^T X32": lambda: X32.T @ X32,
    }
    t = _best(fns, rounds)
    peaks = {
        "t3 float64": _peak_beyond(lambda: whitened_third_moment(X, s3, W)),
        "t2 float64": _peak_beyond(lambda: second_moment(X, s2)),
        "t2 float64 mixed-sign s2": _peak_beyond(lambda: second_moment(X, s2_mixed)),
        "moment step float64 (t2+eigh+t3)": _peak_beyond(step),
        "t3 float32 (X float32)": _peak_beyond(
            lambda: whitened_third_moment(X32, s3, W, dtype=np.float32)),
    }
    M64 = whitened_third_moment(X, s3, W)
    M32 = whitened_third_moment(X32, s3, W, dtype=np.float32)
    T64 = second_moment(X, s2)
    T32 = second_moment(X32, s2, dtype=np.float32)
    # float32 error: against float64 on the same (float32-representable) data
    M64r = whitened_third_moment(X32.astype(np.float64), s3, W)
    T64r = second_moment(X32.astype(np.float64), s2)
    err = {
        "t3 rel. max error (float32 vs float64, same data)":
            float(np.abs(M32 - M64r).max() / np.abs(M64r).max()),
        "t2 rel. max error (float32 vs float64, same data)":
            float(np.abs(T32 - T64r).max() / np.abs(T64r).max()),
        "t3 rel. max error incl. rounding X to float32":
            float(np.abs(M32 - M64).max() / np.abs(M64).max()),
        "t2 rel. max error incl. rounding X to float32":
            float(np.abs(T32 - T64).max() / np.abs(T64).max()),
    }
    ratios = {
        "t3 / (X@W)": t["t3 float64"] / t["floor_projection X@W"],
        "t3 / (W^T X^T)": t["t3 float64"] / t["floor_projection W^T X^T"],
        "(t2 + t3) / (X^T X)": (t["t2 float64"] + t["t3 float64"]) / t["floor_gram X^T X"],
        "(t2 mixed + t3) / (X^T X)":
            (t["t2 float64 mixed-sign s2"] + t["t3 float64"]) / t["floor_gram X^T X"],
        "moment step / (X^T X)": t["moment step float64 (t2+eigh+t3)"] / t["floor_gram X^T X"],
        "float32 speed-up t3 (X float32)": t["t3 float64"] / t["t3 float32 (X float32)"],
        "float32 speed-up t2 (X float32)": t["t2 float64"] / t["t2 float32 (X float32)"],
        "float32 speed-up t2+t3 (X float32)": (t["t2 float64"] + t["t3 float64"])
            / (t["t2 float32 (X float32)"] + t["t3 float32 (X float32)"]),
        "float32 speed-up t3 (X float64, cast per chunk)":
            t["t3 float64"] / t["t3 float32 (X float64, cast per chunk)"],
    }
    import os

    info = {
        "setting": {"n": n, "d": d, "k": k, "rounds": rounds, "threads_limit": threads},
        "times_s": t, "ratios": ratios, "peak_beyond_X_MiB": peaks, "float32_error": err,
        "threadpoolctl": threadpool_info(),
        "env": {key: os.environ.get(key) for key in (
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "platform": platform.platform(), "python": sys.version.split()[0],
        "numpy": np.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"measure_{tag}.json").write_text(json.dumps(info, indent=2, default=str))
    blas = [f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
            f"{b.get('num_threads')} threads)" for b in info["threadpoolctl"]]
    lines = [
        f"# Moment-kernel targets, measured in one process ({tag})",
        "",
        f"n = {n}, d = {d}, k = {k}; best of {rounds} interleaved rounds; {info['date']}.",
        f"BLAS (threadpoolctl): {'; '.join(blas)}. Env: {info['env']}.",
        "",
        "| quantity | value | target |", "|---|---|---|",
        f"| t3 / (X@W) | {ratios['t3 / (X@W)']:.2f} | <= {TARGET_T3_OVER_PROJECTION} |",
        f"| t3 / (W^T X^T) | {ratios['t3 / (W^T X^T)']:.2f} | <= {TARGET_T3_OVER_PROJECTION} |",
        f"| (t2 + t3) / (X^T X) | {ratios['(t2 + t3) / (X^T X)']:.2f} | "
        f"<= {TARGET_T2T3_OVER_GRAM} |",
        f"| (t2 mixed-sign + t3) / (X^T X) | {ratios['(t2 mixed + t3) / (X^T X)']:.2f} | "
        f"<= {TARGET_T2T3_OVER_GRAM} |",
        f"| moment step (t2 + eigh + t3) / (X^T X) | {ratios['moment step / (X^T X)']:.2f} | |",
    ]
    for key, v in peaks.items():
        lines.append(f"| peak beyond X: {key} (MiB) | {v:.1f} | <= {TARGET_PEAK_MIB:g} |")
    for key in ("float32 speed-up t3 (X float32)", "float32 speed-up t2 (X float32)",
                "float32 speed-up t2+t3 (X float32)",
                "float32 speed-up t3 (X float64, cast per chunk)"):
        lines.append(f"| {key} | {ratios[key]:.2f} | >= {TARGET_F32_SPEEDUP} |")
    for key, v in err.items():
        lines.append(f"| {key} | {v:.1e} | < 1e-4 (test bound) |")
    lines += ["", "Times (s):", "", "| kernel | s |", "|---|---|"]
    lines += [f"| {key} | {v:.4f} |" for key, v in t.items()]
    (out / f"measure_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return info


# --------------------------------------------------------------------------- --algorithms
#: issue 13's table (n = 10^5, d = 10, k = 3, sigma = 0.1 given, orthogonal gating, 2 seeds,
#: one thread): median seconds of the plain implementation and of moebench before issue 13
ISSUE13_BEFORE = {
    ("tensor_em", "linear"): (0.26, 0.61), ("tensor_em", "relu"): (0.53, 1.08),
    ("tensor_em", "sigmoid"): (0.71, 1.41),
    ("tensor_em_refine", "linear"): (0.51, 1.07), ("tensor_em_refine", "relu"): (1.67, 3.66),
    ("tensor_em_refine", "sigmoid"): (1.95, 3.92),
    ("joint_em", "linear"): (0.75, 1.37), ("joint_em", "relu"): (2.03, 2.78),
    ("joint_em", "sigmoid"): (3.09, 3.33),
}
#: the algorithms of the table: label -> (registry name, options); sigma is given
ALGORITHM_ROWS = {
    "tensor_em": ("tensor_em", {}),
    "tensor_em_refine": ("tensor_em", {"refine": True}),
    "joint_em": ("joint_em", {"n_init": 1}),
}


def _median(values: list[float]) -> float:
    v = sorted(values)
    m = len(v)
    return v[m // 2] if m % 2 else 0.5 * (v[m // 2 - 1] + v[m // 2])


def fit_both(label: str, data, activation: str, sigma: float, seed: int):
    """One moebench fit and one plain fit of ``label``: (estimator, plain experts, times)."""
    if str(ROOT) not in sys.path:  # run as a script: benchmarks/ is not a package root
        sys.path.insert(0, str(ROOT))
    import moebench
    from benchmarks import plain

    name, options = ALGORITHM_ROWS[label]
    k = data.experts.shape[0]
    t0 = time.perf_counter()
    est = moebench.get_algorithm(name, n_experts=k, activation=activation, sigma=sigma,
                                 random_state=seed, **options).fit(data.X, data.y)
    t1 = time.perf_counter()
    experts, _ = plain.fit(label, data.X, data.y, k, activation, sigma, random_state=seed)
    t2 = time.perf_counter()
    return est, experts, (t1 - t0, t2 - t1)


def measure_algorithms(n: int, d: int, k: int, seeds: list[int], rounds: int, threads: int,
                       algorithms: list[str], activations: list[str], tag: str,
                       out: Path | None, sigma: float = 0.1) -> list[dict]:
    """Issue 13's table: moebench against :mod:`benchmarks.plain` in one process.

    For each (algorithm, activation, seed) the two fits alternate ``rounds`` times
    (moebench first, then plain, on the same data); the floor GEMM ``X @ A.T`` (A the
    true (k, d) experts) is timed between them. Reported: the median seconds over all
    rounds and seeds of each, their ratio, the ratio to the floor, and the final expert
    errors of both (mean over seeds) with their largest difference.
    """
    import os

    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import moebench
    from moebench.metrics import expert_error

    if threads > 0:
        threadpool_limits(limits=threads)
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover
            pass
    load_before = os.getloadavg()
    rows = []
    for label in algorithms:
        for act in activations:
            t_moe, t_plain, t_floor, err_moe, err_plain = [], [], [], [], []
            for seed in seeds:
                data = moebench.make_moe(n, d, k, activation=act, sigma=sigma,
                                         gating="orthogonal" if d > k else "generic",
                                         random_state=seed)
                A = data.experts
                if seed == seeds[0]:  # warm-up (imports, caches), not timed
                    fit_both(label, data, act, sigma, seed)
                for _ in range(rounds):
                    est, experts, (tm, tp) = fit_both(label, data, act, sigma, seed)
                    t_moe.append(tm)
                    t_plain.append(tp)
                    tick = time.perf_counter()
                    data.X @ A.T
                    t_floor.append(time.perf_counter() - tick)
                err_moe.append(expert_error(est.experts_, data.experts))
                err_plain.append(expert_error(experts, data.experts))
            moe, pl, floor = _median(t_moe), _median(t_plain), _median(t_floor)
            before = ISSUE13_BEFORE.get((label, act), (float("nan"), float("nan")))
            rows.append({
                "algorithm": label, "g": act, "plain_s": pl, "moebench_s": moe,
                "moebench/plain": moe / pl, "moebench/floor": moe / floor, "floor_s": floor,
                "issue_plain_s": before[0], "issue_moebench_s": before[1],
                "expert_error_moebench": float(np.mean(err_moe)),
                "expert_error_plain": float(np.mean(err_plain)),
                "max_error_difference": float(np.max(np.abs(np.subtract(err_moe, err_plain)))),
            })
            print(_fmt_row(rows[-1]), flush=True)
    info = {
        "setting": {"n": n, "d": d, "k": k, "sigma": sigma, "seeds": seeds, "rounds": rounds,
                    "threads_limit": threads},
        "rows": rows, "threadpoolctl": threadpool_info(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "env": {key: os.environ.get(key) for key in ("OPENBLAS_CORETYPE", "OMP_NUM_THREADS",
                                                      "OPENBLAS_NUM_THREADS")},
        "platform": platform.platform(), "python": sys.version.split()[0],
        "numpy": np.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                     f"{b.get('num_threads')} threads)" for b in info["threadpoolctl"])
    lines = [
        f"# Algorithms end to end: moebench against the plain implementation ({tag})",
        "",
        f"n = {n}, d = {d}, k = {k}, sigma = {sigma} given, seeds {seeds}, {rounds} "
        f"interleaved rounds each; median seconds; {info['date']}.",
        f"BLAS (threadpoolctl): {blas}. Env: {info['env']}. Load average before/after: "
        f"{', '.join(f'{x:.2f}' for x in load_before)} / "
        f"{', '.join(f'{x:.2f}' for x in info['loadavg_after'])}.",
        f"Target: moebench / plain <= {TARGET_VS_PLAIN}. Issue columns: the numbers of "
        "issue 13 (another session, same setting), for reference only.",
        "",
        "| algorithm | g | plain s | moebench s | moebench / plain | moebench / (X @ A.T) | "
        "issue: plain s | issue: moebench s | expert error (moebench / plain) | "
        "max difference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_fmt_row(r) for r in rows]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        from moebench.io import atomic_write_bytes

        atomic_write_bytes(out / f"algorithms_{tag}.json",
                           json.dumps(info, indent=2, default=str).encode())
        atomic_write_bytes(out / f"algorithms_{tag}.md", text.encode())
    print(text)
    return rows


def _fmt_row(r: dict) -> str:
    return (f"| {r['algorithm']} | {r['g']} | {r['plain_s']:.3f} | {r['moebench_s']:.3f} | "
            f"{r['moebench/plain']:.2f} | {r['moebench/floor']:.0f} | {r['issue_plain_s']:.2f} | "
            f"{r['issue_moebench_s']:.2f} | {r['expert_error_moebench']:.4f} / "
            f"{r['expert_error_plain']:.4f} | {r['max_error_difference']:.1e} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", action="store_true", help="time the targets directly")
    p.add_argument("--results-dir", default=str(ROOT / ".asv" / "results"))
    p.add_argument("--machine", default=None, help="asv machine name (default: newest)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: library default)")
    p.add_argument("--tag", default="default", help="suffix of the measure_<tag> files")
    p.add_argument("--asv-algorithms", action="store_true",
                   help="write algorithms_asv.md from the latest asv run's AlgorithmsVsPlain "
                        "results (table.md untouched)")
    p.add_argument("--algorithms", action="store_true",
                   help="issue 13's table: moebench against benchmarks/plain.py, one process "
                        "(defaults n = 10^5, d = 10, k = 3 unless --n/--d/--k are given)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--only", nargs="+", default=list(ALGORITHM_ROWS),
                   choices=list(ALGORITHM_ROWS), help="--algorithms: rows to run")
    p.add_argument("--activations", nargs="+", default=["linear", "relu", "sigmoid"])
    args = p.parse_args(argv)
    if args.algorithms:
        given = set(argv if argv is not None else sys.argv[1:])
        n = args.n if "--n" in given else 100_000
        d = args.d if "--d" in given else 10
        k = args.k if "--k" in given else 3
        rounds = args.rounds if "--rounds" in given else 3
        measure_algorithms(n, d, k, args.seeds, rounds, args.threads, args.only,
                           args.activations, args.tag, Path(args.out))
    elif args.asv_algorithms:
        write_algorithms_report(Path(args.results_dir), args.machine, Path(args.out))
    elif args.measure:
        measure(args.n, args.d, args.k, args.rounds, args.threads, args.tag, Path(args.out))
    else:
        write_report(Path(args.results_dir), args.machine, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
