"""The JSON API's answers to malformed requests: 400 (invalid_json, invalid_mode, invalid_request),
404, 405 and 415 problem documents, and that a refused request changes nothing.

These requests are refused before anything reaches Docker, so the app's Docker here is a
``FakeGateway`` (conftest.py): its containers stop only if rsgo asks, which the tests would see.
Everything that touches Docker behaviour is in test_api.py, on the real engine.
"""

from __future__ import annotations

import pytest

from conftest import wait_for_deployment
from rsgo.modes import MODE_NAMES
from support import put_mode
from test_api import assert_problem, current_mode, mode_url


@pytest.fixture
def app(fake_app):
    """``client`` (conftest.py) talks to an app whose Docker is a FakeGateway."""
    return fake_app


@pytest.fixture
def one_running(client, make_fake_stack):
    """A discovered stack with one running (fake) container."""
    stack = make_fake_stack()
    stack.add("api")
    wait_for_deployment(client, stack.name, 1)
    return stack


# --- 400 invalid_json -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ['{"newMode": "Maintenance"', "newMode=Maintenance", "{'newMode': 'Maintenance'}"])
def test_it_answers_400_invalid_json_to_malformed_json(client, one_running, raw):
    response = client.put(mode_url(one_running.name), data=raw, content_type="application/json")

    body = assert_problem(response, 400, "invalid_json")
    assert "not valid JSON" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


@pytest.mark.parametrize("raw", ['["Maintenance"]', '"Maintenance"', "null", ""])
def test_it_answers_400_invalid_json_when_the_body_is_not_an_object(client, one_running, raw):
    response = client.put(mode_url(one_running.name), data=raw, content_type="application/json")

    body = assert_problem(response, 400, "invalid_json")
    assert "JSON object" in body["detail"]
    assert one_running.is_running("api")


# --- 400 invalid_mode -------------------------------------------------------------------------


def test_it_answers_400_invalid_mode_listing_the_valid_modes(client, one_running):
    response = put_mode(client, one_running.name, "Holiday")

    body = assert_problem(response, 400, "invalid_mode")
    assert body["validModes"] == ["Normal", "Maintenance", "Migrating", "Failed", "Stopped"]
    assert "Holiday" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


@pytest.mark.parametrize("payload", [{}, {"reason": "backup"}, {"force": False, "wait": True}])
def test_it_answers_400_invalid_mode_when_new_mode_is_missing(client, one_running, payload):
    response = client.put(mode_url(one_running.name), json=payload)

    body = assert_problem(response, 400, "invalid_mode")
    assert body["validModes"] == MODE_NAMES
    assert "newMode is required" in body["detail"]
    assert one_running.is_running("api")


# --- 400 invalid_request ----------------------------------------------------------------------


def test_it_answers_400_invalid_request_to_an_unknown_body_field(client, one_running):
    response = client.put(mode_url(one_running.name), json={"newMode": "Maintenance", "colour": "red"})

    body = assert_problem(response, 400, "invalid_request")
    assert body["field"] == "colour"
    assert "colour" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


@pytest.mark.parametrize("payload, field", [
    ({"newMode": "Maintenance", "force": "yes"}, "force"),
    ({"newMode": "Maintenance", "wait": "no"}, "wait"),
    ({"newMode": "Maintenance", "force": 1}, "force"),
    ({"newMode": 5}, "newMode"),
    ({"newMode": None}, "newMode"),
    ({"mode": ["Maintenance"]}, "mode"),
    ({"newMode": "Maintenance", "reason": 42}, "reason"),
    ({"newMode": "Maintenance", "source": "observer"}, "source"),  # a caller may say api or cli, nothing else
    ({"newMode": "Maintenance", "source": 1}, "source"),
])
def test_it_answers_400_invalid_request_to_a_field_of_the_wrong_type(client, one_running, payload, field):
    response = client.put(mode_url(one_running.name), json=payload)

    body = assert_problem(response, 400, "invalid_request")
    assert body["field"] == field
    assert field in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


def test_it_answers_400_invalid_request_to_a_reason_of_501_characters(client, one_running):
    response = put_mode(client, one_running.name, "Maintenance", reason="x" * 501)

    body = assert_problem(response, 400, "invalid_request")
    assert body["field"] == "reason"
    assert "501" in body["detail"] and "500" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


@pytest.mark.parametrize("reason", ["line one\nline two", "red \x1b[31malert\x1b[0m", "tab\there", "nul\x00byte",
                                    "bell\x07", "carriage\rreturn"])
def test_it_answers_400_invalid_request_to_control_characters_in_the_reason(client, one_running, reason):
    response = put_mode(client, one_running.name, "Maintenance", reason=reason)

    body = assert_problem(response, 400, "invalid_request")
    assert body["field"] == "reason"
    assert "control characters" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


def test_it_answers_400_invalid_request_when_new_mode_and_mode_disagree(client, one_running):
    response = client.put(mode_url(one_running.name), json={"newMode": "Maintenance", "mode": "Stopped"})

    body = assert_problem(response, 400, "invalid_request")
    assert body["field"] == "mode"
    assert "disagree" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"


# --- 404 / 405 / 415 --------------------------------------------------------------------------


def test_it_answers_404_not_found_for_an_unknown_deployment_name(client):
    for path in ("/api/deployments/no-such-stack", mode_url("no-such-stack"),
                 "/api/deployments/no-such-stack/history"):
        body = assert_problem(client.get(path), 404, "not_found")
        assert "no-such-stack" in body["detail"]
    assert_problem(put_mode(client, "no-such-stack", "Maintenance"), 404, "not_found")
    assert_problem(client.get("/api/history", query_string={"deployment": "no-such-stack"}), 404, "not_found")


def test_it_answers_404_not_found_for_an_unknown_deployment_id(client, one_running):
    known_id = client.get(f"/api/deployments/{one_running.name}").json["id"]
    unknown_id = known_id + 100_000

    body = assert_problem(client.get(f"/api/deployments/{unknown_id}"), 404, "not_found")
    assert str(unknown_id) in body["detail"]
    assert_problem(put_mode(client, unknown_id, "Maintenance"), 404, "not_found")
    assert_problem(client.get(f"/api/deployments/{unknown_id}/history"), 404, "not_found")
    # The right id on the wrong environment is not found either.
    assert_problem(client.get(f"/api/deployments/{known_id}", query_string={"environment": "elsewhere"}),
                   404, "not_found")
    assert one_running.is_running("api")


def test_it_answers_404_not_found_for_an_unknown_transition(client):
    body = assert_problem(client.get("/api/transitions/987654"), 404, "not_found")
    assert "987654" in body["detail"]
    # A transition id is a number; anything else is no such resource either.
    assert_problem(client.get("/api/transitions/latest"), 404, "not_found")


def test_it_answers_404_not_found_as_a_problem_for_an_unknown_api_path(client):
    for path in ("/api/nothing-here", "/api/deployments/x/y/z", "/api/"):
        assert_problem(client.get(path), 404, "not_found")


def test_it_answers_405_with_a_problem_body_and_allow_header(client):
    cases = [("put", "/api/deployments/anything", {"GET", "DELETE"}),
             ("post", "/api/deployments", {"GET"}),
             ("patch", mode_url("anything"), {"GET", "PUT"}),
             ("post", "/api/history", {"GET"})]
    for method, path, allowed in cases:
        response = getattr(client, method)(path, json={})

        body = assert_problem(response, 405, "method_not_allowed")
        assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}, (path, response.headers)
        assert body["status"] == 405


@pytest.mark.parametrize("kind", ["text/plain", "form", "none"])
def test_it_answers_415_to_a_body_that_is_not_json(client, one_running, kind):
    url = mode_url(one_running.name)
    if kind == "text/plain":
        response = client.put(url, data='{"newMode": "Maintenance"}', content_type="text/plain")
    elif kind == "form":
        response = client.put(url, data={"newMode": "Maintenance"})
    else:
        response = client.put(url, data='{"newMode": "Maintenance"}')

    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]
    assert one_running.is_running("api")
    assert current_mode(client, one_running.name) == "Normal"
