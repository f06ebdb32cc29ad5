"""Hardening through the command line: the bad-input corpus, untrusted pickles, overwrites."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from badinputs import CASES, marker_pickle

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECIPE = str(ROOT / "resources/recipes/demo.yaml")


def _argv(case, files: dict[str, str], tmp: Path) -> list[str]:
    out = str(tmp / "out.pt")
    if case.kind == "model":
        argv = ["inspect", files["model"]]
        if "arch" in files:
            argv += ["--arch", files["arch"]]
        if "trust" in files:
            argv.append("--trust")
        return argv
    if case.kind == "recipe":
        return ["compress", "--demo", "--recipe", files["recipe"], "--output", out]
    return ["compress", "--demo", "--recipe", DEMO_RECIPE, "--data", files["data"], "--output", out]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert {c.kind for c in CASES} == {"model", "recipe", "data"}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exit_2_one_line(case, tmp_path, capsys) -> None:
    files = case.build(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(_argv(case, files, tmp_path))
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert case.expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out.pt").exists()
    # nothing the user gave us was modified
    assert {p: p.read_bytes() for p in before} == before


def test_compress_with_bad_model_leaves_no_output(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    code = main(["compress", str(bad), "--recipe", DEMO_RECIPE, "--output", str(tmp_path / "o.pt")])
    assert code == 2 and "bad.pt: is a text file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


def test_unreadable_file(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "locked.pt"
    path.write_bytes(b"x" * 10)
    real_open = Path.open

    def deny(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    assert main(["inspect", str(path)]) == 2
    assert "locked.pt: permission denied" in capsys.readouterr().err


@pytest.mark.parametrize("style", ["plain-pickle", "torch-zip"])
@pytest.mark.parametrize("command", ["inspect", "compress"])
def test_untrusted_pickle_never_runs(tmp_path, capsys, style, command) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    if style == "plain-pickle":
        marker_pickle(evil, marker)
    else:
        import pickle

        class Payload:
            def __reduce__(self):
                return (Path.touch, (marker,))

        buf = io.BytesIO()
        torch.save({"w": Payload()}, buf, pickle_module=pickle)
        evil.write_bytes(buf.getvalue())
    argv = ["inspect", str(evil)]
    if command == "compress":
        argv = ["compress", str(evil), "--recipe", DEMO_RECIPE, "--output", str(tmp_path / "o.pt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "evil.pt: is a full pickled model" in err and "--trust" in err
    assert not marker.exists()
    # with consent it is unpickled (and then refused as not a model): the risk is real
    assert main([*argv, "--trust"]) == 2
    assert marker.exists()
    assert "evil.pt: " in capsys.readouterr().err
