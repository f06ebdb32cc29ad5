"""The command line: ``secateur inspect``, ``secateur compress`` and ``secateur sensitivity``.

Flags are parsed by ``core.parser`` (the one parser); the work is done by ``core.tasks`` (the
same jobs the window runs); the tables come from ``core.report``. Exit codes: 0 success;
2 a user error (one line on stderr naming the file or field, no traceback); 1 an unexpected
internal error; 130 cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

from core.atomic import atomic_write_bytes, describe_removed, on_stale_removed
from core.cluster import RayEvaluator
from core.data import Dataset, parse_input_shape, random_data
from core.demos import DEMOS
from core.engine import Progress, run
from core.errors import Cancelled, UnsupportedError, UserError
from core.formats import SAVE_FORMATS, default_format, format_for_suffix, recipe_view
from core.memory import estimate
from core.onnx_runtime import describe_onnx, is_onnx
from core.parser import parse
from core.plan import Plan
from core.recipe import Quantize, Recipe, dump_recipe, load_recipe
from core.report import Report, format_value, shape_text
from core.schemes import CANDIDATES
from core.sensitivity import (
    SweepSettings,
    allocate,
    failed_layers,
    predicted,
    recipe_from_amounts,
)
from core.tasks import (
    Opened,
    check_data_paths,
    compress_model,
    open_data,
    open_model,
    plan_model,
    save_result,
    sweep_model,
)

MISSING = "-"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run one subcommand; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv, window_default=False)
    except UserError as exc:
        return _fail(exc)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand; every error becomes its exit code and one line.

    Stale temporaries that a killed or powered-off earlier run left beside a file this run
    opens or writes are removed on the way (``core.atomic``); each removal is one line."""
    stop_listening = on_stale_removed(_say_removed)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        return _fail(exc)
    except Cancelled:
        print("secateur: cancelled; nothing was written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("secateur: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("secateur: internal error (a bug in Secateur; please report it)", file=sys.stderr)
        return 1
    finally:
        stop_listening()


def _say_removed(removed: list[Path]) -> None:
    if ProgressBar.drawn is not None:
        ProgressBar.drawn.close()  # the note on a line of its own
    print(f"secateur: note: {describe_removed(removed)}", file=sys.stderr)


def _fail(exc: UserError) -> int:
    print(f"secateur: error: {exc}", file=sys.stderr)
    return 2


def _open(args: argparse.Namespace) -> Opened:
    """The model the flags name (MODEL or --demo), opened as the window opens it."""
    if args.demo and args.model:
        raise UserError(f"give a MODEL or --demo, not both (got {args.model!r})")
    if not args.demo and not args.model:
        raise UserError("give a MODEL file or --demo")
    if args.demo:
        return run(open_model(None, demo=args.demo))
    return run(open_model(Path(args.model), args.arch, args.trust))


def _inputs(args: argparse.Namespace, opened: Opened) -> tuple[Dataset | None, Dataset | None]:
    """Evaluation and training data: the flags' files, else the demo's own."""
    data_arg, train_arg = getattr(args, "data", None), getattr(args, "train_data", None)
    check_data_paths(data_arg, train_arg)
    data = run(open_data(Path(data_arg))) if data_arg else opened.eval_data
    train = run(open_data(Path(train_arg))) if train_arg else opened.train_data
    return data, train


def _shape(args: argparse.Namespace) -> tuple[int, ...] | None:
    return parse_input_shape(args.input_shape) if args.input_shape else None


def _threads(value: int) -> int:
    if value < 1:
        raise UserError(f"--threads: {value} must be at least 1")
    return value


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[RayEvaluator | None]:
    """The Ray cluster ``--ray`` names, joined before any other work (a bad address or a
    missing Ray fails at once) and left afterwards; None without ``--ray``."""
    if args.ray is None:
        yield None
        return
    evaluator = RayEvaluator(args.ray)
    if sys.stderr.isatty():
        where = "starting Ray on this machine" if args.ray == "local" else "connecting"
        print(f"secateur: {where} ({args.ray})...", file=sys.stderr)
    evaluator.connect()
    try:
        yield evaluator
    finally:
        evaluator.close()


def _cluster_line(evaluator: RayEvaluator | None) -> None:
    """Where the evaluations ran (nothing ran there when the cache had them)."""
    if evaluator is None:
        return
    status = evaluator.status
    if status.tasks:
        print(f"evaluated on {status.text()}")
    else:
        print(f"{status.text()}: nothing to evaluate there (cached)")


# ---------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    if args.model and not args.demo and is_onnx(Path(args.model)):
        return _inspect_onnx(Path(args.model), args.json)
    opened = _open(args)
    loaded, rows = opened.loaded, opened.layers
    if args.json:
        payload = {
            "model": {"source": loaded.source, "format": loaded.format, "class": loaded.class_name},
            "layers": [
                {
                    "name": r.name,
                    "type": r.type,
                    "parameters": r.parameters,
                    "weight_shape": list(r.weight_shape) if r.weight_shape else None,
                    "dtype": r.dtype,
                    "sparsity": r.sparsity,
                    "prunable": r.prunable,
                    "quantization": r.quantization,
                }
                for r in rows
            ],
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{loaded.display_name}: {loaded.class_name} ({loaded.format})")
    table = [("name", "type", "parameters", "shape", "sparsity", "dtype")]
    for r in rows:
        table.append(
            (
                ("  " * max(r.depth - 1, 0)) + (r.name or "(model)"),
                r.type,
                f"{r.parameters:,}" if r.parameters else "",
                "x".join(map(str, r.weight_shape)) if r.weight_shape else "",
                f"{r.sparsity:.3f}" if r.sparsity is not None else "",
                r.quantization or r.dtype or "",
            )
        )
    print_table(table, sys.stdout)
    total = sum(r.parameters for r in rows)
    print(f"{len(rows)} modules, {total:,} parameters")
    return 0


def _inspect_onnx(path: Path, as_json: bool) -> int:
    """An ONNX file's graph, node by node (it runs in ONNX Runtime, not in torch)."""
    summary = describe_onnx(path)
    if as_json:
        payload = {
            "model": {"source": str(path), "format": "onnx", "int8": summary.int8},
            "inputs": [list(i) for i in summary.inputs],
            "outputs": [list(o) for o in summary.outputs],
            "layers": [
                {
                    "name": layer.name,
                    "type": layer.op,
                    "parameters": layer.parameters,
                    "weight_shape": list(layer.shape) if layer.shape else None,
                    "dtype": layer.dtype,
                    "sparsity": layer.sparsity,
                }
                for layer in summary.layers
            ],
        }
        print(json.dumps(payload, indent=2, default=str))
        return 0
    kind = "ONNX, int8" if summary.int8 else "ONNX"
    opset = summary.opsets.get("ai.onnx") or summary.opsets.get("", "?")
    print(f"{path.name}: {summary.producer or 'ONNX graph'} ({kind}, opset {opset})")
    table = [("name", "op", "parameters", "shape", "sparsity", "dtype")]
    for layer in summary.layers:
        table.append(
            (
                layer.name,
                layer.op,
                f"{layer.parameters:,}" if layer.parameters else "",
                "x".join(map(str, layer.shape)) if layer.shape else "",
                f"{layer.sparsity:.3f}" if layer.sparsity is not None else "",
                layer.dtype or "",
            )
        )
    print_table(table, sys.stdout)
    print(f"{len(summary.layers)} nodes, {summary.parameters:,} parameters")
    return 0


# --------------------------------------------------------------------------- compress
def cmd_compress(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    # the parser allows no --recipe with --demo: the demo's own recipe
    recipe = load_recipe(args.recipe or DEMOS[args.demo].recipe)
    threads = _threads(args.threads)
    opened = _open(args)
    data, train = _inputs(args, opened)
    loaded = opened.loaded
    load_s = time.perf_counter() - t0
    warning = estimate(loaded.model, recipe).warning()
    if warning:
        print(f"secateur: warning: {warning}", file=sys.stderr)
    out = Path(args.output)
    view = recipe_view(recipe)
    # an extension that belongs to one format (.onnx, .secz, .pt2, .ts) saves in it
    forced = format_for_suffix(out.suffix)
    fmt = args.format or forced or default_format(loaded.format, view, out)
    refusal = SAVE_FORMATS[fmt].refuses(view, out)
    if refusal is not None:  # before any work: the result could not be saved this way
        if args.format:
            where = f"--format {fmt}"
        elif forced:
            where = f"format {fmt} (from the {out.suffix} extension)"
        else:
            where = f"format {fmt} (the default for this input; choose one with --format)"
        raise UnsupportedError(f"{where}: {refusal}")
    bar = ProgressBar(sys.stderr)
    result = run(
        compress_model(
            loaded,
            recipe,
            data,
            train,
            input_shape=_shape(args),
            skip_metrics=args.skip_metrics,
            threads=threads,
        ),
        bar.update,
    )
    bar.close()
    report = result.report
    report.timings_s["load"] = load_s
    run(save_result(result, loaded, out, fmt, force=args.force))
    print_summary(report, sys.stdout)
    if args.report:
        report.write(Path(args.report))
    return 0


# ------------------------------------------------------------------------ sensitivity
def _parse_amounts(text: str) -> list[float]:
    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--amounts: {text!r} is not a comma-separated list of fractions") from None


def cmd_sensitivity(args: argparse.Namespace) -> int:
    with _cluster(args) as evaluator:
        return _sensitivity(args, evaluator)


def _sensitivity(args: argparse.Namespace, evaluator: RayEvaluator | None) -> int:
    opened = _open(args)
    loaded = opened.loaded
    loaded.require_eager()  # before asking for data it could not use
    data, _ = _inputs(args, opened)
    if data is None:
        shape = _shape(args)
        if shape is None:
            raise UserError("give --data (or --input-shape) to measure sensitivity on")
        data = random_data(shape)
    if args.emit_recipe and args.target_sparsity is None and args.max_drop is None:
        raise UserError("--emit-recipe needs --target-sparsity or --max-drop")
    settings = SweepSettings(
        layers=args.layers,
        types=args.types,
        method=args.method,
        amounts=_parse_amounts(args.amounts),
        quantize=args.quantize,
        subset=args.subset,
    )
    bar = ProgressBar(sys.stderr)
    job = sweep_model(loaded, data, settings, use_cache=not args.no_cache, evaluator=evaluator)
    result = run(job, bar.update)
    bar.close()
    for note in result.notes:
        print(f"secateur: note: {note}", file=sys.stderr)
    payload = result.data
    failures = failed_layers(payload)
    if failures and len(failures) == len(payload["layers"]):
        name, why = next(iter(failures.items()))
        raise UserError(f"sensitivity: every layer failed to evaluate (first: {name}: {why})")
    out = Path(args.output)
    atomic_write_bytes(out, (json.dumps(payload, indent=2) + "\n").encode())
    print_sensitivity(payload, args.quantize, result.cached, sys.stdout)
    _cluster_line(evaluator)
    if args.target_sparsity is not None or args.max_drop is not None:
        amounts = allocate(payload, args.target_sparsity, args.max_drop)
        guess = predicted(payload, amounts)
        print(
            "\nautomatic amounts: "
            + ", ".join(f"{k} {v:g}" for k, v in amounts.items())
            + f"\npredicted: sparsity {guess['sparsity']:.4f}, "
            f"{payload['metric']} {guess['metric']:.4f}"
        )
        if args.emit_recipe:
            dump_recipe(recipe_from_amounts(amounts, settings.method), Path(args.emit_recipe))
            print(f"wrote {args.emit_recipe}")
    print(f"wrote {out}")
    return 0


def print_sensitivity(
    payload: dict[str, Any], scheme: str | None, cached: bool, stream: TextIO
) -> None:
    """The sweep as a table: one row per layer, one column per amount."""
    amounts = payload["settings"]["amounts"]
    rows = [("layer", "type", "parameters", *[f"{a:g}" for a in amounts])]
    if scheme:
        rows[0] = (*rows[0], scheme)
    for row in payload["layers"]:
        skipped = bool(row.get("skipped"))
        if row.get("failed"):
            values = ["failed"] * len(amounts)
        else:
            values = ["skipped" if skipped else f"{p['metric']:.4f}" for p in row["points"]]
        cells = (row["name"], row["type"], f"{row['parameters']:,}", *values)
        if scheme:
            q = row.get("quantized") or {}
            text = f"{q['metric']:.4f}" if q.get("metric") is not None else "skipped"
            cells = (*cells, "failed" if row.get("failed") else text)
        rows.append(cells)
    print(
        f"{payload['metric']} per layer pruned alone ({payload['method']}); "
        f"baseline {payload['baseline']:.4f}" + (" [cached]" if cached else ""),
        file=stream,
    )
    print_table(rows, stream)
    for row in payload["layers"]:
        if row.get("skipped"):
            print(f"{row['name']}: skipped ({row['skipped']})", file=stream)
        if row.get("failed"):
            print(f"{row['name']}: failed ({row['failed']})", file=stream)


# --------------------------------------------------------------------------------- plan
def _plan_rule(args: argparse.Namespace) -> Quantize:
    """The flags as a ``scheme: auto`` rule; a bad value names its flag."""
    if not 0.0 <= args.max_drop <= 1.0:
        raise UserError(f"--max-drop: {args.max_drop} is not in [0, 1]")
    for flag, value in (("--threads", args.threads), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag}: {value} must be at least 1")
    candidates = None
    if args.candidates:
        candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
        for name in candidates:
            if name not in CANDIDATES:
                raise UserError(f"--candidates: {name!r} is not one of {CANDIDATES.choices()}")
    return Quantize(
        scheme="auto",
        layers=args.layers,
        types=args.types,
        max_drop=args.max_drop,
        metric=args.metric,
        candidates=candidates,
        threads=args.threads,
        batch_size=args.batch_size,
    )


def cmd_plan(args: argparse.Namespace) -> int:
    rule = _plan_rule(args)
    with _cluster(args) as evaluator:
        return _plan(args, rule, evaluator)


def _plan(args: argparse.Namespace, rule: Quantize, evaluator: RayEvaluator | None) -> int:
    opened = _open(args)
    loaded = opened.loaded
    loaded.require_eager()
    data, _ = _inputs(args, opened)
    if data is None:
        shape = _shape(args)
        if shape is None:
            raise UserError(
                "quantize.scheme: auto measures every candidate on this machine: give --data "
                "(or --input-shape)"
            )
        data = random_data(shape)
    bar = ProgressBar(sys.stderr)
    job = plan_model(
        loaded, data, rule, "--layers", use_cache=not args.no_cache, evaluator=evaluator
    )
    plan = run(job, bar.update)
    bar.close()
    print_plan(plan, sys.stdout)
    _cluster_line(evaluator)
    types = {info.name: info.type for info in opened.layers}
    recipe = Recipe(version=1, quantize=plan.rules(types, with_float=True))
    dump_recipe(recipe, Path(args.emit_recipe))
    print(f"wrote {args.emit_recipe}")
    if args.output:
        atomic_write_bytes(
            Path(args.output), (json.dumps(plan.to_dict(), indent=2) + "\n").encode()
        )
        print(f"wrote {args.output}")
    return 0


def print_plan(plan: Plan, stream: TextIO) -> None:
    """Per layer: every candidate's time ratio and drop, and the choice; then end to end."""
    names = list(plan.settings.candidates)
    rows = [("layer", "type", "float ms", *names, "choice")]
    for row in plan.layers:
        cells = []
        for name in names:
            m = row["candidates"].get(name, {})
            if "ms" not in m:
                cells.append("n/a")
            else:
                drop = m.get("drop")
                cells.append(f"{m['ratio']:.2f}x" + (f" -{drop:.3f}" if drop else ""))
        choice = plan.choices.get(row["name"], "float")
        float_ms = row.get("float_ms")
        rows.append(
            (
                row["name"],
                row["type"],
                f"{float_ms:.4f}" if float_ms else "-",
                *cells,
                choice,
            )
        )
    s = plan.settings
    print(
        f"per-layer time vs float and {plan.metric} drop, each layer alone ({s.threads} "
        f"thread{'s' * (s.threads != 1)}, batch {s.batch_size}; budget {s.max_drop:g})",
        file=stream,
    )
    print_table(rows, stream)
    table = [("whole model", "time vs original", f"{plan.metric} drop", "within budget")]
    measured = [("plan", plan.plan)] + [(f"all {n}", m) for n, m in plan.uniform.items()]
    for label, m in measured:
        if m is not None:
            verdict = "yes" if m.within_budget else "no"
            table.append((label, f"{m.ratio:.3f}x", f"{m.drop:.4f}", verdict))
    print(file=stream)
    print_table(table, stream)
    for note in plan.notes:
        print(f"note: {note}", file=stream)
    print(f"plan took {plan.seconds:.1f} s", file=stream)


# Looked up when called, so a test can replace a command (and see exit code 1 for a bug).
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "inspect": lambda args: cmd_inspect(args),
    "compress": lambda args: cmd_compress(args),
    "sensitivity": lambda args: cmd_sensitivity(args),
    "plan": lambda args: cmd_plan(args),
}


# ------------------------------------------------------------------------------ output
class ProgressBar:
    """A one-line progress bar on a terminal; plain step lines otherwise (quiet in pipes)."""

    drawn: ClassVar[ProgressBar | None] = None
    """The bar on the terminal now: a note printed meanwhile clears it first."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty() and os.environ.get("TERM") != "dumb"
        self.last = ""

    def update(self, event: Progress) -> None:
        if not self.tty:
            return
        width = 28
        done = int(width * event.step / max(event.total, 1))
        line = f"\r[{'#' * done}{'.' * (width - done)}] {event.step}/{event.total} {event.message}"
        line = line[:119]
        if line != self.last:
            self.stream.write(line.ljust(len(self.last)))
            self.stream.flush()
            self.last = line
            ProgressBar.drawn = self

    def close(self) -> None:
        """Clear the bar's line (the next update draws it again)."""
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
            self.stream.flush()
        self.last = ""
        if ProgressBar.drawn is self:
            ProgressBar.drawn = None


def print_table(rows: list[tuple[str, ...]], stream: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip(), file=stream)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=stream)


def print_summary(report: Report, stream: TextIO) -> None:
    """The before/after table a person reads after a compression."""
    rows = [("metric", "before", "after", "after/before")]
    for row in report.size_rows():
        r = row.ratio
        rows.append(
            (
                row.label.lower(),
                row.before_text(MISSING),
                row.after_text(MISSING),
                f"{r:.3f}x" if r is not None else MISSING,
            )
        )
    print_table(rows, stream)
    parts = [
        f"{row.label.lower()} {row.after_text()}"
        for row in report.fidelity_rows()
        if row.after is not None
    ]
    if parts:
        print("fidelity: " + ", ".join(parts), file=stream)
    if report.saved:
        print(f"round trip: {report.round_trip_text()}", file=stream)
    touched = report.touched_layers()
    if touched:
        reshaped = any(layer.reshaped for layer in touched)
        head = ("layer", "type", *(("weight shape",) if reshaped else ()))
        table = [(*head, "sparsity before", "after", "quantization")]
        for layer in touched:
            shape = (shape_text(layer.shape_before, layer.shape_after),) if reshaped else ()
            table.append(
                (
                    layer.name,
                    layer.type,
                    *shape,
                    format_value(layer.sparsity_before, "frac", MISSING),
                    format_value(layer.sparsity_after, "frac", MISSING),
                    layer.quantization
                    or (f"skipped: {layer.skipped}" if layer.skipped else MISSING),
                )
            )
        print(file=stream)
        print_table(table, stream)
    for note in report.notes:
        print(f"note: {note}", file=stream)
    if report.output:
        print(f"saved {report.output['path']} ({report.output['format']})", file=stream)
