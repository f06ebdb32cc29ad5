"""ONNX files: export with a dynamic batch, int8 through ONNX Runtime, refusals before any
work, atomic writes, the onnxruntime round trip and latency, and inspection of .onnx files."""

from __future__ import annotations

import copy
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from toy_models import convnet, mlp, two_inputs

from core import compat
from core import onnx_export as ox
from core import onnx_runtime as ort
from core.data import Dataset
from core.demo import load_demo_model
from core.engine import compress, run
from core.errors import Cancelled, ModelLoadError, SaveError, UnsupportedError
from core.loading import LoadedModel
from core.recipe import parse_recipe

GEN = torch.Generator().manual_seed(0)
DATA = Dataset(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)), None, "x")


def _engine(recipe: str) -> nn.Module:
    loaded = LoadedModel(mlp(), "m.pt", "state_dict")
    return run(compress(loaded, parse_recipe("version: 1\n" + recipe), data=DATA)).model


# name: (model, one sample's shape, the batch it is exported with)
CASES = {
    "demo": (load_demo_model, (1, 8, 8), 1),  # a batch of one must still export a dynamic N
    "pruned_mlp": (lambda: _engine("prune: [{amount: 0.5}]"), (16,), 1),
    "convnet": (convnet, (3, 8, 8), 4),
}


def _inputs(shape: tuple[int, ...], batch: int) -> torch.Tensor:
    return torch.rand((batch, *shape), generator=GEN)


def _ort(path: Path, feed: dict[str, torch.Tensor]) -> list[np.ndarray]:
    session = ort.open_session(path, threads=1)
    return session.run(None, {k: v.numpy() for k, v in feed.items()})


@pytest.fixture(scope="module")
def float_files(tmp_path_factory) -> dict[str, tuple[nn.Module, Path, ox.OnnxFile]]:
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, (build, shape, batch) in CASES.items():
        model = build()
        written = ox.export_onnx(model, folder / f"{name}.onnx", (_inputs(shape, batch),), {})
        out[name] = (model, written.path, written)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_float_export_round_trips_at_any_batch(float_files, name) -> None:
    model, path, written = float_files[name]
    shape = CASES[name][1]
    assert written.file_bytes == path.stat().st_size and written.data_path is None
    assert written.quantized_nodes == 0 and written.input_names == ["x"]
    x = _inputs(shape, 4)
    check = ort.verify_onnx(model, path, (x,), {})
    assert check["ok"] is True, check
    assert len(set(check["batch_sizes"])) == 2  # the example's batch and another one
    summary = ort.describe_onnx(path)
    assert summary.inputs[0][1][0] == "batch"  # a named dynamic dimension
    for batch in (1, 13):
        x = _inputs(shape, batch)
        (got,) = _ort(path, {"x": x})
        with torch.inference_mode():
            assert np.allclose(got, model(x).numpy(), atol=1e-5)


def test_keyword_inputs_and_a_dataclass_output(tmp_path) -> None:
    model = two_inputs()
    kwargs = {"right": torch.randn(3, 4), "left": torch.randn(3, 6)}  # not signature order
    written = ox.export_onnx(model, tmp_path / "two.onnx", (), kwargs)
    assert written.input_names == ["right", "left"]
    assert ort.verify_onnx(model, written.path, (), kwargs)["ok"] is True
    feed = {"left": torch.randn(5, 6), "right": torch.randn(5, 4)}
    logits, extra = _ort(written.path, feed)
    with torch.inference_mode():
        out = model(**feed)
    assert np.allclose(logits, out.logits.numpy(), atol=1e-5)
    assert np.allclose(extra, out.extra.numpy(), atol=1e-5)


def test_positional_inputs_take_the_parameter_names(tmp_path) -> None:
    model = two_inputs()
    args = (torch.randn(2, 6), torch.randn(2, 4))
    written = ox.export_onnx(model, tmp_path / "two.onnx", args, {})
    assert written.input_names == ["left", "right"]
    assert ort.verify_onnx(model, written.path, args, {})["ok"] is True


def test_an_exported_program_module_exports(tmp_path) -> None:
    x = torch.randn(2, 3, 8, 8)
    program = torch.export.export(convnet(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    module = program.module()
    written = ox.export_onnx(module, tmp_path / "from_pt2.onnx", (x,), {})
    assert ort.verify_onnx(module, written.path, (x,), {})["ok"] is True


def test_the_round_trip_catches_a_file_that_does_not_match(float_files) -> None:
    model, path, _ = float_files["pruned_mlp"]
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.weight.mul_(1.5)
    check = ort.verify_onnx(other, path, (torch.randn(4, 16),), {})
    assert check["ok"] is False and "differ" in check["reason"]


# ----------------------------------------------------------------------------- int8
def test_ort_int8_on_an_mlp(tmp_path, float_files) -> None:
    model = mlp()
    x = torch.randn(8, 16)
    written = ox.export_onnx(model, tmp_path / "int8.onnx", (x,), {}, int8=True)
    assert written.int8 and written.quantized_nodes == 3  # fc1, fc2, head
    assert ox.INT8_NOTE in written.notes
    assert written.file_bytes < float_files["pruned_mlp"][2].file_bytes
    check = ort.verify_onnx(model, written.path, (x,), {}, int8=True)
    assert check["ok"] is True, check
    assert 0 < check["relative_error"] <= ox.INT8_TOLERANCE  # quantized, not a float copy
    summary = ort.describe_onnx(written.path)
    assert summary.int8
    assert {row.dtype for row in summary.layers if row.op == "MatMulInteger"} == {"int8"}


def test_ort_int8_leaves_convolutions_float(tmp_path) -> None:
    model = convnet()
    x = torch.randn(2, 3, 8, 8)
    written = ox.export_onnx(model, tmp_path / "conv_int8.onnx", (x,), {}, int8=True)
    ops = {row.op for row in ort.describe_onnx(written.path).layers}
    assert "Conv" in ops and "ConvInteger" not in ops
    assert written.quantized_nodes == 1  # the classifier
    assert ort.verify_onnx(model, written.path, (x,), {}, int8=True)["ok"] is True


# ----------------------------------------------------------------------------- refusals
def _scripted() -> nn.Module:
    with compat.quiet():  # torch.jit.trace is deprecated upstream
        return torch.jit.trace(mlp(), torch.randn(2, 16))


REFUSED = {
    "torchao": (lambda: _engine("quantize: {scheme: int8_dynamic}"), "aten._int_mm"),
    "torchao_weight_only": (
        lambda: _engine("quantize: {scheme: int8_weight_only}"),
        "backend: onnxruntime",
    ),
    "legacy": (
        lambda: _engine("quantize: {scheme: int8_dynamic, backend: legacy}"),
        "torch.ao's packed int8",
    ),
    "masks": (lambda: _engine("prune: [{amount: 0.5, permanent: false}]"), "permanent: true"),
    "bf16": (lambda: _engine("quantize: {scheme: bf16}"), "no bf16"),
    "torchscript": (_scripted, "TorchScript"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_before_any_work(tmp_path, monkeypatch, case) -> None:
    build, expected = REFUSED[case]
    model = build()
    assert expected in (ox.why_not_onnx(model) or "")

    def no_work(*args, **kwargs):
        raise AssertionError("the export started although the model cannot be exported")

    monkeypatch.setattr(ox, "export_program", no_work)
    with pytest.raises(UnsupportedError, match=r"^out\.onnx: cannot be saved as ONNX: "):
        ox.export_onnx(model, tmp_path / "out.onnx", (torch.randn(2, 16),), {})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "backend, scheme, permanent, expected",
    [
        ("torchao", "int8_dynamic", True, ox.TORCHAO_REASON),
        ("torchao", "int8_weight_only", True, ox.TORCHAO_REASON),
        ("legacy", "int8_dynamic", True, ox.LEGACY_REASON),
        ("torchao", "bf16", True, ox.BF16_REASON),
        (None, None, False, ox.MASKS_REASON),
        ("onnxruntime", "int8_weight_only", True, "int8_dynamic only"),
        ("onnxruntime", "int8_dynamic", True, None),
        ("torchao", "fp16", True, None),
        (None, None, True, None),
    ],
)
def test_recipe_refusals_use_the_same_words(backend, scheme, permanent, expected) -> None:
    reason = ox.why_not_onnx_recipe(backend, scheme, permanent)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_fp16_exports_but_not_with_ort_int8(tmp_path) -> None:
    model = _engine("quantize: {scheme: fp16}")
    assert ox.why_not_onnx(model) is None
    assert "fp16" in (ox.why_not_onnx(model, int8=True) or "")
    x = torch.randn(3, 16)
    written = ox.export_onnx(model, tmp_path / "half.onnx", (x,), {})
    assert ort.verify_onnx(model, written.path, (x,), {})["ok"] is True


# ----------------------------------------------------------------------------- atomic
@pytest.fixture(scope="module")
def mlp_program():
    """One export of the MLP, reused: these tests are about writing, not exporting."""
    return ox.export_program(mlp(), (torch.randn(2, 16),), {}, Path("model.onnx"))


@pytest.fixture
def old_target(tmp_path, monkeypatch, mlp_program) -> Path:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"the previous file")
    monkeypatch.setattr(ox, "export_program", lambda *args: mlp_program)
    return target


def _untouched(target: Path) -> None:
    assert target.read_bytes() == b"the previous file"
    assert sorted(os.listdir(target.parent)) == [target.name]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_writing_leaves_nothing(old_target, monkeypatch) -> None:
    original = torch.onnx.ONNXProgram.save

    def half_then_full(self, destination, **kwargs):
        original(self, destination, **kwargs)
        Path(destination).write_bytes(Path(destination).read_bytes()[:100])
        _disk_full()

    monkeypatch.setattr(torch.onnx.ONNXProgram, "save", half_then_full)
    with pytest.raises(SaveError, match=r"model\.onnx: write failed \(No space left on device\)"):
        ox.export_onnx(mlp(), old_target, (torch.randn(2, 16),), {})
    _untouched(old_target)


def test_a_full_disk_at_fsync_leaves_nothing(old_target, monkeypatch) -> None:
    monkeypatch.setattr(ox, "_fsync", _disk_full)
    with pytest.raises(SaveError, match="No space left on device"):
        ox.export_onnx(mlp(), old_target, (torch.randn(2, 16),), {}, int8=True)
    _untouched(old_target)


def test_a_failing_quantization_leaves_nothing(old_target, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("Inferred shape and existing shape differ")

    monkeypatch.setattr(ox, "_quantize", broken)
    with pytest.raises(UnsupportedError, match="Inferred shape and existing shape differ"):
        ox.export_onnx(mlp(), old_target, (torch.randn(2, 16),), {}, int8=True)
    _untouched(old_target)


def test_cancel_leaves_nothing(old_target) -> None:
    calls = []

    def stop_on_second_check() -> bool:
        calls.append(1)
        return len(calls) >= 2

    with pytest.raises(Cancelled):
        ox.export_onnx(
            mlp(), old_target, (torch.randn(2, 16),), {}, should_stop=stop_on_second_check
        )
    _untouched(old_target)


def test_over_the_one_file_limit_the_weights_go_beside_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ox, "ONE_FILE_LIMIT", 1000)
    model, x = mlp(), torch.randn(3, 16)
    for int8 in (False, True):
        path = tmp_path / f"large_{int8}.onnx"
        written = ox.export_onnx(model, path, (x,), {}, int8=int8)
        assert written.data_path == tmp_path / f"large_{int8}.onnx.data"
        assert written.file_bytes == path.stat().st_size + written.data_path.stat().st_size
        assert ort.verify_onnx(model, path, (x,), {}, int8=int8)["ok"] is True
        assert ort.describe_onnx(path).file_bytes == written.file_bytes
    assert sorted(os.listdir(tmp_path)) == [
        "large_False.onnx",
        "large_False.onnx.data",
        "large_True.onnx",
        "large_True.onnx.data",
    ]
    # inspect: the weights file must be there, and beside the .onnx (never elsewhere)
    data = (tmp_path / "large_False.onnx").read_bytes()
    hostile = tmp_path / "hostile.onnx"
    name = b"large_False.onnx.data"
    hostile.write_bytes(data.replace(name, b"../" + b"x" * (len(name) - 3)))  # same length
    assert "outside its own folder" in _one_line_error(hostile)
    (tmp_path / "large_False.onnx.data").unlink()
    assert "weights file large_False.onnx.data is missing" in _one_line_error(
        tmp_path / "large_False.onnx"
    )


def test_a_missing_folder_is_one_line(tmp_path) -> None:
    with pytest.raises(SaveError, match="does not exist"):
        ox.export_onnx(mlp(), tmp_path / "nope" / "m.onnx", (torch.randn(2, 16),), {})


# ----------------------------------------------------------------------------- latency
def test_paired_latency_names_each_runtime(float_files) -> None:
    model, path, _ = float_files["demo"]
    threads = torch.get_num_threads()
    lat = ort.paired_onnx_latency_ms(
        model, path, (torch.rand(1, 1, 8, 8),), {}, threads=1, min_runs=3, budget_s=0.05
    )
    assert lat.torch_ms > 0 and lat.onnxruntime_ms > 0 and lat.ratio > 0
    assert lat.threads == 1 and lat.batch == 1
    assert lat.torch_runtime.startswith("torch ") and "1 thread)" in lat.torch_runtime
    assert lat.onnxruntime_runtime.startswith("onnxruntime ")
    assert set(lat.as_dict()) >= {"torch_ms", "onnxruntime_ms", "onnxruntime_runtime"}
    assert torch.get_num_threads() == threads


# ----------------------------------------------------------------------------- inspect
def test_layer_table(float_files) -> None:
    model, path, _ = float_files["pruned_mlp"]
    summary = ort.describe_onnx(path)
    assert summary.parameters == sum(p.numel() for p in model.parameters())
    gemms = [row for row in summary.layers if row.op == "Gemm"]
    assert [row.shape for row in gemms] == [(32, 16), (32, 32), (4, 32)]
    for row, layer in zip(gemms, (model.fc1, model.fc2, model.head)):
        zeros = float((layer.weight == 0).float().mean())
        assert row.dtype == "float32" and row.sparsity == pytest.approx(zeros) and zeros > 0
    assert summary.outputs[0][1] == ("batch", 4)
    assert summary.file_bytes == path.stat().st_size


def test_detection_by_content(float_files, tmp_path) -> None:
    _, path, _ = float_files["demo"]
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(path.read_bytes())
    assert ort.is_onnx(renamed)
    state = tmp_path / "state.onnx"
    torch.save(mlp().state_dict(), state)
    assert not ort.is_onnx(state)
    assert not ort.is_onnx(tmp_path / "missing.onnx")


def _one_line_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        ort.describe_onnx(path)
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    return message


@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.5, 0.9, 0.99])
def test_truncated_onnx(float_files, tmp_path, fraction) -> None:
    data = float_files["convnet"][1].read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: max(1, int(len(data) * fraction))])
    assert "damaged or truncated" in _one_line_error(cut)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "empty"),
        (b"\x08\x0a\x12\x07pytorch" + np.random.default_rng(0).bytes(300), "damaged or truncated"),
        (b"not an onnx model at all", "damaged or truncated"),
    ],
)
def test_garbage_onnx(tmp_path, content, expected) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(content)
    assert expected in _one_line_error(path)
