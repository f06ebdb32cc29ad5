"""The bundle's entry point: the ``secateur`` command the wheel installs (``gui.launcher:main``),
so the bundled executable is the window and the command line in one.

``SECATEUR_FIRST_PAINT=1`` makes the window print the wall-clock time (``time.time()``) of its
first paint to stderr and quit: ``packaging/check_bundle.py`` measures the bundled window's
start-up with it, against the same entry point run from the source tree.
"""

from __future__ import annotations

import os
import sys
import time


def _quit_after_first_paint() -> None:
    """Create the application first and watch it for the first paint event of any widget."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and not hasattr(self, "seen"):
                self.seen = time.time()
                print(f"first paint {self.seen:.6f}", file=sys.stderr, flush=True)
                # the figure is taken: leave at once. app.quit() would close the window,
                # whose close guard asks first while the demo is still loading
                QTimer.singleShot(0, lambda: os._exit(0))
            return False

    app._first_paint = FirstPaint()  # kept alive as long as the application
    app.installEventFilter(app._first_paint)


def run() -> int:
    from gui.launcher import main

    if os.environ.get("SECATEUR_FIRST_PAINT"):
        _quit_after_first_paint()
    return main()


if __name__ == "__main__":
    sys.exit(run())
