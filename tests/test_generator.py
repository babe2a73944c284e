import numpy as np
import pytest

import moebench
from moebench.generator import BLOCK_ROWS, iter_moe_chunks, make_moe, standardize


def test_shapes_and_true_parameters():
    data = make_moe(1000, 8, 3, activation="relu", sigma=0.2, random_state=0)
    assert data.X.shape == (1000, 8) and data.y.shape == (1000,) and data.z.shape == (1000,)
    assert data.experts.shape == (3, 8) and data.gating.shape == (3, 8)
    assert data.sigma == 0.2 and data.activation.name == "relu"
    assert np.allclose(np.linalg.norm(data.experts, axis=1), 1.0)
    assert np.linalg.matrix_rank(data.experts) == 3
    assert np.allclose(data.gating[-1], 0.0)


def test_orthogonal_gating_is_orthogonal_to_every_expert():
    data = make_moe(10, 10, 4, gating="orthogonal", gating_scale=2.5, random_state=3)
    assert np.allclose(data.gating @ data.experts.T, 0.0, atol=1e-12)
    assert np.allclose(np.linalg.norm(data.gating[:-1], axis=1), 2.5)


def test_generic_gating_is_not_orthogonal():
    data = make_moe(10, 10, 4, gating="generic", random_state=3)
    assert np.max(np.abs(data.gating @ data.experts.T)) > 0.05


def test_min_angle_and_expert_angle():
    data = make_moe(10, 10, 4, min_angle=70.0, random_state=1)
    cos = data.experts @ data.experts.T
    angles = np.degrees(np.arccos(np.clip(cos[np.triu_indices(4, 1)], -1, 1)))
    assert angles.min() >= 70.0
    close = make_moe(10, 10, 4, expert_angle=20.0, random_state=1)
    cos = close.experts @ close.experts.T
    assert np.allclose(np.degrees(np.arccos(cos[np.triu_indices(4, 1)])), 20.0)


def test_bit_for_bit_reproducible_in_memory_and_on_disk(tmp_path):
    n = BLOCK_ROWS + 123  # two blocks
    a = make_moe(n, 5, 2, activation="sigmoid", random_state=42)
    b = make_moe(n, 5, 2, activation="sigmoid", random_state=42, out=tmp_path / "ds")
    assert isinstance(b.X, np.memmap)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not list(tmp_path.glob("ds/*.partial"))
    model, chunks = iter_moe_chunks(n, 5, 2, activation="sigmoid", random_state=42)
    Xs, ys = zip(*chunks)
    assert np.array_equal(np.concatenate(Xs), a.X) and np.array_equal(model.experts, a.experts)
    c = make_moe(n, 5, 2, activation="sigmoid", random_state=43)
    assert not np.array_equal(a.X, c.X)


def test_labels_follow_the_model():
    data = make_moe(50000, 6, 3, sigma=0.1, random_state=0)
    mu = np.einsum("ij,ij->i", data.X, data.experts[data.z])
    assert abs(np.std(data.y - mu) - 0.1) < 0.002
    freq = np.bincount(data.z, minlength=3) / len(data.z)
    expected = np.exp(data.model.gate_log_proba(data.X)).mean(0)
    assert np.allclose(freq, expected, atol=0.01)


def test_mean_and_cov_are_standardised_away():
    cov = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    data = make_moe(100000, 3, 2, mean=mean, cov=cov, gating="orthogonal", random_state=0)
    assert np.allclose(data.X.mean(0), mean, atol=0.02)
    Z, _, _ = standardize(data.X, mean, cov)
    mu = np.einsum("ij,ij->i", Z, data.experts[data.z])
    assert abs(np.std(data.y - mu) - 0.1) < 0.002


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=10, d=5, k=1), "n_experts must be >= 2"),
        (dict(n=10, d=3, k=4), "exceeds the input dimension"),
        (dict(n=10, d=3, k=3, gating="orthogonal"), "needs d > k"),
        (dict(n=10, d=5, k=2, gating="sideways"), "valid choices are 'orthogonal', 'generic'"),
        (dict(n=10, d=5, k=2, activation="swish"), "unknown activation"),
        (dict(n=0, d=5, k=2), "n must be an integer >= 1"),
        (dict(n=10, d=5, k=2, sigma=0.0), "sigma"),
        (dict(n=10, d=5, k=2, min_angle=120), "min_angle"),
        (dict(n=10, d=3, k=2, cov=np.eye(2)), "cov must be"),
        (dict(n=10, d=3, k=2, random_state="x"), "random_state"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_moe(**kwargs)


def test_top_level_contract_names():
    assert callable(moebench.make_moe) and callable(moebench.get_algorithm)
    assert {"tensor_em", "joint_em", "sgd"} <= set(moebench.available_algorithms())


def test_streaming_to_disk_holds_one_block_at_a_time(tmp_path):
    import tracemalloc

    d = 10
    peaks = []
    for blocks in (2, 6):
        tracemalloc.start()
        make_moe(blocks * BLOCK_ROWS, d, 3, random_state=0, out=tmp_path / f"s{blocks}")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    block_bytes = BLOCK_ROWS * d * 8
    assert peaks[1] < 1.1 * peaks[0], f"peak grows with n: {peaks}"
    # the block being drawn, the previous one (still bound in the loop) and temporaries
    assert peaks[1] < 4 * block_bytes, f"peak {peaks[1]} bytes for blocks of {block_bytes}"


def test_gating_angle_interpolates_orthogonal_to_in_span():
    for angle in (0.0, 30.0, 90.0):
        data = make_moe(10, 10, 3, gating_angle=angle, gating_scale=2.0, random_state=5)
        Q, _ = np.linalg.qr(data.experts.T)
        rows = data.gating[:-1]
        in_span = np.linalg.norm(rows @ Q, axis=1) / np.linalg.norm(rows, axis=1)
        assert np.allclose(in_span, np.sin(np.radians(angle)), atol=1e-12)
        assert np.allclose(np.linalg.norm(rows, axis=1), 2.0)


@pytest.mark.parametrize("dist", ["gaussian", "uniform", "student_t", "laplace"])
def test_input_distributions_are_standardised(dist):
    data = make_moe(200000, 3, 2, input_distribution=dist, random_state=0)
    assert np.allclose(data.X.mean(0), 0.0, atol=0.02)
    assert np.allclose(np.cov(data.X, rowvar=False), np.eye(3), atol=0.03)
    kurt = np.mean(data.X[:, 0] ** 4)
    expected = {"gaussian": 3.0, "uniform": 1.8, "student_t": 9.0, "laplace": 6.0}[dist]
    assert abs(kurt - expected) < (0.1 if dist in ("gaussian", "uniform") else 2.5)


def test_unknown_input_distribution():
    with pytest.raises(ValueError, match="valid choices are 'gaussian', 'uniform'"):
        make_moe(10, 3, 2, input_distribution="cauchy")
