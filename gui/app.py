"""Start the window: ``run_app(argv) -> exit code``.

Scriptable: ``secateur --demo --recipe R --run --screenshot shot.png --quit-after-run`` opens
the window, runs the recipe, saves the screenshot once the results are drawn and exits 0; any
error on the way prints one line and exits 2 (a user error) or 1 (a bug).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from types import TracebackType

from core.errors import UserError
from gui.options import Options, no_display_reason, parse_options

SCREENSHOT_DELAY_MS = 250  # let the charts and the tree repaint before grabbing


def run_app(args: argparse.Namespace | Sequence[str]) -> int:
    """Open the window as the flags say and run the event loop; returns the exit code.
    ``args`` is the parsed command line, or the window's flags as a list."""
    try:
        if isinstance(args, argparse.Namespace):
            options = Options.from_args(args)
        else:
            options = parse_options(args)
    except UserError as exc:
        print(f"secateur: error: {exc}", file=sys.stderr)
        return 2
    reason = no_display_reason(dict(os.environ), sys.platform)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    _quiet_offscreen_messages()
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "secateur"])
    configure_application(app)

    from core.tasks import freeze_long_lived_objects
    from gui.main_window import MainWindow

    window = MainWindow(options)
    freeze_long_lived_objects()
    exit_code = [0]

    def finish(code: int) -> None:
        exit_code[0] = code
        window.close_without_asking()
        app.exit(code)

    window.exitRequested.connect(finish)
    previous_hook = sys.excepthook
    sys.excepthook = _dialog_excepthook(window, previous_hook)
    try:
        window.show()
        QTimer.singleShot(0, window.warm_up)
        QTimer.singleShot(0, lambda: start(window, options, finish))
        code = app.exec()
    finally:
        sys.excepthook = previous_hook
    return exit_code[0] if exit_code[0] else code


def configure_application(app: object) -> None:
    """Names for QSettings, and pyqtgraph's global options."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    app.setOrganizationName("Secateur")
    app.setApplicationName("Secateur")
    app.setApplicationDisplayName("Secateur")
    app.setWindowIcon(app_icon())
    pg.setConfigOptions(antialias=True)


def app_icon() -> object:
    """The window icon: the PNG sizes rendered from ``resources/icons/secateur.svg`` (the files
    the desktop entry installs, so the window and the menu show the same icon)."""
    from PySide6.QtGui import QIcon

    import resources

    icon = QIcon()
    for png in sorted(resources.path("icons").glob("secateur-*.png")):
        icon.addFile(str(png))
    return icon


def _quiet_offscreen_messages() -> None:
    """The offscreen platform warns about window size hints it ignores; nobody can act on
    that, so it is dropped. Every other Qt message still reaches stderr."""
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    def handler(mode: QtMsgType, context: object, message: str) -> None:
        if "propagateSizeHints" in message:
            return
        print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def start(window: object, options: Options, finish: object) -> None:
    """Open what the flags name, then apply data, recipe, run, screenshot and quit."""
    from pathlib import Path

    from PySide6.QtCore import QTimer

    from gui.main_window import MainWindow

    assert isinstance(window, MainWindow)

    def after_load() -> None:
        # the data files load in the background, one after the other, then the rest
        files = [
            (window.open_eval_data, options.data),
            (window.open_train_data, options.train_data),
        ]
        load_next([(open_file, path) for open_file, path in files if path is not None], True)

    def load_next(files: list, steps_ok: bool) -> None:
        if not steps_ok and options.scripted:
            return  # the error has already asked to exit
        if files:
            (open_file, path), rest = files[0], files[1:]
            open_file(path, lambda ok: load_next(rest, steps_ok and ok))
            return
        if options.input_shape:
            window.settings.set_input_shape(options.input_shape)
        if options.recipe is not None:
            steps_ok = window.load_recipe_file(options.recipe) and steps_ok
        if not steps_ok and options.scripted:
            return  # the error has already asked to exit
        if options.run:
            window.run_compression()
        elif options.screenshot or options.quit_after_run:
            QTimer.singleShot(SCREENSHOT_DELAY_MS, done)

    def done() -> None:
        if options.screenshot is not None:
            try:
                window.screenshot(Path(options.screenshot))
            except UserError as exc:
                window.show_error(exc)
                return
            window.log(f"screenshot saved to {options.screenshot}")
        if options.quit_after_run:
            finish(0)  # type: ignore[operator]

    def on_run_finished(_result: object) -> None:
        QTimer.singleShot(SCREENSHOT_DELAY_MS, done)

    def on_run_cancelled() -> None:
        if options.quit_after_run:
            print("secateur: cancelled", file=sys.stderr)
            finish(130)  # type: ignore[operator]

    if options.run:
        window.runFinished.connect(on_run_finished)
        window.runCancelled.connect(on_run_cancelled)
    if options.demo or options.model is not None:
        window.when_loaded(after_load)
        if options.demo:
            window.open_demo(options.demo)
        else:
            assert options.model is not None
            window.open_model(options.model, arch=options.arch, trust=options.trust)
    elif options.screenshot or options.quit_after_run:
        QTimer.singleShot(SCREENSHOT_DELAY_MS, done)


def _dialog_excepthook(window: object, previous: object) -> object:
    """An exception escaping a slot shows an error dialog instead of vanishing in stderr."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        trace = "".join(traceback.format_exception(kind, exc, tb))
        print(trace, file=sys.stderr)
        try:
            window.show_error(exc, trace)  # type: ignore[attr-defined]
        except Exception:  # never let the hook itself fail
            if callable(previous):
                previous(kind, exc, tb)

    return hook
