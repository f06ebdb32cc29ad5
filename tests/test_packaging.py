"""The desktop bundle's exclusions (packaging/exclusions.py) against what the app uses: the
guard the spec runs before a build, run here in ``make test`` so that a feature that starts
using an excluded module fails at once, not at the next ``make package``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _exclusions():
    # loaded by path: a top-level "packaging" would be the PyPI package of that name
    spec = importlib.util.spec_from_file_location("exclusions", ROOT / "packaging/exclusions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_leaves_out_nothing_the_app_imports_or_depends_on() -> None:
    exclusions = _exclusions()
    assert exclusions.problems(exclusions.excluded_modules(set())) == []


def test_the_guard_sees_an_import_inside_a_function_and_a_dependency() -> None:
    exclusions = _exclusions()
    # modules the app does use: were they excluded, the guard must name where
    found = exclusions.problems(["zstandard", "onnxruntime", "pyqtgraph"])
    assert any(p.startswith("core/compressed.py:") and "imports zstandard" in p for p in found)
    assert any("imports onnxruntime" in p for p in found)  # imported inside functions
    assert "pyproject.toml depends on zstandard" in found
    assert "pyproject.toml depends on onnxruntime" in found
    assert any(p.startswith("gui/") and "imports pyqtgraph" in p for p in found)


def test_an_unknown_group_to_keep_is_refused() -> None:
    exclusions = _exclusions()
    assert exclusions.kept_groups("all") == set(exclusions.EXCLUSIONS)
    with pytest.raises(SystemExit, match="unknown groups \\['nope'\\]"):
        exclusions.kept_groups("torch-tests,nope")
