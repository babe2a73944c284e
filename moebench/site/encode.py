"""Compact JSON for the site's figures: numbers to 4 significant digits, arrays as arrays.

Figure data is shipped as plain nested lists (no validated figure objects): a few
thousand floats per page, written by :func:`dumps` in one pass. ``NaN`` and infinities
become ``null`` (a gap in a plotly line).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: significant digits of the numbers in the figures' data
DIGITS = 4


def round_significant(values: np.ndarray, digits: int = DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, each the double nearest to its
    decimal (so ``repr`` writes it short: 0.1235, 1235.0, 1.235e-05)."""
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.floor(np.log10(np.abs(v)))
        k = np.clip(np.where(np.isfinite(mag), digits - 1 - mag, 0), -300, 300)
        up = np.round(v * 10.0 ** np.maximum(k, 0)) / 10.0 ** np.maximum(k, 0)
        down = np.round(v / 10.0 ** np.maximum(-k, 0)) * 10.0 ** np.maximum(-k, 0)
    return np.where(k >= 0, up, down)


#: a whole number's ".0" (dropped: "2" for "2.0")
_POINT_ZERO = re.compile(r"\.0(?=[,\]])")


def _array(values: np.ndarray) -> str:
    v = round_significant(np.asarray(values, dtype=float).ravel())
    if np.isfinite(v).all():
        text = "[" + ",".join(map(repr, v.tolist())) + "]"
    else:
        text = "[" + ",".join(repr(x) if math.isfinite(x) else "null" for x in v.tolist()) + "]"
    return _POINT_ZERO.sub("", text)


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "null"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.{DIGITS}g}"


def dumps(obj: Any) -> str:
    """``obj`` as compact JSON: numpy arrays and lists of floats at :data:`DIGITS`
    significant digits, non-finite numbers as ``null``; safe inside ``<script>``
    (``</`` escaped)."""
    return _dumps(obj).replace("</", "<\\/")


@functools.lru_cache(maxsize=1024)
def _key(key: Any) -> str:
    return json.dumps(str(key), ensure_ascii=False)


def _dumps(obj: Any) -> str:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fiu" and obj.ndim == 1:
            return _array(obj)
        return _dumps(obj.tolist())
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_key(k)}:{_dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (bool, np.bool_)):
        return "true" if obj else "false"
    if isinstance(obj, (int, np.integer)):
        return str(int(obj))
    if isinstance(obj, (float, np.floating)):
        return _number(float(obj))
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is None:
        return "null"
    if isinstance(obj, Sequence):
        if obj and all(isinstance(v, (float, np.floating)) for v in obj):
            return _array(np.asarray(obj, dtype=float))
        return "[" + ",".join(_dumps(v) for v in obj) + "]"
    raise TypeError(f"cannot write {type(obj).__name__} as figure data")


@functools.lru_cache(maxsize=4096)
def display_rows(n: int, keep: int) -> np.ndarray:
    """Positions of the ``n`` points of a sorted curve kept for display: about ``keep`` of
    them, dense at the start and geometric after (the first and the last always kept).

    Parameters
    ----------
    n : int
        Points of the curve.
    keep : int
        About how many to keep (at least 2).

    Returns
    -------
    ndarray of int64, sorted
    """
    if n <= keep:
        rows = np.arange(n, dtype=np.int64)
    else:
        pos = np.rint(np.geomspace(1, n, keep)).astype(np.int64) - 1
        rows = np.unique(np.concatenate([[0, n - 1], pos]))
    rows.flags.writeable = False  # shared between calls (cached)
    return rows
