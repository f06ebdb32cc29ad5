"""Shared fixtures. Every test runs with its own, empty QSettings: the window's recent files,
folders and remembered architectures never leak in from (or out to) the user's real ones."""

from __future__ import annotations

import pytest


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


@pytest.fixture
def window(qtbot, message_boxes):
    """An empty main window, shown offscreen; closed without questions afterwards."""
    from gui.main_window import MainWindow

    win = MainWindow()
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close_without_asking()
    win.deleteLater()


@pytest.fixture
def demo_window(window, qtbot):
    """The main window with the demo open (its data and the demo recipe applied)."""
    with qtbot.waitSignal(window.modelLoaded, timeout=30_000):
        window.open_demo()
    return window


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
