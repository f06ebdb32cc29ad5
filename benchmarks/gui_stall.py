"""How long the window's event loop can stall: during a compression run (the demo and a
~50M-parameter Linear stack), while a 10,000-module model's tree is shown, and on a real
50+-layer model (a MobileNetV2 with 52 Conv2d layers, ``benchmarks.models:mobilenet``) while
its charts update: the run's sparsity chart, metrics and cards, a sensitivity sweep streaming
53 curves and heatmap rows, the target slider reallocating, the views and tabs switching.

A 1 ms QTimer heartbeat runs on the GUI thread; the longest gap between two of its ticks is
the longest time the window could not repaint or answer a click. Targets: under 100 ms for
the runs, under 50 ms on the 50+-layer model while the charts update.

    QT_QPA_PLATFORM=offscreen python benchmarks/gui_stall.py [--tiny] [--json] [--only-charts]
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
CHARTS_TARGET_MS = 50.0
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
    parser.add_argument(
        "--only-charts", action="store_true", help="only the 50+-layer model's chart updates"
    )
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
    if args.only_charts:
        charts = chart_stalls(app, wait, args.tiny)
        print(json.dumps({"charts": charts}) if args.json else format_charts(charts))
        return 0 if charts["ok"] else 1

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
    window.action("check_all").trigger()  # a model opens with nothing checked
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

    # 5. the 50+-layer model while its charts update
    charts = chart_stalls(app, wait, args.tiny)

    if args.json:
        print(json.dumps({"startup": startup, "runs": rows, "tree": tree, "charts": charts}))
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
        print(format_charts(charts))
    # The targets are for the demo and the 50M-parameter stack; the 10,000-module run is
    # reported for information (its stalls are the engine's GIL-holding steps on 10k layers).
    return 0 if all(r["ok"] for r in rows[:2]) and tree["ok"] and charts["ok"] else 1


def busy_heartbeat() -> Any:
    """A 1 ms heartbeat that also tells how much of the longest gap the GUI thread itself
    was busy (its CPU time, ``time.thread_time``): on a shared machine a gap can be another
    process holding the core, or the worker holding the GIL, rather than the window's work."""
    from PySide6.QtCore import QObject, QTimer

    class Heartbeat(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.timer = QTimer(self)
            self.timer.setInterval(1)
            self.timer.timeout.connect(self.tick)
            self.restart()
            self.timer.start()

        def restart(self) -> None:
            self.wall, self.cpu = time.perf_counter(), time.thread_time()
            self.worst = self.worst_busy = 0.0
            self.busy_of_worst = 0.0

        def tick(self) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            gap, busy = 1000 * (wall - self.wall), 1000 * (cpu - self.cpu)
            if gap > self.worst:
                self.worst, self.busy_of_worst = gap, busy
            self.worst_busy = max(self.worst_busy, busy)
            self.wall, self.cpu = wall, cpu

    return Heartbeat()


def chart_stalls(app: Any, wait: Any, tiny: bool) -> dict[str, Any]:
    """The largest stalls on a MobileNetV2 (52 Conv2d + 1 Linear prunable) in the default
    1400x900 window, phase by phase: open it, compress it (the sparsity chart's 53 rows, the
    metrics, the cards), sweep it (53 curves and heatmap rows streamed in), move the target
    slider (each step reallocates 53 amounts into the tree and redraws markers and the
    prediction; timed as the longest synchronous update), switch views and tabs."""
    import torch

    from benchmarks.models import mobilenet
    from gui.main_window import MainWindow

    heart = busy_heartbeat()
    busy: dict[str, float] = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    folder = Path(tempfile.mkdtemp(prefix="secateur-stall-charts-"))
    os.environ["SECATEUR_CACHE_DIR"] = str(folder / "cache")  # the sweep is measured
    path = folder / "mobilenet.pt"
    torch.save(mobilenet().state_dict(), path)
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)
    phases: dict[str, float] = {}

    def settle(ms: int = 300) -> None:
        end = time.perf_counter() + ms / 1000
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.0005)

    heart.restart()
    window.open_model(path, arch="benchmarks.models:mobilenet")
    wait(lambda: window.session.loaded is not None)
    settle()
    phases["open (tree, details, planned bars)"] = heart.worst
    busy["open (tree, details, planned bars)"] = heart.worst_busy
    window.settings.set_input_shape("1x3x64x64")
    window.action("check_all").trigger()
    settle()
    done: list[Any] = []
    window.runFinished.connect(done.append)
    heart.restart()
    window.run_compression()
    wait(lambda: bool(done))
    settle()
    phases["compress (53-row sparsity chart, metrics, cards)"] = heart.worst
    busy["compress (53-row sparsity chart, metrics, cards)"] = heart.worst_busy
    swept: list[Any] = []
    window.sweepFinished.connect(swept.append)
    panel = window.results.sensitivity_panel
    panel.amounts_edit.setText("50" if tiny else "30, 60, 90")
    heart.restart()
    window.run_sensitivity()
    wait(lambda: bool(swept))
    settle()
    phases["sweep (53 curves and heatmap rows streamed)"] = heart.worst
    busy["sweep (53 curves and heatmap rows streamed)"] = heart.worst_busy
    heart.restart()
    slowest = slowest_cpu = 0.0
    for percent in (20, 40, 60, 80, 30, 50):
        t0, c0 = time.perf_counter(), time.thread_time()
        panel.set_target(percent)
        app.processEvents()
        slowest = max(slowest, 1000 * (time.perf_counter() - t0))
        slowest_cpu = max(slowest_cpu, 1000 * (time.thread_time() - c0))
        settle(60)
    phases["target slider (53 amounts, markers, prediction)"] = max(heart.worst, slowest)
    busy["target slider (53 amounts, markers, prediction)"] = max(heart.worst_busy, slowest_cpu)
    heart.restart()
    for index in (0, 1, 0, 1):
        panel.show_view(index)
        settle(60)
    tabs = window.results.tabs
    for i in range(tabs.count()):
        tabs.setCurrentIndex(i)
        settle(60)
    window.tree.select_layer("features.16.conv.1.0")
    settle(60)
    phases["views, tabs, selection"] = heart.worst
    busy["views, tabs, selection"] = heart.worst_busy
    window.close_without_asking()
    path.unlink()
    worst = max(phases.values())
    return {
        "model": "MobileNetV2 (benchmarks.models:mobilenet), 53 prunable layers",
        "phases_ms": {k: round(v) for k, v in phases.items()},
        "busy_ms": {k: round(v) for k, v in busy.items()},
        "max_stall_ms": round(worst),
        "max_busy_ms": round(max(busy.values())),
        "load_average": load,
        "ok": worst < CHARTS_TARGET_MS,
    }


def format_charts(charts: dict[str, Any]) -> str:
    lines = [
        f"{charts['model']}: largest event-loop stall per phase (wall), and the most the GUI "
        "thread itself was busy between two heartbeats (CPU)"
    ]
    for phase, ms in charts["phases_ms"].items():
        lines.append(f"  {phase:52} {ms:6.0f} ms  (busy {charts['busy_ms'][phase]:4.0f} ms)")
    verdict = "holds" if charts["ok"] else "MISSED"
    load = charts["load_average"]
    lines.append(
        f"  largest {charts['max_stall_ms']:.0f} ms (target < {CHARTS_TARGET_MS:.0f} ms): "
        f"{verdict}; GUI thread busy at most {charts['max_busy_ms']:.0f} ms"
        + (f"; load average {load:.1f} on {os.cpu_count()} cores" if load is not None else "")
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
