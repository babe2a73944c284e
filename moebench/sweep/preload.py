"""Imported once by the local backend's forkserver: algorithms and torch for every worker."""

from moebench.sweep.worker import preload

preload()
