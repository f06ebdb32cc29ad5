"""Before/after numbers: summary cards above the tabs, the exact table and the notes."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.report import human_bytes
from gui import qt_fixes

qt_fixes.install()  # before any signal is emitted: see gui/qt_fixes.py

BETTER = "#2e8b57"
WORSE = "#c8641e"


def fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int | float) else "\u2013"


def fmt_bytes(value: Any) -> str:
    return human_bytes(value) if isinstance(value, int | float) else "\u2013"


def fmt_ms(value: Any) -> str:
    return f"{value:.3f} ms" if isinstance(value, int | float) else "\u2013"


def fmt_pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "\u2013"


def fmt_frac(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "\u2013"


def ratio_text(before: Any, after: Any) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return "\u2013"
    ratio = after / before
    return f"{ratio:.3f}\u00d7 ({100 * (ratio - 1):+.1f}%)"


def _is_better(before: Any, after: Any, lower_is_better: bool) -> bool | None:
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return None
    if abs(after / before - 1) < 0.005:
        return None
    return (after < before) == lower_is_better


# (label, section, key, formatter, lower is better)
ROWS: tuple[tuple[str, str, str, Callable[[Any], str], bool], ...] = (
    ("Parameters", "size", "parameters", fmt_int, True),
    ("Non-zero parameters", "size", "nonzero_parameters", fmt_int, True),
    ("State-dict size", "size", "state_dict_bytes", fmt_bytes, True),
    ("Saved file size", "size", "file_bytes", fmt_bytes, True),
    ("Latency (median)", "size", "latency_ms", fmt_ms, True),
    ("Accuracy", "size", "accuracy", fmt_pct, False),
    ("Cosine similarity", "fidelity", "cosine_similarity", fmt_frac, False),
    ("Relative error", "fidelity", "relative_error", fmt_frac, True),
    ("Top-1 agreement", "fidelity", "top1_agreement", fmt_pct, False),
)


class MetricsTable(QTableWidget):
    """The exact before/after values and ratios of the last run (a small fixed table)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(ROWS) + 1, 4, parent)
        self.setHorizontalHeaderLabels(["Metric", "Before", "After", "After / before"])
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        for col in (1, 2):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.set_report(None)

    def _cell(self, row: int, col: int, text: str, color: str | None = None) -> None:
        item = QTableWidgetItem(text)
        if col > 0:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if color:
            item.setForeground(QColor(color))
        self.setItem(row, col, item)

    def set_report(self, report: Mapping[str, Any] | None) -> None:
        before = (report or {}).get("before", {})
        after = (report or {}).get("after", {})
        fidelity = (report or {}).get("fidelity") or {}
        for r, (label, section, key, fmt, lower) in enumerate(ROWS):
            if section == "fidelity":
                b: Any = {"cosine_similarity": 1.0, "relative_error": 0.0, "top1_agreement": 1.0}[
                    key
                ]
                a = fidelity.get(key)
                b_text = fmt(b) if report and a is not None else "\u2013"
                ratio = "\u2013"
            else:
                b = before.get("state_dict_bytes" if key == "file_bytes" else key)
                a = after.get(key)
                b_text = fmt(b)
                ratio = ratio_text(b, a)
            a_text = fmt(a)
            if key == "file_bytes" and report and a is None:
                a_text = "not saved"
            better = _is_better(b, a, lower) if section != "fidelity" else None
            color = None if better is None else (BETTER if better else WORSE)
            self._cell(r, 0, label)
            self._cell(r, 1, b_text)
            self._cell(r, 2, a_text)
            self._cell(r, 3, ratio, color)
        rt = (report or {}).get("round_trip")
        r = len(ROWS)
        self._cell(r, 0, "Round trip (saved file)")
        self._cell(r, 1, "")
        if not rt:
            self._cell(r, 2, "\u2013" if not report else "not saved")
            self._cell(r, 3, "")
        else:
            ok = rt.get("ok")
            err = rt.get("max_abs_error")
            state = {True: "ok", False: "FAILED", None: "not checked"}[ok]
            self._cell(r, 2, state, BETTER if ok else (WORSE if ok is False else None))
            detail = f"max abs error {err:.3g}" if isinstance(err, float) else rt.get("reason", "")
            self._cell(r, 3, detail or "")


class NotesLabel(QLabel):
    """The report's plain-English notes (e.g. 'slower on this machine: ...')."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMargin(6)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.set_notes([])

    def set_notes(self, notes: list[str]) -> None:
        self.setVisible(bool(notes))
        items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
        self.setText(
            f"<b>Notes</b><ul style='margin-left:-20px; margin-top:2px'>{items}</ul>"
            if notes
            else ""
        )


class _Card(QFrame):
    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("summaryCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.caption = QLabel(caption, self)
        palette = self.caption.palette()
        palette.setColor(
            QPalette.ColorRole.WindowText, palette.color(QPalette.ColorRole.PlaceholderText)
        )
        self.caption.setPalette(palette)
        self.value = QLabel("\u2013", self)
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.value.setFont(font)
        self.delta = QLabel("", self)
        self.delta.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(1)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.delta)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def show_values(
        self, before: Any, after: Any, fmt: Callable[[Any], str], lower: bool, has_run: bool
    ) -> None:
        if not has_run or after is None:
            self.value.setText(fmt(before))
            self.delta.setText("run to compare" if not has_run else "not measured")
            return
        self.value.setText(f"{fmt(before)} \u2192 {fmt(after)}")
        better = _is_better(before, after, lower)
        color = {True: BETTER, False: WORSE, None: "palette(text)"}[better]
        if isinstance(before, int | float) and isinstance(after, int | float) and before:
            ratio = after / before
            self.delta.setText(
                f"<span style='color:{color}'>{ratio:.2f}\u00d7 ({100 * (ratio - 1):+.1f}%)</span>"
            )
        else:
            self.delta.setText("")


class SummaryCards(QWidget):
    """Four headline numbers, visible whichever tab is open: one row when there is room,
    two by two when the column is narrow."""

    SPEC = (
        ("Model size (state dict)", "state_dict_bytes", fmt_bytes, True),
        ("Non-zero parameters", "nonzero_parameters", fmt_int, True),
        ("Latency (median)", "latency_ms", fmt_ms, True),
        ("Accuracy", "accuracy", fmt_pct, False),
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(6)
        self.cards = [_Card(caption, self) for caption, *_ in self.SPEC]
        self._columns = 0
        self._arrange(2)
        self.show_report(None, None)

    def _arrange(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        for card in self.cards:
            self._grid.removeWidget(card)
        for i, card in enumerate(self.cards):
            self._grid.addWidget(card, i // columns, i % columns)
        for col in range(4):
            self._grid.setColumnStretch(col, 1 if col < columns else 0)

    def _one_row_width(self) -> int:
        return sum(card.sizeHint().width() for card in self.cards) + 6 * (len(self.cards) - 1)

    def minimumSizeHint(self) -> QSize:
        widths = [card.minimumSizeHint().width() for card in self.cards]
        heights = [card.sizeHint().height() for card in self.cards]
        return QSize(widths[0] + widths[1] + 6, 2 * max(heights) + 6)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._arrange(4 if event.size().width() >= self._one_row_width() else 2)
        super().resizeEvent(event)

    def show_report(
        self, before: Mapping[str, Any] | None, report: Mapping[str, Any] | None
    ) -> None:
        """``before``: the original's numbers (known at load); ``report``: the last run."""
        b = (report or {}).get("before") or before or {}
        a = (report or {}).get("after") or {}
        for card, (_, key, fmt, lower) in zip(self.cards, self.SPEC):
            card.show_values(b.get(key), a.get(key), fmt, lower, report is not None)
        if self.width() > 0:
            self._arrange(4 if self.width() >= self._one_row_width() else 2)
