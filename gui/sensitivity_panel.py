"""The Sensitivity tab: the sweep's settings and Run, its two views (one curve per layer, or
a layer x amount heatmap, with a search box that finds a layer in both), the target-sparsity
slider that turns the curves into per-layer amounts, and the prediction for the amounts the
tree shows.

The slider always shows the overall sparsity the tree's amounts give the swept layers: a
sweep that finishes (or the user's own edits) moves it there without reallocating, so the
slider and the prediction never disagree; moving it reallocates.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QCompleter,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.cluster import LOCAL
from core.errors import RecipeError
from core.sensitivity import DEFAULT_AMOUNTS
from gui.layer_selection import name_matcher
from gui.sensitivity_heatmap import SensitivityHeatmap
from gui.sensitivity_tab import TARGET_RANGE, SensitivityChart, amounts_text, parse_amounts

MAX_CURVES = 12  # more swept layers than this: the heatmap is the first view shown


class SensitivityPanel(QWidget):
    """The tab: sweep settings and Run, the curves or the heatmap, the search box, the
    target slider and the prediction."""

    runRequested = Signal()
    targetChanged = Signal()  # the slider or the max drop moved: reallocate
    layerFound = Signal(str)  # the search box found this layer
    runOnChanged = Signal()  # "Run on" changed: this machine, local Ray or a cluster

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.amounts_edit = QLineEdit(amounts_text(DEFAULT_AMOUNTS), self)
        self.amounts_edit.setToolTip("Amounts to try on each layer, in percent (comma-separated)")
        self.subset_spin = QSpinBox(self)
        self.subset_spin.setRange(0, 10_000_000)
        self.subset_spin.setSingleStep(100)
        self.subset_spin.setSpecialValueText("all")
        self.subset_spin.setToolTip(
            "Evaluate on the first N samples only, for speed (all: the whole evaluation data)"
        )
        self.quantize_check = QCheckBox("Also quantize alone", self)
        self.run_button = QPushButton("Run Sweep", self)
        self.run_button.setToolTip(
            "Prune each checked layer alone at each amount and measure (Ctrl+Alt+R); "
            "results are cached per model, data and settings"
        )
        self.run_button.clicked.connect(self.runRequested)
        self.set_scheme("int8_dynamic", "int8 dynamic")

        settings_grid = QGridLayout()  # two short rows: the tab stays as narrow as the others
        settings_grid.setContentsMargins(4, 0, 0, 0)
        settings_grid.setHorizontalSpacing(6)
        settings_grid.setVerticalSpacing(2)
        settings_grid.addWidget(QLabel("Amounts (%):", self), 0, 0)
        settings_grid.addWidget(self.amounts_edit, 0, 1)
        settings_grid.addWidget(QLabel("Samples:", self), 0, 2)
        settings_grid.addWidget(self.subset_spin, 0, 3)
        settings_grid.addWidget(self.quantize_check, 1, 0, 1, 2)
        settings_grid.addWidget(self.run_button, 1, 2, 1, 2, Qt.AlignmentFlag.AlignRight)
        settings_grid.addWidget(QLabel("Run on:", self), 2, 0)
        settings_grid.addLayout(self._build_run_on(), 2, 1, 1, 3)
        settings_grid.setColumnStretch(1, 1)
        self.failed_label = QLabel(self)
        self.failed_label.setWordWrap(True)
        self.failed_label.setStyleSheet("color: #b3261e;")
        self.failed_label.setVisible(False)

        self.chart = SensitivityChart(self)
        self.heatmap = SensitivityHeatmap(self)
        self.views = QStackedWidget(self)
        self.views.addWidget(self.chart)
        self.views.addWidget(self.heatmap)
        self.curves_button = QToolButton(self)
        self.curves_button.setText("Curves")
        self.curves_button.setToolTip("One curve per layer: metric against amount")
        self.heatmap_button = QToolButton(self)
        self.heatmap_button.setText("Heatmap")
        self.heatmap_button.setToolTip(
            "One row per layer, one column per amount, coloured by the drop: the view for "
            "many layers"
        )
        self._view_group = QButtonGroup(self)
        for i, button in enumerate((self.curves_button, self.heatmap_button)):
            button.setCheckable(True)
            button.setAutoRaise(True)
            self._view_group.addButton(button, i)
        self.curves_button.setChecked(True)
        self._view_group.idClicked.connect(self._on_view_chosen)
        self._view_chosen = False  # the user picked a view: keep it
        self.search_edit = QLineEdit(self)
        self.search_edit.setPlaceholderText("Find a layer (name or glob)")
        self.search_edit.setToolTip(
            "Highlights the first swept layer that matches (whole name parts, glob patterns "
            "or a type) in the curves and the heatmap, and selects it in the tree"
        )
        self.search_edit.setClearButtonEnabled(True)
        self._completer = QCompleter([], self.search_edit)
        self._completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self._completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.search_edit.setCompleter(self._completer)
        self.search_edit.textEdited.connect(self._on_search)
        self.search_edit.returnPressed.connect(lambda: self._on_search(self.search_edit.text()))
        self._completer.activated.connect(self._on_search)
        view_row = QHBoxLayout()
        view_row.setContentsMargins(4, 0, 0, 0)
        view_row.setSpacing(2)
        view_row.addWidget(QLabel("View:", self))
        view_row.addWidget(self.curves_button)
        view_row.addWidget(self.heatmap_button)
        view_row.addSpacing(8)
        view_row.addWidget(self.search_edit, 1)

        self.target_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.target_slider.setRange(*TARGET_RANGE)
        self.target_slider.setValue(70)
        self.target_slider.setPageStep(10)
        self.target_slider.setTickInterval(10)
        self.target_slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.target_slider.setToolTip(
            "Overall sparsity of the swept layers: moving it picks per-layer amounts with "
            "the least predicted loss and puts them in the tree's Amount column"
        )
        self.target_value = QLabel(self)
        self.target_value.setMinimumWidth(40)
        self.drop_spin = QDoubleSpinBox(self)
        self.drop_spin.setRange(0.0, 100.0)
        self.drop_spin.setDecimals(2)
        self.drop_spin.setSingleStep(0.25)
        self.drop_spin.setSpecialValueText("no limit")
        self.drop_spin.setToolTip(
            "Stop raising amounts once the predicted drop of the metric reaches this "
            "(accuracy: percentage points); the target may then not be reached"
        )
        self.prediction = QLabel(self)
        self.prediction.setWordWrap(True)
        self.prediction.setTextFormat(Qt.TextFormat.RichText)
        target_grid = QGridLayout()
        target_grid.setContentsMargins(4, 2, 4, 0)
        target_grid.setHorizontalSpacing(6)
        target_grid.addWidget(QLabel("Target sparsity:", self), 0, 0)
        target_grid.addWidget(self.target_slider, 0, 1)
        target_grid.addWidget(self.target_value, 0, 2)
        target_grid.addWidget(QLabel("Max drop:", self), 0, 3)
        target_grid.addWidget(self.drop_spin, 0, 4)
        target_grid.addWidget(self.prediction, 1, 0, 1, 5)
        target_grid.setColumnStretch(1, 1)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(settings_grid)
        layout.addLayout(view_row)
        layout.addWidget(self.failed_label)
        layout.addWidget(self.views, 1)
        layout.addLayout(target_grid)

        # dragging reallocates at most every 40 ms; a click or a key press at once
        self._target_timer = QTimer(self)
        self._target_timer.setSingleShot(True)
        self._target_timer.setInterval(40)
        self._target_timer.timeout.connect(self.targetChanged)
        self.target_slider.valueChanged.connect(self._on_target_moved)
        self.drop_spin.valueChanged.connect(self._on_target_moved)
        self._show_target_value()
        self.set_has_result(False)

    def _build_run_on(self) -> QHBoxLayout:
        self.run_on_combo = QComboBox(self)
        self.run_on_combo.addItem("This machine", None)
        self.run_on_combo.addItem("Ray, local instance", LOCAL)
        self.run_on_combo.addItem("Ray cluster at", "cluster")
        where = (
            "Where the sweep's evaluations (accuracy, fidelity) run, one Ray task per layer: "
            "this machine; a Ray instance started on this machine; or a Ray cluster (the head "
            "node's HOST:PORT). Recommend's fidelity step runs there too. Latency is always "
            "measured on this machine: it is the machine the plan is for. Ray comes with "
            "the cluster extra: pip install 'secateur[cluster]'"
        )
        self.run_on_combo.setToolTip(where)
        self.address_edit = QLineEdit(self)
        self.address_edit.setPlaceholderText("HOST:PORT of the head node")
        self.address_edit.setToolTip(where)
        self.address_edit.setClearButtonEnabled(True)
        self.run_on_combo.currentIndexChanged.connect(self._on_run_on_chosen)
        self.address_edit.editingFinished.connect(self.runOnChanged)
        row = QHBoxLayout()
        row.setSpacing(6)
        row.addWidget(self.run_on_combo)
        row.addWidget(self.address_edit, 1)
        self._on_run_on_chosen()
        return row

    def _on_run_on_chosen(self) -> None:
        cluster = self.run_on_combo.currentData() == "cluster"
        self.address_edit.setVisible(cluster)
        if cluster and not self.address_edit.text():
            self.address_edit.setFocus()
        self.runOnChanged.emit()

    def run_on(self) -> str | None:
        """None for this machine, ``local``, or the cluster's address; RecipeError when
        a cluster is chosen without one."""
        chosen = self.run_on_combo.currentData()
        if chosen != "cluster":
            return chosen
        address = self.address_edit.text().strip()
        if not address:
            raise RecipeError("Run on: give the Ray cluster's address (HOST:PORT of the head)")
        return address

    def set_run_on(self, address: str | None, last_cluster: str = "") -> None:
        """Show this choice (from the preferences) without asking to apply it."""
        self.blockSignals(True)
        try:
            if address is None or address == LOCAL:
                self.run_on_combo.setCurrentIndex(self.run_on_combo.findData(address))
                self.address_edit.setText(last_cluster)
            else:
                self.run_on_combo.setCurrentIndex(self.run_on_combo.findData("cluster"))
                self.address_edit.setText(address)
        finally:
            self.blockSignals(False)
        self.address_edit.setVisible(self.run_on_combo.currentData() == "cluster")

    def set_failed(self, rows: list[dict[str, Any]]) -> None:
        """Name the layers whose evaluation failed (they have no curve, no heatmap row,
        and the slider leaves them out)."""
        if not rows:
            self.failed_label.setVisible(False)
            self.failed_label.clear()
            return
        n = len(rows)
        first = rows[0]
        self.failed_label.setText(
            f"\u2717 {n} layer{'s' * (n != 1)} failed to evaluate (no curve; the slider "
            f"leaves {'them' if n != 1 else 'it'} out): {first['name']}: {first['failed']}"
            + (f"; and {n - 1} more (hover)" if n > 1 else "")
        )
        self.failed_label.setToolTip("\n".join(f"{r['name']}: {r['failed']}" for r in rows))
        self.failed_label.setVisible(True)

    # ---------------------------------------------------------------- settings
    def set_scheme(self, scheme: str, label: str) -> None:
        """The settings panel's quantization scheme, used by 'Also quantize alone'."""
        self._scheme = scheme
        self.quantize_check.setToolTip(
            f"Also measure each layer quantized alone with the panel's scheme ({label})"
        )

    def amounts(self) -> list[float]:
        """The amounts to sweep; RecipeError names a bad entry."""
        return parse_amounts(self.amounts_edit.text())

    def subset(self) -> int | None:
        return self.subset_spin.value() or None

    def quantize_scheme(self) -> str | None:
        return self._scheme if self.quantize_check.isChecked() else None

    def target(self) -> float:
        return self.target_slider.value() / 100

    def max_drop(self, metric: str | None) -> float | None:
        """The max drop in the metric's own units (accuracy: points -> fraction)."""
        value = self.drop_spin.value()
        if not value:
            return None
        return value / 100 if metric in (None, "accuracy") else value

    def set_target(self, percent: int) -> None:
        """Move the slider (as a user would) and reallocate now (once)."""
        self.target_slider.blockSignals(True)
        self.target_slider.setValue(percent)
        self.target_slider.blockSignals(False)
        self._show_target_value()
        self._target_timer.stop()
        self.targetChanged.emit()

    def show_sparsity(self, fraction: float) -> None:
        """Put the slider where the tree's amounts are (no reallocation): after a sweep or a
        hand edit, the slider and the prediction say the same. Not while it is dragged."""
        if self.target_slider.isSliderDown() or self._target_timer.isActive():
            return
        low, high = self.target_slider.minimum(), self.target_slider.maximum()
        percent = max(low, min(high, round(100 * fraction)))
        self.target_slider.blockSignals(True)
        self.target_slider.setValue(percent)
        self.target_slider.blockSignals(False)
        self._show_target_value(fraction)

    # ---------------------------------------------------------------- views
    def set_layer_names(self, names: list[str]) -> None:
        """The swept layers (for the search box's completion); a sweep of many layers opens
        in the heatmap unless the user picked a view."""
        self._completer.model().setStringList(names)  # type: ignore[attr-defined]
        self.choose_view(len(names))

    def choose_view(self, layers: int) -> None:
        """The view for a sweep of this many layers: the heatmap above MAX_CURVES (fifty
        curves are spaghetti), unless the user picked one."""
        if not self._view_chosen:
            self.show_view(1 if layers > MAX_CURVES else 0)

    def show_view(self, index: int) -> None:
        """0: the curves, 1: the heatmap."""
        self.views.setCurrentIndex(index)
        (self.curves_button if index == 0 else self.heatmap_button).setChecked(True)

    @Slot(int)
    def _on_view_chosen(self, index: int) -> None:
        self._view_chosen = True
        self.show_view(index)

    @Slot(str)
    def _on_search(self, text: str) -> None:
        match = name_matcher(text)
        if not text.strip():
            return
        found = next((n for n in self.chart.names() if match(n, "")), None)
        if found is None:
            found = next((n for n in self.chart.names() if text.strip().lower() in n.lower()), None)
        if found is not None:
            self.highlight(found)
            self.layerFound.emit(found)

    def highlight(self, name: str | None) -> None:
        """Mark the layer in both views."""
        self.chart.highlight(name)
        self.heatmap.highlight(name)

    # ---------------------------------------------------------------- state
    def set_running(self, running: bool, has_model: bool) -> None:
        enabled = has_model and not running
        for widget in (self.amounts_edit, self.subset_spin, self.quantize_check):
            widget.setEnabled(enabled)
        self.run_button.setEnabled(enabled)
        self._running = running
        self._update_target_enabled()

    def set_has_result(self, has: bool, top_amount: float | None = None) -> None:
        self._has_result = has
        if has and top_amount:
            top = max(TARGET_RANGE[0], min(TARGET_RANGE[1], round(100 * top_amount)))
            self.target_slider.setMaximum(top)
        if not has:
            self.prediction.setText(
                "Run a sweep, then move the slider: it picks per-layer amounts that reach "
                "the target with the least predicted loss."
            )
        self._update_target_enabled()

    def _update_target_enabled(self) -> None:
        on = getattr(self, "_has_result", False) and not getattr(self, "_running", False)
        for widget in (self.target_slider, self.drop_spin):
            widget.setEnabled(on)

    def set_prediction(self, html_text: str, error: bool = False) -> None:
        self.prediction.setStyleSheet("color: #c0392b;" if error else "")
        self.prediction.setText(html_text)

    @Slot()
    def _on_target_moved(self, *args: Any) -> None:  # the user moved it
        self._show_target_value()
        if self.target_slider.isSliderDown():
            self._target_timer.start()
        else:
            self._target_timer.stop()
            self.targetChanged.emit()

    def _show_target_value(self, fraction: float | None = None) -> None:
        shown = 100 * fraction if fraction is not None else self.target_slider.value()
        self.target_value.setText(f"{shown:.0f}%")
