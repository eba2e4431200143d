"""Alertmanager silences (README "Alertmanager") against a real Alertmanager, with real mode changes on the
real engine: a silence with the configured matchers while the stack is in Maintenance, expired when it
leaves; an Alertmanager that is down never holds a transition, and the silence follows once it is back."""

from __future__ import annotations

import datetime as dt
import textwrap
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for_deployment
from prometheus_stack import Alertmanager
from support import LiveSocket, put_mode, wait_until


@pytest.fixture
def alertmanager(tmp_path):
    process = Alertmanager(tmp_path / "alertmanager")
    yield process
    process.stop()


def silence_app(make_app, tmp_path, url: str, stacks: str = ""):
    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""\
        alertmanager:
          url: {url}
          matchers: {{deployment: "{{stack}}", env: "{{environment}}"}}
        """) + stacks)
    app = make_app(RSGO_CONFIG=str(config), RSGO_PUBLIC_URL="https://rsgo.example.com")
    # The test's backoff: retries after 0.2 s, 0.4 s … at most 1 s apart (README: 1 s … 1 min).
    app.extensions["rsgo"].silences.base_delay, app.extensions["rsgo"].silences.max_delay = 0.2, 1.0
    return app


def silence_of(client, deployment_id: int) -> dict | None:
    return client.get(f"/api/deployments/{deployment_id}").json["silence"]


def pending_metric(client, stack: str) -> float:
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return sum(sample.value for family in families if family.name == "rsgo_alertmanager_silence_pending"
               for sample in family.samples if sample.labels.get("deployment") == stack)


def test_maintenance_creates_a_silence_with_the_matchers_and_leaving_expires_it(make_app, make_stack, tmp_path,
                                                                              alertmanager):
    alertmanager.start()
    stack = make_stack()
    stack.add("api")
    app = silence_app(make_app, tmp_path, alertmanager.url)
    client = app.test_client()
    deployment = wait_for_deployment(client, stack.name, 1)

    assert put_mode(client, stack.name, "Maintenance", reason="nightly backup").status_code == 200

    shown = wait_until(lambda: (s := silence_of(client, deployment["id"])) and s["state"] == "silenced" and s,
                       timeout=30, message="the API to show the silence")
    silence = alertmanager.silence(shown["id"])
    assert silence["status"]["state"] == "active"
    assert sorted((m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]) == [
        ("deployment", stack.name, False, True), ("env", "local", False, True)]
    assert silence["createdBy"] == app.config["TEST_ACTOR"]
    assert "nightly backup" in silence["comment"]
    assert f"https://rsgo.example.com/deployments/{deployment['id']}" in silence["comment"]
    # No window holds the stack: the silence ends after the sliding horizon (1 h), which rsgo renews.
    ends = dt.datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=55) < ends - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    assert shown["action"] == "silence" and shown["error"] is None and shown["transitionId"] is not None
    page = client.get(f"/deployments/{deployment['id']}").get_data(as_text=True)
    assert "🔕 silenced" in page and shown["id"] in page

    assert put_mode(client, stack.name, "Normal").status_code == 200

    wait_until(lambda: alertmanager.silence(shown["id"])["status"]["state"] == "expired", timeout=30,
               message="Alertmanager to show the silence expired")
    expired = wait_until(lambda: (s := silence_of(client, deployment["id"])) and s["state"] == "expired" and s,
                         message="the API to show the silence expired")
    assert expired["id"] == shown["id"] and expired["action"] == "expire"
    assert [s["id"] for s in alertmanager.silences() if s["status"]["state"] == "active"] == []


def test_a_stack_with_alertmanager_false_is_not_silenced(make_app, make_stack, tmp_path, alertmanager):
    alertmanager.start()
    quiet, loud = make_stack("q"), make_stack("l")
    quiet.add("api")
    loud.add("api")
    app = silence_app(make_app, tmp_path, alertmanager.url, f"stacks:\n  {quiet.name}: {{alertmanager: false}}\n")
    client = app.test_client()
    quiet_id = wait_for_deployment(client, quiet.name, 1)["id"]
    loud_id = wait_for_deployment(client, loud.name, 1)["id"]

    assert put_mode(client, quiet.name, "Maintenance").status_code == 200
    assert put_mode(client, loud.name, "Maintenance").status_code == 200

    wait_until(lambda: (s := silence_of(client, loud_id)) and s["state"] == "silenced", timeout=30,
               message="the other stack's silence")
    assert silence_of(client, quiet_id) is None
    assert [m["value"] for s in alertmanager.silences() for m in s["matchers"] if m["name"] == "deployment"] == [
        loud.name]


def test_alertmanager_down_never_holds_the_transition_and_the_silence_follows_when_it_is_back(
        make_app, make_stack, tmp_path, alertmanager):
    stack = make_stack()
    stack.add("api")
    app = silence_app(make_app, tmp_path, alertmanager.url)  # not started: its port refuses connections
    client = app.test_client()
    deployment = wait_for_deployment(client, stack.name, 1)

    began = time.monotonic()
    response = put_mode(client, stack.name, "Maintenance", reason="disk swap")
    assert response.status_code == 200 and response.json["transition"]["outcome"] == "succeeded"
    assert time.monotonic() - began < 15
    assert not stack.is_running("api")

    pending = wait_until(lambda: (s := silence_of(client, deployment["id"])) and s["state"] == "pending"
                         and s["error"] and s, message="the silence shown pending after a first attempt")
    assert pending["action"] == "silence" and pending["error"] == "connection refused" and pending["id"] is None
    assert pending_metric(client, stack.name) == 1
    page = client.get(f"/deployments/{deployment['id']}").get_data(as_text=True)
    assert "silence pending" in page and "connection refused" in page

    alertmanager.start()

    shown = wait_until(lambda: (s := silence_of(client, deployment["id"])) and s["state"] == "silenced" and s,
                       timeout=30, message="the silence created once Alertmanager is back")
    assert alertmanager.silence(shown["id"])["status"]["state"] == "active"
    assert "disk swap" in alertmanager.silence(shown["id"])["comment"]
    assert pending_metric(client, stack.name) == 0


def test_config_problems_name_the_key_path(tmp_path):
    from rsgo.stack_config import load_config

    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent("""\
        alertmanager: {url: "ftp://am:9093", matchers: {deployment: "{stak}"}}
        stacks:
          shop: {alertmanager: {url: "http://am:9093", basicAuth: {username: rsgo}, tls: {cert: /nowhere}}}
          quiet: {alertmanager: false}
        """))

    loaded = load_config(str(config), environ={})

    assert sorted(p.path for p in loaded.problems) == ["alertmanager.matchers", "alertmanager.url",
                                                       "stacks.shop.alertmanager.basicAuth",
                                                       "stacks.shop.alertmanager.tls",
                                                       "stacks.shop.alertmanager.tls.cert"]
    # A broken stack entry silences nothing rather than falling back to the default.
    assert loaded.alertmanager_for("local", "shop") is None and loaded.stacks["quiet"].alertmanager is False


def test_a_window_ends_the_silence_at_its_end_and_a_horizon_silence_is_renewed_in_place(make_app, make_stack,
                                                                                        tmp_path, alertmanager):
    alertmanager.start()
    windowed, open_ended = make_stack("w"), make_stack("o")
    windowed.add("api")
    open_ended.add("api")
    app = silence_app(make_app, tmp_path, alertmanager.url)
    client = app.test_client()
    windowed_id = wait_for_deployment(client, windowed.name, 1)["id"]
    open_id = wait_for_deployment(client, open_ended.name, 1)["id"]

    window = client.post(f"/api/deployments/{windowed_id}/windows", json={"duration": "30m", "reason": "patching"})
    assert window.status_code == 201
    app.extensions["rsgo"].windows.evaluate()  # now, rather than at the next check
    shown = wait_until(lambda: (s := silence_of(client, windowed_id)) and s["state"] == "silenced" and s,
                       timeout=30, message="the window's silence")
    window_end = dt.datetime.fromisoformat(window.json["end"].replace("Z", "+00:00"))
    silence_end = dt.datetime.fromisoformat(alertmanager.silence(shown["id"])["endsAt"].replace("Z", "+00:00"))
    assert abs(silence_end - window_end) < dt.timedelta(seconds=1)

    silences = app.extensions["rsgo"].silences
    silences.horizon = 4.0  # seconds: half of it passes quickly
    assert put_mode(client, open_ended.name, "Maintenance").status_code == 200
    first = wait_until(lambda: (s := silence_of(client, open_id)) and s["state"] == "silenced" and s, timeout=30,
                       message="the open-ended stay's silence")
    wait_until(lambda: dt.datetime.fromisoformat(first["endsAt"].replace("Z", "+00:00")) - dt.datetime.now(dt.UTC)
               < dt.timedelta(seconds=2), timeout=10, message="half the horizon to pass")

    silences.renew_due()  # the scheduler job's work

    renewed = wait_until(lambda: (s := silence_of(client, open_id)) and s["endsAt"] != first["endsAt"] and s,
                         timeout=30, message="the silence renewed")
    assert renewed["id"] == first["id"]  # the same silence, with a later end
    in_alertmanager = alertmanager.silence(first["id"])
    assert in_alertmanager["status"]["state"] == "active"
    assert dt.datetime.fromisoformat(in_alertmanager["endsAt"].replace("Z", "+00:00")) > dt.datetime.now(
        dt.UTC) + dt.timedelta(seconds=2)
    assert sum(1 for s in alertmanager.silences() if any(m["value"] == open_ended.name for m in s["matchers"])) == 1


def test_the_deployment_page_is_pushed_each_change_of_the_silence(make_server, make_stack, tmp_path, alertmanager):
    stack = make_stack()
    stack.add("api")
    config = tmp_path / "rsgo.yml"
    config.write_text(f"alertmanager: {{url: {alertmanager.url}}}\n")  # not started yet
    server = make_server(RSGO_CONFIG=str(config)).start()
    deployment_id = wait_until(lambda: (r := requests.get(f"{server.url}/api/deployments/{stack.name}",
                                                          headers=server.headers, timeout=5)).ok and r.json()["id"],
                               message="rsgo to know the stack")
    page = LiveSocket(server, f"deployment:{deployment_id}", session=server.login())
    region = f'id="silence-{deployment_id}"'
    try:
        assert put_mode(server, stack.name, "Maintenance").status_code == 200
        pending = page.wait_for(lambda m: region in m and "silence pending" in m and "connection refused" in m,
                                timeout=30, what="the silence pushed as pending, with its error")
        assert 'hx-swap-oob="true"' in pending

        alertmanager.start()  # rsgo's own backoff (1 s, 2 s, 4 s …) brings it there

        page.wait_for(lambda m: region in m and "🔕 silenced" in m, timeout=30, what="the silence pushed as silenced")
    finally:
        page.close()


def test_basic_auth_and_client_certificates_reach_an_alertmanager_that_requires_them(make_app, make_stack, tmp_path,
                                                                                     monkeypatch):
    import tls_material

    tls = tls_material.make(tmp_path / "tls")
    secured = Alertmanager(tmp_path / "secured", tls=tls, users={"rsgo": "am-pass-7c1d"})
    secured.start()
    try:
        monkeypatch.setenv("AM_PASSWORD", "am-pass-7c1d")
        right, wrong = make_stack("r"), make_stack("w")
        right.add("api")
        wrong.add("api")
        tls_entry = f"tls: {{ca: {tls['ca.pem']}, cert: {tls['cert.pem']}, key: {tls['key.pem']}}}"
        config = tmp_path / "rsgo.yml"
        config.write_text(textwrap.dedent(f"""\
            alertmanager:
              url: {secured.url}
              basicAuth: {{username: rsgo, password: "${{AM_PASSWORD}}"}}
              {tls_entry}
            stacks:
              {wrong.name}:
                alertmanager: {{url: {secured.url}, basicAuth: {{username: rsgo, password: nope}}, {tls_entry}}}
            """))
        app = make_app(RSGO_CONFIG=str(config))
        client = app.test_client()
        right_id = wait_for_deployment(client, right.name, 1)["id"]
        wrong_id = wait_for_deployment(client, wrong.name, 1)["id"]

        assert put_mode(client, right.name, "Maintenance").status_code == 200
        assert put_mode(client, wrong.name, "Maintenance").status_code == 200

        shown = wait_until(lambda: (s := silence_of(client, right_id)) and s["state"] == "silenced" and s,
                           timeout=30, message="the silence over HTTPS with basic auth and a client certificate")
        assert secured.silence(shown["id"])["status"]["state"] == "active"
        refused = wait_until(lambda: (s := silence_of(client, wrong_id)) and s["state"] == "pending" and s["error"]
                             and s, timeout=30, message="the wrong password's silence pending")
        assert refused["error"].startswith("HTTP 401")
        answers = client.get(f"/api/deployments/{right_id}").get_data(as_text=True) + client.get(
            f"/deployments/{right_id}").get_data(as_text=True)
        assert "am-pass-7c1d" not in answers and shown["alertmanager"] == secured.url
    finally:
        secured.stop()


def test_turning_silences_off_for_a_silenced_stack_leaves_its_silence_to_end_by_itself(make_app, make_stack,
                                                                                       tmp_path, alertmanager):
    alertmanager.start()
    stack = make_stack()
    stack.add("api")
    app = silence_app(make_app, tmp_path, alertmanager.url)
    client = app.test_client()
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    shown = wait_until(lambda: (s := silence_of(client, deployment_id)) and s["state"] == "silenced" and s,
                       timeout=30, message="the silence")

    config = tmp_path / "rsgo.yml"
    config.write_text(config.read_text() + f"stacks:\n  {stack.name}: {{alertmanager: false}}\n")
    assert client.post("/api/config/reload").status_code == 200

    left = wait_until(lambda: (s := silence_of(client, deployment_id)) and s["state"] == "expired" and s,
                      message="the silence no longer rsgo's")
    assert "no longer names" in left["error"] and left["endsAt"] == shown["endsAt"]
    assert alertmanager.silence(shown["id"])["status"]["state"] == "active"  # rsgo did not (could not) expire it


def test_after_a_crash_the_kept_silence_is_the_one_rsgo_expires(make_server, make_stack, tmp_path, alertmanager):
    alertmanager.start()
    stack = make_stack()
    stack.add("api")
    config = tmp_path / "rsgo.yml"
    config.write_text(f"alertmanager: {{url: {alertmanager.url}}}\n")
    server = make_server(RSGO_CONFIG=str(config)).start()

    def silence():
        answer = requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers, timeout=5)
        return answer.json()["silence"] if answer.ok else None

    wait_until(lambda: put_mode(server, stack.name, "Normal").status_code == 200, timeout=30,
               message="rsgo to know the stack")
    assert put_mode(server, stack.name, "Maintenance").status_code == 200
    before = wait_until(lambda: (s := silence()) and s["state"] == "silenced" and s, timeout=30,
                        message="the silence")

    server.kill(9)
    server.start()

    assert put_mode(server, stack.name, "Normal").status_code == 200
    wait_until(lambda: alertmanager.silence(before["id"])["status"]["state"] == "expired", timeout=30,
               message="the silence from before the crash expired")
    assert [s["id"] for s in alertmanager.silences()] == [before["id"]]  # the restart made no second one
