"""Shared fixtures. Every test runs with its own, empty QSettings: the window's recent files,
folders and remembered architectures never leak in from (or out to) the user's real ones."""

from __future__ import annotations

from pathlib import Path

import pytest

QUICK_RECIPE_PATH = Path(__file__).with_name("quick_recipe.yaml")
"""A recipe for the demo CNN that runs in a second or two (zero half the weights, int8 the
Linear layers): tests that need a run, not the demo's own recipe, use it."""


def pytest_configure(config: pytest.Config) -> None:
    # The offscreen platform warns that it ignores window size hints; nothing can act on it.
    config.addinivalue_line("qt_log_ignore", r"This plugin does not support propagateSizeHints")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """QSettings (and XDG config) in a fresh temporary folder for each test."""
    folder = tmp_path_factory.mktemp("settings")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder / "xdg"))
    try:
        from PySide6.QtCore import QCoreApplication, QSettings
    except ImportError:  # the core tests do not need Qt installed
        yield folder
        return
    QCoreApplication.setOrganizationName("SecateurTests")
    QCoreApplication.setApplicationName("SecateurTests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder / "qsettings"))
    yield folder


class MessageBoxes(list):
    """Every QMessageBox the code under test opened: (icon, text, informative, details)."""

    answer: object = None

    def texts(self) -> list[str]:
        return [box[1] for box in self]


@pytest.fixture
def message_boxes(monkeypatch: pytest.MonkeyPatch) -> MessageBoxes:
    """QMessageBox.exec recorded instead of shown; it answers ``message_boxes.answer`` (Ok)."""
    from PySide6.QtWidgets import QMessageBox

    seen = MessageBoxes()
    seen.answer = QMessageBox.StandardButton.Ok

    def fake_exec(box: QMessageBox) -> int:
        seen.append((box.icon(), box.text(), box.informativeText(), box.detailedText()))
        return int(seen.answer.value if hasattr(seen.answer, "value") else seen.answer)

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return seen


class FormatDialogs(list):
    """Every save-format dialog the code under test opened: (its rows as ``rows()`` gives
    them, the format it started on). It answers by choosing ``choose`` (None: the format it
    started on) and accepting, or cancels when ``cancel``."""

    choose: str | None = None
    cancel: bool = False
    picked: list[bool]

    def defaults(self) -> list[str | None]:
        return [started for _, started in self]


@pytest.fixture
def format_dialogs(monkeypatch: pytest.MonkeyPatch) -> FormatDialogs:
    """SaveFormatDialog.exec recorded instead of shown (see FormatDialogs)."""
    from PySide6.QtWidgets import QDialog

    from gui.save_dialog import SaveFormatDialog

    seen = FormatDialogs()
    seen.picked = []

    def fake_exec(dialog: SaveFormatDialog) -> int:
        seen.append((dialog.rows(), dialog.chosen()))
        if seen.cancel:
            return int(QDialog.DialogCode.Rejected.value)
        if seen.choose is not None:
            seen.picked.append(dialog.choose(seen.choose))
        return int(QDialog.DialogCode.Accepted.value)

    monkeypatch.setattr(SaveFormatDialog, "exec", fake_exec)
    return seen


@pytest.fixture
def window(qtbot, message_boxes, format_dialogs):
    """An empty main window, shown offscreen; closed without questions afterwards."""
    from gui.main_window import MainWindow

    win = MainWindow()
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close_without_asking()
    win.deleteLater()


@pytest.fixture
def demo_own_recipe_window(window, qtbot):
    """The main window with the demo open, as it opens: its data and its own recipe (which
    removes channels, fine-tunes and measures a quantization plan: slow to run)."""
    with qtbot.waitSignal(window.modelLoaded, timeout=30_000):
        window.open_demo()
    return window


def use_quick_recipe(window) -> None:
    """Put the quick recipe in place of the open demo's own, as if the demo had opened with
    it (Reset goes back to it)."""
    from core.recipe import load_recipe

    quick = load_recipe(QUICK_RECIPE_PATH)
    assert window.apply_recipe(quick)
    window.session.set_opened_recipe(quick)


@pytest.fixture
def demo_window(demo_own_recipe_window):
    """The main window with the demo open (its data) and the quick recipe in place of the
    demo's own (``use_quick_recipe``)."""
    use_quick_recipe(demo_own_recipe_window)
    return demo_own_recipe_window


@pytest.fixture
def clicking_boxes(message_boxes, monkeypatch):
    """Message boxes answered by clicking one of their real buttons: ``reply`` "yes" (the
    accept or yes role), "no" (reject or no) or "destructive" (e.g. Discard). Every box is
    recorded in ``message_boxes`` as (icon, text, informative, details)."""
    from types import SimpleNamespace

    from PySide6.QtWidgets import QMessageBox

    roles = {
        "yes": (QMessageBox.ButtonRole.AcceptRole, QMessageBox.ButtonRole.YesRole),
        "no": (QMessageBox.ButtonRole.RejectRole, QMessageBox.ButtonRole.NoRole),
        "destructive": (QMessageBox.ButtonRole.DestructiveRole,),
    }
    state = SimpleNamespace(reply="no", boxes=message_boxes)

    def fake_exec(box: QMessageBox) -> int:
        message_boxes.append((box.icon(), box.text(), box.informativeText(), box.detailedText()))
        buttons = [b for b in box.buttons() if box.buttonRole(b) in roles[state.reply]]
        buttons = buttons or box.buttons()[:1]
        if not buttons:
            return 0
        buttons[0].click()
        standard = box.standardButton(buttons[0])
        return int(standard.value) if standard else 0

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return state
