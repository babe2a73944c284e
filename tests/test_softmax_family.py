"""The softmax-gated family with biases and per-expert noise (issue 29): model and data."""

import numpy as np
import pytest
from scipy.stats import norm

from moebench import make_moe
from moebench.generator import iter_moe_chunks
from moebench.model import MoEModel

# NeurIPS 2023 (Nguyen et al.) truth: gates (beta0, beta1), experts (b, a), noise sds
PAPER = dict(experts=np.array([[-20.0], [20.0]]), gating=np.array([[25.0], [0.0]]),
             sigma=np.array([0.3, 0.4]), activation="linear",
             expert_bias=np.array([15.0, -5.0]), gating_bias=np.array([-8.0, 0.0]))


def paper_truth() -> MoEModel:
    return MoEModel(**PAPER)


def test_log_likelihood_is_the_mixture_density_written_out():
    m = paper_truth()
    x = np.array([[0.1], [0.3], [0.9]])
    y = np.array([12.0, 1.0, 13.0])
    gate1 = 1.0 / (1.0 + np.exp(-(-8.0 + 25.0 * x[:, 0])))
    dens = (gate1 * norm.pdf(y, 15.0 - 20.0 * x[:, 0], 0.3)
            + (1 - gate1) * norm.pdf(y, -5.0 + 20.0 * x[:, 0], 0.4))
    assert np.allclose(m.log_likelihood(x, y), np.log(dens), rtol=1e-12)
    mean = gate1 * (15 - 20 * x[:, 0]) + (1 - gate1) * (-5 + 20 * x[:, 0])
    assert np.allclose(m.predict(x), mean)


def test_biases_are_stored_with_the_last_expert_as_reference():
    m = MoEModel(**{**PAPER, "gating": np.array([[26.0], [1.0]]),
                    "gating_bias": np.array([-5.0, 3.0])})
    assert np.array_equal(m.gating, [[25.0], [0.0]]) and np.array_equal(m.gating_bias, [-8.0, 0])
    assert m.has_biases and m.per_expert_sigma


def test_without_new_parts_the_model_is_unchanged():
    m = MoEModel(np.eye(2), np.array([[1.0, 0], [0, 0]]), 0.2)
    assert m.expert_bias is None and m.gating_bias is None and not m.has_biases
    assert isinstance(m.sigma, float) and not m.per_expert_sigma


@pytest.mark.parametrize("bad, match", [
    ({"sigma": np.array([0.3, -0.4])}, "sigma must be"),
    ({"sigma": np.array([0.3, 0.4, 0.5])}, "sigma must be"),
    ({"expert_bias": np.array([1.0])}, "expert_bias must have shape"),
    ({"gating_bias": np.array([1.0, np.nan])}, "NaN"),
])
def test_bad_new_parts(bad, match):
    with pytest.raises(ValueError, match=match):
        MoEModel(**{**PAPER, **bad})


def test_per_expert_noise_and_biases_in_samples():
    m = paper_truth()
    data = make_moe(200_000, 1, 2, truth=m, input_distribution="grid", random_state=0)
    assert data.model is m
    x, y, z = data.X[:, 0], data.y, data.z
    for i, (b, a, s) in enumerate([(15.0, -20.0, 0.3), (-5.0, 20.0, 0.4)]):
        r = y[z == i] - (b + a * x[z == i])
        assert abs(r.std() - s) < 0.01 and abs(r.mean()) < 0.01
    gate1 = 1.0 / (1.0 + np.exp(-(-8.0 + 25.0 * x)))
    assert abs((z == 0).mean() - gate1.mean()) < 0.01


def test_grid_design_is_linspace_in_every_block(monkeypatch):
    import moebench.generator as gen

    monkeypatch.setattr(gen, "BLOCK_ROWS", 7)
    data = make_moe(50, 1, 2, truth=paper_truth(), input_distribution="grid", random_state=3)
    assert np.array_equal(data.X[:, 0], np.linspace(0.0, 1.0, 50))
    other = make_moe(50, 1, 2, truth=paper_truth(), input_distribution="grid",
                     input_interval=(-1.0, 2.0), random_state=3)
    assert np.array_equal(other.X[:, 0], np.linspace(-1.0, 2.0, 50))
    _, chunks = iter_moe_chunks(50, 1, 2, truth=paper_truth(), input_distribution="grid",
                                random_state=3, chunk_size=9)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), data.y)


def test_uniform_interval_default_is_todays_and_explicit_one_is_used():
    old = make_moe(500, 4, 2, input_distribution="uniform", random_state=1)
    same = make_moe(500, 4, 2, input_distribution="uniform", random_state=1,
                    input_interval=(-np.sqrt(3.0), np.sqrt(3.0)))
    assert np.array_equal(old.X, same.X) and np.array_equal(old.y, same.y)
    unit = make_moe(500, 4, 2, input_distribution="uniform", input_interval=(0, 1),
                    random_state=1)
    assert unit.X.min() >= 0 and unit.X.max() <= 1 and unit.X.mean() > 0.4


def test_existing_data_is_bit_identical_to_a_hash():
    # the default path (no truth, gaussian inputs) draws exactly as before issue 29
    data = make_moe(1000, 5, 3, random_state=7)
    rng = np.random.default_rng(np.random.SeedSequence(7).spawn(2)[1].spawn(1)[0])
    Z = rng.standard_normal((1000, 5))
    assert np.array_equal(data.X, Z)
    logits = Z @ data.gating.T
    z = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    t = np.take_along_axis(Z @ data.experts.T, z[:, None], axis=1)[:, 0]
    assert np.array_equal(data.y, t + 0.1 * rng.standard_normal(1000))


@pytest.mark.parametrize("kwargs, match", [
    ({"input_distribution": "grid", "d": 2}, "needs d = 1"),
    ({"input_distribution": "gaussian", "input_interval": (0, 1)}, "input_interval applies"),
    ({"input_distribution": "uniform", "input_interval": (1, 0)}, "low < high"),
    ({"truth": "no"}, "truth must be a MoEModel"),
    ({"k": 3}, "truth has d = 1, k = 2"),
])
def test_bad_designs_and_truths(kwargs, match):
    args = {"n": 10, "d": 1, "k": 2, "truth": paper_truth(), **kwargs}
    if args["d"] != 1 and "truth" not in kwargs:
        args.pop("truth")
    with pytest.raises(ValueError, match=match):
        make_moe(**args)


# --------------------------------------------------------------------------- fits
def _paper_data(n, seed=0):
    return make_moe(n, 1, 2, truth=paper_truth(), input_distribution="grid", random_state=seed)


def test_joint_em_fits_biases_and_per_expert_noise_from_a_random_start():
    from moebench import get_algorithm

    data = _paper_data(20_000)
    est = get_algorithm("joint_em", n_experts=2, random_state=0, intercepts=True,
                        noise="per_expert", n_init=5, max_iter=2000, init="data_scale")
    est.fit(data.X, data.y)
    order = np.argsort(est.expert_bias_)[::-1]  # the truth's order: b = 15, then -5
    assert np.allclose(est.expert_bias_[order], [15.0, -5.0], atol=0.1)
    assert np.allclose(est.experts_[order, 0], [-20.0, 20.0], atol=0.2)
    assert np.allclose(est.sigma_[order], [0.3, 0.4], atol=0.02)
    m = est.model_
    assert m.has_biases and m.per_expert_sigma
    assert est.score(data.X, data.y) == pytest.approx(m.mean_log_likelihood(data.X, data.y))
    assert est.score(data.X, data.y) >= paper_truth().mean_log_likelihood(data.X, data.y) - 1e-3


@pytest.mark.parametrize("k", [2, 3, 4])
def test_near_truth_start_overspecified_fit_and_voronoi_losses(k):
    from moebench import get_algorithm
    from moebench.metrics import voronoi_loss

    data = _paper_data(5000)
    est = get_algorithm("joint_em", n_experts=k, random_state=0, intercepts=True,
                        noise="per_expert", init="near_truth", n_init=1, max_iter=2000)
    assert est.needs_truth and not type(est).needs_truth
    est.fit(data.X, data.y, truth=data)
    assert est.experts_.shape == (k, 1) and est.sigma_.shape == (k,)
    plain = voronoi_loss(est.model_, data.model)
    moved = voronoi_loss(est.model_, data.model, translation=True)
    assert moved <= plain and moved < 0.5
    with pytest.raises(ValueError, match="needs at least the truth's 2 experts|truth=None"):
        get_algorithm("joint_em", n_experts=k, init="near_truth").fit(data.X, data.y)


def test_near_truth_start_follows_the_protocol():
    from moebench.starts import near_truth_start

    start = near_truth_start(np.random.default_rng(0), paper_truth(), 4, 10**4)
    # atoms 0 and 3 copy true atoms 0 and 1 (the reference); 1, 2 copy drawn atoms
    assert abs(start["expert_bias"][0] - 15) < 0.1 and abs(start["expert_bias"][3] + 5) < 0.1
    assert start["gating_bias"][-1] == 0.0 and start["gating"][-1, 0] == 0.0
    var = start["sigma"] ** 2  # the authors' code starts variances at the true sds
    assert np.all(var >= np.array([0.3, 0.3, 0.3, 0.4])[[0, 1, 2, 3]] - 1e-12)
    with pytest.raises(ValueError, match="at least the truth's 2 experts"):
        near_truth_start(np.random.default_rng(0), paper_truth(), 1, 100)


def test_joint_em_refuses_what_its_options_exclude():
    from moebench import get_algorithm

    data = _paper_data(500)
    with pytest.raises(ValueError, match="backend 'numpy' only"):
        get_algorithm("joint_em", noise="per_expert", backend="torch").fit(data.X, data.y)
    with pytest.raises(ValueError, match="moment start"):
        get_algorithm("joint_em", intercepts=True, init="tensor").fit(data.X, data.y)
    with pytest.raises(ValueError, match="noise"):
        get_algorithm("joint_em", noise="each").fit(data.X, data.y)


def test_per_expert_gradient_matches_finite_differences_and_stationarity_at_the_mle():
    from moebench import get_algorithm
    from moebench.stationarity import per_expert_gradient, per_expert_stationarity

    rng = np.random.default_rng(0)
    X = np.hstack([rng.uniform(0, 1, (400, 1)), np.ones((400, 1))])
    y = rng.standard_normal(400)
    A, W, s = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), np.array([0.5, 1, 2])

    def ll(A, W, s):
        return paper_like(X, y, A, W, s)

    g = per_expert_gradient(X, y, A, W, s, "linear")
    h, num = 1e-6, []
    for idx in range(6):
        dA = np.zeros(6)
        dA[idx] = h
        num.append((ll(A + dA.reshape(3, 2), W, s) - ll(A - dA.reshape(3, 2), W, s)) / (2 * h))
    for idx in range(3):
        ds = np.zeros(3)
        ds[idx] = h
        num.append((ll(A, W, s * np.exp(ds)) - ll(A, W, s * np.exp(-ds))) / (2 * h))
    assert np.allclose(g[:6], num[:6], rtol=1e-5, atol=1e-7)
    assert np.allclose(g[-3:], num[6:], rtol=1e-5, atol=1e-7)
    data = _paper_data(3000)
    est = get_algorithm("joint_em", n_experts=2, random_state=0, intercepts=True,
                        noise="per_expert", init="near_truth", n_init=1, max_iter=2000, tol=1e-12)
    est.fit(data.X, data.y, truth=data)
    grad_norm, min_eig = est.stationarity(data.X, data.y)
    assert grad_norm < 1e-4 and min_eig > 0  # a strict local maximum (exact fit)
    far = per_expert_stationarity(np.hstack([data.X, np.ones((3000, 1))]), data.y,
                                  np.array([[-19.0, 15.0], [20.0, -5.0]]),
                                  np.array([[25.0, -8.0], [0.0, 0.0]]), np.array([0.3, 0.4]),
                                  "linear")
    assert far[0] > 1.0


def paper_like(X, y, A, W, s):
    m = MoEModel(A, W, s, "linear")
    return m.mean_log_likelihood(X, y)


# --------------------------------------------------------------------------- configs
_TRUTH = """
[data.truth]
experts = [[-20.0, 0.0], [20.0, 1.0]]
gating = [[25.0, 0.0], [0.0, 0.0]]
sigma = [0.3, 0.4]
"""


def _config(tmp_path, data, algorithm, truth=_TRUTH):
    path = tmp_path / "c.toml"
    path.write_text(f'name = "c"\n[data]\n{data}\n{truth}\n[[algorithm]]\n{algorithm}\n')
    from moebench.sweep.config import load_config

    return load_config(path)


def test_shipped_reproduction_configs_load():
    from moebench.sweep.config import load_config

    cfg = load_config("softmax_gating")
    cells = list(cfg.cells())
    assert len(cells) == 16 * 3 * 40
    same_data = {tuple(c.data_seed("n", "n_test", "input_distribution", "input_interval",
                                   "k_fit").entropy) for c in cells if c.repetition == 0}
    assert len(same_data) == 1  # every n and fitted k of a repetition: one truth, one seed
    assert len({c.data_id for c in cells if c.repetition == 0 and c.data["n"] == 100}) == 3
    starts = list(load_config("softmax_gating_starts").cells())
    # joint EM on the 16 sizes, sgd on every other one up to 25119 (7), 3 fitted k, 10 reps
    assert len(starts) == (16 + 7) * 3 * 10
    assert {c.data["n"] for c in starts if c.variant.label == "sgd_random_best5"} == \
        set(sorted({c.data["n"] for c in starts})[:13:2])


def test_config_refuses_what_methods_exclude(tmp_path):
    from moebench.sweep.config import ConfigError

    ok = _config(tmp_path, "n = 200\nd = 2\nk = 2\nk_fit = [2, 3]", 'name = "joint_em"')
    assert {c.data["k_fit"] for c in ok.cells()} == {2, 3}
    biased = _TRUTH + "expert_bias = [1.0, 2.0]\n"
    with pytest.raises(ConfigError, match="no gating biases or expert intercepts"):
        _config(tmp_path, "n = 200\nd = 2\nk = 2", 'name = "tensor_em"', biased)
    with pytest.raises(ConfigError, match="no gating biases or expert intercepts"):
        _config(tmp_path, "n = 200\nd = 2\nk = 2",
                'name = "joint_em"\nparams = {init = "tensor"}', biased)
    with pytest.raises(ConfigError, match="n_experts <= d"):
        _config(tmp_path, "n = 200\nd = 2\nk = 2\nk_fit = 3", 'name = "alt_min"')
    with pytest.raises(ConfigError, match="truth has d = 2, k = 2"):
        _config(tmp_path, "n = 200\nd = 2\nk = 3", 'name = "joint_em"')
    with pytest.raises(ConfigError, match="needs d = 1"):
        _config(tmp_path, 'n = 200\nd = 2\nk = 2\ninput_distribution = "grid"',
                'name = "joint_em"')
    with pytest.raises(ConfigError, match="k_fit must be an integer >= 2"):
        _config(tmp_path, "n = 200\nd = 2\nk = 2\nk_fit = 1", 'name = "joint_em"')
