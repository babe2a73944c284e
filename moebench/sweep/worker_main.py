"""``python -m moebench.sweep.worker_main JOB.pkl``: run one pickled cell (dask tasks use it)."""

from __future__ import annotations

import pickle
import sys

from moebench.sweep.worker import run_cell


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as fh:
        cell, out, threads, config = pickle.load(fh)
    run_cell(cell, out, threads, config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
