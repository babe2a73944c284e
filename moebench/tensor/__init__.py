"""The paper's pipeline (Makkuva et al. 2019): moments, whitening, decomposition, EM.

Modules, in the order the estimator uses them (each imports only modules listed before it;
the numpy/torch array switch of the moment kernels is :mod:`moebench.backend`, shared
with the EM steps):

* :mod:`~moebench.tensor.label_transforms` -- the label transforms S2, S3 and c2, c3;
* :mod:`~moebench.tensor.moments` -- streaming T2, its implicit operator, T3(W, W, W);
* :mod:`~moebench.tensor.whitening` -- :class:`~moebench.tensor.whitening.Whitening`
  (W, un-whitening, eigenvalues of c2's sign, eigen-gap, noise level, rank check) from T2;
* :mod:`~moebench.tensor.decomposition` -- symmetric-tensor algebra, power method, Jennrich
  (with the eigengap that says when rounding could change the result);
* :mod:`~moebench.tensor.estimator` -- :class:`~moebench.tensor.estimator.TensorEM`,
  registered as ``"tensor_em"``.

Nothing is imported here, so ``moebench.tensor.moments`` loads without the estimator.
"""
