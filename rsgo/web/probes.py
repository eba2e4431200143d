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
    """Ready when the database takes writes and the last contact with Docker succeeded (with several
    environments: with at least one of them; each one's state is in ``checks``)."""
    runtime = current_runtime()
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
    checks["docker"], environments = _environment_checks(runtime.environments.all())
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if len(environments) > 1:
        body["environments"] = environments
    return jsonify(body), 200 if ready else 503


def _environment_checks(environments) -> tuple[str, dict]:
    """The "docker" check and each environment's state. With one engine its state is the check; with
    several the check is ok while any one answers: restarting rsgo would not bring a remote engine back."""
    states = {}
    for env in environments:
        view = env.view()
        if view.state == "reachable":
            states[env.name] = "ok"
        elif view.state == "connecting":
            states[env.name] = "not yet synced"
        elif len(environments) == 1:
            states[env.name] = f"error: {view.last_error}"
        else:
            # Anyone may ask /readyz: the environments' errors (hosts, certificate paths) stay behind sign-in,
            # in GET /api/environments.
            states[env.name] = f"error: {view.state}"
    if len(states) == 1:
        return next(iter(states.values())), states
    return ("ok" if "ok" in states.values() else "error: no environment is reachable"), states
