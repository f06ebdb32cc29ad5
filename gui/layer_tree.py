"""The layer tree as the user sees it: the filter box, the Check menu, the tree view with its
amount and scheme editors, a context menu for the selected rows, the header's menu of
columns, the selected layer's details and a one-line summary of what is checked. The data is
the item model's (``gui.layer_tree_model``), which adapts a ``LayerSelection``.

An edit made with several rows selected (an amount, a scheme) applies to every selected row
that can take it, as the context menu's entries do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QPoint,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.inventory import LayerInfo
from gui import choices, prefs
from gui.choices import LayerSchemeChoice
from gui.layer_details import LayerDetails
from gui.layer_selection import Kind, LayerScheme, LayerSelection
from gui.layer_tree_model import (
    HEADERS,
    HIDDEN_BY_DEFAULT,
    NAME_ROLE,
    OPTIONAL_COLUMNS,
    Col,
    LayerFilterProxy,
    LayerTreeModel,
)

SchemeOptions = Callable[[str], Sequence[LayerSchemeChoice]]
SETTINGS_RULE = "the settings\u2019 rule"
COLUMN_WIDTHS = {
    Col.TYPE: 96,
    Col.AMOUNT: 62,
    Col.AFTER: 62,
    Col.QUANT: 96,
    Col.PARAMS: 74,
    Col.SHAPE: 90,
    Col.BEFORE: 62,
}
NAME_MIN_WIDTH = 170
VISIBLE_FIXED = (Col.TYPE, Col.AMOUNT, Col.AFTER, Col.QUANT)


def _source_of(view: QTreeView) -> LayerTreeModel | None:
    proxy = view.model()
    source = proxy.sourceModel() if isinstance(proxy, QSortFilterProxyModel) else proxy
    return source if isinstance(source, LayerTreeModel) else None


class AmountDelegate(QStyledItemDelegate):
    """Edits a per-layer amount as a percentage (for every selected row at once)."""

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
        amount = round(editor.value() / 100, 4)  # type: ignore[attr-defined]
        view = self.parent()
        if isinstance(view, LayerTreeView):
            view.set_amount_of(view.edited_names(index), amount)
        else:
            model.setData(index, amount, Qt.ItemDataRole.EditRole)


class SchemeDelegate(QStyledItemDelegate):
    """Edits a layer's own quantization scheme with a combo box: the settings' rule, keep
    float, or a plan candidate the layer can take (for every selected row at once)."""

    def __init__(self, options: Callable[[], SchemeOptions], parent: QWidget) -> None:
        super().__init__(parent)
        self._options = options

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex
    ) -> QWidget:
        editor = QComboBox(parent)
        editor.addItem(SETTINGS_RULE, None)
        editor.setItemData(
            0,
            "No scheme of its own: the settings panel's rule decides",
            Qt.ItemDataRole.ToolTipRole,
        )
        for choice in self._options()(index.data(NAME_ROLE) or ""):
            editor.addItem(choice.label, choice.scheme)
            editor.setItemData(editor.count() - 1, choice.tip, Qt.ItemDataRole.ToolTipRole)
        editor.activated.connect(lambda _i, e=editor: self._commit(e))
        return editor

    def _commit(self, editor: QWidget) -> None:
        self.commitData.emit(editor)
        self.closeEditor.emit(editor, QStyledItemDelegate.EndEditHint.NoHint)

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        current = index.data(Qt.ItemDataRole.EditRole)
        for i in range(editor.count()):
            data = editor.itemData(i)
            if (data is None and current is None) or (
                isinstance(data, LayerScheme)
                and current is not None
                and choices.normalized(data) == choices.normalized(current)
            ):
                editor.setCurrentIndex(i)
                return

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: QModelIndex) -> None:
        assert isinstance(editor, QComboBox)
        scheme = editor.currentData()
        view = self.parent()
        if isinstance(view, LayerTreeView):
            view.set_scheme_of(view.edited_names(index), scheme)
        else:
            model.setData(index, scheme, Qt.ItemDataRole.EditRole)


class LayerTreeView(QTreeView):
    """The tree; Delete on selected rows resets their amount and scheme. Empty, it says how
    to open a model."""

    PLACEHOLDER = (
        "No model open.\n\nFile \u203a Open Model (Ctrl+O), File \u203a Open Demo "
        "(Ctrl+Shift+D),\nor drop a model file here."
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scheme_options: SchemeOptions = lambda name: choices.LAYER_SCHEMES

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
            self.reset_selected()
            return
        super().keyPressEvent(event)

    # ------------------------------------------------------------ the selected rows
    def selected_names(self) -> list[str]:
        """The selected rows' layer names, in model order."""
        source = _source_of(self)
        if source is None:
            return []
        names = {index.data(NAME_ROLE) for index in self.selectionModel().selectedRows(Col.NAME)}
        return [info.name for info in source.layers() if info.name in names]

    def edited_names(self, index: QModelIndex) -> list[str]:
        """The row being edited and, when it is selected, every other selected row."""
        name = index.data(NAME_ROLE)
        selected = self.selected_names()
        return selected if name in selected else [name]

    def _selection(self) -> LayerSelection | None:
        source = _source_of(self)
        return None if source is None or source.locked else source.selection

    def set_checked_of(self, names: Sequence[str], on: bool) -> None:
        selection = self._selection()
        if selection is not None:
            wanted = set(selection.checked_names())
            wanted = wanted | set(names) if on else wanted - set(names)
            selection.set_checked_names(wanted)

    def set_amount_of(self, names: Sequence[str], amount: float | None) -> None:
        """A per-layer amount for the checked ones among ``names`` (None: the panel's)."""
        selection = self._selection()
        if selection is None or selection.is_global:
            return
        for name in names:
            if selection.effective_amount(name) is not None:
                selection.set_override(name, amount)

    def set_scheme_of(self, names: Sequence[str], scheme: LayerScheme | None) -> None:
        """A scheme of their own for those of ``names`` that can take it (None: the
        settings' rule again)."""
        selection = self._selection()
        source = _source_of(self)
        if selection is None or source is None:
            return
        wanted: dict[str, LayerScheme | None] = {}
        for name in names:
            info = source.info(name)
            if info is None or not (info.quantizable and info.prunable):
                continue
            if scheme is None:
                wanted[name] = None
            elif any(c.scheme == choices.normalized(scheme) for c in self.scheme_options(name)):
                wanted[name] = scheme
        selection.set_schemes_of(wanted)

    def reset_selected(self) -> None:
        """The selected rows go back to the panel's amount and the settings' rule."""
        names = self.selected_names()
        self.set_amount_of(names, None)
        self.set_scheme_of(names, None)


class LayerTreePanel(QWidget):
    """Filter box, selection helpers, the tree, the details of the current layer and a
    one-line summary of what is checked."""

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
        self.filter_edit.setPlaceholderText("Filter: features.1, *.conv.*, linear (Ctrl+F)")
        self.filter_edit.setToolTip(
            "Whole parts of a layer's dotted name (features.1 finds features.1 and what is "
            "inside it, not features.10), glob patterns as in recipes (features.1*), or the "
            "beginning of a type (linear, conv)"
        )
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
        self.view.setItemDelegateForColumn(
            Col.QUANT, SchemeDelegate(lambda: self.view.scheme_options, self.view)
        )
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_context_menu)
        self._auto_shown: set[Col] = set()  # shown or hidden for a run, not by the user
        self._auto_hidden: set[Col] = set()
        self._build_header()
        self.view.selectionModel().currentRowChanged.connect(self._on_current_changed)

        self.details = LayerDetails(self.model, self)
        self.details.setObjectName("layerDetails")

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
        self.split = QSplitter(Qt.Orientation.Vertical, self)
        self.split.addWidget(self.view)
        self.split.addWidget(self.details)
        self.split.setStretchFactor(0, 1)
        self.split.setChildrenCollapsible(False)
        self.split.setSizes([520, 230])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.split, 1)
        layout.addWidget(self.summary)
        # the name keeps room beside the columns that matter, whatever the other panes want
        self.setMinimumWidth(NAME_MIN_WIDTH + sum(COLUMN_WIDTHS[c] for c in VISIBLE_FIXED) + 40)
        self._update_summary()

    # ------------------------------------------------------------------ columns
    def _build_header(self) -> None:
        header = self.view.header()
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.view.setSortingEnabled(True)
        header.setSectionsMovable(False)
        header.setStretchLastSection(False)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignCenter)
        header.setMinimumSectionSize(36)
        # The name takes what the other columns leave, so the columns that matter stay in
        # view at any width (no horizontal scrolling that hides the names or the boxes).
        header.setSectionResizeMode(Col.NAME, QHeaderView.ResizeMode.Stretch)
        for col, width in COLUMN_WIDTHS.items():
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(col, width)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(
            lambda pos: self.column_menu().exec(header.mapToGlobal(pos))
        )
        hidden = prefs.hidden_columns(tuple(c.name for c in HIDDEN_BY_DEFAULT))
        for col in OPTIONAL_COLUMNS:
            header.setSectionHidden(col, col.name in hidden)

    def column_menu(self) -> QMenu:
        """The header's context menu: a checkable entry per optional column."""
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        header = self.view.header()
        for col in OPTIONAL_COLUMNS:
            title, tip = HEADERS[col]
            action = menu.addAction(title.replace("\n", " "))
            action.setCheckable(True)
            action.setChecked(not header.isSectionHidden(col))
            action.setToolTip(tip)
            action.toggled.connect(partial(self.set_column_visible, col))
        return menu

    def set_column_visible(self, col: Col, visible: bool) -> None:
        """Show or hide a column; remembered for the next session."""
        if col == Col.NAME:
            return
        self._auto_hidden.discard(col)  # the user's choice, from now on
        self._auto_shown.discard(col)
        header = self.view.header()
        header.setSectionHidden(col, not visible)
        if visible and header.sectionSize(col) < 20:
            header.resizeSection(col, COLUMN_WIDTHS[col])
        prefs.set_hidden_columns([c.name for c in OPTIONAL_COLUMNS if header.isSectionHidden(c)])

    def show_reshaped(self, zeroed: bool) -> int:
        """After a run that removed channels: the Weight column in view, wide enough for
        'before \u2192 after'. When the run zeroed nothing (``zeroed`` false), Sparsity after
        (0% everywhere) makes room for it, and the Quant. column gives back what its short
        texts do not use. For this session only: the header's menu still shows and hides
        them, what it remembers is unchanged, and ``restore_columns`` undoes it. Params
        (before \u2192 after too) stays as chosen: the details pane has it.

        Returns how many pixels wider the tree would have to be for the names to keep their
        room beside the columns shown (0: it fits)."""
        header, metrics = self.view.header(), self.view.fontMetrics()
        texts = list(self.model.reshaped().values())
        if header.isSectionHidden(Col.SHAPE):
            self._auto_shown.add(Col.SHAPE)
            header.setSectionHidden(Col.SHAPE, False)
        if not zeroed and not header.isSectionHidden(Col.AFTER):
            header.setSectionHidden(Col.AFTER, True)
            self._auto_hidden.add(Col.AFTER)
        elif zeroed and Col.AFTER in self._auto_hidden:
            header.setSectionHidden(Col.AFTER, False)
            self._auto_hidden.discard(Col.AFTER)
        for col, k in ((Col.SHAPE, 0), (Col.PARAMS, 1)):
            widest = max((metrics.horizontalAdvance(t[k]) for t in texts), default=0)
            header.resizeSection(col, max(COLUMN_WIDTHS[col], widest + 14))
        quant = {
            self.model.index_of(info.name, Col.QUANT).data() or "" for info in self.model.layers()
        }
        widest = max(metrics.horizontalAdvance(t) for t in {*quant, "Quant."})
        header.resizeSection(Col.QUANT, min(COLUMN_WIDTHS[Col.QUANT], widest + 16))
        return self._deficit()

    def fit_reshaped(self) -> None:
        """With no more room to take from the other panes: the Weight column gives up what
        the names need (its text is then elided in the middle; the tooltip has it whole)."""
        deficit = self._deficit()
        if deficit > 0:
            header = self.view.header()
            width = max(COLUMN_WIDTHS[Col.SHAPE], header.sectionSize(Col.SHAPE) - deficit)
            header.resizeSection(Col.SHAPE, width)

    def restore_columns(self) -> None:
        """Undo what ``show_reshaped`` showed and hid for the session."""
        header = self.view.header()
        for col in self._auto_hidden:
            header.setSectionHidden(col, False)
        for col in self._auto_shown:
            header.setSectionHidden(col, True)
        self._auto_hidden.clear()
        self._auto_shown.clear()
        header.resizeSection(Col.QUANT, COLUMN_WIDTHS[Col.QUANT])

    def _deficit(self) -> int:
        header = self.view.header()
        shown = sum(
            header.sectionSize(c) for c in OPTIONAL_COLUMNS if not header.isSectionHidden(c)
        )
        return max(0, self._name_width() + shown - self.view.viewport().width())

    def _name_width(self) -> int:
        """What the names need (indentation, check box, the longest short name), at most
        NAME_MIN_WIDTH: the width the name column keeps beside the others."""
        metrics, indent = self.view.fontMetrics(), self.view.indentation()
        need = 0
        for info in self.model.layers():
            depth = info.name.count(".") + 1 if info.name else 0
            text = metrics.horizontalAdvance(info.short_name if info.name else "model")
            need = max(need, (depth + 1) * indent + 24 + text)
            if need >= NAME_MIN_WIDTH:
                return NAME_MIN_WIDTH
        return need

    def visible_columns(self) -> list[Col]:
        header = self.view.header()
        return [c for c in Col if not header.isSectionHidden(c)]

    def column_in_view(self, col: Col) -> bool:
        """Whether the whole column is inside the tree's viewport (nothing to scroll)."""
        header = self.view.header()
        if header.isSectionHidden(col):
            return False
        left = header.sectionViewportPosition(col)
        return left >= 0 and left + header.sectionSize(col) <= self.view.viewport().width()

    # ------------------------------------------------------------------ the menu
    def selection_menu(self) -> QMenu:
        """Check, uncheck, set amount, set scheme and reset, for the selected rows."""
        view, names = self.view, self.view.selected_names()
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        prunable = [n for n in names if self.selection.is_checkable(n)]
        checked = [n for n in prunable if self.selection.is_checked(n)]
        locked = self.model.locked
        count = f" ({len(names)} rows)" if len(names) > 1 else ""
        check = menu.addAction(f"Check{count}")
        check.triggered.connect(lambda: view.set_checked_of(prunable, True))
        check.setEnabled(bool(prunable) and not locked)
        uncheck = menu.addAction(f"Uncheck{count}")
        uncheck.triggered.connect(lambda: view.set_checked_of(prunable, False))
        uncheck.setEnabled(bool(checked) and not locked)
        menu.addSeparator()
        amount = menu.addAction("Set Amount\u2026")
        amount.setEnabled(bool(checked) and not locked and not self.selection.is_global)
        amount.triggered.connect(lambda: self._ask_amount(checked))
        schemes = menu.addMenu("Set Scheme")
        schemes.setToolTipsVisible(True)
        takers = [n for n in names if (info := self.model.info(n)) and info.quantizable]
        schemes.setEnabled(bool(takers) and not locked)
        rule = schemes.addAction(SETTINGS_RULE[:1].upper() + SETTINGS_RULE[1:])
        rule.triggered.connect(lambda: view.set_scheme_of(takers, None))
        schemes.addSeparator()
        for choice in choices.LAYER_SCHEMES:
            entry = schemes.addAction(choice.label)
            entry.setToolTip(choice.tip)
            entry.triggered.connect(partial(view.set_scheme_of, takers, choice.scheme))
        menu.addSeparator()
        reset = menu.addAction("Reset Amount and Scheme")
        reset.setToolTip("Back to the panel's amount and the settings' quantization rule")
        reset.setEnabled(bool(names) and not locked)
        reset.triggered.connect(view.reset_selected)
        return menu

    def _ask_amount(self, names: Sequence[str]) -> None:
        if not names:
            return
        current = self.selection.effective_amount(names[0])
        start = 100 * current if isinstance(current, float) else 50.0
        value, ok = QInputDialog.getDouble(
            self, "Set Amount", f"Prune this % of each of the {len(names)} layers' weights:",
            start, 0.0, 99.9, 1,
        )  # fmt: skip
        if ok:
            self.view.set_amount_of(names, round(value / 100, 4))

    @Slot(QPoint)
    def _on_context_menu(self, pos: QPoint) -> None:
        if not self.model.layers():
            return
        self.selection_menu().exec(self.view.viewport().mapToGlobal(pos))

    # ------------------------------------------------------------------ showing
    def set_scheme_options(self, options: SchemeOptions) -> None:
        """What the Quant column offers a layer (the candidates that can quantize it)."""
        self.view.scheme_options = options

    def show_layers(
        self, layers: Sequence[LayerInfo], title: str, kinds: Mapping[str, Kind] | None = None
    ) -> None:
        """A new model: its inventory in the tree (nothing checked), opened as far as is
        cheap (every row of a small model, the top two levels of a big one)."""
        self.model.set_layers(layers, title, kinds)
        self.details.show_layer(None)
        root = self.proxy.index(0, 0)
        if not root.isValid():
            return
        if len(layers) <= 300:
            self.view.expandAll()
        else:  # a big model: the top two levels, the rest on demand
            self.view.expandToDepth(0)
        self._fit_type_column(layers)

    def _fit_type_column(self, layers: Sequence[LayerInfo]) -> None:
        """The Type column as wide as its longest type name (measured once per distinct
        name, not per row: a view's size hint reads every row, 60 ms at 270 rows)."""
        metrics = self.view.fontMetrics()
        names = {info.type for info in layers}
        widest = max((metrics.horizontalAdvance(n) for n in names), default=60)
        self.view.header().resizeSection(Col.TYPE, min(max(widest + 16, 64), 130))

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

    def select_rows(self, names: Sequence[str]) -> None:
        """Select these rows (the first one current), as a user's Ctrl+clicks would."""
        model = self.view.selectionModel()
        model.clearSelection()
        flags = model.SelectionFlag.Select | model.SelectionFlag.Rows
        for i, name in enumerate(names):
            index = self.proxy.mapFromSource(self.model.index_of(name))
            if i == 0:
                self.view.setCurrentIndex(index)
            model.select(index, flags)

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

    def shown_names(self) -> list[str]:
        """The rows the filter lets through, in view order (expanded or not)."""
        names: list[str] = []
        stack = [QModelIndex()]
        while stack:
            parent = stack.pop()
            for row in reversed(range(self.proxy.rowCount(parent))):
                stack.append(self.proxy.index(row, 0, parent))
            if parent.isValid():
                names.append(parent.data(NAME_ROLE))
        return names

    @Slot(str)
    def _on_filter_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        if text.strip():
            self.view.expandAll()

    @Slot(QModelIndex, QModelIndex)
    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        name = current.data(NAME_ROLE) if current.isValid() else None
        self.details.show_layer(name)
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
