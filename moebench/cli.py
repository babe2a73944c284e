"""The ``moebench`` command line.

Each verb is a function ``cmd_<verb>(args) -> int`` and a parser builder
``add_<verb>_parser(subparsers)``; errors in user input end the command with a
one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from moebench.activations import ACTIVATIONS
from moebench.generator import GATING_KINDS, make_moe
from moebench.registry import algorithm_descriptions
from moebench.sweep.results import atomic_write_bytes
from moebench.sweep_cli import add_plot_parser, add_report_parser, add_run_parser

Command = Callable[[argparse.Namespace], int]


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registered algorithms and the activations."""
    print("algorithms:")
    for name, desc in algorithm_descriptions().items():
        print(f"  {name:<16} {desc}")
    print("activations:")
    for name, act in ACTIVATIONS.items():
        print(f"  {name:<16} {act.description}")
    print("  (any vectorised Python callable, through the API)")
    return 0


def add_list_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list algorithms and activations",
                       description="List the registered algorithms and the built-in activations.")
    p.set_defaults(func=cmd_list)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def cmd_generate(args: argparse.Namespace) -> int:
    """Write a synthetic data set and its true parameters."""
    out = Path(args.out)
    kwargs = dict(
        n=args.n, d=args.d, k=args.k, activation=args.activation, sigma=args.sigma,
        gating=args.gating, gating_scale=args.gating_scale, min_angle=args.min_angle,
        random_state=args.seed,
    )
    params = {key: value for key, value in kwargs.items()}
    if out.suffix == ".npz":
        data = make_moe(**kwargs)
        _atomic_savez(out, X=data.X, y=data.y, z=data.z, experts=data.experts,
                      gating=data.gating, sigma=np.array(data.sigma),
                      activation=np.array(data.activation.name))
        print(f"wrote {out} (X {data.X.shape}, y {data.y.shape}, true parameters)")
        return 0
    if out.suffix:
        raise ValueError(f"--out must end in .npz (one file) or name a directory; got {out}")
    data = make_moe(**kwargs, out=out)
    meta = {"params": params, "experts": data.experts.tolist(), "gating": data.gating.tolist(),
            "sigma": data.sigma, "activation": data.activation.name}
    atomic_write_bytes(out / "params.json", json.dumps(meta, indent=1).encode())
    print(f"wrote {out}/X.npy, {out}/y.npy (memmaps, {args.n} rows) and {out}/params.json")
    return 0


def add_generate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate", help="write a synthetic MoE data set and its true parameters",
        description="Generate a synthetic mixture-of-experts data set. --out FILE.npz writes one "
        "compressed-free npz (X, y, z, experts, gating, sigma); --out DIR streams X.npy and y.npy "
        "as memmaps block by block (for very large n) plus params.json.")
    p.add_argument("--n", type=int, required=True, help="number of samples")
    p.add_argument("--d", type=int, required=True, help="input dimension")
    p.add_argument("--k", type=int, required=True, help="number of experts (2 <= k <= d)")
    p.add_argument("--activation", default="linear", choices=list(ACTIVATIONS),
                   help="expert activation (default: linear)")
    p.add_argument("--sigma", type=float, default=0.1, help="label noise std (default: 0.1)")
    p.add_argument("--gating", default="orthogonal", choices=list(GATING_KINDS),
                   help="gating rows orthogonal to the experts, or generic (default: orthogonal)")
    p.add_argument("--gating-scale", type=float, default=1.0, help="norm of the gating rows")
    p.add_argument("--min-angle", type=float, default=0.0,
                   help="minimum pairwise angle between experts, degrees")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="output .npz file or directory")
    p.set_defaults(func=cmd_generate)


#: parser builders, one per verb
PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_list_parser,
    add_generate_parser,
    add_run_parser,
    add_plot_parser,
    add_report_parser,
]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line and exits with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    parser = _Parser(prog="moebench", description="Benchmark harness for mixture-of-experts "
                     "learning: tensor-then-EM vs joint EM vs gradient descent.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for builder in PARSER_BUILDERS:
        builder(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moebench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"moebench {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"moebench {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
