"""sgd with expert intercepts, gating biases and per-expert noise (issue 29): the options of
joint_em, the same fitted attributes, the same maximum."""

import numpy as np
import pytest

from moebench import get_algorithm, make_moe
from moebench.metrics import voronoi_loss
from moebench.model import MoEModel

# NeurIPS 2023 (Nguyen et al.) truth of moebench/configs/softmax_gating.toml
PAPER = dict(experts=np.array([[-20.0], [20.0]]), gating=np.array([[25.0], [0.0]]),
             sigma=np.array([0.3, 0.4]), activation="linear",
             expert_bias=np.array([15.0, -5.0]), gating_bias=np.array([-8.0, 0.0]))
#: full-batch Adam from the near-truth start: converges on n = 3000 (measured: the
#: log-likelihood 5e-7 above joint EM's at tol 1e-12, gradient norm 3e-7)
NEAR_TRUTH_SGD = dict(intercepts=True, noise="per_expert", init="near_truth", lr=0.05,
                      batch_size=None, max_epochs=300)


def _paper_data(n, seed=0):
    return make_moe(n, 1, 2, truth=MoEModel(**PAPER), input_distribution="grid",
                    random_state=seed)


def test_sgd_reaches_joint_ems_maximum_with_biases_and_per_expert_noise():
    data = _paper_data(3000)
    em = get_algorithm("joint_em", n_experts=2, random_state=0, intercepts=True,
                       noise="per_expert", init="near_truth", n_init=1, max_iter=2000,
                       tol=1e-12).fit(data.X, data.y, truth=data)
    est = get_algorithm("sgd", n_experts=2, random_state=0, **NEAR_TRUTH_SGD)
    assert est.needs_truth and not type(est).needs_truth and not est.fits_plain_model()
    est.fit(data.X, data.y, truth=data)
    assert est.experts_.shape == (2, 1) and est.sigma_.shape == (2,)
    assert est.expert_bias_.shape == (2,) and est.gating_bias_[-1] == 0.0
    # measured: ll +4.8e-7 above EM's; experts, intercepts, sigmas within 4e-5 of EM's;
    # the gating slope (a flat direction at n = 3000) within 0.08
    assert est.log_likelihood_ >= em.log_likelihood_ - 1e-6
    assert np.allclose(est.experts_, em.experts_, atol=1e-4)
    assert np.allclose(est.expert_bias_, em.expert_bias_, atol=1e-4)
    assert np.allclose(est.sigma_, em.sigma_, atol=1e-4)
    assert np.allclose(est.gating_, em.gating_, atol=0.3)
    assert np.allclose(est.gating_bias_, em.gating_bias_, atol=0.1)
    # Voronoi loss to EM's fit 5.7e-5, to the truth 0.118 (EM's: 0.118)
    assert voronoi_loss(est.model_, em.model_) < 1e-3
    assert voronoi_loss(est.model_, data.model) < 0.2
    m = est.model_
    assert m.has_biases and m.per_expert_sigma
    assert est.score(data.X, data.y) == pytest.approx(m.mean_log_likelihood(data.X, data.y))
    grad_norm, min_eig = est.stationarity(data.X, data.y)
    assert grad_norm < 1e-5 and min_eig > 0  # measured 2.9e-7 and 2.0e-4


@pytest.mark.parametrize("k", [3, 4])
def test_near_truth_start_over_specified(k):
    data = _paper_data(500)
    est = get_algorithm("sgd", n_experts=k, random_state=0, intercepts=True,
                        noise="per_expert", init="near_truth", max_epochs=3)
    est.fit(data.X, data.y, truth=data)
    assert est.experts_.shape == (k, 1) and est.sigma_.shape == (k,)
    assert est.gating_bias_.shape == (k,) and est.gating_bias_[-1] == 0.0
    # the start's record: atom 0 copies the true atom 0 (intercept 15), the last the reference
    start = est.history_[0]
    assert start["iteration"] == 0 and np.isfinite(start["sigma"])
    with pytest.raises(ValueError, match="truth=None"):
        get_algorithm("sgd", n_experts=k, init="near_truth").fit(data.X, data.y)


def test_shared_noise_and_a_given_sigma():
    data = _paper_data(800)
    shared = get_algorithm("sgd", n_experts=2, random_state=1, intercepts=True,
                           init="data_scale", max_epochs=20).fit(data.X, data.y)
    assert np.ndim(shared.sigma_) == 0 and shared.expert_bias_.shape == (2,)
    given = get_algorithm("sgd", n_experts=2, random_state=1, intercepts=True, sigma=0.35,
                          noise="per_expert", init="data_scale", max_epochs=20)
    given.fit(data.X, data.y)
    # a given sigma stays fixed (exp(log 0.35)), one level for every expert
    assert np.ndim(given.sigma_) == 0 and given.sigma_ == pytest.approx(0.35, rel=1e-15)
    assert np.isfinite(given.stationarity(data.X, data.y)[0])


def test_default_options_are_the_plain_model_bit_for_bit():
    data = make_moe(600, 3, 2, random_state=4)
    plain = get_algorithm("sgd", n_experts=2, random_state=2, max_epochs=15).fit(data.X, data.y)
    named = get_algorithm("sgd", n_experts=2, random_state=2, max_epochs=15,
                          intercepts=False, noise="shared").fit(data.X, data.y)
    assert plain.fits_plain_model() and not hasattr(plain, "expert_bias_")
    assert np.array_equal(plain.experts_, named.experts_)
    assert np.array_equal(plain.gating_, named.gating_)
    assert plain.sigma_ == named.sigma_ and plain.log_likelihood_ == named.log_likelihood_
    assert [r["log_likelihood"] for r in plain.history_] == \
        [r["log_likelihood"] for r in named.history_]


def test_per_expert_noise_on_float32_and_on_disk(tmp_path):
    data = make_moe(600, 3, 2, random_state=5)
    est = get_algorithm("sgd", n_experts=2, random_state=0, noise="per_expert",
                        intercepts=True, dtype="float32", max_epochs=10)
    est.fit(data.X, data.y)
    assert est.sigma_.shape == (2,) and np.all(np.isfinite(est.experts_))
    path = tmp_path / "X.npy"
    np.save(path, data.X)
    X_disk = np.load(path, mmap_mode="r")
    on_disk = get_algorithm("sgd", n_experts=2, random_state=0, noise="per_expert",
                            max_epochs=10).fit(X_disk, data.y)
    in_memory = get_algorithm("sgd", n_experts=2, random_state=0, noise="per_expert",
                              max_epochs=10).fit(data.X, data.y)
    assert on_disk.sigma_.shape == (2,)
    assert np.allclose(on_disk.experts_, in_memory.experts_, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"intercepts=True needs X in memory"):
        get_algorithm("sgd", n_experts=2, intercepts=True).fit(X_disk, data.y)


@pytest.mark.parametrize("params, match", [
    (dict(noise="each"), r"noise.*'shared'.*'per_expert'|noise.*shared.*per_expert"),
    (dict(intercepts="yes"), r"intercepts"),
    (dict(init="truth"), r"init.*near_truth"),
])
def test_bad_options_name_the_valid_choices(params, match):
    data = _paper_data(200)
    with pytest.raises(ValueError, match=match):
        get_algorithm("sgd", n_experts=2, **params).fit(data.X, data.y)
