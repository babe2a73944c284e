"""How often the store reads and checksums a run file during a sweep (issue 28 item 2).

Each run file is checksummed once when written (in the worker) and once when read: the
parent takes a new run's summary from the worker's pipe instead of reading the file
back, and the consolidation at the end reuses the records the sweep verified at its
start when their files did not change.
"""

from __future__ import annotations

import pytest

from moebench.sweep.config import load_config
from moebench.sweep.runner import run_sweep
from moebench.sweep.store import consolidate, read_run_summary, run_path, runfiles
from moebench.sweep.store import packed as packed_module

CONFIG = """
name = "reads"
seed = 4
repetitions = 2
[data]
n = [300]
d = 3
k = 2
activation = "linear"
n_test = 100
[budget]
max_iter = 4
max_time = 20.0
[[algorithm]]
name = "joint_em"
label = "joint_em"
params = {n_init = 1}
"""
N_RUNS = 2


@pytest.fixture
def counted(monkeypatch):
    """Count the checksums computed in this (the parent) process."""
    calls = []
    original = runfiles.run_checksum

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(runfiles, "run_checksum", counting)
    monkeypatch.setattr(packed_module, "run_checksum", counting)
    return calls


def test_each_run_file_is_checksummed_once_by_the_parent(tmp_path, counted):
    path = tmp_path / "reads.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    out = tmp_path / "res"
    ids = [c.run_id for c in config.cells()]
    outcome = run_sweep(config, out, jobs=1, progress=False)
    assert outcome.ran == N_RUNS and len(outcome.summaries) == N_RUNS
    assert counted == []  # the summaries came over the pipe, not from the files
    stored = {s["run_id"]: s for s in outcome.summaries}
    for rid in ids:  # ... and they are what the files hold
        assert stored[rid]["status"] == read_run_summary(run_path(out, rid))["status"]
    counted.clear()
    consolidate(out, ids, verified=outcome.verified)
    assert len(counted) == N_RUNS  # each new run file read once
    counted.clear()
    again = run_sweep(config, out, jobs=1, progress=False)  # a resume: all finished
    assert again.ran == 0 and len(counted) == N_RUNS  # verified once at the start ...
    counted.clear()
    summary, _ = consolidate(out, ids, verified=again.verified)
    assert counted == [] and len(summary) == N_RUNS  # ... and not again


def test_a_file_changed_since_it_was_verified_is_read_again(tmp_path, counted):
    path = tmp_path / "reads.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    out = tmp_path / "res"
    ids = [c.run_id for c in config.cells()]
    run_sweep(config, out, jobs=1, progress=False)
    outcome = run_sweep(config, out, jobs=1, progress=False)
    victim = run_path(out, ids[0])
    victim.write_bytes(victim.read_bytes())  # rewritten in place: a new mtime, maybe inode
    counted.clear()
    consolidate(out, ids, verified=outcome.verified)
    assert len(counted) == 1
