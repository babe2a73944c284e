"""Check and time the torch path of the EM steps (moebench.em, moebench.acceleration) against numpy.

On a machine with CUDA, ``torch`` means torch on the GPU; without, torch on the CPU (so
the script also runs, small, on a laptop or CI). Two parts:

1. **Agreement** (float64): the E-step (responsibilities, mean log-likelihood), one
   gating M-step (Newton at d = 10, k = 3; L-BFGS at d = 100, k = 10), one expert M-step
   (two Levenberg-Marquardt steps, relu), and a full tensor_em and joint_em fit
   (parameters and log-likelihood), each numpy against torch, relative difference
   ``max|a - b| / max(1, max|a|)`` against 1e-10. For the fits the table also gives the
   numpy-against-numpy difference with ``X`` in Fortran order (another GEMM summation
   order): an iterative fit cannot agree across backends better than across two layouts
   of the same data, so a fit whose difference exceeds 1e-10 but stays within 10x that
   floor is reported as "floor" (not a failure). tensor_em's EM stage is also checked
   alone, from the same experts; and when the whole tensor_em fit differs because the
   decomposition picked other components (its eigenvalues differ while the moments
   agree to rounding: the robust power method's choice among random starts is
   discontinuous where n is small for d, k, e.g. n = 10^5 at d = 100, k = 10), the rows
   say "decomposition", not "FAIL".
2. **Timing**: median seconds of the same steps and fits, numpy (the machine's BLAS,
   all cores unless ``--threads``) against torch with the data already on the device
   (the fits include moving X and y there), at n = 10^5 and 10^6 with d = 10, k = 3 and
   d = 100, k = 10 (``--quick``: n = 2 * 10^4 and 10^5). The fits have capped iterations
   (tensor_em: gating EM <= 30 iterations; joint_em: one start, <= 10 iterations,
   3 at d = 100) so the whole run stays within a few minutes; both backends run the same
   iterations.

Writes ``gpu_check.json`` (everything, with the machine), ``gpu_check.csv`` (the
timings) and ``gpu_check.md`` (two markdown tables) into ``--out``. Exit status 1 when
an agreement check fails.

Usage::

    python benchmarks/gpu_check.py --out results/performance/gpu          # GPU machine
    python benchmarks/gpu_check.py --out /tmp/gpu_check --quick           # anywhere
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import moebench  # noqa: E402
from moebench import em  # noqa: E402
from moebench.backend import (  # noqa: E402
    TorchBackend,
    array_backend,
    is_tensor,
    to_backend,
)
from moebench.gating_em import gating_em  # noqa: E402
from moebench.history import History  # noqa: E402
from moebench.io import atomic_write_bytes  # noqa: E402

TOL = 1e-10
#: (n, d, k) of the timings; --quick uses the smaller n
SETTINGS = [(100_000, 10, 3), (1_000_000, 10, 3), (100_000, 100, 10), (1_000_000, 100, 10)]
QUICK_SETTINGS = [(20_000, 10, 3), (100_000, 10, 3), (20_000, 100, 10)]
#: (n, d, k) of the agreement checks
AGREEMENT_SETTINGS = [(100_000, 10, 3), (100_000, 100, 10)]
QUICK_AGREEMENT_SETTINGS = [(20_000, 10, 3), (20_000, 100, 10)]
ACTIVATION = "relu"


def _rel(a: Any, b: Any) -> float:
    a = array_backend(a).to_numpy(a) if is_tensor(a) else np.asarray(a, dtype=float)
    b = array_backend(b).to_numpy(b) if is_tensor(b) else np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))


def _data(n: int, d: int, k: int, seed: int = 0):
    return moebench.make_moe(n, d, k, activation=ACTIVATION, sigma=0.1,
                             gating="orthogonal" if d > k else "generic", random_state=seed)


def _sync(backend: TorchBackend) -> None:
    if backend.device != "cpu":
        import torch

        torch.cuda.synchronize()


def _time(fn: Callable[[], Any], backend: TorchBackend | None, repeat: int) -> float:
    """Median wall seconds of ``repeat`` calls (device synchronised after each)."""
    times = []
    for _ in range(repeat):
        if backend is not None:
            _sync(backend)
        t0 = time.perf_counter()
        fn()
        if backend is not None:
            _sync(backend)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fit_options(name: str, d: int) -> dict[str, Any]:
    if name == "tensor_em":
        return {"gating_em_iter": 30}
    return {"n_init": 1, "max_iter": 3 if d >= 100 else 10, "init": "data_scale"}


def _fit(name: str, data, X, backend: str):
    est = moebench.get_algorithm(name, n_experts=data.experts.shape[0], activation=ACTIVATION,
                                 random_state=0, backend=backend,
                                 **_fit_options(name, X.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return est.fit(X, data.y)


# -- agreement ------------------------------------------------------------------------------


def _step_inputs(data, be: TorchBackend):
    Xt, yt = to_backend(data.X, data.y, be)
    start = 0.1 * np.random.default_rng(1).standard_normal(data.gating.shape)
    experts0 = data.experts + 0.1 * np.random.default_rng(2).standard_normal(data.experts.shape)
    return Xt, yt, start, experts0


def check_agreement(n: int, d: int, k: int, be: TorchBackend) -> list[dict[str, Any]]:
    """numpy vs torch on (n, d, k): one row per compared quantity."""
    data = _data(n, d, k, seed=1)
    X, y, act = data.X, data.y, data.activation
    Xt, yt, start, experts0 = _step_inputs(data, be)
    rows: list[dict[str, Any]] = []

    def add(what: str, diff: float, floor: float | None = None) -> None:
        ok = diff <= TOL
        status = "ok" if ok else ("floor" if floor is not None and diff <= 10 * floor + 1e-12
                                  else "FAIL")
        rows.append({"n": n, "d": d, "k": k, "quantity": what, "rel_diff": diff,
                     "numpy_floor": floor, "status": status})

    r, ll, logp = em._e_step_gate(X, y, experts0, start, 0.2, act)
    rt, llt, logpt = em._e_step_gate(Xt, yt, experts0, start, 0.2, act)
    add("e_step responsibilities", _rel(r, rt))
    add("e_step log-likelihood", _rel(ll, llt))
    W = em.gating_m_step(X, r, start, ridge=1e-6, max_iter=1, log_proba=logp)
    Wt = em.gating_m_step(Xt, rt, start, ridge=1e-6, max_iter=1, log_proba=logpt)
    add("gating M-step (1 iteration)", _rel(W, Wt))
    A = em.expert_m_step(X, y, r, experts0, act, max_iter=2)
    At = em.expert_m_step(Xt, yt, rt, experts0, act, max_iter=2)
    add("expert M-step (2 LM steps)", _rel(A, At))
    add("sigma M-step", _rel(em.sigma_m_step(X, y, r, A, act), em.sigma_m_step(Xt, yt, rt, A, act)))
    # tensor_em's EM stage (gating EM, then refine: joint EM from there) from the same
    # experts: the EM alone
    from moebench.stopping import StoppingCriterion

    def em_stage(Xb, backend, refine):
        res = gating_em(Xb, y, experts0, 0.2, act, History(), StoppingCriterion(tol=1e-8),
                        update_sigma=True, gating_em_iter=30, backend=backend)
        if refine:
            res = em.run_em(Xb, y, res.experts, res.gating, res.sigma, act, max_iter=5,
                            tol=1e-6, ridge=1e-6, gating_newton_steps=3, expert_max_iter=3,
                            backend=backend)
        return res

    XF = np.asfortranarray(X)
    for refine in (False, True):
        staged = [em_stage(Xb, backend, refine)
                  for Xb, backend in ((X, "numpy"), (X, be), (XF, "numpy"))]
        label = "EM stage, gating EM" + (" + 5 refine" if refine else "")
        for field in ("experts", "gating", "sigma", "log_likelihood"):
            ref = getattr(staged[0], field)
            add(f"{label} {field}", _rel(ref, getattr(staged[1], field)),
                _rel(ref, getattr(staged[2], field)))
    from moebench.tensor.moments import whitened_third_moment

    W3 = np.linalg.qr(np.random.default_rng(3).standard_normal((d, k)))[0]
    add("whitened T3 moment (kernels)", _rel(whitened_third_moment(X, y**3, W3, backend="numpy"),
                                             whitened_third_moment(X, y**3, W3, backend=be)))
    for name in ("tensor_em", "joint_em"):
        a = _fit(name, data, X, "numpy")
        b = _fit(name, data, X, "torch")
        f = _fit(name, data, XF, "numpy")
        if name == "tensor_em":
            # the tensor step: whitened T3 (the moment kernels) and the decomposition
            t3 = _rel(a.tensor_eigenvalues_, b.tensor_eigenvalues_)
            add("tensor_em decomposition eigenvalues", t3)
            if t3 > 1e-6:
                # moments that agree to rounding, a decomposition that does not: the robust
                # power method's choice among its random starts flipped (n too small for
                # this d, k); the fit's difference then says nothing about the EM
                rows[-1]["status"] = "decomposition"
        for attr in ("experts_", "gating_", "sigma_", "log_likelihood_"):
            add(f"{name} fit {attr.rstrip('_')}", _rel(getattr(a, attr), getattr(b, attr)),
                _rel(getattr(a, attr), getattr(f, attr)))
            if name == "tensor_em" and rows[-1]["status"] == "FAIL" and t3 > 1e-6:
                rows[-1]["status"] = "decomposition"
        if a.n_iter_ != b.n_iter_:
            rows.append({"n": n, "d": d, "k": k, "quantity": f"{name} fit n_iter",
                         "rel_diff": float(abs(a.n_iter_ - b.n_iter_)), "numpy_floor": None,
                         "status": "FAIL"})
    return rows


# -- timing ---------------------------------------------------------------------------------


def measure_setting(n: int, d: int, k: int, be: TorchBackend, repeat: int) -> list[dict[str, Any]]:
    """Median seconds of each operation on numpy and on torch at (n, d, k)."""
    data = _data(n, d, k)
    X, y, act = data.X, data.y, data.activation
    t0 = time.perf_counter()
    Xt, yt, start, experts0 = _step_inputs(data, be)
    _sync(be)
    transfer = time.perf_counter() - t0
    r, _, logp = em._e_step_gate(X, y, experts0, start, 0.2, act)
    rt, _, logpt = em._e_step_gate(Xt, yt, experts0, start, 0.2, act)
    ops: list[tuple[str, Callable[[], Any], Callable[[], Any], int]] = [
        ("E-step", lambda: em._e_step_gate(X, y, experts0, start, 0.2, act),
         lambda: em._e_step_gate(Xt, yt, experts0, start, 0.2, act), repeat),
        ("gating M-step (1 iteration)",
         lambda: em.gating_m_step(X, r, start, ridge=1e-6, max_iter=1, log_proba=logp),
         lambda: em.gating_m_step(Xt, rt, start, ridge=1e-6, max_iter=1, log_proba=logpt),
         repeat),
        ("expert M-step (2 LM steps)",
         lambda: em.expert_m_step(X, y, r, experts0, act, max_iter=2),
         lambda: em.expert_m_step(Xt, yt, rt, experts0, act, max_iter=2), repeat),
    ]
    for name in ("tensor_em", "joint_em"):
        ops.append((f"{name} fit", (lambda nm=name: _fit(nm, data, X, "numpy")),
                    (lambda nm=name: _fit(nm, data, X, "torch")), 1))
    rows = [{"n": n, "d": d, "k": k, "operation": "move X, y to the device", "numpy_s": 0.0,
             "torch_s": transfer, "speedup": float("nan")}]
    for label, f_np, f_t, rep in ops:
        t_np = _time(f_np, None, rep)
        f_t()  # warm-up (kernel selection, allocator)
        t_t = _time(f_t, be, rep)
        rows.append({"n": n, "d": d, "k": k, "operation": label, "numpy_s": t_np,
                     "torch_s": t_t, "speedup": t_np / t_t if t_t > 0 else float("nan")})
        print(f"  {label:32s} numpy {t_np:8.3f} s   torch {t_t:8.3f} s   "
              f"x{rows[-1]['speedup']:.2f}", flush=True)
    return rows


# -- output ---------------------------------------------------------------------------------


def _machine(be: TorchBackend) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__, "device": be.device, "platform": platform.platform(),
    }
    if be.device != "cpu":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version",
                                                 "architecture")} for p in threadpool_info()]
    except ImportError:  # pragma: no cover
        pass
    info["torch_threads"] = torch.get_num_threads()
    return info


def _markdown(machine: dict[str, Any], checks: list[dict], timings: list[dict]) -> str:
    lines = [f"# EM steps: numpy vs torch ({machine.get('gpu', machine['device'])})", "",
             f"numpy {machine['numpy']}, torch {machine['torch']}, python {machine['python']}; "
             f"float64; relu experts; medians of wall seconds; torch times with the data "
             f"on the device (the fits include moving it).", "",
             "| n | d | k | operation | numpy s | torch s | speedup |",
             "|---|---|---|---|---|---|---|"]
    for r in timings:
        sp = "" if np.isnan(r["speedup"]) else f"{r['speedup']:.2f}x"
        lines.append(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['operation']} | "
                     f"{r['numpy_s']:.4g} | {r['torch_s']:.4g} | {sp} |")
    lines += ["", f"Agreement (relative max difference; tolerance {TOL:g}; numpy floor = numpy "
              "vs numpy with X in Fortran order):", "",
              "| n | d | k | quantity | torch vs numpy | numpy floor | status |",
              "|---|---|---|---|---|---|---|"]
    for r in checks:
        fl = "" if r["numpy_floor"] is None else f"{r['numpy_floor']:.1e}"
        lines.append(f"| {r['n']:,} | {r['d']} | {r['k']} | {r['quantity']} | "
                     f"{r['rel_diff']:.1e} | {fl} | {r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the checks and timings; return the exit status (1 if a check failed)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (n = 2e4, 1e5): a smoke run on any machine")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per step")
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS and torch CPU threads (0: the libraries' defaults)")
    parser.add_argument("--skip-timing", action="store_true", help="agreement checks only")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1; got {args.repeat}")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0; got {args.threads}")
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed", file=sys.stderr)
        return 2
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
        torch.set_num_threads(args.threads)
    be = TorchBackend()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine(be)
    print(f"gpu_check: torch on {be.device} ({machine.get('gpu', 'cpu')})", flush=True)
    start = time.perf_counter()

    # warm-up: CUDA context, cuBLAS handles, first kernels
    warm = _data(2000, 10, 3)
    em.e_step(warm.model, *to_backend(warm.X, warm.y, be))

    checks: list[dict[str, Any]] = []
    for n, d, k in QUICK_AGREEMENT_SETTINGS if args.quick else AGREEMENT_SETTINGS:
        print(f"agreement n={n} d={d} k={k}", flush=True)
        rows = check_agreement(n, d, k, be)
        for r in rows:
            print(f"  {r['quantity']:36s} {r['rel_diff']:.2e}  {r['status']}", flush=True)
        checks += rows
    timings: list[dict[str, Any]] = []
    if not args.skip_timing:
        for n, d, k in (QUICK_SETTINGS if args.quick else SETTINGS):
            print(f"timing n={n} d={d} k={k}", flush=True)
            timings += measure_setting(n, d, k, be, args.repeat)
            if be.device != "cpu":
                torch.cuda.empty_cache()
    elapsed = time.perf_counter() - start
    failed = [r for r in checks if r["status"] == "FAIL"]
    report = {"machine": machine, "tolerance": TOL, "activation": ACTIVATION,
              "elapsed_s": elapsed, "checks": checks, "timings": timings,
              "passed": not failed}
    atomic_write_bytes(out / "gpu_check.json", json.dumps(report, indent=1).encode())
    buf = io.StringIO()
    if timings:
        writer = csv.DictWriter(buf, fieldnames=list(timings[0]))
        writer.writeheader()
        writer.writerows(timings)
    atomic_write_bytes(out / "gpu_check.csv", buf.getvalue().encode())
    atomic_write_bytes(out / "gpu_check.md", _markdown(machine, checks, timings).encode())
    print(f"gpu_check: {len(checks) - len(failed)}/{len(checks)} checks passed; "
          f"{elapsed:.0f} s; wrote {out}/gpu_check.{{json,csv,md}}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
