"""The one command-line parser: the window's flags and every subcommand.

    secateur [MODEL] [--demo] ... [--run] [--screenshot PNG]   the window (the default)
    secateur inspect | compress | sensitivity ...               the command line

Flags that several commands share are declared once, on parent parsers. The choices
(``--method``, ``--format``, ``--quantize``) come from the registries. This module imports
neither torch nor Qt, so ``secateur --help`` and a bad flag answer at once. A bad flag is a
``UserError`` (exit code 2, one line), raised by the parser itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from core import __version__
from core.demos import DEFAULT_DEMO, DEMOS
from core.errors import UserError
from core.formats import SAVE_FORMATS
from core.methods import PRUNE_METHODS
from core.schemes import CANDIDATES, SCHEMES

PROG = "secateur"
WINDOW = "window"
SUBCOMMANDS = ("inspect", "compress", "sensitivity", "plan")
DEFAULT_AMOUNTS = "0.1,0.3,0.5,0.7,0.9"

USAGE = (
    "secateur [MODEL] [--demo [NAME]] [--arch SPEC] [--data DATA] [--train-data DATA]\n"
    "                [--input-shape SHAPE] [--recipe RECIPE] [--trust]\n"
    "                [--run] [--screenshot PNG] [--quit-after-run]\n"
    "       secateur inspect MODEL ...       (print the layer table; see secateur inspect -h)\n"
    "       secateur compress MODEL|--demo ... (compress without a window; see -h)\n"
    "       secateur sensitivity MODEL|--demo ... (per-layer sensitivity sweep; see -h)\n"
    "       secateur plan MODEL|--demo ... (measure and plan per-layer quantization; see -h)\n"
    "       secateur --version"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are user errors: one line naming the command and the flag."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix(PROG).strip()
        raise UserError(f"{command}: {message}" if command else message)


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def _model_flags(model_help: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("model", nargs="?", help=model_help)
    p.add_argument(
        "--demo",
        nargs="?",
        const=DEFAULT_DEMO,
        choices=DEMOS.names(),
        metavar="NAME",
        help=f"a bundled demo and its data: {DEMOS.choices()} (default {DEFAULT_DEMO})",
    )
    p.add_argument("--arch", metavar="SPEC", help="FILE.py:callable or package.module:callable")
    p.add_argument("--trust", action="store_true", help="allow loading a full pickled model")
    return p


def _data_flags() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--data", metavar="DATA", help="evaluation data (.npz or .pt, x and optional y)")
    p.add_argument(
        "--input-shape", metavar="SHAPE", help="random input without data, e.g. 1x3x224x224"
    )
    return p


def _train_flags() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--train-data", metavar="DATA", help="training data for the finetune step")
    return p


def _threads_flag() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--threads", type=int, default=1, help="threads for latency measurements (default 1)"
    )
    return p


def _ray_flag() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the evaluations (accuracy, fidelity) as Ray tasks, one per layer: local "
        "starts Ray on this machine, anything else is a cluster address (HOST:PORT of the "
        "head node). Latency is always measured on this machine. Needs the extra "
        "secateur[cluster]",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the window (default) and the subcommands."""
    root = _Parser(prog=PROG, usage=USAGE, add_help=False)
    root.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = root.add_subparsers(dest="command", parser_class=_Parser, prog=PROG)
    model = _model_flags("model file (state dict, pickle, TorchScript, .pt2)")
    data, train, threads = _data_flags(), _train_flags(), _threads_flag()
    ray = _ray_flag()

    w = sub.add_parser(
        WINDOW,
        prog=PROG,
        usage=USAGE,
        parents=[_model_flags("model file to open (state dict, pickle, ...)"), data, train],
        description=(
            "Open the Secateur window: pick layers of a PyTorch model, prune and quantize "
            "them, and read what changed, measured on the real model."
        ),
        epilog=(
            "Without a display (no DISPLAY or WAYLAND_DISPLAY) use the command line: "
            "secateur compress --demo --output out.pt"
        ),
    )
    w.add_argument("--recipe", metavar="RECIPE", help="recipe to load (YAML or JSON)")
    w.add_argument("--run", action="store_true", help="start compressing at once")
    w.add_argument("--screenshot", metavar="PNG", help="save the window as PNG once the run ends")
    w.add_argument("--quit-after-run", action="store_true", help="close the window after the run")
    w.add_argument("--version", action="version", version=f"{PROG} {__version__}")

    i = sub.add_parser("inspect", parents=[model], help="print the layer table of a model")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

    c = sub.add_parser(
        "compress",
        parents=[model, data, train, threads],
        help="prune and quantize a model per a recipe",
    )
    c.add_argument("--recipe", help="recipe file (YAML or JSON); --demo defaults to its own")
    c.add_argument("--output", required=True, help="where to write the compressed model")
    c.add_argument("--format", choices=SAVE_FORMATS.names(), help="default: the input's own kind")
    c.add_argument("--report", help="write the JSON report here")
    c.add_argument("--skip-metrics", action="store_true", help="sizes and sparsity only")
    c.add_argument("--force", action="store_true", help="allow overwriting the input model")

    s = sub.add_parser(
        "sensitivity",
        parents=[model, data, ray],
        help="prune (or quantize) one layer at a time and measure",
    )
    s.add_argument("--layers", nargs="+", default=["*"], metavar="PATTERN")
    s.add_argument(
        "--types", nargs="+", metavar="TYPE", help="class names (default: every prunable layer)"
    )
    s.add_argument(
        "--method",
        default="l1_unstructured",
        choices=[m.name for m in PRUNE_METHODS if m.sweepable],
    )
    s.add_argument("--amounts", default=DEFAULT_AMOUNTS, help="comma-separated fractions")
    s.add_argument(
        "--quantize",
        metavar="SCHEME",
        choices=SCHEMES.names(),
        help=f"also quantize each layer alone ({SCHEMES.choices()})",
    )
    s.add_argument("--subset", type=int, help="evaluate on the first N samples only")
    s.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    s.add_argument("--output", required=True, help="write the sensitivity JSON here")
    s.add_argument("--target-sparsity", type=float, help="overall sparsity to reach")
    s.add_argument("--max-drop", type=float, help="largest predicted metric drop allowed")
    s.add_argument("--emit-recipe", help="write the per-layer amounts as a recipe here")

    p = sub.add_parser(
        "plan",
        parents=[model, data, ray],
        help="measure every layer's quantization schemes here and pick the fastest plan",
        description=(
            "Times each selected layer under every candidate scheme on this machine (its real "
            "inputs, the given threads and batch size), measures each candidate's fidelity "
            "cost with that layer alone quantized, searches the fastest plan within "
            "--max-drop, and checks it end to end against the original and every uniform "
            "scheme. Latency is always measured on this machine: the plan is for it (with "
            "--ray only the fidelity costs run on the cluster)."
        ),
    )
    p.add_argument("--layers", nargs="+", default=["*"], metavar="PATTERN")
    p.add_argument(
        "--types", nargs="+", metavar="TYPE", help="class names (default: every layer with weights)"
    )
    p.add_argument(
        "--max-drop", type=float, default=0.01, help="largest metric drop allowed (0.01)"
    )
    p.add_argument(
        "--metric",
        default="auto",
        choices=("auto", "accuracy", "cosine_similarity"),
        help="auto: accuracy with labelled data, else cosine similarity",
    )
    p.add_argument(
        "--candidates",
        metavar="A,B,...",
        help=f"schemes to try (default all: {CANDIDATES.choices()})",
    )
    p.add_argument("--threads", type=int, default=1, help="threads to time with (default 1)")
    p.add_argument("--batch-size", type=int, default=1, help="batch to time with (default 1)")
    p.add_argument("--no-cache", action="store_true", help="re-measure fidelity even if cached")
    p.add_argument("--emit-recipe", required=True, help="write the plan as a recipe here")
    p.add_argument("--output", help="write the plan (JSON) here")
    return root


def parse(argv: Sequence[str], window_default: bool = True) -> argparse.Namespace:
    """Parse a command line. Without a subcommand it is the window's (unless
    ``window_default`` is False, for the command line alone). ``-h`` prints help (the
    window's lists the subcommands) and ``--version`` the version; both exit."""
    argv = list(argv)
    if window_default and (not argv or argv[0] not in (WINDOW, *SUBCOMMANDS, "--version")):
        argv = [WINDOW, *argv]
    ns = build_parser().parse_args(argv)
    if ns.command is None:
        raise UserError(f"give a command: {', '.join(SUBCOMMANDS)}")
    if ns.command == WINDOW:
        _check_window(ns)
    if ns.command == "compress" and ns.recipe is None and not ns.demo:
        raise UserError("compress: the following arguments are required: --recipe")
    return ns


def _check_window(ns: argparse.Namespace) -> None:
    if ns.demo and ns.model:
        raise UserError(f"give a MODEL or --demo, not both (got {ns.model!r})")
    if ns.screenshot and not ns.screenshot.lower().endswith(".png"):
        raise UserError(f"--screenshot: {ns.screenshot!r} must end in .png")
    if ns.run and not (ns.model or ns.demo):
        raise UserError("--run: give a MODEL or --demo to run on")
