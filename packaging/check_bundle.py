"""Check the built bundle and print its figures (``make package-test``).

    python packaging/check_bundle.py [--bundle dist/secateur] [--rounds 5]

Checks, each a failure when it does not hold (nothing is skipped):

- the desktop entry, the AppStream metainfo and the MIME package validate
  (``desktop-file-validate``, ``appstreamcli validate --no-net``, ``update-mime-database``);
- the bundled executable, run offscreen from an empty folder: ``--version``; the window with
  ``--demo --run --screenshot PNG --quit-after-run`` (exit 0, a real screenshot); ``compress
  --demo``; and the paths the exclusions could break: torch.export, TorchScript, the legacy
  torch.ao backend, torchao weight-only, a sensitivity sweep, ``inspect`` of what was saved;
- bad input (a missing file, a corrupt file, a bad recipe): exit 2 and one line on stderr, the
  same line the source install prints for the same command.

Then the figures: size on disk, file count, the tarball, the build time ``make package``
recorded, and the window's start-up (launch to first paint, ``SECATEUR_FIRST_PAINT``, see
packaging/entry.py) of the bundle beside the source install's (``make run``'s command),
alternating, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.secateur.Secateur"
DEMO_RECIPE = ROOT / "resources" / "recipes" / "demo.yaml"
RECIPES = {
    "prune.yaml": "version: 1\nprune:\n  - types: [Conv2d, Linear]\n    amount: 0.5\n",
    "legacy.yaml": (
        "version: 1\nprune:\n  - types: [Linear]\n    method: ln_structured\n    amount: 0.25\n"
        "    n: 2\n    dim: 0\nquantize:\n  scheme: int8_dynamic\n  backend: legacy\n"
    ),
    "weight_only.yaml": "version: 1\nquantize:\n  scheme: int8_weight_only\n",
    "ort_int8.yaml": (
        "version: 1\nprune:\n  - types: [Conv2d, Linear]\n    amount: 0.5\nquantize:\n"
        "  scheme: int8_dynamic\n  backend: onnxruntime\n  types: [Linear]\n"
    ),
    "channels.yaml": (
        "version: 1\nprune:\n  - layers: [conv1, conv2, fc1]\n    method: remove_channels\n"
        "    amount: 0.5\n"
    ),
    "bad.yaml": "version: 1\nprune: [{amount: 1.5}]\n",
}
# What must work in the bundle (argv after `secateur`), beyond the window and compress --demo.
PATHS = [
    ["compress", "--demo", "--recipe", "prune.yaml", "--output", "b.pt2", "--format", "exported"],
    ["compress", "--demo", "--recipe", "prune.yaml", "--output", "c.ts", "--format", "torchscript"],
    ["compress", "--demo", "--recipe", "legacy.yaml", "--output", "d.pt"],
    ["compress", "--demo", "--recipe", "weight_only.yaml", "--output", "e.pt", "--skip-metrics"],
    ["compress", "--demo", "--recipe", "prune.yaml", "--output", "f.onnx", "--format", "onnx"],
    ["compress", "--demo", "--recipe", "ort_int8.yaml", "--output", "g.onnx", "--format", "onnx"],
    ["compress", "--demo", "--recipe", "prune.yaml", "--output", "h.secz", "--format=compressed"],
    ["compress", "--demo", "--recipe", "channels.yaml", "--output", "i.pt"],
    ["sensitivity", "--demo", "--output", "s.json", "--amounts", "0.5", "--subset", "50"],
    [
        "plan",
        "--demo",
        "--emit-recipe",
        "plan.yaml",
        "--candidates",
        "float,int8_dynamic:legacy,bf16",
    ],
    ["inspect", "b.pt2"],
    ["inspect", "c.ts"],
    ["inspect", "d.pt", "--arch", "core.demo:build_model"],
    ["inspect", "f.onnx"],
    ["inspect", "h.secz", "--arch", "core.demo:build_model"],
    ["inspect", "i.pt", "--arch", "core.demo:build_model"],
]
BAD_INPUT = [
    ["inspect", "missing.pt"],
    ["inspect", "corrupt.pt"],
    ["compress", "corrupt.pt", "--recipe", "prune.yaml", "--output", "x.pt"],
    ["compress", "--demo", "--recipe", "bad.yaml", "--output", "x.pt"],
    ["compress", "--demo", "--recipe", "missing.yaml", "--output", "x.pt"],
    ["missing.pt", "--quit-after-run"],
    ["corrupt.pt", "--quit-after-run"],
]

failures: list[str] = []


def check(ok: bool, what: str, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        check(
            False, f"{name} is installed", f"install Debian's {package} (apt-get install {package})"
        )
        return name
    return found


def validate() -> None:
    desktop = PACKAGING / f"{APP_ID}.desktop"
    done = _run([tool("desktop-file-validate", "desktop-file-utils"), str(desktop)])
    check(done.returncode == 0 and not done.stdout.strip(), "desktop-file-validate", done.stdout)
    metainfo = PACKAGING / f"{APP_ID}.metainfo.xml"
    done = _run([tool("appstreamcli", "appstream"), "validate", "--no-net", str(metainfo)])
    check(done.returncode == 0, "appstreamcli validate --no-net", done.stdout + done.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        packages = Path(tmp, "mime", "packages")
        packages.mkdir(parents=True)
        shutil.copy(PACKAGING / f"{APP_ID}.mime.xml", packages / f"{APP_ID}.xml")
        env = dict(os.environ, XDG_DATA_HOME=tmp)  # else it notes that tmp is not searched
        done = _run([tool("update-mime-database", "shared-mime-info"), f"{tmp}/mime"], env=env)
        globs = Path(tmp, "mime", "globs2")
        ok = done.returncode == 0 and globs.exists() and "*.safetensors" in globs.read_text()
        check(ok and not done.stderr.strip(), "MIME package (update-mime-database)", done.stderr)


def _run(
    argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def _source_env(home: Path, **extra: str) -> dict[str, str]:
    return _env(home, PYTHONPATH=str(ROOT), **extra)


def _source() -> list[str]:
    return [sys.executable, str(PACKAGING / "entry.py")]


def _png_size(path: Path) -> tuple[int, int] | None:
    data = path.read_bytes()[:24] if path.exists() else b""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


def _distinct_colours(path: Path) -> int:
    """How many distinct colours the screenshot has (a blank window has one or two)."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # this process only reads an image
    from PySide6.QtGui import QGuiApplication, QImage

    _app = QGuiApplication.instance() or QGuiApplication(["check_bundle"])
    image = QImage(str(path))
    step = max(1, image.width() // 200)
    return len(
        {
            image.pixel(x, y)
            for x in range(0, image.width(), step)
            for y in range(0, image.height(), step)
        }
    )


def run_bundle(exe: Path, work: Path, home: Path) -> None:
    for name, text in RECIPES.items():
        (work / name).write_text(text)
    (work / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a model" * 10)

    from core import __version__

    done = _run([str(exe), "--version"], work, _env(home))
    check(done.stdout.strip() == f"secateur {__version__}", "--version", done.stdout + done.stderr)

    t0 = time.perf_counter()
    shot = work / "window.png"
    argv = ["--demo", "--run", "--screenshot", str(shot), "--quit-after-run"]
    done = _run([str(exe), *argv], work, _env(home))
    size = _png_size(shot)
    check(done.returncode == 0, "window --demo --run --screenshot --quit-after-run", done.stderr)
    check(size is not None and size[0] >= 800 and size[1] >= 500, f"screenshot PNG {size}")
    if size is not None:
        colours = _distinct_colours(shot)
        check(colours > 20, f"screenshot shows the window ({colours} colours)")
    print(f"     ({time.perf_counter() - t0:.1f} s)")

    done = _run(
        [str(exe), "compress", "--demo", "--output", "a.pt", "--report", "a.json"], work, _env(home)
    )
    check(done.returncode == 0, "compress --demo", done.stderr)
    if done.returncode == 0:
        report = json.loads((work / "a.json").read_text())
        ok = (
            report["round_trip"]["ok"]
            and report["after"]["nonzero_parameters"] < report["before"]["nonzero_parameters"]
        )
        check(ok, "compress --demo report (round trip ok, weights pruned)")

    for argv in PATHS:
        done = _run([str(exe), *argv], work, _env(home))
        check(done.returncode == 0, " ".join(argv), done.stderr.strip()[-600:])


def compare_bad_input(exe: Path, work: Path, home: Path) -> None:
    for argv in BAD_INPUT:
        bundled = _run([str(exe), *argv], work, _env(home))
        source = _run([*_source(), *argv], work, _source_env(home))
        lines = bundled.stderr.strip().splitlines()
        same = (bundled.returncode, bundled.stderr) == (source.returncode, source.stderr)
        ok = bundled.returncode == 2 and len(lines) == 1 and same
        detail = (
            f"bundle {bundled.returncode} {bundled.stderr[-400:]!r}, "
            f"source {source.returncode} {source.stderr[-400:]!r}"
        )
        check(ok, f"bad input, exit 2 and the source's one line: secateur {' '.join(argv)}", detail)


def first_paint(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.time()
    done = _run(argv, cwd, dict(env, SECATEUR_FIRST_PAINT="1"))
    stamps = [
        line.split()[-1] for line in done.stderr.splitlines() if line.startswith("first paint ")
    ]
    if done.returncode != 0 or not stamps:
        raise RuntimeError(f"no first paint from {argv[0]}: {done.stderr.strip()[-400:]}")
    return float(stamps[-1]) - t0


def figures(bundle: Path, work: Path, home: Path, rounds: int) -> None:
    files = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink()]
    apparent = sum(p.stat().st_size for p in files)
    on_disk = int(_run(["du", "-sk", str(bundle)]).stdout.split()[0]) * 1024
    print(f"\nbundle {bundle}: {on_disk / 1e6:.0f} MB on disk (du)", end=", ")
    print(f"{apparent / 1e6:.0f} MB of files, {len(files)} files")
    for tarball in sorted(bundle.parent.glob("secateur-*.tar.zst")):
        print(f"tarball {tarball.name}: {tarball.stat().st_size / 1e6:.0f} MB")
    recorded = bundle.parent / "secateur.build-seconds"
    if recorded.exists():
        print(f"build (pyinstaller, as make package ran it): {recorded.read_text().strip()} s")

    cmd = ["--demo", "--recipe", str(DEMO_RECIPE)]  # make run's window
    times: dict[str, list[float]] = {"bundle": [], "source": []}
    for _ in range(rounds):
        times["bundle"].append(first_paint([str(bundle / "secateur"), *cmd], work, _env(home)))
        times["source"].append(first_paint([*_source(), *cmd], work, _source_env(home)))
    for name, values in times.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"first paint, {name}: median {statistics.median(values):.2f} s ({runs})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "secateur")
    parser.add_argument("--rounds", type=int, default=5, help="first-paint rounds (0: none)")
    parser.add_argument("--figures-only", action="store_true", help="measure, check nothing")
    args = parser.parse_args(argv)
    args.bundle = args.bundle.resolve()
    exe = args.bundle / "secateur"
    if not args.figures_only:
        validate()
    if not exe.exists():
        check(False, f"{exe} exists", "run make package first")
        return 1
    with tempfile.TemporaryDirectory(prefix="secateur-bundle-") as tmp:
        work, home = Path(tmp, "work"), Path(tmp, "home")
        work.mkdir()
        home.mkdir()
        if not args.figures_only:
            run_bundle(exe, work, home)
            compare_bad_input(exe, work, home)
        if args.rounds:
            figures(args.bundle, work, home, args.rounds)
    print(f"\n{len(failures)} failure(s)" + (": " + "; ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
