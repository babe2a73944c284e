"""asv suites of the EM steps and two fits on each array backend ("numpy", "torch").

"torch" is torch on CUDA when the machine has it (else on the CPU): on a GPU machine
``asv run --python=same --bench bench_em_backend`` measures the device path of
:mod:`moebench.em` next to numpy in one run. The torch calls are synchronised
before the clock stops. Data: standard normal ``X`` (cached like the kernel suites'),
relu experts, orthogonal gating, sigma = 0.1, seed 0; the torch suites move ``X`` and
``y`` to the device in ``setup`` (the fits move them themselves, inside the timing) and
call each timed function once there, so that even ``asv run --quick`` (one sample, no
warm-up) does not time the device's first-call costs.
"""

from __future__ import annotations

import numpy as np

import moebench
from benchmarks.common import _cached
from moebench import em
from moebench.backend import to_backend
from moebench.generator import make_moe_model

BACKENDS = ["numpy", "torch"]
#: "d,k" of the EM suites: issue 13's table setting and the large one
EM_SHAPES = ["10,3", "100,10"]


def _torch_backend(backend: str):
    """The torch backend, or asv's skip (NotImplementedError) without torch."""
    if backend == "numpy":
        return None
    try:
        from moebench.backend import get_backend

        return get_backend("torch")
    except ValueError:  # pragma: no cover - torch is a dependency
        raise NotImplementedError("torch is not installed") from None


def _sync(be) -> None:
    if be is not None and be.device != "cpu":
        import torch

        torch.cuda.synchronize()


def em_data(n: int, d: int, k: int, seed: int = 0):
    """``X`` (n, d) standard normal (cached on disk), relu labels ``y`` of a model drawn
    from ``seed`` (orthogonal gating), and the model."""
    model = make_moe_model(d, k, "relu", 0.1, "orthogonal" if d > k else "generic",
                           random_state=seed)
    X = _cached(f"X_{n}_{d}_float64_{seed}",
                lambda: np.random.default_rng(seed).standard_normal((n, d)))
    y, _ = model.sample(X, random_state=seed + 1)
    return X, y, model


class _BackendSuite:
    """The timing policy of the backend suites: one call a sample and no asv warm-up;
    instead ``setup`` calls each timed method once on torch (:meth:`_warm_up`)."""

    number = 1
    warmup_time = 0.0

    def _warm_up(self, *params) -> None:
        """Call every ``time_*`` method once on a torch backend (the device's first-call
        costs: kernel selection), then synchronise."""
        if self.be is not None:
            for name in dir(self):
                if name.startswith("time_"):
                    getattr(self, name)(*params)
        _sync(self.be)


class EMStepsBackend(_BackendSuite):
    """One E-step, one gating M-step iteration (Newton at d = 10, k = 3, L-BFGS at
    d = 100, k = 10) and one expert M-step of two Levenberg-Marquardt steps."""

    params = ([100_000, 1_000_000], EM_SHAPES, BACKENDS)
    param_names = ["n", "dk", "backend"]
    repeat = (2, 5, 20.0)
    timeout = 600

    def setup(self, n, dk, backend):
        d, k = (int(v) for v in dk.split(","))
        self.be = _torch_backend(backend)
        X, y, self.model = em_data(n, d, k)
        rng = np.random.default_rng(1)
        self.start = 0.1 * rng.standard_normal((k, d))
        self.experts0 = self.model.experts + 0.1 * rng.standard_normal((k, d))
        self.X, self.y = to_backend(X, y, self.be or "numpy")
        self.resp, _, self.logp = self._e_step()
        self._warm_up(n, dk, backend)

    def _e_step(self):
        return em._e_step_gate(self.X, self.y, self.experts0, self.start, 0.2,
                               self.model.activation)

    def time_e_step(self, n, dk, backend):
        self._e_step()
        _sync(self.be)

    def time_gating_m_step(self, n, dk, backend):
        em.gating_m_step(self.X, self.resp, self.start, ridge=1e-6, max_iter=1,
                         log_proba=self.logp)
        _sync(self.be)

    def time_expert_m_step(self, n, dk, backend):
        em.expert_m_step(self.X, self.y, self.resp, self.experts0, self.model.activation,
                         max_iter=2)
        _sync(self.be)


class FitBackend(_BackendSuite):
    """tensor_em (gating EM <= 30 iterations) and joint_em (one start, <= 10 iterations;
    3 at d = 100) end to end on each backend, relu experts, n = 10^5."""

    params = (["100000,10,3", "100000,100,10"], ["tensor_em", "joint_em"], BACKENDS)
    param_names = ["setting", "algorithm", "backend"]
    repeat = (1, 3, 60.0)
    timeout = 900

    def setup(self, setting, algorithm, backend):
        n, d, k = (int(v) for v in setting.split(","))
        self.be = _torch_backend(backend)
        self.X, self.y, self.model = em_data(n, d, k)
        options = ({"gating_em_iter": 30} if algorithm == "tensor_em" else
                   {"n_init": 1, "max_iter": 3 if d >= 100 else 10, "init": "data_scale"})
        self.est = moebench.get_algorithm(algorithm, n_experts=k, activation="relu",
                                          random_state=0, backend=backend, **options)
        self._warm_up(setting, algorithm, backend)

    def time_fit(self, setting, algorithm, backend):
        self.est.fit(self.X, self.y)
        _sync(self.be)
