"""The wheel works outside the source tree.

Build the wheel from a copy of the checkout (no network: the test environment's setuptools),
install it alone (``--no-deps``) into a fresh ``--target`` folder, and run its ``secateur``
from an empty temporary folder with only that target on PYTHONPATH; torch, Qt and the other
dependencies come from the test environment. What must hold: every module and data file of
the checkout is in the wheel, the imports resolve to the installed copy (not the checkout, nor
an editable install of it), and ``--version``, ``compress --demo`` and the window with the
demo run there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "gui", "resources")
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "out", "tmp", "*.egg-info", "__pycache__", ".*_cache"
)
PROBE = (
    "import json, core, gui.launcher, resources; "
    "print(json.dumps({'core': core.__file__, 'gui': gui.launcher.__file__, "
    "'resources': str(resources.path('demo', 'digits_cnn.safetensors'))}))"
)

pytestmark = pytest.mark.slow


def _files(root: Path) -> set[str]:
    """The package files under ``root`` (sources and data), as paths relative to it."""
    return {
        str(path.relative_to(root))
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def _pip(*args: str | Path) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    done = subprocess.run(
        [sys.executable, "-m", "pip", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout and installed alone into a fresh folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    dist, target = work / "dist", work / "target"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source)
    (wheel,) = dist.glob("secateur-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", target, wheel)
    return target


def _secateur(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``secateur`` in ``cwd`` with only ``target`` on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(target), QT_QPA_PLATFORM="offscreen")
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [str(target / "bin" / "secateur"), *args] if args else [sys.executable, "-c", PROBE]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_wheel_holds_every_module_and_data_file(target: Path) -> None:
    assert _files(target) == _files(ROOT)
    assert {"resources/icons/secateur.svg", "resources/recipes/demo.yaml"} <= _files(target)


def test_installed_copy_is_what_runs(target: Path, tmp_path: Path) -> None:
    done = _secateur(target, tmp_path)
    assert done.returncode == 0, done.stderr
    where = json.loads(done.stdout)
    for name, path in where.items():
        assert Path(path).is_relative_to(target), f"{name} came from {path}, not the wheel"


def test_version(target: Path, tmp_path: Path) -> None:
    from core import __version__

    done = _secateur(target, tmp_path, "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"secateur {__version__}")


def test_compress_demo_from_elsewhere(target: Path, tmp_path: Path) -> None:
    done = _secateur(
        target, tmp_path, "compress", "--demo", "--output", "o.pt", "--report", "r.json"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.pt").stat().st_size > 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["format"] == "demo"
    assert report["round_trip"]["ok"] is True


def test_window_with_demo_from_elsewhere(target: Path, tmp_path: Path) -> None:
    done = _secateur(
        target, tmp_path, "--demo", "--run", "--screenshot", "s.png", "--quit-after-run"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
