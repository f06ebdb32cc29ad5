"""What the window was asked to do at start-up, from the one parser (``core.parser``).

Nothing here imports Qt, so a headless machine gets its one-line message before Qt loads.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.parser import WINDOW, parse


@dataclass(frozen=True)
class Options:
    """The window's start-up flags."""

    model: Path | None = None
    demo: str | None = None  # the name of a bundled demo (core.demos.DEMOS)
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

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Options:
        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        return cls(
            model=path(ns.model),
            demo=ns.demo or None,
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


def parse_options(argv: Sequence[str]) -> Options:
    """The window's flags from a command line without a subcommand (UserError if bad)."""
    return Options.from_args(parse([WINDOW, *argv]))


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
