"""The data package ``resources``: found through importlib.resources, and its icon files are
what the window and the desktop install use (an SVG and one PNG per theme size)."""

from __future__ import annotations

from pathlib import Path

import pytest

import resources

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def test_path_is_the_package_folder_on_disk() -> None:
    root = resources.path()
    assert isinstance(root, Path)
    assert (root / "__init__.py").is_file()
    assert resources.path("recipes", "demo.yaml").is_file()
    assert resources.path("demo", "digits_cnn.safetensors").is_file()


def test_demo_paths_come_from_the_package() -> None:
    from core import demos

    assert resources.path() == demos.RESOURCES_DIR
    assert resources.path("recipes", "demo.yaml") == demos.DEMO_RECIPE_PATH
    for demo in demos.DEMOS:
        assert demo.weights.parent == resources.path("demo") and demo.weights.is_file()


@pytest.mark.parametrize("size", ICON_SIZES)
def test_icon_png_has_its_size(qapp, size: int) -> None:
    from PySide6.QtGui import QImage

    image = QImage(str(resources.path("icons", f"secateur-{size}.png")))
    assert (image.width(), image.height()) == (size, size)
    assert image.hasAlphaChannel()


def test_icon_svg_renders(qapp) -> None:
    from PySide6.QtSvg import QSvgRenderer

    assert QSvgRenderer(str(resources.path("icons", "secateur.svg"))).isValid()


def test_window_icon_has_every_size(qapp) -> None:
    from gui.app import app_icon

    icon = app_icon()
    assert sorted(s.width() for s in icon.availableSizes()) == list(ICON_SIZES)
