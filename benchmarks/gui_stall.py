"""How long the window's event loop can stall: during a compression run (the demo and a
~50M-parameter Linear stack) and while a 10,000-module model's tree is shown.

A 1 ms QTimer heartbeat runs on the GUI thread; the longest gap between two of its ticks is
the longest time the window could not repaint or answer a click. Target: under 100 ms.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_stall.py [--tiny] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STALL_TARGET_MS = 100.0
TREE_TARGET_S = 1.0


def linear_stack(width: int, depth: int) -> Any:
    from torch import nn

    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def many_modules(blocks: int) -> Any:
    from torch import nn

    per = [nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)) for _ in range(blocks)]
    return nn.Sequential(*[nn.Sequential(*per[i : i + 50]) for i in range(0, blocks, 50)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a 2M-parameter stack (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()

    import torch
    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    settings_dir = tempfile.mkdtemp(prefix="secateur-stall-")
    QCoreApplication.setOrganizationName("SecateurBench")
    QCoreApplication.setApplicationName("SecateurBench")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    app = QApplication.instance() or QApplication([sys.argv[0]])

    from core.inventory import inventory
    from core.recipe import parse_recipe
    from core.tasks import freeze_long_lived_objects
    from gui.app import configure_application
    from gui.layer_tree import LayerTreePanel
    from gui.main_window import MainWindow

    configure_application(app)

    def wait(predicate: Any, timeout_s: float = 900.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while not predicate():
            if time.perf_counter() > deadline:
                raise TimeoutError("the window did not finish in time")
            app.processEvents()
            time.sleep(0.0005)

    from benchmarks.common import heartbeat

    heart = heartbeat()
    rows: list[dict[str, Any]] = []

    def run_case(label: str, window: MainWindow) -> None:
        done: list[Any] = []
        window.runFinished.connect(done.append)
        window.runFailed.connect(done.append)
        for _ in range(30):  # settle the first paint before measuring
            app.processEvents()
            time.sleep(0.01)
        heart.restart()
        t0 = time.perf_counter()
        window.run_compression()
        wait(lambda: bool(done))
        seconds = time.perf_counter() - t0
        stall = heart.worst
        if isinstance(done[0], BaseException):
            raise RuntimeError(f"{label}: the run failed: {done[0]}")
        report = done[0].report.to_dict()
        rows.append(
            {
                "case": label,
                "parameters": report["before"]["parameters"],
                "layers_pruned": sum(1 for r in report["layers"] if r["pruning"]),
                "run_s": round(seconds, 2),
                "max_stall_ms": stall,
                "ok": stall < STALL_TARGET_MS,
            }
        )

    # 1. the demo, with its test data (accuracy, fidelity, latency all measured)
    # 0. start-up as ``secateur --demo`` does it: warm-up (torchao import), then the demo
    window = MainWindow()
    window.resize(1400, 900)
    freeze_long_lived_objects()  # as gui.app.run_app does once the window exists
    window.show()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)
    heart.restart()
    t0 = time.perf_counter()
    window.warm_up()
    window.open_demo()
    wait(lambda: window.session.loaded is not None)
    startup = {"open_demo_s": round(time.perf_counter() - t0, 2), "max_stall_ms": heart.worst}
    run_case("demo (digits CNN)", window)
    window.close_without_asking()

    # 2. a ~50M-parameter Linear stack from a pickle, opened through the window
    width, depth = (512, 8) if args.tiny else (2048, 12)
    folder = Path(tempfile.mkdtemp(prefix="secateur-stall-model-"))
    path = folder / f"linear{width}x{depth}.pt"
    torch.save(linear_stack(width, depth), path)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    heart.restart()
    t0 = time.perf_counter()
    window.open_model(path, trust=True)
    wait(lambda: window.session.loaded is not None)
    open_s, open_stall = time.perf_counter() - t0, heart.worst
    window.settings.set_input_shape(f"1x{width}")
    window.apply_recipe(
        parse_recipe(
            "version: 1\nprune:\n  - {types: [Linear], amount: 0.5}\n"
            "quantize: {scheme: int8_dynamic, types: [Linear]}\n",
            "stall.yaml",
        )
    )
    run_case(f"Linear stack {width}x{depth}", window)
    rows[-1]["open_s"] = round(open_s, 2)
    rows[-1]["open_max_stall_ms"] = open_stall
    window.close_without_asking()
    path.unlink()

    # 3. a 10,000-module model (5,000 small Linear layers): open it and run it
    path = folder / "modules10k.pt"
    torch.save(many_modules(250 if args.tiny else 2500), path)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    heart.restart()
    t0 = time.perf_counter()
    window.open_model(path, trust=True)
    wait(lambda: window.session.loaded is not None)
    open_s, open_stall = time.perf_counter() - t0, heart.worst
    window.settings.set_input_shape("1x4")
    run_case(f"{len(window.session.layers):,} modules", window)
    rows[-1]["open_s"] = round(open_s, 2)
    rows[-1]["open_max_stall_ms"] = open_stall
    window.close_without_asking()
    path.unlink()

    # 4. the tree of a 10,000-module model alone: show it and paint it once
    layers = inventory(many_modules(2500))
    panel = LayerTreePanel()
    panel.resize(700, 800)
    panel.show()
    app.processEvents()
    t0 = time.perf_counter()
    panel.show_layers(layers, "10k modules")
    panel.view.viewport().repaint()
    tree_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    panel.selection.check_where(lambda info: True)
    check_all_s = time.perf_counter() - t0
    panel.close()
    tree = {
        "modules": len(layers),
        "show_tree_s": round(tree_s, 3),
        "check_all_s": round(check_all_s, 3),
        "ok": tree_s < TREE_TARGET_S,
    }

    if args.json:
        print(json.dumps({"startup": startup, "runs": rows, "tree": tree}))
    else:
        print(
            f"start-up (warm-up + open the demo): {startup['open_demo_s']:.2f} s, "
            f"max stall {startup['max_stall_ms']} ms (before any run)"
        )
        print(f"{'case':28} {'params':>12} {'run s':>7} {'max stall ms':>13}")
        for row in rows:
            print(
                f"{row['case']:28} {row['parameters']:>12,} {row['run_s']:>7.2f} "
                f"{row['max_stall_ms']:>13}"
            )
        for row in rows[1:]:
            print(
                f"opening {row['case']}: {row['open_s']:.2f} s (load in the background, "
                f"then the tree), max stall {row['open_max_stall_ms']} ms"
            )
        print(
            f"tree of {tree['modules']:,} modules shown and painted in {tree['show_tree_s']:.3f} s "
            f"(checking all {sum(1 for i in layers if i.prunable):,} prunable layers: "
            f"{tree['check_all_s']:.3f} s)"
        )
        print(
            f"target: stalls < {STALL_TARGET_MS:.0f} ms during the demo and the 50M runs, "
            f"tree < {TREE_TARGET_S:.0f} s (the 10,000-module run is for information)"
        )
    # The targets are for the demo and the 50M-parameter stack; the 10,000-module run is
    # reported for information (its stalls are the engine's GIL-holding steps on 10k layers).
    return 0 if all(r["ok"] for r in rows[:2]) and tree["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
