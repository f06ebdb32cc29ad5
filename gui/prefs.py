"""What the window remembers between sessions (QSettings): recent files, folders, --arch,
the layer tree's columns."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


def _settings() -> QSettings:
    return QSettings()


def _key(path: Path) -> str:
    try:
        resolved = str(path.resolve())
    except OSError:
        resolved = str(path)
    return hashlib.sha1(resolved.encode("utf-8")).hexdigest()[:16]


def _str_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in value]  # type: ignore[union-attr]


def recent_files() -> list[str]:
    """Recently opened model files that still exist, newest first."""
    return [p for p in _str_list(_settings().value("recent/models")) if Path(p).exists()]


def add_recent_file(path: Path) -> None:
    entry = str(path.resolve())
    files = [entry] + [p for p in _str_list(_settings().value("recent/models")) if p != entry]
    _settings().setValue("recent/models", files[:MAX_RECENT])


def clear_recent_files() -> None:
    _settings().remove("recent/models")


SAVE_KINDS = ("save", "report", "recipe")  # dialogs that write files


def last_folder(kind: str) -> str:
    """The folder the last dialog of this kind (model, data, recipe, save, report) used;
    for a kind not used yet, where the user last saved anything (a file written), then
    where the model came from, then the home folder."""
    s = _settings()
    fallbacks = [f"folders/{kind}"]
    if kind in SAVE_KINDS:
        fallbacks.append("folders/saved")
    fallbacks.append("folders/model")
    for key in fallbacks:
        folder = s.value(key)
        if isinstance(folder, str) and Path(folder).is_dir():
            return folder
    return str(Path.home())


def set_last_folder(kind: str, path: Path) -> None:
    folder = path if path.is_dir() else path.parent
    _settings().setValue(f"folders/{kind}", str(folder))


def set_saved_folder(path: Path) -> None:
    """A file was written here: the next save dialog of a kind not used yet starts here."""
    folder = path if path.is_dir() else path.parent
    _settings().setValue("folders/saved", str(folder))


def hidden_columns(default: tuple[str, ...]) -> list[str]:
    """The layer tree's hidden columns (by name); ``default`` until the user chose."""
    value = _settings().value("tree/hidden_columns")
    if value is None:
        return list(default)
    return _str_list(value) if value != "" else []


def set_hidden_columns(names: list[str]) -> None:
    _settings().setValue("tree/hidden_columns", names if names else "")


def arch_for(path: Path) -> str | None:
    """The architecture spec last used for this state-dict file."""
    value = _settings().value(f"arch/{_key(path)}")
    return value if isinstance(value, str) and value else None


def remember_arch(path: Path, spec: str) -> None:
    _settings().setValue(f"arch/{_key(path)}", spec)


def window_state() -> tuple[QByteArray | None, QByteArray | None, QByteArray | None]:
    """(geometry, dock/toolbar state, splitter state) saved at the last close."""
    s = _settings()

    def blob(key: str) -> QByteArray | None:
        value = s.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    return blob("window/geometry"), blob("window/state"), blob("window/splitter")


def save_window_state(geometry: QByteArray, state: QByteArray, splitter: QByteArray) -> None:
    s = _settings()
    s.setValue("window/geometry", geometry)
    s.setValue("window/state", state)
    s.setValue("window/splitter", splitter)


def run_on() -> str | None:
    """Where sweeps evaluate: None for this machine, else a Ray address (``local`` too)."""
    value = _settings().value("cluster/run_on")
    return value if isinstance(value, str) and value.strip() else None


def set_run_on(address: str | None) -> None:
    if address:
        _settings().setValue("cluster/run_on", address)
        if address != "local":
            _settings().setValue("cluster/address", address)
    else:
        _settings().remove("cluster/run_on")


def cluster_address() -> str:
    """The last cluster address typed (not ``local``), or an empty string."""
    value = _settings().value("cluster/address")
    return value if isinstance(value, str) else ""
