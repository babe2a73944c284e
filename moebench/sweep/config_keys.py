"""Every sweep config key, declared once: its constraint, default and one-line doc.

A key's valid values are declared with the constraint types of the estimators' options
(:mod:`moebench.constraints`: :class:`~moebench.constraints.Interval`,
:class:`~moebench.constraints.Options`, ...). :mod:`moebench.sweep.config` checks a
config through these declarations, the docs' config reference is rendered from them
(:func:`reference_markdown`, called by the ``config-reference`` directive when the docs
are built), and the command-line options that mirror a key (``generate --n``,
``--sigma``, ..., ``--seed``) take their argparse type from the key
(:meth:`ConfigKey.argparse_type`), so a bad value reads the same in a config and on the
command line. The options of the commands that are not config keys but share the
sweep's checks (``--jobs``) are declared here too (:data:`JOBS`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from moebench.activations import available_activations
from moebench.constraints import (
    InstanceOf,
    Interval,
    ListOf,
    Matches,
    Options,
    argparse_type,
    make_constraint,
    validate_parameter,
)
from moebench.generator import GATING_KINDS, INPUT_DISTRIBUTIONS
from moebench.registry import available_algorithms


class ConfigError(ValueError):
    """A sweep config that cannot run; the message names the key and the valid choices."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: marks a key without a default: the config must give it
REQUIRED = _Required()


@dataclass(frozen=True)
class ConfigKey:
    """One config key: its name, valid values, default and meaning.

    Parameters
    ----------
    name : str
        The key as written in the TOML table.
    constraint : constraint
        Its valid values (a declaration entry of :func:`moebench.constraints.make_constraint`).
    default : object
        The value a config that leaves the key out gets (None: the key is optional and has
        no value then; :data:`REQUIRED`: the config must give it).
    doc : str
        One line (MyST Markdown) for the config reference.
    grid : bool
        A list of values makes a grid axis (the synthetic ``[data]`` keys): each element
        is checked, and the list must not be empty.
    """

    name: str
    constraint: Any
    default: Any
    doc: str
    grid: bool = False

    def check(self, value: Any, where: str) -> Any:
        """``value`` (one value, or for a grid key a value or a list) if valid.

        Raises
        ------
        ConfigError
            ``"<where> must be <valid values>; got <value>"`` (for options: ``"unknown
            <where> <value>; valid choices are ..."``); for a grid key, an empty list.
        """
        if self.grid and isinstance(value, list) and self._is_axis(value):
            if not value:
                raise ConfigError(f"{where} is an empty list; give at least one value")
            for v in value:
                self.check_one(v, where)
            return value
        return self.check_one(value, where)

    def _is_axis(self, value: list[Any]) -> bool:
        """Whether the list ``value`` of a grid key lists values (a grid axis): always, but
        for a key whose one value is itself a list (``input_interval = [low, high]``),
        where only a list of lists is an axis."""
        if not isinstance(self.constraint, ListOf):
            return True
        return bool(value) and all(isinstance(v, list) for v in value)

    def axis(self, value: Any) -> list[Any]:
        """The values of a grid axis: ``value``'s elements where it lists values, else
        ``[value]`` (a checked value: :meth:`check`)."""
        return list(value) if self.grid and isinstance(value, list) and self._is_axis(value) \
            else [value]

    def check_one(self, value: Any, where: str) -> Any:
        """``value`` if one value is valid under the key's constraint (lists are values)."""
        try:
            return validate_parameter(where, value, [self.constraint])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def describe(self) -> str:
        """The valid values in words (the constraint's description)."""
        return str(make_constraint(self.constraint))

    def argparse_type(self) -> Callable[[str], Any]:
        """The argparse ``type=`` of a command-line option that mirrors this key."""
        return argparse_type(self.constraint)


@dataclass(frozen=True)
class ConfigTable:
    """The keys of one TOML table, in the order the reference lists them."""

    name: str
    title: str
    keys: tuple[ConfigKey, ...]

    def __getitem__(self, name: str) -> ConfigKey:
        for key in self.keys:
            if key.name == name:
                return key
        raise KeyError(f"no key {name!r} in the {self.name} table; valid: "
                       f"{', '.join(self.names())}")

    def __iter__(self) -> Iterator[ConfigKey]:
        return iter(self.keys)

    def names(self) -> tuple[str, ...]:
        """The key names."""
        return tuple(key.name for key in self.keys)

    def defaults(self) -> dict[str, Any]:
        """``{name: default}`` of the keys that have one (not :data:`REQUIRED`)."""
        return {key.name: key.default for key in self.keys if key.default is not REQUIRED}

    def check_known(self, table: Mapping[str, Any], where: str) -> None:
        """Refuse a key of ``table`` that this table does not declare.

        Raises
        ------
        ConfigError
            ``"unknown key <where>'<key>'; valid keys: ..."``.
        """
        refuse_unknown(table, self.names(), where)

    def get(self, table: Mapping[str, Any], name: str, where: str) -> Any:
        """The checked value of key ``name`` in ``table``, or its default.

        Raises
        ------
        ConfigError
            For a missing :data:`REQUIRED` key, or a value outside the key's constraint.
        """
        key = self[name]
        if name not in table:
            if key.default is REQUIRED:
                raise ConfigError(f"{where}{name} is required; valid: {key.describe()}")
            return copy.copy(key.default)  # a fresh {} for every table
        return key.check(table[name], f"{where}{name}")


def refuse_unknown(keys: Any, valid: tuple[str, ...], where: str) -> None:
    """Refuse the names in ``keys`` that are not in ``valid`` (the first named, valid listed).

    Raises
    ------
    ConfigError
        ``"unknown key <where>'<key>' (and ...); valid keys: ..."``.
    """
    bad = sorted(set(keys) - set(valid))
    if bad:
        raise ConfigError(
            f"unknown key {where}{bad[0]!r}" + (f" (and {', '.join(map(repr, bad[1:]))})"
                                                if len(bad) > 1 else "")
            + f"; valid keys: {', '.join(valid)}")


# --------------------------------------------------------------------------- shared constraints
#: what a config name may be (it names the folder results/<name>)
CONFIG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_NAME = Matches(CONFIG_NAME, "a plain name: 1 to 100 letters, digits, '_', '-' or '.', not "
                "starting with '.' or '-' (no '/', no '..', not an absolute path)")
_STRING = InstanceOf(str, "a string")
_OPTIONS_TABLE = InstanceOf(dict, "a table of estimator options")
_LABEL = Matches(re.compile(r".+", re.S), "a non-empty string")
_POSITIVE = Interval(float, 0, None, closed="neither")
_ACTIVATION = Options(available_activations)
_ANGLE = Interval(float, 0, 90)

#: the parallel processes of ``moebench run`` and ``moebench classify`` (``--jobs``),
#: checked by their argparse type and by :func:`moebench.sweep.runner.run_sweep` and
#: :func:`moebench.sweep.classify.classify_results` alike
JOBS = Interval(int, 1)


# --------------------------------------------------------------------------- the tables
TOP = ConfigTable("top", "Top-level keys", (
    ConfigKey("name", _NAME, None, "results go to `results/<name>/` (none: the file name)"),
    ConfigKey("description", _STRING, "", "free text, shown nowhere but kept with the results"),
    ConfigKey("seed", Interval(int, 0), 0, "base seed of every per-run seed"),
    ConfigKey("repetitions", Interval(int, 1), 1,
              "data sets (and algorithm seeds) per data setting"),
    ConfigKey("success_threshold", _POSITIVE, 0.1,
              "a run succeeds when its matched expert error is below this"),
    ConfigKey("data", InstanceOf(dict, "a table ([data])"), None,
              "the `[data]` table: a synthetic grid, data on disk or a CSV source (below)"),
    ConfigKey("budget", InstanceOf(dict, "a table ([budget])"), None,
              "the `[budget]` table: defaults for every algorithm (below)"),
    ConfigKey("algorithm", ListOf(InstanceOf(dict, "an [[algorithm]] table")), REQUIRED,
              "one `[[algorithm]]` table per variant (below); at least one"),
    ConfigKey("report", InstanceOf(dict, "a table ([report])"), None,
              "the `[report]` table: colours and references of the figures and tables "
              "(below)"),
))

#: synthetic ``[data]``: every key but ``cells`` takes a value or a list (a grid axis)
SYNTHETIC = ConfigTable(
    "data", "`[data]`: synthetic data (a list of values is a grid axis: the grid is their "
    "product)", (
        ConfigKey("n", Interval(int, 1), 10_000, "training rows", grid=True),
        ConfigKey("d", Interval(int, 1), 10, "input dimension", grid=True),
        ConfigKey("k", Interval(int, 2), 3,
                  "number of experts (k <= d where an algorithm needs it)", grid=True),
        ConfigKey("activation", _ACTIVATION, "linear", "the experts' activation g "
                  "(`moebench list`)", grid=True),
        ConfigKey("sigma", _POSITIVE, 0.1, "label noise standard deviation", grid=True),
        ConfigKey("gating", Options(GATING_KINDS), "orthogonal",
                  "gating rows orthogonal to every expert (the paper's assumption) or "
                  "isotropic", grid=True),
        ConfigKey("gating_scale", Interval(float, 0), 1.0,
                  "norm of the gating rows (0: constant mixing)", grid=True),
        ConfigKey("min_angle", _ANGLE, 0.0,
                  "minimum pairwise angle between experts, degrees", grid=True),
        ConfigKey("expert_angle", Interval(float, 0, 90, closed="right"), None,
                  "every pair of experts at exactly this angle, degrees; replaces "
                  "`min_angle`", grid=True),
        ConfigKey("gating_angle", _ANGLE, None,
                  "tilt of the gating rows into the experts' span, degrees (0: orthogonal, "
                  "90: inside the span)", grid=True),
        ConfigKey("input_distribution", Options(INPUT_DISTRIBUTIONS), "gaussian",
                  "law of the (standardised) inputs", grid=True),
        ConfigKey("n_test", Interval(int, 2), 10_000,
                  "held-out rows drawn from the same true model", grid=True),
        ConfigKey("k_fit", Interval(int, 2), None,
                  "experts the estimators fit (none: `k`, the truth's); a list fits several "
                  "k to the same data (over-specified fits)", grid=True),
        ConfigKey("truth", InstanceOf(dict, "a table {experts, gating, expert_bias, "
                                      "gating_bias, sigma, gate}"), None,
                  "an explicit true model instead of a random one: `experts` and `gating` "
                  "(k x d lists), optional `expert_bias`, `gating_bias` (k) and `sigma` (a "
                  "number or k standard deviations); `d` and `k` must match it. With `gate` "
                  "(\"softmax\" or \"sigmoid\") it is the regression MoE y = f_G(x) + "
                  "N(0, sigma^2) (one sigma), fitted by `lse_moe` only", grid=True),
        ConfigKey("input_interval", ListOf(Interval(float, None, None), min_items=2,
                                           max_items=2), None,
                  "`[low, high]` of `input_distribution = \"uniform\"` (none: [-sqrt 3, "
                  "sqrt 3]) or `\"grid\"` (the fixed design linspace(low, high, n), d = 1; "
                  "none: [0, 1]); a list of such pairs is a grid axis", grid=True),
        ConfigKey("cells", ListOf(InstanceOf(dict, "a table of data keys")), None,
                  "explicit cells instead of one product grid: a list of tables of data "
                  "keys (e.g. `[{k = 2, sigma = 0.05}, {k = 4, sigma = 0.5}]`), each a grid "
                  "over the other `[data]` values; the sweep runs their union once"),
    ))
#: the synthetic ``[data]`` key that lists explicit cells (not a data-setting key)
CELLS_KEY = "cells"
#: the softmax-gated family's synthetic keys (issue 29): fitted k, an explicit truth, the
#: input interval; optional (left out of run ids, seeds and summaries while None), so not
#: setting columns of every results table
FAMILY_DATA_KEYS = ("k_fit", "truth", "input_interval")

#: the synthetic keys a ``[data] memmap`` sweep takes (those of ``moebench generate``)
_GENERATE_KEYS = ("n", "d", "k", "activation", "sigma", "gating", "gating_scale", "min_angle",
                  "n_test")
#: the ``[data]`` key that names the folder of a sweep on data on disk (not a setting key
#: of the grid: one path for the sweep, set in ``[data]`` only)
MEMMAP_KEY = "memmap"

MEMMAP = ConfigTable(
    "data", "`[data]`: data on disk, the memmaps of `moebench generate --out DIR` "
    "(`memmap` present; see [Data on disk](#data-on-disk))", (
        ConfigKey(MEMMAP_KEY, Matches(re.compile(r".+", re.S), "the folder of `moebench "
                                      "generate --out DIR` (one path)"), REQUIRED,
                  "the folder holding X.npy and y.npy (relative: from the current "
                  "directory); one path for the sweep, set in `[data]` only"),
        *(SYNTHETIC[name] for name in _GENERATE_KEYS),
        ConfigKey("generator_seed", Interval(int, 0), 0,
                  "the data set: the `--seed` of `moebench generate` that wrote the folder "
                  "(checked against the folder's record)", grid=True),
        SYNTHETIC[CELLS_KEY],
    ))

CSV = ConfigTable("csv", "`[data]`: real data from a CSV file (`source` present)", (
    ConfigKey("source", InstanceOf(dict, 'a table {csv = "path", target = "column", ...}'),
              REQUIRED,
              "`{csv = \"path\", target = \"column\", ...}`: read a CSV/TSV file (keys below)"),
    ConfigKey("k", Interval(int, 2), 2, "number of experts", grid=True),
    ConfigKey("activation", _ACTIVATION, "linear", "the experts' activation g", grid=True),
    ConfigKey("folds", Interval(int, 2), 5,
              "k-fold cross-validation folds (at most the number of rows)"),
))

SOURCE = ConfigTable("source", "`[data] source = {...}`", (
    ConfigKey("csv", _STRING, REQUIRED,
              "path of the CSV or TSV file (relative: from the current directory)"),
    ConfigKey("target", _STRING, REQUIRED, "name of the target column"),
    ConfigKey("features", ListOf(_STRING, min_items=0), None,
              "the input columns (none: every column but the target)"),
    ConfigKey("sep", _STRING, "auto", "the separator; `\"auto\"` sniffs it"),
))

#: the budgets: in ``[budget]`` and, overriding it, in each ``[[algorithm]]`` (the same keys)
BUDGET = ConfigTable("budget", "`[budget]`: defaults for every algorithm", (
    ConfigKey("max_iter", Interval(int, 1), 200,
              "iteration budget, passed to estimators that declare one"),
    ConfigKey("max_time", _POSITIVE, 60.0,
              "time budget in seconds, passed to estimators that declare one"),
    ConfigKey("timeout", _POSITIVE, None, "hard limit in seconds: the run is killed and "
              "recorded as `timeout` (none: 2 * max_time + 30)"),
))

ALGORITHM = ConfigTable("algorithm", "`[[algorithm]]`: one table per variant", (
    ConfigKey("name", Options(lambda: available_algorithms(oracles=True)), REQUIRED,
              "a registered algorithm"),
    ConfigKey("label", _LABEL, None,
              "the variant's name in tables and figures (none: the algorithm's name)"),
    ConfigKey("params", _OPTIONS_TABLE, {},
              "fixed estimator options, checked against the class's "
              "`_parameter_constraints` (see [Algorithms](algorithms.md))"),
    ConfigKey("grid", _OPTIONS_TABLE, {},
              "options to sweep: `{option = [values]}`, one variant per value "
              "(`label[option=value]`)"),
    ConfigKey("known_sigma", "boolean", False,
              "`true`: pass the true noise level instead of estimating it"),
    ConfigKey("activations", ListOf(_ACTIVATION), None,
              "run this variant only on these data activations (none: all)"),
    ConfigKey("only", InstanceOf(dict, "a table of data keys, e.g. only = {n = [100000], "
                                   "k = 3}"), {},
              "run this variant only where these data keys take these values"),
    *(replace(key, default=None, doc=f"this variant's `{key.name}` (none: `[budget]`'s)")
      for key in BUDGET),
))

REPORT = ConfigTable("report", "`[report]`: how figures and tables show the variants "
                     "(optional)", (
    ConfigKey("references", ListOf(_STRING), None,
              "the variants the gridlock rule needs to succeed (`moebench report --phase`, "
              "`moebench plot --kind gridlock`), variant labels (none: the variants that "
              "start from the tensor step, refinements first)"),
    ConfigKey("colors", InstanceOf(dict, 'a table {label = "colour"}'), None,
              "`{label = \"colour\"}`: a matplotlib colour per variant label (none: "
              "[derived from the variant list](plots_reports.md#colours-and-references))"),
))

#: every table, in the order of the reference
TABLES = (TOP, SYNTHETIC, MEMMAP, CSV, SOURCE, BUDGET, ALGORITHM, REPORT)


# --------------------------------------------------------------------------- the reference
def _literal(value: Any) -> str:
    """A default as a TOML literal in code (empty for no default)."""
    if value is None:
        return ""
    if value is REQUIRED:
        return "required"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value!r}`"
    return f"`{value!r}`"


def reference_markdown() -> list[str]:
    """The config reference: one Markdown table per TOML table, one row per key.

    Each row gives the key, its default, its valid values (the constraint's own words,
    the ones an error names) and its doc line.
    """
    def row(cells: list[str]) -> str:
        return "| " + " | ".join((c or " ").replace("|", "\\|") for c in cells) + " |"

    out: list[str] = []
    for table in TABLES:
        out += [f"**{table.title}**", "", row(["key", "default", "valid values", "meaning"]),
                "|---|---|---|---|"]
        for key in table:
            valid = key.describe() + (", or a list of them" if key.grid else "")
            out.append(row([f"`{key.name}`", _literal(key.default), valid, key.doc]))
        out.append("")
    return out
