"""The window's plain parts, without a window: the layer selection (no Qt at all), layer kinds,
the session's change signals, the report rows, the scripted feedback and the action rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from core.errors import DataError
from core.inventory import inventory
from core.loading import load_demo
from core.report import Numbers, Report
from gui.actions import ACTIONS, ActionContext
from gui.layer_selection import Change, Kind, LayerSelection, layer_kinds
from gui.report_rows import card_values, table_rows


class Linear8(nn.Linear):
    """A subclass counts as its base class."""


def small_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ConvTranspose2d(2, 2, 3),
        nn.Sequential(nn.Linear(4, 4), Linear8(4, 4)),
        nn.Conv1d(1, 1, 1),
        nn.Bilinear(2, 2, 2),
    )


@pytest.fixture
def selection():
    loaded, _, _ = load_demo()
    chosen = LayerSelection()
    chosen.reset(inventory(loaded.model), layer_kinds(loaded.model))
    return chosen


def test_layer_kinds_use_isinstance_not_type_names():
    kinds = layer_kinds(small_model())
    assert kinds == {"0": Kind.CONV, "2.0": Kind.LINEAR, "2.1": Kind.LINEAR, "3": Kind.CONV}
    # neither the transposed convolution nor Bilinear: their names merely contain the words


def test_selection_checks_and_the_parents_tri_state(selection):
    events = []
    selection.subscribe(events.append)
    assert selection.checked_names() == []
    selection.set_checked("fc1", True)
    assert selection.checked_names() == ["fc1"]
    root = selection.row("")
    assert selection.check_state_at(root) is None  # some of its layers
    assert events[-1].change is Change.CHECKS
    assert events[-1].rows == {selection.row("fc1"), root}
    selection.check_kind(Kind.CONV)
    assert selection.checked_names() == ["conv1", "conv2", "fc1"]
    selection.set_checked("fc2", True)
    assert selection.check_state_at(root) is True
    selection.invert()
    assert selection.checked_names() == []
    assert selection.check_state_at(root) is False
    assert selection.set_checked_names(["fc1", "relu1"]) == ["relu1"]  # not prunable
    assert selection.checked_summary() == (1, 4, selection.layers[selection.row("fc1")].parameters)


def test_selection_amounts_follow_the_scope(selection):
    events = []
    selection.subscribe(events.append)
    selection.set_checked_names(["fc1", "fc2"])
    selection.set_override("fc1", 0.8)
    assert events[-1].change is Change.AMOUNTS and events[-1].rows == {selection.row("fc1")}
    assert selection.effective_amount("fc1") == 0.8
    assert selection.effective_amount("fc2") == 0.5
    assert selection.effective_amount("conv1") is None  # not checked
    selection.set_default_amount(0.3, True)  # global: one amount for every checked layer
    assert selection.effective_amount("fc1") == 0.3
    selection.set_default_amount(0.3, False)
    assert selection.overrides() == {"fc1": 0.8}
    selection.set_override("fc1", 0.3)  # the default amount: no override any more
    assert selection.overrides() == {}
    before = len(events)
    selection.set_override("fc2", None)  # nothing to remove: nobody is told
    assert len(events) == before


def test_reset_is_announced_before_and_after(selection):
    events = []
    selection.subscribe(events.append)
    selection.set_checked("fc1", True)
    selection.reset(inventory(small_model()), layer_kinds(small_model()))
    assert [e.change for e in events] == [Change.CHECKS, Change.RESETTING, Change.RESET]
    assert selection.checked_names() == []
    selection.check_kind(Kind.LINEAR)
    assert selection.checked_names() == ["2.0", "2.1"]


def test_session_has_a_signal_per_part(qtbot):
    from core.data import random_data
    from core.tasks import Opened
    from gui.session import Session

    session = Session()
    loaded, _, train = load_demo()
    heard: list[str] = []
    for name in (
        "modelChanged",
        "evalDataChanged",
        "trainDataChanged",
        "resultChanged",
        "saveOutcomeChanged",
        "sweepChanged",
        "openedRecipeChanged",
    ):
        getattr(session, name).connect(lambda name=name: heard.append(name))
    session.modifiedChanged.connect(lambda on: heard.append(f"modified {on}"))
    session.open(Opened(loaded, inventory(loaded.model)))
    assert heard[0] == "modelChanged" and session.has_model and session.eager
    assert session.kinds["fc1"] is Kind.LINEAR and session.kinds["conv1"] is Kind.CONV
    heard.clear()
    session.set_eval_data(random_data((1, 1, 8, 8)), None)
    session.set_train_data(train, Path("train.npz"))
    session.set_sweep({"layers": []}, True)
    session.set_opened_recipe(None)
    assert heard == ["evalDataChanged", "trainDataChanged", "sweepChanged", "openedRecipeChanged"]
    assert session.sweep_cached and session.train_path == Path("train.npz")
    heard.clear()
    session.set_modified(True)
    session.set_modified(True)  # no change, no signal
    assert heard == ["modified True"]


def test_scripted_feedback_exits_2_for_a_user_error_and_1_for_a_bug(capsys):
    from gui.feedback import Question, ScriptedFeedback

    codes: list[int] = []
    lines: list[str] = []
    feedback = ScriptedFeedback(codes.append, lines.append, lines.append)
    feedback.error(DataError("data.npz: x is empty"))
    feedback.error(ZeroDivisionError("boom"), "Traceback (most recent call last): ...")
    err = capsys.readouterr().err.splitlines()
    assert codes == [2, 1]
    assert err[0] == "secateur: error: data.npz: x is empty"
    assert err[1] == "secateur: error: boom" and err[2].startswith("Traceback")
    assert any("error: data.npz: x is empty" in line for line in lines)  # also in the log
    # nobody to ask: every question gets its unattended answer
    assert feedback.confirm(Question("t", "q", unattended=True))
    assert not feedback.confirm(Question("t", "q"))
    assert not feedback.interactive and not feedback.ask_trust(Path("x.pt"))


def test_action_rules():
    rules = {spec.id: spec.enabled for spec in ACTIONS}
    idle_model = ActionContext(has_model=True, eager=False)
    assert rules["run"](idle_model) and not rules["sensitivity"](idle_model)
    assert not rules["save"](idle_model)
    assert rules["save"](ActionContext(has_model=True, has_result=True))
    busy = ActionContext(has_model=True, busy=True, has_result=True, eager=True)
    assert [i for i, rule in rules.items() if rule(busy)] == [
        "quit",
        "find",
        "cancel",
        "about",
        "about_qt",
    ]
    assert not rules["cancel"](ActionContext())


def test_without_labels_the_accuracy_card_shows_agreement_or_fidelity():
    before = {"accuracy": None, "state_dict_bytes": 100}
    report = Report(
        before=Numbers(state_dict_bytes=100),
        after=Numbers(state_dict_bytes=50),
        fidelity={"cosine_similarity": 0.99, "relative_error": 0.1, "top1_agreement": 0.95},
    )
    card = card_values(before, report)[3]
    assert (card.caption, card.value) == ("Top-1 agreement", "95.00%")
    report.fidelity["top1_agreement"] = None
    card = card_values(before, report)[3]
    assert (card.caption, card.value) == ("Fidelity (cosine)", "0.9900")
    report.fidelity = {}
    assert card_values(before, report)[3].note == "not measured"
    assert card_values(before, None)[3].note == "run to compare"
    # the table's round-trip row: dashes before a run, "not saved" after one
    assert table_rows(None)[-1].after == "\u2013"
    assert table_rows(report)[-1].after == "not saved"
