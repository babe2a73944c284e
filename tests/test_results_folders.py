"""Every committed results folder comes from a shipped config and holds the standard tables.

``results/<name>/`` is ``moebench run <name>``'s output: its ``config.toml`` is the shipped
``moebench/configs/<name>.toml`` (as TOML, comments and spacing aside), and it holds the
packed store (``summary.parquet``, ``checkpoints.parquet``, ``records.parquet``) that
``moebench plot`` and ``moebench report`` read, every run of it from that config.
``results/performance/`` is the one folder that is not a sweep: measured notes (asv's
tables, one-process measurements) that the docs cite.

:data:`PENDING` names the folders that do not meet this yet, each with the reason and
what ends it; the test fails as soon as one of them does meet it (so that its entry is
removed), and fails for any other folder that does not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CONFIGS = ROOT / "moebench" / "configs"
#: the folder of measured notes (not a sweep)
NOT_A_SWEEP = ("performance",)
#: folders still waiting for their regeneration by ``moebench run``: folder -> why and what
#: ends it. Remove an entry when its folder is regenerated (the test then says so).
PENDING = {
    # the large-n study of benchmarks/large_n.py (removed in issue 28): regenerated as one
    # folder by `moebench run large_n` (docs/findings/large_n.md: about 3 h and one 8 GB
    # memmap at a time); then results/large_n holds the new store and the other four go
    "large_n": "the large_n config's run (issue 28) replaces the script's JSON/CSV",
    "large_n_five_seeds": "folded into results/large_n by the large_n config (issue 28)",
    "large_n_relu": "folded into results/large_n by the large_n config (issue 28)",
    "large_n_sigmoid": "folded into results/large_n by the large_n config (issue 28)",
    "large_n_sgd_tuning": "folded into results/large_n by the large_n config (issue 28)",
}
STORE_FILES = ("summary.parquet", "checkpoints.parquet", "records.parquet", "config.toml")


def _folders() -> list[str]:
    """The result folders of the repository: those git does not ignore (the README's
    first command writes ``results/quickstart/``, a user's own output, which is ignored)."""
    names = sorted(p.name for p in RESULTS.iterdir() if p.is_dir())
    try:
        out = subprocess.run(["git", "check-ignore", *(f"results/{n}/" for n in names)],
                             cwd=ROOT, capture_output=True, text=True, check=False).stdout
    except OSError:  # no git: every folder
        return names
    ignored = {line.strip().rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines()}
    return [n for n in names if n not in ignored]


def _from_its_config(folder: Path) -> list[str]:
    """What keeps ``folder`` from being a shipped config's standard output (empty: nothing)."""
    problems = [f"no {name}" for name in STORE_FILES if not (folder / name).is_file()]
    if problems:
        return problems
    stored = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    name = stored.get("name", folder.name)
    shipped = CONFIGS / f"{name}.toml"
    if name != folder.name:
        problems.append(f"config name {name!r} is not the folder's")
    if not shipped.is_file():
        problems.append(f"no shipped config moebench/configs/{name}.toml")
    elif tomllib.loads(shipped.read_text(encoding="utf-8")) != stored:
        problems.append(f"config.toml differs from moebench/configs/{name}.toml")
    summary = pq.read_table(folder / "summary.parquet", columns=["config", "status"])
    configs = set(summary.column("config").to_pylist())
    if summary.num_rows == 0 or configs != {name}:
        problems.append(f"summary.parquet: {summary.num_rows} runs of configs {sorted(configs)}")
    return problems


def test_pending_folders_exist():
    """Every pending entry names a committed folder (a stale entry is removed)."""
    assert set(PENDING) <= set(_folders())


@pytest.mark.parametrize("name", _folders())
def test_each_results_folder_comes_from_its_shipped_config(name):
    folder = RESULTS / name
    if name in NOT_A_SWEEP:
        assert not list(folder.rglob("*.parquet")), "measured notes only, no sweep tables"
        return
    problems = _from_its_config(folder)
    if name in PENDING:
        assert problems, (f"results/{name} now comes from its config: remove it from PENDING "
                          f"in {Path(__file__).name}")
        return
    assert not problems, f"results/{name}: {'; '.join(problems)}"
