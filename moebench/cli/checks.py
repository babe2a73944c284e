"""Checks of command-line values, shared by the verbs of the ``moebench`` command.

Numeric options are checked while parsing, before anything runs, by argparse types
derived from declared constraints (:func:`moebench.constraints.argparse_type`; an option
that mirrors a config key takes the key's: :mod:`moebench.sweep.config_keys`), with
argparse's one-line ``argument --X: ...`` message; output paths are checked here, before
anything is written. Every message names the option, the bad value and what would be
valid.
"""

from __future__ import annotations

import os
from pathlib import Path


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
