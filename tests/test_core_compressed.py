"""The compressed format: every tensor kind round-trips bit-exact, zeros and int8 are stored
compactly, and damaged or hostile files end in one ModelLoadError naming the file."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from torch import nn
from toy_models import mlp

from core import compressed, compressed_read
from core.data import Dataset
from core.engine import compress, run
from core.errors import ModelLoadError, UnsupportedError
from core.loading import LoadedModel, load_state_strict, sidecar_from
from core.metrics import CountingSink
from core.recipe import parse_recipe

DATA = Dataset(torch.randn(32, 16, generator=torch.Generator().manual_seed(3)), None, "x")
RECIPES = {
    "float": None,
    "pruned_90": "prune: [{amount: 0.9}]",
    "pruned_int8_dynamic_per_row": "prune: [{amount: 0.5}]\nquantize: {scheme: int8_dynamic}",
    "int8_dynamic_per_tensor": "quantize: {scheme: int8_dynamic, granularity: per_tensor}",
    "int8_weight_only_per_row": "quantize: {scheme: int8_weight_only}",
    "int8_weight_only_per_tensor": "quantize: {scheme: int8_weight_only, granularity: per_tensor}",
    "legacy_per_channel": "quantize: {scheme: int8_dynamic, backend: legacy}",
    "legacy_per_tensor": (
        "quantize: {scheme: int8_dynamic, backend: legacy, granularity: per_tensor}"
    ),
    "fp16": "quantize: {scheme: fp16}",
    "bf16": "quantize: {scheme: bf16}",
    "masks_kept": "prune: [{amount: 0.5, permanent: false}]",
}


def _compressed(key: str):
    if RECIPES[key] is None:
        return mlp(), None
    loaded = LoadedModel(mlp(), "m.pt", "state_dict")
    result = run(compress(loaded, parse_recipe("version: 1\n" + RECIPES[key]), data=DATA))
    return result.model, result.sidecar


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Bit patterns, so -0.0 vs 0.0 and NaN payloads count as differences."""
    t = t.contiguous()
    if t.dtype == torch.bool:
        return t.view(torch.uint8)
    if t.is_floating_point():
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def same_value(a, b) -> bool:
    """Bit-exact equality of two state-dict values of any kind Secateur writes (a Parameter
    inside torch.ao's packed tuple comes back as the plain tensor load_state_dict takes)."""
    plain = (torch.Tensor, nn.Parameter)
    if type(a) is not type(b) and not (type(a) in plain and type(b) in plain):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if not isinstance(a, torch.Tensor):
        return a == b
    if type(a).__name__ == "Int8Tensor":
        names = ["qdata", "scale", "zero_point", "act_quant_scale", "act_pre_scale"]
        return (
            all(same_value(getattr(a, n, None), getattr(b, n, None)) for n in names)
            and a.block_size == b.block_size
            and a.act_quant_kwargs == b.act_quant_kwargs
            and a.dtype == b.dtype
            and a.reduce_range == b.reduce_range
        )
    if a.is_quantized:
        if a.qscheme() != b.qscheme() or a.dtype != b.dtype:
            return False
        if a.qscheme() == torch.per_channel_affine:
            qparams = (
                same_value(a.q_per_channel_scales(), b.q_per_channel_scales())
                and same_value(a.q_per_channel_zero_points(), b.q_per_channel_zero_points())
                and a.q_per_channel_axis() == b.q_per_channel_axis()
            )
        else:
            qparams = a.q_scale() == b.q_scale() and a.q_zero_point() == b.q_zero_point()
        return qparams and torch.equal(a.int_repr(), b.int_repr())
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _write(tmp_path: Path, state, metadata=None, name: str = "m.secz") -> Path:
    path = tmp_path / name
    with path.open("wb") as fh:
        compressed.write(state, fh, metadata)
    return path


@pytest.mark.parametrize("key", list(RECIPES))
def test_every_kind_round_trips_bit_exact(tmp_path, key) -> None:
    model, quantized = _compressed(key)
    state = model.state_dict()
    path = _write(tmp_path, model, quantized)
    loaded, metadata = compressed_read.read(path)
    assert list(loaded) == list(state)
    bad = [k for k in state if not same_value(state[k], loaded[k])]
    assert bad == []
    assert metadata == (quantized or {})
    assert loaded._metadata == state._metadata  # torch's module versions (legacy needs them)
    # The metadata is enough to rebuild the quantized modules of a fresh architecture.
    fresh = mlp()
    if quantized:
        sidecar_from(metadata, path.name).rebuild(fresh)
    if key == "masks_kept":
        for name in ("fc1", "fc2", "head"):
            nn.utils.prune.identity(getattr(fresh, name), "weight")
    load_state_strict(fresh, loaded, path.name)
    x = torch.randn(9, 16)
    with torch.inference_mode():
        assert torch.equal(fresh(x), model(x))


def test_demo_model_round_trips(tmp_path) -> None:
    from core.demo import load_demo_model

    model = load_demo_model()
    path = _write(tmp_path, model)
    loaded, _ = compressed_read.read(path)
    assert all(same_value(v, loaded[k]) for k, v in model.state_dict().items())
    assert loaded["bn1.num_batches_tracked"].dtype == torch.int64


def test_awkward_tensors_round_trip(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    odd = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-45] * 20)
    nan_payload = torch.tensor([0x7FC00001, 0x7F800001, -1], dtype=torch.int32).view(torch.float32)
    shared = torch.randn(64, 8, generator=gen)
    state = {
        "odd": odd,
        "nan_payload": nan_payload,
        "f64": torch.randn(33, generator=gen, dtype=torch.float64),
        "f16": torch.randn(300, generator=gen).half(),
        "bf16_sparse": torch.randn(300, generator=gen).bfloat16() * (torch.rand(300) > 0.8),
        "i32": torch.randint(-(2**31), 2**31 - 1, (100,), generator=gen, dtype=torch.int32),
        "i16": torch.randint(-100, 100, (70,), generator=gen, dtype=torch.int16),
        "u8": torch.randint(0, 255, (90,), generator=gen, dtype=torch.uint8),
        "flags": torch.rand(200, generator=gen) > 0.7,
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": torch.randn(8, 64, generator=gen).t(),  # not contiguous
        "all_zero": torch.zeros(128, 128),
        "tied_a": shared,
        "tied_b": shared,
        "nothing": None,
    }
    path = _write(tmp_path, state)
    loaded, _ = compressed_read.read(path)
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert same_value(value, loaded[key]), key
    header = compressed_read.read_header(path)
    assert header["tensors"]["tied_b"] == {"same_as": "tied_a"}
    assert header["tensors"]["all_zero"]["encoding"] == "bitmask"


def _fp32_bytes(state) -> int:
    return sum(v.numel() * 4 for v in state.values())


def test_sparse_and_int8_layers_are_stored_compactly(tmp_path) -> None:
    """The targets of issue 12 on a real-sized layer: 90%-sparse float and 50%-sparse int8."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(512, 512, generator=gen)
    keep = torch.rand(512, 512, generator=gen)
    sparse = {"w": torch.where(keep > 0.9, weight, 0.0)}
    path = _write(tmp_path, sparse, name="sparse.secz")
    assert path.stat().st_size <= 0.20 * _fp32_bytes(sparse)
    spec = compressed_read.read_header(path)["tensors"]["w"]
    assert spec["encoding"] == "bitmask" and "zero_signs" not in spec
    # A mask multiplied into the weights leaves -0.0 where they were negative: still a
    # bitmask, the signs of the zeros kept apart, and bit-exact.
    signed = {"w": weight * (keep > 0.9)}
    path = _write(tmp_path, signed, name="signed.secz")
    spec = compressed_read.read_header(path)["tensors"]["w"]
    assert spec["encoding"] == "bitmask" and "zero_signs" in spec
    assert same_value(compressed_read.read(path)[0]["w"], signed["w"])
    scale = weight.abs().amax(1, keepdim=True) / 127
    ints = (weight / scale).round().to(torch.int8) * (keep > 0.5)
    path = _write(tmp_path, {"w": ints}, name="int8.secz")
    assert path.stat().st_size <= 0.17 * ints.numel() * 4
    dense = {"w": weight}
    path = _write(tmp_path, dense, name="dense.secz")
    assert compressed_read.read_header(path)["tensors"]["w"]["encoding"] == "dense"
    assert path.stat().st_size < _fp32_bytes(dense)  # byte shuffling finds the exponents


def test_size_is_predicted_without_writing(tmp_path) -> None:
    model, quantized = _compressed("pruned_int8_dynamic_per_row")
    sink = CountingSink()
    summary = compressed.write(model, sink, quantized)
    path = _write(tmp_path, model, quantized)
    assert summary.file_bytes == sink.size == path.stat().st_size
    assert summary.by_encoding()["bitmask"] >= 3  # the three pruned int8 weights


def test_reading_never_unpickles(tmp_path, monkeypatch) -> None:
    model, quantized = _compressed("legacy_per_channel")
    path = _write(tmp_path, model, quantized)

    def refuse(*args, **kwargs):
        raise AssertionError("the compressed reader must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    loaded, _ = compressed_read.read(path)
    assert set(loaded) == set(model.state_dict())


@pytest.mark.parametrize(
    "value, expected",
    [
        (torch.randn(4, 4).to_sparse(), "sparse_coo"),
        (torch.randn(4, dtype=torch.complex64), "complex64"),
        ("a string", "holds a str"),
    ],
)
def test_what_it_cannot_hold_is_refused_before_writing(value, expected) -> None:
    state = {"fine": torch.ones(3), "bad": value}
    reason = compressed.why_not_compressed(state)
    assert reason is not None and expected in reason and reason.startswith("bad")
    sink = io.BytesIO()
    with pytest.raises(UnsupportedError, match=expected):
        compressed.write(state, sink)
    assert sink.getvalue() == b""
    assert compressed.why_not_compressed(mlp()) is None


def test_detection_by_content(tmp_path) -> None:
    path = _write(tmp_path, mlp(), name="weights.bin")
    assert compressed_read.is_compressed(path)
    other = tmp_path / "state.secz"
    torch.save(mlp().state_dict(), other)
    assert not compressed_read.is_compressed(other)
    assert not compressed_read.is_compressed(tmp_path / "missing")


# ----------------------------------------------------------------------------- damage
@pytest.fixture
def good(tmp_path) -> Path:
    model, quantized = _compressed("pruned_int8_dynamic_per_row")
    return _write(tmp_path, model, quantized, name="good.secz")


def _one_line_error(path: Path, **kwargs) -> str:
    with pytest.raises(ModelLoadError) as info:
        compressed_read.read(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path.name), message
    return message


def _rewrite_header(path: Path, edit) -> Path:
    """The same blobs under an edited header (a hostile or buggy writer)."""
    data = path.read_bytes()
    offset, length, _ = struct.unpack("<QQ8s", data[-24:])
    header = json.loads(data[offset : offset + length])
    edit(header)
    blob = json.dumps(header).encode()
    bad = path.with_name("bad.secz")
    bad.write_bytes(data[:offset] + blob + struct.pack("<QQ8s", offset, len(blob), b"SECATEUR"))
    return bad


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.6, 0.95, 0.999])
def test_truncated_files(good, fraction) -> None:
    data = good.read_bytes()
    cut = good.with_name("cut.secz")
    cut.write_bytes(data[: int(len(data) * fraction)])
    message = _one_line_error(cut)
    assert "truncated" in message or "empty" in message or "damaged" in message


def test_flipped_bits_in_the_data_are_caught(good) -> None:
    header = compressed_read.read_header(good)
    spec = next(s for s in header["tensors"].values() if s.get("encoding") == "bitmask")
    data = bytearray(good.read_bytes())
    data[spec["values"]["offset"] + 3] ^= 0x10
    bad = good.with_name("flipped.secz")
    bad.write_bytes(bytes(data))
    assert "checksum" in _one_line_error(bad)


def _entry(header, kind):
    return next(e for e in header["entries"] if e["kind"] == kind)


def _first(header, encoding="bitmask"):
    return next(s for s in header["tensors"].values() if s.get("encoding") == encoding)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda h: _first(h).__setitem__("shape", [2**40, 2**20]), "too large"),
        (lambda h: _first(h).__setitem__("shape", [-1]), "is not a list of sizes"),
        (lambda h: _first(h)["mask"].__setitem__("offset", 2**50), "outside the data section"),
        (lambda h: _first(h)["values"].__setitem__("length", 2**31), "outside the data section"),
        (lambda h: _first(h)["values"].__setitem__("codec", "lz4"), "'lz4' is not one of"),
        (lambda h: _first(h).__setitem__("encoding", "rle"), "'rle' is not one of"),
        (lambda h: _first(h).__setitem__("dtype", "float8"), "'float8' is not one of"),
        (lambda h: h["entries"][0].__setitem__("kind", "pickle"), "'pickle' is not one of"),
        (lambda h: _entry(h, "tensor").__setitem__("tensor", "nowhere"), "not a stored tensor"),
        (lambda h: h.__setitem__("version", 99), "version 99"),
        (lambda h: h.pop("tensors"), "missing 'tensors'"),
        (lambda h: _first(h).__setitem__("nonzero", 1), "are needed"),
        (lambda h: _first(h, "dense")["data"].__setitem__("crc32", 0), "checksum"),
    ],
)
def test_hostile_headers(good, edit, expected) -> None:
    bad = _rewrite_header(good, edit)
    assert expected in _one_line_error(bad)


def test_declared_size_must_match_the_zstd_frame(good) -> None:
    def grow(header):
        spec = _first(header, "dense")
        if spec["data"]["codec"] != "zstd":
            pytest.skip("no zstd dense blob in this file")
        spec["shape"] = [*spec["shape"][:-1], spec["shape"][-1] + 1]

    bad = _rewrite_header(good, grow)
    assert "zstd frame declares" in _one_line_error(bad)


def test_memory_is_checked_before_anything_is_decoded(good) -> None:
    message = _one_line_error(good, memory_limit=1000)
    assert "more than the" in message and "memory available" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "truncated"),
        (b"SECATEUR" + b"\0" * 40, "not a Secateur compressed file"),
        (b"SECATEURCMPR" + struct.pack("<I", 7) + b"\0" * 40, "version 7"),
        (b"SECATEURCMPR" + struct.pack("<I", 1) + b"\0" * 40, "trailer is missing"),
        (
            b"SECATEURCMPR"
            + struct.pack("<I", 1)
            + b"{]"
            + struct.pack("<QQ8s", 16, 2, b"SECATEUR"),
            "damaged header",
        ),
        (
            b"SECATEURCMPR"
            + struct.pack("<I", 1)
            + b"[" * 100_000
            + struct.pack("<QQ8s", 16, 100_000, b"SECATEUR"),
            "damaged header",
        ),
        (
            b"SECATEURCMPR" + struct.pack("<I", 1) + struct.pack("<QQ8s", 2**60, 9, b"SECATEUR"),
            "does not fit",
        ),
    ],
)
def test_garbage_files(tmp_path, content, expected) -> None:
    path = tmp_path / "junk.secz"
    path.write_bytes(content)
    assert expected in _one_line_error(path)
