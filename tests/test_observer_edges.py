"""Observers at their edges, with a real engine (README "Observers", docs/design.md#modes-and-ownership): one
removed from the config holds nothing, one only reports in Stopped, Migrating and Failed, and reading normal
never ends Maintenance a schedule started."""

from __future__ import annotations

import re

import pytest

from conftest import wait_for_deployment
from support import put_mode, wait_until
from test_observers import checks_after, observer_app, observer_status, write_config


@pytest.fixture
def flag(tmp_path):
    return tmp_path / "maintenance.flag"


def mode_and_source(client, stack_name) -> tuple[str, str]:
    detail = client.get(f"/api/deployments/{stack_name}").json
    return detail["operationMode"], detail["trigger"]["source"]


def test_an_observer_removed_from_the_config_no_longer_holds_its_maintenance(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    flag.write_text("")  # the source says maintenance, and keeps saying it
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    wait_until(lambda: mode_and_source(client, stack.name) == ("Maintenance", "observer"), 15,
               message="the observer to enter Maintenance")
    refused = put_mode(client, stack.name, "Normal", reason="not yet")
    assert refused.status_code == 409 and refused.json["code"] == "observer_owns_maintenance"

    write_config(tmp_path / "rsgo.yml", f"stacks:\n  {stack.name}: {{}}\n")
    assert client.post("/api/config/reload").json["problems"] == []

    assert client.get(f"/api/deployments/{stack.name}/observer").status_code == 404
    ended = put_mode(client, stack.name, "Normal", reason="the observer is gone")  # no force needed
    assert ended.status_code == 200, ended.json
    assert stack.is_running("api")
    latest = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (latest["newMode"], latest["forced"]) == ("Normal", False)


@pytest.mark.parametrize("mode", ["Stopped", "Migrating", "Failed"])
def test_an_observer_only_reports_in_stopped_migrating_and_failed(make_app, make_stack, tmp_path, flag, mode):
    stack = make_stack()
    stack.add("api")
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    wait_for_deployment(client, stack.name, 1)
    for step in (["Migrating", "Failed"] if mode == "Failed" else [mode]):
        assert put_mode(client, stack.name, step, reason=f"by hand: {step}").status_code == 200
    running = stack.is_running("api")

    flag.write_text("")  # maintenance, read for three checks
    checks_after(client, stack.name, 3)

    assert observer_status(client, stack.name)["lastDecision"] == "maintenance"
    assert mode_and_source(client, stack.name) == (mode, "api")
    assert stack.is_running("api") == running
    flag.unlink()  # and normal: it does not end these modes either
    checks_after(client, stack.name, 3)
    assert observer_status(client, stack.name)["lastDecision"] == "normal"
    assert mode_and_source(client, stack.name) == (mode, "api")
    sources = {e["source"] for e in client.get(f"/api/deployments/{stack.name}/history").json["items"]}
    assert "observer" not in sources


def test_reading_normal_never_ends_maintenance_a_schedule_started(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()  # no flag: it reads normal
    wait_for_deployment(client, stack.name, 1)
    answer = client.post(f"/api/deployments/{stack.name}/windows", json={"duration": "2h", "reason": "patching"})
    assert answer.status_code == 201, answer.json
    assert mode_and_source(client, stack.name) == ("Maintenance", "schedule")

    checks_after(client, stack.name, 3)

    assert observer_status(client, stack.name)["lastDecision"] == "normal"
    assert mode_and_source(client, stack.name) == ("Maintenance", "schedule")
    assert not stack.is_running("api")


def test_an_observers_suppression_survives_a_restart(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    flag.write_text("")
    first = observer_app(make_app, tmp_path, stack.name, flag)
    client = first.test_client()
    wait_until(lambda: mode_and_source(client, stack.name) == ("Maintenance", "observer"), 15,
               message="the observer to enter Maintenance")
    assert put_mode(client, stack.name, "Normal", reason="demo", force=True).status_code == 200
    assert observer_status(client, stack.name)["state"] == "suppressed"
    first.extensions["rsgo"].stop(timeout=30)

    # The next process, same data dir and config: the flag is still there, and still not obeyed.
    client = observer_app(make_app, tmp_path, stack.name, flag).test_client()
    checks_after(client, stack.name, 3)
    assert observer_status(client, stack.name)["state"] == "suppressed"
    assert mode_and_source(client, stack.name)[0] == "Normal" and stack.is_running("api")


def test_a_changed_observer_starts_afresh_and_its_suppression_ends(make_app, make_stack, tmp_path, flag):
    stack = make_stack()
    stack.add("api")
    flag.write_text("")
    app = observer_app(make_app, tmp_path, stack.name, flag)
    client = app.test_client()
    wait_until(lambda: mode_and_source(client, stack.name) == ("Maintenance", "observer"), 15,
               message="the observer to enter Maintenance")
    assert put_mode(client, stack.name, "Normal", reason="demo", force=True).status_code == 200
    assert observer_status(client, stack.name)["state"] == "suppressed"

    # The same source, read under another name: a different observer, with no suppression of its own.
    config = tmp_path / "rsgo.yml"
    config.write_text(re.sub(r"( *)pollingInterval: 1s", r"\1pollingInterval: 1s\n\1name: renamed-observer",
                             config.read_text()))
    assert client.post("/api/config/reload").json["problems"] == []

    wait_until(lambda: mode_and_source(client, stack.name) == ("Maintenance", "observer"), 15,
               message="the changed observer to act on the flag")
    assert client.get(f"/api/deployments/{stack.name}").json["trigger"]["actor"] == "renamed-observer"
    assert not stack.is_running("api")
