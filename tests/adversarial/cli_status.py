"""The command line as a function of its arguments, for the adversarial tests."""

from __future__ import annotations

from moebench.cli import main


def run_cli(argv: list[str]) -> int:
    """``main(argv)``, with argparse's exit (SystemExit) turned into its status."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)
