"""What the window draws from a compression report, as plain data (no Qt).

The numbers, their formatting, the before/after rows and the round-trip wording all come from
``core.report.Report`` (the same rows the command line prints); this module only arranges them
for the window's widgets: the metrics table, the summary cards, the metrics chart's ratios, the
per-layer sparsity rows and the save message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.fidelity import FIDELITY_METRICS
from core.inventory import LayerInfo
from core.report import (
    MISSING,
    SIZE_METRICS,
    LayerRow,
    Report,
    Row,
    format_value,
    human_bytes,
    round_trip_parts,
)
from core.saving import SaveOutcome

Amount = int | float
DASH = MISSING


def percent(value: float | None) -> str:
    """A sparsity as the tree shows it ('' when unknown)."""
    return "" if value is None else f"{100 * value:.1f}%"


def amount_text(value: Amount) -> str:
    """A pruning amount: a fraction as a percentage, a whole number as a count of weights."""
    if isinstance(value, int):
        return f"{value:,} w."
    return f"{100 * value:.4g}%"


# ---------------------------------------------------------------------- the table
ROW_LABELS: tuple[str, ...] = (
    *(m.label for m in SIZE_METRICS),
    *(m.label for m in FIDELITY_METRICS),
)
"""The metrics table's row labels, in order (the round trip comes last)."""


@dataclass(frozen=True)
class TableRow:
    """What one row of the metrics table shows; ``better`` colours the ratio cell (the
    round trip, which has no ratio, colours its "after" cell)."""

    label: str
    before: str
    after: str
    ratio: str
    better: bool | None = None
    marks_after: bool = False


def table_rows(report: Report | None) -> list[TableRow]:
    """The metrics table for a report (None: before any run): the report's size rows, its
    fidelity rows (their "before" is the ideal value, shown once measured), the round trip."""
    if report is None:
        rows = [TableRow(label, DASH, DASH, DASH) for label in ROW_LABELS]
        return [*rows, TableRow("Round trip (saved file)", "", DASH, "")]
    rows = []
    for row in report.size_rows():
        after = row.after_text()
        if row.key == "file_bytes" and row.after is None:
            after = "not saved"
        rows.append(TableRow(row.label, row.before_text(), after, row.ratio_text(), row.better))
    for row in report.fidelity_rows():
        before = row.before_text() if row.after is not None else DASH
        rows.append(TableRow(row.label, before, row.after_text(), DASH))
    rt = report.round_trip
    if not rt:
        rows.append(TableRow("Round trip (saved file)", "", "not saved", ""))
    else:
        state, detail = round_trip_parts(rt)
        rows.append(TableRow("Round trip (saved file)", "", state, detail, rt.get("ok"), True))
    return rows


# ---------------------------------------------------------------------- the cards
@dataclass(frozen=True)
class CardSpec:
    caption: str
    key: str


CARDS: tuple[CardSpec, ...] = (
    CardSpec("Model size (state dict)", "state_dict_bytes"),
    CardSpec("Non-zero parameters", "nonzero_parameters"),
    CardSpec("Latency (median)", "latency_ms"),
    CardSpec("Accuracy", "accuracy"),
)
# Without labels the Accuracy card shows how closely the compressed model follows the
# original instead: top-1 agreement when the outputs look like class logits, else cosine.
ACCURACY_STANDINS = (
    ("Top-1 agreement", "top1_agreement"),
    ("Fidelity (cosine)", "cosine_similarity"),
)


@dataclass(frozen=True)
class CardValue:
    """What one summary card shows. ``ratio`` is after/before when both are numbers."""

    caption: str
    value: str
    note: str = ""  # plain text under the value when there is no ratio
    ratio: float | None = None
    better: bool | None = None


def card_values(before_numbers: Mapping[str, Any] | None, report: Report | None) -> list[CardValue]:
    """The four headline numbers: the original's before a run, before -> after after it."""
    kinds = {m.key: m.kind for m in SIZE_METRICS}
    if report is None:
        b = before_numbers or {}
        return [
            CardValue(
                spec.caption, format_value(b.get(spec.key), kinds[spec.key]), "run to compare"
            )
            for spec in CARDS
        ]
    rows = {row.key: row for row in report.size_rows()}
    fidelity = {row.key: row for row in report.fidelity_rows()}
    cards = []
    for spec in CARDS:
        row = rows[spec.key]
        if row.after is None and spec.key == "accuracy":
            standin = next((s for s in ACCURACY_STANDINS if fidelity[s[1]].after is not None), None)
            if standin is not None:
                caption, key = standin
                note = "no labels: vs the original"
                cards.append(CardValue(caption, fidelity[key].after_text(), note))
                continue
        if row.after is None:
            cards.append(CardValue(spec.caption, row.before_text(), "not measured"))
            continue
        value = f"{row.before_text()} \u2192 {row.after_text()}"
        cards.append(CardValue(spec.caption, value, ratio=row.ratio, better=row.better))
    return cards


# ---------------------------------------------------------------------- the charts
CHART_ORDER = ("state_dict_bytes", "parameters", "nonzero_parameters", "latency_ms", "accuracy")


@dataclass(frozen=True)
class ChartMetric:
    key: str
    label: str
    lower_is_better: bool


CHART_METRICS: tuple[ChartMetric, ...] = (
    *(
        ChartMetric(m.key, m.short, m.lower_is_better)
        for key in CHART_ORDER
        for m in SIZE_METRICS
        if m.key == key
    ),
    ChartMetric("cosine_similarity", "Fidelity", False),
)


def _chart_rows(report: Report) -> dict[str, Row]:
    rows = {row.key: row for row in report.size_rows()}
    rows.update({row.key: row for row in report.fidelity_rows()})
    return rows


def metric_ratios(report: Report | None) -> list[float | None]:
    """after / before per CHART_METRICS entry (fidelity: the cosine similarity itself, its
    "before" being the ideal 1)."""
    if report is None:
        return [None] * len(CHART_METRICS)
    rows = _chart_rows(report)
    return [rows[spec.key].ratio for spec in CHART_METRICS]


@dataclass
class SparsityRow:
    """One layer in the sparsity chart."""

    name: str
    type: str
    before: float
    after: float | None
    detail: str = ""
    planned: float | None = None  # before a run: the amount the settings will prune


def layer_detail(row: LayerRow) -> str:
    """The sparsity chart's tooltip lines for one report row: what was done to the layer."""
    parts = []
    if row.pruning:
        amount = row.prune_amount
        parts.append(
            f"pruned: {row.pruning}" + (f" {amount_text(amount)}" if amount is not None else "")
        )
    if row.quantization:
        parts.append(f"quantized: {row.quantization}")
    if row.skipped:
        parts.append(f"skipped: {row.skipped}")
    parts.append(f"{row.parameters:,} parameters")
    return "\n".join(parts)


def sparsity_rows(report: Report) -> list[SparsityRow]:
    """The sparsity chart after a run: one row per report layer."""
    return [
        SparsityRow(
            row.name,
            row.type,
            row.sparsity_before or 0.0,
            row.sparsity_after if row.sparsity_after is not None else 0.0,
            layer_detail(row),
        )
        for row in report.layers
    ]


def planned_rows(
    layers: Iterable[LayerInfo], planned_amount: Callable[[str], Amount | None]
) -> list[SparsityRow]:
    """Before a run: each layer's sparsity now and, light, the fraction the settings will
    prune (``planned_amount``; None or a count of weights draws no planned bar)."""
    rows = []
    for info in layers:
        if info.sparsity is None:
            continue
        amount = planned_amount(info.name)
        planned = amount if isinstance(amount, float) else None
        name = info.name or "(model)"
        rows.append(SparsityRow(name, info.type, info.sparsity, None, "", planned))
    return rows


# ------------------------------------------------------------------ runs and saves
def size_ratio(report: Report) -> float:
    """The compressed state dict's size as a fraction of the original's (0 when unknown)."""
    b, a = report.before.state_dict_bytes, report.after.state_dict_bytes
    return a / b if b else 0.0


def save_message(outcome: SaveOutcome) -> tuple[str, str]:
    """(the line that says what was saved and how its round trip went, the detail alone)."""
    state, detail = round_trip_parts(outcome.round_trip)
    detail = f" ({detail})" if detail else ""
    message = (
        f"Saved {outcome.path.name} ({outcome.format}, {human_bytes(outcome.file_bytes)}); "
        f"reloaded and run: round trip {state}{detail}"
    )
    return message, detail
