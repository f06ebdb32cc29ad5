"""The ``secateur`` entry point: one parser (``core.parser``), then the window or the CLI.

Importing this module loads neither torch nor Qt: ``secateur --help`` and a bad flag answer at
once, and a subcommand imports torch only once it runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.errors import UserError
from core.parser import WINDOW, parse


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
    except UserError as exc:
        print(f"secateur: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as done:  # --help and --version printed what was asked
        return int(done.code or 0)
    if args.command == WINDOW:
        from gui.app import run_app

        return run_app(args)
    from core.cli import run_command  # imports torch: only when a subcommand runs

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
