"""Every save format round-trips; saves are atomic; the input model file is protected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from toy_models import mlp

from core.data import Dataset
from core.engine import compress, run
from core.errors import SaveError, UnsupportedError
from core.inventory import quantization_of
from core.loading import LoadedModel, load_demo, load_model
from core.recipe import parse_recipe
from core.saving import save_model

ARCH = f"{Path(__file__).with_name('toy_models.py')}:mlp"
DATA = Dataset(torch.randn(32, 16, generator=torch.Generator().manual_seed(3)), None, "x")

RECIPES = {
    "pruned": "version: 1\nprune: [{amount: 0.5}]",
    "torchao_int8": "version: 1\nprune: [{amount: 0.5}]\nquantize: {scheme: int8_dynamic}",
    "legacy_int8": "version: 1\nquantize: {scheme: int8_dynamic, backend: legacy}",
    "weight_only": "version: 1\nquantize: {scheme: int8_weight_only}",
    "fp16": "version: 1\nquantize: {scheme: fp16}",
    "bf16": "version: 1\nquantize: {scheme: bf16}",
    "masks_kept": "version: 1\nprune: [{amount: 0.5, permanent: false}]",
}
# What each format can hold; the rest must be refused with a reason, never half-written.
REFUSED = {
    ("torchao_int8", "pickle"),
    ("torchao_int8", "torchscript"),
    ("weight_only", "pickle"),
    ("weight_only", "torchscript"),
    ("legacy_int8", "exported"),
    ("masks_kept", "exported"),
}


def _compressed(recipe_key: str):
    loaded = LoadedModel(mlp(), "m.pt", "state_dict", None, ARCH)
    return run(compress(loaded, parse_recipe(RECIPES[recipe_key]), data=DATA))


@pytest.mark.parametrize("recipe_key", list(RECIPES))
@pytest.mark.parametrize("fmt", ["state_dict", "pickle", "torchscript", "exported"])
def test_round_trip(tmp_path, recipe_key, fmt) -> None:
    result = _compressed(recipe_key)
    out = tmp_path / "out.bin"
    if (recipe_key, fmt) in REFUSED:
        with pytest.raises(UnsupportedError, match=r"out\.bin: "):
            save_model(result.model, out, fmt, DATA, result.sidecar, arch=ARCH)
        assert os.listdir(tmp_path) == []
        return
    outcome = save_model(result.model, out, fmt, DATA, result.sidecar, arch=ARCH)
    assert outcome.round_trip == {"ok": True, "max_abs_error": outcome.round_trip["max_abs_error"]}
    assert outcome.file_bytes == out.stat().st_size > 0
    # reload independently and compare on fresh inputs
    reloaded = load_model(out, arch=ARCH, trust=True).model
    x = torch.randn(7, 16)
    with torch.inference_mode():
        assert torch.allclose(reloaded(x), result.model(x), atol=1e-5)
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert leftovers == []


def test_masks_kept_in_state_dict(tmp_path) -> None:
    result = _compressed("masks_kept")
    out = tmp_path / "masked.pt"
    save_model(result.model, out, "state_dict", DATA, result.sidecar, arch=ARCH)
    keys = set(torch.load(out, weights_only=True))
    assert "fc1.weight_orig" in keys and "fc1.weight_mask" in keys


def test_safetensors_state_dict(tmp_path) -> None:
    result = _compressed("pruned")
    out = tmp_path / "out.safetensors"
    outcome = save_model(result.model, out, "state_dict", DATA, None, arch=ARCH)
    assert outcome.round_trip["ok"] is True
    with pytest.raises(UnsupportedError, match="cannot hold quantized tensors"):
        q = _compressed("torchao_int8")
        save_model(q.model, tmp_path / "q.safetensors", "state_dict", DATA, q.sidecar, arch=ARCH)


def test_quantized_state_dict_sidecar_rebuilds(tmp_path) -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe("version: 1\nquantize: {scheme: int8_dynamic, backend: legacy}")
    result = run(compress(loaded, recipe, data=test, skip_metrics=True))
    out = tmp_path / "q.pt"
    outcome = save_model(result.model, out, "state_dict", test, result.sidecar, arch=loaded.arch)
    assert outcome.sidecar == tmp_path / "q.pt.secateur.json"
    again = load_model(out, arch=loaded.arch)
    assert quantization_of(again.model.fc1) == "int8_dynamic (legacy)"
    # without the sidecar the file no longer fits the float architecture: said plainly
    outcome.sidecar.unlink()
    with pytest.raises(Exception, match="does not fit the architecture"):
        load_model(out, arch=loaded.arch)


def test_failed_serialisation_leaves_nothing(tmp_path, monkeypatch) -> None:
    result = _compressed("pruned")
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous content")

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(SaveError, match=r"out\.pt: serialisation failed \(disk on fire\)"):
        save_model(result.model, out, "state_dict", DATA, None, arch=ARCH)
    assert out.read_bytes() == b"previous content"
    assert sorted(os.listdir(tmp_path)) == ["out.pt"]


def test_full_disk_leaves_nothing(tmp_path, monkeypatch) -> None:
    result = _compressed("pruned")
    out = tmp_path / "out.pt"
    real_fsync = os.fsync

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(SaveError, match="No space left on device"):
        save_model(result.model, out, "state_dict", DATA, None, arch=ARCH)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert os.listdir(tmp_path) == []


def test_read_only_folder(tmp_path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a missing folder exercises the same refusal path
        target = tmp_path / "missing" / "out.pt"
        with pytest.raises(SaveError, match="does not exist"):
            save_model(_compressed("pruned").model, target, "state_dict", DATA, arch=ARCH)
        return
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    with pytest.raises(SaveError, match="permission denied"):
        save_model(_compressed("pruned").model, folder / "out.pt", "state_dict", DATA, arch=ARCH)


def test_refuses_to_overwrite_input_model(tmp_path) -> None:
    source = tmp_path / "model.pt"
    torch.save(mlp().state_dict(), source)
    original = source.read_bytes()
    result = _compressed("pruned")
    with pytest.raises(SaveError, match=r"is the model you opened"):
        save_model(result.model, source, "state_dict", DATA, protected=source, arch=ARCH)
    assert source.read_bytes() == original
    outcome = save_model(
        result.model, source, "state_dict", DATA, protected=source, force=True, arch=ARCH
    )
    assert outcome.round_trip["ok"] is True


@pytest.mark.parametrize("stop_at", [1, 2])
def test_cancelled_save_leaves_nothing(tmp_path, stop_at) -> None:
    from core.errors import Cancelled

    result = _compressed("pruned")
    out = tmp_path / "out.pt"
    out.write_bytes(b"old")
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= stop_at

    with pytest.raises(Cancelled):
        save_model(result.model, out, "state_dict", DATA, None, arch=ARCH, should_stop=stop)
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["out.pt"]


def test_memory_estimate_warns_when_it_will_not_fit() -> None:
    from core.memory import estimate

    model = mlp()
    recipe = parse_recipe(RECIPES["torchao_int8"])
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    roomy = estimate(model, recipe, available=100 * size)
    assert roomy.model_bytes == size and roomy.fits and roomy.warning() is None
    tight = estimate(model, recipe, available=size)
    assert not tight.fits and "GiB is available" in (tight.warning() or "")
    assert roomy.peak_bytes >= 2 * size


def test_saved_file_gets_usual_permissions(tmp_path) -> None:
    from core.saving import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "r.json", b"{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
