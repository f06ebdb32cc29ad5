"""The Plan tab: what Recommend measured and chose.

At the top, the decision in one line (the plan, a uniform scheme or keep float, at what
fraction of the original's time and with what drop) and the end-to-end table: the plan and
every uniform scheme, each timed against the original on this machine and its drop measured,
the chosen row marked. Below, a chart of every planned layer's time: float (grey) and under
the chosen scheme (coloured by scheme), so where the time goes and what each choice saves is
one picture. Hovering a layer lists every candidate it was timed with.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal, Slot
from PySide6.QtGui import QColor, QCursor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from core.plan import Plan
from core.schemes import CANDIDATES, KEEP_FLOAT
from gui.charts import (
    BEFORE_COLOR,
    HIGHLIGHT_COLOR,
    ChartFrame,
    RowScroller,
    elide_middle,
    legend_swatch,
)
from gui.sensitivity_tab import PALETTE, metric_label

EMPTY = (
    "Recommend (Quantization settings, or Run \u203a Recommend) times every candidate scheme "
    "of each selected layer on this machine, measures what each costs in fidelity, and "
    "verifies the fastest plan within the max drop end to end. Its choices fill the tree's "
    "Quant column; the measurements appear here."
)
SCHEME_COLORS = {c.name: QColor(PALETTE[i % len(PALETTE)]) for i, c in enumerate(CANDIDATES)}
SCHEME_COLORS[KEEP_FLOAT] = BEFORE_COLOR.darker(115)


def candidate_label(name: str) -> str:
    entry = CANDIDATES.get(name)
    return entry.label if entry is not None else name


def drop_words(metric: str, drop: float) -> str:
    """A measured drop: accuracy in points, cosine similarity as a number."""
    return f"{100 * drop:.2f} pts" if metric == "accuracy" else f"{drop:.4f}"


def chosen_line(plan: Plan) -> str:
    """The decision in words: which option, its time ratio and its drop."""
    metric = metric_label(plan.metric)
    if plan.chosen == "float":
        return "<b>Keep float</b>: nothing measured here beats the original within the budget"
    if plan.chosen == "plan":
        measured, what = plan.plan, "the per-layer plan"
    else:
        name = plan.chosen.split(":", 1)[1]
        measured, what = plan.uniform.get(name), f"{candidate_label(name)} on every layer"
    if measured is None:
        return f"<b>Chosen: {html.escape(what)}</b>"
    return (
        f"<b>Chosen: {html.escape(what)}</b> at <b>{measured.ratio:.2f}\u00d7</b> the "
        f"original's time ({measured.ms:.3f} ms vs {measured.original_ms:.3f} ms), "
        f"{metric} drop {drop_words(plan.metric, measured.drop)} "
        f"(budget {drop_words(plan.metric, plan.settings.max_drop)})"
    )


class PlanChart(ChartFrame):
    """Per planned layer: its float time and its time under the chosen scheme."""

    layerClicked = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Time per layer, float vs chosen", [(BEFORE_COLOR, "float")], parent)
        self._rows: list[dict[str, Any]] = []
        self._choices: dict[str, str] = {}
        self._highlighted: str | None = None
        self.scroller = RowScroller(self.plot_widget, self.scroll_bar, self)
        scene = self.plot_widget.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self._scheme_legend: list[QWidget] = []
        self.set_empty(EMPTY)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        widget, item = self._plot(
            pg.AxisItem("left"), pg.AxisItem("bottom"), text, (True, False, 0.25), False
        )
        self._axis_bottom.setLabel("ms per call (one thread, this machine)", color=text.name())
        self._axis_left.setStyle(tickLength=0)
        view = item.getViewBox()
        view.invertY(True)
        view.setMouseEnabled(x=False, y=False)
        empty = np.zeros(0)
        self._highlight = pg.BarGraphItem(
            x0=empty, y=empty, width=empty, height=0.96, brush=HIGHLIGHT_COLOR, pen=None
        )
        self._float = pg.BarGraphItem(
            x0=empty, y=empty, width=empty, height=0.36, brush=BEFORE_COLOR, pen=None
        )
        self._chosen = pg.BarGraphItem(x0=empty, y=empty, width=empty, height=0.36, pen=None)
        for bar in (self._highlight, self._float, self._chosen):
            widget.addItem(bar)
        return widget

    def set_plan(self, plan: Plan | None) -> None:
        self._rows = list(plan.layers) if plan is not None else []
        self._choices = plan.final_choices() if plan is not None else {}
        n = len(self._rows)
        y = np.arange(n, dtype=float)
        floats = np.array([r.get("float_ms") or 0.0 for r in self._rows], dtype=float)
        chosen = np.array([self._chosen_ms(r) for r in self._rows], dtype=float)
        self._float.setOpts(x0=np.zeros(n), y=y - 0.19, width=floats)
        brushes = [SCHEME_COLORS.get(self._choices.get(r["name"], KEEP_FLOAT)) for r in self._rows]
        self._chosen.setOpts(x0=np.zeros(n), y=y + 0.19, width=chosen, brushes=brushes)
        metrics = QFontMetrics(self._axis_left.style.get("tickFont") or QFont())
        names = [elide_middle(r["name"], 200, metrics) for r in self._rows]
        self._axis_left.setTicks([[(i, name) for i, name in enumerate(names)], []])
        widest = max((metrics.horizontalAdvance(name) for name in names), default=40)
        self._axis_left.setWidth(min(widest + 14, 220))
        top = float(max(floats.max(initial=0.0), chosen.max(initial=0.0))) or 1.0
        self.plot_widget.getPlotItem().getViewBox().setXRange(0, top * 1.08, padding=0)
        self._update_legend()
        self.set_empty(None if n else EMPTY)
        self.scroller.set_rows(n)
        self.highlight(self._highlighted)

    def _chosen_ms(self, row: dict[str, Any]) -> float:
        name = self._choices.get(row["name"], KEEP_FLOAT)
        measured = row["candidates"].get(name, {})
        if name == KEEP_FLOAT or "ms" not in measured:
            return float(row.get("float_ms") or 0.0)
        return float(measured["ms"])

    def _update_legend(self) -> None:
        for box in self._scheme_legend:
            self.header.removeWidget(box)
            box.deleteLater()
        used = [c.name for c in CANDIDATES if c.name in set(self._choices.values())]
        self._scheme_legend = [
            legend_swatch(SCHEME_COLORS[name], candidate_label(name), self) for name in used
        ]
        for i, box in enumerate(self._scheme_legend):
            self.header.insertWidget(2 + i, box)

    def highlight(self, name: str | None) -> None:
        self._highlighted = name
        index = next((i for i, r in enumerate(self._rows) if r["name"] == name), None)
        if index is None:
            empty = np.zeros(0)
            self._highlight.setOpts(x0=empty, y=empty, width=empty)
            return
        right = self.plot_widget.getPlotItem().getViewBox().viewRange()[0][1]
        self._highlight.setOpts(
            x0=np.array([0.0]), y=np.array([float(index)]), width=np.array([right])
        )
        self.scroller.scroll_to(index)

    def values(self) -> tuple[list[str], list[float], list[float], list[str]]:
        """(layers, float ms, chosen ms, chosen candidate) exactly as drawn."""
        names = [r["name"] for r in self._rows]
        floats = [float(v) for v in np.asarray(self._float.opts["width"])]
        chosen = [float(v) for v in np.asarray(self._chosen.opts["width"])]
        return names, floats, chosen, [self._choices.get(n, KEEP_FLOAT) for n in names]

    def tooltip_for(self, index: int) -> str:
        row = self._rows[index]
        lines = [f"{row['name']} ({row.get('type', '')})"]
        chosen = self._choices.get(row["name"], KEEP_FLOAT)
        if row.get("float_ms") is not None:
            lines.append(f"float: {row['float_ms']:.4f} ms")
        for name, measured in row["candidates"].items():
            if name == KEEP_FLOAT:
                continue
            mark = "  \u2190 chosen" if name == chosen else ""
            if "ms" in measured:
                drop = measured.get("drop")
                cost = f", drop {drop:.4f}" if drop is not None else ""
                lines.append(f"{candidate_label(name)}: {measured['ms']:.4f} ms{cost}{mark}")
            elif measured.get("skipped"):
                lines.append(f"{candidate_label(name)}: skipped ({measured['skipped']})")
        return "\n".join(lines)

    def _row_at(self, scene_pos: QPointF) -> int | None:
        view = self.plot_widget.getPlotItem().getViewBox()
        if not view.sceneBoundingRect().contains(scene_pos):
            return None
        point = view.mapSceneToView(scene_pos)
        index = round(point.y())
        return index if 0 <= index < len(self._rows) else None

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        index = self._row_at(scene_pos)
        if index is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), self.tooltip_for(index), self.plot_widget)

    @Slot(object)
    def _on_mouse_clicked(self, event: Any) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            index = self._row_at(event.scenePos())
            if index is not None:
                self.layerClicked.emit(self._rows[index]["name"])


class PlanPanel(QWidget):
    """The decision, the end-to-end table and the per-layer chart; see the module docstring."""

    HEADERS = ("Option", "Time", "\u00d7 original", "Drop", "Within budget")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, len(self.HEADERS), self)
        self.table.setHorizontalHeaderLabels(list(self.HEADERS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(self.HEADERS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.chart = PlanChart(self)
        split = QSplitter(Qt.Orientation.Vertical, self)
        top = QWidget(split)
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(4, 4, 4, 0)
        top_layout.addWidget(self.summary)
        top_layout.addWidget(self.table, 1)
        split.addWidget(top)
        split.addWidget(self.chart)
        split.setSizes([210, 400])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self.set_plan(None)

    def set_plan(self, plan: Plan | None) -> None:
        self.chart.set_plan(plan)
        if plan is None:
            self.summary.setText("No plan yet.")
            self.table.setRowCount(0)
            return
        notes = "".join(f"<br>{html.escape(n)}" for n in plan.notes)
        n = len(plan.layers)
        self.summary.setText(
            f"{chosen_line(plan)}<br><span style='color:gray'>{n} layer{'s' * (n != 1)} "
            f"timed at {plan.settings.threads} thread(s), batch {plan.settings.batch_size}, "
            f"in {plan.seconds:.1f} s; {metric_label(plan.metric)} baseline "
            f"{plan.baseline:.4f}{notes}</span>"
        )
        rows: list[tuple[str, Any]] = [("the per-layer plan", plan.plan)]
        rows += [(f"{candidate_label(k)} on every layer", m) for k, m in plan.uniform.items()]
        keys = ["plan", *(f"uniform:{k}" for k in plan.uniform)]
        self.table.setRowCount(len(rows) + 1)
        bold = QFont(self.font())
        bold.setBold(True)
        for r, ((label, measured), key) in enumerate(zip(rows, keys)):
            chosen = key == plan.chosen
            cells = [label + ("  \u2714 chosen" if chosen else "")]
            if measured is None:
                cells += ["\u2013"] * 4
            else:
                cells += [
                    f"{measured.ms:.3f} ms",
                    f"{measured.ratio:.2f}\u00d7",
                    drop_words(plan.metric, measured.drop),
                    "yes" if measured.within_budget else "no",
                ]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if chosen:
                    item.setFont(bold)
                self.table.setItem(r, c, item)
        original = plan.plan.original_ms if plan.plan is not None else None
        last = len(rows)
        keep = plan.chosen == "float"
        cells = [
            "the original (keep float)" + ("  \u2714 chosen" if keep else ""),
            f"{original:.3f} ms" if original else "\u2013",
            "1.00\u00d7",
            drop_words(plan.metric, 0.0),
            "yes",
        ]
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            if keep:
                item.setFont(bold)
            self.table.setItem(last, c, item)

    def rows(self) -> list[tuple[str, ...]]:
        """The end-to-end table's text, row by row."""
        return [
            tuple(
                self.table.item(r, c).text() if self.table.item(r, c) else ""
                for c in range(self.table.columnCount())
            )
            for r in range(self.table.rowCount())
        ]
