"""Imported once by the local executor's forkserver: algorithms and torch for every worker."""

from moebench.sweep.lifeline import guard_forkserver
from moebench.sweep.worker import preload

guard_forkserver()  # exit with the sweep's main process (no orphaned workers)
preload()
