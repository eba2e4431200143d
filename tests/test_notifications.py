"""Notifications through Apprise (README "Notifications") with real mode changes on the real engine, sent by
the real Apprise library as ``json://`` to an HTTP server in the test: one short message per event, only
the events and stacks asked for, retries of a failing receiver in the delivery log, URLs masked."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import wait_for_deployment
from rsgo.models import NotificationDelivery
from support import put_mode, wait_until

TOKEN = "tok-5f1e9a7c-never-shown"


class Receiver:
    """A real HTTP server in a thread; ``answers`` are the status codes of its answers in order (the last repeats)."""

    def __init__(self, answers=(200,)):
        self.messages: list[dict] = []
        self.answers = list(answers)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver.messages.append({"path": self.path, **body})
                answer = receiver.answers[min(len(receiver.messages), len(receiver.answers)) - 1]
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(answers=(200,)) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def notify_app(make_app, tmp_path, notifications: str):
    config = tmp_path / "rsgo.yml"
    config.write_text("notifications:\n" + textwrap.indent(textwrap.dedent(notifications), "  "))
    app = make_app(RSGO_CONFIG=str(config), RSGO_PUBLIC_URL="https://rsgo.example.com")
    app.extensions["rsgo"].notifications.base_delay = 0.2  # the test's backoff: 0.2 s, 0.4 s, 0.8 s
    return app


def test_each_mode_change_is_one_short_message_to_the_entries_that_ask_for_it(make_app, make_stack, tmp_path,
                                                                             receivers):
    shop, other = make_stack("shop"), make_stack("other")
    shop.add("db", labels={"rsgo.maintenance": "ignore"})
    shop.add("api")
    other.add("api")
    chat, failures = receivers(), receivers()
    app = notify_app(make_app, tmp_path, f"""
        - name: chat
          url: {chat.url('/hooks/' + TOKEN)}
          events: [mode.changed]
          stacks: [{shop.name}]
        - name: failures-only
          url: {failures.url('/failures')}
          events: [transition.failed]
        """)
    client = app.test_client()
    shop_id = wait_for_deployment(client, shop.name, 2)["id"]
    wait_for_deployment(client, other.name, 1)
    actor = app.config["TEST_ACTOR"]

    assert put_mode(client, shop.name, "Maintenance", reason="nightly backup").status_code == 200
    assert put_mode(client, other.name, "Maintenance", reason="not asked for").status_code == 200
    [entered] = wait_until(lambda: chat.messages, message="the message about entering Maintenance")

    assert entered["path"] == f"/hooks/{TOKEN}" and entered["title"] == f"rsgo: {shop.name}"
    assert entered["message"] == (
        f"🔧 {shop.name} entered Maintenance — {actor}: nightly backup "
        f"(1 of 2 stopped, {shop.container_name('db')} keeps running)\n"
        f"https://rsgo.example.com/deployments/{shop_id}")

    assert put_mode(client, shop.name, "Normal").status_code == 200
    wait_until(lambda: len(chat.messages) == 2, message="the message about leaving")
    assert chat.messages[1]["message"].startswith(f"✅ {shop.name} is back to Normal — {actor} (1 of 1 started)")
    wait_until(lambda: NotificationDelivery.select().where(NotificationDelivery.status == "delivered").count() == 2,
               message="both deliveries logged as delivered")
    assert len(chat.messages) == 2 and failures.messages == []  # once per event; other stack, other events: none
    rows = list(NotificationDelivery.select())
    assert {row.notification for row in rows} == {"chat"}
    # The URL's token is nowhere rsgo shows or keeps it: not the delivery log, not the admin page.
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert TOKEN not in page and TOKEN not in " ".join(row.target for row in rows)
    assert "nightly backup" in page and rows[0].target.startswith("json://127.0.0.1:")


def test_a_failing_receiver_is_retried_with_backoff_and_the_log_shows_each_attempt(make_app, make_stack, tmp_path,
                                                                                   receivers, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="urllib3")  # as rsgo serve keeps it (rsgo/cli.py): it logs URLs
    stack = make_stack()
    stack.add("api")
    flaky = receivers([500, 500, 200])
    app = notify_app(make_app, tmp_path, f"""
        - name: flaky
          url: {flaky.url('/flaky/' + TOKEN)}
        """)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance", reason="retry me").status_code == 200

    row = wait_until(lambda: (r := NotificationDelivery.get_or_none(NotificationDelivery.status == "delivered")) and r,
                     message="the delivery delivered after its retries")
    assert len(flaky.messages) == 3 and len({m["message"] for m in flaky.messages}) == 1
    attempts = json.loads(row.attempt_log)
    assert [bool(a["error"]) for a in attempts] == [True, True, False] and row.attempts == 3
    assert all("500" in a["error"] and TOKEN not in a["error"] for a in attempts[:2])
    assert "retrying in 0.2s" in caplog.text and TOKEN not in caplog.text  # not even at DEBUG
    page = client.get("/admin/webhooks").get_data(as_text=True)
    assert "retry me" in page and page.count("<li>") >= 3


def test_send_test_sends_now_and_logs_it(make_app, tmp_path, receivers):
    chat = receivers()
    app = notify_app(make_app, tmp_path, f"""
        - name: chat
          url: {chat.url('/t/' + TOKEN)}
        """)
    client = app.test_client()

    answer = client.post("/admin/notifications/test", data={"name": "chat"})

    assert answer.status_code == 200 and "✓ Delivered" in answer.get_data(as_text=True)
    [sent] = chat.messages
    assert sent["message"].startswith("🧪 A test from rsgo's admin page")
    assert NotificationDelivery.get().event == "notification.test"
    assert client.post("/admin/notifications/test", data={"name": "nope"}).status_code == 404


def test_config_problems_name_the_key_and_never_the_url(tmp_path):
    from rsgo.notification_config import mask, scrub
    from rsgo.stack_config import load_config

    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""\
        notifications:
          - url: nosuchservice://{TOKEN}
          - url: slack://${{SLACK_TOKENS}}
          - url: json://127.0.0.1:9/ok
            events: [mode.changed, lunch.served]
          - url: json://127.0.0.1:9/ok
            stacks: shop
        """))

    problems = [str(p) for p in load_config(str(config), environ={}).problems]

    assert [p.split(": ", 2)[1] for p in problems] == ["notifications[0].url", "notifications[1].url",
                                                      "notifications[2].events", "notifications[3].stacks"]
    assert "unknown, or a part it needs is missing" in problems[0] and TOKEN not in " ".join(problems)
    assert "unresolved ${SLACK_TOKENS}" in problems[1]
    # Masked: Apprise's own privacy form, and a token in the path cut to its first character.
    assert mask(f"json://user:pw@127.0.0.1:8080/hooks/{TOKEN}?x=1") == "json://user:***@127.0.0.1:8080/h***/t***"
    assert TOKEN[4:] not in mask(f"slack://T1JJ3T3L2/A1BRTD4JD/{TOKEN}")
    # An error Apprise logged is scrubbed of every part of the URL that may be a secret.
    slack = f"slack://T1JJ3T3L2/A1BRTD4JD/{TOKEN}"
    scrubbed = scrub(f"Failed to send to https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/{TOKEN}: 404", slack)
    assert TOKEN not in scrubbed and "T1JJ3T3L2" not in scrubbed and scrubbed.endswith(": 404")
    assert "pw-9d" not in scrub("login failed for bob:pw-9d", "mailto://bob:pw-9d@mail.example.com")


def test_a_failing_observer_and_its_recovery_are_told_in_a_line_each(make_app, make_stack, tmp_path, receivers):
    stack = make_stack()
    stack.add("api")
    chat = receivers()
    config = tmp_path / "rsgo.yml"
    # The observer reads a file; a directory in its place is an error at each check, until a file replaces it.
    config.write_text(textwrap.dedent(f"""\
        notifications:
          - url: {chat.url('/chat')}
            events: [observer.failing, observer.recovered]
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: file, path: {tmp_path / 'state'}, mode: content, maintenanceValue: "on",
                                  pollingInterval: 1s, failureThreshold: 2}}
        """))
    (tmp_path / "state").mkdir()
    app = make_app(RSGO_CONFIG=str(config))
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    [failing] = wait_until(lambda: chat.messages, timeout=20, message="the observer.failing message")
    assert failing["message"].startswith(f"⚠️ {stack.name}: observer ") and "failing (2 in a row): " in failing[
        "message"]

    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("off")

    wait_until(lambda: len(chat.messages) == 2, timeout=20, message="the observer.recovered message")
    assert chat.messages[1]["message"] == f"✔️ {stack.name}: observer {failing['message'].split()[3]} works again " \
                                          "(reads “off”)"


def test_a_forgotten_maintenance_is_told_with_how_long_and_who(make_app, make_stack, tmp_path, receivers):
    stack = make_stack()
    stack.add("api")
    chat = receivers()
    config = tmp_path / "rsgo.yml"
    config.write_text(f"notifications:\n  - url: {chat.url('/chat')}\n    events: [maintenance.overdue]\n")
    app = make_app(RSGO_CONFIG=str(config), RSGO_MAINTENANCE_REMINDER="2s", RSGO_MAINTENANCE_REMINDER_REPEAT="0",
                   RSGO_OVERDUE_CHECK_INTERVAL="1s")
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance", reason="swap disks").status_code == 200

    [overdue] = wait_until(lambda: chat.messages, timeout=20, message="the maintenance.overdue message")
    text = overdue["message"]
    assert text.startswith(f"⏰ {stack.name} still in Maintenance after ") and text.endswith(
        f" s — {app.config['TEST_ACTOR']}: swap disks")
    assert 2 <= int(text.split(" after ")[1].split()[0]) < 30


def test_a_failed_transition_is_told_with_its_error(make_app, make_stack, tmp_path, receivers):
    stack = make_stack("shop")
    stack.add("api")
    stack.add("broken")
    failures = receivers()
    app = notify_app(make_app, tmp_path, f"""
        - name: failures-only
          url: {failures.url('/failures')}
          events: [transition.failed]
        """)
    client = app.test_client()
    deployment_id = wait_for_deployment(client, stack.name, 2)["id"]
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    # The stopped container is replaced by one whose command does not exist: starting it fails.
    stack.containers["broken"].remove(force=True)
    stack.add("broken", command=["/does/not/exist"], running=False)
    assert put_mode(client, stack.name, "Normal", reason="after backup").status_code == 502

    [failed] = wait_until(lambda: failures.messages, message="the message about the failed transition")
    text, link = failed["message"].split("\n")
    assert text.startswith(f"❌ {stack.name} failed going to Normal — {app.config['TEST_ACTOR']}: after backup (")
    assert "/does/not/exist" in text and link == f"https://rsgo.example.com/deployments/{deployment_id}"
    assert failed["title"] == f"rsgo: {stack.name}" and len(failures.messages) == 1  # not a mode.changed too
