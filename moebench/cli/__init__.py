"""The ``moebench`` command line: the top layer, which nothing in moebench imports.

The verbs of the sweep (run, plot, report, verify, classify) are in
:mod:`moebench.cli.sweep`, those of the store (pack, unpack) in :mod:`moebench.cli.store`,
the results site's (site) in :mod:`moebench.cli.site`, the shared argparse types and path
checks in :mod:`moebench.cli.checks`.

Each verb is a function ``cmd_<verb>(args) -> int`` and a parser builder
``add_<verb>_parser(subparsers)``; errors in user input end the command with a
one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import glob
import io
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from moebench.activations import ACTIVATIONS
from moebench.cli.checks import check_out_dir, check_out_file
from moebench.cli.site import add_site_parser
from moebench.cli.store import add_pack_parser, add_unpack_parser
from moebench.cli.sweep import (
    add_classify_parser,
    add_plot_parser,
    add_report_parser,
    add_run_parser,
    add_verify_parser,
)
from moebench.generator import GATING_KINDS, make_moe
from moebench.io import TMP_PREFIX, atomic_write_bytes, describe_error
from moebench.registry import algorithm_class, algorithm_descriptions, oracle_algorithms
from moebench.sweep.config_keys import SYNTHETIC, TOP

Command = Callable[[argparse.Namespace], int]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registered algorithms and the activations."""
    print("algorithms:")
    for name, desc in algorithm_descriptions().items():
        print(f"  {name:<16} {desc}")
        if getattr(args, "assumes", False):
            tags = algorithm_class(name).assumes
            print(f"  {'':<16} assumes: {'; '.join(tags) if tags else '-'}")
    oracles = oracle_algorithms()
    if oracles:
        print("oracles (fit with the true parameters: synthetic data only):")
        for name in oracles:
            print(f"  {name:<16} {algorithm_class(name).description}")
            if getattr(args, "assumes", False):
                print(f"  {'':<16} assumes: {'; '.join(algorithm_class(name).assumes)}")
    print("activations:")
    for name, act in ACTIVATIONS.items():
        print(f"  {name:<16} {act.description}")
    print("  (any vectorised Python callable, through the API)")
    return 0


def add_list_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list algorithms and activations",
                       description="List the registered algorithms and the built-in activations.")
    p.add_argument("--assumes", action="store_true",
                   help="also print what each algorithm assumes of the data (its `assumes` tags)")
    p.set_defaults(func=cmd_list)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


#: the files ``generate --out DIR`` writes (each through a ``.tmp-<name>.*`` temporary file)
GENERATED_FILES = ("X.npy", "y.npy", "params.json")


def remove_stale_temporaries(folder: Path, names: Sequence[str]) -> int:
    """Delete the temporary files an atomic write of ``names`` in ``folder`` leaves behind.

    Only files named ``.tmp-<name>.<random>`` (:func:`moebench.io.atomic_open`) for
    one of ``names`` are removed: what a killed ``generate`` (SIGKILL, power loss)
    left, never another file. Returns how many were removed.
    """
    count = 0
    if not folder.is_dir():
        return 0
    for name in names:
        for path in folder.glob(f"{TMP_PREFIX}{glob.escape(name)}.*"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                count += 1
    return count


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a synthetic data set and its true parameters.

    SIGTERM and SIGHUP end it as SIGINT does (the temporary files of the write under
    way are removed); temporary files a killed earlier ``generate`` left for the same
    output are removed first.
    """
    from moebench.sweep.lifeline import interrupt_on_signals

    with interrupt_on_signals():
        return _generate(args)


def _generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    kwargs = dict(
        n=args.n, d=args.d, k=args.k, activation=args.activation, sigma=args.sigma,
        gating=args.gating, gating_scale=args.gating_scale, min_angle=args.min_angle,
        random_state=args.seed,
    )
    params = {key: value for key, value in kwargs.items()}
    if out.suffix == ".npz":
        check_out_file(out)
        removed = remove_stale_temporaries(out.parent, [out.name])
        data = make_moe(**kwargs)
        _atomic_savez(out, X=data.X, y=data.y, z=data.z, experts=data.experts,
                      gating=data.gating, sigma=np.array(data.sigma),
                      activation=np.array(data.activation.name))
        print(f"wrote {out} (X {data.X.shape}, y {data.y.shape}, true parameters)"
              + _removed(removed))
        return 0
    if out.suffix:
        raise ValueError(f"--out must end in .npz (one file) or name a directory; got {out}")
    check_out_dir(out)
    removed = remove_stale_temporaries(out, GENERATED_FILES)
    data = make_moe(**kwargs, out=out)
    meta = {"params": params, "experts": data.experts.tolist(), "gating": data.gating.tolist(),
            "sigma": data.sigma, "activation": data.activation.name}
    atomic_write_bytes(out / "params.json", json.dumps(meta, indent=1).encode())
    print(f"wrote {out}/X.npy, {out}/y.npy (memmaps, {args.n} rows) and {out}/params.json"
          + _removed(removed))
    return 0


def _removed(count: int) -> str:
    return (f"; removed {count} temporary file(s) an interrupted generate had left"
            if count else "")


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="write a synthetic MoE data set and its true parameters",
        description="Generate a synthetic mixture-of-experts data set. --out FILE.npz writes one "
        "compressed-free npz (X, y, z, experts, gating, sigma); --out DIR streams X.npy and y.npy "
        "as memmaps block by block (for very large n) plus params.json.")
    p.add_argument("--n", type=SYNTHETIC["n"].argparse_type(), required=True,
                   help="number of samples")
    p.add_argument("--d", type=SYNTHETIC["d"].argparse_type(), required=True,
                   help="input dimension")
    p.add_argument("--k", type=SYNTHETIC["k"].argparse_type(), required=True,
                   help="number of experts (2 <= k <= d)")
    p.add_argument("--activation", default="linear", choices=list(ACTIVATIONS),
                   help="expert activation (default: linear)")
    p.add_argument("--sigma", type=SYNTHETIC["sigma"].argparse_type(), default=0.1,
                   help="label noise std (default: 0.1)")
    p.add_argument("--gating", default="orthogonal", choices=list(GATING_KINDS),
                   help="gating rows orthogonal to the experts, or generic (default: orthogonal)")
    p.add_argument("--gating-scale", type=SYNTHETIC["gating_scale"].argparse_type(), default=1.0,
                   help="norm of the gating rows")
    p.add_argument("--min-angle", type=SYNTHETIC["min_angle"].argparse_type(), default=0.0,
                   help="minimum pairwise angle between experts, degrees (0 to 90)")
    p.add_argument("--seed", type=TOP["seed"].argparse_type(), default=0,
                   help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="output .npz file or directory")
    p.set_defaults(func=cmd_generate)


#: parser builders, one per verb
PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_list_parser,
    add_generate_parser,
    add_run_parser,
    add_plot_parser,
    add_report_parser,
    add_classify_parser,
    add_pack_parser,
    add_unpack_parser,
    add_verify_parser,
    add_site_parser,
]


#: the docs page that explains each verb (named at the end of ``moebench VERB --help``)
DOCS_PAGES: dict[str, str] = {
    "list": "docs/algorithms.md",
    "generate": "docs/model.md",
    "run": "docs/sweeps.md",
    "plot": "docs/plots_reports.md",
    "report": "docs/plots_reports.md",
    "classify": "docs/plots_reports.md",
    "pack": "docs/results_schema.md",
    "unpack": "docs/results_schema.md",
    "verify": "docs/results_schema.md",
    "site": "docs/site.md",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line and exits with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    parser = _Parser(prog="moebench", description="Benchmark harness for mixture-of-experts "
                     "learning: tensor-then-EM vs joint EM vs gradient descent.",
                     epilog="Documentation: README.md and the docs site, docs/index.md "
                     "(getting started: docs/getting_started.md); each verb's --help names "
                     "its page.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    debug_help = f"show the traceback of an error (also: {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for builder in PARSER_BUILDERS:
        builder(sub)
    for verb, verb_parser in sub.choices.items():  # after the verb too; SUPPRESS keeps the top's
        verb_parser.epilog = (f"Documentation: {DOCS_PAGES.get(verb, 'docs/index.md')} "
                              f"(built site: docs/_build/html/).")
        verb_parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help=debug_help)
    return parser


#: environment variable that, set to anything but "" or "0", acts as --debug
DEBUG_ENV = "MOEBENCH_DEBUG"


def _debug(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moebench`` console script.

    Exit status: 0 success; 1 ``run --strict`` with failed runs, or an internal
    error (a bug); 2 an error in the user's input (arguments, config, data,
    paths), reported in one line ``moebench VERB: error: ...`` on stderr;
    128 + N when ended by signal N (130 for Ctrl-C, 143 for SIGTERM).

    Expected errors (``ValueError``, including config errors, and ``OSError``)
    are one line and never a traceback. Any other exception is a bug: it is
    reported in one line too, with its type and where it was raised, and
    ``--debug`` (or ``MOEBENCH_DEBUG=1``) shows the full traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"moebench {args.verb}"
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints where a command that hangs is
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            faulthandler.register(signal.SIGUSR1, all_threads=True)  # needs a real stderr
    try:
        # an empty path would mean the current directory (generate) or the default
        # (run, plot, report): refused for every verb
        if isinstance(getattr(args, "out", None), str) and not args.out.strip():
            raise ValueError(f"--out is empty ({args.out!r}); give a path, or leave --out out "
                             f"for the default where there is one")
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # Ctrl-C; SIGTERM/SIGHUP during a sweep (Interrupted)
        signum = int(getattr(exc, "signum", signal.SIGINT))
        resume = ("; finished runs are kept: run the same command again to resume"
                  if args.verb == "run" else "")
        print(f"{prog}: interrupted by {signal.Signals(signum).name}{resume}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as exc:  # bad input: config, data, paths, option values
        if _debug(args):
            raise
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line, the traceback on request
        if _debug(args):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
        print(f"{prog}: internal error (a bug, please report it): {type(exc).__name__}: "
              f"{describe_error(exc)}{where}; rerun with --debug (or {DEBUG_ENV}=1) for the "
              f"traceback", file=sys.stderr)
        return 1

