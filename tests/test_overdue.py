"""Forgotten maintenance (README "Modes"): a real ``rsgo serve`` with a reminder of a few seconds and a check
every half second, the real Docker engine, and a real HTTP server receiving the webhooks.

A stay in Maintenance is overdue on the dashboard (its HTML and the websocket push), in the API and the
metric, and announced by exactly one ``maintenance.overdue`` per stay when the repeat is off, a second one a
repeat period later when it is on (a restart in between neither resends nor forgets); an observer's or a
window's Maintenance is not overdue while its source holds it; ``maintenanceReminder: 0`` turns it off.
"Exactly one" is asserted only after the server's own clock (the stay's ``for``) has passed two more
reminder periods, so many more checks ran.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
import textwrap

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support import ROOT, LiveSocket, put_mode, wait_until
from test_webhooks import Receiver

SECRET = "overdue-hook-secret"
CHECK = 0.5  # RSGO_OVERDUE_CHECK_INTERVAL


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def serve(make_server, tmp_path, receiver, stacks: str, reminder: float, **environ):
    """A server whose one webhook takes ``maintenance.overdue`` only, with the stack config ``stacks``."""
    config = tmp_path / "rsgo.yml"
    write_stacks(config, receiver, stacks)
    return make_server(RSGO_CONFIG=str(config), RSGO_MAINTENANCE_REMINDER=f"{reminder}s",
                       RSGO_OVERDUE_CHECK_INTERVAL=f"{CHECK}s", **environ).start()


def write_stacks(config, receiver, stacks: str) -> None:
    config.write_text(textwrap.dedent(f"""\
        webhooks:
          - name: pager
            url: {receiver.url('/overdue')}
            secret: {SECRET}
            events: [maintenance.overdue]
        stacks:
        """) + textwrap.indent(textwrap.dedent(stacks), "  "))


def detail(server, name: str) -> dict:
    response = requests.get(f"{server.url}/api/deployments/{name}", headers=server.headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def discovered(server, name: str) -> dict:
    def seen():
        response = requests.get(f"{server.url}/api/deployments/{name}", headers=server.headers, timeout=10)
        return response.status_code == 200 and response.json()["containerCounts"]["total"] == 1 and response.json()

    return wait_until(seen, 20, message=f"discovery of {name}")


def overdue_gauge(server, name: str) -> float:
    text = requests.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
    return next(sample.value for family in text_string_to_metric_families(text)
                if family.name == "rsgo_maintenance_overdue" for sample in family.samples
                if sample.labels["deployment"] == name)


def announced(receiver, name: str) -> list:
    """The maintenance.overdue deliveries for stack ``name``, each signed with the webhook's secret."""
    found = [r for r in receiver.at("/overdue") if r.json["deployment"]["name"] == name]
    for r in found:
        assert r.headers["X-RSGO-Event"] == "maintenance.overdue"
        assert r.headers["X-RSGO-Signature"] == "sha256=" + hmac.new(SECRET.encode(), r.body,
                                                                     hashlib.sha256).hexdigest()
    return found


def server_clock_passes(server, name: str, seconds: float) -> None:
    """Wait until the server's own count of ``name``'s stay (its ``for``, whole seconds) is more than ``seconds``
    further on."""
    start = detail(server, name)["overdue"]["for"]
    wait_until(lambda: detail(server, name)["overdue"]["for"] >= start + seconds + 1, seconds + 15,
               message=f"{seconds}s more of {name}'s overdue stay")


def dashboard_row(html: str, deployment_id: int) -> str:
    match = re.search(rf'<tr id="deployment-{deployment_id}".*?</tr>', html, flags=re.DOTALL)
    assert match, f"no dashboard row for deployment {deployment_id}"
    return match.group(0)


def test_a_forgotten_maintenance_is_overdue_everywhere_and_announced_once_per_stay(make_server, make_stack,
                                                                                  tmp_path, receiver):
    reminder = 2
    stack = make_stack()
    stack.add("api")
    server = serve(make_server, tmp_path, receiver, f"{stack.name}: {{}}\n", reminder,
                   RSGO_MAINTENANCE_REMINDER_REPEAT="0")
    deployment_id = discovered(server, stack.name)["id"]
    browser = server.login()
    page = LiveSocket(server, "dashboard", session=browser)
    try:
        assert put_mode(server, stack.name, "Maintenance", reason="nightly backup").status_code == 200
        entered = detail(server, stack.name)
        assert entered["overdue"] is None and overdue_gauge(server, stack.name) == 0
        actor = entered["trigger"]["actor"]

        overdue = wait_until(lambda: detail(server, stack.name)["overdue"], reminder + 10,
                             message="the stay to become overdue")
        assert overdue["mode"] == "Maintenance" and overdue["by"] == actor
        assert overdue["since"] == entered["modeChangedAt"] and overdue["for"] >= reminder
        assert detail(server, stack.name)["needsAttention"] is True
        assert overdue_gauge(server, stack.name) == 1
        row = dashboard_row(browser.get(f"{server.url}/", timeout=10).text, deployment_id)
        assert "Overdue: in Maintenance for" in row and f"by <strong>{actor}</strong>" in row
        assert 'class="deployment attention overdue"' in row
        page.wait_for(lambda text: f'id="deployment-{deployment_id}"' in text and "Overdue: in Maintenance" in text,
                      what="the row pushed as overdue")
        assert "Overdue" in browser.get(f"{server.url}/deployments/{deployment_id}", timeout=10).text

        first = wait_until(lambda: announced(receiver, stack.name), 10, message="the maintenance.overdue webhook")
        body = first[0].json
        assert (body["event"], body["mode"], body["since"], body["by"], body["reminder"]) == (
            "maintenance.overdue", "Maintenance", entered["modeChangedAt"], actor, 1)
        assert body["for"] >= reminder and body["trigger"] == entered["trigger"]["source"]
        assert body["reason"] == "nightly backup" and body["deployment"]["id"] == deployment_id

        server_clock_passes(server, stack.name, 2 * reminder + 2 * CHECK)
        assert len(announced(receiver, stack.name)) == 1  # the repeat is off: once per stay

        # Leaving ends the stay at once; coming back begins another, announced once in its turn.
        pushed = len(page.texts)
        assert put_mode(server, stack.name, "Normal").status_code == 200
        assert detail(server, stack.name)["overdue"] is None and overdue_gauge(server, stack.name) == 0
        page.wait_for(lambda text: f'id="deployment-{deployment_id}"' in text and 'data-mode="Normal"' in text
                      and "Overdue" not in text, start=pushed, what="the row pushed back to Normal")
        assert put_mode(server, stack.name, "Maintenance").status_code == 200
        again = detail(server, stack.name)
        second = wait_until(lambda: announced(receiver, stack.name)[1:], reminder + 10,
                            message="the second stay's maintenance.overdue")
        assert second[0].json["since"] == again["modeChangedAt"] != body["since"]
        assert second[0].json["reminder"] == 1
        server_clock_passes(server, stack.name, 2 * reminder + 2 * CHECK)
        assert len(announced(receiver, stack.name)) == 2
    finally:
        page.close()


def test_the_repeat_announces_again_after_its_period_and_a_restart_neither_resends_nor_forgets(
        make_server, make_stack, tmp_path, receiver):
    reminder, repeat = 2, 4
    stack = make_stack()
    stack.add("api")
    server = serve(make_server, tmp_path, receiver, f"{stack.name}: {{}}\n", reminder,
                   RSGO_MAINTENANCE_REMINDER_REPEAT=f"{repeat}s")
    discovered(server, stack.name)
    assert put_mode(server, stack.name, "Stopped", reason="decommissioning").status_code == 200

    first = wait_until(lambda: announced(receiver, stack.name), reminder + 10, message="the first reminder")
    server.stop()
    server.start()  # the same data directory: the reminder already sent is remembered
    second = wait_until(lambda: announced(receiver, stack.name)[1:], repeat + 30, message="the second reminder")

    bodies = [first[0].json, second[0].json]
    assert [b["reminder"] for b in bodies] == [1, 2] and bodies[0]["since"] == bodies[1]["since"]
    assert bodies[1]["mode"] == "Stopped" and bodies[1]["for"] - bodies[0]["for"] >= repeat
    assert detail(server, stack.name)["overdue"]["since"] == bodies[0]["since"]
    assert overdue_gauge(server, stack.name) == 1


def test_observer_and_window_maintenance_is_not_overdue_while_held_and_a_stack_can_turn_it_off(
        make_server, make_stack, tmp_path, receiver):
    reminder = 4
    observed, windowed, off, person = (make_stack(prefix) for prefix in ("obs", "win", "off", "per"))
    for stack in (observed, windowed, off, person):
        stack.add("api")
    flag = tmp_path / "maintenance.flag"
    flag.write_text("on")
    observer = f"""\
        {observed.name}:
          maintenanceObserver: {{type: file, path: {flag}, mode: exists, maintenanceValue: "true",
                                 pollingInterval: 1s}}
        """
    server = serve(make_server, tmp_path, receiver, observer + f"{off.name}: {{maintenanceReminder: 0}}\n",
                   reminder, RSGO_MAINTENANCE_REMINDER_REPEAT="0")
    for stack in (observed, windowed, off, person):
        discovered(server, stack.name)
    wait_until(lambda: detail(server, observed.name)["operationMode"] == "Maintenance", 20,
               message="the observer to enter Maintenance")
    window = requests.post(f"{server.url}/api/deployments/{windowed.name}/windows", json={"duration": "1h"},
                           headers=server.headers, timeout=60)
    assert window.status_code == 201, window.text
    wait_until(lambda: detail(server, windowed.name)["trigger"]["source"] == "schedule", 20,
               message="the window to enter Maintenance")
    assert put_mode(server, off.name, "Maintenance").status_code == 200
    assert put_mode(server, person.name, "Maintenance").status_code == 200

    # The last one in is overdue: all the others have stayed longer, and many checks ran since.
    wait_until(lambda: detail(server, person.name)["overdue"], reminder + 10, message="the person's stay overdue")
    server_clock_passes(server, person.name, 4 * CHECK)
    for stack in (observed, windowed, off):
        assert detail(server, stack.name)["overdue"] is None, stack.name
        assert overdue_gauge(server, stack.name) == 0 and announced(receiver, stack.name) == []
    assert len(announced(receiver, person.name)) == 1

    # A bad value is a problem naming its key path; the running config stays.
    config = tmp_path / "rsgo.yml"
    write_stacks(config, receiver, observer + f"{off.name}: {{maintenanceReminder: soon}}\n")
    rejected = requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30)
    assert rejected.status_code == 422
    assert {"file": str(config), "path": f"stacks.{off.name}.maintenanceReminder",
            "message": "'soon' is not a duration (like 30m or 4h), nor 0 or false to turn the reminder off"
            } in rejected.json()["problems"]

    # The observer removed from the config: its Maintenance is nobody's now, counted from that moment.
    write_stacks(config, receiver, f"{off.name}: {{maintenanceReminder: false}}\n")
    assert requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30).status_code == 200
    server_clock_passes(server, person.name, 2 * CHECK)
    assert detail(server, observed.name)["overdue"] is None  # it stayed longer than the reminder, but was held
    overdue = wait_until(lambda: detail(server, observed.name)["overdue"], reminder + 10,
                         message="the observer's orphaned Maintenance overdue")
    assert overdue["by"] == detail(server, observed.name)["trigger"]["actor"]
    assert [r.json["by"] for r in wait_until(lambda: announced(receiver, observed.name), 10)] == [overdue["by"]]
    assert detail(server, off.name)["overdue"] is None and detail(server, windowed.name)["overdue"] is None


@pytest.mark.parametrize("environ, document, expected", [
    ({}, "stacks:\n  shop: {maintenanceReminder: soon}\n",
     "stacks.shop.maintenanceReminder: 'soon' is not a duration"),
    ({}, "stacks:\n  shop: {maintenanceReminder: true}\n", "stacks.shop.maintenanceReminder: true is not a duration"),
    ({"RSGO_MAINTENANCE_REMINDER": "a while"}, "stacks: {}\n", "RSGO_MAINTENANCE_REMINDER: 'a while' is not a"),
    ({"RSGO_MAINTENANCE_REMINDER_REPEAT": "often"}, "stacks: {}\n", "RSGO_MAINTENANCE_REMINDER_REPEAT: 'often'"),
])
def test_check_config_names_a_bad_reminder(tmp_path, environ, document, expected):
    config = tmp_path / "rsgo.yml"
    config.write_text(document)
    result = subprocess.run([sys.executable, "-m", "rsgo.cli", "check-config"], capture_output=True, text=True,
                            env={"RSGO_CONFIG": str(config), "RSGO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin",
                                 **environ}, timeout=60, cwd=ROOT)
    assert result.returncode != 0
    assert expected in result.stderr
