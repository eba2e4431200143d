"""The dashboard's and the list API's cache of each deployment (rsgo/web/row_cache.py): an unchanged
stack's row is built and rendered once, and every event that can change it makes it read afresh."""

from __future__ import annotations

import re

from conftest import authenticate_test_client, wait_for_deployment
from rsgo import events
from rsgo.docker_ops import STACK_LABEL, ContainerInfo
from support import put_mode, wait_until


def _slot(html: str, deployment_id: int) -> str:
    """One deployment's slot (its row and the mode-change row under it) in a dashboard answer."""
    found = re.search(rf'<tbody id="slot-{deployment_id}".*?</tbody>', html, re.S)
    assert found, f"no slot of deployment {deployment_id} in the page"
    return found.group(0)


def _listed(client, deployment_id: int) -> dict:
    return next(item for item in client.get("/api/deployments").json["items"] if item["id"] == deployment_id)


def _one_running_stack(app, client, make_stack):
    """A stack of one running container, once its start (an event of the stack) is listed; with the cache."""
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    wait_until(lambda: _listed(client, deployment_id)["containers"]["running"] == 1, 15, 0.1,
               "the container to run (its start is an event of the stack)")
    return stack, deployment_id, app.extensions["rsgo"].deployment_cache


def test_an_unchanged_stacks_row_is_built_and_rendered_once(app, client, make_stack):
    _stack, deployment_id, cache = _one_running_stack(app, client, make_stack)
    first = _slot(client.get("/").get_data(as_text=True), deployment_id)
    entry = cache._entries[deployment_id]

    second = _slot(client.get("/").get_data(as_text=True), deployment_id)

    assert cache._entries[deployment_id] is entry, "the entry was built again without any change of the stack"
    assert entry.slots[True] is not None and second == first
    assert _listed(client, deployment_id)["operationMode"] == "Normal"
    assert cache._entries[deployment_id] is entry


def test_a_cached_row_follows_a_mode_change_and_a_container_stopped_by_hand(app, client, make_stack):
    stack = make_stack()
    stack.add("api")
    stack.add("worker")
    deployment_id = wait_for_deployment(client, stack.name, 2)["id"]
    wait_until(lambda: "2/2 running" in _slot(client.get("/").get_data(as_text=True), deployment_id), 15, 0.1,
               "the dashboard row to show both containers running")
    assert _listed(client, deployment_id)["operationMode"] == "Normal"

    assert put_mode(client, stack.name, "Migrating", reason="schema 42").status_code == 200
    row = _slot(client.get("/").get_data(as_text=True), deployment_id)
    assert 'data-mode="Migrating"' in row and "schema 42" in row
    assert _listed(client, deployment_id)["operationMode"] == "Migrating"

    stack.containers["worker"].stop(timeout=1)  # outside rsgo: only the engine's event tells
    wait_until(lambda: "1/2 running" in _slot(client.get("/").get_data(as_text=True), deployment_id), 15, 0.1,
               "the dashboard row to show the container stopped by hand")
    assert _listed(client, deployment_id)["containers"] == {"running": 1, "total": 2}

    late = make_stack()  # a stack discovered after the list was kept joins it
    late.add("api")
    late_id = wait_for_deployment(client, late.name, 1)["id"]
    assert 'data-mode="Normal"' in _slot(client.get("/").get_data(as_text=True), late_id)
    assert _listed(client, late_id)["name"] == late.name


def test_every_event_about_a_deployment_makes_its_entry_read_afresh(make_app, make_stack):
    # No background and no live push (it reads the list for the counts bar on a thread of its own):
    # nothing but this test reads the cache, and nothing but the events given to it here mark it.
    app = make_app(background=False)
    client = app.test_client()
    runtime = app.extensions["rsgo"]
    runtime.live_push.close()
    stack = make_stack()
    stack.add("api")
    runtime.environments.resync_all()
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    cache = runtime.deployment_cache
    unit = ContainerInfo(id="0" * 64, name=stack.container_name("api"), image="x", state="running", health="none",
                         labels={STACK_LABEL: stack.name})
    payloads = {events.CONTAINER_CHANGED: {"environment": runtime.settings.environment, "old": unit, "new": unit},
                events.ENVIRONMENT_CHANGED: {"environment": runtime.settings.environment},
                events.WINDOWS_CHANGED: {"deployment_id": None}}
    unseen = {events.OBSERVER_CHECK_FINISHED, events.WEBHOOK_DELIVERY_FINISHED}
    kinds = [kind for kind in events.CATALOGUE if kind not in unseen]
    assert len(kinds) >= 18

    rebuilt_by = []
    for kind in kinds:
        payload = payloads.get(kind) or {name: deployment_id if name == "deployment_id" else None
                                         for name in events.CATALOGUE[kind]}
        _listed(client, deployment_id)
        entry = cache._entries[deployment_id]
        _listed(client, deployment_id)
        assert cache._entries[deployment_id] is entry  # no event: the same entry
        # Straight to the cache's subscriber: the other subscribers would act on these made-up payloads.
        cache._on_event(kind, payload)
        _listed(client, deployment_id)
        if cache._entries[deployment_id] is not entry:
            rebuilt_by.append(kind)
    assert rebuilt_by == kinds

    for kind in unseen:  # every observer check and webhook delivery: nothing shown changed
        entry = cache._entries[deployment_id]
        cache._on_event(kind, {name: deployment_id for name in events.CATALOGUE[kind]})
        _listed(client, deployment_id)
        assert cache._entries[deployment_id] is entry


def test_a_viewer_gets_the_row_without_mode_buttons_from_the_same_cache(app, client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    button = f'aria-label="Change {stack.name} to Maintenance"'
    assert button in _slot(client.get("/").get_data(as_text=True), deployment_id)

    authenticate_test_client(app, scope="read")
    viewer = app.test_client()

    assert button not in _slot(viewer.get("/").get_data(as_text=True), deployment_id)
    assert button in _slot(client.get("/").get_data(as_text=True), deployment_id)


def test_an_entry_older_than_its_lifetime_is_built_again(app, client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    cache = app.extensions["rsgo"].deployment_cache
    client.get("/")
    entry = cache._entries[deployment_id]
    entry.expires = 0.0  # its lifetime is over (time.monotonic() is past it)

    client.get("/")

    assert cache._entries[deployment_id] is not entry


def test_the_list_api_encodes_an_unchanged_summary_once_and_answers_what_the_cache_holds(app, client, make_stack):
    stack, deployment_id, cache = _one_running_stack(app, client, make_stack)
    first = client.get("/api/deployments")
    entry = cache._entries[deployment_id]
    encoded = entry.encoded

    second = client.get("/api/deployments")

    assert first.status_code == second.status_code == 200 and second.mimetype == "application/json"
    assert encoded is not None and cache._entries[deployment_id].encoded is encoded, "encoded again unchanged"
    with app.test_request_context():
        runtime = app.extensions["rsgo"]
        assert second.json == {"items": cache.summaries(runtime)}
    assert put_mode(client, stack.name, "Migrating", reason="schema 43").status_code == 200
    assert _listed(client, deployment_id)["operationMode"] == "Migrating"
