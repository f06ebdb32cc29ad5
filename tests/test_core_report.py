"""The report object: JSON version 1 in and out unchanged, the rows every view shows, saves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import UserError
from core.fidelity import FIDELITY_METRICS
from core.report import SIZE_METRICS, Report, format_value, human_bytes, round_trip_text

V1 = {
    "report_version": 1,
    "secateur_version": "0.1.0",
    "model": {"source": "demo", "format": "demo", "class": "DigitsCNN"},
    "recipe": {"version": 1, "prune": [{"amount": 0.5}]},
    "before": {
        "parameters": 100,
        "nonzero_parameters": 100,
        "state_dict_bytes": 4000,
        "latency_ms": 2.0,
        "accuracy": 0.9,
    },
    "after": {
        "parameters": 100,
        "nonzero_parameters": 50,
        "state_dict_bytes": 1000,
        "latency_ms": 1.0,
        "accuracy": 0.88,
        "file_bytes": 1100,
    },
    "fidelity": {"cosine_similarity": 0.99, "relative_error": 0.1, "top1_agreement": None},
    "layers": [
        {
            "name": "fc1",
            "type": "Linear",
            "parameters": 80,
            "sparsity_before": 0.0,
            "sparsity_after": 0.5,
            "pruning": "l1_unstructured",
            "prune_amount": 0.5,
            "quantization": None,
            "skipped": None,
        },
        {
            "name": "fc2",
            "type": "Linear",
            "parameters": 20,
            "sparsity_before": 0.0,
            "sparsity_after": 0.0,
            "pruning": None,
            "prune_amount": None,
            "quantization": None,
            "skipped": None,
        },
    ],
    "round_trip": {"ok": True, "max_abs_error": 0.0},
    "timings_s": {"load": 0.1, "prune": 0.2},
    "measurement": {"threads": 1},
    "notes": ["a note"],
    "output": {"path": "o.pt", "format": "state_dict", "sidecar": None},
    "a_future_key": {"kept": True},
}


def test_version_1_reads_and_writes_back_unchanged(tmp_path) -> None:
    report = Report.from_dict(json.loads(json.dumps(V1)))
    assert report.to_dict() == V1
    path = tmp_path / "r.json"
    report.write(path)
    assert json.loads(path.read_text()) == V1
    assert Report.read(path).to_dict() == V1


def test_optional_sections_are_left_out_until_present() -> None:
    data = {k: v for k, v in V1.items() if k not in ("output", "a_future_key")}
    data["after"] = {k: v for k, v in V1["after"].items() if k != "file_bytes"}
    out = Report.from_dict(data).to_dict()
    assert "finetune" not in out and "output" not in out
    assert "file_bytes" not in out["after"] and "file_bytes" not in out["before"]


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], "a report is a JSON object, not list"),
        ({**V1, "report_version": 7}, "report_version: 7 is not 1"),
        ({**V1, "layers": [{"type": "Linear"}]}, r"layers\[0\]\.name: missing"),
    ],
)
def test_bad_reports_are_one_line_user_errors(data, message) -> None:
    with pytest.raises(UserError, match=message):
        Report.from_dict(data, "r.json")


def test_size_rows_take_the_saved_file_against_the_original_state_dict() -> None:
    rows = {row.key: row for row in Report.from_dict(V1).size_rows()}
    assert [row.key for row in rows.values()] == [m.key for m in SIZE_METRICS]
    assert rows["file_bytes"].before == 4000 and rows["file_bytes"].after == 1100
    assert rows["state_dict_bytes"].ratio == pytest.approx(0.25)
    assert rows["state_dict_bytes"].better is True
    assert rows["accuracy"].better is False  # higher is better, and it dropped
    assert rows["parameters"].better is None  # unchanged: neither better nor worse
    assert rows["latency_ms"].ratio_text() == "0.500\u00d7 (-50.0%)"


def test_fidelity_rows_follow_the_registry_with_the_ideal_as_before() -> None:
    rows = Report.from_dict(V1).fidelity_rows()
    assert [row.key for row in rows] == [m.name for m in FIDELITY_METRICS]
    cosine = rows[0]
    assert cosine.before == 1.0 and cosine.after == 0.99
    assert rows[-1].after is None and rows[-1].after_text() == "\u2013"


def test_attach_save_records_the_file_and_the_round_trip() -> None:
    @dataclass
    class Saved:
        path: Path
        format: str
        file_bytes: int
        round_trip: dict
        sidecar: Path | None

    data = {k: v for k, v in V1.items() if k not in ("output", "round_trip")}
    report = Report.from_dict(data)
    assert not report.saved and report.round_trip_text() == "not saved"
    report.attach_save(Saved(Path("x.pt"), "pickle", 123, {"ok": False, "reason": "r"}, None), 2.5)
    out = report.to_dict()
    assert out["after"]["file_bytes"] == 123 and out["timings_s"]["save"] == 2.5
    assert out["output"] == {"path": "x.pt", "format": "pickle", "sidecar": None}
    assert report.round_trip_text() == "FAILED (r)"


def test_round_trip_wording() -> None:
    assert round_trip_text({"ok": True, "max_abs_error": 0.0}) == "ok (max abs error 0)"
    assert round_trip_text({"ok": None, "max_abs_error": None, "reason": "no arch"}) == (
        "not checked (no arch)"
    )


def test_formatting() -> None:
    assert human_bytes(512) == "512 B" and human_bytes(1536) == "1.50 KiB"
    assert format_value(0.98444, "pct") == "98.44%"
    assert format_value(None, "int", "-") == "-"
    assert format_value(True, "int") == "\u2013"  # a flag is not a number
    assert format_value(1234567, "int") == "1,234,567"
