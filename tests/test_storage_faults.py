"""Storage faults mid-transition and resumption that must not replay a superseded transition,
against a real ``rsgo serve``, the real engine and real filesystem faults: a read-only bind mount
over the database files and a full tmpfs under the data dir.

A transition whose bookkeeping cannot be written stops acting, its stack is Failed (from memory)
with the storage error, nothing new starts on it, and the failure is written once storage is back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess

import requests

from support import put_mode, wait_until
from test_crash_and_concurrency import get, history, received_term, slow_stopper, wait_for_server_deployment

DB_FILES = ("rsgo.sqlite3", "rsgo.sqlite3-wal", "rsgo.sqlite3-shm")


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def read_only_database(data_dir):
    """Bind-mount each database file read-only over itself: connections opened from now on cannot write.

    Each file is bound from a read-only view of the data dir, so it is read-only from the moment it is
    mounted. Binding it writable and then remounting it read-only would race the server: a connection
    opened between the two calls holds a writer on the new mount, and the remount fails as busy."""
    view = data_dir.parent / f"{data_dir.name}-read-only-view"
    view.mkdir(exist_ok=True)
    mounted = []
    try:
        _run("mount", "--bind", str(data_dir), str(view))
        mounted.append(str(view))
        _run("mount", "-o", "remount,ro,bind", str(view))  # nothing opens files through the view
        for name in DB_FILES:
            if not (data_dir / name).exists():
                continue  # no connection open: SQLite removed its log; the database file is what counts
            path = str(data_dir / name)
            _run("mount", "--bind", str(view / name), path)
            mounted.append(path)
        yield
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], check=False, capture_output=True, timeout=30)


def three_levels(make_stack, slow_seconds: int = 3):
    """front depends on api, api on db: stopping goes front, then api, then db. front stops slowly."""
    stack = make_stack("sf")
    stack.add("db")
    stack.add("api", labels={"rsgo.depends_on": stack.container_name("db")})
    stack.add("front", labels={"rsgo.depends_on": stack.container_name("api"), "rsgo.stop_timeout": "30s"},
              command=slow_stopper(slow_seconds))
    return stack


def start_maintenance(server, stack) -> int:
    answer = put_mode(server, stack.name, "Maintenance", reason="storage fault test", wait=False)
    assert answer.status_code == 202, answer.text
    transition_id = answer.json()["transition"]["id"]
    wait_until(lambda: received_term(stack, "front"), 15, message="Docker to begin stopping front")
    return transition_id


def unused_read_token(server, stack) -> str:
    """A token never used yet: its first use wants to write its last-used time."""
    return server.cli("token", "create", f"reader-{stack.name}", "--scope", "read")


def assert_held_as_failed(server, stack, transition_id: int, fresh_token: str) -> None:
    """While storage is down: the stack shows Failed with the storage error and refuses new changes."""
    def shown_failed():
        body = get(server, f"/api/deployments/{stack.name}").json()
        return body if body["operationMode"] == "Failed" else None

    body = wait_until(shown_failed, 30, interval=0.2, message="the stack to be shown Failed")
    assert f"could not record transition {transition_id}" in body["trigger"]["reason"]
    assert body["transitionInProgress"] is None  # it stopped; only its record waits
    # Reads keep working, also for a token whose last-used time cannot be written now.
    read = requests.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {fresh_token}"},
                        timeout=30)
    assert read.status_code == 200, read.text
    # It stopped acting: front (under way when the write failed) is down, api and db were never stopped.
    wait_until(lambda: not stack.is_running("front"), 15, message="front to stop")
    assert stack.is_running("api") and stack.is_running("db")
    # What it stopped is shown as rsgo's to start again before the record is written.
    assert get(server, f"/api/deployments/{stack.name}").json()["stoppedSet"] == [stack.container_name("front")]
    refused = put_mode(server, stack.name, "Normal", reason="too early")
    assert refused.status_code == 503, refused.text
    assert refused.json()["code"] == "storage_unavailable"
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    ready = requests.get(f"{server.url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error"), ready.text
    transition = get(server, f"/api/transitions/{transition_id}").json()
    assert transition["outcome"] == "failed" and "storage failure" in transition["error"], transition


def assert_written_once_storage_is_back(server, stack, transition_id: int) -> None:
    def written():
        entries = [e for e in history(server, stack.name) if e["transitionId"] == transition_id]
        return entries if any(e["outcome"] == "failed" for e in entries) else None

    entries = wait_until(written, 30, interval=0.2, message="the held failure to be written")
    assert "storage failure" in entries[0]["error"]
    detail = get(server, f"/api/deployments/{stack.name}").json()
    assert detail["operationMode"] == "Failed"
    # What was stopped is known, so leaving Failed brings exactly it back.
    assert detail["stoppedSet"] == [stack.container_name("front")]
    transition = get(server, f"/api/transitions/{transition_id}").json()
    results = {c["name"]: c["result"] for c in transition["containers"]}
    assert results == {stack.container_name("front"): "stopped", stack.container_name("api"): "skipped",
                       stack.container_name("db"): "skipped"}, results
    wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=30).status_code == 200, 30,
               message="/readyz to be ready again")
    back = put_mode(server, stack.name, "Normal", reason="storage is back")
    assert back.status_code == 200 and back.json()["newMode"] == "Normal", back.text
    assert all(stack.is_running(short) for short in ("front", "api", "db"))


def assert_restart_replays_nothing(server, stack) -> None:
    server.kill(9)
    server.start()
    wait_for_server_deployment(server, stack.name, 3)
    assert get(server, f"/api/deployments/{stack.name}").json()["operationMode"] == "Normal"
    assert not [e for e in history(server, stack.name) if e["outcome"] == "resumed"]
    assert all(stack.is_running(short) for short in ("front", "api", "db"))


def test_a_read_only_database_mid_transition_stops_it_shows_failed_and_writes_it_when_writable(
        make_server, make_stack, tmp_path):
    stack = three_levels(make_stack)
    data_dir = tmp_path / "data"
    server = make_server(data_dir).start()
    wait_for_server_deployment(server, stack.name, 3)
    fresh_token = unused_read_token(server, stack)
    transition_id = start_maintenance(server, stack)
    with read_only_database(data_dir):
        assert_held_as_failed(server, stack, transition_id, fresh_token)
        assert "readonly database" in server.log()
    assert_written_once_storage_is_back(server, stack, transition_id)
    assert_restart_replays_nothing(server, stack)


def test_a_full_disk_mid_transition_stops_it_shows_failed_and_writes_it_when_space_is_back(
        make_server, make_stack, tmp_path):
    stack = three_levels(make_stack)
    data_dir = tmp_path / "data"  # the server's log stays outside, in tmp_path
    data_dir.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data_dir))
    try:
        server = make_server(data_dir).start()
        wait_for_server_deployment(server, stack.name, 3)
        fresh_token = unused_read_token(server, stack)
        transition_id = start_maintenance(server, stack)
        # Empty the write-ahead log, so the next write must grow a file, then take every free byte.
        with contextlib.closing(sqlite3.connect(data_dir / "rsgo.sqlite3")) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = data_dir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, timeout=60)
        assert_held_as_failed(server, stack, transition_id, fresh_token)
        assert "database or disk is full" in server.log()
        filler.unlink()
        assert_written_once_storage_is_back(server, stack, transition_id)
        assert_restart_replays_nothing(server, stack)
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False, capture_output=True, timeout=30)


def test_a_transition_cut_off_by_a_crash_is_not_replayed_over_a_container_started_after_it(
        make_server, make_stack, tmp_path):
    """kill -9 mid-Maintenance; someone starts the stopped container by hand; the next start must not
    stop the stack again: it reconciles with Docker (Failed, nothing touched) instead of replaying."""
    stack = three_levels(make_stack)
    server = make_server(tmp_path / "data").start()
    wait_for_server_deployment(server, stack.name, 3)
    transition_id = start_maintenance(server, stack)
    server.kill(9)
    wait_until(lambda: not stack.is_running("front"), 30, message="Docker to finish stopping front")
    stack.containers["front"].start()  # by hand, after the request
    server.start()

    def closed():
        body = get(server, f"/api/transitions/{transition_id}").json()
        return body if body["outcome"] != "running" else None

    transition = wait_until(closed, 30, interval=0.2, message="the interrupted transition to be closed")
    assert transition["outcome"] == "failed" and "not resumed" in transition["error"], transition
    assert "front was started again" in transition["error"]
    detail = get(server, f"/api/deployments/{stack.name}").json()
    assert detail["operationMode"] == "Failed"
    assert detail["stoppedSet"] == []  # everything runs: nothing for Normal to start
    assert all(stack.is_running(short) for short in ("front", "api", "db"))
    assert not [e for e in history(server, stack.name) if e["outcome"] == "resumed"]
    assert put_mode(server, stack.name, "Normal", reason="checked").status_code == 200


# -- a transition awaiting resumption owns its stack -----------------------------------------

def _awaiting_resumption(app, stack, mode: str):
    """The rows a kill -9 leaves: the stack in ``mode`` with its container in the stopped-set, and a
    transition still ``running`` that this process has not resumed yet."""
    from rsgo.models import Deployment, StoppedSetEntry, Transition

    deployment = Deployment.create(environment=app.extensions["rsgo"].settings.environment, name=stack.name,
                                   mode=mode)
    StoppedSetEntry.create(deployment=deployment, container_name=stack.container_name("web"))
    transition = Transition.create(deployment=deployment, previous_mode=mode, target_mode="Normal",
                                   source="api", actor="tests", reason="interrupted")
    return deployment, transition


def test_enforcement_leaves_a_stack_alone_while_its_interrupted_transition_awaits_resumption(
        make_app, make_stack):
    from rsgo.enforcement import Enforcer
    from rsgo.models import AuditEntry

    stack = make_stack("en")
    stack.add("web")  # running: the interrupted Maintenance -> Normal had started it
    app = make_app(background=False)
    runtime = app.extensions["rsgo"]
    deployment, _ = _awaiting_resumption(app, stack, "Maintenance")
    enforcer = Enforcer(runtime.environments, runtime.transitions, runtime.bus, 10)
    web = runtime.environments.get(runtime.settings.environment).gateway.inspect(stack.container_name("web"))
    runtime.bus.publish("container.changed", environment=runtime.settings.environment, old=None, new=web)
    enforcer.close()  # waits for the enforcement it queued
    assert stack.is_running("web")
    assert not AuditEntry.select().where((AuditEntry.deployment == deployment.id)
                                         & (AuditEntry.outcome == "enforced")).exists()


def test_a_mode_change_on_a_stack_whose_interrupted_transition_awaits_resumption_is_refused(
        make_app, make_stack):
    stack = make_stack("aw")
    stack.add("web")
    app = make_app(background=False)
    deployment, transition = _awaiting_resumption(app, stack, "Maintenance")
    answer = put_mode(app.test_client(), stack.name, "Stopped", reason="meanwhile")
    assert answer.status_code == 409, answer.text
    assert answer.json["code"] == "transition_in_progress"
    assert answer.json["transitionId"] == transition.id
    assert stack.is_running("web")


# -- restarts and idle disks under storage faults ------------------------------------------

def test_a_restart_while_the_database_is_read_only_resumes_once_it_is_writable_again(
        make_server, make_stack, tmp_path):
    """kill -9 mid-transition, the next start finds the database read-only: resumption waits (the stack
    answers 409 meanwhile) and finishes the transition once the database takes writes, with no
    second restart."""
    stack = three_levels(make_stack)
    data_dir = tmp_path / "data"
    server = make_server(data_dir).start()
    wait_for_server_deployment(server, stack.name, 3)
    start_maintenance(server, stack)
    server.kill(9)
    with read_only_database(data_dir):
        server.start()
        waiting = put_mode(server, stack.name, "Normal", reason="while read-only")
        assert waiting.status_code in (409, 503), waiting.text
        assert waiting.json()["code"] in ("transition_in_progress", "storage_unavailable")
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 503

    def finished():
        body = get(server, f"/api/deployments/{stack.name}").json()
        return body if body["transitionInProgress"] is None else None

    body = wait_until(finished, 60, interval=0.5, message="the interrupted transition to finish")
    assert body["operationMode"] == "Maintenance", body
    assert not any(stack.is_running(short) for short in ("front", "api", "db"))
    assert [e["outcome"] for e in history(server, stack.name)][:2] == ["succeeded", "resumed"]
    wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=30).status_code == 200, 30,
               message="/readyz to be ready again")
    assert put_mode(server, stack.name, "Normal", reason="storage is back").status_code == 200


def test_readyz_fails_on_a_full_disk_even_when_no_transition_runs(make_server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data_dir))
    try:
        server = make_server(data_dir).start()
        wait_until(lambda: requests.get(f"{server.url}/readyz", timeout=30).status_code == 200, 30,
                   message="/readyz to be ready")
        subprocess.run(["dd", "if=/dev/zero", f"of={data_dir / 'filler'}", "bs=64k"], capture_output=True,
                       timeout=60)
        ready = requests.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503, ready.text
        assert "full" in ready.json()["checks"]["database"]
        (data_dir / "filler").unlink()
        assert requests.get(f"{server.url}/readyz", timeout=30).status_code == 200
        server.stop()
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False, capture_output=True, timeout=30)


def test_a_held_failure_is_written_once_when_two_writers_race(make_app, make_stack):
    """The retry job and a request can both find the database writable again: one entry, one announcement."""
    from rsgo.db import utcnow
    from rsgo.models import AuditEntry
    from rsgo.transition_records import HeldFailure

    stack = make_stack("hf")
    stack.add("web")
    app = make_app(background=False)
    deployment, transition = _awaiting_resumption(app, stack, "Normal")
    service = app.extensions["rsgo"].transitions
    held = HeldFailure(transition.id, deployment.id, "attempt to write a readonly database", [], utcnow())
    service._hold(held)  # writes it at once: the database is fine here
    assert service._write_held(held)  # the second writer finds it written
    failed = AuditEntry.select().where((AuditEntry.deployment == deployment.id) & (AuditEntry.outcome == "failed"))
    assert failed.count() == 1
    assert service.held_failure(deployment.id) is None
