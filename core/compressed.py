"""The ``compressed`` format: a weights-only file that stores zeros and int8 compactly.

Loading it never runs code: the file is a binary preamble, blobs of numbers and a JSON
header; the reader only builds tensors of the dtypes listed below and the two quantized
tensor kinds Secateur writes (torchao's ``Int8Tensor`` and torch.ao's quantized tensors),
from an allow-list. Every tensor loads back bit-exact (floats are compared as bit patterns,
so -0.0 and NaN payloads survive).

Each tensor is stored either ``dense`` (its bytes, byte-shuffled when wider than one byte,
then zstd) or as a ``bitmask`` (one presence bit per element plus the nonzero values, each
part zstd'ed), whichever is smaller; measured on real layers, the bitmask wins for sparse
tensors (a 90%-sparse fp32 layer: 0.08x of fp32 against 0.13x for zstd of the dense bytes)
and byte shuffling wins for dense floats (~0.81x against ~0.91x). The layout is specified
in ``docs/compressed-format.md`` so that another tool can read it.

The header sits at the end of the file (as in Parquet), which lets the writer stream one
tensor at a time (memory bounded by the largest tensor, not the model) and makes a
truncated file recognisable at once: its trailer is missing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import mmap
import struct
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from core.errors import ModelLoadError, SaveError, UnsupportedError, first_line

MAGIC = b"SECATEUR"
KIND = b"CMPR"
FORMAT_VERSION = 1
SUFFIX = ".secz"
PREAMBLE = struct.Struct("<8s4sI")  # magic, kind, version: 16 bytes
TRAILER = struct.Struct("<QQ8s")  # header offset, header length, magic: 24 bytes
ALIGN = 64  # every blob starts at a multiple of this (so raw blobs can be mapped directly)
MAX_HEADER_BYTES = 64 * 2**20  # ~200,000 tensors; bounds the JSON parser's memory
MAX_ELEMENTS = 2**40  # per tensor: far above any real layer, far below an overflow
_SCATTER_BLOCK = 2**18  # elements per block when a bitmask is expanded
DEFAULT_LEVEL = 3  # zstd level; 19 on dense int8 only matches 3 on its bitmask, 15x slower

# dtype name in the file -> (torch dtype, unsigned integer numpy dtype of the same width)
DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float64": (torch.float64, np.dtype("<u8")),
    "float32": (torch.float32, np.dtype("<u4")),
    "float16": (torch.float16, np.dtype("<u2")),
    "bfloat16": (torch.bfloat16, np.dtype("<u2")),
    "int64": (torch.int64, np.dtype("<u8")),
    "int32": (torch.int32, np.dtype("<u4")),
    "int16": (torch.int16, np.dtype("<u2")),
    "int8": (torch.int8, np.dtype("<u1")),
    "uint8": (torch.uint8, np.dtype("<u1")),
    "bool": (torch.bool, np.dtype("<u1")),
}
_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in DTYPES.items()}
# torch's same-width integer dtype, to read a tensor's bytes as bit patterns
_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_QUANT_DTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32}
_QUANT_NAMES = {v: k for k, v in _QUANT_DTYPES.items()}
_INT8_ATTRIBUTES = {"block_size", "dtype", "act_quant_kwargs", "reduce_range"}
CODECS = ("none", "zstd")
ENCODINGS = ("dense", "bitmask")


class _Refused(Exception):
    """A state-dict value the format cannot hold (the message says which and why)."""


@dataclass
class WriteSummary:
    """What ``write`` stored: total bytes and, per tensor, its encoding and stored bytes."""

    file_bytes: int
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def by_encoding(self) -> dict[str, int]:
        """Number of tensors stored with each encoding."""
        out: dict[str, int] = {}
        for spec in self.tensors.values():
            out[spec["encoding"]] = out.get(spec["encoding"], 0) + 1
        return out


# ----------------------------------------------------------------------------- writing
def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency of secateur
        raise UnsupportedError(
            "the compressed format needs the 'zstandard' package (pip install zstandard)"
        ) from None
    return zstandard


def _state_of(model_or_state: nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(model_or_state, nn.Module):
        return model_or_state.state_dict()
    return model_or_state


def why_not_compressed(model_or_state: nn.Module | Mapping[str, Any]) -> str | None:
    """Why the format cannot hold this model's state dict (with the way out), or None."""
    try:
        for key, value in _state_of(model_or_state).items():
            _describe_value(str(key), value, [])
    except _Refused as exc:
        return str(exc)
    return None


def write(
    model_or_state: nn.Module | Mapping[str, Any],
    fh: IO[bytes],
    metadata: Mapping[str, Any] | None = None,
    level: int = DEFAULT_LEVEL,
) -> WriteSummary:
    """Write a state dict (or a model's) to the open binary file ``fh`` in this format.

    ``metadata`` is any JSON object stored in the header: Secateur puts there what rebuilds
    the quantized modules on load (the quantize settings and layer list that a state dict
    otherwise keeps in its ``.secateur.json`` sidecar). ``fh`` needs only ``write``, so a
    byte-counting sink predicts the file size without touching the disk. Raises
    UnsupportedError, before writing anything, for a value the format cannot hold.
    """
    state = _state_of(model_or_state)
    try:
        meta_json = json.loads(json.dumps(dict(metadata or {}), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise SaveError(f"compressed metadata: not a JSON object ({first_line(exc)})") from None
    plan: list[tuple[str, Any, dict[str, Any], list[tuple[str, torch.Tensor]]]] = []
    try:
        for key, value in state.items():
            tensors: list[tuple[str, torch.Tensor]] = []
            entry = _describe_value(str(key), value, tensors)
            plan.append((str(key), value, entry, tensors))
    except _Refused as exc:
        raise UnsupportedError(f"compressed: {exc}") from None
    writer = _BlobWriter(fh)
    writer.write(PREAMBLE.pack(MAGIC, KIND, FORMAT_VERSION))
    cctx = _zstd().ZstdCompressor(level=level, write_content_size=True)
    specs: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[Any, ...], str] = {}
    entries = []
    for key, _value, entry, tensors in plan:
        for name, tensor in tensors:
            ident = _identity(tensor)
            if ident in seen:  # tied weights: the same storage, shape and strides
                specs[name] = {"same_as": seen[ident]}
                continue
            seen[ident] = name
            specs[name] = _encode(tensor, writer, cctx)
        entries.append({"key": key, **entry})
    module_meta = getattr(state, "_metadata", None)
    header = {
        "format": "secateur-compressed",
        "version": FORMAT_VERSION,
        "producer": {"torch": torch.__version__},
        "metadata": meta_json,
        "module_metadata": _json_module_metadata(module_meta),
        "entries": entries,
        "tensors": specs,
    }
    blob = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    writer.pad()
    offset = writer.position
    writer.write(blob)
    writer.write(TRAILER.pack(offset, len(blob), MAGIC))
    return WriteSummary(writer.position, {k: v for k, v in specs.items() if "same_as" not in v})


class _BlobWriter:
    """Writes to ``fh`` and counts bytes itself (``fh`` may be a sink without ``tell``)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.position = 0

    def write(self, data: bytes | memoryview) -> None:
        self.fh.write(data)
        self.position += len(data)

    def pad(self) -> None:
        extra = -self.position % ALIGN
        if extra:
            self.write(b"\0" * extra)

    def blob(self, data: bytes | memoryview, **fields: Any) -> dict[str, Any]:
        self.pad()
        offset = self.position
        self.write(data)
        return {"offset": offset, "length": len(data), **fields, "crc32": zlib.crc32(data)}


def _identity(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def _json_module_metadata(meta: Any) -> dict[str, dict[str, Any]]:
    """torch's per-module state-dict versions, kept where they are plain JSON values."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(meta, Mapping):
        return out
    for prefix, values in meta.items():
        if isinstance(values, Mapping):
            plain = {
                str(k): v
                for k, v in values.items()
                if isinstance(v, bool | int | str) and not isinstance(v, float)
            }
            out[str(prefix)] = plain
    return out


def _plain_dtype(tensor: torch.Tensor, where: str) -> str:
    if tensor.layout != torch.strided:
        raise _Refused(f"{where}: is a {tensor.layout} tensor; save as state_dict")
    if tensor.is_meta:
        raise _Refused(f"{where}: is on the meta device (it holds no values)")
    name = _DTYPE_NAMES.get(tensor.dtype)
    if name is None:
        raise _Refused(
            f"{where}: dtype {str(tensor.dtype).replace('torch.', '')} has no compressed "
            "encoding; save as state_dict"
        )
    return name


def _describe_value(where: str, value: Any, tensors: list[tuple[str, torch.Tensor]]) -> Any:
    """The header entry of one state-dict value; appends the tensors it stores."""
    if value is None:
        return {"kind": "none"}
    if isinstance(value, torch.dtype):
        if value in _QUANT_NAMES:
            return {"kind": "dtype", "value": _QUANT_NAMES[value]}
        if value in _DTYPE_NAMES:
            return {"kind": "dtype", "value": _DTYPE_NAMES[value]}
        raise _Refused(f"{where}: dtype value {value} has no compressed encoding")
    if isinstance(value, tuple | list):
        items = [_describe_value(f"{where}.{i}", item, tensors) for i, item in enumerate(value)]
        return {"kind": "tuple", "items": items}
    if not isinstance(value, torch.Tensor):
        raise _Refused(
            f"{where}: holds a {type(value).__name__}, which the compressed format cannot "
            "hold; save as state_dict"
        )
    cls = type(value)
    if cls.__name__ == "Int8Tensor" and cls.__module__.startswith("torchao."):
        return _describe_int8(where, value, tensors)
    if cls not in (torch.Tensor, nn.Parameter):
        raise _Refused(
            f"{where}: {cls.__module__.split('.')[0]}'s {cls.__name__} has no compressed "
            "encoding; save as state_dict"
        )
    if value.is_quantized:
        return _describe_quantized(where, value, tensors)
    _plain_dtype(value, where)
    tensors.append((where, value.detach()))
    return {"kind": "tensor", "tensor": where}


def _describe_quantized(where: str, value: torch.Tensor, tensors: list) -> dict[str, Any]:
    """A torch.ao quantized tensor (legacy packed Linear weights): int8 values + qparams."""
    if value.dtype not in _QUANT_NAMES:
        raise _Refused(f"{where}: quantized dtype {value.dtype} has no compressed encoding")
    scheme = value.qscheme()
    entry: dict[str, Any] = {"kind": "quantized", "dtype": _QUANT_NAMES[value.dtype]}
    tensors.append((f"{where}.int_repr", value.int_repr()))
    entry["int_repr"] = f"{where}.int_repr"
    if scheme == torch.per_tensor_affine:
        entry["qscheme"] = "per_tensor_affine"
        tensors.append((f"{where}.scale", torch.tensor(value.q_scale(), dtype=torch.float64)))
        tensors.append(
            (f"{where}.zero_point", torch.tensor(value.q_zero_point(), dtype=torch.int64))
        )
        entry["scale"], entry["zero_point"] = f"{where}.scale", f"{where}.zero_point"
    elif scheme == torch.per_channel_affine:
        entry["qscheme"] = "per_channel_affine"
        entry["axis"] = int(value.q_per_channel_axis())
        tensors.append((f"{where}.scales", value.q_per_channel_scales()))
        tensors.append((f"{where}.zero_points", value.q_per_channel_zero_points()))
        entry["scales"], entry["zero_points"] = f"{where}.scales", f"{where}.zero_points"
    else:
        raise _Refused(f"{where}: quantization scheme {scheme} has no compressed encoding")
    return entry


def _describe_int8(where: str, value: torch.Tensor, tensors: list) -> dict[str, Any]:
    """torchao's Int8Tensor: its tensors (qdata, scale, ...) and its plain attributes."""
    cls = type(value)
    attr_names = [*cls.tensor_attribute_names, *getattr(cls, "optional_tensor_attribute_names", [])]
    unknown = set(attr_names) - _INT8_ATTRIBUTES
    if unknown:
        raise _Refused(
            f"{where}: this torchao's Int8Tensor has attributes {sorted(unknown)} the "
            "compressed format does not know; save as state_dict"
        )
    parts: dict[str, str] = {}
    for name in [*cls.tensor_data_names, *getattr(cls, "optional_tensor_data_names", [])]:
        inner = getattr(value, name, None)
        if inner is None:
            continue
        if type(inner) is not torch.Tensor:
            raise _Refused(f"{where}.{name}: is a {type(inner).__name__}, not a plain tensor")
        _plain_dtype(inner, f"{where}.{name}")
        tensors.append((f"{where}.{name}", inner))
        parts[name] = f"{where}.{name}"
    dtype = _DTYPE_NAMES.get(value.dtype)
    if dtype is None:
        raise _Refused(f"{where}: Int8Tensor of dtype {value.dtype} has no compressed encoding")
    reduce_range = getattr(value, "reduce_range", None)
    return {
        "kind": "torchao.Int8Tensor",
        "tensors": parts,
        "block_size": [int(b) for b in value.block_size],
        "dtype": dtype,
        "act_quant_kwargs": _act_kwargs_json(where, getattr(value, "act_quant_kwargs", None)),
        "reduce_range": None if reduce_range is None else bool(reduce_range),
    }


def _act_kwargs_json(where: str, kwargs: Any) -> dict[str, Any] | None:
    if kwargs is None:
        return None
    if type(kwargs).__name__ != "QuantizeTensorToInt8Kwargs" or not dataclasses.is_dataclass(
        kwargs
    ):
        raise _Refused(f"{where}: activation settings {type(kwargs).__name__} are not known")
    names = {f.name for f in dataclasses.fields(kwargs)}
    if names != {"granularity", "mapping_type", "reduce_range"}:
        raise _Refused(f"{where}: activation settings with fields {sorted(names)} are not known")
    gran = kwargs.granularity
    if type(gran).__name__ == "PerRow":
        gran_json: dict[str, Any] = {"type": "PerRow", "dim": int(gran.dim)}
    elif type(gran).__name__ == "PerTensor":
        gran_json = {"type": "PerTensor"}
    else:
        raise _Refused(f"{where}: activation granularity {type(gran).__name__} is not known")
    return {
        "granularity": gran_json,
        "mapping_type": kwargs.mapping_type.name,
        "reduce_range": bool(kwargs.reduce_range),
    }


def _bits(tensor: torch.Tensor) -> np.ndarray:
    """The tensor's elements as little-endian unsigned bit patterns, flat and contiguous."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    width = flat.element_size()
    if flat.dtype == torch.bool or flat.is_floating_point():
        flat = flat.view(_INT_VIEW[width])
    arr = flat.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).view(f"<u{width}")


def _shuffle(arr: np.ndarray) -> np.ndarray:
    """Byte planes: all first bytes, then all second bytes... (as Blosc's shuffle filter)."""
    width = arr.itemsize
    if width == 1:
        return arr
    elements = arr.view(np.uint8).reshape(-1, width)
    planes = np.empty((width, elements.shape[0]), dtype=np.uint8)
    for i in range(width):  # one strided pass per plane: twice numpy's 2-D transpose here
        planes[i] = elements[:, i]
    return planes.reshape(-1)


def _pack(cctx: Any, data: np.ndarray, shuffle: bool) -> tuple[bytes | memoryview, str, bool]:
    """zstd of the (shuffled) bytes, or the raw bytes when zstd does not make them smaller."""
    raw = memoryview(np.ascontiguousarray(data)).cast("B")
    if len(raw) < ALIGN:
        return raw, "none", False
    packed = memoryview(np.ascontiguousarray(_shuffle(data))).cast("B") if shuffle else raw
    squeezed = cctx.compress(packed)
    if len(squeezed) < len(raw):
        return squeezed, "zstd", shuffle
    return raw, "none", False


def _sign_bit(dtype: str, width: int) -> int:
    """The sign bit of a float dtype's bit pattern (0 for integers and bool)."""
    return 1 << (8 * width - 1) if DTYPES[dtype][0].is_floating_point else 0


def _encode(tensor: torch.Tensor, writer: _BlobWriter, cctx: Any) -> dict[str, Any]:
    """Write one tensor as the smaller of its dense and bitmask encodings; its spec."""
    dtype = _DTYPE_NAMES[tensor.dtype]
    bits = _bits(tensor)
    count = bits.size
    sign = _sign_bit(dtype, bits.itemsize)
    # Zero by value: -0.0 is a zero too (a mask multiplied into negative weights leaves
    # them), and its sign is kept apart so the file still loads bit-exact.
    present = (bits & bits.dtype.type(~sign & (2 ** (8 * bits.itemsize) - 1))) != 0
    nonzero = int(np.count_nonzero(present))
    spec: dict[str, Any] = {"dtype": dtype, "shape": list(tensor.shape), "nonzero": nonzero}
    shuffle = bits.itemsize > 1
    dense = _pack(cctx, bits, shuffle)
    # A presence bit costs 1/8 byte per element: try the bitmask only where zeros could pay.
    if count - nonzero >= count / (8 * bits.itemsize) and count >= ALIGN:
        mask = _pack(cctx, np.packbits(present), False)
        values = _pack(cctx, bits[present], shuffle)
        negative = bits[~present] != 0 if sign else None
        signs = (
            _pack(cctx, np.packbits(negative), False)
            if negative is not None and negative.any()
            else None
        )
        size = len(mask[0]) + len(values[0]) + (len(signs[0]) if signs else 0)
        if size < len(dense[0]):
            spec["encoding"] = "bitmask"
            spec["mask"] = writer.blob(mask[0], codec=mask[1])
            spec["values"] = writer.blob(values[0], codec=values[1], shuffle=values[2])
            if signs is not None:
                spec["zero_signs"] = writer.blob(signs[0], codec=signs[1])
            return spec
    spec["encoding"] = "dense"
    spec["data"] = writer.blob(dense[0], codec=dense[1], shuffle=dense[2])
    return spec


# ----------------------------------------------------------------------------- reading
def looks_compressed(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts this format's preamble."""
    return head[:12] == MAGIC + KIND


def is_compressed(path: str | Path) -> bool:
    """Content detection for core.loading: does the file start with this format's magic?"""
    try:
        with Path(path).open("rb") as fh:
            return looks_compressed(fh.read(12))
    except OSError:
        return False


class _Bad(Exception):
    """Something in the file is not as the layout says; the message says what."""


def read_header(path: str | Path) -> dict[str, Any]:
    """The checked JSON header (tensor specs, entries, metadata) without decoding tensors."""
    path = Path(path)
    with _open_map(path) as view:
        return _checked_header(path, view)


def read(
    path: str | Path, memory_limit: int | None = None
) -> tuple[OrderedDict[str, Any], dict[str, Any]]:
    """Load the state dict and the metadata of a compressed file, bit-exact.

    Every size, offset, dtype and encoding in the header is checked against the file before
    anything is decoded, and the total the tensors need is checked against ``memory_limit``
    (default: the memory available now), so a damaged or hostile file ends in one
    ModelLoadError naming the file, never in a crash or an unbounded allocation.
    """
    path = Path(path)
    with _open_map(path) as view:
        header = _checked_header(path, view)
        need = _decoded_bytes(header)
        limit = memory_limit if memory_limit is not None else _available_memory()
        if need > limit:
            raise ModelLoadError(
                f"{path.name}: declares {need / 2**30:.2f} GiB of tensors, more than the "
                f"{limit / 2**30:.2f} GiB of memory available"
            )
        try:
            tensors = _decode_all(header, view)
            state = OrderedDict()
            for entry in header["entries"]:
                state[entry["key"]] = _build_value(entry, tensors)
        except _Bad as exc:
            raise ModelLoadError(f"{path.name}: damaged compressed file ({exc})") from None
    if header["module_metadata"]:
        state._metadata = OrderedDict(header["module_metadata"])  # type: ignore[attr-defined]
    return state, header["metadata"]


class _open_map:
    """A read-only memory map of the file (nothing is read until a blob is decoded)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None
        self.map: mmap.mmap | None = None
        self.view: memoryview | None = None

    def __enter__(self) -> memoryview:
        path = self.path
        try:
            self.fh = path.open("rb")
            size = path.stat().st_size
            if size < PREAMBLE.size + TRAILER.size:
                raise ModelLoadError(
                    f"{path.name}: is truncated ({size} bytes, too short for a compressed file)"
                )
            self.map = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ModelLoadError:
            self.__exit__()
            raise
        except IsADirectoryError:
            self.__exit__()
            raise ModelLoadError(f"{path}: is a folder, not a model file") from None
        except OSError as exc:
            self.__exit__()
            raise ModelLoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        self.view = memoryview(self.map)
        return self.view

    def __exit__(self, *exc: object) -> None:
        # Slices of the view are local to the decoding functions and gone by now; should
        # one survive (a traceback), the map closes when it is collected instead.
        try:
            if self.view is not None:
                self.view.release()
            if self.map is not None:
                self.map.close()
        except BufferError:
            pass
        if self.fh is not None:
            self.fh.close()


def _checked_header(path: Path, view: memoryview) -> dict[str, Any]:
    name = path.name
    size = len(view)
    magic, kind, version = PREAMBLE.unpack(view[: PREAMBLE.size])
    if magic != MAGIC or kind != KIND:
        raise ModelLoadError(f"{name}: is not a Secateur compressed file (wrong magic bytes)")
    if version != FORMAT_VERSION:
        raise ModelLoadError(
            f"{name}: is compressed format version {version}; this Secateur reads version "
            f"{FORMAT_VERSION} (update Secateur)"
        )
    offset, length, end_magic = TRAILER.unpack(view[size - TRAILER.size :])
    if end_magic != MAGIC:
        raise ModelLoadError(f"{name}: is truncated or damaged (its trailer is missing)")
    if length > MAX_HEADER_BYTES or offset < PREAMBLE.size or offset + length > size - TRAILER.size:
        raise ModelLoadError(
            f"{name}: is damaged (header at {offset} of {length} bytes does not fit the "
            f"{size}-byte file)"
        )
    try:
        header = json.loads(bytes(view[offset : offset + length]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{name}: damaged header ({first_line(exc, 120)})") from None
    try:
        _check_header(header, offset)
    except _Bad as exc:
        raise ModelLoadError(f"{name}: damaged header ({exc})") from None
    return header


def _need(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _Bad(f"{where}: missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise _Bad(f"{where}.{key}: {str(value)[:60]!r} is not a {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _check_header(header: Any, data_end: int) -> None:
    if not isinstance(header, dict):
        raise _Bad("the header is not a JSON object")
    if _need(header, "version", int, "header") != FORMAT_VERSION:
        raise _Bad(f"version {header['version']!r} is not {FORMAT_VERSION}")
    _need(header, "metadata", dict, "header")
    modules = _need(header, "module_metadata", dict, "header")
    for prefix, values in modules.items():
        if not isinstance(values, dict) or not all(
            isinstance(v, bool | int | str) for v in values.values()
        ):
            raise _Bad(f"module_metadata[{prefix!r}] is not a mapping of plain values")
    specs = _need(header, "tensors", dict, "header")
    for tname, spec in specs.items():
        _check_tensor(tname, spec, specs, data_end)
    entries = _need(header, "entries", list, "header")
    keys = set()
    for i, entry in enumerate(entries):
        key = _need(entry, "key", str, f"entries[{i}]")
        if key in keys:
            raise _Bad(f"entries[{i}]: key {key!r} appears twice")
        keys.add(key)
        _check_value(entry, specs, f"entries[{i}]", 0)


def _check_tensor(name: str, spec: Any, specs: dict, data_end: int) -> None:
    where = f"tensors[{name!r}]"
    if isinstance(spec, dict) and "same_as" in spec:
        target = _need(spec, "same_as", str, where)
        if target not in specs or "same_as" in specs[target]:
            raise _Bad(f"{where}.same_as: {target!r} is not a stored tensor")
        return
    dtype = _need(spec, "dtype", str, where)
    if dtype not in DTYPES:
        raise _Bad(f"{where}.dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    shape = _need(spec, "shape", list, where)
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise _Bad(f"{where}.shape: {str(shape)[:60]} is not a list of sizes")
    if len(shape) > 64 or math.prod(shape) > MAX_ELEMENTS:
        raise _Bad(f"{where}.shape: {str(shape)[:60]} is too large")
    nonzero = _need(spec, "nonzero", int, where)
    if not 0 <= nonzero <= math.prod(shape):
        raise _Bad(f"{where}.nonzero: {nonzero} is not between 0 and the element count")
    encoding = _need(spec, "encoding", str, where)
    if encoding == "dense":
        _check_blob(spec, "data", where, data_end, shuffle=True)
    elif encoding == "bitmask":
        _check_blob(spec, "mask", where, data_end, shuffle=False)
        _check_blob(spec, "values", where, data_end, shuffle=True)
        if "zero_signs" in spec:
            if not DTYPES[dtype][0].is_floating_point:
                raise _Bad(f"{where}.zero_signs: only float tensors have signed zeros")
            _check_blob(spec, "zero_signs", where, data_end, shuffle=False)
    else:
        raise _Bad(f"{where}.encoding: {encoding!r} is not one of {', '.join(ENCODINGS)}")


def _check_blob(spec: dict, part: str, where: str, data_end: int, shuffle: bool) -> None:
    blob = _need(spec, part, dict, where)
    where = f"{where}.{part}"
    offset = _need(blob, "offset", int, where)
    length = _need(blob, "length", int, where)
    if offset < PREAMBLE.size or length < 0 or offset + length > data_end:
        raise _Bad(f"{where}: bytes {offset}..{offset + length} lie outside the data section")
    codec = _need(blob, "codec", str, where)
    if codec not in CODECS:
        raise _Bad(f"{where}.codec: {codec!r} is not one of {', '.join(CODECS)}")
    _need(blob, "crc32", int, where)
    if shuffle:
        _need(blob, "shuffle", bool, where)
    elif blob.get("shuffle"):
        raise _Bad(f"{where}.shuffle: a mask is never shuffled")


_VALUE_KINDS = ("tensor", "none", "dtype", "tuple", "quantized", "torchao.Int8Tensor")


def _check_value(value: Any, specs: dict, where: str, depth: int) -> None:
    kind = _need(value, "kind", str, where)

    def tensor_ref(key: str, obj: dict = value) -> None:
        ref = _need(obj, key, str, where)
        if ref not in specs:
            raise _Bad(f"{where}.{key}: {ref!r} is not a stored tensor")

    if kind == "tensor":
        tensor_ref("tensor")
    elif kind == "none":
        pass
    elif kind == "dtype":
        dtype = _need(value, "value", str, where)
        if dtype not in DTYPES and dtype not in _QUANT_DTYPES:
            raise _Bad(f"{where}.value: {dtype!r} is not a known dtype")
    elif kind == "tuple":
        if depth >= 4:
            raise _Bad(f"{where}: tuples nest too deeply")
        for i, item in enumerate(_need(value, "items", list, where)):
            _check_value(item, specs, f"{where}.items[{i}]", depth + 1)
    elif kind == "quantized":
        if _need(value, "dtype", str, where) not in _QUANT_DTYPES:
            raise _Bad(f"{where}.dtype: {value['dtype']!r} is not qint8, quint8 or qint32")
        tensor_ref("int_repr")
        scheme = _need(value, "qscheme", str, where)
        if scheme == "per_tensor_affine":
            tensor_ref("scale")
            tensor_ref("zero_point")
        elif scheme == "per_channel_affine":
            tensor_ref("scales")
            tensor_ref("zero_points")
            _need(value, "axis", int, where)
        else:
            raise _Bad(f"{where}.qscheme: {scheme!r} is not a known quantization scheme")
    elif kind == "torchao.Int8Tensor":
        parts = _need(value, "tensors", dict, where)
        if "qdata" not in parts or "scale" not in parts:
            raise _Bad(f"{where}.tensors: needs 'qdata' and 'scale'")
        for part in parts:
            tensor_ref(part, parts)
        block = _need(value, "block_size", list, where)
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in block):
            raise _Bad(f"{where}.block_size: {str(block)[:60]} is not a list of integers")
        if _need(value, "dtype", str, where) not in DTYPES:
            raise _Bad(f"{where}.dtype: {value['dtype']!r} is not a known dtype")
        act = value.get("act_quant_kwargs")
        if act is not None:
            gran = _need(act, "granularity", dict, f"{where}.act_quant_kwargs")
            if gran.get("type") not in ("PerRow", "PerTensor"):
                raise _Bad(f"{where}: activation granularity {gran.get('type')!r} is not known")
            _need(act, "mapping_type", str, f"{where}.act_quant_kwargs")
            _need(act, "reduce_range", bool, f"{where}.act_quant_kwargs")
    else:
        raise _Bad(f"{where}.kind: {kind!r} is not one of {', '.join(_VALUE_KINDS)}")


def _decoded_bytes(header: dict[str, Any]) -> int:
    """Bytes the decoded tensors need (each mask and shuffle buffer counted once more)."""
    total = 0
    for spec in header["tensors"].values():
        if "same_as" in spec:
            continue
        count = math.prod(spec["shape"])
        total += 2 * count * DTYPES[spec["dtype"]][1].itemsize + count // 8
    return total


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency; be generous without it
        return 2**62


def _decode_all(header: dict[str, Any], view: memoryview) -> dict[str, torch.Tensor]:
    specs = header["tensors"]
    dctx = _zstd().ZstdDecompressor()
    out: dict[str, torch.Tensor] = {}
    for name, spec in specs.items():
        if "same_as" not in spec:
            out[name] = _decode(name, spec, view, dctx)
    for name, spec in specs.items():
        if "same_as" in spec:
            out[name] = out[spec["same_as"]]
    return out


def _blob_bytes(
    view: memoryview, blob: dict[str, Any], expected: int, dctx: Any, where: str
) -> np.ndarray:
    """The blob's bytes, checked (crc32, exact decoded size), as a writable uint8 array."""
    data = view[blob["offset"] : blob["offset"] + blob["length"]]
    if zlib.crc32(data) != blob["crc32"]:
        raise _Bad(f"{where}: checksum mismatch (the bytes are damaged)")
    out = np.empty(expected, dtype=np.uint8)
    if blob["codec"] == "none":
        if len(data) != expected:
            raise _Bad(f"{where}: holds {len(data)} bytes where {expected} are needed")
        out[:] = np.frombuffer(data, dtype=np.uint8)
        return out
    zstandard = _zstd()
    try:
        declared = zstandard.frame_content_size(data)
        if declared != expected:
            raise _Bad(f"{where}: zstd frame declares {declared} bytes where {expected} are needed")
        with dctx.stream_reader(data, read_across_frames=False) as reader:
            target = memoryview(out)
            filled = 0
            while filled < expected:
                got = reader.readinto(target[filled:])
                if not got:
                    raise _Bad(f"{where}: zstd stream ends after {filled} of {expected} bytes")
                filled += got
            if reader.read(1):
                raise _Bad(f"{where}: zstd stream holds more than {expected} bytes")
    except zstandard.ZstdError as exc:
        raise _Bad(f"{where}: zstd data is damaged ({first_line(exc, 80)})") from None
    return out


def _unshuffle(raw: np.ndarray, itemsize: int, shuffled: bool) -> np.ndarray:
    if not shuffled or itemsize == 1:
        return raw
    planes = raw.reshape(itemsize, -1)
    elements = np.empty((planes.shape[1], itemsize), dtype=np.uint8)
    for i in range(itemsize):
        elements[:, i] = planes[i]
    return elements.reshape(-1)


def _scatter(count: int, mask: np.ndarray, values: np.ndarray, where: str) -> np.ndarray:
    """``count`` elements, zero but where the packed ``mask`` has a 1: there the values, in
    order. Block by block, so the unpacked mask stays in cache and no index is built."""
    out = np.zeros(count, dtype=values.dtype)
    used = 0
    for start in range(0, count, _SCATTER_BLOCK):
        stop = min(start + _SCATTER_BLOCK, count)
        bits = np.unpackbits(mask[start // 8 : (stop + 7) // 8], count=stop - start).view(bool)
        marked = int(np.count_nonzero(bits))
        if used + marked > values.size:
            raise _Bad(f"{where}: the mask marks more elements than there are values")
        np.place(out[start:stop], bits, values[used : used + marked])
        used += marked
    if used != values.size:
        raise _Bad(f"{where}: the mask marks {used} elements for {values.size} values")
    return out


def _decode(name: str, spec: dict[str, Any], view: memoryview, dctx: Any) -> torch.Tensor:
    torch_dtype, bits_dtype = DTYPES[spec["dtype"]]
    shape = spec["shape"]
    count = math.prod(shape)
    width = bits_dtype.itemsize
    where = f"tensor {name!r}"
    if spec["encoding"] == "dense":
        blob = spec["data"]
        raw = _blob_bytes(view, blob, count * width, dctx, where)
        bits = _unshuffle(raw, width, blob["shuffle"]).view(bits_dtype)
    else:
        mask = _blob_bytes(view, spec["mask"], (count + 7) // 8, dctx, f"{where} mask")
        nonzero = spec["nonzero"]
        vblob = spec["values"]
        raw = _blob_bytes(view, vblob, nonzero * width, dctx, f"{where} values")
        values = _unshuffle(raw, width, vblob["shuffle"]).view(bits_dtype)
        bits = _scatter(count, mask, values, where)
        if "zero_signs" in spec:
            zeros = count - nonzero
            plane = _blob_bytes(view, spec["zero_signs"], (zeros + 7) // 8, dctx, f"{where} signs")
            negative = np.flatnonzero(np.unpackbits(plane, count=zeros))
            if negative.size:
                zero_index = np.flatnonzero(bits == 0)  # before any sign is set
                bits[zero_index[negative]] = _sign_bit(spec["dtype"], width)
    native = bits.astype(bits.dtype.newbyteorder("="), copy=False)
    if width == 1:
        if torch_dtype == torch.bool and native.size and int(native.max()) > 1:
            raise _Bad(f"{where}: a bool tensor holds values other than 0 and 1")
        return torch.from_numpy(native).view(torch_dtype).reshape(shape)
    signed = torch.from_numpy(native.view(f"=i{width}"))
    return signed.view(torch_dtype).reshape(shape)


def _build_value(value: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    kind = value["kind"]
    if kind == "tensor":
        return tensors[value["tensor"]]
    if kind == "none":
        return None
    if kind == "dtype":
        name = value["value"]
        return _QUANT_DTYPES[name] if name in _QUANT_DTYPES else DTYPES[name][0]
    if kind == "tuple":
        return tuple(_build_value(item, tensors) for item in value["items"])
    if kind == "quantized":
        return _build_quantized(value, tensors)
    return _build_int8(value, tensors)


def _build_quantized(value: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    from core import compat

    ints = tensors[value["int_repr"]]
    try:
        with compat.quiet():
            if value["qscheme"] == "per_tensor_affine":
                return torch._make_per_tensor_quantized_tensor(
                    ints, float(tensors[value["scale"]]), int(tensors[value["zero_point"]])
                )
            return torch._make_per_channel_quantized_tensor(
                ints, tensors[value["scales"]], tensors[value["zero_points"]], value["axis"]
            )
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise _Bad(f"quantized tensor {value['int_repr']!r}: {first_line(exc, 100)}") from None


def _build_int8(value: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    from core import compat

    ao = compat.torchao()
    from torchao.quantization.quantize_.workflows import QuantizeTensorToInt8Kwargs

    act = value.get("act_quant_kwargs")
    act_kwargs = None
    try:
        if act is not None:
            gran = act["granularity"]
            if gran["type"] == "PerRow":
                granularity = ao.PerRow(gran.get("dim", -1))
            else:
                granularity = ao.PerTensor()
            act_kwargs = QuantizeTensorToInt8Kwargs(
                granularity=granularity,
                mapping_type=ao.MappingType[act["mapping_type"]],
                reduce_range=act["reduce_range"],
            )
        parts = {k: tensors[ref] for k, ref in value["tensors"].items()}
        return ao.Int8Tensor(
            **parts,
            block_size=list(value["block_size"]),
            dtype=DTYPES[value["dtype"]][0],
            act_quant_kwargs=act_kwargs,
            reduce_range=value.get("reduce_range"),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _Bad(
            f"Int8Tensor {value['tensors'].get('qdata')!r}: {first_line(exc, 100)}"
        ) from None
