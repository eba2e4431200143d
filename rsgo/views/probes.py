"""Liveness and readiness for orchestrators and the container HEALTHCHECK."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from rsgo.db import database

blueprint = Blueprint("probes", __name__)


@blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz():
    """Ready when the database answers and the last contact with Docker succeeded."""
    inventory = current_app.extensions["rsgo"].inventory
    checks = {}
    try:
        database.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any database failure means not ready
        checks["database"] = f"error: {error}"
    if inventory.reachable:
        checks["docker"] = "ok"
    elif inventory.reachable is None:
        checks["docker"] = "not yet synced"
    else:
        checks["docker"] = f"error: {inventory.last_error}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
