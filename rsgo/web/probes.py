"""Liveness and readiness for orchestrators and the container HEALTHCHECK."""

from __future__ import annotations

from flask import Blueprint, jsonify

from rsgo.db import check_writable, note_storage_failure
from rsgo.web import current_runtime

blueprint = Blueprint("probes", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    """Ready when the database takes writes and the last contact with Docker succeeded."""
    runtime = current_runtime()
    inventory = runtime.inventory
    checks = {}
    try:
        check_writable()  # SELECT 1 answers on a read-only or full disk; a write does not
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any database failure means not ready
        checks["database"] = f"error: cannot write: {error}"
        note_storage_failure()
    held = runtime.transitions.held_failures()
    if held:
        checks["database"] = (f"error: {len(held)} failed transition(s) not recorded yet "
                              f"(transition {held[0].transition_id}: {held[0].error})")
    if inventory.reachable:
        checks["docker"] = "ok"
    elif inventory.reachable is None:
        checks["docker"] = "not yet synced"
    else:
        checks["docker"] = f"error: {inventory.last_error}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
