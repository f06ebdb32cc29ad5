"""The command line: ``secateur inspect``, ``secateur compress`` (and ``sensitivity``).

Exit codes: 0 success; 2 a user error (one line on stderr naming the file or field, no
traceback); 1 an unexpected internal error. The window's own flags are handled by
``gui.launcher``, which hands these subcommands over without importing Qt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import core
from core.data import Dataset, load_data, parse_input_shape
from core.engine import Progress, compress, run
from core.errors import Cancelled, UserError
from core.inventory import inventory
from core.loading import LoadedModel, load_demo, load_model
from core.recipe import load_recipe
from core.saving import SAVE_FORMATS, atomic_write_bytes, default_format, save_model

SUBCOMMANDS = ("inspect", "compress", "sensitivity")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a user error (exit 2, one line)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secateur",
        description="Make trained PyTorch models smaller and faster; every number measured.",
    )
    parser.add_argument("--version", action="version", version=f"secateur {core.__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("inspect", help="print the layer table of a model")
    p.add_argument("model", help="model file (state dict, pickle, TorchScript, .pt2)")
    p.add_argument("--arch", help="FILE.py:callable or package.module:callable")
    p.add_argument("--trust", action="store_true", help="allow loading a full pickled model")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    c = sub.add_parser("compress", help="prune and quantize a model per a recipe")
    c.add_argument("model", nargs="?", help="model file (or --demo)")
    c.add_argument("--demo", action="store_true", help="use the bundled digits CNN and its data")
    c.add_argument("--recipe", required=True, help="recipe file (YAML or JSON)")
    c.add_argument("--output", required=True, help="where to write the compressed model")
    c.add_argument("--format", choices=SAVE_FORMATS, help="default: the input's own kind")
    c.add_argument("--arch", help="FILE.py:callable or package.module:callable")
    c.add_argument("--data", help="evaluation data (.npz or .pt with x and optional y)")
    c.add_argument("--train-data", help="training data for the recipe's finetune step")
    c.add_argument("--input-shape", help="random input shape without data, e.g. 1x3x224x224")
    c.add_argument("--report", help="write the JSON report here")
    c.add_argument("--trust", action="store_true", help="allow loading a full pickled model")
    c.add_argument("--skip-metrics", action="store_true", help="sizes and sparsity only")
    c.add_argument("--force", action="store_true", help="allow overwriting the input model")
    c.add_argument(
        "--threads", type=int, default=1, help="threads for the latency measurement (default 1)"
    )

    s = sub.add_parser("sensitivity", help="prune (or quantize) one layer at a time and measure")
    s.add_argument("model", nargs="?", help="model file (or --demo)")
    s.add_argument("--demo", action="store_true", help="use the bundled digits CNN and its data")
    s.add_argument("--data", help="evaluation data (.npz or .pt with x and optional y)")
    s.add_argument("--input-shape", help="random input shape without data, e.g. 1x3x224x224")
    s.add_argument("--arch", help="FILE.py:callable or package.module:callable")
    s.add_argument("--trust", action="store_true", help="allow loading a full pickled model")
    s.add_argument("--layers", nargs="+", default=["*"], metavar="PATTERN")
    s.add_argument("--types", nargs="+", default=["Conv2d", "Linear"], metavar="TYPE")
    s.add_argument("--method", default="l1_unstructured")
    s.add_argument("--amounts", default="0.1,0.3,0.5,0.7,0.9")
    s.add_argument("--quantize", metavar="SCHEME", help="also quantize each layer alone")
    s.add_argument("--subset", type=int, help="evaluate on the first N samples only")
    s.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    s.add_argument("--output", required=True, help="write the sensitivity JSON here")
    s.add_argument("--target-sparsity", type=float, help="overall sparsity to reach")
    s.add_argument("--max-drop", type=float, help="largest predicted metric drop allowed")
    s.add_argument("--emit-recipe", help="write the per-layer amounts as a recipe here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "compress":
            return cmd_compress(args)
        if args.command == "sensitivity":
            return cmd_sensitivity(args)
        build_parser().print_help()
        return 2
    except UserError as exc:
        print(f"secateur: error: {exc}", file=sys.stderr)
        return 2
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


def load_input(args: argparse.Namespace) -> tuple[LoadedModel, Dataset | None, Dataset | None]:
    """The model and data the flags name; --demo supplies its own test and training data."""
    data_arg, train_arg = getattr(args, "data", None), getattr(args, "train_data", None)
    if data_arg and train_arg and Path(data_arg).resolve() == Path(train_arg).resolve():
        raise UserError(
            f"--train-data: {train_arg} is also --data; never train on what you measure"
        )
    if getattr(args, "demo", False):
        if args.model:
            raise UserError(f"give a MODEL or --demo, not both (got {args.model!r})")
        loaded, test, train = load_demo()
        data = load_data(args.data) if getattr(args, "data", None) else test
        train_arg = getattr(args, "train_data", None)
        return loaded, data, load_data(train_arg) if train_arg else train
    if not args.model:
        raise UserError("give a MODEL file or --demo")
    loaded = load_model(args.model, arch=args.arch, trust=args.trust)
    data = load_data(args.data) if getattr(args, "data", None) else None
    train_arg = getattr(args, "train_data", None)
    return loaded, data, load_data(train_arg) if train_arg else None


def cmd_inspect(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, arch=args.arch, trust=args.trust)
    rows = inventory(loaded.model)
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


def cmd_compress(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    recipe = load_recipe(args.recipe)
    loaded, data, train = load_input(args)
    input_shape = parse_input_shape(args.input_shape) if args.input_shape else None
    load_s = time.perf_counter() - t0
    from core.memory import estimate

    warning = estimate(loaded.model, recipe).warning()
    if warning:
        print(f"secateur: warning: {warning}", file=sys.stderr)
    fmt = args.format or default_format(loaded.format)
    out = Path(args.output)
    bar = ProgressBar(sys.stderr)
    result = run(
        compress(
            loaded,
            recipe,
            data=data,
            train_data=train if recipe.finetune else None,
            input_shape=input_shape,
            skip_metrics=args.skip_metrics,
            latency_threads=_threads(args.threads),
        ),
        bar.update,
    )
    bar.close()
    report = result.report
    report["timings_s"]["load"] = load_s
    example = result.eval_data or _fallback_example(loaded, input_shape)
    t1 = time.perf_counter()
    outcome = save_model(
        result.model,
        out,
        fmt,
        example,
        result.quantized,
        protected=loaded.path if loaded.format != "demo" else None,
        force=args.force,
        arch=loaded.arch,
    )
    report["timings_s"]["save"] = time.perf_counter() - t1
    report["after"]["file_bytes"] = outcome.file_bytes
    report["round_trip"] = outcome.round_trip
    report["output"] = {
        "path": str(out),
        "format": fmt,
        "sidecar": str(outcome.sidecar) if outcome.sidecar else None,
    }
    print_summary(report, sys.stdout)
    if args.report:
        atomic_write_bytes(Path(args.report), (json.dumps(report, indent=2) + "\n").encode())
    return 0


def _threads(value: int) -> int:
    if value < 1:
        raise UserError(f"--threads: {value} must be at least 1")
    return value


def _parse_amounts(text: str) -> list[float]:
    try:
        amounts = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--amounts: {text!r} is not a comma-separated list of fractions") from None
    return amounts


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from core.data import random_data
    from core.recipe import dump_recipe
    from core.sensitivity import SweepSettings, allocate, predicted, recipe_from_amounts, sweep

    loaded, data, _ = load_input(args)
    if data is None:
        if not args.input_shape:
            raise UserError("give --data (or --input-shape) to measure sensitivity on")
        data = random_data(parse_input_shape(args.input_shape), samples=64)
    if not loaded.eager:
        raise UserError(
            f"{loaded.display_name}: a {loaded.format} model cannot be pruned in place; "
            "load its state dict with --arch"
        )
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
    if args.quantize:
        from core.recipe import Quantize

        try:
            Quantize(scheme=args.quantize)
        except Exception:
            raise UserError(f"--quantize: {args.quantize!r} is not a scheme") from None
    bar = ProgressBar(sys.stderr)
    result = run(sweep(loaded.model, data, settings, use_cache=not args.no_cache), bar.update)
    bar.close()
    payload = result.data
    out = Path(args.output)
    atomic_write_bytes(out, (json.dumps(payload, indent=2) + "\n").encode())
    metric = payload["metric"]
    rows = [
        (
            "layer",
            "type",
            "parameters",
            *[f"{p['amount']:g}" for p in payload["layers"][0]["points"]],
        )
    ]
    if args.quantize:
        rows[0] = (*rows[0], args.quantize)
    for row in payload["layers"]:
        cells = (
            row["name"],
            row["type"],
            f"{row['parameters']:,}",
            *[f"{p['metric']:.4f}" for p in row["points"]],
        )
        if args.quantize:
            q = row.get("quantized") or {}
            cells = (*cells, f"{q['metric']:.4f}" if q.get("metric") is not None else "skipped")
        rows.append(cells)
    print(
        f"{metric} per layer pruned alone ({payload['method']}); baseline {payload['baseline']:.4f}"
        + (" [cached]" if result.cached else "")
    )
    print_table(rows, sys.stdout)
    if args.target_sparsity is not None or args.max_drop is not None:
        amounts = allocate(payload, args.target_sparsity, args.max_drop)
        guess = predicted(payload, amounts)
        print(
            "\nautomatic amounts: "
            + ", ".join(f"{k} {v:g}" for k, v in amounts.items())
            + f"\npredicted: sparsity {guess['sparsity']:.4f}, {metric} {guess['metric']:.4f}"
        )
        if args.emit_recipe:
            dump_recipe(recipe_from_amounts(amounts, settings.method), Path(args.emit_recipe))
            print(f"wrote {args.emit_recipe}")
    print(f"wrote {out}")
    return 0


def _fallback_example(loaded: LoadedModel, input_shape: tuple[int, ...] | None) -> Dataset:
    from core.data import random_data

    if input_shape is not None:
        return random_data(input_shape)
    raise UserError(
        f"{loaded.display_name}: give --data or --input-shape so the saved file can be "
        "reloaded and checked"
    )


class ProgressBar:
    """A one-line progress bar on a terminal; plain step lines otherwise (quiet in pipes)."""

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

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\r" + " " * len(self.last) + "\r")
            self.stream.flush()


def print_table(rows: list[tuple[str, ...]], stream: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip(), file=stream)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=stream)


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "bytes":
        return human_bytes(value)
    if kind == "int":
        return f"{value:,}"
    if kind == "ms":
        return f"{value:.3f} ms"
    if kind == "frac":
        return f"{value:.4f}"
    return str(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return f"{n} B"


def print_summary(report: dict[str, Any], stream: TextIO) -> None:
    """The before/after table a person reads after a compression."""
    before, after = report["before"], report["after"]
    rows = [("metric", "before", "after", "after/before")]
    spec = [
        ("parameters", "parameters", "int"),
        ("nonzero parameters", "nonzero_parameters", "int"),
        ("state dict size", "state_dict_bytes", "bytes"),
        ("file size", "file_bytes", "bytes"),
        ("latency", "latency_ms", "ms"),
        ("accuracy", "accuracy", "frac"),
    ]
    for label, key, kind in spec:
        b, a = before.get(key), after.get(key)
        if key == "file_bytes":
            b = before.get("state_dict_bytes")
        ratio = (
            f"{a / b:.3f}x"
            if isinstance(a, int | float) and isinstance(b, int | float) and b
            else "-"
        )
        rows.append((label, _fmt(b, kind), _fmt(a, kind), ratio))
    print_table(rows, stream)
    fid = report.get("fidelity") or {}
    parts = [f"{k.replace('_', ' ')} {v:.4f}" for k, v in fid.items() if isinstance(v, int | float)]
    if parts:
        print("fidelity: " + ", ".join(parts), file=stream)
    rt = report.get("round_trip") or {}
    if rt:
        state = {True: "ok", False: "FAILED", None: "not checked"}[rt.get("ok")]
        err = rt.get("max_abs_error")
        extra = f" (max abs error {err:.3g})" if isinstance(err, float) else ""
        reason = f" ({rt['reason']})" if rt.get("reason") else ""
        print(f"round trip: {state}{extra}{reason}", file=stream)
    pruned = [
        row for row in report["layers"] if row["pruning"] or row["quantization"] or row["skipped"]
    ]
    if pruned:
        rows = [("layer", "type", "sparsity before", "after", "quantization")]
        for row in pruned:
            rows.append(
                (
                    row["name"],
                    row["type"],
                    _fmt(row["sparsity_before"], "frac"),
                    _fmt(row["sparsity_after"], "frac"),
                    row["quantization"]
                    or (f"skipped: {row['skipped']}" if row["skipped"] else "-"),
                )
            )
        print(file=stream)
        print_table(rows, stream)
    for note in report.get("notes", []):
        print(f"note: {note}", file=stream)
    out = report.get("output")
    if out:
        print(f"saved {out['path']} ({out['format']})", file=stream)
