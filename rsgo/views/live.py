"""``/ws``: one websocket per open page; it only ever receives HTML fragments."""

from __future__ import annotations

import queue

from flask import current_app, request
from flask_sock import ConnectionClosed, Sock

sock = Sock()

# How often an idle connection checks whether the browser is still there.
IDLE_CHECK_SECONDS = 2


@sock.route("/ws")
def live_updates(ws):
    hub = current_app.extensions["rsgo_live"].hub
    # The page says which regions it shows (?topics=dashboard or deployment:5); it gets only those.
    topics = {t for t in request.args.get("topics", "").split(",") if t}
    client = hub.register(topics)
    try:
        while client.alive and ws.connected:
            try:
                message = client.messages.get(timeout=IDLE_CHECK_SECONDS)
            except queue.Empty:
                continue
            ws.send(message)
    except ConnectionClosed:
        pass
    finally:
        hub.unregister(client)
