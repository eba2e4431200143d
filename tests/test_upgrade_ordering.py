"""The order an upgrade starts its containers in (rsgo/upgrades/starting.py), as a unit: which condition
each dependency must reach, and that nothing starts before it or after a failure. The same order
against the real engine is in test_upgrades.py and test_upgrade_recovery.py."""

from __future__ import annotations

import threading

from rsgo.upgrades.gate import GateFailed
from rsgo.upgrades.planning import PlannedContainer
from rsgo.upgrades.starting import PASSED, STARTED, start_conditions, start_in_order


def row(name: str, level: int, labels: dict | None = None, network_mode: str = "") -> PlannedContainer:
    return PlannedContainer(name=name, role="recreate", level=level, was_running=True, old_id=f"id-{name}",
                            old_ref="app:1", old_image_id="sha256:1", new_ref="app:2", restart_policy={},
                            inspect={"Config": {"Labels": {"com.docker.compose.service": name.split("-")[1],
                                                           **(labels or {})}},
                                     "HostConfig": {"NetworkMode": network_mode}})


def test_each_dependency_must_reach_what_its_label_asks_for():
    rows = [row("s-db", 0), row("s-api", 1, {"com.docker.compose.depends_on": "db:service_healthy:false"}),
            row("s-worker", 2, {"com.docker.compose.depends_on": "api:service_started:false,db:service_started:true"}),
            row("s-cron", 2, {"rsgo.depends_on": "api"}),
            row("s-sidecar", 2, network_mode="container:id-s-api")]
    assert start_conditions(rows) == {
        "s-db": {}, "s-api": {"s-db": PASSED}, "s-worker": {"s-api": STARTED, "s-db": STARTED},
        "s-cron": {"s-api": PASSED}, "s-sidecar": {"s-api": STARTED}}


def test_a_dependent_starts_only_after_its_dependency_reached_the_condition_and_none_after_a_failure():
    rows = [row("s-db", 0), row("s-api", 1, {"com.docker.compose.depends_on": "db:service_healthy:false"}),
            row("s-worker", 2, {"com.docker.compose.depends_on": "api:service_started:false"}),
            row("s-late", 3, {"rsgo.depends_on": "worker"})]
    events: list[str] = []
    lock = threading.Lock()
    worker_started = threading.Event()

    def start(r):
        with lock:
            events.append(f"start {r.name}")
        if r.name == "s-worker":
            worker_started.set()

    def gate(r):
        if r.name == "s-api" and not worker_started.wait(30):
            # service_started: the worker must start while api's gate is still open
            raise GateFailed("s-api: the worker did not start while its gate was open")
        if r.name == "s-worker":
            raise GateFailed("s-worker is unhealthy")
        with lock:
            events.append(f"passed {r.name}")

    errors = start_in_order(rows, start, gate)
    assert errors == ["s-worker is unhealthy"]
    assert events.index("passed s-db") < events.index("start s-api"), "service_healthy waits for the gate"
    assert events.index("start s-worker") < events.index("passed s-api"), "service_started does not"
    assert "start s-late" not in events, "nothing starts after a failure"
