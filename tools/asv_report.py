"""Performance tables from asv's own results: ``.asv/results`` -> ``results/performance/``.

::

    asv run --python=same --set-commit-hash $(git rev-parse HEAD)   # saves results
    python tools/asv_report.py                    # table.md, benchmarks.csv, speedup.png
    python tools/asv_report.py --algorithms       # algorithms_asv.md (AlgorithmsVsPlain)

(asv saves no results from an existing environment such as ``--python=same``
unless ``--set-commit-hash`` is given; ``--quick`` runs are for smoke tests only.)

It reads the latest asv run of one machine (``--machine``, default: the machine with the
newest results) and writes

* ``results/performance/benchmarks.csv`` -- every benchmark and parameter set (long format),
* ``results/performance/table.md`` -- ratios to the floor, float32 speed-ups, peak memory
  beyond the data, speed-up over the dense d^3 kernel, then the raw timings,
* ``results/performance/speedup.png`` -- speed-up over the dense kernel and ratio to floor;

with ``--algorithms``, ``results/performance/algorithms_asv.md`` from the
``bench_algorithms.AlgorithmsVsPlain`` results (``table.md`` untouched). Every number comes
from the asv result file it names. Direct one-process measurements (notes, not asv
tables) are ``tools/measure.py``'s.
"""

from __future__ import annotations

import argparse
import json
import math
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
        _source_line(data, path) + " Regenerate with `python tools/asv_report.py "
        "--algorithms`.", "", _ALGORITHMS_INTRO, "", _md_table(rows, _ALGORITHM_KEYS), ""])
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
            "`python tools/asv_report.py --algorithms`")
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
        _source_line(data, path) + " Regenerate with `python tools/asv_report.py`.",
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


def main(argv: list[str] | None = None) -> int:
    """Command line: the asv tables (default) or ``--algorithms``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=str(ROOT / ".asv" / "results"))
    p.add_argument("--machine", default=None, help="asv machine name (default: newest)")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--algorithms", action="store_true",
                   help="write algorithms_asv.md from the latest asv run's AlgorithmsVsPlain "
                        "results (table.md untouched)")
    args = p.parse_args(argv)
    if args.algorithms:
        write_algorithms_report(Path(args.results_dir), args.machine, Path(args.out))
    else:
        write_report(Path(args.results_dir), args.machine, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
