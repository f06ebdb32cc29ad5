"""The layer tree: a QAbstractItemModel over the core's layer inventory, and its view.

The model holds plain per-row arrays (one entry per module, in ``named_modules()`` order):
the inventory itself, whether the layer is checked for pruning, its per-layer amount, and the
last run's results. The check box is one role backed by one field; a parent's tri-state is
derived from counters kept up to date incrementally, so ``data()`` stays pure and cheap.
Every change, from the view or from code, emits ``dataChanged`` for exactly the rows it
touched, and ``checksChanged``/``amountsChanged`` so the window can rebuild its recipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QBrush, QColor, QFont, QKeySequence, QPainter, QPalette
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
from gui import qt_fixes

qt_fixes.install()  # before any signal is emitted: see gui/qt_fixes.py

Amount = int | float


class Col(IntEnum):
    NAME = 0
    TYPE = 1
    PARAMS = 2
    SHAPE = 3
    BEFORE = 4
    AFTER = 5
    QUANT = 6
    AMOUNT = 7


HEADERS = {
    Col.NAME: ("Layer", "Module name; check a layer to prune it"),
    Col.TYPE: ("Type", "Module class"),
    Col.PARAMS: ("Params", "The layer's own parameters (grey: total of the layers inside)"),
    Col.SHAPE: ("Weight", "Shape of the layer's weight"),
    Col.BEFORE: ("Sparsity\nbefore", "Fraction of exactly-zero weights in the original model"),
    Col.AFTER: ("Sparsity\nafter", "Fraction of exactly-zero weights after the last run"),
    Col.QUANT: ("Quant.", "How the layer is (or, in grey, will be) quantized"),
    Col.AMOUNT: (
        "Amount",
        "Fraction of the layer's weights to prune; double-click to set a per-layer amount, "
        "Delete to go back to the panel's amount",
    ),
}

BULK_PARENTS = 64  # above this many parents a change is announced as one layout change
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2
_NUMERIC = {Col.PARAMS, Col.BEFORE, Col.AFTER, Col.AMOUNT}
# Roles a check, amount or result change can touch. Naming them (rather than "all roles")
# lets the filter proxy skip re-filtering: it filters on NAME_ROLE, which never changes.
_CHANGED_ROLES = [
    Qt.ItemDataRole.DisplayRole,
    Qt.ItemDataRole.CheckStateRole,
    Qt.ItemDataRole.EditRole,
    Qt.ItemDataRole.ToolTipRole,
    Qt.ItemDataRole.ForegroundRole,
    Qt.ItemDataRole.FontRole,
]


def is_linear(info: LayerInfo) -> bool:
    return "Linear" in info.type


def is_conv(info: LayerInfo) -> bool:
    return "Conv" in info.type


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def amount_text(value: Amount) -> str:
    if isinstance(value, int):
        return f"{value:,} w."
    return f"{100 * value:.4g}%"


SHORT_SCHEMES = {"int8_dynamic": "int8 dyn.", "int8_weight_only": "int8 w-only"}


def short_quant(label: str | None) -> str:
    """'int8_dynamic (torchao, per_channel)' -> 'int8 dyn.' (the tooltip has it all)."""
    if not label:
        return ""
    scheme = label.split(" (")[0]
    return SHORT_SCHEMES.get(scheme, scheme)


class LayerTreeModel(QAbstractItemModel):
    """Modules as a tree; checkable prunable layers; per-layer amounts; run results."""

    checksChanged = Signal()
    amountsChanged = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._layers: list[LayerInfo] = []
        self._title = ""
        self._ids: dict[str, int] = {}
        self._parent: list[int] = []
        self._children: list[list[int]] = []
        self._row: list[int] = []
        self._static: list[tuple[str, str, str, str]] = []
        self._totals: list[int] = []
        self._checked: list[bool] = []
        self._n_checkable: list[int] = []
        self._n_checked: list[int] = []
        self._override: dict[int, Amount] = {}
        self._after: dict[int, float | None] = {}
        self._quant_after: dict[int, str | None] = {}
        self._planned: dict[int, str] = {}
        self._default_amount: Amount = 0.5
        self._global = False
        self._locked = False
        self._dim = QBrush(QColor(128, 128, 128))
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)

    # ----------------------------------------------------------------- building
    def set_layers(self, layers: Sequence[LayerInfo], title: str = "") -> None:
        """Show a new model's inventory (parents must precede their children)."""
        self.beginResetModel()
        self._layers = list(layers)
        self._title = title
        n = len(self._layers)
        self._ids = {info.name: i for i, info in enumerate(self._layers)}
        self._parent = [-1] * n
        self._children = [[] for _ in range(n)]
        self._row = [0] * n
        for i, info in enumerate(self._layers):
            if i == 0:
                continue
            p = self._ids.get(info.parent or "", 0)
            if p >= i:  # never expected from named_modules(); keep the tree acyclic anyway
                p = 0
            self._parent[i] = p
            self._row[i] = len(self._children[p])
            self._children[p].append(i)
        self._totals = [info.parameters for info in self._layers]
        for i in range(n - 1, 0, -1):
            self._totals[self._parent[i]] += self._totals[i]
        self._static = [
            (
                info.type,
                f"{info.parameters:,}"
                if info.parameters
                else (f"{self._totals[i]:,}" if self._totals[i] else ""),
                "\u00d7".join(map(str, info.weight_shape)) if info.weight_shape else "",
                percent(info.sparsity),
            )
            for i, info in enumerate(self._layers)
        ]
        self._checked = [False] * n
        self._n_checked = [0] * n
        self._n_checkable = [1 if info.prunable else 0 for info in self._layers]
        for i in range(n - 1, 0, -1):
            self._n_checkable[self._parent[i]] += self._n_checkable[i]
        self._override.clear()
        self._after.clear()
        self._quant_after.clear()
        self._planned.clear()
        self.endResetModel()
        self.checksChanged.emit()

    def layers(self) -> list[LayerInfo]:
        return self._layers

    # ------------------------------------------------------------- Qt interface
    def index(self, row: int, column: int, parent: QModelIndex | None = None) -> QModelIndex:
        if parent is None or not parent.isValid():
            if row == 0 and self._layers and 0 <= column < len(Col):
                return self.createIndex(0, column, 0)
            return QModelIndex()
        kids = self._children[parent.internalId()]
        if 0 <= row < len(kids) and 0 <= column < len(Col):
            return self.createIndex(row, column, kids[row])
        return QModelIndex()

    def parent(self, index: QModelIndex | None = None) -> Any:  # type: ignore[override]
        if index is None:
            return QObject.parent(self)
        if not index.isValid():
            return QModelIndex()
        p = self._parent[index.internalId()]
        if p < 0:
            return QModelIndex()
        return self.createIndex(self._row[p], 0, p)

    def rowCount(self, parent: QModelIndex | None = None) -> int:
        if parent is None or not parent.isValid():
            return 1 if self._layers else 0
        if parent.column() > 0:
            return 0
        return len(self._children[parent.internalId()])

    def columnCount(self, parent: QModelIndex | None = None) -> int:
        return len(Col)

    def hasChildren(self, parent: QModelIndex | None = None) -> bool:
        return self.rowCount(parent) > 0

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(Col):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[Col(section)][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return HEADERS[Col(section)][1]
        if role == Qt.ItemDataRole.TextAlignmentRole and section in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        i = index.internalId()
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        col = index.column()
        if self._locked:
            return flags
        if col == Col.NAME and self._n_checkable[i]:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        if col == Col.AMOUNT and self._checked[i] and not self._global:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i = index.internalId()
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(i, col)
        if role == Qt.ItemDataRole.CheckStateRole:
            return self._check_state(i) if col == Col.NAME else None
        if role == SORT_ROLE:
            return self._sort_key(i, col)
        if role == NAME_ROLE:
            return self._layers[i].name
        if role == Qt.ItemDataRole.EditRole:
            return self.effective_amount(self._layers[i].name) if col == Col.AMOUNT else None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(i, col)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self._foreground(i, col)
        if role == Qt.ItemDataRole.FontRole:
            if col == Col.AMOUNT and i in self._override and self._checked[i]:
                return self._bold
            if col == Col.QUANT and i not in self._quant_after and i in self._planned:
                return self._italic
        return None

    def _display(self, i: int, col: int) -> str:
        info = self._layers[i]
        if col == Col.NAME:
            return info.short_name if i else (self._title or info.type)
        if col == Col.AFTER:
            return percent(self._after.get(i))
        if col == Col.QUANT:
            if i in self._quant_after:
                return short_quant(self._quant_after[i])
            return short_quant(info.quantization or self._planned.get(i))
        if col == Col.AMOUNT:
            if not self._checked[i]:
                return ""
            if self._global:
                return f"{amount_text(self._default_amount)} global"
            return amount_text(self._override.get(i, self._default_amount))
        return self._static[i][col - 1]

    def _foreground(self, i: int, col: int) -> QBrush | None:
        info = self._layers[i]
        if col == Col.PARAMS and not info.parameters:
            return self._dim
        if col == Col.AMOUNT and i not in self._override:
            return self._dim
        if col == Col.QUANT and i not in self._quant_after and not info.quantization:
            return self._dim
        if col == Col.NAME and not self._n_checkable[i]:
            return self._dim
        return None

    def _check_state(self, i: int) -> Qt.CheckState | None:
        total = self._n_checkable[i]
        if not total:
            return None
        done = self._n_checked[i]
        if done == 0:
            return Qt.CheckState.Unchecked
        if done == total:
            return Qt.CheckState.Checked
        return Qt.CheckState.PartiallyChecked

    def _sort_key(self, i: int, col: int) -> Any:
        info = self._layers[i]
        if col == Col.NAME:
            return info.name
        if col == Col.TYPE:
            return info.type
        if col == Col.PARAMS:
            return float(info.parameters or self._totals[i])
        if col == Col.SHAPE:
            return self._static[i][2]
        if col == Col.BEFORE:
            return -1.0 if info.sparsity is None else info.sparsity
        if col == Col.AFTER:
            value = self._after.get(i)
            return -1.0 if value is None else value
        if col == Col.QUANT:
            return self._display(i, col)
        if col == Col.AMOUNT:
            return float(self.effective_amount(info.name) or -1.0)
        return None

    def _tooltip(self, i: int, col: int) -> str | None:
        info = self._layers[i]
        if col == Col.NAME:
            name = info.name or "the whole model"
            if info.why_not and not info.has_children:
                return f"{name}\nNot prunable: {info.why_not}"
            if info.prunable:
                return f"{name}\nCheck to prune this {info.type}"
            return f"{name}\n{self._totals[i]:,} parameters inside"
        if col == Col.QUANT:
            label = self._quant_after.get(i) or info.quantization
            if label:
                return label
            if i in self._planned:
                return f"will be quantized: {self._planned[i]}"
            return None
        if col == Col.AMOUNT and self._checked[i]:
            return HEADERS[Col.AMOUNT][1]
        if col == Col.TYPE:
            return info.type
        if col == Col.SHAPE and info.dtype:
            return f"{self._static[i][2]} ({info.dtype})"
        return None

    def setData(self, index: QModelIndex, value: Any, role: int = 0) -> bool:
        if not index.isValid() or self._locked:
            return False
        i = index.internalId()
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == Col.NAME:
            state = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
            self._set_subtree(i, state != Qt.CheckState.Unchecked)
            return True
        if role == Qt.ItemDataRole.EditRole and index.column() == Col.AMOUNT:
            name = self._layers[i].name
            self.set_override(name, value)
            return True
        return False

    # --------------------------------------------------------------- checking
    def _set_one(self, i: int, on: bool, touched: set[int]) -> None:
        if not self._layers[i].prunable or self._checked[i] == on:
            return
        self._checked[i] = on
        delta = 1 if on else -1
        j = i
        while j >= 0:
            self._n_checked[j] += delta
            touched.add(j)
            j = self._parent[j]

    def _set_subtree(self, i: int, on: bool) -> None:
        touched: set[int] = set()
        stack = [i]
        while stack:
            j = stack.pop()
            self._set_one(j, on, touched)
            stack.extend(self._children[j])
        self._changed(touched)

    def _changed(self, touched: set[int], columns: tuple[int, int] = (0, len(Col) - 1)) -> None:
        """Emit dataChanged for the touched rows, one contiguous range per parent."""
        if not touched:
            return
        groups: dict[int, list[int]] = {}
        for j in touched:
            groups.setdefault(self._parent[j], []).append(self._row[j])
        if len(groups) > BULK_PARENTS:
            # Thousands of parents (checking every layer of a big model): one layout change
            # is far cheaper for the proxy and the view than thousands of dataChanged.
            self.layoutAboutToBeChanged.emit()
            self.layoutChanged.emit()
            groups = {}
        for p, rows in groups.items():
            first, last = min(rows), max(rows)
            parent = QModelIndex() if p < 0 else self.createIndex(self._row[p], 0, p)
            self.dataChanged.emit(
                self.index(first, columns[0], parent),
                self.index(last, columns[1], parent),
                _CHANGED_ROLES,
            )
        if columns[0] == Col.NAME:
            self.checksChanged.emit()

    def checked_names(self) -> list[str]:
        """Checked layers in model order."""
        return [info.name for info, on in zip(self._layers, self._checked) if on]

    def is_checked(self, name: str) -> bool:
        i = self._ids.get(name)
        return i is not None and self._checked[i]

    def is_checkable(self, name: str) -> bool:
        i = self._ids.get(name)
        return i is not None and self._layers[i].prunable

    def set_checked_names(self, names: Iterable[str]) -> list[str]:
        """Check exactly these layers; returns the names that cannot be checked."""
        wanted = set(names)
        refused = sorted(n for n in wanted if not self.is_checkable(n))
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            self._set_one(i, info.name in wanted, touched)
        self._changed(touched)
        return refused

    def check_where(self, predicate: Any, on: bool = True) -> None:
        """Check (or uncheck) every prunable layer the predicate accepts."""
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            if info.prunable and predicate(info):
                self._set_one(i, on, touched)
        self._changed(touched)

    def invert_checks(self) -> None:
        touched: set[int] = set()
        for i, info in enumerate(self._layers):
            if info.prunable:
                self._set_one(i, not self._checked[i], touched)
        self._changed(touched)

    def set_checked(self, name: str, on: bool) -> None:
        i = self._ids[name]
        touched: set[int] = set()
        self._set_one(i, on, touched)
        self._changed(touched)

    def checked_summary(self) -> tuple[int, int, int]:
        """(checked layers, prunable layers, parameters in checked layers)."""
        params = sum(info.parameters for info, on in zip(self._layers, self._checked) if on)
        total = self._n_checkable[0] if self._layers else 0
        done = self._n_checked[0] if self._layers else 0
        return done, total, params

    # ---------------------------------------------------------------- amounts
    def set_default_amount(self, amount: Amount, is_global: bool) -> None:
        if amount == self._default_amount and is_global == self._global:
            return
        self._default_amount = amount
        self._global = is_global
        self._changed({i for i, on in enumerate(self._checked) if on}, (Col.AMOUNT, Col.AMOUNT))

    def effective_amount(self, name: str) -> Amount | None:
        i = self._ids.get(name)
        if i is None or not self._checked[i]:
            return None
        if self._global:
            return self._default_amount
        return self._override.get(i, self._default_amount)

    def overrides(self) -> dict[str, Amount]:
        """Per-layer amounts of the checked layers (others keep theirs, but do not count)."""
        return {
            self._layers[i].name: a for i, a in sorted(self._override.items()) if self._checked[i]
        }

    def set_override(self, name: str, amount: Amount | None) -> None:
        """A per-layer amount; None (or the panel's amount) removes it."""
        i = self._ids[name]
        if amount is not None and not isinstance(amount, int):
            amount = round(float(amount), 4)
        if amount is None or amount == self._default_amount or amount < 0:
            changed = self._override.pop(i, None) is not None
        else:
            changed = self._override.get(i) != amount
            self._override[i] = amount
        if changed:
            self._changed({i}, (Col.AMOUNT, Col.AMOUNT))
            self.amountsChanged.emit()

    def set_overrides(self, overrides: Mapping[str, Amount]) -> None:
        old = set(self._override)
        self._override = {self._ids[n]: a for n, a in overrides.items() if n in self._ids}
        self._changed(old | set(self._override), (Col.AMOUNT, Col.AMOUNT))
        self.amountsChanged.emit()

    # ---------------------------------------------------------------- results
    def set_planned_quantization(self, names: Iterable[str], label: str | None) -> None:
        """Preview which layers the quantize settings select (grey until a run)."""
        new = {self._ids[n]: label for n in names if n in self._ids} if label else {}
        if new == self._planned:
            return
        touched = set(self._planned) | set(new)
        self._planned = new  # type: ignore[assignment]
        self._changed(touched, (Col.QUANT, Col.QUANT))

    def set_results(self, rows: Sequence[Mapping[str, Any]] | None) -> None:
        """The last run's per-layer rows (report['layers']); None clears them."""
        touched = set(self._after) | set(self._quant_after)
        self._after.clear()
        self._quant_after.clear()
        for row in rows or ():
            i = self._ids.get(row["name"])
            if i is None:
                continue
            self._after[i] = row.get("sparsity_after")
            if row.get("quantization"):
                self._quant_after[i] = row["quantization"]
            touched.add(i)
        self._changed(touched, (Col.AFTER, Col.QUANT))

    def set_partial(self, layers: Iterable[Mapping[str, Any]]) -> None:
        """Layers done during a run (Progress events' ``layer``), shown as they come."""
        touched: set[int] = set()
        for layer in layers:
            i = self._ids.get(layer.get("name", ""))
            if i is None:
                continue
            if "sparsity_after" in layer:
                self._after[i] = layer["sparsity_after"]
            if layer.get("quantization"):
                self._quant_after[i] = layer["quantization"]
            touched.add(i)
        self._changed(touched, (Col.AFTER, Col.QUANT))

    def results(self) -> tuple[dict[str, float | None], dict[str, str | None]]:
        """A snapshot of the shown results, to restore after a cancelled run."""
        names = [info.name for info in self._layers]
        return (
            {names[i]: v for i, v in self._after.items()},
            {names[i]: v for i, v in self._quant_after.items()},
        )

    def restore_results(
        self, snapshot: tuple[dict[str, float | None], dict[str, str | None]]
    ) -> None:
        after, quant = snapshot
        touched = set(self._after) | set(self._quant_after)
        self._after = {self._ids[n]: v for n, v in after.items() if n in self._ids}
        self._quant_after = {self._ids[n]: v for n, v in quant.items() if n in self._ids}
        self._changed(touched | set(self._after) | set(self._quant_after), (Col.AFTER, Col.QUANT))

    def after_sparsity(self, name: str) -> float | None:
        i = self._ids.get(name)
        return None if i is None else self._after.get(i)

    # ------------------------------------------------------------------ misc
    def set_locked(self, locked: bool) -> None:
        """While a job runs the tree can be browsed but not changed."""
        self._locked = locked

    @property
    def locked(self) -> bool:
        return self._locked

    def index_of(self, name: str, column: int = 0) -> QModelIndex:
        i = self._ids.get(name)
        if i is None:
            return QModelIndex()
        if i == 0:
            return self.createIndex(0, column, 0)
        return self.createIndex(self._row[i], column, i)

    def info(self, name: str) -> LayerInfo | None:
        i = self._ids.get(name)
        return None if i is None else self._layers[i]


class LayerFilterProxy(QSortFilterProxyModel):
    """Filters by name or type (a layer's parents stay visible) and sorts by raw values."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self.setRecursiveFilteringEnabled(True)
        self.setFilterRole(NAME_ROLE)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(False)

    def set_text(self, text: str) -> None:
        needle = text.strip().lower()
        if needle == self._needle:
            return
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self._needle = needle
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # Qt < 6.9
            self._needle = needle
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        if not self._needle:
            return True
        source = self.sourceModel()
        index = source.index(source_row, 0, source_parent)
        info = source.layers()[index.internalId()]
        return self._needle in info.name.lower() or self._needle in info.type.lower()


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
            for index in self.selectionModel().selectedRows(Col.NAME):
                name = index.data(NAME_ROLE)
                if name is not None and source.effective_amount(name) is not None:
                    source.set_override(name, None)
            return
        super().keyPressEvent(event)


class LayerTreePanel(QWidget):
    """Filter box, selection helpers, the tree and a one-line summary of what is checked."""

    layerSelected = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = LayerTreeModel(self)
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

    def show_layers(self, layers: Sequence[LayerInfo], title: str) -> None:
        self.model.set_layers(layers, title)
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
        done, total, params = self.model.checked_summary()
        if not self.model.layers():
            self.summary.setText("No model open")
            return
        self.summary.setText(
            f"{done} of {total} prunable layers checked \u00b7 {params:,} parameters to prune"
        )
