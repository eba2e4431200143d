"""Scheduled maintenance windows (docs/design.md#windows): one-time and recurring, evaluated level-triggered.

Every few seconds (and at start) ``evaluate(now)`` looks at each deployment's windows:
inside one (overlapping windows count as one) a Normal deployment enters Maintenance with
trigger ``schedule``; outside all of them, Maintenance that the schedule started ends. A
window that ended while rsgo was down is simply not active any more: nothing happens. A
person who ends a schedule's Maintenance keeps it ended until the windows around now are over.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from rsgo import deployment_queries, events
from rsgo.cron import Cron, CronError
from rsgo.db import write_transaction
from rsgo.events import EventBus
from rsgo.mode_change import ModeChange, ModeChangeRefused
from rsgo.models import Deployment, MaintenanceWindow, ScheduleSuppression
from rsgo.modes import Mode
from rsgo.settings import parse_duration
from rsgo.transitions import TransitionService

log = logging.getLogger(__name__)

UTC = dt.UTC
PREVIEW_COUNT = 5


class WindowError(ValueError):
    """A window definition that cannot work; the message names the field."""


@dataclass(frozen=True)
class WindowSpec:
    name: str
    reason: str
    starts_at: dt.datetime | None = None  # aware
    ends_at: dt.datetime | None = None
    cron: str | None = None
    timezone: str = "UTC"
    duration: float | None = None  # seconds


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def parse_window(document: dict, *, default_name: str) -> WindowSpec:
    """From the config file or the API: ``start``/``end`` (ISO 8601 with an offset), or ``cron`` +
    ``duration`` + ``timezone``, or just ``duration`` (ad hoc: from now). Raises WindowError."""
    allowed = {"name", "reason", "start", "end", "cron", "duration", "timezone"}
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise WindowError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    name = document.get("name") or default_name
    reason = document.get("reason") or ""
    if not isinstance(name, str) or not isinstance(reason, str):
        raise WindowError("name and reason must be strings")
    duration = None
    if "duration" in document:
        try:
            duration = parse_duration(str(document["duration"]))
        except ValueError as error:
            raise WindowError(f"duration: {error}") from None
        if duration <= 0:
            raise WindowError("duration: must be longer than zero")
    if "cron" in document:
        if "start" in document or "end" in document:
            raise WindowError("cron: a window is either recurring (cron) or one-time (start, end), not both")
        if duration is None:
            raise WindowError("duration: required with cron (e.g. 45m)")
        timezone = document.get("timezone") or "UTC"
        try:
            Cron.parse(str(document["cron"]), str(timezone))
        except CronError as error:
            raise WindowError(f"cron: {error}") from None
        return WindowSpec(name, reason, cron=str(document["cron"]), timezone=str(timezone), duration=duration)
    if "timezone" in document:
        raise WindowError("timezone: only for recurring windows (one-time ones carry their offset)")
    if "start" in document:
        starts_at = _instant(document["start"], "start")
        if "end" in document:
            ends_at = _instant(document["end"], "end")
        elif duration is not None:
            ends_at = starts_at + dt.timedelta(seconds=duration)
        else:
            raise WindowError("end: required (or give a duration)")
        if ends_at <= starts_at:
            raise WindowError("end: must be after start")
        return WindowSpec(name, reason, starts_at=starts_at, ends_at=ends_at)
    if "end" in document:
        raise WindowError("start: required with end")
    if duration is None:
        raise WindowError("give start and end, cron with duration, or a duration (maintenance from now)")
    return WindowSpec(name, reason, duration=duration)  # ad hoc: the caller anchors it at now


def _instant(value, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(f"{field}: {value!r} is not an ISO 8601 time (2026-12-24T22:00:00+01:00)") from None
    if parsed.tzinfo is None:
        raise WindowError(f"{field}: give an offset (…+01:00 or Z), so the time is not ambiguous")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class WindowView:
    """A window as the API and the pages show it (``rsgo.web.api_json.window_json`` builds the shape)."""

    window: MaintenanceWindow
    active: bool
    upcoming: list  # (start, end) aware datetimes in the window's own zone


class WindowService:
    def __init__(self, transitions: TransitionService, bus: EventBus, clock=lambda: dt.datetime.now(UTC)):
        self._transitions = transitions
        self._bus = bus
        self.clock = clock
        # One evaluation at a time: a window added through the API is evaluated at once while the periodic
        # check may be evaluating too, and the loser's attempt would be recorded as a refused change.
        self._evaluating = threading.Lock()
        # deployment id -> (target, code) of the check's last refused request, already in the history: asked
        # again every few seconds, the same refusal is not recorded again until the check asks something else.
        self._refused: dict[int, tuple[Mode, str]] = {}

    # -- definitions -----------------------------------------------------------------------

    def sync_config(self, deployment: Deployment, specs: list[WindowSpec]) -> None:
        """The config file's windows replace the deployment's earlier config windows."""
        with write_transaction():
            MaintenanceWindow.delete().where((MaintenanceWindow.deployment == deployment.id)
                                             & (MaintenanceWindow.origin == "config")).execute()
            for spec in specs:
                self._store(deployment, spec, origin="config", created_by="config")

    def add(self, deployment: Deployment, spec: WindowSpec, *, origin: str, created_by: str) -> MaintenanceWindow:
        if spec.cron is None and spec.starts_at is None:  # ad hoc: "maintenance for N hours" from now
            now = self.clock()
            spec = WindowSpec(spec.name, spec.reason, starts_at=now,
                              ends_at=now + dt.timedelta(seconds=spec.duration))
        window = self._store(deployment, spec, origin=origin, created_by=created_by)
        self._bus.publish(events.WINDOWS_CHANGED, deployment_id=deployment.id)
        return window

    def _store(self, deployment, spec: WindowSpec, *, origin: str, created_by: str) -> MaintenanceWindow:
        return MaintenanceWindow.create(
            deployment=deployment, name=spec.name, reason=spec.reason, origin=origin, created_by=created_by,
            starts_at=_naive_utc(spec.starts_at) if spec.starts_at else None,
            ends_at=_naive_utc(spec.ends_at) if spec.ends_at else None,
            cron=spec.cron, timezone=spec.timezone,
            duration_seconds=int(spec.duration) if spec.duration and spec.cron else None)

    def remove(self, window: MaintenanceWindow, *, actor: str, source: str, reason: str = "",
               wait: bool = True, address: str | None = None) -> ModeChange | None:
        """Delete a window. One that alone holds its stack's Maintenance ends it now: the change to Normal
        is the remover's (``actor``, ``source``, ``reason``), not the schedule's. Refused (nothing removed)
        if that change is refused; returns it, or None when the window held nothing."""
        deployment = Deployment.get_by_id(window.deployment_id)
        change = None
        if self.removal_ends_maintenance(window):
            # Asked while the window still exists: a refusal leaves it in place, and the periodic check
            # cannot end the Maintenance in between, credited to the schedule.
            change = self._transitions.change_mode(
                deployment.id, Mode.NORMAL.value, source=source, actor=actor,
                reason=reason or f"removed maintenance window {window.name}", wait=wait, address=address)
            # That person ended this Maintenance by removing its window, not by overriding it: a later
            # window (one added now, one that starts before this one would have ended) acts as usual.
            ScheduleSuppression.delete().where(ScheduleSuppression.deployment == deployment.id).execute()
        window.delete_instance()
        self._bus.publish(events.WINDOWS_CHANGED, deployment_id=window.deployment_id)
        return change

    def removal_ends_maintenance(self, window: MaintenanceWindow) -> bool:
        """Is the stack in Maintenance because of this window alone (active now, no other window active)?"""
        deployment = Deployment.get_by_id(window.deployment_id)
        if deployment.mode != Mode.MAINTENANCE.value or deployment.trigger_source != "schedule":
            return False
        now = self.clock()
        others = MaintenanceWindow.select().where((MaintenanceWindow.deployment == deployment.id)
                                                  & (MaintenanceWindow.id != window.id))
        return self.span_at(window, now) is not None and not any(self.span_at(w, now) for w in others)

    # -- time ------------------------------------------------------------------------------

    @staticmethod
    def span_at(window: MaintenanceWindow, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """The (start, end) of the window's occurrence that contains ``now``, if any."""
        if window.cron is None:
            start, end = _aware(window.starts_at), _aware(window.ends_at)
            return (start, end) if start <= now < end else None
        cron = Cron.parse(window.cron, window.timezone)
        length = dt.timedelta(seconds=window.duration_seconds)
        start = cron.last_occurrence_at_or_before(now, length)
        return (start, start + length) if start is not None and now < start + length else None

    @staticmethod
    def upcoming(window: MaintenanceWindow, now: dt.datetime, count: int = PREVIEW_COUNT) -> list[tuple]:
        """The next ``count`` occurrences (start, end) that have not ended, in the window's own zone."""
        if window.cron is None:
            end = _aware(window.ends_at)
            return [(_aware(window.starts_at), end)] if end > now else []
        cron = Cron.parse(window.cron, window.timezone)
        length = dt.timedelta(seconds=window.duration_seconds)
        current = WindowService.span_at(window, now)
        starts = cron.occurrences_after(now, count)
        spans = ([current] if current else []) + [(s, s + length) for s in starts]
        return [(s.astimezone(cron.zone), e.astimezone(cron.zone)) for s, e in spans[:count]]

    def active_until(self, deployment_id: int, now: dt.datetime) -> tuple[dt.datetime, MaintenanceWindow] | None:
        """If ``now`` is inside the deployment's windows: when they are all over (overlaps merge), and one of them."""
        windows = list(MaintenanceWindow.select().where(MaintenanceWindow.deployment == deployment_id))
        spans = [(span, w) for w in windows if (span := self.span_at(w, now))]
        if not spans:
            return None
        end = max(span[1] for span, _ in spans)
        for _ in range(10):  # a window that starts before the others end keeps the maintenance going
            extended = end
            for window in windows:
                span = self.span_at(window, end - dt.timedelta(microseconds=1))
                for candidate in ([span] if span else []) + self.upcoming(window, now, 3):
                    if candidate[0] <= end < candidate[1]:
                        extended = max(extended, candidate[1])
            if extended == end:
                break
            end = extended
        return end.astimezone(UTC), spans[0][1]

    # -- acting ----------------------------------------------------------------------------

    def evaluate(self, now: dt.datetime | None = None) -> None:
        with self._evaluating:
            self._evaluate_all(now or self.clock())

    def _evaluate_all(self, now: dt.datetime) -> None:
        deployment_ids = {w.deployment_id for w in MaintenanceWindow.select(MaintenanceWindow.deployment)}
        deployment_ids |= {d.id for d in Deployment.select(Deployment.id).where(
            (Deployment.mode == Mode.MAINTENANCE.value) & (Deployment.trigger_source == "schedule")
            & Deployment.forgotten_at.is_null())}  # a forgotten stack's windows went with it
        for deployment_id in sorted(deployment_ids):
            try:
                self._evaluate_one(deployment_id, now)
            except Exception:
                log.exception("evaluating the windows of deployment %s failed", deployment_id)

    def _evaluate_one(self, deployment_id: int, now: dt.datetime) -> None:
        deployment = Deployment.get_by_id(deployment_id)
        active = self.active_until(deployment_id, now)
        suppression = ScheduleSuppression.get_or_none(ScheduleSuppression.deployment == deployment_id)
        if suppression is not None and _aware(suppression.until) <= now:
            suppression.delete_instance()
            suppression = None
        mode = Mode(deployment.mode)
        if active is not None and mode is Mode.NORMAL and suppression is None:
            end, window = active
            self._change(deployment, Mode.MAINTENANCE, window,
                         window.reason or f"maintenance window {window.name} until {end.isoformat()}")
        elif active is None and mode is Mode.MAINTENANCE and deployment.trigger_source == "schedule":
            actor = deployment.trigger_actor.removeprefix("schedule:")
            self._change(deployment, Mode.NORMAL, None, f"maintenance window {actor} ended")
        else:
            self._refused.pop(deployment_id, None)  # nothing to ask: a later refusal is news again

    def _change(self, deployment, target: Mode, window, reason: str) -> None:
        """Ask for ``target``, unless asking would only be a retry: the check runs every few seconds,
        and each refused request would otherwise add a red "rejected" entry to the history."""
        running = deployment_queries.running_transition(deployment.id)
        if running is not None and running.target_mode == target.value:
            return  # a transition already goes there (a person's, or the remover's): nothing to ask
        if (running is None and self._transitions.lock_for(deployment.id).locked()
                and self._transitions.upgrade_in_progress(deployment.id) is None):
            return  # a change is being prepared (or the stack enforced): the next check sees which
        actor = f"schedule:{window.name}" if window else deployment.trigger_actor
        previous = self._refused.get(deployment.id)
        recorded = previous[1] if previous is not None and previous[0] is target else None
        try:
            self._transitions.change_mode(deployment.id, target.value, source="schedule", actor=actor, reason=reason,
                                          recorded_refusal=recorded)
        except ModeChangeRefused as refusal:
            if refusal.code != recorded:
                log.info("schedule could not change %s to %s: %s (asking again at each window check)",
                         deployment.name, target.value, refusal)
            self._refused[deployment.id] = (target, refusal.code)
        else:
            self._refused.pop(deployment.id, None)

    def suppress_current(self, deployment: Deployment) -> None:
        """A person ended the schedule's Maintenance: the windows around now must not re-enter it."""
        now = self.clock()
        active = self.active_until(deployment.id, now)
        if active is None:
            return
        ScheduleSuppression.insert(deployment=deployment.id, until=_naive_utc(active[0])).on_conflict(
            conflict_target=[ScheduleSuppression.deployment], update={ScheduleSuppression.until: _naive_utc(active[0])}
        ).execute()

    def listing(self, deployment_id: int, now: dt.datetime | None = None) -> list[WindowView]:
        """The deployment's windows, each with whether it is active now and its next occurrences."""
        now = now or self.clock()
        return [WindowView(window, self.span_at(window, now) is not None, list(self.upcoming(window, now)))
                for window in MaintenanceWindow.select().where(MaintenanceWindow.deployment == deployment_id)
                .order_by(MaintenanceWindow.id)]

    def active_count(self, now: dt.datetime | None = None) -> int:
        now = now or self.clock()
        return sum(1 for w in MaintenanceWindow.select() if self.span_at(w, now))
