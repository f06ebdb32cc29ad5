"""The sensitivity sweep as a layer x amount heatmap: one row per layer, one column per
amount, each cell coloured by how much the metric dropped with that layer alone pruned that
much. Fifty curves are spaghetti; fifty rows of colour show at a glance which layers are
fragile and from which amount.

The image is one ``ImageItem`` updated in place; rows scroll like the sparsity chart's;
hovering a cell reads it; clicking a row emits ``layerClicked``; ``highlight(name)`` outlines
the row of the tree's current layer. ``matrix()`` reads back exactly what is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolTip, QWidget

from gui.charts import ChartFrame, RowScroller, elide_middle
from gui.sensitivity_tab import drop_text, metric_label, metric_text

CALM = QColor(247, 244, 238)
HOT = QColor(153, 27, 30)
COLORMAP = pg.ColorMap([0.0, 0.35, 1.0], [CALM, QColor(244, 162, 97), HOT])
EMPTY = (
    "Run \u203a Sensitivity Sweep: each layer becomes a row, each amount a column, coloured "
    "by how much the metric drops with that layer alone pruned that much"
)


class _AmountAxis(pg.AxisItem):
    """Column indices labelled with their amounts."""

    amounts: tuple[float, ...] = ()

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        out = []
        for v in values:
            i = round(v)
            out.append(f"{100 * self.amounts[i]:g}%" if 0 <= i < len(self.amounts) else "")
        return out


class SensitivityHeatmap(ChartFrame):
    """Layers (rows) x amounts (columns), coloured by the metric's drop; see the module
    docstring."""

    layerClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Sensitivity heatmap", [(CALM, "no drop"), (HOT, "largest drop")], parent)
        self._rows: list[dict[str, Any]] = []
        self._amounts: tuple[float, ...] = ()
        self._drops = np.zeros((0, 0))
        self._metric: str | None = None
        self._baseline: float | None = None
        self._highlighted: str | None = None
        self._dirty = False  # rows arrived while hidden: drawn when shown
        self.scale_label = QLabel(self)
        palette = self.scale_label.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.scale_label.setPalette(palette)
        self.scale_label.setMinimumWidth(1)  # a narrow window cuts it, not the chart
        self.scale_label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.header.insertWidget(self.header.count() - 2, self.scale_label)
        self.scroller = RowScroller(self.plot_widget, self.scroll_bar, self)
        scene = self.plot_widget.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.set_empty(EMPTY)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        widget, item = self._plot(
            pg.AxisItem("left"), _AmountAxis("bottom"), text, (False, False, 0.0)
        )
        self._axis_left.setStyle(tickLength=0)
        self._axis_bottom.setStyle(tickLength=0)
        self._axis_bottom.setLabel("weights pruned in the layer alone", color=text.name())
        view = item.getViewBox()
        view.invertY(True)
        view.setMouseEnabled(x=False, y=False)
        self._image = pg.ImageItem(np.zeros((1, 1)))
        self._image.setLookupTable(COLORMAP.getLookupTable(0.0, 1.0, 256))
        widget.addItem(self._image)
        self._outline = pg.BarGraphItem(
            x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0), height=0.96,
            brush=None, pen=pg.mkPen(text, width=2),
        )  # fmt: skip
        self._outline.setZValue(10)
        widget.addItem(self._outline)
        self._image.setVisible(False)
        return widget

    # ---------------------------------------------------------------- updates
    def clear(self, message: str | None = None) -> None:
        self._rows = []
        self._redraw()
        self.set_empty(message or EMPTY)

    def set_meta(self, baseline: float | None, metric: str | None) -> None:
        if metric is not None:
            self._metric = metric
        if baseline is not None:
            self._baseline = float(baseline)

    def add_layers(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add (or update) these layers' rows, in arrival order."""
        by_name = {row["name"]: i for i, row in enumerate(self._rows)}
        for row in rows:
            if row.get("failed"):
                continue  # no cells: a row of zeros would read as "no drop"
            if row["name"] in by_name:
                self._rows[by_name[row["name"]]] = dict(row)
            else:
                by_name[row["name"]] = len(self._rows)
                self._rows.append(dict(row))
        self._redraw()

    def set_result(self, data: Mapping[str, Any]) -> None:
        """A whole sweep (complete or cancelled part-way): exactly its layers."""
        self._rows = []
        self.set_meta(data.get("baseline"), data.get("metric"))
        self.add_layers(data.get("layers", []))

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._dirty:
            self._redraw()

    def _redraw(self) -> None:
        """The drops from the rows, then the image, the axes and the scale (only while the
        heatmap is shown: rows streamed in behind the curves are drawn once, when it is)."""
        amounts = sorted({float(p["amount"]) for row in self._rows for p in row["points"]})
        self._amounts = tuple(amounts)
        n, m = len(self._rows), len(amounts)
        baseline = self._baseline if self._baseline is not None else 0.0
        drops = np.zeros((n, m))
        for i, row in enumerate(self._rows):
            values = {float(p["amount"]): float(p["metric"]) for p in row["points"]}
            for j, amount in enumerate(amounts):
                if amount in values:
                    drops[i, j] = max(baseline - values[amount], 0.0)
        self._drops = drops
        if not self.isVisible():
            self._dirty = True
            return
        self._dirty = False
        self._axis_bottom.amounts = self._amounts
        self.set_empty(None if n else EMPTY)
        self._image.setVisible(bool(n and m))
        if not (n and m):
            self._axis_left.setTicks([[], []])
            self.scale_label.setText("")
            self.scroller.set_rows(0)
            return
        top = float(drops.max()) or 1e-6
        # colour by the square root of the drop: small drops stay visible beside a large one
        self._image.setImage(np.sqrt(drops.T / top), levels=(0.0, 1.0), autoLevels=False)
        self._image.setRect(QRectF(-0.5, -0.5, m, n))
        self._axis_bottom.setTicks([[(j, f"{100 * a:g}%") for j, a in enumerate(amounts)], []])
        metrics = QFontMetrics(self._axis_left.style.get("tickFont") or QFont())
        names = [elide_middle(str(r["name"]), 200, metrics) for r in self._rows]
        self._axis_left.setTicks([[(i, name) for i, name in enumerate(names)], []])
        widest = max((metrics.horizontalAdvance(name) for name in names), default=40)
        self._axis_left.setWidth(min(widest + 12, 220))
        view = self.plot_widget.getPlotItem().getViewBox()
        view.setXRange(-0.5, m - 0.5, padding=0)
        self.scale_label.setText(f"darkest {drop_text(self._metric, -top)}")
        self.scale_label.setToolTip(
            f"The darkest cell is a {metric_label(self._metric)} drop of "
            f"{drop_text(self._metric, -top)}; the colour grows with the square root of the "
            "drop, so small drops stay visible beside a large one"
        )
        self.scroller.set_rows(n, keep=True)
        self.highlight(self._highlighted)

    def highlight(self, name: str | None) -> None:
        """Outline the row of ``name`` (and scroll to it); None clears the outline."""
        self._highlighted = name
        if self._dirty:
            return  # drawn with the rows
        index = next((i for i, r in enumerate(self._rows) if r["name"] == name), None)
        if index is None or not self._amounts:
            self._outline.setOpts(x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0))
            return
        self._outline.setOpts(
            x0=np.array([-0.5]),
            y=np.array([float(index)]),
            width=np.array([float(len(self._amounts))]),
        )
        self.scroller.scroll_to(index)

    # ---------------------------------------------------------------- reading
    def names(self) -> list[str]:
        return [str(r["name"]) for r in self._rows]

    def highlighted(self) -> str | None:
        return self._highlighted

    def matrix(self) -> tuple[list[str], list[float], list[list[float]]]:
        """(layers, amounts, drop per layer and amount) exactly as coloured."""
        return self.names(), list(self._amounts), self._drops.tolist()

    # ------------------------------------------------------------ interaction
    def _cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        view = self.plot_widget.getPlotItem().getViewBox()
        if not self._rows or not view.sceneBoundingRect().contains(scene_pos):
            return None
        point = view.mapSceneToView(scene_pos)
        i, j = round(point.y()), round(point.x())
        if 0 <= i < len(self._rows) and 0 <= j < len(self._amounts):
            return i, j
        return None

    def tooltip_for(self, i: int, j: int) -> str:
        row = self._rows[i]
        amount = self._amounts[j]
        value = next(
            (float(p["metric"]) for p in row["points"] if float(p["amount"]) == amount), None
        )
        text = (
            f"{row['name']} ({row.get('type', '')}, {int(row.get('parameters', 0)):,} weights)\n"
            f"pruned {100 * amount:g}% alone: {metric_label(self._metric)} "
            f"{metric_text(self._metric, value)}"
        )
        if value is not None and self._baseline is not None:
            text += f" ({drop_text(self._metric, value - self._baseline)})"
        return text

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        cell = self._cell_at(scene_pos)
        if cell is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), self.tooltip_for(*cell), self.plot_widget)

    @Slot(object)
    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self._cell_at(event.scenePos())
        if cell is not None:
            self.layerClicked.emit(str(self._rows[cell[0]]["name"]))
