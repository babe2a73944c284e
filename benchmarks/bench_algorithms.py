"""asv suites of the algorithm-level steps: tensor decomposition, one gating EM step,
one full fit of every registered algorithm with a ``track_`` of its expert error, and
issue 13's end-to-end fits against the plain implementation (``AlgorithmsVsPlain``,
with ``track_`` ratios to the plain fit and to the floor GEMM ``X @ A.T``).

The algorithm modules are optional at import time (``moebench.tensor.decomposition``,
``moebench.em``); a suite whose module is missing is skipped in ``setup`` (asv's
``NotImplementedError``), so ``asv check`` passes on a partial checkout.
"""

from __future__ import annotations

import numpy as np

import benchmarks.common  # noqa: F401  (thread policy)
import moebench

try:
    from moebench.tensor import decomposition
except ImportError:  # pragma: no cover - module written separately
    decomposition = None
try:
    from moebench import em
except ImportError:  # pragma: no cover
    em = None
try:
    from moebench.metrics import expert_error
except ImportError:  # pragma: no cover
    expert_error = None


def _algorithms() -> list[str]:
    try:
        return list(moebench.available_algorithms())
    except Exception:  # pragma: no cover - a broken plug-in must not break discovery
        return []


#: The fixed setting of the full fits: small enough for a benchmark (seconds).
FIT_SETTING = dict(n=20_000, d=10, k=3, activation="linear", sigma=0.1, gating="orthogonal")


class TensorDecomposition:
    """Decomposition of a planted orthogonal k x k x k tensor plus small noise."""

    params = ([3, 10], ["power", "jennrich"])
    param_names = ["k", "method"]
    number = 1
    repeat = (3, 10, 10.0)

    def setup(self, k, method):
        if decomposition is None:
            raise NotImplementedError("moebench.tensor.decomposition is not available")
        rng = np.random.default_rng(0)
        V = np.linalg.qr(rng.standard_normal((k, k)))[0]
        lam = np.linspace(1.0, 2.0, k)
        E = rng.standard_normal((k, k, k)) * 1e-3
        self.T = decomposition.compose(lam, V.T) + decomposition.symmetrize(E)

    def time_decompose(self, k, method):
        decomposition.decompose(self.T, method=method, rng=np.random.default_rng(1))


class GatingEMStep:
    """One E-step and one gating M-step at the true experts (n = 10^5).

    The M-step is one Newton step while (k - 1) d <= 400, else L-BFGS (``method="auto"``).
    """

    params = ([100_000], [10, 100], [3, 10])
    param_names = ["n", "d", "k"]
    number = 1
    repeat = (2, 5, 20.0)
    timeout = 300

    def setup(self, n, d, k):
        if em is None:
            raise NotImplementedError("moebench.em is not available")
        # orthogonal gating needs d > k; at d = k the gating is generic
        gating = "orthogonal" if d > k else "generic"
        data = moebench.make_moe(n, d, k, activation="linear", sigma=0.1, gating=gating,
                                 random_state=0)
        self.X, self.y, self.model = data.X, data.y, data.model
        self.resp, _ = em.e_step(self.model, self.X, self.y)
        self.start = np.zeros_like(self.model.gating)

    def time_e_step(self, n, d, k):
        em.e_step(self.model, self.X, self.y)

    def time_gating_m_step(self, n, d, k):
        em.gating_m_step(self.X, self.resp, self.start, max_iter=1)


class FullFit:
    """One fit of each registered algorithm at :data:`FIT_SETTING` (seed 0)."""

    params = (_algorithms(),)
    param_names = ["algorithm"]
    number = 1
    repeat = (1, 3, 60.0)
    timeout = 600

    def setup(self, algorithm):
        if expert_error is None:
            raise NotImplementedError("moebench.metrics.expert_error is not available")
        s = FIT_SETTING
        self.data = moebench.make_moe(s["n"], s["d"], s["k"], activation=s["activation"],
                                      sigma=s["sigma"], gating=s["gating"], random_state=0)

    def _fit(self, algorithm):
        est = moebench.get_algorithm(algorithm, n_experts=FIT_SETTING["k"],
                                     activation=FIT_SETTING["activation"], random_state=0)
        return est.fit(self.data.X, self.data.y)

    def time_fit(self, algorithm):
        self._fit(algorithm)

    def track_expert_error(self, algorithm):
        est = self._fit(algorithm)
        return expert_error(est.experts_, self.data.experts)

    track_expert_error.unit = "Frobenius error"


#: issue 13's settings "n,d,k" of the end-to-end suites: the table's, and the large one
#: (tensor_em only there: joint EM at d = 100, k = 10 takes minutes per fit)
ALGORITHM_SETTINGS = ["100000,10,3", "100000,100,10"]


def _parse_setting(setting: str) -> tuple[int, int, int]:
    n, d, k = (int(v) for v in setting.split(","))
    return n, d, k


class AlgorithmsVsPlain:
    """Issue 13: each algorithm end to end (sigma = 0.1 given, orthogonal gating, seed 0),
    against the plain numpy implementation ``benchmarks/plain.py`` and the floor GEMM
    ``X @ A.T`` measured in the same process.

    ``track_ratio_to_floor`` and ``track_ratio_to_plain`` are medians over three
    interleaved rounds, so a regression shows as a ratio rather than a noisy time.
    """

    params = (ALGORITHM_SETTINGS, ["tensor_em", "tensor_em_refine", "joint_em"],
              ["linear", "relu", "sigmoid"])
    param_names = ["setting", "algorithm", "activation"]
    number = 1
    repeat = (1, 3, 60.0)
    timeout = 900
    rounds = 3

    def setup(self, setting, algorithm, activation):
        n, d, k = _parse_setting(setting)
        if d > 10 and algorithm != "tensor_em":
            raise NotImplementedError("only tensor_em runs at the large setting")
        if d > 10 and activation != "linear":
            raise NotImplementedError("the large setting runs linear experts only")
        self.data = moebench.make_moe(n, d, k, activation=activation, sigma=0.1,
                                      gating="orthogonal" if d > k else "generic",
                                      random_state=0)

    def _moebench(self, algorithm, activation):
        from benchmarks.plain import ALGORITHM_ROWS

        name, options = ALGORITHM_ROWS[algorithm]
        est = moebench.get_algorithm(name, n_experts=self.data.experts.shape[0],
                                     activation=activation, sigma=0.1, random_state=0,
                                     **options)
        return est.fit(self.data.X, self.data.y)

    def _plain(self, algorithm, activation):
        from benchmarks import plain

        return plain.fit(algorithm, self.data.X, self.data.y, self.data.experts.shape[0],
                         activation, 0.1, random_state=0)

    def time_moebench(self, setting, algorithm, activation):
        self._moebench(algorithm, activation)

    def time_plain(self, setting, algorithm, activation):
        self._plain(algorithm, activation)

    def _ratios(self, algorithm, activation, plain_too):
        import statistics
        import time

        A = self.data.experts
        moe, pl, floor = [], [], []
        for _ in range(self.rounds):
            t0 = time.perf_counter()
            self._moebench(algorithm, activation)
            moe.append(time.perf_counter() - t0)
            if plain_too:
                t0 = time.perf_counter()
                self._plain(algorithm, activation)
                pl.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            self.data.X @ A.T
            floor.append(time.perf_counter() - t0)
        med = statistics.median
        return med(moe), (med(pl) if plain_too else float("nan")), med(floor)

    def track_ratio_to_floor(self, setting, algorithm, activation):
        moe, _, floor = self._ratios(algorithm, activation, plain_too=False)
        return moe / floor

    track_ratio_to_floor.unit = "fit time / (X @ A.T) time"

    def track_ratio_to_plain(self, setting, algorithm, activation):
        moe, pl, _ = self._ratios(algorithm, activation, plain_too=True)
        return moe / pl

    track_ratio_to_plain.unit = "moebench time / plain time"

    def track_expert_error(self, setting, algorithm, activation):
        return expert_error(self._moebench(algorithm, activation).experts_, self.data.experts)

    track_expert_error.unit = "Frobenius error"
