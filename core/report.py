"""The report of one compression: one typed object, read and written as report JSON version 1.

The engine fills it, a save attaches its outcome (``attach_save``), and every view takes its
numbers from here: the command line's before/after table, the window's cards, Metrics table and
charts. The rows (``size_rows``, ``fidelity_rows``) are built once, with the saved-file special
case (its "before" is the original's state-dict size) in one place; values are formatted by
``format_value`` everywhere.

Unknown keys are kept (``extra="allow"``), so a report written by a newer Secateur reads and
writes back unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import __version__
from core.atomic import atomic_write_bytes
from core.errors import UserError
from core.fidelity import FIDELITY_METRICS
from core.recipe import format_validation_error

REPORT_VERSION = 1
MISSING = "\u2013"


# ------------------------------------------------------------------- formatting
def human_bytes(n: float) -> str:
    """1,234 B, 12.34 KiB, 1.20 MiB..."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n} B"


_FORMATS = {
    "int": lambda v: f"{v:,}",
    "bytes": human_bytes,
    "ms": lambda v: f"{v:.3f} ms",
    "frac": lambda v: f"{v:.4f}",
    "pct": lambda v: f"{100 * v:.2f}%",
}


def format_value(value: Any, kind: str, missing: str = MISSING) -> str:
    """A number as the report's views show it: kind is int, bytes, ms, frac or pct."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return missing
    return _FORMATS[kind](value)


def shape_text(before: list[int] | None, after: list[int] | None) -> str:
    """A weight's shape, and its new one when channels were removed: '32x16x3x3 -> 16x16x3x3'."""

    def dims(shape: list[int] | None) -> str:
        return "x".join(map(str, shape)) if shape else MISSING

    return dims(before) if before == after else f"{dims(before)} \u2192 {dims(after)}"


def ratio(before: Any, after: Any) -> float | None:
    """after / before, or None when either is missing or before is zero."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    return float(after) / float(before) if numbers and before else None


def ratio_text(before: Any, after: Any, missing: str = MISSING) -> str:
    r = ratio(before, after)
    return missing if r is None else f"{r:.3f}\u00d7 ({100 * (r - 1):+.1f}%)"


NOISE = 0.005
"""A ratio within this of 1 is "no change" (drawn neutral, neither better nor worse)."""


def is_better(before: Any, after: Any, lower_is_better: bool) -> bool | None:
    """True/False when ``after`` is better/worse than ``before``; None for no clear change."""
    r = ratio(before, after)
    if r is None or abs(r - 1) < NOISE:
        return None
    return (r < 1) == lower_is_better


# --------------------------------------------------------------------- rows
@dataclass(frozen=True)
class SizeMetric:
    """One before/after number of the report (the ``before``/``after`` sections)."""

    key: str
    label: str
    short: str  # the metrics chart's axis label
    kind: str  # how format_value shows it
    lower_is_better: bool
    charted: bool = True


SIZE_METRICS: tuple[SizeMetric, ...] = (
    SizeMetric("parameters", "Parameters", "Params", "int", True),
    SizeMetric("nonzero_parameters", "Non-zero parameters", "Non-zero", "int", True),
    SizeMetric("state_dict_bytes", "State-dict size", "Size", "bytes", True),
    SizeMetric("file_bytes", "Saved file size", "File", "bytes", True, charted=False),
    SizeMetric("latency_ms", "Latency (median)", "Latency", "ms", True),
    SizeMetric("accuracy", "Accuracy", "Accuracy", "pct", False),
)


@dataclass(frozen=True)
class Row:
    """One line of a before/after table: values, their text and the verdict."""

    key: str
    label: str
    short: str
    kind: str
    lower_is_better: bool
    before: float | None
    after: float | None
    charted: bool = True

    @property
    def ratio(self) -> float | None:
        return ratio(self.before, self.after)

    @property
    def better(self) -> bool | None:
        return is_better(self.before, self.after, self.lower_is_better)

    def before_text(self, missing: str = MISSING) -> str:
        return format_value(self.before, self.kind, missing)

    def after_text(self, missing: str = MISSING) -> str:
        return format_value(self.after, self.kind, missing)

    def ratio_text(self, missing: str = MISSING) -> str:
        return ratio_text(self.before, self.after, missing)


# ------------------------------------------------------------------- the report
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Numbers(_Open):
    """Sizes and measurements of one model (the original, or the result)."""

    parameters: int = 0
    nonzero_parameters: int = 0
    state_dict_bytes: int = 0
    latency_ms: float | None = None
    accuracy: float | None = None
    file_bytes: int | None = None  # the saved file (``after`` only, once saved)
    latency_runtime: str | None = None  # what ran: "torch eager, 1 thread"
    onnxruntime: dict[str, Any] | None = None  # the saved ONNX file timed in ONNX Runtime


class LayerRow(_Open):
    """What happened to one selected layer."""

    name: str
    type: str
    parameters: int = 0
    sparsity_before: float | None = None
    sparsity_after: float | None = None
    pruning: str | None = None
    prune_amount: float | int | None = None
    quantization: str | None = None
    skipped: str | None = None
    shape_before: list[int] | None = None  # the weight's shape
    shape_after: list[int] | None = None
    parameters_after: int | None = None  # differs from ``parameters`` where channels went
    removal: str | None = None  # how removing channels changed this layer

    ADDITIONS: ClassVar[tuple[str, ...]] = (
        "shape_before",
        "shape_after",
        "parameters_after",
        "removal",
    )

    @property
    def touched(self) -> bool:
        return bool(self.pruning or self.quantization or self.skipped or self.removal)

    @property
    def reshaped(self) -> bool:
        return self.shape_before != self.shape_after

    @property
    def kept_before(self) -> float | None:
        """The fraction of the weight's elements that are non-zero in the original."""
        return None if self.sparsity_before is None else 1.0 - self.sparsity_before

    @property
    def kept_after(self) -> float | None:
        """The fraction of the original weight's elements still held non-zero after the
        run: zeroed weights and removed channels both count as gone, so a convolution that
        lost half its output and half its input channels keeps 0.25 (its sparsity is 0)."""
        if self.sparsity_after is None:
            return None
        kept = 1.0 - self.sparsity_after
        if self.shape_before and self.shape_after and self.reshaped:
            kept *= math.prod(self.shape_after) / math.prod(self.shape_before)
        return kept


class Report(_Open):
    """The whole report. ``to_dict()`` is report JSON version 1 (plus extra keys)."""

    report_version: int = REPORT_VERSION
    secateur_version: str = __version__
    model: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(default_factory=dict)
    before: Numbers = Field(default_factory=Numbers)
    after: Numbers = Field(default_factory=Numbers)
    fidelity: dict[str, float | None] = Field(default_factory=dict)
    layers: list[LayerRow] = Field(default_factory=list)
    round_trip: dict[str, Any] | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    measurement: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    finetune: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    output: dict[str, Any] | None = None

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """Report JSON: ``finetune``, ``plan`` and ``output`` only when present."""
        data = self.model_dump(mode="json")
        for key in ("finetune", "plan", "output"):
            if data.get(key) is None:
                data.pop(key, None)
        for side in ("before", "after"):
            for key in ("file_bytes", "latency_runtime", "onnxruntime"):
                if data[side].get(key) is None:
                    data[side].pop(key, None)
        for row in data["layers"]:  # the version-2 additions, only where they say something
            for key in LayerRow.ADDITIONS:
                if row.get(key) is None:
                    row.pop(key, None)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: Path) -> None:
        """Write the report JSON atomically."""
        atomic_write_bytes(Path(path), self.to_json().encode("utf-8"))

    @classmethod
    def from_dict(cls, data: Any, source: str = "report") -> Report:
        if not isinstance(data, dict):
            raise UserError(f"{source}: a report is a JSON object, not {type(data).__name__}")
        if data.get("report_version") != REPORT_VERSION:
            raise UserError(
                f"{source}: report_version: {data.get('report_version')!r} is not {REPORT_VERSION}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{source}: {format_validation_error(exc)}") from None

    @classmethod
    def read(cls, path: Path) -> Report:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UserError(f"{path}: not a readable report ({exc})") from None
        return cls.from_dict(data, path.name)

    # -------------------------------------------------------------- the rows
    def size_rows(self) -> list[Row]:
        """Before/after rows of every size metric. The saved file's "before" is the
        original's state-dict size (the original was never written in that format)."""
        rows = []
        for m in SIZE_METRICS:
            before_key = "state_dict_bytes" if m.key == "file_bytes" else m.key
            rows.append(
                Row(
                    m.key,
                    m.label,
                    m.short,
                    m.kind,
                    m.lower_is_better,
                    getattr(self.before, before_key, None),
                    getattr(self.after, m.key, None),
                    m.charted,
                )
            )
        ort = self.after.onnxruntime
        if ort:  # the saved ONNX file in ONNX Runtime, timed alternating with the original
            rows.insert(
                [r.key for r in rows].index("latency_ms") + 1,
                Row(
                    "onnxruntime_ms",
                    "Latency, ONNX file in ONNX Runtime",
                    "ORT",
                    "ms",
                    True,
                    ort.get("torch_ms"),
                    ort.get("onnxruntime_ms"),
                    charted=False,
                ),
            )
        return rows

    def fidelity_rows(self) -> list[Row]:
        """The result's fidelity per metric; its "before" is the metric's ideal value
        (the original compared with itself)."""
        return [
            Row(
                m.name,
                m.label,
                m.label,
                m.fmt,
                m.lower_is_better,
                m.ideal,
                self.fidelity.get(m.name),
            )
            for m in FIDELITY_METRICS
        ]

    def touched_layers(self) -> list[LayerRow]:
        """The layers a step pruned, quantized or skipped."""
        return [row for row in self.layers if row.touched]

    # ------------------------------------------------------------ round trip
    @property
    def saved(self) -> bool:
        return self.round_trip is not None

    def round_trip_text(self) -> str:
        """'ok (max abs error 0)', 'FAILED (reason)', 'not checked (reason)' or 'not saved'."""
        return round_trip_text(self.round_trip)

    def attach_save(self, saved: SavedFile, seconds: float | None = None) -> None:
        """Record a save of the result: file size, round trip, where and how it went."""
        self.after.file_bytes = saved.file_bytes
        self.round_trip = saved.round_trip
        self.output = {
            "path": str(saved.path),
            "format": saved.format,
            "sidecar": str(saved.sidecar) if saved.sidecar else None,
        }
        if seconds is not None:
            self.timings_s["save"] = seconds


class SavedFile(Protocol):
    """What a save tells the report (``core.saving.SaveOutcome``)."""

    path: Path
    format: str
    file_bytes: int
    round_trip: dict[str, Any]
    sidecar: Path | None


def round_trip_parts(rt: dict[str, Any] | None) -> tuple[str, str]:
    """('ok' | 'FAILED' | 'not checked' | 'not saved', the error and the reason)."""
    if not rt:
        return "not saved", ""
    state = {True: "ok", False: "FAILED", None: "not checked"}[rt.get("ok")]
    err = rt.get("max_abs_error")
    details = [f"max abs error {err:.3g}"] if isinstance(err, float) else []
    if rt.get("reason"):
        details.append(str(rt["reason"]))
    return state, "; ".join(details)


def round_trip_text(rt: dict[str, Any] | None) -> str:
    """The round trip in words (the one wording the table, the window and the log use)."""
    state, detail = round_trip_parts(rt)
    return f"{state} ({detail})" if detail else state
