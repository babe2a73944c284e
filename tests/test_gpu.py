"""The torch path of the EM steps and fits against numpy, on a GPU (``-m gpu``) and small on CPU.

Each check compares one quantity numpy against torch, relative difference
``max|a - b| / max(1, max|a|)`` against :data:`TOL` (float64): the E-step
(responsibilities, mean log-likelihood), one gating M-step, one expert M-step (two
Levenberg-Marquardt steps, relu), the sigma M-step, tensor_em's EM stage from fixed
experts (the gating EM, then 5 joint-EM iterations), the whitened third moment, and whole
tensor_em and joint_em fits. An iterative fit cannot agree across backends better than
across two layouts of the same data, so each fit is also run by numpy on ``X`` in Fortran
order (another GEMM summation order): a difference above :data:`TOL` but within 10x that
floor is "floor", not a failure. When tensor_em's decomposition keeps other components
(its tensor eigenvalues differ while the moments agree to rounding: the robust power
method's choice among random starts is decided by rounding where n is small for d, k,
e.g. n = 10^5 at d = 100, k = 10) its fit rows are "decomposition", not failures.

The tests marked ``gpu`` run at the settings of the GPU measurement (n = 10^5; d = 10,
k = 3 and d = 100, k = 10) on CUDA and are skipped without it
(``python -m pytest -m gpu tests/test_gpu.py`` on a GPU machine); the unmarked one runs the
same checks small on CPU torch, so the code is exercised everywhere. Timings of the same
steps on each backend are asv's (``asv run --python=same --bench bench_em_backend``).
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np
import pytest

import moebench
from moebench import em
from moebench.backend import TorchBackend, array_backend, is_tensor, to_backend
from moebench.gating_em import gating_em
from moebench.history import History
from moebench.stopping import StoppingCriterion
from moebench.tensor.moments import whitened_third_moment

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_CUDA = HAS_TORCH and __import__("torch").cuda.is_available()
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")

TOL = 1e-10
ACTIVATION = "relu"
#: (n, d, k) of the GPU agreement checks
GPU_SETTINGS = [(100_000, 10, 3), (100_000, 100, 10)]
#: statuses that are not failures (see the module docstring)
PASSING = ("ok", "floor", "decomposition")
#: the quantities every setting checks
QUANTITIES = ("e_step responsibilities", "e_step log-likelihood", "gating M-step (1 iteration)",
              "expert M-step (2 LM steps)", "sigma M-step", "whitened T3 moment (kernels)",
              "EM stage, gating EM experts", "EM stage, gating EM + 5 refine log_likelihood",
              "tensor_em fit experts", "joint_em fit log_likelihood")


def _rel(a: Any, b: Any) -> float:
    a = array_backend(a).to_numpy(a) if is_tensor(a) else np.asarray(a, dtype=float)
    b = array_backend(b).to_numpy(b) if is_tensor(b) else np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))


def _fit(name: str, data: Any, X: np.ndarray, backend: Any) -> Any:
    options = ({"gating_em_iter": 30} if name == "tensor_em" else
               {"n_init": 1, "max_iter": 3 if X.shape[1] >= 100 else 10, "init": "data_scale"})
    est = moebench.get_algorithm(name, n_experts=data.experts.shape[0], activation=ACTIVATION,
                                 random_state=0, backend=backend, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return est.fit(X, data.y)


def agreement(n: int, d: int, k: int, be: TorchBackend) -> list[dict[str, Any]]:
    """numpy against torch (``be``) on one data set of (n, d, k): a row per quantity, with
    its relative difference, the numpy-against-numpy floor (fits) and its status."""
    data = moebench.make_moe(n, d, k, activation=ACTIVATION, sigma=0.1,
                             gating="orthogonal" if d > k else "generic", random_state=1)
    X, y, act = data.X, data.y, data.activation
    Xt, yt = to_backend(X, y, be)
    start = 0.1 * np.random.default_rng(1).standard_normal(data.gating.shape)
    experts0 = data.experts + 0.1 * np.random.default_rng(2).standard_normal(data.experts.shape)
    rows: list[dict[str, Any]] = []

    def add(what: str, diff: float, floor: float | None = None) -> None:
        status = "ok" if diff <= TOL else (
            "floor" if floor is not None and diff <= 10 * floor + 1e-12 else "FAIL")
        rows.append({"quantity": what, "rel_diff": diff, "numpy_floor": floor,
                     "status": status})

    r, ll, logp = em._e_step_gate(X, y, experts0, start, 0.2, act)
    rt, llt, logpt = em._e_step_gate(Xt, yt, experts0, start, 0.2, act)
    add("e_step responsibilities", _rel(r, rt))
    add("e_step log-likelihood", _rel(ll, llt))
    add("gating M-step (1 iteration)",
        _rel(em.gating_m_step(X, r, start, ridge=1e-6, max_iter=1, log_proba=logp),
             em.gating_m_step(Xt, rt, start, ridge=1e-6, max_iter=1, log_proba=logpt)))
    A = em.expert_m_step(X, y, r, experts0, act, max_iter=2)
    add("expert M-step (2 LM steps)",
        _rel(A, em.expert_m_step(Xt, yt, rt, experts0, act, max_iter=2)))
    add("sigma M-step", _rel(em.sigma_m_step(X, y, r, A, act), em.sigma_m_step(Xt, yt, rt, A, act)))

    def em_stage(Xb: np.ndarray, backend: Any, refine: bool) -> Any:
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
    W3 = np.linalg.qr(np.random.default_rng(3).standard_normal((d, k)))[0]
    add("whitened T3 moment (kernels)", _rel(whitened_third_moment(X, y**3, W3, backend="numpy"),
                                             whitened_third_moment(X, y**3, W3, backend=be)))
    for name in ("tensor_em", "joint_em"):
        # an estimator takes a backend name: "torch" is CUDA where there is one
        a, b, f = (_fit(name, data, X, "numpy"), _fit(name, data, X, "torch"),
                   _fit(name, data, XF, "numpy"))
        flipped = (name == "tensor_em"
                   and _rel(a.tensor_eigenvalues_, b.tensor_eigenvalues_) > 1e-6)
        for attr in ("experts_", "gating_", "sigma_", "log_likelihood_"):
            add(f"{name} fit {attr.rstrip('_')}", _rel(getattr(a, attr), getattr(b, attr)),
                _rel(getattr(a, attr), getattr(f, attr)))
            if flipped and rows[-1]["status"] == "FAIL":
                rows[-1]["status"] = "decomposition"
        if a.n_iter_ != b.n_iter_:
            add(f"{name} fit n_iter", float(abs(a.n_iter_ - b.n_iter_)))
            rows[-1]["status"] = "FAIL"
    return rows


def _check(rows: list[dict[str, Any]]) -> None:
    assert set(QUANTITIES) <= {r["quantity"] for r in rows}
    failed = [r for r in rows if r["status"] not in PASSING]
    assert not failed, "numpy and torch disagree: " + "; ".join(
        f"{r['quantity']} {r['rel_diff']:.3g} (floor {r['numpy_floor']})" for r in failed)


@needs_torch
def test_torch_cpu_agrees_with_numpy_small():
    """The checks at a tiny size on CPU torch (where every test run has it)."""
    rows = agreement(3000, 6, 2, TorchBackend("cpu"))
    _check(rows)
    if not HAS_CUDA:  # CPU torch throughout: the same operations, no fit needs the floor
        assert all(r["status"] == "ok" for r in rows)


def test_a_disagreement_is_reported():
    """``add``'s rule: above TOL and beyond 10x the numpy floor is a failure, within it not."""
    rows = [{"quantity": q, "rel_diff": 0.0, "numpy_floor": None, "status": "ok"}
            for q in QUANTITIES]
    _check(rows)
    rows[0]["status"] = "FAIL"
    with pytest.raises(AssertionError, match="e_step responsibilities"):
        _check(rows)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("n,d,k", GPU_SETTINGS)
def test_cuda_agrees_with_numpy(n, d, k):
    """On the GPU, at the measurement's settings: every quantity within TOL, the numpy
    floor, or (tensor_em's fit) a flipped decomposition."""
    be = TorchBackend("cuda")
    assert be.device.startswith("cuda")
    _check(agreement(n, d, k, be))
