"""The layer tree as the user sees it: the filter box, the Check menu, the tree view with its
amount editor, and a one-line summary of what is checked. The data is the item model's
(``gui.layer_tree_model``), which adapts a ``LayerSelection``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QSortFilterProxyModel, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.inventory import LayerInfo
from gui.layer_selection import Kind, LayerSelection
from gui.layer_tree_model import HEADERS, NAME_ROLE, Col, LayerFilterProxy, LayerTreeModel


class AmountDelegate(QStyledItemDelegate):
    """Edits a per-layer amount as a percentage."""

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex
    ) -> QWidget:
        editor = QDoubleSpinBox(parent)
        editor.setRange(0.0, 99.9)
        editor.setDecimals(1)
        editor.setSingleStep(5.0)
        editor.setSuffix(" %")
        editor.setFrame(False)
        return editor

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:
        value = index.data(Qt.ItemDataRole.EditRole)
        if isinstance(value, float):
            editor.setValue(100 * value)  # type: ignore[attr-defined]

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex) -> None:
        editor.interpretText()  # type: ignore[attr-defined]
        model.setData(index, round(editor.value() / 100, 4), Qt.ItemDataRole.EditRole)  # type: ignore[attr-defined]


class LayerTreeView(QTreeView):
    """The tree; Delete on a selected layer's amount resets it to the panel's amount.
    Empty, it says how to open a model."""

    PLACEHOLDER = (
        "No model open.\n\nFile \u203a Open Model (Ctrl+O), File \u203a Open Demo "
        "(Ctrl+Shift+D),\nor drop a model file here."
    )

    def paintEvent(self, event: Any) -> None:
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.viewport().rect().adjusted(12, 12, -12, -12),
                int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                self.PLACEHOLDER,
            )
            painter.end()

    def keyPressEvent(self, event: Any) -> None:
        if event.matches(QKeySequence.StandardKey.Delete) or event.key() == Qt.Key.Key_Backspace:
            proxy = self.model()
            source = proxy.sourceModel() if isinstance(proxy, QSortFilterProxyModel) else proxy
            if not isinstance(source, LayerTreeModel) or source.locked:
                return
            selection = source.selection
            for index in self.selectionModel().selectedRows(Col.NAME):
                name = index.data(NAME_ROLE)
                if name is not None and selection.effective_amount(name) is not None:
                    selection.set_override(name, None)
            return
        super().keyPressEvent(event)


class LayerTreePanel(QWidget):
    """Filter box, selection helpers, the tree and a one-line summary of what is checked."""

    layerSelected = Signal(str)

    def __init__(
        self, selection: LayerSelection | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.model = LayerTreeModel(selection, self)
        self.selection = self.model.selection
        self.proxy = LayerFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by name or type (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)

        self.select_button = QToolButton(self)
        self.select_button.setText("Check")
        self.select_button.setToolTip("Check layers for pruning by kind")
        self.select_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.select_menu = QMenu(self.select_button)
        self.select_button.setMenu(self.select_menu)

        self.view = LayerTreeView(self)
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # keep both ends of names
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.view.setItemDelegateForColumn(Col.AMOUNT, AmountDelegate(self.view))
        header = self.view.header()
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        header.setSectionsMovable(False)
        header.setStretchLastSection(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        widths = {
            Col.NAME: 152,
            Col.TYPE: 92,
            Col.PARAMS: 62,
            Col.SHAPE: 74,
            Col.BEFORE: 54,
            Col.AFTER: 54,
            Col.QUANT: 74,
            Col.AMOUNT: 56,
        }
        for col, width in widths.items():
            header.resizeSection(col, width)
        header.setSectionResizeMode(Col.NAME, QHeaderView.ResizeMode.Interactive)
        self.view.selectionModel().currentRowChanged.connect(self._on_current_changed)

        self.summary = QLabel(self)
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        palette = self.summary.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.summary.setPalette(palette)
        self.model.checksChanged.connect(self._update_summary)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.select_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.summary)
        self._update_summary()

    def show_layers(
        self, layers: Sequence[LayerInfo], title: str, kinds: Mapping[str, Kind] | None = None
    ) -> None:
        """A new model: its inventory in the tree (nothing checked), opened as far as is
        cheap (every row of a small model, the top two levels of a big one)."""
        self.model.set_layers(layers, title, kinds)
        root = self.proxy.index(0, 0)
        if not root.isValid():
            return
        if len(layers) <= 300:
            self.view.expandAll()
            self._fit_columns()
        else:  # a big model: the top two levels, the rest on demand
            self.view.expandToDepth(0)

    def _fit_columns(self) -> None:
        """Columns as wide as their content (small models only: it reads every row)."""
        header = self.view.header()
        metrics = header.fontMetrics()
        for col in Col:
            title = max(
                (metrics.horizontalAdvance(line) for line in HEADERS[col][0].splitlines()),
                default=0,
            )
            floor = 72 if col == Col.QUANT else 0  # 'int8 w-only' appears after the preview
            wanted = max(self.view.sizeHintForColumn(col), title + 8, floor)
            header.resizeSection(col, min(wanted + 2, 260 if col == Col.NAME else 140))

    def select_layer(self, name: str) -> None:
        """Make ``name`` the current row (expanding its parents) and scroll to it."""
        source = self.model.index_of(name)
        if not source.isValid():
            return
        index = self.proxy.mapFromSource(source)
        if not index.isValid():  # filtered out: clear the filter so it can be shown
            self.filter_edit.clear()
            index = self.proxy.mapFromSource(source)
        self.view.setCurrentIndex(index)
        self.view.scrollTo(index, QAbstractItemView.ScrollHint.EnsureVisible)

    def add_check_action(self, action: QAction) -> None:
        """An entry of the Check menu (the window's selection helpers)."""
        self.select_menu.addAction(action)

    def focus_filter(self) -> None:
        """Put the cursor in the filter box, its text selected (Edit > Find Layer)."""
        self.filter_edit.setFocus()
        self.filter_edit.selectAll()

    def current_layer(self) -> str | None:
        index = self.view.currentIndex()
        return index.data(NAME_ROLE) if index.isValid() else None

    @Slot(str)
    def _on_filter_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        if text.strip():
            self.view.expandAll()

    @Slot(QModelIndex, QModelIndex)
    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        name = current.data(NAME_ROLE) if current.isValid() else None
        if name is not None:
            self.layerSelected.emit(name)

    @Slot()
    def _update_summary(self) -> None:
        done, total, params = self.selection.checked_summary()
        if not self.model.layers():
            self.summary.setText("No model open")
            return
        self.summary.setText(
            f"{done} of {total} prunable layers checked \u00b7 {params:,} parameters to prune"
        )
