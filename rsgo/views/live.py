"""``/ws``: one websocket per open page; it only ever receives HTML fragments."""

from __future__ import annotations

import queue
import socket

from flask import current_app, request
from flask_sock import ConnectionClosed, Sock

from rsgo.auth import current

sock = Sock()

# How often an idle connection checks whether the browser is still there.
IDLE_CHECK_SECONDS = 2


@sock.route("/ws")
def live_updates(ws):
    hub = current_app.extensions["rsgo_live"].hub
    # The page says which regions it shows (?topics=dashboard or deployment:5); it gets only those,
    # rendered for what its user may do (operators see mode buttons, viewers do not).
    audience = "operate" if current().can("operate") else "read"
    topics = {f"{t}|{audience}" for t in request.args.get("topics", "").split(",") if t}
    client = hub.register(topics)
    client.on_drop = lambda: _abort(ws)
    try:
        while client.alive and ws.connected:
            try:
                message = client.messages.get(timeout=IDLE_CHECK_SECONDS)
            except queue.Empty:
                continue
            ws.send(message)
    except (ConnectionClosed, OSError):
        pass  # gone, or dropped by the hub (which shut the socket under a blocked send)
    finally:
        hub.unregister(client)


def _abort(ws) -> None:
    """Shut the connection of a client the hub dropped: a send blocked on it fails at once, and the
    browser, seeing the connection close, reconnects and re-fetches its regions."""
    try:
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
