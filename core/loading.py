"""Loading models of every kind Secateur accepts, detected by content rather than extension.

| kind                               | loaded with                          | needs            |
|------------------------------------|--------------------------------------|------------------|
| state dict (.pt/.pth/.bin)         | torch.load(weights_only=True)        | an architecture  |
| state dict (.safetensors)          | safetensors                          | an architecture  |
| full pickled nn.Module             | torch.load(weights_only=False)       | trust            |
| TorchScript archive                | torch.jit.load                       | nothing          |
| ExportedProgram (.pt2)             | torch.export.load                    | nothing          |

A file that can run code when loaded (a full pickle) is never unpickled without ``trust``:
the weights-only unpickler is tried first and refuses anything but tensors and containers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import json
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from core import compat
from core.atomic import remove_stale_temporaries
from core.compressed_read import looks_compressed
from core.compressed_read import read as read_compressed
from core.data import Dataset, load_data
from core.demos import DEFAULT_DEMO, DEMOS, TEST_DATA_PATH, TRAIN_DATA_PATH
from core.errors import (
    ArchRejectedError,
    ArchRequiredError,
    ModelLoadError,
    TrustRequiredError,
    UnsupportedError,
    UserError,
    first_line,
)
from core.onnx_runtime import looks_like_onnx
from core.quantization import apply_to_layer
from core.recipe import Backend, Granularity, Quantize, QuantScheme, format_validation_error
from core.shapes import apply_shapes

# torch.export.load's fallback error points at log lines Secateur keeps off the screen.
_SEE_WARNINGS = "Please check the warnings above for possible errors."
ModelFormat = Literal["state_dict", "compressed", "pickle", "torchscript", "exported", "demo"]
SIDECAR_SUFFIX = ".secateur.json"
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


@dataclass
class LoadedModel:
    """A model ready to inspect or compress, and where it came from."""

    model: nn.Module
    source: str
    format: ModelFormat
    path: Path | None = None
    arch: str | None = None
    notes: list[str] = field(default_factory=list)
    demo: str | None = None  # the bundled demo's name (core.demos.DEMOS)

    @property
    def class_name(self) -> str:
        model = self.model
        return getattr(model, "original_name", None) or type(model).__name__

    @property
    def display_name(self) -> str:
        if self.demo is not None:
            label = DEMOS[self.demo].label
            return f"demo ({label[:1].lower()}{label[1:]})"
        return Path(self.source).name

    @property
    def eager(self) -> bool:
        """True when modules can be swapped and hooked (not TorchScript or exported)."""
        return self.format in ("state_dict", "compressed", "pickle", "demo")

    @property
    def not_eager_reason(self) -> str | None:
        """Why this model cannot be pruned or quantized (None for an eager model): the one
        wording the engine, the command line and the window all use."""
        if self.eager:
            return None
        kind = {"torchscript": "TorchScript", "exported": "exported (.pt2)"}.get(
            self.format, self.format
        )
        return (
            f"{self.display_name}: a {kind} model can be inspected but not pruned or quantized "
            "(that needs the eager model: open its state dict with its architecture, --arch, "
            "or the pickled model)"
        )

    def require_eager(self) -> None:
        """Refuse, before any work, to prune or quantize a model that is not eager."""
        reason = self.not_eager_reason
        if reason is not None:
            raise UnsupportedError(reason)


def sidecar_path(path: Path) -> Path:
    """Where the recipe that rebuilds a quantized state dict lives, beside the file."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def detect_format(path: Path) -> str:
    """'safetensors', 'compressed', 'torchscript', 'exported', 'torch_zip', 'torch_legacy',
    'onnx', or a reason (a ModelLoadError)."""
    with path.open("rb") as fh:
        head = fh.read(16)
    size = path.stat().st_size
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
    if looks_compressed(head):
        return "compressed"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except Exception as exc:  # a probe of an untrusted file: any failure means damage
            raise ModelLoadError(
                f"{path.name}: is a damaged or truncated archive ({first_line(exc)})"
            ) from None
        if any(n.endswith("/archive_format") for n in names):
            return "exported"
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") for n in names):
            return "torch_zip"
        raise ModelLoadError(f"{path.name}: is a zip archive but not a PyTorch file")
    if head[:1] == b"\x80":
        return "torch_legacy"
    if looks_like_onnx(head):
        return "onnx"
    raise ModelLoadError(f"{path.name}: {_what_is(head)}, not a PyTorch model file")


def _what_is(head: bytes) -> str:
    if not head:
        return "is empty"
    if head.startswith(b"\x89PNG"):
        return "is a PNG image"
    if head[:3] == b"\xff\xd8\xff":
        return "is a JPEG image"
    if head.lstrip()[:1] in (b"{", b"["):
        return "looks like JSON text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "holds unrecognised binary data"
    return "is a text file"


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a folder, not a model file")
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except PermissionError:
        raise ModelLoadError(f"{path}: permission denied (cannot read the file)") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror})") from None
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path.name}: is empty (0 bytes)")


def load_model(
    path: str | Path,
    arch: str | None = None,
    trust: bool = False,
    build: Callable[[], nn.Module] | None = None,
) -> LoadedModel:
    """Load any supported model file. Raises a ModelLoadError naming the file on failure.

    A weights-only file (a state dict, a compressed file) needs its architecture: ``arch``
    (a FILE.py:callable spec) or ``build``, which returns a fresh one (the round trip of a
    result that came from a pickled model builds it from the original's class)."""
    path = Path(path)
    _check_readable(path)
    remove_stale_temporaries(path.parent)  # left beside it by a killed or powered-off save
    kind = detect_format(path)
    name = path.name
    if kind == "onnx":
        raise UnsupportedError(
            f"{name}: is an ONNX graph: 'secateur inspect' shows its layers; to compress, open "
            "the PyTorch model it came from"
        )
    if kind == "compressed":
        state, metadata = read_compressed(path)
        sidecar = sidecar_from(metadata, name) if metadata else None
        return _from_state_dict(state, path, arch, build, sidecar, "compressed")
    if kind == "torchscript":
        try:
            with compat.quiet():
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(
                f"{name}: TorchScript archive fails to load ({first_line(exc)})"
            ) from None
        check_storages(model, name)
        return LoadedModel(model.eval(), str(path), "torchscript", path)
    if kind == "exported":
        logged: list = []
        try:
            with compat.quiet(), compat.captured_log("torch.export") as logged:
                program = torch.export.load(str(path))
            model = program.module()
        except Exception as exc:
            cause = compat.logged_error(logged) or exc  # the first error, not the fallback's
            text = first_line(cause).replace(_SEE_WARNINGS, "").strip()
            raise ModelLoadError(f"{name}: ExportedProgram fails to load ({text})") from None
        check_storages(model, name)
        return LoadedModel(model, str(path), "exported", path)
    if kind == "safetensors":
        state = _load_safetensors(path)
        return _from_state_dict(state, path, arch, build)
    try:
        obj = _weights_only_load(path)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower() and "weights only" not in str(exc).lower():
            raise ModelLoadError(f"{name}: is damaged ({first_line(exc)})") from None
        if not trust:
            raise TrustRequiredError(
                f"{name}: is a full pickled model, and unpickling it can run any code inside "
                "the file; load it only if you trust its source (pass --trust, or confirm in "
                "the window)"
            ) from None
        return _load_pickle(path)
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: is damaged or not a PyTorch file ({first_line(exc)})"
        ) from None
    if isinstance(obj, Mapping):
        return _from_state_dict(_flatten_state(obj, name), path, arch, build)
    raise ModelLoadError(f"{name}: holds a {type(obj).__name__}, not a state dict or a model")


def check_storages(model: nn.Module, name: str) -> None:
    """Refuse a model with a tensor whose data is missing or too short in the file.

    torch.jit.load does not check a tensor's record in the archive against its shape: an
    empty or short record gives a tensor over a null or short buffer, and the first read
    of it is a segmentation fault. (torch.load's unpickler checks this itself.)"""
    for key, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        if type(tensor) not in (torch.Tensor, nn.Parameter) or tensor.numel() == 0:
            continue  # a tensor subclass (torchao's int8) holds its data in inner tensors
        try:
            storage = tensor.untyped_storage()
            have = storage.nbytes()
        except (RuntimeError, NotImplementedError, TypeError):
            continue  # a tensor subclass without a plain storage: nothing to check
        try:
            missing = storage.data_ptr() == 0
        except RuntimeError:  # "an invalid python storage"
            missing = True
        reach = tensor.storage_offset() + 1
        reach += sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
        need = reach * tensor.element_size()
        if missing or need > have:
            held = "no data" if missing else f"{have:,} bytes"
            raise ModelLoadError(
                f"{name}: {key} needs {need:,} bytes of data but the file holds {held} for "
                "it (a damaged archive)"
            )


def _weights_only_load(path: Path) -> Any:
    """torch.load(weights_only=True); torchao's tensor classes are allowed once imported."""
    mmap = zipfile.is_zipfile(path)  # zero-copy: tensors stay backed by the file
    try:
        with compat.quiet():
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "torchao" not in str(exc):
            raise
    compat.torchao()  # registers torchao's tensor subclasses as safe globals
    with compat.quiet():
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{path.name}: damaged .safetensors file ({first_line(exc)})"
        ) from None


def _flatten_state(obj: Mapping, name: str) -> dict[str, Any]:
    """A state dict, also when nested in a training checkpoint ({'state_dict': {...}, ...}).

    Values are kept as they are: torch.ao's packed int8 weights are tuples, not tensors.
    """
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            return _keep_metadata(inner)
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return _keep_metadata(obj)
    if not obj:
        raise ModelLoadError(f"{name}: holds an empty dict, not a state dict")
    keys = ", ".join(list(map(str, obj))[:5])
    raise ModelLoadError(f"{name}: holds a dict without tensors (keys: {keys}), not a state dict")


def _keep_metadata(state: Mapping) -> dict[str, Any]:
    """A plain copy that keeps torch's per-module ``_metadata`` (format versions that
    torch.ao's quantized modules need to read their own state)."""
    out = OrderedDict(state)
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def _load_pickle(path: Path) -> LoadedModel:
    try:
        with compat.quiet():
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError, ImportError) as exc:
        raise ModelLoadError(
            f"{path.name}: needs a class that is not importable here ({first_line(exc)}); "
            "put the module that defines it on PYTHONPATH, or save a state dict and use --arch"
        ) from None
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: the pickle fails to load ({first_line(exc)})") from None
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), str(path), "pickle", path)
    if isinstance(obj, Mapping):
        raise ModelLoadError(
            f"{path.name}: is a pickled dict with non-tensor objects, not a model; "
            "save model.state_dict() or the model itself"
        )
    raise ModelLoadError(f"{path.name}: holds a {type(obj).__name__}, not an nn.Module")


def resolve_arch(spec: str) -> Callable[[], Any]:
    """'path/to/file.py:callable' or 'package.module:callable' -> the callable."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ArchRejectedError(
            f"--arch: {spec!r} is not FILE.py:callable or package.module:callable"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        file = Path(target)
        if not file.is_file():
            raise ArchRejectedError(f"--arch: {file}: no such file")
        mod_name = f"_secateur_arch_{abs(hash(str(file.resolve())))}"
        spec_obj = importlib.util.spec_from_file_location(mod_name, file)
        if spec_obj is None or spec_obj.loader is None:
            raise ArchRejectedError(f"--arch: {file}: cannot be imported as Python")
        module = importlib.util.module_from_spec(spec_obj)
        sys.modules[mod_name] = module
        try:
            spec_obj.loader.exec_module(module)
        except SyntaxError as exc:
            sys.modules.pop(mod_name, None)
            raise ArchRejectedError(
                f"--arch: {file.name}: syntax error at line {exc.lineno}: {exc.msg}"
            ) from None
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ArchRejectedError(
                f"--arch: {file.name}: raised {type(exc).__name__} when imported "
                f"({first_line(exc)})"
            ) from None
        where = file.name
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ArchRejectedError(
                f"--arch: cannot import {target!r} ({first_line(exc)})"
            ) from None
        where = target
    func = getattr(module, attr, None)
    if func is None or not callable(func):
        raise ArchRejectedError(f"--arch: {where} has no callable named {attr!r}")
    return func


def build_arch(spec: str) -> nn.Module:
    """Call the architecture callable and check it returns an nn.Module."""
    func = resolve_arch(spec)
    try:
        model = func()
    except UserError:
        raise
    except Exception as exc:
        raise ArchRejectedError(
            f"--arch: {spec} raised {type(exc).__name__} ({first_line(exc)})"
        ) from None
    if not isinstance(model, nn.Module):
        raise ArchRejectedError(
            f"--arch: {spec} returned a {type(model).__name__}, not an nn.Module"
        )
    return model


def _from_state_dict(
    state: dict[str, torch.Tensor],
    path: Path,
    arch: str | None,
    build: Callable[[], nn.Module] | None = None,
    sidecar: Sidecar | None = None,
    kind: ModelFormat = "state_dict",
) -> LoadedModel:
    name = path.name
    if arch is None and build is None:
        what = "a state dict" if kind == "state_dict" else f"{kind} weights"
        raise ArchRequiredError(
            f"{name}: holds {what} (weights only): give its architecture with "
            "--arch FILE.py:callable"
        )
    notes: list[str] = []
    if sidecar is None:
        side = sidecar_path(path)
        if side.exists():
            sidecar = read_sidecar(side)
            _check_pair(path, side, sidecar)
    if sidecar is not None:
        if sidecar.shapes:
            count = len(sidecar.shapes.get("modules", {}))
            notes.append(f"resized {count} layers (channels removed) from {sidecar.name}")
        if sidecar.rules:
            notes.append(f"rebuilt quantized layers from {sidecar.name}")
    if arch is not None and not any(k.endswith("_mask") for k in state):
        fast = _load_on_meta(arch, state, sidecar)
        if fast is not None:
            return LoadedModel(fast.eval(), str(path), kind, path, arch, notes)
    model = build() if build is not None else build_arch(arch or "")
    if sidecar is not None:
        sidecar.rebuild(model)
    _restore_masks(model, state)
    load_state_strict(model, state, name)
    return LoadedModel(model.eval(), str(path), kind, path, arch, notes)


def _load_on_meta(arch: str, state: dict[str, Any], sidecar: Sidecar | None) -> nn.Module | None:
    """Build the architecture without allocating weights and adopt the loaded tensors.

    Halves the peak memory of opening a large state dict (no random init to overwrite).
    Layers a sidecar resizes get their recorded shapes on the meta device; quantized layers
    it names are materialised one at a time, quantized, and then take their integer weights
    from the file. Returns None when the architecture does not build on the meta device or
    leaves a tensor uninitialised (a buffer not in the state dict); the caller then builds
    normally and reports any mismatch in full.
    """
    func = resolve_arch(arch)
    try:
        with torch.device("meta"):
            model = func()
        if not isinstance(model, nn.Module):
            return None
        if sidecar is not None:
            sidecar.rebuild(model, materialize=True)
    except Exception:
        return None
    own = model.state_dict()
    if set(own) != set(state) or any(
        tuple(getattr(state[k], "shape", ())) != tuple(getattr(v, "shape", ()))
        for k, v in own.items()
    ):
        return None  # let the normal path report the mismatch in full
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except Exception:
        return None
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        return None
    return model


class _RuleFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scheme: QuantScheme
    backend: Backend = "torchao"
    granularity: Granularity = "per_channel"


class SidecarFile(BaseModel):
    """The schema of ``OUT.secateur.json`` (and of a compressed file's own metadata):
    ``layers`` maps each quantized layer to its rule (or, as first written, lists the layers
    that all take the one ``quantize`` rule); ``shapes`` is ``core.shapes.shapes_of``'s
    record of the layers whose channels were removed; ``model_sha256`` names the model file
    it belongs to (absent in sidecars of older versions and inside compressed files)."""

    model_config = ConfigDict(extra="forbid")

    secateur_sidecar: Literal[1]
    layers: dict[str, _RuleFields] = Field(default_factory=dict)
    quantize: Quantize | None = None  # the first form: one rule for a list of layers
    shapes: dict[str, Any] | None = None
    model_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")

    @model_validator(mode="before")
    @classmethod
    def _first_form(cls, data: Any) -> Any:
        """``layers: [names]`` with one ``quantize`` rule, as first written."""
        if isinstance(data, dict) and isinstance(data.get("layers"), list):
            names = data["layers"]
            if not names or not all(isinstance(n, str) for n in names):
                raise ValueError(f"layers: {names!r} is not a list of layer names")
            rule = data.get("quantize")
            if not isinstance(rule, dict):
                raise ValueError("layers lists names but there is no quantize rule for them")
            fields = {k: rule[k] for k in ("scheme", "backend", "granularity") if k in rule}
            return {**data, "layers": {name: fields for name in names}}
        return data


@dataclass
class Sidecar:
    """What a sidecar says about a saved state dict: the shapes of layers whose channels
    were removed, each quantized layer's rule, and the model file it belongs to."""

    name: str
    rules: dict[str, Quantize]
    shapes: dict[str, Any] | None
    model_sha256: str | None = None

    def rebuild(self, model: nn.Module, materialize: bool = False) -> None:
        """Resize, then quantize, the layers of a freshly built architecture."""
        if self.shapes:
            apply_shapes(model, self.shapes, self.name)
        modules = dict(model.named_modules())
        for layer, quant in self.rules.items():
            if layer not in modules:
                raise ModelLoadError(f"{self.name}: names layer {layer!r}, which the model lacks")
            module = modules[layer]
            if materialize:
                module.to_empty(device="cpu", recurse=False)
            apply_to_layer(model, module, layer, quant)


def read_sidecar(path: Path) -> Sidecar:
    """Read and validate a sidecar file; errors name the file, the field and the bad value."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path.name}: damaged Secateur sidecar ({first_line(exc)})") from None
    return sidecar_from(data, path.name)


def sidecar_from(data: Any, name: str) -> Sidecar:
    """Validate what a sidecar holds (a file's, or a compressed file's own metadata)."""
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{name}: damaged Secateur sidecar (expected a JSON object, got {type(data).__name__})"
        )
    try:
        file = SidecarFile.model_validate(data)
        rules = {layer: Quantize(**fields.model_dump()) for layer, fields in file.layers.items()}
    except ValidationError as exc:
        raise ModelLoadError(
            f"{name}: damaged Secateur sidecar ({format_validation_error(exc, root='')})"
        ) from None
    except ValueError as exc:
        raise ModelLoadError(f"{name}: damaged Secateur sidecar ({first_line(exc)})") from None
    return Sidecar(name, rules, file.shapes, file.model_sha256)


def file_sha256(fh: IO[bytes]) -> str:
    """The SHA-256 of an open file's content from its current position, in hex."""
    digest = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _check_pair(path: Path, side: Path, sidecar: Sidecar) -> None:
    """Refuse a sidecar that was written for another version of the model file (a save
    interrupted between publishing the two, by a kill or a power loss)."""
    if sidecar.model_sha256 is None:
        return
    with path.open("rb") as fh:
        digest = file_sha256(fh)
    if digest != sidecar.model_sha256:
        raise ModelLoadError(
            f"{side.name}: belongs to another version of {path.name} (model_sha256 "
            f"{sidecar.model_sha256[:12]}... is not the file's {digest[:12]}...; a save was "
            "interrupted): save the model again, or remove the sidecar if the file holds "
            "plain float weights"
        )


def _restore_masks(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Recreate pruning reparametrisations for a state dict saved with masks kept."""
    from torch.nn.utils import prune

    modules = dict(model.named_modules())
    for key in state:
        if key.endswith(".weight_mask"):
            owner = key[: -len(".weight_mask")]
            module = modules.get(owner)
            if module is not None and not hasattr(module, "weight_mask"):
                prune.identity(module, "weight")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """load_state_dict(strict) with a one-line summary of what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {_shape_text(state[k])} vs {tuple(own[k].shape)}"
        for k in own
        if k in state
        and hasattr(own[k], "shape")
        and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first: {'; '.join(shapes[:2])})")
        raise ArchRejectedError(f"{name}: does not fit the architecture: {'; '.join(parts)}")
    try:
        model.load_state_dict(state, strict=True, assign=_needs_assign(own))
    except Exception as exc:
        raise ArchRejectedError(
            f"{name}: does not fit the architecture ({first_line(exc)})"
        ) from None


def _shape_text(value: Any) -> str:
    """A value's shape for a mismatch message: its shape, or what it is instead."""
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else f"(a {type(value).__name__})"


def _needs_assign(own: Mapping[str, Any]) -> bool:
    return any(
        isinstance(v, torch.Tensor) and type(v) not in (torch.Tensor, nn.Parameter)
        for v in own.values()
    )


def load_demo(name: str = DEFAULT_DEMO) -> tuple[LoadedModel, Dataset, Dataset]:
    """A bundled demo model with its test data (to evaluate) and training data. Its weights
    are read with safetensors (nothing runs on load) into the architecture, strictly."""
    entry = DEMOS.get(name)
    if entry is None:
        raise ModelLoadError(f"--demo: {name!r} is not one of {DEMOS.choices()}")
    model = build_arch(entry.arch)
    load_state_strict(model, _load_safetensors(entry.weights), entry.weights.name)
    source = "demo" if name == DEFAULT_DEMO else f"demo:{name}"
    loaded = LoadedModel(model.eval(), source, "demo", entry.weights, entry.arch, demo=name)
    return loaded, load_data(TEST_DATA_PATH), load_data(TRAIN_DATA_PATH)
