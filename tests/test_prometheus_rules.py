"""The README's Prometheus integration (section "Metrics") against a real Prometheus and Alertmanager:
Prometheus scrapes a real ``rsgo serve`` with a read token from a credentials file, evaluates the
README's ``StackInMaintenance`` rule as the README writes it, and Alertmanager, with the README's
inhibition rule, holds back another alert carrying the stack's ``deployment`` label exactly while the
stack is in Maintenance."""

from __future__ import annotations

import pytest

from prometheus_stack import Alertmanager, Prometheus, readme_rules
from support import put_mode, wait_until

OTHER_ALERT = "StackProbeFailing"


@pytest.fixture
def processes():
    started = []
    yield started
    for process in reversed(started):
        process.stop()


def alert_state(alertmanager: Alertmanager, name: str) -> tuple[str, list] | None:
    alerts = alertmanager.alerts(name)
    return (alerts[0]["status"]["state"], alerts[0]["status"]["inhibitedBy"]) if alerts else None


def test_the_readme_rule_and_inhibition_hold_back_the_stacks_alerts_only_while_it_is_in_maintenance(
        make_server, make_stack, tmp_path, processes):
    rules, inhibit_rules = readme_rules()
    assert [rule["alert"] for group in rules["groups"] for rule in group["rules"]] == ["StackInMaintenance"]
    stack = make_stack()
    stack.add("api")
    server = make_server()
    server.start()
    token_file = tmp_path / "rsgo-token"
    token_file.write_text(server.create_token("read", "prometheus"))
    wait_until(lambda: put_mode(server, stack.name, "Normal").status_code == 200, timeout=30,
               message="rsgo to know the stack")
    alertmanager = Alertmanager(tmp_path / "alertmanager", {
        "route": {"receiver": "null", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s"},
        "receivers": [{"name": "null"}],
        "inhibit_rules": inhibit_rules,
    })
    processes.append(alertmanager.start())
    # Another alert about the stack (any team's): always firing, carrying the stack's deployment label.
    other = {"groups": [{"name": "team", "rules": [{
        "alert": OTHER_ALERT, "labels": {"severity": "page"},
        "expr": f'max by (deployment) (rsgo_deployment_operation_mode{{deployment="{stack.name}"}}) >= 0'}]}]}
    prometheus = Prometheus(tmp_path / "prometheus", {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "rsgo", "authorization": {"credentials_file": str(token_file)},
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]},
    }, {"rsgo-rules.yml": rules, "team-rules.yml": other})
    processes.append(prometheus.start())

    wait_until(lambda: prometheus.target_health() == [("up", "")], timeout=60,
               message="Prometheus to scrape rsgo with the read token")
    assert wait_until(lambda: alert_state(alertmanager, OTHER_ALERT), timeout=60,
                      message="the stack's other alert in Alertmanager") == ("active", [])

    assert put_mode(server, stack.name, "Maintenance", reason="backup").status_code == 200

    wait_until(lambda: prometheus.alert_states().get("StackInMaintenance") == "firing", timeout=60,
               message="the README's StackInMaintenance rule to fire")
    state, inhibited_by = wait_until(lambda: (s := alert_state(alertmanager, OTHER_ALERT)) and s[0] == "suppressed"
                                     and s, timeout=60, message="the other alert inhibited")
    [source] = alertmanager.alerts("StackInMaintenance")
    assert source["labels"]["deployment"] == stack.name and inhibited_by == [source["fingerprint"]]

    assert put_mode(server, stack.name, "Normal").status_code == 200

    wait_until(lambda: alert_state(alertmanager, OTHER_ALERT) == ("active", []), timeout=60,
               message="the other alert to fire again once the stack left Maintenance")
    assert "StackInMaintenance" not in prometheus.alert_states()
