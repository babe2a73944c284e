"""Measure tensor_em's accuracy and phase times (issue 3, item 6 and the acceptance table).

Writes, under ``--out`` (default ``results/tensor_em``):

* ``accuracy.csv`` -- one row per run: n, d, k, activation, sigma, seed, the matched
  expert error of the tensor step, the gating error after the gating EM, (for the
  refine runs) the errors after joint EM, phase times and diagnostics;
* ``summary.md`` -- the medians over seeds as markdown tables;
* ``phase_times.json`` -- seconds per phase (moments, decomposition, gating EM) of
  one run at n = 10^6, d = 100, k = 10 (linear).

Setting: d = 10, sigma = 0.1, orthogonal gating with unit-norm rows, sigma estimated
(``sigma=None``), default options. Data seeds are ``SeedSequence(BASE_SEED,
spawn_key=(n, k, activation index, repetition))``; the estimator's seed is the
repetition. Run (about 10-15 minutes on one core)::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        nice -n 10 python scripts/measure_tensor_em.py
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import moebench  # noqa: E402
from moebench.generator import make_moe  # noqa: E402
from moebench.tensor.estimator import TensorEM  # noqa: E402

BASE_SEED = 20_240_301
ACTIVATIONS = ("linear", "sigmoid", "relu")
D, SIGMA = 10, 0.1


def data_seed(n: int, k: int, activation: str, rep: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(BASE_SEED, spawn_key=(n, k, ACTIVATIONS.index(activation), rep))


def _last(history: list[dict], phase: str) -> dict:
    recs = [r for r in history if r["phase"] == phase]
    return recs[-1] if recs else {}


def one_run(n: int, k: int, activation: str, rep: int, refine: bool) -> dict:
    data = make_moe(n, D, k, activation=activation, sigma=SIGMA, gating="orthogonal",
                    gating_scale=1.0, random_state=data_seed(n, k, activation, rep))
    est = TensorEM(n_experts=k, activation=activation, random_state=rep, refine=refine)
    tick = time.perf_counter()
    est.fit(data.X, data.y, truth=data.model)
    total = time.perf_counter() - tick
    dec, gem, ref = (_last(est.history_, p) for p in ("decomposition", "gating_em", "refine"))
    return {
        "n": n, "d": D, "k": k, "activation": activation, "sigma": SIGMA, "seed": rep,
        "refine": refine,
        "expert_error": dec["expert_error"],
        "gating_error": gem["gating_error"],
        "expert_error_refine": ref.get("expert_error", np.nan),
        "gating_error_refine": ref.get("gating_error", np.nan),
        "sigma_hat": est.sigma_, "n_iter": est.n_iter_,
        "gating_converged": est.gating_converged_,
        "t2_eigengap": est.t2_eigengap_, "assumption_check": est.assumption_check_,
        "time_total": total,
        **{f"time_{p}": t for p, t in est.phase_times_.items()},
    }


def measure_accuracy(seeds: int, seeds_large: int, out: Path) -> pd.DataFrame:
    rows = []
    plan = []
    for n in (10_000, 100_000, 1_000_000):
        for k in (2, 3, 4):
            for act in ACTIVATIONS:
                reps = seeds_large if n >= 1_000_000 else seeds
                refine = n == 100_000 and k == 3
                plan += [(n, k, act, rep, refine) for rep in range(reps)]
    start = time.perf_counter()
    for i, (n, k, act, rep, refine) in enumerate(plan, 1):
        rows.append(one_run(n, k, act, rep, refine))
        r = rows[-1]
        print(f"[{i}/{len(plan)} {time.perf_counter() - start:6.0f}s] n={n:>7} k={k} {act:<7} "
              f"seed={rep} expert={r['expert_error']:.4f} gating={r['gating_error']:.4f} "
              f"refine={r['expert_error_refine']:.4f} ({r['time_total']:.1f}s)", flush=True)
        pd.DataFrame(rows).to_csv(out / "accuracy.csv", index=False)  # resumable progress
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, fmt: str = "{:.4f}") -> str:
    """A markdown table without the optional ``tabulate`` dependency."""
    table = table.reset_index()
    head = [" / ".join(str(p) for p in c if str(p)) if isinstance(c, tuple) else str(c)
            for c in table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.itertuples(index=False):
        cells = [fmt.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(df: pd.DataFrame) -> str:
    lines = ["# tensor_em accuracy (median over seeds)", "",
             f"d = {D}, sigma = {SIGMA}, orthogonal unit-norm gating, sigma estimated.", ""]
    med = df.groupby(["n", "k", "activation"]).agg(
        expert_error=("expert_error", "median"), gating_error=("gating_error", "median"),
        seeds=("seed", "count"), time=("time_total", "median")).reset_index()
    for col, title in (("expert_error", "Expert error after the tensor step"),
                       ("gating_error", "Gating error after the gating EM")):
        table = med.pivot_table(index=["n", "k"], columns="activation", values=col)
        lines += [f"## {title}", "", _markdown(table[list(ACTIVATIONS)]), ""]
    lines += ["## Seeds and median fit time (s)", "",
              _markdown(med.pivot_table(index=["n", "k"], columns="activation",
                                        values=["seeds", "time"]), "{:.1f}"), ""]
    ref = df[df["refine"]]
    if len(ref):
        r = ref.groupby("activation")[["expert_error", "expert_error_refine",
                                       "gating_error_refine"]].median()
        lines += ["## refine=True, n = 1e5, k = 3", "", _markdown(r), ""]
    return "\n".join(lines)


def measure_phase_times(out: Path, n: int = 1_000_000, d: int = 100, k: int = 10) -> dict:
    tick = time.perf_counter()
    data = make_moe(n, d, k, activation="linear", sigma=SIGMA,
                    random_state=np.random.SeedSequence(BASE_SEED, spawn_key=(n, d, k)))
    gen = time.perf_counter() - tick
    est = TensorEM(n_experts=k, activation="linear", random_state=0)
    tick = time.perf_counter()
    est.fit(data.X, data.y, truth=data.model)
    total = time.perf_counter() - tick
    dec, gem = _last(est.history_, "decomposition"), _last(est.history_, "gating_em")
    result = {
        "n": n, "d": d, "k": k, "activation": "linear", "sigma": SIGMA,
        "phase_seconds": {p: est.phase_times_[p] for p in ("moments", "decomposition",
                                                           "gating_em")},
        "fit_seconds": total, "data_generation_seconds": gen,
        "gating_em_iterations": est.n_iter_, "gating_converged": bool(est.gating_converged_),
        "expert_error": dec["expert_error"], "gating_error": gem["gating_error"],
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS")},
        "platform": platform.platform(), "processor": platform.processor(),
        "python": platform.python_version(), "numpy": np.__version__,
        "moebench": getattr(moebench, "__version__", "unknown"),
    }
    (out / "phase_times.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/tensor_em"))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell, n < 1e6")
    parser.add_argument("--seeds-large", type=int, default=5, help="seeds per cell, n = 1e6")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-phase-times", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.skip_accuracy:
        df = measure_accuracy(args.seeds, args.seeds_large, args.out)
        text = summarize(df)
        (args.out / "summary.md").write_text(text + "\n")
        print(text)
    if not args.skip_phase_times:
        measure_phase_times(args.out)


if __name__ == "__main__":
    main()
