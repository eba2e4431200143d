"""A stack's modes over time (README "The dashboard", Timelines): the segments of a window of time (the
last 24 h, the last 7 d), each with its mode, when it began and ended, and who entered it and why.

Built from the audit trail's mode changes (``rsgo.timeline_store`` reads them): the mode at the window's
start is the one the last change before the window entered; a change inside the window starts a new
segment. The deployment's own row has the last word on the present (a failure held in memory, a change
whose entry is on its way), so the last segment always shows the mode the rest of the page shows.
Nothing here reads the database: the functions are pure, and ``tests/test_timeline.py`` tests them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rsgo.overdue import duration_text

DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(days=7)
# A segment narrower than this share of the bar (percent) is drawn with an outline of its own, so a
# Failed that lasted ten seconds in a week is still seen.
BRIEF_PERCENT = 1.0
_REASON_LIMIT = 200  # of a tooltip's reason; the history has the whole text


@dataclass(frozen=True)
class Change:
    """One mode change of a deployment, from its audit entry; ``at`` is naive UTC."""

    deployment_id: int
    at: dt.datetime
    previous_mode: str
    mode: str
    source: str
    actor: str
    reason: str = ""


@dataclass(frozen=True)
class Present:
    """The mode the deployment's row has now, since when, and who set it (naive UTC)."""

    mode: str
    since: dt.datetime
    source: str
    actor: str
    reason: str = ""
    known_from: dt.datetime | None = None  # when rsgo first saw the stack: nothing is known before


@dataclass(frozen=True)
class Segment:
    mode: str
    start: dt.datetime  # within the window
    end: dt.datetime
    entered: dt.datetime | None  # when the mode was entered (before ``start`` when that was earlier); None: unknown
    left: dt.datetime | None  # None: the mode now
    source: str | None  # None: not known (the change that entered it is older than what was read)
    actor: str | None
    reason: str
    offset: float  # percent of the window from its start
    width: float  # percent of the window

    @property
    def brief(self) -> bool:
        return self.width < BRIEF_PERCENT

    @property
    def drawn(self) -> tuple[float, float]:
        """(x, width) in percent as drawn: a brief segment at least ``BRIEF_PERCENT`` wide, inside the bar
        (a change a second ago is at the right end)."""
        width = max(self.width, BRIEF_PERCENT)
        return round(min(self.offset, 100 - width), 3), width

    @property
    def who(self) -> str:
        if self.actor is None:
            return "by whom is not recorded"
        who = f"by {self.actor}" + (f" ({self.source})" if self.source and self.source != self.actor else "")
        reason = self.reason if len(self.reason) <= _REASON_LIMIT else self.reason[:_REASON_LIMIT - 1] + "…"
        return who + (f": “{reason}”" if reason else "")

    @property
    def lasted(self) -> str:
        """How long the mode lasted (or has lasted), as far as known."""
        return duration_text(((self.left or self.end) - (self.entered or self.start)).total_seconds())


@dataclass(frozen=True)
class Timeline:
    start: dt.datetime
    end: dt.datetime  # now
    label: str  # "24 h", "7 d"
    segments: list[Segment]

    @property
    def summary(self) -> str:
        """What the bar shows, in words (its accessible name): each mode's share of the window."""
        totals: dict[str, float] = {}
        for segment in self.segments:
            totals[segment.mode] = totals.get(segment.mode, 0.0) + (segment.end - segment.start).total_seconds()
        parts = [f"{mode} {duration_text(seconds)}" for mode, seconds in totals.items()]
        return f"Modes over the last {self.label}: " + (", ".join(parts) if parts else "nothing recorded")

    @property
    def ticks(self) -> list[tuple[float, str]]:
        """(percent, label) of the marks between the ends: every day of a week, every 6 h of a day."""
        span = self.end - self.start
        step, unit, per = (DAY, "d", 1) if span >= 2 * DAY else (dt.timedelta(hours=6), "h", 6)
        count = int(span / step)
        return [(round(index / count * 100, 3), f"−{(count - index) * per} {unit}") for index in range(1, count)]

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(segment.mode for segment in self.segments))


def span_label(span: dt.timedelta) -> str:
    return f"{span.days} d" if span >= 2 * DAY else f"{int(span.total_seconds() // 3600)} h"


def build(changes: list[Change], present: Present, *, now: dt.datetime, span: dt.timedelta) -> Timeline:
    """The segments of ``[now - span, now]``. ``changes`` are one deployment's, oldest first: those in the
    window and (if any) the last one before it; older ones are ignored."""
    start = now - span
    # Nothing is known before rsgo saw the stack; without any change recorded, that is its mode's start.
    known_from = present.known_from or (None if changes else present.since)
    start_known = min(known_from, now) if known_from is not None and known_from > start else start
    before = [c for c in changes if c.at <= start_known]
    inside = [c for c in changes if start_known < c.at <= now]
    # (mode, began at, entered, source, actor, reason) of each segment, in order
    opened: list[tuple] = []
    if before:
        last = before[-1]
        opened.append((last.mode, start_known, last.at, last.source, last.actor, last.reason))
    elif inside:
        opened.append((inside[0].previous_mode, start_known, None, None, None, ""))
    else:
        opened.append((present.mode, start_known, present.since, present.source, present.actor, present.reason))
    for change in inside:
        opened.append((change.mode, change.at, change.at, change.source, change.actor, change.reason))
    last_mode, last_at = opened[-1][0], opened[-1][1]
    # The row is the truth about now: a mode the trail has no entry for (yet) opens a last segment.
    if present.mode != last_mode:
        at = min(max(present.since, last_at), now)
        opened.append((present.mode, at, present.since, present.source, present.actor, present.reason))
    total = (now - start).total_seconds() or 1.0
    segments = []
    for index, (mode, began, entered, source, actor, reason) in enumerate(opened):
        ends = opened[index + 1][1] if index + 1 < len(opened) else now
        if ends <= began and index + 1 < len(opened):
            continue  # replaced at the same instant: nothing to draw
        segments.append(Segment(
            mode=mode, start=began, end=ends, entered=entered,
            left=None if index + 1 == len(opened) else ends, source=source, actor=actor, reason=reason or "",
            offset=round((began - start).total_seconds() / total * 100, 3),
            width=round((ends - began).total_seconds() / total * 100, 3)))
    return Timeline(start=start, end=now, label=span_label(span), segments=segments)
