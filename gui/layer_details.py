"""The details of the tree's current layer, as Netron shows a node's properties: its full
dotted name, type, weight shape and dtype, parameters, sparsity before and after, what the
settings will do to it (pruning amount, quantization scheme), its measured plan times and
its sensitivity curve from the last sweep.

Everything shown is read from the tree's item model (the same texts the columns show) and
from the session (the sweep and the plan), so the pane never disagrees with the tree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFormLayout, QFrame, QLabel, QVBoxLayout, QWidget

from gui.charts import AFTER_COLOR, PercentAxis
from gui.layer_tree_model import Col, LayerTreeModel
from gui.plan_tab import candidate_label
from gui.report_rows import amount_text, percent
from gui.sensitivity_tab import metric_label, metric_text

FIELDS = ("Type", "Weight", "Parameters", "Sparsity", "Pruning", "Quantization", "Plan")


def _plan_text(row: dict[str, Any], chosen: str | None) -> str:
    """'float 0.120 ms; bf16 0.061 ms (0.51x), chosen' from a plan's layer row."""
    float_ms = row.get("float_ms")
    if float_ms is None:
        return "not timed"
    parts = [f"float {float_ms:.3f} ms"]
    if chosen and chosen != "float":
        measured = row["candidates"].get(chosen, {})
        if "ms" in measured:
            ratio = measured["ms"] / float_ms
            parts.append(f"{candidate_label(chosen)} {measured['ms']:.3f} ms ({ratio:.2f}\u00d7)")
    else:
        parts.append("kept float (nothing pays here)")
    return "; ".join(parts)


class LayerDetails(QFrame):
    """The current layer's properties and sensitivity curve; see the module docstring."""

    def __init__(self, model: LayerTreeModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._model = model
        self._session: Any = None
        self._name: str | None = None
        self.title = QLabel(self)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.values: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setVerticalSpacing(1)
        form.setHorizontalSpacing(8)
        for field in FIELDS:
            label = QLabel(self)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[field] = label
            form.addRow(f"{field}:", label)
        self._form = form
        base = self.palette().color(QPalette.ColorRole.Base)
        text = self.palette().color(QPalette.ColorRole.Text)
        self.plot = pg.PlotWidget(axisItems={"bottom": PercentAxis("bottom")})
        self.plot.setParent(self)
        self.plot.setBackground(base)
        self.plot.setMinimumHeight(90)
        self.plot.setMaximumHeight(130)
        item = self.plot.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=True, y=True, alpha=0.2)
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(text))
            axis.setTextPen(pg.mkPen(text))
            axis.enableAutoSIPrefix(False)
        item.getAxis("left").setWidth(62)
        item.getViewBox().setMouseEnabled(x=False, y=False)
        self._curve = pg.PlotDataItem(
            [], [], pen=pg.mkPen(AFTER_COLOR, width=2), symbol="o", symbolSize=5,
            symbolBrush=AFTER_COLOR,
        )  # fmt: skip
        self._baseline = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(text, width=1, style=Qt.PenStyle.DashLine)
        )
        self.plot.addItem(self._curve)
        self.plot.addItem(self._baseline, ignoreBounds=True)
        self.curve_note = QLabel(self)
        self.curve_note.setWordWrap(True)
        palette = self.curve_note.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.curve_note.setPalette(palette)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addLayout(form)
        layout.addWidget(self.curve_note)
        layout.addWidget(self.plot, 1)
        layout.addStretch(0)
        # a change of fifty rows is fifty dataChanged: one refresh, once they are all in
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(0)
        self._later.timeout.connect(self.refresh)
        for signal in (model.dataChanged, model.modelReset, model.layoutChanged):
            signal.connect(lambda *args: self._later.start())
        self.show_layer(None)

    def bind(self, session: Any) -> None:
        """Follow the session's sweep, plan and result (``gui.session.Session``)."""
        self._session = session
        for signal in (session.sweepChanged, session.planChanged, session.resultChanged):
            signal.connect(self._later.start)

    def show_layer(self, name: str | None) -> None:
        """Show this layer (None: say how to pick one)."""
        self._name = name
        self.refresh()

    def layer(self) -> str | None:
        return self._name

    def texts(self) -> dict[str, str]:
        """The title and every field as shown (tests read these)."""
        out = {"Name": self.title.text()}
        out.update({field: label.text() for field, label in self.values.items()})
        return out

    def curve(self) -> tuple[list[float], list[float]]:
        """The sensitivity curve as drawn (empty without a sweep of this layer)."""
        x, y = self._curve.getData()
        return ([float(v) for v in x] if x is not None else []), (
            [float(v) for v in y] if y is not None else []
        )

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        model, name = self._model, self._name
        info = model.info(name) if name is not None else None
        if info is None:
            self.title.setText("Select a layer to see its details")
            for label in self.values.values():
                label.setText("")
                self._form.setRowVisible(label, False)
            self._show_curve(None)
            return
        self.title.setText(info.name or f"{model.data(model.index_of(''))} (the whole model)")
        self.title.setToolTip(info.name)

        def cell(col: Col, role: Qt.ItemDataRole = Qt.ItemDataRole.DisplayRole) -> str:
            value = model.data(model.index_of(name, col), role)
            return str(value) if value else ""

        weight = cell(Col.SHAPE)
        reshaped = model.reshaped().get(name)
        if reshaped is not None:
            params = f"{reshaped[1]} after the last run"
        else:
            params = f"{info.parameters:,}" if info.parameters else f"{cell(Col.PARAMS)} inside"
        quant_tip = cell(Col.QUANT, Qt.ItemDataRole.ToolTipRole)
        fields = {
            "Type": info.type,
            "Weight": f"{weight} ({info.dtype})" if weight and info.dtype else weight or "none",
            "Parameters": params,
            "Sparsity": self._sparsity_text(info.sparsity, model.after_sparsity(name)),
            "Pruning": self._pruning_text(name, info),
            "Quantization": self._quant_text(cell(Col.QUANT), quant_tip),
            "Plan": self._plan_row_text(name),
        }
        for field, label in self.values.items():
            label.setText(fields[field])
            self._form.setRowVisible(label, bool(fields[field]))
        self._show_curve(self._sweep_row(name))

    def _sparsity_text(self, before: float | None, after: float | None) -> str:
        if before is None:
            return ""
        text = f"{percent(before)} zeros"
        if after is not None:
            text += f" \u2192 {percent(after)} after the last run"
            if self._model.stale:
                text += " (out of date)"
        return text

    def _pruning_text(self, name: str, info: Any) -> str:
        text = self._own_pruning_text(name, info)
        follows = self._model.follows(name)
        return f"{text}\n{follows}" if text and follows else text or follows or ""

    def _own_pruning_text(self, name: str, info: Any) -> str:
        selection = self._model.selection
        if info.why_not and not info.has_children:
            return f"not prunable: {info.why_not}"
        if not info.prunable:
            return ""
        amount = selection.effective_amount(name)
        if amount is None:
            return "not checked"
        if selection.is_global:
            return (
                f"checked: one global threshold over {amount_text(amount)} of the checked weights"
            )
        own = "its own amount" if name in selection.overrides() else "the panel's amount"
        return f"checked: {amount_text(amount)} ({own})"

    @staticmethod
    def _quant_text(short: str, tip: str) -> str:
        if not short:
            return "float (no rule selects it)" if tip else ""
        first = tip.splitlines()[0] if tip else ""
        return f"{short} \u2014 {first}" if first and first != short else short

    def _plan_row_text(self, name: str) -> str:
        plan = getattr(self._session, "plan", None)
        if plan is None:
            return ""
        row = next((r for r in plan.layers if r["name"] == name), None)
        if row is None:
            return ""
        return _plan_text(row, plan.final_choices().get(name))

    def _sweep_row(self, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        sweep = getattr(self._session, "sweep", None)
        if not sweep:
            return None
        row = next((r for r in sweep.get("layers", []) if r["name"] == name), None)
        return (sweep, row) if row is not None else None

    def _show_curve(self, found: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
        if found is None:
            self._curve.setData([], [])
            self._baseline.setVisible(False)
            self.plot.setVisible(False)
            swept = bool(getattr(self._session, "sweep", None))
            self.curve_note.setText(
                "Not in the last sensitivity sweep."
                if swept and self._name is not None
                else "Sensitivity: run a sweep (Sensitivity tab) to see this layer's curve."
                if self._name is not None
                else ""
            )
            return
        sweep, row = found
        points = sorted((float(p["amount"]), float(p["metric"])) for p in row["points"])
        xs = np.array([a for a, _ in points], dtype=float)
        ys = np.array([m for _, m in points], dtype=float)
        self._curve.setData(xs, ys)
        baseline = float(sweep["baseline"])
        self._baseline.setValue(baseline)
        self._baseline.setVisible(True)
        metric = sweep.get("metric")
        worst = min(ys, default=baseline)
        self.curve_note.setText(
            f"Sensitivity ({metric_label(metric)}, this layer pruned alone): "
            f"{metric_text(metric, baseline)} unpruned, {metric_text(metric, float(worst))} at "
            f"{100 * xs[int(np.argmin(ys))]:g}%"
            if len(ys)
            else ""
        )
        view = self.plot.getPlotItem().getViewBox()
        low, high = min(float(worst), baseline), max(float(ys.max()), baseline)
        span = max(high - low, 1e-3)
        view.setYRange(low - 0.08 * span, high + 0.08 * span, padding=0)
        view.setXRange(0, 1.0, padding=0.02)
        self.plot.setVisible(True)
