"""Symmetric third-order tensor algebra and orthogonal decompositions.

Everything here acts on small dense k x k x k numpy arrays (the whitened third
moment); the estimators and the moment tests call these functions and never
contract tensors themselves (:func:`multilinear` is the one contraction T(A, B, C)).

Decompositions of a symmetric T ~ sum_i lambda_i v_i^{⊗3} with orthonormal v_i:

* :func:`robust_power_method` -- the robust tensor power method of Anandkumar,
  Ge, Hsu, Kakade and Telgarsky (JMLR 2014, Algorithm 1), made independent of
  rounding: L random starts on the unit sphere plus the k eigenvectors of one slice
  T(I, I, w) (w = (1, ..., 1) / sqrt(k): deterministic starts, near the components of
  an orthogonally decomposable T), each given N power iterations
  v <- T(I, v, v) / ||T(I, v, v)|| (it stops early once a step moves it less than
  ``tol``); a start still moving then is taken to convergence by Newton's method for
  the same fixed point (critical points of T(v, v, v) on the sphere, quadratic where the
  power map contracts slowly). Keep the converged local maximum of T(v, v, v) with the
  largest value, deflate T <- T - lambda v^{⊗3}, repeat.
* :func:`jennrich` -- simultaneous diagonalisation (Jennrich's algorithm): the
  eigenvectors of a random slice T(I, I, w) (orthogonal case: one symmetric
  eigendecomposition, the slice with the best-separated eigenvalues among
  ``n_starts`` draws) or of T(I, I, w1) T(I, I, w2)^+ (general case).

Sign convention: an odd-order tensor satisfies (-lambda)(-v)^{⊗3} = lambda v^{⊗3},
so a component is only defined up to the pair (lambda, v) ~ (-lambda, -v). Both
methods return lambda_i = T(v_i, v_i, v_i) >= 0 (flipping v_i when needed).

Conditioning (the *eigengap*). Two runs on tensors that differ by rounding (1e-14, e.g.
the fused and BLAS moment kernels) reach the same fixed points to ~1e-12; what can
still differ is a discrete choice: which fixed point has the largest value. At each
deflation step the *margin* is the best converged fixed point's value T(v, v, v) less
that of the best distinct one (0 when there is none); the decomposition's
``eigengap`` is the smallest margin over the steps divided by the first (largest)
eigenvalue. Two equal eigenvalues give eigengap ~ 0. Above :data:`EIGENGAP_TOL`
(1e-6, 10^8 times the rounding differences of the moment kernels) the choice cannot
flip under such perturbations and the same tensor, to rounding, gives the same
components (to ~1e-10); below it, or when no start converged at some step, the result
is marked ``ill_conditioned`` (it is still returned: the argmax, as before). For
:func:`jennrich` the eigengap is the smallest gap between consecutive eigenvalues (the
last against 0) over the largest: the order of its components flips below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moebench.tensor.whitening import Whitening

DECOMPOSITIONS = ("power", "jennrich")
#: Power iterations stop once a step moves the (unit) iterate by less than this.
POWER_TOL = 1e-12
#: Most Newton steps per start after its power iterations (see :func:`robust_power_method`).
NEWTON_MAX_ITER = 30
#: Converged starts closer than this (2-norm) are the same fixed point.
SAME_POINT_TOL = 1e-6
#: A decomposition whose relative eigengap is below this is ``ill_conditioned``.
EIGENGAP_TOL = 1e-6


# -- contractions ---------------------------------------------------------------
def check_symmetric_tensor(T: np.ndarray, name: str = "T") -> np.ndarray:
    """Validate a finite cubic third-order tensor of shape (k, k, k)."""
    T = np.asarray(T, dtype=float)
    if T.ndim != 3 or not (T.shape[0] == T.shape[1] == T.shape[2]) or T.shape[0] < 1:
        raise ValueError(f"{name} must have shape (k, k, k); got {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return T


def symmetrize(T: np.ndarray) -> np.ndarray:
    """Average of T over the 6 permutations of its three indices."""
    T = np.asarray(T, dtype=float)
    return (T + T.transpose(0, 2, 1) + T.transpose(1, 0, 2) + T.transpose(1, 2, 0)
            + T.transpose(2, 0, 1) + T.transpose(2, 1, 0)) / 6.0


def rank_one(v: np.ndarray) -> np.ndarray:
    """v ⊗ v ⊗ v."""
    v = np.asarray(v, dtype=float)
    return np.einsum("i,j,k->ijk", v, v, v)


def compose(weights: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """sum_i weights[i] vectors[i]^{⊗3} for vectors of shape (r, k)."""
    V = np.asarray(vectors, dtype=float)
    return np.einsum("r,ri,rj,rk->ijk", np.asarray(weights, dtype=float), V, V, V)


def multilinear(T: np.ndarray, A: np.ndarray, B: np.ndarray | None = None,
                C: np.ndarray | None = None) -> np.ndarray:
    """T(A, B, C)_{abc} = sum_{ijk} T_ijk A_ia B_jb C_kc (B, C default to A)."""
    B = A if B is None else B
    C = A if C is None else C
    return np.einsum("ijk,ia,jb,kc->abc", T, A, B, C, optimize=True)


def apply_vv(T: np.ndarray, V: np.ndarray) -> np.ndarray:
    """T(I, v, v) for each column v of V (shape (k, m)) -> shape (k, m); a vector for 1-d V."""
    V = np.asarray(V, dtype=float)
    if V.ndim == 1:
        return np.einsum("ijk,j,k->i", T, V, V)
    k = T.shape[0]
    # (k, k*k) @ (k*k, m): one GEMM via the Khatri-Rao product of V with itself
    kr = (V[:, None, :] * V[None, :, :]).reshape(k * k, -1)
    return T.reshape(k, k * k) @ kr


def value(T: np.ndarray, V: np.ndarray) -> np.ndarray | float:
    """T(v, v, v) for a vector v, or for each column of V."""
    V = np.asarray(V, dtype=float)
    if V.ndim == 1:
        return float(V @ apply_vv(T, V))
    return np.sum(V * apply_vv(T, V), axis=0)


def slice_matrix(T: np.ndarray, w: np.ndarray) -> np.ndarray:
    """T(I, I, w), a k x k matrix."""
    return np.tensordot(T, np.asarray(w, dtype=float), axes=([2], [0]))


# -- decompositions ---------------------------------------------------------------
@dataclass
class TensorDecomposition:
    """Result of an orthogonal symmetric decomposition T ~ sum_i lambda_i v_i^{⊗3}.

    Attributes
    ----------
    eigenvalues : ndarray of shape (r,)
        lambda_i = T(v_i, v_i, v_i) >= 0, in the order found (power) or decreasing.
    eigenvectors : ndarray of shape (r, k)
        Unit vectors v_i (rows).
    residual : float
        ||T - sum_i lambda_i v_i^{⊗3}||_F / ||T||_F.
    eigengap : float
        Relative separation of the choices the decomposition made (see the module
        docstring; inf when not computed).
    converged : bool
        Whether every component came from a converged iteration.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residual: float
    eigengap: float = float("inf")
    converged: bool = True

    @property
    def ill_conditioned(self) -> bool:
        """``eigengap < EIGENGAP_TOL`` or not converged: rounding may change the result."""
        return bool(self.eigengap < EIGENGAP_TOL or not self.converged)


def _random_unit(k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    V = rng.standard_normal((k, m))
    return V / np.linalg.norm(V, axis=0, keepdims=True)


def _power_iterate(T: np.ndarray, V: np.ndarray, max_iter: int, tol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Steps v <- T(I, v, v) / ||T(I, v, v)|| on every column until it moves less than tol.

    Returns the iterates and, per column, whether it converged within ``max_iter`` steps
    (a column with T(I, v, v) = 0 stops there, unconverged). Converged columns are frozen.
    """
    V = np.array(V, dtype=float)
    converged = np.zeros(V.shape[1], dtype=bool)
    active = np.arange(V.shape[1])
    for _ in range(max_iter):
        if active.size == 0:
            break
        Va = V[:, active]
        U = apply_vv(T, Va)
        norms = np.sqrt(np.einsum("ij,ij->j", U, U))
        alive = norms > 0.0
        U = np.where(alive, U / np.where(alive, norms, 1.0), Va)
        D = U - Va
        step = np.sqrt(np.einsum("ij,ij->j", D, D))
        V[:, active] = U
        done = alive & (step < tol)
        converged[active[done]] = True
        active = active[alive & ~done]
    return V, converged


def _newton_polish(T: np.ndarray, V: np.ndarray, max_iter: int, tol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method for the critical points of f(v) = T(v, v, v) on the unit sphere.

    The fixed points of the power map are these critical points; near one where the power
    map contracts slowly, Newton still converges quadratically. A step solves
    ``(P H P + v v^T) xi = -P g`` with the Euclidean gradient ``g = 3 T(I, v, v)``, the
    Riemannian Hessian ``P H P``, ``H = 6 T(I, I, v) - 3 f(v) I`` and ``P = I - v v^T``
    (so ``xi`` is tangent), then ``v <- (v + xi) / ||v + xi||``. Returns the iterates and
    whether each moved less than ``tol`` in its last step.
    """
    k = T.shape[0]
    V = np.array(V, dtype=float)
    converged = np.zeros(V.shape[1], dtype=bool)
    active = np.arange(V.shape[1])
    eye = np.eye(k)
    for _ in range(max_iter):
        if active.size == 0:
            break
        Va = V[:, active].T  # (m, k) rows
        g = 3.0 * apply_vv(T, Va.T).T  # (m, k)
        f = np.einsum("mi,mi->m", g, Va) / 3.0
        S = np.einsum("ijk,mk->mij", T, Va)  # T(I, I, v)
        P = eye[None] - Va[:, :, None] * Va[:, None, :]
        H = 6.0 * S - 3.0 * f[:, None, None] * eye[None]
        A = P @ H @ P + Va[:, :, None] * Va[:, None, :]
        rhs = -np.einsum("mij,mj->mi", P, g)
        xi = np.einsum("mij,mj->mi", np.linalg.pinv(A), rhs)
        U = Va + xi
        U /= np.linalg.norm(U, axis=1, keepdims=True)
        ok = np.all(np.isfinite(U), axis=1)
        U[~ok] = Va[~ok]
        step = np.linalg.norm(U - Va, axis=1)
        V[:, active] = U.T
        done = ok & (step < tol)
        converged[active[done]] = True
        active = active[ok & ~done]
    return V, converged


def _is_local_maximum(T: np.ndarray, v: np.ndarray) -> bool:
    """Whether unit v is a strict local maximum of T(v, v, v) on the sphere: its Riemannian
    Hessian ``P (6 T(I, I, v) - 3 f(v) I) P`` is negative definite on the tangent space
    (``- v v^T`` moves the Hessian's zero eigenvalue along v out of the way)."""
    S = slice_matrix(T, v)
    P = np.eye(v.size) - np.outer(v, v)
    H = P @ (6.0 * S - 3.0 * float(v @ S @ v) * np.eye(v.size)) @ P - np.outer(v, v)
    return bool(np.linalg.eigvalsh(0.5 * (H + H.T))[-1] < 0.0)


def _best_fixed_point(T: np.ndarray, V: np.ndarray, converged: np.ndarray
                      ) -> tuple[np.ndarray, float, float, bool]:
    """The converged local maximum of largest T(v, v, v), its value, its margin (to the best
    distinct converged local maximum, or to 0), and whether there was one (otherwise the
    argmax over all columns, margin 0)."""
    vals = np.asarray(value(T, V), dtype=float)
    cand = np.flatnonzero(converged & (vals > 0))
    cand = cand[np.argsort(-vals[cand], kind="stable")]
    best = next((int(j) for j in cand if _is_local_maximum(T, V[:, j])), None)
    if best is None:
        j = int(np.argmax(vals))
        return V[:, j], float(vals[j]), 0.0, False
    rest = cand[vals[cand] <= vals[best]]
    diff = V[:, rest] - V[:, [best]]
    distinct = rest[np.einsum("ij,ij->j", diff, diff) > SAME_POINT_TOL**2]
    runner_up = next((float(vals[j]) for j in distinct if _is_local_maximum(T, V[:, j])), 0.0)
    return V[:, best], float(vals[best]), float(vals[best]) - max(runner_up, 0.0), True


def _residual(T: np.ndarray, lam: np.ndarray, V: np.ndarray) -> float:
    norm = np.linalg.norm(T)
    if norm == 0.0:
        return 0.0
    return float(np.linalg.norm(T - compose(lam, V)) / norm)


def _check_rank(T: np.ndarray, n_components: int | None) -> int:
    k = T.shape[0]
    r = k if n_components is None else int(n_components)
    if not 1 <= r <= k:
        raise ValueError(f"n_components must be an integer in [1, {k}] for a ({k}, {k}, {k}) "
                         f"tensor; got {n_components!r}")
    return r


def robust_power_method(
    T: np.ndarray,
    n_components: int | None = None,
    n_starts: int = 30,
    n_iter: int = 50,
    rng: np.random.Generator | None = None,
    tol: float = POWER_TOL,
    max_iter: int = NEWTON_MAX_ITER,
) -> TensorDecomposition:
    """Robust tensor power method with deflation (Anandkumar et al. 2014, Algorithm 1).

    Every start is iterated to convergence (``n_iter`` power iterations, then Newton
    steps for those still moving) and the largest T(v, v, v) among the converged local
    maxima is kept, so that the result does not hinge on rounding (see the module
    docstring: the margins of these choices give the ``eigengap``).

    Parameters
    ----------
    T : ndarray of shape (k, k, k)
        A (nearly) symmetric tensor close to sum_i lambda_i v_i^{⊗3}, v_i orthonormal.
    n_components : int, optional
        Number of components r (default k).
    n_starts : int
        L, random starts on the unit sphere per component (k deterministic starts, the
        eigenvectors of a slice, come on top).
    n_iter : int
        N, power iterations per start (fewer when it converges first).
    rng : numpy Generator, optional
        Source of the random starts (a fresh default_rng(0) when omitted).
    tol : float
        A start has converged once a step moves it by less than ``tol``.
    max_iter : int
        Most Newton steps for a start that has not converged after its ``n_iter`` power
        iterations.

    Returns
    -------
    TensorDecomposition
        eigenvalues >= 0 in the order found (the largest T(v, v, v) first), unit
        eigenvectors (rows), the eigengap and whether every step converged.
    """
    T = check_symmetric_tensor(T)
    r = _check_rank(T, n_components)
    for name, val in (("n_starts", n_starts), ("n_iter", n_iter), ("max_iter", max_iter)):
        if isinstance(val, bool) or int(val) < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {val!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    k = T.shape[0]
    work = symmetrize(T)
    w = np.full(k, 1.0 / np.sqrt(k))
    lams = np.empty(r)
    vecs = np.empty((r, k))
    margins = np.empty(r)
    all_converged = True
    for i in range(r):
        starts = np.hstack([_random_unit(k, int(n_starts), rng),
                            np.linalg.eigh(slice_matrix(work, w))[1]])
        V, converged = _power_iterate(work, starts, int(n_iter), tol)
        if not np.all(converged):  # slow contraction: Newton from the power iterates
            V = np.where(value(work, V) < 0, -V, V)  # odd order: climb f, not -f
            rest = np.flatnonzero(~converged)
            V[:, rest], converged[rest] = _newton_polish(work, V[:, rest], int(max_iter), tol)
        v, lam, margins[i], ok = _best_fixed_point(work, V, converged)
        all_converged &= ok
        v = v / np.linalg.norm(v)
        lam = value(work, v)
        if lam < 0:  # odd order: (lambda, v) ~ (-lambda, -v)
            lam, v = -lam, -v
        lams[i], vecs[i] = lam, v
        work = work - lam * rank_one(v)
    scale = lams[0]
    gap = float(np.min(margins) / scale) if scale > 0 else 0.0
    return TensorDecomposition(lams, vecs, _residual(T, lams, vecs), gap, bool(all_converged))


def jennrich(
    T: np.ndarray,
    n_components: int | None = None,
    n_starts: int = 10,
    rng: np.random.Generator | None = None,
    orthogonal: bool = True,
    n_sweeps: int = 50,
) -> TensorDecomposition:
    """Simultaneous diagonalisation (Jennrich's algorithm) of a symmetric tensor.

    Parameters
    ----------
    T : ndarray of shape (k, k, k)
    n_components : int, optional
        Number of components r (default k); the r largest |T(v, v, v)| are kept.
    n_starts : int
        Random slice directions w tried; the one whose slice has the best-separated
        eigenvalues (largest minimum gap relative to the spread) is used.
    rng : numpy Generator, optional
    orthogonal : bool
        True (whitened input): eigenvectors of the symmetric slice T(I, I, w).
        False: eigenvectors of T(I, I, w1) T(I, I, w2)^+ (non-orthogonal components,
        unit-normalised).
    n_sweeps : int
        Orthogonal case: Jacobi sweeps of :func:`joint_diagonalize` over all k slices
        T(I, I, e_j), started from the best single slice's eigenvectors (0: no polish).

    Returns
    -------
    TensorDecomposition
        eigenvalues = T(v_i, v_i, v_i) >= 0 in decreasing order; its eigengap is the
        smallest difference between consecutive values (the r kept, then the next one
        when r < k, else 0) over the largest: the order of the components flips below it.
    """
    T = check_symmetric_tensor(T)
    r = _check_rank(T, n_components)
    if isinstance(n_starts, bool) or int(n_starts) < 1:
        raise ValueError(f"n_starts must be an integer >= 1; got {n_starts!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    k = T.shape[0]
    S = symmetrize(T)
    best_gap, best_V = -np.inf, None
    for _ in range(int(n_starts)):
        w = rng.standard_normal(k)
        w /= np.linalg.norm(w)
        if orthogonal:
            evals, evecs = np.linalg.eigh(slice_matrix(S, w))
        else:
            w2 = rng.standard_normal(k)
            M1, M2 = slice_matrix(S, w), slice_matrix(S, w2)
            evals_c, evecs_c = np.linalg.eig(M1 @ np.linalg.pinv(M2))
            evals, evecs = evals_c.real, evecs_c.real
            evecs = evecs / np.maximum(np.linalg.norm(evecs, axis=0, keepdims=True), 1e-300)
        srt = np.sort(evals)
        spread = max(srt[-1] - srt[0], 1e-300)
        gap = float(np.min(np.diff(srt)) / spread) if k > 1 else 1.0
        if gap > best_gap:
            best_gap, best_V = gap, evecs
    assert best_V is not None
    if orthogonal and n_sweeps > 0:
        # all slices T(I, I, e_j) = sum_i lambda_i v_ij v_i v_i^T share the eigenvectors v_i:
        # polish the best single-slice basis by jointly diagonalising every slice
        slices = np.stack([slice_matrix(S, e) for e in np.eye(k)])
        best_V = joint_diagonalize(slices, best_V, n_sweeps=n_sweeps)
    V = best_V.T  # rows
    lam = np.asarray(value(S, V.T), dtype=float)
    flip = lam < 0  # odd order: (lambda, v) ~ (-lambda, -v)
    lam, V = np.where(flip, -lam, lam), np.where(flip[:, None], -V, V)
    order = np.argsort(-lam, kind="stable")
    ladder = np.append(lam[order][: r + 1], 0.0)[: r + 1]  # the r kept, then the next or 0
    scale = lam[order][0]
    gap = float(np.min(-np.diff(ladder)) / scale) if scale > 0 else 0.0
    lam, V = lam[order][:r], V[order][:r]
    return TensorDecomposition(lam, V, _residual(T, lam, V), gap)


def joint_diagonalize(matrices: np.ndarray, V0: np.ndarray | None = None, n_sweeps: int = 50,
                      tol: float = 1e-14) -> np.ndarray:
    """Orthogonal V that jointly diagonalises symmetric matrices (Jacobi rotations).

    Cardoso and Souloumiac's (1996) Jacobi method: sweeps of Givens rotations, each
    minimising the summed squared off-diagonal entry (p, q) of V^T M_j V over all j.

    Parameters
    ----------
    matrices : ndarray of shape (m, k, k)
        Symmetric matrices M_j.
    V0 : ndarray of shape (k, k), optional
        Starting orthogonal matrix (default the identity).
    n_sweeps : int
        Maximum number of sweeps over all pairs (p, q).
    tol : float
        Stop once every rotation in a sweep has |sin| below ``tol``.

    Returns
    -------
    ndarray of shape (k, k)
        Orthogonal V whose columns are the common (approximate) eigenvectors.
    """
    M = np.asarray(matrices, dtype=float)
    k = M.shape[1]
    V = np.eye(k) if V0 is None else np.array(V0, dtype=float)
    M = np.einsum("ap,mab,bq->mpq", V, M, V)
    for _ in range(int(n_sweeps)):
        rotated = False
        for p in range(k - 1):
            for q in range(p + 1, k):
                h1 = M[:, p, p] - M[:, q, q]
                h2 = M[:, p, q] + M[:, q, p]
                g11, g22, g12 = h1 @ h1, h2 @ h2, h1 @ h2
                ton, toff = g11 - g22, 2.0 * g12
                theta = 0.5 * np.arctan2(toff, ton + np.hypot(ton, toff))
                c, s = np.cos(theta), np.sin(theta)
                if abs(s) <= tol:
                    continue
                rotated = True
                G = np.array([[c, -s], [s, c]])
                idx = [p, q]
                M[:, :, idx] = M[:, :, idx] @ G
                M[:, idx, :] = np.einsum("ba,mbj->maj", G, M[:, idx, :])
                V[:, idx] = V[:, idx] @ G
        if not rotated:
            break
    return V


def decompose(T: np.ndarray, method: str = "power", n_components: int | None = None,
              rng: np.random.Generator | None = None, n_starts: int = 30, n_iter: int = 50
              ) -> TensorDecomposition:
    """Decompose with ``method`` in {"power", "jennrich"} (see the module docstring).

    The result's ``eigengap`` and ``ill_conditioned`` say whether rounding-level changes
    of ``T`` could change it (:data:`EIGENGAP_TOL`).
    """
    if method == "power":
        return robust_power_method(T, n_components, n_starts=n_starts, n_iter=n_iter, rng=rng)
    if method == "jennrich":
        return jennrich(T, n_components, n_starts=n_starts, rng=rng)
    raise ValueError(f"unknown decomposition {method!r}; valid choices are "
                     f"{', '.join(map(repr, DECOMPOSITIONS))}")


def recover_experts(
    T3w: np.ndarray,
    t2_whitening: Whitening,
    c3: float,
    method: str = "power",
    rng: np.random.Generator | None = None,
    n_starts: int = 30,
    n_iter: int = 50,
) -> tuple[np.ndarray, TensorDecomposition]:
    """Experts from the whitened third moment: decompose, fix the signs, un-whiten.

    Parameters
    ----------
    T3w : ndarray of shape (k, k, k)
        T3(W, W, W) with W = ``t2_whitening.W`` = U |D|^{-1/2}.
    t2_whitening : Whitening
        The whitening of T2 (:func:`moebench.tensor.whitening.whiten`).
    c3 : float
        The label-transform constant c3; its sign fixes the experts' signs.
    method, rng, n_starts, n_iter
        Passed to :func:`moebench.tensor.decomposition.decompose`.

    Returns
    -------
    experts : ndarray of shape (k, d)
        Unit-norm rows a_i ∝ U |D|^{1/2} sign(c3 lambda_i) v_i.
    decomposition : TensorDecomposition
    """
    k = T3w.shape[0]
    dec = decompose(T3w, method, n_components=k, rng=rng, n_starts=n_starts, n_iter=n_iter)
    signs = np.where(np.sign(c3) * np.sign(dec.eigenvalues) < 0, -1.0, 1.0)
    return t2_whitening.unwhiten(signs[:, None] * dec.eigenvectors), dec
