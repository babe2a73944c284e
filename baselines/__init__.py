"""Baseline algorithms, one module each, registered with :func:`moebench.register`.

This folder is installed as the subpackage ``moebench.baselines``; every module
in it is imported when the registry is first used.
"""
