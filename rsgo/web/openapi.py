"""The OpenAPI 3.1 document served at /api/openapi.json.

A test checks that it validates and that its paths are exactly the routes the app serves.
"""

from __future__ import annotations

from rsgo.audit import OUTCOMES
from rsgo.db import MAX_ID
from rsgo.modes import MODE_NAMES, TRIGGER_SOURCES
from rsgo.web import openapi_alerts, openapi_stacks, openapi_upgrades, openapi_windows
from rsgo.web.http_input import MAX_REQUEST_TEXT


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem(description: str) -> dict:
    return {"description": description,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_DEPLOYMENT_REF = {
    "name": "id", "in": "path", "required": True,
    "description": "stack name or numeric id (only ASCII digits, as rsgo shows it, are an id). 409 "
                   "ambiguous_deployment if the name exists on several environments, or if the ref is one "
                   "deployment's name and another's id. Stacks outside a token's list are 404, as unknown ones",
    "schema": {"type": "string"},
}
_ENVIRONMENT = {"name": "environment", "in": "query", "required": False,
                "description": "environment name, to disambiguate a stack name", "schema": {"type": "string"}}
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
    {"name": "before", "in": "query", "description": "cursor: entries with a smaller id than this",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
]
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT_OR_NULL = {"type": ["string", "null"]}

_COUNTS = {"type": "object", "properties": {"running": {"type": "integer"}, "total": {"type": "integer"}}}
_SUMMARY_REQUIRED = ["id", "name", "environment", "operationMode", "health", "containers", "trigger"]
_SUMMARY_PROPERTIES = {
    "id": {"type": "integer"}, "name": {"type": "string"}, "environment": {"type": "string"},
    "operationMode": _ref("Mode"),
    "health": {"type": "string", "enum": ["Healthy", "Degraded", "Unhealthy", "Unknown"]},
    "needsAttention": {"type": "boolean"},
    "problems": {"type": "array", "items": {"type": "string"}},
    "trigger": _ref("Trigger"), "modeChangedAt": _TIME,
    "transitionInProgress": {"type": ["object", "null"]},
    "overdue": {"type": ["object", "null"], "required": ["mode", "since", "for", "by"],
                "description": "forgotten maintenance: in Maintenance or Stopped longer than its reminder "
                               "(README \"Modes\"); null otherwise",
                "properties": {"mode": {"type": "string", "enum": ["Maintenance", "Stopped"]},
                               "since": {"type": "string", "format": "date-time"},
                               "for": {"type": "integer", "description": "seconds"}, "by": {"type": "string"}}},
}

_ENVIRONMENT_STATES = ["connecting", "reachable", "unreachable", "disabled", "removed"]

_SCHEMAS = {
    "Environment": {
        "type": "object",
        "required": ["name", "kind", "url", "state", "reachable", "lastError", "engineVersion", "deployments",
                     "lastEventAt"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": ["string", "null"], "enum": ["engine", "swarm", None],
                     "description": "null until the engine answered once"},
            "url": {"type": ["string", "null"], "description": "a password in it masked; null once removed"},
            "state": {"type": "string", "enum": _ENVIRONMENT_STATES},
            "reachable": {"type": ["boolean", "null"]},
            "lastError": _TEXT_OR_NULL, "engineVersion": _TEXT_OR_NULL,
            "deployments": {"type": "integer"}, "lastEventAt": _TIME,
        },
    },
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": [
                "invalid_json", "invalid_mode", "invalid_request", "not_found", "method_not_allowed",
                "unsupported_media_type", "unauthorized", "forbidden", "csrf_failed", "transition_not_allowed",
                "transition_in_progress", "environment_removed",
                "observer_owns_maintenance", "ambiguous_deployment", "dependency_cycle", "window_from_config",
                "container_action_failed", "docker_unreachable", "internal_error", "request_too_large",
                *openapi_upgrades.PROBLEM_CODES, *openapi_stacks.PROBLEM_CODES]},
            "validModes": {"type": "array", "items": {"type": "string"}},
            "environments": {"type": "array", "items": {"type": "string"}},
            "candidates": {"type": "array", "description": "ambiguous_deployment: what the ref could mean",
                           "items": {"type": "object", "properties": {
                               "id": {"type": "integer"}, "name": {"type": "string"},
                               "environment": {"type": "string"},
                               "matches": {"type": "string", "enum": ["name", "id"]}}}},
            "allowedModes": {"type": "array", "items": {"type": "string"}},
            "transitionUrl": {"type": "string"},
        },
    },
    "Mode": {"type": "string", "enum": MODE_NAMES},
    "Trigger": {
        "type": "object",
        "properties": {"source": {"type": "string", "enum": list(TRIGGER_SOURCES)}, "actor": {"type": "string"},
                       "reason": {"type": "string"}, "observedValue": _TEXT_OR_NULL, "at": _TIME},
    },
    "DeploymentSummary": {
        "type": "object",
        "required": _SUMMARY_REQUIRED,
        "properties": {**_SUMMARY_PROPERTIES, "containers": _COUNTS},
    },
    "Container": {
        "type": "object",
        "description": "a container, or on a Swarm manager a service (kind service, with its task counts)",
        "properties": {"name": {"type": "string"}, "kind": {"type": "string", "enum": ["container", "service"]},
                       "tasks": {"type": ["object", "null"], "properties": {"running": {"type": "integer"},
                                                                           "desired": {"type": "integer"}}},
                       "service": _TEXT_OR_NULL, "image": {"type": "string"},
                       "state": {"type": "string"}, "health": {"type": "string"}, "ignored": {"type": "boolean"},
                       "inStoppedSet": {"type": "boolean"}, "exitCode": {"type": ["integer", "null"]},
                       "completed": {"type": "boolean", "description": "a job that exited 0, not stopped by rsgo"}},
    },
    "Deployment": {
        # Not allOf DeploymentSummary: here `containers` is the list and `containerCounts` the counts.
        "type": "object",
        "required": [*_SUMMARY_REQUIRED, "containerCounts", "allowedModes"],
        "properties": {
            **_SUMMARY_PROPERTIES,
            "containers": {"type": "array", "items": _ref("Container")},
            "containerCounts": _COUNTS,
            "stoppedSet": {"type": "array", "items": {"type": "string"}},
            "allowedModes": {"type": "array", "items": _ref("Mode")},
            "observer": {"oneOf": [_ref("ObserverStatus"), {"type": "null"}]},
            "windows": {"type": "array", "items": _ref("Window")},
            **openapi_alerts.DEPLOYMENT_PROPERTIES,
        },
    },
    "ContainerResult": {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "action": {"type": "string", "enum": ["stop", "start", "none"]},
            "level": {"type": "integer"},
            "result": {"type": ["string", "null"], "enum": [
                "stopped", "started", "ignored", "already-stopped", "already-running", "missing", "failed", None]},
            "error": _TEXT_OR_NULL, "durationMs": {"type": ["integer", "null"]},
        },
    },
    "Transition": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "url": {"type": "string"}, "deploymentId": {"type": "integer"},
            "previousMode": _ref("Mode"), "targetMode": _ref("Mode"),
            "outcome": {"type": "string", "enum": ["running", "succeeded", "failed"]},
            "source": {"type": "string"}, "actor": {"type": "string"}, "reason": {"type": "string"},
            "observedValue": _TEXT_OR_NULL, "force": {"type": "boolean"}, "resumed": {"type": "boolean"},
            "error": _TEXT_OR_NULL, "startedAt": _TIME, "finishedAt": _TIME,
            "progress": {"type": "object", "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}},
            "containers": {"type": "array", "items": _ref("ContainerResult")},
        },
    },
    "ModeChangeRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "newMode": {"type": "string", "description": f"one of {', '.join(MODE_NAMES)} (case-insensitive)"},
            "mode": {"type": "string", "description": "alias of newMode"},
            "reason": {"type": ["string", "null"], "maxLength": 500, "description": "no control characters"},
            "force": {"type": "boolean", "default": False,
                      "description": "leave observer-owned Maintenance although the observer still reads maintenance"},
            "wait": {"type": "boolean", "default": True,
                     "description": "false: answer 202 at once with Location of the transition"},
            "source": {"type": "string", "enum": ["api", "cli"], "default": "api",
                       "description": "what the history records as the change's source (the rsgo command sends cli)"},
        },
    },
    "ModeChangeResult": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean"}, "message": {"type": "string"}, "deploymentId": {"type": "integer"},
            "deployment": _ref("Deployment"), "previousMode": _ref("Mode"), "newMode": _ref("Mode"),
            "triggerSource": {"type": "string"},
            "outcome": {"type": "string", "enum": ["noop", "succeeded", "running"]},
            "transition": {"oneOf": [_ref("Transition"), {"type": "null"}]},
        },
    },
    "AuditEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "deploymentId": {"type": "integer"}, "deployment": {"type": "string"},
            "environment": {"type": "string"}, "previousMode": _ref("Mode"), "newMode": _ref("Mode"),
            "requestedMode": {"type": ["string", "null"]},
            "outcome": {"type": "string", "enum": list(OUTCOMES)}, "source": {"type": "string"},
            "actor": {"type": "string"}, "reason": {"type": "string"}, "observedValue": _TEXT_OR_NULL,
            "error": _TEXT_OR_NULL, "requestedAt": _TIME, "finishedAt": _TIME,
            "transitionId": {"type": ["integer", "null"]},
            "forced": {"type": "boolean", "description": "the change was forced past an observer holding Maintenance"},
        },
    },
    "ObserverStatus": {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["sqlExtendedProperty", "sqlQuery", "http", "file", "?"]},
            "name": {"type": "string"}, "target": {"type": "string", "description": "secrets masked"},
            "state": {"type": "string", "enum": ["ok", "error", "suppressed", "disabled", "pending"]},
            "error": _TEXT_OR_NULL, "lastValue": _TEXT_OR_NULL,
            "lastDecision": {"type": ["string", "null"], "enum": ["maintenance", "normal", None]},
            "lastCheckAt": _TIME, "nextCheckAt": _TIME, "failures": {"type": "integer"},
            "failureThreshold": {"type": "integer"}, "failing": {"type": "boolean"},
            "suppressed": {"type": "boolean"}, "maintenanceValue": {"type": "string"},
            "normalValue": _TEXT_OR_NULL, "pollingIntervalSeconds": {"type": "number"},
            "confirmations": {"type": "integer"},
        },
    },
    "Window": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["one-time", "recurring"]},
            "start": _TIME, "end": _TIME, "cron": _TEXT_OR_NULL, "timezone": _TEXT_OR_NULL,
            "durationSeconds": {"type": ["integer", "null"]}, "reason": {"type": "string"},
            "origin": {"type": "string", "enum": ["config", "api", "ui"]}, "createdBy": {"type": "string"},
            "active": {"type": "boolean"},
            "nextOccurrences": {"type": "array", "items": {"type": "object", "properties": {
                "start": {"type": "string", "format": "date-time"},
                "end": {"type": "string", "format": "date-time"}}}},
        },
    },
    "WindowRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "name": {"type": "string"}, "reason": {"type": "string", "maxLength": 500},
            "start": {"type": "string", "format": "date-time", "description": "ISO 8601 with an offset"},
            "end": {"type": "string", "format": "date-time"},
            "cron": {"type": "string", "description": "5 fields, e.g. 0 2 * * SUN"},
            "duration": {"type": "string", "description": "45m, 2h; alone: maintenance from now"},
            "timezone": {"type": "string", "description": "IANA name, for cron"},
        },
    },
    "HistoryPage": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("AuditEntry")},
                       "nextBefore": {"type": ["integer", "null"]}, "next": _TEXT_OR_NULL},
    },
}


def _with_auth_responses(paths: dict) -> dict:
    """401 and 403 can answer every operation that needs a caller."""
    for operations in paths.values():
        for operation in operations.values():
            if operation.get("security") == []:
                continue
            operation["responses"].setdefault("401", _problem("no or an unknown, expired or revoked token/session"))
            operation["responses"].setdefault("403", _problem("forbidden (scope or role too low) or csrf_failed"))
    return paths


def _with_input_responses(paths: dict) -> dict:
    """What a deployment ref and a request body can be answered with, wherever they are taken."""
    for operations in paths.values():
        for operation in operations.values():
            responses = operation["responses"]
            if _DEPLOYMENT_REF in operation.get("parameters", []):
                responses.setdefault("404", _problem("not_found: no such deployment, or one outside the token's "
                                                     "stacks (the same answer)"))
                responses.setdefault("409", _problem("ambiguous_deployment (candidates lists what the ref could "
                                                     "mean)"))
            if "requestBody" in operation:
                responses.setdefault("413", _problem(f"request_too_large: the body is over {MAX_REQUEST_TEXT}"))
    return paths


def openapi_document() -> dict:
    document = {
        "openapi": "3.1.0",
        "info": {"title": "rsgo", "version": "0.1.0",
                 "description": "Operation modes for Docker stacks. Errors are application/problem+json."},
        "servers": [{"url": "/"}],
        "paths": {
            "/api/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                          "responses": {"200": _json("OpenAPI 3.1 document", {"type": "object"})}}},
            "/api/environments": {"get": {
                "summary": "The Docker engines rsgo manages, and removed ones that still have deployments",
                "operationId": "listEnvironments",
                "responses": {"200": _json("environments", {"type": "object", "required": ["items"], "properties": {
                    "items": {"type": "array", "items": _ref("Environment")}}})}}},
            "/api/deployments": {"get": {
                "summary": "Every deployment", "operationId": "listDeployments",
                "responses": {"200": _json("deployments", {"type": "object", "properties": {
                    "items": {"type": "array", "items": _ref("DeploymentSummary")}}})}}},
            "/api/deployments/{id}": {"get": {
                "summary": "One deployment with containers and allowed modes", "operationId": "getDeployment",
                "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT],
                "responses": {"200": _json("the deployment", _ref("Deployment")), "404": _problem("unknown"),
                              "409": _problem("ambiguous_deployment")}}},
            "/api/deployments/{id}/operation-mode": {
                "get": {"summary": "Current mode and trigger", "operationId": "getOperationMode",
                        "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT],
                        "responses": {"200": _json("mode", {
                            "type": "object", "additionalProperties": False,
                            "required": ["deploymentId", "operationMode", "trigger", "modeChangedAt",
                                         "transitionInProgress"],
                            "properties": {"deploymentId": {"type": "integer"}, "operationMode": _ref("Mode"),
                                           "trigger": _ref("Trigger"), "modeChangedAt": _TIME,
                                           "transitionInProgress": {"type": ["object", "null"]}}}),
                                      "404": _problem("unknown")}},
                "put": {
                    "summary": "Change the operation mode", "operationId": "changeOperationMode",
                    "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT],
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": _ref("ModeChangeRequest")}}},
                    "responses": {
                        "200": _json("done (or a no-op for the current mode)", _ref("ModeChangeResult")),
                        "202": {"description": "accepted (wait=false); Location names the transition",
                                "headers": {"Location": {"schema": {"type": "string"}}},
                                "content": {"application/json": {"schema": _ref("ModeChangeResult")}}},
                        "400": _problem("invalid_json, invalid_mode or invalid_request"),
                        "404": _problem("not_found"),
                        "409": _problem("transition_not_allowed, transition_in_progress, observer_owns_maintenance, "
                                        "ambiguous_deployment, dependency_cycle or environment_removed"),
                        "415": _problem("unsupported_media_type"),
                        "502": _problem("container_action_failed: the deployment is now Failed; "
                                        "the body carries the transition with per-container results"),
                        "503": _problem("docker_unreachable: nothing was done, the mode is unchanged"),
                    }}},
            "/api/deployments/{id}/observer": {"get": {
                "summary": "The deployment's observer: type, masked target, last value and decision, state",
                "operationId": "getObserver", "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT],
                "responses": {"200": _json("observer status", _ref("ObserverStatus")),
                              "404": _problem("no such deployment, or it has no observer")}}},
            "/api/deployments/{id}/observer/check": {"post": {
                "summary": "Check the observer now and act on the result", "operationId": "checkObserver",
                "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT],
                "responses": {"200": _json("observer status after the check", _ref("ObserverStatus")),
                              "404": _problem("no such deployment, or it has no observer")}}},
            "/api/config/reload": {"post": {
                "summary": "Read the stack config file again (like SIGHUP)", "operationId": "reloadConfig",
                "responses": {"200": _json("what was loaded", {"type": "object"}),
                              "422": _problem("invalid_config: the file does not parse or validate; nothing was "
                                              "changed. `problems` lists each one's file, key path and message")}}},
            "/api/deployments/{id}/history": {"get": {
                "summary": "The deployment's audit entries, newest first", "operationId": "getDeploymentHistory",
                "parameters": [_DEPLOYMENT_REF, _ENVIRONMENT, *_PAGING],
                "responses": {"200": _json("a page", _ref("HistoryPage")), "400": _problem("bad paging"),
                              "404": _problem("not_found")}}},
            "/api/history": {"get": {
                "summary": "All audit entries, newest first", "operationId": "getHistory",
                "parameters": [
                    {"name": "deployment", "in": "query", "schema": {"type": "string"}},
                    {"name": "source", "in": "query", "schema": {"type": "string", "enum": list(TRIGGER_SOURCES)}},
                    {"name": "actor", "in": "query", "schema": {"type": "string"}},
                    {"name": "outcome", "in": "query", "schema": {"type": "string", "enum": list(OUTCOMES)}},
                    _ENVIRONMENT, *_PAGING],
                "responses": {"200": _json("a page", _ref("HistoryPage")), "400": _problem("bad paging")}}},
            "/api/transitions/{id}": {"get": {
                "summary": "A transition with per-container results", "operationId": "getTransition",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": _json("the transition", _ref("Transition")),
                              "404": _problem("not_found: no such transition, or one of a stack outside the "
                                              "token's stacks (the same answer)")}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "security": [],
                                 "responses": {"200": _json("alive", {"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness: database and Docker reachable", "operationId": "readyz",
                                "security": [],
                                "responses": {"200": _json("ready", {"type": "object"}),
                                              "503": _json("not ready", {"type": "object"})}}},
        },
        "components": {
            "schemas": {**_SCHEMAS, **openapi_upgrades.SCHEMAS, **openapi_stacks.SCHEMAS,
                        **openapi_alerts.SCHEMAS},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "an API token (rsgo_...) with scope read, operate or admin"},
                "session": {"type": "apiKey", "in": "cookie", "name": "rsgo_session",
                            "description": "a signed-in browser session; unsafe methods also need X-CSRF-Token"},
            },
        },
        # Every operation needs a token or a session, except the probes (they say so themselves).
        "security": [{"bearerAuth": []}, {"session": []}],
    }
    document["paths"].update(openapi_windows.paths(_DEPLOYMENT_REF, _ENVIRONMENT, _problem, _json))
    document["paths"].update(openapi_upgrades.paths(_DEPLOYMENT_REF, _ENVIRONMENT, _problem, _json))
    openapi_stacks.merge(document["paths"], _DEPLOYMENT_REF, _ENVIRONMENT, _problem, _json)
    _with_auth_responses(document["paths"])
    _with_input_responses(document["paths"])
    return document
