"""Enforcement (docs/design.md#enforcement): while a deployment is in Maintenance or Stopped, a container of its
stopped-set that runs again (a restart policy after a daemon restart, a manual
``docker start``) is stopped again and the history says so.

Driven by the inventory's ``container.changed`` events, so it reacts to the events
stream at once and to the periodic resync as a fallback.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from rsgo import audit, deployment_queries, events, transition_records
from rsgo.db import release_thread_connection
from rsgo.docker_ops import DockerError
from rsgo.environments import EnvironmentRemoved, Environments
from rsgo.events import EventBus
from rsgo.lifecycle import stop_grace
from rsgo.models import Deployment
from rsgo.modes import Mode

log = logging.getLogger(__name__)

ENFORCED_MODES = (Mode.MAINTENANCE.value, Mode.STOPPED.value)


class Enforcer:
    def __init__(self, environments: Environments, transitions, bus: EventBus, default_stop_timeout: float):
        self._environments = environments
        self._transitions = transitions
        self._default_stop_timeout = default_stop_timeout
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rsgo-enforce")
        self._unsubscribe = bus.subscribe(self._on_event)
        self._bus = bus

    def close(self) -> None:
        self._unsubscribe()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind != events.CONTAINER_CHANGED:
            return
        old, new = payload["old"], payload["new"]
        if new is not None and new.running and new.stack and (old is None or not old.running):
            # Never block the events thread with a stop that can take the whole grace period.
            self._pool.submit(self._enforce, payload["environment"], new.stack, new.name, new.kind)

    def _enforce(self, environment: str, stack: str, container_name: str, kind: str = "container") -> None:
        try:
            deployment = Deployment.get_or_none((Deployment.environment == environment)
                                                & (Deployment.name == stack))
            if deployment is None or deployment.mode not in ENFORCED_MODES:
                return
            with self._transitions.holding(deployment.id) as free:
                if not free:
                    return  # a transition is moving this stack; it owns the containers now
                deployment = Deployment.get_by_id(deployment.id)
                if deployment.mode not in ENFORCED_MODES:
                    return
                if deployment_queries.running_transition(deployment.id) is not None:
                    return  # interrupted by a restart and not yet resumed: resumption owns the containers
                if self._transitions.held_failure(deployment.id) is not None:
                    return  # its last transition could not be recorded: a person decides, not enforcement
                if container_name not in deployment_queries.stopped_set_names(deployment.id):
                    return  # never stopped by rsgo (a migration job, say): left alone
                self._stop_again(deployment, container_name, kind)
        except Exception:
            log.exception("enforcing %s of %s failed", container_name, stack)
        finally:
            release_thread_connection()

    def _stop_again(self, deployment: Deployment, container_name: str, kind: str) -> None:
        error = None
        try:
            gateway = self._environments.usable(deployment.environment, known_unreachable_fails=False).gateway
            if kind == "service":
                service = gateway.inspect_service(container_name)
                if not service.running:
                    return
                after = gateway.stop_service(container_name, stop_grace(service, self._default_stop_timeout))
                # Undone, so not a change of the person's to keep: Normal compares with this version now.
                transition_records.note_service_version(deployment.id, container_name, after.version)
            else:
                container = gateway.inspect(container_name)
                if not container.running:
                    return
                gateway.stop(container_name, stop_grace(container, self._default_stop_timeout))
        except EnvironmentRemoved:
            return  # removed from the config since the event: rsgo no longer touches its containers
        except DockerError as failure:
            error = str(failure)
        entry = audit.record(deployment, previous_mode=deployment.mode, new_mode=deployment.mode, outcome="enforced",
                             source="system", actor="system",
                             reason=f"{container_name} started while the stack is in {deployment.mode}; "
                                    + ("stopping it again failed" if error else "stopped it again"),
                             error=error)
        audit.announce(self._bus, entry)
        log.info("enforced %s on %s: %s", deployment.mode, container_name, error or "stopped again")
        self._bus.publish(events.DEPLOYMENT_ENFORCED, deployment_id=deployment.id, container=container_name,
                          error=error)
