"""Sweep configurations: the TOML schema, its validation and the expansion into runs.

A config is a TOML file (or the name of one shipped in :mod:`moebench.configs`)::

    name = "quickstart"            # optional, defaults to the file name
    description = "..."            # optional
    seed = 0                       # base seed of every per-run seed
    repetitions = 3                # data sets (and algorithm seeds) per setting
    success_threshold = 0.1        # matched expert error below which a run succeeds

    [data]                         # every key takes a value or a list (a grid axis)
    n = [20000]
    d = 10
    k = 3
    activation = ["linear", "relu"]
    sigma = 0.1
    gating = "orthogonal"          # or "generic"
    gating_scale = 1.0
    min_angle = 0.0                # or expert_angle = 60.0 (every pair at that angle)
    gating_angle = 0.0             # optional: tilt of the gating rows into the experts' span
                                   # (degrees; 0 = orthogonal, the paper's assumption)
    input_distribution = "gaussian"  # or "uniform", "student_t", "laplace" (standardised)
    n_test = 10000                 # held-out rows drawn from the same true model

    [budget]                       # per run, for every algorithm (override per algorithm)
    max_iter = 100                 # passed to estimators that accept max_iter
    max_time = 60.0                # seconds: passed to estimators that accept max_time
    timeout = 150.0                # hard limit: the run is killed, status "timeout"

    [[algorithm]]
    name = "tensor_em"             # a registered algorithm (``moebench list``)
    label = "tensor_em_refine"     # the variant's name in tables and plots
    params = {refine = true}       # fixed estimator options
    grid = {}                      # options to sweep: each point is its own variant
    known_sigma = false            # pass the true sigma instead of estimating it
    activations = ["linear"]       # optional: run this variant on these data activations only
    only = {n = [100000], k = 3}   # optional: run this variant only where these data keys
                                   # take these values (a value or a list per key)

Data on disk: ``[data] memmap = "DIR"`` (the folder of ``moebench generate --out DIR``)
with the generator's keys (n, d, k, activation, sigma, gating, gating_scale, min_angle,
``generator_seed``: its ``--seed``) and n_test; the runs read X.npy and y.npy as memmaps
(:class:`moebench.sweep.data_sources.MemmapSource`).

Every table, key and value is checked before anything runs, through the declaration
of every key in :mod:`moebench.sweep.config_keys` (its constraint, default and doc);
an error names the key, the bad value and the valid choices.

Size: over 600 lines because the cross-key checks of a config (variants against data
settings, ``only``, ``cells``, truths) and its expansion into runs read the same parsed
tables; the keys themselves are declared in :mod:`moebench.sweep.config_keys`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from moebench.generator import check_input_design, make_moe_model, truth_model
from moebench.io import tomllib
from moebench.registry import algorithm_class, reference_algorithms
from moebench.sweep.columns import SYNTHETIC_SETTING_COLUMNS
from moebench.sweep.config_keys import (  # noqa: F401 (ConfigError: the sweep's config error)
    ALGORITHM,
    BUDGET,
    CELLS_KEY,
    CSV,
    FAMILY_DATA_KEYS,
    MEMMAP,
    MEMMAP_KEY,
    REPORT,
    SOURCE,
    SYNTHETIC,
    TOP,
    ConfigError,
    ConfigTable,
    refuse_unknown,
)

#: the synthetic data keys: the setting columns and the softmax-gated family's optional
#: keys (k_fit, truth, input_interval)
SYNTHETIC_DATA_KEYS = (*SYNTHETIC_SETTING_COLUMNS, *FAMILY_DATA_KEYS)
#: estimator arguments the runner sets itself
RESERVED_PARAMS = ("n_experts", "activation", "random_state", "sigma")
#: defaults of the synthetic data-setting keys (``cells`` is not one)
DATA_DEFAULTS: dict[str, Any] = {key: SYNTHETIC[key].default for key in SYNTHETIC_DATA_KEYS}
#: data keys left out of run ids and seeds while at their default (ids stay stable when
#: such an option is added)
OPTIONAL_DATA_DEFAULTS: dict[str, Any] = {"expert_angle": None, "gating_angle": None,
                                          "input_distribution": "gaussian",
                                          **{key: None for key in FAMILY_DATA_KEYS}}
#: the data keys that make_moe_model checks (a setting is validated once per distinct value)
MODEL_KEYS = ("d", "k", "activation", "sigma", "gating", "gating_scale", "min_angle",
              "expert_angle", "gating_angle")


# --------------------------------------------------------------------------- loading
def named_configs() -> list[str]:
    """Names of the configs shipped in :mod:`moebench.configs`."""
    root = resources.files("moebench.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def resolve_config(ref: str | Path) -> tuple[str, str]:
    """Find a config by path or shipped name; return (its text, a description of where)."""
    path = Path(ref)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not a TOML text file (not UTF-8: byte "
                              f"{exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})"
                              ) from None
    name = str(ref)
    name = name[:-5] if name.endswith(".toml") else name
    if "/" not in name and "\\" not in name:
        res = resources.files("moebench.configs") / f"{name}.toml"
        if res.is_file():
            return res.read_text(), f"moebench/configs/{name}.toml"
    raise FileNotFoundError(
        f"no config file {str(ref)!r} and no shipped config of that name; shipped configs: "
        f"{', '.join(named_configs()) or '(none)'}"
    )


# --------------------------------------------------------------------------- model
@dataclass(frozen=True)
class Variant:
    """One algorithm variant: a registered algorithm, its options and budgets."""

    label: str
    algorithm: str
    params: dict[str, Any]
    max_iter: int
    max_time: float
    timeout: float
    known_sigma: bool = False
    #: module that registers the algorithm (imported by worker processes)
    module: str = ""
    #: data activations this variant runs on (None: all)
    activations: tuple[str, ...] | None = None
    #: data-setting keys the algorithm fixes whatever the grid says (a reference model's
    #: ``fixed_setting``, e.g. k = 1 and linear for the linear regression)
    setting: dict[str, Any] = field(default_factory=dict)
    #: data keys -> the values this variant runs on (``only`` in the config; empty: all)
    only: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def runs_on(self, data: dict[str, Any]) -> bool:
        """Whether the variant runs on the data setting ``data`` (``activations``, ``only``)."""
        if self.activations is not None and data["activation"] not in self.activations:
            return False
        return all(data.get(key) in values for key, values in self.only.items())

    def key(self) -> dict[str, Any]:
        """What identifies the variant (its seeds and run ids derive from it)."""
        return {"label": self.label, "algorithm": self.algorithm, "params": self.params,
                "max_iter": self.max_iter, "max_time": self.max_time,
                "known_sigma": self.known_sigma}


@dataclass(frozen=True)
class Run:
    """One run: a data setting, an algorithm variant and a repetition."""

    data: dict[str, Any]
    variant: Variant
    repetition: int
    seed: int
    success_threshold: float

    @property
    def data_key(self) -> dict[str, Any]:
        """The data setting less optional keys at their defaults (what ids and seeds hash).

        A CSV source is identified by its file's name and content digest, not by where the
        file lies: the same data give the same run ids, seeds and folds in any clone.
        """
        key = {k: v for k, v in self.data.items()
               if not (k in OPTIONAL_DATA_DEFAULTS and v == OPTIONAL_DATA_DEFAULTS[k])}
        source = key.get("source")
        if isinstance(source, dict) and "digest" in source:
            key["source"] = {**source, "csv": Path(source["csv"]).name}
        # a memmap data set is identified by its generator parameters (the other keys),
        # which its params.json must match when it is loaded, not by its folder
        key.pop(MEMMAP_KEY, None)
        return key

    @property
    def data_id(self) -> str:
        """Identifies the data set (same for every variant of a repetition)."""
        return stable_hash({"data": self.data_key, "rep": self.repetition, "seed": self.seed})

    @property
    def run_id(self) -> str:
        """Stable id of the run: a hash of everything that determines its result."""
        return stable_hash({"data": self.data_key, "variant": self.variant.key(),
                            "rep": self.repetition, "seed": self.seed,
                            "threshold": self.success_threshold})

    def data_seed(self, *salt: str) -> np.random.SeedSequence:
        """Seed of the data: base seed, data setting (less ``n`` and ``salt`` keys), repetition."""
        return data_seed_sequence(self.seed, self.data_key, self.repetition, *salt)

    def algorithm_seed(self) -> int:
        """random_state of the estimator: base seed, data setting, variant, repetition."""
        ss = np.random.SeedSequence(
            [self.seed, *hash_words(self.data_key), *hash_words(self.variant.key()),
             self.repetition, 2])
        hi, lo = ss.generate_state(2, np.uint32)
        return int(hi) << 32 | int(lo)


@dataclass
class SweepConfig:
    """A validated sweep config."""

    name: str
    source: str
    seed: int
    repetitions: int
    success_threshold: float
    data_grid: list[dict[str, Any]]
    variants: list[Variant]
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Run]:
        """Every run of the sweep, in a fixed order (setting, repetition, variant).

        A variant that fixes part of the setting (the real-data reference: k = 1,
        linear) runs once per remaining setting and repetition. Builds the whole list:
        :meth:`iter_cells` streams it, :meth:`pairs` and :func:`count_runs` count it.
        """
        return list(self.iter_cells())

    def iter_cells(self) -> Iterator[Run]:
        """The runs of :meth:`cells`, one at a time (memory: the settings, not the runs)."""
        pairs = self.pairs()
        by_setting: dict[int, list[tuple[Variant, dict[str, Any]]]] = {}
        for i, v, d in pairs:
            by_setting.setdefault(i, []).append((v, d))
        for i in sorted(by_setting):
            for rep in range(self.repetitions):
                for v, d in by_setting[i]:
                    yield Run(d, v, rep, self.seed, self.success_threshold)

    def pairs(self) -> list[tuple[int, Variant, dict[str, Any]]]:
        """(index of the data setting, variant, the variant's setting) of every distinct
        (setting, variant) pair, in the order of :meth:`cells`.

        Each pair runs once per repetition. A variant that fixes part of the setting
        (the real-data reference) keeps only the first setting that reduces to each of
        its distinct settings, so that no run appears twice.
        """
        out: list[tuple[int, Variant, dict[str, Any]]] = []
        seen: set[tuple[str, str]] = set()
        for i, data in enumerate(self.data_grid):
            for v in self.variants:
                if not v.runs_on(data):
                    continue
                if v.setting:
                    d = {**data, **v.setting}
                    key = (v.label, _canonical(d))
                    if key in seen:
                        continue
                    seen.add(key)
                else:
                    d = data
                out.append((i, v, d))
        return out

    @property
    def is_real_data(self) -> bool:
        return bool(self.data_grid) and "source" in self.data_grid[0]


# --------------------------------------------------------------------------- hashing
def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (stable across runs and machines)."""
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()[:length]


def hash_words(obj: Any) -> list[int]:
    """Four 32-bit words of the hash of ``obj``, for SeedSequence entropy."""
    digest = hashlib.sha256(_canonical(obj).encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def data_seed_sequence(seed: int, data: dict[str, Any], repetition: int, *salt: str
                       ) -> np.random.SeedSequence:
    """SeedSequence of a data set from (base seed, data setting without ``salt`` keys, rep)."""
    reduced = {key: value for key, value in data.items() if key not in salt}
    return np.random.SeedSequence([seed, *hash_words(reduced), repetition, 1])


# --------------------------------------------------------------------------- validation
# Each key is checked by its declaration (moebench.sweep.config_keys); what is checked here
# is what no single key declares: grids, budgets against each class, settings against
# the generator and the algorithms, labels against each other.
def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _check_memmap(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid of a memmap sweep: the keys of :data:`~moebench.sweep.config_keys.MEMMAP`
    (those of ``moebench generate``, plus ``generator_seed``); every setting names the
    folder ``memmap``."""
    MEMMAP.check_known(data, "data.")
    folder = MEMMAP.get(data, MEMMAP_KEY, "data.")
    rest = {key: value for key, value in data.items() if key != MEMMAP_KEY}
    grid = _check_synthetic(rest, MEMMAP)
    for setting in grid:
        setting[MEMMAP_KEY] = folder
    return grid


def _cell_keys(table: ConfigTable) -> tuple[str, ...]:
    """The keys of ``table`` (synthetic or memmap) that a cell of ``cells`` may set."""
    return tuple(k for k in table.names() if k not in (CELLS_KEY, MEMMAP_KEY))


def _setting_keys(table: ConfigTable) -> tuple[str, ...]:
    """The data-setting keys of a grid of ``table``: every synthetic setting key (at its
    default where ``table`` does not take it) and ``table``'s own (``generator_seed``)."""
    return tuple(dict.fromkeys(SYNTHETIC_DATA_KEYS + _cell_keys(table)))


def _check_synthetic(data: dict[str, Any], table: ConfigTable = SYNTHETIC
                     ) -> list[dict[str, Any]]:
    """The grid of a synthetic ``[data]`` table (``table``: the keys it may hold, the
    memmap sweep's :data:`~moebench.sweep.config_keys.MEMMAP` less ``memmap``)."""
    table.check_known(data, "data.")
    if CELLS_KEY not in data:
        return _synthetic_grid(data, table)
    try:
        cells = table.get(data, CELLS_KEY, "data.")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; e.g. cells = [{{k = 2, sigma = 0.05}}, {{k = 4, sigma = "
                          f"[0.05, 0.5]}}]") from None
    base = {key: value for key, value in data.items() if key != CELLS_KEY}
    grid: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, cell in enumerate(cells):
        if MEMMAP_KEY in cell and MEMMAP_KEY in table.names():
            raise ConfigError(f"data.cells[{i}].memmap: the folder is one path for the sweep; "
                              f"set it in [data] only")
        refuse_unknown(cell, _cell_keys(table), f"data.cells[{i}].")
        for setting in _synthetic_grid({**base, **cell}, table):
            key = _canonical(setting)
            if key not in seen:  # overlapping cells run once
                seen.add(key)
                grid.append(setting)
    return grid


def _synthetic_grid(data: dict[str, Any], table: ConfigTable = SYNTHETIC
                    ) -> list[dict[str, Any]]:
    """The product grid of one table of synthetic data keys, every setting checked."""
    # a value listed twice is one grid point (the runs would be the same)
    axes = {}
    for key in _setting_keys(table):
        declared = table if key in table.names() else SYNTHETIC
        values = declared[key].axis(declared.get(data, key, "data."))
        axes[key] = list({_canonical(v): v for v in values}.values())
    grid = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    checked: set[str] = set()
    for setting in grid:
        model = {key: setting[key] for key in (*MODEL_KEYS, "truth", "input_distribution",
                                               "input_interval")}
        key = _canonical(model)
        if key in checked:  # n, n_test, k_fit do not change the model
            continue
        checked.add(key)
        try:  # catches k > d, orthogonal gating without room, impossible angles
            check_input_design(model["input_distribution"], model["d"], model["input_interval"])
            if model["truth"] is not None:
                truth_model(model["truth"], model["d"], model["k"], model["activation"])
            else:
                make_moe_model(model["d"], model["k"], model["activation"], model["sigma"],
                               model["gating"], model["gating_scale"], model["min_angle"],
                               model["expert_angle"], random_state=0,
                               gating_angle=model["gating_angle"])
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"data setting {_canonical(setting)} is invalid: {exc}") from None
    return grid


def _check_csv(data: dict[str, Any]) -> list[dict[str, Any]]:
    CSV.check_known(data, "data.")
    source = CSV.get(data, "source", "data.")
    SOURCE.check_known(source, "data.source.")
    src = {key: SOURCE.get(source, key, "data.source.") for key in SOURCE.names()}
    ks = _as_list(CSV.get(data, "k", "data."))
    acts = _as_list(CSV.get(data, "activation", "data."))
    folds = CSV.get(data, "folds", "data.")
    from moebench.sweep.data_sources import file_digest, load_csv_source

    table = load_csv_source(src)  # fails now, not mid-sweep, on a missing file or column
    if folds > len(table.y):
        raise ConfigError(f"data.folds = {folds} exceeds the number of rows of "
                          f"{Path(table.path).name} ({len(table.y)}); valid: 2 to "
                          f"{len(table.y)} (every held-out fold needs rows)")
    src["features"] = list(table.features)
    src["csv"] = table.path  # absolute: workers (and dask workers) may run elsewhere
    src["digest"] = file_digest(table.path)  # the identity the ids and seeds hash
    return [{"source": src, "k": k, "activation": a, "folds": folds, "fold": f}
            for k in ks for a in acts for f in range(folds)]


def _check_budget(table: dict[str, Any], where: str, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the budgets ``table`` sets ([budget] or an [[algorithm]] table)."""
    out = dict(base)
    for key in BUDGET:  # the same declarations serve both tables
        if key.name in table:
            value = key.check(table[key.name], f"{where}{key.name}")
            out[key.name] = value if key.name == "max_iter" else float(value)
    return out


def _check_algorithms(entries: Any, budget: dict[str, Any]) -> list[Variant]:
    if entries is None or entries == []:
        raise ConfigError("the config needs at least one [[algorithm]] table")
    TOP["algorithm"].check(entries, "algorithm")
    variants: list[Variant] = []
    for i, entry in enumerate(entries):
        where = f"algorithm[{i}]."
        ALGORITHM.check_known(entry, where)
        name = ALGORITHM.get(entry, "name", where)
        cls = algorithm_class(name)
        valid = [p for p in cls._get_param_names() if p not in RESERVED_PARAMS]
        params = ALGORITHM.get(entry, "params", where)
        grid = ALGORITHM.get(entry, "grid", where)
        for tname, table in (("params", params), ("grid", grid)):
            for key in table:
                if key in RESERVED_PARAMS:
                    raise ConfigError(
                        f"{where}{tname}.{key} is set by the runner (from the data setting and "
                        f"the seeds); remove it" + ("; use known_sigma = true to pass the true "
                                                    "sigma" if key == "sigma" else ""))
            refuse_unknown(table, tuple(valid), f"{where}{tname}.")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}grid.{key} must be a non-empty list of values")
        b = _check_budget(entry, where, budget)
        for key, param in cls.budget_parameters.items():
            if param in params or param in grid:
                raise ConfigError(f"{where}params.{param} carries the {key} budget: set budgets "
                                  f"with {where}{key} or [budget] {key}, not in params")
        # every option against the class's own declaration (what fit would check)
        checks = [(f"{where}params", params)]
        checks += [(f"{where}grid.{key}", {key: value}) for key, values in grid.items()
                   for value in values]
        checks.append((f"{where[:-1]} budget", cls.budget_options(max_iter=b["max_iter"],
                                                                   max_time=b["max_time"])))
        for what, values in checks:
            try:
                cls.check_params(values)
            except ValueError as exc:
                raise ConfigError(f"{what}: {exc}") from None
        timeout = b["timeout"] if b["timeout"] is not None else 2.0 * b["max_time"] + 30.0
        known_sigma = ALGORITHM.get(entry, "known_sigma", where)
        label = ALGORITHM.get(entry, "label", where) or name
        acts = ALGORITHM.get(entry, "activations", where)
        acts = tuple(acts) if acts is not None else None
        only = _check_only(ALGORITHM.get(entry, "only", where), where)
        points = [dict(zip(grid, combo, strict=True))
                  for combo in itertools.product(*grid.values())]
        for point in points:
            suffix = ",".join(f"{k}={v}" for k, v in point.items())
            variants.append(Variant(
                label=f"{label}[{suffix}]" if suffix else label, algorithm=name,
                params={**params, **point}, max_iter=b["max_iter"], max_time=b["max_time"],
                timeout=timeout, known_sigma=known_sigma, module=cls.__module__,
                activations=acts, only=only))
    labels = [v.label for v in variants]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise ConfigError(f"algorithm label {dup[0]!r} is used twice; give each variant its own "
                          f"label")
    return variants


def _check_only(only: dict[str, Any], where: str) -> dict[str, tuple[Any, ...]]:
    """``only = {key = value or [values]}``: data keys (synthetic, memmap or CSV), each value
    checked by the key's declaration."""
    data_keys = {**{key.name: key for key in CSV if key.name != "source"},
                 **{key.name: key for key in MEMMAP if key.name != CELLS_KEY},
                 **{key: SYNTHETIC[key] for key in SYNTHETIC_DATA_KEYS}}
    refuse_unknown(only, tuple(data_keys), f"{where}only.")
    out = {}
    for key, values in only.items():
        values = _as_list(values)
        if not values:
            raise ConfigError(f"{where}only.{key} is an empty list; give at least one value")
        for value in values:
            data_keys[key].check_one(value, f"{where}only.{key}")
        out[key] = tuple(values)
    return out


def _reference_variants(variants: list[Variant], budget: dict[str, Any]) -> list[Variant]:
    """One variant per registered reference model (``reference = True``), for real data.

    Each runs once (max_iter 1, no options) with the data setting its class fixes;
    its label is its name, which no other variant may take.
    """
    out = []
    for name in reference_algorithms():
        if any(v.label == name for v in variants):
            raise ConfigError(f"label {name!r} is reserved for the {name} reference of "
                              f"real-data sweeps; choose another label")
        cls = algorithm_class(name)
        timeout = budget["timeout"] if budget["timeout"] is not None else 60.0
        out.append(Variant(name, name, {}, 1, budget["max_time"], timeout,
                           module=cls.__module__,
                           setting=dict(getattr(cls, "fixed_setting", {}))))
    return out


def _refuse_oracles(variants: list[Variant]) -> None:
    """An oracle (``needs_truth = True``) needs the true parameters: synthetic data only."""
    for v in variants:
        if algorithm_class(v.algorithm).needs_truth:
            raise ConfigError(
                f"algorithm {v.algorithm!r} (variant {v.label!r}) is an oracle: it needs the "
                f"true parameters, which a CSV data source (data.source) does not have; run it "
                f"on synthetic data ([data] without source), or remove it")


def _check_setting(v: Variant, grid: list[dict[str, Any]]) -> None:
    """Refuse a variant whose ``only`` matches no setting, or that cannot run a setting it
    runs on (the class's own capability check, the one its fit runs)."""
    cls = algorithm_class(v.algorithm)
    if v.only and not any(v.runs_on(setting) for setting in grid):
        raise ConfigError(
            f"variant {v.label!r}: only = {_canonical({k: list(x) for k, x in v.only.items()})}"
            f" matches none of the {len(grid)} data setting(s); valid values: "
            + "; ".join(f"{key}: {sorted({str(s.get(key)) for s in grid})}" for key in v.only))
    checked: set[tuple[Any, ...]] = set()
    for setting in grid:
        if not v.runs_on(setting):
            continue
        setting = {**setting, **v.setting}
        act = setting["activation"]
        d = setting["d"] if "d" in setting else len(setting["source"]["features"])
        k = setting["k"] if setting.get("k_fit") is None else setting["k_fit"]
        biased = isinstance(setting.get("truth"), dict) and any(
            setting["truth"].get(key) is not None for key in ("expert_bias", "gating_bias"))
        if (k, d, act, biased) in checked:  # each distinct setting once
            continue
        checked.add((k, d, act, biased))
        try:
            cls.check_setting(k, d, act, params=v.params)
            if isinstance(setting.get("truth"), dict) and setting["truth"].get(
                    "gate") is not None and not cls.fits_regression:
                raise ValueError("data.truth has a gate (a regression MoE y = f_G(x) + "
                                 "noise), which only a regression fit (fits_regression, "
                                 "e.g. lse_moe) models")
            if biased and cls.excludes_biases(v.params):
                raise ValueError("its model has no gating biases or expert intercepts "
                                 "(the tensor step); valid on data.truth without "
                                 "expert_bias and gating_bias")
        except ValueError as exc:
            raise ConfigError(
                f"algorithm {v.algorithm!r} (variant {v.label!r}) cannot run the data "
                f"setting k={k}, d={d}, activation={act!r}: {exc} (restrict it "
                f"with activations = [...] in its [[algorithm]] table, or change [data])"
            ) from None


def validate_config(raw: dict[str, Any], name: str = "sweep", source: str = "<dict>"
                    ) -> SweepConfig:
    """Check a parsed config and expand it; raises :class:`ConfigError` before anything runs."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a TOML table")
    TOP.check_known(raw, "")
    cname = raw.get("name", name)
    TOP["name"].check(cname, "name" if "name" in raw else
                      "name (from the file name; set name = \"...\" to choose one)")
    seed = TOP.get(raw, "seed", "")
    reps = TOP.get(raw, "repetitions", "")
    threshold = float(TOP.get(raw, "success_threshold", ""))
    desc = TOP.get(raw, "description", "")
    data = TOP.get(raw, "data", "") or {}
    grid = (_check_csv(data) if "source" in data
            else _check_memmap(data) if MEMMAP_KEY in data else _check_synthetic(data))
    budget_raw = TOP.get(raw, "budget", "") or {}
    BUDGET.check_known(budget_raw, "budget.")
    budget = _check_budget(budget_raw, "budget.", BUDGET.defaults())
    variants = _check_algorithms(raw.get("algorithm"), budget)
    if "source" in data:
        _refuse_oracles(variants)
        variants += _reference_variants(variants, budget)
    for v in variants:
        _check_setting(v, grid)
    report = TOP.get(raw, "report", "")
    if report is not None:  # the figures' and tables' settings (moebench.sweep.style)
        from moebench.sweep.style import check_report_table

        REPORT.check_known(report, "report.")
        for key in REPORT.names():
            REPORT.get(report, key, "report.")
        try:
            check_report_table(report, [v.label for v in variants])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return SweepConfig(cname, source, seed, reps, threshold, grid, variants, desc, raw)


def load_config(ref: str | Path) -> SweepConfig:
    """Read and validate a config given by path or shipped name (``quickstart``)."""
    text, where = resolve_config(ref)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    try:
        return validate_config(raw, Path(where).stem, where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
