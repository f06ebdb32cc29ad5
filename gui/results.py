"""Before/after numbers: summary cards above the tabs, the exact table and the notes."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QPalette, QResizeEvent, QTextDocumentFragment
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

from core.report import Report
from gui.report_rows import CARDS, ROW_LABELS, CardValue, card_values, table_rows

BETTER = "#2e8b57"
WORSE = "#c8641e"
ALARM = "#c0392b"


def better_color(better: bool | None) -> str | None:
    """The colour of an improvement, of a regression, or None for neither."""
    return None if better is None else (BETTER if better else WORSE)


class MetricsTable(QTableWidget):
    """The exact before/after values and ratios of the last run (a small fixed table)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(len(ROW_LABELS) + 1, 4, parent)
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

    def _cell(self, row: int, col: int, text: str, color: str | None = None, tip: str = "") -> None:
        item = QTableWidgetItem(text)
        if col > 0:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if color:
            item.setForeground(QColor(color))
        if tip:
            item.setToolTip(tip)
        self.setItem(row, col, item)

    def set_report(self, report: Report | None) -> None:
        """Show a report's numbers (None: before any run, dashes); a latency row names the
        runtime that measured it."""
        rows = table_rows(report)
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            self._cell(r, 0, row.label, tip=row.tip)
            self._cell(r, 1, row.before)
            color = better_color(row.better)
            self._cell(r, 2, row.after, color if row.marks_after else None)
            self._cell(r, 3, row.ratio, None if row.marks_after else color)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """The table's text, row by row: (metric, before, after, after / before)."""
        return [
            tuple(self.item(r, c).text() if self.item(r, c) else "" for c in range(4))  # type: ignore[misc]
            for r in range(self.rowCount())
        ]


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
        self.caption.setWordWrap(True)
        self.delta = QLabel("", self)
        self.delta.setTextFormat(Qt.TextFormat.RichText)
        self.delta.setWordWrap(True)
        self.alarm = False
        self.better: bool | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(1)
        layout.addWidget(self.caption)
        layout.addWidget(self.value)
        layout.addWidget(self.delta)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def set_value(self, card: CardValue) -> None:
        self.caption.setText(card.caption)
        self.value.setText(card.value)
        self.value.setStyleSheet(f"color: {ALARM};" if card.alarm else "")
        self.alarm = card.alarm
        self.better = card.better
        if card.ratio is None:
            note = html.escape(card.note)
            self.delta.setText(f"<span style='color:{ALARM}'>{note}</span>" if card.alarm else note)
            return
        change = f"{card.ratio:.2f}\u00d7 ({100 * (card.ratio - 1):+.1f}%)"
        color = better_color(card.better)
        shown = f"<span style='color:{color}'>{change}</span>" if color else change
        self.delta.setText(f"{shown} {html.escape(card.note)}")

    def texts(self) -> tuple[str, str, str]:
        """(caption, value, the line under it as plain text)."""
        delta = QTextDocumentFragment.fromHtml(self.delta.text()).toPlainText()
        return self.caption.text(), self.value.text(), delta


class SummaryCards(QWidget):
    """The headline numbers (size, non-zero parameters, latency, accuracy, fidelity),
    visible whichever tab is open: one row when there is room, two rows when the column is
    narrow. A collapsed fidelity is red."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(6)
        self.cards = [_Card(spec.caption, self) for spec in CARDS]
        self._columns = 0
        self._narrow = (len(self.cards) + 1) // 2
        self._arrange(self._narrow)
        self.show_report(None, None)

    def _arrange(self, columns: int) -> None:
        if columns == self._columns:
            return
        self._columns = columns
        for card in self.cards:
            self._grid.removeWidget(card)
        for i, card in enumerate(self.cards):
            self._grid.addWidget(card, i // columns, i % columns)
        for col in range(len(self.cards)):
            self._grid.setColumnStretch(col, 1 if col < columns else 0)

    def _one_row_width(self) -> int:
        return sum(card.sizeHint().width() for card in self.cards) + 6 * (len(self.cards) - 1)

    def minimumSizeHint(self) -> QSize:
        widths = sorted(card.minimumSizeHint().width() for card in self.cards)
        heights = [card.sizeHint().height() for card in self.cards]
        return QSize(sum(widths[-self._narrow :]) + 6 * self._narrow, 2 * max(heights) + 6)

    def _columns_for(self, width: int) -> int:
        return len(self.cards) if width >= self._one_row_width() else self._narrow

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._arrange(self._columns_for(event.size().width()))
        super().resizeEvent(event)

    def show_report(self, before: Mapping[str, Any] | None, report: Report | None) -> None:
        """``before``: the original's numbers (known at load); ``report``: the last run."""
        for card, value in zip(self.cards, card_values(before, report)):
            card.set_value(value)
        if self.width() > 0:
            self._arrange(self._columns_for(self.width()))

    def set_stale(self, stale: bool) -> None:
        """Out of date: the numbers are greyed (they are the last run's)."""
        for card in self.cards:
            card.value.setEnabled(not stale)
            card.delta.setEnabled(not stale)

    def verdicts(self) -> list[bool | None]:
        """Per card, how its change is coloured: better, worse, or None (no colour)."""
        return [card.better for card in self.cards]

    def alarms(self) -> list[bool]:
        """Per card, whether its value is drawn as an alarm (red)."""
        return [card.alarm for card in self.cards]

    def texts(self) -> list[tuple[str, str, str]]:
        """Each card's (caption, value, line under it), left to right."""
        return [card.texts() for card in self.cards]
