"""Starting an upgrade's containers in dependency order, each through its health gate (README "Upgrades").

A container starts once each of its dependencies among them has come far enough: *passed its gate*
for ``rsgo.depends_on`` and for compose's ``service_healthy`` (and any other condition), *running*
for compose's ``service_started`` (what a plain ``depends_on`` means to compose) and for the owner of a
network namespace it shares. Every container must pass its own gate either way; after a failure,
nothing that has not started yet starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rsgo.docker_ops import COMPOSE_DEPENDS_ON_LABEL, COMPOSE_SERVICE_LABEL, DEPENDS_ON_LABEL, DockerError
from rsgo.upgrades.gate import GateFailed
from rsgo.upgrades.planning import PlannedContainer

PASSED, STARTED = "passed", "started"
MAX_THREADS = 32
WAIT_SLICE = 0.05


def _labels(row: PlannedContainer) -> dict:
    return (row.inspect.get("Config") or {}).get("Labels") or {}


def start_conditions(rows: list[PlannedContainer]) -> dict[str, dict[str, str]]:
    """Container name -> {dependency's name: how far it must be (PASSED, STARTED)}, among ``rows``."""
    by_key: dict[str, set[str]] = {}
    for row in rows:
        by_key.setdefault(row.name, set()).add(row.name)
        if _labels(row).get(COMPOSE_SERVICE_LABEL):
            by_key.setdefault(_labels(row)[COMPOSE_SERVICE_LABEL], set()).add(row.name)
    by_id = {row.old_id: row.name for row in rows}
    conditions: dict[str, dict[str, str]] = {}
    for row in rows:
        wanted: dict[str, str] = {}
        for part in _labels(row).get(COMPOSE_DEPENDS_ON_LABEL, "").split(","):
            key, _, rest = part.strip().partition(":")
            for name in by_key.get(key.strip(), ()):
                wanted[name] = STARTED if rest.split(":")[0] == "service_started" else PASSED
        for part in _labels(row).get(DEPENDS_ON_LABEL, "").split(","):
            for name in by_key.get(part.strip(), ()):
                wanted[name] = PASSED  # rsgo's own label says nothing weaker
        mode = (row.inspect.get("HostConfig") or {}).get("NetworkMode") or ""
        owner = by_id.get(mode.removeprefix("container:")) if mode.startswith("container:") else None
        if owner is not None:
            wanted.setdefault(owner, STARTED)
        wanted.pop(row.name, None)
        conditions[row.name] = wanted
    return conditions


def start_in_order(rows: list[PlannedContainer], start: Callable[[PlannedContainer], None],
                   gate: Callable[[PlannedContainer], None]) -> list[str]:
    """``start`` then ``gate`` every row, each as soon as its dependencies allow; the errors."""
    conditions = start_conditions(rows)
    started = {row.name: threading.Event() for row in rows}
    passed = {row.name: threading.Event() for row in rows}
    failed = threading.Event()
    errors: list[str] = []

    def ready(row: PlannedContainer) -> bool:
        for dependency, condition in conditions[row.name].items():
            reached = passed[dependency] if condition == PASSED else started[dependency]
            while not reached.wait(WAIT_SLICE):
                if failed.is_set():
                    return False
        return not failed.is_set()

    def run(row: PlannedContainer) -> None:
        if not ready(row):
            return  # something failed: the rollback follows, nothing more starts
        try:
            start(row)
            started[row.name].set()
            gate(row)
            passed[row.name].set()
        except (DockerError, GateFailed) as error:
            errors.append(str(error) if row.name in str(error) else f"{row.name}: {error}")
            failed.set()

    # Dependencies first in the queue (lower levels): a waiting dependent never holds the thread its
    # dependency needs.
    ordered = sorted(rows, key=lambda row: (row.level, row.name))
    if ordered:
        with ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(ordered)),
                                thread_name_prefix="rsgo-upgrade-start") as pool:
            list(pool.map(run, ordered))
    return errors
