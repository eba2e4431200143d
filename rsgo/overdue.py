"""Forgotten maintenance (README "Modes", docs/design.md#modes-and-ownership): stacks that have stayed in
Maintenance or Stopped longer than their reminder are overdue, and are announced once per stay and
again every repeat period.

A *stay* begins when the deployment enters Maintenance or Stopped (its ``mode_changed_at``) and ends
with its next change of mode (Maintenance → Stopped begins another stay: someone decided again). A
person's or a script's stay counts from its start. An observer's or a window's Maintenance is never
overdue while its source holds it (the observer still reads "maintenance", a window is active): it
has its own end. Once the source lets go and the stack stays anyway (the observer was removed from
the config, or its change back was refused), the stay is nobody's and the reminder counts from the
moment the check first saw that; a source that holds it again starts the count afresh. Stacks of an
environment removed from the config are history (rsgo no longer acts on them) and never overdue.

One scheduler job (``run_scheduled``) decides, and it alone writes ``MaintenanceReminder``: one row per
stay it tracks, with when the count started and the reminders announced. A restart therefore neither
announces a stay again nor forgets when its next reminder is due. Pages, the API and the metrics read
what the last check found (``status``), so all of them agree with the webhooks.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from rsgo import deployment_queries, events
from rsgo.db import release_thread_connection, utcnow
from rsgo.events import EventBus
from rsgo.models import Deployment, MaintenanceReminder
from rsgo.modes import Mode

log = logging.getLogger(__name__)

STAY_MODES = (Mode.MAINTENANCE.value, Mode.STOPPED.value)


@dataclass(frozen=True)
class Overdue:
    """An overdue stay: its mode, when it began and who began it (``rsgo.web.api_json`` builds its shape)."""

    deployment_id: int
    mode: str
    since: dt.datetime  # naive UTC, the deployment's mode_changed_at
    by: str

    def seconds(self, now: dt.datetime | None = None) -> int:
        return max(0, int(((now or utcnow()) - self.since).total_seconds()))


def duration_text(seconds: float) -> str:
    """``6 h 12 min``, ``12 min``, ``40 s``: how long a stay has lasted, as people read it."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


class OverdueService:
    def __init__(self, bus: EventBus, settings, *, holds_maintenance: Callable[[Deployment], bool],
                 window_active: Callable[[int], bool], clock: Callable[[], dt.datetime] = utcnow):
        self._bus = bus
        self.default_reminder = settings.maintenance_reminder  # seconds; 0: off
        self.repeat = settings.maintenance_reminder_repeat  # seconds; 0: once; None: the stack's reminder
        self._holds_maintenance = holds_maintenance  # the observer still reads maintenance
        self._window_active = window_active  # a window of the deployment is active now
        self.clock = clock
        self._stack_reminders: dict[tuple[str, str], float] = {}  # (environment, name) -> maintenanceReminder
        self._single_environment = settings.environment  # when the config declares no environments
        self._environments: set[str] = {settings.environment}  # a removed one's stacks are history, never overdue
        self._overdue: dict[int, Overdue] = {}  # what the last check found, by deployment id

    def apply(self, config) -> None:
        """The ``maintenanceReminder:`` of each stack of a (re)loaded config, and its environments; the next
        check uses them."""
        declared = config.environments
        self._environments = set(declared) if declared is not None else {self._single_environment}
        self._stack_reminders = {(stack.environment, stack.name): stack.maintenance_reminder
                                 for stack in config.stacks.values() if stack.maintenance_reminder is not None}

    def reminder_for(self, deployment: Deployment) -> float:
        return self._stack_reminders.get((deployment.environment, deployment.name), self.default_reminder)

    def status(self, deployment: Deployment) -> Overdue | None:
        """The deployment's overdue stay as the last check found it, if it is still the same stay."""
        found = self._overdue.get(deployment.id)
        if found is None or found.mode != deployment.mode or found.since != deployment.mode_changed_at:
            return None
        return found

    # -- the check ---------------------------------------------------------------------------

    def run_scheduled(self) -> None:
        try:
            self.check()
        except Exception:
            log.exception("the check for overdue maintenance failed")
        finally:
            release_thread_connection()

    def check(self) -> None:
        now = self.clock()
        rows = {row.deployment_id: row for row in MaintenanceReminder.select()}
        busy = deployment_queries.running_transitions()
        found: dict[int, Overdue] = {}
        announce: list[tuple[Overdue, int]] = []
        stays = Deployment.mode.in_(STAY_MODES) & Deployment.forgotten_at.is_null()  # forgotten: nobody to remind
        for deployment in Deployment.select().where(stays):
            row = rows.pop(deployment.id, None)
            try:
                overdue, reminder = self._check_one(deployment, row, deployment.id in busy, now)
            except Exception:
                log.exception("checking whether %s is overdue failed", deployment.name)
                overdue, reminder = self._overdue.get(deployment.id), 0
            if overdue is not None:
                found[deployment.id] = overdue
                if reminder:
                    announce.append((overdue, reminder))
        if rows:  # stays that ended: the next stay of those deployments starts afresh
            MaintenanceReminder.delete().where(MaintenanceReminder.id.in_([r.id for r in rows.values()])).execute()
        ended = set(self._overdue) - set(found)
        self._overdue = found  # before announcing: a push renders what status() says
        for deployment_id in sorted(ended):
            self._bus.publish(events.MAINTENANCE_OVERDUE_ENDED, deployment_id=deployment_id)
        for overdue, reminder in announce:
            seconds = overdue.seconds(now)
            log.warning("deployment %s: in %s for %s, since %s by %s: overdue (reminder %d)", overdue.deployment_id,
                        overdue.mode, duration_text(seconds), overdue.since.isoformat(timespec="seconds"),
                        overdue.by, reminder)
            self._bus.publish(events.MAINTENANCE_OVERDUE, deployment_id=overdue.deployment_id, mode=overdue.mode,
                              since=overdue.since, seconds=seconds, by=overdue.by, reminder=reminder)

    def _held(self, deployment: Deployment) -> bool:
        """Does the observer or window that began this Maintenance still hold it?"""
        if deployment.mode != Mode.MAINTENANCE.value:
            return False
        if deployment.trigger_source == "observer":
            return self._holds_maintenance(deployment)
        if deployment.trigger_source == "schedule":
            return self._window_active(deployment.id)
        return False

    def _check_one(self, deployment: Deployment, row: MaintenanceReminder | None, busy: bool,
                   now: dt.datetime) -> tuple[Overdue | None, int]:
        """Is this stay overdue, and which reminder (1, 2, ...) is due now (0: none)."""
        reminder = self.reminder_for(deployment)
        if reminder <= 0 or deployment.environment not in self._environments or self._held(deployment):
            if row is not None:
                row.delete_instance()  # a source holding it again, or the reminder turned off: counted afresh
            return None, 0
        if row is not None and row.since != deployment.mode_changed_at:
            row.delete_instance()  # an earlier stay's
            row = None
        if row is None:
            if deployment.trigger_source not in ("observer", "schedule"):
                clock_from = deployment.mode_changed_at
            else:  # its source let go: counted from now, and remembered across a restart
                clock_from = now
                row = MaintenanceReminder.create(deployment=deployment.id, since=deployment.mode_changed_at,
                                                 clock_from=clock_from)
        else:
            clock_from = row.clock_from
        if (now - clock_from).total_seconds() < reminder:
            return None, 0
        overdue = Overdue(deployment.id, deployment.mode, deployment.mode_changed_at, deployment.trigger_actor)
        sent = row.reminders if row is not None else 0
        repeat = reminder if self.repeat is None else self.repeat
        due = sent == 0 or (repeat > 0 and (now - row.reminded_at).total_seconds() >= repeat)
        if not due or busy:  # a stack being changed is announced after the change, if it still stays
            return overdue, 0
        if row is None:
            MaintenanceReminder.create(deployment=deployment.id, since=deployment.mode_changed_at,
                                       clock_from=clock_from, reminders=1, reminded_at=now)
        else:
            (MaintenanceReminder.update(reminders=sent + 1, reminded_at=now)
             .where(MaintenanceReminder.id == row.id).execute())
        return overdue, sent + 1
