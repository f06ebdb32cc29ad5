"""Render the README screenshots offscreen into docs/screenshots/.

    QT_QPA_PLATFORM=offscreen python scripts/make_screenshots.py   (or: make screenshots)

main_window.png comes from the scriptable command line itself,
``secateur --demo --recipe ... --run --screenshot ... --quit-after-run``, so the README
shows exactly what that command draws. The other views (metrics tab, per-layer amounts)
need clicks, so they are driven in-process: sensitivity.png is a fresh demo window after a
sensitivity sweep with the target slider at 80%. Settings never touch the user's own
QSettings, and the sweep uses a temporary cache (so it is measured, not read back).

PyTorch runs with one intra-op thread here (OMP_NUM_THREADS=1, unless set): on a shared
two-core machine two OpenMP threads wait on each other whenever another process holds a
core, and the demo's 0.2 ms forward pass then measures anywhere up to 40 ms at random.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
RECIPE = ROOT / "resources" / "recipes" / "demo.yaml"


def _env(config_home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["XDG_CONFIG_HOME"] = config_home  # keep the user's real settings out of it
    env["SECATEUR_CACHE_DIR"] = str(Path(config_home) / "sensitivity-cache")
    return env


def main_window(config_home: str) -> Path:
    target = OUT / "main_window.png"
    secateur = Path(sys.executable).with_name("secateur")
    command = [str(secateur)] if secateur.exists() else [sys.executable, "-m", "gui.launcher"]
    command += ["--demo", "--recipe", str(RECIPE), "--run", "--screenshot", str(target)]
    command += ["--quit-after-run"]
    subprocess.run(command, check=True, env=_env(config_home), cwd=ROOT, timeout=300)
    return target


def in_process_views(config_home: str) -> list[Path]:
    os.environ.update(_env(config_home))
    from PySide6.QtCore import QCoreApplication, QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName("SecateurScreenshots")
    QCoreApplication.setApplicationName("SecateurScreenshots")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, config_home)
    app = QApplication.instance() or QApplication([sys.argv[0]])

    from gui.app import configure_application
    from gui.main_window import MainWindow

    configure_application(app)

    def wait_for(signal: object, timeout_ms: int = 120_000) -> None:
        loop = QEventLoop()
        signal.connect(loop.quit)  # type: ignore[attr-defined]
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()
        signal.disconnect(loop.quit)  # type: ignore[attr-defined]

    def settle(ms: int = 300) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    window = MainWindow()
    window.show()
    window.open_demo()
    wait_for(window.modelLoaded)
    written = []

    # per-layer amounts: fc1 (most of the weights) pruned harder, the convolutions lighter
    selection = window.session.selection
    selection.set_override("fc1", 0.8)
    selection.set_override("conv1", 0.2)
    selection.set_override("conv2", 0.3)
    window.run_compression()
    wait_for(window.runFinished)
    window.tree.select_layer("fc1")
    settle()
    target = OUT / "per_layer_amounts.png"
    window.screenshot(target)
    written.append(target)

    window.results.tabs.setCurrentIndex(1)
    settle()
    target = OUT / "metrics.png"
    window.screenshot(target)
    written.append(target)

    window.close_without_asking()

    # sensitivity: a fresh demo window, the sweep, then the target slider at 80%
    window = MainWindow()
    window.show()
    window.open_demo()
    wait_for(window.modelLoaded)
    window.resize(1600, 940)
    settle()
    window.splitter.setSizes([660, 640, 300])
    window.run_sensitivity()
    wait_for(window.sweepFinished)
    window.results.sensitivity_panel.set_target(80)
    window.tree.select_layer("conv1")  # the fragile layer, highlighted
    settle()
    target = OUT / "sensitivity.png"
    window.screenshot(target)
    written.append(target)
    window.close_without_asking()
    return written


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="secateur-shots-") as config_home:
        written = [main_window(config_home), *in_process_views(config_home)]
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
