"""A results folder belongs to one config: the one in its ``config.toml``.

``moebench run CONFIG --out RESULTS`` into a folder that already holds runs checks that
CONFIG is the folder's config, comparing the parsed TOML (comments, spacing and key order
do not count); a different config is refused in one line unless the user passes
``--replace-config``. Partial re-runs of the folder's own config (``--filter``,
``--force``, ``--retry-failed``, ``--rerun-stale``) are the same config and stay allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from moebench.io import tomllib
from moebench.sweep.store.packed import is_packed
from moebench.sweep.store.runfiles import finished_run_ids

CONFIG_FILE = "config.toml"
#: the command-line flag that lets a different config take over a folder
REPLACE_FLAG = "--replace-config"


def _differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level keys (and ``[table] key``) whose values differ, in a stable order."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"[{key}] {sub}" for sub in sorted(set(a) | set(b))
                     if a.get(sub) != b.get(sub)]
        elif isinstance(a, list) and isinstance(b, list) and all(
                isinstance(v, dict) for v in a + b):  # [[algorithm]]: name the variants
            keys += [f"[[{key}]] {label}" for label in _changed_entries(a, b)] or [f"[[{key}]]"]
        else:
            keys.append(key)
    return keys


def _changed_entries(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """Labels (else names) of the array-of-tables entries added, removed or changed."""
    def by_label(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {str(e.get("label", e.get("name", i))): e for i, e in enumerate(entries)}

    a, b = by_label(old), by_label(new)
    return [label for label in sorted(set(a) | set(b)) if a.get(label) != b.get(label)]


def check_config_owner(out: str | os.PathLike, text: str, where: str = "CONFIG",
                       replace: bool = False) -> None:
    """Refuse to run the config ``text`` into a folder that holds another config's runs.

    Parameters
    ----------
    out : path
        The results directory.
    text : str
        The TOML text of the config about to run (already validated).
    where : str
        Where that config came from (for the message).
    replace : bool
        The user said so explicitly (``--replace-config``): allow it.

    Raises
    ------
    ValueError
        One line naming the folder, both configs, the keys that differ and the two ways
        on (another ``--out``, or ``--replace-config``).
    """
    out = Path(out)
    current = out / CONFIG_FILE
    if replace or not current.is_file() or not (finished_run_ids(out) or is_packed(out)):
        return
    new = tomllib.loads(text)
    try:
        old = tomllib.loads(current.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        differ = f"it cannot be read as TOML ({str(exc).splitlines()[0]})"
    else:
        if old == new:
            return
        keys = _differing_keys(old, new)
        differ = f"they differ in {', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''}"
    raise ValueError(f"{out} holds the runs of another config ({current}; {where} is not the "
                     f"same config: {differ}); run it into another --out, or pass "
                     f"{REPLACE_FLAG} to make it this folder's config (the stored runs stay)")
