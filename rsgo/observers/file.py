"""The ``file`` observer: a flag file's existence, or its (trimmed) content, optionally through a regex
(README "Observers")."""

from __future__ import annotations

import os
import re
import time

from rsgo.observers.base import Boundaries, Field, Observer, ObserverError, Reading

# A flag file is a few bytes; a cap keeps a wrong path (a log, a disk image) from eating memory.
MAX_BYTES = 1024 * 1024
# A file last changed this recently may change again within its file system's timestamp granularity
# with the same size, unseen by stat: its content is read again at every check until it is older.
SETTLED_NS = 2_000_000_000


def _compile(pattern: str | None) -> re.Pattern | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ObserverError(f"contentPattern {pattern!r} is not a valid regex: {error}") from None


def _refusal(path: str, protected: str) -> str:
    where = path if os.path.realpath(path) == path else f"{path} (resolved: {os.path.realpath(path)})"
    return f"{where} is rsgo's own ({protected}): observers may not read rsgo's data dir, config or secrets"


class FileObserver(Observer):
    type_name = "file"
    fields = {
        "path": Field("string", required=True),
        "mode": Field("string", default="exists", choices=("exists", "content")),
        "contentPattern": Field("string"),
    }

    @classmethod
    def validate(cls, settings: dict) -> list[str]:
        problems = []
        if not str(settings.get("path") or "").strip():
            problems.append("path must not be empty")
        pattern = settings.get("contentPattern")
        if pattern is not None and settings.get("mode", "exists") != "content":
            problems.append("contentPattern applies only to mode: content")
        try:
            _compile(pattern)
        except ObserverError as error:
            problems.append(str(error))
        return problems

    @classmethod
    def boundary_problems(cls, settings: dict, boundaries: Boundaries) -> list[tuple[str, str]]:
        path = str(settings.get("path") or "")
        protected = boundaries.protected(path) if path else None
        return [("path", _refusal(path, protected))] if protected else []

    def __init__(self, settings: dict):
        super().__init__(settings)
        problems = self.validate(settings)
        if problems:
            raise ObserverError("; ".join(problems))
        self.path = settings["path"]
        self.mode = settings.get("mode") or "exists"
        self.pattern = _compile(settings.get("contentPattern"))
        self._last: tuple[tuple, Reading] | None = None  # (the file's identity, what it read) in content mode

    def check(self) -> Reading:
        identity = self._identity() if self.mode == "content" else None
        if identity is not None and self._last is not None and self._last[0] == identity:
            # The same file (device and inode: no symlink now leads elsewhere) unchanged since it was read
            # and checked: hundreds of observers at 1 s need not open and re-read what they just read.
            return self._last[1]
        self._last = None
        reading = self._check()
        settled = identity is not None and time.time_ns() - max(identity[3], identity[4]) > SETTLED_NS
        self._last = (identity, reading) if settled else None
        return reading

    def _identity(self) -> tuple | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # missing or unreadable: read (and report) it the long way
        return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns

    def _check(self) -> Reading:
        # Again at every read: a symlink on the way may point elsewhere since the config was loaded.
        protected = self.boundaries.protected(self.path)
        if protected:
            raise ObserverError(_refusal(self.path, protected))
        if self.mode == "exists":
            return Reading("true" if self._exists() else "false")
        text = self._read()
        if text is None:
            return Reading(None)  # a missing file reads as normal (README "Observers")
        if self.pattern is None:
            return Reading(text.strip())
        match = self.pattern.search(text)
        if match is None:
            return Reading(None)  # no match reads as normal (README "Observers")
        # An optional group that did not take part is None: nothing to read, like no match.
        return Reading(match.group(1) if self.pattern.groups else match.group(0))

    def _exists(self) -> bool:
        # Not os.path.exists: it answers False for "permission denied" too, which would
        # silently read as normal; only "not there" may mean false.
        try:
            os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as error:
            raise ObserverError(f"cannot check {self.path}: {error.strerror or error}") from None
        return True

    def _read(self) -> str | None:
        try:
            with open(self.path, "rb") as handle:
                self._refuse_if_protected(handle)
                data = handle.read(MAX_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:  # a directory, permission denied, an I/O error
            raise ObserverError(f"cannot read {self.path}: {error.strerror or error}") from None
        if len(data) > MAX_BYTES:
            raise ObserverError(f"cannot read {self.path}: larger than {MAX_BYTES // 1024 // 1024} MiB")
        try:
            # utf-8-sig: an editor's byte-order mark would otherwise survive trimming and never match.
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ObserverError(f"cannot read {self.path}: not UTF-8 text (byte {error.start})") from None

    def _refuse_if_protected(self, handle) -> None:
        """The file really opened (a symlink may have changed since the check before opening)."""
        try:
            opened = os.readlink(f"/proc/self/fd/{handle.fileno()}")
        except OSError:
            return  # no /proc: the check before opening stands
        protected = self.boundaries.protected(opened)
        if protected:
            raise ObserverError(_refusal(self.path, protected))

    def target(self) -> str:
        if self.mode == "exists":
            return f"{self.path} (exists)"
        if self.pattern is None:
            return f"{self.path} (content)"
        return f"{self.path} (content ~ /{self.pattern.pattern}/)"
