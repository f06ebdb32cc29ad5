"""A corpus of bad inputs, generated (never checked in), each with its expected one-line error.

Shared by the command-line tests (exit 2, one line on stderr) and the window tests (a
message box, then a demo run still works). Each case is (id, kind, build, expected) where
``build(tmp)`` writes the files and returns the paths the case needs.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from toy_models import mlp

TOY = str(Path(__file__).with_name("toy_models.py"))
DEMO_ARCH = "core.demo:build_model"


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "model", "recipe" or "data"
    build: Callable[[Path], dict[str, str]]
    expected: str  # a substring of the one-line error


def _model(name: str, content: bytes | None = None, arch: str | None = None, trust: bool = False):
    def build(tmp: Path) -> dict[str, str]:
        path = tmp / name
        if content is not None:
            path.write_bytes(content)
        out = {"model": str(path)}
        if arch:
            out["arch"] = arch
        if trust:
            out["trust"] = "1"
        return out

    return build


def _saved(obj, name: str, arch: str | None = None, trust: bool = False):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return _model(name, buf.getvalue(), arch, trust)


def _truncated_zip() -> bytes:
    buf = io.BytesIO()
    torch.save(mlp().state_dict(), buf)
    return buf.getvalue()[:300]


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)


def _pickle_missing_class(tmp: Path) -> dict[str, str]:
    """A full pickle of a class from a module that is gone by the time it is loaded."""
    import sys
    import types

    module = types.ModuleType("secateur_gone_module")

    class Gone(torch.nn.Module):
        pass

    Gone.__module__ = module.__name__
    Gone.__qualname__ = "Gone"
    module.Gone = Gone  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        torch.save(Gone(), tmp / "gone.pt")
    finally:
        del sys.modules[module.__name__]
    return {"model": str(tmp / "gone.pt"), "trust": "1"}


def _arch_file(source: str | None, attr: str = "f"):
    def build(tmp: Path) -> dict[str, str]:
        state = tmp / "weights.pt"
        torch.save(mlp().state_dict(), state)
        arch = tmp / "arch.py"
        if source is not None:
            arch.write_text(source)
        return {"model": str(state), "arch": f"{arch}:{attr}"}

    return build


def _other_arch(tmp: Path) -> dict[str, str]:
    path = tmp / "digits.pt"
    from core.demo import build_model

    torch.save(build_model().state_dict(), path)
    return {"model": str(path), "arch": f"{TOY}:mlp"}


def _wrong_shapes(tmp: Path) -> dict[str, str]:
    state = mlp().state_dict()
    state["fc2.weight"] = torch.zeros(5, 5)
    path = tmp / "shapes.pt"
    torch.save(state, path)
    return {"model": str(path), "arch": f"{TOY}:mlp"}


def _directory(tmp: Path) -> dict[str, str]:
    folder = tmp / "folder.pt"
    folder.mkdir()
    return {"model": str(folder)}


def _recipe(text: str | None, name: str = "recipe.yaml"):
    def build(tmp: Path) -> dict[str, str]:
        path = tmp / name
        if text is not None:
            path.write_text(text)
        return {"recipe": str(path)}

    return build


def _data(name: str, **arrays):
    def build(tmp: Path) -> dict[str, str]:
        path = tmp / name
        np.savez(path, **arrays)
        return {"data": str(path)}

    return build


def _raw_data(name: str, content: bytes):
    def build(tmp: Path) -> dict[str, str]:
        path = tmp / name
        path.write_bytes(content)
        return {"data": str(path)}

    return build


X = np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32)
Y = np.arange(20) % 10
NAN = X.copy()
NAN[3, 0, 2, 2] = np.nan
INF = X.copy()
INF[0, 0, 0, 0] = np.inf

CASES: list[Case] = [
    # --- model files
    Case("empty", "model", _model("empty.pt", b""), "empty.pt: is empty (0 bytes)"),
    Case(
        "random-bytes",
        "model",
        _model("noise.pt", bytes(np.random.default_rng(1).integers(128, 256, 512, dtype=np.uint8))),
        "noise.pt: holds unrecognised binary data",
    ),
    Case(
        "truncated-zip",
        "model",
        _model("cut.pt", _truncated_zip()),
        "cut.pt: is a damaged or truncated archive",
    ),
    Case(
        "text-file",
        "model",
        _model("notes.pt", b"these are my notes\n"),
        "notes.pt: is a text file, not a PyTorch model file",
    ),
    Case(
        "json",
        "model",
        _model("config.pt", json.dumps({"lr": 0.1}).encode()),
        "config.pt: looks like JSON text",
    ),
    Case("png-named-pt", "model", _model("photo.pt", _png()), "photo.pt: is a PNG image"),
    Case(
        "zip-not-torch",
        "model",
        lambda tmp: (_write_zip(tmp / "archive.pt"), {"model": str(tmp / "archive.pt")})[1],
        "archive.pt: is a zip archive but not a PyTorch file",
    ),
    Case(
        "state-dict-no-arch",
        "model",
        _saved(mlp().state_dict(), "weights.pt"),
        "weights.pt: holds a state dict (weights only): give its architecture with --arch",
    ),
    Case("other-architecture", "model", _other_arch, "digits.pt: does not fit the architecture"),
    Case(
        "wrong-shapes",
        "model",
        _wrong_shapes,
        "1 shape mismatches (first: fc2.weight (5, 5) vs (32, 32))",
    ),
    Case("pickle-untrusted", "model", _saved(mlp(), "full.pt"), "full.pt: is a full pickled model"),
    Case(
        "pickle-missing-class",
        "model",
        _pickle_missing_class,
        "gone.pt: needs a class that is not importable here",
    ),
    Case(
        "pickled-non-module",
        "model",
        _saved([1, 2, 3], "list.pt"),
        "list.pt: holds a list, not a state dict or a model",
    ),
    Case("arch-missing", "model", _arch_file(None), "arch.py: no such file"),
    Case(
        "arch-syntax-error",
        "model",
        _arch_file("def f(:\n    pass\n"),
        "arch.py: syntax error at line 1",
    ),
    Case("arch-no-callable", "model", _arch_file("x = 1\n"), "arch.py has no callable named 'f'"),
    Case(
        "arch-raises",
        "model",
        _arch_file("def f():\n    raise RuntimeError('nope')\n"),
        "raised RuntimeError (nope)",
    ),
    Case(
        "arch-not-module",
        "model",
        _arch_file("def f():\n    return 'a string'\n"),
        "returned a str, not an nn.Module",
    ),
    Case(
        "arch-bad-spec",
        "model",
        lambda tmp: {**_saved(mlp().state_dict(), "w.pt")(tmp), "arch": "no_colon_here"},
        "--arch: 'no_colon_here' is not FILE.py:callable",
    ),
    Case("directory", "model", _directory, "folder.pt: is a folder, not a model file"),
    Case("missing-file", "model", _model("nowhere.pt"), "nowhere.pt: no such file"),
    # --- recipes
    Case(
        "recipe-yaml-syntax",
        "recipe",
        _recipe("version: 1\nprune: [{amount: 0.5}\n"),
        "recipe.yaml: YAML syntax error at line",
    ),
    Case(
        "recipe-unknown-method",
        "recipe",
        _recipe("version: 1\nprune: [{method: snip}]\n"),
        "recipe.yaml: prune[0].method: 'snip' is not one of",
    ),
    Case(
        "recipe-unknown-scheme",
        "recipe",
        _recipe("version: 1\nquantize: {scheme: int3}\n"),
        "recipe.yaml: quantize.scheme: 'int3' is not one of",
    ),
    Case(
        "recipe-amount-negative",
        "recipe",
        _recipe("version: 1\nprune: [{amount: -0.1}]\n"),
        "recipe.yaml: prune[0].amount: -0.1 is not in [0, 1)",
    ),
    Case(
        "recipe-amount-too-big",
        "recipe",
        _recipe("version: 1\nprune: [{amount: 1.5}]\n"),
        "recipe.yaml: prune[0].amount: 1.5 is not in [0, 1)",
    ),
    Case(
        "recipe-amount-text",
        "recipe",
        _recipe("version: 1\nprune: [{amount: abc}]\n"),
        "recipe.yaml: prune[0].amount: 'abc' is not a number",
    ),
    Case(
        "recipe-wrong-type",
        "recipe",
        _recipe("version: 1\nprune: {amount: 0.5}\n"),
        "recipe.yaml: prune: {'amount': 0.5} is invalid",
    ),
    Case(
        "recipe-unknown-key",
        "recipe",
        _recipe("version: 1\nprun: []\n"),
        "recipe.yaml: prun: unknown key",
    ),
    Case(
        "recipe-no-match",
        "recipe",
        _recipe("version: 1\nprune: [{layers: ['attention*']}]\n"),
        "recipe.yaml: prune[0].layers: 'attention*' matches no prunable layer",
    ),
    Case("recipe-empty", "recipe", _recipe(""), "recipe.yaml: the file is empty"),
    Case(
        "recipe-missing", "recipe", _recipe(None, "absent.yaml"), "absent.yaml: no such recipe file"
    ),
    # --- data
    Case(
        "data-wrong-shape",
        "data",
        _data("wide.npz", x=np.zeros((10, 3, 8, 8), np.float32), y=Y[:10]),
        "wide.npz: x does not fit the model",
    ),
    Case(
        "data-labels-out-of-range",
        "data",
        _data("labels.npz", x=X, y=Y + 5),
        "labels.npz: y holds label 14 but the model outputs 10 classes",
    ),
    Case(
        "data-nan",
        "data",
        _data("nan.npz", x=NAN, y=Y),
        "nan.npz: x holds 1 NaN or infinite values",
    ),
    Case(
        "data-inf",
        "data",
        _data("inf.npz", x=INF, y=Y),
        "inf.npz: x holds 1 NaN or infinite values",
    ),
    Case(
        "data-length-mismatch",
        "data",
        _data("lengths.npz", x=X, y=Y[:7]),
        "lengths.npz: x has 20 samples but y has 7",
    ),
    Case(
        "data-empty",
        "data",
        _data("empty.npz", x=np.zeros((0, 1, 8, 8), np.float32)),
        "empty.npz: x is empty (no samples)",
    ),
    Case("data-no-x", "data", _data("nox.npz", inputs=X), "nox.npz: has no 'x' (found inputs)"),
    Case(
        "data-not-data",
        "data",
        _raw_data("junk.npz", b"not an archive at all"),
        "junk.npz: is not an .npz archive",
    ),
    Case(
        "data-float-labels",
        "data",
        _data("flt.npz", x=X, y=Y + 0.5),
        "flt.npz: y holds non-integer values",
    ),
]


def _write_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")


def marker_pickle(path: Path, marker: Path) -> None:
    """A pickle that creates ``marker`` when unpickled (the classic os.system-style payload)."""

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with path.open("wb") as fh:
        pickle.dump({"weights": Payload()}, fh)


__all__ = ["CASES", "DEMO_ARCH", "Case", "marker_pickle"]
