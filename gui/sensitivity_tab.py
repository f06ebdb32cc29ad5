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
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal, Slot
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
DRAW_BUDGET_MS = 12  # curves drawn per turn of the event loop, at most this long
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


def curve_color(index: int) -> QColor:
    """The colour of the ``index``-th curve: the palette, then hues a golden angle apart (a
    curve keeps its colour however many arrive after it, so nothing is redrawn for them)."""
    if index < len(PALETTE):
        return QColor(PALETTE[index])
    return pg.hsvColor((index * 0.381966) % 1.0, sat=0.7, val=0.78)


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
        self._points: dict[str, tuple[tuple[float, float], ...]] = {}  # each row's points
        self._drawn: dict[str, tuple[tuple[float, float], ...]] = {}  # as set on the curve
        self._queue: list[str] = []  # rows whose curve is not drawn yet
        self._shown: set[str] = set()  # rows whose curve is drawn
        self._styles: dict[str, tuple[str, bool]] = {}  # (colour, highlighted) as drawn
        self._range: tuple[float, ...] = ()
        self._antialias = True
        self._brushes: dict[str, Any] = {}
        self._markers_drawn: tuple[Any, ...] = ()
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
        self._queue = []
        self._shown = set()
        for curve in self._curves.values():  # hidden, data kept: a re-run redraws nothing
            curve.setVisible(False)
            self._legend.removeItem(curve)
        self._legend.setVisible(False)
        self._marker_item.setData([], [])
        self._markers_drawn = ()
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
        self._range = ()

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
        """Show (or update) these layers' curves; each is one sweep row.

        The rows are taken at once; their curves are drawn a few at a time, at most
        ``DRAW_BUDGET_MS`` per turn of the event loop (and only while the chart is shown), so
        fifty curves arriving together never freeze the window. Only what changed is
        redrawn: a curve keeps its colour (fixed by its arrival) and its style."""
        added = False
        for row in rows:
            if row.get("failed"):
                continue  # no points: the panel names it above the views
            name = str(row["name"])
            if name not in self._rows:
                self._colors[name] = curve_color(len(self._rows))
            self._rows[name] = dict(row)
            self._points[name] = tuple(
                sorted((float(p["amount"]), float(p["metric"])) for p in row["points"])
            )
            if name not in self._queue:
                self._queue.append(name)
            added = True
        if added:
            self.set_empty(None if self._rows else self._empty_message)
            self._draw_pending()

    def flush(self) -> None:
        """Draw every pending curve now (before reading what is drawn)."""
        while self._queue:
            self._draw_pending(budget_ms=None)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._queue:  # after the first paint: showing the chart is never held up
            QTimer.singleShot(0, self._draw_pending)

    def _draw_pending(self, budget_ms: float | None = DRAW_BUDGET_MS) -> None:
        if not self._queue or (budget_ms is not None and not self.isVisible()):
            return
        start = time.perf_counter()
        if len(self._rows) > MAX_LEGEND:
            self._legend.clear()  # hover names a curve; a hidden legend still lays out
        self._set_antialias(len(self._rows) <= MAX_LEGEND)
        while self._queue:
            self._draw_curve(self._queue.pop(0))
            if budget_ms is not None and 1000 * (time.perf_counter() - start) > budget_ms:
                break
        self._legend.setVisible(0 < len(self._rows) <= MAX_LEGEND)
        if self._queue:
            QTimer.singleShot(0, self._draw_pending)
            return
        self._update_markers()
        self._fit()

    def _draw_curve(self, name: str) -> None:
        if name not in self._rows:
            return  # cleared meanwhile
        curve = self._curves.get(name)
        if curve is None:
            # no name= here: the plot would add it to the legend (and lay the legend out)
            curve = pg.PlotDataItem(symbol="o", symbolSize=6, antialias=self._antialias)
            curve.setZValue(1)
            self._curves[name] = curve
            self.plot_widget.addItem(curve)
        points = self._points[name]
        if self._drawn.get(name) != points:
            self._drawn[name] = points
            curve.setData(
                np.array([a for a, _ in points], dtype=float),
                np.array([m for _, m in points], dtype=float),
            )
        if curve.opts["antialias"] != self._antialias:
            curve.opts["antialias"] = self._antialias
            self._styles.pop(name, None)
        self._style(name)
        if len(self._rows) <= MAX_LEGEND:
            self._legend.addItem(curve, name)
        curve.setVisible(True)
        self._shown.add(name)

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

    def _set_antialias(self, on: bool) -> None:
        """Smooth lines for a few curves; plain ones for many (half the time to paint 50)."""
        if on == self._antialias:
            return
        self._antialias = on
        for name in self._shown:
            curve = self._curves[name]
            curve.opts["antialias"] = on
            curve.updateItems(styleUpdate=True)

    def _style(self, name: str) -> None:
        """The curve's pen and symbols (thick when highlighted), set in one update and only
        when they change; the other curves fade while one is highlighted."""
        chosen = name == self._highlighted
        color = QColor(self._colors[name])
        key = (color.name(), chosen)
        curve = self._curves[name]
        curve.setOpacity(1.0 if chosen or self._highlighted not in self._rows else 0.45)
        curve.setZValue(10 if chosen else 1)
        if self._styles.get(name) == key:
            return
        self._styles[name] = key
        curve.opts.update(
            pen=pg.mkPen(color, width=3.2 if chosen else 1.8),
            symbolBrush=pg.mkBrush(color),
            symbolPen=pg.mkPen(color.darker(120)),
            symbolSize=8 if chosen else 6,
        )
        curve.updateItems(styleUpdate=True)

    def _fit(self) -> None:
        view = self.plot_widget.getPlotItem().getViewBox()
        values = [m for points in map(self._points.get, self._rows) for _, m in points or ()]
        if self._baseline is not None:
            values.append(self._baseline)
        amounts = [a for points in map(self._points.get, self._rows) for a, _ in points or ()]
        if not values:
            return
        low, high = min(values), max(values)
        right = max(max(amounts, default=0.9) + 0.05, 0.5)
        inside = bool(self._range) and self._range[0] <= low and high <= self._range[1]
        if inside and right == self._range[2]:
            return  # already in view: moving the axes would redraw every curve
        span = max(high - low, 1e-3)
        wanted = (low - 0.06 * span, high + 0.1 * span, right)
        self._range = wanted
        view.setYRange(wanted[0], wanted[1], padding=0)
        view.setXRange(0, wanted[2], padding=0.01)

    def highlight(self, name: str | None) -> None:
        """Mark the curve of ``name`` (the tree's current layer); None clears the mark."""
        previous, self._highlighted = self._highlighted, name
        if previous == name:
            return
        for other in self._shown:  # opacity for all (cheap), pens for the two that change
            if other in (previous, name):
                self._style(other)
            else:
                self._curves[other].setOpacity(1.0 if name not in self._rows else 0.45)

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
            color = self._colors.get(name, AFTER_COLOR)
            brush = self._brushes.get(color.name())
            if brush is None:  # one brush per colour: the symbol atlas reuses its image
                brush = self._brushes[color.name()] = pg.mkBrush(color)
            brushes.append(brush)
        shown = (tuple(xs), tuple(ys), tuple(id(b) for b in brushes))
        if shown == self._markers_drawn:
            return
        self._markers_drawn = shown
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
        self.flush()
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
        for name in self._shown:
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
