"""Faults and hostile files, round two: the three defects of issue 14 and the schemas of every
cache and sidecar read.

- A data file whose ``x`` holds strings is refused in one line (it was an internal error).
- A sensitivity cache entry that is valid JSON of the wrong shape is ignored and recomputed,
  with one line saying so (it crashed the sweep).
- Temporaries left by a killed writer are removed by the next write into their folder, or
  by opening a model from it; never a live writer's, never a file that is not Secateur's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzzing import _members, rezip
from toy_models import mlp

from core import atomic
from core.cli import main
from core.errors import ModelLoadError
from core.loading import load_model, read_sidecar

ROOT = Path(__file__).resolve().parent.parent
TOY = f"{Path(__file__).with_name('toy_models.py')}:mlp"
DEMO_RECIPE = str(ROOT / "resources/recipes/demo.yaml")
SWEEP = ["sensitivity", "--demo", "--amounts", "0.5", "--subset", "32"]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# ------------------------------------------------------------------ data: strings
@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (np.array(["a", "b", "c"]), "strings.npz: x: holds text (string) values (dtype <U1)"),
        (np.array([b"a", b"b"]), "strings.npz: x: holds byte-string values (dtype |S1)"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), "holds date-time values"),
    ],
)
def test_data_of_strings_is_refused_in_one_line(tmp_path, capsys, x, expected) -> None:
    data = tmp_path / "strings.npz"
    np.savez(data, x=x, y=np.arange(len(x)))
    out = tmp_path / "o.pt"
    argv = ["compress", "--demo", "--recipe", DEMO_RECIPE, "--output", str(out)]
    code = main([*argv, "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert _lines(err) == [_lines(err)[0]] and expected in err, err
    assert "internal error" not in err and not out.exists()


def test_labels_of_strings_are_refused(tmp_path, capsys) -> None:
    data = tmp_path / "labels.npz"
    np.savez(data, x=np.zeros((3, 1, 8, 8), np.float32), y=np.array(["cat", "dog", "cat"]))
    argv = ["compress", "--demo", "--recipe", DEMO_RECIPE, "--output", str(tmp_path / "o.pt")]
    assert main([*argv, "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [
        "secateur: error: labels.npz: y: holds text (string) values (dtype <U3), not numbers"
    ]


# ------------------------------------------------------- sensitivity cache: shape
@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SECATEUR_CACHE_DIR", str(folder))
    return folder


def _sweep(tmp_path: Path, capsys) -> tuple[int, str, str]:
    code = main([*SWEEP, "--output", str(tmp_path / "sens.json")])
    out, err = capsys.readouterr()
    return code, out, err


def _entry(cache: Path) -> Path:
    (entry,) = cache.glob("*.json")
    return entry


BAD_ENTRIES = {
    "list": ([1, 2], "expected a JSON object, got list"),
    "version": (lambda good: {**good, "sensitivity_version": 7}, "sensitivity_version: 7"),
    "layers-not-a-list": (lambda good: {**good, "layers": {"a": 1}}, "layers: {'a': 1}"),
    "no-layers": (lambda good: {**good, "layers": []}, "layers: [] is invalid"),
    "metric-text": (
        lambda good: {**good, "baseline": "high"},
        "baseline: 'high' is invalid",
    ),
    "point-missing": (
        lambda good: {**good, "layers": [{**good["layers"][0], "points": [{"amount": 0.5}]}]},
        "layers[0].points[0].metric: missing",
    ),
    "other-layers": (
        lambda good: {
            **good,
            "layers": [{**row, "name": "x" + row["name"]} for row in good["layers"]],
        },
        "its layers are not the ones swept",
    ),
    "other-amounts": (
        lambda good: {
            **good,
            "layers": [
                {**row, "points": [{"amount": 0.9, "metric": 0.1}]} for row in good["layers"]
            ],
        },
        "layers[0].points: amounts are not [0.5]",
    ),
    "other-type": (
        lambda good: {
            **good,
            "layers": [{**good["layers"][0], "type": "Linear"}, *good["layers"][1:]],
        },
        "layers[0].type: 'Linear' is not Conv2d",
    ),
    "nan": (
        lambda good: json.loads(json.dumps({**good, "baseline": float("nan")})),
        "baseline: nan is invalid",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_bad_cache_entry_is_ignored_and_recomputed(tmp_path, capsys, cache, case) -> None:
    code, first, _ = _sweep(tmp_path, capsys)
    assert code == 0 and "[cached]" not in first
    entry = _entry(cache)
    good = json.loads(entry.read_text())
    bad, expected = BAD_ENTRIES[case]
    entry.write_text(json.dumps(bad(good) if callable(bad) else bad))
    code, out, err = _sweep(tmp_path, capsys)
    assert code == 0, err
    assert len(_lines(err)) == 1, err
    assert f"sensitivity cache {entry}: " in err and expected in err, err
    assert "it was ignored and the sweep recomputed" in err
    assert "[cached]" not in out
    # recomputed: the same numbers as the first sweep, and the entry is good again
    assert json.loads(entry.read_text()) == good
    code, out, err = _sweep(tmp_path, capsys)
    assert code == 0 and "[cached]" in out and err == ""


def test_good_cache_entry_with_extra_keys_is_used(tmp_path, capsys, cache) -> None:
    _sweep(tmp_path, capsys)
    entry = _entry(cache)
    good = json.loads(entry.read_text())
    entry.write_text(json.dumps({**good, "written_by": "a newer Secateur"}))
    code, out, err = _sweep(tmp_path, capsys)
    assert code == 0 and "[cached]" in out and err == ""


# ----------------------------------------------------------------- sidecar schema
def _quantized_state_dict(tmp_path: Path, capsys) -> Path:
    recipe = tmp_path / "q.yaml"
    recipe.write_text("version: 1\nquantize: {scheme: int8_dynamic}\n")
    state = tmp_path / "fp.pt"
    torch.save(mlp().state_dict(), state)
    out = tmp_path / "q.pt"
    argv = ["compress", str(state), "--arch", TOY, "--recipe", str(recipe), "--output", str(out)]
    assert main([*argv, "--input-shape", "4x16", "--skip-metrics"]) == 0
    capsys.readouterr()
    return out


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: [s], "expected a JSON object, got list"),
        (lambda s: {**s, "layers": "fc1"}, "layers: 'fc1' is invalid"),
        (lambda s: {**s, "layers": {"fc1": 1}}, "layers.fc1: 1 is invalid"),
        (lambda s: {**s, "layers": {"fc1": {}}}, "layers.fc1.scheme: missing"),
        (lambda s: {**s, "layers": {"fc1": {"scheme": "int3"}}}, "scheme: 'int3' is not one"),
        (lambda s: {**s, "layers": [1]}, "[1] is not a list of layer names"),
        (lambda s: {**s, "layers": ["fc1"]}, "there is no quantize rule"),
        (lambda s: {**s, "quantize": {"scheme": "int3"}}, "quantize.scheme: 'int3' is not one"),
        (lambda s: {**s, "secateur_sidecar": 2}, "secateur_sidecar: 2 is not one of"),
        (lambda s: {**s, "extra": 1}, "extra: unknown key"),
        (
            lambda s: {**s, "layers": {"nowhere": s["layers"]["fc1"]}},
            "names layer 'nowhere', which the model lacks",
        ),
    ],
)
def test_sidecar_is_validated(tmp_path, capsys, edit, expected) -> None:
    out = _quantized_state_dict(tmp_path, capsys)
    sidecar = out.with_name(out.name + ".secateur.json")
    sidecar.write_text(json.dumps(edit(json.loads(sidecar.read_text()))))
    code = main(["inspect", str(out), "--arch", TOY])
    err = capsys.readouterr().err
    assert code == 2 and len(_lines(err)) == 1, err
    assert "q.pt.secateur.json: " in err and expected in err, err


def test_good_sidecar_reads(tmp_path, capsys) -> None:
    out = _quantized_state_dict(tmp_path, capsys)
    side = read_sidecar(out.with_name(out.name + ".secateur.json"))
    assert list(side.rules) == ["fc1", "fc2", "head"]
    assert {q.scheme for q in side.rules.values()} == {"int8_dynamic"}
    sidecar = out.with_name(out.name + ".secateur.json")
    sidecar.write_bytes(b"\xff\xfe not text")
    with pytest.raises(ModelLoadError, match=r"q\.pt\.secateur\.json: damaged Secateur sidecar"):
        load_model(out, arch=TOY)


# ----------------------------------------------------------- stale temporaries
WRITER = """
import sys, time
from pathlib import Path
from core.atomic import atomic_file
with atomic_file(Path(sys.argv[1])) as fh:
    fh.write(b"partial")
    fh.flush()
    time.sleep(60)
"""


def _writer(target: Path) -> tuple[subprocess.Popen, Path]:
    """A real process in the middle of an atomic write of ``target``, and its temporary."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = [p for p in target.parent.iterdir() if f"-{proc.pid}-" in p.name]
        if temps and temps[0].stat().st_size:
            assert temps[0].name.startswith(f".{target.name}.secateur-")
            return proc, temps[0]
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise AssertionError("the writer never started writing")


def _killed_writer(target: Path) -> Path:
    """A writer killed with SIGKILL in the middle of its write: the temporary it left."""
    proc, temp = _writer(target)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert temp.exists()
    return temp


def test_only_stale_secateur_temporaries_are_removed(tmp_path) -> None:
    proc, live = _writer(tmp_path / "other.pt")
    try:
        stale = _killed_writer(tmp_path / "out.pt")
        host = atomic._host()
        mine = os.getpid()
        start = atomic._start_cs(mine)
        assert start is not None
        foreign = [
            tmp_path / ".out.pt.abc123.tmp",  # an older Secateur's or another program's
            tmp_path / "notes.tmp",
            tmp_path / f".x.secateur-{host}-{mine}-{start}.abcdefgh.tmp",  # this live process
            tmp_path / f".x.secateur-00000000-{proc.pid + 1}-1.abcdefgh.tmp",  # another host
        ]
        for path in foreign:
            path.write_bytes(b"keep")
        reused = tmp_path / f".x.secateur-{host}-{mine}-{start - 100_000}.abcdefgh.tmp"
        reused.write_bytes(b"the pid now belongs to another process: stale")
        link = tmp_path / f".y.secateur-{host}-{proc.pid + 99_999}-1.abcdefgh.tmp"
        link.symlink_to(tmp_path / "notes.tmp")  # a link is never followed or removed
        heard: list[list[Path]] = []
        stop = atomic.on_stale_removed(heard.append)
        try:
            removed = atomic.remove_stale_temporaries(tmp_path)
        finally:
            stop()
        assert removed == sorted([stale, reused]) and heard == [removed]
        assert not stale.exists() and not reused.exists()
        assert live.exists() and link.is_symlink()
        assert all(p.read_bytes() == b"keep" for p in foreign)
        assert atomic.remove_stale_temporaries(tmp_path) == []
    finally:
        proc.kill()
        proc.wait()


def test_next_save_removes_stale_temporary_and_says_so(tmp_path, capsys) -> None:
    out = tmp_path / "out.pt"
    stale = _killed_writer(out)
    argv = ["compress", "--demo", "--recipe", DEMO_RECIPE, "--output", str(out)]
    assert main([*argv, "--skip-metrics"]) == 0
    err = capsys.readouterr().err
    assert _lines(err) == [
        f"secateur: note: removed 1 stale temporary file in {tmp_path} left by an "
        f"interrupted write (a killed process or a power loss): {stale.name}"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt", "out.pt.secateur.json"]


def test_opening_a_model_removes_stale_temporaries(tmp_path, capsys) -> None:
    model = tmp_path / "model.pt"
    torch.save(mlp().state_dict(), model)
    stale = _killed_writer(tmp_path / "compressed.pt")
    assert main(["inspect", str(model), "--arch", TOY]) == 0
    err = capsys.readouterr().err
    assert _lines(err) == [f"secateur: note: {atomic.describe_removed([stale])}"]
    assert not stale.exists() and model.exists()


def test_listener_stops(tmp_path) -> None:
    heard: list[list[Path]] = []
    stop = atomic.on_stale_removed(heard.append)
    stop()
    _killed_writer(tmp_path / "a.pt")
    assert len(atomic.remove_stale_temporaries(tmp_path)) == 1 and heard == []


# ------------------------------------------------- what the fuzzer found (regressions)
def _one_error(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(_lines(err)) == 1 and "Traceback" not in err, err
    return _lines(err)[0]


def _toy_bytes(kind: str) -> bytes:
    import io

    model, buf = mlp(), io.BytesIO()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation
        if kind == "ts":
            torch.jit.save(torch.jit.trace(model, x), buf)
        elif kind == "exported":
            torch.export.save(torch.export.export(model, (x,)), buf)
        else:
            torch.save(model.state_dict(), buf)
    return buf.getvalue()


def test_zip_with_a_member_name_that_is_not_utf8(tmp_path, capsys) -> None:
    data = bytearray(_toy_bytes("state_dict"))
    at = data.rfind(b"archive/byteorder")  # its name in the central directory
    data[at] = 0xB1
    path = tmp_path / "names.pt"
    path.write_bytes(bytes(data))
    line = _one_error(["inspect", str(path), "--arch", TOY], capsys)
    assert "names.pt: is a damaged or truncated archive" in line


def test_state_dict_with_a_list_for_a_tensor(tmp_path, capsys) -> None:
    path = tmp_path / "list.pt"
    torch.save({**mlp().state_dict(), "fc1.weight": [1, 2]}, path)
    line = _one_error(["inspect", str(path), "--arch", TOY], capsys)
    assert (
        "list.pt: does not fit the architecture: 1 shape mismatches (first: fc1.weight (a "
        "list) vs (32, 16))" in line
    )


def test_npy_header_declaring_a_terabyte_is_refused_before_allocating(tmp_path) -> None:
    import io
    import zipfile

    from core.data import load_data
    from core.errors import DataError

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 16)}
    )
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(64))
    with pytest.raises(DataError, match=r"huge\.npz: x declares shape \(1099511627776, 16\) "):
        load_data(path)


@pytest.mark.parametrize("damage", ["header", "missing"])
def test_damaged_exported_program_is_one_line(tmp_path, capsys, damage) -> None:
    import io
    import zipfile

    data = _toy_bytes("exported")
    if damage == "header":  # torch logs a traceback, then raises a vaguer error
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            info = next(i for i in zf.infolist() if i.filename.endswith("models/model.json"))
        at = info.header_offset
        data = data[:at] + b"XXXX" + data[at + 4 :]
    else:
        data = rezip([(n, c) for n, c in _members(data) if "models/" not in n])
    path = tmp_path / "cut.pt2"
    path.write_bytes(data)
    line = _one_error(["inspect", str(path)], capsys)
    assert line.startswith("secateur: error: cut.pt2: ExportedProgram fails to load (")
    assert "warnings above" not in line  # there are none: torch's log is not shown
    if damage == "header":
        assert "PytorchStreamReader failed reading file models/model.json" in line


def test_torchscript_tensor_without_its_data(tmp_path, capsys) -> None:
    members = [(n, b"" if n.endswith("data/5") else c) for n, c in _members(_toy_bytes("ts"))]
    path = tmp_path / "empty.ts"
    path.write_bytes(rezip(members))
    line = _one_error(["inspect", str(path)], capsys)  # was a segmentation fault
    assert "empty.ts: head.bias needs 16 bytes of data but the file holds no data" in line


def test_unsigned_labels(tmp_path) -> None:
    from core.data import load_data

    path = tmp_path / "u16.npz"
    np.savez(path, x=np.zeros((4, 3), np.float32), y=np.array([0, 1, 2, 1], np.uint16))
    assert load_data(path).y.dtype == torch.int64


def test_huge_bad_value_is_cut_in_one_line() -> None:
    from core.errors import MAX_MESSAGE, UserError

    text = str(UserError(f"r.yaml: prune[0].layers[0]: {'x' * 100_000!r} is invalid"))
    assert len(text) < MAX_MESSAGE + 40 and "\n" not in text
    assert text.startswith("r.yaml: prune[0].layers[0]: 'xxx") and text.endswith("is invalid")
    assert re.search(r" \.\.\.\[[0-9,]+ characters\]\.\.\. ", text), text


def test_sweep_of_a_quantized_layer_is_refused(tmp_path, capsys) -> None:
    out = _quantized_state_dict(tmp_path, capsys)
    argv = ["sensitivity", str(out), "--arch", TOY, "--types", "Linear", "--input-shape", "4x16"]
    line = _one_error([*argv, "--output", str(tmp_path / "s.json")], capsys)
    assert "--layers: fc1 is already quantized (int8_dynamic (torchao)); sweep the float" in line


def test_sidecar_of_another_save_is_refused(tmp_path, capsys) -> None:
    out = _quantized_state_dict(tmp_path, capsys)
    torch.save(torch.load(out, weights_only=True) | {"extra": torch.zeros(1)}, out)
    line = _one_error(["inspect", str(out), "--arch", TOY], capsys)
    assert "q.pt.secateur.json: belongs to another version of q.pt (model_sha256 " in line


def test_pruning_a_quantized_layer_is_refused(tmp_path, capsys) -> None:
    out = _quantized_state_dict(tmp_path, capsys)
    recipe = tmp_path / "prune.yaml"
    recipe.write_text("version: 1\nprune: [{types: [Linear], amount: 0.5}]\n")
    argv = ["compress", str(out), "--arch", TOY, "--recipe", str(recipe), "--skip-metrics"]
    line = _one_error([*argv, "--input-shape", "4x16", "--output", str(tmp_path / "o.pt")], capsys)
    assert "already quantized" in line


def test_compress_of_torchscript_says_why(tmp_path, capsys) -> None:
    path = tmp_path / "model.ts"
    path.write_bytes(_toy_bytes("ts"))
    recipe = tmp_path / "prune.yaml"
    recipe.write_text("version: 1\nprune: [{types: [Linear], amount: 0.5}]\n")
    argv = ["compress", str(path), "--recipe", str(recipe), "--input-shape", "4x16"]
    line = _one_error([*argv, "--output", str(tmp_path / "o.pt")], capsys)
    assert "model.ts: a TorchScript model can be inspected but not pruned or quantized" in line


def test_a_note_during_a_progress_bar_gets_its_own_line(monkeypatch) -> None:
    import io

    from core import cli
    from core.engine import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setenv("TERM", "xterm")
    bar = cli.ProgressBar(term)
    bar.update(Progress("sweep", 1, 4, "fc1: l1_unstructured 0.5 -> 0.97"))
    cli._say_removed([Path("/x/.o.pt.secateur-0-1-2.abcdefgh.tmp")])
    bar.update(Progress("sweep", 2, 4, "fc1 done"))
    bar.close()
    chunks = term.getvalue().replace("\n", "\r").split("\r")
    assert (
        "secateur: note: removed 1 stale temporary file in /x left by an interrupted "
        "write (a killed process or a power loss): .o.pt.secateur-0-1-2.abcdefgh.tmp" in chunks
    )
    assert any(c.startswith("[") and c.endswith("fc1 done") for c in chunks)  # drawn again
    assert cli.ProgressBar.drawn is None
