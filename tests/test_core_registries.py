"""The registries are the one declaration of each choice: the recipe, the command line and the
reports all take their choices from them, and the parser loads neither torch nor Qt."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from core.errors import RecipeError, UserError
from core.fidelity import FIDELITY_METRICS
from core.formats import SAVE_FORMATS
from core.methods import PRUNE_METHODS
from core.parser import parse
from core.recipe import PruneRule, Quantize, parse_recipe
from core.registry import Registry
from core.schemes import BACKENDS, SCHEMES
from core.sensitivity import SWEEP_METHODS

ROOT = Path(__file__).resolve().parent.parent


def _choices(argv: list[str]) -> tuple[str, ...]:
    """The choices the parser offers for the last flag of ``argv`` (given a bad value)."""
    with pytest.raises(UserError, match="invalid choice") as caught:
        parse([*argv, "no-such-choice"])
    listed = str(caught.value).split("(choose from ", 1)[1].rstrip(")")
    return tuple(name.strip().strip("'") for name in listed.split(","))


def test_recipe_types_are_the_registry_names() -> None:
    assert typing.get_args(PruneRule.model_fields["method"].annotation) == PRUNE_METHODS.names()
    scheme = typing.get_args(Quantize.model_fields["scheme"].annotation)
    assert scheme == (*SCHEMES.names(), "float", "auto")  # plus the two recipe keywords
    assert typing.get_args(Quantize.model_fields["backend"].annotation) == BACKENDS.names()


def test_command_line_choices_are_the_registry_names() -> None:
    compress = ["compress", "--demo", "--recipe", "r.yaml", "--output", "o.pt"]
    sweep = ["sensitivity", "--demo", "--output", "s.json"]
    assert _choices([*compress, "--format"]) == SAVE_FORMATS.names()
    assert _choices([*sweep, "--quantize"]) == SCHEMES.names()
    assert _choices([*sweep, "--method"]) == SWEEP_METHODS
    assert set(SWEEP_METHODS) == {m.name for m in PRUNE_METHODS if m.sweepable}


def test_a_scheme_names_its_backends_in_the_refusal() -> None:
    with pytest.raises(RecipeError, match=r"backend 'legacy' \(torch\.ao\.quantization\) "):
        parse_recipe("version: 1\nquantize: {scheme: int8_weight_only, backend: legacy}", "r")
    for scheme in SCHEMES:
        for backend in scheme.backends:
            assert backend in BACKENDS, (scheme.name, backend)


def test_every_entry_can_be_shown() -> None:
    for registry in (PRUNE_METHODS, SCHEMES, BACKENDS, SAVE_FORMATS, FIDELITY_METRICS):
        for entry in registry:
            assert entry.name and entry.label and entry.tooltip, entry


def test_a_name_is_declared_once() -> None:
    with pytest.raises(ValueError, match="'a' is declared twice"):
        Registry("thing", [BACKENDS["torchao"].__class__("a", "A", "t", "lib")] * 2)
    with pytest.raises(KeyError, match="'nope' is not a save format"):
        SAVE_FORMATS["nope"]


@pytest.mark.parametrize("argv", [["--help"], ["compress", "--help"], ["--version"]])
def test_help_and_version_import_neither_torch_nor_qt(argv) -> None:
    code = (
        "import sys; from gui.launcher import main\n"
        f"code = main({argv!r})\n"
        "heavy = [m for m in ('torch', 'PySide6', 'pyqtgraph') if m in sys.modules]\n"
        "print('loaded:', heavy, 'code:', code)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("loaded: [] code: 0"), proc.stdout[-300:]
