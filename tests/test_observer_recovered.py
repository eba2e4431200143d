"""``observer.recovered`` (README "Webhooks"): sent whenever a failing observer stops failing — its source
reads again, or a config reload fixes its settings or removes it — to a real webhook receiver, from a real
``rsgo serve`` with file observers whose file holds a value the observer cannot understand."""

from __future__ import annotations

import textwrap

import requests

from support import wait_until
from test_webhooks import Receiver

STACKS = ("fixed-by-file", "fixed-by-reload", "removed-by-reload")


def observer(name: str, path) -> str:
    return textwrap.dedent(f"""\
        {name}:
          maintenanceObserver:
            type: file
            name: {name}-flag
            path: {path}
            mode: content
            maintenanceValue: "on"
            normalValue: "off"
            failureThreshold: 1
            pollingInterval: 1s
        """)


def config_text(receiver_url: str, observers: list[str]) -> str:
    return (f"webhooks:\n  - name: ops\n    url: {receiver_url}\n"
            "    events: [observer.failing, observer.recovered]\n"
            "stacks:\n" + "".join(textwrap.indent(text, "  ") for text in observers))


def test_a_failing_observer_is_announced_recovered_when_its_file_or_the_config_is_fixed(tmp_path, make_server):
    receiver = Receiver()
    try:
        url = receiver.url("/ops")
        bad = tmp_path / "bad"
        bad.write_text("banana")  # neither "on" nor "off": every check fails
        by_file = tmp_path / "by-file"
        by_file.write_text("banana")
        good = tmp_path / "good"
        good.write_text("off")
        config = tmp_path / "rsgo.yml"
        config.write_text(config_text(url, [observer("fixed-by-file", by_file), observer("fixed-by-reload", bad),
                                            observer("removed-by-reload", bad)]))
        server = make_server(RSGO_CONFIG=str(config)).start()

        def sent(event: str) -> dict:
            """Each stack's delivery of ``event`` (name -> body), once all three have one."""
            bodies = {r.json["deployment"]["name"]: r.json for r in receiver.at("/ops") if r.json["event"] == event}
            return bodies if set(bodies) == set(STACKS) else None

        failing = wait_until(lambda: sent("observer.failing"), 20, message="observer.failing for all three")
        assert "banana" in failing["fixed-by-reload"]["observer"]["error"]

        # One is fixed at its source; the other two by a reload (admin token): new settings, and no observer.
        by_file.write_text("off")
        config.write_text(config_text(url, [observer("fixed-by-file", by_file), observer("fixed-by-reload", good),
                                            "removed-by-reload: {}\n"]))
        reloaded = requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30)
        assert reloaded.status_code == 200, reloaded.text

        recovered = wait_until(lambda: sent("observer.recovered"), 20, message="observer.recovered for all three")
        assert {name: body["observer"]["recoveredBy"] for name, body in recovered.items()} == {
            "fixed-by-file": "read", "fixed-by-reload": "changed", "removed-by-reload": "removed"}
        assert {name: body["observer"]["name"] for name, body in recovered.items()} == {
            name: f"{name}-flag" for name in STACKS}
        # Nothing fails any more: no second observer.failing, and the fixed ones read normal.
        assert sum(1 for r in receiver.at("/ops") if r.json["event"] == "observer.failing") == 3
        for name in ("fixed-by-file", "fixed-by-reload"):
            status = wait_until(lambda name=name: (body := requests.get(
                f"{server.url}/api/deployments/{name}/observer", headers=server.headers, timeout=10).json())[
                "state"] == "ok" and body, 10, message=f"{name} to read again")
            assert status["failing"] is False and status["lastValue"] == "off"
        assert "observer removed-by-reload-flag of removed-by-reload is no longer failing: the config reload " \
               "removed it" in server.log()
    finally:
        receiver.close()
