"""Compare the baselines with tensor_em on d = 10, sigma = 0.1, n = 10^5.

For k = 3, 4 and activations linear, sigmoid, relu (orthogonal gating), fit
joint_em, sgd, alt_min (linear only), tensor_em and tensor_em with refine=True
with their default options on the same data sets (one per seed), and report the
median matched expert error, the success rate (error < 0.1) and the median fit
wall time.

Every run is one row of ``results/baselines/runs_k*.csv`` (written as it goes;
runs already there are skipped, so the script resumes). The summary goes to
``results/baselines/comparison.csv`` and ``results/baselines/comparison.md``.

Run with one thread, e.g.::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        nice -n 10 python scripts/measure_baselines.py --seeds 10
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import moebench
from moebench.metrics import DEFAULT_SUCCESS_THRESHOLD, parameter_errors

#: label -> (registered algorithm, options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "joint_em": ("joint_em", {}),
    "sgd": ("sgd", {}),
    "alt_min": ("alt_min", {}),
    "tensor_em": ("tensor_em", {}),
    "tensor_em+refine": ("tensor_em", {"refine": True}),
}
D, SIGMA, N = 10, 0.1, 100_000
KS = (3, 4)
ACTIVATIONS = ("linear", "sigmoid", "relu")
BASE_SEED = 20260101
FIELDS = ["variant", "algorithm", "k", "activation", "seed", "expert_error", "gating_error",
          "success", "fit_time", "n_iter", "status"]


def _seed(*words: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([BASE_SEED, *words])


def _read_runs(out: Path) -> pd.DataFrame:
    files = [f for f in sorted(out.glob("runs*.csv")) if f.stat().st_size > 0]
    if not files:
        return pd.DataFrame(columns=FIELDS)
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def _done(out: Path) -> set[tuple[str, int, str, int]]:
    frame = _read_runs(out)
    return {(r.variant, int(r.k), r.activation, int(r.seed)) for r in frame.itertuples()}


def run(variants: list[str], seeds: int, out: Path, ks: tuple[int, ...] = KS) -> None:
    """Fit every (variant, k, activation, seed) not already in ``out/runs*.csv``.

    New rows go to ``out/runs_k{k...}.csv``, so that one process per k can run at once.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / f"runs_k{''.join(map(str, ks))}.csv"
    done = _done(out)
    new_file = not runs.exists()
    available = set(moebench.available_algorithms())
    with open(runs, "a", newline="") as fh, threadpool_limits(1):
        writer = csv.DictWriter(fh, FIELDS)
        if new_file:
            writer.writeheader()
        for seed in range(seeds):  # seeds outermost: a partial run covers every setting
            for k in ks:
                for act in ACTIVATIONS:
                    data = None
                    for label in variants:
                        algo, options = VARIANTS[label]
                        if label == "alt_min" and act != "linear":
                            continue
                        if (label, k, act, seed) in done:
                            continue
                        if algo not in available:
                            print(f"skip {label}: {algo!r} is not registered", file=sys.stderr)
                            continue
                        if data is None:
                            words = [k, ACTIVATIONS.index(act), seed]
                            data = moebench.make_moe(N, D, k, activation=act, sigma=SIGMA,
                                                     gating="orthogonal",
                                                     random_state=_seed(0, *words))
                        est = moebench.get_algorithm(
                            algo, n_experts=k, activation=act,
                            random_state=int(_seed(1, k, seed, list(VARIANTS).index(label))
                                             .generate_state(1)[0]),
                            **options)
                        row = {"variant": label, "algorithm": algo, "k": k, "activation": act,
                               "seed": seed}
                        start = time.perf_counter()
                        try:
                            est.fit(data.X, data.y)
                        except Exception as exc:  # noqa: BLE001 - a failed run is a result
                            row.update(fit_time=time.perf_counter() - start,
                                       expert_error=np.inf, gating_error=np.inf,
                                       success=False, n_iter=-1,
                                       status=f"error: {type(exc).__name__}: {exc}"[:200])
                        else:
                            elapsed = time.perf_counter() - start
                            errs = parameter_errors(est.experts_, est.gating_, data.model)
                            row.update(fit_time=elapsed, expert_error=errs["expert_error"],
                                       gating_error=errs["gating_error"],
                                       success=errs["expert_error"] < DEFAULT_SUCCESS_THRESHOLD,
                                       n_iter=est.n_iter_, status="ok")
                        writer.writerow(row)
                        fh.flush()
                        print(f"{label:<17} k={k} {act:<8} seed={seed} "
                              f"err={row['expert_error']:.4f} t={row['fit_time']:.2f}s "
                              f"{row['status']}", flush=True)


def summarize(out: Path, seeds: int) -> pd.DataFrame:
    """Aggregate the runs of seeds 0..seeds-1 in runs*.csv into comparison.csv and .md."""
    frame = _read_runs(out)
    frame = frame[frame["seed"] < seeds]
    order = {label: i for i, label in enumerate(VARIANTS)}
    summary = (
        frame.groupby(["k", "activation", "variant"], sort=False)
        .agg(seeds=("seed", "nunique"), median_expert_error=("expert_error", "median"),
             success_rate=("success", "mean"), median_fit_time_s=("fit_time", "median"),
             failed_runs=("status", lambda s: int((s != "ok").sum())))
        .reset_index()
    )
    summary["act_order"] = summary["activation"].map(ACTIVATIONS.index)
    summary["variant_order"] = summary["variant"].map(order)
    summary = summary.sort_values(["k", "act_order", "variant_order"]).drop(
        columns=["act_order", "variant_order"])
    summary.to_csv(out / "comparison.csv", index=False)
    lines = [
        f"# Baselines vs tensor_em (d = {D}, sigma = {SIGMA}, n = {N}, orthogonal gating)",
        "",
        "Default options of every algorithm; success = matched expert error < "
        f"{DEFAULT_SUCCESS_THRESHOLD}; time = median wall time of `fit` with 1 thread "
        f"({platform.processor() or platform.machine()}, python {platform.python_version()}). "
        "Generated by `scripts/measure_baselines.py`.",
        "",
        "| k | activation | algorithm | seeds | median expert error | success rate "
        "| median time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(f"| {r.k} | {r.activation} | {r.variant} | {r.seeds} | "
                     f"{r.median_expert_error:.4f} | {r.success_rate:.0%} | "
                     f"{r.median_fit_time_s:.2f} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="repetitions per setting")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="results/baselines", help="output folder")
    parser.add_argument("--k", type=int, nargs="+", default=list(KS), choices=list(KS),
                        help="numbers of experts to run (one process per k can run at once)")
    parser.add_argument("--summarize-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if not args.summarize_only:
        run(args.variants, args.seeds, out, tuple(args.k))
    print(summarize(out, args.seeds).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
