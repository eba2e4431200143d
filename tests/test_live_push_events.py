"""Live pushes for what changes a page without a mode change (README "The dashboard"): a window added, a
container stopped again by enforcement, an observer failing; and the push worker outliving a batch it could not
render. Real `rsgo serve`, real engine, real websocket clients (tests/test_live_push.py has the mode changes)."""

from __future__ import annotations

import logging
import queue
import re
import textwrap

import requests

from conftest import wait_for_deployment
from support import free_port, put_mode, wait_until
from test_live_push import deployment_of, element, oob, open_page  # noqa: F401 (open_page is a fixture)


def test_a_window_added_pushes_the_windows_region(make_server, make_stack, open_page):  # noqa: F811
    stack = make_stack("win")
    stack.add("api")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    detail = open_page(server, f"deployment:{deployment_id}")

    added = requests.post(f"{server.url}/api/deployments/{stack.name}/windows", headers=server.headers, timeout=10,
                          json={"name": "xmas-freeze", "start": "2030-12-24T18:00:00+01:00",
                                "end": "2030-12-26T08:00:00+01:00"})
    assert added.status_code == 201, added.text

    message = detail.wait_for(lambda m: "xmas-freeze" in (element(m, "section", f"windows-{deployment_id}") or ""),
                              what="the windows region with the new window")
    assert oob(message, f"windows-{deployment_id}") == "true"
    assert requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers,
                        timeout=10).json()["operationMode"] == "Normal"


def test_enforcement_pushes_the_stack_and_its_history_row(make_server, make_stack, open_page):  # noqa: F811
    stack = make_stack("enf")
    stack.add("api")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    assert put_mode(server, stack.name, "Maintenance", reason="backup").status_code == 200
    detail = open_page(server, f"deployment:{deployment_id}")

    stack.containers["api"].start()  # by hand: enforcement stops it again

    message = detail.wait_for(lambda m: "stopped it again" in m, what="the enforced entry pushed")
    assert f"{stack.container_name('api')} started while the stack is in Maintenance" in message
    wait_until(lambda: not stack.is_running("api"), 15, message="api stopped again")


def test_an_observer_failing_pushes_its_region(make_server, make_stack, open_page, tmp_path):  # noqa: F811
    stack = make_stack("obs")
    stack.add("api")
    config = tmp_path / "rsgo.yml"
    config.write_text(textwrap.dedent(f"""\
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: http, url: "http://127.0.0.1:{free_port()}/flag", maintenanceValue: "1",
                                   pollingInterval: 1s, failureThreshold: 2}}
        """))
    server = make_server(RSGO_CONFIG=str(config)).start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    detail = open_page(server, f"deployment:{deployment_id}")

    # At its threshold (2) or past it: on a loaded machine the page may connect after the second failure,
    # and each later failure is pushed with its own count.
    message = detail.wait_for(lambda m: re.search(r"failing ([2-9]|\d\d+) times in a row", (
        element(m, "section", f"observer-{deployment_id}") or "")), what="the observer region saying it fails")
    assert oob(message, f"observer-{deployment_id}") == "true"
    assert "connection refused" in element(message, "section", f"observer-{deployment_id}")


def test_the_push_worker_outlives_a_batch_it_cannot_render(make_app, make_stack, caplog):
    stack = make_stack()
    stack.add("api")
    app = make_app()
    runtime = app.extensions["rsgo"]
    client = app.test_client()
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    page = runtime.hub.register({f"deployment:{deployment_id}|operate"})
    caplog.set_level(logging.ERROR, logger="rsgo.web.live_push")

    # A container event without a container: building its fragments raises inside the worker.
    runtime.bus.publish("container.changed", environment=runtime.settings.environment, old=None, new=None)
    wait_until(lambda: "rendering live fragments failed" in caplog.text, 10, message="the failed batch logged")

    assert put_mode(client, stack.name, "Maintenance", reason="after the error").status_code == 200

    def pushed():
        while True:
            try:
                if "after the error" in page.messages.get_nowait():
                    return True
            except queue.Empty:
                return False

    wait_until(pushed, 10, message="a push after the failed batch")
    assert runtime.live_push._thread.is_alive()
