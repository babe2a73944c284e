"""Maximum likelihood for the mixture of experts by gradient descent (torch autograd).

The loss is the negative mean conditional log-likelihood

    -mean_n logsumexp_i [ log softmax(W x_n)_i + log N(y_n; g(a_i . x_n), sigma^2) ]

over the experts A (k, d), the gating W (k - 1 free rows, the last fixed at 0)
and log sigma (learned when ``sigma`` is None; one per expert with
``noise="per_expert"``, sigma_i in the i-th normal density). ``intercepts=True`` also
fits expert intercepts and gating biases, as joint_em does: the fit runs on [X, 1]
(:mod:`moebench.intercepts`), so the intercept sits inside g. Full-batch gradient descent,
minibatch SGD and Adam are available, with a learning-rate schedule, an epoch
budget, float32 or float64, CPU or CUDA, and ``n_init`` restarts.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from moebench.activations import Activation
from moebench.backend import read_only_arrays
from moebench.base import NeedsTruthWhen
from moebench.chunked import count_pass, is_out_of_core, row_blocks
from moebench.constraints import Interval, Options
from moebench.em import NOISE_MODELS, record_sigma
from moebench.history import History, StartFit
from moebench.intercepts import fitted_stationarity, split_biases, with_ones
from moebench.registry import register
from moebench.restarts import RestartedEstimator
from moebench.starts import (
    data_scale_start,
    near_truth_fit_start,
    random_start,
    search_in_subspace,
)
from moebench.stopping import StoppingCriterion
from moebench.validation import rms

from ._spectral import spectral_subspace

OPTIMIZERS = ("gd", "sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "cuda")
INITS = ("random", "spectral", "data_scale", "near_truth")
LOG_2PI = math.log(2.0 * math.pi)
#: batch_size="auto": n / 32 clipped to [64, 4096]
AUTO_STEPS_PER_EPOCH, AUTO_BATCH_MIN, AUTO_BATCH_MAX = 32, 64, 4096


def auto_batch_size(n: int) -> int:
    """The minibatch rows of ``batch_size="auto"`` for n samples."""
    return min(max(n // AUTO_STEPS_PER_EPOCH, AUTO_BATCH_MIN), AUTO_BATCH_MAX)


def _schedule_factor(schedule: str, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` in [0, 1] of the epoch budget."""
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if schedule == "step":  # x0.1 at 50% and again at 75% of the budget
        return 1.0 if progress < 0.5 else (0.1 if progress < 0.75 else 0.01)
    return 1.0


def _snapshot(A, Wf, log_s) -> tuple[np.ndarray, np.ndarray, float | np.ndarray]:
    """numpy copies of (experts, gating with its zero last row, sigma: a float, or a (k,)
    array for per-expert noise)."""
    W = Wf.detach().cpu().numpy().astype(float)
    W = np.vstack([W, np.zeros((1, W.shape[1]))])
    if log_s.dim():
        sigma: float | np.ndarray = np.exp(log_s.detach().cpu().numpy().astype(float))
    else:
        sigma = float(math.exp(float(log_s.detach())))
    return A.detach().cpu().numpy().astype(float), W, sigma


def torch_activation(activation: Activation):
    """A torch function for g: ``activation.torch_func``, else a numpy-backed autograd op."""
    if activation.torch_func is not None:
        return activation.torch_func
    import torch

    class _NumpyActivation(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):  # type: ignore[override]
            ctx.save_for_backward(t)
            out = activation.func(t.detach().cpu().numpy())
            return torch.as_tensor(np.asarray(out), dtype=t.dtype, device=t.device)

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            (t,) = ctx.saved_tensors
            der = activation.derivative(t.detach().cpu().numpy())
            return grad * torch.as_tensor(np.asarray(der), dtype=t.dtype, device=t.device)

    return _NumpyActivation.apply


@register("sgd")
class SGD(RestartedEstimator):
    """Maximum-likelihood MoE by gradient descent with torch autograd.

    Parameters
    ----------
    n_experts, activation, sigma, random_state
        See :class:`moebench.MoEEstimator`; a given ``sigma`` stays fixed,
        otherwise log sigma is learned.
    optimizer : {"gd", "sgd", "adam"}
        ``"gd"``: full-batch gradient descent (``batch_size`` ignored);
        ``"sgd"``: minibatch SGD (with ``momentum``); ``"adam"``: Adam on
        minibatches of ``batch_size`` (None: full batch).
    lr : float
        Learning rate (peak, before the schedule).
    lr_schedule : {"constant", "cosine", "step"}
        Multiplier over the epoch budget: 1; cosine decay to 0; x0.1 at 50% and
        again at 75%. Applied per optimiser step.
    batch_size : int, "auto" or None
        Minibatch size for "sgd" and "adam"; None uses the full batch; "auto" is
        n / 32 clipped to [64, 4096], so that an epoch is about 32 steps whatever n.
    max_epochs : int
        Epoch budget of each restart (one epoch = one pass over the data; one step for
        "gd"); sgd's own option, the horizon of the learning-rate schedule (the sweep's
        iteration budget does not set it: ``iteration_unit`` is None).
    tol : float
        Stop a restart when the full-data mean log-likelihood changes by less
        than ``tol * max(1, |ll|)`` over an epoch (0 disables).
    momentum : float
        Momentum of "gd" and "sgd".
    grad_tol : float
        Full batch only (``optimizer="gd"`` or ``batch_size=None``): stop a restart with
        stop reason "grad_tol" when the norm of the gradient of the mean log-likelihood,
        in the scaled coordinates of :mod:`moebench.stationarity` (experts times
        rms(X) / sigma, gating times rms(X), log sigma), is at most ``grad_tol``
        (0 disables; then the epoch budget or ``tol`` ends the fit).
    init : {"random", "spectral", "data_scale", "near_truth"}
        Random unit experts and N(0, 0.01^2) gating, the spectral start of joint_em
        (see ``baselines/_spectral.py``), experts and gating drawn at the scale of the
        data (:func:`moebench.starts.data_scale_start`), or joint_em's ``"near_truth"``
        (every fitted atom a noisy copy of a true atom,
        :func:`moebench.starts.near_truth_fit_start`; it needs ``fit(X, y, truth=...)``).
        sigma starts at std(y) (every expert's), except near the truth.
    n_init : int
        Restarts; the best final full-data likelihood is kept.
    dtype : {"float64", "float32"}
    device : {"auto", "cpu", "cuda"}
        "auto" uses CUDA when torch sees a GPU.
    max_time : float or None
        Wall-clock budget in seconds of the whole fit (all restarts).
    intercepts : bool
        Also fit expert intercepts and gating biases (``expert_bias_``, ``gating_bias_``;
        the last gating bias 0), as joint_em: the fit runs on X with a column of ones
        appended (X in memory).
    noise : {"shared", "per_expert"}
        One learnt log sigma, or one per expert (``sigma_`` a (k,) array). A given
        ``sigma`` stays fixed either way.

    Notes
    -----
    Stopping is the fit's :class:`~moebench.stopping.StoppingCriterion`; when several end
    the same epoch the precedence is fixed: ``tol`` ("converged"), then the epoch budget
    ("max_epochs"), then the time budget ("max_time"). ``grad_tol`` ends a full-batch
    restart before its step ("grad_tol").

    ``history_`` has one record per epoch with the exact mean log-likelihood on
    the full training data at the parameters after that epoch (iteration 0: the
    start). Full batch: taken from the forward pass of the next step (free);
    minibatches: one extra no-grad forward pass per epoch.
    """

    description = "maximum likelihood by torch autograd: full-batch GD, minibatch SGD or Adam"
    assumes = ("none beyond the model (local search: a good start)",)
    #: only the time budget: an epoch is not an EM iteration, so the sweep's max_iter does
    #: not set max_epochs (the shipped configs keep sgd at its own 40 epochs)
    budget_parameters: ClassVar[dict[str, str]] = {"max_time": "max_time"}
    #: time only: the sweep's iteration budget does not apply (``max_epochs``, per restart,
    #: is sgd's own option and the horizon of its learning-rate schedule)
    iteration_unit: ClassVar[str | None] = None
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "optimizer": [Options(OPTIMIZERS)],
        "lr": [Interval(float, 0, None, closed="neither")],
        "lr_schedule": [Options(SCHEDULES)],
        "batch_size": [Interval(int, 1, None), Options(("auto",)), None],
        "max_epochs": [Interval(int, 1, None)],
        "tol": [Interval(float, 0, None)],
        "momentum": [Interval(float, 0, None)],
        "grad_tol": [Interval(float, 0, None)],
        "init": [Options(INITS)],
        "dtype": [Options(DTYPES)],
        "device": [Options(DEVICES)],
        "intercepts": ["boolean"],
        "noise": [Options(NOISE_MODELS)],
    }
    needs_truth = NeedsTruthWhen("init", "near_truth")  # type: ignore[assignment]

    def __init__(
        self,
        n_experts: int = 2,
        activation: str | Activation = "linear",
        sigma: float | None = None,
        random_state: int | None = None,
        optimizer: str = "adam",
        lr: float = 0.05,
        lr_schedule: str = "cosine",
        batch_size: int | str | None = "auto",
        max_epochs: int = 40,
        tol: float = 0.0,
        momentum: float = 0.9,
        grad_tol: float = 0.0,
        init: str = "random",
        n_init: int = 1,
        dtype: str = "float64",
        device: str = "auto",
        max_time: float | None = None,
        intercepts: bool = False,
        noise: str = "shared",
    ) -> None:
        super().__init__(n_experts, activation, sigma, random_state)
        self.optimizer = optimizer
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.momentum = momentum
        self.grad_tol = grad_tol
        self.init = init
        self.n_init = n_init
        self.dtype = dtype
        self.device = device
        self.max_time = max_time
        self.intercepts = intercepts
        self.noise = noise

    def fits_plain_model(self) -> bool:
        """Intercepts and per-expert noise are beyond the plain model."""
        return not self.intercepts and self.noise == "shared"

    @classmethod
    def check_out_of_core(cls, activation: Activation, params: dict[str, Any]) -> None:
        """``intercepts`` fits on [X, 1], a copy in memory: refused on X on disk."""
        if params.get("intercepts"):
            raise ValueError("sgd: intercepts=True needs X in memory; got X on disk (a "
                             "numpy.memmap): load it (np.asarray(X)), or intercepts=False "
                             "(noise='per_expert' runs on disk)")

    def _fit(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
             sigma: float | None, history: History) -> None:
        self._truth = history.truth
        if self.intercepts:  # biases: the fit on [X, 1]; the last column holds them
            X = with_ones(X)
        super()._fit(X, y, k, activation, sigma, history)
        if self.intercepts:
            split_biases(self)

    def _stationarity(self, X: np.ndarray, y: np.ndarray,
                      activation: Activation) -> tuple[float, float]:
        """The base check on every fitted parameter
        (:func:`moebench.intercepts.fitted_stationarity`)."""
        return fitted_stationarity(self, X, y, activation)

    def _stop_tol(self) -> float | None:
        """The per-epoch tolerance ``tol`` (0 disables it)."""
        return float(self.tol) if self.tol > 0 else None

    def _torch_device(self):
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch sees no CUDA device; valid here: auto, cpu")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _restart_context(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, rng: np.random.Generator) -> SimpleNamespace:
        """Torch data, batching and the loss, shared by every start; one minibatch generator
        (seeded from ``rng`` before any start draws) runs on across starts."""
        import torch

        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(rng.integers(2**62)))
        device = self._torch_device()
        tdtype = torch.float64 if self.dtype == "float64" else torch.float32
        g = torch_activation(activation)
        n, d = X.shape
        batch = self.batch_size
        if batch == "auto":
            batch = auto_batch_size(n)
        full = self.optimizer == "gd" or batch is None or batch >= n
        batch = n if full else int(batch)
        if self.grad_tol > 0 and not full:
            raise ValueError(
                f"grad_tol={self.grad_tol:g} needs full-batch gradients; got optimizer="
                f"{self.optimizer!r} with batch_size={self.batch_size!r} (valid: optimizer='gd', "
                "or batch_size=None, or grad_tol=0)")

        def nll(A, Wf, log_s, xb, yb):
            W = torch.cat([Wf, torch.zeros((1, d), dtype=tdtype, device=device)])
            log_gate = torch.log_softmax(xb @ W.T, dim=1)
            resid = (yb[:, None] - g(xb @ A.T)) * torch.exp(-log_s)
            log_norm = -0.5 * resid * resid - log_s - 0.5 * LOG_2PI
            return -torch.logsumexp(log_gate + log_norm, dim=1).mean()

        if is_out_of_core(X):
            # X on disk (moebench.chunked): the tensors share the memmap's pages (no copy);
            # minibatches are gathered and cast per step, the full-data log-likelihood is
            # summed over row blocks
            with read_only_arrays():  # read-only memmap: torch never writes to it
                Xt, yt = torch.from_numpy(X), torch.from_numpy(np.asarray(y))
            x_scale = rms(X) or 1.0
        else:
            with read_only_arrays():  # X or y may be read-only: torch only reads them
                Xt = torch.as_tensor(X, dtype=tdtype, device=device)
                yt = torch.as_tensor(y, dtype=tdtype, device=device)
            x_scale = float(np.sqrt(np.mean(np.square(X)))) or 1.0

        def rows(a, idx):
            """Rows ``idx`` of a data tensor, in the fit's dtype on its device."""
            return a[idx if isinstance(idx, slice) else idx.to(a.device)].to(dtype=tdtype,
                                                                            device=device)

        def full_ll(A, Wf, log_s) -> float:
            """Mean log-likelihood on all rows (no gradient), summed over row blocks (each
            call one pass over X, counted by :func:`moebench.chunked.row_blocks`)."""
            with torch.no_grad():
                return -sum(float(nll(A, Wf, log_s, rows(Xt, sl), rows(yt, sl)))
                            * ((sl.stop - sl.start) / n)
                            for sl in row_blocks(X, width=max(d, 16)))

        return SimpleNamespace(
            gen=gen, device=device, tdtype=tdtype, nll=nll, full=full, batch=batch,
            x_scale=x_scale, Xt=Xt, yt=yt, rows=rows, full_ll=full_ll,
            total_steps=self.max_epochs * (1 if full else math.ceil(n / batch)))

    def _fit_single(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                    sigma: float | None, history: History, rng: np.random.Generator,
                    stop: StoppingCriterion, context: SimpleNamespace) -> StartFit:
        import torch

        c = context
        nll, Xt, yt, full, batch, tdtype, device = (c.nll, c.Xt, c.yt, c.full, c.batch,
                                                    c.tdtype, c.device)
        n, d = X.shape
        learn_sigma = sigma is None
        stop_reason = "diverged"
        s0: Any = float(np.std(y)) + 1e-12 if learn_sigma else float(sigma)
        if self.init == "spectral":
            A0 = search_in_subspace(X, y, spectral_subspace(X, y, k, activation), k,
                                    activation, rng)
            W0 = np.zeros((k - 1, d))
        elif self.init == "near_truth":
            A0, W0, s0 = near_truth_fit_start(
                rng, self._truth, k, n, self._fit_scale, intercepts=self.intercepts,
                per_expert=self.noise == "per_expert", sigma=sigma, fit="sgd")
            W0 = W0[:-1]
        else:
            A0, W0 = (data_scale_start(rng, X, y, k) if self.init == "data_scale"
                      else random_start(rng, k, d))
            W0 = W0[:-1]
        if learn_sigma and self.noise == "per_expert":  # one log sigma per expert
            s0 = np.broadcast_to(np.asarray(s0, dtype=float), (k,))
        A = torch.tensor(A0, dtype=tdtype, device=device, requires_grad=True)
        Wf = torch.tensor(W0, dtype=tdtype, device=device, requires_grad=True)
        log_s = torch.tensor(np.log(s0) if np.ndim(s0) else math.log(s0), dtype=tdtype,
                             device=device, requires_grad=learn_sigma)
        params = [A, Wf] + ([log_s] if learn_sigma else [])
        if self.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=self.lr)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)

        step = 0
        prev_ll = -math.inf
        final_ll = -math.inf
        epoch = 0
        diverged = False
        for epoch in range(self.max_epochs + 1):
            last = epoch == self.max_epochs
            if full:
                count_pass(X)  # the full-data loss (and gradient) reads every row once
                if last:
                    with torch.no_grad():
                        loss_val = float(nll(A, Wf, log_s, Xt, yt))
                    ll = -loss_val
                else:
                    loss = nll(A, Wf, log_s, Xt, yt)
                    ll = -float(loss.detach())
            else:
                ll = c.full_ll(A, Wf, log_s)
            if not math.isfinite(ll):
                diverged, stop_reason = True, "diverged"
                break
            An, Wn, sn = _snapshot(A, Wf, log_s)
            history.record("sgd", epoch, ll, experts=An, gating=Wn, sigma=record_sigma(sn))
            final_ll = ll
            # the fit's criterion, by its precedence: tol ("converged"), then the epoch
            # budget ("max_epochs", this restart's own), then the time budget ("max_time")
            reason = stop.check(ll, prev_ll, "max_epochs" if last else None)
            if reason is not None:
                stop_reason = reason
                break
            prev_ll = ll
            if full:
                for group in opt.param_groups:
                    group["lr"] = self.lr * _schedule_factor(self.lr_schedule,
                                                             step / c.total_steps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_tol > 0 and self._scaled_grad_norm(A, Wf, log_s, learn_sigma,
                                                                c.x_scale) <= self.grad_tol:
                    stop_reason = "grad_tol"
                    break
                opt.step()
                step += 1
                continue
            perm = torch.randperm(n, generator=c.gen).to(device)
            count_pass(X)  # the epoch's minibatches read every row once
            for start in range(0, n, batch):
                idx = perm[start:start + batch]
                for group in opt.param_groups:
                    group["lr"] = self.lr * _schedule_factor(self.lr_schedule,
                                                             step / c.total_steps)
                opt.zero_grad(set_to_none=True)
                nll(A, Wf, log_s, c.rows(Xt, idx), c.rows(yt, idx)).backward()
                opt.step()
                step += 1
        An, Wn, sn = _snapshot(A, Wf, log_s)
        if diverged or not all(np.all(np.isfinite(v)) for v in (An, Wn, sn)):
            final_ll = -math.inf
        return StartFit(An, Wn, sn, epoch, final_ll, stop_reason in ("converged", "grad_tol"),
                        stop_reason)

    @staticmethod
    def _scaled_grad_norm(A, Wf, log_s, learn_sigma: bool, x_scale: float) -> float:
        """Norm of the loss gradient in the scaled coordinates of :mod:`moebench.stationarity`
        (the same units as ``grad_norm_``)."""
        if log_s.dim():  # per-expert noise: expert i's block scaled by sigma_i / s_x
            scale = (log_s.detach().exp() / x_scale)[:, None]
        else:
            scale = math.exp(float(log_s.detach())) / x_scale
        total = (float((A.grad * scale).square().sum())
                 + float((Wf.grad / x_scale).square().sum()))
        if learn_sigma and log_s.grad is not None:
            total += float(log_s.grad.square().sum())
        return math.sqrt(total)

    def _finish_restarts(self, X: np.ndarray, y: np.ndarray, k: int, activation: Activation,
                         sigma: float | None, history: History, best: StartFit,
                         n_iter: int) -> StartFit:
        if not math.isfinite(best.log_likelihood):
            raise FloatingPointError(
                f"sgd diverged in every restart (optimizer={self.optimizer!r}, lr={self.lr}); "
                "lower lr"
            )
        return best
