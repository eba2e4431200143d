"""The maintenance-window part of the OpenAPI document (README "Maintenance windows"): listing,
adding and removing a deployment's windows."""

from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def paths(deployment_ref: dict, environment: dict, problem, json_answer) -> dict:
    """``problem`` and ``json_answer`` build responses as the rest of the document does."""
    return {
        "/api/deployments/{id}/windows": {
            "get": {"summary": "The deployment's maintenance windows with their next 5 occurrences",
                    "operationId": "listWindows", "parameters": [deployment_ref, environment],
                    "responses": {"200": json_answer("windows", {"type": "object", "properties": {
                        "items": {"type": "array", "items": _ref("Window")}}}),
                        "404": problem("not_found")}},
            "post": {"summary": "Add a window: one-time, recurring, or {duration} from now (ad hoc)",
                     "operationId": "addWindow", "parameters": [deployment_ref, environment],
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": _ref("WindowRequest")}}},
                     "responses": {"201": json_answer("the window", _ref("Window")),
                                   "400": problem("invalid_request naming the field"),
                                   "404": problem("not_found"), "415": problem("unsupported_media_type")}}},
        "/api/deployments/{id}/windows/{windowId}": {"delete": {
            "summary": "Remove a window added through the API or UI", "operationId": "deleteWindow",
            "description": "A window that alone holds the stack's Maintenance (active now, no other window "
                           "active) ends it: the stack returns to Normal before the answer, recorded as the "
                           "caller's change with `reason` (default: \"removed maintenance window NAME\"). "
                           "Give the reason as `?reason=` or as a JSON body `{\"reason\": \"...\"}`, not both. "
                           "If that change is refused (409), the window stays.",
            "parameters": [deployment_ref, environment,
                           {"name": "windowId", "in": "path", "required": True, "schema": {"type": "integer"}},
                           {"name": "reason", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "why, for the history of the change to Normal the removal causes"}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
            "responses": {"204": {"description": "removed (and, if it held the Maintenance, the stack is Normal "
                                                 "again, or Failed if starting its containers failed)"},
                          "400": problem("invalid_request: a bad reason, or it was given twice"),
                          "404": problem("not_found"),
                          "409": problem("window_from_config: change it in the config file; or "
                                          "transition_in_progress: the stack is changing, the window stays")}}}
    }
