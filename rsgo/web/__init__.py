"""Everything that speaks HTTP or HTML (docs/design.md#composition): the blueprints (api, pages,
admin, login, probes, ws), the error handlers, the JSON shapes (api_json) and the page context built
on them, the websocket hub and the live push. Views load, call the domain, render."""

from flask import current_app


def current_runtime():
    """The ``rsgo.runtime.Runtime`` of the app handling this request: the one way views reach the
    services, the hub, the login limiter and the metrics."""
    return current_app.extensions["rsgo"]
