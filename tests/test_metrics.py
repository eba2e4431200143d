"""GET /metrics (README "Metrics") parsed with prometheus_client's own parser, after real transitions on a real Docker
engine and real observer checks; who may read it."""

from __future__ import annotations

import textwrap
import time

from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for_deployment
from rsgo.modes import MODE_NAMES
from rsgo.security import tokens
from support import put_mode


def scrape(client, **headers) -> dict[str, list[tuple[dict, float]]]:
    """Every sample of the exposition by sample name: ``{"rsgo_transitions_total": [(labels, value)]}``."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    samples: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by(samples, label: str) -> dict[str, float]:
    return {labels[label]: value for labels, value in samples}


def test_mode_gauges_transition_counters_and_the_histogram_follow_real_transitions(make_app, make_stack):
    steady, flaky = make_stack(), make_stack()
    steady.add("api")
    flaky.add("api")
    flaky.add("broken")
    app = make_app()
    client = app.test_client()
    wait_for_deployment(client, steady.name, 1)
    wait_for_deployment(client, flaky.name, 2)
    began = time.monotonic()
    for mode in ("Maintenance", "Normal", "Maintenance"):
        assert put_mode(client, steady.name, mode).status_code == 200
    assert put_mode(client, flaky.name, "Maintenance").status_code == 200
    flaky.containers["broken"].remove(force=True)
    flaky.add("broken", command=["/does/not/exist"], running=False)
    assert put_mode(client, flaky.name, "Normal").status_code == 502
    assert put_mode(client, steady.name, "Maintenance").status_code == 200  # a no-op is no transition
    elapsed = time.monotonic() - began

    metrics = scrape(client)

    gauges: dict[str, dict[str, float]] = {}
    for labels, value in metrics["rsgo_deployment_operation_mode"]:
        assert labels["environment"] == "local"
        gauges.setdefault(labels["deployment"], {})[labels["mode"]] = value
    for deployment, modes in gauges.items():
        assert sorted(modes) == sorted(MODE_NAMES), deployment
        assert sorted(modes.values()) == [0, 0, 0, 0, 1], deployment  # exactly one mode is 1
    assert {mode for mode, value in gauges[steady.name].items() if value} == {"Maintenance"}
    assert {mode for mode, value in gauges[flaky.name].items() if value} == {"Failed"}
    listed = {d["name"]: d["operationMode"] for d in client.get("/api/deployments").json["items"]}
    for name in set(listed) & set(gauges):
        assert gauges[name][listed[name]] == 1, name

    assert by(metrics["rsgo_transitions_total"], "outcome") == {"succeeded": 4, "failed": 1}
    [(_, count)] = metrics["rsgo_transition_duration_seconds_count"]
    [(_, seconds)] = metrics["rsgo_transition_duration_seconds_sum"]
    assert count == 5
    assert 0 < seconds <= elapsed
    buckets = by(metrics["rsgo_transition_duration_seconds_bucket"], "le")
    assert buckets["+Inf"] == 5
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert metrics["rsgo_windows_active"] == [({}, 0)]
    assert "rsgo_observer_failing" not in metrics  # no observers configured


def test_observer_checks_are_counted_by_result_and_failing_is_a_gauge(make_app, make_stack, tmp_path):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("off")
    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""
        stacks:
          {stack.name}:
            maintenanceObserver:
              type: file
              path: {value}
              mode: content
              maintenanceValue: "on"
              normalValue: "off"
              failureThreshold: 2
        """))
    # No scheduler: only the checks this test asks for happen.
    app = make_app(RSGO_CONFIG=str(config), background=False)
    client = app.test_client()
    check = f"/api/deployments/{stack.name}/observer/check"

    def observed():
        metrics = scrape(client)
        checks = {labels["result"]: value for labels, value in metrics.get("rsgo_observer_checks_total", [])
                  if labels["deployment"] == stack.name}
        return checks, by(metrics["rsgo_observer_failing"], "deployment")[stack.name]

    assert observed() == ({}, 0)
    assert client.post(check).status_code == 200
    assert observed() == ({"ok": 1}, 0)
    value.write_text("banana")
    client.post(check)
    # Unchanged readings publish no "observer.checked", but every check is counted.
    assert observed() == ({"ok": 1, "error": 1}, 0)
    client.post(check)
    assert observed() == ({"ok": 1, "error": 2}, 1)  # failureThreshold reached
    value.write_text("off")
    client.post(check)
    client.post(check)
    assert observed() == ({"ok": 3, "error": 2}, 0)


def test_metrics_need_a_read_token_unless_public(make_app, tmp_path):
    app = make_app(background=False)
    anonymous = app.test_client()
    del anonymous.environ_base["HTTP_AUTHORIZATION"]

    refused = anonymous.get("/metrics")

    assert refused.status_code == 401
    assert refused.mimetype == "application/problem+json" and refused.json["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    _, read = tokens.create_token("prometheus", "read", created_by="tests")
    assert "rsgo_transitions_total" in scrape(anonymous, Authorization=f"Bearer {read}")
    _, limited = tokens.create_token("one-stack", "read", created_by="tests", stacks=["shop"])
    assert anonymous.get("/metrics", headers={"Authorization": f"Bearer {limited}"}).status_code == 403
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer rsgo_wrong"}).status_code == 401

    public = make_app(background=False, data_dir=tmp_path / "public", RSGO_METRICS_PUBLIC="true")
    anonymous = public.test_client()
    del anonymous.environ_base["HTTP_AUTHORIZATION"]

    metrics = scrape(anonymous)

    # Each app has a registry of its own: the second app's counters start at zero.
    assert by(metrics["rsgo_transitions_total"], "outcome") == {"succeeded": 0, "failed": 0}
    assert anonymous.get("/api/deployments").status_code == 401  # only /metrics became public
