"""Each deployment's list summary and dashboard row, kept in memory between the events that change them
(README "The dashboard", docs/design.md#the-dashboard-cache): ``GET /`` and ``GET /api/deployments`` with
300 stacks read one small query and render nothing for a stack that did not change.

An entry is built from the deployment's own snapshot (its row, stopped set, running transition, the
in-memory view of its containers, observer, windows and overdue stay) and is used while two things hold:

- no event about the deployment came since its build began. Every event that carries a deployment id
  marks that deployment (the ones the live push renders a row for, and the audit entries its timeline
  is drawn from); a container's event marks its stack's name in its environment (so the containers of
  other stacks on the engine never touch this one's entry); an event about everything (an environment
  became unreachable, the config was reloaded) marks every one. The mark is counted before
  the build reads anything, and events are published after what they announce is visible, so an entry
  never holds what an event has since changed.
- it is younger than ``LIFETIME``: what changes with time alone (the 24 h timeline slides, "in
  Maintenance for 2 h 14 min") is at most that old; static/time.js keeps the durations current anyway.

The list itself (which deployments, in which order) is read again after a stack was discovered or
forgotten, after an event about everything, and every half ``LIFETIME``. Not reading 300 rows on every
request matters beyond their cost: SQLite lets go of the interpreter for every row it steps to, and
with other threads busy each row then waits for its turn.

What changes on every observer check without changing what the row shows (the observer's last value
and check time) and how long an overdue stay has lasted are read afresh for the API on each request.
"""

from __future__ import annotations

import random
import threading
import time
from collections import namedtuple
from dataclasses import dataclass, field

from flask import render_template
from markupsafe import Markup

from rsgo import deployment_queries, events
from rsgo.db import read_snapshot, utcnow
from rsgo.models import Deployment
from rsgo.web import page_context, time_context
from rsgo.web.api_json import deployment_summary, observer_json

LIFETIME = 60.0  # seconds; each entry lives between half of it and all of it, so they expire spread out

# Events that change nothing a summary or a row shows: every observer check (its status changes come as
# observer.checked) and webhook deliveries.
_UNSEEN = frozenset({events.OBSERVER_CHECK_FINISHED, events.WEBHOOK_DELIVERY_FINISHED})

Listed = namedtuple("Listed", "id name environment")  # what ``keep`` and the environments' counts read
_LIST_EVENTS = frozenset({events.DEPLOYMENT_DISCOVERED, events.DEPLOYMENT_FORGOTTEN})


@dataclass
class _Entry:
    stamp: tuple[int, int, int]  # (everything's marks, the deployment's, its stack name's) when the build began
    expires: float  # time.monotonic()
    summary: dict  # the API's summary as built (never changed afterwards)
    running: object  # its running transition (a Transition), for the dashboard's progress line
    overdue: object  # rsgo.overdue.Overdue or None
    item: dict | None = None  # the dashboard row's context, made on first use
    encoded: str | None = None  # the summary as JSON text, made on first use (when nothing is read afresh)
    slots: dict[bool, Markup] = field(default_factory=dict)  # can_operate -> the rendered dashboard slot


class DeploymentCache:
    def __init__(self, bus, lifetime: float = LIFETIME):
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._everything = 0  # marks of events about every deployment
        self._marks: dict[int, int] = {}  # deployment id -> marks of events about it
        self._name_marks: dict[tuple[str, str], int] = {}  # (environment, stack name) -> marks of its containers
        self._entries: dict[int, _Entry] = {}
        self._list_marks = 0  # stacks discovered and forgotten
        self._list: tuple[tuple[int, int], float, list[Listed]] | None = None  # (marks, expires, rows)
        self.builds = 0  # entries built (tests, and to see the cache at work)
        bus.subscribe(self._on_event)

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind in _UNSEEN:
            return
        with self._lock:
            if kind == events.CONTAINER_CHANGED:
                unit = payload["new"] or payload["old"]
                key = (payload["environment"], unit.stack)
                self._name_marks[key] = self._name_marks.get(key, 0) + 1
            elif payload.get("deployment_id") is not None:
                self._marks[payload["deployment_id"]] = self._marks.get(payload["deployment_id"], 0) + 1
                if kind in _LIST_EVENTS:
                    self._list_marks += 1
            else:  # about everything (an environment, every window after a reload)
                self._everything += 1

    # -- reading ---------------------------------------------------------------------------------

    def listed(self) -> list[Listed]:
        """Every deployment that is not forgotten, by name and environment."""
        now = time.monotonic()
        with self._lock:
            marks, kept = (self._everything, self._list_marks), self._list
        if kept is not None and kept[0] == marks and kept[1] > now:
            return kept[2]
        rows = [Listed(*values) for values in Deployment.select(Deployment.id, Deployment.name, Deployment.environment)
                .where(Deployment.forgotten_at.is_null()).order_by(Deployment.name, Deployment.environment).tuples()]
        with self._lock:
            self._list = (marks, now + self._lifetime / 2, rows)
        return rows

    def _entries_for(self, runtime, keep) -> list[_Entry]:
        """The entries of the listed deployments that ``keep`` keeps, in the list's order, stale ones rebuilt."""
        rows = self.listed()
        now = time.monotonic()
        listed = {row.id for row in rows}
        with self._lock:
            stamps = {row.id: (self._everything, self._marks.get(row.id, 0),
                               self._name_marks.get((row.environment, row.name), 0)) for row in rows}
            entries = dict(self._entries)
        rows = [row for row in rows if keep(row)]
        stale = [row.id for row in rows if not self._usable(entries.get(row.id), stamps[row.id], now)]
        if stale:
            entries.update(self._build(runtime, stale, stamps, listed))
        return [entries[row.id] for row in rows if row.id in entries]

    @staticmethod
    def _usable(entry: _Entry | None, stamp: tuple[int, int, int], now: float) -> bool:
        return entry is not None and entry.stamp == stamp and entry.expires > now

    def _build(self, runtime, ids: list[int], stamps: dict[int, tuple[int, int, int]],
               listed: set[int]) -> dict[int, _Entry]:
        built = {}
        with read_snapshot():
            stopped_sets = deployment_queries.stopped_sets_by_deployment()
            running = deployment_queries.running_transitions()
            for deployment in Deployment.select().where(Deployment.id.in_(ids)):
                shown = runtime.transitions.shown(deployment)
                built[deployment.id] = _Entry(
                    stamp=stamps[deployment.id], summary=deployment_summary(
                        runtime, shown, stopped_sets.get(deployment.id, set()), running.get(deployment.id)),
                    running=running.get(deployment.id), overdue=runtime.overdue.status(shown),
                    expires=time.monotonic() + self._lifetime * (0.5 + random.random() / 2))
        with self._lock:
            for deployment_id, entry in built.items():
                self._entries[deployment_id] = entry
            self.builds += len(built)
            # Forgotten and vanished deployments leave with the next list that no longer has them.
            for deployment_id in set(self._entries) - listed:
                del self._entries[deployment_id]
        return built

    def summaries(self, runtime, keep=lambda deployment: True) -> list[dict]:
        """``GET /api/deployments``: every summary, its observer and overdue duration as of now."""
        return [summary for _entry, summary, _fresh in self._current_summaries(runtime, keep)]

    def summaries_encoded(self, runtime, encode, keep=lambda deployment: True) -> list[str]:
        """The same as JSON texts: a summary with nothing read afresh is encoded once per build, not per
        request (encoding 300 summaries was most of what ``GET /api/deployments`` cost)."""
        texts = []
        for entry, summary, fresh in self._current_summaries(runtime, keep):
            if fresh:
                texts.append(encode(summary))
            else:
                if entry.encoded is None:
                    entry.encoded = encode(summary)
                texts.append(entry.encoded)
        return texts

    def _current_summaries(self, runtime, keep):
        """(entry, summary, whether anything in it was read afresh) for each listed deployment."""
        now = utcnow()
        for entry in self._entries_for(runtime, keep):
            summary = entry.summary
            observer = runtime.observers.status(summary["id"]) if summary["observer"] is not None else None
            if observer is not None or entry.overdue is not None:
                summary = dict(summary)
                if observer is not None:
                    summary["observer"] = observer_json(observer)
                if entry.overdue is not None:
                    summary["overdue"] = {**summary["overdue"], "for": entry.overdue.seconds(now)}
                yield entry, summary, True
            else:
                yield entry, summary, False

    def items(self, runtime, keep=lambda deployment: True) -> list[dict]:
        """The dashboard's rows (``page_context.dashboard_item`` plus the timeline and stay line); treat
        them as read-only: they are shared by every request until their deployment changes."""
        entries = self._entries_for(runtime, keep)
        missing = [entry for entry in entries if entry.item is None]
        if missing:
            changes = runtime.timelines.changes()
            now = utcnow()
            for entry in missing:
                item = page_context.dashboard_item(dict(entry.summary), entry.running)
                entry.item = time_context.add_to_row(item, runtime, changes.get(item["id"], []), now)
        return [entry.item for entry in entries]

    def slot(self, item: dict, can_operate: bool) -> Markup:
        """A dashboard row's slot (templates/dashboard/_slot.html), rendered once per audience."""
        entry = self._entries.get(item["id"])
        if entry is None or entry.item is not item:  # not one of the cached rows: render it as it is
            return Markup(render_template("dashboard/_slot.html", d=item, can_operate=can_operate, oob=None))
        html = entry.slots.get(can_operate)
        if html is None:
            html = entry.slots[can_operate] = Markup(
                render_template("dashboard/_slot.html", d=item, can_operate=can_operate, oob=None))
        return html



def cache_of(runtime) -> DeploymentCache | None:
    """The runtime's cache; None for a runtime built without the web app (then everything is read afresh)."""
    return getattr(runtime, "deployment_cache", None)
