"""The measured quantization plan: per layer, the fastest scheme that keeps fidelity.

No single scheme is both fast and faithful on every CPU: dynamic int8 pays on big matrices
and costs more than it saves on small ones, a cast is cheap but not free. The plan measures,
on this machine and the user's own data:

1. each selected layer's time under every candidate (``core.schemes.CANDIDATES``), on the
   layer's real inputs captured from the data, at the requested threads and batch size,
   alternating with the float layer so both see the same machine load;
2. each candidate's fidelity cost with that layer alone quantized (the sensitivity sweep's
   quantize-alone trials, cached like any sweep);
3. the fastest combination whose summed cost stays within ``max_drop`` (an exact search over
   a discretised budget);
4. then, because the sum of per-layer times is not the model's time (casts between
   neighbours, dispatch), the whole model: the plan and every uniform scheme, each timed
   alternating with the original and its drop measured. The end-to-end check decides: the
   fastest within the budget wins, and when nothing beats the original the answer is to keep
   it float, said so.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.data import Dataset
from core.errors import Cancelled, RecipeError
from core.inventory import PRUNABLE_TYPES, escape_names, select
from core.metrics import paired_latency_ms, run_outputs
from core.progress import Progress
from core.quantization import QuantPlan, apply_to_layer, cannot_quantize, check_machine
from core.recipe import Quantize
from core.schemes import CANDIDATES, KEEP_FLOAT, Candidate
from core.sensitivity import Evaluator, SweepSettings, failed_layers, measure_metric, sweep

DEFAULT_MAX_DROP = 0.01
FIDELITY_SAMPLES = 512  # samples the fidelity costs are measured on (the first ones)
LAYER_BUDGET_S = 0.25  # time spent timing one layer under one candidate
EVICT_CAP = 64 << 20  # at most this much memory is touched between two timed layer calls
MODEL_BUDGET_S = 0.6  # time spent timing one whole model against the original
FASTER = 0.98  # a plan must run in at most this fraction of the original's time to count
REFINE_TRIALS = 16  # end-to-end trials spent refining the best plan, family by family
REFINE_GAIN = 0.98  # a refinement is kept when it runs in at most this fraction of the time
BUCKETS = 400  # the drop budget is searched in this many steps


@dataclass(frozen=True)
class PlanSettings:
    """What the plan measures: layers, candidates, the budget and the conditions."""

    candidates: tuple[str, ...]
    max_drop: float = DEFAULT_MAX_DROP
    metric: str = "auto"
    threads: int = 1
    batch_size: int = 1
    samples: int | None = FIDELITY_SAMPLES

    @classmethod
    def from_rule(cls, q: Quantize) -> PlanSettings:
        return cls(
            candidates=tuple(q.candidates or CANDIDATES.names()),
            max_drop=DEFAULT_MAX_DROP if q.max_drop is None else q.max_drop,
            metric=q.metric or "auto",
            threads=q.threads or 1,
            batch_size=q.batch_size or 1,
        )


@dataclass
class Measured:
    """One whole model measured against the original: time ratio and metric drop."""

    ms: float
    original_ms: float
    drop: float
    within_budget: bool

    @property
    def ratio(self) -> float:
        return self.ms / self.original_ms if self.original_ms else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "ms": self.ms,
            "original_ms": self.original_ms,
            "ratio": self.ratio,
            "drop": self.drop,
            "within_budget": self.within_budget,
        }


@dataclass
class Plan:
    """The outcome: per-layer measurements and choices, and the end-to-end check."""

    settings: PlanSettings
    metric: str
    baseline: float
    layers: list[dict[str, Any]]
    choices: dict[str, str]  # layer -> candidate name, as searched
    plan: Measured | None
    uniform: dict[str, Measured]
    chosen: str  # "plan", "uniform:<candidate>" or "float"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def final_choices(self) -> dict[str, str]:
        """Layer -> candidate of what was chosen (float layers left out)."""
        if self.chosen == "plan":
            picked = self.choices
        elif self.chosen.startswith("uniform:"):
            name = self.chosen.split(":", 1)[1]
            picked = {row["name"]: name for row in self.layers if name in _usable(row)}
        else:
            picked = {}
        return {layer: c for layer, c in picked.items() if c != KEEP_FLOAT}

    def rules(self, types: dict[str, str], with_float: bool = False) -> list[Quantize]:
        """Quantize rules that say exactly the final choices: one rule per candidate, over
        the layers that take it (``types`` maps a layer to its class name). ``with_float``:
        first a ``scheme: float`` rule over the planned layers kept float, so that a recipe
        written from a "keep float" plan says so instead of being empty."""
        groups: dict[str, list[str]] = {}
        for layer, candidate in self.final_choices().items():
            groups.setdefault(candidate, []).append(layer)
        rules = []
        kept = [row["name"] for row in self.layers if row["name"] not in self.final_choices()]
        if with_float and kept:
            rules.append(
                Quantize(
                    scheme=KEEP_FLOAT,
                    layers=escape_names(kept),
                    types=sorted({types[n] for n in kept}),
                )
            )
        for candidate, layers in groups.items():
            fields = CANDIDATES[candidate].settings() or {}
            rules.append(
                Quantize(
                    **fields,
                    layers=escape_names(layers),
                    types=sorted({types[n] for n in layers}),
                )
            )
        return rules

    def quant_plan(self) -> QuantPlan:
        """The per-layer rules the engine applies."""
        plan = QuantPlan()
        for layer, candidate in self.final_choices().items():
            plan.layers[layer] = Quantize(**(CANDIDATES[candidate].settings() or {}))
        return plan

    def to_dict(self) -> dict[str, Any]:
        """The report's ``plan`` section."""
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "max_drop": self.settings.max_drop,
            "threads": self.settings.threads,
            "batch_size": self.settings.batch_size,
            "candidates": list(self.settings.candidates),
            "layers": self.layers,
            "end_to_end": {
                "plan": self.plan.to_dict() if self.plan else None,
                "uniform": {name: m.to_dict() for name, m in self.uniform.items()},
            },
            "chosen": self.chosen,
            "choices": self.final_choices(),
            "seconds": self.seconds,
            "notes": self.notes,
        }


def _usable(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A layer row's candidates that were measured (not skipped)."""
    return {c: m for c, m in row["candidates"].items() if "ms" in m and m.get("drop") is not None}


def select_layers(model: nn.Module, q: Quantize, source: str) -> list[str]:
    """The layers a ``scheme: auto`` rule plans (prunable kinds: Linear, Conv...)."""
    names, misses = select(model, q.layers, q.types, predicate=PRUNABLE_TYPES)
    for field_name, value in misses:
        raise RecipeError(f"{source}: quantize.{field_name}: {value!r} matches no layer")
    return names


def step_count(layers: Sequence[str], settings: PlanSettings) -> int:
    """How many progress events ``make_plan`` yields (for a progress bar's total)."""
    n = len(layers) * len(settings.candidates)
    return 2 * n + len(settings.candidates) + REFINE_TRIALS + 2


def check_candidates(settings: PlanSettings) -> None:
    """Refuse, before any work, a candidate this machine cannot run."""
    for name in settings.candidates:
        fields = CANDIDATES[name].settings()
        if fields is not None:
            check_machine(Quantize(**fields))


def make_plan(
    model: nn.Module,
    data: Dataset,
    layers: Sequence[str],
    settings: PlanSettings,
    should_stop: Callable[[], bool] = lambda: False,
    use_cache: bool = True,
    evaluator: Evaluator | None = None,
) -> Generator[Progress, None, Plan]:
    """Measure, search and verify a plan for ``layers`` of ``model`` (never modified).

    ``evaluator`` runs step 1's fidelity trials elsewhere (a Ray cluster); the timings of
    steps 2 and 4 always run in this process, on this machine, which the plan is for. A
    layer whose fidelity could not be measured stays float, and the notes say so."""
    t_start = time.perf_counter()
    check_candidates(settings)
    total = step_count(layers, settings)
    step = 0

    def tick(message: str) -> Progress:
        nonlocal step
        if should_stop():
            raise Cancelled()
        step = min(step + 1, total)
        return Progress("plan", step, total, message)

    eval_data = data.subset(settings.samples) if settings.samples else data
    # 1. fidelity cost of each candidate, each layer alone (the sensitivity sweep, cached)
    sweep_settings = SweepSettings(
        layers=escape_names(layers),
        types=None,
        amounts=(),
        candidates=settings.candidates,
        metric=settings.metric,
    )
    gen = sweep(model, eval_data, sweep_settings, should_stop, use_cache, evaluator)
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            result = done.value
            break
        if event.layer is None and event.total:
            yield tick(event.message)
    metric, baseline = result.data["metric"], float(result.data["baseline"])
    costs = {row["name"]: row.get("candidates", {}) for row in result.data["layers"]}

    # 2. time of each layer under each candidate, on its captured inputs
    batch = data.slice(0, min(settings.batch_size, len(data)))
    inputs = capture_inputs(model, batch[0], batch[1], layers)
    modules = dict(model.named_modules())
    rows: list[dict[str, Any]] = []
    scratch = eviction_buffer(model)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        for name in layers:
            module = modules[name]
            args, kwargs = inputs[name]
            row: dict[str, Any] = {
                "name": name,
                "type": type(module).__name__,
                "shape": list(getattr(module, "weight", torch.empty(0)).shape),
                "candidates": {},
            }
            float_times = []
            for candidate in settings.candidates:
                yield tick(f"timing {name}: {candidate}")
                row["candidates"][candidate] = _time_candidate(
                    module, CANDIDATES[candidate], args, kwargs, float_times, scratch
                )
                cost = costs.get(name, {}).get(candidate) or {}
                entry = row["candidates"][candidate]
                if "skipped" in cost:
                    entry.setdefault("skipped", cost["skipped"])
                if "ms" in entry and cost.get("metric") is not None:
                    entry["metric"] = cost["metric"]
                    entry["drop"] = _drop(metric, baseline, cost["metric"])
            row["float_ms"] = statistics.median(float_times) if float_times else None
            rows.append(row)
    finally:
        torch.set_num_threads(saved_threads)
        del scratch

    # 3. the fastest combination within the budget, by the per-layer numbers
    choices = search(rows, settings.max_drop)

    # 4. end to end: the plan and every uniform scheme against the original
    notes: list[str] = [
        f"{name}: its fidelity could not be measured ({why}): kept float"
        for name, why in failed_layers(result.data).items()
    ]
    reference = run_outputs(model, eval_data)
    measure = _Measurer(model, eval_data, reference, batch, metric, baseline, settings)
    plan_result: Measured | None = None
    budget = settings.max_drop
    for _attempt in range(3):
        yield tick("measuring the plan end to end")
        plan_result = measure(choices)
        if plan_result.within_budget:
            break
        notes.append(
            f"the plan's measured drop {plan_result.drop:.4f} exceeded the budget "
            f"{settings.max_drop:g} (per-layer drops do not add up exactly): searched again "
            f"within {budget / 2:.4g}"
        )
        budget /= 2
        choices = search(rows, budget)
    uniform: dict[str, Measured] = {}
    for candidate in settings.candidates:
        if candidate == KEEP_FLOAT:
            continue
        picked = {row["name"]: candidate for row in rows if candidate in _usable(row)}
        if not picked:
            continue
        yield tick(f"measuring {candidate} on every layer")
        uniform[candidate] = measure(picked)
    # 5. per-layer times do not add up to the model's (kernels, casts and caches interact):
    # refine the best measured option by whole families of alike layers, end to end
    options = [(choices, plan_result)] if plan_result and plan_result.within_budget else []
    for candidate, m in uniform.items():
        if m.within_budget:
            options.append(({r["name"]: candidate for r in rows if candidate in _usable(r)}, m))
    if options:
        start, start_m = min(options, key=lambda o: o[1].ratio)
        refined, refined_m, trials = yield from _refine(rows, start, start_m, measure, tick)
        if refined_m is not start_m:
            notes.append(
                f"refined end to end in {trials} trials: {start_m.ratio:.3f}x -> "
                f"{refined_m.ratio:.3f}x the original's time"
            )
            choices, plan_result = refined, refined_m
    chosen, why = decide(plan_result, uniform)
    if chosen == "plan":
        same = [n for n, m in uniform.items() if m is plan_result]
        chosen = f"uniform:{same[0]}" if same else chosen
    notes.append(why)
    yield tick("plan chosen")
    return Plan(
        settings,
        metric,
        baseline,
        rows,
        choices,
        plan_result,
        uniform,
        chosen,
        time.perf_counter() - t_start,
        notes,
    )


def capture_inputs(
    model: nn.Module, args: tuple, kwargs: dict, names: Sequence[str]
) -> dict[str, tuple[tuple, dict]]:
    """The positional and keyword inputs each named layer receives in one forward pass."""
    seen: dict[str, tuple[tuple, dict]] = {}
    handles = []
    modules = dict(model.named_modules())

    def hook(name: str) -> Callable[..., None]:
        def grab(module: nn.Module, a: tuple, kw: dict) -> None:
            if name not in seen:  # a layer called twice keeps its first input
                seen[name] = (
                    tuple(x.detach().clone() if isinstance(x, torch.Tensor) else x for x in a),
                    {
                        k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                        for k, v in kw.items()
                    },
                )

        return grab

    for name in names:
        handles.append(modules[name].register_forward_pre_hook(hook(name), with_kwargs=True))
    try:
        with torch.inference_mode():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in names if n not in seen]
    if missing:
        raise RecipeError(
            f"quantize.scheme: auto: {', '.join(missing[:3])} never ran in a forward pass of "
            "the data, so there is nothing to time"
        )
    return seen


def with_candidate(module: nn.Module, candidate: Candidate) -> nn.Module | str:
    """A copy of ``module`` under ``candidate`` (or why it cannot take it)."""
    fields = candidate.settings()
    if fields is None:
        return module
    q = Quantize(**fields)
    reason = cannot_quantize(module, q)
    if reason is not None:
        return reason
    holder = nn.Module()
    holder.add_module("layer", copy.deepcopy(module))
    apply_to_layer(holder, holder.layer, "layer", q)
    return holder.layer


def _time_candidate(
    module: nn.Module,
    candidate: Candidate,
    args: tuple,
    kwargs: dict,
    float_times: list[float],
    scratch: torch.Tensor | None,
) -> dict[str, Any]:
    trial = with_candidate(module, candidate)
    if isinstance(trial, str):
        return {"skipped": trial}
    try:
        float_ms, ms = paired_cold_ms(module, trial, args, kwargs, scratch, LAYER_BUDGET_S)
    except Exception as exc:  # a kernel that fails on this input: not a choice here
        return {"skipped": f"fails on this layer's input ({type(exc).__name__}: {exc})"[:200]}
    float_times.append(float_ms)
    return {"ms": ms, "float_ms": float_ms, "ratio": ms / float_ms if float_ms else None}


def eviction_buffer(model: nn.Module) -> torch.Tensor | None:
    """A buffer as large as the model's tensors (capped at ``EVICT_CAP``), touched before
    every timed layer call. In the whole model, everything else passes through the caches
    between two calls of one layer, so a layer timed alone with its weights hot in cache
    looks faster than it is (measured here: 256x256 Linear layers of an 8-token encoder
    timed 1.5x slower under int8 alone, yet the model with all of them in int8 ran at
    0.8x). Touching this much memory first puts the layer back in the model's conditions."""
    size = sum(
        t.numel() * t.element_size()
        for t in model.state_dict().values()
        if isinstance(t, torch.Tensor)
    )
    size = min(size, EVICT_CAP)
    return torch.zeros(size // 4, dtype=torch.float32) if size >= 4 else None


def paired_cold_ms(
    first: nn.Module,
    second: nn.Module,
    args: tuple,
    kwargs: dict,
    scratch: torch.Tensor | None,
    budget_s: float,
    min_runs: int = 10,
    max_runs: int = 200,
) -> tuple[float, float]:
    """Median time of one call of each module, alternating, each call preceded (untimed) by
    a pass over ``scratch`` so its weights come from memory as they do in the model."""
    times: tuple[list[float], list[float]] = ([], [])
    pair = (first, second)
    with torch.inference_mode():
        for module in pair:
            module(*args, **kwargs)
        start = time.perf_counter()
        while len(times[0]) < min_runs or (
            len(times[0]) < max_runs and time.perf_counter() - start < budget_s
        ):
            for module, bucket in zip(pair, times):
                if scratch is not None:
                    scratch.add_(1.0)
                t0 = time.perf_counter()
                module(*args, **kwargs)
                bucket.append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1000.0, statistics.median(times[1]) * 1000.0


def _drop(metric: str, baseline: float, value: float) -> float:
    """How much worse than the original (never negative: noise is not a gain)."""
    del metric  # accuracy and cosine similarity are both higher-is-better
    return max(baseline - value, 0.0)


def search(rows: list[dict[str, Any]], max_drop: float) -> dict[str, str]:
    """The per-layer choice with the least summed time whose summed drop stays within
    ``max_drop``: an exact multiple-choice knapsack over the budget in ``BUCKETS`` steps
    (each drop rounded up, so the sum is never underestimated)."""
    unit = max_drop / BUCKETS if max_drop > 0 else 0.0
    # time[b]: least summed time of the layers so far using at most b units of drop
    time_so_far = [0.0] * (BUCKETS + 1)
    picks: list[list[tuple[str, int]]] = []  # per layer, per b: (candidate, units used)
    for row in rows:
        options = [(0, row.get("float_ms") or 0.0, KEEP_FLOAT)]
        for name, m in _usable(row).items():
            drop = m["drop"]
            if drop <= 0:
                units = 0
            elif unit:
                units = math.ceil(drop / unit - 1e-9)
            else:
                continue  # a zero budget admits no drop at all
            if units <= BUCKETS:
                options.append((units, m["ms"], name))
        new_time, pick = [], []
        for b in range(BUCKETS + 1):
            best = min(
                ((time_so_far[b - u] + ms, name, u) for u, ms, name in options if u <= b),
                key=lambda item: item[0],
            )
            new_time.append(best[0])
            pick.append((best[1], best[2]))
        time_so_far = new_time
        picks.append(pick)
    choices: dict[str, str] = {}
    b = BUCKETS
    for row, pick in zip(reversed(rows), reversed(picks)):
        name, used = pick[b]
        choices[row["name"]] = name
        b -= used
    return dict(reversed(list(choices.items())))


class _Measurer:
    """Times a model with some layers swapped against the original, and measures its drop."""

    def __init__(
        self,
        model: nn.Module,
        data: Dataset,
        reference: list,
        batch: tuple,
        metric: str,
        baseline: float,
        settings: PlanSettings,
    ) -> None:
        self.model, self.data, self.reference = model, data, reference
        # Every trial is a fresh copy; so is the model it is timed against, so that both
        # have their tensors laid out alike (a copy measured ~4% faster than the loaded
        # original here, with nothing else changed).
        self.original = copy.deepcopy(model)
        self.args, self.kwargs = batch[0], batch[1]
        self.metric, self.baseline, self.settings = metric, baseline, settings

    def __call__(self, choices: dict[str, str]) -> Measured:
        trial = copy.deepcopy(self.model)
        for name, candidate in choices.items():
            fields = CANDIDATES[candidate].settings()
            if fields is not None:
                apply_to_layer(trial, trial.get_submodule(name), name, Quantize(**fields))
        _, value = measure_metric(
            run_outputs(trial, self.data), self.data, self.reference, self.metric
        )
        drop = _drop(self.metric, self.baseline, value)
        saved = torch.get_num_threads()
        torch.set_num_threads(self.settings.threads)
        try:
            original_ms, ms = paired_latency_ms(
                self.original, trial, self.args, self.kwargs, budget_s=MODEL_BUDGET_S
            )
        finally:
            torch.set_num_threads(saved)
        return Measured(ms, original_ms, drop, drop <= self.settings.max_drop + 1e-12)


def families(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Layers alike (same type and weight shape: the q/k/v/out of every encoder layer...),
    the families that take most time first."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["type"], tuple(row.get("shape") or ())), []).append(row)
    ordered = sorted(groups.values(), key=lambda g: -sum(r.get("float_ms") or 0.0 for r in g))
    return [[r["name"] for r in group] for group in ordered]


def _refine(
    rows: list[dict[str, Any]],
    choices: dict[str, str],
    measured: Measured,
    measure: Callable[[dict[str, str]], Measured],
    tick: Callable[[str], Progress],
) -> Generator[Progress, None, tuple[dict[str, str], Measured, int]]:
    """Coordinate descent over families of alike layers, each trial timed end to end: keep
    a change when the model gets REFINE_GAIN faster within the budget."""
    by_name = {row["name"]: row for row in rows}
    trials = 0
    for family in families(rows):
        usable = set.intersection(*(set(_usable(by_name[n])) for n in family)) | {KEEP_FLOAT}
        for candidate in sorted(usable):
            if trials >= REFINE_TRIALS:
                return choices, measured, trials
            if all(choices.get(n, KEEP_FLOAT) == candidate for n in family):
                continue
            trial = {**choices, **{n: candidate for n in family}}
            yield tick(f"trying {candidate} on {len(family)} layer(s) like {family[0]}")
            trials += 1
            result = measure(trial)
            if result.within_budget and result.ratio < measured.ratio * REFINE_GAIN:
                choices, measured = trial, result
    return choices, measured, trials


def decide(plan: Measured | None, uniform: dict[str, Measured]) -> tuple[str, str]:
    """The fastest model within the budget, measured end to end, or the original."""
    options = [("plan", plan)] if plan is not None and plan.within_budget else []
    options += [(f"uniform:{name}", m) for name, m in uniform.items() if m.within_budget]
    if not options:
        return "float", "keep float: no plan and no uniform scheme stays within the budget"
    name, best = min(options, key=lambda item: item[1].ratio)
    if best.ratio > FASTER:
        return "float", (
            f"keep float: the fastest choice within the budget ({name}) runs at "
            f"{best.ratio:.2f}x the original's time on this machine, which does not pay"
        )
    return name, f"chosen: {name} at {best.ratio:.2f}x the original's time, drop {best.drop:.4f}"
