"""The sweep verbs of the ``moebench`` command: ``run``, ``plot``, ``report`` and
``classify``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moebench.cli.checks import check_out_dir, check_out_file
from moebench.constraints import Interval, argparse_type
from moebench.io import atomic_write_bytes
from moebench.sweep.config_keys import JOBS
from moebench.sweep.executors import EXECUTORS
from moebench.sweep.gridlock import DEFAULT_TOL, STUCK_MIN, SUCCESS_MIN
from moebench.sweep.views import choices_help, views

#: the gridlock rule as the help texts state it ("%%": argparse help is %-formatted)
#: argparse types of the options that are not config keys, from the same constraints
_COUNT = argparse_type(Interval(int, 1))
_NON_NEGATIVE = argparse_type(Interval(float, 0))
_POSITIVE = argparse_type(Interval(float, 0, None, closed="neither"))
_GRIDLOCK_RULE = (f"stuck in >= {STUCK_MIN:.0%}% of seeds while --reference succeeds in >= "
                  f"{SUCCESS_MIN:.0%}%")


def _add_gridlock_options(p: argparse.ArgumentParser) -> None:
    """``--stuck-tol`` and ``--reference``, shared by ``plot`` and ``report``."""
    p.add_argument("--stuck-tol", type=_NON_NEGATIVE, default=DEFAULT_TOL,
                   help="per-sample log-likelihood gap that counts as stuck (default: "
                   f"{DEFAULT_TOL:g})")
    p.add_argument("--reference", nargs="+", default=None, metavar="VARIANT",
                   help="the variant(s) a gridlock cell needs to succeed, each shown on its "
                   "own (default: the config's [report] references, else the variants that "
                   "start from the tensor step, refinements first)")


def _results_dir_for(config_name: str) -> Path:
    return Path("results") / config_name


def cmd_run(args: argparse.Namespace) -> int:
    """Validate a sweep config, run its unfinished cells, consolidate, draw the figure."""
    from moebench.sweep.config import load_config, resolve_config
    from moebench.sweep.executors import check_scheduler
    from moebench.sweep.plots import default_figure
    from moebench.sweep.report import report_table
    from moebench.sweep.runner import FAILED, run_sweep
    from moebench.sweep.selection import count_runs, estimate_cost
    from moebench.sweep.store import check_config_owner, consolidate

    if args.scheduler and args.executor != "dask":
        raise ValueError(f"--scheduler needs --executor dask (--executor is {args.executor!r}); "
                         f"add --executor dask or drop --scheduler")
    config = load_config(args.config)
    out = check_out_dir(Path(args.out) if args.out else _results_dir_for(config.name))
    # counted from the grid's shape: a dry run never lists the runs
    count = count_runs(config, args.filter, args.limit)
    if not count.selected:
        raise ValueError(f"--filter {' --filter '.join(args.filter)} selects none of the "
                         f"{count.total} runs of config {config.name!r}; "
                         f"{_filter_values(config, args.filter)}")
    if args.dry_run:
        print(f"config {config.name} ({config.source}) is valid: {len(config.data_grid)} data "
              f"setting(s) x {config.repetitions} repetition(s) x {len(config.variants)} "
              f"variant(s) = {count.total} runs; {count.selected} selected")
        from moebench.registry import algorithm_class

        for v in config.variants:
            given = algorithm_class(v.algorithm).budget_options(max_iter=v.max_iter,
                                                                max_time=v.max_time)
            budgets = [f"{key}={value:g}" for key, value in given.items()]
            parts = [v.algorithm, str(v.params) if v.params else "", *budgets,
                     f"timeout={v.timeout:g}s", f"({count.by_variant.get(v.label, 0)} selected)"]
            print(f"  {v.label:<24} " + " ".join(p for p in parts if p))
        cost = estimate_cost(out, count, args.jobs)
        if cost:
            print(cost)
        return 0
    run_ids = [c.run_id for c in config.iter_cells()]  # the tables' order (strings only)
    if args.executor == "dask" and args.scheduler:
        check_scheduler(args.scheduler)  # before anything is written
    text, where = resolve_config(args.config)
    # a folder belongs to one config: another config's runs are refused unless told so
    check_config_owner(out, text, where, replace=getattr(args, "replace_config", False))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.toml", text.encode())
    print(f"moebench run: {config.name}: {count.selected} runs ({args.jobs} job(s), executor "
          f"{args.executor}) -> {out}", file=sys.stderr)
    outcome = run_sweep(config, out, jobs=args.jobs, force=args.force, executor=args.executor,
                        scheduler=args.scheduler, filters=args.filter, limit=args.limit,
                        progress=not args.quiet, retry_failed=args.retry_failed,
                        rerun_stale=getattr(args, "rerun_stale", False))
    summary, checkpoints = consolidate(out, run_ids, csv=args.csv, verified=outcome.verified)
    rate = outcome.ran / outcome.wall_time * 60 if outcome.wall_time > 0 and outcome.ran else 0
    # --strict counts every failed run of the config in the folder, stored or new
    failed = int(summary["status"].isin(FAILED).sum()) if "status" in summary else 0
    earlier = max(0, failed - outcome.failures)
    print(f"ran {outcome.ran} run(s) in {outcome.wall_time:.1f} s ({rate:.1f} runs/min), "
          f"skipped {outcome.skipped} finished, {outcome.failures} failed"
          + (f"; {earlier} stored run(s) had failed before (--retry-failed re-runs them)"
             if earlier else ""))
    stale = outcome.stale_message()
    if stale:
        print(stale)
    print(report_table(summary))
    print(f"results: {out / 'summary.parquet'} ({len(summary)} runs), "
          f"{out / 'checkpoints.parquet'} ({len(checkpoints)} rows)")
    if args.csv:
        print(f"csv:     {out / 'summary.csv'}, {out / 'checkpoints.csv'}")
    if not args.no_plot:
        try:
            from moebench.sweep.style import folder_style

            fig = default_figure(summary, checkpoints, out / "figure.png",
                                 folder_style(summary, out))
            print(f"figure:  {fig}")
        except ValueError as exc:
            print(f"figure:  not drawn ({exc})")
    return 1 if (outcome.failures or failed) and args.strict else 0


def _filter_values(config, filters: list[str]) -> str:
    """The values each filtered key takes in ``config`` (for an empty-selection message)."""
    parts = []
    for f in filters:
        key = f.split("=", 1)[0].strip()
        if key in ("label", "algorithm"):
            values = {str(getattr(v, key)) for v in config.variants}
        elif key == "repetition":
            values = {f"0 to {config.repetitions - 1}"}
        else:
            values = {str(s[key]) for s in config.data_grid if key in s}
            values |= {str(v.setting[key]) for v in config.variants if key in v.setting}
        parts.append(f"{key}: {', '.join(sorted(values))}")
    return ("values present: " + "; ".join(dict.fromkeys(parts))
            + " (a key given twice matches either value; different keys must all match)")


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a sweep config (resumable) and draw its figure",
        description="Run every cell of a sweep config that is not finished yet in --out, in "
        "parallel processes; write one parquet file per run, consolidate summary.parquet and "
        "checkpoints.parquet, print a report and draw figure.png. CONFIG is a TOML path or "
        "the name of a shipped config (quickstart, paper, ...).")
    p.add_argument("config", metavar="CONFIG", help="config file or shipped config name")
    p.add_argument("--jobs", "-j", type=argparse_type(JOBS), default=None,
                   help="parallel runs (default: the number of cores)")
    p.add_argument("--out", "-o", default=None,
                   help="results directory (default: results/<config name>)")
    p.add_argument("--force", action="store_true", help="re-run finished runs")
    p.add_argument("--replace-config", action="store_true",
                   help="let CONFIG take over an --out folder that holds the runs of another "
                   "config (its config.toml is replaced; the stored runs stay). Without it "
                   "such a run is refused; the folder's own config (comments and spacing "
                   "aside) always runs, with --filter, --force and the rest")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-run runs recorded as error, nan, timeout or degenerate")
    _add_rerun_stale_option(p)
    p.add_argument("--csv", action="store_true", help="also write summary.csv, checkpoints.csv")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where the runs execute: local processes (default) or a "
                   "dask.distributed cluster")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask scheduler address (default with --executor dask: a LocalCluster)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only cells whose data key / label / algorithm / repetition matches "
                   "(repeatable: the same key twice matches either value, different keys must all "
                   "match), e.g. --filter k=2 --filter k=3 --filter label=joint_em")
    p.add_argument("--limit", type=_COUNT, default=None,
                   help="run at most this many cells")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the config and print the number of runs, run nothing")
    p.add_argument("--no-plot", action="store_true", help="do not draw figure.png")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--strict", action="store_true", help="exit status 1 if any run failed")
    p.set_defaults(func=_run_with_default_jobs)


def _run_with_default_jobs(args: argparse.Namespace) -> int:
    from moebench.sweep.executors import available_cores

    if args.jobs is None:
        args.jobs = available_cores()
    return cmd_run(args)


def cmd_plot(args: argparse.Namespace) -> int:
    """Draw registered figures (:mod:`moebench.sweep.views`) from stored results."""
    from moebench.sweep.store import load_results
    from moebench.sweep.style import folder_style
    from moebench.sweep.views import call, file_stem, get_view

    chosen = (None if args.kind == "all" else get_view("figure", args.kind))
    out = Path(args.out) if args.out else None
    if out is not None:  # a name with a suffix is a file, any other a folder
        (check_out_file if out.suffix else check_out_dir)(args.out)
    summary, checkpoints = load_results(args.results, require_runs=True)
    summary = _with_classes(summary, args.results)
    root = Path(args.results)
    root = root.parent if root.is_file() else root
    style = folder_style(summary, root)
    inputs = {"summary": summary, "checkpoints": checkpoints, "style": style, "x": args.x,
              "metric": args.metric, "by": args.by, "raw": args.raw, "axes": args.axes,
              "variants": args.variants, "reference": args.reference or style.references or None,
              "tol": args.stuck_tol}
    if chosen is None:  # --kind all: every figure that applies, named after its kind
        if out is not None and out.suffix:
            stem, suffix, folder = out.stem, out.suffix, out.parent
        else:
            stem, suffix, folder = "", ".png", out or root / "figures"
        for name, view in views("figure").items():
            if view.applies is None or not view.applies(summary):
                continue
            base = f"{stem}_{name}" if stem else name
            _save_figures(call(view, inputs), folder, base, suffix, args.compact, view.dpi)
        return 0
    if out is not None and out.suffix:
        folder, base, suffix = out.parent, out.stem, out.suffix
    else:
        folder, base, suffix = out or root / "figures", file_stem(chosen, inputs), ".png"
    _save_figures(call(chosen, inputs), folder, base, suffix, args.compact, chosen.dpi)
    return 0


def _save_figures(drawn, folder: Path, base: str, suffix: str, compact: bool, dpi: int
                  ) -> None:
    """Write a figure view's output: one figure as ``<base><suffix>``, a dict of them as
    ``<base>_<key><suffix>`` (key ``""``: ``<base><suffix>``)."""
    from moebench.sweep.plots import save

    figures = drawn if isinstance(drawn, dict) else {"": drawn}
    for key, fig in figures.items():
        name = f"{base}_{key}" if key else base
        print(f"wrote {save(fig, folder / f'{name}{suffix}', compact=compact, dpi=dpi)}")


def add_plot_parser(sub: argparse._SubParsersAction) -> None:
    from moebench.sweep.plots import METRICS, X_AXES

    p = sub.add_parser(
        "plot", help="draw figures from stored sweep results",
        description="Draw figures from a results directory (summary.parquet, "
        "checkpoints.parquet); nothing is re-run. PNG, PDF or SVG by the --out suffix. "
        "Colours follow the config's variant list ([report] colors overrides them).")
    p.add_argument("results", metavar="RESULTS", help="results directory of `moebench run`")
    p.add_argument("--kind", choices=(*views("figure"), "all"), default="curves",
                   help=choices_help("figure", {"all": "every figure these results support"}))
    p.add_argument("--axes", nargs="+", metavar="COLUMN", default=None,
                   help="phase maps: X Y [FACET] data-setting columns (e.g. k gating_scale "
                   "sigma); gridlock: the columns that define a cell; equal_footing: the "
                   "columns with a panel pair per value (default: every varying setting; the "
                   "others are pooled)")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="equal_footing: only these variant labels (default: all)")
    p.add_argument("--compact", action="store_true",
                   help="PNG: a 64-colour palette image, about a third of the size (for "
                   "figures committed to a repository)")
    _add_gridlock_options(p)
    p.add_argument("--x", choices=X_AXES, default="iteration", help="x axis of curves")
    p.add_argument("--metric", choices=METRICS, default="expert_error",
                   help="curve metric (default: expert_error)")
    p.add_argument("--raw", action="store_true",
                   help="curves: every checkpoint as recorded, not the best log-likelihood so "
                   "far (restarts then show as jumps)")
    p.add_argument("--by", default=None, help="x axis of the success figure (default: k or d)")
    p.add_argument("--out", "-o", default=None,
                   help="a figure file (.png/.pdf/.svg) or a folder (default: RESULTS/figures/"
                   "); --kind all and the kinds that draw several files (phase, gridlock) "
                   "name theirs after the file's name")
    p.set_defaults(func=cmd_plot)


def cmd_report(args: argparse.Namespace) -> int:
    """Print (or write) a registered Markdown table (:mod:`moebench.sweep.views`) of stored
    results, with the ``--phase`` sections."""
    from moebench.sweep.report_phase import phase_report
    from moebench.sweep.store import load_results
    from moebench.sweep.style import folder_style
    from moebench.sweep.views import call, get_view

    if args.out:
        check_out_file(args.out)
    view = get_view("table", getattr(args, "table", "summary"))
    summary, checkpoints = load_results(args.results)
    summary = _with_classes(summary, args.results)
    style = folder_style(summary, args.results)
    reference = args.reference or style.references or None
    text = call(view, {"summary": summary, "checkpoints": checkpoints, "style": style,
                       "metric": args.metric, "raw": args.raw, "variants": args.variants,
                       "reference": reference, "tol": args.stuck_tol,
                       "targets": args.target_error})
    if args.phase:
        text += "\n" + phase_report(summary, args.phase, reference, tol=args.stuck_tol,
                                     stuck_tols=args.stuck_tols)
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="print a Markdown summary table of stored sweep results",
        description="Median error, success and stuck rates, held-out log-likelihood and median "
        "fit time per algorithm variant and data setting, from stored results.")
    p.add_argument("results", metavar="RESULTS", help="results directory of `moebench run`")
    p.add_argument("--phase", nargs="+", metavar="COLUMN", default=None,
                   help="also print stuck/success rates over these data-setting columns and the "
                   f"settings where a baseline is {_GRIDLOCK_RULE}")
    _add_gridlock_options(p)
    p.add_argument("--stuck-tols", nargs="+", type=_NON_NEGATIVE, default=None,
                   metavar="TOL", help="with --phase: also state the verdict under each of "
                   "these stuck tolerances (e.g. 1e-4 1e-3 1e-2)")
    p.add_argument("--table", choices=tuple(views("table")), default="summary",
                   help=choices_help("table"))
    p.add_argument("--metric", default="expert_error",
                   help="metric column of --table accuracy/comparison/time_to_error (default: "
                   "expert_error; e.g. gating_error)")
    p.add_argument("--target-error", nargs="+", type=_POSITIVE,
                   default=[0.1], metavar="ERROR",
                   help="--table time_to_error: the error level(s) to reach (default: 0.1)")
    p.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                   help="--table time_to_error: only these variant labels (default: all)")
    p.add_argument("--raw", action="store_true",
                   help="--table time_to_error: each checkpoint's error as recorded, not the "
                   "error at the best log-likelihood so far")
    p.add_argument("--out", "-o", default=None, help="write the table to this file")
    p.set_defaults(func=cmd_report)


def _add_rerun_stale_option(p: argparse.ArgumentParser) -> None:
    """``moebench run --rerun-stale``."""
    from moebench.version import NUMERICS_VERSION

    p.add_argument("--rerun-stale", action="store_true",
                   help="re-run the stored runs made by older code (their code_version, 1 "
                   f"when absent, is not the current {NUMERICS_VERSION}); each new run file "
                   "replaces the old record atomically, packed folders included. Without it "
                   "`run` says how many there are")


def cmd_verify(args: argparse.Namespace) -> int:
    """Re-run stored runs at HEAD and compare every stored metric; 1 when any differs."""
    from moebench.sweep.verify import verify

    def start(chosen: list[str]) -> None:
        from moebench.sweep.store import kernel_path, provenance

        print(f"moebench verify: re-running {len(chosen)} run(s) of {args.results} in this "
              f"process (one thread, kernel path {kernel_path()}, BLAS "
              f"{provenance()['blas'] or 'unknown'}, code version "
              f"{provenance()['code_version']})", file=sys.stderr, flush=True)

    outcome = verify(args.results, sample=args.sample, seed=args.seed, run_ids=args.run_id,
                     max_run_time=args.max_run_time,
                     on_check=lambda check: print(check.line(), flush=True), on_start=start)
    print(outcome.summary_line())
    return 1 if outcome.differing else 0


def add_verify_parser(sub: argparse._SubParsersAction) -> None:
    """The ``verify`` verb."""
    from moebench.sweep.verify import (
        ATOL,
        CONDITION_PROBES,
        CONDITION_RTOL,
        DEFAULT_SAMPLE,
        RTOL,
    )

    p = sub.add_parser(
        "verify", help="re-run stored runs at HEAD and compare every stored metric",
        description="Re-run a seeded sample of the stored runs of RESULTS (packed or not; its "
        "config.toml rebuilds each run's cell) in this process with one thread, and compare "
        "every numeric column of each summary, status, stop_reason and fitted_parameters: "
        "bit-equal when the run was made on the same path (kernel_path, blas, one thread), "
        f"within rtol {RTOL:g} (atol {ATOL:g}) across paths, or within the run's own "
        f"conditioning ({CONDITION_PROBES} re-runs with X perturbed at rounding level; never "
        f"beyond {CONDITION_RTOL:g} of a value). Times, provenance and threads "
        "are not compared; runs ended by max_time are checked for their status only. One "
        "line per run, then a count; exit status 0 when every run agrees, 1 when one "
        "differs. Needs runs made by the current code version (moebench run --rerun-stale). "
        "MOEBENCH_FUSED_KERNELS=0 verifies on the BLAS kernel path.")
    p.add_argument("results", metavar="RESULTS", help="results directory of `moebench run`")
    p.add_argument("--sample", "-n", type=_COUNT, default=None, metavar="N",
                   help=f"how many runs to re-run, a seeded random sample (default: "
                   f"{DEFAULT_SAMPLE}, or every run of a smaller folder)")
    p.add_argument("--seed", type=argparse_type(Interval(int, 0)), default=0,
                   help="seed of the sample (default: 0)")
    p.add_argument("--run-id", action="append", default=[], metavar="RUN_ID",
                   help="verify this run instead of a sample (repeatable)")
    p.add_argument("--max-run-time", type=_POSITIVE, default=None,
                   metavar="SECONDS",
                   help="sample only among runs whose stored wall_time is at most SECONDS "
                   "(fast runs, e.g. for CI)")
    p.set_defaults(func=cmd_verify)


def _with_classes(summary, results: str):
    """The summary with the folder's certified classes when ``classes.parquet`` covers it."""
    from moebench.sweep.classify import attach_classes

    return attach_classes(summary, results)


def cmd_classify(args: argparse.Namespace) -> int:
    """Polish the short likelihood-climbing runs of a results folder and classify them."""
    from moebench.sweep.classify import (
        CLASSES,
        CLASSES_FILE,
        NO_PARAMETERS,
        POLISH_FILE,
        classify_results,
    )

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    outcome = classify_results(args.results, jobs=args.jobs, tol=args.tol, progress=progress)
    counts = outcome.classes["class"].value_counts()
    print(f"classified {len(outcome.classes)} run(s) in {outcome.wall_time:.1f} s: polished "
          f"{outcome.polished} now, {outcome.reused} from {POLISH_FILE}")
    for name in CLASSES:
        if counts.get(name, 0):
            print(f"  {name:<32} {int(counts[name])}")
    if counts.get(NO_PARAMETERS, 0):
        print(f"{int(counts[NO_PARAMETERS])} short likelihood-climbing run(s) hold no fitted "
              "parameters (recorded before runs stored them) and cannot be polished: they are "
              "not classified; re-run them to classify them")
    print(f"wrote {Path(args.results) / CLASSES_FILE}")
    return 0


def add_classify_parser(sub: argparse._SubParsersAction) -> None:
    from moebench.sweep.classify import CERTIFY_GRAD_TOL, HESSIAN_EPS, POLISH_MAX_ITER

    p = sub.add_parser(
        "classify", help="certify why runs end short of the best likelihood (polish, classify)",
        description="Continue every likelihood-climbing run that ends short of the best "
        f"likelihood by one common polisher (joint EM, at most {POLISH_MAX_ITER} iterations, "
        "then Newton steps) from its stored end point, and classify it by where the polisher "
        "ends: slow, local maximum, saddle, singular, unfinished, failed (fine: not short; "
        "not classified: methods that do not climb the likelihood). Estimators with the "
        "experts fixed (the oracle gating EM) are polished by the gating EM alone and "
        "classified in the gating likelihood (best over their own runs on the data set; "
        "use --tol 1e-4 for the theorem table). Stationary: scaled "
        f"gradient norm <= {CERTIFY_GRAD_TOL:g}; local maximum / saddle: smallest loss-Hessian "
        f"eigenvalue beyond +/-{HESSIAN_EPS:g}. Resumable; writes RESULTS/polish.parquet and "
        "RESULTS/classes.parquet, which `moebench report` and `moebench plot` then use.")
    p.add_argument("results", metavar="RESULTS", help="results directory of `moebench run`")
    p.add_argument("--jobs", "-j", type=argparse_type(JOBS), default=1,
                   help="parallel processes, one data set each (default: 1)")
    p.add_argument("--tol", type=_NON_NEGATIVE, default=DEFAULT_TOL,
                   help="per-sample log-likelihood gap that counts as short of the best "
                   f"(default: {DEFAULT_TOL:g}); reports at larger --stuck-tol reuse it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_classify)
