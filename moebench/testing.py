"""Contract checks for estimators, like scikit-learn's ``check_estimator``.

A new baseline tests itself with::

    from moebench.testing import check_algorithm
    check_algorithm("my_algorithm")          # a registered name
    check_algorithm(MyEstimator, max_iter=50)  # or a class, with options

Each check raises ``AssertionError`` naming the violated part of the contract.
Among them, :func:`check_declarations` exercises every declared parameter constraint
(``_parameter_constraints``) and the budget declaration (``budget_parameters`` and
``iteration_unit``), and :func:`check_budgets` every declared budget parameter, as the
framework's stopping rule wants it (:mod:`moebench.stopping`): a budget ends the fit,
``stop_reason_`` names it, and it is a total over the fit (every restart and phase).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from moebench.base import BUDGETS, MoEEstimator
from moebench.constraints import make_constraint
from moebench.generator import make_moe
from moebench.registry import algorithm_class, is_reference

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


def _k(cls: type[MoEEstimator]) -> int:
    """Experts of the contract's fits: 2 for a mixture, 1 for a reference model (k = 1)."""
    return 1 if is_reference(cls) else 2


def _activation_for(cls: type[MoEEstimator]) -> str:
    supported = cls.supported_activations
    return "linear" if supported is None or "linear" in supported else supported[0]


def _make(cls: type[MoEEstimator], options: dict[str, Any], **params: Any) -> MoEEstimator:
    return cls(**{"activation": _activation_for(cls), **options, **params})


def _tiny(cls: type[MoEEstimator], seed: int):
    return make_moe(activation=_activation_for(cls), random_state=seed, **TINY)


def _truth(cls: type[MoEEstimator], data: Any) -> Any:
    """The truth that ``fit`` gets in the checks: the data's for an oracle
    (``needs_truth = True``, which cannot fit without it), else None."""
    return data.model if cls.needs_truth else None


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


def _declared_defaults(cls: type[MoEEstimator]) -> dict[str, Any]:
    return {name: value for name, value in cls().get_params().items()
            if name in cls.parameter_constraints()}


def _invalid_values(constraints: list[Any]) -> list[Any]:
    """Values that violate every constraint of one parameter (from each constraint's edges)."""
    cons = [make_constraint(c) for c in constraints]
    out: list[Any] = []
    for c in cons:
        for value in c.invalid_examples():
            if not any(other.is_satisfied_by(value) for other in cons) and \
                    not any(value is v or repr(value) == repr(v) for v in out):
                out.append(value)
    return out


def check_declarations(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """Every constructor parameter declares its valid values, and fit enforces each one.

    For each declared constraint, its example values pass :meth:`MoEEstimator.check_params`
    and the values just outside it (that no other constraint of the parameter accepts)
    raise ValueError naming the parameter and the value; for each parameter one invalid
    value is also passed to ``fit``, which must refuse it before fitting. The defaults pass.
    """
    missing = cls.undeclared_parameters()
    assert not missing, (
        f"no declared valid values for constructor parameter(s) {', '.join(missing)}: add "
        f"them to {cls.__name__}._parameter_constraints (constraint types: "
        "moebench.constraints.Interval, Options, 'boolean', None, callable, ...)"
    )
    names = cls._get_param_names()
    declared: dict[str, Any] = {}
    for klass in cls.__mro__:
        declared.update(vars(klass).get("_parameter_constraints", {}))
    extra = sorted(set(declared) - set(names))
    assert not extra, f"_parameter_constraints declares {extra}, not constructor parameters"
    for budget, param in cls.budget_parameters.items():
        assert budget in BUDGETS, f"budget_parameters key {budget!r} is not one of {BUDGETS}"
        assert param in names, f"budget_parameters maps {budget!r} to unknown parameter {param!r}"
    try:
        cls.check_params(_declared_defaults(cls))
    except ValueError as exc:
        raise AssertionError(f"the default parameters fail their own declaration: {exc}") from exc
    unit = getattr(cls, "iteration_unit", None)
    if "max_iter" in cls.budget_parameters:
        assert isinstance(unit, str) and unit, (
            f"{cls.__name__} declares a max_iter budget but no iteration_unit: say what one "
            "iteration of the budget is (iteration_unit = \"EM iteration\", \"epoch\", ...)")
    else:
        assert unit is None, (
            f"{cls.__name__} declares iteration_unit = {unit!r} but no max_iter budget: a "
            "method whose budget is time only (or none) declares iteration_unit = None")
    data = _tiny(cls, 4)
    X, y = data.X[:300], data.y[:300]
    for name, constraints in cls.parameter_constraints().items():
        for c in map(make_constraint, constraints):
            for value in c.valid_examples():
                try:
                    cls.check_params({name: value})
                except ValueError as exc:
                    raise AssertionError(f"{name}={value!r} satisfies {c} but is refused: "
                                         f"{exc}") from exc
        bad = _invalid_values(constraints)
        if any(str(make_constraint(c)) == "anything" for c in constraints):
            continue
        assert bad, f"no invalid value found for {name} (declared: {constraints})"
        for value in bad:
            try:
                cls.check_params({name: value})
            except ValueError as exc:
                msg = str(exc)
                assert name in msg and repr(value) in msg, (
                    f"the error for {name}={value!r} must name the parameter and the value: "
                    f"{msg!r}")
            else:
                raise AssertionError(f"{name}={value!r} violates {constraints} but is accepted")
        est = _make(cls, options, **{"n_experts": _k(cls), name: bad[0]})
        try:
            est.fit(X, y)
        except ValueError as exc:
            assert name in str(exc), f"fit's error for {name}={bad[0]!r} does not name it: {exc}"
        except Exception as exc:  # noqa: BLE001 - any other type is a contract violation
            raise AssertionError(f"fit with {name}={bad[0]!r}: expected ValueError, got "
                                 f"{type(exc).__name__}: {exc}") from exc
        else:
            raise AssertionError(f"fit with {name}={bad[0]!r} did not raise ValueError")


def _restarts_run(est: MoEEstimator) -> set[int]:
    """The restart indices of the starts that ran (records tagged ``restart >= 0``)."""
    return {r["restart"] for r in est.history_ if r.get("restart", 0) >= 0}


def check_budgets(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """A declared budget parameter ends the fit, ``stop_reason_`` names it, and it is a
    total over the fit.

    - ``max_time`` = 1e-9 ends the fit with ``stop_reason_ == "max_time"``; with
      ``n_init = 3`` (a restarted estimator) no start after the first runs;
    - ``max_iter`` = 1 ends it with "max_iter" (or "converged"); ``max_iter`` = 2 caps
      ``n_iter_`` (counted in the class's ``iteration_unit``) at 2, also with ``n_init = 3``.
    """
    data = _tiny(cls, 5)
    has_restarts = "n_init" in cls._get_param_names()

    def fit(**params: Any) -> MoEEstimator:
        est = _make(cls, options, n_experts=_k(cls), random_state=0, **params)
        return est.fit(data.X, data.y, truth=_truth(cls, data))

    if "max_time" in cls.budget_parameters:
        param = cls.budget_parameters["max_time"]
        est = fit(**{param: 1e-9})
        assert est.stop_reason_ == "max_time", (
            f"with {param}=1e-9 (the time budget) stop_reason_ is {est.stop_reason_!r}, "
            "expected 'max_time'")
        if has_restarts:
            est = fit(**{param: 1e-9, "n_init": 3})
            assert _restarts_run(est) <= {0} and est.stop_reason_ == "max_time", (
                f"with {param}=1e-9 and n_init=3 the starts {sorted(_restarts_run(est))} ran "
                f"(stop_reason_ {est.stop_reason_!r}): the time budget is a total over the "
                "fit, so no start may run once it is spent")
    if "max_iter" in cls.budget_parameters:
        param = cls.budget_parameters["max_iter"]
        est = fit(**{param: 1})
        assert est.stop_reason_ in ("max_iter", "converged"), (
            f"with {param}=1 (the iteration budget) stop_reason_ is {est.stop_reason_!r}, "
            "expected 'max_iter' (or 'converged')")
        for extra in ({}, {"n_init": 3}) if has_restarts else ({},):
            est = fit(**{param: 2, **extra})
            assert est.n_iter_ <= 2, (
                f"with {param}=2{' and n_init=3' if extra else ''} n_iter_ is {est.n_iter_}: "
                f"the iteration budget is a total over the fit (in {cls.iteration_unit}s), "
                "across restarts and phases (ask the fit's moebench.stopping."
                "StoppingCriterion, MoEEstimator.stopping(history))")


def check_fit_contract(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """fit returns self and sets every fitted attribute with the right shape."""
    data = _tiny(cls, 0)
    est = _make(cls, options, n_experts=_k(cls), random_state=0)
    try:
        # (a k = 1 reference cannot be scored against the two-expert truth)
        out = est.fit(data.X, data.y, truth=None if is_reference(cls) else data.model)
    except TypeError as exc:
        if "did not set" in str(exc) or "must be a" in str(exc):
            raise AssertionError(str(exc)) from exc
        raise
    assert out is est, "fit must return self"
    assert isinstance(est.converged_, bool), "converged_ must be a bool"
    assert isinstance(est.stop_reason_, str) and est.stop_reason_, (
        "stop_reason_ must name the budget or criterion that ended the fit")
    score = est.score(data.X, data.y)
    assert abs(est.log_likelihood_ - score) <= 1e-4 * max(1.0, abs(score)), (
        f"log_likelihood_ = {est.log_likelihood_} is not the final mean training "
        f"log-likelihood {score}")
    k, d = _k(cls), data.X.shape[1]
    for attr in ("experts_", "gating_"):
        value = np.asarray(getattr(est, attr))
        assert value.shape == (k, d), f"{attr} has shape {value.shape}, expected {(k, d)}"
        assert np.all(np.isfinite(value)), f"{attr} has non-finite values"
    assert np.allclose(est.gating_[-1], 0.0), "gating_ must have its last row 0"
    assert np.isfinite(est.sigma_) and est.sigma_ > 0, f"sigma_ = {est.sigma_} is not positive"
    assert isinstance(est.n_iter_, int) and est.n_iter_ >= 0, "n_iter_ must be an int >= 0"
    hist = est.history_
    assert isinstance(hist, list) and (hist or is_reference(cls)), (
        "history_ must be a non-empty list of records")  # (a closed-form reference has none)
    for rec in hist:
        for key in ("iteration", "time", "log_likelihood"):
            assert key in rec, f"history_ record lacks {key!r}: {rec}"
    times = [rec["time"] for rec in hist]
    assert all(b >= a for a, b in zip(times, times[1:])), "history_ times must not decrease"
    assert is_reference(cls) or any("expert_error" in rec for rec in hist), (
        "with fit(..., truth=...) history_ must record expert_error"
    )
    pred = est.predict(data.X[:7])
    assert pred.shape == (7,) and np.all(np.isfinite(pred)), "predict must return (n,) finite"
    score = est.score(data.X, data.y)
    assert isinstance(score, float) and np.isfinite(score), "score must return a finite float"


def check_determinism(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """The same random_state gives identical parameters; other data gives other ones."""
    data = _tiny(cls, 1)
    a = _make(cls, options, n_experts=_k(cls), random_state=7).fit(
        data.X, data.y, truth=_truth(cls, data))
    b = _make(cls, options, n_experts=_k(cls), random_state=7).fit(
        data.X, data.y, truth=_truth(cls, data))
    assert np.array_equal(a.experts_, b.experts_), "experts_ differ between two seeded fits"
    assert np.array_equal(a.gating_, b.gating_), "gating_ differs between two seeded fits"
    other = _tiny(cls, 2)
    c = _make(cls, options, n_experts=_k(cls), random_state=7).fit(
        other.X, other.y, truth=_truth(cls, other))
    assert not np.allclose(a.experts_, c.experts_), (
        "experts_ do not depend on the data: a placeholder must not be registered"
    )


def check_tiny_problem(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """On a tiny two-expert problem the fit beats a single linear regression held out
    (a reference model matches it at least)."""
    data = _tiny(cls, 3)
    rng = np.random.default_rng(99)
    X_test = rng.standard_normal((TINY["n"], TINY["d"]))
    y_test, _ = data.model.sample(X_test, rng)
    est = _make(cls, options, n_experts=_k(cls), random_state=0).fit(
        data.X, data.y, truth=_truth(cls, data))
    coef, *_ = np.linalg.lstsq(data.X, data.y, rcond=None)
    resid = data.y - data.X @ coef
    s2 = float(np.mean(resid**2))
    lr_ll = float(np.mean(-0.5 * (y_test - X_test @ coef) ** 2 / s2 - 0.5 * np.log(2 * np.pi * s2)))
    score = est.score(X_test, y_test)
    if is_reference(cls):
        assert score >= lr_ll - 1e-9 * max(1.0, abs(lr_ll)), (
            f"reference held-out log-likelihood {score:.6f} is below one linear regression's "
            f"({lr_ll:.6f})")
        return
    assert score > lr_ll, (
        f"held-out log-likelihood {score:.3f} does not beat one linear regression ({lr_ll:.3f})"
    )


def check_bad_input(cls: type[MoEEstimator], options: dict[str, Any]) -> None:
    """NaN/inf, wrong shapes, length mismatch, k < 2, unknown activation raise ValueError
    (and, for an oracle, a fit without the truth)."""
    data = _tiny(cls, 4)
    X, y = data.X[:500], data.y[:500]

    given = _truth(cls, data)

    def fit(X_, y_, truth=given, **params):
        return lambda: _make(cls, options, **{"n_experts": _k(cls), **params}).fit(
            X_, y_, truth=truth)

    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    y_inf = y.copy()
    y_inf[5] = np.inf
    _expect_value_error("NaN in X", fit(X_nan, y))
    _expect_value_error("inf in y", fit(X, y_inf))
    _expect_value_error("length mismatch", fit(X, y[:-1]))
    _expect_value_error("1-D X", fit(X[:, 0], y))
    _expect_value_error("2-D y", fit(X, y[:, None]))
    if is_reference(cls):
        _expect_value_error("n_experts = 2 for a k = 1 reference", fit(X, y, n_experts=2))
    else:
        _expect_value_error("n_experts = 1", fit(X, y, n_experts=1))
    _expect_value_error("unknown activation", fit(X, y, activation="no_such_activation"))
    if cls.requires_k_le_d:
        _expect_value_error("k > d", fit(X, y, n_experts=X.shape[1] + 1))
    unfitted = _make(cls, options, n_experts=_k(cls))
    _expect_value_error("predict before fit", lambda: unfitted.predict(X))
    fitted = _make(cls, options, n_experts=_k(cls), random_state=0).fit(
        data.X, data.y, truth=_truth(cls, data))
    _expect_value_error("predict with the wrong number of features",
                        lambda: fitted.predict(X[:, :-1]))
    if cls.needs_truth:
        _expect_value_error("fit of an oracle (needs_truth) without truth",
                            fit(data.X, data.y, truth=None))


CHECKS: tuple[Callable[[type[MoEEstimator], dict[str, Any]], None], ...] = (
    check_construction,
    check_declarations,
    check_fit_contract,
    check_budgets,
    check_determinism,
    check_tiny_problem,
    check_bad_input,
)


def check_algorithm(algorithm: str | type[MoEEstimator], **options: Any) -> None:
    """Check an estimator against the moebench contract.

    The checks, in order: construction (get/set_params round-trip, a description);
    declarations (every constructor option declares its valid values in
    ``_parameter_constraints`` and ``fit`` refuses values outside them; the budget
    declaration: ``budget_parameters`` maps "max_iter" / "max_time" to options, and a class
    with a "max_iter" budget names its ``iteration_unit`` -- "EM iteration", "epoch", ... --
    while a class whose budget is time only declares ``iteration_unit = None``); the fit
    contract (fitted attributes, ``converged_``, ``stop_reason_``, ``log_likelihood_``,
    ``history_``); budgets (each declared budget ends the fit and names itself in
    ``stop_reason_``, and is a total over the fit: ``n_iter_`` never exceeds ``max_iter``,
    restarts included, and no start runs once the time budget is spent -- what the
    framework's :class:`moebench.stopping.StoppingCriterion`, from
    :meth:`moebench.MoEEstimator.stopping`, enforces); determinism; a tiny problem; bad input.

    The fitted parameters a run record stores (summary key ``fitted_parameters``,
    :func:`moebench.sweep.rerun.parameters_json`) are the contract's ``experts_``,
    ``gating_`` and ``sigma_`` (and the biases of a model that has them), so an estimator
    that passes these checks is re-scored and classified from its records without a re-run.

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
