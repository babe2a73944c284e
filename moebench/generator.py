"""Synthetic mixture-of-experts data.

Rows are generated in fixed blocks of :data:`BLOCK_ROWS`, block ``b`` drawn from
the ``b``-th child of the data seed, so the same ``random_state`` gives the same
data bit for bit whether it is held in memory, streamed chunk by chunk, or
written to a ``.npy`` memmap.

Size: over 600 lines because the random truths, the given truth and every input design
feed the one block-wise code path that makes streamed and in-memory data identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moebench.activations import Activation, get_activation
from moebench.io import atomic_open
from moebench.model import MoEModel, sample_labels
from moebench.regression_moe import RegressionMoE, regression_truth
from moebench.validation import check_choice, check_n_experts, check_positive_int, check_sigma

BLOCK_ROWS = 65_536
GATING_KINDS = ("orthogonal", "generic")

SeedLike = int | np.random.SeedSequence | np.random.Generator | None


def as_seed_sequence(random_state: SeedLike) -> np.random.SeedSequence:
    """Turn an int, SeedSequence, Generator or None into a SeedSequence."""
    if isinstance(random_state, np.random.SeedSequence):
        return random_state
    if isinstance(random_state, np.random.Generator):
        return np.random.SeedSequence(int(random_state.integers(2**63)))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.SeedSequence(None if random_state is None else int(random_state))
    raise ValueError(
        f"random_state must be None, an int, a numpy SeedSequence or Generator; got "
        f"{type(random_state).__name__}"
    )


@dataclass
class MoEData:
    """A synthetic data set and the parameters that generated it.

    Attributes
    ----------
    X : ndarray (or memmap) of shape (n, d)
    y : ndarray (or memmap) of shape (n,)
    z : ndarray of shape (n,) or None
        Index of the expert behind each label (None when streamed to disk).
    model : MoEModel
        The true model; ``experts``, ``gating``, ``sigma``, ``activation`` mirror it.
    mean, cov : ndarray or None
        Input distribution; the model acts on the standardised input (see
        :func:`make_moe`).
    """

    X: np.ndarray
    y: np.ndarray
    z: np.ndarray | None
    model: MoEModel
    mean: np.ndarray | None = None
    cov: np.ndarray | None = None

    @property
    def experts(self) -> np.ndarray:
        return self.model.experts

    @property
    def gating(self) -> np.ndarray:
        return self.model.gating

    @property
    def sigma(self) -> float:
        return self.model.sigma

    @property
    def activation(self) -> Activation:
        return self.model.activation


def _pairwise_min_angle(A: np.ndarray) -> float:
    """Smallest angle in degrees between rows of A (unit norm)."""
    G = np.clip(A @ A.T, -1.0, 1.0)
    k = A.shape[0]
    iu = np.triu_indices(k, 1)
    return float(np.degrees(np.min(np.arccos(G[iu])))) if k > 1 else 180.0


def sample_experts(
    d: int,
    k: int,
    rng: np.random.Generator,
    min_angle: float = 0.0,
    expert_angle: float | None = None,
    max_tries: int = 10_000,
) -> np.ndarray:
    """Unit-norm, linearly independent experts (rows).

    Parameters
    ----------
    min_angle : float
        Minimum pairwise angle in degrees (rejection sampling); 90 gives
        orthonormal experts.
    expert_angle : float, optional
        If given, every pair of experts is at exactly this angle (degrees, in
        (0, 90]): the "expert separation" knob. Needs ``k < d`` below 90.
    """
    if expert_angle is not None:
        if not 0.0 < expert_angle <= 90.0:
            raise ValueError(f"expert_angle must be in (0, 90] degrees; got {expert_angle}")
        c = float(np.cos(np.radians(expert_angle)))
        if expert_angle < 90.0 and k >= d:
            raise ValueError(
                f"expert_angle < 90 needs k < d (one spare direction); got k={k}, d={d}"
            )
        Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        E = Q[:, :k].T
        u = Q[:, k] if k < d else np.zeros(d)
        A = np.sqrt(1.0 - c) * E + np.sqrt(c) * u
        return A / np.linalg.norm(A, axis=1, keepdims=True)
    if not 0.0 <= min_angle <= 90.0:
        raise ValueError(f"min_angle must be in [0, 90] degrees; got {min_angle}")
    if min_angle >= 90.0:
        Q, _ = np.linalg.qr(rng.standard_normal((d, k)))
        return Q.T.copy()
    for _ in range(max_tries):
        A = rng.standard_normal((k, d))
        A /= np.linalg.norm(A, axis=1, keepdims=True)
        if _pairwise_min_angle(A) >= min_angle and np.linalg.matrix_rank(A, tol=1e-6) == k:
            return A
    raise ValueError(
        f"could not draw {k} experts in d = {d} with pairwise angles >= {min_angle} degrees "
        f"after {max_tries} tries; lower min_angle"
    )


def sample_gating(
    experts: np.ndarray,
    rng: np.random.Generator,
    kind: str = "orthogonal",
    scale: float = 1.0,
    angle: float | None = None,
) -> np.ndarray:
    """Gating rows of norm ``scale`` with the last row 0.

    ``"orthogonal"`` rows lie in the orthogonal complement of the experts' span
    (the paper's assumption; needs d > k); ``"generic"`` rows are isotropic.
    ``angle`` (degrees, 0 to 90) overrides ``kind``: each row is
    cos(angle) u + sin(angle) v with u a unit vector orthogonal to the experts and
    v a unit vector in their span, so 0 is the paper's orthogonal case and 90 a
    gating that lies entirely in the experts' span.
    """
    check_choice(kind, "gating", GATING_KINDS)
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"gating_scale must be a finite float >= 0; got {scale}")
    k, d = experts.shape
    W = rng.standard_normal((k - 1, d))
    if kind == "orthogonal" or angle is not None:
        if d <= k:
            raise ValueError(
                f"gating='orthogonal' (or a gating_angle) needs d > k (room orthogonal to the "
                f"experts); got d={d}, k={k}; use gating='generic'"
            )
        Q, _ = np.linalg.qr(experts.T)
        in_span = (W @ Q) @ Q.T
        W = W - in_span
        if angle is not None:
            if not 0.0 <= angle <= 90.0:
                raise ValueError(f"gating_angle must be in [0, 90] degrees; got {angle}")
            theta = np.radians(angle)
            W = np.cos(theta) * W / np.linalg.norm(W, axis=1, keepdims=True) + np.sin(
                theta
            ) * in_span / np.linalg.norm(in_span, axis=1, keepdims=True)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    return np.vstack([scale * W, np.zeros((1, d))])


INPUT_DISTRIBUTIONS = ("gaussian", "uniform", "student_t", "laplace", "grid")
STUDENT_T_DOF = 5.0
#: the interval of each input design that has one, when none is given: ``uniform`` has
#: mean 0 and variance 1 on it; ``grid`` is Nguyen et al.'s fixed design on [0, 1]
DEFAULT_INPUT_INTERVALS: dict[str, tuple[float, float]] = {
    "uniform": (-float(np.sqrt(3.0)), float(np.sqrt(3.0))), "grid": (0.0, 1.0)}


def check_input_design(distribution: str, d: int,
                       interval: tuple[float, float] | None) -> tuple[float, float] | None:
    """The interval of an input design (its default when None); ValueError for a bad one.

    Only ``"uniform"`` and ``"grid"`` take an interval; ``"grid"`` needs d = 1.
    """
    check_choice(distribution, "input_distribution", INPUT_DISTRIBUTIONS)
    if distribution == "grid" and d != 1:
        raise ValueError(f"input_distribution='grid' (a fixed design linspace(low, high, n)) "
                         f"needs d = 1; got d={d}")
    if distribution not in DEFAULT_INPUT_INTERVALS:
        if interval is not None:
            raise ValueError(f"input_interval applies to input_distribution "
                             f"{' or '.join(map(repr, DEFAULT_INPUT_INTERVALS))} only; got "
                             f"{distribution!r} with input_interval={interval!r}")
        return None
    if interval is None:
        return DEFAULT_INPUT_INTERVALS[distribution]
    low, high = (float(v) for v in interval)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"input_interval must be two finite numbers low < high; got "
                         f"{interval!r}")
    return low, high


def sample_inputs(
    rng: np.random.Generator, shape: tuple[int, int], distribution: str,
    interval: tuple[float, float] | None = None,
) -> np.ndarray:
    """Standardised inputs (mean 0, identity covariance) of the given family.

    Only ``"gaussian"`` satisfies the paper's assumption; ``"uniform"`` (on
    ``interval``, default [-sqrt 3, sqrt 3]: mean 0, variance 1), ``"student_t"``
    (5 degrees of freedom, heavy tails) and ``"laplace"`` are for assumption-violation
    studies. The fixed design ``"grid"`` draws nothing (:func:`iter_moe_blocks` lays it).
    """
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    if distribution == "uniform":
        low, high = DEFAULT_INPUT_INTERVALS["uniform"] if interval is None else interval
        return rng.uniform(low, high, size=shape)
    if distribution == "student_t":
        scale = np.sqrt(STUDENT_T_DOF / (STUDENT_T_DOF - 2))
        return rng.standard_t(STUDENT_T_DOF, size=shape) / scale
    if distribution == "laplace":
        return rng.laplace(0.0, 1.0 / np.sqrt(2.0), size=shape)
    raise ValueError(
        f"unknown input_distribution {distribution!r}; valid choices are "
        f"{', '.join(INPUT_DISTRIBUTIONS)}"
    )


def make_moe_model(
    d: int,
    k: int,
    activation: str | Activation = "linear",
    sigma: float = 0.1,
    gating: str = "orthogonal",
    gating_scale: float = 1.0,
    min_angle: float = 0.0,
    expert_angle: float | None = None,
    random_state: SeedLike = None,
    gating_angle: float | None = None,
) -> MoEModel:
    """Draw true parameters only (see :func:`make_moe` for the arguments)."""
    d = check_positive_int(d, "d")
    k = check_n_experts(k, d, require_k_le_d=True)
    sigma = check_sigma(sigma, allow_none=False)
    rng = np.random.default_rng(as_seed_sequence(random_state))
    A = sample_experts(d, k, rng, min_angle=min_angle, expert_angle=expert_angle)
    W = sample_gating(A, rng, gating, gating_scale, gating_angle)
    return MoEModel(A, W, sigma, get_activation(activation))


def truth_model(table: dict[str, Any], d: int, k: int, activation: str | Activation
                ) -> MoEModel | RegressionMoE:
    """The :class:`~moebench.model.MoEModel` of a config's ``data.truth`` table (lists), or
    with a ``gate`` key ("softmax" or "sigmoid") the
    :class:`~moebench.regression_moe.RegressionMoE` y = f_G(x) + N(0, sigma^2).

    Raises
    ------
    ValueError
        For unknown keys, missing ``experts`` or ``gating``, bad values, or a truth whose
        d and k differ from the setting's.
    """
    keys = ("experts", "gating", "expert_bias", "gating_bias", "sigma", "gate")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ValueError(f"unknown key data.truth.{unknown[0]}; valid keys: {', '.join(keys)}")
    missing = [key for key in ("experts", "gating", "sigma") if key not in table]
    if missing:
        raise ValueError(f"data.truth needs {', '.join(missing)} (keys: {', '.join(keys)})")
    sigma = table["sigma"]
    if table.get("gate") is not None:  # a regression function f_G plus Gaussian noise
        return regression_truth(table, d, k, activation)
    model = MoEModel(np.asarray(table["experts"], dtype=float),
                     np.asarray(table["gating"], dtype=float),
                     np.asarray(sigma, dtype=float) if isinstance(sigma, list) else sigma,
                     activation,
                     expert_bias=table.get("expert_bias"), gating_bias=table.get("gating_bias"))
    if (model.n_features, model.n_experts) != (d, k):
        raise ValueError(f"data.truth has d = {model.n_features}, k = {model.n_experts}; the "
                         f"setting has d = {d}, k = {k}")
    return model


def _input_transform(
    d: int, mean: np.ndarray | None, cov: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if mean is not None:
        mean = np.asarray(mean, dtype=float)
        if mean.shape != (d,) or not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be a finite vector of shape ({d},); got {mean.shape}")
    chol = None
    if cov is not None:
        cov = np.asarray(cov, dtype=float)
        if cov.shape != (d, d) or not np.allclose(cov, cov.T):
            raise ValueError(f"cov must be a symmetric ({d}, {d}) matrix; got shape {cov.shape}")
        evals, evecs = np.linalg.eigh(cov)
        if evals.min() <= 0:
            raise ValueError("cov must be positive definite")
        # symmetric square root, so that standardize() (cov^{-1/2}) inverts it exactly
        chol = (evecs * np.sqrt(evals)) @ evecs.T
    return mean, chol


def iter_moe_blocks(
    model: MoEModel | RegressionMoE,
    n: int,
    seed: np.random.SeedSequence,
    mean: np.ndarray | None = None,
    chol: np.ndarray | None = None,
    input_distribution: str = "gaussian",
    input_interval: tuple[float, float] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (X, y, z) in blocks of :data:`BLOCK_ROWS` rows; block b uses seed child b.

    The one place rows are drawn: :func:`make_moe` (in memory and on disk),
    :func:`iter_moe_chunks` and the sweep runner all read these blocks.

    Parameters
    ----------
    model : MoEModel or RegressionMoE
        True model; it acts on the standardised input (a RegressionMoE's ``z`` is -1).
    n : int
        Number of rows in all.
    seed : SeedSequence
        Data seed; block ``b`` is drawn from its ``b``-th child.
    mean, chol : ndarray, optional
        Affine map of the standardised input: ``X = Z chol^T + mean``.
    input_distribution : str
        Family of the standardised input (see :func:`sample_inputs`); ``"grid"``: the
        rows of ``linspace(low, high, n)`` in order, only the labels are drawn.
    input_interval : (float, float), optional
        The interval of ``"uniform"`` and ``"grid"`` (see :func:`check_input_design`).

    Yields
    ------
    X, y, z : ndarray
        Inputs, labels and expert index of one block.
    """
    block_rows = BLOCK_ROWS  # read at call time (tests shrink it)
    n_blocks = -(-n // block_rows)
    for b, child in enumerate(seed.spawn(n_blocks)):
        rows = min(block_rows, n - b * block_rows)
        rng = np.random.default_rng(child)
        if input_distribution == "grid":
            low, high = input_interval or DEFAULT_INPUT_INTERVALS["grid"]
            index = np.arange(b * block_rows, b * block_rows + rows)
            # numpy.linspace's own arithmetic, so the rows equal linspace(low, high, n)
            Z = (index * ((high - low) / max(n - 1, 1)) + low)[:, None]
            Z[index == n - 1] = high if n > 1 else low
        else:
            Z = sample_inputs(rng, (rows, model.n_features), input_distribution,
                              input_interval)
        if isinstance(model, RegressionMoE):  # y = f_G(x) + noise: no latent expert
            y, z = model.sample(Z, rng), np.full(rows, -1)
        else:
            y, z = sample_labels(model, Z, rng)
        X = Z
        if chol is not None:
            X = Z @ chol.T
        if mean is not None:
            X = X + mean
        yield X, y, z


@dataclass
class _MoEStream:
    """What :func:`_moe_stream` prepared: the true model, the input law and the rows."""

    model: MoEModel
    mean: np.ndarray | None
    cov: np.ndarray | None
    blocks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]


def _moe_stream(
    n: int,
    d: int,
    k: int,
    activation: str | Activation,
    sigma: float,
    gating: str,
    gating_scale: float,
    min_angle: float,
    mean: np.ndarray | None,
    cov: np.ndarray | None,
    random_state: SeedLike,
    expert_angle: float | None,
    gating_angle: float | None,
    input_distribution: str,
    input_interval: tuple[float, float] | None = None,
    truth: MoEModel | None = None,
) -> _MoEStream:
    """The code path shared by :func:`make_moe` and :func:`iter_moe_chunks`.

    Validates every argument and draws the true model now (child 0 of the seed);
    the rows (child 1) are drawn lazily, block by block, by :func:`iter_moe_blocks`.
    """
    n = check_positive_int(n, "n")
    param_seed, data_seed = as_seed_sequence(random_state).spawn(2)
    interval = check_input_design(input_distribution, int(d), input_interval)
    if truth is not None:
        if not isinstance(truth, MoEModel):
            raise ValueError(f"truth must be a MoEModel; got {type(truth).__name__}")
        if (truth.n_features, truth.n_experts) != (d, k):
            raise ValueError(f"truth has d = {truth.n_features}, k = {truth.n_experts}; the "
                             f"call asks for d = {d}, k = {k}")
        model = truth
    else:
        model = make_moe_model(
            d, k, activation, sigma, gating, gating_scale, min_angle, expert_angle, param_seed,
            gating_angle,
        )
    mean_arr, chol = _input_transform(d, mean, cov)
    blocks = iter_moe_blocks(model, n, data_seed, mean_arr, chol, input_distribution, interval)
    return _MoEStream(model, mean_arr, None if cov is None else np.asarray(cov, float), blocks)


def make_moe(
    n: int,
    d: int,
    k: int,
    activation: str | Activation = "linear",
    sigma: float = 0.1,
    gating: str = "orthogonal",
    gating_scale: float = 1.0,
    min_angle: float = 0.0,
    mean: np.ndarray | None = None,
    cov: np.ndarray | None = None,
    random_state: SeedLike = None,
    *,
    expert_angle: float | None = None,
    gating_angle: float | None = None,
    input_distribution: str = "gaussian",
    input_interval: tuple[float, float] | None = None,
    truth: MoEModel | None = None,
    out: str | os.PathLike | None = None,
) -> MoEData:
    """Generate a synthetic mixture-of-experts regression data set.

    Parameters
    ----------
    n, d, k : int
        Samples, input dimension, experts (2 <= k <= d for a random truth; any k >= 2
        with ``truth``).
    activation : str or Activation
        Expert activation (``moebench list`` shows the choices).
    sigma : float
        Label noise standard deviation.
    gating : {"orthogonal", "generic"}
        ``"orthogonal"``: gating rows orthogonal to every expert (the paper's
        assumption, needs d > k); ``"generic"``: isotropic random rows.
    gating_scale : float
        Norm of each non-zero gating row (larger = sharper gates).
    min_angle : float
        Minimum pairwise angle between experts, degrees.
    mean, cov : array, optional
        Input distribution N(mean, cov). The model acts on the standardised
        input cov^{-1/2}(x - mean), so standardising X recovers the true
        parameters; default N(0, I).
    random_state : int, SeedSequence, Generator or None
        Seed; parameters use child 0 of the seed sequence, data child 1.
    expert_angle : float, optional
        Every pair of experts at exactly this angle (degrees); overrides min_angle.
    gating_angle : float, optional
        Angle (degrees) of each gating row out of the experts' orthogonal
        complement: 0 is the paper's assumption, 90 lies in the experts' span.
    input_distribution : {"gaussian", "uniform", "student_t", "laplace", "grid"}
        Family of the standardised input; non-Gaussian ones violate the theory.
        ``"grid"`` (d = 1) is the fixed design ``linspace(low, high, n)``.
    input_interval : (float, float), optional
        [low, high] of ``"uniform"`` (default [-sqrt 3, sqrt 3]) and ``"grid"``
        (default [0, 1]).
    truth : MoEModel, optional
        Draw the rows from this model (any k, biases, per-expert sigma) instead of a
        random one; it must have ``d`` inputs and ``k`` experts, and the options that
        draw a random truth (activation, sigma, gating, angles) are not used.
    out : path, optional
        Write ``X`` and ``y`` as ``.npy`` memmaps ``<out>/X.npy`` and ``<out>/y.npy``
        block by block (never more than one block in memory) and return memmaps.

    Returns
    -------
    MoEData
        ``.X``, ``.y``, ``.z`` and the true ``.experts``, ``.gating``, ``.sigma``.

    See Also
    --------
    iter_moe_chunks : the same rows, streamed chunk by chunk.
    """
    stream = _moe_stream(n, d, k, activation, sigma, gating, gating_scale, min_angle, mean, cov,
                         random_state, expert_angle, gating_angle, input_distribution,
                         input_interval, truth)
    if out is None:
        Xs, ys, zs = zip(*stream.blocks)
        return MoEData(np.concatenate(Xs), np.concatenate(ys), np.concatenate(zs), stream.model,
                       stream.mean, stream.cov)
    n, d = int(n), stream.model.n_features
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Append block by block to plain files (not a writable memmap, whose dirty pages
    # would count as resident memory): one block in memory at a time; each file
    # replaces X.npy / y.npy only once complete.
    with atomic_open(out / "X.npy") as fx, atomic_open(out / "y.npy") as fy:
        np.lib.format.write_array_header_1_0(
            fx, {"descr": "<f8", "fortran_order": False, "shape": (n, d)})
        np.lib.format.write_array_header_1_0(
            fy, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
        for Xb, yb, _ in stream.blocks:
            np.ascontiguousarray(Xb, dtype="<f8").tofile(fx)
            np.ascontiguousarray(yb, dtype="<f8").tofile(fy)
    return MoEData(np.load(out / "X.npy", mmap_mode="r"), np.load(out / "y.npy", mmap_mode="r"),
                   None, stream.model, stream.mean, stream.cov)


def _rechunk(
    blocks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], chunk_size: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) in chunks of ``chunk_size`` rows (the last may be shorter); None keeps blocks."""
    if chunk_size is None:
        for X, y, _ in blocks:
            yield X, y
        return
    Xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    have = 0
    for X, y, _ in blocks:
        start = 0
        while start < len(X):
            take = min(chunk_size - have, len(X) - start)
            Xs.append(X[start:start + take])
            ys.append(y[start:start + take])
            have += take
            start += take
            if have == chunk_size:
                yield np.concatenate(Xs), np.concatenate(ys)
                Xs, ys, have = [], [], 0
    if have:
        yield np.concatenate(Xs), np.concatenate(ys)


def iter_moe_chunks(
    n: int,
    d: int,
    k: int,
    activation: str | Activation = "linear",
    sigma: float = 0.1,
    gating: str = "orthogonal",
    gating_scale: float = 1.0,
    min_angle: float = 0.0,
    random_state: SeedLike = None,
    *,
    mean: np.ndarray | None = None,
    cov: np.ndarray | None = None,
    expert_angle: float | None = None,
    gating_angle: float | None = None,
    input_distribution: str = "gaussian",
    input_interval: tuple[float, float] | None = None,
    truth: MoEModel | None = None,
    chunk_size: int | None = None,
) -> tuple[MoEModel, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The true model and an iterator of (X, y) chunks, identical to :func:`make_moe`'s rows.

    Takes every option of :func:`make_moe` (``out`` aside) and goes through the same
    code path, so the same arguments give the same rows bit for bit. Arguments are
    checked and the model drawn at the call; rows are drawn as the iterator is read.

    Parameters
    ----------
    n, d, k, activation, sigma, gating, gating_scale, min_angle, random_state
        As in :func:`make_moe`.
    mean, cov, expert_angle, gating_angle, input_distribution, input_interval, truth
        As in :func:`make_moe` (keyword only).
    chunk_size : int, optional
        Rows per chunk (the last chunk may be shorter). Default: the generator's
        blocks of :data:`BLOCK_ROWS` rows. Memory holds at most one block and one
        chunk at a time.

    Returns
    -------
    model : MoEModel
        The true model.
    chunks : iterator of (X, y)
        Consecutive rows; concatenated they equal ``make_moe(...).X`` and ``.y``.
    """
    if chunk_size is not None:
        chunk_size = check_positive_int(chunk_size, "chunk_size")
    stream = _moe_stream(n, d, k, activation, sigma, gating, gating_scale, min_angle, mean, cov,
                         random_state, expert_angle, gating_angle, input_distribution,
                         input_interval, truth)
    return stream.model, _rechunk(stream.blocks, chunk_size)


def standardize(X: np.ndarray, mean: np.ndarray | None = None, cov: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whiten X: return cov^{-1/2}(X - mean), and the mean and cov used.

    With mean/cov omitted they are estimated from X.
    """
    X = np.asarray(X, dtype=float)
    mean = X.mean(axis=0) if mean is None else np.asarray(mean, float)
    cov = np.cov(X, rowvar=False) if cov is None else np.asarray(cov, float)
    evals, evecs = np.linalg.eigh(np.atleast_2d(cov))
    if np.min(evals) <= 1e-12 * max(np.max(evals), 1e-300):
        raise ValueError("the input covariance is singular: drop constant or collinear columns")
    inv_sqrt = (evecs / np.sqrt(evals)) @ evecs.T
    return (X - mean) @ inv_sqrt, mean, cov
