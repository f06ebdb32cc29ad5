"""The command line: exit codes, one-line errors, the layer table and the report file."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from toy_models import mlp

from core.cli import main, print_sensitivity

ROOT = Path(__file__).resolve().parent.parent
ARCH = f"{Path(__file__).with_name('toy_models.py')}:mlp"
DEMO_RECIPE = str(ROOT / "resources/recipes/demo.yaml")


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_table(tmp_path, capsys) -> None:
    path = tmp_path / "m.pt"
    torch.save(mlp().state_dict(), path)
    code, out, err = _run(["inspect", str(path), "--arch", ARCH], capsys)
    assert code == 0, err
    assert "fc1" in out and "Linear" in out and "16x32" not in out and "32x16" in out
    assert out.strip().endswith("5 modules, 1,732 parameters")


def test_inspect_json(tmp_path, capsys) -> None:
    path = tmp_path / "m.pt"
    torch.save(mlp().state_dict(), path)
    code, out, _ = _run(["inspect", str(path), "--arch", ARCH, "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["model"]["class"] == "MLP"
    assert [row["name"] for row in payload["layers"]] == ["", "fc1", "act", "fc2", "head"]
    assert payload["layers"][1]["weight_shape"] == [32, 16]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["inspect", "{tmp}/missing.pt"], "missing.pt: no such file"),
        (
            ["inspect", "{tmp}/m.pt"],
            "m.pt: holds a state dict (weights only): give its architecture",
        ),
        (["inspect", "{tmp}/full.pt"], "full.pt: is a full pickled model"),
        (
            ["compress", "--demo", "--recipe", "{tmp}/nope.yaml", "--output", "{tmp}/o.pt"],
            "nope.yaml: no such recipe file",
        ),
        (
            ["compress", "--recipe", DEMO_RECIPE, "--output", "{tmp}/o.pt"],
            "give a MODEL file or --demo",
        ),
        (
            ["compress", "--demo", "--recipe", "{tmp}/bad.yaml", "--output", "{tmp}/o.pt"],
            "bad.yaml: prune[0].amount: 1.5 is not in [0, 1)",
        ),
        (
            [
                "compress",
                "--demo",
                "--recipe",
                DEMO_RECIPE,
                "--output",
                "{tmp}/o.pt",
                "--input-shape",
                "1xAx8",
            ],
            "--input-shape: '1xAx8' is not a shape",
        ),
        (
            ["compress", "--demo", "--recipe", DEMO_RECIPE],
            "the following arguments are required: --output",
        ),
        (  # only --demo brings its own recipe
            ["compress", "{tmp}/m.pt", "--output", "{tmp}/o.pt"],
            "compress: the following arguments are required: --recipe",
        ),
        (["inspect"], "give a MODEL file or --demo"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, expected) -> None:
    torch.save(mlp().state_dict(), tmp_path / "m.pt")
    torch.save(mlp(), tmp_path / "full.pt")
    (tmp_path / "bad.yaml").write_text("version: 1\nprune: [{amount: 1.5}]\n")
    code, _, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "o.pt").exists()


def test_internal_error_exit_1(monkeypatch, capsys) -> None:
    import core.cli

    def broken(args):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(core.cli, "cmd_inspect", broken)
    code, _, err = _run(["inspect", "x"], capsys)
    assert code == 1 and "internal error" in err


def test_compress_refuses_to_overwrite_input(tmp_path, capsys) -> None:
    path = tmp_path / "m.pt"
    torch.save(mlp().state_dict(), path)
    before = path.read_bytes()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("version: 1\nprune: [{amount: 0.5}]\n")
    argv = [
        "compress",
        str(path),
        "--arch",
        ARCH,
        "--recipe",
        str(recipe),
        "--output",
        str(path),
        "--input-shape",
        "4x16",
    ]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "is the model you opened" in err
    assert path.read_bytes() == before
    code, out, err = _run([*argv, "--force"], capsys)
    assert code == 0, err
    assert "round trip: ok" in out


def test_console_script_help_does_not_import_qt() -> None:
    code = (
        "import sys; from gui.launcher import main\n"
        "try:\n    main(['compress', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'PySide6' not in sys.modules, 'Qt imported'\n"
        "print('no-qt')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "--recipe" in proc.stdout and proc.stdout.strip().endswith("no-qt")


def test_every_subcommand_of_the_parser_runs() -> None:
    from core.cli import COMMANDS
    from core.parser import SUBCOMMANDS

    assert set(COMMANDS) == set(SUBCOMMANDS)


def test_sensitivity_table_shows_a_failed_layer() -> None:
    payload = {
        "metric": "accuracy",
        "baseline": 0.9,
        "method": "l1_unstructured",
        "settings": {"amounts": [0.3, 0.6]},
        "layers": [
            {"name": "a", "type": "Linear", "parameters": 64, "points": [], "failed": "E: no"},
            {
                "name": "b",
                "type": "Linear",
                "parameters": 64,
                "points": [{"amount": 0.3, "metric": 0.9}, {"amount": 0.6, "metric": 0.8}],
            },
        ],
    }
    out = io.StringIO()
    print_sensitivity(payload, None, False, out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["layer", "type", "parameters", "0.3", "0.6"]
    assert lines[3].split() == ["a", "Linear", "64", "failed", "failed"]
    assert lines[4].split() == ["b", "Linear", "64", "0.9000", "0.8000"]
    assert lines[-1] == "a: failed (E: no)"


QUICK_RECIPE = str(Path(__file__).with_name("quick_recipe.yaml"))
PRUNE_ONLY = "version: 1\nprune:\n  - types: [Conv2d, Linear]\n    amount: 0.5\n"


@pytest.mark.parametrize(
    ("name", "saved_as"),
    [("m.onnx", "onnx"), ("m.secz", "compressed"), ("m.pt2", "exported"), ("m.pt", "state_dict")],
)
def test_an_extension_that_belongs_to_one_format_saves_in_it(tmp_path, capsys, name, saved_as):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(PRUNE_ONLY)
    out = tmp_path / name
    argv = ["compress", "--demo", "--recipe", str(recipe), "--output", str(out), "--skip-metrics"]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert f"saved {out} ({saved_as})" in stdout
    head = out.read_bytes()[:4]
    assert (head == b"PK\x03\x04") == (saved_as in ("state_dict", "exported"))  # zip archives


def test_an_extension_that_cannot_hold_the_result_is_refused_before_work(tmp_path, capsys):
    out = tmp_path / "m.onnx"  # torchao int8 cannot be exported to ONNX
    argv = ["compress", "--demo", "--recipe", QUICK_RECIPE, "--output", str(out)]
    code, _, err = _run(argv, capsys)
    assert code == 2 and not out.exists()
    assert err.startswith("secateur: error: format onnx (from the .onnx extension): ")
    assert err.count("\n") == 1


def test_a_keep_float_plan_writes_a_recipe_that_says_so(tmp_path, capsys):
    recipe = tmp_path / "p.yaml"
    argv = ["plan", "--demo", "--emit-recipe", str(recipe), "--candidates", "float"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    written = yaml.safe_load(recipe.read_text())
    assert written["quantize"]["scheme"] == "float"  # not an empty recipe
    assert written["quantize"]["layers"] and set(written["quantize"]["types"]) <= {
        "Conv2d",
        "Linear",
    }
