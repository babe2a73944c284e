"""One-process timing measurements that make notes in ``results/performance/`` (not asv).

The performance tables come from asv's own results (``tools/asv_report.py``); this tool
makes the measured notes the docs cite, each naming the command that made it:

    python tools/measure.py                    # the issue-6 targets of the moment kernels
    python tools/measure.py --algorithms       # moebench against benchmarks/plain.py

The first times, at one setting (default n = 10^6, d = 100, k = 10, float64), the floor
kernels (``X @ W``, ``X^T X``) and the moment kernels interleaved in one process (best of
``--rounds``), measures peak memory beyond ``X`` with tracemalloc (numpy reports its
allocations to it), the float32 error, and records threadpoolctl's BLAS information; it
writes ``results/performance/measure_<tag>.json`` and ``.md``. ``--algorithms`` fits
tensor_em, refine and joint_em with moebench and with the plain numpy implementation
(``benchmarks/plain.py``) in turn on the same data (defaults n = 10^5, d = 10, k = 3) and
writes ``algorithms_<tag>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks.plain and tools.asv_report from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.plain import ALGORITHM_ROWS  # noqa: E402
from tools.asv_report import (  # noqa: E402
    OUT,
    TARGET_F32_SPEEDUP,
    TARGET_PEAK_MIB,
    TARGET_T2T3_OVER_GRAM,
    TARGET_T3_OVER_PROJECTION,
    TARGET_VS_PLAIN,
)


# --------------------------------------------------------------------------- moment kernels
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
        f"Command: `python tools/measure.py --n {n} --d {d} --k {k} --rounds {rounds} "
        f"--threads {threads} --tag {tag}`.",
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


def _median(values: list[float]) -> float:
    v = sorted(values)
    m = len(v)
    return v[m // 2] if m % 2 else 0.5 * (v[m // 2 - 1] + v[m // 2])


def fit_both(label: str, data, activation: str, sigma: float, seed: int):
    """One moebench fit and one plain fit of ``label``: (estimator, plain experts, times)."""
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
            rows.append({
                "algorithm": label, "g": act, "plain_s": pl, "moebench_s": moe,
                "moebench/plain": moe / pl, "moebench/floor": moe / floor, "floor_s": floor,
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
        f"Target: moebench / plain <= {TARGET_VS_PLAIN}. Command: `python tools/measure.py "
        f"--algorithms --n {n} --d {d} --k {k} --tag {tag}`.",
        "",
        "| algorithm | g | plain s | moebench s | moebench / plain | moebench / (X @ A.T) | "
        "expert error (moebench / plain) | max difference |",
        "|---|---|---|---|---|---|---|---|",
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
            f"{r['moebench/plain']:.2f} | {r['moebench/floor']:.0f} | "
            f"{r['expert_error_moebench']:.4f} / "
            f"{r['expert_error_plain']:.4f} | {r['max_error_difference']:.1e} |")


def main(argv: list[str] | None = None) -> int:
    """Command line: the moment-kernel targets (default) or ``--algorithms``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--n", type=int, default=None, help="default 10^6 (--algorithms: 10^5)")
    p.add_argument("--d", type=int, default=None, help="default 100 (--algorithms: 10)")
    p.add_argument("--k", type=int, default=None, help="default 10 (--algorithms: 3)")
    p.add_argument("--rounds", type=int, default=None, help="default 7 (--algorithms: 3)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: library default)")
    p.add_argument("--tag", default="default", help="suffix of the output files")
    p.add_argument("--algorithms", action="store_true",
                   help="moebench against benchmarks/plain.py, in one process")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--only", nargs="+", default=list(ALGORITHM_ROWS),
                   choices=list(ALGORITHM_ROWS), help="--algorithms: rows to run")
    p.add_argument("--activations", nargs="+", default=["linear", "relu", "sigmoid"])
    args = p.parse_args(argv)
    if args.algorithms:
        measure_algorithms(args.n or 100_000, args.d or 10, args.k or 3, args.seeds,
                           args.rounds or 3, args.threads, args.only, args.activations,
                           args.tag, Path(args.out))
    else:
        measure(args.n or 1_000_000, args.d or 100, args.k or 10, args.rounds or 7,
                args.threads, args.tag, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
