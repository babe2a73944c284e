"""scikit-learn compatibility of every registered estimator (the optional ``sklearn`` extra).

Skipped as a whole when scikit-learn is not installed (``pip install -e ".[sklearn]"``;
the ``dev`` extra includes it). moebench itself never imports scikit-learn at import
time: ``__sklearn_tags__`` imports it only when scikit-learn asks for the tags.

What is tested, for every algorithm in :func:`moebench.available_algorithms`:

* ``sklearn.base.clone``, ``get_params(deep=True)`` / ``set_params`` round trips;
* ``score`` is the mean conditional log-likelihood (as ``GaussianMixture.score``),
  so ``cross_val_score`` and ``GridSearchCV`` with their default scoring rank
  fits by held-out log-likelihood, and a grid picks the true option;
* the scikit-learn common checks (``sklearn.utils.estimator_checks``:
  ``estimator_checks_generator`` on scikit-learn >= 1.6, ``check_estimator(...,
  generate_only=True)`` before), one test item per check, on small budgets. With
  scikit-learn 1.9.1: 165 run and pass, 73 skipped (the reasons below); also run
  with 1.5.2 (138 pass, 60 skipped), where tags come from ``_more_tags``.

Common checks that are skipped, and why (``SKIPPED_CHECKS`` below):

* moebench's own error contract, not scikit-learn's wording or error types:
  bad input raises ValueError whose message names the parameter, the bad value and
  the valid choices. Checks that match scikit-learn's exact messages or error types
  are skipped: ``check_complex_data``, ``check_dtype_object`` (TypeError expected),
  ``check_estimators_empty_data_messages``, ``check_fit2d_1sample``,
  ``check_fit2d_predict1d``, ``check_requires_y_none``, the three sparse-input
  checks ``check_estimator_sparse_tag``/``_array``/``_matrix`` (dense input only),
  ``check_estimators_unfitted`` (predict before fit raises moebench's ValueError;
  scikit-learn's NotFittedError cannot be raised without importing scikit-learn).
* 1-D targets only: ``check_supervised_y_2d`` (y of shape (n, 1) is refused, not
  raveled with a warning).
* too little data for a mixture: ``check_regressors_no_decision_function`` fits 10
  rows with 4 features, fewer rows than the model has parameters (13 for k = 2,
  d = 4), which every estimator refuses (DegenerateFitError).
* k <= d: ``alt_min`` and ``tensor_em`` need at least as many features as experts
  (k >= 2), so ``check_fit2d_1feature`` is skipped for them.
* tensor_em's moment estimates need n >= max(10 d, 10 k^3) = 80 rows for k = 2;
  every check that fits fewer rows is skipped for tensor_em (listed in
  ``_TENSOR_TOO_FEW_ROWS``); the properties those checks guard (fit leaves the
  parameters alone, returns self, is idempotent, pickles) are tested here for every
  algorithm, tensor_em included, on data large enough (``test_fit_*`` below).
* ``check_array_api_input`` skips itself unless ``SCIPY_ARRAY_API`` is set (no
  array-API support).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import norm

import moebench

sklearn = pytest.importorskip(
    "sklearn",
    minversion="1.3",
    reason="scikit-learn is an optional extra: pip install -e '.[sklearn]' (or '.[dev]')",
)
from sklearn.base import clone, is_regressor  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402

ALGORITHMS = moebench.available_algorithms()

#: small iteration budgets (applied to whichever of these options an estimator has)
SMALL = {
    "max_iter": 20,
    "max_epochs": 15,
    "n_init": 1,
    "n_starts": 5,
    "n_candidates": 32,
    "refine_max_iter": 20,
    "gating_em_iter": 50,
    "refine": True,  # tensor_em: the moment estimate then EM (the paper's pipeline)
}


def small(name: str, **params) -> moebench.MoEEstimator:
    """An estimator of ``name`` with small budgets, ``random_state=0`` and ``params``."""
    est = moebench.get_algorithm(name, random_state=0)
    est.set_params(**{k: v for k, v in SMALL.items() if k in est.get_params(deep=False)})
    return est.set_params(**params)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """sgd's tiny torch tensors run 20x slower with 2 threads on 2 busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def linear_data():
    return moebench.make_moe(450, 4, 2, activation="linear", sigma=0.1, random_state=0)


def test_moebench_does_not_import_sklearn():
    code = (
        "import sys, moebench\n"
        "est = moebench.get_algorithm(moebench.available_algorithms()[0])\n"
        "est.get_params(); est.set_params(random_state=1); repr(est)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("name", ALGORITHMS)
def test_get_params_matches_the_constructor_and_is_flat(name):
    cls = moebench.registry.algorithm_class(name)
    est = moebench.get_algorithm(name)
    shallow = est.get_params(deep=False)
    assert list(shallow) == cls._get_param_names()
    assert est.get_params(deep=True) == shallow == est.get_params()  # no nested estimators
    assert is_regressor(est)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_set_params_round_trip(name):
    est = small(name, n_experts=3, sigma=0.25)
    params = est.get_params()
    assert params["n_experts"] == 3 and params["sigma"] == 0.25 and params["random_state"] == 0
    other = moebench.get_algorithm(name)
    assert other.set_params(**params) is other
    assert other.get_params() == params
    assert repr(other) == repr(est)
    assert est.set_params() is est and est.get_params() == params
    with pytest.raises(ValueError, match="unknown parameter 'n_expert'.*valid: n_experts"):
        est.set_params(n_expert=2)
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        est.set_params(nope__inner=1)
    with pytest.raises(ValueError, match="'sigma'.* has no parameters to set"):
        est.set_params(sigma__inner=1)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(name, linear_data):
    est = small(name, n_experts=2, random_state=np.int64(7), sigma=None)
    est.fit(linear_data.X, linear_data.y)
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert twin.get_params() == est.get_params()
    assert type(twin.random_state) is np.int64  # stored unchanged
    assert not hasattr(twin, "experts_") and hasattr(est, "experts_")
    # an Activation object as a parameter is copied, not shared
    est.set_params(activation=moebench.activations.get_activation("linear"))
    twin = clone(est)
    assert twin.activation.name == "linear" and twin.activation is not est.activation
    assert np.allclose(twin.fit(linear_data.X, linear_data.y).predict(linear_data.X[:5]),
                       est.fit(linear_data.X, linear_data.y).predict(linear_data.X[:5]))


# --------------------------------------------------------------------------- score and fit


@pytest.mark.parametrize("name", ALGORITHMS)
def test_score_is_the_mean_log_likelihood(name, linear_data):
    X, y = linear_data.X, linear_data.y
    est = small(name).fit(X, y)
    if est.fits_regression:  # y = f_G(x) + N(0, sigma^2) (lse_moe): its Gaussian likelihood
        gate = softmax(X @ est.gating_.T + est.gating_bias_, axis=1)
        f = np.sum(gate * (X @ est.experts_.T + est.expert_bias_), axis=1)
        assert est.score(X, y) == pytest.approx(
            float(np.mean(norm.logpdf(y, loc=f, scale=est.sigma_))), rel=1e-10)
        assert est.predict(X) == pytest.approx(f)
        return
    # log p(y | x) = log sum_i softmax(W x)_i N(y; a_i . x, sigma^2), written out here
    gate = softmax(X @ est.gating_.T, axis=1)
    dens = norm.logpdf(y[:, None], loc=X @ est.experts_.T, scale=est.sigma_)
    want = float(np.mean(logsumexp(dens, axis=1, b=gate)))
    assert est.score(X, y) == pytest.approx(want, rel=1e-10)
    assert est.predict(X) == pytest.approx(np.sum(gate * (X @ est.experts_.T), axis=1))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_fit_keeps_parameters_returns_self_is_idempotent_and_pickles(name, linear_data):
    X, y = linear_data.X, linear_data.y
    est = small(name)
    before = est.get_params()
    assert est.fit(X, y) is est
    assert est.get_params() == before
    first = est.predict(X[:50])
    assert np.array_equal(est.fit(X, y).predict(X[:50]), first)
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.predict(X[:50]), first)
    assert again.score(X, y) == est.score(X, y)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_cross_val_score_uses_score_on_held_out_folds(name, linear_data):
    X, y = linear_data.X, linear_data.y
    est = small(name)
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(est, X, y, cv=cv)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    by_hand = [clone(est).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in cv.split(X)]
    assert scores == pytest.approx(by_hand, rel=1e-12)
    # held-out log-likelihood of a mixture fit beats the best single linear regression
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    single = float(np.mean(norm.logpdf(resid, scale=resid.std())))
    assert scores.mean() > single


@pytest.mark.parametrize("name", ALGORITHMS)
def test_grid_search_picks_the_estimated_noise_over_a_wrong_fixed_one(name, linear_data):
    grid = GridSearchCV(small(name), {"sigma": [None, 2.0]}, cv=KFold(3, shuffle=True,
                                                                     random_state=0))
    grid.fit(linear_data.X, linear_data.y)
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert grid.best_params_ == {"sigma": None}
    assert grid.best_estimator_.sigma_ < 1.0  # estimated (true 0.1), not the rejected 2.0
    assert grid.score(linear_data.X, linear_data.y) == grid.best_estimator_.score(
        linear_data.X, linear_data.y
    )


def test_grid_search_picks_the_true_activation():
    data = moebench.make_moe(450, 4, 2, activation="relu", sigma=0.1, random_state=1)
    grid = GridSearchCV(small("joint_em"), {"activation": ["linear", "relu"]},
                        cv=KFold(3, shuffle=True, random_state=0))
    grid.fit(data.X, data.y)
    assert grid.best_params_ == {"activation": "relu"}
    relu, linear = sorted(grid.cv_results_["mean_test_score"], reverse=True)
    assert relu > linear + 0.1


# --------------------------------------------------------------------------- common checks

_MESSAGES = "moebench's own error messages/types (see module docstring)"
_COMMON_SKIPS = {
    "check_complex_data": _MESSAGES,
    "check_dtype_object": _MESSAGES,
    "check_estimators_empty_data_messages": _MESSAGES,
    "check_fit2d_1sample": _MESSAGES,
    "check_fit2d_predict1d": _MESSAGES,
    "check_requires_y_none": _MESSAGES,
    "check_estimator_sparse_tag": "dense input only; " + _MESSAGES,
    "check_estimator_sparse_array": "dense input only; " + _MESSAGES,
    "check_estimator_sparse_matrix": "dense input only; " + _MESSAGES,
    "check_estimators_unfitted": "ValueError, not sklearn's NotFittedError (sklearn optional)",
    "check_supervised_y_2d": "1-D targets only",
    "check_regressors_no_decision_function": "10 rows < 13 model parameters (k=2, d=4)",
}
_K_LE_D = {"check_fit2d_1feature": "needs k <= d, and k >= 2"}
_TENSOR_TOO_FEW_ROWS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_readonly_memmap_input",
    "check_regressors_int",
)
SKIPPED_CHECKS = {
    "alt_min": _COMMON_SKIPS | _K_LE_D,
    "joint_em": _COMMON_SKIPS,
    "sgd": _COMMON_SKIPS,
    "tensor_em": _COMMON_SKIPS
    | _K_LE_D
    | {c: "tensor_em needs n >= max(10 d, 10 k^3) = 80 rows" for c in _TENSOR_TOO_FEW_ROWS},
    # its y^3 regression needs more rows than cubic monomials: d(d+1)(d+2)/6 + 2 (222 at
    # d = 10); these checks fit fewer (spectral_experts is fitted on larger data below)
    "spectral_experts": _COMMON_SKIPS
    | _K_LE_D
    | {c: "spectral_experts needs n >= d(d+1)(d+2)/6 + 2 rows" for c in (
        *_TENSOR_TOO_FEW_ROWS, "check_fit_check_is_fitted", "check_fit_idempotent",
        "check_n_features_in", "check_non_transformer_estimators_n_iter",
        "check_regressor_data_not_an_array", "check_regressors_train")},
}


def _generate_checks(est):
    """(estimator, check) pairs of scikit-learn's common checks for ``est``."""
    try:  # scikit-learn >= 1.6
        from sklearn.utils.estimator_checks import estimator_checks_generator
    except ImportError:  # scikit-learn 1.3 to 1.5
        from sklearn.utils.estimator_checks import check_estimator

        return check_estimator(est, generate_only=True)
    return estimator_checks_generator(est, legacy=True)


def _common_checks():
    params = []
    for name in ALGORITHMS:
        skips = SKIPPED_CHECKS.get(name, _COMMON_SKIPS)
        with warnings.catch_warnings():  # "does not inherit from BaseEstimator": by design
            warnings.simplefilter("ignore")
            checks = list(_generate_checks(small(name)))
        for est, check in checks:
            check_name = getattr(check, "func", check).__name__
            reason = skips.get(check_name)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            params.append(pytest.param(est, check, id=f"{name}-{check_name}", marks=marks))
    return params


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("estimator, check", _common_checks())
def test_sklearn_common_checks(estimator, check):
    check(estimator)
