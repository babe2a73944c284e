"""Colours, markers and references of the variants: derived from the variant list, or
declared in the config's ``[report]`` table.

**Variant list.** The variants of a results folder in the config's order: the labels of
its summary in order of first appearance (``moebench run`` writes the runs in the
config's order), each with its algorithm and options (``param_*`` columns).

**References** (the variants the gridlock rule needs to succeed; ``moebench report
--phase`` and ``moebench plot --kind gridlock``): ``[report] references = [...]``, or by
default the variants that start from the tensor step: first those that refine it with
joint EM (``joint_em`` with ``init = "tensor"``, or ``tensor_em`` with ``refine``), then
the paper's estimator (``tensor_em`` alone), each in config order.

**Colours.** ``[report] colors = {label = "colour"}`` (any matplotlib colour) for the labels
it names; the others from :data:`PALETTE` by this rule: the paper's estimator takes the
first colour (blue) and its refinements the second (orange), whether or not the other is
present, so the method under study looks the same in every figure; every other variant
takes the next colours in config order (green, red, purple, ...), and a reference model
(a registered ``reference = True`` algorithm, e.g. the real-data linear regression) is
black. Colours repeat after twenty variants.

**Markers.** :data:`MARKERS` in sorted label order, so overlapping lines stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from moebench.sweep.config_keys import REPORT

#: the palette: matplotlib's tab10, then tab20's light shades
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
           "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
#: the colour of a reference model (a straight dashed line in the held-out figure)
REFERENCE_MODEL_COLOR = "#000000"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
#: the keys of a config's ``[report]`` table (declared in :mod:`moebench.sweep.config_keys`)
REPORT_KEYS = REPORT.names()

#: roles of a variant in the colour rule: the paper's estimator, its refinements, others
_PAPER, _REFINE, _OTHER, _MODEL = range(4)


@dataclass(frozen=True)
class VariantInfo:
    """One variant of the variant list: its label, algorithm and options."""

    label: str
    algorithm: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> int:
        """Its role in the colour and reference rules (see the module notes)."""
        from moebench.registry import reference_algorithms

        if self.algorithm and self.algorithm in reference_algorithms():
            return _MODEL
        if (self.algorithm == "joint_em" and self.params.get("init") == "tensor") or (
                self.algorithm == "tensor_em" and _true(self.params.get("refine"))):
            return _REFINE
        if self.algorithm == "tensor_em":
            return _PAPER
        return _OTHER


def _true(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and value != value) \
        and bool(value)


def variant_list(summary: pd.DataFrame) -> list[VariantInfo]:
    """The variants of ``summary`` in order of first appearance, with their algorithm and
    ``param_*`` options (see the module notes)."""
    if "label" not in summary.columns or summary.empty:
        return []
    first = summary.drop_duplicates("label")
    params = [c for c in summary.columns if c.startswith("param_")]
    out = []
    for row in first.to_dict("records"):
        opts = {c.removeprefix("param_"): row[c] for c in params}
        out.append(VariantInfo(str(row["label"]), str(row.get("algorithm") or ""), opts))
    return out


def default_references(variants: Sequence[VariantInfo]) -> list[str]:
    """The tensor-start variants: refinements first, then the paper's estimator."""
    return ([v.label for v in variants if v.role == _REFINE]
            + [v.label for v in variants if v.role == _PAPER])


def default_colors(variants: Sequence[VariantInfo]) -> dict[str, str]:
    """The colour rule of the module notes."""
    colors: dict[str, str] = {}
    slot = 0
    for role, first_slot in ((_PAPER, 0), (_REFINE, 1), (_OTHER, 2)):
        slot = max(slot, first_slot)
        for v in variants:
            if v.role == role and v.label not in colors:
                colors[v.label] = PALETTE[slot % len(PALETTE)]
                slot += 1
    for v in variants:
        colors.setdefault(v.label, REFERENCE_MODEL_COLOR)
    return colors


@dataclass(frozen=True)
class Style:
    """Colours, markers and references of a results folder's variants.

    Attributes
    ----------
    colors : dict
        Label -> matplotlib colour.
    markers : dict
        Label -> marker.
    references : list of str
        The default references of the gridlock rule.
    """

    colors: dict[str, str]
    markers: dict[str, str]
    references: list[str]


def derive_style(summary: pd.DataFrame, report: Mapping[str, Any] | None = None) -> Style:
    """The :class:`Style` of ``summary``'s variants, with a config's ``[report]`` table.

    Parameters
    ----------
    summary : DataFrame
        Stored results.
    report : mapping, optional
        The config's ``[report]`` table (checked by :func:`check_report_table`).

    Returns
    -------
    Style
    """
    variants = variant_list(summary)
    labels = [v.label for v in variants]
    report = dict(report or {})
    colors = {**default_colors(variants), **dict(report.get("colors") or {})}
    markers = {lab: MARKERS[i % len(MARKERS)] for i, lab in enumerate(sorted(set(labels)))}
    references = list(report.get("references") or default_references(variants))
    return Style(colors, markers, references)


def check_report_table(report: Any, labels: Sequence[str]) -> dict[str, Any]:
    """Check a config's ``[report]`` table against its variant labels.

    Parameters
    ----------
    report : object
        The parsed ``[report]`` table.
    labels : sequence of str
        The config's variant labels.

    Returns
    -------
    dict
        The table, unchanged.

    Raises
    ------
    ValueError
        For a table that is not one, an unknown key, a reference or colour label that is
        not a variant, or a colour matplotlib does not know; the message names the valid
        choices.
    """
    if not isinstance(report, dict):
        raise ValueError("[report] must be a table, e.g. references = [\"tensor_em\"]")
    bad = [k for k in report if k not in REPORT_KEYS]
    if bad:
        raise ValueError(f"unknown key report.{bad[0]}; valid keys: {', '.join(REPORT_KEYS)}")
    valid = ", ".join(labels)
    if "references" in report:
        refs = report["references"]
        if not (isinstance(refs, list) and refs and all(isinstance(r, str) for r in refs)):
            raise ValueError(f"report.references must be a non-empty list of variant labels; "
                             f"valid labels: {valid}")
        for r in refs:
            if r not in labels:
                raise ValueError(f"report.references: {r!r} is not a variant label; valid "
                                 f"labels: {valid}")
    colors = report.get("colors", {})
    if not isinstance(colors, dict):
        raise ValueError(f"report.colors must be a table {{label = \"colour\"}}; valid labels: "
                         f"{valid}")
    from matplotlib.colors import is_color_like

    for label, color in colors.items():
        if label not in labels:
            raise ValueError(f"report.colors: {label!r} is not a variant label; valid labels: "
                             f"{valid}")
        if not isinstance(color, str) or not is_color_like(color):
            raise ValueError(f"report.colors.{label}: {color!r} is not a colour; valid: a "
                             "matplotlib colour such as \"#1f77b4\", \"tab:blue\" or \"black\"")
    return report


def folder_style(summary: pd.DataFrame, folder: Any) -> Style:
    """The :class:`Style` of a results folder: its summary with the ``[report]`` table of its
    ``config.toml`` (none, or no readable file: the derived defaults).

    Raises
    ------
    ValueError
        When that ``[report]`` table is not valid for the folder's variants (the file may
        have been edited since the run); see :func:`check_report_table`.
    """
    from pathlib import Path

    from moebench.io import tomllib

    path = Path(folder)
    path = (path.parent if path.is_file() else path) / "config.toml"
    try:
        raw = tomllib.loads(path.read_text()) if path.is_file() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        raw = {}
    report = raw.get("report")
    if report is not None:
        labels = [v.label for v in variant_list(summary)]
        labels += [a.get("label", a.get("name")) for a in raw.get("algorithm") or []
                   if isinstance(a, dict)]
        check_report_table(report, list(dict.fromkeys(str(lab) for lab in labels)))
    return derive_style(summary, report)
