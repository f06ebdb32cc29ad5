"""The compression engine: a generator of progress events over a copy of the model.

    gen = compress(loaded, recipe, data=..., should_stop=flag)
    for event in gen: ...          # Progress events: stage, step/total, message, layer
    result = <StopIteration.value> # or use ``run()`` below

The model handed in is never mutated: the engine deep-copies it, so the original stays
available for "before" numbers, reset and cancel. Cancellation is checked between steps
(layers, epochs, measurements) and raises ``Cancelled``.
"""

from __future__ import annotations

import copy
import io
import itertools
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core import compat
from core.data import Dataset, random_data
from core.errors import Cancelled, DataError, RecipeError
from core.fidelity import empty as no_fidelity
from core.fidelity import fidelity
from core.finetune import finetune
from core.inventory import inventory, layer_weight, sparsity
from core.loading import LoadedModel
from core.metrics import accuracy, model_stats, paired_latency_ms, run_outputs
from core.plan import PlanSettings, make_plan, select_layers, step_count
from core.progress import Progress, never, run
from core.pruning import Pruner, make_permanent, plan_pruning
from core.quantization import QuantPlan, apply_to_layer, check_machine, describe, plan_quantization
from core.recipe import Recipe
from core.removal import ChannelRemoval, plan_channels, run_removal, split
from core.report import LayerRow, Numbers, Report
from core.shapes import shapes_of

__all__ = ["CompressionResult", "Progress", "compress", "copy_model", "run"]

DEFAULT_INPUT_SHAPE_NOTE = "give evaluation data or an input shape to measure latency/fidelity"


@dataclass
class CompressionResult:
    model: nn.Module
    report: Report
    sidecar: dict[str, Any] | None  # what rebuilds a saved state dict (quantized layers, shapes)
    eval_data: Dataset | None
    notes: list[str] = field(default_factory=list)
    export_int8: str | None = None  # ONNX Runtime quantizes at export, with this granularity


def copy_model(model: nn.Module, share: bool = False) -> nn.Module:
    """A copy of ``model``: new module objects; with ``share`` the parameters and buffers
    are the original's own tensors (the caller must then never change a tensor in place),
    otherwise a deep copy that shares no storage (TorchScript via save/load)."""
    if isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()
        with compat.quiet():
            torch.jit.save(model, buf)
            buf.seek(0)
            return torch.jit.load(buf)
    if share:
        memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
        return copy.deepcopy(model, memo)
    return copy.deepcopy(model)


def _sparsity(model: nn.Module, name: str) -> float | None:
    return sparsity(layer_weight(model.get_submodule(name)))


def compress(
    loaded: LoadedModel,
    recipe: Recipe,
    data: Dataset | None = None,
    train_data: Dataset | None = None,
    input_shape: tuple[int, ...] | None = None,
    skip_metrics: bool = False,
    should_stop: Callable[[], bool] = never,
    latency_batch: int = 1,
    latency_threads: int | None = 1,
) -> Generator[Progress, None, CompressionResult]:
    """Prune, fine-tune and quantize a copy of ``loaded.model`` per ``recipe``, measuring
    before and after. Yields Progress; returns a CompressionResult."""
    timings: dict[str, float] = {"load": 0.0, "prune": 0.0, "quantize": 0.0, "metrics": 0.0}
    original = loaded.model
    source = recipe.source

    # --- plan: every pattern is checked against the model before any work starts
    if not recipe.is_empty():
        loaded.require_eager()
    prune_plan = plan_pruning(original, recipe.prune, source) if recipe.prune else {}
    prune_plan, removes = split(prune_plan)
    auto = recipe.auto_quantize
    quant_plan = QuantPlan()
    auto_layers: list[str] = []
    plan_settings = PlanSettings.from_rule(auto) if auto is not None else None
    if auto is not None:
        auto_layers = select_layers(original, auto, source)
    elif recipe.quantize:
        quant_plan = plan_quantization(original, recipe.quantize, source)
        for q in quant_plan.rules():
            check_machine(q)
        quant_plan.defer_export()
    if recipe.finetune is not None:
        if train_data is None:
            raise DataError(
                f"{source}: finetune needs training data (--train-data); evaluation data is "
                "never trained on"
            )
        if data is not None and train_data is data:
            raise DataError(
                f"{train_data.source}: the same data cannot be used to train and evaluate"
            )
    eval_data = data
    if eval_data is None and input_shape is not None:
        eval_data = random_data(input_shape)
    channels = plan_channels(original, removes, eval_data, source) if removes else None
    if auto is not None and eval_data is None:
        raise RecipeError(
            f"{source}: quantize.scheme: auto measures every candidate on this machine: give "
            "evaluation data (--data) or an input shape (--input-shape)"
        )
    notes: list[str] = []
    if eval_data is None and not skip_metrics:
        notes.append(
            f"no data: latency, fidelity and accuracy not measured ({DEFAULT_INPUT_SHAPE_NOTE})"
        )

    measure = not skip_metrics and eval_data is not None
    n_prune = len(prune_plan) + (channels.steps if channels else 0)
    n_quant = len(auto_layers) if auto is not None else len(quant_plan.layers)
    n_epochs = recipe.finetune.epochs if recipe.finetune else 0
    n_plan = step_count(auto_layers, plan_settings) if plan_settings is not None else 0
    total = 2 + n_prune + n_epochs + n_plan + n_quant + (4 if measure else 2)
    step = 0

    def tick(stage: str, message: str, **extra: Any) -> Progress:
        nonlocal step
        if should_stop():
            raise Cancelled()
        step += 1
        return Progress(stage, step, total, message, **extra)

    # --- before
    t0 = time.perf_counter()
    # Without fine-tuning each layer is pruned and quantized in turn; a measured plan needs
    # the whole pruned model first.
    streaming = recipe.finetune is None
    yield tick("copy", "copying the model (the original is never modified)")
    # Without fine-tuning nothing changes a tensor in place, so the working copy can share
    # the original's tensors: only what is pruned or quantized takes new memory.
    model = copy_model(original, share=streaming)
    model.eval()
    before_stats = model_stats(original, cache=True)
    before_sparsity = before_stats.sparsity
    before = Numbers(**before_stats.numbers())
    yield tick("metrics", "measuring the original: size and sparsity")
    ref_outputs = None
    lat_args: tuple = ()
    lat_kwargs: dict = {}
    # Latency is single-stream by default: one thread, batch 1. On a shared machine a
    # multi-threaded forward of a small model waits for descheduled threads (0.18 ms vs 40 ms
    # for the demo, measured here), which says nothing about the model.
    threads = latency_threads or torch.get_num_threads()
    if measure:
        assert eval_data is not None
        ref_outputs = run_outputs(original, eval_data)
        before.accuracy = accuracy(ref_outputs, eval_data)
        yield tick("metrics", "measuring the original: accuracy and outputs done")
        lat_args, lat_kwargs, _ = eval_data.slice(0, min(latency_batch, len(eval_data)))
    timings["metrics"] += time.perf_counter() - t0

    # --- remove channels (shapes change: first), prune, fine-tune, quantize
    shapes = None
    if channels is not None:
        t0 = time.perf_counter()
        yield from _forward(
            run_removal(model, channels, train_data or eval_data, should_stop), tick
        )
        timings["prune"] += time.perf_counter() - t0
        shapes = shapes_of(model, original)
        notes.extend(channels.notes)
    pruner = Pruner(model, prune_plan, hold_masks=not streaming)

    def prune_step(name: str, fold: bool = False, suffix: str = "") -> Progress:
        if should_stop():
            raise Cancelled()
        t0 = time.perf_counter()
        pruner.apply(name, force_fold=fold)
        compat.release_memory()
        timings["prune"] += time.perf_counter() - t0
        rule = prune_plan[name].rule
        return tick(
            "prune",
            f"pruned {name} ({rule.method}, {rule.amount}){suffix}",
            layer={"name": name, "sparsity_after": _sparsity(model, name)},
        )

    def quantize_step(name: str) -> Progress:
        if should_stop():
            raise Cancelled()
        t0 = time.perf_counter()
        q = quant_plan.layers[name]
        apply_to_layer(model, model.get_submodule(name), name, q)
        compat.release_memory()
        timings["quantize"] += time.perf_counter() - t0
        label = describe(q)
        return tick(
            "quantize",
            f"quantized {name} ({label})",
            layer={"name": name, "quantization": label},
        )

    if streaming:
        # No fine-tune: each layer is pruned and quantized in turn, so at most one layer's
        # float result exists beside the original at any time (a measured plan quantizes
        # once every layer is pruned).
        quant_set = set(quant_plan.layers)
        order = [n for n, _ in original.named_modules() if n in prune_plan or n in quant_set]
        folded = []
        for name in order:
            if name in prune_plan:
                fold = (name in quant_set or name in auto_layers) and not prune_plan[
                    name
                ].rule.permanent
                if fold:
                    folded.append(name)
                yield prune_step(name, fold)
            if name in quant_set:
                yield quantize_step(name)
        if folded:
            notes.append(f"masks folded before quantizing: {', '.join(folded)}")
    else:
        for name in prune_plan:
            yield prune_step(name, suffix=", mask held for fine-tuning")

    # --- fine-tune
    finetune_report = None
    if recipe.finetune is not None and train_data is not None:
        t0 = time.perf_counter()
        losses: list[float] = []
        for epoch, loss in finetune(model, original, train_data, recipe.finetune, should_stop):
            losses.append(loss)
            yield tick(
                "finetune", f"fine-tune epoch {epoch}/{n_epochs}: loss {loss:.4f}", loss=loss
            )
        finetune_report = {
            "epochs": recipe.finetune.epochs,
            "loss": losses,
            "lr": recipe.finetune.lr,
            "batch_size": recipe.finetune.batch_size,
            "data": train_data.source,
        }
        timings["finetune"] = time.perf_counter() - t0

    if not streaming:
        # make pruning permanent (always for layers about to be quantized), then quantize
        keep_masks = {n for n, p in prune_plan.items() if not p.rule.permanent}
        to_quantize = set(quant_plan.layers) | set(auto_layers)
        forced = sorted(keep_masks & to_quantize)
        if forced:
            notes.append(f"masks folded before quantizing: {', '.join(forced)}")
        make_permanent(model, [n for n in prune_plan if n not in keep_masks or n in to_quantize])

    # --- the measured plan (scheme: auto), on the pruned model
    plan_report = None
    if plan_settings is not None:
        assert eval_data is not None
        t0 = time.perf_counter()
        plan = yield from _forward(
            make_plan(model, eval_data, auto_layers, plan_settings, should_stop), tick
        )
        timings["plan"] = time.perf_counter() - t0
        quant_plan = plan.quant_plan()
        plan_report = plan.to_dict()
        notes.extend(plan.notes)

    if not streaming or plan_settings is not None:
        for name in quant_plan.layers:
            yield quantize_step(name)
    if any(q.backend == "legacy" and not q.keeps_float for q in quant_plan.layers.values()):
        notes.insert(0, compat.LEGACY_NOTICE)

    # --- after
    t0 = time.perf_counter()
    after_stats = model_stats(model)
    after = Numbers(**after_stats.numbers())
    after_sparsity = after_stats.sparsity
    yield tick("metrics", "measuring the result: size and sparsity")
    fid = no_fidelity()
    if measure:
        assert eval_data is not None and ref_outputs is not None
        outputs = run_outputs(model, eval_data)
        after.accuracy = accuracy(outputs, eval_data)
        fid = fidelity(ref_outputs, outputs)
        yield tick("metrics", "measuring latency: original and result, alternately")
        saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            before.latency_ms, after.latency_ms = paired_latency_ms(
                original, model, lat_args, lat_kwargs, should_stop=should_stop
            )
            runtime = f"torch eager, {threads} thread{'s' * (threads != 1)}"
            before.latency_runtime = after.latency_runtime = runtime
        finally:
            torch.set_num_threads(saved_threads)
    timings["metrics"] += time.perf_counter() - t0

    layers = _layer_rows(
        original, model, before_sparsity, after_sparsity, prune_plan, quant_plan, channels
    )
    report = Report(
        model={"source": loaded.source, "format": loaded.format, "class": loaded.class_name},
        recipe=recipe.to_dict(),
        before=before,
        after=after,
        fidelity=fid,
        layers=layers,
        timings_s=timings,
        measurement={
            "data": eval_data.source if eval_data is not None else None,
            "samples": len(eval_data) if eval_data is not None else 0,
            "latency_batch": latency_batch if measure else None,
            "threads": threads,
            "torch": torch.__version__,
        },
        notes=notes + _advice(before, after, prune_plan, quant_plan),
    )
    report.finetune = finetune_report
    report.plan = plan_report
    yield tick("done", "done")
    sidecar = quant_plan.sidecar() or {}
    if shapes is not None and shapes["modules"]:
        sidecar = {"secateur_sidecar": 1, **sidecar, "shapes": shapes}
    return CompressionResult(
        model, report, sidecar or None, eval_data, notes, quant_plan.export_int8
    )


def _forward(
    gen: Generator[Progress, None, Any], tick: Callable[..., Progress]
) -> Generator[Progress, None, Any]:
    """Run a sub-job, re-counting its events as steps of this one."""
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            return done.value
        yield tick(event.stage, event.message)


def _layer_rows(
    original: nn.Module,
    model: nn.Module,
    before: dict[str, float],
    after: dict[str, float],
    prune_plan: dict,
    quant_plan: QuantPlan,
    channels: ChannelRemoval | None,
) -> list[LayerRow]:
    """One row per layer with a weight (and per selected layer): what each step did, and the
    weight's shape before and after (they differ where channels were removed)."""
    changed = {row["name"]: row for row in channels.rows} if channels else {}
    roots = (
        {r: g for plan in channels.plans for g in plan.groups for r in g.roots} if channels else {}
    )
    shapes_after = {info.name: info.weight_shape for info in inventory(model, measure=False)}
    rows = []
    for info in inventory(original, measure=False):
        name = info.name
        change = changed.get(name)
        if (
            name not in before
            and name not in prune_plan
            and name not in quant_plan.skipped
            and change is None
        ):
            continue
        plan = prune_plan.get(name)
        q = quant_plan.layers.get(name) or quant_plan.at_export.get(name)
        pruning = plan.rule.method if plan else None
        amount = plan.rule.amount if plan else None
        if name in roots:
            pruning, amount = "remove_channels", roots[name].amount
        skipped = quant_plan.skipped.get(name) or (change or {}).get("skipped")
        shape_after = shapes_after.get(name)
        rows.append(
            LayerRow(
                name=name,
                type=info.type,
                parameters=info.parameters,
                sparsity_before=before.get(name),
                sparsity_after=after.get(name),
                pruning=pruning,
                prune_amount=amount,
                quantization=(describe(q) + (" at export" if name in quant_plan.at_export else ""))
                if q is not None
                else None,
                skipped=skipped,
                shape_before=list(info.weight_shape) if info.weight_shape else None,
                shape_after=list(shape_after) if shape_after else None,
                parameters_after=(change or {}).get("parameters_after", info.parameters),
                removal=(change or {}).get("detail") or (change or {}).get("role"),
            )
        )
    return rows


def _advice(before: Numbers, after: Numbers, prune_plan: dict, quant_plan: QuantPlan) -> list[str]:
    """Plain statements where a choice did not pay on this machine."""
    out = []
    if prune_plan and after.state_dict_bytes >= before.state_dict_bytes * 0.98:
        out.append(
            "unstructured pruning zeroes weights but a dense file stores zeros too: the file "
            "is not smaller (quantize, or use structured pruning, to shrink it)"
        )
    lb, la = before.latency_ms, after.latency_ms
    if lb and la and la > lb * 1.05:
        labels = sorted({describe(q) for q in quant_plan.layers.values()})
        what = labels[0] if len(labels) == 1 else "this recipe"
        out.append(
            f"slower on this machine: {what} runs at {la / lb:.2f}x the original latency "
            f"({la:.3f} ms vs {lb:.3f} ms)"
        )
    return out
