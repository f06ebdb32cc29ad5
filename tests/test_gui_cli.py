"""The window's command line: flags, no display, and the scriptable screenshot run."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from core.demos import DEMO_RECIPE_PATH
from core.errors import UserError
from gui.options import no_display_reason, parse_options

ROOT = Path(__file__).resolve().parent.parent


def secateur(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gui.launcher", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # never the user's real settings
    env.update(extra)
    return env


def test_options_parse():
    options = parse_options(["--demo", "--run", "--screenshot", "a.png", "--quit-after-run"])
    assert options.demo and options.run and options.scripted
    assert options.screenshot == Path("a.png")
    assert parse_options(["m.pt", "--arch", "f.py:build", "--trust"]).arch == "f.py:build"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["m.pt", "--demo"], "not both"),
        (["--demo", "--screenshot", "shot.jpg"], "must end in .png"),
        (["--run"], "--run"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_flags_are_user_errors(argv, message):
    with pytest.raises(UserError, match=message):
        parse_options(argv)


def test_no_display_is_detected():
    assert no_display_reason({}, "linux") is not None
    assert no_display_reason({"DISPLAY": ":0"}, "linux") is None
    assert no_display_reason({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert no_display_reason({}, "darwin") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is Linux's")
def test_without_a_display_it_says_so_and_exits_2(tmp_path):
    proc = secateur("--demo", env=clean_env(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0]


def test_bad_flag_exits_2_with_one_line(tmp_path):
    proc = secateur("--demo", "--screenshot", "x.gif", env=clean_env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "secateur: error: --screenshot: 'x.gif' must end in .png"
    ]


def test_scripted_run_writes_a_screenshot(tmp_path):
    shot = tmp_path / "shot.png"
    proc = secateur(
        "--demo",
        "--recipe",
        str(DEMO_RECIPE_PATH),
        "--run",
        "--screenshot",
        str(shot),
        "--quit-after-run",
        env=clean_env(tmp_path, QT_QPA_PLATFORM="offscreen"),
    )
    assert proc.returncode == 0, proc.stderr
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert (width, height) == (1400, 900)


def test_scripted_run_with_a_bad_recipe_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprune:\n  - amount: 1.5\n")
    proc = secateur(
        "--demo",
        "--recipe",
        str(bad),
        "--run",
        "--quit-after-run",
        env=clean_env(tmp_path, QT_QPA_PLATFORM="offscreen"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "secateur: error: bad.yaml: prune[0].amount: 1.5 is not in [0, 1) (write a whole "
        "number for a count of elements)"
    ]
