"""Checks of command-line values, shared by the verbs of the ``moebench`` command.

Numeric options are checked by argparse ``type=`` callables (so a bad value is
refused while parsing, before anything runs, with argparse's one-line
``argument --X: ...`` message); output paths are checked before anything is
written. Every message names the option, the bad value and what would be valid.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def finite_float(minimum: float | None = None, strict: bool = False,
                 maximum: float | None = None) -> Callable[[str], float]:
    """argparse type: a finite float, optionally in ``[minimum, maximum]``.

    ``strict`` makes the lower bound exclusive (``> minimum``).
    """
    op = ">" if strict else ">="
    if minimum is not None and maximum is not None:
        valid = f"a finite number in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        valid = f"a finite number {op} {minimum:g}"
    else:
        valid = "a finite number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {valid}; got {text!r}") from None
        bad = not math.isfinite(value)
        if minimum is not None:
            bad = bad or value < minimum or (strict and value == minimum)
        if maximum is not None:
            bad = bad or value > maximum
        if bad:
            raise argparse.ArgumentTypeError(f"must be {valid}; got {text!r}")
        return value

    parse.__name__ = valid
    return parse


def _check_creatable(path: Path, start: Path, option: str) -> None:
    """Refuse ``path`` when the first existing folder at or above ``start`` is a file."""
    blocker = next((c for c in (start, *start.parents) if os.path.lexists(c)), Path("."))
    if blocker != path and not blocker.is_dir():
        raise ValueError(f"{option} {str(path)!r} cannot be created: {str(blocker)!r} is a "
                         f"file, not a directory")


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` can be (or already is) a directory: not an existing file, nor under one.

    Raises
    ------
    ValueError
        Naming ``option``, the path and what it is instead.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is an existing file, not a directory; give a "
                         f"directory path (new or existing)")
    _check_creatable(path, path, option)
    return path


def check_out_file(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` can be written as a file: not an existing directory, no file among its parents.

    Raises a ValueError as :func:`check_out_dir` does.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is an existing directory; give a file path")
    _check_creatable(path, path.parent, option)
    return path
