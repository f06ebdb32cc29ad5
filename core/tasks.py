"""The jobs the command line and the window both run, once, as generators of progress.

Open a model (or the demo) and take its inventory, open a data file, compress, sweep and save.
Each yields ``core.engine.Progress`` (or ``SweepEvent``) and returns its result, so the command
line drives it with ``core.engine.run`` and a progress bar, the window on its worker thread,
and tests with neither. Deciding what to ask the user (trust, an architecture, overwriting)
is the caller's; these only do the work and raise typed errors.
"""

from __future__ import annotations

import copy
import gc
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from core import compat
from core.data import Dataset, load_data, random_data
from core.demos import DEFAULT_DEMO
from core.engine import CompressionResult, Progress, compress, never
from core.errors import Cancelled, UserError
from core.inventory import LayerInfo, inventory
from core.loading import LoadedModel, load_demo, load_model
from core.metrics import model_stats
from core.onnx_runtime import paired_onnx_latency_ms
from core.plan import Plan, PlanSettings, make_plan, select_layers
from core.pruning import plan_pruning
from core.recipe import Quantize, Recipe
from core.removal import ChannelRemoval, plan_channels, split
from core.saving import FormatOption, SaveOutcome, format_options, inferred_input, save_model
from core.sensitivity import Evaluator, SweepEvent, SweepResult, SweepSettings, sweep

StopFlag = Callable[[], bool]


@dataclass
class Opened:
    """A model ready to show or compress: the loaded model, its layers, its size numbers
    and, for the demo, its own test and training data."""

    loaded: LoadedModel
    layers: list[LayerInfo]
    eval_data: Dataset | None = None
    train_data: Dataset | None = None
    seconds: float = 0.0
    before: dict[str, Any] = field(default_factory=dict)


def open_model(
    path: Path | None,
    arch: str | None = None,
    trust: bool = False,
    should_stop: StopFlag = never,
    demo: str = DEFAULT_DEMO,
) -> Generator[Progress, None, Opened]:
    """Load a model file (the bundled ``demo`` when ``path`` is None) and take its inventory.

    The cyclic garbage collector is paused meanwhile: a big model allocates hundreds of
    thousands of objects, and a full collection triggered from a worker thread holds the GIL
    long enough to freeze the window (200 ms at 10,000 modules; 9 ms with it paused)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield from _open(path, arch, trust, should_stop, demo))
    finally:
        if was_enabled:
            # What the load created lives as long as the model is open: freeze it out of
            # the collector's reach, so the first collection after the load does not walk
            # it on the GUI thread (267-344 ms -> 73-83 ms at 10,000 modules). Reference
            # counting still frees it when it is closed.
            gc.freeze()
            gc.enable()


def _open(
    path: Path | None, arch: str | None, trust: bool, should_stop: StopFlag, demo: str
) -> Generator[Progress, None, Opened]:
    t0 = time.perf_counter()
    label = path.name if path is not None else "the demo"
    yield Progress("load", 0, 0, f"loading {label}")
    if path is None:
        loaded, test, train = load_demo(demo)
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


def open_data(path: Path, should_stop: StopFlag = never) -> Generator[Progress, None, Dataset]:
    """Load and check an evaluation or training data file."""
    yield Progress("data", 0, 0, f"reading {Path(path).name}")
    data = load_data(path)
    if should_stop():
        raise Cancelled()
    return data


def check_data_paths(data: Path | None, train: Path | None) -> None:
    """Never train on what you measure: the same file cannot be both."""
    if data and train and Path(data).resolve() == Path(train).resolve():
        raise UserError(f"--train-data: {train} is also --data; never train on what you measure")


def warm_up(should_stop: StopFlag = never) -> Generator[Progress, None, None]:
    """Import torchao ahead of the first run. Its import takes seconds and, loading native
    extensions, holds the GIL for up to ~150 ms at a time: done during a run it would stall
    the window; done once, quietly, right after the window opens, the runs stay smooth."""
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
    a window cannot repaint; frozen, they are skipped (they live until exit anyway)."""
    gc.freeze()


def compress_model(
    loaded: LoadedModel,
    recipe: Recipe,
    data: Dataset | None,
    train_data: Dataset | None,
    input_shape: tuple[int, ...] | None = None,
    skip_metrics: bool = False,
    threads: int = 1,
    should_stop: StopFlag = never,
) -> Generator[Progress, None, CompressionResult]:
    """The engine's compression, with the training data only when the recipe fine-tunes."""
    return (
        yield from compress(
            loaded,
            recipe,
            data=data,
            train_data=train_data if recipe.finetune is not None else None,
            input_shape=input_shape,
            skip_metrics=skip_metrics,
            should_stop=should_stop,
            latency_threads=threads,
        )
    )


def sweep_model(
    loaded: LoadedModel,
    data: Dataset,
    settings: SweepSettings,
    use_cache: bool = True,
    should_stop: StopFlag = never,
    evaluator: Evaluator | None = None,
) -> Generator[SweepEvent, None, SweepResult]:
    """The sensitivity sweep (cached per model, data and settings). Every finished layer's
    curve rides on its event's ``layer``, so a view can draw it at once. ``evaluator`` runs
    the evaluations elsewhere (``core.cluster.RayEvaluator``); the result is the same."""
    loaded.require_eager()
    yield SweepEvent(0, 0, f"sensitivity of {loaded.display_name}: preparing")
    return (yield from sweep(loaded.model, data, settings, should_stop, use_cache, evaluator))


def plan_model(
    loaded: LoadedModel,
    data: Dataset,
    rule: Quantize,
    source: str = "plan",
    use_cache: bool = True,
    should_stop: StopFlag = never,
    evaluator: Evaluator | None = None,
) -> Generator[Progress, None, Plan]:
    """The measured per-layer quantization plan for the layers ``rule`` (scheme auto)
    selects: time and fidelity of every candidate here, then the end-to-end check.
    ``evaluator`` runs the fidelity costs elsewhere; every timing stays in this process."""
    loaded.require_eager()
    layers = select_layers(loaded.model, rule, source)
    settings = PlanSettings.from_rule(rule)
    return (
        yield from make_plan(
            loaded.model, data, layers, settings, should_stop, use_cache, evaluator
        )
    )


def plan_channel_removal(
    loaded: LoadedModel,
    recipe: Recipe,
    data: Dataset | None,
    input_shape: tuple[int, ...] | None = None,
    should_stop: StopFlag = never,
) -> Generator[Progress, None, ChannelRemoval | None]:
    """Which layers the recipe's ``remove_channels`` rules will shrink, planned on the
    original (one traced forward; nothing is changed), so the window can mark the coupled
    layers before a run. None when the recipe removes no channels. Raises what the run
    would raise before any work (an untraceable model, an amount that removes every
    channel, no input to trace on)."""
    loaded.require_eager()
    plan = plan_pruning(loaded.model, recipe.prune, recipe.source) if recipe.prune else {}
    _, removes = split(plan)
    if not removes:
        return None
    if data is None and input_shape is not None:
        data = random_data(input_shape)
    yield Progress("plan", 0, 0, "tracing the model to find the coupled layers")
    if should_stop():
        raise Cancelled()
    return plan_channels(loaded.model, removes, data, recipe.source)


def save_formats(
    result: CompressionResult, stem: Path, should_stop: StopFlag = never
) -> Generator[Progress, None, list[FormatOption]]:
    """Every save format for a compression's result: which can hold it (and why not) and
    the predicted size of each file (``stem``: the file name the reasons use)."""
    yield Progress("save", 0, 0, "predicting the saved file's size in each format")
    example = result.eval_data or inferred_input(result.model)
    return format_options(
        result.model, stem, example, result.sidecar, result.export_int8, should_stop
    )


def save_result(
    result: CompressionResult,
    loaded: LoadedModel,
    path: Path,
    fmt: str,
    force: bool = False,
    should_stop: StopFlag = never,
) -> Generator[Progress, None, SaveOutcome]:
    """Write the compressed model atomically, reload and run it (the round trip), and
    record the outcome in the result's report.

    Without evaluation data or an input shape, a model whose first layer is a Linear is run on
    a random input of its width, and any other is checked by comparing every saved tensor.
    A state dict of a model opened from a pickle is rebuilt from the original's own class.
    An ONNX file is also timed in ONNX Runtime against the original torch model, and the
    report says which runtime each latency is. Cancel before the file replaces its target
    leaves nothing behind; ``force`` allows overwriting the opened model file."""
    example = result.eval_data or inferred_input(result.model)
    yield Progress("save", 0, 0, f"saving {path.name} ({fmt}) and checking the round trip")
    t0 = time.perf_counter()
    original = loaded.model
    build = None
    if loaded.arch is None and loaded.format == "pickle":

        def build() -> nn.Module:
            return copy.deepcopy(original)

    outcome = save_model(
        result.model,
        path,
        fmt,
        example,
        sidecar=result.sidecar,
        protected=loaded.path if loaded.format != "demo" else None,
        force=force,
        arch=loaded.arch,
        should_stop=should_stop,
        build=build,
        export_int8=result.export_int8,
    )
    result.report.attach_save(outcome, time.perf_counter() - t0)
    result.report.notes.extend(outcome.notes)
    if fmt == "onnx" and example is not None and outcome.round_trip.get("ok"):
        yield Progress("save", 0, 0, f"timing {path.name} in ONNX Runtime against the original")
        args, kwargs, _ = example.slice(0, 1)
        threads = result.report.measurement.get("threads") or 1
        latency = paired_onnx_latency_ms(original, path, args, kwargs, threads=threads)
        result.report.after.onnxruntime = latency.as_dict()  # type: ignore[attr-defined]
    return outcome
