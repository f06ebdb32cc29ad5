"""What the window draws from a compression report, as plain data (no Qt).

The numbers, their formatting, the before/after rows and the round-trip wording all come from
``core.report.Report`` (the same rows the command line prints); this module only arranges them
for the window's widgets: the metrics table, the summary cards, the metrics chart's ratios, the
per-layer sparsity rows and the save message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.fidelity import FIDELITY_METRICS
from core.inventory import LayerInfo
from core.report import (
    MISSING,
    NOISE,
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


def dims_text(shape: Sequence[int] | None) -> str:
    """A weight's shape as the tree shows it: '32\u00d716\u00d73\u00d73' ('' for none)."""
    return "\u00d7".join(map(str, shape)) if shape else ""


def reshaped_texts(row: LayerRow) -> tuple[str, str] | None:
    """For a layer whose channels the run removed: its weight shape and its parameters,
    before \u2192 after; None when its shape did not change."""
    if not row.reshaped or not row.shape_before or not row.shape_after:
        return None
    after = row.parameters_after if row.parameters_after is not None else row.parameters
    return (
        f"{dims_text(row.shape_before)} \u2192 {dims_text(row.shape_after)}",
        f"{row.parameters:,} \u2192 {after:,}",
    )


def amount_text(value: Amount) -> str:
    """A pruning amount: a fraction as a percentage, a whole number as a count of weights."""
    if isinstance(value, int):
        return f"{value:,} w."
    return f"{100 * value:.4g}%"


# ---------------------------------------------------------------------- the noise
LATENCY_BAND = 0.05
"""A latency ratio within this of 1 is "no change" when the report holds no measured spread:
paired medians on a shared CPU wander by a few percent between runs of the same model."""


def noise_band(key: str, report: Report | None) -> tuple[float, bool]:
    """The "no change" band for a metric's after/before ratio, and whether it was measured
    (the report's ``measurement.latency_spread``, when a newer engine records it)."""
    if key == "latency_ms":
        spread = (report.measurement if report is not None else {}).get("latency_spread")
        if isinstance(spread, int | float) and not isinstance(spread, bool) and spread > 0:
            return float(spread), True
        return LATENCY_BAND, False
    return NOISE, False


def verdict(row: Row, report: Report | None) -> bool | None:
    """True better, False worse, None for no change: inside the metric's noise band."""
    ratio = row.ratio
    band, _ = noise_band(row.key, report)
    if ratio is None or abs(ratio - 1) < band:
        return None
    return (ratio < 1) == row.lower_is_better


def band_text(report: Report | None) -> str:
    """The noise bands in words, said wherever a change is coloured."""
    band, measured = noise_band("latency_ms", report)
    latency = (
        f"latency \u00b1{100 * band:.1f}% (the measured spread)"
        if measured
        else f"latency \u00b1{100 * band:g}% (a fixed band: paired medians on a busy CPU wander)"
    )
    return (
        f"Grey: no change, inside the noise: \u00b1{100 * NOISE:g}% for sizes and fidelity, "
        f"{latency}."
    )


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
    tip: str = ""


def _runtime_name(runtime: str) -> str:
    """'torch eager, 1 thread' -> 'torch'; 'onnxruntime 1.22.0 (CPU...)' -> 'onnxruntime'."""
    return runtime.split()[0].rstrip(",") if runtime else runtime


def runtime_label(row: Row, report: Report) -> tuple[str, str]:
    """A latency row's label with the runtime that measured it ('Latency (median, torch)',
    'Latency (onnxruntime)': the saved ONNX file) and its tooltip with the runtime in full (the
    report's ``latency_runtime``, the saved ONNX file's ``onnxruntime_runtime``); other rows
    unchanged."""
    if row.key == "latency_ms":
        runtime = report.after.latency_runtime or report.before.latency_runtime
        if runtime:
            return f"Latency (median, {_runtime_name(runtime)})", (
                f"Median forward time of the original and of the result, both in {runtime}, "
                "measured alternately on the same input"
            )
    if row.key == "onnxruntime_ms":
        ort = report.after.onnxruntime or {}
        runtime, torch_runtime = ort.get("onnxruntime_runtime"), ort.get("torch_runtime")
        if runtime:
            return f"Latency ({_runtime_name(runtime)})", (
                f"The saved ONNX file run in {runtime}; before: the original model in "
                f"{torch_runtime or 'torch'}, measured alternately with it"
            )
    return row.label, ""


def runtimes_text(report: Report | None) -> str:
    """Under the Metrics table: what ran each latency, in full ('' before a run or when
    nothing was timed)."""
    if report is None:
        return ""
    parts = []
    runtime = report.after.latency_runtime or report.before.latency_runtime
    if runtime:
        parts.append(f"Latency in {runtime} (the original and the result)")
    ort = report.after.onnxruntime or {}
    if ort.get("onnxruntime_runtime"):
        parts.append(f"the saved ONNX file in {ort['onnxruntime_runtime']}")
    return "; ".join(parts) + "." if parts else ""


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
        better = verdict(row, report)
        label, tip = runtime_label(row, report)
        rows.append(TableRow(label, row.before_text(), after, row.ratio_text(), better, tip=tip))
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
    CardSpec("Fidelity (cosine)", "cosine_similarity"),
)
FIDELITY_FLOORS = {"cosine_similarity": 0.9, "top1_agreement": 0.5}
"""Below these the compressed model no longer follows the original: a red warning."""
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
    alarm: bool = False  # the value itself is bad (fidelity collapsed): drawn red


def card_values(before_numbers: Mapping[str, Any] | None, report: Report | None) -> list[CardValue]:
    """The four headline numbers: the original's before a run, before -> after after it."""
    kinds = {m.key: m.kind for m in SIZE_METRICS}
    if report is None:
        b = before_numbers or {}
        cards = [
            CardValue(
                spec.caption, format_value(b.get(spec.key), kinds[spec.key]), "run to compare"
            )
            for spec in CARDS
            if spec.key in kinds
        ]
        return [*cards, CardValue(CARDS[-1].caption, "1.0000", "the original itself")]
    rows = {row.key: row for row in report.size_rows()}
    fidelity = {row.key: row for row in report.fidelity_rows()}
    cards = []
    for spec in CARDS:
        if spec.key == "cosine_similarity":
            cards.append(_fidelity_card(spec.caption, report))
            continue
        row = rows[spec.key]
        if row.after is None and spec.key == "accuracy":
            standin = next((s for s in ACCURACY_STANDINS if fidelity[s[1]].after is not None), None)
            if standin is not None:
                caption, key = standin
                note = "no labels: vs the original"
                low = _below_floor(key, fidelity[key].after)
                cards.append(CardValue(caption, fidelity[key].after_text(), note, alarm=low))
                continue
        if row.after is None:
            cards.append(CardValue(spec.caption, row.before_text(), "not measured"))
            continue
        better = verdict(row, report)
        note = f"from {row.before_text()}"  # the value is the result's; the original under it
        cards.append(CardValue(spec.caption, row.after_text(), note, row.ratio, better))
    return cards


def _below_floor(key: str, value: float | None) -> bool:
    floor = FIDELITY_FLOORS.get(key)
    return floor is not None and value is not None and value < floor


def _fidelity_card(caption: str, report: Report) -> CardValue:
    """How closely the result follows the original's outputs (red when it collapsed)."""
    value = report.fidelity.get("cosine_similarity")
    if value is None:
        return CardValue(caption, DASH, "not measured: no data or input shape")
    error = report.fidelity.get("relative_error")
    note = f"relative error {error:.3g}" if error is not None else "vs the original"
    alarm = fidelity_warning(report) is not None
    return CardValue(caption, f"{value:.4f}", note, alarm=alarm)


def fidelity_warning(report: Report | None) -> str | None:
    """The warning when the result no longer computes what the original did (None: fine)."""
    if report is None:
        return None
    low = {
        key: report.fidelity.get(key)
        for key in FIDELITY_FLOORS
        if _below_floor(key, report.fidelity.get(key))
    }
    if not low:
        return None
    parts = []
    cosine = report.fidelity.get("cosine_similarity")
    if cosine is not None:
        parts.append(f"cosine similarity {cosine:.3f}")
    top1 = report.fidelity.get("top1_agreement")
    if top1 is not None:
        parts.append(f"top-1 agreement {100 * top1:.1f}%")
    cos_floor, top1_floor = FIDELITY_FLOORS["cosine_similarity"], FIDELITY_FLOORS["top1_agreement"]
    return (
        f"Fidelity collapsed: {' and '.join(parts)} against the original's outputs (the "
        f"warning is for a cosine below {cos_floor:g} or a top-1 agreement below "
        f"{100 * top1_floor:g}%). The compressed model no longer computes what the original "
        "did: prune less, or see which layers break it in the Sensitivity tab."
    )


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


def metric_verdicts(report: Report | None) -> list[bool | None]:
    """Better / worse / no change (inside the noise) per CHART_METRICS entry."""
    if report is None:
        return [None] * len(CHART_METRICS)
    rows = _chart_rows(report)
    return [verdict(rows[spec.key], report) for spec in CHART_METRICS]


def metric_ratios(report: Report | None) -> list[float | None]:
    """after / before per CHART_METRICS entry (fidelity: the cosine similarity itself, its
    "before" being the ideal 1)."""
    if report is None:
        return [None] * len(CHART_METRICS)
    rows = _chart_rows(report)
    return [rows[spec.key].ratio for spec in CHART_METRICS]


@dataclass
class SparsityRow:
    """One layer in the per-layer chart, which shows the weights each layer keeps: the
    fraction of the original weight's elements held non-zero, so zeroed weights and removed
    channels both count as gone (``LayerRow.kept_after``)."""

    name: str
    type: str
    before: float  # kept in the original (1 - its sparsity)
    after: float | None  # kept after the run (None: no run yet)
    detail: str = ""
    planned: float | None = None  # before a run: what the settings will keep


def layer_detail(row: LayerRow) -> str:
    """The chart's tooltip lines for one report row: what was done to the layer."""
    parts = []
    if row.pruning:
        amount = row.prune_amount
        parts.append(
            f"pruned: {row.pruning}" + (f" {amount_text(amount)}" if amount is not None else "")
        )
    texts = reshaped_texts(row)
    if texts is not None:
        parts.append(f"weight {texts[0]}")
        parts.append(f"{texts[1]} parameters")
    else:
        parts.append(f"{row.parameters:,} parameters")
    if row.sparsity_after is not None:
        parts.append(f"{percent(row.sparsity_after)} of what it holds are zeros")
    if row.quantization:
        parts.append(f"quantized: {row.quantization}")
    if row.skipped:
        parts.append(f"skipped: {row.skipped}")
    return "\n".join(parts)


def sparsity_rows(report: Report, prunable: Iterable[str] | None = None) -> list[SparsityRow]:
    """The chart after a run: one row per report layer (only the ``prunable`` ones when
    given: a BatchNorm has no pruning to show) with the weights it keeps before and after."""
    keep = set(prunable) if prunable is not None else None
    return [
        SparsityRow(
            row.name,
            row.type,
            row.kept_before if row.kept_before is not None else 1.0,
            row.kept_after if row.kept_after is not None else 1.0,
            layer_detail(row),
        )
        for row in report.layers
        if keep is None or row.name in keep
    ]


def planned_rows(
    layers: Iterable[LayerInfo], planned_kept: Callable[[str], float | None]
) -> list[SparsityRow]:
    """Before a run: the weights each layer keeps now and, light, what it will keep
    (``planned_kept``: None draws no planned bar)."""
    rows = []
    for info in layers:
        if info.sparsity is None or not info.prunable:
            continue
        name = info.name or "(model)"
        planned = planned_kept(info.name)
        rows.append(SparsityRow(name, info.type, 1.0 - info.sparsity, None, "", planned))
    return rows


def planned_kept(
    amount: Amount | None, removes: bool, estimate: float | None, is_global: bool = False
) -> float | None:
    """What one layer will keep: ``1 - amount`` for zeroed weights (a fraction, per layer),
    the removal plan's ``estimate`` where channels go (checked or coupled), else nothing."""
    if removes:
        return estimate
    if is_global or not isinstance(amount, float):
        return None
    return 1.0 - amount


# ------------------------------------------------------------------ runs and saves
def step_lines(report: Report) -> list[str]:
    """One log line per layer a run touched: what was pruned, quantized or skipped."""
    lines = []
    for row in report.touched_layers():
        done = []
        if row.pruning:
            amount = row.prune_amount
            shown = f" {amount_text(amount)}" if amount is not None else ""
            after = percent(row.sparsity_after)
            done.append(f"pruned {row.pruning}{shown} \u2192 {after} zeros")
        if row.quantization:
            done.append(f"quantized {row.quantization}")
        if row.skipped:
            done.append(f"skipped: {row.skipped}")
        lines.append(f"step {row.name} ({row.type}): {'; '.join(done)}")
    return lines


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
