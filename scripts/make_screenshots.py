"""Render the README screenshots offscreen into docs/screenshots/.

    QT_QPA_PLATFORM=offscreen python scripts/make_screenshots.py   (or: make screenshots)

main_window.png comes from the scriptable command line itself,
``secateur --demo --recipe ... --run --screenshot ... --quit-after-run``, so the README
shows exactly what that command draws. The other views (metrics tab, per-layer amounts)
need clicks, so they are driven in-process: sensitivity.png is a fresh demo window after a
sensitivity sweep with the target slider at 80%. The scale_*.png views are a real 50+-layer
model, the MobileNetV2 of ``benchmarks/models.py`` (52 Conv2d layers, built here, nothing
downloaded) on 64 unlabelled 64x64 images, at the default 1400x900: the tree with its
Amount column and the details pane over the scrolled sparsity chart, the sweep's heatmap,
and the fidelity warning of a too-greedy recipe. plan.png is Recommend on the digits
transformer demo (every Linear layer timed here, which takes a couple of minutes). Settings
never touch the user's own QSettings, and the sweeps use a temporary cache (so they are
measured, not read back).

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
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # benchmarks.models builds the 50+-layer model
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


def _application(config_home: str) -> object:
    """The QApplication, configured as the app's, with settings in ``config_home``."""
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName("SecateurScreenshots")
    QCoreApplication.setApplicationName("SecateurScreenshots")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, config_home)
    app = QApplication.instance() or QApplication([sys.argv[0]])

    from gui.app import configure_application

    configure_application(app)
    return app


def in_process_views(config_home: str) -> list[Path]:
    os.environ.update(_env(config_home))
    from PySide6.QtCore import QEventLoop, QTimer

    from gui.main_window import MainWindow

    _application(config_home)

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


def scale_views(config_home: str) -> list[Path]:
    """A 50+-layer model at the default size: tree and details, heatmap, fidelity warning."""
    import numpy as np
    import torch
    from PySide6.QtWidgets import QApplication

    from benchmarks.models import mobilenet

    app = QApplication.instance()
    folder = Path(config_home)
    weights = folder / "mobilenet.pt"
    torch.save(mobilenet().state_dict(), weights)
    photos = folder / "photos.npz"  # unlabelled: fidelity is the only measure
    images = np.random.default_rng(0).standard_normal((64, 3, 64, 64)).astype(np.float32)
    np.savez(photos, x=images)
    written = []

    window = _fresh_window()
    window.open_model(weights, arch="benchmarks.models:mobilenet")
    _wait(window.modelLoaded)
    done: list[bool] = []
    window.open_eval_data(photos, done.append)
    while not done:
        app.processEvents()
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText("30, 50, 70, 90")
    window.run_sensitivity()
    _wait(window.sweepFinished)
    panel.set_target(40)  # per-layer amounts from the curves, in the tree's Amount column
    window.run_compression()
    _wait(window.runFinished)
    window.tree.select_layer("features.17.conv.2")  # a sensitive one (see the heatmap)
    window.results.tabs.setCurrentWidget(window.results.sparsity_chart)
    _settle()
    written.append(_shot(window, "scale_tree_details.png"))

    window.results.show_sensitivity_tab()
    panel.show_view(1)
    panel.search_edit.setText("features.16.conv.1")
    panel.search_edit.returnPressed.emit()
    _settle()
    written.append(_shot(window, "scale_heatmap.png"))

    # a recipe that prunes every layer by 95% without looking: fidelity collapses
    window.action("check_all").trigger()
    window.session.selection.set_overrides({})
    window.settings.amount_spin.setValue(95.0)
    window.run_compression()
    _wait(window.runFinished)
    window.results.tabs.setCurrentIndex(1)  # the metrics: fidelity in orange
    window.tree.select_layer("features.16.conv.2")
    _settle()
    written.append(_shot(window, "scale_fidelity.png"))
    window.close_without_asking()
    return written


def plan_view() -> list[Path]:
    """Recommend on the digits transformer demo: the Quant column and the Plan tab."""

    window = _fresh_window()
    window.open_demo("digits_transformer")
    _wait(window.modelLoaded)
    window.plans.run()
    _wait(window.planFinished, 900_000)
    window.tree.select_layer("encoder.1.up")
    _settle()
    target = _shot(window, "plan.png")
    window.close_without_asking()
    return [target]


CHANNELS_INT8 = """version: 1
prune:
  - layers: [conv1, conv2, fc1]
    method: remove_channels
    amount: 0.5
quantize: {scheme: int8_dynamic, types: [Linear]}
"""


def channel_views(config_home: str) -> list[Path]:
    """Issues 10 and 12 in the window: the demo as it opens (remove_channels settings, the
    coupled layers marked before the run), after its run (shapes before -> after, weights
    kept), the save dialog for a torchao int8 result (greyed formats and their reasons), the
    Metrics tab after an ONNX save (each latency's runtime), and a 50+-layer MobileNetV2
    before and after removing 30% of every convolution's channels."""
    import numpy as np
    import torch
    from PySide6.QtWidgets import QApplication, QFileDialog

    from benchmarks.models import mobilenet
    from core.recipe import parse_recipe
    from gui.layer_tree_model import Col
    from gui.save_dialog import SaveFormatDialog

    app = QApplication.instance()
    folder = Path(config_home)
    written = []

    window = _fresh_window()
    window.open_demo()
    _wait(window.modelLoaded)
    _plan_shown(window)
    window.tree.select_layer("conv2")
    _settle()
    written.append(_shot(window, "channels_before.png"))
    written.append(_grab(window.settings, "settings_channels.png"))
    window.run_compression()
    _wait(window.runFinished)
    window.tree.select_layer("conv2")
    _settle()
    written.append(_shot(window, "channels_after.png"))

    # the Metrics tab after saving the demo's result as ONNX: each latency's runtime
    onnx = folder / "demo-small.onnx"
    original = QFileDialog.getSaveFileName
    SaveFormatDialog.exec = lambda self: 1  # type: ignore[method-assign]
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(onnx), a[4]))  # type: ignore[method-assign]
    try:
        window.saves.save_dialog()
        _wait(window.saved)
    finally:
        QFileDialog.getSaveFileName = original  # type: ignore[method-assign]
        del SaveFormatDialog.exec
    window.results.tabs.setCurrentIndex(1)
    _settle()
    written.append(_shot(window, "metrics_runtimes.png"))

    # the save dialog for a result a pickle or TorchScript cannot hold (torchao int8)
    window.apply_recipe(parse_recipe(CHANNELS_INT8, "channels-int8.yaml"))
    window.run_compression()
    _wait(window.runFinished)
    session = window.session
    dialog = SaveFormatDialog(
        session.save_formats,
        "state_dict",
        session.result.report.before.state_dict_bytes,
        window,
    )
    dialog.show()
    _settle()
    written.append(_grab(dialog, "save_dialog.png"))
    dialog.close()
    window.close_without_asking()

    # a 50+-layer model: every Conv2d loses 30% of its channels
    weights = folder / "mobilenet.pt"
    torch.save(mobilenet().state_dict(), weights)
    photos = folder / "photos.npz"
    images = np.random.default_rng(0).standard_normal((64, 3, 64, 64)).astype(np.float32)
    np.savez(photos, x=images)
    window = _fresh_window()
    window.open_model(weights, arch="benchmarks.models:mobilenet")
    _wait(window.modelLoaded)
    done: list[bool] = []
    window.open_eval_data(photos, done.append)
    while not done:
        app.processEvents()
    window.tree.set_column_visible(Col.SHAPE, False)
    box = window.settings.method_box
    box.setCurrentIndex(box.findData("remove_channels"))
    window.settings.amount_spin.setValue(30.0)
    window.action("check_conv").trigger()
    _plan_shown(window)
    window.tree.select_layer("features.3.conv.0.0")
    _settle()
    written.append(_shot(window, "scale_channels_before.png"))
    window.run_compression()
    _wait(window.runFinished)
    window.tree.select_layer("features.3.conv.0.0")
    _settle()
    written.append(_shot(window, "scale_channels_after.png"))
    window.close_without_asking()
    return written


def _plan_shown(window: object) -> None:
    """Until the removal plan of the window's settings is in (it runs in the background)."""
    from PySide6.QtWidgets import QApplication

    window.recipes.update_preview()  # type: ignore[attr-defined]
    while window.removal.pending:  # type: ignore[attr-defined]
        QApplication.processEvents()
    _settle()


def _grab(widget: object, name: str) -> Path:
    from core.atomic import atomic_write_bytes
    from gui.save_flow import png_bytes

    target = OUT / name
    atomic_write_bytes(target, png_bytes(widget.grab()))  # type: ignore[attr-defined]
    return target


def _fresh_window() -> object:
    """A window at the default 1400x900 and split, whatever the last one saved on close."""
    from PySide6.QtCore import QSettings

    from gui.main_window import MainWindow

    QSettings().remove("window")
    window = MainWindow()
    window.show()
    return window


def _wait(signal: object, timeout_ms: int = 300_000) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)  # type: ignore[attr-defined]
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(loop.quit)  # type: ignore[attr-defined]


def _settle(ms: int = 400) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _shot(window: object, name: str) -> Path:
    target = OUT / name
    window.screenshot(target)  # type: ignore[attr-defined]
    return target


def main() -> int:
    """Every screenshot; ``--only channels`` renders the issue 10/12 views alone."""
    OUT.mkdir(parents=True, exist_ok=True)
    only = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--only" else None
    with tempfile.TemporaryDirectory(prefix="secateur-shots-") as config_home:
        if only == "channels":
            os.environ.update(_env(config_home))
            _application(config_home)
            written = channel_views(config_home)
        else:
            written = [main_window(config_home), *in_process_views(config_home)]
            written += scale_views(config_home)
            written += channel_views(config_home)
            written += plan_view()
    for path in written:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
