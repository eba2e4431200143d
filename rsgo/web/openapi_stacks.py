"""The stacks-as-a-whole part of the OpenAPI document (rsgo/web/api_stacks.py): forgetting a stack
without containers, and one mode change for several stacks."""

from __future__ import annotations

from rsgo.modes import MODE_NAMES

PROBLEM_CODES = ["deployment_has_containers", "declared_in_config"]
_TEXT = {"type": ["string", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS = {
    "ForgetRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {"reason": {"type": "string", "maxLength": 500},
                       "source": {"type": "string", "enum": ["api", "cli"], "default": "api"}},
    },
    "Forgotten": {
        "type": "object", "required": ["forgotten", "deploymentId", "name", "environment", "entry", "historyUrl"],
        "properties": {"forgotten": {"type": "boolean", "const": True}, "deploymentId": {"type": "integer"},
                       "name": {"type": "string"}, "environment": {"type": "string"},
                       "entry": _ref("AuditEntry"), "historyUrl": {"type": "string"}},
    },
    "BulkModeChangeRequest": {
        "type": "object", "required": ["deployments"], "additionalProperties": False,
        "properties": {
            "deployments": {"type": "array", "minItems": 1, "maxItems": 500,
                            "items": {"type": ["string", "integer"]},
                            "description": "stack names or ids, resolved like {id} (add ?environment=)"},
            "newMode": {"type": "string", "enum": MODE_NAMES}, "mode": {"type": "string", "enum": MODE_NAMES},
            "reason": {"type": ["string", "null"], "maxLength": 500}, "force": {"type": "boolean", "default": False},
            "source": {"type": "string", "enum": ["api", "cli"], "default": "api"},
        },
    },
    "BulkModeChangeResult": {
        "type": "object", "required": ["mode", "reason", "started", "unchanged", "refused", "items"],
        "properties": {
            "mode": {"type": "string", "enum": MODE_NAMES}, "reason": {"type": "string"},
            "started": {"type": "integer"}, "unchanged": {"type": "integer"}, "refused": {"type": "integer"},
            "items": {"type": "array", "description": "one per stack asked for, in the order asked", "items": {
                "type": "object",
                "required": ["ref", "deploymentId", "deployment", "environment", "result", "status", "code",
                             "message", "transition"],
                "properties": {
                    "ref": {"type": "string"}, "deploymentId": {"type": ["integer", "null"]},
                    "deployment": _TEXT, "environment": _TEXT,
                    "result": {"type": "string", "enum": ["started", "unchanged", "refused"]},
                    "status": {"type": "integer", "description": "what the single change would have answered: "
                                                                 "202 started, 200 unchanged, 404, 409 or 503"},
                    "code": {**_TEXT, "description": "a refusal's problem code (as the single change's), or "
                                                     "duplicate: the stack was listed twice"},
                    "message": {"type": "string"},
                    "transition": {"type": ["object", "null"], "properties": {
                        "id": {"type": "integer"}, "url": {"type": "string"}}},
                    "allowedModes": {"type": "array", "items": {"type": "string"}},
                }}},
        },
    },
}


def merge(document_paths: dict, deployment_ref: dict, environment: dict, problem, json_answer) -> None:
    """Into the document's paths, by operation (``/api/deployments/{id}`` has a GET already)."""
    for path, operations in paths(deployment_ref, environment, problem, json_answer).items():
        document_paths.setdefault(path, {}).update(operations)


def paths(deployment_ref: dict, environment: dict, problem, json_answer) -> dict:
    return {
        "/api/deployments/{id}": {"delete": {
            "summary": "Forget a stack whose containers are all removed: hidden from the dashboard and the list, "
                       "its history kept (and the forgetting recorded in it); it comes back when its containers do",
            "operationId": "forgetDeployment", "parameters": [deployment_ref, environment],
            "requestBody": {"required": False,
                            "content": {"application/json": {"schema": _ref("ForgetRequest")}}},
            "responses": {
                "200": json_answer("forgotten; `entry` is the audit entry that records it", _ref("Forgotten")),
                "400": problem("invalid_json or invalid_request"),
                "404": problem("not_found: unknown, already forgotten (the detail says so), or outside the token's "
                               "stacks"),
                "409": problem("deployment_has_containers (`containers` counts them, `containerNames` names the "
                               "first ones), transition_in_progress (a transition or an upgrade has not ended), "
                               "declared_in_config (remove the stack from the config file first) or "
                               "ambiguous_deployment"),
                "415": problem("unsupported_media_type"),
                "503": problem("docker_unreachable: rsgo could not ask the engine whether containers remain; or "
                               "storage_unavailable")}}},
        "/api/deployments/operation-mode": {"post": {
            "summary": "One mode change for several stacks: each its own transition (started, not waited for) "
                       "and its own result; a refusal refuses only its stack",
            "operationId": "changeModes", "parameters": [environment],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("BulkModeChangeRequest")}}},
            "responses": {
                "207": json_answer("one result per stack", _ref("BulkModeChangeResult")),
                "400": problem("invalid_json, invalid_mode or invalid_request (nothing was done)"),
                "415": problem("unsupported_media_type")}}},
    }
