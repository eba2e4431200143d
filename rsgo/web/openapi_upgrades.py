"""The upgrade part of the OpenAPI document (README "Upgrades"): its paths and schemas."""

from __future__ import annotations

PROBLEM_CODES = ["image_pull_failed", "upgrade_failed", "rollback_failed", "nothing_to_roll_back"]
_STATUSES = ["pulling", "stopping", "migrating", "starting", "verifying", "rolling-back", "succeeded", "rolled-back",
             "failed"]
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": ["string", "null"]}
_DURATION = {"type": ["string", "number"], "description": "\"30s\", \"2m\", \"1h\" or seconds"}
_IMAGE = {"type": ["object", "null"], "properties": {"ref": _TEXT, "id": _TEXT}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS = {
    "UpgradeRequest": {
        "type": "object", "required": ["images"], "additionalProperties": False,
        "properties": {
            "images": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"},
                       "description": "compose service or container name -> new image reference"},
            "migration": {"type": ["object", "null"], "additionalProperties": False, "properties": {
                "service": {"type": "string", "description": "run from this service's new image, with its "
                                                             "environment, volumes and networks"},
                "image": {"type": "string", "description": "or from this image"},
                "command": {"type": ["array", "string"], "items": {"type": "string"}},
                "timeout": {**_DURATION, "default": "15m"}}},
            "pull": {"type": "string", "enum": ["missing", "always"], "default": "missing"},
            "healthTimeout": {**_DURATION, "default": "2m"},
            "stableFor": {**_DURATION, "default": "10s"},
            "reason": {"type": "string", "maxLength": 500},
            "wait": {"type": "boolean", "default": True},
            "source": {"type": "string", "enum": ["api", "cli"], "default": "api"},
        },
    },
    "RollbackRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {"reason": {"type": "string", "maxLength": 500}, "wait": {"type": "boolean", "default": True},
                       "source": {"type": "string", "enum": ["api", "cli"], "default": "api"}},
    },
    "Upgrade": {
        "type": "object",
        "required": ["id", "url", "kind", "deploymentId", "status", "finished", "containers", "steps", "error"],
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"},
            "kind": {"type": "string", "enum": ["upgrade", "rollback"]},
            "deploymentId": {"type": "integer"}, "status": {"type": "string", "enum": _STATUSES},
            "finished": {"type": "boolean"},
            "rollbackOf": {"type": ["integer", "null"]}, "rolledBackBy": {"type": ["integer", "null"]},
            "previousContainersKept": {"type": "boolean",
                                       "description": "a rollback can put this upgrade's previous containers back"},
            "source": {"type": "string"}, "actor": {"type": "string"}, "reason": {"type": "string"},
            "requestedAt": _TIME, "finishedAt": _TIME, "error": _TEXT,
            "recoveredAfterRestart": {"type": "boolean"},
            "pull": _TEXT, "healthTimeout": {"type": ["number", "null"]}, "stableFor": {"type": ["number", "null"]},
            "containers": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["recreate", "rejoin", "stop"],
                         "description": "recreate: gets a new image; rejoin: recreated to follow a recreated "
                                        "container's network namespace; stop: a dependent stopped and started"},
                "level": {"type": "integer"}, "wasRunning": {"type": "boolean"},
                "from": _IMAGE, "to": _IMAGE, "step": {"type": "string"}, "error": _TEXT,
                "keptAsideAs": _TEXT}}},
            "migration": {"type": ["object", "null"], "properties": {
                "service": _TEXT, "image": _TEXT, "command": {"type": "array", "items": {"type": "string"}},
                "timeout": {"type": "number"}, "started": {"type": "boolean"},
                "exitCode": {"type": ["integer", "null"]}, "timedOut": {"type": "boolean"},
                "log": {"type": "array", "items": {"type": "string"}, "description": "its last 100 lines"}}},
            "steps": {"type": "array", "items": {"type": "object", "properties": {
                "step": {"type": "string"}, "result": {"type": "string",
                                                       "enum": ["running", "succeeded", "failed", "skipped"]},
                "startedAt": _TIME, "finishedAt": _TIME, "durationMs": {"type": ["integer", "null"]},
                "error": _TEXT}}},
        },
    },
}


def paths(deployment_ref: dict, environment: dict, problem, json_answer) -> dict:
    """``problem`` and ``json_answer`` build responses as the rest of the document does."""
    started = {
        "200": json_answer("succeeded", _ref("Upgrade")),
        "202": {"description": "accepted (wait=false); Location names the upgrade",
                "headers": {"Location": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": _ref("Upgrade")}}},
        "400": problem("invalid_json or invalid_request (naming the field, or the service the stack lacks); "
                       "nothing was touched"),
        "404": problem("not_found"),
        "409": problem("transition_not_allowed (not Normal), transition_in_progress, nothing_to_roll_back, "
                       "dependency_cycle, environment_removed or ambiguous_deployment"),
        "415": problem("unsupported_media_type"),
        "503": problem("docker_unreachable: nothing was done, the mode is unchanged"),
    }
    return {
        "/api/deployments/{id}/upgrade": {"post": {
            "summary": "Upgrade containers to new images in Migrating, with an optional migration, health gates "
                       "and rollback on failure", "operationId": "upgradeDeployment",
            "parameters": [deployment_ref, environment],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("UpgradeRequest")}}},
            "responses": {**started, "502": problem(
                "image_pull_failed (nothing was stopped; the mode stays Normal) or upgrade_failed (rolled back: "
                "the mode is Normal when the migration never started and the rollback is healthy, else Failed); "
                "`upgrade` carries the upgrade")}}},
        "/api/deployments/{id}/rollback": {"post": {
            "summary": "Put back the containers the last succeeded upgrade kept aside", "operationId":
                "rollbackDeployment", "parameters": [deployment_ref, environment],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("RollbackRequest")}}},
            "responses": {**started, "502": problem("rollback_failed: the deployment is Failed; `upgrade` says how "
                                                    "far it got")}}},
        "/api/deployments/{id}/upgrades": {"get": {
            "summary": "The deployment's upgrades and rollbacks, newest first", "operationId": "listUpgrades",
            "parameters": [deployment_ref, environment,
                           {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}}],
            "responses": {"200": json_answer("upgrades", {"type": "object", "properties": {
                "items": {"type": "array", "items": _ref("Upgrade")}, "rollbackAvailable": {"type": "boolean"},
                "deploymentUrl": {"type": "string"}}}), "404": problem("not_found")}}},
        "/api/upgrades/{upgradeId}": {"get": {
            "summary": "An upgrade or rollback: status, containers from/to, migration exit code and log, steps",
            "operationId": "getUpgrade",
            "parameters": [{"name": "upgradeId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": json_answer("the upgrade", _ref("Upgrade")),
                          "404": problem("not_found: no such upgrade, or one of a stack outside the token's stacks")}}},
    }
