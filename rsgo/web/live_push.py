"""Turns domain events into HTML fragments for the open pages.

A worker thread of its own does the rendering, so a transition never waits for it;
events that arrive together are coalesced (one render per deployment). Each
fragment goes to one topic: ``dashboard``, ``deployment:<id>`` or ``history``, so a
page receives only the regions it has. Fragments are the same partial templates
the pages render, marked for an out-of-band swap by id.
"""

from __future__ import annotations

import logging
import queue
import threading

from flask import render_template

from rsgo import events
from rsgo.db import release_thread_connection
from rsgo.models import AuditEntry, Deployment
from rsgo.web import dashboard_view, page_context
from rsgo.web.api_json import audit_json

log = logging.getLogger(__name__)

# Only what changes a page wakes the renderer (hundreds of observer checks a second must not).
_PUSHED_EVENTS = events.DEPLOYMENT_PAGE_EVENTS | {events.CONTAINER_CHANGED, events.DEPLOYMENT_DISCOVERED,
                                                  events.AUDIT_RECORDED, events.ENVIRONMENT_CHANGED,
                                                  events.DEPLOYMENT_FORGOTTEN}
# An upgrade's steps change only its page's Upgrade panel (its mode changes come as mode events).
_UPGRADE_EVENTS = frozenset({events.UPGRADE_PROGRESS, events.UPGRADE_FINISHED})
_PUSHED_EVENTS |= _UPGRADE_EVENTS
_AUDIENCES = ("operate", "read")  # topics are "<region>|<audience>": an operator's page has mode buttons


class LivePush:
    def __init__(self, app, runtime):
        self._app = app
        self._hub = runtime.hub
        self._runtime = runtime
        self._events: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._last_counts: str | None = None  # the counts fragment last pushed (``_push_counts``)
        self._outbox: list[tuple[str, str]] = []  # (topic, fragment) rendered for this batch, sent at its end
        # Only what changes a page wakes the worker (hundreds of observer checks a second must not).
        self._unsubscribe = runtime.bus.subscribe(
            lambda kind, payload: self._events.put((kind, payload)) if kind in _PUSHED_EVENTS else None)
        self._thread = threading.Thread(target=self._run, name="rsgo-live-push", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._unsubscribe()
        self._stopping.set()
        self._events.put(("stop", {}))
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = [self._events.get()]
            while True:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            if self._stopping.is_set():
                break  # closing: what is left would go to pages about to lose their connection
            try:
                # A request context of its own, so templates can call url_for as they do in a page.
                with self._app.test_request_context("/"):
                    self._push(batch)
            except Exception:
                log.exception("rendering live fragments failed")
            finally:
                self._send()  # what was rendered, even if a later fragment failed
                release_thread_connection()

    def _push(self, batch: list[tuple[str, dict]]) -> None:
        deployment_ids: list[int] = []
        discovered: list[int] = []
        audit_ids: list[int] = []
        environments: list[str] = []
        upgrades: dict[int, bool] = {}  # deployment id -> an upgrade of it finished
        forgotten: list[int] = []
        for kind, payload in batch:
            if kind == events.DEPLOYMENT_FORGOTTEN:
                forgotten.append(payload["deployment_id"])
            elif kind in _UPGRADE_EVENTS:
                finished = kind == events.UPGRADE_FINISHED
                upgrades[payload["deployment_id"]] = upgrades.get(payload["deployment_id"], False) or finished
            elif kind in events.DEPLOYMENT_PAGE_EVENTS:
                if payload.get("deployment_id") is not None:
                    deployment_ids.append(payload["deployment_id"])
            elif kind == events.CONTAINER_CHANGED:
                container = payload["new"] or payload["old"]
                deployment_ids.extend(d.id for d in Deployment.select(Deployment.id).where(
                    (Deployment.environment == payload["environment"]) & (Deployment.name == container.stack)))
            elif kind == events.DEPLOYMENT_DISCOVERED:
                discovered.append(payload["deployment_id"])
            elif kind == events.AUDIT_RECORDED:
                audit_ids.append(payload["entry_id"])
            elif kind == events.ENVIRONMENT_CHANGED:
                # Its header says the new state, and every row of it says what can be known now.
                environments.append(payload["environment"])
                deployment_ids.extend(d.id for d in Deployment.select(Deployment.id).where(
                    Deployment.environment == payload["environment"]))
        for name in dict.fromkeys(environments):
            self._push_environment(name)
        for deployment_id in dict.fromkeys(forgotten):
            if deployment_id not in discovered:  # back already: its row is pushed anew just below
                self._push_forgotten(deployment_id)
        for deployment_id in dict.fromkeys(discovered):
            self._push_new_deployment(deployment_id)
        for deployment_id in dict.fromkeys(deployment_ids):
            if deployment_id not in discovered:
                self._push_deployment(deployment_id)
        for deployment_id, finished in upgrades.items():
            if finished or deployment_id not in deployment_ids:  # else its whole page went out just now
                self._push_upgrade(deployment_id, finished)
        for entry_id in audit_ids:
            self._push_audit_entry(entry_id)
        if any(kind != events.AUDIT_RECORDED and kind not in _UPGRADE_EVENTS for kind, _ in batch):
            self._push_counts()

    def _push_counts(self) -> None:
        """The counts bars' numbers, after the rows of this batch (README "The dashboard"); only when
        they changed, so a busy engine's container events do not resend the same numbers."""
        if not self._watched("dashboard"):
            self._last_counts = None  # a dashboard opened later shows newer numbers than the last pushed
            return
        fragment = dashboard_view.counts_fragment(self._runtime)
        if fragment != self._last_counts:
            self._last_counts = fragment
            self._publish("dashboard", lambda _can_operate: fragment)

    def _watched(self, topic: str) -> bool:
        """Whether an open page shows ``topic``. Rendering holds the GIL, which a mode change's own request
        thread then waits for: regions no page shows are not rendered at all."""
        return any(self._hub.has_clients(f"{topic}|{audience}") for audience in _AUDIENCES)

    def _publish(self, topic: str, render) -> None:
        """Queue ``render(can_operate)`` for the pages of operators and of viewers, each their own
        rendering (a viewer's page never receives a mode button); an audience with no open page gets none."""
        for audience in _AUDIENCES:
            if self._hub.has_clients(f"{topic}|{audience}"):
                self._outbox.append((f"{topic}|{audience}", render(audience == "operate")))

    def _send(self) -> None:
        """A batch's fragments go out together once all are rendered, one right after another, so a page's
        thread usually finds several waiting and writes them in one go (rsgo/web/ws.py) instead of waking
        for each while rendering goes on."""
        outbox, self._outbox = self._outbox, []
        for topic, fragment in outbox:
            self._hub.publish(topic, fragment)

    def _push_deployment(self, deployment_id: int) -> None:
        deployment = Deployment.get_or_none(Deployment.id == deployment_id)
        if deployment is None or deployment.forgotten_at is not None:
            return
        if self._watched("dashboard"):
            item = page_context.dashboard_item_for(deployment, self._runtime)
            self._publish("dashboard", lambda can_operate: render_template(
                "dashboard/_deployment.html", d=item, oob="true", can_operate=can_operate))
        if not self._watched(f"deployment:{deployment_id}"):
            return
        d = page_context.detail(deployment, self._runtime)
        t = page_context.latest_transition(deployment_id)
        self._publish(f"deployment:{deployment_id}", lambda can_operate: "".join(
            render_template(template, d=d, t=t, oob="true", can_operate=can_operate)
            for template in page_context.DEPLOYMENT_REGIONS.values()))

    def _push_upgrade(self, deployment_id: int, finished: bool) -> None:
        """The Upgrade panel's status; once an upgrade ended, its form too (with the images now running)."""
        if not self._watched(f"deployment:{deployment_id}"):
            return
        deployment = Deployment.get_or_none(Deployment.id == deployment_id)
        if deployment is None:
            return
        d = page_context.detail(deployment, self._runtime)
        templates = ["deployments/_upgrade_status.html"] + (["deployments/_upgrade_form.html"] if finished else [])
        self._publish(f"deployment:{deployment_id}", lambda can_operate: "".join(
            render_template(template, d=d, oob="true", can_operate=can_operate) for template in templates))

    def _push_new_deployment(self, deployment_id: int) -> None:
        if not self._watched("dashboard"):
            return
        deployment = Deployment.get_or_none(Deployment.id == deployment_id)
        if deployment is None:
            return
        item = page_context.dashboard_item_for(deployment, self._runtime)
        # Into its environment's group, before the group's end marker (a page showing another
        # environment only has no such marker, and the fragment is dropped there).
        end = f"beforebegin:#env-end-{page_context.environment_anchor(deployment.environment)}"
        self._publish("dashboard", lambda can_operate: render_template(
            "dashboard/_slot.html", d=item, oob=end, can_operate=can_operate))

    def _push_forgotten(self, deployment_id: int) -> None:
        """A forgotten stack's row leaves every dashboard (its slot: the row and its form row)."""
        if not self._watched("dashboard"):
            return
        fragment = render_template("dashboard/_forgotten_slot.html", deployment_id=deployment_id)
        self._publish("dashboard", lambda _can_operate: fragment)
        deployment = Deployment.get_or_none(Deployment.id == deployment_id)
        if deployment is not None:
            self._push_environment(deployment.environment)  # its count of stacks

    def _push_environment(self, name: str) -> None:
        if not self._watched("dashboard"):
            return
        group = page_context.environment_group(self._runtime, name)
        if group is not None:
            self._publish("dashboard", lambda _can_operate: render_template(
                "dashboard/_environment.html", group=group, oob="true"))

    def _push_audit_entry(self, entry_id: int) -> None:
        entry = AuditEntry.get_or_none(AuditEntry.id == entry_id)
        if entry is None:
            return
        entries = [audit_json(entry)]
        if self._watched(f"deployment:{entry.deployment_id}"):
            deployment_rows = render_template("history/_pushed_rows.html", entries=entries,
                                              rows_id=page_context.history_rows_id(entry.deployment_id))
            self._publish(f"deployment:{entry.deployment_id}", lambda _can_operate: deployment_rows)
        if self._watched("history"):
            all_rows = render_template("history/_pushed_rows.html", entries=entries,
                                       rows_id=page_context.history_rows_id(None), show_deployment=True)
            self._publish("history", lambda _can_operate: all_rows)
