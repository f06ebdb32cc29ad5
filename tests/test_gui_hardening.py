"""Hardening through the window (offscreen): every case of the bad-input corpus gives a
message box with its one-line error and the demo still runs afterwards; an untrusted pickle
never runs without consent; cancelling at any stage of a run, or during a save, changes
nothing and writes nothing; the opened model file is not overwritten unless confirmed; a
long session leaks no threads or timers; a job that will not fit in memory is warned about.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from badinputs import CASES, Case, marker_pickle
from conftest import use_quick_recipe
from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.demo import build_model
from gui import dialogs, prefs
from gui.choices import SAVE_FILTERS

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.long_session import run_once, sample  # noqa: E402

TIMEOUT = 60_000
MODEL_CASES = [c for c in CASES if c.kind == "model"]
RECIPE_CASES = [c for c in CASES if c.kind == "recipe"]
DATA_CASES = [c for c in CASES if c.kind == "data"]
# Where the window asks instead of refusing: the question itself says what the CLI's error
# says, and answering it "no" leaves the window as it was.
ASKS_TRUST = {"pickle-untrusted": "full.pt is a full pickled model"}
ASKS_ARCH = {"state-dict-no-arch"}
YES_ROLES = (QMessageBox.ButtonRole.AcceptRole, QMessageBox.ButtonRole.YesRole)
NO_ROLES = (QMessageBox.ButtonRole.RejectRole, QMessageBox.ButtonRole.NoRole)


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def answers(message_boxes, monkeypatch):
    """Message boxes answered by clicking their real buttons: ``answers.reply`` is "yes"
    (accept/yes role) or "no" (reject/no role). Every box is recorded in message_boxes."""
    state = SimpleNamespace(reply="no", boxes=message_boxes)

    def fake_exec(box: QMessageBox) -> int:
        message_boxes.append((box.icon(), box.text(), box.informativeText(), box.detailedText()))
        roles = YES_ROLES if state.reply == "yes" else NO_ROLES
        buttons = [b for b in box.buttons() if box.buttonRole(b) in roles]
        if not buttons:  # a box with only OK: acknowledge it
            buttons = box.buttons()[:1]
        if not buttons:
            return 0
        buttons[0].click()
        standard = box.standardButton(buttons[0])
        return int(standard.value) if standard else 0

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    return state


@pytest.fixture
def arch_asked(monkeypatch) -> list[tuple[Path, str | None]]:
    """The architecture dialog, answered Cancel; records what it was asked about."""
    asked: list[tuple[Path, str | None]] = []

    def fake_ask(parent, path, spec, folder):
        asked.append((path, spec))
        return None

    monkeypatch.setattr(dialogs, "ask_arch", fake_ask)
    return asked


def wait_idle(qtbot, window, timeout: int = TIMEOUT) -> None:
    """Until no job runs (a failed load may start another one, e.g. after consent)."""
    qtbot.waitUntil(lambda: not window.jobs.busy, timeout=timeout)


def open_demo(qtbot, window) -> None:
    """The demo, with the quick recipe in place of its own (which fine-tunes: slow)."""
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_demo()
    use_quick_recipe(window)


def demo_run_completes(qtbot, window) -> None:
    """Open the demo afresh and run its recipe (with its data) to the end."""
    open_demo(qtbot, window)
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    assert blocker.args[0].report.layers
    assert window.session.result is blocker.args[0]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert list(now) == list(before)
    for key, tensor in before.items():
        assert type(now[key]) is torch.Tensor or isinstance(now[key], torch.nn.Parameter), key
        assert now[key].dtype == tensor.dtype and torch.equal(now[key], tensor), key


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def open_file_dialog(monkeypatch, path: str) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (path, "")))


def feed(case: Case, window, boxes: list, qtbot, monkeypatch, tmp_path: Path) -> list:
    """Give ``case`` to the window the way a user would; returns the message boxes it
    opened (``boxes``: the list the patched QMessageBox.exec records into)."""
    files = case.build(tmp_path)
    start = len(boxes)
    if case.kind == "model":
        window.open_model(Path(files["model"]), arch=files.get("arch"), trust="trust" in files)
        wait_idle(qtbot, window)
    elif case.kind == "recipe":
        open_file_dialog(monkeypatch, files["recipe"])
        window.action("load_recipe").trigger()
    else:
        open_file_dialog(monkeypatch, files["data"])
        window.action("open_data").trigger()
        wait_idle(qtbot, window)  # the file is read in the background
        if len(boxes) == start:  # read fine: the run finds the problem
            window.run_compression()
            wait_idle(qtbot, window)
    return boxes[start:]


# ------------------------------------------------------------------ the bad-input corpus
@pytest.mark.parametrize("case", MODEL_CASES, ids=[c.id for c in MODEL_CASES])
def test_bad_model_file_is_a_message_box(
    case, qtbot, window, answers, arch_asked, monkeypatch, tmp_path
):
    answers.reply = "no"
    new = feed(case, window, answers.boxes, qtbot, monkeypatch, tmp_path)
    assert window.session.loaded is None and not window.jobs.busy
    if case.id in ASKS_TRUST:  # asked for consent, answered no: nothing else happens
        assert len(new) == 1 and ASKS_TRUST[case.id] in new[0][1], new
        assert "(not trusted)" in window.step_label.text()
        return
    if case.id in ASKS_ARCH:  # asked for the architecture, answered cancel
        assert [p.name for p, _ in arch_asked] == [Path(case.build(tmp_path)["model"]).name]
        assert new == []
        return
    assert new, f"no message box for {case.id}"
    icon, text, _, details = new[0]
    assert case.expected in text, text
    assert icon == QMessageBox.Icon.Warning, text  # a user error, not "a bug in Secateur"
    assert "\n" not in text and not details and "Traceback" not in text


@pytest.mark.parametrize("case", RECIPE_CASES, ids=[c.id for c in RECIPE_CASES])
def test_bad_recipe_is_a_message_box_and_changes_nothing(
    case, qtbot, demo_window, message_boxes, monkeypatch, tmp_path
):
    window = demo_window
    before = window.current_recipe().to_dict()
    new = feed(case, window, message_boxes, qtbot, monkeypatch, tmp_path)
    assert len(new) == 1, new
    icon, text, _, details = new[0]
    assert case.expected in text, text
    assert icon == QMessageBox.Icon.Warning and "\n" not in text and not details
    assert window.current_recipe().to_dict() == before  # nothing half-applied


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data_is_a_message_box(case, qtbot, demo_window, message_boxes, monkeypatch, tmp_path):
    window = demo_window
    new = feed(case, window, message_boxes, qtbot, monkeypatch, tmp_path)
    assert len(new) == 1, new
    icon, text, _, details = new[0]
    assert case.expected in text, text
    assert icon == QMessageBox.Icon.Warning and "\n" not in text and not details
    assert window.session.result is None and not window.jobs.busy
    assert window.action("run").isEnabled()


@pytest.mark.parametrize(
    "kind, ids",
    [
        ("model", ["random-bytes", "arch-raises", "pickle-missing-class", "directory"]),
        ("recipe", ["recipe-yaml-syntax", "recipe-amount-text", "recipe-no-match"]),
        ("data", ["data-nan", "data-wrong-shape", "data-labels-out-of-range"]),
    ],
)
def test_after_bad_inputs_a_demo_run_still_completes(
    kind, ids, qtbot, window, message_boxes, arch_asked, monkeypatch, tmp_path
):
    if kind != "model":
        open_demo(qtbot, window)
    cases = {c.id: c for c in CASES}
    missed = []
    for n, case_id in enumerate(ids):
        folder = tmp_path / str(n)
        folder.mkdir()
        new = feed(cases[case_id], window, message_boxes, qtbot, monkeypatch, folder)
        if not (new and cases[case_id].expected in new[0][1]):
            missed.append((case_id, [box[1] for box in new]))
    demo_run_completes(qtbot, window)  # whatever the boxes said, the window still works
    assert missed == [], f"no box with the expected error for: {missed}"


def test_unreadable_model_file_is_a_message_box(qtbot, window, answers, monkeypatch, tmp_path):
    path = tmp_path / "locked.pt"
    path.write_bytes(b"x" * 10)
    real_open = Path.open

    def deny(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    window.open_model(path)
    wait_idle(qtbot, window)
    assert any("locked.pt: permission denied" in box[1] for box in answers.boxes), answers.boxes
    assert answers.boxes[-1][0] == QMessageBox.Icon.Warning and window.session.loaded is None


# ----------------------------------------------------------------- untrusted pickles
def _torch_zip_marker(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    buf = io.BytesIO()
    torch.save({"w": Payload()}, buf, pickle_module=pickle)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("style", ["plain-pickle", "torch-zip"])
def test_untrusted_pickle_runs_only_with_consent(style, qtbot, window, answers, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    (marker_pickle if style == "plain-pickle" else _torch_zip_marker)(evil, marker)
    # asked, answered no (the dialog's real Cancel button): the file is never unpickled
    answers.reply = "no"
    window.open_model(evil)
    wait_idle(qtbot, window)
    assert not marker.exists()
    assert [box[1] for box in answers.boxes] == [
        "evil.pt is a full pickled model. Opening it can run any code it contains."
    ]
    assert window.session.loaded is None
    # the same again (a second attempt, from the recent-files menu or a drop): still asked
    window.open_dropped(evil)
    wait_idle(qtbot, window)
    assert not marker.exists() and len(answers.boxes) == 2
    # answered yes ("Open Anyway"): it is unpickled, which is the risk the dialog names,
    # and the window then says it is not a model
    answers.reply = "yes"
    window.open_model(evil)
    wait_idle(qtbot, window)
    assert marker.exists()
    icon, text, _, _ = answers.boxes[-1]
    assert text.startswith("evil.pt: ") and icon == QMessageBox.Icon.Warning, text
    assert window.session.loaded is None


# --------------------------------------------------------------------- cancellation
def paused_after(real: Callable[..., Any], predicate: Callable[[Any], bool]):
    """A job that pauses its worker right after the first event ``predicate`` accepts until
    the window has pressed Cancel (``state.gate``), so the cancel lands exactly there."""
    state = SimpleNamespace(hit=None, gate=threading.Event())

    def job(*args: Any, **kwargs: Any) -> Any:
        gen = real(*args, **kwargs)
        try:
            while True:
                event = next(gen)
                yield event
                if state.hit is None and predicate(event):
                    state.hit = event
                    state.gate.wait(20)
        except StopIteration as stop:
            return stop.value

    return job, state


def press_cancel_on(window, state, predicate) -> Callable[..., None]:
    def on_progress(event, *partial_results):
        if not state.gate.is_set() and event is not None and predicate(event):
            window.cancel_button.click()  # what the user presses
            state.gate.set()

    window.jobs.progress.connect(on_progress)
    return on_progress


STAGES = {
    "prune": lambda e: e.stage == "prune",
    "quantize": lambda e: e.stage == "quantize",
    "metrics-before": lambda e: e.stage == "metrics" and "the original" in e.message,
    "metrics-after": lambda e: e.stage == "metrics" and "latency" in e.message,
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_cancel_at_each_stage_changes_nothing(
    stage, qtbot, demo_window, message_boxes, monkeypatch, tmp_path
):
    from core import tasks

    window = demo_window
    monkeypatch.chdir(tmp_path)
    model = window.session.loaded.model
    before = snapshot(model)
    job, state = paused_after(tasks.compress_model, STAGES[stage])
    monkeypatch.setattr(tasks, "compress_model", job)
    slot = press_cancel_on(window, state, STAGES[stage])
    with qtbot.waitSignal(window.runCancelled, timeout=TIMEOUT):
        window.run_compression()
    window.jobs.progress.disconnect(slot)
    assert state.hit is not None and STAGES[stage](state.hit)
    assert window.session.result is None and not window.isWindowModified()
    assert "Cancelled" in window.step_label.text()
    assert window.session.loaded.model is model
    assert_bit_identical(model, before)
    assert files_under(tmp_path) == set()  # nothing written
    assert message_boxes == []
    # the next run works, and leaves the original as it was too
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT) as blocker:
        window.run_compression()
    assert blocker.args[0].report.layers
    assert_bit_identical(model, before)


def test_cancel_while_opening_a_model_keeps_the_open_one(
    qtbot, demo_window, message_boxes, monkeypatch, tmp_path
):
    from core import tasks

    window = demo_window
    loaded = window.session.loaded
    before = snapshot(loaded.model)
    path = tmp_path / "other.pt"
    torch.save(build_model().state_dict(), path)
    is_load = lambda e: e.stage == "load"  # noqa: E731
    job, state = paused_after(tasks.open_model, is_load)
    monkeypatch.setattr(tasks, "open_model", job)
    slot = press_cancel_on(window, state, is_load)
    window.open_model(path, arch="core.demo:build_model")
    wait_idle(qtbot, window)
    window.jobs.progress.disconnect(slot)
    assert state.hit is not None
    assert window.session.loaded is loaded and window.session.loaded.format == "demo"
    assert "other.pt" not in window.windowTitle()
    assert_bit_identical(loaded.model, before)
    assert message_boxes == [] and files_under(tmp_path) == {path}
    monkeypatch.undo()
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT):
        window.run_compression()
    assert_bit_identical(loaded.model, before)


def test_cancel_during_a_save_writes_nothing(
    qtbot, demo_window, message_boxes, monkeypatch, tmp_path
):
    from core import tasks

    window = demo_window
    model = window.session.loaded.model
    before = snapshot(model)
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT):
        window.run_compression()
    result = window.session.result
    out = tmp_path / "out"
    out.mkdir()
    target = out / "small.pt"
    is_save = lambda e: e.stage == "save"  # noqa: E731
    job, state = paused_after(tasks.save_result, is_save)
    monkeypatch.setattr(tasks, "save_result", job)
    slot = press_cancel_on(window, state, is_save)
    saved: list[Any] = []
    window.saved.connect(saved.append)
    window.saves.save(target, "state_dict")
    wait_idle(qtbot, window)
    window.jobs.progress.disconnect(slot)
    assert state.hit is not None, "the save never reported progress"
    assert files_under(out) == set(), "a cancelled save wrote " + ", ".join(
        p.name for p in files_under(out)
    )
    assert saved == [] and window.session.save_outcome is None
    assert window.isWindowModified()  # the result is still unsaved
    assert window.session.result is result
    assert_bit_identical(model, before)
    monkeypatch.undo()
    # the next save and the next run work
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT) as blocker:
        window.saves.save(target, "state_dict")
    assert blocker.args[0].path == target and target.exists()
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT):
        window.run_compression()
    assert_bit_identical(model, before)


# ------------------------------------------------------------ overwriting the opened file
@pytest.fixture
def opened_state_dict(qtbot, window, tmp_path):
    """A state dict opened from a file (architecture remembered), compressed once."""
    path = tmp_path / "mine.pt"
    torch.save(build_model().state_dict(), path)
    prefs.remember_arch(path, "core.demo:build_model")
    with qtbot.waitSignal(window.modelLoaded, timeout=TIMEOUT):
        window.open_model(path)
    window.settings.set_input_shape("1x1x8x8")
    window.action("check_all").trigger()  # issue 13: a model opens with nothing checked
    with qtbot.waitSignal(window.runFinished, timeout=TIMEOUT):
        window.run_compression()
    return path


@pytest.mark.parametrize("typed", ["mine.pt", "mine"])
def test_overwriting_the_opened_model_is_refused_without_confirmation(
    typed, qtbot, window, answers, opened_state_dict, monkeypatch
):
    path = opened_state_dict
    original = path.read_bytes()
    typed_path = str(path.with_name(typed))
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **k: (typed_path, SAVE_FILTERS["state_dict"])),
    )
    answers.reply = "no"
    window.saves.save_dialog()
    wait_idle(qtbot, window)
    assert answers.boxes, "the window neither asked nor said why it did not save"
    assert path.read_bytes() == original
    assert window.session.save_outcome is None and window.isWindowModified()
    assert files_under(path.parent) == {path}


@pytest.mark.parametrize("typed", ["mine.pt", "mine"])
def test_overwriting_the_opened_model_works_when_confirmed(
    typed, qtbot, window, answers, opened_state_dict, monkeypatch
):
    """Issue 4: 'overwriting the opened model file is refused unless confirmed (GUI)'."""
    path = opened_state_dict
    original = path.read_bytes()
    typed_path = str(path.with_name(typed))
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **k: (typed_path, SAVE_FILTERS["state_dict"])),
    )
    answers.reply = "yes"
    window.saves.save_dialog()
    wait_idle(qtbot, window)
    texts = [box[1] for box in answers.boxes]
    assert window.session.save_outcome is not None, f"not saved after confirming; boxes: {texts}"
    assert window.session.save_outcome.path == path and path.read_bytes() != original
    assert window.session.save_outcome.round_trip["ok"] is True


# ------------------------------------------------------------------------ long session
def test_a_long_session_leaks_no_threads_or_timers(qtbot, demo_window, message_boxes):
    window = demo_window
    model = window.session.loaded.model
    before = snapshot(model)
    # Two warm-up runs: Qt creates some objects lazily on a second result (the notes box's
    # QTextDocument keeps one QTextList once it has been re-set), which is not a leak.
    run_once(window)
    run_once(window)
    first = sample(window)
    for _ in range(5):
        run_once(window)
    last = sample(window)
    for key in ("py_threads", "os_threads", "qthreads", "pool_threads", "timers", "top_level"):
        assert last[key] <= first[key], (key, first[key], last[key])
    assert last["qobjects"] <= first["qobjects"], (first["qobjects"], last["qobjects"])
    assert last["rss"] < first["rss"] * 1.5  # loose: RSS is noisy; the benchmark has the figure
    assert message_boxes == []
    assert_bit_identical(model, before)


def test_error_boxes_do_not_pile_up(qtbot, demo_window, answers, tmp_path):
    """A long session with many mistakes: each error box is gone once it is answered (OK
    clicked), instead of staying behind as a hidden child of the window."""
    window = demo_window
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nprune: [{amount: 1.5}]\n")
    answers.reply = "yes"  # OK
    window.load_recipe_file(bad)
    sample(window)
    first = len(window.findChildren(QMessageBox))
    for _ in range(10):
        window.load_recipe_file(bad)
    sample(window)
    assert len(answers.boxes) == 11
    assert len(window.findChildren(QMessageBox)) <= first


# ---------------------------------------------------------------------- memory warning
def test_a_job_that_will_not_fit_in_memory_is_warned_about(
    qtbot, demo_window, answers, monkeypatch
):
    """Issue 4, item 7: 'make the window warn before a job that will not fit in memory'."""
    import core.memory

    window = demo_window
    recipe = window.current_recipe()
    tiny = SimpleNamespace(available=1024, total=2048)
    monkeypatch.setattr(core.memory.psutil, "virtual_memory", lambda: tiny)
    expected = core.memory.estimate(window.session.loaded.model, recipe).warning()
    assert expected and "GiB is available" in expected
    answers.reply = "no"
    started: list[str] = []
    window.jobs.started.connect(started.append)
    window.run_compression()
    wait_idle(qtbot, window)
    texts = [" ".join(box[1:3]) for box in answers.boxes]
    assert any("GiB is available" in t for t in texts), f"no memory warning; boxes: {texts}"
    assert started == [], "the job started although the warning was answered no"


def test_stale_temporaries_removed_on_open_are_named_in_the_log(qtbot, window, tmp_path):
    import shutil

    from test_faults import _killed_writer

    from core.demo import WEIGHTS_PATH

    path = tmp_path / "digits.safetensors"
    shutil.copyfile(WEIGHTS_PATH, path)
    stale = _killed_writer(tmp_path / "m.onnx")  # a save of this folder killed mid-write
    with qtbot.waitSignal(window.modelLoaded, timeout=60_000):
        window.open_model(path, "core.demo:build_model")
    assert not stale.exists()
    qtbot.waitUntil(lambda: "stale temporary file" in window.results.log_text())
    line = next(x for x in window.results.log_text().splitlines() if "stale temporary" in x)
    assert f"note: removed 1 stale temporary file in {tmp_path}" in line
    assert stale.name in line
