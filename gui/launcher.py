"""The ``secateur`` entry point. Subcommands go to the Qt-free CLI; everything else opens the
window. Importing this module loads no Qt, so ``secateur --help`` and ``inspect`` stay fast."""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The same names as core.cli.SUBCOMMANDS (a test checks): kept here so that `secateur --help`
# answers without importing torch.
SUBCOMMANDS = ("inspect", "compress", "sensitivity")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("--version",)):
        from core.cli import main as cli_main  # imports torch: only when a subcommand runs

        return cli_main(argv)
    if argv and argv[0] in ("-h", "--help"):
        from gui.options import print_help

        print_help()
        return 0
    from gui.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
