"""The settings panel: pruning, fine-tuning, quantization and data.

It shows, and edits, everything of the recipe that is not the layer selection. ``changed``
fires on any edit; ``state()``/``set_state()`` go to and from the plain settings objects
``gui.recipe_state`` turns into a Recipe.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.data import parse_input_shape
from core.errors import DataError, RecipeError
from core.plan import DEFAULT_MAX_DROP
from core.recipe import AUTO, Finetune, Quantize, format_validation_error
from core.schemes import KEEP_FLOAT
from gui import choices
from gui.choices import (
    BACKENDS,
    CHANNEL_SCOPES_SHOWN,
    DEFAULT_CHANNEL_SCOPE,
    DEFAULT_IMPORTANCE,
    FINETUNE_LOSSES,
    GLOBAL_METHOD,
    GRANULARITIES,
    IMPORTANCES_SHOWN,
    METHODS,
    NORMS,
    SCHEMES,
    Choice,
)
from gui.recipe_state import PruneSettings

ERROR_STYLE = "QLineEdit { border: 1px solid #c0392b; border-radius: 2px; }"


def _patterns(text: str) -> list[str]:
    return [p for p in re.split(r"[,\s]+", text.strip()) if p]


def _combo(items: tuple[Choice, ...], parent: QWidget) -> QComboBox:
    """A combo box of choices (label shown, value as its data, tip as tooltip) that stays
    narrow."""
    box = QComboBox(parent)
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(10)
    for item in items:
        box.addItem(item.label, item.value)
        if item.tip:
            box.setItemData(box.count() - 1, item.tip, Qt.ItemDataRole.ToolTipRole)
    return box


def _select(box: QComboBox, value: Any) -> None:
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)


def _dim_label(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    palette = label.palette()
    palette.setColor(
        QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
    )
    label.setPalette(palette)
    return label


class DataRow(QWidget):
    """A data file: its name, Browse and Clear; the window loads the file."""

    browseRequested = Signal()
    clearRequested = Signal()

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit(self)
        self.edit.setReadOnly(True)
        self.edit.setPlaceholderText(placeholder)
        browse = QToolButton(self)
        browse.setText("\u2026")
        browse.setToolTip("Choose a .npz or .pt data file")
        browse.clicked.connect(self.browseRequested)
        self.clear_button = QToolButton(self)
        self.clear_button.setText("\u2715")
        self.clear_button.setToolTip("Use no data file")
        self.clear_button.clicked.connect(self.clearRequested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)
        layout.addWidget(self.clear_button)
        self.set_file("", "")

    def set_file(self, name: str, tooltip: str) -> None:
        self.edit.setText(name)
        self.edit.setToolTip(tooltip)
        self.edit.setCursorPosition(0)
        self.clear_button.setEnabled(bool(name))


class SettingsPanel(QWidget):
    """Everything of the recipe except the layer selection, plus the data to measure on."""

    changed = Signal()
    runRequested = Signal()
    recommendRequested = Signal()
    evalBrowseRequested = Signal()  # the evaluation data row's "..." button
    evalClearRequested = Signal()
    trainBrowseRequested = Signal()
    trainClearRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._updating = False
        self._auto_extra: dict[str, Any] = {}  # scheme auto's fields the panel does not show
        self._build_pruning()
        self._build_finetune()
        self._build_quantize()
        self._build_data()

        content = QWidget(self)
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 6, 0)
        for box in (self.prune_box, self.quant_box, self.finetune_box, self.data_box):
            column.addWidget(box)
        column.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.recipe_label = _dim_label(self)
        self.recipe_label.setTextFormat(Qt.TextFormat.RichText)
        self.run_button = QPushButton("Compress", self)
        self.run_button.setToolTip("Prune and quantize a copy of the model, then measure (Ctrl+R)")
        self.run_button.setDefault(True)
        self.run_button.setMinimumHeight(32)
        self.run_button.clicked.connect(self.runRequested)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.recipe_label)
        layout.addWidget(self.run_button)
        self.setMinimumWidth(260)
        self._on_method_changed()
        self._on_scheme_changed()

    # ------------------------------------------------------------------ build
    def _build_pruning(self) -> None:
        box = self.prune_box = QGroupBox("Pruning (checked layers)", self)
        self.scope_layer = QRadioButton("Per layer", box)
        self.scope_layer.setToolTip("Each checked layer loses this fraction of its own weights")
        self.scope_global = QRadioButton("Global", box)
        self.scope_global.setToolTip(
            "One L1 threshold across all checked layers: this fraction of all their weights "
            "goes, more from some layers than others"
        )
        self.scope_layer.setChecked(True)
        self._scope = QButtonGroup(box)
        self._scope.addButton(self.scope_layer)
        self._scope.addButton(self.scope_global)
        scope_row = QHBoxLayout()
        scope_row.addWidget(self.scope_layer)
        scope_row.addWidget(self.scope_global)
        scope_row.addStretch(1)

        self.method_box = _combo(METHODS, box)
        self.method_box.setToolTip(
            "Unstructured methods zero single weights; structured ones zero whole channels"
        )
        self.amount_slider = QSlider(Qt.Orientation.Horizontal, box)
        self.amount_slider.setRange(0, 99)
        self.amount_slider.setValue(50)
        self.amount_spin = QDoubleSpinBox(box)
        self.amount_spin.setRange(0.0, 99.0)
        self.amount_spin.setDecimals(1)
        self.amount_spin.setSingleStep(5.0)
        self.amount_spin.setSuffix(" %")
        self.amount_spin.setValue(50.0)
        self.amount_spin.setToolTip("Fraction of weights (or channels) to prune in each layer")
        amount_row = QHBoxLayout()
        amount_row.addWidget(self.amount_slider, 1)
        amount_row.addWidget(self.amount_spin)
        self.norm_box = QComboBox(box)
        self.norm_box.addItems(NORMS)
        self.norm_box.setCurrentText("2")
        self.norm_box.setToolTip("Norm that ranks channels (ln_structured n)")
        self.dim_spin = QSpinBox(box)
        self.dim_spin.setRange(0, 4)
        self.dim_spin.setToolTip("Weight dimension of the channels: 0 = output channels")
        # remove_channels: how channels are ranked, per layer or across layers, rounding
        self.importance_box = _combo(IMPORTANCES_SHOWN, box)
        self.importance_box.setToolTip("How the channels to remove are chosen (importance)")
        _select(self.importance_box, DEFAULT_IMPORTANCE)
        self.channel_scope_box = _combo(CHANNEL_SCOPES_SHOWN, box)
        self.channel_scope_box.setToolTip(
            "Rank the channels in each layer, or in one ranking across the checked layers (scope)"
        )
        _select(self.channel_scope_box, DEFAULT_CHANNEL_SCOPE)
        self.round_spin = QSpinBox(box)
        self.round_spin.setRange(1, 4096)
        self.round_spin.setSpecialValueText("off")
        self.round_spin.setToolTip(
            "Keep each layer's channel count a multiple of this (e.g. 8 for SIMD kernels); "
            "off keeps any count (round_to)"
        )
        self.keep_masks = QCheckBox("Keep pruning masks", box)
        self.keep_masks.setToolTip(
            "Off (default): the saved file holds plain weights with zeros. On: it keeps "
            "torch.nn.utils.prune's masks, so pruning can be undone later"
        )
        self.amount_hint = _dim_label(box)
        self.amount_hint.setText(
            "Per-layer amounts: double-click the Amount column of a checked layer."
        )
        self.removal_preview = _dim_label(box)
        self.removal_preview.setTextFormat(Qt.TextFormat.PlainText)
        self.removal_preview.setVisible(False)
        form = QFormLayout(box)
        form.addRow("Scope:", scope_row)
        form.addRow("Method:", self.method_box)
        form.addRow("Amount:", amount_row)
        form.addRow("Norm (n):", self.norm_box)
        form.addRow("Dimension:", self.dim_spin)
        form.addRow("Importance:", self.importance_box)
        form.addRow("Rank:", self.channel_scope_box)
        form.addRow("Round to:", self.round_spin)
        form.addRow(self.keep_masks)
        form.addRow(self.amount_hint)
        form.addRow(self.removal_preview)
        self._prune_form = form

        self.amount_slider.valueChanged.connect(self._on_slider)
        self.amount_spin.valueChanged.connect(self._on_spin)
        self._scope.buttonToggled.connect(self._on_method_changed)
        self.method_box.currentIndexChanged.connect(self._on_method_changed)
        for signal in (
            self.norm_box.currentTextChanged,
            self.dim_spin.valueChanged,
            self.keep_masks.toggled,
            self.importance_box.currentIndexChanged,
            self.channel_scope_box.currentIndexChanged,
            self.round_spin.valueChanged,
        ):
            signal.connect(self._emit_changed)

    def _build_finetune(self) -> None:
        box = self.finetune_box = QGroupBox("Fine-tune after pruning", self)
        box.setCheckable(True)
        box.setChecked(False)
        box.setToolTip("Recovery training with the pruning masks held (needs training data)")
        self.epochs_spin = QSpinBox(box)
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(3)
        self.lr_spin = QDoubleSpinBox(box)
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(0.000001, 10.0)
        self.lr_spin.setSingleStep(0.0001)
        self.lr_spin.setValue(0.001)
        self.batch_spin = QSpinBox(box)
        self.batch_spin.setRange(1, 1_000_000)
        self.batch_spin.setValue(64)
        self.loss_box = _combo(FINETUNE_LOSSES, box)
        form = QFormLayout(box)
        form.addRow("Epochs:", self.epochs_spin)
        form.addRow("Learning rate:", self.lr_spin)
        form.addRow("Batch size:", self.batch_spin)
        form.addRow("Loss:", self.loss_box)
        box.toggled.connect(self._emit_changed)
        for signal in (
            self.epochs_spin.valueChanged,
            self.lr_spin.valueChanged,
            self.batch_spin.valueChanged,
            self.loss_box.currentIndexChanged,
        ):
            signal.connect(self._emit_changed)

    def _build_quantize(self) -> None:
        box = self.quant_box = QGroupBox("Quantization", self)
        box.setCheckable(True)
        box.setChecked(False)
        self.scheme_box = _combo(SCHEMES, box)
        self.backend_box = _combo(BACKENDS, box)
        self.backend_box.setToolTip(
            "torchao is the default; legacy torch.ao kernels are often faster on CPUs but "
            "deprecated upstream (int8 dynamic only)"
        )
        self.granularity_box = _combo(GRANULARITIES, box)
        self.quant_layers_edit = QLineEdit("*", box)
        self.quant_layers_edit.setToolTip("Glob patterns over layer names, comma-separated")
        self.quant_types_edit = QLineEdit("Linear", box)
        self.quant_types_edit.setToolTip("Module class names (subclasses count), comma-separated")
        self.max_drop_spin = QDoubleSpinBox(box)
        self.max_drop_spin.setRange(0.0, 1.0)
        self.max_drop_spin.setDecimals(3)
        self.max_drop_spin.setSingleStep(0.005)
        self.max_drop_spin.setValue(DEFAULT_MAX_DROP)
        self.max_drop_spin.setToolTip(
            "The measured plan keeps the drop of the metric within this: accuracy as a "
            "fraction (0.01 = one point) with labelled data, else cosine similarity"
        )
        self.quant_preview = _dim_label(box)
        self.recommend_button = QPushButton("Recommend", box)
        self.recommend_button.setToolTip(
            "Measure every candidate scheme of each selected layer on this machine and fill "
            "the Quant column with the fastest plan that keeps fidelity (Ctrl+Alt+P); "
            "any layer can then be changed by hand"
        )
        self.recommend_button.clicked.connect(self.recommendRequested)
        form = QFormLayout(box)
        form.addRow("Scheme:", self.scheme_box)
        form.addRow("Backend:", self.backend_box)
        form.addRow("Granularity:", self.granularity_box)
        form.addRow("Max drop:", self.max_drop_spin)
        form.addRow("Layers:", self.quant_layers_edit)
        form.addRow("Types:", self.quant_types_edit)
        form.addRow(self.quant_preview)
        form.addRow(self.recommend_button)
        self._quant_form = form
        box.toggled.connect(self._emit_changed)
        self.scheme_box.currentIndexChanged.connect(self._on_scheme_changed)
        for signal in (
            self.backend_box.currentIndexChanged,
            self.granularity_box.currentIndexChanged,
            self.quant_layers_edit.textChanged,
            self.quant_types_edit.textChanged,
            self.max_drop_spin.valueChanged,
        ):
            signal.connect(self._emit_changed)

    def _build_data(self) -> None:
        box = self.data_box = QGroupBox("Data", self)
        self.eval_row = DataRow("none", box)
        self.eval_row.setToolTip("Measured on, never trained on: accuracy, fidelity, latency")
        self.train_row = DataRow("none", box)
        self.train_row.setToolTip("Only the fine-tune step trains, and only on this data")
        self.eval_row.browseRequested.connect(self.evalBrowseRequested)
        self.eval_row.clearRequested.connect(self.evalClearRequested)
        self.train_row.browseRequested.connect(self.trainBrowseRequested)
        self.train_row.clearRequested.connect(self.trainClearRequested)
        self.shape_edit = QLineEdit(box)
        self.shape_edit.setPlaceholderText("e.g. 1x3x224x224")
        self.shape_edit.setToolTip(
            "Without evaluation data, a random input of this shape measures latency and fidelity"
        )
        self.shape_edit.textChanged.connect(self._on_shape_changed)
        self.data_info = _dim_label(box)
        form = QFormLayout(box)
        form.addRow("Evaluate on:", self.eval_row)
        form.addRow("Train on:", self.train_row)
        form.addRow("Input shape:", self.shape_edit)
        form.addRow(self.data_info)

    # --------------------------------------------------------------- handlers
    @Slot()
    def _emit_changed(self, *args: Any) -> None:
        if not self._updating:
            self.changed.emit()

    @Slot(int)
    def _on_slider(self, value: int) -> None:
        if round(self.amount_spin.value()) != value:
            self.amount_spin.setValue(float(value))

    @Slot(float)
    def _on_spin(self, value: float) -> None:
        if self.amount_slider.value() != round(value):
            self.amount_slider.blockSignals(True)
            self.amount_slider.setValue(round(value))
            self.amount_slider.blockSignals(False)
        self._emit_changed()

    @Slot()
    def _on_method_changed(self, *args: Any) -> None:
        is_global = self.scope_global.isChecked()
        if is_global:
            _select(self.method_box, choices.DEFAULT_METHOD)
        self.method_box.setEnabled(not is_global)
        method = self.method_box.currentData()
        norm = choices.uses_norm(method) and not is_global
        self._prune_form.setRowVisible(self.norm_box, norm)
        self._prune_form.setRowVisible(
            self.dim_spin, choices.is_structured(method) and not is_global
        )
        removes = choices.removes_channels(method) and not is_global
        for widget in (self.importance_box, self.channel_scope_box, self.round_spin):
            self._prune_form.setRowVisible(widget, removes)
        # removing channels leaves no mask to keep
        self._prune_form.setRowVisible(self.keep_masks, not removes)
        self.removal_preview.setVisible(removes and bool(self.removal_preview.text()))
        if is_global:
            hint = "Global: one threshold over all checked layers; per-layer amounts do not apply."
        elif removes:
            hint = (
                "Amount: the fraction of each checked layer's output channels that goes; "
                "double-click the Amount column for a per-layer amount."
            )
        else:
            hint = "Per-layer amounts: double-click the Amount column of a checked layer."
        self.amount_hint.setText(hint)
        self._emit_changed()

    @Slot()
    def _on_scheme_changed(self, *args: Any) -> None:
        entry = choices.scheme(self.scheme_box.currentData())
        # A cast (fp16, bf16) has no backend: its row is hidden and the recipe's default kept.
        backends = entry.backends if entry is not None and entry.backends else ()
        if self.backend_box.currentData() not in (backends or (BACKENDS[0].value,)):
            _select(self.backend_box, (backends or (BACKENDS[0].value,))[0])
        self.backend_box.setEnabled(len(backends) > 1)
        self._quant_form.setRowVisible(self.backend_box, bool(backends))
        self.granularity_box.setEnabled(entry is not None and entry.granular)
        self._quant_form.setRowVisible(self.granularity_box, entry is None or entry.granular)
        self._quant_form.setRowVisible(self.max_drop_spin, self.scheme_box.currentData() == AUTO)
        self._emit_changed()

    @Slot(str)
    def _on_shape_changed(self, text: str) -> None:
        try:
            self.input_shape()
        except DataError as exc:
            self.shape_edit.setStyleSheet(ERROR_STYLE)
            self.shape_edit.setToolTip(str(exc))
        else:
            self.shape_edit.setStyleSheet("")
            self.shape_edit.setToolTip(
                "Without evaluation data, a random input of this shape measures latency and "
                "fidelity"
            )
        self._emit_changed()

    # ------------------------------------------------------------------ state
    def prune_settings(self) -> PruneSettings:
        is_global = self.scope_global.isChecked()
        norm: int | float | str = self.norm_box.currentText()
        if isinstance(norm, str) and norm.lstrip("-").isdigit():
            norm = int(norm)
        method = GLOBAL_METHOD if is_global else self.method_box.currentData()
        removes = choices.removes_channels(method)
        importance = self.importance_box.currentData()
        scope = self.channel_scope_box.currentData()
        round_to = self.round_spin.value()
        return PruneSettings(
            method=method,
            amount=round(self.amount_spin.value() / 100, 4),
            n=norm,
            dim=self.dim_spin.value(),
            permanent=removes or not self.keep_masks.isChecked(),
            importance=importance if removes and importance != DEFAULT_IMPORTANCE else None,
            scope=scope if removes and scope != DEFAULT_CHANNEL_SCOPE else None,
            round_to=round_to if removes and round_to > 1 else None,
        )

    def finetune(self) -> Finetune | None:
        if not self.finetune_box.isChecked():
            return None
        return Finetune(
            epochs=self.epochs_spin.value(),
            lr=self.lr_spin.value(),
            batch_size=self.batch_spin.value(),
            loss=self.loss_box.currentData(),
        )

    def quantize(self) -> Quantize | None:
        """The quantize section; RecipeError names the field when it is invalid."""
        if not self.quant_box.isChecked():
            return None
        return self._rule(self.scheme_box.currentData())

    def selection_rule(self) -> Quantize:
        """The layers the quantize settings select, as a ``scheme: auto`` rule with the max
        drop (what Recommend plans), whether quantization is on or not."""
        return self._rule(AUTO)

    def _rule(self, scheme: str) -> Quantize:
        fields: dict[str, Any] = {
            "scheme": scheme,
            "layers": _patterns(self.quant_layers_edit.text()),
            "types": _patterns(self.quant_types_edit.text()),
        }
        if scheme == AUTO:
            fields.update(self._auto_extra)
            fields["max_drop"] = round(self.max_drop_spin.value(), 6)
        elif scheme != KEEP_FLOAT:
            fields["backend"] = self.backend_box.currentData()
            fields["granularity"] = self.granularity_box.currentData()
        try:
            return Quantize(**fields)
        except ValidationError as exc:
            raise RecipeError(f"settings: quantize.{format_validation_error(exc)}") from None

    def scheme(self) -> str:
        """The chosen quantization scheme, whether quantization is on or not (the
        sensitivity sweep's "Also quantize alone" uses it)."""
        return str(self.scheme_box.currentData())

    def quantize_enabled(self) -> bool:
        return self.quant_box.isChecked()

    def set_input_shape(self, text: str) -> None:
        """The input shape field ('1x3x224x224'; empty: none)."""
        self.shape_edit.setText(text)

    def input_shape(self) -> tuple[int, ...] | None:
        text = self.shape_edit.text().strip()
        return parse_input_shape(text) if text else None

    def set_prune_settings(self, prune: PruneSettings) -> None:
        self._updating = True
        try:
            is_global = prune.method == GLOBAL_METHOD
            (self.scope_global if is_global else self.scope_layer).setChecked(True)
            if not is_global:
                _select(self.method_box, prune.method)
            if isinstance(prune.amount, float):
                self.amount_spin.setValue(100 * prune.amount)
            self.norm_box.setCurrentText(str(prune.n))
            self.dim_spin.setValue(prune.dim)
            self.keep_masks.setChecked(not prune.permanent)
            _select(self.importance_box, prune.importance or DEFAULT_IMPORTANCE)
            _select(self.channel_scope_box, prune.scope or DEFAULT_CHANNEL_SCOPE)
            self.round_spin.setValue(prune.round_to or 1)
        finally:
            self._updating = False
        self._on_method_changed()

    def set_finetune(self, finetune: Finetune | None) -> None:
        self._updating = True
        try:
            self.finetune_box.setChecked(finetune is not None)
            if finetune is not None:
                self.epochs_spin.setValue(finetune.epochs)
                self.lr_spin.setValue(finetune.lr)
                self.batch_spin.setValue(finetune.batch_size)
                _select(self.loss_box, finetune.loss)
        finally:
            self._updating = False
        self._emit_changed()

    def set_quantize(self, quantize: Quantize | None) -> None:
        self._updating = True
        try:
            self.quant_box.setChecked(quantize is not None)
            if quantize is not None:
                _select(self.scheme_box, quantize.scheme)
                self._on_scheme_changed()
                _select(self.backend_box, quantize.backend)
                _select(self.granularity_box, quantize.granularity)
                self.quant_layers_edit.setText(", ".join(quantize.layers))
                self.quant_types_edit.setText(", ".join(quantize.types or []))
                if quantize.is_auto:
                    fields = ("metric", "candidates", "threads", "batch_size")
                    self._auto_extra = {
                        k: getattr(quantize, k) for k in fields if getattr(quantize, k) is not None
                    }
                    max_drop = quantize.max_drop
                    self.max_drop_spin.setValue(DEFAULT_MAX_DROP if max_drop is None else max_drop)
        finally:
            self._updating = False
        self._emit_changed()

    def set_scheme(self, scheme: str) -> None:
        """Choose the panel's scheme (after a plan: keep float, the plan is per layer)."""
        _select(self.scheme_box, scheme)

    def set_removal_preview(self, text: str, error: bool = False) -> None:
        """What removing channels will shrink ('' hides it), or why it cannot (red)."""
        self.removal_preview.setStyleSheet("color: #c0392b;" if error else "")
        self.removal_preview.setText(text)
        removes = choices.removes_channels(self.prune_settings().method)
        self.removal_preview.setVisible(bool(text) and removes)

    def set_quant_preview(self, text: str, error: bool = False) -> None:
        self.quant_preview.setStyleSheet("color: #c0392b;" if error else "")
        self.quant_preview.setText(text)

    def set_recipe_summary(self, html_text: str) -> None:
        self.recipe_label.setText(html_text)

    def set_eval_file(self, name: str, tooltip: str) -> None:
        """The evaluation data row: the file's name ('' for none) and its details."""
        self.eval_row.set_file(name, tooltip)

    def set_train_file(self, name: str, tooltip: str) -> None:
        """The training data row: the file's name ('' for none) and its details."""
        self.train_row.set_file(name, tooltip)

    def data_file_names(self) -> tuple[str, str]:
        """The file names the evaluation and training data rows show ('' for none)."""
        return self.eval_row.edit.text(), self.train_row.edit.text()

    def set_data_info(self, text: str) -> None:
        self.data_info.setText(text)
        self.data_info.setVisible(bool(text))

    def set_running(self, running: bool) -> None:
        for box in (self.prune_box, self.quant_box, self.finetune_box, self.data_box):
            box.setEnabled(not running)
        self.run_button.setEnabled(not running)

    def sizeHint(self) -> Any:
        hint = super().sizeHint()
        hint.setWidth(300)
        return hint
