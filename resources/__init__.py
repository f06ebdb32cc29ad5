"""Secateur's data files: the demo model and its data (``demo/``), recipes (``recipes/``) and
the application icon (``icons/``).

A package rather than a bare folder, so one lookup, ``importlib.resources.files("resources")``,
finds the files in a source checkout, an installed wheel (where they are package data) and the
PyInstaller bundle (where they are collected as data files) alike. All three keep them as files
on disk, which torch, safetensors, numpy and Qt need: ``path`` returns real paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(*parts: str) -> Path:
    """The file or folder ``resources/<parts...>`` as a path on disk."""
    root = files(__name__)
    if not isinstance(root, Path):  # a zipped install: nothing could open the files in place
        raise RuntimeError(f"Secateur's resources are not files on disk ({root}); reinstall it")
    return root.joinpath(*parts)
