"""What the client commands print: tables for people, JSON for machines, and the progress of a
running transition (one line redrawn on a terminal, plain lines otherwise)."""

from __future__ import annotations

import json
import sys


def print_json(value, stream=None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    stream.flush()


def _clean(value) -> str:
    """One table cell: no line breaks or control characters from names and reasons."""
    text = "" if value is None else str(value)
    return "".join(ch if ch.isprintable() else " " for ch in text)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[_clean(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(row):
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def key_values(pairs: list[tuple[str, object]]) -> str:
    width = max(len(key) for key, _ in pairs)
    return "\n".join(f"{key + ':':<{width + 1}} {_clean(value)}" for key, value in pairs)


def when(timestamp: str | None) -> str:
    """The API's ``2026-07-01T09:00:00.000Z`` as ``2026-07-01 09:00:00Z`` (UTC, like the API)."""
    if not timestamp:
        return "-"
    return timestamp.replace("T", " ").split(".")[0].removesuffix("Z") + "Z"


def trigger_text(trigger: dict | None) -> str:
    trigger = trigger or {}
    who = trigger.get("actor") or trigger.get("source") or "-"
    return f"{who} ({trigger['source']})" if trigger.get("source") and trigger.get("actor") else who


def progress_text(transition: dict) -> str:
    """``3 of 12 stopped``: how many of the containers the transition stops or starts are done
    (the ignored and already-stopped ones, which it leaves alone, are not counted)."""
    acting = [action for action in transition.get("containers") or [] if action.get("action") in ("stop", "start")]
    if not acting:
        return "nothing to stop or start"
    kinds = {action["action"] for action in acting}
    verb = "stopped" if kinds == {"stop"} else "started" if kinds == {"start"} else "done"
    return f"{sum(1 for action in acting if action.get('result'))} of {len(acting)} {verb}"


class Progress:
    """The progress of one transition on ``stream``: redrawn in place on a terminal, a new line each
    time it changes otherwise (so logs of cron jobs read well)."""

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self._last = None

    def show(self, transition: dict) -> None:
        text = f"{self.label}: {progress_text(transition)}"
        if text == self._last:
            return
        self._last = text
        if self.live:
            self.stream.write(f"\r\033[K{text}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.live and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()
