"""The Fine-tune tab's chart: the training loss, one point per epoch as the epochs finish."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Slot
from PySide6.QtGui import QColor, QCursor, QPalette
from PySide6.QtWidgets import QLabel, QToolTip, QWidget

from gui.charts import AFTER_COLOR, ChartFrame


class LossChart(ChartFrame):
    """The fine-tune loss, one point per epoch as the epochs finish."""

    EMPTY = (
        "Tick 'Fine-tune after pruning' (settings, right) and Compress:\n"
        "the training loss of each epoch appears here"
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Fine-tune loss", [(AFTER_COLOR, "training loss per epoch")], parent)
        self._losses: list[float] = []
        self._epochs = 0
        self.state_label = QLabel(self)
        palette = self.state_label.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.state_label.setPalette(palette)
        self.header.insertWidget(self.header.count() - 2, self.state_label)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.set_empty(self.EMPTY)

    def _make_plot(self, base: QColor, text: QColor) -> pg.PlotWidget:
        widget, item = self._plot(
            pg.AxisItem("left"), pg.AxisItem("bottom"), text, (False, True, 0.25), si_prefix=False
        )
        self._axis_bottom.setLabel("epoch", color=text.name())
        self._axis_left.setLabel("loss", color=text.name())
        view = item.getViewBox()
        view.setMouseEnabled(x=False, y=False)
        self._curve = pg.PlotDataItem(
            [],
            [],
            pen=pg.mkPen(AFTER_COLOR, width=2),
            symbol="o",
            symbolSize=7,
            symbolBrush=AFTER_COLOR,
            symbolPen=pg.mkPen(AFTER_COLOR.darker(130)),
            antialias=True,
        )
        widget.addItem(self._curve)
        view.setXRange(0, 1, padding=0)
        view.setYRange(0, 1, padding=0)
        return widget

    def start(self, epochs: int) -> None:
        """A fine-tune of ``epochs`` epochs begins: empty axes sized for it."""
        self._epochs = epochs
        self._losses = []
        self.state_label.setText(f"0 of {epochs} epochs")
        self._redraw()

    def clear(self) -> None:
        self._epochs = 0
        self._losses = []
        self.state_label.setText("")
        self._redraw()

    def add(self, losses: Sequence[float]) -> None:
        self._losses.extend(float(v) for v in losses)
        self._epochs = max(self._epochs, len(self._losses))
        self.state_label.setText(f"{len(self._losses)} of {self._epochs} epochs")
        self._redraw()

    def set_losses(
        self, losses: Sequence[float], epochs: int | None = None, note: str = ""
    ) -> None:
        """The finished (or stopped) fine-tune's losses."""
        self._losses = [float(v) for v in losses]
        self._epochs = max(epochs or 0, len(self._losses))
        last = f"; last loss {self._losses[-1]:.4g}" if self._losses else ""
        self.state_label.setText(note or f"{len(self._losses)} of {self._epochs} epochs{last}")
        self._redraw()

    def mark_stopped(self) -> None:
        if self._epochs:
            self.state_label.setText(
                f"cancelled after {len(self._losses)} of {self._epochs} epochs"
            )

    def _redraw(self) -> None:
        n = len(self._losses)
        x = np.arange(1, n + 1, dtype=float)
        self._curve.setData(x, np.array(self._losses, dtype=float))
        view = self.plot_widget.getPlotItem().getViewBox()
        active = self._epochs > 0
        self.set_empty(None if active else self.EMPTY)
        if not active:
            view.setXRange(0, 1, padding=0)
            view.setYRange(0, 1, padding=0)
            self._axis_bottom.setTicks(None)
            return
        view.setXRange(0.6, max(self._epochs, 2) + 0.4, padding=0)
        if self._epochs <= 20:
            self._axis_bottom.setTicks([[(i, str(i)) for i in range(1, self._epochs + 1)], []])
        else:
            self._axis_bottom.setTicks(None)
        if n:
            low, high = min(self._losses), max(self._losses)
            span = max(high - low, abs(high) * 0.05, 1e-6)
            view.setYRange(max(0.0, low - 0.15 * span), high + 0.15 * span, padding=0)

    def values(self) -> list[float]:
        """The losses exactly as drawn."""
        _, y = self._curve.getData()
        return [float(v) for v in (y if y is not None else [])]

    @Slot(object)
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        view = self.plot_widget.getPlotItem().getViewBox()
        if not self._losses or not view.sceneBoundingRect().contains(scene_pos):
            QToolTip.hideText()
            return
        epoch = round(view.mapSceneToView(scene_pos).x())
        if 1 <= epoch <= len(self._losses):
            QToolTip.showText(
                QCursor.pos(),
                f"epoch {epoch}: loss {self._losses[epoch - 1]:.4g}",
                self.plot_widget,
            )
        else:
            QToolTip.hideText()
