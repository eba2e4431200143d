"""Webhooks (README "Webhooks") against a real local HTTP server, with real mode changes on a real Docker engine:
the body and its signature, retries with backoff, a hanging endpoint, the delivery log, crash recovery."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import textwrap
import threading
import time
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for_deployment
from rsgo.models import Webhook, WebhookDelivery
from support import put_mode, wait_until

SECRET = "whsec-9f3c1e-do-not-show"


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes
    at: float  # monotonic

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A real HTTP server in a thread. ``script(path, [500, 200])`` sets a path's answers in order
    (the last one repeats; "hang" reads the request and never answers); other paths answer 200."""

    def __init__(self):
        self.received: list[Received] = []
        self._scripts: dict[str, list] = {}
        self._lock = threading.Lock()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    earlier = sum(1 for r in receiver.received if r.path == self.path)
                    receiver.received.append(Received(self.path, self.headers, body, time.monotonic()))
                    script = receiver._scripts.get(self.path, [200])
                    answer = script[min(earlier, len(script) - 1)]
                if answer == "hang":
                    receiver.release.wait(60)
                    self.close_connection = True
                    return
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, path: str, answers: list) -> None:
        self._scripts[path] = answers

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def write_config(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def webhook_app(make_app, tmp_path, webhooks: str, stacks: str = "", **options):
    config = write_config(tmp_path / "rsgo.yml", "webhooks:\n" + textwrap.indent(textwrap.dedent(webhooks), "  ")
                          + ("stacks:\n" + textwrap.indent(textwrap.dedent(stacks), "  ") if stacks else ""))
    return make_app(RSGO_CONFIG=str(config), **options)


def expected_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def delivery(delivery_id: str) -> WebhookDelivery:
    return WebhookDelivery.get(WebhookDelivery.delivery_id == delivery_id)


def test_a_mode_change_is_posted_with_every_field_and_a_valid_signature(make_app, make_stack, tmp_path, receiver):
    stack = make_stack()
    stack.add("api")
    app = webhook_app(make_app, tmp_path, f"""
        - name: signed
          url: {receiver.url('/signed')}
          secret: {SECRET}
          events: [mode.changed]
        - name: unsigned
          url: {receiver.url('/unsigned')}
        - name: failures-only
          url: {receiver.url('/failures')}
          events: [transition.failed]
        """)
    client = app.test_client()
    deployment = wait_for_deployment(client, stack.name, 1)
    before = dt.datetime.now(dt.UTC)

    response = put_mode(client, stack.name, "Maintenance", reason="nightly backup")

    assert response.status_code == 200
    transition_id = response.json["transition"]["id"]
    [sent] = wait_until(lambda: receiver.at("/signed"), message="the signed webhook's request")
    body = sent.json
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["X-RSGO-Event"] == "mode.changed"
    assert sent.headers["X-RSGO-Delivery"] == body["deliveryId"]
    assert sent.headers["X-RSGO-Timestamp"] == body["timestamp"]
    assert hmac.compare_digest(sent.headers["X-RSGO-Signature"], expected_signature(sent.body))
    assert body["event"] == "mode.changed"
    assert body["deployment"] == {"id": deployment["id"], "name": stack.name, "environment": "local"}
    assert (body["previousMode"], body["newMode"], body["requestedMode"], body["outcome"]) == (
        "Normal", "Maintenance", "Maintenance", "succeeded")
    assert (body["trigger"], body["actor"], body["reason"]) == ("api", app.config["TEST_ACTOR"], "nightly backup")
    assert body["observedValue"] is None and body["error"] is None
    assert body["transitionId"] == transition_id
    sent_at = dt.datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= sent_at <= dt.datetime.now(dt.UTC)
    # The signature covers the raw body: one changed byte (another timestamp, say) no longer verifies.
    tampered = sent.body.replace(body["timestamp"].encode(), b"2000-01-01T00:00:00.000Z")
    assert not hmac.compare_digest(sent.headers["X-RSGO-Signature"], expected_signature(tampered))
    wait_until(lambda: delivery(body["deliveryId"]).status == "delivered", message="the delivery marked delivered")
    assert delivery(body["deliveryId"]).body.encode() == sent.body

    [plain] = wait_until(lambda: receiver.at("/unsigned"), message="the unsigned webhook's request")
    assert plain.json["event"] == "mode.changed" and "X-RSGO-Signature" not in plain.headers
    # Deliveries are written before the PUT answers: the transition.failed-only webhook got none.
    failures_only = Webhook.get(Webhook.name == "failures-only")
    assert WebhookDelivery.select().where(WebhookDelivery.webhook == failures_only).count() == 0


def test_a_500_is_retried_and_delivered_once_and_the_log_shows_each_attempt(make_app, make_stack, tmp_path,
                                                                           receiver, caplog):
    caplog.set_level(logging.DEBUG)
    stack = make_stack()
    stack.add("api")
    receiver.script("/flaky", [500, 200])
    app = webhook_app(make_app, tmp_path, f"""
        - name: flaky-chat
          url: {receiver.url('/flaky')}
          secret: {SECRET}
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    first, second = wait_until(lambda: receiver.at("/flaky") if len(receiver.at("/flaky")) >= 2 else None,
                               message="the first attempt and its retry")
    assert first.body == second.body  # the same delivery, byte for byte, so the same signature
    assert first.headers["X-RSGO-Delivery"] == second.headers["X-RSGO-Delivery"]
    assert hmac.compare_digest(second.headers["X-RSGO-Signature"], expected_signature(second.body))
    assert 0.9 <= second.at - first.at < 1.8, "the first retry waits the 1 s backoff"
    row = wait_until(lambda: (r := delivery(first.json["deliveryId"])).status == "delivered" and r,
                     message="the delivery marked delivered")
    assert (row.attempts, row.last_status_code, row.last_error) == (2, 200, None)
    assert row.delivered_at is not None
    # A later delivery to the same endpoint gets through; the first one was not sent a third time.
    assert put_mode(client, stack.name, "Normal").status_code == 200
    wait_until(lambda: len(receiver.at("/flaky")) == 3, message="the Normal delivery")
    ids = [r.headers["X-RSGO-Delivery"] for r in receiver.at("/flaky")]
    assert ids.count(first.json["deliveryId"]) == 2

    page = client.get("/admin/webhooks").get_data(as_text=True)
    [row_html] = [part for part in page.split('<tr class="delivery"') if first.json["deliveryId"] in part]
    assert "HTTP 500" in row_html and "HTTP 200" in row_html and "delivered" in row_html
    assert row_html.index("HTTP 500") < row_html.index("HTTP 200")
    assert "flaky-chat" in page and "••••" in page
    assert SECRET not in page
    assert SECRET not in caplog.text
    assert "flaky-chat" in caplog.text  # the webhook was logged, by name


def test_a_hanging_endpoint_does_not_delay_transitions_or_other_webhooks(make_app, make_stack, receiver):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    app = make_app()
    client = app.test_client()
    wait_for_deployment(client, stack.name, 2)

    def fastest(rounds: int = 3) -> dict[str, float]:
        """The fastest of a few equal PUTs per mode: the Docker engine's own jitter is not what is measured."""
        durations = {"Maintenance": [], "Normal": []}
        for _ in range(rounds):
            for mode in durations:
                began = time.monotonic()
                assert put_mode(client, stack.name, mode).status_code == 200
                durations[mode].append(time.monotonic() - began)
        return {mode: min(values) for mode, values in durations.items()}

    without = fastest()
    receiver.script("/hang", ["hang"])
    for name, path in (("dead-end", "/hang"), ("chat", "/ok")):
        answer = client.post("/admin/webhooks", data={"name": name, "url": receiver.url(path),
                                                      "events": ["mode.changed", "transition.failed"]})
        assert answer.status_code == 302, answer.get_data(as_text=True)

    with_hang = fastest()

    # A sender waiting on the dead endpoint would add its 10 s timeout to every PUT.
    for mode in ("Maintenance", "Normal"):
        assert with_hang[mode] - without[mode] < 0.5, (with_hang, without)
    wait_until(lambda: receiver.at("/hang"), message="a request at the hanging endpoint")
    # The other webhook got all six deliveries, in order, while the dead endpoint holds its own
    # (one attempt at a time, each given up after the 10 s timeout, then retried with backoff).
    wait_until(lambda: len(receiver.at("/ok")) == 6, message="the other webhook's deliveries")
    assert [r.json["newMode"] for r in receiver.at("/ok")] == ["Maintenance", "Normal"] * 3
    hanging = WebhookDelivery.select().join(Webhook).where(Webhook.name == "dead-end")
    assert [d.status for d in hanging] == ["pending"] * 6


def test_a_delivery_that_keeps_failing_is_given_up_after_three_retries_with_backoff(make_app, make_stack, tmp_path,
                                                                                  receiver):
    stack = make_stack()
    stack.add("api")
    receiver.script("/down", [503])
    app = webhook_app(make_app, tmp_path, f"""
        - name: down
          url: {receiver.url('/down')}
          events: [mode.changed]
        """)
    # The shipped schedule (1 s, 2 s, 4 s, then given up), not a shortened one: about 7 s of waiting.
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    attempts = wait_until(lambda: (a := receiver.at("/down")) and len(a) == 4 and a, 20, message="four attempts")
    gaps = [later.at - earlier.at for earlier, later in zip(attempts, attempts[1:], strict=False)]
    # Two-sided: a backoff much slower than shipped fails too (not only a shorter one).
    assert all(expected <= gap < 1.5 * expected + 0.3 for gap, expected in zip(gaps, (1, 2, 4), strict=True)), gaps
    row = wait_until(lambda: (r := delivery(attempts[0].json["deliveryId"])).status == "failed" and r,
                     message="the delivery marked failed")
    assert (row.attempts, row.last_status_code, row.last_error, row.delivered_at) == (4, 503, "HTTP 503", None)
    assert [a["statusCode"] for a in json.loads(row.attempt_log)] == [503] * 4
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    deliveries = {s.labels["result"]: s.value for s in families["rsgo_webhook_deliveries"].samples
                  if s.name == "rsgo_webhook_deliveries_total"}
    assert deliveries == {"delivered": 0, "failed": 1}


def test_a_failed_transition_sends_transition_failed(make_app, make_stack, tmp_path, receiver):
    stack = make_stack()
    stack.add("api")
    stack.add("broken")
    app = webhook_app(make_app, tmp_path, f"""
        - name: incidents
          url: {receiver.url('/incidents')}
          secret: {SECRET}
          events: [transition.failed, mode.changed]
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    stack.containers["broken"].remove(force=True)
    stack.add("broken", command=["/does/not/exist"], running=False)

    response = put_mode(client, stack.name, "Normal", reason="after backup")

    assert response.status_code == 502
    def failed_one():
        return [r for r in receiver.at("/incidents") if r.headers["X-RSGO-Event"] == "transition.failed"]
    [failed] = wait_until(failed_one, message="the transition.failed delivery")
    body = failed.json
    assert hmac.compare_digest(failed.headers["X-RSGO-Signature"], expected_signature(failed.body))
    assert (body["event"], body["previousMode"], body["newMode"], body["requestedMode"], body["outcome"]) == (
        "transition.failed", "Maintenance", "Failed", "Normal", "failed")
    assert (body["trigger"], body["reason"], body["transitionId"]) == ("api", "after backup",
                                                                     response.json["transition"]["id"])
    assert "/does/not/exist" in body["error"] and stack.container_name("broken") in body["error"]
    changes = wait_until(lambda: len(modes := [r.json for r in receiver.at("/incidents")
                                               if r.json["event"] == "mode.changed"]) == 2 and modes,
                         message="both mode.changed deliveries")
    assert sorted((c["previousMode"], c["newMode"]) for c in changes) == [("Maintenance", "Failed"),
                                                                          ("Normal", "Maintenance")]


def test_an_observer_failing_and_recovering_is_announced(make_app, make_stack, tmp_path, receiver):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("off")
    app = webhook_app(make_app, tmp_path, f"""
        - name: ops
          url: {receiver.url('/ops')}
          secret: {SECRET}
        """, stacks=f"""
        {stack.name}:
          maintenanceObserver:
            type: file
            name: flag-file
            path: {value}
            mode: content
            maintenanceValue: "on"
            normalValue: "off"
            failureThreshold: 1
            pollingInterval: 1h
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)
    check = f"/api/deployments/{stack.name}/observer/check"

    def events_sent(event: str, count: int = 1):
        return wait_until(lambda: len(sent := [r.json for r in receiver.at("/ops") if r.json["event"] == event])
                          == count and sent, message=f"{count} {event} deliveries")

    value.write_text("on")
    assert client.post(check).json["lastDecision"] == "maintenance"
    [entered] = events_sent("mode.changed")
    assert (entered["newMode"], entered["trigger"], entered["actor"], entered["observedValue"]) == (
        "Maintenance", "observer", "flag-file", "on")

    value.write_text("banana")
    assert client.post(check).json["failing"] is True
    [failing] = events_sent("observer.failing")
    assert failing["deployment"]["name"] == stack.name and failing["mode"] == "Maintenance"
    assert failing["observer"]["name"] == "flag-file" and failing["observer"]["failures"] == 1
    assert "banana" in failing["observer"]["error"]

    value.write_text("off")
    assert client.post(check).json["failing"] is False
    [recovered] = events_sent("observer.recovered")
    assert recovered["observer"]["name"] == "flag-file" and recovered["observer"]["lastValue"] == "off"
    left = events_sent("mode.changed", 2)[1]
    assert (left["previousMode"], left["newMode"], left["observedValue"]) == ("Maintenance", "Normal", "off")
    for sent in receiver.at("/ops"):
        assert hmac.compare_digest(sent.headers["X-RSGO-Signature"], expected_signature(sent.body))


def test_deliveries_a_process_recorded_but_never_sent_are_sent_at_the_next_start(make_app, make_stack, tmp_path,
                                                                                 receiver):
    stack = make_stack()
    stack.add("api")
    webhooks = f"""
        - name: chat
          url: {receiver.url('/chat')}
        """
    stacks = f"{stack.name}:\n"
    # A process that records deliveries but never gets to send them (its senders never started); a real
    # crash during an attempt is test_webhook_failures.py's.
    crashed = webhook_app(make_app, tmp_path, webhooks, stacks=stacks, background=False)
    crashed.extensions["rsgo"].environments.resync_all()
    assert put_mode(crashed.test_client(), stack.name, "Maintenance").status_code == 200
    [pending] = list(WebhookDelivery.select())
    assert (pending.status, pending.attempts) == ("pending", 0)
    assert receiver.at("/chat") == []

    webhook_app(make_app, tmp_path, webhooks, stacks=stacks)

    [sent] = wait_until(lambda: receiver.at("/chat"), message="the pending delivery sent by the next process")
    assert sent.headers["X-RSGO-Delivery"] == pending.delivery_id
    assert sent.body == pending.body.encode()
    wait_until(lambda: delivery(pending.delivery_id).status == "delivered", message="the delivery marked delivered")


def test_config_webhooks_follow_the_file_and_admin_webhooks_stay(make_app, tmp_path, receiver):
    app = webhook_app(make_app, tmp_path, f"""
        - name: chat
          url: {receiver.url('/chat')}
          secret: {SECRET}
        - name: old
          url: {receiver.url('/old')}
        """, background=False)
    client = app.test_client()
    assert client.post("/admin/webhooks", data={"name": "pager", "url": receiver.url("/pager"),
                                                "secret": "pager-secret-xyz",
                                                "events": ["transition.failed"]}).status_code == 302
    refused = client.post("/admin/webhooks", data={"name": "chat", "url": receiver.url("/x"),
                                                   "events": ["mode.changed"]})
    assert refused.status_code == 400 and "already exists" in refused.get_data(as_text=True)
    config_hook = Webhook.get(Webhook.name == "chat")
    refused = client.post(f"/admin/webhooks/{config_hook.id}/delete")
    assert refused.status_code == 400 and "config file" in refused.get_data(as_text=True)

    write_config(tmp_path / "rsgo.yml", f"""
        webhooks:
          - name: chat
            url: {receiver.url('/chat-v2')}
            events: [mode.changed]
        """)
    assert client.post("/api/config/reload").status_code == 200

    hooks = {h.name: h for h in Webhook.select()}
    assert set(hooks) == {"chat", "pager"}
    assert (hooks["chat"].id, hooks["chat"].url, hooks["chat"].secret, hooks["chat"].event_list) == (
        config_hook.id, receiver.url("/chat-v2"), None, ["mode.changed"])
    assert (hooks["pager"].origin, hooks["pager"].event_list) == ("ui", ["transition.failed"])
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert "pager-secret-xyz" not in page and SECRET not in page
    assert client.post(f"/admin/webhooks/{hooks['pager'].id}/delete").status_code == 302
    assert [h.name for h in Webhook.select()] == ["chat"]
