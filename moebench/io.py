"""Atomic file writes shared by the command line, the generator and the results store,
the one-line description of an expected (e.g. file-system) error, and ``tomllib`` (the
standard library's TOML reader, or its backport ``tomli`` on Python 3.10).

A reader never sees a half-written file: every write goes to a temporary file in
the same folder (named ``.tmp-<name>.<random>``) and replaces the target with
:func:`os.replace` once it is complete and flushed to disk.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tomli backport (a dependency on Python 3.10)
    import tomli as tomllib

__all__ = ["TMP_PREFIX", "atomic_open", "atomic_save_figure", "atomic_write_bytes",
           "describe_error", "tomllib"]

#: prefix of the temporary files of an atomic write (results folders skip and clean them)
TMP_PREFIX = ".tmp-"


def _umask() -> int:
    """This process's umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces ``path`` when the block ends without error.

    The file gets the mode a plain ``open`` would give it (``0o666`` less the umask,
    0644 by default), not the 0600 of the temporary file. On an exception the
    temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or PathLike
        The file to write; its folder is created if missing.

    Yields
    ------
    file object
        Open for binary writing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace.

    Parameters
    ----------
    path : str or PathLike
        The file to write (see :func:`atomic_open`).
    data : bytes
        Its whole content.
    """
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure to ``path`` atomically (``fig.savefig`` into a temporary file).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or PathLike
        The figure file; the format is given in ``savefig_kwargs`` or read from the suffix.
    **savefig_kwargs
        Passed to ``fig.savefig`` (dpi, format, ...).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lower().lstrip(".") or "png")
    with atomic_open(path) as fh:
        fig.savefig(fh, **savefig_kwargs)
    return path


def describe_error(exc: BaseException) -> str:
    """One line for an expected error: the message, or an OS error's path and reason."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
        if exc.filename2 is not None:
            text += f" (-> {exc.filename2})"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
