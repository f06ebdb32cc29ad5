"""The Sensitivity tab: one curve per layer (the metric with that layer alone pruned at each
amount), streamed in as the sweep finishes each layer, and the target-sparsity slider that
turns the curves into per-layer amounts.

The chart creates one plot item per layer, once, and updates it in place with ``setData``;
a new sweep hides the curves and shows each again as its layer arrives. Hovering reads the
nearest point; clicking a curve emits ``layerClicked``; ``highlight(name)`` marks the layer
selected in the tree. ``values()`` reads back exactly what is drawn (tests compare it with
the sweep's result).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QPalette
from PySide6.QtWidgets import (
    QLabel,
    QSizePolicy,
    QToolTip,
    QWidget,
)

from core.errors import RecipeError
from gui.charts import AFTER_COLOR, ChartFrame, PercentAxis

# Tableau 10: distinguishable, colour-blind friendlier than the rainbow; beyond ten layers
# the hues are spread evenly instead.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
MAX_LEGEND = 12  # more layers than this: no legend (hover names the curve)
HOVER_RADIUS = 12  # pixels: how near a point the pointer must be to read it
CLICK_RADIUS = 8  # pixels: how near a curve a click must be to select its layer
CACHED_STYLE = "QLabel { color: white; background: #2e8b57; border-radius: 3px; padding: 1px 6px; }"
TARGET_RANGE = (10, 90)


def metric_label(metric: str | None) -> str:
    return {"accuracy": "accuracy", "cosine_similarity": "fidelity (cosine)"}.get(
        metric or "", metric or "metric"
    )


def metric_text(metric: str | None, value: float | None) -> str:
    """Accuracy as a percentage, cosine similarity as a number."""
    if value is None:
        return "n/a"
    if metric == "accuracy":
        return f"{100 * value:.2f}%"
    return f"{value:.4f}"


def drop_text(metric: str | None, drop: float) -> str:
    """A metric difference: accuracy in percentage points."""
    if metric == "accuracy":
        return f"{100 * drop:+.2f} pts"
    return f"{drop:+.4f}"


def curve_color(index: int, count: int) -> QColor:
    if count <= len(PALETTE):
        return QColor(PALETTE[index % len(PALETTE)])
    return pg.intColor(index, hues=count, values=1, maxValue=200, minValue=200)


def parse_amounts(text: str) -> list[float]:
    """'10, 30, 50' (percent) or '0.1 0.3' (fractions) -> sorted fractions in (0, 1)."""
    parts = [p for p in re.split(r"[,;\s]+", text.strip().rstrip("%")) if p]
    if not parts:
        raise RecipeError("sensitivity amounts: give at least one amount, e.g. 10, 30, 50")
    values = []
    for part in parts:
        try:
            value = float(part.rstrip("%"))
        except ValueError:
            raise RecipeError(f"sensitivity amounts: {part!r} is not a number") from None
        values.append(value)
    percent = any(v >= 1.0 for v in values)
    fractions = sorted({round(v / 100 if percent else v, 4) for v in values})
    for value in fractions:
        if not 0.0 < value < 1.0:
            shown = f"{100 * value:g}%" if percent else f"{value:g}"
            raise RecipeError(f"sensitivity amounts: {shown} is not between 0 and 100%")
    return fractions


def amounts_text(amounts: Iterable[float]) -> str:
    return ", ".join(f"{100 * a:g}" for a in amounts)


class _MetricAxis(pg.AxisItem):
    """Percent for accuracy, plain numbers for cosine similarity."""

    percent = True

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        if self.percent:
            digits = 0 if spacing >= 0.01 else 1
            return [f"{100 * v:.{digits}f}%" for v in values]
        return super().tickStrings(values, scale, spacing)


class SensitivityChart(ChartFrame):
    """Metric vs amount, one curve per layer, a dashed baseline, automatic-amount markers."""

    layerClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sensitivity per layer", [], parent)
        self._rows: dict[str, dict[str, Any]] = {}  # shown layers, in arrival order
        self._curves: dict[str, pg.PlotDataItem] = {}  # one per layer ever shown, reused
        self._colors: dict[str, QColor] = {}
        self._metric: str | None = None
        self._baseline: float | None = None
        self._highlighted: str | None = None
        self._markers: dict[str, float] = {}
        self.cached_badge = QLabel("cached", self)
        self.cached_badge.setStyleSheet(CACHED_STYLE)
        self.cached_badge.setVisible(False)
        self.state_label = QLabel(self)
        palette = self.state_label.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.state_label.setPalette(palette)
        self.marker_hint = QLabel("\u25c6 automatic amount", self)
        self.marker_hint.setToolTip(
            "Where each layer's amount in the tree meets its curve (set by the target slider "
            "or by hand)"
        )
        self.marker_hint.setPalette(palette)
        for label in (self.state_label, self.marker_hint):
            label.setMinimumWidth(1)
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.header.insertWidget(1, self.cached_badge)
        self.header.insertWidget(2, self.state_label)
        self.header.insertWidget(4, self.marker_hint)
        self._empty_message = (
            "Run \u203a Sensitivity Sweep prunes each checked layer alone at each amount "
            "and plots what happens to the metric"
        )
        self.set_empty(self._empty_message)
        scene = self.plot_widget.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        self._text_color = text
        widget, item = self._plot(
            _MetricAxis("left"), PercentAxis("bottom"), text, (True, True, 0.2), si_prefix=False
        )
        self._axis_bottom.setLabel("weights pruned in the layer alone", color=text.name())
        self._axis_left.setLabel("metric", color=text.name())
        self._axis_left.setWidth(56)
        view = item.getViewBox()
        view.setMouseEnabled(x=False, y=False)
        view.setXRange(0, 1.0, padding=0.02)
        legend_fill = QColor(base)
        legend_fill.setAlpha(215)
        self._legend = item.addLegend(
            offset=(8, -8),
            brush=pg.mkBrush(legend_fill),
            pen=pg.mkPen(QColor(text.red(), text.green(), text.blue(), 60)),
            labelTextColor=text,
            verSpacing=-4,
        )
        self._baseline_line = pg.InfiniteLine(
            pos=0.0,
            angle=0,
            pen=pg.mkPen(text, width=1, style=Qt.PenStyle.DashLine),
            label="baseline",
            labelOpts={"position": 0.97, "color": text, "anchors": [(1, 1), (1, 1)]},
        )
        self._baseline_line.setVisible(False)
        widget.addItem(self._baseline_line, ignoreBounds=True)
        self._marker_item = pg.ScatterPlotItem(size=11, symbol="d", pxMode=True)
        self._marker_item.setZValue(20)
        widget.addItem(self._marker_item)
        self._hover_item = pg.ScatterPlotItem(
            size=14, symbol="o", brush=None, pen=pg.mkPen(text, width=2), pxMode=True
        )
        self._hover_item.setZValue(30)
        widget.addItem(self._hover_item, ignoreBounds=True)
        view.setYRange(0, 1, padding=0)
        return widget

    # ---------------------------------------------------------------- updates
    def clear(self, message: str | None = None) -> None:
        """Hide every curve (the items stay, to be reused by the next sweep)."""
        self._rows = {}
        self._markers = {}
        for curve in self._curves.values():
            curve.setData([], [])
            curve.setVisible(False)
            self._legend.removeItem(curve)
        self._marker_item.setData([], [])
        self._hover_item.setData([], [])
        self._baseline_line.setVisible(False)
        self._baseline = None
        self.cached_badge.setVisible(False)
        self.state_label.setText("")
        if message is not None:
            self._empty_message = message
        self.set_empty(self._empty_message)
        view = self.plot_widget.getPlotItem().getViewBox()
        view.setXRange(0, 1.0, padding=0.02)
        view.setYRange(0, 1, padding=0)

    def set_meta(self, baseline: float | None, metric: str | None) -> None:
        """The unpruned model's metric (the dashed line) and which metric this is."""
        if metric is not None and metric != self._metric:
            self._metric = metric
            self._axis_left.percent = metric == "accuracy"
            self._axis_left.setLabel(metric_label(metric), color=self._text_color.name())
            self._axis_left.picture = None
            self._axis_left.update()
        if baseline is not None:
            self._baseline = float(baseline)
            self._baseline_line.setValue(self._baseline)
            self._baseline_line.setVisible(True)  # first: a hidden label ignores new text
            self._baseline_line.label.setFormat(
                f"baseline {metric_text(self._metric, self._baseline)}"
            )

    def add_layers(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Show (or update) these layers' curves; each is one sweep row."""
        added = False
        for row in rows:
            name = str(row["name"])
            self._rows[name] = dict(row)
            curve = self._curves.get(name)
            if curve is None:
                curve = pg.PlotDataItem(name=name, symbol="o", symbolSize=6, antialias=True)
                curve.setZValue(1)
                self._curves[name] = curve
                self.plot_widget.addItem(curve)
                self._legend.removeItem(curve)  # re-added below, in arrival order
            points = sorted((float(p["amount"]), float(p["metric"])) for p in row["points"])
            curve.setData(
                np.array([a for a, _ in points], dtype=float),
                np.array([m for _, m in points], dtype=float),
            )
            curve.setVisible(True)
            added = True
        if added:
            self._restyle()
            self.set_empty(None if self._rows else self._empty_message)
            self._fit()

    def set_result(self, data: Mapping[str, Any], cached: bool, note: str = "") -> None:
        """A complete sweep: exactly its layers, in its order."""
        self.clear()
        self.set_meta(data.get("baseline"), data.get("metric"))
        self.add_layers(data.get("layers", []))
        self.cached_badge.setVisible(cached)
        self.state_label.setText(note)

    def set_state_tip(self, text: str) -> None:
        """The tooltip of the note beside the title (the sweep's method and amounts)."""
        self.state_label.setToolTip(text)

    def _restyle(self) -> None:
        """Colours by position, the highlighted curve thick, legend in arrival order."""
        names = list(self._rows)
        show_legend = len(names) <= MAX_LEGEND
        for i, name in enumerate(names):
            curve = self._curves[name]
            color = curve_color(i, len(names))
            self._colors[name] = color
            self._legend.removeItem(curve)
            if show_legend:
                self._legend.addItem(curve, name)
        self._legend.setVisible(show_legend and bool(names))
        self._apply_pens()
        self._update_markers()

    def _apply_pens(self) -> None:
        chosen = self._highlighted if self._highlighted in self._rows else None
        for name in self._rows:
            curve = self._curves[name]
            color = QColor(self._colors[name])
            if chosen is not None and name != chosen:
                color.setAlpha(130)
            width = 3.2 if name == chosen else 1.8
            curve.setPen(pg.mkPen(color, width=width))
            curve.setSymbolBrush(pg.mkBrush(color))
            curve.setSymbolPen(pg.mkPen(color.darker(120)))
            curve.setSymbolSize(8 if name == chosen else 6)
            curve.setZValue(10 if name == chosen else 1)

    def _fit(self) -> None:
        view = self.plot_widget.getPlotItem().getViewBox()
        values = [m for row in self._rows.values() for m in (p["metric"] for p in row["points"])]
        if self._baseline is not None:
            values.append(self._baseline)
        amounts = [a for row in self._rows.values() for a in (p["amount"] for p in row["points"])]
        if not values:
            return
        low, high = min(values), max(values)
        span = max(high - low, 1e-3)
        view.setYRange(low - 0.06 * span, high + 0.1 * span, padding=0)
        view.setXRange(0, max(max(amounts, default=0.9) + 0.05, 0.5), padding=0.01)

    def highlight(self, name: str | None) -> None:
        """Mark the curve of ``name`` (the tree's current layer); None clears the mark."""
        self._highlighted = name
        self._apply_pens()

    def set_markers(self, amounts: Mapping[str, float]) -> None:
        """Diamonds where each layer's chosen amount meets its curve (0: no marker)."""
        self._markers = {n: float(a) for n, a in amounts.items() if n in self._rows and a > 0}
        self._update_markers()

    def _update_markers(self) -> None:
        xs, ys, brushes = [], [], []
        for name, amount in self._markers.items():
            if name not in self._rows:
                continue
            xs.append(amount)
            ys.append(self.metric_at(name, amount))
            brushes.append(pg.mkBrush(self._colors.get(name, AFTER_COLOR)))
        self.marker_hint.setVisible(bool(xs))
        self._marker_item.setData(
            x=np.array(xs, dtype=float),
            y=np.array(ys, dtype=float),
            brush=brushes,
            pen=pg.mkPen(self._text_color, width=1.2),
        )

    def metric_at(self, name: str, amount: float) -> float:
        """The layer's curve at ``amount``, linear between measured points (0: baseline)."""
        row = self._rows[name]
        points = sorted((float(p["amount"]), float(p["metric"])) for p in row["points"])
        if self._baseline is not None:
            points.insert(0, (0.0, self._baseline))
        xs = np.array([a for a, _ in points])
        ys = np.array([m for _, m in points])
        return float(np.interp(amount, xs, ys))

    # ---------------------------------------------------------------- reading
    def names(self) -> list[str]:
        return list(self._rows)

    def highlighted(self) -> str | None:
        """The layer marked as the tree's current one (None: none)."""
        return self._highlighted

    def plot_items(self) -> dict[str, pg.PlotDataItem]:
        """The curve item of every layer ever shown (reused by later sweeps)."""
        return dict(self._curves)

    def percent_axis(self) -> bool:
        """Whether the metric axis reads in percent (accuracy) or plain numbers (cosine)."""
        return self._axis_left.percent

    def values(self) -> dict[str, tuple[list[float], list[float]]]:
        """Per shown layer, (amounts, metrics) exactly as drawn."""
        out = {}
        for name in self._rows:
            x, y = self._curves[name].getData()
            out[name] = ([float(v) for v in x], [float(v) for v in y])
        return out

    def baseline(self) -> float | None:
        return self._baseline if self._baseline_line.isVisible() else None

    def markers(self) -> dict[str, float]:
        return dict(self._markers)

    # ------------------------------------------------------------ interaction
    def _pixel_points(self, scene_pos: QPointF) -> tuple[Any, ...] | None:
        view = self.plot_widget.getPlotItem().getViewBox()
        if not self._rows or not view.sceneBoundingRect().contains(scene_pos):
            return None
        size = view.viewPixelSize()
        if not size[0] or not size[1]:
            return None
        point = view.mapSceneToView(scene_pos)
        return point.x(), point.y(), size[0], size[1]

    def nearest(self, scene_pos: QPointF, radius: float) -> tuple[str, int, float] | None:
        """(layer, point index, distance in pixels) of the curve nearest the pointer,
        counting the lines between points, when within ``radius`` pixels."""
        found = self._pixel_points(scene_pos)
        if found is None:
            return None
        px, py, sx, sy = found
        best: tuple[str, int, float] | None = None
        for name in self._rows:
            x, y = self._curves[name].getData()
            if x is None or not len(x):
                continue
            ux, uy = (np.asarray(x) - px) / sx, (np.asarray(y) - py) / sy
            d_points = np.hypot(ux, uy)
            index = int(np.argmin(d_points))
            dist = float(d_points[index])
            if len(ux) > 1:  # distance to each segment, in pixels
                ax, ay, bx, by = ux[:-1], uy[:-1], ux[1:], uy[1:]
                dx, dy = bx - ax, by - ay
                length = dx * dx + dy * dy
                t = np.clip(-(ax * dx + ay * dy) / np.where(length > 0, length, 1), 0, 1)
                dist = min(dist, float(np.min(np.hypot(ax + t * dx, ay + t * dy))))
            if dist <= radius and (best is None or dist < best[2]):
                best = (name, index, dist)
        return best

    def tooltip_for(self, name: str, index: int) -> str:
        row = self._rows[name]
        points = sorted(row["points"], key=lambda p: p["amount"])
        point = points[index]
        text = (
            f"{name} ({row.get('type', '')}, {int(row.get('parameters', 0)):,} weights)\n"
            f"pruned {100 * point['amount']:g}% alone: "
            f"{metric_label(self._metric)} {metric_text(self._metric, point['metric'])}"
        )
        if self._baseline is not None:
            text += f" ({drop_text(self._metric, point['metric'] - self._baseline)})"
        quantized = row.get("quantized")
        if quantized:
            if quantized.get("metric") is not None:
                text += (
                    f"\nquantized alone ({quantized['scheme']}): "
                    f"{metric_text(self._metric, quantized['metric'])}"
                )
            elif quantized.get("skipped"):
                text += f"\nnot quantized: {quantized['skipped']}"
        if name in self._markers:
            text += f"\nautomatic amount: {100 * self._markers[name]:.4g}%"
        return text

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        hit = self.nearest(scene_pos, HOVER_RADIUS)
        if hit is None:
            self._hover_item.setData([], [])
            QToolTip.hideText()
            return
        name, index, _ = hit
        x, y = self._curves[name].getData()
        self._hover_item.setData([float(x[index])], [float(y[index])])
        QToolTip.showText(QCursor.pos(), self.tooltip_for(name, index), self.plot_widget)

    @Slot(object)
    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        hit = self.nearest(event.scenePos(), CLICK_RADIUS)
        if hit is not None:
            self.layerClicked.emit(hit[0])
