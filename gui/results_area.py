"""The centre of the window: two banners (a collapsed fidelity, results out of date), the
summary cards, and the Sparsity, Metrics, Sensitivity, Plan, Fine-tune and Log tabs.

``ResultsArea`` shows a report (``show_report``) or, before a run, the planned per-layer rows
(``show_planned``); it runs the Fine-tune tab's loss chart and title while a fine-tune runs,
and holds the log. The sensitivity tab's content is a ``SensitivityPanel``, driven by the
window's sweep controller; the Plan tab's a ``PlanPanel``, driven by the Recommend flow.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSplitter, QTabWidget, QVBoxLayout, QWidget

from core.plan import Plan
from core.report import Report
from gui.charts import ChartFrame, MetricsChart, SparsityChart
from gui.loss_chart import LossChart
from gui.plan_tab import PlanPanel
from gui.report_rows import SparsityRow, fidelity_warning, runtimes_text, sparsity_rows
from gui.results import MetricsTable, NotesLabel, SummaryCards
from gui.sensitivity_panel import SensitivityPanel

WARNING_STYLE = (
    "QLabel { color: white; background: #c0392b; border-radius: 3px; padding: 5px 8px; }"
)
STALE_STYLE = (
    "QLabel { color: #4a3b00; background: #fbe7a1; border: 1px solid #d9b44a; "
    "border-radius: 3px; padding: 4px 8px; }"
)
STALE_TEXT = (
    "Out of date: the settings changed since this run. The numbers below are the last "
    "run's; Compress to update them."
)


def _banner(style: str, parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setStyleSheet(style)
    label.setVisible(False)
    return label


class ResultsArea(QWidget):
    """Cards and tabs; see the module docstring."""

    layerClicked = Signal(str)  # a bar or a curve of a layer was clicked
    saveChartRequested = Signal(object, str)  # the chart, a file-name stem ("sparsity")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.warning_banner = _banner(WARNING_STYLE, self)
        self.stale_banner = _banner(STALE_STYLE, self)
        self.stale_banner.setText(STALE_TEXT)
        self.cards = SummaryCards(self)
        self.sparsity_chart = SparsityChart(self)
        self.metrics_chart = MetricsChart(self)
        self.metrics_table = MetricsTable(self)
        self.runtimes = QLabel(self)
        self.runtimes.setWordWrap(True)
        palette = self.runtimes.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.runtimes.setPalette(palette)
        self.runtimes.setVisible(False)
        self.notes = NotesLabel(self)
        metrics_page = QSplitter(Qt.Orientation.Vertical, self)
        lower = QWidget(metrics_page)
        lower_layout = QVBoxLayout(lower)
        lower_layout.setContentsMargins(0, 0, 0, 0)
        lower_layout.addWidget(self.metrics_table, 1)
        lower_layout.addWidget(self.runtimes)
        lower_layout.addWidget(self.notes)
        metrics_page.addWidget(self.metrics_chart)
        metrics_page.addWidget(lower)
        metrics_page.setSizes([320, 360])
        metrics_page.setChildrenCollapsible(False)

        self.log_view = QPlainTextEdit(self)
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.TypeWriter)
        self.log_view.setFont(mono)

        self.sensitivity_panel = SensitivityPanel(self)
        self.sensitivity_chart = self.sensitivity_panel.chart
        self.plan_panel = PlanPanel(self)
        self.loss_chart = LossChart(self)
        self._epochs = 0

        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.sparsity_chart, "Weights kept")
        self.tabs.addTab(metrics_page, "Metrics")
        self.tabs.addTab(self.sensitivity_panel, "Sensitivity")
        self.tabs.addTab(self.plan_panel, "Plan")
        self.tabs.addTab(self.loss_chart, "Fine-tune")
        self.tabs.addTab(self.log_view, "Log")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.warning_banner)
        layout.addWidget(self.stale_banner)
        layout.addWidget(self.cards)
        layout.addWidget(self.tabs, 1)

        for source in (
            self.sparsity_chart.layerClicked,
            self.sensitivity_chart.layerClicked,
            self.sensitivity_panel.heatmap.layerClicked,
            self.sensitivity_panel.layerFound,
            self.plan_panel.chart.layerClicked,
        ):
            source.connect(self.layerClicked)
        charts: list[tuple[ChartFrame, str]] = [
            (self.sparsity_chart, "sparsity"),
            (self.metrics_chart, "metrics"),
            (self.sensitivity_chart, "sensitivity"),
            (self.sensitivity_panel.heatmap, "sensitivity-heatmap"),
            (self.plan_panel.chart, "plan"),
            (self.loss_chart, "finetune-loss"),
        ]
        for chart, stem in charts:
            chart.saveRequested.connect(
                lambda chart=chart, stem=stem: self.saveChartRequested.emit(chart, stem)
            )

    # ------------------------------------------------------------------ results
    def show_report(
        self,
        before: Mapping[str, Any],
        report: Report,
        current_layer: str | None,
        prunable: Collection[str] | None = None,
    ) -> None:
        """A run's report: bars (of the ``prunable`` layers), ratios, the table, its notes,
        the cards and, when fidelity collapsed, the red warning."""
        self.sparsity_chart.set_rows(sparsity_rows(report, prunable))
        self.sparsity_chart.highlight(current_layer)
        self.metrics_chart.set_report(report)
        self.update_table(report)
        self.notes.set_notes(list(report.notes))
        self.cards.show_report(before, report)
        warning = fidelity_warning(report)
        self.warning_banner.setText(html.escape(warning or ""))
        self.warning_banner.setVisible(warning is not None)
        self.set_stale(False)

    def show_planned(
        self, before: Mapping[str, Any], rows: Sequence[SparsityRow], current_layer: str | None
    ) -> None:
        """No result: the original's numbers and what the settings will prune."""
        self.sparsity_chart.set_rows(rows)
        self.sparsity_chart.highlight(current_layer)
        self.metrics_chart.set_report(None)
        self.update_table(None)
        self.notes.set_notes([])
        self.cards.show_report(before, None)
        self.warning_banner.setVisible(False)
        self.set_stale(False)

    def set_stale(self, stale: bool) -> None:
        """Mark the shown result as out of date (the settings changed since its run)."""
        self.stale_banner.setVisible(stale)
        self.cards.set_stale(stale)
        for chart in (self.sparsity_chart, self.metrics_chart):
            title = chart.title.text().removesuffix(" (out of date)")
            chart.title.setText(title + (" (out of date)" if stale else ""))

    def show_plan(self, plan: Plan | None) -> None:
        self.plan_panel.set_plan(plan)

    def show_plan_tab(self) -> None:
        self.tabs.setCurrentWidget(self.plan_panel)

    def update_planned(self, rows: Sequence[SparsityRow]) -> None:
        """The planned bars again, after the selection or the settings changed."""
        self.sparsity_chart.set_rows(rows)

    def update_table(self, report: Report | None) -> None:
        """The table and what ran each latency (again after a save: the file's size, its
        round trip and, for ONNX, its latency in ONNX Runtime)."""
        self.metrics_table.set_report(report)
        text = runtimes_text(report)
        self.runtimes.setText(text)
        self.runtimes.setVisible(bool(text))

    def highlight(self, name: str | None) -> None:
        """Mark the tree's current layer in the sparsity and sensitivity charts."""
        self.sparsity_chart.highlight(name)
        self.sensitivity_panel.highlight(name)
        self.plan_panel.chart.highlight(name)

    def show_results_tab(self) -> None:
        """After a run, leave the Log tab for the sparsity bars (other tabs stay)."""
        if self.tabs.currentWidget() is self.log_view:
            self.tabs.setCurrentWidget(self.sparsity_chart)

    def show_sensitivity_tab(self) -> None:
        self.tabs.setCurrentWidget(self.sensitivity_panel)

    def chart_images(self) -> tuple[Any, Any]:
        """The sparsity chart (every layer, not only those in view) and the metrics chart as
        QPixmaps (the report's images)."""
        return self.sparsity_chart.export_image(), self.metrics_chart.image()

    # ------------------------------------------------------------------ the log
    def append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)

    def log_text(self) -> str:
        return self.log_view.toPlainText()

    # ------------------------------------------------------------------ fine-tune
    def start_finetune(self, epochs: int) -> None:
        """A run starts: a fine-tune of ``epochs`` epochs (0: none) empties the loss chart
        and counts its epochs in the tab's title."""
        if epochs:
            self.loss_chart.start(epochs)
        else:
            self.loss_chart.clear()
        self._set_finetune_tab(0, epochs)

    def add_losses(self, losses: list[float]) -> None:
        """Fine-tune epochs done (every one arrives, never coalesced away)."""
        self.loss_chart.add(losses)
        if self._epochs:
            self._set_finetune_tab(len(self.loss_chart.values()), self._epochs)

    def finish_finetune(self, finetune: Mapping[str, Any] | None) -> None:
        """The run ended with this report section (None: no fine-tune)."""
        if finetune is not None:
            self.loss_chart.set_losses(finetune["loss"], finetune.get("epochs"))
            self._set_finetune_tab(len(finetune["loss"]), 0)

    def stop_finetune(self, cancelled: bool) -> None:
        """The run was cancelled (the chart says after how many epochs) or failed."""
        if cancelled:
            self.loss_chart.mark_stopped()
        self._set_finetune_tab(0, 0)

    def clear_finetune(self) -> None:
        self.loss_chart.clear()

    def finetune_tab_title(self) -> str:
        return self.tabs.tabText(self.tabs.indexOf(self.loss_chart))

    def _set_finetune_tab(self, done: int, epochs: int) -> None:
        """While a fine-tune runs, the tab's title counts its epochs."""
        self._epochs = epochs
        title = f"Fine-tune ({done}/{epochs})" if epochs else "Fine-tune"
        self.tabs.setTabText(self.tabs.indexOf(self.loss_chart), title)
