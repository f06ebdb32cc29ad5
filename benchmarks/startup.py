"""Figure 6, start-up: ``secateur --help`` and ``secateur inspect`` must not import Qt, and
the window must appear quickly. Wall times of fresh processes, each beside its floor (the
least any program doing the same job pays), measured alternately; medians.

- ``secateur --help`` beside ``python -c pass`` (the interpreter alone);
- ``secateur inspect`` of the demo's state dict beside ``python -c "import torch"``;
- the window's first paint (``secateur`` with no model, QT_QPA_PLATFORM=offscreen) beside a
  bare PySide6 QMainWindow's first paint, in a process that also imports torch and in one
  that does not (what a window that paints before loading torch could reach).

Whether Qt (PySide6, shiboken6, pyqtgraph) and torch get imported is read from
``sys.modules`` after running the entry point in a child process.

    python benchmarks/startup.py [--tiny]
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, ROOT, Figure, Target, child_env, median

QT_MODULES = ("PySide6", "shiboken6", "pyqtgraph")
DEMO_WEIGHTS = ROOT / "resources" / "demo" / "digits_cnn.safetensors"
INSPECT = ["inspect", str(DEMO_WEIGHTS), "--arch", "core.demo:build_model"]


def secateur_command() -> list[str]:
    script = Path(PYTHON).with_name("secateur")
    if script.exists():
        return [str(script)]
    found = shutil.which("secateur")
    return [found] if found else [PYTHON, "-m", "gui.launcher"]


# ----------------------------------------------------------------------------- children
def child_modules(argv: list[str]) -> dict[str, Any]:
    """Run the entry point in this process and report which heavy modules it imported."""
    import contextlib
    import io

    from gui.launcher import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    loaded = sorted({m.split(".")[0] for m in sys.modules})
    return {
        "code": code,
        "qt": [m for m in QT_MODULES if m in loaded],
        "torch": "torch" in loaded,
    }


def child_paint(mode: str) -> dict[str, Any]:
    """Open a window and report the wall-clock time of its first paint event."""
    if mode == "bare-torch":
        import torch  # noqa: F401 - this floor pays for torch as the window does
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    seen: list[float] = []

    class FirstPaint(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint and not seen:
                seen.append(time.time())
                QTimer.singleShot(0, app.quit)
            return False

    watcher = FirstPaint()
    app.installEventFilter(watcher)
    if mode.startswith("bare"):
        window = QMainWindow()
        window.resize(1200, 800)
        window.show()
        app.exec()
    else:
        from gui.app import run_app

        run_app([])
    return {"painted": seen[0] if seen else None}


# ----------------------------------------------------------------------------- parent side
def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True, timeout=120)
    return time.perf_counter() - t0


def _paint(mode: str, env: dict[str, str]) -> float:
    t0 = time.time()
    proc = subprocess.run(
        [PYTHON, "-m", "benchmarks.startup", "--child", "paint", mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines or json.loads(lines[-1])["painted"] is None:
        tail = " / ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"first paint ({mode}) not seen: {tail}")
    return json.loads(lines[-1])["painted"] - t0


def _modules(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run(
        [PYTHON, "-m", "benchmarks.startup", "--child", "modules", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"secateur {' '.join(argv)}: {proc.stderr.strip()[-300:]}")
    return json.loads(lines[-1])


def gui_available() -> bool:
    return (ROOT / "gui" / "app.py").exists()


def figures(tiny: bool = False) -> list[Figure]:
    repeats = 1 if tiny else 5
    fig = Figure(
        key="startup",
        title="6. Start-up: wall time of a fresh process, beside its floor",
        columns=[
            "command",
            "ms (median)",
            "floor",
            "floor ms",
            "ratio to floor",
            "imports Qt",
            "imports torch",
        ],
        ratios=["ratio to floor"],
        formats={"ms (median)": ".0f", "floor ms": ".0f"},
        intro=(
            "Each command runs as a new process; the command and its floor alternate "
            f"({repeats} rounds, medians). Qt and torch imports are read from `sys.modules` "
            "after running the entry point (`gui.launcher.main`) in a child process. The "
            "window runs with QT_QPA_PLATFORM=offscreen and an empty settings folder; its "
            "time is from process launch to the main window's first paint event."
        ),
    )
    with tempfile.TemporaryDirectory(prefix="secateur-bench-home-") as home:
        env = child_env(
            QT_QPA_PLATFORM="offscreen", HOME=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home
        )
        cli = secateur_command()
        cases: list[tuple[str, list[str] | None, str, list[str]]] = [
            ("secateur --help", ["--help"], "python -c pass", [PYTHON, "-c", "pass"]),
            (
                "secateur inspect (demo state dict)",
                INSPECT,
                "python -c 'import torch'",
                [PYTHON, "-c", "import torch"],
            ),
        ]
        if tiny:
            cases = cases[:1]
        for label, argv, floor_label, floor_cmd in cases:
            assert argv is not None
            mods = _modules(argv, env)
            times: dict[str, list[float]] = {"cmd": [], "floor": []}
            for _ in range(repeats):
                times["floor"].append(_timed(floor_cmd, env))
                times["cmd"].append(_timed([*cli, *argv], env))
            t, f = median(times["cmd"]), median(times["floor"])
            fig.targets.append(
                Target(
                    f"start-up: {label}",
                    "does not import Qt",
                    f"{'imports ' + ', '.join(mods['qt']) if mods['qt'] else 'no Qt'}, "
                    f"{1000 * t:.0f} ms ({t / f:.1f}x {floor_label})",
                    not mods["qt"],
                )
            )
            fig.add(
                **{
                    "command": label,
                    "ms (median)": 1000 * t,
                    "floor": floor_label,
                    "floor ms": 1000 * f,
                    "ratio to floor": t / f,
                    "imports Qt": ", ".join(mods["qt"]) if mods["qt"] else "no",
                    "imports torch": mods["torch"],
                }
            )
        window = "window: launch to first paint"
        if tiny:
            pass
        elif not gui_available():
            fig.add(**{"command": window, "floor": "pending: gui/app.py does not exist yet"})
            fig.targets.append(Target("start-up: window first paint", "quick", "pending", None))
        else:
            times = {"cmd": [], "bare-torch": [], "bare": []}
            for _ in range(repeats):
                for mode in ("bare-torch", "bare"):
                    times[mode].append(_paint(mode, env))
                times["cmd"].append(_paint("secateur", env))
            t = median(times["cmd"])
            floors = {
                "bare-torch": "bare QMainWindow + import torch",
                "bare": "bare QMainWindow (no torch)",
            }
            for mode, floor in floors.items():
                f = median(times[mode])
                fig.add(
                    **{
                        "command": window,
                        "ms (median)": 1000 * t,
                        "floor": floor,
                        "floor ms": 1000 * f,
                        "ratio to floor": t / f,
                        "imports Qt": "yes (it is the window)",
                        "imports torch": True,
                    }
                )
            fig.targets.append(
                Target(
                    "start-up: window first paint",
                    "quick (no number fixed)",
                    f"{1000 * t:.0f} ms ({t / median(times['bare-torch']):.2f}x a bare window "
                    f"that imports torch, {t / median(times['bare']):.1f}x one that does not)",
                    None,
                )
            )
    return [fig]


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["--child", "modules"]:  # the rest is secateur's own command line
        print(json.dumps(child_modules(argv[2:])))
        return
    if argv[:2] == ["--child", "paint"]:
        print(json.dumps(child_paint(argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    for fig in figures(args.tiny):
        print(fig.markdown())


if __name__ == "__main__":
    main()
