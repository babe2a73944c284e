"""Voronoi losses: a direct transcription of the formula, translation, bad input."""

import math

import numpy as np
import pytest

from moebench.metrics import voronoi_loss
from moebench.model import MoEModel
from moebench.voronoi import Atoms

RBAR = {2: 4, 3: 6}


def _norm(x):
    return math.sqrt(sum(float(t) ** 2 for t in np.atleast_1d(x)))


def transcribed(fit: Atoms, true: Atoms) -> float:
    """The loss written out with loops, straight from the issue's definition."""
    K, J = len(fit.beta0), len(true.beta0)
    f0, f1 = fit.beta0 - fit.beta0[-1], fit.beta1 - fit.beta1[-1]
    t0, t1 = true.beta0 - true.beta0[-1], true.beta1 - true.beta1[-1]

    def parts(i, j):
        return (_norm(f1[i] - t1[j]), abs(fit.b[i] - true.b[j]),
                _norm(fit.a[i] - true.a[j]), abs(fit.v[i] - true.v[j]))

    cells = {j: [] for j in range(J)}
    for i in range(K):
        dists = [sum(parts(i, j)) for j in range(J)]
        cells[dists.index(min(dists))].append(i)
    loss = 0.0
    for j, members in cells.items():
        for i in members:
            dbeta1, db, da, dv = parts(i, j)
            if len(members) == 1:
                loss += math.exp(f0[i]) * (dbeta1 + db + da + dv)
            else:
                r = RBAR[len(members)]
                loss += math.exp(f0[i]) * (dbeta1**r + db**r + da ** (r / 2) + dv ** (r / 2))
        loss += abs(sum(math.exp(f0[i]) for i in members) - math.exp(t0[j]))
    return loss


def _atoms(rng, k, d, scale=1.0):
    return Atoms(beta0=scale * rng.standard_normal(k), beta1=scale * rng.standard_normal((k, d)),
                 b=scale * rng.standard_normal(k), a=scale * rng.standard_normal((k, d)),
                 v=rng.uniform(0.05, 0.5, k))


def _near(rng, true: Atoms, owners, noise):
    """Fitted atoms copying the true atoms ``owners`` (perturbed by ``noise``)."""
    o = np.asarray(owners)
    k, d = len(o), true.a.shape[1]
    return Atoms(beta0=true.beta0[o] - np.log(np.bincount(o)[o]) + noise * rng.standard_normal(k),
                 beta1=true.beta1[o] + noise * rng.standard_normal((k, d)),
                 b=true.b[o] + noise * rng.standard_normal(k),
                 a=true.a[o] + noise * rng.standard_normal((k, d)),
                 v=np.abs(true.v[o] + noise * rng.standard_normal(k)) + 1e-3)


def _cell_sizes(fit, true):
    g_fit, g_true = fit.beta1 - fit.beta1[-1], true.beta1 - true.beta1[-1]
    dist = (np.linalg.norm(g_fit[:, None] - g_true[None], axis=-1)
            + np.abs(fit.b[:, None] - true.b[None])
            + np.linalg.norm(fit.a[:, None] - true.a[None], axis=-1)
            + np.abs(fit.v[:, None] - true.v[None]))
    return np.bincount(np.argmin(dist, axis=1), minlength=len(true.b))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("owners", [[0, 1], [1, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1, 1], [0, 1, 2]])
def test_equals_transcription(seed, d, owners):
    rng = np.random.default_rng([seed, d, len(owners)])
    k_true = max(owners) + 1
    true = _atoms(rng, k_true, d)
    for noise in (1e-3, 0.05, 0.5):
        fit = _near(rng, true, owners, noise)
        if _cell_sizes(fit, true).max() > 3:
            continue
        assert voronoi_loss(fit, true) == pytest.approx(transcribed(fit, true), rel=1e-12,
                                                        abs=1e-14)


def test_covers_singleton_and_multi_atom_cells():
    rng = np.random.default_rng(3)
    true = _atoms(rng, 2, 1)
    seen = set()
    for owners in ([0, 1], [1, 0, 1], [0, 0, 1, 1]):
        fit = _near(rng, true, owners, 1e-2)
        seen.update(_cell_sizes(fit, true).tolist())
        assert voronoi_loss(fit, true) == pytest.approx(transcribed(fit, true), rel=1e-12)
    assert {1, 2} <= seen


def test_truth_scores_zero_and_models_are_accepted():
    truth = MoEModel(np.array([[-20.0], [20.0]]), np.array([[25.0], [0.0]]), 0.3, "linear")
    assert voronoi_loss(truth, truth) == 0.0
    assert voronoi_loss(truth, truth, translation=True) == 0.0


def test_paper_truth_known_value():
    # NeurIPS 2023 truth; a fit off by 0.1 in the slope of expert 0 only.
    true = Atoms(np.array([-8.0, 0.0]), np.array([[25.0], [0.0]]), np.array([15.0, -5.0]),
                 np.array([[-20.0], [20.0]]), np.array([0.09, 0.16]))
    fit = Atoms(true.beta0, true.beta1, true.b, true.a + np.array([[0.1], [0.0]]), true.v)
    assert voronoi_loss(fit, true) == pytest.approx(math.exp(-8.0) * 0.1, rel=1e-12)


def test_log2_gate_shift_is_removed_by_translation():
    # Two copies of the reference at gate 0 and the other gate shifted by log 2: the
    # softmax equals the truth's; the plain loss does not see it, the translated one does.
    true = Atoms(np.array([-8.0, 0.0]), np.array([[25.0], [0.0]]), np.array([15.0, -5.0]),
                 np.array([[-20.0], [20.0]]), np.array([0.09, 0.16]))
    fit = Atoms(np.array([-8.0 + math.log(2), 0.0, 0.0]), np.array([[25.0], [0.0], [0.0]]),
                np.array([15.0, -5.0, -5.0]), np.array([[-20.0], [20.0], [20.0]]),
                np.array([0.09, 0.16, 0.16]))
    assert voronoi_loss(fit, true) == pytest.approx(1.0 + math.exp(-8.0), rel=1e-12)
    assert voronoi_loss(fit, true, translation=True) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("d", [1, 2])
def test_translation_invariant_and_never_larger(seed, d):
    rng = np.random.default_rng([seed, d, 99])
    true = _atoms(rng, 2, d)
    owners = [0, 1, 1] if seed % 2 else [0, 1]
    fit = _near(rng, true, owners, 0.1)
    base = voronoi_loss(fit, true, translation=True)
    assert base <= voronoi_loss(fit, true) + 1e-15
    shift0, shift1 = 3.0 * rng.standard_normal(), 2.0 * rng.standard_normal(d)
    shifted = Atoms(fit.beta0 + shift0, fit.beta1 + shift1, fit.b, fit.a, fit.v)
    assert voronoi_loss(shifted, true, translation=True) == pytest.approx(base, rel=1e-6,
                                                                          abs=1e-9)
    # Reordering the fitted atoms changes the reference gate: a translation of every gate.
    perm = rng.permutation(len(owners))
    moved = Atoms(fit.beta0[perm], fit.beta1[perm], fit.b[perm], fit.a[perm], fit.v[perm])
    assert voronoi_loss(moved, true, translation=True) == pytest.approx(base, rel=1e-6, abs=1e-9)


def test_bad_input():
    rng = np.random.default_rng(0)
    true = _atoms(rng, 2, 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        voronoi_loss(Atoms(true.beta0, true.beta1, true.b * np.nan, true.a, true.v), true)
    with pytest.raises(ValueError, match="variances must be positive"):
        voronoi_loss(Atoms(true.beta0, true.beta1, true.b, true.a, -true.v), true)
    with pytest.raises(ValueError, match="shape"):
        voronoi_loss(Atoms(true.beta0[:1], true.beta1, true.b, true.a, true.v), true)
    with pytest.raises(ValueError, match="d = 2"):
        voronoi_loss(_atoms(rng, 2, 2), true)
    with pytest.raises(ValueError, match="MoEModel or Atoms"):
        voronoi_loss(object(), true)
    four = _near(rng, true, [0, 0, 0, 0], 1e-3)
    with pytest.raises(ValueError, match="known cell sizes: \\[2, 3\\]"):
        voronoi_loss(four, true)
    assert voronoi_loss(four, true, rbar={4: 8}) > 0
    with pytest.raises(ValueError, match="rbar needs"):
        voronoi_loss(four, true, rbar={1: 2})
