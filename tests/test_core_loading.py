"""Every loader format, detected by content; failures are one line naming the file."""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from toy_models import identical, mlp, state_of

from core.errors import ArchRequiredError, ModelLoadError, TrustRequiredError
from core.loading import detect_format, load_demo, load_model

ARCH_FILE = str(Path(__file__).with_name("toy_models.py"))
ARCH = f"{ARCH_FILE}:mlp"


def _check_same(loaded_model, reference) -> None:
    x = torch.randn(5, 16)
    with torch.inference_mode():
        assert torch.equal(loaded_model(x), reference(x))


def test_state_dict_pt_with_arch_file(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "model.pth"
    torch.save(ref.state_dict(), path)
    loaded = load_model(path, arch=ARCH)
    assert loaded.format == "state_dict" and loaded.class_name == "MLP"
    _check_same(loaded.model, ref)


def test_state_dict_with_module_arch(tmp_path) -> None:
    from core.demo import load_demo_model

    ref = load_demo_model()
    path = tmp_path / "digits.bin"  # extension says nothing; content decides
    torch.save(ref.state_dict(), path)
    loaded = load_model(path, arch="core.demo:build_model")
    assert identical(state_of(loaded.model), state_of(ref))


def test_nested_training_checkpoint(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": ref.state_dict(), "lr": 0.1}, path)
    _check_same(load_model(path, arch=ARCH).model, ref)


def test_safetensors(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    assert detect_format(path) == "safetensors"
    _check_same(load_model(path, arch=ARCH).model, ref)


def test_state_dict_needs_arch(tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save(mlp().state_dict(), path)
    with pytest.raises(ArchRequiredError, match=r"model\.pt: holds a state dict .* --arch"):
        load_model(path)


def test_pickle_refused_without_trust_then_loads(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "full.pt"
    torch.save(ref, path)
    with pytest.raises(TrustRequiredError, match=r"full\.pt: is a full pickled model"):
        load_model(path)
    loaded = load_model(path, trust=True)
    assert loaded.format == "pickle"
    _check_same(loaded.model, ref)


def test_torchscript(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's own deprecation
        torch.jit.save(torch.jit.script(ref), str(path))
    assert detect_format(path) == "torchscript"
    loaded = load_model(path)
    assert loaded.format == "torchscript" and loaded.class_name == "MLP"
    _check_same(loaded.model, ref)


def test_exported_program(tmp_path) -> None:
    ref = mlp()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(ref, (torch.randn(5, 16),)), str(path))
    assert detect_format(path) == "exported"
    loaded = load_model(path)
    assert loaded.format == "exported"
    _check_same(loaded.model, ref)


def test_demo_loads_with_its_data() -> None:
    loaded, test, train = load_demo()
    assert loaded.format == "demo" and loaded.class_name == "DigitsCNN"
    assert len(test) == 450 and len(train) == 1347 and test.y is not None


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path) -> None:
    state = mlp().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    state["fc1.weight"] = torch.zeros(3, 3)
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as info:
        load_model(path, arch=ARCH)
    message = str(info.value)
    assert message.startswith("other.pt: does not fit the architecture")
    assert "1 missing keys (first: head.bias)" in message
    assert "1 unexpected keys (first: extra.weight)" in message
    assert "fc1.weight (3, 3) vs (32, 16)" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty (0 bytes)"),
        (b"hello, this is text\n", "is a text file, not a PyTorch model file"),
        (json.dumps({"a": 1}).encode(), "looks like JSON text"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "is a PNG image"),
        (b"\xfe\xff\xfa\x81" * 64, "holds unrecognised binary data"),
    ],
)
def test_not_a_model(tmp_path, content, expected) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=re.escape(f"bad.pt: {expected}")):
        load_model(path)


def test_truncated_zip(tmp_path) -> None:
    buf = io.BytesIO()
    torch.save(mlp().state_dict(), buf)
    path = tmp_path / "cut.pt"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.pt: is a damaged or truncated archive"):
        load_model(path, arch=ARCH)


def test_zip_that_is_not_torch(tmp_path) -> None:
    path = tmp_path / "z.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ModelLoadError, match="zip archive but not a PyTorch file"):
        load_model(path)


def test_folder_and_missing(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "nope.pt")


@pytest.mark.parametrize(
    ("source", "spec_suffix", "expected"),
    [
        (None, "missing.py:f", "no such file"),
        ("def f(:\n", ":f", "syntax error at line 1"),
        ("x = 1\n", ":f", "has no callable named 'f'"),
        ("def f():\n    raise ValueError('no')\n", ":f", "raised ValueError (no)"),
        ("def f():\n    return 42\n", ":f", "returned a int, not an nn.Module"),
        ("raise ImportError('gone')\n", ":f", "raised ImportError when imported"),
    ],
)
def test_arch_errors(tmp_path, source, spec_suffix, expected) -> None:
    state_path = tmp_path / "m.pt"
    torch.save(mlp().state_dict(), state_path)
    if source is None:
        spec = str(tmp_path / spec_suffix)
    else:
        arch = tmp_path / "arch.py"
        arch.write_text(source)
        spec = f"{arch}{spec_suffix}"
    with pytest.raises(ModelLoadError, match=re.escape(expected)):
        load_model(state_path, arch=spec)


def test_arch_spec_without_colon(tmp_path) -> None:
    path = tmp_path / "m.pt"
    torch.save(mlp().state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"is not FILE\.py:callable"):
        load_model(path, arch="toy_models")
