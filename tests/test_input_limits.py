"""Requests refused for their size or shape before anything happens, and stored text bounded:
a mode that is no mode, reasons too long, bodies over 1 MiB, JSON nested too deep, integers beyond
SQLite's range (400, 404 or 413, never a 500), and audit fields cut to their limits.

None of these reaches Docker, so the app's Docker here is a ``FakeGateway`` (conftest.py): its
containers stop only if rsgo asks, which the tests would see. Hostile input that needs the real
engine or a real ``rsgo serve`` is in test_input_hardening.py.
"""

from __future__ import annotations

import json

import pytest

from conftest import wait_for_deployment
from rsgo import audit
from rsgo.models import AuditEntry, Deployment
from test_input_hardening import ONE_MIB, assert_page, assert_problem, audit_rows, bearer

HUGE = "99999999999999999999999"  # far beyond SQLite's largest integer
JUST_TOO_BIG = str(2**63)  # one more than SQLite's largest integer


@pytest.fixture
def app(fake_app):
    """``client`` (conftest.py) talks to an app whose Docker is a FakeGateway."""
    return fake_app


@pytest.fixture
def two_stacks(client, make_fake_stack):
    """Two discovered stacks, a and b, one running (fake) container each; returns (a, a's id, b, b's id)."""
    a, b = make_fake_stack("a"), make_fake_stack("b")
    a.add("api")
    b.add("api")
    a_id = wait_for_deployment(client, a.name, 1)["id"]
    b_id = wait_for_deployment(client, b.name, 1)["id"]
    return a, a_id, b, b_id


# -- refusals store nothing unbounded; a body has a size limit ---------------------------------------

def test_a_mode_that_is_no_mode_is_400_invalid_mode_and_stores_nothing_even_for_a_read_token(client, two_stacks):
    _, _, b, b_id = two_stacks
    read = bearer("read")
    url = f"/api/deployments/{b.name}/operation-mode"

    huge_mode = client.put(url, json={"newMode": "X" * 100_000, "reason": "fill the history"}, headers=read)
    body = assert_problem(huge_mode, 400, "invalid_mode")
    assert body["validModes"] and len(body["detail"]) < 300  # the answer does not echo the 100 000 characters
    assert_problem(client.put(url, json={"newMode": "Maintenance", "reason": "r" * 501}, headers=read),
                   400, "invalid_request")
    assert_problem(client.put(url, json={"newMode": "Maintenance", "reason": "a\nb"}, headers=read),
                   400, "invalid_request")
    assert audit_rows(b_id) == []

    # A valid request from a caller who may not change modes is still refused and recorded, bounded.
    assert_problem(client.put(url, json={"newMode": "maintenance", "reason": "may I?"}, headers=read),
                   403, "forbidden")
    [entry] = audit_rows(b_id)
    assert (entry.outcome, entry.requested_mode, entry.reason) == ("rejected", "Maintenance", "may I?")
    assert b.is_running("api")


def test_the_page_checks_the_mode_and_reason_before_recording_a_refusal(client, two_stacks):
    _, _, b, b_id = two_stacks
    read = bearer("read")
    url = f"/deployments/{b.name}/mode-change"

    assert_page(client.post(url, data={"newMode": "X" * 200_000, "reason": "fill"}, headers=read), 400)
    assert_page(client.post(url, data={"newMode": "Maintenance", "reason": "r" * 100_000}, headers=read), 400)
    assert audit_rows(b_id) == []
    assert_page(client.post(url, data={"newMode": "Maintenance", "reason": "viewer tries"}, headers=read), 403)
    [entry] = audit_rows(b_id)
    assert (entry.requested_mode, entry.reason, entry.source) == ("Maintenance", "viewer tries", "ui")


def test_every_stored_audit_field_is_bounded_whoever_writes_it(app, two_stacks):
    _, _, _, b_id = two_stacks
    deployment = Deployment.get_by_id(b_id)

    entry = audit.record(deployment, previous_mode="Normal", new_mode="Normal", outcome="rejected", source="api",
                         actor="a" * 100_000, reason="r" * 100_000, requested_mode="m" * 100_000,
                         observed_value="o" * 100_000 + "\ud800", error="e" * 100_000, address="1" * 10_000)
    stored = AuditEntry.get_by_id(entry.id)
    for field, limit in audit.FIELD_LIMITS.items():
        value = getattr(stored, field)
        assert value is not None and len(value) <= limit, (field, len(value))
        assert value.endswith("…"), field  # cut, and visibly so
    # Short values, and text with a lone surrogate that SQLite could not encode, are stored as they can be.
    fine = audit.record(deployment, previous_mode="Normal", new_mode="Normal", outcome="noop", source="api",
                        actor="me", reason="short", observed_value="on\ud800")
    fine = AuditEntry.get_by_id(fine.id)
    assert (fine.actor, fine.reason) == ("me", "short") and fine.observed_value.startswith("on")


def test_a_body_over_one_mib_is_413_request_too_large_and_stores_nothing(client, two_stacks):
    _, _, b, b_id = two_stacks
    big = json.dumps({"newMode": "Maintenance", "reason": "x" * ONE_MIB})
    body = assert_problem(client.put(f"/api/deployments/{b.name}/operation-mode", data=big,
                                     content_type="application/json"), 413, "request_too_large")
    assert "1 MiB" in body["detail"]
    assert_problem(client.post(f"/api/deployments/{b.name}/windows", data=big, content_type="application/json"),
                   413, "request_too_large")
    assert_page(client.post(f"/deployments/{b.name}/windows", data={"hours": "1", "reason": "x" * ONE_MIB}), 413)
    assert audit_rows(b_id) == []
    assert b.is_running("api")
    # Just under the limit is read (and refused for what it says, not for its size).
    assert_problem(client.put(f"/api/deployments/{b.name}/operation-mode", content_type="application/json",
                              data=json.dumps({"newMode": "Maintenance", "reason": "x" * (ONE_MIB - 100)})),
                   400, "invalid_request")


# -- malformed input is a 400/404, never a 500 -------------------------------------------------------

def test_integers_beyond_sqlite_are_400_or_404_not_500(client, two_stacks):
    a, a_id, _, _ = two_stacks
    for big in (HUGE, JUST_TOO_BIG):
        assert_problem(client.get(f"/api/transitions/{big}"), 404, "not_found")
        assert_problem(client.get(f"/api/deployments/{big}"), 404, "not_found")
        assert_problem(client.get(f"/api/deployments/{big}/history"), 404, "not_found")
        assert_problem(client.delete(f"/api/deployments/{a.name}/windows/{big}"), 404, "not_found")
        for path in ("/api/history", f"/api/deployments/{a.name}/history"):
            assert_problem(client.get(path, query_string={"before": big}), 400, "invalid_request")
            assert_problem(client.get(path, query_string={"limit": big}), 400, "invalid_request")
        assert_page(client.get(f"/deployments/{big}"), 404)
        assert_page(client.get("/history", query_string={"before": big}), 400)
        assert_page(client.get(f"/deployments/{a.name}/history", query_string={"before": big}), 400)
        assert_page(client.post(f"/deployments/{a.name}/windows/{big}/delete"), 404)
        assert client.post(f"/admin/users/{big}/delete").status_code == 404
        assert client.post(f"/admin/tokens/{big}/revoke").status_code == 404
    # The largest SQLite integer is a valid (unknown) id, and an id is still an id.
    assert_problem(client.get(f"/api/transitions/{2**63 - 1}"), 404, "not_found")
    assert client.get(f"/api/history?before={2**63 - 1}").status_code == 200
    assert client.get(f"/api/deployments/{a_id}").json["name"] == a.name


@pytest.mark.parametrize("depth", [100, 1000, 100_000])
def test_deeply_nested_json_is_400_invalid_json(client, two_stacks, depth):
    _, _, b, b_id = two_stacks
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        raw = '{"newMode": "Maintenance", "x": ' + nested + "}"
        body = assert_problem(client.put(f"/api/deployments/{b.name}/operation-mode", data=raw,
                                         content_type="application/json"), 400, "invalid_json")
        assert "deep" in body["detail"]
        assert_problem(client.post(f"/api/deployments/{b.name}/windows", data=raw,
                                   content_type="application/json"), 400, "invalid_json")
    assert b.is_running("api") and audit_rows(b_id) == []
