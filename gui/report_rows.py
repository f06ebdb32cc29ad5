"""Everything the window derives from a compression report, as plain data (no Qt).

The metrics table's rows, the summary cards' values, the charts' metric ratios and per-layer
sparsity rows, the round-trip and save texts, byte formatting, and attaching a save's outcome
to the report. The widgets only draw what these functions return. The engine will own the
report as one typed object; when it does, this module is where the window switches to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.cli import human_bytes
from core.inventory import LayerInfo
from core.saving import SaveOutcome

Amount = int | float
DASH = "\u2013"


# ------------------------------------------------------------------------ formatting
def fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else DASH


def fmt_bytes(value: Any) -> str:
    return human_bytes(value) if isinstance(value, int | float) else DASH


def fmt_ms(value: Any) -> str:
    return f"{value:.3f} ms" if isinstance(value, int | float) else DASH


def fmt_pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else DASH


def fmt_frac(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else DASH


def percent(value: float | None) -> str:
    """A sparsity as the tree shows it ('' when unknown)."""
    return "" if value is None else f"{100 * value:.1f}%"


def amount_text(value: Amount) -> str:
    """A pruning amount: a fraction as a percentage, a whole number as a count of weights."""
    if isinstance(value, int):
        return f"{value:,} w."
    return f"{100 * value:.4g}%"


def ratio_text(before: Any, after: Any) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return DASH
    ratio = after / before
    return f"{ratio:.3f}\u00d7 ({100 * (ratio - 1):+.1f}%)"


def is_better(before: Any, after: Any, lower_is_better: bool) -> bool | None:
    """Whether ``after`` improves on ``before`` (None: not comparable, or within 0.5%)."""
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return None
    if abs(after / before - 1) < 0.005:
        return None
    return (after < before) == lower_is_better


# ---------------------------------------------------------------------- the table
@dataclass(frozen=True)
class MetricRow:
    """One row of the metrics table: where its value lives in the report and how to show it.
    ``ideal`` is the fidelity metrics' value for an unchanged model (their "before")."""

    label: str
    section: str  # "size" (before/after) or "fidelity"
    key: str
    fmt: Callable[[Any], str]
    lower_is_better: bool
    ideal: float | None = None


ROWS: tuple[MetricRow, ...] = (
    MetricRow("Parameters", "size", "parameters", fmt_int, True),
    MetricRow("Non-zero parameters", "size", "nonzero_parameters", fmt_int, True),
    MetricRow("State-dict size", "size", "state_dict_bytes", fmt_bytes, True),
    MetricRow("Saved file size", "size", "file_bytes", fmt_bytes, True),
    MetricRow("Latency (median)", "size", "latency_ms", fmt_ms, True),
    MetricRow("Accuracy", "size", "accuracy", fmt_pct, False),
    MetricRow("Cosine similarity", "fidelity", "cosine_similarity", fmt_frac, False, 1.0),
    MetricRow("Relative error", "fidelity", "relative_error", fmt_frac, True, 0.0),
    MetricRow("Top-1 agreement", "fidelity", "top1_agreement", fmt_pct, False, 1.0),
)


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


def table_rows(report: Mapping[str, Any] | None) -> list[TableRow]:
    """The metrics table for a report (None: before any run): ROWS, then the round trip."""
    before = (report or {}).get("before", {})
    after = (report or {}).get("after", {})
    fidelity = (report or {}).get("fidelity") or {}
    rows = []
    for spec in ROWS:
        if spec.section == "fidelity":
            b: Any = spec.ideal
            a = fidelity.get(spec.key)
            b_text = spec.fmt(b) if report and a is not None else DASH
            ratio, better = DASH, None
        else:
            # the saved file is compared with the original's state dict (no file before)
            b = before.get("state_dict_bytes" if spec.key == "file_bytes" else spec.key)
            a = after.get(spec.key)
            b_text = spec.fmt(b)
            ratio, better = ratio_text(b, a), is_better(b, a, spec.lower_is_better)
        a_text = spec.fmt(a)
        if spec.key == "file_bytes" and report and a is None:
            a_text = "not saved"
        rows.append(TableRow(spec.label, b_text, a_text, ratio, better))
    rt = (report or {}).get("round_trip")
    if not rt:
        after = DASH if not report else "not saved"
        rows.append(TableRow("Round trip (saved file)", "", after, ""))
    else:
        state, detail = round_trip_texts(rt)
        rows.append(TableRow("Round trip (saved file)", "", state, detail, rt.get("ok"), True))
    return rows


def round_trip_texts(rt: Mapping[str, Any]) -> tuple[str, str]:
    """('ok' | 'FAILED' | 'not checked', the error or the reason) for a report's round trip."""
    state = {True: "ok", False: "FAILED", None: "not checked"}[rt.get("ok")]
    err = rt.get("max_abs_error")
    detail = f"max abs error {err:.3g}" if isinstance(err, float) else rt.get("reason", "")
    return state, detail or ""


# ---------------------------------------------------------------------- the cards
@dataclass(frozen=True)
class CardSpec:
    caption: str
    key: str
    fmt: Callable[[Any], str]
    lower_is_better: bool


CARDS: tuple[CardSpec, ...] = (
    CardSpec("Model size (state dict)", "state_dict_bytes", fmt_bytes, True),
    CardSpec("Non-zero parameters", "nonzero_parameters", fmt_int, True),
    CardSpec("Latency (median)", "latency_ms", fmt_ms, True),
    CardSpec("Accuracy", "accuracy", fmt_pct, False),
)
# Without labels the Accuracy card shows how closely the compressed model follows the
# original instead: top-1 agreement when the outputs look like class logits, else cosine.
ACCURACY_STANDINS = (
    ("Top-1 agreement", "top1_agreement", fmt_pct),
    ("Fidelity (cosine)", "cosine_similarity", fmt_frac),
)


@dataclass(frozen=True)
class CardValue:
    """What one summary card shows. ``ratio`` is after/before when both are numbers."""

    caption: str
    value: str
    note: str = ""  # plain text under the value when there is no ratio
    ratio: float | None = None
    better: bool | None = None


def card_values(
    before_numbers: Mapping[str, Any] | None, report: Mapping[str, Any] | None
) -> list[CardValue]:
    """The four headline numbers: the original's before a run, before -> after after it."""
    b = (report or {}).get("before") or before_numbers or {}
    a = (report or {}).get("after") or {}
    fidelity = (report or {}).get("fidelity") or {}
    cards = []
    for spec in CARDS:
        before, after = b.get(spec.key), a.get(spec.key)
        if report is None:
            cards.append(CardValue(spec.caption, spec.fmt(before), "run to compare"))
            continue
        if after is None and spec.key == "accuracy":
            standin = next((s for s in ACCURACY_STANDINS if fidelity.get(s[1]) is not None), None)
            if standin is not None:
                caption, key, fmt = standin
                cards.append(CardValue(caption, fmt(fidelity[key]), "no labels: vs the original"))
                continue
        if after is None:
            cards.append(CardValue(spec.caption, spec.fmt(before), "not measured"))
            continue
        numbers = isinstance(before, int | float) and isinstance(after, int | float) and before
        cards.append(
            CardValue(
                spec.caption,
                f"{spec.fmt(before)} \u2192 {spec.fmt(after)}",
                ratio=after / before if numbers else None,
                better=is_better(before, after, spec.lower_is_better),
            )
        )
    return cards


# ---------------------------------------------------------------------- the charts
@dataclass(frozen=True)
class ChartMetric:
    key: str
    label: str
    lower_is_better: bool


CHART_METRICS: tuple[ChartMetric, ...] = (
    ChartMetric("state_dict_bytes", "Size", True),
    ChartMetric("parameters", "Params", True),
    ChartMetric("nonzero_parameters", "Non-zero", True),
    ChartMetric("latency_ms", "Latency", True),
    ChartMetric("accuracy", "Accuracy", False),
    ChartMetric("cosine_similarity", "Fidelity", False),
)


def metric_ratios(report: Mapping[str, Any] | None) -> list[float | None]:
    """after / before per CHART_METRICS entry (fidelity: the cosine similarity itself)."""
    if not report:
        return [None] * len(CHART_METRICS)
    before, after = report.get("before", {}), report.get("after", {})
    out: list[float | None] = []
    for spec in CHART_METRICS:
        if spec.key == "cosine_similarity":
            value = (report.get("fidelity") or {}).get("cosine_similarity")
            out.append(float(value) if isinstance(value, int | float) else None)
            continue
        b, a = before.get(spec.key), after.get(spec.key)
        ok = isinstance(a, int | float) and isinstance(b, int | float) and b
        out.append(float(a) / float(b) if ok else None)
    return out


@dataclass
class SparsityRow:
    """One layer in the sparsity chart."""

    name: str
    type: str
    before: float
    after: float | None
    detail: str = ""
    planned: float | None = None  # before a run: the amount the settings will prune


def layer_detail(row: Mapping[str, Any]) -> str:
    """The sparsity chart's tooltip lines for one report row: what was done to the layer."""
    parts = []
    if row.get("pruning"):
        amount = row.get("prune_amount")
        parts.append(
            f"pruned: {row['pruning']}" + (f" {amount_text(amount)}" if amount is not None else "")
        )
    if row.get("quantization"):
        parts.append(f"quantized: {row['quantization']}")
    if row.get("skipped"):
        parts.append(f"skipped: {row['skipped']}")
    parts.append(f"{row.get('parameters', 0):,} parameters")
    return "\n".join(parts)


def sparsity_rows(report: Mapping[str, Any]) -> list[SparsityRow]:
    """The sparsity chart after a run: one row per report layer."""
    return [
        SparsityRow(
            row["name"],
            row["type"],
            row["sparsity_before"] or 0.0,
            row["sparsity_after"] if row["sparsity_after"] is not None else 0.0,
            layer_detail(row),
        )
        for row in report["layers"]
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
def size_ratio(report: Mapping[str, Any]) -> float:
    """The compressed state dict's size as a fraction of the original's (0 when unknown)."""
    b, a = report["before"], report["after"]
    return a["state_dict_bytes"] / b["state_dict_bytes"] if b["state_dict_bytes"] else 0


def attach_save_outcome(report: dict[str, Any], outcome: SaveOutcome) -> None:
    """Record a save in the report: the file's size, its round trip and where it went."""
    report["after"]["file_bytes"] = outcome.file_bytes
    report["round_trip"] = outcome.round_trip
    report["output"] = {
        "path": str(outcome.path),
        "format": outcome.format,
        "sidecar": str(outcome.sidecar) if outcome.sidecar else None,
    }


def save_message(outcome: SaveOutcome) -> tuple[str, str]:
    """(the line that says what was saved and how its round trip went, the detail alone)."""
    rt = outcome.round_trip
    state = {True: "ok", False: "FAILED", None: "not checked"}[rt.get("ok")]
    err = rt.get("max_abs_error")
    detail = f" (max abs error {err:.3g})" if isinstance(err, float) else ""
    if rt.get("reason"):
        detail += f" ({rt['reason']})"
    message = (
        f"Saved {outcome.path.name} ({outcome.format}, {human_bytes(outcome.file_bytes)}); "
        f"reloaded and run: round trip {state}{detail}"
    )
    return message, detail
