"""The client commands (README "Scripts") as a script runs them: the real ``rsgo`` command in a
subprocess, against a real ``rsgo serve`` and the real Docker engine.

Each test's stack has ``api`` (stopped in Maintenance) and ``db`` (ignored, stays running). The
wrapper's commands are small shell scripts that say where they are through files in the test's
temp dir, and wait for a file the test creates, so the test can look at the containers while the
command runs.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import textwrap

import pytest
import requests

from conftest import SLOW_2S, Stack
from support import ROOT, free_port, put_mode, wait_until

OPERATE_TOKEN_NAME = "backup-script"
# Waits for the test's "release" file, then exits with $1; "started" says it runs.
# A container that takes the whole stop timeout (10 s) to stop.
SLOW_STOP = ["sh", "-c", "trap 'sleep 60' TERM; while :; do sleep 0.1; done"]
BLOCKING = 'touch "$0/started"; while [ ! -e "$0/release" ]; do sleep 0.05; done; exit "$1"'


class Served:
    """A running rsgo, one stack on it, and the environment a script gets to reach it."""

    def __init__(self, server, stack, tmp_path, env):
        self.server, self.stack, self.tmp, self.env = server, stack, tmp_path, env
        self.started: list[subprocess.Popen] = []

    def lookup(self, ref: str | None = None) -> requests.Response:
        return requests.get(f"{self.server.url}/api/deployments/{ref or self.stack.name}",
                            headers=self.server.headers, timeout=60)

    def detail(self, ref: str | None = None) -> dict:
        response = self.lookup(ref)
        assert response.status_code == 200, response.text
        return response.json()

    def discovered(self, containers: int) -> bool:
        """The stack is known with all its containers (404 until discovery has seen it: not yet, no failure)."""
        response = self.lookup()
        assert response.status_code in (200, 404), response.text
        return response.status_code == 200 and response.json()["containerCounts"]["total"] == containers

    def mode(self) -> str:
        return self.detail()["operationMode"]

    def history(self) -> list[dict]:
        return requests.get(f"{self.server.url}/api/deployments/{self.stack.name}/history",
                            headers=self.server.headers, timeout=60).json()["items"]

    def windows(self) -> list[dict]:
        return requests.get(f"{self.server.url}/api/deployments/{self.stack.name}/windows",
                            headers=self.server.headers, timeout=60).json()["items"]

    def token_file(self, scope: str, name: str) -> str:
        path = self.tmp / f"token-{name}"
        path.write_text(self.server.create_token(scope, name=name) + "\n")
        return str(path)

    def rsgo(self, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rsgo.cli", *args], env=env or self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT)

    def start(self, *args: str, **options) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "rsgo.cli", *args], env=self.env, cwd=ROOT, text=True,
                                   **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options})
        self.started.append(process)
        return process

    def clean_up(self) -> None:
        """After a failed test: no wrapper, and no command waiting for its release, outlives it."""
        (self.tmp / "release").touch()
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=60)

    def blocking(self, exit_code: int = 0) -> list[str]:
        return ["sh", "-c", BLOCKING, str(self.tmp), str(exit_code)]

    def finish(self, wrapper: subprocess.Popen, timeout: float = 200) -> tuple[str, str]:
        """The wrapper's (stdout, stderr) once it exited; a wrapper that hangs is killed, with its command."""
        try:
            return wrapper.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            wrapper.kill()
            (self.tmp / "release").touch()
            wrapper.communicate(timeout=60)
            raise AssertionError(f"the wrapper did not exit within {timeout}s") from None

    def wait_started(self, wrapper: subprocess.Popen) -> None:
        def started():
            assert wrapper.poll() is None, f"the wrapper exited with {wrapper.returncode}: {wrapper.stderr.read()}"
            return (self.tmp / "started").exists()

        wait_until(started, 180, message="the command to start inside Maintenance")


def client_env(url: str, token_file: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RSGO_")}
    env["RSGO_URL"] = url
    if token_file:
        env["RSGO_TOKEN_FILE"] = token_file
    return env


def one_clean_line(stderr: str) -> str:
    """The last line of stderr: the error, said once, without a traceback."""
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


@pytest.fixture
def serve(make_server, make_stack, tmp_path):
    """``serve(config="", api_command=None)``: rsgo serve with a fresh stack and an operate token's file."""

    def start(config: str = "", api_command=None) -> Served:
        stack = make_stack("cli")
        stack.add("db", labels={"rsgo.maintenance": "ignore"})
        stack.add("api", command=api_command)
        environ = {"RSGO_WINDOW_CHECK_INTERVAL": "1s"}
        if config:
            (tmp_path / "rsgo.yml").write_text(textwrap.dedent(config).replace("STACK", stack.name))
            environ["RSGO_CONFIG"] = str(tmp_path / "rsgo.yml")
        server = make_server(**environ).start()
        served = Served(server, stack, tmp_path, client_env(server.url, None))
        served.env["RSGO_TOKEN_FILE"] = served.token_file("operate", OPERATE_TOKEN_NAME)
        if not config or "environments:" not in config:
            wait_until(lambda: served.discovered(2), 60,
                       message=f"discovery of {stack.name}")
        made.append(served)
        return served

    made: list[Served] = []
    yield start
    for served in made:
        served.clean_up()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_maintenance_runs_the_command_in_maintenance_and_returns_to_normal(serve, exit_code):
    served = serve()
    command = ["sh", "-c", f'read line; echo "command got $line"; {BLOCKING}', str(served.tmp), str(exit_code)]

    wrapper = served.start("maintenance", served.stack.name, "--reason", "nightly backup", "--", *command,
                           stdin=subprocess.PIPE)
    wrapper.stdin.write("ping\n")
    wrapper.stdin.close()
    wrapper.stdin = None  # communicate() below reads only
    served.wait_started(wrapper)

    assert served.mode() == "Maintenance"
    assert not served.stack.is_running("api") and served.stack.is_running("db")
    (served.tmp / "release").touch()
    stdout, stderr = served.finish(wrapper)
    assert wrapper.returncode == exit_code, stderr
    assert stdout == "command got ping\n", "stdout is the command's alone; the wrapper speaks on stderr"
    assert "Traceback" not in stderr and f"{served.stack.name} is back in Normal" in stderr
    assert served.mode() == "Normal" and served.stack.is_running("api")
    leave, enter = served.history()[:2]
    assert (enter["newMode"], enter["source"], enter["actor"], enter["reason"]) == (
        "Maintenance", "cli", f"token:{OPERATE_TOKEN_NAME}", "nightly backup")
    assert (leave["newMode"], leave["source"], leave["actor"], leave["reason"]) == (
        "Normal", "cli", f"token:{OPERATE_TOKEN_NAME}", f"nightly backup (command exited with {exit_code})")


def test_sigterm_goes_to_the_command_first_then_the_stack_returns_to_normal(serve):
    served = serve()
    # On TERM the command notes it, and ends by that signal (as a command without a trap would).
    on_term = f'trap \'touch "$0/got-term"; trap - TERM; kill -TERM $$\' TERM; {BLOCKING}'

    wrapper = served.start("maintenance", served.stack.name, "--", "sh", "-c", on_term, str(served.tmp), "0")
    served.wait_started(wrapper)
    assert served.mode() == "Maintenance"
    wrapper.send_signal(signal.SIGTERM)
    stdout, stderr = served.finish(wrapper)

    assert wrapper.returncode == 128 + signal.SIGTERM, stderr
    assert (served.tmp / "got-term").exists(), "the command got the SIGTERM"
    assert "got SIGTERM" in stderr and "Traceback" not in stderr
    assert served.mode() == "Normal" and served.stack.is_running("api")
    assert served.history()[0]["reason"] == "rsgo maintenance: sh (command ended by SIGTERM)"


def test_the_wrapper_waits_out_an_rsgo_restart_to_return_the_stack_to_normal(serve):
    served = serve()
    log = served.tmp / "wrapper.stderr"
    with open(log, "w") as stderr:
        wrapper = served.start("maintenance", served.stack.name, "--", *served.blocking(), stderr=stderr)
    served.wait_started(wrapper)

    served.server.kill()  # SIGKILL while the command runs (an upgrade, a crash)
    (served.tmp / "release").touch()
    wait_until(lambda: "trying again" in log.read_text(), 120, message="the wrapper to notice rsgo is gone")
    served.server.start()
    served.finish(wrapper)

    assert wrapper.returncode == 0, log.read_text()
    assert "cannot reach rsgo" in log.read_text() and "is back in Normal" in log.read_text()
    assert served.mode() == "Normal" and served.stack.is_running("api")


def test_with_for_a_killed_wrapper_leaves_maintenance_that_ends_by_itself(serve):
    served = serve()
    wrapper = served.start("maintenance", served.stack.name, "--for", "5s", "--reason", "risky upgrade", "--",
                           *served.blocking())
    served.wait_started(wrapper)
    detail = served.detail()
    assert (detail["operationMode"], detail["trigger"]["source"], detail["trigger"]["reason"]) == (
        "Maintenance", "schedule", "risky upgrade")

    wrapper.kill()
    wrapper.wait(timeout=60)
    (served.tmp / "release").touch()  # the orphaned command ends too (and closes the pipes it inherited)
    wrapper.communicate(timeout=60)

    wait_until(lambda: served.mode() == "Normal", 120, interval=0.5, message="the window to end the Maintenance")
    assert served.stack.is_running("api")
    assert [(e["newMode"], e["source"]) for e in served.history()] == [
        ("Normal", "schedule"), ("Maintenance", "schedule")]


def test_with_for_the_wrapper_ends_it_early_and_leaves_no_window(serve):
    served = serve()

    done = served.rsgo("maintenance", served.stack.name, "--for", "1h", "--reason", "nightly backup", "--",
                       "sh", "-c", 'test "$(docker inspect -f {{.State.Running}} "$0")" = false', served.stack.name
                       + "-api")

    assert done.returncode == 0, done.stderr
    assert "until" in done.stderr and "at the latest" in done.stderr
    assert served.mode() == "Normal" and served.stack.is_running("api")
    assert served.windows() == [], "the wrapper removes its window"
    entries = served.history()
    # Removing the active window ends its Maintenance as the remover's change (the wrapper's token), not the schedule's.
    assert [(e["newMode"], e["source"], e["outcome"]) for e in entries] == [
        ("Normal", "api", "succeeded"), ("Maintenance", "schedule", "succeeded")]
    assert entries[1]["reason"] == "nightly backup"
    assert entries[0]["reason"] == "nightly backup (command exited with 0)"


def test_a_for_window_that_ends_before_the_command_is_said_and_not_taken_as_done(serve):
    served = serve()
    wrapper = served.start("maintenance", served.stack.name, "--for", "3s", "--", *served.blocking())
    served.wait_started(wrapper)
    wait_until(lambda: served.mode() == "Normal", 60, message="the window's end returning the stack to Normal")

    (served.tmp / "release").touch()
    stdout, stderr = served.finish(wrapper)

    assert wrapper.returncode == 3, stderr
    assert "the --for window ended before the command did" in stderr


@pytest.mark.parametrize("window", [False, True], ids=["request", "for"])
def test_refused_entering_does_not_run_the_command_and_exits_2(serve, window):
    served = serve()
    assert put_mode(served.server, served.stack.name, "Stopped").status_code == 200

    refused = served.rsgo("maintenance", served.stack.name, *(["--for", "1h"] if window else []), "--",
                          "touch", str(served.tmp / "ran"))

    assert refused.returncode == 2, refused.stderr
    assert not (served.tmp / "ran").exists()
    line = one_clean_line(refused.stderr)
    assert "Stopped" in line and "the command was not run" in line
    assert served.mode() == "Stopped" and served.windows() == []


def test_a_transition_in_progress_refuses_entering(serve):
    served = serve(api_command=SLOW_STOP)
    stopping = put_mode(served.server, served.stack.name, "Maintenance", wait=False)
    assert stopping.status_code == 202

    refused = served.rsgo("maintenance", served.stack.name, "--", "touch", str(served.tmp / "ran"))

    assert refused.returncode == 2, refused.stderr
    assert "already changing mode" in one_clean_line(refused.stderr)
    assert not (served.tmp / "ran").exists()


def test_rsgo_unreachable_exits_4(tmp_path):
    token = tmp_path / "token"
    token.write_text("rsgo_not-checked\n")
    env = client_env(f"http://127.0.0.1:{free_port()}", str(token))

    for args in (["status"], ["maintenance", "my-app", "--", "touch", str(tmp_path / "ran")]):
        result = subprocess.run([sys.executable, "-m", "rsgo.cli", *args], env=env, capture_output=True, text=True,
                                timeout=120, cwd=ROOT)
        assert result.returncode == 4, result.stderr
        assert "cannot reach rsgo at http://127.0.0.1:" in one_clean_line(result.stderr)
        assert "Connection refused" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_a_token_without_operate_scope_exits_5_and_runs_nothing(serve):
    served = serve()
    read_only = client_env(served.server.url, served.token_file("read", "dashboard-reader"))
    unknown = client_env(served.server.url, str(served.tmp / "bad-token"))
    (served.tmp / "bad-token").write_text("rsgo_unknown\n")

    refused = served.rsgo("maintenance", served.stack.name, "--", "touch", str(served.tmp / "ran"), env=read_only)
    mode = served.rsgo("mode", served.stack.name, "Maintenance", env=read_only)
    allowed = served.rsgo("status", served.stack.name, env=read_only)
    unauthenticated = served.rsgo("status", env=unknown)
    no_token = served.rsgo("status", env=client_env(served.server.url, None))

    assert (refused.returncode, mode.returncode) == (5, 5), (refused.stderr, mode.stderr)
    assert "may not change modes (needs operate)" in one_clean_line(refused.stderr)
    assert not (served.tmp / "ran").exists()
    assert allowed.returncode == 0
    assert unauthenticated.returncode == 5 and "RSGO_TOKEN_FILE" in one_clean_line(unauthenticated.stderr)
    assert no_token.returncode == 5 and "no API token" in one_clean_line(no_token.stderr)
    assert served.mode() == "Normal"


def test_mode_status_and_history_for_people_and_for_scripts(serve):
    served = serve()
    name = served.stack.name

    entered = served.rsgo("mode", name, "Maintenance", "--reason", "disk swap")
    listing = served.rsgo("status", "--json")
    one = served.rsgo("status", name)
    history = served.rsgo("history", name, "--limit", "1", "--json")
    started = served.rsgo("mode", name, "Normal", "--no-wait", "--json")

    assert entered.returncode == 0, entered.stderr
    assert f"{name} -> Maintenance: 0 of 1 stopped\n" in entered.stdout, "plain progress lines off a terminal"
    assert f"{name} -> Maintenance: 1 of 1 stopped\n" in entered.stdout and "\r" not in entered.stdout
    assert f"{name} changed from Normal to Maintenance" in entered.stdout
    (item,) = [i for i in json.loads(listing.stdout)["items"] if i["name"] == name]
    assert item["operationMode"] == "Maintenance"
    assert "mode:" in one.stdout and "Maintenance" in one.stdout and "stopped by rsgo" in one.stdout
    (entry,) = json.loads(history.stdout)["items"]
    assert (entry["actor"], entry["reason"], entry["newMode"]) == (f"token:{OPERATE_TOKEN_NAME}", "disk swap",
                                                                  "Maintenance")
    answer = json.loads(started.stdout)
    assert started.returncode == 0 and answer["outcome"] == "running" and answer["transition"]["id"]
    wait_until(lambda: served.mode() == "Normal", 120, message="the background transition to Normal")
    table = served.rsgo("history", name)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["TIME", "CHANGE", "OUTCOME", "SOURCE", "ACTOR", "REASON"]
    assert "Normal -> Maintenance" in table.stdout and "disk swap" in table.stdout


def test_refusals_and_usage_errors_have_their_exit_codes(serve):
    served = serve()
    name = served.stack.name
    plain_file = served.tmp / "notes.txt"
    plain_file.write_text("not a program\n")

    for args, code, says in [
        (["mode", name, "Failed"], 2, "cannot go from Normal to Failed"),
        (["mode", name, "Sideways"], 1, "'Sideways' is not an operation mode"),
        (["mode", "no-such-stack", "Normal"], 1, "no-such-stack"),
        (["history", name, "--limit", "0"], 1, "limit must be between 1 and 500"),
        (["maintenance", name, "touch", "x"], 1, "give the command to run after --"),
        (["mode", name], 1, "the following arguments are required: MODE"),
        (["status", "--url", "localhost:8080"], 1, "must be an http:// or https:// address"),
        (["maintenance", name, "--for", "", "--", "true"], 1, "--for needs a duration"),
        (["maintenance", name, "--for", "8d", "--", "true"], 1, "longer than a week"),
        # A command that cannot run is found before the stack is touched (the mode check below).
        (["maintenance", name, "--", "/no/such/program"], 127, "cannot run /no/such/program: not found"),
        (["maintenance", name, "--", str(plain_file)], 126, f"cannot run {plain_file}: not executable"),
    ]:
        result = served.rsgo(*args)
        assert result.returncode == code, (args, result.stderr)
        assert says in one_clean_line(result.stderr), args
    assert served.mode() == "Normal"
    assert not [e for e in served.history() if e["requestedMode"] == "Maintenance"], "Maintenance never asked for"
    assert served.rsgo("mode", name, "normal").stdout.strip() == f"{name} is already in Normal; nothing was done"


def test_failed_containers_exit_3_and_a_failed_leave_says_how_to_end_maintenance(serve):
    served = serve()
    name = served.stack.name
    wrapper = served.start("maintenance", name, "--", *served.blocking())
    served.wait_started(wrapper)
    # Meanwhile api is recreated under its name with a command its image lacks: it cannot start again.
    served.stack.containers["api"].remove(force=True)
    served.stack.add("api", command=["/no/such/program"], running=False)

    (served.tmp / "release").touch()
    stdout, stderr = served.finish(wrapper)

    assert wrapper.returncode == 3, stderr
    line = one_clean_line(stderr)
    assert "returning to Normal failed" in line and f"end it with: rsgo mode {name} Normal" in line
    assert served.mode() == "Failed"
    retried = served.rsgo("mode", name, "Normal")
    assert retried.returncode == 3 and f"{name} is now Failed:" in one_clean_line(retried.stderr)


def test_check_runs_the_observer_now(serve, make_stack, tmp_path):
    flag = tmp_path / "maintenance-flag"
    served = serve(config=f"""
        stacks:
          STACK:
            maintenanceObserver: {{type: file, path: '{flag}', maintenanceValue: 'true', pollingInterval: 1h}}
        """)
    plain = make_stack("cli")
    plain.add("web")
    wait_until(lambda: served.rsgo("status", plain.name).returncode == 0, 60, interval=0.5,
               message=f"discovery of {plain.name}")
    flag.touch()

    checked = served.rsgo("check", served.stack.name)
    as_json = served.rsgo("check", served.stack.name, "--json")
    without = served.rsgo("check", plain.name)

    assert checked.returncode == 0, checked.stderr
    assert "decision:   maintenance" in checked.stdout and "read:       'true'" in checked.stdout
    assert json.loads(as_json.stdout)["lastValue"] == "true"
    wait_until(lambda: served.mode() == "Maintenance", 120, message="the observer to act on its check")
    assert served.detail()["trigger"]["source"] == "observer"
    assert without.returncode == 1 and "has no observer" in one_clean_line(without.stderr)


def test_a_name_on_two_environments_shows_the_candidates(serve, second_engine):
    main_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    served = serve(config=f"environments:\n  local: {{url: '{main_url}'}}\n  second: {{url: '{second_engine.url}'}}\n")
    twin = Stack(second_engine.client, served.stack.name)  # the same stack name on the second engine
    try:
        twin.add("web")
        wait_until(lambda: sorted(i["environment"] for i in requests.get(
            f"{served.server.url}/api/deployments", headers=served.server.headers, timeout=60).json()["items"]
            if i["name"] == served.stack.name) == ["local", "second"], 60, message="the stack on both engines")

        ambiguous = served.rsgo("status", served.stack.name)
        refused = served.rsgo("maintenance", served.stack.name, "--", "touch", str(served.tmp / "ran"))
        chosen = served.rsgo("status", served.stack.name, "--environment", "second", "--json")
    finally:
        for container in twin.containers.values():
            container.remove(force=True)

    assert ambiguous.returncode == 2 and refused.returncode == 2
    line = one_clean_line(ambiguous.stderr)
    assert "environment local" in line and "environment second" in line
    assert "pass --environment local or second" in line
    assert not (served.tmp / "ran").exists()
    assert chosen.returncode == 0 and json.loads(chosen.stdout)["environment"] == "second"


def test_progress_is_redrawn_in_place_on_a_terminal(serve):
    served = serve(api_command=SLOW_2S)
    controller, terminal = pty.openpty()

    changing = served.start("mode", served.stack.name, "Maintenance", stdout=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's last writer is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    changing.wait(timeout=120)

    text = shown.decode()
    assert changing.returncode == 0
    assert f"\r\x1b[K{served.stack.name} -> Maintenance: 0 of 1 stopped" in text
    assert f"\r\x1b[K{served.stack.name} -> Maintenance: 1 of 1 stopped" in text
