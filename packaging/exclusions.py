"""What the desktop bundle leaves out (``packaging/secateur.spec``), in named groups so that
each one's saving can be measured, and the guard that stops a build leaving out something
the app uses. Plain Python: the spec imports it, and ``tests/test_packaging.py`` runs the
guard in ``make test``, so a feature that starts using an excluded module fails there, not
at the next bundle build.

A group leaves out Python modules (never collected) and bundle paths (collected by a hook,
then dropped; fnmatch globs, "*" crosses "/"). ``SECATEUR_BUNDLE_KEEP=group,group`` (or
"all") builds with those groups kept.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ("core", "gui", "resources")

# group: (what it is, Python modules left out, bundle paths dropped)
EXCLUSIONS = {
    "torch-tests": (
        "torch's C++ test programs and test libraries, protoc and test models (torch/bin "
        "keeps torch_shm_manager, which import torch looks for). Its Python "
        "torch.testing._internal stays: torch.distributed imports parts of it at run time",
        [],
        [
            "torch/test/*",
            "torch/bin/test_*",
            "torch/bin/*Test",
            "torch/bin/protoc*",
            "torch/bin/*.ptl",
            "torch/bin/upgrader_models/*",
            "torch/lib/*_test.so",
            "torch/lib/libbackend_with_compiler.so",
            "torch/lib/libaoti_custom_ops.so",
        ],
    ),
    "torch-dev": (
        "torch's C++ headers, CMake files, type stubs, and its tools for building C++ "
        "extensions, benchmarking and TensorBoard (which pull in setuptools)",
        [
            "torch.utils.cpp_extension",
            "torch.utils.benchmark",
            "torch.utils.tensorboard",
            "torch.utils.bottleneck",
            "setuptools",
            "distutils",
        ],
        ["torch/include/*", "torch/share/*", "*.pyi"],
    ),
    "unused-python": (
        "packages Secateur never imports that torch's hook drags in through its optional "
        "paths (test helpers, distributed checkpoints, torch.compile templates). ONNX, ONNX "
        "Runtime and zstandard were here until --format onnx and compressed used them",
        [
            "scipy",
            "sklearn",
            "hypothesis",
            "pytest",
            "_pytest",
            "pluggy",
            "fsspec",
            "jinja2",
            "markupsafe",
            "IPython",
            "matplotlib",
            "tkinter",
        ],
        [],
    ),
    "qt-unused": (
        "Qt translations (the app is English only), Qt modules nothing imports but the "
        "hooks collect (QtTest, which pyqtgraph imports only if present; QtOpenGL and "
        "QtOpenGLWidgets stay: pyqtgraph imports them unconditionally) and plugins for "
        "embedded platforms, remote displays, networking and image formats the window never "
        "reads",
        [
            "PySide6.QtNetwork",
            "PySide6.QtTest",
            "PySide6.QtQml",
            "PySide6.QtQuick",
            "PySide6.QtDesigner",
            "PySide6.QtPrintSupport",
        ],
        [
            "PySide6/Qt/translations/*",
            "PySide6/Qt/plugins/platforms/libqeglfs.so",
            "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
            "PySide6/Qt/plugins/platforms/libqminimalegl.so",
            "PySide6/Qt/plugins/platforms/libqvnc.so",
            "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
            "PySide6/Qt/plugins/egldeviceintegrations/*",
            "PySide6/Qt/plugins/generic/*",
            "PySide6/Qt/plugins/networkinformation/*",
            "PySide6/Qt/plugins/tls/*",
            "PySide6/Qt/plugins/imageformats/libqgif.so",
            "PySide6/Qt/plugins/imageformats/libqicns.so",
            "PySide6/Qt/plugins/imageformats/libqico.so",
            "PySide6/Qt/plugins/imageformats/libqjpeg.so",
            "PySide6/Qt/plugins/imageformats/libqpdf.so",
            "PySide6/Qt/plugins/imageformats/libqtga.so",
            "PySide6/Qt/plugins/imageformats/libqtiff.so",
            "PySide6/Qt/plugins/imageformats/libqwbmp.so",
            "PySide6/Qt/plugins/imageformats/libqwebp.so",
            "libQt6EglFSDeviceIntegration.so*",
            "libQt6EglFsKmsSupport.so*",
            "libQt6Network.so*",
            "libQt6Pdf.so*",
            "PySide6/Qt/lib/libQt6EglFSDeviceIntegration.so*",
            "PySide6/Qt/lib/libQt6EglFsKmsSupport.so*",
            "PySide6/Qt/lib/libQt6Network.so*",
            "PySide6/Qt/lib/libQt6Pdf.so*",
        ],
    ),
    "host-libs": (
        "the build machine's GLib, GTK drawing stack, fontconfig/freetype, D-Bus and systemd "
        "libraries: the PySide6 wheel itself takes these from the desktop, and an older copy "
        "loaded first breaks the desktop's GTK theme plugin and font configuration",
        [],
        [
            "libglib-2.0.so*",
            "libgio-2.0.so*",
            "libgobject-2.0.so*",
            "libgmodule-2.0.so*",
            "libgthread-2.0.so*",
            "libcairo*.so*",
            "libpango*.so*",
            "libgdk_pixbuf-2.0.so*",
            "libatk-1.0.so*",
            "libharfbuzz.so*",
            "libgraphite2.so*",
            "libfribidi.so*",
            "libthai.so*",
            "libdatrie.so*",
            "libpixman-1.so*",
            "libfontconfig.so*",
            "libfreetype.so*",
            "libpng16.so*",
            "libjpeg.so*",
            "libbrotli*.so*",
            "libdbus-1.so*",
            "libsystemd.so*",
            "libmount.so*",
            "libblkid.so*",
            "libselinux.so*",
            "libpcre2-8.so*",
            "libgcrypt.so*",
            "libgpg-error.so*",
            "libcap.so*",
            "liblz4.so*",
            "libgssapi_krb5.so*",
            "libkrb5*.so*",
            "libk5crypto.so*",
            "libcom_err.so*",
            "libkeyutils.so*",
        ],
    ),
}


def kept_groups(value: str | None = None) -> set[str]:
    """The groups ``SECATEUR_BUNDLE_KEEP`` keeps (SystemExit names an unknown one)."""
    value = os.environ.get("SECATEUR_BUNDLE_KEEP", "") if value is None else value
    keep = set(EXCLUSIONS) if value == "all" else {g for g in value.split(",") if g}
    if keep - set(EXCLUSIONS):
        raise SystemExit(f"SECATEUR_BUNDLE_KEEP: unknown groups {sorted(keep - set(EXCLUSIONS))}")
    return keep


def excluded_modules(keep: set[str]) -> list[str]:
    return [m for name, (_, modules, _) in EXCLUSIONS.items() if name not in keep for m in modules]


def dropped_paths(keep: set[str]) -> list[str]:
    return [g for name, (_, _, globs) in EXCLUSIONS.items() if name not in keep for g in globs]


def _covers(excluded: str, module: str) -> bool:
    return module == excluded or module.startswith(excluded + ".")


def problems(excluded: list[str]) -> list[str]:
    """Where the app imports (anywhere, even inside a function) or depends on a module
    ``excluded`` leaves out; empty when the bundle can leave them all out."""
    found: list[str] = []
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                    for name in names
                    for module in excluded
                    if _covers(module, name)
                ]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    for requirement in re.findall(r'"([A-Za-z0-9_.-]+)', block.group(1) if block else ""):
        name = requirement.lower().replace("-", "_")
        found += [
            f"pyproject.toml depends on {requirement}"
            for module in excluded
            if module.lower() == name  # a whole distribution left out
        ]
    return found


def check(excluded: list[str]) -> None:
    """Stop the build when ``problems`` finds any."""
    found = problems(excluded)
    if found:
        raise SystemExit(
            "secateur.spec: the app uses what EXCLUSIONS leaves out; remove it from there:\n  "
            + "\n  ".join(found)
        )
