"""The segments of a mode timeline (rsgo/timeline.py), the mode changes it reads from the audit trail
(rsgo/timeline_store.py) and the time filters of the `when` macro (rsgo/web/time_context.py)."""

from __future__ import annotations

import datetime as dt

from rsgo import audit, events
from rsgo.events import EventBus
from rsgo.models import AuditEntry, Deployment
from rsgo.timeline import DAY, WEEK, Change, Present, build
from rsgo.timeline_store import RecentModeChanges, read_changes
from rsgo.web.time_context import iso_utc, utc_text

NOW = dt.datetime(2026, 12, 2, 12, 0)


def change(hours_ago: float, previous: str, mode: str, actor: str = "alice", reason: str = "") -> Change:
    return Change(1, NOW - dt.timedelta(hours=hours_ago), previous, mode, "ui", actor, reason)


def present(mode: str, hours_ago: float, actor: str = "alice", reason: str = "") -> Present:
    return Present(mode, NOW - dt.timedelta(hours=hours_ago), "ui", actor, reason)


def shape(timeline) -> list[tuple]:
    return [(s.mode, s.offset, s.width, s.actor) for s in timeline.segments]


def test_no_change_in_the_window_is_one_segment_of_the_present_mode():
    old = change(100, "Normal", "Maintenance", "bob", "disk swap")
    timeline = build([old], present("Maintenance", 100, "bob", "disk swap"), now=NOW, span=DAY)
    assert shape(timeline) == [("Maintenance", 0.0, 100.0, "bob")]
    segment = timeline.segments[0]
    assert segment.entered == NOW - dt.timedelta(hours=100) and segment.left is None
    assert segment.who == "by bob (ui): “disk swap”" and segment.lasted == "100 h 0 min"


def test_the_mode_at_the_start_is_the_last_change_before_it_and_each_change_opens_a_segment():
    changes = [change(30, "Normal", "Maintenance", "bob", "backup"),
               change(18, "Maintenance", "Normal", "bob"),
               change(6, "Normal", "Failed", "system", "2 of 2 failed")]
    timeline = build(changes, present("Failed", 6, "system", "2 of 2 failed"), now=NOW, span=DAY)
    assert shape(timeline) == [("Maintenance", 0.0, 25.0, "bob"), ("Normal", 25.0, 50.0, "bob"),
                               ("Failed", 75.0, 25.0, "system")]
    first = timeline.segments[0]
    assert first.entered == NOW - dt.timedelta(hours=30), "the first segment says when the mode began"
    assert first.left == NOW - dt.timedelta(hours=18) and first.lasted == "12 h 0 min"
    assert "Maintenance 6 h 0 min" in timeline.summary and "Normal 12 h 0 min" in timeline.summary


def test_without_the_change_before_the_window_the_first_mode_is_the_previous_one_of_the_first_change():
    timeline = build([change(12, "Stopped", "Normal")], present("Normal", 12), now=NOW, span=DAY)
    assert shape(timeline) == [("Stopped", 0.0, 50.0, None), ("Normal", 50.0, 50.0, "alice")]
    assert timeline.segments[0].entered is None and timeline.segments[0].who == "by whom is not recorded"


def test_the_row_has_the_last_word_about_now():
    # A failure held in memory (the database cannot be written): the trail does not have it yet.
    timeline = build([change(10, "Normal", "Maintenance")], present("Failed", 1, "system"), now=NOW, span=DAY)
    assert [s.mode for s in timeline.segments] == ["Normal", "Maintenance", "Failed"]
    assert timeline.segments[-1].actor == "system" and timeline.segments[-1].left is None


def test_a_stack_seen_an_hour_ago_has_nothing_before():
    timeline = build([], present("Normal", 1, "system"), now=NOW, span=DAY)
    assert len(timeline.segments) == 1
    assert timeline.segments[0].offset == round(23 / 24 * 100, 3)


def test_a_stack_seen_two_hours_ago_has_nothing_before_even_with_a_change_since():
    # Seen 2 h ago (Normal), into Maintenance 1 h ago: the hour of Normal is known, the 22 h before are not.
    seen = Present("Maintenance", NOW - dt.timedelta(hours=1), "ui", "alice",
                   known_from=NOW - dt.timedelta(hours=2))
    timeline = build([change(1, "Normal", "Maintenance")], seen, now=NOW, span=DAY)
    assert [(s.mode, s.offset) for s in timeline.segments] == [
        ("Normal", round(22 / 24 * 100, 3)), ("Maintenance", round(23 / 24 * 100, 3))]


def test_a_brief_failure_in_a_week_is_still_drawn_and_a_change_at_the_same_instant_replaces():
    changes = [change(50, "Normal", "Failed", "system"), change(50 - 10 / 3600, "Failed", "Normal", "carol"),
               change(2, "Normal", "Migrating", "deploy"), change(2, "Migrating", "Normal", "deploy")]
    timeline = build(changes, present("Normal", 2, "deploy"), now=NOW, span=WEEK)
    modes = [s.mode for s in timeline.segments]
    assert modes == ["Normal", "Failed", "Normal", "Normal"], "the zero-length Migrating is dropped"
    failed = timeline.segments[1]
    assert failed.brief and failed.width < 0.01 and failed.lasted == "10 s"
    assert timeline.label == "7 d" and build([], present("Normal", 200), now=NOW, span=DAY).label == "24 h"


def test_time_texts_are_one_format_whatever_the_input():
    assert utc_text("2026-12-02T14:02:33.887526+00:00") == "2026-12-02 14:02 UTC"
    assert utc_text("2026-12-03T02:00:00+01:00") == "2026-12-03 01:00 UTC"
    assert utc_text(dt.datetime(2026, 12, 2, 14, 2, 33)) == "2026-12-02 14:02 UTC"
    assert iso_utc("2026-12-02T14:02:33.887526+00:00") == "2026-12-02T14:02:33.887Z"
    assert utc_text(None) == "" and iso_utc("") == ""


def test_changes_are_read_for_all_stacks_at_once_and_the_cache_rereads_only_after_an_entry(app):
    with app.app_context():
        runtime = app.extensions["rsgo"]
        first = Deployment.create(environment="local", name="tl-a")
        second = Deployment.create(environment="local", name="tl-b")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

        def entry(deployment, hours_ago, previous, new, outcome="succeeded"):
            row = audit.record(deployment, previous_mode=previous, new_mode=new, outcome=outcome, source="api",
                               actor="alice", reason="r")
            # audit.record stamps "now"; these entries are of the past, so their time is set directly.
            AuditEntry.update(finished_at=now - dt.timedelta(hours=hours_ago)).where(AuditEntry.id == row.id).execute()
            return row

        entry(first, 50, "Normal", "Stopped")
        entry(first, 40, "Stopped", "Normal")
        entry(first, 5, "Normal", "Maintenance")
        entry(first, 4, "Maintenance", "Maintenance", outcome="noop")
        entry(first, 3, "Maintenance", "Maintenance", outcome="rejected")
        entry(second, 2, "Normal", "Normal", outcome="failed")  # Docker unreachable before any transition
        found = read_changes(now - DAY)
        assert [(c.previous_mode, c.mode) for c in found[first.id]] == [("Stopped", "Normal"),
                                                                         ("Normal", "Maintenance")]
        assert second.id not in found

        bus = EventBus()
        store = RecentModeChanges(bus)
        assert [c.mode for c in store.changes()[first.id]] == ["Normal", "Maintenance"]
        store.changes()
        assert store.reads == 1, "nothing changed: no second read"
        later = entry(second, 0, "Normal", "Stopped")
        assert second.id not in store.changes(), "not announced yet: still the kept changes"
        bus.publish(events.AUDIT_RECORDED, entry_id=later.id, deployment_id=second.id)
        assert [c.mode for c in store.changes()[second.id]] == ["Stopped"] and store.reads == 2
        assert runtime.timelines is not None


def test_a_brief_segment_is_drawn_inside_the_bar_and_marks_divide_the_window():
    timeline = build([change(0.001, "Normal", "Maintenance")], present("Maintenance", 0.001), now=NOW, span=DAY)
    last = timeline.segments[-1]
    assert last.brief and last.drawn == (99.0, 1.0), "a change a second ago is still seen at the right end"
    assert timeline.segments[0].drawn == (0.0, timeline.segments[0].width)
    assert [label for _x, label in timeline.ticks] == ["−18 h", "−12 h", "−6 h"]
    week = build([], present("Normal", 500), now=NOW, span=WEEK)
    assert [x for x, _label in week.ticks] == [14.286, 28.571, 42.857, 57.143, 71.429, 85.714]
    assert week.ticks[0][1] == "−6 d" and week.ticks[-1][1] == "−1 d"
