"""Webhook failure paths (README "Webhooks") against real HTTP endpoints and a real engine: a redirect is a
failed attempt and is retried, a failure is described by its cause and never by the URL, and an attempt cut
off by a stop or a crash leaves its delivery pending for the next start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import requests

from conftest import wait_for_deployment
from rsgo.models import Webhook
from rsgo.webhooks import WebhookDispatcher
from support import ROOT, database_rows, free_port, put_mode, wait_until
from test_webhooks import Receiver, delivery, webhook_app


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def test_a_redirect_is_a_failed_attempt_and_is_retried_not_followed(make_app, make_stack, tmp_path, receiver):
    stack = make_stack()
    stack.add("api")
    receiver.script("/moved", [302, 200])
    app = webhook_app(make_app, tmp_path, f"""
        - name: moved
          url: {receiver.url('/moved')}
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    first, second = wait_until(lambda: (a := receiver.at("/moved")) and len(a) >= 2 and a, 15,
                               message="the redirected attempt and its retry")
    assert first.headers["X-RSGO-Delivery"] == second.headers["X-RSGO-Delivery"]
    row = wait_until(lambda: (r := delivery(first.json["deliveryId"])).status == "delivered" and r,
                     message="the retried delivery marked delivered")
    assert [(a["statusCode"], a["error"]) for a in json.loads(row.attempt_log)] == [(302, "HTTP 302"), (200, None)]
    # Only the webhook's own path was ever asked: a redirect is not followed anywhere.
    assert {r.path for r in receiver.received} == {"/moved"}


def test_a_failure_is_described_by_its_cause_and_never_by_the_url(make_app, make_stack, tmp_path, receiver):
    stack = make_stack()
    stack.add("api")
    secret_query = "key=url-secret-7f2c"
    closed_port = free_port()  # nothing listens there: connection refused
    receiver.script(f"/slow?{secret_query}", ["hang"])  # the receiver's paths include the query
    app = webhook_app(make_app, tmp_path, f"""
        - name: refused
          url: http://127.0.0.1:{closed_port}/hook?{secret_query}
        - name: slow
          url: {receiver.url('/slow')}?{secret_query}
        """)
    # The shipped 10 s timeout, shortened through the dispatcher's constructor so the test stays fast.
    runtime = app.extensions["rsgo"]
    runtime.webhooks.stop()
    runtime.webhooks = WebhookDispatcher(runtime.bus, runtime.settings.environment, timeout=0.5)
    runtime.webhooks.start()
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    def first_error(name):
        rows = database_rows_of(name)
        return rows and rows[0].attempts >= 1 and rows[0].last_error

    assert wait_until(lambda: first_error("refused"), message="the refused attempt") == "connection refused"
    assert wait_until(lambda: first_error("slow"), message="the timed-out attempt") == "timed out after 0.5s"
    for row in database_rows_of("refused") + database_rows_of("slow"):
        for text in (row.last_error, row.attempt_log):
            assert "127.0.0.1" not in text and secret_query not in text, text
    # The webhooks table shows an admin the URL they set; the delivery log under it never does.
    page = client.get("/admin/webhooks").get_data(as_text=True)
    log = page[page.index('<tr class="delivery"'):]
    assert "connection refused" in log and "timed out after 0.5s" in log
    assert secret_query not in log and str(closed_port) not in log


def database_rows_of(name: str):
    from rsgo.models import Webhook, WebhookDelivery

    return list(WebhookDelivery.select().join(Webhook).where(Webhook.name == name).order_by(WebhookDelivery.id))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_an_attempt_cut_off_by_a_stop_or_a_crash_is_sent_at_the_next_start(make_stack, make_server, tmp_path,
                                                                           receiver, how):
    stack = make_stack()
    stack.add("api")
    receiver.script("/chat", ["hang", 200])  # the first attempt is held open; the next one is answered
    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""\
        webhooks:
          - name: chat
            url: {receiver.url('/chat')}
            events: [mode.changed]
        """))
    server = make_server(RSGO_CONFIG=str(config)).start()
    wait_until(lambda: requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers,
                                    timeout=5).status_code == 200, 15, message="discovery")
    assert put_mode(server, stack.name, "Maintenance", reason="cut off").status_code == 200
    [held] = wait_until(lambda: receiver.at("/chat"), 15, message="the first attempt at the endpoint")

    server.kill(how)  # SIGTERM: rsgo stops its senders mid-attempt; SIGKILL: the process is gone at once

    rows = database_rows(server, "SELECT delivery_id, status, attempts FROM webhook_deliveries")
    assert rows == [(held.headers["X-RSGO-Delivery"], "pending", 0)], "the cut-off attempt is not counted"
    server.start()
    sent = wait_until(lambda: (a := receiver.at("/chat")) and len(a) == 2 and a, 15,
                      message="the pending delivery sent again by the next process")
    assert sent[1].headers["X-RSGO-Delivery"] == held.headers["X-RSGO-Delivery"] and sent[1].body == held.body
    wait_until(lambda: database_rows(server, "SELECT status, attempts FROM webhook_deliveries") == [("delivered", 1)],
               message="the delivery marked delivered after one counted attempt")


def test_a_webhook_name_declared_twice_in_the_config_uses_the_first_and_says_so(make_app, make_stack, tmp_path,
                                                                                 receiver, caplog):
    stack = make_stack()
    stack.add("api")
    app = webhook_app(make_app, tmp_path, f"""
        - name: chat
          url: {receiver.url('/first')}
        - name: chat
          url: {receiver.url('/second')}
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)
    config = tmp_path / "rsgo.yml"
    said = f"{config}: webhooks[1].name: 'chat' is used by an earlier entry; that one is used"
    assert said in caplog.text
    checked = subprocess.run([sys.executable, "-m", "rsgo.cli", "check-config"], capture_output=True, text=True,
                             env={"RSGO_CONFIG": str(config), "RSGO_DATA_DIR": str(tmp_path),
                                  "PATH": "/usr/bin:/bin"}, timeout=60, cwd=ROOT)
    assert checked.returncode == 1 and said in checked.stderr, checked.stderr

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    wait_until(lambda: receiver.at("/first"), message="the delivery to the first declaration")
    assert [(w.name, w.url) for w in Webhook.select()] == [("chat", receiver.url("/first"))]
    assert receiver.at("/second") == []
