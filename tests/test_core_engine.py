"""The engine end to end: the demo acceptance run, independent re-measurement, cancellation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy_models import identical, mlp, state_of, two_inputs

from core.data import Dataset, load_data
from core.demo import build_model
from core.demos import DEMO_RECIPE_PATH, TEST_DATA_PATH
from core.engine import compress, run
from core.errors import Cancelled, DataError
from core.loading import LoadedModel, load_demo, load_model
from core.recipe import parse_recipe

ROOT = Path(__file__).resolve().parent.parent
QUICK_RECIPE_PATH = Path(__file__).with_name("quick_recipe.yaml")
ACCEPTANCE = """
version: 1
prune:
  - layers: ["*"]
    types: [Conv2d, Linear]
    method: l1_unstructured
    amount: 0.5
quantize:
  scheme: int8_dynamic
  types: [Linear]
"""


@pytest.fixture(scope="module")
def acceptance_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("acceptance")
    recipe = out_dir / "r.yaml"
    recipe.write_text(ACCEPTANCE)
    out, report = out_dir / "out.pt", out_dir / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gui.launcher",
            "compress",
            "--demo",
            "--recipe",
            str(recipe),
            "--output",
            str(out),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(report.read_text()), proc.stdout


def test_acceptance_report(acceptance_run) -> None:
    _, report, stdout = acceptance_run
    assert report["report_version"] == 1
    assert report["before"]["accuracy"] >= 0.95
    layers = {row["name"]: row for row in report["layers"]}
    for name in ("conv1", "conv2", "fc1", "fc2"):
        row = layers[name]
        numel = {"conv1": 288, "conv2": 9216, "fc1": 131072, "fc2": 2560}[name]
        assert abs(row["sparsity_after"] - 0.5) <= 1 / numel, name
        assert row["pruning"] == "l1_unstructured"
    assert layers["fc1"]["quantization"].startswith("int8_dynamic")
    assert layers["conv1"]["quantization"] is None
    assert report["after"]["state_dict_bytes"] < report["before"]["state_dict_bytes"]
    assert report["round_trip"]["ok"] is True
    assert "accuracy" in stdout and "round trip: ok" in stdout


def test_acceptance_numbers_recomputed_from_file(acceptance_run) -> None:
    """Load OUT with nothing but torch, torchao and the sidecar, and re-measure."""
    out, report, _ = acceptance_run
    from core import compat

    compat.torchao()  # registers torchao's tensor classes as safe for weights_only loads
    state = torch.load(out, weights_only=True)
    param_keys = {name for name, _ in build_model().named_parameters()}
    assert out.stat().st_size == report["after"]["file_bytes"]
    sidecar = json.loads(out.with_name(out.name + ".secateur.json").read_text())
    assert list(sidecar["layers"]) == ["fc1", "fc2"]
    assert {q["scheme"] for q in sidecar["layers"].values()} == {"int8_dynamic"}
    rows = {row["name"]: row for row in report["layers"]}
    total = nonzero = 0
    for key, tensor in state.items():
        if key not in param_keys:
            continue  # buffers (BatchNorm statistics) are not parameters
        data = getattr(tensor, "qdata", tensor)
        total += data.numel()
        nonzero += int(torch.count_nonzero(data))
        layer, _, field = key.rpartition(".")
        if field == "weight":
            sparsity = 1 - int(torch.count_nonzero(data)) / data.numel()
            assert rows[layer]["sparsity_after"] == pytest.approx(sparsity, abs=1e-12)
            if layer in ("fc1", "fc2"):
                assert data.dtype == torch.int8
    assert total == report["after"]["parameters"]
    assert nonzero == report["after"]["nonzero_parameters"]
    # accuracy of the reloaded file on the test split, recomputed by hand
    model = load_model(out, arch="core.demo:build_model").model
    test = load_data(TEST_DATA_PATH)
    with torch.inference_mode():
        acc = float((model(test.x).argmax(1) == test.y).float().mean())
    assert acc == pytest.approx(report["after"]["accuracy"], abs=1e-6)


def _stop_after(count: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > count

    return should_stop


def test_engine_never_mutates_input_and_cancel_leaves_it_identical() -> None:
    # the demo's own recipe: channels removed, fine-tuned, a measured quantization plan
    loaded, test, train = load_demo()
    before = state_of(loaded.model)
    recipe = parse_recipe(DEMO_RECIPE_PATH.read_text(), "demo.yaml")
    for stop_after in range(1, 12):
        with pytest.raises(Cancelled):
            stop = _stop_after(stop_after)
            run(compress(loaded, recipe, data=test, train_data=train, should_stop=stop))
        assert identical(state_of(loaded.model), before)
    result = run(compress(loaded, recipe, data=test, train_data=train))
    assert identical(state_of(loaded.model), before)
    assert result.report.after.nonzero_parameters < result.report.before.nonzero_parameters


def test_progress_events_count_up_to_total() -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe(QUICK_RECIPE_PATH.read_text(), "quick_recipe.yaml")
    events = []
    run(compress(loaded, recipe, data=test), events.append)
    assert [e.step for e in events] == list(range(1, events[-1].total + 1))
    assert [e.layer["name"] for e in events if e.stage == "prune"] == [
        "conv1",
        "conv2",
        "fc1",
        "fc2",
    ]


def test_multi_input_and_dataclass_output_fidelity() -> None:
    model = two_inputs()
    gen = torch.Generator().manual_seed(1)
    data = Dataset(
        (torch.randn(40, 6, generator=gen), torch.randn(40, 4, generator=gen)), None, "x.npz"
    )
    kw = Dataset({"left": data.x[0], "right": data.x[1]}, None, "kw.npz")
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.3}]\nquantize: {scheme: fp16}", "r.yaml")
    loaded = LoadedModel(model, "m", "pickle")
    a = run(compress(loaded, recipe, data=data)).report
    b = run(compress(loaded, recipe, data=kw)).report
    assert 0.99 < a.fidelity["cosine_similarity"] <= 1.0 + 1e-9
    assert a.fidelity["cosine_similarity"] == pytest.approx(b.fidelity["cosine_similarity"])
    assert a.after.latency_ms > 0


def test_data_that_does_not_fit_is_a_data_error() -> None:
    loaded = LoadedModel(mlp(), "m", "pickle")
    bad = Dataset(torch.randn(10, 7), None, "bad.npz")
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.3}]", "r.yaml")
    with pytest.raises(DataError, match=r"bad\.npz: x does not fit the model"):
        run(compress(loaded, recipe, data=bad))


def test_labels_out_of_range() -> None:
    loaded = LoadedModel(mlp(), "m", "pickle")
    bad = Dataset(torch.randn(10, 16), torch.arange(10), "y.npz")
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.3}]", "r.yaml")
    with pytest.raises(DataError, match=r"y\.npz: y holds label 9 but the model outputs 4 classes"):
        run(compress(loaded, recipe, data=bad))


def test_finetune_needs_training_data() -> None:
    loaded, test, _ = load_demo()
    recipe = parse_recipe("version: 1\nprune: [{amount: 0.5}]\nfinetune: {epochs: 1}", "r.yaml")
    with pytest.raises(DataError, match="finetune needs training data"):
        run(compress(loaded, recipe, data=test))
