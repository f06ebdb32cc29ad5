"""Reading a ``--format compressed`` file: detection by content, the header, and the tensors
back, bit-exact, with every offset, size, codec and checksum checked before anything is
decoded (the layout is ``core.compressed``'s and ``docs/compressed-format.md``'s)."""

from __future__ import annotations

import json
import math
import mmap
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from core.compressed import (
    CODECS,
    DTYPES,
    ENCODINGS,
    FORMAT_VERSION,
    KIND,
    MAGIC,
    MAX_ELEMENTS,
    MAX_HEADER_BYTES,
    PREAMBLE,
    QUANT_DTYPES,
    SCATTER_BLOCK,
    TRAILER,
    sign_bit,
    zstd_module,
)
from core.errors import ModelLoadError, first_line


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
        if dtype not in DTYPES and dtype not in QUANT_DTYPES:
            raise _Bad(f"{where}.value: {dtype!r} is not a known dtype")
    elif kind == "tuple":
        if depth >= 4:
            raise _Bad(f"{where}: tuples nest too deeply")
        for i, item in enumerate(_need(value, "items", list, where)):
            _check_value(item, specs, f"{where}.items[{i}]", depth + 1)
    elif kind == "quantized":
        if _need(value, "dtype", str, where) not in QUANT_DTYPES:
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
    dctx = zstd_module().ZstdDecompressor()
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
    zstandard = zstd_module()
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
    for start in range(0, count, SCATTER_BLOCK):
        stop = min(start + SCATTER_BLOCK, count)
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
                bits[zero_index[negative]] = sign_bit(spec["dtype"], width)
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
        return QUANT_DTYPES[name] if name in QUANT_DTYPES else DTYPES[name][0]
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
