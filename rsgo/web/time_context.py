"""Time as the pages show it (README "The dashboard", Timelines and times): a row's and a deployment
page's mode timelines, the "in Maintenance for … · ends … · by …" line, and the template filters
behind the ``when`` macro (templates/shared/_macros.html), the one way every time is rendered.

The server writes every time as UTC (``<time datetime>`` plus an absolute fallback text); static/time.js
shows it in the browser's time zone with a relative part, and UTC on hover.
"""

from __future__ import annotations

import datetime as dt

from rsgo import timeline, timeline_store
from rsgo.db import timestamp, utcnow
from rsgo.models import Deployment
from rsgo.modes import Mode
from rsgo.overdue import duration_text

STAY_MODES = (Mode.MAINTENANCE.value, Mode.STOPPED.value)


def naive_utc(value: str | dt.datetime | None) -> dt.datetime | None:
    """An instant from the API's text (``…Z`` or any offset) or a datetime (naive is UTC), as naive UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def iso_utc(value) -> str:
    """The ``datetime`` attribute of a ``<time>``: the API's one format (UTC, milliseconds, ``Z``)."""
    return timestamp(naive_utc(value)) or ""


def utc_text(value) -> str:
    """The fallback text of a ``<time>`` before static/time.js runs: ``2026-12-02 14:02 UTC``."""
    instant = naive_utc(value)
    return "" if instant is None else instant.strftime("%Y-%m-%d %H:%M UTC")


def present_of(summary: dict, known_from: dt.datetime | None = None) -> timeline.Present:
    """``known_from``: when rsgo first saw the stack (``discoveredAt``); a timeline shows nothing before it."""
    trigger = summary["trigger"]
    known_from = known_from or naive_utc(summary.get("discoveredAt"))
    return timeline.Present(mode=summary["operationMode"], since=naive_utc(trigger["at"]) or utcnow(),
                            source=trigger["source"], actor=trigger["actor"], reason=trigger["reason"] or "",
                            known_from=known_from)


def stay(summary: dict, runtime, now: dt.datetime) -> dict | None:
    """A stay in Maintenance or Stopped: since when, who began it, and its end when a window (or a
    ``--for`` duration, which is an ad-hoc window) gives one: only the schedule's Maintenance ends by itself."""
    if summary["operationMode"] not in STAY_MODES:
        return None
    trigger = summary["trigger"]
    since = naive_utc(trigger["at"]) or now
    ends = None
    if summary["operationMode"] == Mode.MAINTENANCE.value and trigger["source"] == "schedule":
        active = runtime.windows.active_until(summary["id"], now.replace(tzinfo=dt.UTC))
        ends = None if active is None else timestamp(active[0])
    return {"mode": summary["operationMode"], "since": trigger["at"], "by": trigger["actor"],
            "lasted": duration_text((now - since).total_seconds()), "endsAt": ends}


def discovered_at(deployment_ids: list[int] | None = None) -> dict[int, dt.datetime]:
    """When rsgo first saw each stack (one query for all): a timeline shows nothing before it."""
    query = Deployment.select(Deployment.id, Deployment.discovered_at)
    if deployment_ids is not None:
        query = query.where(Deployment.id.in_(deployment_ids))
    return {row.id: row.discovered_at for row in query}


def add_to_row(summary: dict, runtime, changes: list[timeline.Change] | None = None,
               now: dt.datetime | None = None, known_from: dt.datetime | None = None) -> dict:
    """A dashboard row's timeline of the last 24 h and its stay line. ``changes`` are the deployment's
    (from ``RecentModeChanges``); None reads them (one deployment: a push, an HTMX answer)."""
    now = now or utcnow()
    if changes is None:
        changes = timeline_store.read_changes(now - timeline.DAY, [summary["id"]]).get(summary["id"], [])
    if known_from is None:
        known_from = discovered_at([summary["id"]]).get(summary["id"])
    summary["timeline"] = timeline.build(changes, present_of(summary, known_from), now=now, span=timeline.DAY)
    summary["stay"] = stay(summary, runtime, now)
    return summary


def add_to_rows(items: list[dict], runtime) -> list[dict]:
    """Every row's timeline from the changes kept in memory: no query per row (nor, mostly, at all)."""
    now = utcnow()
    store = getattr(runtime, "timelines", None)
    changes = store.changes() if store is not None else timeline_store.read_changes(now - timeline.DAY)
    seen = discovered_at()
    for item in items:
        add_to_row(item, runtime, changes.get(item["id"], []), now, known_from=seen.get(item["id"]))
    return items


def add_to_detail(body: dict, runtime) -> dict:
    """A deployment page's timelines of the last 24 h and 7 d, and its stay line."""
    now = utcnow()
    changes = timeline_store.read_changes(now - timeline.WEEK, [body["id"]]).get(body["id"], [])
    # A stack seen an hour ago has no week of Normal behind it: the bars start where rsgo began to watch.
    present = present_of(body, known_from=discovered_at([body["id"]]).get(body["id"]))
    body["timelines"] = [timeline.build(changes, present, now=now, span=span)
                         for span in (timeline.DAY, timeline.WEEK)]
    body["stay"] = stay(body, runtime, now)
    return body
