"""The File menu's two filled submenus: Open Recent (the remembered model files, read each
time the menu opens) and Open Demo (every bundled demo of ``core.demos.DEMOS``, with its
label and tooltip)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QMenu

from core.demos import DEFAULT_DEMO, DEMOS
from gui import prefs


def fill_recent(menu: QMenu, open_model: Callable[[Path], object]) -> None:
    """The recent model files, newest first, then Clear Menu."""
    menu.clear()
    files = prefs.recent_files()
    for i, name in enumerate(files):
        label = f"&{i + 1} {Path(name).name}" if i < 9 else Path(name).name
        action = menu.addAction(label)
        action.setToolTip(name)
        action.setStatusTip(name)
        action.triggered.connect(partial(open_model, Path(name)))
    if not files:
        empty = menu.addAction("No recent models")
        empty.setEnabled(False)
    menu.addSeparator()
    clear = menu.addAction("Clear Menu")
    clear.setEnabled(bool(files))
    clear.triggered.connect(prefs.clear_recent_files)


def fill_demos(menu: QMenu, shortcut: QKeySequence, open_demo: Callable[[str], object]) -> None:
    """One entry per bundled demo; the default one shows the toolbar action's shortcut."""
    menu.setToolTipsVisible(True)
    for demo in DEMOS:
        keys = f"\t{shortcut.toString()}" if demo.name == DEFAULT_DEMO else ""
        action = menu.addAction(demo.label + keys)
        action.setToolTip(demo.tooltip)
        action.setStatusTip(demo.tooltip)
        action.setData(demo.name)
        action.triggered.connect(partial(open_demo, demo.name))
