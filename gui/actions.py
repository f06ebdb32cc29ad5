"""The window's actions, declared once: text, shortcut, tip, icon, where they appear and when
they are enabled.

``ACTIONS`` is the table. ``ActionTable`` makes a QAction per row (connected to the slot the
window gives for its id), fills the menus, the toolbar and the tree's Check menu in table
order, and ``update(context)`` sets every enabled state from one ``ActionContext`` (is a model
open, is a job running, is there a result, can the model be compressed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QStyle, QToolBar

Shortcut = QKeySequence.StandardKey | Qt.Key | str


@dataclass(frozen=True)
class ActionContext:
    """What the enabled states depend on."""

    has_model: bool = False
    busy: bool = False
    has_result: bool = False
    eager: bool = False


Rule = Callable[[ActionContext], bool]


def idle(c: ActionContext) -> bool:
    return not c.busy


def model_idle(c: ActionContext) -> bool:
    return c.has_model and not c.busy


def eager_idle(c: ActionContext) -> bool:
    return c.eager and not c.busy


def result_idle(c: ActionContext) -> bool:
    return c.has_result and not c.busy


def running(c: ActionContext) -> bool:
    return c.busy


def always(c: ActionContext) -> bool:
    return True


@dataclass(frozen=True)
class ActionSpec:
    """One action. ``menu``: the top-level menu it is in (None: none); ``separated``: a
    separator goes before it there; ``toolbar``: its group on the toolbar (None: not on it;
    groups are separated); ``check_menu``: also in the tree's Check menu; ``submenu``: the row
    is a submenu (filled by the window), not an action."""

    id: str
    text: str
    shortcut: Shortcut | None = None
    tip: str = ""
    icon: QStyle.StandardPixmap | None = None
    menu: str | None = None
    separated: bool = False
    toolbar: int | None = None
    check_menu: bool = False
    submenu: bool = False
    enabled: Rule = always


SP = QStyle.StandardPixmap
KEY = QKeySequence.StandardKey

ACTIONS: tuple[ActionSpec, ...] = (
    # File
    ActionSpec(
        "open", "&Open Model\u2026", KEY.Open, "Open a model file", SP.SP_DialogOpenButton,
        "&File", toolbar=0, enabled=idle,
    ),
    ActionSpec(
        "demo", "Open &Demo", "Ctrl+Shift+D",
        "Open the bundled digits CNN with its data and recipe", SP.SP_ComputerIcon,
        toolbar=0, enabled=idle,
    ),
    ActionSpec("demos", "Open &Demo", menu="&File", submenu=True, enabled=idle),
    ActionSpec("recent", "Open &Recent", menu="&File", submenu=True, enabled=idle),
    ActionSpec(
        "open_data", "Open Evaluation &Data\u2026", "Ctrl+D",
        "Data to measure accuracy, fidelity and latency on", menu="&File", separated=True,
        enabled=model_idle,
    ),
    ActionSpec(
        "open_train", "Open &Training Data\u2026", None, "Data for the fine-tune step",
        menu="&File", enabled=model_idle,
    ),
    ActionSpec(
        "save", "&Save Compressed Model\u2026", KEY.Save, "Write the compressed model to a file",
        SP.SP_DialogSaveButton, "&File", separated=True, toolbar=0, enabled=result_idle,
    ),
    ActionSpec(
        "export", "&Export Report\u2026", "Ctrl+E", "Write the JSON report and the chart images",
        menu="&File", enabled=result_idle,
    ),
    ActionSpec(
        "load_recipe", "&Load Recipe\u2026", "Ctrl+L",
        "Set the tree and settings from a recipe file", menu="&File", separated=True,
        toolbar=1, enabled=model_idle,
    ),
    ActionSpec(
        "save_recipe", "Save &Recipe\u2026", "Ctrl+Shift+S",
        "Write what the window shows as a recipe for 'secateur compress'", menu="&File",
        toolbar=1, enabled=model_idle,
    ),
    ActionSpec("quit", "&Quit", KEY.Quit, menu="&File", separated=True),
    # Edit
    ActionSpec(
        "reset", "&Reset", "Ctrl+Shift+R",
        "Drop the result and go back to the settings the model opened with", menu="&Edit",
        enabled=model_idle,
    ),
    ActionSpec("find", "&Find Layer", KEY.Find, menu="&Edit", separated=True),
    ActionSpec(
        "check_all", "Check &All Prunable Layers", "Ctrl+Shift+A", menu="&Edit",
        check_menu=True, enabled=model_idle,
    ),
    ActionSpec(
        "check_linear", "Check All &Linear Layers", "Ctrl+Shift+L", menu="&Edit",
        check_menu=True, enabled=model_idle,
    ),
    ActionSpec(
        "check_conv", "Check All &Conv Layers", "Ctrl+Shift+C", menu="&Edit",
        check_menu=True, enabled=model_idle,
    ),
    ActionSpec(
        "check_none", "&Uncheck All", "Ctrl+Shift+N", menu="&Edit", check_menu=True,
        enabled=model_idle,
    ),
    ActionSpec(
        "invert", "&Invert Checks", "Ctrl+I", menu="&Edit", check_menu=True,
        enabled=model_idle,
    ),
    # Run
    ActionSpec(
        "run", "&Compress", "Ctrl+R", "Prune and quantize a copy of the model, then measure",
        SP.SP_MediaPlay, "&Run", toolbar=2, enabled=model_idle,
    ),
    ActionSpec(
        "sensitivity", "&Sensitivity Sweep", "Ctrl+Alt+R",
        "Prune each checked layer alone at several amounts and plot the metric",
        SP.SP_FileDialogContentsView, "&Run", toolbar=2, enabled=eager_idle,
    ),
    ActionSpec(
        "recommend", "&Recommend Quantization", "Ctrl+Alt+P",
        "Measure every candidate scheme of each selected layer on this machine and fill the "
        "Quant column with the fastest plan that keeps fidelity",
        SP.SP_DialogApplyButton, "&Run", toolbar=2, enabled=eager_idle,
    ),
    ActionSpec(
        "cancel", "C&ancel", Qt.Key.Key_Escape, "Stop the running job after its current step",
        SP.SP_BrowserStop, "&Run", separated=True, toolbar=2, enabled=running,
    ),
    # Help
    ActionSpec("about", "&About Secateur", menu="&Help"),
    ActionSpec("about_qt", "About &Qt", menu="&Help"),
)  # fmt: skip


class ActionTable:
    """The QActions (and submenus) of ``ACTIONS`` for one window."""

    def __init__(self, window: QMainWindow, slots: Mapping[str, Callable[[], Any]]) -> None:
        self._window = window
        self._actions: dict[str, QAction] = {}
        self.submenus: dict[str, QMenu] = {}
        for spec in ACTIONS:
            if spec.submenu:
                self.submenus[spec.id] = QMenu(spec.text, window)
            else:
                self._actions[spec.id] = self._make(spec, slots[spec.id])

    def _make(self, spec: ActionSpec, slot: Callable[[], Any]) -> QAction:
        action = QAction(spec.text, self._window)
        if spec.shortcut is not None:
            action.setShortcut(QKeySequence(spec.shortcut))
        if spec.tip:
            action.setStatusTip(spec.tip)
            action.setToolTip(spec.tip)
        if spec.icon is not None:
            action.setIcon(self._window.style().standardIcon(spec.icon))
        action.triggered.connect(lambda checked=False: slot())
        return action

    def __getitem__(self, action_id: str) -> QAction:
        return self._actions[action_id]

    def __iter__(self) -> Iterator[QAction]:
        return iter(self._actions.values())

    def build(self, toolbar: QToolBar, add_to_check_menu: Callable[[QAction], None]) -> None:
        """The menu bar's menus, the toolbar and the tree's Check menu, in table order."""
        menus: dict[str, QMenu] = {}
        groups: set[int] = set()
        for spec in ACTIONS:
            if spec.menu is not None:
                menu = menus.get(spec.menu)
                if menu is None:
                    menu = menus[spec.menu] = self._window.menuBar().addMenu(spec.menu)
                if spec.separated:
                    menu.addSeparator()
                if spec.submenu:
                    menu.addMenu(self.submenus[spec.id])
                else:
                    menu.addAction(self._actions[spec.id])
            if spec.toolbar is not None:
                if groups and spec.toolbar not in groups:
                    toolbar.addSeparator()
                groups.add(spec.toolbar)
                toolbar.addAction(self._actions[spec.id])
            if spec.check_menu:
                add_to_check_menu(self._actions[spec.id])

    def update(self, context: ActionContext) -> None:
        """Every action's (and submenu's) enabled state from its rule."""
        for spec in ACTIONS:
            on = spec.enabled(context)
            if spec.submenu:
                self.submenus[spec.id].setEnabled(on)
            else:
                self._actions[spec.id].setEnabled(on)
