"""The mutation fuzzer (``tests/fuzzing.py``) at a fixed seed: 200 cases over every file kind
Secateur reads, each through ``inspect``, ``compress``, ``sensitivity`` or the report reader.
Every case must end in exit 0, or in exit 2 with one line, within the time limit and the
memory bound. ``benchmarks/fuzz.py`` runs any number of cases with any seed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fuzzing
import pytest

SEED = 14
CASES = 200

# What the valid file of a kind gives through a command, when it is not exit 0.
CONTROLS = {
    ("pickle", "inspect"): (2, "full.pt: is a full pickled model"),
    ("pickle", "compress"): (2, "full.pt: is a full pickled model"),
    ("torchscript", "compress"): (2, "model.ts: a TorchScript model can be inspected but not"),
    ("sidecar", "sensitivity"): (2, "--layers: fc1 is already quantized"),
    ("compressed", "sensitivity"): (2, "--layers: fc1 is already quantized"),
    ("onnx", "compress"): (2, "model.onnx: is an ONNX graph"),
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> fuzzing.Seeds:
    return fuzzing.build_seeds(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fuzzing.Worker]:
    """One worker process for the control and the fuzz run (it starts in seconds)."""
    worker = fuzzing.Worker(tmp_path_factory.mktemp("worker"))
    yield worker
    worker.close()


def _error_lines(result: fuzzing.Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.slow
def test_valid_files_pass(seeds, worker, tmp_path) -> None:
    """The fuzzer's control: every kind's valid file, through each of its commands, ends as
    a user expects (so what fails in the fuzz run is the mutation's doing)."""
    cases = [
        fuzzing.Case(SEED, i, kind.name, fuzzing.NO_MUTATION, command)
        for i, (kind, command) in enumerate(
            (kind, command) for kind in fuzzing.KINDS for command in kind.commands
        )
    ]
    results = fuzzing.run_cases(cases, seeds, tmp_path, worker=worker)
    for result in results:
        key = (result.case.kind, result.case.command)
        code, expected = CONTROLS.get(key, (0, None))
        assert result.failure is None, (key, result.failure)
        assert result.code == code, (key, result.stderr)
        if expected is not None:
            assert expected in _error_lines(result)[0], (key, result.stderr)
    cache = next(r for r in results if r.case.kind == "sensitivity_cache")
    assert cache.code == 0 and _error_lines(cache) == []  # the valid entry was used


@pytest.mark.slow
def test_fuzz_fixed_seed(seeds, worker, tmp_path) -> None:
    cases = fuzzing.make_cases(SEED, CASES)
    results = fuzzing.run_cases(cases, seeds, tmp_path, worker=worker)
    table = fuzzing.summary(results)
    assert set(table) == {kind.name for kind in fuzzing.KINDS}
    assert all(row["cases"] >= CASES // len(fuzzing.KINDS) for row in table.values()), table
    mutations = {r.case.mutation for r in results}
    assert set(fuzzing.BYTE_MUTATIONS) <= mutations
    assert len(mutations - set(fuzzing.BYTE_MUTATIONS)) >= 8, mutations  # structural ones
    failures = [f"{r.case.id}: {r.failure}" for r in results if r.failure]
    assert failures == [], "\n".join(failures)
    # mutations do not all make trivially refused files: many still load and run
    assert sum(row["exit 0"] for row in table.values()) >= CASES // 5, table
    assert sum(row["exit 2"] for row in table.values()) >= CASES // 5, table


# ---------------------------------------------------------------- the harness
def _request(tmp_path: Path, code: str) -> fuzzing.Request:
    target = tmp_path / "input"
    target.write_bytes(b"input")
    return fuzzing.Request(["python", code], {}, target, [tmp_path / "out.pt"])


def _judge(tmp_path: Path, outcome: fuzzing.Outcome) -> str | None:
    request = _request(tmp_path, "0")
    before = fuzzing._digest(request.input)
    return fuzzing.judge(fuzzing.KINDS[0], request, outcome, before, tmp_path)


def test_judge_accepts_clean_outcomes(tmp_path) -> None:
    assert _judge(tmp_path, fuzzing.Outcome(0, "table", "")) is None
    assert _judge(tmp_path, fuzzing.Outcome(2, "", "secateur: error: x.pt: is empty\n")) is None


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (fuzzing.Outcome(1, "", "Traceback...\nsecateur: internal error"), "exit 1"),
        (fuzzing.Outcome(2, "", "secateur: error: a\nsecateur: error: b\n"), "2 lines"),
        (fuzzing.Outcome(2, "", "oops\n"), "without the error line"),
        (fuzzing.Outcome(2, "", "Traceback (most recent call last):\n"), "a traceback"),
        (fuzzing.Outcome(0, "", "MemoryError\n"), "an allocation failed"),
        (fuzzing.Outcome(0, "", "", peak_rss=fuzzing.MEMORY_BOUND + 1), "peak RSS"),
        (fuzzing.Outcome(None, died="hung (over 30 s)"), "hung"),
    ],
)
def test_judge_rejects(tmp_path, outcome, reason) -> None:
    failure = _judge(tmp_path, outcome)
    assert failure is not None and reason in failure, failure


def test_judge_rejects_leftovers(tmp_path) -> None:
    (tmp_path / ".out.pt.secateur-0-0-0.x.tmp").write_bytes(b"")
    assert "temporary files left behind" in str(_judge(tmp_path, fuzzing.Outcome(0)))
    (tmp_path / ".out.pt.secateur-0-0-0.x.tmp").unlink()
    (tmp_path / "out.pt").write_bytes(b"half")
    refused = fuzzing.Outcome(2, "", "secateur: error: x\n")
    assert "left output behind: out.pt" in str(_judge(tmp_path, refused))


@pytest.mark.slow
def test_worker_catches_hangs_crashes_and_memory(tmp_path) -> None:
    """The time limit, a crash and the memory measurement, on the real worker process."""
    worker = fuzzing.Worker(tmp_path / "worker")
    try:
        big = worker.run(_request(tmp_path, "len(b'x' * 1_200_000_000) and 0"))
        assert big.code == 0 and big.peak_rss > fuzzing.MEMORY_BOUND
        worker.time_limit = 3.0
        hung = worker.run(_request(tmp_path, "__import__('time').sleep(60)"))
        assert hung.code is None and hung.died == "hung (over 3 s)"
        crash = worker.run(
            _request(tmp_path, "__import__('os').kill(__import__('os').getpid(), 11)")
        )
        assert crash.code is None and crash.died == "the process died (signal 11)"
        after = worker.run(_request(tmp_path, "2"))
        assert after.code == 2 and worker.starts == 3
        small = worker.run(_request(tmp_path, "0"))
        assert small.peak_rss < fuzzing.MEMORY_BOUND  # the peak is measured per case
    finally:
        worker.close()
