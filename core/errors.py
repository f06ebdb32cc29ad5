"""Typed errors. Every user-facing error carries one line that names the file or field.

``UserError`` and its subclasses are the user's to fix (exit code 2 on the command line, a
message box in the window); anything else is a bug in Secateur (exit code 1).
"""

from __future__ import annotations

MAX_MESSAGE = 1000
"""The longest one-line error shown; a longer one is cut in the middle."""


class UserError(Exception):
    """A problem with the user's input: a file, a recipe, data or a flag."""

    def __str__(self) -> str:
        # One line, always: multi-line messages from torch are folded, and a huge bad value
        # (a 100 KB string in a hostile file) is cut in the middle, keeping where and why.
        text = super().__str__()
        line = " ".join(part.strip() for part in text.splitlines() if part.strip())
        if len(line) > MAX_MESSAGE:
            cut = len(line) - MAX_MESSAGE
            line = f"{line[: MAX_MESSAGE - 200]} ...[{cut:,} characters]... {line[-200:]}"
        return line


class ModelLoadError(UserError):
    """The model file cannot be loaded as it is (wrong kind, missing --arch, corrupt...)."""


class TrustRequiredError(ModelLoadError):
    """The file can run code when loaded and the user has not agreed to that."""


class ArchRequiredError(ModelLoadError):
    """The file holds weights only (a state dict): its architecture must be given."""


class ArchRejectedError(ModelLoadError):
    """The architecture given does not build (a spec that does not resolve, a callable that
    raises) or the weights do not fit it: another architecture may work."""


class RecipeError(UserError):
    """The recipe is invalid: the message names the field and the bad value."""


class DataError(UserError):
    """The evaluation or training data is invalid or does not fit the model."""


class UnsupportedError(UserError):
    """The model's format or the machine cannot do what was asked."""


class SaveError(UserError):
    """The compressed model could not be written; nothing was left behind."""


class ClusterError(UserError):
    """The cluster for ``--ray`` is out of reach: Ray is not installed, or the address does
    not answer or is not a Ray cluster."""


class Cancelled(Exception):
    """The user cancelled the job; everything is as it was before it started."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, shortened for a one-line error."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__
