"""Observers end to end: config file, scheduler, decisions and ownership, with a real Docker engine.

The ``file`` observer is the source here because a test can flip it instantly; the other
types' reading paths have their own modules (real HTTP server, real PostgreSQL/SQLite via ODBC).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_for_deployment
from rsgo.jobs import Scheduler, SchedulerAlreadyRunning
from support import ROOT, put_mode, wait_until


def write_config(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def flag(tmp_path):
    return tmp_path / "maintenance.flag"


def observer_app(make_app, tmp_path, stack_name: str, flag, background=True, extra: str = "", **environ):
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack_name}:
            maintenanceObserver:
              type: file
              path: {flag}
              mode: exists
              maintenanceValue: "true"
              pollingInterval: 1s
        {extra}""")
    return make_app(background=background, RSGO_CONFIG=str(config), **environ)


def observer_status(client, stack_name):
    response = client.get(f"/api/deployments/{stack_name}/observer")
    assert response.status_code == 200, response.json
    return response.json


def checks_after(client, stack_name, count: int, timeout: float = 10):
    """Wait until the scheduled observer has checked ``count`` more times."""
    start = observer_status(client, stack_name)["lastCheckAt"] or ""
    seen = {start}

    def checked():
        seen.add(observer_status(client, stack_name)["lastCheckAt"] or "")
        return len(seen) > count

    wait_until(checked, timeout, interval=0.1, message=f"{count} more observer checks")


def test_a_flag_file_stops_the_stack_within_an_interval_and_its_removal_brings_it_back(make_app, make_stack,
                                                                                          tmp_path, flag):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    wait_for_deployment(client, stack.name, 2)
    checks_after(client, stack.name, 1)

    flag_written = dt.datetime.now(dt.UTC)
    flag.write_text("")
    # A generous deadline for check, transition and the API read on a loaded machine; that the observer
    # acted within its interval is asserted on the recorded request time below.
    wait_until(lambda: client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance", 15,
               message="the observer to enter Maintenance")

    assert stack.is_running("db")
    detail = client.get(f"/api/deployments/{stack.name}").json
    assert detail["operationMode"] == "Maintenance"
    assert (detail["trigger"]["source"], detail["trigger"]["actor"]) == ("observer", "file-observer")
    entry = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (entry["source"], entry["actor"], entry["observedValue"], entry["outcome"]) == (
        "observer", "file-observer", "true", "succeeded")
    assert "file-observer" in entry["reason"]
    requested = dt.datetime.fromisoformat(entry["requestedAt"].replace("Z", "+00:00"))
    # Within the 1 s interval, plus slack for a late scheduler run on a busy machine.
    assert requested - flag_written < dt.timedelta(seconds=1 + 2), (flag_written, requested)

    flag.unlink()
    wait_until(lambda: client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Normal", 15,
               message="the observer to leave Maintenance")
    assert stack.is_running("api")
    entry = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (entry["newMode"], entry["source"], entry["observedValue"]) == ("Normal", "observer", "false")


def test_a_person_cannot_end_observer_maintenance_unless_forced_and_then_it_stays_suppressed(
        make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    flag.write_text("")
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    wait_until(lambda: client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance", 10,
               message="the observer to enter Maintenance")

    refused = put_mode(client, stack.name, "Normal", reason="I want it back")

    assert refused.status_code == 409 and refused.json["code"] == "observer_owns_maintenance"
    assert refused.json["observer"] == "file-observer" and "force" in refused.json["detail"]
    assert not stack.is_running("api")
    assert client.get(f"/api/deployments/{stack.name}/history").json["items"][0]["outcome"] == "rejected"

    forced = put_mode(client, stack.name, "Normal", reason="customer demo", force=True)

    assert forced.status_code == 200, forced.json
    assert stack.is_running("api")
    checks_after(client, stack.name, 3)  # the flag is still there, yet nothing happens
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Normal"
    assert observer_status(client, stack.name)["state"] == "suppressed"

    flag.unlink()  # the source reads normal once: the suppression ends
    wait_until(lambda: observer_status(client, stack.name)["state"] == "ok", 15, message="suppression to end")
    flag.write_text("")
    wait_until(lambda: not stack.is_running("api"), 15, message="the observer to act again")


def test_an_observer_never_ends_maintenance_a_person_started(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    wait_for_deployment(client, stack.name, 1)
    assert put_mode(client, stack.name, "Maintenance", reason="manual backup").status_code == 200

    checks_after(client, stack.name, 3)  # reading "false" (normal) every second

    assert observer_status(client, stack.name)["lastDecision"] == "normal"
    detail = client.get(f"/api/deployments/{stack.name}").json
    assert (detail["operationMode"], detail["trigger"]["source"]) == ("Maintenance", "api")
    assert not stack.is_running("api")


def test_confirmations_need_that_many_equal_readings(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: file, path: {flag}, maintenanceValue: "true", confirmations: 3}}
        """)
    app = make_app(RSGO_CONFIG=str(config), background=False)
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()
    flag.write_text("")

    for _ in range(2):
        assert client.post(f"/api/deployments/{stack.name}/observer/check").json["lastDecision"] == "maintenance"
        assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Normal"
    client.post(f"/api/deployments/{stack.name}/observer/check")

    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Maintenance"
    assert not stack.is_running("api")


def test_errors_never_change_the_mode_and_warn_at_the_failure_threshold(make_app, make_stack, tmp_path):
    stack = make_stack()
    stack.add("api")
    value_file = tmp_path / "value"
    value_file.write_text("banana")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver:
              type: file
              path: {value_file}
              mode: content
              maintenanceValue: "1"
              normalValue: "0"
              failureThreshold: 2
        """)
    app = make_app(RSGO_CONFIG=str(config), background=False)
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()
    events = []
    app.extensions["rsgo"].bus.subscribe(lambda kind, payload: events.append(kind) if kind.startswith("observer.f")
                                         or kind.startswith("observer.r") else None)

    first = client.post(f"/api/deployments/{stack.name}/observer/check").json
    assert (first["state"], first["failures"], first["failing"]) == ("error", 1, False)
    assert "unexpected value 'banana'" in first["error"]
    second = client.post(f"/api/deployments/{stack.name}/observer/check").json
    assert (second["failures"], second["failing"]) == (2, True)
    assert events == ["observer.failing"]
    assert client.get(f"/api/deployments/{stack.name}").json["operationMode"] == "Normal"
    assert stack.is_running("api")
    assert "failing" in client.get("/").get_data(as_text=True)

    value_file.write_text(" 0 \n")
    recovered = client.post(f"/api/deployments/{stack.name}/observer/check").json

    assert (recovered["state"], recovered["failures"], recovered["lastDecision"]) == ("ok", 0, "normal")
    assert events == ["observer.failing", "observer.recovered"]


def test_an_unresolved_variable_disables_only_that_observer_and_rsgo_serves(make_app, make_stack, tmp_path, flag):
    good, broken = make_stack(), make_stack()
    good.add("api")
    broken.add("api")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {good.name}:
            maintenanceObserver: {{type: file, path: {flag}, maintenanceValue: "true", pollingInterval: 1s}}
          {broken.name}:
            maintenanceObserver: {{type: file, path: "${{TEST_UNSET_FLAG}}", maintenanceValue: "true"}}
        """)
    client = make_app(RSGO_CONFIG=str(config)).test_client()
    wait_for_deployment(client, good.name, 1)

    disabled = observer_status(client, broken.name)
    assert disabled["state"] == "disabled"
    assert "TEST_UNSET_FLAG" in disabled["error"] and "maintenanceObserver.path" in disabled["error"]
    checks_after(client, good.name, 1)
    assert observer_status(client, good.name)["state"] == "ok"
    page = client.get("/").get_data(as_text=True)
    assert "observer file: disabled" in page
    detail = client.get(f"/deployments/{broken.name}").get_data(as_text=True)
    assert "TEST_UNSET_FLAG" in detail


def test_check_config_names_the_key_path_of_an_unknown_key(tmp_path):
    config = write_config(tmp_path / "rsgo.yml", """
        stacks:
          shop:
            maintenanceObserver:
              type: file
              path: /tmp/x
              maintenanceValue: "true"
              pollingIntervall: 30s
        """)
    result = subprocess.run([sys.executable, "-m", "rsgo.cli", "check-config"], capture_output=True, text=True,
                            env={"RSGO_CONFIG": str(config), "RSGO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert f"{config}: stacks.shop.maintenanceObserver.pollingIntervall: unknown key" in result.stderr


@pytest.mark.parametrize("document, expected", [
    ("stacks:\n  shop:\n    maintenanceObserver: {type: smoke, maintenanceValue: x}\n",
     "stacks.shop.maintenanceObserver.type: unknown observer type 'smoke'"),
    ("stacks:\n  shop:\n    maintenanceObserver: {type: file, path: /x}\n",
     "stacks.shop.maintenanceObserver.maintenanceValue: required"),
    ("stacks:\n  shop:\n    maintenanceObserver: {type: file, path: /x, maintenanceValue: x, pollingInterval: soon}\n",
     "stacks.shop.maintenanceObserver.pollingInterval: 'soon' is not a duration"),
    ("stacks:\n  shop:\n    maintenanceObserver: {type: file, path: /x, maintenanceValue: x, pollingInterval: 500ms}\n",
     "stacks.shop.maintenanceObserver.pollingInterval: must be at least 1s"),
    ("stacks:\n  shop:\n    maintenanceObserver: {type: file, path: /x, maintenanceValue: x, confirmations: two}\n",
     "stacks.shop.maintenanceObserver.confirmations: must be a whole number"),
    ("stacks: [shop]\n", "stacks: must be a mapping"),
    ("stacks:\n  shop:\n    windows: [{cron: '0 2 * *', duration: 45m}]\n",
     "stacks.shop.windows[0].cron: '0 2 * *' needs 5 fields"),
    ("stacks:\n  shop:\n    windows: [{cron: '0 2 * * SUN', duration: 45m, timezone: Mars/Olympus}]\n",
     "stacks.shop.windows[0].cron: unknown time zone 'Mars/Olympus'"),
    ("webhooks: [{url: ftp://x, events: [mode.changed]}]\n", "webhooks[0].url: required: an http:// or https:// URL"),
    ("webhooks: [{url: 'http://x', events: [mode.exploded]}]\n", "webhooks[0].events: must be a list of"),
    ("stacks:\n  shop: {maintenanceObserver: {type: file\n", "not valid YAML (line"),
])
def test_config_problems_name_the_file_the_key_path_and_the_problem(tmp_path, document, expected):
    from rsgo.stack_config import load_config

    path = tmp_path / "rsgo.yml"
    path.write_text(document)
    problems = [str(p) for p in load_config(str(path)).problems]
    assert any(problem.startswith(f"{path}: ") and expected in problem for problem in problems), problems


def test_a_second_scheduler_in_one_process_is_refused():
    first = Scheduler(2)
    first.start()
    try:
        with pytest.raises(SchedulerAlreadyRunning):
            Scheduler(2).start()
    finally:
        first.shutdown()


def test_sighup_reloads_the_config_in_place_keeping_unchanged_observers_state(make_server, make_stack, tmp_path):
    kept, changed = make_stack(), make_stack()
    kept.add("api")
    changed.add("api")
    bad_value = tmp_path / "bad-value"
    bad_value.write_text("banana")  # an unexpected value: every check fails and counts
    first_flag, second_flag = tmp_path / "first.flag", tmp_path / "second.flag"
    config = tmp_path / "rsgo.yml"

    def configure(changed_flag):
        write_config(config, f"""
            stacks:
              {kept.name}:
                maintenanceObserver:
                  {{type: file, path: {bad_value}, mode: content, maintenanceValue: "1", normalValue: "0",
                    pollingInterval: 1h, failureThreshold: 5}}
              {changed.name}:
                maintenanceObserver: {{type: file, path: {changed_flag}, maintenanceValue: "true"}}
            """)

    configure(first_flag)
    server = make_server(RSGO_CONFIG=str(config)).start()
    import requests

    def status(stack):
        return requests.get(f"{server.url}/api/deployments/{stack.name}/observer", headers=server.headers,
                            timeout=5).json()

    wait_until(lambda: status(kept)["failures"] == 1, 10, message="the first (failing) check")
    requests.post(f"{server.url}/api/deployments/{kept.name}/observer/check", headers=server.headers, timeout=10)
    assert status(kept)["failures"] == 2
    assert str(first_flag) in status(changed)["target"]

    configure(second_flag)
    server.process.send_signal(1)  # SIGHUP to the gunicorn master

    wait_until(lambda: str(second_flag) in status(changed)["target"], 10, message="the reloaded config")
    assert status(kept)["failures"] == 2, "an unchanged observer keeps its state across a reload"
    assert server.process.poll() is None
    assert "Booting worker" not in server.log().split("SIGHUP")[-1], "the worker must not be restarted"


def test_the_reload_endpoint_refuses_a_file_with_problems_and_keeps_the_running_config(make_app, make_stack,
                                                                                        tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    app = observer_app(make_app, tmp_path, stack.name, flag, background=False)
    client = app.test_client()
    write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: file, path: {flag}, maintenanceValue: "true", pollingInterval: 2s}}
        webhooks: {{}}
        """)

    answer = client.post("/api/config/reload")

    assert (answer.status_code, answer.json["code"]) == (422, "invalid_config")
    assert [(p["path"], p["message"]) for p in answer.json["problems"]] == [("webhooks", "must be a list")]
    assert observer_status(client, stack.name)["pollingIntervalSeconds"] == 1


class CountingSource:
    """A real HTTP source that records when it was asked; ``hang`` makes it never answer."""

    def __init__(self, hang: bool = False):
        import http.server
        import threading
        import time

        self.times: list[float] = []
        self.release = threading.Event()
        source = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                source.times.append(time.monotonic())
                if hang:
                    source.release.wait(30)
                    return
                body = b"0"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/flag"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_each_observer_runs_once_per_interval_and_a_hung_source_delays_no_other(make_app, make_stack, tmp_path):
    steady_stack, hung_stack = make_stack(), make_stack()
    steady, hung = CountingSource(), CountingSource(hang=True)
    try:
        config = write_config(tmp_path / "rsgo.yml", f"""
            stacks:
              {steady_stack.name}:
                maintenanceObserver: {{type: http, url: "{steady.url}", maintenanceValue: "1", pollingInterval: 1s}}
              {hung_stack.name}:
                maintenanceObserver: {{type: http, url: "{hung.url}", maintenanceValue: "1", pollingInterval: 1s,
                                       timeout: 30s}}
            """)
        client = make_app(RSGO_CONFIG=str(config)).test_client()
        wait_until(lambda: len(steady.times) >= 9, 30, message="nine checks of the steady source")

        # The first two gaps follow start-up (scheduler, config, first connections) and are not judged.
        gaps = [later - earlier for earlier, later in zip(steady.times, steady.times[1:], strict=False)][2:]
        # A doubled check would leave a gap near 0 s, a skipped one near 2 s; a loaded machine moves a check
        # by a few hundred milliseconds (its timeliness is measured in benchmarks/observers.py, not here).
        assert all(gap > 0.5 for gap in gaps), f"a check ran twice: {gaps}"
        assert all(gap < 1.8 for gap in gaps), f"a check was skipped: {gaps}"
        # The hung source holds its single running check; runs are not stacked up behind it.
        assert len(hung.times) == 1
        assert observer_status(client, steady_stack.name)["state"] == "ok"
    finally:
        steady.close()
        hung.close()


def test_secrets_in_observer_targets_are_masked_in_api_and_pages(make_app, make_stack, tmp_path, capfd, caplog,
                                                                  monkeypatch):
    stack = make_stack()
    stack.add("api")
    connection = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=1;UID=rsgo;PWD=${TEST_DB_PASSWORD}"
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver:
              type: sqlQuery
              connectionString: "{connection}"
              query: SELECT flag FROM maintenance
              maintenanceValue: "1"
              timeout: 2s
        """)
    app = make_app(RSGO_CONFIG=str(config), background=False)
    monkeypatch.setenv("TEST_DB_PASSWORD", "hunter2-secret")  # restored by pytest, whatever fails below
    app.extensions["rsgo"].reload_config()
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()
    checked = client.post(f"/api/deployments/{stack.name}/observer/check").json
    responses = [checked, observer_status(client, stack.name), client.get(f"/api/deployments/{stack.name}").json]
    pages = [client.get(f"/deployments/{stack.name}").get_data(as_text=True),
             client.get("/").get_data(as_text=True)]
    assert checked["state"] == "error" and "PWD=***" in checked["target"]
    assert "failed" in caplog.text  # the failing check was logged...
    for text in [str(r) for r in responses] + pages + list(capfd.readouterr()) + [caplog.text]:  # ...without it
        assert "hunter2-secret" not in text
