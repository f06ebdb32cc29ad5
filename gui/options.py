"""The window's command line: ``secateur [MODEL] [--demo] ... [--run] [--screenshot PNG]``.

Parsing imports no Qt, so ``secateur --help`` and a bad flag answer at once, and a headless
machine gets its one-line message before Qt is loaded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from core.errors import UserError

USAGE = (
    "secateur [MODEL] [--demo] [--arch SPEC] [--data DATA] [--train-data DATA]\n"
    "                [--input-shape SHAPE] [--recipe RECIPE] [--trust]\n"
    "                [--run] [--screenshot PNG] [--quit-after-run]\n"
    "       secateur inspect MODEL ...       (print the layer table; see secateur inspect -h)\n"
    "       secateur compress MODEL|--demo ... (compress without a window; see -h)\n"
    "       secateur sensitivity MODEL|--demo ... (per-layer sensitivity sweep; see -h)"
)


@dataclass(frozen=True)
class Options:
    """What the window was asked to do at start-up."""

    model: Path | None = None
    demo: bool = False
    arch: str | None = None
    data: Path | None = None
    train_data: Path | None = None
    input_shape: str | None = None
    recipe: Path | None = None
    trust: bool = False
    run: bool = False
    screenshot: Path | None = None
    quit_after_run: bool = False

    @property
    def scripted(self) -> bool:
        """True when nobody is watching: errors go to stderr instead of dialogs."""
        return self.quit_after_run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"secateur: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secateur",
        usage=USAGE,
        description=(
            "Open the Secateur window: pick layers of a PyTorch model, prune and quantize "
            "them, and read what changed, measured on the real model."
        ),
        epilog=(
            "Without a display (no DISPLAY or WAYLAND_DISPLAY) use the command line: "
            "secateur compress --demo --recipe resources/recipes/demo.yaml --output out.pt"
        ),
    )
    parser.add_argument("model", nargs="?", help="model file to open (state dict, pickle, ...)")
    parser.add_argument("--demo", action="store_true", help="open the bundled digits CNN demo")
    parser.add_argument("--arch", metavar="SPEC", help="FILE.py:callable for a bare state dict")
    parser.add_argument("--data", metavar="DATA", help="evaluation data (.npz or .pt)")
    parser.add_argument("--train-data", metavar="DATA", help="training data for fine-tuning")
    parser.add_argument(
        "--input-shape", metavar="SHAPE", help="random input without data, e.g. 1x3x224x224"
    )
    parser.add_argument("--recipe", metavar="RECIPE", help="recipe to load (YAML or JSON)")
    parser.add_argument("--trust", action="store_true", help="allow opening a full pickle")
    parser.add_argument("--run", action="store_true", help="start compressing at once")
    parser.add_argument(
        "--screenshot", metavar="PNG", help="save the window as PNG once the run finishes"
    )
    parser.add_argument(
        "--quit-after-run", action="store_true", help="close the window after the run"
    )
    return parser


def parse_options(argv: Sequence[str]) -> Options:
    """Parse the window's flags; a bad flag raises UserError with one line."""
    ns = build_parser().parse_args(list(argv))
    if ns.demo and ns.model:
        raise UserError(f"secateur: give a MODEL or --demo, not both (got {ns.model!r})")
    if ns.screenshot and not ns.screenshot.lower().endswith(".png"):
        raise UserError(f"--screenshot: {ns.screenshot!r} must end in .png")
    if ns.run and not (ns.model or ns.demo):
        raise UserError("--run: give a MODEL or --demo to run on")

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return Options(
        model=path(ns.model),
        demo=ns.demo,
        arch=ns.arch,
        data=path(ns.data),
        train_data=path(ns.train_data),
        input_shape=ns.input_shape,
        recipe=path(ns.recipe),
        trust=ns.trust,
        run=ns.run,
        screenshot=path(ns.screenshot),
        quit_after_run=ns.quit_after_run,
    )


def print_help(stream: TextIO | None = None) -> None:
    """``secateur --help``: the window's flags, then where the subcommands are."""
    build_parser().print_help(stream or sys.stdout)


def no_display_reason(environ: dict[str, str], platform: str) -> str | None:
    """Why no window can open here (Linux with no display and no Qt platform set), or None."""
    if not platform.startswith("linux"):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM"):
        return None
    return (
        "secateur: no display found (DISPLAY and WAYLAND_DISPLAY are unset), so the window "
        "cannot open; use 'secateur compress' on the command line, or set "
        "QT_QPA_PLATFORM=offscreen"
    )
