"""What the Upgrade panel of a deployment page shows (README "Upgrades"): the latest upgrade's steps, the
recent ones, whether a rollback is possible, the form's rows; and the form read back into an
``UpgradeRequest``, and a plan put into the words of its preview. Display only: the domain decides."""

from __future__ import annotations

import hashlib
import json
import shlex

from rsgo.upgrades import journal
from rsgo.upgrades.planning import RECREATE, REJOIN, STOP, UpgradePlan
from rsgo.upgrades.request import (
    DEFAULT_HEALTH_TIMEOUT,
    DEFAULT_MIGRATION_TIMEOUT,
    DEFAULT_STABLE_FOR,
    UpgradeRequest,
    UpgradeRequestInvalid,
    parse_upgrade_request,
)
from rsgo.web.upgrade_json import upgrade_json

RECENT = 5
LOG_LINES = 20  # of the migration's log, on the page (the JSON keeps more)
RUNNING_ICON, ICONS = "🔄", {"succeeded": "✔", "rolled-back": "↩", "failed": "✖"}


def duration_text(seconds: float) -> str:
    """"15m" or "0.5s": a duration as the form's fields take it."""
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


def _changes(upgrade: dict) -> list[str]:
    return [f"{c['name']}: {(c['from'] or {}).get('ref') or '?'} → {(c['to'] or {}).get('ref') or '?'}"
            for c in upgrade["containers"] if c["role"] == RECREATE]


def _shown(upgrade) -> dict:
    body = upgrade_json(upgrade)
    body["changes"] = _changes(body)
    body["icon"] = ICONS.get(body["status"], RUNNING_ICON)
    if body["migration"] is not None:
        body["migration"]["logTail"] = body["migration"]["log"][-LOG_LINES:]
        command = body["migration"]["command"]
        body["migration"]["commandText"] = shlex.join(command) if isinstance(command, list) else command
    return body


def form_rows(containers: list[dict]) -> list[dict]:
    """One row per service (a container without a compose service is its own row), its image as it runs."""
    rows: dict[str, dict] = {}
    for container in containers:
        if container["kind"] != "container":
            continue
        key = container["service"] or container["name"]
        row = rows.setdefault(key, {"service": key, "image": container["image"], "containers": []})
        row["containers"].append(container["name"])
    return list(rows.values())


def panel(deployment_id: int, containers: list[dict]) -> dict:
    """``d.upgrades`` of a deployment page."""
    recent = [_shown(upgrade) for upgrade in journal.of_deployment(deployment_id, RECENT)]
    candidate = journal.last_rollback_candidate(deployment_id)
    latest = recent[0] if recent else None
    return {
        "latest": latest,
        "recent": recent,
        "running": latest is not None and not latest["finished"],
        "rollback": None if candidate is None else {"id": candidate.id,
                                                    "changes": _changes(upgrade_json(candidate))},
        "rows": form_rows(containers),
        "swarmServices": [c["name"] for c in containers if c["kind"] == "service"],
        "defaults": {"healthTimeout": duration_text(DEFAULT_HEALTH_TIMEOUT),
                     "stableFor": duration_text(DEFAULT_STABLE_FOR),
                     "migrationTimeout": duration_text(DEFAULT_MIGRATION_TIMEOUT)},
    }


def read_form(form, reason: str) -> UpgradeRequest:
    """The panel's form as an upgrade that does not wait: only the rows whose image was changed."""
    images = {}
    for service, current, new in zip(form.getlist("service"), form.getlist("current"), form.getlist("image"),
                                     strict=False):
        if new.strip() and new.strip() != current.strip():
            images[service] = new.strip()
    if not images:
        raise UpgradeRequestInvalid("Change the image of at least one service: rows left as they are (or empty) "
                                    "are not upgraded.", "images")
    body: dict = {"images": images, "wait": False}
    for field in ("healthTimeout", "stableFor"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    service, command = form.get("migrationService", "").strip(), form.get("migrationCommand", "").strip()
    if service or command:
        if not service:
            raise UpgradeRequestInvalid("Choose the service whose new image runs the migration.", "migration.service")
        body["migration"] = {"service": service, "command": command}
        if form.get("migrationTimeout", "").strip():
            body["migration"]["timeout"] = form["migrationTimeout"].strip()
    return parse_upgrade_request(body, reason)


def digest(upgrade_request: UpgradeRequest) -> str:
    """Names what a preview showed, so that starting it starts that and not an edited form."""
    return hashlib.sha256(json.dumps(upgrade_request.stored(), sort_keys=True).encode()).hexdigest()[:24]


def plan_view(plan: UpgradePlan, upgrade_request: UpgradeRequest) -> dict:
    """The preview's lines, in the order the upgrade does them."""
    recreated = [c for c in plan.containers if c.role == RECREATE]
    migration = upgrade_request.migration
    return {
        "pull": sorted({c.new_ref for c in recreated if c.new_ref}
                       | ({migration.image} if migration is not None and migration.image else set())),
        "pullPolicy": upgrade_request.pull,
        "stop": [c.name for c in reversed(plan.containers) if c.was_running],
        "migration": None if migration is None else {
            "source": plan.migration_source, "command": shlex.join(migration.command),
            "timeout": duration_text(migration.timeout)},
        "recreate": [{"name": c.name, "from": c.old_ref, "to": c.new_ref} for c in recreated],
        "rejoin": [c.name for c in plan.containers if c.role == REJOIN],
        "restart": [c.name for c in plan.containers if c.role == STOP],
        "keep": plan.kept_running,
        "healthTimeout": duration_text(upgrade_request.health_timeout),
        "stableFor": duration_text(upgrade_request.stable_for),
    }
