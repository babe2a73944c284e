"""Contract checks for estimators, like scikit-learn's ``check_estimator``.

A new baseline tests itself with::

    from moebench.testing import check_algorithm
    check_algorithm("my_algorithm")          # a registered name
    check_algorithm(MyEstimator, max_iter=50)  # or a class, with options

Each check raises ``AssertionError`` naming the violated part of the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from moebench.base import MoEEstimator
from moebench.generator import make_moe
from moebench.registry import algorithm_class

#: the tiny problem every estimator must solve better than linear regression
TINY = dict(n=3000, d=5, k=2, sigma=0.1, gating="orthogonal", gating_scale=1.0)


def _resolve(algorithm: str | type[MoEEstimator]) -> type[MoEEstimator]:
    if isinstance(algorithm, str):
        return algorithm_class(algorithm)
    if isinstance(algorithm, type) and issubclass(algorithm, MoEEstimator):
        return algorithm
    raise ValueError(
        f"check_algorithm needs a registered name or a MoEEstimator subclass; got {algorithm!r}"
    )


def _activation_for(cls: type[MoEEstimator]) -> str:
    supported = cls.supported_activations
    return "linear" if supported is None or "linear" in supported else supported[0]


def _make(cls: type[MoEEstimator], options: dict[str, Any], **params: Any) -> MoEEstimator:
    return cls(**{"activation": _activation_for(cls), **options, **params})


def _tiny(cls: type[MoEEstimator], seed: int):
    return make_moe(activation=_activation_for(cls), random_state=seed, **TINY)


def _expect_value_error(what: str, func: Callable[[], Any]) -> None:
    try:
        func()
    except ValueError as exc:
        if not str(exc):
            raise AssertionError(f"{what}: ValueError without a message") from exc
        return
    except Exception as exc:  # noqa: BLE001 - any other type is a contract violation
        raise AssertionError(
            f"{what}: expected ValueError, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected ValueError, nothing was raised")


def check_construction(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """Default construction works and stores parameters unchanged (get/set_params)."""
    est = cls()
    params = est.get_params()
    for key in ("n_experts", "activation", "sigma", "random_state"):
        assert key in params, f"{cls.__name__}.__init__ must accept {key!r}"
    clone = cls(**params)
    assert clone.get_params() == params, "get_params does not round-trip through the constructor"
    est.set_params(random_state=123)
    assert est.random_state == 123, "set_params did not set random_state"
    assert cls.description, f"{cls.__name__} needs a one-line description for `moebench list`"


def check_fit_contract(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """fit returns self and sets every fitted attribute with the right shape."""
    data = _tiny(cls, 0)
    est = _make(cls, options, n_experts=2, random_state=0)
    out = est.fit(data.X, data.y, truth=data.model)
    assert out is est, "fit must return self"
    k, d = 2, data.X.shape[1]
    for attr in ("experts_", "gating_"):
        value = np.asarray(getattr(est, attr))
        assert value.shape == (k, d), f"{attr} has shape {value.shape}, expected {(k, d)}"
        assert np.all(np.isfinite(value)), f"{attr} has non-finite values"
    assert np.allclose(est.gating_[-1], 0.0), "gating_ must have its last row 0"
    assert np.isfinite(est.sigma_) and est.sigma_ > 0, f"sigma_ = {est.sigma_} is not positive"
    assert isinstance(est.n_iter_, int) and est.n_iter_ >= 0, "n_iter_ must be an int >= 0"
    hist = est.history_
    assert isinstance(hist, list) and hist, "history_ must be a non-empty list of records"
    for rec in hist:
        for key in ("iteration", "time", "log_likelihood"):
            assert key in rec, f"history_ record lacks {key!r}: {rec}"
    times = [rec["time"] for rec in hist]
    assert all(b >= a for a, b in zip(times, times[1:])), "history_ times must not decrease"
    assert any("expert_error" in rec for rec in hist), (
        "with fit(..., truth=...) history_ must record expert_error"
    )
    pred = est.predict(data.X[:7])
    assert pred.shape == (7,) and np.all(np.isfinite(pred)), "predict must return (n,) finite"
    score = est.score(data.X, data.y)
    assert isinstance(score, float) and np.isfinite(score), "score must return a finite float"


def check_determinism(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """The same random_state gives identical parameters; other data gives other ones."""
    data = _tiny(cls, 1)
    a = _make(cls, options, n_experts=2, random_state=7).fit(data.X, data.y)
    b = _make(cls, options, n_experts=2, random_state=7).fit(data.X, data.y)
    assert np.array_equal(a.experts_, b.experts_), "experts_ differ between two seeded fits"
    assert np.array_equal(a.gating_, b.gating_), "gating_ differs between two seeded fits"
    other = _tiny(cls, 2)
    c = _make(cls, options, n_experts=2, random_state=7).fit(other.X, other.y)
    assert not np.allclose(a.experts_, c.experts_), (
        "experts_ do not depend on the data: a placeholder must not be registered"
    )


def check_tiny_problem(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """On a tiny two-expert problem the fit beats a single linear regression held out."""
    data = _tiny(cls, 3)
    rng = np.random.default_rng(99)
    X_test = rng.standard_normal((TINY["n"], TINY["d"]))
    y_test, _ = data.model.sample(X_test, rng)
    est = _make(cls, options, n_experts=2, random_state=0).fit(data.X, data.y)
    coef, *_ = np.linalg.lstsq(data.X, data.y, rcond=None)
    resid = data.y - data.X @ coef
    s2 = float(np.mean(resid**2))
    lr_ll = float(np.mean(-0.5 * (y_test - X_test @ coef) ** 2 / s2 - 0.5 * np.log(2 * np.pi * s2)))
    score = est.score(X_test, y_test)
    assert score > lr_ll, (
        f"held-out log-likelihood {score:.3f} does not beat one linear regression ({lr_ll:.3f})"
    )


def check_bad_input(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """NaN/inf, wrong shapes, length mismatch, k < 2, unknown activation raise ValueError."""
    data = _tiny(cls, 4)
    X, y = data.X[:500], data.y[:500]

    def fit(X_, y_, **params):
        return lambda: _make(cls, options, **{"n_experts": 2, **params}).fit(X_, y_)

    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    y_inf = y.copy()
    y_inf[5] = np.inf
    _expect_value_error("NaN in X", fit(X_nan, y))
    _expect_value_error("inf in y", fit(X, y_inf))
    _expect_value_error("length mismatch", fit(X, y[:-1]))
    _expect_value_error("1-D X", fit(X[:, 0], y))
    _expect_value_error("2-D y", fit(X, y[:, None]))
    _expect_value_error("n_experts = 1", fit(X, y, n_experts=1))
    _expect_value_error("unknown activation", fit(X, y, activation="no_such_activation"))
    if cls.requires_k_le_d:
        _expect_value_error("k > d", fit(X, y, n_experts=X.shape[1] + 1))
    unfitted = _make(cls, options, n_experts=2)
    _expect_value_error("predict before fit", lambda: unfitted.predict(X))
    fitted = _make(cls, options, n_experts=2, random_state=0).fit(data.X, data.y)
    _expect_value_error("predict with the wrong number of features",
                        lambda: fitted.predict(X[:, :-1]))


CHECKS: tuple[Callable[[type[MoEEstimator], dict[str, Any]], None], ...] = (
    check_construction,
    check_fit_contract,
    check_determinism,
    check_tiny_problem,
    check_bad_input,
)


def check_algorithm(algorithm: str | type[MoEEstimator], **options: Any) -> None:
    """Check an estimator against the moebench contract.

    Parameters
    ----------
    algorithm : str or MoEEstimator subclass
        A registered name, or the class itself.
    **options
        Constructor options used in every check (e.g. a smaller iteration budget).

    Raises
    ------
    AssertionError
        Naming the first violated check and what was wrong.
    """
    cls = _resolve(algorithm)
    for check in CHECKS:
        try:
            check(cls, options)
        except AssertionError as exc:
            raise AssertionError(f"{cls.__name__} fails {check.__name__}: {exc}") from exc
