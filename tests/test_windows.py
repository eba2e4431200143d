"""Maintenance windows: occurrences across daylight saving, and acting on a controlled clock
against a real Docker engine."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from conftest import wait_for_deployment
from rsgo.cron import Cron
from rsgo.models import MaintenanceWindow
from rsgo.windows import WindowService
from support import put_mode, wait_until

UTC = dt.UTC
BERLIN_WEEKLY = {"cron": "0 2 * * SUN", "duration": "45m", "timezone": "Europe/Berlin", "reason": "Weekly backup"}


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def mode_of(client, name) -> dict:
    return client.get(f"/api/deployments/{name}").json


@pytest.fixture
def stack_app(make_app, make_stack, tmp_path):
    """A served stack (api stops in maintenance, db is ignored) and an app whose window clock the test sets."""

    def make(windows_yaml: str = "", background: bool = False):
        stack = make_stack()
        stack.add("db", labels={"rsgo.maintenance": "ignore"})
        stack.add("api")
        config = tmp_path / "rsgo.yml"
        config.write_text(f"stacks:\n  {stack.name}:\n" + textwrap.indent(textwrap.dedent(windows_yaml), "    "))
        app = make_app(RSGO_CONFIG=str(config), background=background)
        client = app.test_client()
        if not background:
            app.extensions["rsgo"].environments.resync_all()
        wait_for_deployment(client, stack.name, 2)
        return stack, app, client

    return make


def test_weekly_sunday_2am_berlin_falls_on_the_right_instants_across_both_dst_switches():
    cron = Cron.parse("0 2 * * SUN", "Europe/Berlin")

    spring = cron.occurrences_after(at("2026-03-20T00:00:00+00:00"), 3)
    autumn = cron.occurrences_after(at("2026-10-17T00:00:00+00:00"), 3)

    assert spring == [
        at("2026-03-22T02:00:00+01:00"),  # CET
        at("2026-03-29T03:00:00+02:00"),  # 02:00 does not exist that night: the first instant after the gap
        at("2026-04-05T02:00:00+02:00"),  # CEST
    ]
    assert autumn == [
        at("2026-10-18T02:00:00+02:00"),  # CEST
        at("2026-10-25T02:00:00+02:00"),  # 02:00 happens twice that night: once, the first time
        at("2026-11-01T02:00:00+01:00"),  # CET
    ]


def test_the_next_five_occurrences_are_shown_in_the_windows_own_time_zone(stack_app):
    stack, app, client = stack_app("windows:\n  - {name: weekly-backup, cron: '0 2 * * SUN', duration: 45m, "
                                   "timezone: Europe/Berlin, reason: Weekly backup}\n")
    app.extensions["rsgo"].windows.clock = lambda: at("2026-03-16T12:00:00+00:00")

    window = client.get(f"/api/deployments/{stack.name}/windows").json["items"][0]

    assert (window["name"], window["kind"], window["origin"], window["timezone"]) == (
        "weekly-backup", "recurring", "config", "Europe/Berlin")
    assert [o["start"] for o in window["nextOccurrences"]] == [
        "2026-03-22T02:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-04-05T02:00:00+02:00",
        "2026-04-12T02:00:00+02:00", "2026-04-19T02:00:00+02:00"]
    assert window["nextOccurrences"][0]["end"] == "2026-03-22T02:45:00+01:00"
    page = client.get(f"/deployments/{stack.name}").get_data(as_text=True)
    # The page shows instants in one format (UTC until static/time.js turns them into the browser's zone);
    # the zone the window is defined in is named beside its schedule.
    assert '<time datetime="2026-03-29T01:00:00.000Z"' in page and "2026-03-29 01:00 UTC" in page
    assert "0 2 * * SUN" in page and "Europe/Berlin" in page


@pytest.mark.parametrize("start, expected_end", [
    ("2026-03-29T03:00:00+02:00", "2026-03-29T03:45:00+02:00"),  # the spring-forward Sunday
    ("2026-10-25T02:00:00+02:00", "2026-10-25T02:45:00+02:00"),  # the fall-back Sunday
])
def test_the_weekly_window_enters_and_leaves_with_trigger_schedule_on_dst_sundays(stack_app, start, expected_end):
    stack, app, client = stack_app("windows:\n  - {name: weekly-backup, cron: '0 2 * * SUN', duration: 45m, "
                                   "timezone: Europe/Berlin, reason: Weekly backup}\n")
    windows = app.extensions["rsgo"].windows

    windows.evaluate(now=at(start) - dt.timedelta(seconds=1))
    assert mode_of(client, stack.name)["operationMode"] == "Normal"

    windows.evaluate(now=at(start) + dt.timedelta(seconds=1))

    detail = mode_of(client, stack.name)
    assert detail["operationMode"] == "Maintenance"
    assert (detail["trigger"]["source"], detail["trigger"]["actor"], detail["trigger"]["reason"]) == (
        "schedule", "schedule:weekly-backup", "Weekly backup")
    assert not stack.is_running("api") and stack.is_running("db")

    windows.evaluate(now=at(expected_end) - dt.timedelta(seconds=1))
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    windows.evaluate(now=at(expected_end))

    assert mode_of(client, stack.name)["operationMode"] == "Normal"
    assert stack.is_running("api")
    entries = client.get(f"/api/deployments/{stack.name}/history").json["items"]
    assert [(e["source"], e["newMode"]) for e in entries[:2]] == [("schedule", "Normal"), ("schedule", "Maintenance")]


def test_rsgo_started_inside_a_window_enters_at_once(stack_app):
    now = dt.datetime.now(UTC)
    stack, app, client = stack_app(
        f"windows:\n  - {{name: now, start: '{(now - dt.timedelta(minutes=10)).isoformat()}', "
        f"end: '{(now + dt.timedelta(minutes=10)).isoformat()}'}}\n", background=True)

    wait_until(lambda: mode_of(client, stack.name)["operationMode"] == "Maintenance", 10,
               message="the window to take effect at start")
    assert mode_of(client, stack.name)["trigger"]["source"] == "schedule"
    assert not stack.is_running("api") and stack.is_running("db")


def test_a_window_that_ended_while_rsgo_was_down_does_nothing(stack_app):
    now = dt.datetime.now(UTC)
    stack, app, client = stack_app(
        f"windows:\n  - {{name: missed, start: '{(now - dt.timedelta(hours=2)).isoformat()}', "
        f"end: '{(now - dt.timedelta(hours=1)).isoformat()}'}}\n")

    app.extensions["rsgo"].windows.evaluate()

    assert mode_of(client, stack.name)["operationMode"] == "Normal"
    assert stack.is_running("api")
    assert client.get(f"/api/deployments/{stack.name}/history").json["items"] == []


def test_a_schedule_never_ends_maintenance_a_person_started(stack_app):
    stack, app, client = stack_app("windows:\n  - {name: nightly, cron: '0 3 * * *', duration: 30m}\n")
    windows = app.extensions["rsgo"].windows
    windows.evaluate(now=at("2026-06-01T03:10:00+00:00"))  # inside: the schedule enters
    assert mode_of(client, stack.name)["trigger"]["source"] == "schedule"
    assert put_mode(client, stack.name, "Normal", reason="need it now").status_code == 200
    assert put_mode(client, stack.name, "Maintenance", reason="my own backup").status_code == 200

    windows.evaluate(now=at("2026-06-01T03:31:00+00:00"))  # the window is over

    detail = mode_of(client, stack.name)
    assert (detail["operationMode"], detail["trigger"]["source"]) == ("Maintenance", "api")
    assert not stack.is_running("api")


def test_a_person_ends_schedule_maintenance_and_the_window_does_not_re_enter_it(stack_app):
    stack, app, client = stack_app("windows:\n  - {name: nightly, cron: '0 3 * * *', duration: 30m}\n")
    windows = app.extensions["rsgo"].windows
    windows.clock = lambda: at("2026-06-01T03:05:00+00:00")
    windows.evaluate()
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    assert not stack.is_running("api")

    response = put_mode(client, stack.name, "Normal", reason="customer demo")

    assert response.status_code == 200, response.json
    for minute in (6, 15, 29):
        windows.evaluate(now=at(f"2026-06-01T03:{minute:02d}:00+00:00"))
        assert mode_of(client, stack.name)["operationMode"] == "Normal", f"re-entered at 03:{minute}"
        assert stack.is_running("api"), f"stopped again at 03:{minute}"
    windows.evaluate(now=at("2026-06-02T03:01:00+00:00"))  # the next night's window is a new one
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    assert not stack.is_running("api") and stack.is_running("db")


def test_overlapping_windows_behave_as_one(stack_app):
    stack, app, client = stack_app(
        "windows:\n"
        "  - {name: first, start: '2026-06-01T10:00:00+00:00', end: '2026-06-01T11:00:00+00:00'}\n"
        "  - {name: second, start: '2026-06-01T10:30:00+00:00', end: '2026-06-01T12:00:00+00:00'}\n")
    windows = app.extensions["rsgo"].windows

    for now in ("10:05", "11:00", "11:59"):
        windows.evaluate(now=at(f"2026-06-01T{now}:00+00:00"))
        assert mode_of(client, stack.name)["operationMode"] == "Maintenance", now
        assert not stack.is_running("api"), now
    windows.evaluate(now=at("2026-06-01T12:00:00+00:00"))

    assert mode_of(client, stack.name)["operationMode"] == "Normal"
    assert stack.is_running("api") and stack.is_running("db")
    entries = client.get(f"/api/deployments/{stack.name}/history").json["items"]
    assert [e["newMode"] for e in entries] == ["Normal", "Maintenance"], "one entry and one exit, no flapping"


def test_ad_hoc_two_hour_maintenance_ends_by_itself(stack_app):
    stack, app, client = stack_app()
    windows = app.extensions["rsgo"].windows
    started = at("2026-07-01T09:00:00+00:00")
    windows.clock = lambda: started

    response = client.post(f"/api/deployments/{stack.name}/windows",
                           json={"duration": "2h", "reason": "disk replacement"})

    assert response.status_code == 201, response.json
    assert (response.json["kind"], response.json["start"], response.json["end"]) == (
        "one-time", "2026-07-01T09:00:00.000Z", "2026-07-01T11:00:00.000Z")
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    assert not stack.is_running("api")

    windows.evaluate(now=started + dt.timedelta(hours=1, minutes=59))
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    windows.evaluate(now=started + dt.timedelta(hours=2))

    assert mode_of(client, stack.name)["operationMode"] == "Normal"
    assert stack.is_running("api")
    entries = client.get(f"/api/deployments/{stack.name}/history").json["items"]
    assert [(e["newMode"], e["source"], e["reason"]) for e in entries] == [
        ("Normal", "schedule", "maintenance window ad hoc ended"),
        ("Maintenance", "schedule", "disk replacement")]


def test_the_ui_starts_ad_hoc_maintenance_and_removes_the_window(stack_app):
    stack, app, client = stack_app(background=True)
    deployment_id = mode_of(client, stack.name)["id"]

    html = client.post(f"/deployments/{deployment_id}/windows", data={"hours": "2", "reason": "quick fix"},
                       headers={"HX-Request": "true"}).get_data(as_text=True)

    assert 'id="windows-' in html and "active now" in html and "quick fix" in html
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    assert not stack.is_running("api") and stack.is_running("db")
    window = MaintenanceWindow.get(MaintenanceWindow.deployment == deployment_id)
    delete = f"/deployments/{deployment_id}/windows/{window.id}/delete"
    # Removing it ends the Maintenance: a reason is required, as for any change by hand.
    assert client.post(delete, headers={"HX-Request": "true"}).status_code == 400
    html = client.post(delete, data={"reason": "fixed early"}, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "No windows" in html
    # Removing the active window ended its Maintenance: the stack runs again, as the remover's change.
    wait_until(lambda: mode_of(client, stack.name)["operationMode"] == "Normal", 30, message="Normal")
    assert stack.is_running("api") and stack.is_running("db")
    latest = client.get(f"/api/deployments/{stack.name}/history").json["items"][0]
    assert (latest["newMode"], latest["source"], latest["actor"], latest["reason"]) == (
        "Normal", "ui", app.config["TEST_ACTOR"], "fixed early")


@pytest.mark.parametrize("body, field", [
    ({"cron": "0 2 * *", "duration": "45m"}, "cron"),
    ({"cron": "0 2 * * SUN"}, "duration"),
    ({"cron": "0 2 * * SUN", "duration": "45m", "timezone": "Europe/Atlantis"}, "cron"),
    ({"start": "2026-07-01T09:00:00", "end": "2026-07-01T10:00:00+00:00"}, "start"),
    ({"start": "2026-07-01T10:00:00+00:00", "end": "2026-07-01T09:00:00+00:00"}, "end"),
    ({"duration": "forever"}, "duration"),
    ({"duration": "1h", "colour": "red"}, "colour"),
])
def test_bad_windows_are_refused_naming_the_field(stack_app, body, field):
    stack, app, client = stack_app()

    response = client.post(f"/api/deployments/{stack.name}/windows", json=body)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "invalid_request" and response.json["field"] == field


def test_config_windows_cannot_be_deleted_through_the_api_but_api_windows_can(stack_app):
    stack, app, client = stack_app("windows:\n  - {name: weekly, cron: '0 2 * * SUN', duration: 45m}\n")
    config_window = client.get(f"/api/deployments/{stack.name}/windows").json["items"][0]
    added = client.post(f"/api/deployments/{stack.name}/windows",
                        json={"name": "xmas", "start": "2030-12-24T18:00:00+01:00",
                              "end": "2030-12-26T08:00:00+01:00"}).json

    refused = client.delete(f"/api/deployments/{stack.name}/windows/{config_window['id']}")
    removed = client.delete(f"/api/deployments/{stack.name}/windows/{added['id']}")

    assert refused.status_code == 409 and refused.json["code"] == "window_from_config"
    assert removed.status_code == 204
    assert [w["name"] for w in client.get(f"/api/deployments/{stack.name}/windows").json["items"]] == ["weekly"]
    assert client.delete(f"/api/deployments/{stack.name}/windows/{added['id']}").status_code == 404


def test_a_reload_replaces_config_windows_and_keeps_api_windows(stack_app, tmp_path):
    stack, app, client = stack_app("windows:\n  - {name: weekly, cron: '0 2 * * SUN', duration: 45m}\n")
    client.post(f"/api/deployments/{stack.name}/windows",
                json={"name": "xmas", "start": "2030-12-24T18:00:00+01:00", "end": "2030-12-26T08:00:00+01:00"})
    (tmp_path / "rsgo.yml").write_text(
        f"stacks:\n  {stack.name}:\n    windows:\n      - {{name: monthly, cron: '0 4 1 * *', duration: 1h}}\n")

    assert client.post("/api/config/reload").json["problems"] == []

    names = [w["name"] for w in client.get(f"/api/deployments/{stack.name}/windows").json["items"]]
    assert sorted(names) == ["monthly", "xmas"]


def test_active_count_counts_windows_containing_now(stack_app):
    stack, app, client = stack_app(
        "windows:\n  - {name: a, start: '2026-06-01T10:00:00+00:00', end: '2026-06-01T11:00:00+00:00'}\n"
        "  - {name: b, cron: '0 10 * * *', duration: 30m, timezone: UTC}\n")
    windows: WindowService = app.extensions["rsgo"].windows
    assert windows.active_count(at("2026-06-01T10:15:00+00:00")) == 2
    assert windows.active_count(at("2026-06-01T10:45:00+00:00")) == 1
    assert windows.active_count(at("2026-06-01T11:00:00+00:00")) == 0
