"""Saving always works: the default format can hold the result, a forced format that cannot
is refused before any work, a state dict of a pickled model reloads through the original's
class, a save without any input is still checked; and the two new formats (ONNX with ONNX
Runtime int8, compressed) through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from toy_models import convnet, mlp

from core.cli import main
from core.data import Dataset
from core.engine import compress, run
from core.formats import SAVE_FORMATS, default_format, recipe_view
from core.loading import LoadedModel, load_model
from core.recipe import parse_recipe
from core.saving import default_option, save_model
from core.tasks import save_formats, save_result

TORCHAO = "version: 1\nquantize: {scheme: int8_dynamic, types: [Linear]}\n"
ORT = "version: 1\nquantize: {scheme: int8_dynamic, backend: onnxruntime, types: [Linear]}\n"


def _cli(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_the_default_format_holds_the_result(tmp_path) -> None:
    out = tmp_path / "o.pt"
    torchao = recipe_view(parse_recipe(TORCHAO))
    assert default_format("pickle", torchao, out) == "state_dict"  # a pickle cannot hold it
    assert default_format("pickle", recipe_view(parse_recipe("version: 1")), out) == "pickle"
    assert default_format("demo", torchao, out) == "state_dict"
    ort = recipe_view(parse_recipe(ORT))
    assert SAVE_FORMATS["onnx"].refuses(ort, out) is None


@pytest.mark.parametrize(
    "recipe, fmt, reason",
    [
        (TORCHAO, "pickle", "cannot be pickled"),
        (TORCHAO, "torchscript", "TorchScript cannot hold torchao"),
        (TORCHAO, "onnx", "cannot be exported to ONNX"),
        (ORT, "state_dict", "can only be saved with --format onnx"),
        ("version: 1\nprune: [{amount: 0.5, permanent: false}]\n", "exported", "masks"),
    ],
)
def test_a_forced_format_that_cannot_hold_it_is_refused_first(
    recipe, fmt, reason, tmp_path, capsys, monkeypatch
) -> None:
    import core.cli

    def must_not_run(*args, **kwargs):
        raise AssertionError("the compression ran before the refusal")

    monkeypatch.setattr(core.cli, "compress_model", must_not_run)
    path = tmp_path / "r.yaml"
    path.write_text(recipe)
    out = tmp_path / "o.bin"
    argv = ["compress", "--demo", "--recipe", str(path), "--output", str(out), "--format", fmt]
    code, _, err = _cli(argv, capsys)
    assert code == 2 and len(err) == 1 and reason in err[0], err
    assert not out.exists()


def test_a_state_dict_from_a_pickled_model_reloads_through_its_class(tmp_path, capsys) -> None:
    source = tmp_path / "model.pt"
    torch.save(mlp(), source)  # a full pickle: no --arch anywhere
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TORCHAO)
    out = tmp_path / "small.pt"
    argv = ["compress", str(source), "--trust", "--recipe", str(recipe), "--output", str(out)]
    argv += ["--input-shape", "4x16", "--report", str(tmp_path / "r.json")]
    code, _, err = _cli(argv, capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["output"]["format"] == "state_dict"  # the default that can hold torchao
    assert report["round_trip"]["ok"] is True, report["round_trip"]


def test_without_any_input_a_linear_first_model_runs_on_an_inferred_input(tmp_path) -> None:
    loaded = LoadedModel(mlp(), "m.pt", "pickle")
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.5}]")
    result = run(compress(loaded, recipe))  # no data, no input shape
    outcome = run(save_result(result, loaded, tmp_path / "o.pt", "pickle"))
    assert outcome.round_trip["ok"] is True and outcome.round_trip["max_abs_error"] == 0.0
    assert "reason" not in outcome.round_trip  # it ran: no exact comparison instead


def test_without_any_input_other_models_compare_every_saved_tensor(tmp_path) -> None:
    loaded = LoadedModel(convnet(), "m.pt", "pickle")
    result = run(compress(loaded, parse_recipe("version: 1\nprune: [{amount: 0.5}]")))
    outcome = run(save_result(result, loaded, tmp_path / "o.pt", "pickle"))
    assert outcome.round_trip["ok"] is True
    assert "compared exactly" in outcome.round_trip["reason"]


def test_onnx_with_onnx_runtime_int8_reports_both_runtimes(tmp_path, capsys) -> None:
    recipe = tmp_path / "ort.yaml"
    recipe.write_text(ORT)
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    argv = ["compress", "--demo", "--recipe", str(recipe), "--output", str(out)]
    code, stdout, err = _cli([*argv, "--format", "onnx", "--report", str(report)], capsys)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["round_trip"]["ok"] is True
    ort = data["after"]["onnxruntime"]
    assert ort["onnxruntime_ms"] > 0 and "onnxruntime" in ort["onnxruntime_runtime"]
    assert "torch" in ort["torch_runtime"] and data["after"]["latency_runtime"].startswith("torch")
    assert data["after"]["file_bytes"] < 0.4 * data["before"]["state_dict_bytes"]  # int8 file
    rows = {row["name"]: row for row in data["layers"]}
    assert rows["fc1"]["quantization"].endswith("at export")
    assert "onnx file in onnx runtime" in stdout
    code, stdout, err = _cli(["inspect", str(out)], capsys)
    assert code == 0 and "ONNX, int8" in stdout and "MatMulInteger" in stdout, err


def test_compressed_files_open_with_their_architecture(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nprune: [{amount: 0.9}]\n" + TORCHAO.split("\n", 1)[1])
    out = tmp_path / "m.secz"
    argv = ["compress", "--demo", "--recipe", str(recipe), "--output", str(out)]
    code, _, err = _cli([*argv, "--format", "compressed"], capsys)
    assert code == 0, err
    loaded = load_model(out, arch="core.demo:build_model")
    assert loaded.format == "compressed" and loaded.eager
    code, stdout, _ = _cli(["inspect", str(out), "--arch", "core.demo:build_model"], capsys)
    assert code == 0 and "fc1" in stdout


@pytest.mark.parametrize("kind", ["onnx", "secz"])
def test_a_truncated_file_given_to_inspect_is_one_line(kind, tmp_path, capsys) -> None:
    loaded = LoadedModel(mlp(), "m.pt", "pickle")
    data = Dataset(torch.randn(4, 16), None, "x")
    fmt = "onnx" if kind == "onnx" else "compressed"
    good = tmp_path / f"good.{kind}"
    save_model(loaded.model, good, fmt, data, arch="toy_models:mlp")
    bad = tmp_path / f"bad.{kind}"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code, _, err = _cli(["inspect", str(bad), "--arch", "toy_models:mlp"], capsys)
    assert code == 2 and len(err) == 1 and bad.name in err[0], err
    assert Path(good).is_file()


def test_format_options_say_which_can_hold_a_result_and_predict_its_size(tmp_path) -> None:
    """The save dialog's list (issue 12): every format, why one cannot hold this result, and
    the size each file will have; the sizes measured by a byte counter are the files'."""
    model = mlp()
    loaded = LoadedModel(model, "mlp.pt", "pickle")
    data = Dataset((torch.randn(16, 8),), None, "x.npz")
    result = run(compress(loaded, parse_recipe(TORCHAO), data=data, skip_metrics=True))
    options = {o.name: o for o in run(save_formats(result, tmp_path / "mlp-small"))}
    assert tuple(options) == tuple(SAVE_FORMATS.names())
    assert "cannot be pickled" in options["pickle"].reason
    assert "TorchScript cannot hold torchao" in options["torchscript"].reason
    assert not options["pickle"].reason.startswith("mlp-small")  # the file name is cut off
    assert options["pickle"].size is None
    assert options["state_dict"].available and options["compressed"].available
    assert default_option(list(options.values()), "pickle") == "state_dict"
    for fmt in ("state_dict", "compressed"):
        assert options[fmt].exact
        out = tmp_path / f"o{options[fmt].suffix}"
        outcome = save_model(result.model, out, fmt, data, result.sidecar)
        assert outcome.path.stat().st_size == options[fmt].size, fmt
    assert options["compressed"].size < options["state_dict"].size


def test_format_options_without_an_input_refuse_the_traced_formats(tmp_path) -> None:
    model = convnet()
    loaded = LoadedModel(model, "c.pt", "pickle")
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.5}]\n")
    result = run(compress(loaded, recipe, skip_metrics=True))  # no data, no input shape
    options = {o.name: o for o in run(save_formats(result, tmp_path / "c"))}
    for fmt in ("torchscript", "exported", "onnx"):
        assert "needs an input to trace" in options[fmt].reason, fmt
    assert options["pickle"].available and options["pickle"].exact
    assert default_option(list(options.values()), "pickle") == "pickle"
