"""Issue 27, item 5: one rule for degenerate data.

Constant labels and identical rows get the same one-line DegenerateFitError (a
ValueError) from every registered algorithm, raised at validation before any work;
a collapsed sigma is reported as what happened. On main f3f291d spectral_experts
returned an "ok" fit with sigma 1.2e13 on constant y, sgd refused it with a wrong
diagnosis ("the fit interpolates the data"), joint_em, alt_min and tensor_em fitted
sigma 0.6-1.0, and with every row identical three algorithms returned "ok".
"""

from __future__ import annotations

import numpy as np
import pytest

import moebench
from moebench.degenerate import DegenerateFitError
from moebench.registry import algorithm_class

ALGORITHMS = moebench.available_algorithms(references=True, oracles=True)
N, D, K = 3000, 4, 2


@pytest.fixture(scope="module")
def data():
    return moebench.make_moe(N, D, K, sigma=0.1, random_state=0)


def _estimator(name: str):
    cls = algorithm_class(name)
    k = 1 if getattr(cls, "fixed_setting", {}).get("k") == 1 else K
    return moebench.get_algorithm(name, n_experts=k, random_state=0)


def _no_work(monkeypatch, name: str) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} started fitting degenerate data")

    monkeypatch.setattr(algorithm_class(name), "_fit", refuse)


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("value", [1.0, 5.0, -1.0, 1e-3])
def test_constant_labels_are_refused_before_any_work(monkeypatch, data, name, value):
    _no_work(monkeypatch, name)
    with pytest.raises(DegenerateFitError) as info:
        _estimator(name).fit(data.X, np.full(N, value), truth=data)
    message = str(info.value)
    assert "\n" not in message
    assert f"y is constant (all {N} labels equal {value:.6g}, zero variance)" in message
    assert message.startswith(f"{name} cannot fit this data")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_identical_rows_are_refused_before_any_work(monkeypatch, data, name):
    _no_work(monkeypatch, name)
    X = np.tile(data.X[:1], (N, 1))
    with pytest.raises(DegenerateFitError) as info:
        _estimator(name).fit(X, data.y, truth=data)
    message = str(info.value)
    assert "\n" not in message and "every row of X is the same" in message


def test_degenerate_data_is_a_value_error_with_the_same_message_everywhere(data):
    messages = set()
    for name in ALGORITHMS:
        with pytest.raises(ValueError) as info:
            _estimator(name).fit(data.X, np.full(N, 2.0), truth=data)
        messages.add(str(info.value).removeprefix(name))
    assert len(messages) == 1


def test_nearly_degenerate_data_still_fits(data):
    y = np.full(N, 1.0)
    y[-1] = 1.5  # one label differs: not zero variance
    X = np.tile(data.X[:1], (N, 1))
    X[-1, 0] += 1.0  # one row differs
    for Xa, ya in ((data.X, y), (X, data.y)):
        try:
            moebench.get_algorithm("joint_em", n_experts=2, max_iter=2,
                                   random_state=0).fit(Xa, ya)
        except DegenerateFitError as exc:  # may collapse later, but not refused as constant
            assert "constant" not in str(exc) and "every row" not in str(exc)


def test_a_collapsed_sigma_says_what_happened(data):
    est = moebench.get_algorithm("joint_em", n_experts=2, max_iter=5, random_state=0)
    est.fit(data.X, data.y)
    est.sigma_ = 1e-9  # what a fit whose sigma collapsed ends with
    with pytest.raises(DegenerateFitError) as info:
        est._check_degenerate(data.X, data.y, moebench.get_activation("linear"), None)
    message = str(info.value)
    assert "sigma_ = 1e-09" in message and "fell below" in message
    assert "some expert fits its rows almost exactly" in message
    assert "interpolates" not in message


def test_the_dask_tensor_step_applies_the_same_rule(data):
    da = pytest.importorskip("dask.array", reason="needs the dask extra")
    from moebench.tensor import distributed as dm

    X = da.from_array(data.X, chunks=(1000, D))
    with pytest.raises(DegenerateFitError) as info:
        dm.tensor_step(X, np.full(N, 5.0), K)
    with pytest.raises(DegenerateFitError) as fit_info:
        _estimator("tensor_em").fit(data.X, np.full(N, 5.0))
    assert str(info.value).removeprefix("tensor_step") == \
        str(fit_info.value).removeprefix("tensor_em")
    same = da.from_array(np.tile(data.X[:1], (N, 1)), chunks=(1000, D))
    with pytest.raises(DegenerateFitError, match="every row of X is the same"):
        dm.tensor_step(same, data.y, K)
