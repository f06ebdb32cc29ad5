"""The layer tree's item model: a QAbstractItemModel over the core's layer inventory.

The checks, per-layer amounts and per-layer schemes live in a ``LayerSelection`` (plain
Python); this model adapts it: a click or an edit in the view goes to the selection, and
every change of the selection, from the view or from code, comes back as ``dataChanged`` for
exactly the rows it touched (and ``checksChanged``/``amountsChanged``/``schemesChanged``).
What only the tree shows (the last run's per-layer results and whether they are out of date,
the settings panel's planned quantization, the lock while a job runs) is kept here, in plain
per-row arrays, so ``data()`` stays pure and cheap.

The columns that matter come first (name with its check box, type, Amount, Sparsity after,
Quant.); the rest (parameters, weight shape, sparsity before) are shown on demand.
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
)
from PySide6.QtGui import QBrush, QColor, QFont

from core.inventory import LayerInfo
from core.report import LayerRow
from gui import choices
from gui.layer_selection import (
    Change,
    Kind,
    LayerScheme,
    LayerSelection,
    SelectionEvent,
    name_matcher,
)
from gui.report_rows import amount_text, percent, reshaped_texts


class Col(IntEnum):
    NAME = 0
    TYPE = 1
    AMOUNT = 2
    AFTER = 3
    QUANT = 4
    PARAMS = 5
    SHAPE = 6
    BEFORE = 7


OPTIONAL_COLUMNS = (Col.TYPE, Col.AMOUNT, Col.AFTER, Col.QUANT, Col.PARAMS, Col.SHAPE, Col.BEFORE)
"""Columns the header's context menu can hide (the name, with its check box, always shows)."""
HIDDEN_BY_DEFAULT = (Col.PARAMS, Col.SHAPE, Col.BEFORE)
_STATIC = {Col.TYPE: 0, Col.PARAMS: 1, Col.SHAPE: 2, Col.BEFORE: 3}  # index into _static rows


HEADERS = {
    Col.NAME: ("Layer", "Module name; check a layer to prune it"),
    Col.TYPE: ("Type", "Module class"),
    Col.PARAMS: (
        "Params",
        "The layer's own parameters (grey: total of the layers inside); before \u2192 after "
        "where the last run removed channels",
    ),
    Col.SHAPE: (
        "Weight",
        "Shape of the layer's weight; before \u2192 after where the last run removed channels",
    ),
    Col.BEFORE: ("Sparsity\nbefore", "Fraction of exactly-zero weights in the original model"),
    Col.AFTER: ("Sparsity\nafter", "Fraction of exactly-zero weights after the last run"),
    Col.QUANT: (
        "Quant.",
        "How the layer is (or, in grey, will be) quantized; double-click to choose its own "
        "scheme (bold), Delete to go back to the settings' rule",
    ),
    Col.AMOUNT: (
        "Amount",
        "Fraction of the layer's weights to prune; double-click to set a per-layer amount, "
        "Delete to go back to the panel's amount. \u21b3 marks a layer that shrinks with a "
        "checked layer whose channels are removed",
    ),
}
FOLLOWS = "\u21b3"  # the Amount column's mark of a layer that shrinks with another
SCHEME_ROLE = Qt.ItemDataRole.UserRole + 3  # the Quant column's own scheme (LayerScheme|None)

BULK_PARENTS = 64  # above this many parents a change is announced as one layout change
N_COLS = len(Col)
# data() and flags() run for every visible cell on every paint: plain ints, not enum lookups
_DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
_CHECK = int(Qt.ItemDataRole.CheckStateRole.value)
_EDIT = int(Qt.ItemDataRole.EditRole.value)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole.value)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole.value)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole.value)
_FONT = int(Qt.ItemDataRole.FontRole.value)
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_NAME_COL, _AMOUNT_COL, _QUANT_COL = int(Col.NAME), int(Col.AMOUNT), int(Col.QUANT)
_BASE_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_CHECKABLE_FLAGS = _BASE_FLAGS | Qt.ItemFlag.ItemIsUserCheckable
_EDITABLE_FLAGS = _BASE_FLAGS | Qt.ItemFlag.ItemIsEditable
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


def relative_name(name: str, near: str) -> str:
    """``name`` without the dotted parents it shares with ``near`` (the tree shows the rest
    of the path around it): 'features.0.0' near 'features.0.1' is '0', 'features.2.conv.2'
    near 'features.3.conv.0.0' is '2.conv.2', 'conv1' near 'bn1' is 'conv1'."""
    parts, others = name.split("."), near.split(".")
    shared = 0
    while shared < min(len(parts), len(others)) - 1 and parts[shared] == others[shared]:
        shared += 1
    return ".".join(parts[shared:])


# The Quant. column after a run, for a layer a rule selected that the run left float (a
# measured plan found nothing that pays there, or the scheme could not apply)
KEPT_FLOAT = "float (this run left it float: the Plan tab or the Log says why)"


def short_quant(label: str | None) -> str:
    """'int8_dynamic (torchao, per_channel)' -> 'int8 dyn.' (the tooltip has it all)."""
    if not label:
        return ""
    return choices.short_scheme(choices.scheme_from_label(label))


class LayerTreeModel(QAbstractItemModel):
    """Modules as a tree; checkable prunable layers; per-layer amounts; run results."""

    checksChanged = Signal()
    amountsChanged = Signal()
    schemesChanged = Signal()

    def __init__(
        self, selection: LayerSelection | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.selection = selection if selection is not None else LayerSelection()
        self._layers: list[LayerInfo] = []
        self._title = self._next_title = ""
        self._parent: list[int] = []
        self._children: list[list[int]] = []
        self._row: list[int] = []
        self._static: list[tuple[str, str, str, str]] = []
        self._totals: list[int] = []
        self._after: dict[int, float | None] = {}
        self._quant_after: dict[int, str | None] = {}
        self._planned: dict[int, str] = {}
        self._follows: dict[int, tuple[str, str]] = {}  # shrinks with: (roots, why)
        self._reshaped: dict[int, tuple[str, str]] = {}  # the last run's (shape, params)
        self._stale = False
        self._locked = False
        self._dim = QBrush(QColor(128, 128, 128))
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)
        self.selection.subscribe(self._on_selection_changed)
        self._rebuild()

    # ----------------------------------------------------------------- building
    def set_layers(
        self,
        layers: Sequence[LayerInfo],
        title: str = "",
        kinds: Mapping[str, Kind] | None = None,
    ) -> None:
        """Show a new model's inventory (parents must precede their children); the
        selection starts empty. ``kinds`` as ``LayerSelection.reset`` takes them."""
        self._next_title = title
        self.selection.reset(layers, kinds)

    def _on_selection_changed(self, event: SelectionEvent) -> None:
        if event.change is Change.RESETTING:
            self.beginResetModel()
        elif event.change is Change.RESET:
            self._rebuild()
            self.endResetModel()
            self.checksChanged.emit()
        elif event.change is Change.CHECKS:
            self._changed(event.rows)
            self.checksChanged.emit()
        elif event.change is Change.SCHEMES:
            self._changed(event.rows, (Col.QUANT, Col.QUANT))
            self.schemesChanged.emit()
        else:
            self._changed(event.rows, (Col.AMOUNT, Col.AMOUNT))
            self.amountsChanged.emit()

    def _rebuild(self) -> None:
        """The tree's structure and static texts for the selection's layers."""
        self._layers = self.selection.layers
        self._title = self._next_title
        n = len(self._layers)
        self._parent = self.selection.parents()
        self._children = [[] for _ in range(n)]
        self._row = [0] * n
        for i in range(1, n):
            p = self._parent[i]
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
        self._after.clear()
        self._quant_after.clear()
        self._planned.clear()
        self._follows.clear()
        self._reshaped.clear()
        self._stale = False

    def layers(self) -> list[LayerInfo]:
        return self._layers

    # ------------------------------------------------------------- Qt interface
    def index(self, row: int, column: int, parent: QModelIndex | None = None) -> QModelIndex:
        if parent is None or not parent.isValid():
            if row == 0 and self._layers and 0 <= column < N_COLS:
                return self.createIndex(0, column, 0)
            return QModelIndex()
        kids = self._children[parent.internalId()]
        if 0 <= row < len(kids) and 0 <= column < N_COLS:
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
        return N_COLS

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
        col = index.column()
        if self._locked:
            return _BASE_FLAGS
        if col == _NAME_COL:
            return _CHECKABLE_FLAGS if self.selection.checkable_below(i) else _BASE_FLAGS
        if col == _AMOUNT_COL:
            on = self.selection.checked_at(i) and not self.selection.is_global
            return _EDITABLE_FLAGS if on else _BASE_FLAGS
        if col == _QUANT_COL:
            info = self._layers[i]
            return _EDITABLE_FLAGS if info.quantizable and info.prunable else _BASE_FLAGS
        return _BASE_FLAGS

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        i = index.internalId()
        col = index.column()
        if role == _DISPLAY:
            return self._display(i, col)
        if role == _CHECK:
            return self._check_state(i) if col == _NAME_COL else None
        if role == SORT_ROLE:
            return self._sort_key(i, col)
        if role == NAME_ROLE:
            return self._layers[i].name
        if role == _EDIT:
            if col == Col.QUANT:
                return self.selection.scheme_at(i)
            return self.selection.amount_at(i) if col == Col.AMOUNT else None
        if role == SCHEME_ROLE:
            return self.selection.scheme_at(i)
        if role == _TOOLTIP:
            return self._tooltip(i, col)
        if role == _ALIGN:
            return _RIGHT if col in _NUMERIC else None
        if role == _FOREGROUND:
            return self._foreground(i, col)
        if role == _FONT:
            if (
                col == Col.AMOUNT
                and self.selection.has_override_at(i)
                and self.selection.checked_at(i)
            ):
                return self._bold
            if col == Col.QUANT and (self._stale or i not in self._quant_after):
                if self.selection.scheme_at(i) is not None:
                    return self._bold
                if i in self._planned:
                    return self._italic
            if col == Col.AFTER and self._stale and i in self._after:
                return self._italic
            if col == Col.AMOUNT and i in self._follows and not self.selection.checked_at(i):
                return self._italic
        return None

    def _display(self, i: int, col: int) -> str:
        info = self._layers[i]
        if col == Col.NAME:
            return info.short_name if i else (self._title or info.type)
        if col == Col.AFTER:
            return percent(self._after.get(i))
        if col == Col.QUANT:
            if i in self._quant_after and not self._stale:
                return short_quant(self._quant_after[i])
            own = self.selection.scheme_at(i)
            if own is not None:
                return choices.short_scheme(own)
            return short_quant(info.quantization or self._planned.get(i))
        if col == Col.AMOUNT:
            if not self.selection.checked_at(i):
                follows = self._follows.get(i)
                return f"{FOLLOWS} {follows[0]}" if follows else ""
            amount = self.selection.amount_at(i)
            if self.selection.is_global:
                return f"{amount_text(amount)} global"
            return amount_text(amount)
        if i in self._reshaped and (col == Col.SHAPE or col == Col.PARAMS):
            return self._reshaped[i][0 if col == Col.SHAPE else 1]
        return self._static[i][_STATIC[Col(col)]]

    def _foreground(self, i: int, col: int) -> QBrush | None:
        info = self._layers[i]
        if col == Col.PARAMS and not info.parameters:
            return self._dim
        if col == Col.AMOUNT and not self.selection.has_override_at(i):
            return self._dim
        shown_result = i in self._quant_after and not self._stale
        if col == Col.QUANT and not shown_result and not info.quantization:
            return None if self.selection.scheme_at(i) is not None else self._dim
        if col in (Col.AFTER, Col.SHAPE, Col.PARAMS) and self._stale and i in self._reshaped:
            return self._dim
        if col == Col.AFTER and self._stale:
            return self._dim
        if col == Col.NAME and not self.selection.checkable_below(i):
            return self._dim
        return None

    def _check_state(self, i: int) -> Qt.CheckState | None:
        if not self.selection.checkable_below(i):
            return None
        state = self.selection.check_state_at(i)
        if state is None:
            return Qt.CheckState.PartiallyChecked
        return Qt.CheckState.Checked if state else Qt.CheckState.Unchecked

    def _sort_key(self, i: int, col: int) -> Any:
        info = self._layers[i]
        if col == Col.NAME:
            return info.name
        if col == Col.TYPE:
            return info.type
        if col == Col.PARAMS:
            return float(info.parameters or self._totals[i])
        if col == Col.SHAPE:
            return self._static[i][_STATIC[Col.SHAPE]]
        if col == Col.BEFORE:
            return -1.0 if info.sparsity is None else info.sparsity
        if col == Col.AFTER:
            value = self._after.get(i)
            return -1.0 if value is None else value
        if col == Col.QUANT:
            return self._display(i, col)
        if col == Col.AMOUNT:
            return float(self.selection.amount_at(i) or -1.0)
        return None

    def _tooltip(self, i: int, col: int) -> str | None:
        info = self._layers[i]
        follows = self._follows.get(i)
        if col == Col.NAME:
            name = info.name or "the whole model"
            if info.why_not and not info.has_children:
                text = f"{name}\nNot prunable: {info.why_not}"
            elif info.prunable:
                text = f"{name}\nCheck to prune this {info.type}"
            else:
                text = f"{name}\n{self._totals[i]:,} parameters inside"
            return f"{text}\n{follows[1]}" if follows else text
        if col == Col.AMOUNT and follows:
            checked = self.selection.checked_at(i)
            return f"{HEADERS[Col.AMOUNT][1]}\n{follows[1]}" if checked else follows[1]
        if col == Col.QUANT:
            label = (None if self._stale else self._quant_after.get(i)) or info.quantization
            if label:
                return label
            own = self.selection.scheme_at(i)
            if own is not None:
                return f"its own scheme: {choices.long_scheme(own)}"
            if i in self._planned:
                return f"will be quantized (the settings' rule): {self._planned[i]}"
            return HEADERS[Col.QUANT][1] if info.quantizable and info.prunable else None
        if col == Col.AFTER and self._stale and i in self._after:
            return "The last run's result; the settings changed since (Compress to update)"
        if col == Col.AMOUNT and self.selection.checked_at(i):
            return HEADERS[Col.AMOUNT][1]
        if col == Col.TYPE:
            return info.type
        if col == Col.SHAPE and info.dtype:
            return f"{self._display(i, col)} ({info.dtype})"
        return None

    def setData(self, index: QModelIndex, value: Any, role: int = 0) -> bool:
        if not index.isValid() or self._locked:
            return False
        i = index.internalId()
        if role == Qt.ItemDataRole.CheckStateRole and index.column() == Col.NAME:
            state = Qt.CheckState(value) if not isinstance(value, Qt.CheckState) else value
            self.selection.set_subtree(i, state != Qt.CheckState.Unchecked, self._children)
            return True
        if role == Qt.ItemDataRole.EditRole and index.column() == Col.AMOUNT:
            self.selection.set_override(self._layers[i].name, value)
            return True
        if role == Qt.ItemDataRole.EditRole and index.column() == Col.QUANT:
            if value is not None and not isinstance(value, LayerScheme):
                return False
            self.selection.set_scheme(self._layers[i].name, value)
            return True
        return False

    def _changed(
        self, touched: Iterable[int], columns: tuple[int, int] = (0, len(Col) - 1)
    ) -> None:
        """Emit dataChanged for the touched rows, one contiguous range per parent."""
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

    # ---------------------------------------------------------------- results
    def set_planned_quantization(self, names: Iterable[str], label: str | None) -> None:
        """Preview which layers the quantize settings select (grey until a run)."""
        new = {i: label for i in self._rows_of(names)} if label else {}
        if new == self._planned:
            return
        touched = set(self._planned) | set(new)
        self._planned = new  # type: ignore[assignment]
        self._changed(touched, (Col.QUANT, Col.QUANT))

    def set_stale(self, stale: bool) -> None:
        """Whether the shown results are out of date (the settings changed since the run):
        the Sparsity after column dims, the Quant. column shows what the settings will do."""
        if stale == self._stale:
            return
        self._stale = stale
        touched = set(self._after) | set(self._quant_after) | set(self._reshaped)
        self._changed(touched, (Col.AFTER, Col.SHAPE))

    @property
    def stale(self) -> bool:
        return self._stale

    def set_results(self, rows: Sequence[LayerRow] | None) -> None:
        """The last run's per-layer rows (the report's layers); None clears them."""
        touched = set(self._after) | set(self._quant_after) | set(self._reshaped)
        self._stale = False
        self._after.clear()
        self._quant_after.clear()
        self._reshaped.clear()
        for row in rows or ():
            i = self.selection.row(row.name)
            if i is None:
                continue
            self._after[i] = row.sparsity_after
            if row.quantization:
                self._quant_after[i] = row.quantization
            elif i in self._planned:  # a rule selected it and the run left it float
                self._quant_after[i] = KEPT_FLOAT
            texts = reshaped_texts(row)
            if texts is not None:
                self._reshaped[i] = texts
            touched.add(i)
        self._changed(touched, (Col.AFTER, Col.SHAPE))

    def set_coupling(self, followers: Mapping[str, Sequence[tuple[str, str]]]) -> None:
        """Before a run: the layers that will shrink because a checked layer loses channels
        (name -> (root, how it shrinks) for each root it follows; ``core.removal``)."""
        new: dict[int, tuple[str, str]] = {}
        for name, follows in followers.items():
            i = self.selection.row(name)
            if i is None:
                continue
            roots = ", ".join(dict.fromkeys(relative_name(root, name) for root, _ in follows))
            why = "\n".join(
                f"Shrinks with {root}: its {role} go with {root}'s removed channels"
                for root, role in follows
            )
            new[i] = (roots, why)
        if new == self._follows:
            return
        touched = set(self._follows) | set(new)
        self._follows = new
        self._changed(touched, (Col.NAME, Col.AMOUNT))

    def follows(self, name: str) -> str | None:
        """Why a layer will shrink with another (None: it does not)."""
        i = self.selection.row(name)
        entry = self._follows.get(i) if i is not None else None
        return entry[1] if entry else None

    def reshaped(self) -> dict[str, tuple[str, str]]:
        """The layers whose shapes the last run changed: name -> (weight, parameters) as
        shown ('32\u00d716\u00d73\u00d73 \u2192 16\u00d716\u00d73\u00d73', '4,640 \u2192 1,160')."""
        return {self._layers[i].name: texts for i, texts in self._reshaped.items()}

    def set_partial(self, layers: Iterable[Mapping[str, Any]]) -> None:
        """Layers done during a run (Progress events' ``layer``), shown as they come."""
        touched: set[int] = set()
        for layer in layers:
            i = self.selection.row(layer.get("name", ""))
            if i is None:
                continue
            if "sparsity_after" in layer:
                self._after[i] = layer["sparsity_after"]
            if layer.get("quantization"):
                self._quant_after[i] = layer["quantization"]
            touched.add(i)
        self._changed(touched, (Col.AFTER, Col.SHAPE))

    def results(self) -> tuple[dict[str, Any], ...]:
        """A snapshot of the shown results, to restore after a cancelled run."""
        names = [info.name for info in self._layers]
        return tuple(
            {names[i]: v for i, v in values.items()}
            for values in (self._after, self._quant_after, self._reshaped)
        )

    def restore_results(self, snapshot: tuple[dict[str, Any], ...]) -> None:
        after, quant, reshaped = snapshot
        touched = set(self._after) | set(self._quant_after) | set(self._reshaped)
        self._after = self._by_row(after)
        self._quant_after = self._by_row(quant)
        self._reshaped = self._by_row(reshaped)
        touched |= set(self._after) | set(self._quant_after) | set(self._reshaped)
        self._changed(touched, (Col.AFTER, Col.SHAPE))

    def after_sparsity(self, name: str) -> float | None:
        i = self.selection.row(name)
        return None if i is None else self._after.get(i)

    # ------------------------------------------------------------------ misc
    def set_locked(self, locked: bool) -> None:
        """While a job runs the tree can be browsed but not changed."""
        self._locked = locked

    @property
    def locked(self) -> bool:
        return self._locked

    def index_of(self, name: str, column: int = 0) -> QModelIndex:
        i = self.selection.row(name)
        if i is None:
            return QModelIndex()
        if i == 0:
            return self.createIndex(0, column, 0)
        return self.createIndex(self._row[i], column, i)

    def _rows_of(self, names: Iterable[str]) -> list[int]:
        rows = (self.selection.row(n) for n in names)
        return [i for i in rows if i is not None]

    def _by_row(self, values: Mapping[str, Any]) -> dict[int, Any]:
        rows = ((self.selection.row(n), v) for n, v in values.items())
        return {i: v for i, v in rows if i is not None}

    def info(self, name: str) -> LayerInfo | None:
        i = self.selection.row(name)
        return None if i is None else self._layers[i]


class LayerFilterProxy(QSortFilterProxyModel):
    """Filters by whole name segments, glob patterns or type (``name_matcher``; a layer's
    parents stay visible) and sorts by raw values."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._needle = ""
        self._match = name_matcher("")
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
            self._needle, self._match = needle, name_matcher(needle)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # Qt < 6.9
            self._needle, self._match = needle, name_matcher(needle)
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        if not self._needle:
            return True
        source = self.sourceModel()
        index = source.index(source_row, 0, source_parent)
        info = source.layers()[index.internalId()]
        return self._match(info.name, info.type)
