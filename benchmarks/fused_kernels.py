"""Experiment: issue 13's kernel goal with hand-written AVX2 kernels (not in the package).

The package computes T2 and the whitened T3 with numpy's BLAS (``moebench.tensor.moments``):
T2 + T3 is 1.9-2.2x one ``XᵀX`` with the Haswell kernel, against a goal of 1.5x. This
script builds ``benchmarks/fused_kernels/fused_moments.c`` (gcc, x86-64 with AVX2 and FMA)
into a temporary folder, checks it against the package's moments, and times, in one
process, one thread, interleaved rounds (best of each):

* ``XᵀX`` (numpy, OpenBLAS SYRK): the reference;
* the package's T2 (s2 >= 0 and of mixed sign) and whitened T3;
* the fused T2 (rows scaled while packing, either sign) and the fused whitened T3
  (projection and packed cubic products in one pass; k = 10 only).

Usage::

    python benchmarks/fused_kernels.py [--n 1000000] [--rounds 7] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import ctypes
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("fused_kernels") / "fused_moments.c"
K = 10  # the kernel's number of experts (compiled in)
MR, NR, KP, PAIRS = 6, 8, 12, 56  # tile shape of wsyrk; lanes of u; padded pair count
KC, MB = 128, 256  # rows per packed block (wsyrk) and per projected block (wt3)


def build(folder: Path) -> ctypes.CDLL:
    """Compile the kernels into ``folder`` and load them."""
    if shutil.which("gcc") is None:
        raise SystemExit("fused_kernels: needs gcc on PATH")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"fused_kernels: needs x86-64 with AVX2; this is {platform.machine()}")
    lib = folder / "libfused_moments.so"
    subprocess.run(["gcc", "-O3", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(lib),
                    str(SOURCE)], check=True)
    so = ctypes.CDLL(str(lib))
    ptr, size = ctypes.POINTER(ctypes.c_double), ctypes.c_long
    so.wsyrk.argtypes = [ptr, ptr, size, size, ptr, size]
    so.wt3.argtypes = [ptr, ptr, size, size, ptr, ptr, ptr, size]
    return so


def _ptr(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def fused_second_moment(so: ctypes.CDLL, X: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``mean_n s2_n (x_n x_nᵀ - I)`` by the fused weighted SYRK."""
    n, d = X.shape
    C = np.zeros((-(-d // MR) * MR, -(-d // NR) * NR))
    so.wsyrk(_ptr(X), _ptr(s2), n, d, _ptr(C), KC)
    upper = np.triu(C[:d, :d])
    T2 = (upper + np.triu(upper, 1).T) / n
    T2[np.diag_indices(d)] -= s2.mean()
    return T2


def fused_whitened_third_moment(so: ctypes.CDLL, X: np.ndarray, s3: np.ndarray,
                                W: np.ndarray) -> np.ndarray:
    """``T3(W, W, W)`` from the fused pass: G over the pairs sorted by b, then symmetry."""
    from moebench.tensor.moments import _sym_outer

    n, d = X.shape
    Wp = np.zeros((d, KP))
    Wp[:, :K] = W
    G, v = np.zeros((PAIRS, KP)), np.zeros(KP)
    so.wt3(_ptr(X), _ptr(s3), n, d, _ptr(Wp), _ptr(G), _ptr(v), MB)
    pair = {}
    for b in range(K):
        for a in range(b + 1):
            pair[(a, b)] = len(pair)
    triples = np.sort(np.indices((K, K, K)).reshape(3, -1).T, axis=1)  # (i <= j <= l)
    rows = np.array([pair[(i, j)] for i, j, _ in triples])
    M = G[rows, triples[:, 2]].reshape(K, K, K)
    return (M - _sym_outer(v[:K], W.T @ W)) / n


def best_times(kernels: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time of each kernel over interleaved rounds."""
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(rounds):
        for name, fn in kernels.items():
            tick = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - tick)
    return best


def main(argv: list[str] | None = None) -> None:
    """Build, check and time; print (and with ``--out`` write) a markdown report."""
    from moebench.cli_checks import int_at_least

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int_at_least(1000), default=1_000_000)
    parser.add_argument("--d", type=int_at_least(K), default=100)
    parser.add_argument("--rounds", type=int_at_least(1), default=7)
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_info, threadpool_limits

    from moebench.tensor.moments import second_moment, whitened_third_moment

    threadpool_limits(1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d))
    y = rng.standard_normal(args.n)
    s2_pos, s2_mixed, s3 = y**2, y**2 - 1.0, y**3 - 3.0 * y
    W = np.linalg.qr(rng.standard_normal((args.d, K)))[0] / 3.0
    with tempfile.TemporaryDirectory() as tmp:
        so = build(Path(tmp))
        errors = {
            "T2, s2 >= 0": (fused_second_moment(so, X, s2_pos), second_moment(X, s2_pos)),
            "T2, mixed sign": (fused_second_moment(so, X, s2_mixed), second_moment(X, s2_mixed)),
            "whitened T3": (fused_whitened_third_moment(so, X, s3, W),
                            whitened_third_moment(X, s3, W)),
        }
        rel = {k: float(np.abs(a - b).max() / np.abs(b).max()) for k, (a, b) in errors.items()}
        t = best_times({
            "XᵀX (numpy)": lambda: X.T @ X,
            "T2, s2 >= 0 (package)": lambda: second_moment(X, s2_pos),
            "T2, mixed sign (package)": lambda: second_moment(X, s2_mixed),
            "whitened T3 (package)": lambda: whitened_third_moment(X, s3, W),
            "T2, either sign (fused)": lambda: fused_second_moment(so, X, s2_mixed),
            "whitened T3 (fused)": lambda: fused_whitened_third_moment(so, X, s3, W),
        }, args.rounds)
    gram = t["XᵀX (numpy)"]
    t3 = t["whitened T3 (package)"]
    package = [(t[f"T2, {case} (package)"] + t3) / gram for case in ("s2 >= 0", "mixed sign")]
    fused = (t["T2, either sign (fused)"] + t["whitened T3 (fused)"]) / gram
    blas = "; ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture')})"
                     for i in threadpool_info())
    lines = [
        f"# Fused AVX2 moment kernels (experiment), n = {args.n}, d = {args.d}, k = {K}",
        "",
        f"Best of {args.rounds} interleaved rounds, one thread; BLAS: {blas}; "
        f"python {sys.version.split()[0]}, numpy {np.__version__}.",
        "",
        "| kernel | s | / XᵀX |",
        "|---|---|---|",
        *[f"| {name} | {sec:.4f} | {sec / gram:.2f} |" for name, sec in t.items()],
        "",
        f"- T2 + T3, package: {package[0]:.2f} (s2 >= 0), {package[1]:.2f} (mixed sign) x XᵀX",
        f"- T2 + T3, fused: {fused:.2f} x XᵀX (either sign)",
        "- largest relative difference, fused vs package: "
        + ", ".join(f"{k} {v:.1e}" for k, v in rel.items()),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        from moebench.io import atomic_write_bytes

        atomic_write_bytes(Path(args.out), report.encode())


if __name__ == "__main__":
    main()
