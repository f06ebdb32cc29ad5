"""The window's jobs as plain generators (no Qt): load a model or a data file, compress,
sweep, save.

Each yields ``core.engine.Progress`` events and returns its result, like the core's
``compress``, so ``gui.worker.JobRunner`` runs all of them the same way and tests can drive
them with ``core.engine.run``. This module is the window's one door to the engine's long
work: when the engine offers these tasks itself, they are swapped here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.data import Dataset, load_data
from core.engine import CompressionResult, Progress, compress
from core.errors import Cancelled
from core.inventory import LayerInfo, inventory
from core.loading import LoadedModel, load_demo, load_model
from core.metrics import model_stats
from core.recipe import Recipe
from core.saving import SaveOutcome, save_model
from core.sensitivity import SweepEvent, SweepResult, SweepSettings, sweep


@dataclass
class Opened:
    """A model ready to show: the loaded model, its layers and, for the demo, its data."""

    loaded: LoadedModel
    layers: list[LayerInfo]
    eval_data: Dataset | None = None
    train_data: Dataset | None = None
    seconds: float = 0.0
    before: dict[str, Any] = field(default_factory=dict)


def load_job(
    path: Path | None, arch: str | None, trust: bool, should_stop: Callable[[], bool]
) -> Generator[Progress, None, Opened]:
    """Load a model file (or the demo when ``path`` is None) and take its inventory.

    The cyclic garbage collector is paused meanwhile: a big model allocates hundreds of
    thousands of objects, and a full collection triggered from this thread holds the GIL
    long enough to freeze the window (200 ms at 10,000 modules; 9 ms with it paused)."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield from _load(path, arch, trust, should_stop))
    finally:
        if was_enabled:
            # What the load created (the model, its modules and tensors) lives as long as
            # the model is open: freeze it out of the collector's reach, so the first
            # collection after the load does not walk it on the GUI thread (267-344 ms ->
            # 73-83 ms at 10,000 modules). Refcounting still frees it when it is closed.
            gc.freeze()
            gc.enable()


def _load(
    path: Path | None, arch: str | None, trust: bool, should_stop: Callable[[], bool]
) -> Generator[Progress, None, Opened]:
    t0 = time.perf_counter()
    label = path.name if path is not None else "the demo"
    yield Progress("load", 0, 0, f"loading {label}")
    if path is None:
        loaded, test, train = load_demo()
    else:
        loaded, test, train = load_model(path, arch=arch, trust=trust), None, None
    if should_stop():
        raise Cancelled()
    yield Progress("load", 0, 0, f"measuring the size of {loaded.display_name}")
    # One pass for sizes and per-layer sparsity, cached: the first run's "before" numbers
    # reuse it as long as the model is unchanged.
    stats = model_stats(loaded.model, cache=True)
    if should_stop():
        raise Cancelled()
    yield Progress("load", 0, 0, f"reading the layers of {loaded.display_name}")
    layers = [
        replace(info, sparsity=stats.sparsity.get(info.name))
        for info in inventory(loaded.model, measure=False)
    ]
    return Opened(loaded, layers, test, train, time.perf_counter() - t0, stats.numbers())


def data_job(path: Path, should_stop: Callable[[], bool]) -> Generator[Progress, None, Dataset]:
    """Read an evaluation or training data file (.npz or .pt) off the GUI thread."""
    yield Progress("data", 0, 0, f"reading {path.name}")
    data = load_data(path)
    if should_stop():
        raise Cancelled()
    return data


def warm_up_job(should_stop: Callable[[], bool]) -> Generator[Progress, None, None]:
    """Import torchao ahead of the first run. Its import takes seconds and, loading native
    extensions, holds the GIL for up to ~150 ms at a time: done during a run it would stall
    the window; done once, quietly, right after the window opens, the runs stay smooth."""
    from core import compat

    del should_stop
    yield Progress("prepare", 0, 0, "loading the quantization library")
    try:
        compat.torchao()
    except Exception:  # the run that needs it reports the failure properly
        return None
    freeze_long_lived_objects()
    return None


def freeze_long_lived_objects() -> None:
    """Move everything alive now (modules imported at start-up: torch, Qt, pyqtgraph,
    torchao) out of the cyclic garbage collector's reach. A full collection otherwise walks
    hundreds of thousands of import-time objects while holding the GIL, 100-200 ms in which
    the window cannot repaint; frozen, they are skipped (they live until exit anyway)."""
    import gc

    gc.freeze()


def compress_job(
    loaded: LoadedModel,
    recipe: Recipe,
    data: Dataset | None,
    train_data: Dataset | None,
    input_shape: tuple[int, ...] | None,
    should_stop: Callable[[], bool],
) -> Generator[Progress, None, CompressionResult]:
    """The core's compression, with the training data only when the recipe fine-tunes."""
    result = yield from compress(
        loaded,
        recipe,
        data=data,
        train_data=train_data if recipe.finetune is not None else None,
        input_shape=input_shape,
        should_stop=should_stop,
    )
    return result


def sensitivity_job(
    loaded: LoadedModel,
    data: Dataset,
    settings: SweepSettings,
    should_stop: Callable[[], bool],
) -> Generator[SweepEvent, None, SweepResult]:
    """The core's sensitivity sweep (cached per model, data and settings). Every finished
    layer's curve rides on its event's ``layer``, so the window draws it at once."""
    yield SweepEvent(0, 0, f"sensitivity of {loaded.display_name}: preparing")
    result = yield from sweep(loaded.model, data, settings, should_stop=should_stop)
    return result


def save_job(
    result: CompressionResult,
    loaded: LoadedModel,
    path: Path,
    fmt: str,
    example: Dataset,
    should_stop: Callable[[], bool],
    force: bool = False,
) -> Generator[Progress, None, SaveOutcome]:
    """Write the compressed model atomically, then reload and run it (the round trip).

    Cancel before the file replaces its target leaves nothing behind; ``force`` allows
    overwriting the opened model file (the user confirmed it)."""
    yield Progress("save", 0, 0, f"saving {path.name} ({fmt}) and checking the round trip")
    return save_model(
        result.model,
        path,
        fmt,
        example,
        quantized=result.quantized,
        protected=loaded.path if loaded.format != "demo" else None,
        force=force,
        arch=loaded.arch,
        should_stop=should_stop,
    )
