"""Dialogs: errors, the trust question for pickles, the architecture picker, About."""

from __future__ import annotations

import ast
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import core
from core.errors import UserError, first_line


def error_box(parent: QWidget | None, exc: BaseException, trace: str = "") -> QMessageBox:
    """A message box for ``exc``: one line for a user error, details for anything else."""
    box = QMessageBox(parent)
    box.setWindowTitle("Secateur")
    box.setTextFormat(Qt.TextFormat.PlainText)
    if isinstance(exc, UserError):
        box.setIcon(QMessageBox.Icon.Warning)
        box.setText(str(exc))
    else:
        box.setIcon(QMessageBox.Icon.Critical)
        box.setText(
            f"Something went wrong inside Secateur: {type(exc).__name__}: {first_line(exc)}"
        )
        box.setInformativeText(
            "This is a bug in Secateur, not in your files. The window keeps working; the "
            "details below help to report it."
        )
        box.setDetailedText(trace or f"{type(exc).__name__}: {exc}")
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    return box


def run_box(box: QMessageBox | QDialog) -> int:
    """exec() a dialog and schedule its deletion, so answered boxes do not pile up as hidden
    children of the window over a long session."""
    try:
        return box.exec()
    finally:
        box.deleteLater()


def show_error(parent: QWidget | None, exc: BaseException, trace: str = "") -> None:
    run_box(error_box(parent, exc, trace))


def ask_trust(parent: QWidget | None, path: Path) -> bool:
    """Ask before unpickling a file that can run code. True only on an explicit 'Open'."""
    box = QMessageBox(parent)
    box.setWindowTitle("Open a pickled model?")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setTextFormat(Qt.TextFormat.PlainText)
    box.setText(f"{path.name} is a full pickled model. Opening it can run any code it contains.")
    box.setInformativeText(
        "Open it only if you trust where it came from (you saved it yourself, or its source "
        "is known). Otherwise cancel and ask for a state dict, TorchScript or .pt2 file."
    )
    open_button = box.addButton("Open Anyway", QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    box.exec()
    accepted = box.clickedButton() is open_button
    box.deleteLater()
    return accepted


def ask_discard(parent: QWidget | None, action: str) -> QMessageBox.StandardButton:
    """Save / Discard / Cancel for an unsaved compressed model."""
    box = QMessageBox(parent)
    box.setWindowTitle("Unsaved compressed model")
    box.setIcon(QMessageBox.Icon.Question)
    box.setText(f"The compressed model has not been saved. Save it before you {action}?")
    box.setStandardButtons(
        QMessageBox.StandardButton.Save
        | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Cancel
    )
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    return QMessageBox.StandardButton(run_box(box))


def ask_quit_while_saving(parent: QWidget | None) -> str:
    """A save runs and the user quits: "wait" (quit when saved), "stop" or "cancel"."""
    box = QMessageBox(parent)
    box.setWindowTitle("Saving")
    box.setIcon(QMessageBox.Icon.Question)
    box.setText("The compressed model is being saved.")
    box.setInformativeText(
        "Quit When Saved waits for the file to be written and checked, then closes. "
        "Stop Saving cancels it: nothing is written."
    )
    wait = box.addButton("Quit When Saved", QMessageBox.ButtonRole.AcceptRole)
    stop = box.addButton("Stop Saving and Quit", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(wait)
    box.setEscapeButton(cancel)
    box.exec()
    clicked = box.clickedButton()
    box.deleteLater()
    return "wait" if clicked is wait else "stop" if clicked is stop else "cancel"


def callables_in(path: Path) -> list[str]:
    """Top-level functions and classes of a Python file, without running it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    names = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")
    ]
    funcs = [n for n in names if n[:1].islower()]
    return funcs + [n for n in names if n not in funcs]


class ArchDialog(QDialog):
    """Asks for the architecture of a bare state dict: a Python file and a callable in it."""

    def __init__(
        self, model_path: Path, spec: str | None, start_dir: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Architecture needed")
        self._start_dir = start_dir
        intro = QLabel(
            f"<b>{model_path.name}</b> holds the weights only, not the model's code. Choose "
            "the Python file that defines the model, then the function or class in it that "
            "builds the model (an installed package's module name works too). Secateur "
            "remembers the choice for this file.",
            self,
        )
        intro.setWordWrap(True)
        self.file_edit = QLineEdit(self)
        self.file_edit.setPlaceholderText("path/to/model_def.py  or  package.module")
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._on_browse)
        self.callable_box = QComboBox(self)
        self.callable_box.setEditable(True)
        self.callable_box.setMinimumContentsLength(18)
        self.file_edit.textChanged.connect(self._on_file_changed)
        row = QHBoxLayout()
        row.addWidget(self.file_edit, 1)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Python file:", row)
        form.addRow("Callable:", self.callable_box)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())
        if spec:
            target, _, attr = spec.rpartition(":")
            self.file_edit.setText(target)
            self.callable_box.setCurrentText(attr)
        self._update_ok()
        self.callable_box.currentTextChanged.connect(self._update_ok)

    def spec(self) -> str:
        return f"{self.file_edit.text().strip()}:{self.callable_box.currentText().strip()}"

    @Slot()
    def _on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Python file with the architecture", self._start_dir, "Python (*.py)"
        )
        if path:
            self.file_edit.setText(path)

    @Slot(str)
    def _on_file_changed(self, text: str) -> None:
        current = self.callable_box.currentText()
        path = Path(text.strip())
        names = callables_in(path) if text.strip().endswith(".py") and path.is_file() else []
        self.callable_box.clear()
        self.callable_box.addItems(names)
        if current and current in names:
            self.callable_box.setCurrentText(current)
        self._update_ok()

    @Slot()
    def _update_ok(self) -> None:
        ok = bool(self.file_edit.text().strip() and self.callable_box.currentText().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Open).setEnabled(ok)


def ask_arch(
    parent: QWidget | None, model_path: Path, spec: str | None, start_dir: str
) -> str | None:
    dialog = ArchDialog(model_path, spec, start_dir, parent)
    accepted = dialog.exec() == QDialog.DialogCode.Accepted
    spec = dialog.spec() if accepted else None
    dialog.deleteLater()
    return spec


def show_about(parent: QWidget | None) -> None:
    QMessageBox.about(
        parent,
        "About Secateur",
        f"<h3>Secateur {core.__version__}</h3>"
        "<p>Makes trained PyTorch models smaller and faster by pruning and quantization, "
        "and shows what changed, layer by layer. Every number is measured on the real "
        "model.</p>"
        "<p>Built on PyTorch, torchao, PySide6 and pyqtgraph. MIT licence.</p>",
    )
