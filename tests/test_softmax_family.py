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
