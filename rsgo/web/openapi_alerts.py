"""The Alertmanager part of the OpenAPI document (README "Alertmanager"): the silence a deployment's
answer carries."""

from __future__ import annotations

_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_TEXT_OR_NULL = {"type": ["string", "null"]}

SCHEMAS = {
    "Silence": {
        "type": "object",
        "description": "The stack's Alertmanager silence: created in Maintenance, Stopped and Migrating, expired "
                       "when it leaves; retried in the background while pending (null: never silenced)",
        "required": ["state", "action", "id", "endsAt", "error"],
        "properties": {
            "state": {"type": "string", "enum": ["silenced", "pending", "expired"]},
            "action": {"type": "string", "enum": ["silence", "expire"],
                       "description": "what rsgo wants of it; with state pending, what is being retried"},
            "id": {**_TEXT_OR_NULL, "description": "Alertmanager's silence id"},
            "alertmanager": {"type": "string", "description": "its URL, without credentials"},
            "endsAt": {**_TIME_OR_NULL, "description": "the window's end, else a horizon rsgo renews"},
            "error": {**_TEXT_OR_NULL, "description": "the last attempt's error while pending"},
            "failures": {"type": "integer"},
            "transitionId": {"type": ["integer", "null"], "description": "the transition that entered the mode"},
            "updatedAt": _TIME_OR_NULL,
        },
    },
}

DEPLOYMENT_PROPERTIES = {"silence": {"oneOf": [{"$ref": "#/components/schemas/Silence"}, {"type": "null"}]}}
