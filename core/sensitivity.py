"""Per-layer sensitivity: prune (or quantize) one layer at a time and measure the damage.

The sweep works on one private copy of the model: each trial changes one layer's weight in
place, measures, and puts the exact original tensor back, so a 50M-parameter model costs
one extra copy, not one per trial. The metric is accuracy when the data has labels and
cosine similarity to the original's outputs otherwise.

``allocate`` turns the curves into per-layer amounts: the greedy marginal-cost allocation
AIMET and Distiller use (raise, step by step, the layer whose next step removes the most
weights per unit of predicted metric loss), with linear interpolation between measured
points so a target sparsity is met exactly.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from core.atomic import atomic_write_bytes, remove_stale_temporaries
from core.data import Dataset
from core.errors import Cancelled, RecipeError, first_line
from core.fidelity import fidelity
from core.inventory import PRUNABLE_TYPES, quantization_of, select
from core.methods import PRUNE_METHODS
from core.metrics import accuracy, run_outputs
from core.pruning import prune_layer
from core.quantization import apply_to_layer, cannot_quantize
from core.recipe import PruneRule, Quantize, Recipe, format_validation_error
from core.removal import EXAMPLE_SAMPLES
from core.schemes import CANDIDATES
from core.structural import plan_removal, remove_channels

SENSITIVITY_VERSION = 1
DEFAULT_AMOUNTS = (0.1, 0.3, 0.5, 0.7, 0.9)
SWEEP_METHODS = tuple(m.name for m in PRUNE_METHODS if m.sweepable)


@dataclass
class SweepSettings:
    layers: Sequence[str] = ("*",)
    types: Sequence[str] | None = None  # None: every prunable layer
    method: str = "l1_unstructured"
    amounts: Sequence[float] = DEFAULT_AMOUNTS
    n: int | float | str = 2
    dim: int = 0
    quantize: str | None = None  # a scheme name: also quantize each layer alone
    subset: int | None = None  # evaluate on the first N samples only
    candidates: Sequence[str] = ()  # plan candidates (core.schemes): each layer alone
    metric: str = "auto"  # auto (accuracy with labels), accuracy or cosine_similarity

    def key(self) -> dict[str, Any]:
        extra = {"candidates": list(self.candidates), "metric": self.metric}
        return {
            **(extra if self.candidates or self.metric != "auto" else {}),
            "layers": list(self.layers),
            "types": list(self.types) if self.types else None,
            "method": self.method,
            "amounts": [float(a) for a in self.amounts],
            "n": self.n,
            "dim": self.dim,
            "quantize": self.quantize,
            "subset": self.subset,
        }


@dataclass
class SweepEvent:
    """Progress; ``layer`` is set when one layer's curve is complete (a partial result)."""

    step: int
    total: int
    message: str
    layer: dict[str, Any] | None = None
    baseline: float | None = None
    metric: str | None = None


@dataclass
class SweepResult:
    data: dict[str, Any]
    cached: bool = False
    cache_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def validate_settings(model: nn.Module, s: SweepSettings) -> list[str]:
    if s.method not in SWEEP_METHODS:
        raise RecipeError(f"--method: {s.method!r} is not one of {', '.join(SWEEP_METHODS)}")
    if not s.amounts and not s.candidates:
        raise RecipeError("--amounts: give at least one amount")
    for name in s.candidates:
        if name not in CANDIDATES:
            raise RecipeError(f"--candidates: {name!r} is not one of {CANDIDATES.choices()}")
    if s.metric not in METRICS:
        raise RecipeError(f"--metric: {s.metric!r} is not one of {', '.join(METRICS)}")
    for a in s.amounts:
        if not 0.0 < float(a) < 1.0:
            raise RecipeError(f"--amounts: {a} is not in (0, 1)")
    if s.subset is not None and s.subset < 1:
        raise RecipeError(f"--subset: {s.subset} must be at least 1")
    names, misses = select(model, s.layers, s.types, predicate=PRUNABLE_TYPES)
    for field_name, value in misses:
        raise RecipeError(f"--{field_name}: {value!r} matches no prunable layer")
    for name in names:
        quantized = quantization_of(model.get_submodule(name))
        if quantized is not None:
            raise RecipeError(
                f"--layers: {name} is already quantized ({quantized}); sweep the float model"
            )
    return names


def fingerprint(model: nn.Module, data: Dataset, settings: SweepSettings) -> str:
    """A content hash of the weights, the data and the settings (the cache key)."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        if isinstance(value, torch.Tensor) and type(value) in (torch.Tensor, nn.Parameter):
            h.update(value.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    tensors = (
        data.x.values()
        if isinstance(data.x, dict)
        else (data.x if isinstance(data.x, tuple) else (data.x,))
    )
    for t in (*tensors, *([data.y] if data.y is not None else [])):
        h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    h.update(json.dumps(settings.key(), sort_keys=True).encode())
    return h.hexdigest()[:32]


def cache_dir() -> Path:
    root = os.environ.get("SECATEUR_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "secateur" / "sensitivity"


# ----------------------------------------------------------------------- the cache
class _Entry(BaseModel):
    """Sensitivity JSON version 1, as the cache holds it (unknown keys are kept)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class _Point(_Entry):
    amount: float
    metric: float


class _Quantized(_Entry):
    scheme: str
    metric: float | None = None
    skipped: str | None = None


class _Alone(_Entry):
    metric: float | None = None
    skipped: str | None = None


class _Curve(_Entry):
    name: str
    type: str
    parameters: int = Field(ge=0)
    points: list[_Point] = Field(default_factory=list)
    quantized: _Quantized | None = None
    candidates: dict[str, _Alone] | None = None  # the plan's quantize-alone trials
    skipped: str | None = None  # why the layer's channels cannot be removed


class SensitivityFile(_Entry):
    """The schema of a sensitivity result (and of a cache entry)."""

    sensitivity_version: Literal[1]
    metric: Literal["accuracy", "cosine_similarity"]
    baseline: float
    method: str
    settings: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    layers: list[_Curve] = Field(min_length=1)


def read_cache(
    path: Path,
    model: nn.Module,
    names: Sequence[str],
    settings: SweepSettings,
    partial: bool = False,
) -> tuple[dict[str, Any] | None, str | None]:
    """A cache entry checked against the schema and against the sweep it stands for.

    Returns (result, None) for a good entry, (None, None) when there is none, and
    (None, reason) for an entry that must be ignored: anyone, or any crash, can leave a
    damaged file in a cache folder, so a cache is validated like every other input.
    ``partial``: the entry a cancelled sweep left, whose layers are some of ``names``, in
    their order.
    """
    where = f"sensitivity cache {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{where}: cannot be read ({first_line(exc, 120)})"
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"{where}: is not JSON ({first_line(exc, 120)})"
    if not isinstance(raw, dict):
        return None, f"{where}: expected a JSON object, got {type(raw).__name__}"
    try:
        entry = SensitivityFile.model_validate(raw)
    except ValidationError as exc:
        return None, f"{where}: {format_validation_error(exc)}"
    modules = dict(model.named_modules())
    amounts = [float(a) for a in settings.amounts]
    held = [row.name for row in entry.layers]
    if partial:
        order = {name: i for i, name in enumerate(names)}
        places = [order.get(name, -1) for name in held]
        if min(places) < 0 or places != sorted(set(places)):
            return None, f"{where}: its layers are not some of the ones swept, in order"
    elif held != list(names):
        return None, f"{where}: its layers are not the ones swept"
    if entry.method != settings.method:
        return None, f"{where}: method {entry.method!r} is not {settings.method!r}"
    if entry.settings != settings.key():
        return None, f"{where}: settings: they are not the ones this sweep runs with"
    for i, row in enumerate(entry.layers):
        if [p.amount for p in row.points] != amounts:
            return None, f"{where}: layers[{i}].points: amounts are not {amounts}"
        module = modules[row.name]
        if row.type != type(module).__name__:
            return None, f"{where}: layers[{i}].type: {row.type!r} is not {type(module).__name__}"
        weight = getattr(module, "weight", None)
        size = weight.numel() if isinstance(weight, torch.Tensor) else row.parameters
        if row.parameters != size:
            return None, f"{where}: layers[{i}].parameters: {row.parameters} is not {size}"
        scheme = row.quantized.scheme if row.quantized is not None else None
        if scheme != settings.quantize:
            return None, f"{where}: layers[{i}].quantized: {scheme!r} is not {settings.quantize!r}"
        tried = list(row.candidates or {})
        if tried != list(settings.candidates):
            return (
                None,
                f"{where}: layers[{i}].candidates: {tried} is not {list(settings.candidates)}",
            )
    return raw, None


METRICS = ("auto", "accuracy", "cosine_similarity")


def measure_metric(outputs, data: Dataset, reference, want: str = "auto") -> tuple[str, float]:
    """(metric name, value): accuracy when the data has labels (or ``want`` says so), else
    cosine similarity of the outputs to ``reference``."""
    if want != "cosine_similarity":
        acc = accuracy(outputs, data)
        if acc is not None:
            return "accuracy", acc
        if want == "accuracy":
            raise RecipeError(
                f"{data.source}: metric accuracy needs labelled data (y) and class logits"
            )
    cos = fidelity(reference, outputs)["cosine_similarity"]
    return "cosine_similarity", float(cos) if cos is not None else 0.0


StopFlag = Callable[[], bool]


@dataclass
class SweepJob:
    """Everything one layer's evaluation needs, prepared once per sweep: the original model
    (never modified), the data it is measured on, the settings, and the original's outputs
    and metric. It is what a cluster executor puts into the object store once."""

    model: nn.Module
    data: Dataset
    settings: SweepSettings
    reference: list
    metric: str
    baseline: float

    @property
    def steps_per_layer(self) -> int:
        """Progress steps one layer's trials count for (every amount and candidate)."""
        s = self.settings
        return len(s.amounts) + (1 if s.quantize else 0) + len(s.candidates)


@dataclass(frozen=True)
class Trial:
    """One trial of one layer measured: ``done`` of the layer's steps are done."""

    layer: str
    done: int
    message: str


@dataclass(frozen=True)
class LayerDone:
    """One layer's row, complete (or ``failed``): what the curves and the JSON hold."""

    layer: str
    row: dict[str, Any]


class Evaluator(Protocol):
    """Where a sweep's per-layer evaluations run: this process (``LocalEvaluator``) or a
    cluster (``core.cluster.RayEvaluator``). ``evaluate`` yields each layer's ``Trial``s
    and then its ``LayerDone``, layer by layer in any order (a layer's trials come before
    its row); it raises ``Cancelled`` when ``should_stop`` says so."""

    def evaluate(
        self, job: SweepJob, names: Sequence[str], should_stop: StopFlag
    ) -> Iterator[Trial | LayerDone]: ...


class LocalEvaluator:
    """Every layer in this process, one after the other, on one private copy of the model."""

    def evaluate(
        self, job: SweepJob, names: Sequence[str], should_stop: StopFlag
    ) -> Iterator[Trial | LayerDone]:
        work = copy.deepcopy(job.model).eval()
        for name in names:
            row = yield from evaluate_layer(job, work, name, should_stop)
            if "failed" in row:  # the copy may be left half-changed: start from a fresh one
                work = copy.deepcopy(job.model).eval()
            yield LayerDone(name, row)


def sweep(
    model: nn.Module,
    data: Dataset,
    settings: SweepSettings,
    should_stop: StopFlag = lambda: False,
    use_cache: bool = True,
    evaluator: Evaluator | None = None,
) -> Generator[SweepEvent, None, SweepResult]:
    """Measure each selected layer pruned alone at each amount (and quantized alone).

    ``evaluator`` says where the evaluations run (default: here, one layer after the
    other). Whatever runs them, the events, the result and the cache key are the same:
    the rows come back in the model's layer order. A layer whose evaluation raised is a
    ``failed`` row with no points; the rest of the sweep completes, and a result with
    failed layers is not cached."""
    names = validate_settings(model, settings)
    eval_data = data.subset(settings.subset) if settings.subset else data
    key = fingerprint(model, eval_data, settings) if use_cache else None
    path = cache_dir() / f"{key}.json" if key else None
    partial_path = cache_dir() / f"{key}{PARTIAL_SUFFIX}" if key else None
    notes: list[str] = []
    resumed: dict[str, Any] | None = None
    if path is not None and partial_path is not None:
        remove_stale_temporaries(path.parent)  # left by a sweep killed while caching
        cached, problem = read_cache(path, model, names, settings)
        if cached is not None:
            for i, row in enumerate(cached["layers"], 1):
                yield SweepEvent(
                    i,
                    len(cached["layers"]),
                    f"{row['name']} (cached)",
                    row,
                    cached["baseline"],
                    cached["metric"],
                )
            return SweepResult(cached, cached=True, cache_path=path)
        if problem is not None:
            notes.append(f"{problem}; it was ignored and the sweep recomputed")
            yield SweepEvent(0, 0, notes[-1])
        resumed, problem = read_cache(partial_path, model, names, settings, partial=True)
        if problem is not None:
            notes.append(f"{problem}; it was ignored")
            yield SweepEvent(0, 0, notes[-1])
    reference = run_outputs(model, eval_data)
    metric_name, baseline = measure_metric(reference, eval_data, reference, settings.metric)
    job = SweepJob(model, eval_data, settings, reference, metric_name, baseline)
    per_layer = job.steps_per_layer
    total = len(names) * per_layer
    finished = 0
    rows: dict[str, dict[str, Any]] = {}
    if resumed is not None and (resumed["metric"], resumed["baseline"]) != (metric_name, baseline):
        notes.append(
            f"sensitivity cache {partial_path}: its baseline {resumed['metric']} "
            f"{resumed['baseline']} is not this run's {baseline}; it was ignored"
        )
        yield SweepEvent(0, 0, notes[-1])
        resumed = None
    if resumed is not None:  # a cancelled sweep's finished layers: only the rest is measured
        for row in resumed["layers"]:
            rows[row["name"]] = row
            finished += 1
            message = f"{row['name']} (cached by a cancelled sweep)"
            yield SweepEvent(finished * per_layer, total, message, row, baseline, metric_name)
        notes.append(
            f"{finished} of {len(names)} layers came from a cancelled sweep's cache "
            f"({partial_path}); the other {len(names) - finished} were measured"
        )
    todo = [name for name in names if name not in rows]
    try:
        items = (evaluator or LocalEvaluator()).evaluate(job, todo, should_stop) if todo else ()
        for item in items:
            if isinstance(item, Trial):
                step = finished * per_layer + item.done
                yield SweepEvent(step, total, item.message, None, baseline, metric_name)
                continue
            rows[item.layer] = item.row
            finished += 1
            failed = item.row.get("failed")
            message = f"{item.layer} failed: {failed}" if failed else f"{item.layer} done"
            yield SweepEvent(finished * per_layer, total, message, item.row, baseline, metric_name)
    except BaseException:  # Cancel, Ctrl-C, a caller that stops early (GeneratorExit), a crash
        if partial_path is not None:
            _cache_partial(partial_path, names, rows, settings, eval_data, metric_name, baseline)
        raise
    missing = [name for name in names if name not in rows]
    if missing:  # an evaluator that lost a layer is a bug, not a partial result
        raise RuntimeError(f"the sweep's evaluator returned no row for {', '.join(missing)}")
    result = _result(settings, eval_data, metric_name, baseline, [rows[n] for n in names])
    failures = failed_layers(result)
    if failures:  # a partial result: shown and saved, never cached as if complete
        first, why = next(iter(failures.items()))
        note = (
            f"{len(failures)} of {len(names)} layers failed to evaluate (first: {first}: "
            f"{why}); the result is not cached"
        )
        return SweepResult(result, cached=False, cache_path=None, notes=[*notes, note])
    if path is not None:
        if _write_cache(path, result):
            with contextlib.suppress(OSError):
                partial_path.unlink(missing_ok=True)  # type: ignore[union-attr]
        else:
            path = None
    return SweepResult(result, cached=False, cache_path=path, notes=notes)


def _result(
    settings: SweepSettings,
    data: Dataset,
    metric: str,
    baseline: float,
    layers: list[dict[str, Any]],
) -> dict[str, Any]:
    """A sweep's result (sensitivity JSON version 1), complete or a cancelled part."""
    return {
        "sensitivity_version": SENSITIVITY_VERSION,
        "metric": metric,
        "baseline": baseline,
        "method": settings.method,
        "settings": settings.key(),
        "data": {"source": data.source, "samples": len(data)},
        "layers": layers,
    }


def _write_cache(path: Path, entry: dict[str, Any]) -> bool:
    """Write a cache entry atomically; False when it cannot be written (caching is a
    convenience: a read-only home must not fail the sweep)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(entry).encode())
    except Exception:
        return False
    return True


PARTIAL_SUFFIX = ".partial.json"  # beside a cache entry: a cancelled sweep's finished layers


def _cache_partial(
    path: Path,
    names: Sequence[str],
    rows: dict[str, dict[str, Any]],
    settings: SweepSettings,
    data: Dataset,
    metric: str,
    baseline: float,
) -> None:
    """Keep a cancelled sweep's finished layers (failed ones are measured again), so the
    next sweep with the same model, data and settings measures only the rest."""
    done = [rows[name] for name in names if name in rows and not rows[name].get("failed")]
    if not done:
        return
    _write_cache(path, {**_result(settings, data, metric, baseline, done), "partial": True})


def failed_layers(result: dict[str, Any]) -> dict[str, str]:
    """Layer name -> why its evaluation failed, for the rows of a sweep that failed."""
    return {row["name"]: row["failed"] for row in result["layers"] if row.get("failed")}


def evaluate_layer(
    job: SweepJob, work: nn.Module, name: str, should_stop: StopFlag = lambda: False
) -> Generator[Trial, None, dict[str, Any]]:
    """Measure layer ``name`` alone at every amount (and scheme, and candidate); yield a
    ``Trial`` per step and return its row. This one function runs in this process and in a
    cluster's worker alike. ``work`` is a private copy of ``job.model``: each trial
    changes it and puts it back. An exception while evaluating makes a ``failed`` row (no
    points, the reason in one line); ``Cancelled`` is raised as it is."""
    try:
        return (yield from _layer_trials(job, work, name, should_stop))
    except Cancelled:
        raise
    except Exception as exc:
        return failed_row(job.model, name, f"{type(exc).__name__}: {first_line(exc, 200)}")


def failed_row(model: nn.Module, name: str, reason: str) -> dict[str, Any]:
    """The row of a layer whose evaluation failed: no points, and why."""
    module = model.get_submodule(name)
    return {
        "name": name,
        "type": type(module).__name__,
        "parameters": int(module.weight.numel()),
        "points": [],
        "failed": reason,
    }


def _layer_trials(
    job: SweepJob, work: nn.Module, name: str, should_stop: StopFlag
) -> Generator[Trial, None, dict[str, Any]]:
    settings, data, reference = job.settings, job.data, job.reference
    want = settings.metric
    module = work.get_submodule(name)
    done = 0
    points = []
    skipped = None
    for amount in settings.amounts:
        if should_stop():
            raise Cancelled()
        with _seeded(name, float(amount)):
            value, skipped = _pruned_alone(job, work, module, name, float(amount))
        points.append({"amount": float(amount), "metric": value})
        done += 1
        yield Trial(name, done, f"{name}: {settings.method} {amount} -> {value:.4f}")
    row: dict[str, Any] = {
        "name": name,
        "type": type(module).__name__,
        "parameters": int(module.weight.numel()),
        "points": points,
    }
    if skipped:
        row["skipped"] = skipped
    if settings.quantize:
        if should_stop():
            raise Cancelled()
        q = Quantize(scheme=settings.quantize)  # type: ignore[arg-type]
        trial = _quantized_alone(work, name, q, data, reference, want)
        row["quantized"] = {"scheme": settings.quantize, **trial}
        done += 1
    if settings.candidates:
        row["candidates"] = {}
        for candidate in settings.candidates:
            if should_stop():
                raise Cancelled()
            cq = CANDIDATES[candidate].settings()
            row["candidates"][candidate] = (
                {"metric": job.baseline}
                if cq is None
                else _quantized_alone(work, name, Quantize(**cq), data, reference, want)
            )
            done += 1
            yield Trial(name, done, f"{name}: {candidate} alone")
    return row


@contextlib.contextmanager
def _seeded(name: str, amount: float) -> Iterator[None]:
    """torch's random generator seeded from the trial alone, and put back afterwards: a
    random method prunes the same weights whichever process runs the trial, in whatever
    order (a local sweep and a cluster's workers agree), and the caller's stream of random
    numbers is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(f"{name}:{amount!r}".encode()))
        yield


def _pruned_alone(
    job: SweepJob, work: nn.Module, module: nn.Module, name: str, amount: float
) -> tuple[float, str | None]:
    """The metric with ``amount`` of layer ``name`` pruned (``work`` put back after), and
    why its channels cannot be removed when the method removes them."""
    settings, data, reference = job.settings, job.data, job.reference
    if PRUNE_METHODS[settings.method].removes:
        outputs, skipped = _removed_alone(job.model, name, amount, data)
        return measure_metric(outputs, data, reference, settings.metric)[1], skipped
    saved = module.weight.detach().clone()
    rule = PruneRule(method=settings.method, amount=amount, n=settings.n, dim=settings.dim)
    prune_layer(module, rule, hold=False)
    try:
        outputs = run_outputs(work, data)
        return measure_metric(outputs, data, reference, settings.metric)[1], None
    finally:
        with torch.no_grad():
            module.weight.copy_(saved)


def _removed_alone(
    model: nn.Module, name: str, amount: float, data: Dataset
) -> tuple[list, str | None]:
    """The outputs with ``amount`` of layer ``name``'s channels removed (and what is coupled
    with it), on a copy; and why the layer's channels cannot be removed (then the outputs are
    the original's)."""
    args, kwargs, _ = data.slice(0, min(EXAMPLE_SAMPLES, len(data)))
    plan = plan_removal(model, {name: amount}, (args, kwargs))
    if name in plan.skipped:
        return run_outputs(model, data), plan.skipped[name]
    trial = copy.deepcopy(model)
    gen = remove_channels(trial, plan)
    for _ in gen:
        pass
    return run_outputs(trial, data), None


def _quantized_alone(
    work: nn.Module, name: str, q: Quantize, data: Dataset, reference, want: str
) -> dict[str, Any]:
    """The metric with layer ``name`` alone quantized per ``q`` ({"metric": m}), or why the
    layer cannot take it ({"metric": None, "skipped": reason})."""
    original = work.get_submodule(name)
    reason = cannot_quantize(original, q)
    if reason is not None:
        return {"metric": None, "skipped": reason}
    parent_name, _, child = name.rpartition(".")
    parent = work.get_submodule(parent_name) if parent_name else work
    trial = copy.deepcopy(original)
    holder = nn.Module()
    holder.add_module("layer", trial)
    apply_to_layer(holder, trial, "layer", q)
    setattr(parent, child, holder.layer)
    try:
        _, value = measure_metric(run_outputs(work, data), data, reference, want)
    finally:
        setattr(parent, child, original)
    return {"metric": value}


def _interp(points: list[tuple[float, float]], amount: float) -> float:
    """Metric at ``amount`` by linear interpolation over (amount, metric) points."""
    for (a0, m0), (a1, m1) in itertools.pairwise(points):
        if a0 <= amount <= a1:
            return m0 if a1 == a0 else m0 + (m1 - m0) * (amount - a0) / (a1 - a0)
    return points[-1][1]


def allocate(
    result: dict[str, Any],
    target_sparsity: float | None = None,
    max_drop: float | None = None,
    max_amount: float | None = None,
) -> dict[str, float]:
    """Per-layer amounts from the curves.

    With ``target_sparsity``: reach that fraction of zeros over all swept layers' weights
    with the least predicted loss (stopping early only if ``max_drop`` is also given and
    would be exceeded). With only ``max_drop``: the highest sparsity whose predicted drop
    (the sum of per-layer drops) stays within it. Predicted drops are additive.
    """
    if target_sparsity is None and max_drop is None:
        raise RecipeError("give --target-sparsity, --max-drop or both")
    if target_sparsity is not None and not 0.0 < target_sparsity < 1.0:
        raise RecipeError(f"--target-sparsity: {target_sparsity} is not in (0, 1)")
    if max_drop is not None and max_drop < 0:
        raise RecipeError(f"--max-drop: {max_drop} is negative")
    baseline = float(result["baseline"])
    layers = [row for row in result["layers"] if not row.get("skipped") and not row.get("failed")]
    if not layers:
        raise RecipeError(
            "the sensitivity result has no layers (or every one was skipped or failed)"
        )
    reachable = min(max((p["amount"] for p in row["points"]), default=0.0) for row in layers)
    top = max(max((p["amount"] for p in row["points"]), default=0.0) for row in layers)
    if target_sparsity is not None and target_sparsity > top + 1e-9:
        raise RecipeError(
            f"--target-sparsity: {target_sparsity} is above the largest swept amount ({top}); "
            "add higher --amounts"
        )
    del reachable
    curves = {}
    for row in layers:
        pts = [(0.0, baseline)] + [(p["amount"], p["metric"]) for p in row["points"]]
        pts.sort()
        if max_amount is not None:
            pts = [p for p in pts if p[0] <= max_amount]
        curves[row["name"]] = pts
    sizes = {row["name"]: row["parameters"] for row in layers}
    total = sum(sizes.values())
    level = {name: 0 for name in curves}  # index into each curve
    pruned = 0.0
    drop = 0.0
    target_count = None if target_sparsity is None else target_sparsity * total

    def step_cost(name: str) -> tuple[float, float, float]:
        pts = curves[name]
        i = level[name]
        a0, m0 = pts[i]
        a1, m1 = pts[i + 1]
        gained = (a1 - a0) * sizes[name]
        loss = max(m0 - m1, 0.0)
        return loss / gained if gained else float("inf"), gained, loss

    amounts = {name: 0.0 for name in curves}
    while True:
        if target_count is not None and pruned >= target_count - 1e-9:
            break
        options = [n for n in curves if level[n] + 1 < len(curves[n])]
        if not options:
            break
        best = min(options, key=lambda n: (step_cost(n)[0], n))
        _, gained, loss = step_cost(best)
        if max_drop is not None and drop + loss > max_drop + 1e-12:
            # take the affordable fraction of this step, then stop
            if loss > 0:
                frac = (max_drop - drop) / loss
                if target_count is not None:
                    frac = min(frac, (target_count - pruned) / gained)
                a0 = curves[best][level[best]][0]
                a1 = curves[best][level[best] + 1][0]
                amounts[best] = a0 + (a1 - a0) * max(frac, 0.0)
            break
        if target_count is not None and pruned + gained > target_count:
            frac = (target_count - pruned) / gained
            a0 = curves[best][level[best]][0]
            a1 = curves[best][level[best] + 1][0]
            amounts[best] = a0 + (a1 - a0) * frac
            pruned = target_count
            break
        level[best] += 1
        amounts[best] = curves[best][level[best]][0]
        pruned += gained
        drop += loss
    return {name: round(a, 4) for name, a in amounts.items()}


def predicted(result: dict[str, Any], amounts: dict[str, float]) -> dict[str, float]:
    """Overall sparsity and predicted metric of an allocation, from the curves."""
    baseline = float(result["baseline"])
    total = zeros = 0.0
    drop = 0.0
    for row in result["layers"]:
        if row.get("skipped") or row.get("failed"):
            continue
        pts = sorted([(0.0, baseline)] + [(p["amount"], p["metric"]) for p in row["points"]])
        a = amounts.get(row["name"], 0.0)
        total += row["parameters"]
        zeros += a * row["parameters"]
        drop += max(baseline - _interp(pts, a), 0.0)
    return {"sparsity": zeros / total if total else 0.0, "metric": baseline - drop}


def recipe_from_amounts(
    amounts: dict[str, float], method: str = "l1_unstructured", base: Recipe | None = None
) -> Recipe:
    """A recipe with one rule per layer (amount 0 layers are left out)."""
    rules = [
        PruneRule(layers=[name], method=method, amount=float(a))  # type: ignore[arg-type]
        for name, a in amounts.items()
        if a > 0
    ]
    data: dict[str, Any] = {"version": 1, "prune": [r.model_dump(mode="json") for r in rules]}
    if base is not None:
        if base.finetune is not None:
            data["finetune"] = base.finetune.model_dump(mode="json")
        if base.quantize:
            data["quantize"] = [q.model_dump(mode="json", exclude_none=True) for q in base.quantize]
    return Recipe.from_dict(data, "automatic amounts")


__all__ = [
    "DEFAULT_AMOUNTS",
    "Evaluator",
    "LayerDone",
    "LocalEvaluator",
    "SweepEvent",
    "SweepJob",
    "SweepResult",
    "SweepSettings",
    "Trial",
    "allocate",
    "evaluate_layer",
    "failed_layers",
    "predicted",
    "recipe_from_amounts",
    "sweep",
]
