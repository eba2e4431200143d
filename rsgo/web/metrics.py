"""Prometheus metrics at ``GET /metrics`` (README "Metrics"), in a registry of the app's own.

Counters and the duration histogram follow the event bus; the mode of every
deployment, the failing observers and the active windows are read from the
database at each scrape, so they are right even just after a restart; overdue
maintenance is what the last overdue check found (``rsgo.overdue``).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rsgo import events
from rsgo.models import Deployment, ObserverStatus, Transition
from rsgo.modes import Mode
from rsgo.problems import Problem
from rsgo.security.principal import current
from rsgo.web import current_runtime

log = logging.getLogger(__name__)

blueprint = Blueprint("metrics", __name__)

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class _StateCollector:
    """Gauges computed at scrape time from the database and the window service."""

    def __init__(self, runtime):
        self._runtime = runtime

    @staticmethod
    def _families():
        return (
            GaugeMetricFamily("rsgo_deployment_operation_mode",
                              "1 for the operation mode the deployment is in, 0 for every other mode",
                              labels=["deployment", "environment", "mode"]),
            GaugeMetricFamily("rsgo_observer_failing",
                              "1 while the deployment's observer has failed failureThreshold times in a row",
                              labels=["deployment"]),
            GaugeMetricFamily("rsgo_windows_active", "Maintenance windows active now"),
            GaugeMetricFamily("rsgo_environment_up",
                              "1 while the environment's Docker engine answers, 0 while it is unreachable, "
                              "disabled or still connecting", labels=["environment", "kind"]),
            GaugeMetricFamily("rsgo_maintenance_overdue",
                              "1 while the deployment has been in Maintenance or Stopped longer than its reminder",
                              labels=["deployment", "environment"]),
            GaugeMetricFamily("rsgo_alertmanager_silence_pending",
                              "1 while the deployment's Alertmanager silence (or its expiry) is being retried",
                              labels=["deployment", "environment"]),
        )

    def describe(self):
        return self._families()

    def collect(self):
        modes, failing, windows, environments, overdue, silences = self._families()
        for deployment in Deployment.select().where(Deployment.forgotten_at.is_null()).order_by(
                Deployment.environment, Deployment.name):
            for mode in Mode:
                modes.add_metric([deployment.name, deployment.environment, mode.value],
                                 1 if deployment.mode == mode.value else 0)
            overdue.add_metric([deployment.name, deployment.environment],
                               1 if self._runtime.overdue.status(deployment) else 0)
        rows = (ObserverStatus.select(ObserverStatus, Deployment).join(Deployment)
                .order_by(Deployment.name))
        for row in rows:
            failing.add_metric([row.deployment.name], 1 if row.failing else 0)
        windows.add_metric([], self._runtime.windows.active_count())
        for env in self._runtime.environments.all():
            view = env.view()
            environments.add_metric([view.name, view.kind or ""], 1 if view.state == "reachable" else 0)
        for stack, environment in self._runtime.silences.pending():
            silences.add_metric([stack, environment], 1)
        return [modes, failing, windows, environments, overdue, silences]


class Metrics:
    def __init__(self, runtime):
        self.registry = CollectorRegistry()
        self.transitions = Counter("rsgo_transitions", "Finished transitions by outcome", ["outcome"],
                                   registry=self.registry)
        self.duration = Histogram("rsgo_transition_duration_seconds",
                                  "Time from a transition's request to its end", buckets=DURATION_BUCKETS,
                                  registry=self.registry)
        self.observer_checks = Counter("rsgo_observer_checks", "Observer checks by deployment and result (ok, error)",
                                       ["deployment", "result"], registry=self.registry)
        self.webhook_deliveries = Counter("rsgo_webhook_deliveries",
                                          "Webhook deliveries by final result (delivered, failed)", ["result"],
                                          registry=self.registry)
        self.upgrades = Counter("rsgo_upgrades", "Finished upgrades and rollbacks by outcome", ["outcome"],
                                registry=self.registry)
        for outcome in ("succeeded", "failed"):
            self.transitions.labels(outcome)
        for outcome in ("succeeded", "rolled-back", "failed"):
            self.upgrades.labels(outcome)
        for result in ("delivered", "failed"):
            self.webhook_deliveries.labels(result)
        self.registry.register(_StateCollector(runtime))
        self._unsubscribe = runtime.bus.subscribe(self._on_event)

    def _on_event(self, kind: str, payload: dict) -> None:
        if kind == events.TRANSITION_FINISHED:
            self.transitions.labels(payload["outcome"]).inc()
            transition = Transition.get_or_none(Transition.id == payload["transition_id"])
            if transition is not None and transition.finished_at is not None:
                self.duration.observe(max(0.0, (transition.finished_at - transition.requested_at).total_seconds()))
        elif kind == events.OBSERVER_CHECK_FINISHED:
            # The name comes with the event: hundreds of checks a second must not each read the deployment.
            self.observer_checks.labels(payload["stack"], "ok" if payload["ok"] else "error").inc()
        elif kind == events.UPGRADE_FINISHED:
            self.upgrades.labels(payload["outcome"]).inc()
        elif kind == events.WEBHOOK_DELIVERY_FINISHED:
            self.webhook_deliveries.labels(payload["result"]).inc()

    def close(self) -> None:
        self._unsubscribe()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def register(app, runtime, settings) -> Metrics:
    """Metrics for this app; with ``RSGO_METRICS_PUBLIC=true`` /metrics needs no token."""
    metrics = Metrics(runtime)
    runtime.metrics = metrics
    runtime.on_stop(metrics.close)
    app.register_blueprint(blueprint)
    if settings.metrics_public:
        app.config.setdefault("RSGO_PUBLIC_ENDPOINTS", set()).add("metrics.scrape")
    return metrics


@blueprint.get("/metrics")
def scrape():
    principal = current()
    public = "metrics.scrape" in current_app.config.get("RSGO_PUBLIC_ENDPOINTS", ())
    if not (public and principal.anonymous):
        if not principal.can("read"):
            raise Problem(403, "forbidden", f"{principal.name} may not read metrics (needs read)")
        if principal.stacks is not None:
            raise Problem(403, "forbidden", f"{principal.name} is limited to some stacks; metrics cover every stack")
    return Response(current_runtime().metrics.exposition(), content_type=CONTENT_TYPE_LATEST)
