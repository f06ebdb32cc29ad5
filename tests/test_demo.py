"""Tests for the bundled demo model (core/demo.py) and the files shipped in resources/demo/.

They check the artefacts written by scripts/train_demo.py, so a bad retrain or a change to
DigitsCNN that no longer matches the shipped weights fails here rather than in the app.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import prune

from core import demo, demos

N_DIGITS = 1797  # examples in sklearn.datasets.load_digits()
N_TEST = 450  # ceil(0.25 * 1797), as train_test_split(test_size=0.25) computes it


def _load_split(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"]


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def test_resource_files_exist() -> None:
    for path in (demos.TRAIN_DATA_PATH, demos.TEST_DATA_PATH):
        assert path.is_file(), path
    for entry in demos.DEMOS:
        assert entry.weights.is_file() and entry.recipe.is_file(), entry.name


def test_build_model_is_untrained_and_in_eval_mode() -> None:
    model = demo.build_model()
    assert isinstance(model, demo.DigitsCNN)
    assert not model.training
    out = model(torch.zeros(demos.INPUT_SHAPE))
    assert out.shape == (demos.INPUT_SHAPE[0], 10)


def test_shipped_weights_load_strictly() -> None:
    state = load_file(str(demos.WEIGHTS_PATH))
    model = demo.build_model()
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys


def test_load_demo_model_returns_eval_model_with_shipped_weights() -> None:
    model = demo.load_demo_model()
    assert not model.training
    state = load_file(str(demos.WEIGHTS_PATH))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.parametrize("path_name", ["TRAIN_DATA_PATH", "TEST_DATA_PATH"])
def test_npz_layout(path_name: str) -> None:
    with np.load(getattr(demos, path_name)) as data:
        assert set(data.files) == {"x", "y"}
        x, y = data["x"], data["y"]
    assert x.dtype == np.float32
    assert x.ndim == 4
    assert x.shape[1:] == (1, 8, 8)
    assert y.dtype == np.int64
    assert y.shape == (x.shape[0],)
    assert y.min() >= 0
    assert y.max() <= 9
    assert x.min() >= 0.0
    assert x.max() <= 1.0


def test_split_sizes_match_a_stratified_quarter_split() -> None:
    # digits contains duplicate images, so "no identical rows across splits" would be wrong;
    # instead check the split partitions all 1797 examples 1347 / 450 with every class present.
    _, y_train = _load_split(demos.TRAIN_DATA_PATH)
    _, y_test = _load_split(demos.TEST_DATA_PATH)
    assert len(y_train) + len(y_test) == N_DIGITS
    assert len(y_test) == N_TEST
    assert len(y_train) == N_DIGITS - N_TEST
    assert set(np.unique(y_train)) == set(range(10))
    assert set(np.unique(y_test)) == set(range(10))


def test_shipped_model_accuracy_on_test_split() -> None:
    x, y = _load_split(demos.TEST_DATA_PATH)
    assert _accuracy(demo.load_demo_model(), x, y) >= 0.95


def test_half_pruned_model_keeps_accuracy() -> None:
    # The demo recipe prunes 50% of every Conv2d/Linear weight; the demo promises that costs
    # almost nothing, so guard it.
    model = demo.load_demo_model()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            prune.l1_unstructured(module, name="weight", amount=0.5)
    x, y = _load_split(demos.TEST_DATA_PATH)
    assert _accuracy(model, x, y) >= 0.95
