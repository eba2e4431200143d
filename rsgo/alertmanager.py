"""Alertmanager silences for stacks in Maintenance, Stopped or Migrating (README "Alertmanager").

A mode change only marks the stack as due: the bus handler runs in the transition's thread, so it
never talks to Alertmanager. One thread of this service brings each due stack's silence where its
mode says (``reconcile``): created or renewed while the stack is in a silenced mode, expired when it
left. A silence ends at the window's end when a window holds the stack, else a sliding horizon
(1 h) from now, renewed by a scheduler job while the mode lasts: a silence outlives a dead rsgo by
at most the horizon. A failure (Alertmanager down, refusing, slow) leaves the row ``pending`` with
its error and the stack due again after a backoff (1 s, 2 s, 4 s … up to ``max_delay``); the
transition never waits for any of it. The row is the truth across restarts: at start every stack
whose row or mode asks for work is due.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

import requests

from rsgo.alertmanager_config import AlertmanagerConfig
from rsgo.db import release_thread_connection, timestamp, utcnow
from rsgo.events import MODE_CHANGED, SILENCE_CHANGED, EventBus
from rsgo.http_errors import describe
from rsgo.models import AlertSilence, Deployment, Transition
from rsgo.outbound import NO_POLICY, OutboundDenied, OutboundPolicy, guard

log = logging.getLogger(__name__)

SILENCED_MODES = frozenset({"Maintenance", "Stopped", "Migrating"})
HORIZON_SECONDS = 3600.0
USER_AGENT = "rsgo-alertmanager/1"


class AlertmanagerFailure(Exception):
    """One request to Alertmanager that did not do what was asked; the message says why, without secrets."""


class SilenceService:
    def __init__(self, bus: EventBus, *, window_end=lambda deployment_id: None, public_url: str = "",
                 outbound: OutboundPolicy = NO_POLICY, horizon: float = HORIZON_SECONDS, base_delay: float = 1.0,
                 max_delay: float = 60.0):
        self._bus = bus
        self._window_end = window_end  # deployment id -> naive UTC end of the window holding it, or None
        self.public_url = public_url.rstrip("/")
        self.outbound = outbound
        self.horizon = horizon
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._config = None  # rsgo.stack_config.Config
        self._due: dict[int, float] = {}  # deployment id -> monotonic instant it is due
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = bus.subscribe(self._on_event)

    # -- configuration and events ----------------------------------------------------------

    def apply(self, config) -> None:
        """A (re)loaded config: every stack with a silence row or in a silenced mode is looked at again."""
        self._config = config
        self.wake_all()

    def config_for(self, deployment: Deployment) -> AlertmanagerConfig | None:
        if self._config is None or deployment.forgotten_at is not None:
            return None
        return self._config.alertmanager_for(deployment.environment, deployment.name)

    def _on_event(self, kind: str, payload: dict) -> None:
        """In the transition's thread: only mark the stack due."""
        if kind == MODE_CHANGED and payload["previous_mode"] != payload["new_mode"]:
            self.wake(payload["deployment_id"])

    def wake(self, deployment_id: int, delay: float = 0.0) -> None:
        at = time.monotonic() + delay
        with self._changed:
            if delay == 0.0 or at < self._due.get(deployment_id, float("inf")):
                self._due[deployment_id] = at
            self._changed.notify_all()

    def wake_all(self) -> None:
        ids = {row.deployment_id for row in AlertSilence.select(AlertSilence.deployment)
               .where(~((AlertSilence.want == "expire") & (AlertSilence.state == "expired")))}
        ids |= {d.id for d in Deployment.select(Deployment.id).where(Deployment.mode.in_(SILENCED_MODES))}
        for deployment_id in ids:
            self.wake(deployment_id)

    def renew_due(self) -> None:
        """Scheduler job: silences on the sliding horizon get a new end before half of it is used."""
        try:
            soon = utcnow() + dt.timedelta(seconds=self.horizon / 2)
            for row in AlertSilence.select().where((AlertSilence.want == "silence")
                                                   & (AlertSilence.state == "silenced")
                                                   & (AlertSilence.ends_at < soon)):
                self.wake(row.deployment_id)
        finally:
            release_thread_connection()

    # -- what is shown ---------------------------------------------------------------------

    @staticmethod
    def status(deployment_id: int) -> dict | None:
        row = AlertSilence.get_or_none(AlertSilence.deployment == deployment_id)
        if row is None:
            return None
        return {"state": row.state, "action": row.want, "id": row.silence_id, "alertmanager": row.alertmanager,
                "endsAt": timestamp(row.ends_at), "error": row.error, "failures": row.failures,
                "transitionId": row.transition_id, "updatedAt": timestamp(row.updated_at)}

    @staticmethod
    def pending() -> list[tuple[str, str]]:
        """(stack, environment) of every silence whose creation or expiry is still being retried."""
        return [(row.deployment.name, row.deployment.environment)
                for row in AlertSilence.select(AlertSilence, Deployment).join(Deployment)
                .where(AlertSilence.state == "pending")]

    # -- the worker ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="rsgo-alertmanager", daemon=True)
        self._thread.start()
        self.wake_all()

    def stop(self, timeout: float = 2.0) -> None:
        self._unsubscribe()
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _next_due(self) -> int | None:
        with self._changed:
            while not self._stopping.is_set():
                now = time.monotonic()
                ready = [d for d, at in self._due.items() if at <= now]
                if ready:
                    deployment_id = min(ready, key=self._due.__getitem__)
                    del self._due[deployment_id]
                    return deployment_id
                self._changed.wait(min(self._due.values()) - now if self._due else None)
        return None

    def _run(self) -> None:
        while (deployment_id := self._next_due()) is not None:
            try:
                retry = self.reconcile(deployment_id)
            except Exception:
                log.exception("alertmanager: the silence of deployment %s failed unexpectedly", deployment_id)
                retry = self.max_delay
            finally:
                release_thread_connection()
            if retry is not None and not self._stopping.is_set():
                self.wake(deployment_id, retry)

    def reconcile(self, deployment_id: int) -> float | None:
        """Bring the stack's silence where its mode says; the delay before trying again, or None."""
        deployment = Deployment.get_or_none(Deployment.id == deployment_id)
        row = AlertSilence.get_or_none(AlertSilence.deployment == deployment_id)
        config = None if deployment is None else self.config_for(deployment)
        wanted = config is not None and deployment.mode in SILENCED_MODES
        if wanted:
            return self._silence(deployment, config, row)
        if row is None or (row.want == "expire" and row.state == "expired"):
            return None
        if row.silence_id is None or (row.ends_at is not None and row.ends_at <= utcnow()):
            self._save(row, want="expire", state="expired", error=None, failures=0)  # nothing left to expire
            return None
        if config is None or config.shown_url != row.alertmanager:
            # The config no longer says how to reach that Alertmanager: the silence ends by itself at ends_at.
            log.warning("alertmanager: silence %s of %s is no longer reachable by the config; it ends at %s",
                        row.silence_id, deployment.name if deployment else deployment_id, timestamp(row.ends_at))
            self._save(row, want="expire", state="expired", failures=0,
                       error=f"not expired: the config no longer names {row.alertmanager}; it ends by itself")
            return None
        try:
            self._request(config, "DELETE", f"/api/v2/silence/{row.silence_id}", accept_missing=True)
        except AlertmanagerFailure as failure:
            return self._failed(row, "expire", str(failure), deployment)
        self._save(row, want="expire", state="expired", error=None, failures=0, ends_at=utcnow())
        log.info("alertmanager: silence %s of %s expired", row.silence_id, deployment.name)
        return None

    def _ends_at(self, deployment_id: int) -> dt.datetime:
        end = self._window_end(deployment_id)
        return end if end is not None else utcnow() + dt.timedelta(seconds=self.horizon)

    def _silence(self, deployment: Deployment, config: AlertmanagerConfig, row: AlertSilence | None) -> float | None:
        ends_at = self._ends_at(deployment.id)
        if row is not None and row.want == "silence" and row.state == "silenced" \
                and row.alertmanager == config.shown_url and row.ends_at is not None \
                and (row.ends_at == ends_at or row.ends_at - utcnow() > dt.timedelta(seconds=self.horizon / 2)):
            return None  # in place, and not yet due for a renewal
        if row is None:
            row = AlertSilence.create(deployment=deployment.id, want="silence", state="pending",
                                      alertmanager=config.shown_url)
        transition = Transition.select().where((Transition.deployment == deployment.id)
                                               & (Transition.target_mode == deployment.mode)
                                               & (Transition.status == "succeeded")) \
            .order_by(Transition.id.desc()).first()
        page = f" — {self.public_url}/deployments/{deployment.id}" if self.public_url else ""
        body = {"matchers": config.matchers_for(deployment.name, deployment.environment),
                "startsAt": timestamp(utcnow()), "endsAt": timestamp(ends_at),
                "createdBy": deployment.trigger_actor or "rsgo",
                "comment": f"{deployment.name} in {deployment.mode} (rsgo): "
                           f"{deployment.trigger_reason or 'no reason given'}{page}"}
        keep_id = row.silence_id if row.want == "silence" and row.alertmanager == config.shown_url else None
        try:
            answer = None
            if keep_id:
                # Renewed in place: the same id with its own start (with another start Alertmanager
                # expires the silence and makes a new one, which would litter its list every renewal).
                current = self._request(config, "GET", f"/api/v2/silence/{keep_id}", accept_missing=True)
                if current and (current.get("status") or {}).get("state") == "active" and current.get("startsAt"):
                    answer = self._request(config, "POST", "/api/v2/silences",
                                           {**body, "id": keep_id, "startsAt": current["startsAt"]})
            if answer is None:  # new, expired, or forgotten by Alertmanager (its storage was lost)
                answer = self._request(config, "POST", "/api/v2/silences", body)
            silence_id = answer.get("silenceID")
            if not isinstance(silence_id, str) or not silence_id:
                raise AlertmanagerFailure("the answer carries no silenceID")
        except AlertmanagerFailure as failure:
            row.alertmanager = config.shown_url
            return self._failed(row, "silence", str(failure), deployment)
        first = row.state != "silenced" or row.silence_id != silence_id
        self._save(row, want="silence", state="silenced", silence_id=silence_id, alertmanager=config.shown_url,
                   ends_at=ends_at, error=None, failures=0,
                   transition=transition.id if transition else row.transition_id)
        if first:
            log.info("alertmanager: %s silenced until %s (silence %s)", deployment.name, timestamp(ends_at),
                     silence_id)
        return None

    def _failed(self, row: AlertSilence, want: str, error: str, deployment: Deployment | None) -> float:
        failures = row.failures + 1
        delay = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        self._save(row, want=want, state="pending", error=error, failures=failures)
        log.warning("alertmanager: %s of %s failed (%s); trying again in %gs", want,
                    deployment.name if deployment else row.deployment_id, error, delay)
        return delay

    def _save(self, row: AlertSilence, **fields) -> None:
        shown = ("state", "want", "silence_id", "ends_at", "error", "failures")
        before = tuple(getattr(row, name) for name in shown)
        fields["updated_at"] = utcnow()
        AlertSilence.update(**fields).where(AlertSilence.id == row.id).execute()
        for name, value in fields.items():
            setattr(row, name, value)
        if tuple(getattr(row, name) for name in shown) != before:  # the page shows it: push it
            self._bus.publish(SILENCE_CHANGED, deployment_id=row.deployment_id, state=row.state)

    def _request(self, config: AlertmanagerConfig, method: str, path: str, body: dict | None = None, *,
                 accept_missing: bool = False) -> dict | None:
        """One call; its JSON answer ({} when empty), None for a 404 when ``accept_missing``."""
        headers = {"User-Agent": USER_AGENT, **dict(config.headers)}
        try:
            with guard(requests.Session(), self.outbound) as session:
                response = session.request(
                    method, config.url + path, data=None if body is None else json.dumps(body),
                    headers={**headers, "Content-Type": "application/json"} if body is not None else headers,
                    auth=(config.username, config.password) if config.username is not None else None,
                    verify=False if config.insecure_skip_verify else (config.ca or True),
                    cert=(config.cert, config.key) if config.cert else None,
                    timeout=(config.timeout, config.timeout), allow_redirects=False)
        except OutboundDenied as denied:
            raise AlertmanagerFailure(str(denied)) from None
        except requests.RequestException as failure:
            raise AlertmanagerFailure(describe(failure, config.timeout)) from None
        with response:
            if response.status_code == 404 and accept_missing:
                return None
            if not 200 <= response.status_code < 300:
                text = " ".join(response.text[:200].split())
                raise AlertmanagerFailure(f"HTTP {response.status_code}" + (f": {text}" if text else ""))
            try:
                return response.json() if response.content else {}
            except ValueError:
                raise AlertmanagerFailure(f"HTTP {response.status_code} with an answer that is not JSON") from None
