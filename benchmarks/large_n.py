"""The large-n regime, measured: fits on data on disk, their memory, and time to accuracy.

Issue 13 item 4. The data are the ``X.npy`` / ``y.npy`` memmaps and ``params.json`` of
``moebench generate --out DIR`` (n = 10^7, d = 100, k = 10 in the committed run); each fit
runs in its own process (``fit``), with one BLAS thread and one torch thread, and samples
its own memory from ``/proc/self/status`` every 50 ms:

* ``RssAnon``: resident anonymous memory (heap, numpy and torch buffers): what the fit
  holds beyond the page cache. The memmapped X is file-backed (``RssFile``), so it is not
  counted here; the peak of ``RssAnon`` is the figure checked against the 2 GB bound
  (peak over the fit, and its rise above the value just before ``fit``);
* ``RssFile`` and ``VmHWM`` are recorded too (the file pages of X mapped in, and the peak
  resident set including them).

Per history record the JSON holds the time, the expert error against the true experts
(:func:`moebench.metrics.expert_error`, through the estimator's ``History``), and the
passes over X so far: the blocked passes of :mod:`moebench.chunked` (EM steps, the
quasi-Newton objective) plus the tensor step's two moment passes; for sgd its epochs (its
per-epoch full-data likelihood, recorded for the history only, is not counted). The
validation before ``fit`` starts its clock (finite check, scale checks: about four
passes) is in ``wall_s`` but not in the records' times or passes. ``collect`` turns the
per-fit JSON files into one compact table (``measurements.json``, ``curves.csv``) and the
figure (expert error against wall time and against passes; a 128-colour palette PNG).

Usage::

    moebench generate --n 10000000 --d 100 --k 10 --seed 0 --out /tmp/large_n/data
    nice -n 5 python benchmarks/large_n.py fit --data /tmp/large_n/data --fit tensor_em \\
        --out /tmp/large_n/runs
    ...                                              (--fit joint_em, sgd)
    ... --fit sgd --max-epochs 5                     (a shorter sgd schedule: sgd_5ep.json)
    ... --fit sgd --max-epochs 1 --lr 0.1 --batch-size 16384   (sgd_1ep_lr0.1_b16384.json)
    python benchmarks/large_n.py collect --runs /tmp/large_n/runs --out results/large_n
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the fits of the measurement: algorithm name and options (k, activation and seed apart)
FITS: dict[str, dict[str, Any]] = {
    "tensor_em": {"algorithm": "tensor_em", "options": {}},
    "tensor_em_refine": {"algorithm": "tensor_em",
                         "options": {"refine": True, "refine_max_iter": 200}},
    "joint_em": {"algorithm": "joint_em", "options": {"n_init": 1, "max_iter": 200}},
    "sgd": {"algorithm": "sgd", "options": {"optimizer": "adam", "max_epochs": 40,
                                            "device": "cpu"}},
}
#: passes over X that a fit makes outside the blocked EM passes of moebench.chunked
MOMENT_PASSES = 2  # tensor step: T2 (one pass), whitened T3 (one pass)


def fit_name(fit: str, max_epochs: int | None = None, lr: float | None = None,
             batch_size: int | None = None) -> str:
    """A curve's name: the fit, and for sgd the length of its schedule (``sgd_40ep``), then
    its learning rate and batch size where they are not sgd's defaults
    (``sgd_1ep_lr0.1_b16384``).

    The learning-rate schedule of sgd decays over ``max_epochs``, so each schedule length
    is its own curve, not an earlier stop of a longer one.
    """
    if FITS[fit]["algorithm"] != "sgd":
        return fit
    epochs = FITS[fit]["options"]["max_epochs"] if max_epochs is None else max_epochs
    return (f"{fit}_{epochs}ep" + (f"_lr{lr:g}" if lr is not None else "")
            + (f"_b{batch_size}" if batch_size is not None else ""))


def sgd_label(options: dict[str, Any]) -> str:
    """The legend's words for an sgd curve: its schedule, and lr / batch where given."""
    epochs = options.get("max_epochs", 0)
    return (f"sgd, Adam, cosine over {epochs} epoch{'s' if epochs > 1 else ''}"
            + (f", lr {options['lr']:g}" if "lr" in options else "")
            + (f", batch {options['batch_size']}" if "batch_size" in options else ""))


def resolved_sgd_settings(options: dict[str, Any], n: int) -> dict[str, Any]:
    """sgd's learning rate and minibatch rows for ``options`` at n samples (its defaults
    where not given; ``batch_size="auto"`` resolved)."""
    from moebench.baselines.sgd import auto_batch_size

    import moebench

    est = moebench.get_algorithm("sgd", **{k: v for k, v in options.items()
                                           if k in ("lr", "batch_size")})
    batch = auto_batch_size(n) if est.batch_size == "auto" else est.batch_size
    return {"lr": est.lr, "batch_size": batch}


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM", "VmRSS"):
                out[key] = int(rest.split()[0])
    return out


class MemorySampler(threading.Thread):
    """Samples /proc/self/status every ``period`` seconds; keeps the peaks (kB)."""

    def __init__(self, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            time.sleep(self.period)

    def sample(self) -> None:
        for key, value in _status_kb().items():
            self.peak[key] = max(self.peak.get(key, 0), value)
        self.samples += 1

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join()
        self.sample()
        return self.peak


def load_truth(data: Path):
    """The true model of ``params.json`` (written by ``moebench generate``)."""
    from moebench.activations import get_activation
    from moebench.model import MoEModel

    meta = json.loads((data / "params.json").read_text())
    p = meta["params"]
    return MoEModel(np.asarray(meta["experts"], float), np.asarray(meta["gating"], float),
                    float(meta["sigma"]), get_activation(p["activation"])), p


def fit(args: argparse.Namespace) -> None:
    """One fit on the memmaps of ``args.data``; writes ``<out>/<fit>.json``."""
    import scipy.optimize  # noqa: F401 - every BLAS-linking library loaded before the limit
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    import moebench
    from moebench import chunked
    from moebench.history import History

    limits = threadpool_limits(1)  # undone at the end (the function may run in-process)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)

    spec = FITS[args.fit]
    name = fit_name(args.fit, args.max_epochs, args.lr, args.batch_size)
    data = Path(args.data)
    truth, p = load_truth(data)
    X = np.load(data / "X.npy", mmap_mode="r")
    y = np.load(data / "y.npy", mmap_mode="r")
    epoch_of_sgd = spec["algorithm"] == "sgd"
    moments_done = {"passes": 0}

    original = History.record

    def record(self, phase, iteration, *a, **kw):  # noqa: ANN001 - wraps History.record
        if phase == "moments":
            moments_done["passes"] = MOMENT_PASSES
        rec = original(self, phase, iteration, *a, **kw)
        # sgd: its epochs (the per-epoch full-data likelihood is for the history only)
        rec["passes"] = (int(iteration) if epoch_of_sgd
                         else chunked.passes() - base_passes + moments_done["passes"])
        rec["rss_anon_kb"] = _status_kb()["RssAnon"]
        return rec

    History.record = record  # type: ignore[method-assign]
    options = dict(spec["options"])
    if args.max_time is not None:
        options["max_time"] = args.max_time
    for option in ("max_epochs", "lr", "batch_size"):  # sgd only (checked in main)
        if getattr(args, option) is not None:
            options[option] = getattr(args, option)
    est = moebench.get_algorithm(spec["algorithm"], n_experts=int(p["k"]),
                                 activation=p["activation"], random_state=args.seed, **options)
    before = _status_kb()
    sampler = MemorySampler()
    sampler.start()
    base_passes = chunked.passes()
    tick = time.perf_counter()
    error = None
    try:
        est.fit(X, y, truth=truth)
    except Exception as exc:  # recorded, not hidden: the JSON says what failed
        error = f"{type(exc).__name__}: {exc}"
    finally:
        History.record = original  # type: ignore[method-assign]
        blas = [{k: v for k, v in info.items() if k in
                 ("internal_api", "version", "architecture", "num_threads")}
                for info in threadpool_info()]
        limits.restore_original_limits()
        torch.set_num_threads(torch_threads)
    wall = time.perf_counter() - tick
    peak = sampler.stop()
    records = getattr(est, "history_", [])
    settings = (resolved_sgd_settings(options, X.shape[0])
                if spec["algorithm"] == "sgd" else None)
    final = None
    if error is None:
        from moebench.metrics import expert_error

        final = expert_error(est.experts_, truth.experts)
    out = {
        "fit": args.fit, "name": name, "algorithm": spec["algorithm"], "options": options,
        "sgd_settings": settings,
        "n": int(X.shape[0]), "d": int(X.shape[1]), "k": int(p["k"]),
        "activation": p["activation"], "seed": args.seed, "wall_s": wall, "error": error,
        "final_expert_error": final,
        "n_iter": int(getattr(est, "n_iter_", -1)) if error is None else None,
        "stop_reason": getattr(est, "stop_reason_", None),
        "phase_times": getattr(est, "phase_times_", None),
        "passes": records[-1].get("passes") if records else None,
        "memory_kb": {"rss_anon_before": before["RssAnon"],
                      "rss_anon_peak": peak.get("RssAnon"),
                      "rss_anon_rise": peak.get("RssAnon", 0) - before["RssAnon"],
                      "rss_file_peak": peak.get("RssFile"), "vm_hwm": peak.get("VmHWM"),
                      "samples": sampler.samples},
        "load_average_before": os.getloadavg(),
        "blas": blas, "torch_threads": 1,
        "platform": platform.platform(), "python": sys.version.split()[0],
        "records": [{k: (float(v) if isinstance(v, (float, np.floating)) else v)
                     for k, v in r.items()
                     if k in ("phase", "iteration", "time", "log_likelihood",
                              "expert_error", "gating_error", "passes", "rss_anon_kb")}
                    for r in records],
    }
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    from moebench.io import atomic_write_bytes

    atomic_write_bytes(outdir / f"{name}.json", json.dumps(out, indent=1).encode())
    print(f"{name}: {wall:.1f} s, expert error {final}, passes {out['passes']}, "
          f"peak RssAnon {peak.get('RssAnon', 0) / 1024:.0f} MiB "
          f"(+{out['memory_kb']['rss_anon_rise'] / 1024:.0f} MiB), error={error}")


def collect(args: argparse.Namespace) -> None:
    """The per-fit JSON files of the ``args.runs`` folders -> measurements.json, curves.csv,
    figure.png (one colour per fit, one marker and line weight per seed)."""
    import matplotlib

    matplotlib.use("Agg")

    from moebench.io import atomic_write_bytes

    runs = [r for folder in args.runs for r in sorted(Path(folder).glob("*.json"))]
    fits = [json.loads(r.read_text()) for r in runs]
    for f in fits:  # files written before sgd's schedule length was a choice have no name
        f.setdefault("name", fit_name(f["fit"], f["options"].get("max_epochs"),
                                      f["options"].get("lr"), f["options"].get("batch_size")))
    for f in fits:  # files written before the settings were recorded: sgd's defaults
        if f["algorithm"] == "sgd" and not f.get("sgd_settings"):
            f["sgd_settings"] = resolved_sgd_settings(f["options"], f["n"])
    # FITS order; sgd's schedules longest first, then by learning rate and batch; then seed
    fits.sort(key=lambda f: (list(FITS).index(f["fit"]), -f["options"].get("max_epochs", 0),
                             f["options"].get("lr", 0.0), f["options"].get("batch_size", 0),
                             f["seed"]))
    for f in fits:  # sgd: passes are its epochs (as ``fit`` records them)
        if f["algorithm"] == "sgd":
            for r in f["records"]:
                r["passes"] = r["iteration"]
            f["passes"] = f["records"][-1]["iteration"] if f["records"] else None
    if args.figures == "grid" and not sgd_grid_schedules(fits):  # before anything is written
        raise ValueError("--figures grid: no sgd schedule in --runs was run with more than "
                         "one (learning rate, batch) pair; valid here: all, curves")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = [{k: f[k] for k in f if k != "records"} for f in fits]
    atomic_write_bytes(out / "measurements.json", json.dumps(summary, indent=1).encode())
    lines = ["fit,seed,phase,iteration,time_s,passes,expert_error,log_likelihood,rss_anon_mib"]
    for f in fits:
        for r in f["records"]:
            if r.get("expert_error") is None:
                continue
            lines.append(f"{f['name']},{f['seed']},{r['phase']},{r['iteration']},{r['time']:.3f},"
                         f"{r['passes']},{r['expert_error']:.6g},{r['log_likelihood']:.8g},"
                         f"{r['rss_anon_kb'] / 1024:.0f}")
    atomic_write_bytes(out / "curves.csv", ("\n".join(lines) + "\n").encode())

    written = ["measurements.json", "curves.csv"]
    if args.figures in ("all", "curves"):
        curves_figure(fits, out / "figure.png")
        written.append("figure.png")
    if args.figures in ("all", "grid"):
        if sgd_grid_figure(fits, out / "sgd_grid.png"):
            written.append("sgd_grid.png")
    print(f"wrote {out}/{', '.join(written)}")


def curves_figure(fits: list[dict[str, Any]], path: Path) -> None:
    """Expert error against wall time and against passes: one colour per curve (sgd's
    schedules in shades of one hue), one marker and line weight per seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True)
    seeds = sorted({f["seed"] for f in fits})
    marker = {seed: ".x+1*^v"[i % 7] for i, seed in enumerate(seeds)}  # later seeds: thinner too
    # the other fits: tab10 in FITS order; sgd's schedules: shades of one hue, longest darkest
    colours: dict[str, Any] = {f["name"]: f"C{list(FITS).index(f['fit'])}"
                               for f in fits if f["algorithm"] != "sgd"}
    schedules = list(dict.fromkeys(f["name"] for f in fits if f["algorithm"] == "sgd"))
    colours.update(zip(schedules, plt.cm.RdPu(np.linspace(0.95, 0.45, len(schedules)))))
    peak_gib: dict[str, float] = {}  # per curve, over its seeds: the legend's memory
    for f in fits:
        peak_gib[f["name"]] = max(peak_gib.get(f["name"], 0.0),
                                  f["memory_kb"]["rss_anon_peak"] / 1024**2)
    labelled: set[str] = set()
    for f in fits:
        recs = [r for r in f["records"] if r.get("expert_error") is not None]
        if not recs:
            continue
        t = [r["time"] for r in recs]
        e = [r["expert_error"] for r in recs]
        passes = [r["passes"] for r in recs]
        label = None
        if f["name"] not in labelled:
            what = sgd_label(f["options"]) if f["algorithm"] == "sgd" else f["name"]
            label = f"{what} (peak anon. {peak_gib[f['name']]:.2f} GiB)"
            labelled.add(f["name"])
        # the refined fit runs on from the plain one's curve: dashed, so both stay visible
        style = {"linestyle": "--", "linewidth": 1.2} if "refine" in f["fit"] else {
            "linewidth": 3.0 if f["fit"] == "tensor_em" else 1.5}
        if f["seed"] != seeds[0]:
            style["linewidth"] *= 0.6
        style.update(color=colours[f["name"]], marker=marker[f["seed"]])
        axes[0].plot(t, e, label=label, **style)
        axes[1].plot(passes, e, **style)
    axes[0].set_xscale("log")
    axes[1].set_xlim(left=0)
    for ax, xl in zip(axes, ("wall time (s)", "passes over X (sgd: epochs)")):
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("expert error (matched, Frobenius)")
    n = fits[0]["n"] if fits else 0
    seed_note = f"seed {seeds[0]}" if len(seeds) == 1 else (
        f"seeds {', '.join(map(str, seeds))} (markers {' '.join(marker.values())})")
    fig.suptitle(f"X on disk (memmap), n = {n:.0e}, d = {fits[0]['d']}, k = {fits[0]['k']}, "
                 f"{fits[0]['activation']} experts, {seed_note}; one BLAS thread" if fits else "")
    handles, labels = axes[0].get_legend_handles_labels()  # below the axes: no curve hidden
    ncol = 3 if max(map(len, labels), default=0) <= 64 else 2  # tuned sgd labels: 2
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.02 + 0.03 * -(-len(labels) // ncol), 1, 1))
    save_palette_png(fig, path)


def save_palette_png(fig: Any, path: Path) -> None:
    """Write ``fig`` as a 128-colour palette PNG (a tenth of the RGBA size), atomically."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from moebench.io import atomic_write_bytes

    rgba = io.BytesIO()
    fig.savefig(rgba, format="png", dpi=110)
    plt.close(fig)
    img = Image.open(rgba).convert("RGB").quantize(colors=128)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


def _finished_sgd(fits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in fits if f["algorithm"] == "sgd" and f["final_expert_error"] is not None]


def sgd_grid_schedules(fits: list[dict[str, Any]]) -> list[int]:
    """sgd's schedule lengths (epochs) run with more than one (learning rate, batch) pair."""
    done = _finished_sgd(fits)
    return [e for e in sorted({f["options"]["max_epochs"] for f in done})
            if len({tuple(f["sgd_settings"].values()) for f in done
                    if f["options"]["max_epochs"] == e}) > 1]


def sgd_grid_figure(fits: list[dict[str, Any]], path: Path) -> bool:
    """Final expert error against sgd's learning rate, one line per batch size, for every
    schedule length run with more than one (learning rate, batch) pair; the tensor step's
    error (tensor_em's first record) as a dashed line. Returns False (nothing written)
    when there is no such grid."""
    import matplotlib.pyplot as plt

    done = _finished_sgd(fits)
    grids = sgd_grid_schedules(fits)
    if not grids:
        return False
    fig, axes = plt.subplots(1, len(grids), figsize=(5.5 * len(grids), 4.4), squeeze=False)
    tensor_steps = [next((r["expert_error"], r["time"]) for r in f["records"]
                         if "expert_error" in r)
                    for f in fits if f["fit"] == "tensor_em" and f["records"]]
    for ax, e in zip(axes[0], grids):
        runs = [f for f in done if f["options"]["max_epochs"] == e]
        for i, batch in enumerate(sorted({f["sgd_settings"]["batch_size"] for f in runs})):
            pts = sorted((f["sgd_settings"]["lr"], f["final_expert_error"], f["wall_s"])
                         for f in runs if f["sgd_settings"]["batch_size"] == batch)
            times = [t for _, _, t in pts]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="os^vD<>"[i % 7],
                    color=f"C{i}", label=f"batch {batch} ({min(times):.0f}–{max(times):.0f} s)")
        for j, (err, t) in enumerate(tensor_steps):
            ax.axhline(err, color="k", linestyle="--", linewidth=1,
                       label=f"tensor step (2 passes, {t:.1f} s)" if j == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Adam learning rate (cosine decay to 0)")
        ax.set_title(f"sgd, a {e}-epoch schedule: final expert error", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("expert error (matched, Frobenius)")
    n, seeds = fits[0]["n"], sorted({f["seed"] for f in done})
    fig.suptitle(f"n = {n:.0e}, d = {fits[0]['d']}, k = {fits[0]['k']}, "
                 f"{fits[0]['activation']} experts, seed{'s' if len(seeds) > 1 else ''} "
                 f"{', '.join(map(str, seeds))}\nwall time per fit in brackets", fontsize=10)
    fig.tight_layout()
    save_palette_png(fig, path)
    return True


def main(argv: list[str] | None = None) -> None:
    """Command line: ``fit`` (one fit per process) and ``collect``."""
    from moebench.constraints import Interval, argparse_type

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="one fit on the memmaps of --data")
    f.add_argument("--data", required=True, help="folder of moebench generate --out DIR")
    f.add_argument("--fit", required=True, choices=sorted(FITS))
    f.add_argument("--out", required=True, help="folder for <fit>.json")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--max-time", type=float, default=None,
                   help="wall-time cap (s) of the fit (the max_time option)")
    f.add_argument("--max-epochs", type=argparse_type(Interval(int, 1)), default=None,
                   help="sgd only: epochs of its schedule (default "
                        f"{FITS['sgd']['options']['max_epochs']}); writes sgd_<N>ep.json")
    f.add_argument("--lr", type=argparse_type(Interval(float, 0, None, "neither")),
                   default=None,
                   help="sgd only: learning rate (default: sgd's 0.05); adds _lr<LR> to the name")
    f.add_argument("--batch-size", type=argparse_type(Interval(int, 1)), default=None,
                   help="sgd only: minibatch rows (default: sgd's auto, 4096 at this n); "
                        "adds _b<B> to the name")
    c = sub.add_parser("collect", help="per-fit JSON files -> table and figure")
    c.add_argument("--runs", required=True, nargs="+",
                   help="folders of per-fit JSON files (one per seed)")
    c.add_argument("--out", required=True)
    c.add_argument("--figures", choices=("all", "curves", "grid"), default="all",
                   help="curves: figure.png (error against time and passes); grid: "
                        "sgd_grid.png (final error against sgd's learning rate per batch, "
                        "where a schedule was run with several); all (default): both")
    args = parser.parse_args(argv)
    if args.command == "fit" and FITS[args.fit]["algorithm"] != "sgd":
        for flag in ("max_epochs", "lr", "batch_size"):
            if getattr(args, flag) is not None:
                parser.error(f"--{flag.replace('_', '-')} applies to --fit sgd only, "
                             f"not --fit {args.fit}")
    if args.command == "fit":
        fit(args)
        return
    try:
        collect(args)
    except ValueError as exc:  # a choice the runs cannot serve: say so, as argparse does
        parser.error(str(exc))


if __name__ == "__main__":
    main()
