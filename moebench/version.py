"""The package's ``__version__`` and the version of its numbers, ``NUMERICS_VERSION``.

Every run record stores ``NUMERICS_VERSION`` (summary column ``code_version``, see
:func:`moebench.sweep.store.provenance`), so a results folder knows which code made
each of its runs, ``moebench run`` says when stored runs were made by older code
(``--rerun-stale`` re-runs them), and ``moebench verify`` refuses to compare runs made by
other code.

The rule: **a change that moves any stored number bumps** ``NUMERICS_VERSION`` by one,
in the same commit: a different fit (a new default, another stopping rule, a changed
start, an algorithm fix), a different metric or diagnostic value, or a different data
set for the same cell. Changes that leave every stored number of every existing config
bit-identical (speed-ups with the same arithmetic, new columns, new options whose
default keeps the old behaviour, reports, figures, docs) do not bump it. Records
written before the column existed count as version 1
(:func:`moebench.sweep.store.code_version_of`).

History: 1, every record before issue 26; 2, issue 26 (one EM for refine and joint EM,
the framework's stopping object, the bounded gating EM, sign-correct whitening, the
rounding-proof decomposition, the certified stuck test, fitted parameters in every
record).
"""

from __future__ import annotations

#: the package version (``moebench.__version__``)
__version__ = "0.1.0"

#: the version of the numbers this code computes (bump it when any stored number moves)
NUMERICS_VERSION = 2

#: the version of records that carry no ``code_version`` column (made before it existed)
UNVERSIONED = 1
