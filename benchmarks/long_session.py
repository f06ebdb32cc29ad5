"""A long session in one window: N demo runs in a row (default 20), offscreen.

After run 1 and after the last run it samples the process's resident memory (psutil, after
a garbage collection), the live threads (Python's ``threading.active_count``, the OS's count
for the process, the ``QThread`` objects in the window and ``QThreadPool``'s active threads)
and the Qt objects that pile up when something leaks (``QTimer`` objects, all ``QObject``
descendants of the top-level widgets, the top-level widgets themselves). Targets: memory
after the last run within 10% of after run 1; no more threads, timers or top-level widgets
after the last run than after run 1. Prints a small markdown table.

    QT_QPA_PLATFORM=offscreen python benchmarks/long_session.py [--runs 20] [--json]

``tests/test_gui_hardening.py`` reuses ``sample`` and ``run_once`` for a short version.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RSS_TARGET = 0.10  # growth from after run 1 to after the last run
RUN_TIMEOUT_S = 120.0
COUNTS = ("py_threads", "os_threads", "qthreads", "pool_threads", "timers", "top_level")


def settle() -> None:
    """Deliver pending events, including deferred deletes, then collect garbage."""
    from PySide6.QtCore import QCoreApplication, QEvent

    for _ in range(3):
        QCoreApplication.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def sample(window: Any) -> dict[str, int]:
    """What leaks would show: memory, threads, timers and Qt objects, right now."""
    import psutil
    from PySide6.QtCore import QObject, QThread, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication

    settle()
    app = QApplication.instance()
    tops = list(QApplication.topLevelWidgets())
    roots: list[Any] = [*tops, app] if window in tops else [*tops, window, app]
    proc = psutil.Process()
    return {
        "rss": proc.memory_info().rss,
        "py_threads": threading.active_count(),
        "os_threads": proc.num_threads(),
        "qthreads": sum(len(r.findChildren(QThread)) for r in roots),
        "pool_threads": QThreadPool.globalInstance().activeThreadCount(),
        "timers": sum(len(r.findChildren(QTimer)) for r in roots),
        "qobjects": sum(len(r.findChildren(QObject)) for r in roots),
        "top_level": len(tops),
        "gc_objects": len(gc.get_objects()),
    }


def run_once(window: Any, timeout_s: float = RUN_TIMEOUT_S) -> Any:
    """Start a compression with what the window shows and wait for its result."""
    from PySide6.QtCore import QCoreApplication, QEventLoop, QThread

    previous = window.session.result
    failed: list[Any] = []
    window.runFailed.connect(failed.append)
    try:
        window.run_compression()
        if not window.jobs.busy:
            raise RuntimeError("the run did not start (see the window's log)")
        deadline = time.monotonic() + timeout_s
        while window.jobs.busy:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the run took longer than {timeout_s:.0f} s")
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            QThread.msleep(5)
    finally:
        window.runFailed.disconnect(failed.append)
    if failed:
        raise RuntimeError(f"the run failed: {failed[0]!r}")
    if window.session.result is None or window.session.result is previous:
        raise RuntimeError("the run ended without a result")
    return window.session.result


def open_demo(window: Any, timeout_s: float = RUN_TIMEOUT_S) -> None:
    from PySide6.QtCore import QCoreApplication, QEventLoop, QThread

    window.open_demo()
    deadline = time.monotonic() + timeout_s
    while window.jobs.busy or window.session.loaded is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not open")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        QThread.msleep(5)


def table(first: dict[str, int], last: dict[str, int], runs: int) -> str:
    def mib(n: int) -> str:
        return f"{n / 2**20:.1f} MiB"

    growth = last["rss"] / first["rss"] - 1
    rows = [
        f"| measure | after run 1 | after run {runs} | change | target |",
        "|---|---:|---:|---:|---|",
        f"| RSS | {mib(first['rss'])} | {mib(last['rss'])} | {growth:+.1%} | within "
        f"{RSS_TARGET:.0%} |",
    ]
    labels = {
        "py_threads": "Python threads (threading.active_count)",
        "os_threads": "OS threads (psutil num_threads)",
        "qthreads": "QThread objects",
        "pool_threads": "QThreadPool active threads",
        "timers": "QTimer objects",
        "qobjects": "QObjects under the top-level widgets",
        "top_level": "top-level widgets",
        "gc_objects": "Python objects tracked by gc",
    }
    for key, label in labels.items():
        target = "no growth" if key in COUNTS else "(informational)"
        rows.append(
            f"| {label} | {first[key]:,} | {last[key]:,} | {last[key] - first[key]:+,} | {target} |"
        )
    return "\n".join(rows)


def verdict(first: dict[str, int], last: dict[str, int]) -> list[str]:
    """What missed its target (empty: everything held)."""
    out = []
    if last["rss"] > first["rss"] * (1 + RSS_TARGET):
        out.append(f"RSS grew {last['rss'] / first['rss'] - 1:+.1%}")
    for key in COUNTS:
        if last[key] > first[key]:
            out.append(f"{key} grew from {first[key]} to {last[key]}")
    return out


def quiet_size_hint_messages() -> None:
    """The offscreen platform warns that it ignores size hints; every other Qt message
    still reaches stderr."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(mode: Any, context: Any, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs: at least 2")

    from PySide6.QtCore import QCoreApplication, QSettings
    from PySide6.QtWidgets import QApplication

    settings_dir = tempfile.mkdtemp(prefix="secateur-long-session-")
    QCoreApplication.setOrganizationName("SecateurBench")
    QCoreApplication.setApplicationName("SecateurBench")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, settings_dir)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    quiet_size_hint_messages()

    from gui.main_window import MainWindow
    from gui.options import Options

    window = MainWindow(Options())
    window.show()
    open_demo(window)
    samples: list[dict[str, int]] = []
    seconds: list[float] = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        run_once(window)
        seconds.append(time.perf_counter() - t0)
        if i == 0 or i == args.runs - 1:
            samples.append(sample(window))
    first, last = samples
    print(f"Long session: {args.runs} demo runs in one window (offscreen), demo recipe with its")
    print(
        f"evaluation data; run 1 took {seconds[0]:.2f} s, later runs a median "
        f"{sorted(seconds[1:])[len(seconds[1:]) // 2]:.2f} s.\n"
    )
    print(table(first, last, args.runs))
    missed = verdict(first, last)
    print("\n" + ("All targets held." if not missed else "Missed: " + "; ".join(missed)))
    if args.json:
        print(json.dumps({"runs": args.runs, "first": first, "last": last, "missed": missed}))
    window.close_without_asking()
    app.processEvents()
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
