"""The JSON API (README "API") against a real Docker engine: error codes, mode changes, history, reads, probes.

Malformed requests (400, 404, 405, 415), which never reach Docker, are in test_api_refusals.py.
"""

from __future__ import annotations

import datetime as dt
from http import HTTPStatus

import pytest

from conftest import wait_for_deployment
from rsgo.models import Deployment
from support import TEST_IMAGE, put_mode, wait_until

PROBLEM = "application/problem+json"
AUDIT_FIELDS = {"id", "deploymentId", "deployment", "previousMode", "newMode", "outcome", "source", "actor",
                "reason", "observedValue", "requestedAt", "finishedAt", "transitionId"}


def assert_problem(response, status: int, code: str) -> dict:
    """An RFC 9457 problem with rsgo's fields; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["type"] == f"urn:rsgo:problem:{code}"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code
    return body


def mode_url(name) -> str:
    return f"/api/deployments/{name}/operation-mode"


def history(client, name, **params) -> list[dict]:
    response = client.get(f"/api/deployments/{name}/history", query_string=params)
    assert response.status_code == 200, response.json
    return response.json["items"]


def current_mode(client, name) -> str:
    return client.get(mode_url(name)).json["operationMode"]


def actor(client) -> str:
    """The actor history records for the test client's API token: ``token:<its name>``."""
    return client.application.config["TEST_ACTOR"]


def parse_time(text: str) -> dt.datetime:
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text[:-1] + "+00:00")


@pytest.fixture
def one_running(client, make_stack):
    """A discovered stack with one running container."""
    stack = make_stack()
    stack.add("api")
    wait_for_deployment(client, stack.name, 1)
    return stack


# --- the longest reason -----------------------------------------------------------------------


def test_it_accepts_a_reason_of_exactly_500_characters(client, one_running):
    reason = "r" * 499 + "!"

    response = put_mode(client, one_running.name, "Maintenance", reason=reason)

    assert response.status_code == 200, response.json
    assert response.json["newMode"] == "Maintenance"
    assert history(client, one_running.name)[0]["reason"] == reason
    assert response.json["deployment"]["trigger"]["reason"] == reason


# --- 409 --------------------------------------------------------------------------------------


def test_it_answers_409_transition_not_allowed_naming_allowed_modes_and_touches_nothing(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    wait_for_deployment(client, stack.name, 2)
    assert put_mode(client, stack.name, "Maintenance").status_code == 200
    before = client.get(f"/api/deployments/{stack.name}").json
    db_started = stack.state("db")["StartedAt"]

    response = put_mode(client, stack.name, "Migrating", reason="schema change")

    body = assert_problem(response, 409, "transition_not_allowed")
    assert body["allowedModes"] == ["Normal", "Stopped"]
    assert body["currentMode"] == "Maintenance"
    assert "Maintenance" in body["detail"] and "Migrating" in body["detail"]
    assert stack.is_running("db") and stack.state("db")["StartedAt"] == db_started
    assert not stack.is_running("api")
    after = client.get(f"/api/deployments/{stack.name}").json
    assert after["operationMode"] == "Maintenance"
    assert after["stoppedSet"] == before["stoppedSet"] == [stack.container_name("api")]
    assert after["trigger"] == before["trigger"]


def test_it_answers_409_transition_not_allowed_from_normal_to_failed(client, one_running):
    started = one_running.state("api")["StartedAt"]

    body = assert_problem(put_mode(client, one_running.name, "failed"), 409, "transition_not_allowed")

    assert body["allowedModes"] == ["Maintenance", "Migrating", "Stopped"]
    assert one_running.is_running("api") and one_running.state("api")["StartedAt"] == started
    assert current_mode(client, one_running.name) == "Normal"


def test_it_records_refused_requests_in_history_as_rejected_with_the_error_code(client, one_running):
    put_mode(client, one_running.name, "Maintenance", reason="nightly backup")
    assert_problem(put_mode(client, one_running.name, "Migrating", reason="too early"), 409,
                   "transition_not_allowed")

    entry = history(client, one_running.name)[0]

    assert entry["outcome"] == "rejected"
    assert entry["error"].startswith("transition_not_allowed")
    assert entry["requestedMode"] == "Migrating"
    assert (entry["previousMode"], entry["newMode"]) == ("Maintenance", "Maintenance")
    assert (entry["source"], entry["actor"], entry["reason"]) == ("api", actor(client), "too early")
    assert entry["transitionId"] is None
    assert current_mode(client, one_running.name) == "Maintenance"


def test_it_answers_409_ambiguous_deployment_and_environment_disambiguates(client, one_running):
    local = client.get(f"/api/deployments/{one_running.name}").json
    other = Deployment.create(environment="other", name=one_running.name)

    for response in (client.get(f"/api/deployments/{one_running.name}"),
                     client.get(mode_url(one_running.name)),
                     client.get(f"/api/deployments/{one_running.name}/history"),
                     put_mode(client, one_running.name, "Maintenance")):
        body = assert_problem(response, 409, "ambiguous_deployment")
        assert body["environments"] == sorted([local["environment"], "other"])
        assert "?environment=" in body["detail"]
    assert one_running.is_running("api")

    mine = client.get(f"/api/deployments/{one_running.name}", query_string={"environment": local["environment"]})
    theirs = client.get(f"/api/deployments/{one_running.name}", query_string={"environment": "other"})
    assert mine.status_code == 200 and mine.json["id"] == local["id"]
    assert mine.json["containerCounts"]["total"] == 1
    assert theirs.status_code == 200 and theirs.json["id"] == other.id
    assert theirs.json["environment"] == "other" and theirs.json["containers"] == []
    # The numeric id is never ambiguous.
    assert client.get(f"/api/deployments/{other.id}").json["environment"] == "other"

    response = client.put(f"{mode_url(one_running.name)}?environment={local['environment']}",
                          json={"newMode": "Maintenance"})
    assert response.status_code == 200, response.json
    assert response.json["deploymentId"] == local["id"]
    assert not one_running.is_running("api")
    assert Deployment.get_by_id(other.id).mode == "Normal"


# observer_owns_maintenance (409 unless forced) is tested with a real file observer in test_observers.py.


# --- accepted input ---------------------------------------------------------------------------


def test_it_takes_mode_names_case_insensitively(client, one_running):
    response = put_mode(client, one_running.name, "mAiNtEnAnCe")

    assert response.status_code == 200, response.json
    assert (response.json["previousMode"], response.json["newMode"]) == ("Normal", "Maintenance")
    assert not one_running.is_running("api")

    response = put_mode(client, one_running.name, "  NORMAL ")

    assert response.status_code == 200, response.json
    assert response.json["newMode"] == "Normal"
    assert one_running.is_running("api")


def test_it_accepts_mode_as_an_alias_of_new_mode(client, one_running):
    response = client.put(mode_url(one_running.name), json={"mode": "Maintenance", "reason": "alias"})

    assert response.status_code == 200, response.json
    assert response.json["newMode"] == "Maintenance"
    assert not one_running.is_running("api")

    # Both given and agreeing (case aside) is fine too.
    response = client.put(mode_url(one_running.name), json={"mode": "normal", "newMode": "Normal"})

    assert response.status_code == 200, response.json
    assert response.json["newMode"] == "Normal"
    assert one_running.is_running("api")


def test_it_answers_200_with_the_whole_mode_change_result(client, one_running):
    response = put_mode(client, one_running.name, "Maintenance", reason="full body")

    assert response.status_code == 200, response.json
    body = response.json
    assert body["success"] is True and body["outcome"] == "succeeded"
    assert body["message"] == f"{one_running.name} changed from Normal to Maintenance"
    assert body["deploymentId"] == body["deployment"]["id"]
    assert body["deployment"]["operationMode"] == "Maintenance"
    assert (body["previousMode"], body["newMode"], body["triggerSource"]) == ("Normal", "Maintenance", "api")
    transition = body["transition"]
    assert transition["outcome"] == "succeeded"
    assert parse_time(transition["finishedAt"]) >= parse_time(transition["startedAt"])
    [container] = transition["containers"]
    assert {"name", "action", "result", "error", "durationMs"} <= set(container)
    assert (container["name"], container["action"], container["result"], container["error"]) == (
        one_running.container_name("api"), "stop", "stopped", None)
    assert client.get(f"/api/transitions/{transition['id']}").json == transition


def test_it_accepts_json_with_a_charset_parameter(client, one_running):
    response = client.put(mode_url(one_running.name), data='{"newMode": "Maintenance"}',
                          content_type="application/json; charset=utf-8")

    assert response.status_code == 200, response.json
    assert not one_running.is_running("api")


def test_it_answers_200_noop_for_the_current_mode_touching_nothing(client, one_running):
    started = one_running.state("api")["StartedAt"]
    mode_before = client.get(mode_url(one_running.name)).json

    response = put_mode(client, one_running.name, "normal", reason="make sure")

    assert response.status_code == 200, response.json
    body = response.json
    assert body["success"] is True and body["outcome"] == "noop"
    assert (body["previousMode"], body["newMode"]) == ("Normal", "Normal")
    assert body["transition"] is None
    assert "nothing was done" in body["message"]
    assert one_running.is_running("api") and one_running.state("api")["StartedAt"] == started
    assert client.get(mode_url(one_running.name)).json == mode_before
    entry = history(client, one_running.name)[0]
    assert (entry["outcome"], entry["previousMode"], entry["newMode"]) == ("noop", "Normal", "Normal")
    assert entry["reason"] == "make sure" and entry["transitionId"] is None


def test_it_answers_202_with_location_when_wait_is_false_and_the_transition_succeeds(client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    wait_for_deployment(client, stack.name, 2)

    response = put_mode(client, stack.name, "Maintenance", wait=False, reason="async")

    assert response.status_code == 202, response.json
    transition_id = response.json["transition"]["id"]
    assert response.headers["Location"] == f"/api/transitions/{transition_id}"
    assert response.json["outcome"] == "running"
    assert response.json["transition"]["url"] == response.headers["Location"]

    done = wait_until(lambda: (t := client.get(response.headers["Location"]).json)["outcome"] == "succeeded" and t,
                      20, message="the transition to succeed")

    assert done["id"] == transition_id
    assert (done["previousMode"], done["targetMode"], done["reason"]) == ("Normal", "Maintenance", "async")
    assert done["progress"] == {"done": 2, "total": 2}
    results = {c["name"]: c for c in done["containers"]}
    assert set(results) == {stack.container_name("api"), stack.container_name("worker")}
    for result in results.values():
        assert (result["action"], result["result"], result["error"]) == ("stop", "stopped", None)
        assert isinstance(result["durationMs"], int) and result["durationMs"] >= 0
    assert parse_time(done["finishedAt"]) >= parse_time(done["startedAt"])
    assert not stack.is_running("api") and not stack.is_running("worker")
    assert current_mode(client, stack.name) == "Maintenance"
    assert history(client, stack.name)[0]["transitionId"] == transition_id


# --- history ----------------------------------------------------------------------------------


def _five_entries(client, name) -> list[str]:
    """Five audit entries of different outcomes; returns their reasons oldest first."""
    assert put_mode(client, name, "Maintenance", reason="step 1").status_code == 200
    assert put_mode(client, name, "Maintenance", reason="step 2").status_code == 200  # noop
    assert put_mode(client, name, "Migrating", reason="step 3").status_code == 409  # rejected
    assert put_mode(client, name, "Normal", reason="step 4").status_code == 200
    assert put_mode(client, name, "Normal", reason="step 5").status_code == 200  # noop
    return ["step 1", "step 2", "step 3", "step 4", "step 5"]


def test_it_gives_every_audit_field_newest_first_with_the_token_actor_and_source_api(client, one_running):
    reasons = _five_entries(client, one_running.name)
    deployment_id = client.get(f"/api/deployments/{one_running.name}").json["id"]

    entries = history(client, one_running.name)

    assert [e["reason"] for e in entries] == list(reversed(reasons))
    assert [e["outcome"] for e in entries] == ["noop", "succeeded", "rejected", "noop", "succeeded"]
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    for entry in entries:
        assert AUDIT_FIELDS <= set(entry), AUDIT_FIELDS - set(entry)
        assert (entry["deploymentId"], entry["deployment"]) == (deployment_id, one_running.name)
        assert (entry["source"], entry["actor"]) == ("api", actor(client))
        assert entry["observedValue"] is None
        assert parse_time(entry["finishedAt"]) >= parse_time(entry["requestedAt"])
    requested = [parse_time(e["requestedAt"]) for e in entries]
    assert requested == sorted(requested, reverse=True)
    succeeded = [e for e in entries if e["outcome"] == "succeeded"]
    assert all(isinstance(e["transitionId"], int) for e in succeeded)
    assert [(e["previousMode"], e["newMode"]) for e in succeeded] == [("Maintenance", "Normal"),
                                                                      ("Normal", "Maintenance")]
    assert all(e["transitionId"] is None for e in entries if e["outcome"] in ("noop", "rejected"))


def test_it_paginates_history_with_a_cursor_into_disjoint_pages_that_cover_everything(client, one_running):
    _five_entries(client, one_running.name)
    everything = [e["id"] for e in history(client, one_running.name)]
    url = f"/api/deployments/{one_running.name}/history"

    pages, before = [], None
    while True:
        params = {"limit": 2, **({"before": before} if before is not None else {})}
        page = client.get(url, query_string=params).json
        pages.append([e["id"] for e in page["items"]])
        before = page["nextBefore"]
        if before is None:
            assert page["next"] is None
            break
        assert before == page["items"][-1]["id"]
        assert f"before={before}" in page["next"] and "limit=2" in page["next"]
        # The `next` link gives the same page as the cursor.
        assert client.get(page["next"]).json["items"] == client.get(
            url, query_string={"limit": 2, "before": before}).json["items"]

    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [entry_id for page in pages for entry_id in page]
    assert len(flat) == len(set(flat)), "pages overlap"
    assert flat == everything
    # A page that ends exactly at the last entry says there is no next one.
    exact = client.get(url, query_string={"limit": 5}).json
    assert len(exact["items"]) == 5 and exact["nextBefore"] is None


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"limit": "-1"},
                                    {"before": "x"}, {"before": 0}])
def test_it_answers_400_invalid_request_to_bad_paging(client, one_running, params):
    for url in (f"/api/deployments/{one_running.name}/history", "/api/history"):
        body = assert_problem(client.get(url, query_string=params), 400, "invalid_request")
        assert body["field"] == next(iter(params))


def test_it_filters_global_history_by_deployment_source_and_actor(app, client, make_stack):
    first, second = make_stack(), make_stack()
    first.add("api")
    second.add("api")
    wait_for_deployment(client, first.name, 1)
    wait_for_deployment(client, second.name, 1)
    assert put_mode(client, first.name, "Maintenance", reason="first via api").status_code == 200
    assert put_mode(client, second.name, "Migrating", reason="second via api").status_code == 200
    # What the CLI does: the same transition service, another source and actor.
    second_id = client.get(f"/api/deployments/{second.name}").json["id"]
    app.extensions["rsgo"].transitions.change_mode(second_id, "Normal", source="cli", actor="alice",
                                                   reason="second via cli")

    def reasons(**params):
        response = client.get("/api/history", query_string=params)
        assert response.status_code == 200, response.json
        return [e["reason"] for e in response.json["items"]]

    assert reasons(deployment=first.name) == ["first via api"]
    assert reasons(deployment=second.name) == ["second via cli", "second via api"]
    assert reasons(deployment=str(second_id)) == ["second via cli", "second via api"]
    assert reasons(source="cli") == ["second via cli"]
    assert reasons(actor="alice") == ["second via cli"]
    assert reasons(source="api") == ["second via api", "first via api"]
    assert reasons(actor=actor(client)) == ["second via api", "first via api"]
    assert reasons(actor="anonymous") == []
    assert reasons(deployment=second.name, source="api") == ["second via api"]
    assert reasons(deployment=first.name, actor="alice") == []
    assert reasons() == ["second via cli", "second via api", "first via api"]


# --- reads ------------------------------------------------------------------------------------


def test_it_lists_deployments_with_mode_health_counts_and_trigger(client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("job", running=False)
    wait_for_deployment(client, stack.name, 2)

    def mine():
        response = client.get("/api/deployments")
        assert response.status_code == 200
        return next(d for d in response.json["items"] if d["name"] == stack.name)

    item = mine()
    assert {"id", "name", "environment", "operationMode", "health", "containers", "trigger",
            "modeChangedAt"} <= set(item)
    assert item["environment"] == "local"
    assert item["operationMode"] == "Normal"
    assert item["health"] in ("Healthy", "Degraded", "Unhealthy", "Unknown")
    assert item["containers"] == {"running": 1, "total": 2}
    assert {"source", "actor", "reason", "at"} <= set(item["trigger"])
    assert item["trigger"]["source"] == "system"

    sent = dt.datetime.now(dt.UTC)
    assert put_mode(client, stack.name, "Maintenance", reason="list me").status_code == 200

    item = mine()
    assert item["operationMode"] == "Maintenance"
    assert item["containers"] == {"running": 0, "total": 2}
    assert (item["trigger"]["source"], item["trigger"]["actor"], item["trigger"]["reason"]) == (
        "api", actor(client), "list me")
    assert item["trigger"]["at"] == item["modeChangedAt"]
    assert parse_time(item["modeChangedAt"]) >= sent - dt.timedelta(seconds=1)


def test_it_shows_one_deployment_by_numeric_id_and_by_name_with_containers(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "Ignore", "com.docker.compose.service": "db"})
    stack.add("api", labels={"com.docker.compose.service": "api"})
    stack.add("job", running=False)
    wait_for_deployment(client, stack.name, 3)

    by_name = client.get(f"/api/deployments/{stack.name}")
    by_id = client.get(f"/api/deployments/{by_name.json['id']}")

    assert by_name.status_code == by_id.status_code == 200
    assert by_id.json == by_name.json
    body = by_name.json
    assert body["allowedModes"] == ["Maintenance", "Migrating", "Stopped"]
    containers = {c["name"]: c for c in body["containers"]}
    assert set(containers) == {stack.container_name(s) for s in ("db", "api", "job")}
    for container in containers.values():
        assert set(container) >= {"name", "service", "image", "state", "health", "ignored", "inStoppedSet"}
        assert container["image"] == TEST_IMAGE
        assert container["inStoppedSet"] is False
    db, api, job = (containers[stack.container_name(s)] for s in ("db", "api", "job"))
    assert (db["service"], db["state"], db["ignored"]) == ("db", "running", True)
    assert (api["service"], api["state"], api["ignored"]) == ("api", "running", False)
    assert (job["service"], job["state"], job["ignored"]) == (None, "created", False)
    assert db["health"] == "none"

    assert put_mode(client, stack.name, "Maintenance").status_code == 200

    body = client.get(f"/api/deployments/{body['id']}").json
    containers = {c["name"]: c for c in body["containers"]}
    assert body["allowedModes"] == ["Normal", "Stopped"]
    assert containers[stack.container_name("api")]["inStoppedSet"] is True
    assert containers[stack.container_name("api")]["state"] == "exited"
    assert containers[stack.container_name("db")]["inStoppedSet"] is False
    assert containers[stack.container_name("job")]["inStoppedSet"] is False


def test_it_shows_the_operation_mode_and_its_trigger(client, one_running):
    deployment_id = client.get(f"/api/deployments/{one_running.name}").json["id"]

    mode = client.get(mode_url(one_running.name)).json

    assert mode["deploymentId"] == deployment_id
    assert mode["operationMode"] == "Normal"
    assert mode["transitionInProgress"] is None
    assert mode["trigger"]["source"] == "system"

    assert put_mode(client, one_running.name, "Stopped", reason="shut down").status_code == 200
    mode = client.get(mode_url(deployment_id)).json

    assert mode["operationMode"] == "Stopped"
    assert (mode["trigger"]["source"], mode["trigger"]["actor"], mode["trigger"]["reason"]) == (
        "api", actor(client), "shut down")
    assert mode["modeChangedAt"] == mode["trigger"]["at"]


def test_it_keeps_a_stack_row_mode_and_history_when_all_its_containers_are_removed(client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    deployment_id = wait_for_deployment(client, stack.name, 2)["id"]
    assert put_mode(client, stack.name, "Maintenance", reason="before removal").status_code == 200

    for container in stack.containers.values():
        container.remove(force=True)
    gone = wait_for_deployment(client, stack.name, 0)

    assert gone["id"] == deployment_id
    assert gone["operationMode"] == "Maintenance"
    assert gone["containers"] == [] and gone["containerCounts"] == {"running": 0, "total": 0}
    item = next(d for d in client.get("/api/deployments").json["items"] if d["name"] == stack.name)
    assert item["id"] == deployment_id and item["containers"] == {"running": 0, "total": 0}
    assert item["operationMode"] == "Maintenance"
    assert [e["reason"] for e in history(client, stack.name)] == ["before removal"]
    # And the mode can still be changed: there is simply nothing to start.
    response = put_mode(client, stack.name, "Normal")
    assert response.status_code == 200, response.json
    assert current_mode(client, stack.name) == "Normal"


# --- probes -----------------------------------------------------------------------------------


def test_it_answers_healthz_200(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_it_answers_readyz_200_once_synced(client):
    response = wait_until(lambda: (r := client.get("/readyz")).status_code == 200 and r, 15,
                          message="/readyz to answer 200")

    assert response.json["status"] == "ready"
    assert response.json["checks"] == {"database": "ok", "docker": "ok"}
