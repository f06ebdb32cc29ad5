"""Real process faults (``tests/faults.py``): ``kill -9`` of a real ``secateur`` process inside
each phase of its work, and two processes saving to one path at the same moment."""

from __future__ import annotations

import faults
import pytest


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> faults.Inputs:
    return faults.build_inputs(tmp_path_factory.mktemp("kills"))


@pytest.mark.slow
@pytest.mark.parametrize("phase", faults.PHASES, ids=[p.name for p in faults.PHASES])
def test_kill_9_inside_a_phase(inputs, tmp_path, phase) -> None:
    result = faults.kill_in(phase, inputs, tmp_path / "run")
    assert result.inside, f"not killed inside {phase.name}: last printed {result.killed_at!r}"
    assert result.problems == []
    assert result.input_unchanged and result.next_code == 0
    stale = [name for name in result.left if name.endswith(".tmp")]
    if phase.name == "save":
        # killed mid-write: the older output untouched, the partial file a hidden temporary
        assert result.old_output_unchanged is True
        assert len(stale) == 1 and stale[0].startswith(".out.pt.secateur-"), result.left
    elif phase.name == "sweep (cache write)":
        assert len(stale) == 1 and stale[0].startswith("cache/."), result.left
    else:
        assert result.left == {}, result.left  # nothing written before the save
    # the next run removed the stale temporary, said so in one line, and left none
    assert len(result.next_notes) == len(stale)
    assert all(note.startswith("secateur: note: removed 1 stale") for note in result.next_notes)
    assert not any(name.endswith(".tmp") for name in result.next_left)
    assert all(name not in result.next_left for name in stale)


@pytest.mark.slow
def test_two_processes_save_to_one_path(inputs, tmp_path) -> None:
    result = faults.race(inputs, tmp_path / "race")
    assert result.problems == []
    assert result.codes == [0, 0]
    assert result.winner in faults.RACE_RECIPES
    # the output and its sidecar come from the same run: a sidecar only with int8 weights
    assert result.consistent and result.sidecar == (result.winner == "quantized")
    assert all(trip.startswith("round trip: ok") for trip in result.round_trips)
