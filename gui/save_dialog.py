"""The first step of saving the compressed model: which format.

Every format of the core's registry (``core.formats.SAVE_FORMATS``) is listed with its one-line
explanation and the predicted size of the file (``core.saving.format_options``, measured in the
background after the run). A format that cannot hold this result is shown greyed, with the
reason under it; the dialog starts on the format ``core.saving.default_option`` picks, one that
can hold it. The second step is the file dialog, for that format.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from core.report import human_bytes
from core.saving import FormatOption

REASON_COLOR = "#a23b2c"


def size_text(option: FormatOption, original: int | None = None) -> str:
    """'147.81 KiB', '\u2248 148 KiB' for an estimate, with the ratio to the original's state
    dict when known; '' when the format cannot hold the result."""
    if option.size is None:
        return ""
    text = ("" if option.exact else "\u2248 ") + human_bytes(option.size)
    if original:
        text += f"  ({option.size / original:.2f}\u00d7)"
    return text


class SaveFormatDialog(QDialog):
    """Choose the format (see the module docstring); ``chosen()`` after it is accepted."""

    def __init__(
        self,
        options: Sequence[FormatOption],
        default: str | None,
        original_bytes: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Save Compressed Model")
        self.options = list(options)
        intro = QLabel(
            "Choose the format of the saved file. Every save is reloaded and run to check it "
            "(the round trip). Sizes are predicted for this result; \u2248 marks an estimate, "
            "the ratio is to the original's state dict. Greyed formats cannot hold it.",
            self,
        )
        intro.setWordWrap(True)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        self.sizes: dict[str, QLabel] = {}
        self.notes: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(2)
        grid.setColumnStretch(0, 1)
        dim = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        for k, option in enumerate(self.options):
            button = QRadioButton(option.label, self)
            button.setEnabled(option.available)
            button.setToolTip(option.tooltip if option.available else option.reason or "")
            self.group.addButton(button, k)
            size = QLabel(size_text(option, original_bytes), self)
            size.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            size.setEnabled(option.available)
            if option.available:
                note = QLabel(f"{option.tooltip} ({option.suffix})", self)
                note.setStyleSheet(f"color: {dim};")
            else:
                note = QLabel(f"Cannot hold this result: {option.reason}", self)
                note.setStyleSheet(f"color: {REASON_COLOR};")
            note.setWordWrap(True)
            note.setContentsMargins(22, 0, 0, 6)  # under the button's text, not its circle
            grid.addWidget(button, 2 * k, 0)
            grid.addWidget(size, 2 * k, 1)
            grid.addWidget(note, 2 * k + 1, 0, 1, 2)
            self.buttons[option.name] = button
            self.sizes[option.name] = size
            self.notes[option.name] = note
        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.button_box.button(QDialogButtonBox.StandardButton.Ok).setText("Choose File\u2026")
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(self.button_box)
        if default is not None and default in self.buttons:
            self.buttons[default].setChecked(True)
        self.group.buttonToggled.connect(lambda *args: self._update_ok())
        self._update_ok()
        self.resize(620, self.sizeHint().height())

    def _update_ok(self) -> None:
        ok = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(self.chosen() is not None)

    def chosen(self) -> str | None:
        """The format chosen (None: none can hold the result)."""
        k = self.group.checkedId()
        return self.options[k].name if k >= 0 else None

    def choose(self, name: str) -> bool:
        """Select a format as a click would; False when it is greyed (cannot hold it)."""
        button = self.buttons.get(name)
        if button is None or not button.isEnabled():
            return False
        button.setChecked(True)
        return True

    def rows(self) -> list[tuple[str, bool, str, str]]:
        """What the dialog shows, format by format: (name, enabled, size, the line under it)."""
        return [
            (
                name,
                self.buttons[name].isEnabled(),
                self.sizes[name].text(),
                self.notes[name].text(),
            )
            for name in self.buttons
        ]
