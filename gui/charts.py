"""pyqtgraph charts: per-layer sparsity before vs after, and the before/after metrics.

Each chart builds its plot items once and updates them with ``setOpts``/``setText``; nothing
is re-created when a run finishes. ``values()`` reads back exactly what is drawn (tests check
it against the report).

Per-layer charts scroll: ``RowScroller`` keeps a real scroll bar and the plot's visible rows
in step (a row stays tall enough to read whatever the layer count), and their value labels
are pooled for the rows in view only. An empty chart says what to do in a word-wrapped label
over the plot, so the hint is never clipped however narrow the window.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QScrollBar,
    QSizePolicy,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from core.report import Report
from gui.report_rows import CHART_METRICS, SparsityRow, band_text, metric_ratios, metric_verdicts

BEFORE_COLOR = QColor(150, 160, 175)
AFTER_COLOR = QColor(33, 118, 204)
BETTER_COLOR = QColor(46, 139, 87)
WORSE_COLOR = QColor(214, 110, 40)
NEUTRAL_COLOR = QColor(92, 96, 102)
HIGHLIGHT_COLOR = QColor(255, 196, 0, 70)
PLANNED_COLOR = QColor(33, 118, 204, 45)
MIN_ROWS = 8  # a model with few layers gets bars of the same thickness, not fat ones
ROW_PX = 22  # the least height of one layer's row in a per-layer chart (then it scrolls)
EXPORT_ROW_PX = 20  # a row's height in an exported per-layer chart (all rows, no scrolling)
WIDTH_SAMPLE = 64  # the longest names the axis width is measured on
RATIO_CAP = 2.0  # metrics chart: taller after/before bars are cut here (the label says how tall)


def _palette_colors() -> tuple[QColor, QColor]:
    palette = QApplication.palette()
    return palette.color(QPalette.ColorRole.Base), palette.color(QPalette.ColorRole.Text)


def elide_middle(text: str, width: int, metrics: QFontMetrics) -> str:
    return metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, width)


class PercentAxis(pg.AxisItem):
    """An axis of fractions labelled as whole percentages (0.5 -> '50%')."""

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{100 * v:.0f}%" for v in values]


class _RatioAxis(pg.AxisItem):
    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
        return [f"{v:g}\u00d7" for v in values]


def legend_swatch(color: QColor, text: str, parent: QWidget) -> QWidget:
    box = QWidget(parent)
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    swatch = QFrame(box)
    swatch.setFixedSize(12, 12)
    fill = f"rgba({color.red()}, {color.green()}, {color.blue()}, {color.alpha()})"
    edge = QColor(color.red(), color.green(), color.blue()).darker(130).name()
    swatch.setStyleSheet(f"background: {fill}; border: 1px solid {edge};")
    layout.addWidget(swatch)
    layout.addWidget(QLabel(text, box))
    return box


class RowScroller(QObject):
    """Keeps a vertical scroll bar and a per-layer plot's visible rows in step.

    The plot's y axis is the row index (inverted: row 0 at the top); as many rows as fit at
    ``ROW_PX`` each are in view, the bar scrolls the rest (and the mouse wheel moves the
    bar). ``rangeChanged`` fires whenever the rows in view change."""

    rangeChanged = Signal()

    def __init__(self, plot: pg.PlotWidget, bar: QScrollBar, parent: QObject | None = None):
        super().__init__(parent)
        self.view, self.bar = plot.getPlotItem().getViewBox(), bar
        view = self.view
        self.rows = 0
        self._syncing = False
        plot.viewport().installEventFilter(self)
        bar.valueChanged.connect(self._on_bar)
        view.sigYRangeChanged.connect(self._on_view)
        view.sigResized.connect(lambda *a: self.set_rows(self.rows, keep=True))

    def eventFilter(self, watched: QObject, event: Any) -> bool:
        """The mouse wheel over the plot scrolls the rows (as the scroll bar does)."""
        if event.type() == event.Type.Wheel and self.bar.isVisible():
            steps = -event.angleDelta().y() / 120
            self.bar.setValue(round(self.bar.value() + 3 * steps))
            return True
        return super().eventFilter(watched, event)

    def visible(self) -> int:
        """How many rows fit in the plot now (at least MIN_ROWS)."""
        height = self.view.height() or 0
        return max(MIN_ROWS, int(height // ROW_PX)) if height else MIN_ROWS

    def set_rows(self, n: int, keep: bool = False) -> None:
        """``n`` rows to show; the top of the plot stays where it was when ``keep``."""
        self.rows = n
        shown = max(min(n, self.visible()), MIN_ROWS if n <= MIN_ROWS else 1)
        top = self.bar.value() if keep else 0
        self._syncing = True
        try:
            self.view.setLimits(yMin=-0.8, yMax=max(n, MIN_ROWS) - 0.2)
            self.bar.setRange(0, max(0, n - shown))
            self.bar.setPageStep(max(1, shown))
            self.bar.setSingleStep(1)
            self.bar.setVisible(n > shown)
            top = min(top, self.bar.maximum())
            self.bar.setValue(top)
            self.view.setYRange(top - 0.6, top + shown - 0.4, padding=0)
        finally:
            self._syncing = False
        self.rangeChanged.emit()

    def first_last(self) -> tuple[int, int]:
        """The first and last row index in view."""
        low, high = self.view.viewRange()[1]
        return max(0, int(np.ceil(low))), min(self.rows - 1, int(np.floor(high)))

    def scroll_to(self, row: int) -> None:
        """Bring ``row`` into view (centred when it was out of view)."""
        first, last = self.first_last()
        if first <= row <= last:
            return
        span = max(last - first + 1, 1)
        self.bar.setValue(max(0, min(self.bar.maximum(), row - span // 2)))

    def show_all(self) -> None:
        """Every row at once (for an export)."""
        self._syncing = True
        try:
            self.view.setLimits(yMin=-0.8, yMax=max(self.rows, MIN_ROWS) - 0.2)
            self.view.setYRange(-0.6, max(self.rows, MIN_ROWS) - 0.4, padding=0)
        finally:
            self._syncing = False
        self.rangeChanged.emit()

    def _on_bar(self, value: int) -> None:
        if self._syncing:
            return
        low, high = self.view.viewRange()[1]
        span = high - low
        self._syncing = True
        try:
            self.view.setYRange(value - 0.6, value - 0.6 + span, padding=0)
        finally:
            self._syncing = False
        self.rangeChanged.emit()

    def _on_view(self, *args: Any) -> None:
        if self._syncing:
            return
        low = self.view.viewRange()[1][0]
        self._syncing = True
        try:
            self.bar.setValue(max(0, min(self.bar.maximum(), round(low + 0.6))))
        finally:
            self._syncing = False
        self.rangeChanged.emit()


class ChartFrame(QWidget):
    """A title row (title, legend, Save PNG button) above a pyqtgraph PlotWidget, with an
    optional scroll bar beside it, a word-wrapped empty-state hint over it and an optional
    caption under it."""

    saveRequested = Signal()

    def __init__(self, title: str, legend: Sequence[tuple[QColor, str]], parent: QWidget | None):
        super().__init__(parent)
        base, text = _palette_colors()
        self.title = QLabel(title, self)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.save_button = QToolButton(self)
        self.save_button.setText("Save PNG\u2026")
        self.save_button.setToolTip("Save this chart as a PNG image")
        self.save_button.setAutoRaise(True)
        self.save_button.clicked.connect(self.saveRequested)
        header = self.header = QHBoxLayout()
        header.setContentsMargins(4, 0, 0, 0)
        header.setSpacing(10)
        header.addWidget(self.title)
        self.legend_boxes = [legend_swatch(color, label, self) for color, label in legend]
        for box in self.legend_boxes:
            header.addWidget(box)
        header.addStretch(1)
        header.addWidget(self.save_button)
        self.plot_widget = self._make_plot(base, text)
        self.plot_widget.setBackground(base)
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.scroll_bar = QScrollBar(Qt.Orientation.Vertical, self)
        self.scroll_bar.setVisible(False)
        self.empty_label = QLabel(self)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.empty_label.setContentsMargins(24, 12, 24, 12)
        self.empty_label.setStyleSheet(f"color: {text.name()}; background: transparent;")
        self.empty_label.setVisible(False)
        self.caption = QLabel(self)
        self.caption.setWordWrap(True)
        palette = self.caption.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.caption.setPalette(palette)
        self.caption.setVisible(False)
        body = QGridLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.plot_widget, 0, 0)
        body.addWidget(self.empty_label, 0, 0)
        body.addWidget(self.scroll_bar, 0, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addLayout(body, 1)
        layout.addWidget(self.caption)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        raise NotImplementedError

    def _plot(
        self,
        left: pg.AxisItem,
        bottom: pg.AxisItem,
        text: QColor,
        grid: tuple[bool, bool, float],
        si_prefix: bool = True,
    ) -> tuple[pg.PlotWidget, pg.PlotItem]:
        """A plot with the given axes (kept as ``_axis_left``/``_axis_bottom``), no context
        menu or buttons, a light grid and axes in the palette's text colour."""
        self._axis_left, self._axis_bottom = left, bottom
        widget = pg.PlotWidget(axisItems={"left": left, "bottom": bottom})
        item = widget.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=grid[0], y=grid[1], alpha=grid[2])
        for axis in (left, bottom):
            axis.setPen(pg.mkPen(text))
            axis.setTextPen(pg.mkPen(text))
            if not si_prefix:
                axis.enableAutoSIPrefix(False)  # no '(x0.001)' after the labels
        return widget, item

    def set_empty(self, text: str | None) -> None:
        """The hint over an empty chart (None: the chart has data, no hint)."""
        self.empty_label.setText(text or "")
        self.empty_label.setVisible(bool(text))

    def empty_text(self) -> str | None:
        return self.empty_label.text() if self.empty_label.isVisibleTo(self) else None

    def set_caption(self, text: str) -> None:
        self.caption.setText(text)
        self.caption.setVisible(bool(text))

    def image(self) -> Any:
        """The plot as a QPixmap, at the size it is shown."""
        return self.plot_widget.grab()


class SparsityChart(ChartFrame):
    """Horizontal grouped bars: the weights each prunable layer keeps before (grey) and after
    (blue), as a fraction of the original weight's elements held non-zero, so zeroed weights
    and removed channels both count as gone (a channel-pruned layer keeps 25%, though it
    holds no zero). Before a run, light dashed bars show what the settings will keep.

    Layer names read left of the bars; a scroll bar moves through a big model's layers, and
    the rows in view carry their values; hovering a bar tells its numbers; clicking one emits
    ``layerClicked``; ``highlight(name)`` marks (and scrolls to) the layer selected in the
    tree. ``export_image()`` draws every row, not only those in view."""

    layerClicked = Signal(str)
    EMPTY = "Open a model to see its layers"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            "Weights kept per layer",
            [(BEFORE_COLOR, "before"), (AFTER_COLOR, "after"), (PLANNED_COLOR, "planned")],
            parent,
        )
        self._rows: list[SparsityRow] = []
        self._elided: dict[str, str] = {}  # layer name -> as the axis shows it
        self._highlighted: str | None = None
        self.scroller = RowScroller(self.plot_widget, self.scroll_bar, self)
        self.scroller.rangeChanged.connect(self._update_labels)
        self.scroller.rangeChanged.connect(self._update_ticks)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot_widget.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.set_empty(self.EMPTY)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        widget, item = self._plot(
            pg.AxisItem("left"), PercentAxis("bottom"), text, (True, False, 0.25)
        )
        self._axis_bottom.setLabel(
            "weights kept (non-zero, of the original layer's)", color=text.name()
        )
        self._axis_left.setStyle(tickLength=0)
        view = item.getViewBox()
        view.invertY(True)
        view.setMouseEnabled(x=False, y=False)
        view.setXRange(-0.02, 1.16, padding=0)  # room for a value label after a full bar
        empty = np.zeros(0)
        self._highlight = pg.BarGraphItem(
            x0=empty, y=empty, width=empty, height=0.96, brush=HIGHLIGHT_COLOR, pen=None
        )
        self._before = pg.BarGraphItem(
            x0=empty, y=empty, width=empty, height=0.36, brush=BEFORE_COLOR, pen=None
        )
        self._after = pg.BarGraphItem(
            x0=empty, y=empty, width=empty, height=0.36, brush=AFTER_COLOR, pen=None
        )
        self._planned = pg.BarGraphItem(
            x0=empty,
            y=empty,
            width=empty,
            height=0.36,
            brush=PLANNED_COLOR,
            pen=pg.mkPen(AFTER_COLOR, width=1, style=Qt.PenStyle.DashLine),
        )
        for bar in (self._highlight, self._before, self._planned, self._after):
            widget.addItem(bar)
        self._labels: list[pg.TextItem] = []
        self._label_color = text
        self._dim_color = QApplication.palette().color(QPalette.ColorRole.PlaceholderText)
        self._axis_left.setTicks([[], []])
        view.setYRange(0, 1, padding=0)
        return widget

    # ---------------------------------------------------------------- updates
    def set_rows(self, rows: Sequence[SparsityRow]) -> None:
        """Show these layers; ``after`` None means no run yet."""
        self._rows = list(rows)
        n = len(self._rows)
        y = np.arange(n, dtype=float)
        before = np.array([r.before for r in self._rows], dtype=float)
        after = np.array([r.after if r.after is not None else 0.0 for r in self._rows], dtype=float)
        zeros = np.zeros(n)
        self._before.setOpts(x0=zeros, y=y - 0.19, width=before)
        self._after.setOpts(x0=zeros, y=y + 0.19, width=after)
        rows = enumerate(self._rows)
        planned = [(i, r.planned) for i, r in rows if r.after is None and r.planned is not None]
        self._planned.setOpts(
            x0=np.zeros(len(planned)),
            y=np.array([i + 0.19 for i, _ in planned], dtype=float),
            width=np.array([p for _, p in planned], dtype=float),
        )
        self._update_axis()
        self.set_empty(None if n else self.EMPTY)
        self.scroller.set_rows(n, keep=True)
        self.highlight(self._highlighted)

    def _update_axis(self) -> None:
        """The axis's width, from the longest names (eliding all of 10,000 names took 50 ms
        on the GUI thread), then the names of the rows in view."""
        metrics = QFontMetrics(self._axis_left.style.get("tickFont") or QFont())
        longest = heapq.nlargest(WIDTH_SAMPLE, (r.name for r in self._rows), key=len)
        widest = max(
            (metrics.horizontalAdvance(self._elided_name(n, metrics)) for n in longest),
            default=40,
        )
        self._axis_left.setWidth(min(widest + 14, 240))
        self._update_ticks()

    def _elided_name(self, name: str, metrics: QFontMetrics) -> str:
        text = self._elided.get(name)
        if text is None:
            text = self._elided[name] = elide_middle(name, 220, metrics)
        return text

    def _update_ticks(self) -> None:
        """Names for the rows in view (and a few around them) only: a scroll or an export
        (which shows every row) brings the others."""
        metrics = QFontMetrics(self._axis_left.style.get("tickFont") or QFont())
        first, last = self.scroller.first_last() if self._rows else (0, -1)
        first, last = max(0, first - 2), min(len(self._rows) - 1, last + 2)
        ticks = [
            (i, self._elided_name(self._rows[i].name, metrics)) for i in range(first, last + 1)
        ]
        self._axis_left.setTicks([ticks, []])

    def _update_labels(self) -> None:
        """Value labels at the end of the bars of the rows in view that have a value
        (pooled: a label is created only when more are needed than ever before)."""
        first, last = self.scroller.first_last()
        wanted = []
        for i in range(first, last + 1) if self._rows else ():
            row = self._rows[i]
            if row.after is not None:
                wanted.append((i, float(row.after), f"{100 * row.after:.1f}%", True))
            elif row.planned is not None:
                text = f"{100 * row.planned:.4g}% planned"
                wanted.append((i, float(row.planned), text, False))
        while len(self._labels) < len(wanted):
            label = pg.TextItem("", color=self._label_color, anchor=(0, 0.5))
            self.plot_widget.addItem(label, ignoreBounds=True)
            self._labels.append(label)
        for k, label in enumerate(self._labels):
            if k >= len(wanted):
                label.setVisible(False)
                continue
            i, value, text, after = wanted[k]
            label.setText(text)
            label.setColor(self._label_color if after else self._dim_color)
            label.setPos(value + 0.01, i + 0.19)  # the x range leaves room after 100%
            label.setVisible(True)

    def labels(self) -> dict[str, str]:
        """The value labels drawn now, by layer (the rows in view)."""
        out = {}
        for label in self._labels:
            if label.isVisible():
                index = round(label.pos().y() - 0.19)
                if 0 <= index < len(self._rows):
                    out[self._rows[index].name] = label.textItem.toPlainText()
        return out

    def highlight(self, name: str | None) -> None:
        """Mark the row of ``name`` (the tree's current layer) and scroll to it; None clears
        the mark."""
        self._highlighted = name
        index = self.row_of(name) if name is not None else None
        if index is None:
            empty = np.zeros(0)
            self._highlight.setOpts(x0=empty, y=empty, width=empty)
            return
        self._highlight.setOpts(
            x0=np.array([-0.02]), y=np.array([float(index)]), width=np.array([1.04])
        )
        self.scroller.scroll_to(index)

    def highlighted(self) -> str | None:
        """The layer marked as the tree's current one (None: none)."""
        return self._highlighted

    def rows(self) -> list[SparsityRow]:
        """The rows drawn, top to bottom."""
        return list(self._rows)

    def row_of(self, name: str | None) -> int | None:
        for i, row in enumerate(self._rows):
            if row.name == name:
                return i
        return None

    def values(self) -> tuple[list[str], list[float], list[float]]:
        """(names, before widths, after widths) exactly as drawn."""
        names = [r.name for r in self._rows]
        before = [float(v) for v in np.asarray(self._before.opts["width"])]
        after = [float(v) for v in np.asarray(self._after.opts["width"])]
        return names, before, after

    def export_image(self) -> Any:
        """Every row as a QPixmap (a chart of the same width, tall enough for all rows),
        for the exported report."""
        chart = SparsityChart()
        chart.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        chart.save_button.setVisible(False)
        height = max(MIN_ROWS, len(self._rows)) * EXPORT_ROW_PX + 90
        chart.resize(max(self.width(), 640), height)
        chart.show()
        chart.set_rows(self._rows)
        chart.highlight(self._highlighted)
        chart.scroller.show_all()
        QApplication.processEvents()
        chart.scroller.show_all()
        image = chart.grab()
        chart.close()
        chart.deleteLater()
        return image

    # ------------------------------------------------------------ interaction
    def _row_at(self, scene_pos: QPointF) -> int | None:
        view = self.plot_widget.getPlotItem().getViewBox()
        if not view.sceneBoundingRect().contains(scene_pos):
            return None
        point = view.mapSceneToView(scene_pos)
        index = round(point.y())
        if 0 <= index < len(self._rows) and abs(point.y() - index) <= 0.45:
            return index
        return None

    def tooltip_for(self, index: int) -> str:
        row = self._rows[index]
        if row.after is not None:
            after = f"{100 * row.after:.1f}%"
        elif row.planned is not None:
            after = f"{100 * row.planned:.4g}% planned"
        else:
            after = "not run yet"
        before = f"{100 * row.before:.1f}%"
        text = f"{row.name} ({row.type})\nweights kept: before {before}, after {after}"
        return f"{text}\n{row.detail}" if row.detail else text

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        index = self._row_at(scene_pos)
        if index is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), self.tooltip_for(index), self.plot_widget)

    @Slot(object)
    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        index = self._row_at(event.scenePos())
        if index is not None:
            self.layerClicked.emit(self._rows[index].name)


class MetricsChart(ChartFrame):
    """Grouped bars of after/before per metric (before is 1 by definition)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(
            "After \u00f7 before",
            [
                (BEFORE_COLOR, "before"),
                (BETTER_COLOR, "better"),
                (WORSE_COLOR, "worse"),
                (NEUTRAL_COLOR, "no change"),
            ],
            parent,
        )
        self._ratios: list[float | None] = [None] * len(CHART_METRICS)
        self._verdicts: list[bool | None] = [None] * len(CHART_METRICS)
        self.set_caption(band_text(None))

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        widget, item = self._plot(
            _RatioAxis("left"), pg.AxisItem("bottom"), text, (False, True, 0.25)
        )
        self._axis_bottom.setTicks([[(i, m.label) for i, m in enumerate(CHART_METRICS)], []])
        self._axis_bottom.setStyle(tickLength=0)
        view = item.getViewBox()
        view.setMouseEnabled(x=False, y=False)
        n = len(CHART_METRICS)
        x = np.arange(n, dtype=float)
        self._before = pg.BarGraphItem(
            x=x - 0.19, height=np.zeros(n), width=0.36, brush=BEFORE_COLOR, pen=None
        )
        self._after = pg.BarGraphItem(
            x=x + 0.19, height=np.zeros(n), width=0.36, brush=AFTER_COLOR, pen=None
        )
        widget.addItem(self._before)
        widget.addItem(self._after)
        widget.addItem(
            pg.InfiniteLine(pos=1.0, angle=0, pen=pg.mkPen(text, style=Qt.PenStyle.DashLine))
        )
        self._labels = []
        for i in range(n):
            label = pg.TextItem("", color=text, anchor=(0.5, 1.0))
            label.setPos(i + 0.19, 0)
            widget.addItem(label)
            self._labels.append(label)
        view.setXRange(-0.6, n - 0.4, padding=0)
        view.setYRange(0, 1.25, padding=0)
        return widget

    def set_report(self, report: Report | None) -> None:
        ratios = metric_ratios(report)
        self._ratios = ratios
        n = len(CHART_METRICS)
        has_run = report is not None
        # a bar taller than the cap is drawn up to it, its label says the real value
        heights = np.array([min(r, RATIO_CAP) if r is not None else 0.0 for r in ratios])
        # inside the measurement's noise a change is no change: grey, neither better nor worse
        self._verdicts = metric_verdicts(report)
        colors = {True: BETTER_COLOR, False: WORSE_COLOR, None: NEUTRAL_COLOR}
        brushes = [colors[v] for v in self._verdicts]
        self.set_caption(band_text(report))
        self._before.setOpts(height=np.ones(n) if has_run else np.zeros(n))
        self._after.setOpts(height=heights, brushes=brushes)
        for i, (label, ratio) in enumerate(zip(self._labels, ratios)):
            if not has_run:
                label.setText("")
            elif ratio is None:
                label.setText("n/a")
                label.setPos(i + 0.19, 0.02)
            elif ratio > RATIO_CAP:  # the bar runs off the top; the label keeps the value
                label.setText(f"{ratio:.2f}\u00d7 \u2191")
                label.setPos(i + 0.19, RATIO_CAP * 1.02)
            else:
                label.setText(f"{ratio:.2f}\u00d7")
                label.setPos(i + 0.19, ratio + 0.02)
        top = min(max([1.0, *[r for r in ratios if r is not None]]), RATIO_CAP)
        self.plot_widget.getPlotItem().getViewBox().setYRange(0, top * 1.15, padding=0)

    def values(self) -> list[float | None]:
        return list(self._ratios)

    def verdicts(self) -> list[bool | None]:
        """Per metric: better (True), worse (False) or no change within the noise (None)."""
        return list(self._verdicts)

    def colors(self) -> list[str]:
        """The after bars' colours, as drawn (#rrggbb)."""
        brushes = self._after.opts.get("brushes") or []
        return [pg.mkBrush(b).color().name() for b in brushes]
