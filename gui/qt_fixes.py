"""Work-arounds for defects in the Qt bindings, checked for and applied once at import.

PySide6 6.12.0 on CPython < 3.12: ``SignalInstance.emit()`` returns ``True`` without taking a
reference to it, so every emit from Python (ours, pyqtgraph's, pytest-qt's) lowers the
reference count of ``True`` by one. After a few thousand emits CPython aborts with "Fatal
Python error: bool_dealloc: deallocating True or False". From 3.12 on ``True`` is immortal
and the missing reference is harmless. ``install()`` measures whether this PySide6 has the
defect (64 probe emits) and, only then, wraps ``emit`` to add the missing reference, so a
fixed PySide6 runs untouched.

The same PySide6 also returns ``None`` from every void C++ method (``setText``,
``setVisible``, ...) without taking a reference to it: each call lowers the reference count of
``None`` by one, and a long session (or a long test run) ends in "Fatal Python error:
none_dealloc". Wrapping every method is not practical, so when a probe shows the defect,
``None`` is pinned instead: its reference count is raised once by 2**60, which no session can
use up. This is what CPython 3.12 does for every singleton (immortal objects).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance

_PROBES = 64
_PIN = 1 << 60
_installed = False
_none_pinned = False


class _Probe(QObject):
    fired = Signal()


def _emit_drops_references() -> dict[bool, int]:
    """How many references to what emit returns (True or False) one emit drops, unblocked
    and blocked. The probe's own losses are given back when the work-around goes in."""
    probe = _Probe()
    drops: dict[bool, int] = {}
    for blocked in (False, True):
        probe.blockSignals(blocked)
        result = probe.fired.emit()
        if not isinstance(result, bool):
            continue
        before = sys.getrefcount(result)
        for _ in range(_PROBES):
            probe.fired.emit()
        drops[result] = round((before - sys.getrefcount(result)) / _PROBES)
    probe.blockSignals(False)
    return drops


def _void_calls_drop_none() -> bool:
    """Whether a void method call loses a reference to None (64 probe calls)."""
    probe = _Probe()
    before = sys.getrefcount(None)
    for _ in range(_PROBES):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= _PROBES // 2


def pin_none() -> bool:
    """Make None's reference count unreachable by the void-call defect; True when done."""
    global _none_pinned
    if _none_pinned or sys.version_info >= (3, 12):
        return _none_pinned
    if not _void_calls_drop_none():
        return False
    refcount = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt, PyObject's first field
    refcount.value += _PIN
    _none_pinned = True
    return True


def install() -> bool:
    """Apply the work-arounds this PySide6 needs; True when the emit one was applied."""
    global _installed
    if _installed:
        return True
    if sys.version_info >= (3, 12):
        return False
    pin_none()
    drops = _emit_drops_references()
    if not any(drops.values()):
        return False
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    for value, lost in drops.items():  # what the probes took: (1 + _PROBES) emits each way
        for _ in range(lost * (1 + _PROBES) * (2 if len(drops) == 1 else 1)):
            incref(value)
    original = SignalInstance.emit
    lost_true, lost_false = drops.get(True, 0), drops.get(False, 0)

    def emit(self: SignalInstance, *args: Any) -> Any:
        result = original(self, *args)
        lost = lost_true if result is True else lost_false if result is False else 0
        for _ in range(lost):
            incref(result)
        return result

    emit.__doc__ = original.__doc__
    SignalInstance.emit = emit  # type: ignore[method-assign]
    _installed = True
    return True
