"""Maintenance windows at their edges, on a controlled clock with a real engine (README "Maintenance windows"):
a window leaves Stopped, Migrating and Failed alone, and a person ending schedule Maintenance keeps it ended
until the merged end of overlapping windows."""

from __future__ import annotations

import pytest

from support import put_mode
from test_windows import at, mode_of, stack_app  # noqa: F401 (stack_app is a fixture)

TWO_WINDOWS = (
    "windows:\n"
    "  - {name: first, start: '2026-06-01T10:00:00+00:00', end: '2026-06-01T11:00:00+00:00'}\n"
    "  - {name: second, start: '2026-06-01T10:30:00+00:00', end: '2026-06-01T12:00:00+00:00'}\n"
    "  - {name: later, start: '2026-06-01T12:30:00+00:00', end: '2026-06-01T13:00:00+00:00'}\n")


@pytest.mark.parametrize("mode", ["Stopped", "Migrating", "Failed"])
def test_a_window_leaves_stopped_migrating_and_failed_alone(stack_app, mode):  # noqa: F811
    stack, app, client = stack_app(TWO_WINDOWS)
    windows = app.extensions["rsgo"].windows
    for step in (["Migrating", "Failed"] if mode == "Failed" else [mode]):
        assert put_mode(client, stack.name, step, reason=f"by hand: {step}").status_code == 200
    running = {short: stack.is_running(short) for short in ("api", "db")}
    entries = len(client.get(f"/api/deployments/{stack.name}/history").json["items"])

    for now in ("10:05", "10:45", "12:00"):  # inside, inside both, after the end
        windows.evaluate(now=at(f"2026-06-01T{now}:00+00:00"))
        detail = mode_of(client, stack.name)
        assert (detail["operationMode"], detail["trigger"]["source"]) == (mode, "api"), now
        assert {short: stack.is_running(short) for short in ("api", "db")} == running, now

    assert len(client.get(f"/api/deployments/{stack.name}/history").json["items"]) == entries


def test_ending_schedule_maintenance_suppresses_it_until_the_merged_end_of_overlapping_windows(
        stack_app):  # noqa: F811
    stack, app, client = stack_app(TWO_WINDOWS)
    windows = app.extensions["rsgo"].windows
    windows.evaluate(now=at("2026-06-01T10:05:00+00:00"))
    assert mode_of(client, stack.name)["trigger"]["source"] == "schedule"

    windows.clock = lambda: at("2026-06-01T10:10:00+00:00")  # the moment the person ends it
    assert put_mode(client, stack.name, "Normal", reason="need it").status_code == 200

    # "first" ends at 11:00, but "second" overlaps it until 12:00: one stretch, ended once.
    for now in ("10:20", "10:31", "11:00", "11:30", "11:59"):
        windows.evaluate(now=at(f"2026-06-01T{now}:00+00:00"))
        assert mode_of(client, stack.name)["operationMode"] == "Normal", f"re-entered at {now}"
        assert stack.is_running("api"), now
    # A window after that stretch is a new one: it enters.
    windows.evaluate(now=at("2026-06-01T12:31:00+00:00"))
    detail = mode_of(client, stack.name)
    assert (detail["operationMode"], detail["trigger"]["actor"]) == ("Maintenance", "schedule:later")
    assert not stack.is_running("api")


def test_a_window_given_by_start_and_duration_ends_when_the_duration_has_passed(stack_app):  # noqa: F811
    stack, app, client = stack_app(
        "windows:\n  - {name: upgrade, start: '2026-06-01T10:00:00+00:00', duration: 90m, reason: db upgrade}\n")
    windows = app.extensions["rsgo"].windows
    [window] = client.get(f"/api/deployments/{stack.name}/windows").json["items"]
    assert (window["start"], window["end"]) == ("2026-06-01T10:00:00.000Z", "2026-06-01T11:30:00.000Z")

    windows.evaluate(now=at("2026-06-01T10:00:01+00:00"))
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance" and not stack.is_running("api")
    windows.evaluate(now=at("2026-06-01T11:29:59+00:00"))
    assert mode_of(client, stack.name)["operationMode"] == "Maintenance"
    windows.evaluate(now=at("2026-06-01T11:30:00+00:00"))
    assert mode_of(client, stack.name)["operationMode"] == "Normal" and stack.is_running("api")
