"""Render the application icon's PNG sizes from its SVG into resources/icons/.

    QT_QPA_PLATFORM=offscreen python scripts/render_icons.py

``resources/icons/secateur.svg`` is the one drawing; the window, the hicolor theme (the
per-user install) and the bundle use ``secateur-<size>.png`` at 16, 24, 32, 48, 64, 128 and
256 px, rendered here with Qt's own SVG renderer (PySide6.QtSvg, part of
PySide6-Essentials). The output is deterministic: nothing is random and Qt writes no date
into the PNG, so rerunning it on an unchanged SVG leaves the files byte for byte alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = ICONS / "secateur.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(svg: Path, size: int) -> object:
    """The SVG drawn on a transparent size x size ARGB image (a QImage)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    return image.convertToFormat(QImage.Format.Format_ARGB32)


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    for size in SIZES:
        target = ICONS / f"secateur-{size}.png"
        if not render(SVG, size).save(str(target), "PNG"):  # type: ignore[attr-defined]
            raise OSError(f"{target}: could not write the PNG")
        print(f"wrote {target.relative_to(ICONS.parent.parent)}")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
