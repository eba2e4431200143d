"""Several Docker engines from one rsgo (README "Environments"), against real engines: the main test
engine, a second private dockerd, and a TCP listener that accepts and never answers (a hung engine)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml
from openapi_schema_validator import OAS31Validator, oas31_format_checker

import tls_material
from conftest import Stack
from support import LiveSocket, put_mode, wait_until

MAIN_URL = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def write_config(path: Path, environments: dict, stacks: dict | None = None) -> Path:
    path.write_text(yaml.safe_dump({"environments": environments, "stacks": stacks or {}}, sort_keys=False))
    return path


def deployments_named(server, name: str) -> dict[str, dict]:
    """The deployments of that stack name, by environment."""
    items = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10).json()["items"]
    return {item["environment"]: item for item in items if item["name"] == name}


def environments_of(server) -> dict[str, dict]:
    items = requests.get(f"{server.url}/api/environments", headers=server.headers, timeout=10).json()["items"]
    return {item["name"]: item for item in items}


@pytest.fixture
def twin(docker_client, second_engine):
    """One stack name with a container on the main engine and one on the second."""
    name = f"twin{uuid.uuid4().hex[:6]}"
    stacks = (Stack(docker_client, name), Stack(second_engine.client, name))
    for stack in stacks:
        stack.add("web")
    yield stacks
    for stack in stacks:
        if stack.client is second_engine.client and not second_engine.is_running:
            second_engine.start()
        for container in stack.containers.values():
            container.remove(force=True)


@pytest.fixture
def two_engine_server(make_server, tmp_path, second_engine, twin):
    config = write_config(tmp_path / "rsgo.yml", {"local": {"url": MAIN_URL}, "second": {"url": second_engine.url}})
    server = make_server(RSGO_CONFIG=str(config)).start()
    wait_until(lambda: {env: d["containers"]["total"] for env, d in deployments_named(server, twin[0].name).items()}
               == {"local": 1, "second": 1}, 20, message="the stack on both engines")
    return server


def test_a_mode_change_on_one_engine_leaves_the_same_stack_name_on_the_other_untouched(two_engine_server, twin):
    server, (here, there) = two_engine_server, twin
    ambiguous = put_mode(server, here.name, "Maintenance", reason="which one?")
    assert ambiguous.status_code == 409 and ambiguous.json()["code"] == "ambiguous_deployment"
    assert ambiguous.json()["environments"] == ["local", "second"]

    second_id = deployments_named(server, there.name)["second"]["id"]
    answer = put_mode(server, second_id, "Maintenance", reason="db host patch")

    assert answer.status_code == 200, answer.text
    assert not there.is_running("web")
    assert here.is_running("web")
    modes = {env: d["operationMode"] for env, d in deployments_named(server, here.name).items()}
    assert modes == {"local": "Normal", "second": "Maintenance"}
    by_query = requests.get(f"{server.url}/api/deployments/{here.name}?environment=second", headers=server.headers,
                            timeout=10).json()
    assert by_query["id"] == second_id and by_query["stoppedSet"] == [there.container_name("web")]
    assert put_mode(server, second_id, "Normal", reason="done").status_code == 200
    assert there.is_running("web")


def test_the_environments_api_lists_each_engine_with_its_state(make_server, tmp_path, second_engine, twin,
                                                               hung_engine):
    config = write_config(tmp_path / "rsgo.yml", {
        "local": {"url": MAIN_URL}, "second": {"url": second_engine.url},
        "hung": {"url": hung_engine, "timeout": "2s"}})
    server = make_server(RSGO_CONFIG=str(config)).start()
    wait_until(lambda: len(deployments_named(server, twin[0].name)) == 2, 20, message="both deployments")

    listed = wait_until(lambda: (envs := environments_of(server))["hung"]["state"] == "unreachable" and envs,
                        30, message="the hung engine shown unreachable")

    document = requests.get(f"{server.url}/api/openapi.json", headers=server.headers, timeout=10).json()
    schema = {**document["components"]["schemas"]["Environment"], "components": document["components"]}
    for item in listed.values():
        OAS31Validator(schema, format_checker=oas31_format_checker).validate(item)
    engine_version = second_engine.client.version()["Version"]
    assert listed["second"]["kind"] == "engine" and listed["second"]["reachable"] is True
    assert listed["second"]["engineVersion"] == engine_version
    assert listed["second"]["url"] == second_engine.url
    assert listed["second"]["deployments"] == 1 and listed["local"]["deployments"] >= 1
    assert listed["second"]["lastError"] is None
    assert listed["hung"]["reachable"] is False and listed["hung"]["kind"] is None
    assert "unreachable" in listed["hung"]["lastError"]


def test_an_engine_that_stops_shows_unreachable_and_the_other_keeps_working(two_engine_server, twin, second_engine):
    server, here = two_engine_server, twin[0]
    ids = {env: d["id"] for env, d in deployments_named(server, here.name).items()}
    dashboard = LiveSocket(server, "dashboard", session=server.login())
    try:
        second_engine.stop()
        wait_until(lambda: environments_of(server)["second"]["state"] == "unreachable", 30,
                   message="the stopped engine shown unreachable")
        dashboard.wait_for(lambda m: 'id="env-second"' in m and "unreachable" in m, 20,
                           what="the second environment's header saying unreachable")
        detail = requests.get(f"{server.url}/api/deployments/{ids['second']}", headers=server.headers,
                              timeout=10).json()
        assert detail["health"] == "Unknown" and "environment second is unreachable" in detail["problems"]

        began = time.monotonic()
        refused = put_mode(server, ids["second"], "Maintenance", reason="engine is down")
        assert refused.status_code == 503 and refused.json()["code"] == "docker_unreachable"
        assert time.monotonic() - began < 5, "a known-unreachable engine answers at once"

        metrics = requests.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
        assert 'rsgo_environment_up{environment="second",kind="engine"} 0.0' in metrics
        assert 'rsgo_environment_up{environment="local",kind="engine"} 1.0' in metrics

        assert put_mode(server, ids["local"], "Maintenance", reason="local still works").status_code == 200
        assert not here.is_running("web")
        assert put_mode(server, ids["local"], "Normal", reason="back").status_code == 200
        assert here.is_running("web")
    finally:
        dashboard.close()
        second_engine.start()
    wait_until(lambda: environments_of(server)["second"]["state"] == "reachable", 30,
               message="the engine reachable again once it is back")


def test_a_hung_engine_delays_no_page_answer_or_transition_of_the_others(make_server, tmp_path, make_stack,
                                                                         hung_engine):
    stack = make_stack("calm")
    stack.add("web")
    stuck = f"stuck{uuid.uuid4().hex[:6]}"
    config = write_config(tmp_path / "rsgo.yml", {"local": {"url": MAIN_URL}, "hung": {"url": hung_engine,
                                                                                       "timeout": "8s"}},
                          {stuck: {"environment": "hung"}})
    server = make_server(RSGO_CONFIG=str(config)).start()
    local_id = wait_until(lambda: deployments_named(server, stack.name).get("local"), 20, message="discovery")["id"]
    stuck_id = deployments_named(server, stuck)["hung"]["id"]

    # A mode change on the hung engine holds its request for the engine's whole timeout...
    answers = {}
    blocked = threading.Thread(target=lambda: answers.setdefault(
        "hung", put_mode(server, stuck_id, "Maintenance", reason="into the void")))
    blocked.start()
    try:
        wait_until(lambda: environments_of(server)["hung"]["state"] != "reachable", 15, message="hung engine listed")
        # ...while everything of the other engine answers as usual, measured during that wait.
        timings = {}
        for what, call in (("dashboard", lambda: requests.get(f"{server.url}/", headers=server.headers, timeout=30)),
                           ("api", lambda: requests.get(f"{server.url}/api/deployments", headers=server.headers,
                                                        timeout=30)),
                           ("transition", lambda: put_mode(server, local_id, "Maintenance", reason="unaffected"))):
            began = time.monotonic()
            assert call().status_code == 200
            timings[what] = time.monotonic() - began
        assert blocked.is_alive(), "the hung engine's request must still be waiting while the others were measured"
    finally:
        blocked.join(60)
    print(f"while the hung engine held a request: {', '.join(f'{k} {v * 1000:.0f} ms' for k, v in timings.items())}")
    assert max(timings["dashboard"], timings["api"]) < 2, timings
    assert timings["transition"] < 5, timings
    assert not stack.is_running("web")
    assert answers["hung"].status_code == 503 and answers["hung"].json()["code"] == "docker_unreachable"


def test_removing_an_environment_keeps_its_history_and_never_touches_its_containers(two_engine_server, twin,
                                                                                   tmp_path, second_engine):
    server, there = two_engine_server, twin[1]
    second_id = deployments_named(server, there.name)["second"]["id"]
    assert put_mode(server, second_id, "Maintenance", reason="before removal").status_code == 200

    write_config(tmp_path / "rsgo.yml", {"local": {"url": MAIN_URL}})
    reloaded = requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30)
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["environments"] == ["local"]

    listed = environments_of(server)
    assert listed["second"]["state"] == "removed" and listed["second"]["deployments"] == 1
    detail = requests.get(f"{server.url}/api/deployments/{second_id}", headers=server.headers, timeout=10).json()
    assert detail["operationMode"] == "Maintenance" and "environment removed" in detail["problems"]
    refused = put_mode(server, second_id, "Normal", reason="after removal")
    assert refused.status_code == 409 and refused.json()["code"] == "environment_removed"
    assert not there.is_running("web"), "rsgo never acts on a removed environment's containers"
    history = requests.get(f"{server.url}/api/deployments/{second_id}/history", headers=server.headers,
                           timeout=10).json()["items"]
    assert [(e["outcome"], e["reason"]) for e in history][:2] == [("rejected", "after removal"),
                                                                   ("succeeded", "before removal")]
    assert "environment removed" in requests.get(f"{server.url}/", headers=server.headers, timeout=10).text


def test_check_config_names_file_and_key_of_each_environment_problem(tmp_path):
    config = write_config(tmp_path / "rsgo.yml", {
        "good": {"url": "tcp://10.0.0.5:2376", "tls": {"ca": str(tmp_path / "rsgo.yml")}},
        "typo": {"url": "unix:///var/run/docker.sock", "tsl": {}},
        "badurl": {"url": "ftp://example"},
        "noport": {"url": "tcp://10.0.0.6"},
        "leaky": {"url": "tcp://admin:S3cretPW@10.0.0.8:2376"},
        "slow": {"url": "tcp://10.0.0.9:2376", "timeout": "100000h"},
        "certs": {"url": "tcp://10.0.0.7:2376", "tls": {"ca": str(tmp_path / "missing-ca.pem"),
                                                         "cert": str(tmp_path / "cert.pem")}},
    }, {"shop": {}, "api": {"environment": "elsewhere"}})
    result = subprocess.run([sys.executable, "-m", "rsgo.cli", "check-config"], capture_output=True, text=True,
                            env={**os.environ, "RSGO_CONFIG": str(config), "RSGO_DATA_DIR": str(tmp_path / "d")},
                            timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    expected = [
        "environments.typo.tsl: unknown key",
        "environments.badurl.url: 'ftp://example' is not an engine URL",
        "environments.noport.url: 'tcp://10.0.0.6' names no port",
        f"environments.certs.tls.ca: cannot read {tmp_path / 'missing-ca.pem'}",
        f"environments.certs.tls.cert: cannot read {tmp_path / 'cert.pem'}",
        "environments.leaky.url: 'tcp://admin:***@10.0.0.8:2376': a password in the URL is not supported",
        "environments.slow.timeout: must be from 1s to 1h",
        "stacks.shop.environment: required: 7 environments are declared",
        "stacks.api.environment: unknown environment 'elsewhere'",
    ]
    for line in expected:
        assert f"{config}: {line}" in output, (line, output)
    assert "environments.good" not in output
    assert "S3cretPW" not in output, "a password in a URL is never printed"


def test_a_broken_environment_is_shown_disabled_and_the_others_run(make_server, tmp_path, make_stack):
    stack = make_stack("fine")
    stack.add("web")
    config = write_config(tmp_path / "rsgo.yml", {
        "local": {"url": MAIN_URL},
        "broken": {"url": "tcp://10.0.0.7:2376", "tls": {"ca": str(tmp_path / "nowhere.pem")}}})
    server = make_server(RSGO_CONFIG=str(config)).start()
    local_id = wait_until(lambda: deployments_named(server, stack.name).get("local"), 20, message="discovery")["id"]

    broken = environments_of(server)["broken"]
    assert broken["state"] == "disabled" and broken["reachable"] is None
    assert "environments.broken.tls.ca: cannot read" in broken["lastError"]
    assert put_mode(server, local_id, "Maintenance", reason="the rest runs").status_code == 200
    assert "disabled" in requests.get(f"{server.url}/", headers=server.headers, timeout=10).text


# The tops of elements by id, read in the page at one instant.
TOPS = "ids => ids.map(id => document.getElementById(id).getBoundingClientRect().top)"
# Whether the row naming a stack is above an element (by id), read in the page at one instant.
NAMED_ROW_ABOVE = """([name, id]) => {
  const row = [...document.querySelectorAll("tr.deployment")].find(r => r.textContent.includes(name));
  return row.getBoundingClientRect().top < document.getElementById(id).getBoundingClientRect().top;
}"""


def test_the_dashboard_groups_stacks_by_environment_with_its_state_and_filters_them(two_engine_server, twin):
    from playwright.sync_api import expect, sync_playwright

    from support import ADMIN_PASSWORD, ADMIN_USER, ROOT, launch_chromium

    server, name = two_engine_server, twin[0].name
    ids = {env: d["id"] for env, d in deployments_named(server, name).items()}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{server.url}/")
            page.get_by_label("User name").fill(ADMIN_USER)
            page.get_by_label("Password").fill(ADMIN_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#live-status")).to_have_text("Live", timeout=10_000)

            for env in ("local", "second"):
                header = page.locator(f"#env-{env}")
                expect(header).to_contain_text(env)
                expect(header).to_contain_text("reachable")
            # Each stack's row sits in its environment's group: after its header, before the next one. Read at
            # one instant in the page: a live push may replace a row between two separate reads.
            tops = page.evaluate(TOPS, ["env-local", f"deployment-{ids['local']}", "env-second",
                                        f"deployment-{ids['second']}"])
            assert tops == sorted(tops), tops
            page.screenshot(path=str(ROOT / "docs" / "dashboard-environments.png"), full_page=True)

            # A stack discovered later on the first engine is pushed into that engine's group, not at the end.
            newcomer = Stack(twin[0].client, f"late{uuid.uuid4().hex[:6]}")
            try:
                newcomer.add("web")
                expect(page.locator("tr.deployment", has_text=newcomer.name)).to_be_visible(timeout=20_000)
                assert page.evaluate(NAMED_ROW_ABOVE, [newcomer.name, "env-second"]), "pushed into the wrong group"
            finally:
                newcomer.containers["web"].remove(force=True)

            page.get_by_role("navigation", name="Environments").get_by_role("link", name="second").click()
            expect(page).to_have_url(f"{server.url}/?environment=second")
            expect(page.locator(f"#deployment-{ids['second']}")).to_be_visible()
            expect(page.locator(f"#deployment-{ids['local']}")).to_have_count(0)
            expect(page.locator("#env-local")).to_have_count(0)
            unknown = page.goto(f"{server.url}/?environment=nowhere")
            assert unknown.status == 404
            expect(page.locator("body")).to_contain_text("there is no environment named 'nowhere'")
        finally:
            browser.close()


def test_an_engine_reached_over_tls_with_client_certificates(make_server, tmp_path, second_engine, twin):
    """The second engine also listens on 127.0.0.1 with --tlsverify; rsgo reaches it with the files an
    operator mounts, and a client without the right certificate is refused with a clear error."""
    tls = second_engine.tls_dir
    stranger = tls_material.make(tmp_path / "stranger", "another CA")
    config = write_config(tmp_path / "rsgo.yml", {
        "local": {"url": MAIN_URL},
        "db-host": {"url": second_engine.tls_url, "tls": {"ca": str(tls / "ca.pem"), "cert": str(tls / "cert.pem"),
                                                           "key": str(tls / "key.pem")}},
        "impostor": {"url": second_engine.tls_url, "timeout": "5s",
                     "tls": {"ca": str(tls / "ca.pem"), "cert": str(stranger["cert.pem"]),
                             "key": str(stranger["key.pem"])}}})
    server = make_server(RSGO_CONFIG=str(config)).start()
    db_host = wait_until(lambda: deployments_named(server, twin[1].name).get("db-host"), 20,
                         message="the stack on the TLS engine")

    assert put_mode(server, db_host["id"], "Maintenance", reason="over TLS").status_code == 200
    assert not twin[1].is_running("web")
    impostor = wait_until(lambda: (env := environments_of(server)["impostor"])["state"] == "unreachable" and env,
                          30, message="the engine refusing a client certificate of another CA")
    assert "SSL" in impostor["lastError"] or "certificate" in impostor["lastError"], impostor["lastError"]
    assert environments_of(server)["db-host"]["state"] == "reachable"


def test_two_names_for_one_engine_are_refused_and_the_first_keeps_it(make_server, tmp_path, make_stack):
    stack = make_stack("once")
    stack.add("web")
    alias = MAIN_URL.replace("unix:///", "unix:////") if MAIN_URL.startswith("unix:///") else MAIN_URL + "/"
    config = write_config(tmp_path / "rsgo.yml", {"local": {"url": MAIN_URL}, "again": {"url": alias}})
    server = make_server(RSGO_CONFIG=str(config)).start()

    # Until local has answered once, again only waits for it; then it is refused for good.
    again = wait_until(lambda: "reaches the same Docker engine as environment local" in (
        (env := environments_of(server)["again"])["lastError"] or "") and env, 40,
                       message="the second name for the engine refused")
    assert again["state"] == "unreachable"
    local = wait_until(lambda: deployments_named(server, stack.name).get("local"), 20, message="discovery")
    assert set(deployments_named(server, stack.name)) == {"local"}, "one engine's stack is one deployment"
    assert put_mode(server, local["id"], "Maintenance", reason="one name").status_code == 200
    assert not stack.is_running("web")


def test_one_stack_configured_twice_is_a_problem_with_one_environment_too(tmp_path):
    from rsgo.stack_config import load_config

    path = tmp_path / "rsgo.yml"
    path.write_text(yaml.safe_dump({"stacks": {"shop": {}, "other": {"name": "shop"}}}, sort_keys=False))
    problems = [str(problem) for problem in load_config(str(path)).problems]
    assert problems == [f"{path}: stacks.other: stack 'shop' on environment 'local' is configured twice"]


def test_mode_changes_queued_on_a_hung_engine_fail_together_not_one_timeout_each(make_server, tmp_path,
                                                                                  hung_engine):
    stacks = [f"queued{uuid.uuid4().hex[:6]}" for _ in range(6)]
    config = write_config(tmp_path / "rsgo.yml", {"local": {"url": MAIN_URL},
                                                  "hung": {"url": hung_engine, "timeout": "3s"}},
                          {name: {"environment": "hung"} for name in stacks})
    server = make_server(RSGO_CONFIG=str(config)).start()
    ids = [deployments_named(server, name)["hung"]["id"] for name in stacks]
    answers, began = [], time.monotonic()
    threads = [threading.Thread(target=lambda i=i: answers.append(put_mode(server, i, "Maintenance", reason="q")))
               for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    took = time.monotonic() - began

    assert sorted(a.status_code for a in answers) == [503] * 6
    # Discovery's own attempts and the first request each wait the 3 s timeout; the rest fail with them.
    assert took < 12, f"six queued mode changes took {took:.1f}s: each waited the engine's timeout in turn"
