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
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from core.errors import SaveError, UnsupportedError, first_line

MAGIC = b"SECATEUR"
KIND = b"CMPR"
FORMAT_VERSION = 1
SUFFIX = ".secz"
PREAMBLE = struct.Struct("<8s4sI")  # magic, kind, version: 16 bytes
TRAILER = struct.Struct("<QQ8s")  # header offset, header length, magic: 24 bytes
ALIGN = 64  # every blob starts at a multiple of this (so raw blobs can be mapped directly)
MAX_HEADER_BYTES = 64 * 2**20  # ~200,000 tensors; bounds the JSON parser's memory
MAX_ELEMENTS = 2**40  # per tensor: far above any real layer, far below an overflow
SCATTER_BLOCK = 2**18  # elements per block when a bitmask is expanded
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
QUANT_DTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32}
_QUANT_NAMES = {v: k for k, v in QUANT_DTYPES.items()}
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
def zstd_module() -> Any:
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
    cctx = zstd_module().ZstdCompressor(level=level, write_content_size=True)
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


def sign_bit(dtype: str, width: int) -> int:
    """The sign bit of a float dtype's bit pattern (0 for integers and bool)."""
    return 1 << (8 * width - 1) if DTYPES[dtype][0].is_floating_point else 0


def _encode(tensor: torch.Tensor, writer: _BlobWriter, cctx: Any) -> dict[str, Any]:
    """Write one tensor as the smaller of its dense and bitmask encodings; its spec."""
    dtype = _DTYPE_NAMES[tensor.dtype]
    bits = _bits(tensor)
    count = bits.size
    sign = sign_bit(dtype, bits.itemsize)
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
