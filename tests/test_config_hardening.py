"""The stack config file as an attack surface and a single point of failure, against real files,
real local HTTP servers, a real ``rsgo serve`` and a real Docker engine.

- A reload of a file that does not parse or validate changes nothing (observers, their stored
  status, config webhooks and their delivery log stay), answers 422 with the problems, shows a
  banner, and is logged on SIGHUP; at start-up such a file stops ``rsgo serve`` before anything
  stored is touched.
- Size and alias-expansion limits (a "billion laughs" of under 700 bytes).
- Observers may not read rsgo's own data dir, config or secret files, nor ``${RSGO_*}``.
- ``RSGO_OUTBOUND_DENY`` for http observers and webhook deliveries.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import wait_for_deployment
from rsgo.models import Webhook, WebhookDelivery
from rsgo.observers.odbc import mask_odbc
from rsgo.settings import SettingsError, load_settings
from support import ROOT, put_mode, wait_until


def write_config(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


class Source:
    """A real HTTP server: GET /flag answers "0", GET /redirect sends to ``redirect_to``, POSTs answer 200.
    Every request's path is recorded."""

    def __init__(self):
        self.paths: list[str] = []
        self.redirect_to = ""
        source = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes = b"", location: str | None = None):
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                source.paths.append(self.path)
                if self.path == "/redirect":
                    self._answer(302, location=source.redirect_to)
                else:
                    self._answer(200, b"0")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                source.paths.append(self.path)
                self._answer(200)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def source():
    server = Source()
    yield server
    server.close()


def observer_of(client, stack_name: str) -> dict:
    response = client.get(f"/api/deployments/{stack_name}/observer")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


# -- a reload of a bad file changes nothing ----------------------------------------------------

def _observed_config(stack_name, value_file, hook_url, interval="1h") -> str:
    return f"""
        stacks:
          {stack_name}:
            maintenanceObserver:
              {{type: file, path: {value_file}, mode: content, maintenanceValue: "1", normalValue: "0",
                pollingInterval: {interval}, failureThreshold: 5}}
        webhooks:
          - name: cfghook
            url: {hook_url}
            events: [mode.changed]
        """


def test_a_reload_of_a_file_that_does_not_parse_or_validate_changes_nothing_and_says_why(
        make_app, make_stack, tmp_path, source):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("banana")  # an unexpected value: every check fails and counts
    config = write_config(tmp_path / "rsgo.yml", _observed_config(stack.name, value, source.url("/hook")))
    good = config.read_text()
    app = make_app(RSGO_CONFIG=str(config))
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)
    wait_until(lambda: observer_of(client, stack.name)["failures"] == 1, 10, message="the first (failing) check")
    assert client.post(f"/api/deployments/{stack.name}/observer/check").json["failures"] == 2
    assert put_mode(client, stack.name, "Maintenance", reason="make a delivery").status_code == 200
    hook = Webhook.get(Webhook.name == "cfghook")
    wait_until(lambda: WebhookDelivery.select().where((WebhookDelivery.webhook == hook.id)
                                                      & (WebhookDelivery.status == "delivered")).count() == 1,
               10, message="the config webhook's delivery")

    config.write_text(good + "  - bad: [\n")  # the probe's YAML typo
    answer = client.post("/api/config/reload")

    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.mimetype == "application/problem+json"
    assert answer.json["code"] == "invalid_config"
    [problem] = answer.json["problems"]
    assert problem["file"] == str(config) and problem["path"] == ""
    assert problem["message"].startswith("not valid YAML (line 12, column 1)")
    status = observer_of(client, stack.name)
    assert status["failures"] == 2 and str(value) in status["target"] and status["state"] == "error"
    assert [(h.id, h.url) for h in Webhook.select().where(Webhook.origin == "config")] == [
        (hook.id, source.url("/hook"))]
    assert WebhookDelivery.select().where(WebhookDelivery.webhook == hook.id).count() == 1
    page = client.get("/").get_data(as_text=True)
    assert "Config reload failed" in page and "not valid YAML (line 12" in page and str(config) in page

    # A file that parses but does not validate is refused the same way, naming the key path.
    config.write_text(good.replace("failureThreshold: 5", "failureThreshhold: 5"))
    answer = client.post("/api/config/reload")
    assert answer.status_code == 422
    assert [p["path"] for p in answer.json["problems"]] == [
        f"stacks.{stack.name}.maintenanceObserver.failureThreshhold"]
    assert observer_of(client, stack.name)["failures"] == 2
    assert "failureThreshhold" in client.get(f"/deployments/{stack.name}").get_data(as_text=True)

    # Fixed: applied, and the banner is gone.
    config.write_text(good)
    answer = client.post("/api/config/reload")
    assert answer.status_code == 200 and answer.json["problems"] == []
    assert observer_of(client, stack.name)["failures"] == 2, "an unchanged observer keeps its state"
    assert "Config reload failed" not in client.get("/").get_data(as_text=True)


def test_a_config_file_that_disappears_is_refused_on_reload_not_read_as_no_config(make_app, make_stack, tmp_path,
                                                                                   source):
    """The default path (no RSGO_CONFIG): once a file was in use, its absence changes nothing."""
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("0")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_config(data_dir / "rsgo.yml", _observed_config(stack.name, value, source.url("/hook")))
    app = make_app(data_dir=data_dir)
    client = app.test_client()
    wait_for_deployment(client, stack.name, 1)
    good = config.read_text()
    config.unlink()  # an editor that deletes before it writes, or a volume that went away
    answer = client.post("/api/config/reload")
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.json["problems"][0]["message"] == "file not found"
    assert str(value) in observer_of(client, stack.name)["target"]
    assert Webhook.select().where(Webhook.origin == "config").count() == 1
    config.write_text(good)
    assert client.post("/api/config/reload").status_code == 200


def test_sighup_with_a_broken_file_logs_it_shows_it_and_keeps_serving(make_server, make_stack, tmp_path, source):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("banana")
    config = write_config(tmp_path / "rsgo.yml", _observed_config(stack.name, value, source.url("/hook")))
    good = config.read_text()
    server = make_server(RSGO_CONFIG=str(config)).start()

    def status():
        return requests.get(f"{server.url}/api/deployments/{stack.name}/observer", headers=server.headers,
                            timeout=10).json()

    wait_until(lambda: status()["failures"] == 1, 15, message="the first (failing) check")
    config.write_text(good.replace("stacks:", "stacks:\n  - [", 1))
    server.process.send_signal(1)  # SIGHUP to the gunicorn master, forwarded to the worker

    wait_until(lambda: "config reload failed" in server.log(), 15, message="the failed reload in the log")
    log = server.log().split("SIGHUP")[-1]
    assert f"config: {config}: not valid YAML (line 5" in log
    assert "the running config stays" in log
    assert "Booting worker" not in log and server.process.poll() is None
    answer = status()
    assert (answer["failures"], answer["state"]) == (1, "error") and str(value) in answer["target"]
    admin = server.login()
    page = admin.get(f"{server.url}/", timeout=10).text
    assert "Config reload failed" in page and "not valid YAML (line 5" in page
    assert "<style" not in page and "style=" not in page  # the banner keeps the CSP: no inline style

    config.write_text(good)
    server.process.send_signal(1)
    wait_until(lambda: "Config reload failed" not in admin.get(f"{server.url}/", timeout=10).text, 15,
               message="the banner to go after a good reload")
    assert status()["failures"] == 1


def test_serve_refuses_to_start_on_a_file_it_cannot_use_and_touches_nothing_stored(make_server, make_stack, tmp_path,
                                                                                    source):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("banana")
    config = write_config(tmp_path / "rsgo.yml", _observed_config(stack.name, value, source.url("/hook")))
    good = config.read_text()
    server = make_server(RSGO_CONFIG=str(config)).start()
    wait_until(lambda: requests.get(f"{server.url}/api/deployments/{stack.name}/observer", headers=server.headers,
                                    timeout=10).json()["failures"] == 1, 15, message="the first (failing) check")
    server.stop()
    database = tmp_path / "data" / "rsgo.sqlite3"

    def stored():
        with sqlite3.connect(database) as connection:
            return (connection.execute("SELECT failures, fingerprint FROM observer_status").fetchall(),
                    connection.execute("SELECT name, url FROM webhooks").fetchall())

    before = stored()
    assert before[0][0][0] == 1 and before[1] == [("cfghook", source.url("/hook"))]

    config.write_text(good + "  - bad: [\n")
    code, output = _serve_once(server.env)

    assert code == 2, output
    assert f"rsgo: cannot start: {config}: not valid YAML (line 12, column" in output
    assert stored() == before

    config.write_text(good)  # back: the stored state is what it was, and the observer goes on counting
    server.start()
    wait_until(lambda: requests.get(f"{server.url}/api/deployments/{stack.name}/observer", headers=server.headers,
                                    timeout=10).json()["failures"] == 2, 15, message="the count to go on from 1")


def test_a_broken_webhook_entry_at_start_keeps_the_stored_webhook_and_its_deliveries(make_app, tmp_path, source):
    config = write_config(tmp_path / "rsgo.yml", f"""
        webhooks:
          - name: chat
            url: {source.url('/chat')}
        """)
    make_app(background=False, RSGO_CONFIG=str(config))
    hook = Webhook.get(Webhook.name == "chat")
    WebhookDelivery.create(webhook=hook, delivery_id="kept-1", event="mode.changed", body="{}", status="delivered")

    write_config(config, f"""
        webhooks:
          - name: chat
            url: {source.url('/chat')}
            secret: ${{HARDENING_TEST_UNSET}}
        """)
    app = make_app(background=False, RSGO_CONFIG=str(config))

    assert [str(p) for p in app.extensions["rsgo"].config.problems] == [
        (f"{config}: webhooks[0].secret: unresolved ${{HARDENING_TEST_UNSET}}: the environment variable "
         "HARDENING_TEST_UNSET is not set")]
    assert Webhook.get(Webhook.name == "chat").id == hook.id
    assert [d.delivery_id for d in WebhookDelivery.select()] == ["kept-1"]


# -- size and alias-expansion limits -------------------------------------------------------------

def _bomb(levels: int = 9) -> str:
    """``levels`` levels of ten aliases each: 10**levels strings once expanded, in well under 1 KiB."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return ("anchors:\n" + "".join(f"  {line}\n" for line in lines)
            + f"stacks:\n  shop:\n    maintenanceObserver:\n      type: file\n      path: /tmp/flag\n"
              f"      maintenanceValue: '1'\n      name: *a{levels}\n")


def _serve_once(env: dict, memory_mb: int | None = None) -> tuple[int, str]:
    """``rsgo serve`` expected to stop on its own; its exit code and output (killed, with all it
    started, if it runs on)."""
    process = subprocess.Popen([*_limited(memory_mb), sys.executable, "-m", "rsgo.cli", "serve"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"rsgo serve did not stop on its own:\n{output}") from None
    return process.returncode, output


def _limited(megabytes: int | None) -> list[str]:
    """A command prefix that caps the address space (so a bomb that is expanded ends in MemoryError)."""
    return ["prlimit", f"--as={megabytes * 1024 * 1024}"] if megabytes else []


def _check_config(config, tmp_path, memory_mb: int = 1024):
    began = time.monotonic()
    result = subprocess.run([*_limited(memory_mb), sys.executable, "-m", "rsgo.cli", "check-config"], check=False,
                            capture_output=True, text=True,
                            env={"RSGO_CONFIG": str(config), "RSGO_DATA_DIR": str(tmp_path / "data"),
                                 "PATH": "/usr/bin:/bin"},
                            timeout=120, cwd=ROOT)
    return result, time.monotonic() - began


def test_check_config_refuses_an_alias_bomb_quickly_within_a_memory_limit(tmp_path):
    config = tmp_path / "rsgo.yml"
    config.write_text(_bomb())
    assert len(config.read_bytes()) < 700

    result, seconds = _check_config(config, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {config}: more than 100,000 values once aliases are expanded" in result.stderr, result.stderr
    assert "MemoryError" not in result.stderr and seconds < 15, seconds


def test_check_config_refuses_a_file_over_one_mebibyte(tmp_path):
    config = tmp_path / "rsgo.yml"
    config.write_text("stacks: {}\n" + "# padding\n" * (1024 * 1024 // 10))

    result, _ = _check_config(config, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: {config}: larger than 1 MiB: refused" in result.stderr


def _cap_memory(server, headroom_mb: int = 1024) -> None:
    """Cap the address space of the running server's processes at what they use plus ``headroom_mb``:
    a bomb that were expanded would end in MemoryError there, not in the machine's memory."""
    pids = subprocess.run(["pgrep", "-s", str(server.process.pid)], capture_output=True, text=True,
                          check=True).stdout.split()
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            size_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        subprocess.run(["prlimit", f"--pid={pid}", f"--as={size_kb * 1024 + headroom_mb * 1024 * 1024}"],
                       check=True)


def test_a_bomb_is_refused_on_reload_and_sighup_and_stops_the_start(make_server, make_stack, tmp_path, source):
    stack = make_stack()
    stack.add("api")
    value = tmp_path / "value"
    value.write_text("0")
    config = write_config(tmp_path / "rsgo.yml", _observed_config(stack.name, value, source.url("/hook")))
    server = make_server(RSGO_CONFIG=str(config)).start()
    _cap_memory(server)
    observer_url = f"{server.url}/api/deployments/{stack.name}/observer"

    config.write_text(_bomb())
    began = time.monotonic()
    answer = requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=120)
    assert answer.status_code == 422, answer.text
    assert time.monotonic() - began < 10
    assert "aliases are expanded" in answer.json()["problems"][0]["message"]
    assert str(value) in requests.get(observer_url, headers=server.headers, timeout=10).json()["target"]

    server.process.send_signal(1)
    wait_until(lambda: server.log().count("config reload failed") == 2, 15, message="the SIGHUP reload refused")
    assert server.log().count("more than 100,000 values once aliases are expanded") >= 2
    assert str(value) in requests.get(observer_url, headers=server.headers, timeout=10).json()["target"]
    server.stop()

    code, output = _serve_once(server.env, memory_mb=1024)
    assert code == 2, output
    assert f"rsgo: cannot start: {config}: more than 100,000 values once aliases are expanded" in output


# -- observers may not read rsgo's own secrets -------------------------------------------------

def test_observers_may_not_read_the_data_dir_the_secret_files_or_rsgo_variables(make_app, make_stack, tmp_path):
    key_file = tmp_path / "session-key"
    key_file.write_text("session-key-from-a-file-0123456789")
    make_app(background=False, RSGO_SECRET_KEY_FILE=str(key_file))  # creates the data dir and its database
    data_dir = tmp_path / "data"
    link = tmp_path / "innocent-looking"
    link.symlink_to(data_dir / "rsgo.sqlite3")
    around = f"{data_dir}/../data/rsgo.sqlite3"  # the database, by a path that does not start with the data dir
    allowed = tmp_path / "flag"
    stacks = {name: make_stack(name) for name in ("dd", "ln", "kf", "pw", "vf", "sq", "cn", "ok")}
    for stack in stacks.values():
        stack.add("api")
    s = {key: stack.name for key, stack in stacks.items()}
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {s['dd']}:
            maintenanceObserver: {{type: file, path: {around}, mode: content, maintenanceValue: x}}
          {s['ln']}:
            maintenanceObserver: {{type: file, path: {link}, mode: content, maintenanceValue: x}}
          {s['kf']}:
            maintenanceObserver: {{type: file, path: {key_file}, mode: content, maintenanceValue: x}}
          {s['pw']}:
            maintenanceObserver: {{type: file, path: {allowed}, maintenanceValue: "${{RSGO_ADMIN_PASSWORD}}"}}
          {s['vf']}:
            maintenanceObserver: {{type: file, path: "${{RSGO_SECRET_KEY_FILE}}", mode: content, maintenanceValue: x}}
          {s['sq']}:
            maintenanceObserver:
              type: sqlQuery
              connectionString: "Driver=SQLite3;Database={data_dir}/rsgo.sqlite3"
              query: SELECT password_hash FROM users
              maintenanceValue: x
          {s['cn']}:
            maintenanceObserver: {{type: sqlQuery, connectionName: DATABASE_URL, query: SELECT 1, maintenanceValue: x}}
          {s['ok']}:
            maintenanceObserver: {{type: file, path: {allowed}, maintenanceValue: "true"}}
        webhooks:
          - name: leak
            url: "http://127.0.0.1:9/?p=${{RSGO_ADMIN_PASSWORD}}"
        """)
    app = make_app(background=False, RSGO_CONFIG=str(config), RSGO_SECRET_KEY_FILE=str(key_file),
                   RSGO_ADMIN_PASSWORD="admin-password-must-not-show")
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()

    base = "maintenanceObserver"
    expected = {
        "dd": (f"{base}.path", "is rsgo's own"), "ln": (f"{base}.path", "is rsgo's own"),
        "kf": (f"{base}.path", "is rsgo's own"),
        "pw": (f"{base}.maintenanceValue", "${RSGO_ADMIN_PASSWORD} is refused"),
        "vf": (f"{base}.path", "${RSGO_SECRET_KEY_FILE} is refused"),
        "sq": (f"{base}.connectionString", "Database="), "cn": (f"{base}.connectionName", "DATABASE_URL is refused"),
    }
    answers = []
    for key, (path, message) in expected.items():
        status = observer_of(client, s[key])
        answers.append(status)
        assert status["state"] == "disabled", (key, status)
        assert f"stacks.{s[key]}.{path}: " in status["error"] and message in status["error"], (key, status["error"])
    assert observer_of(client, s["ok"])["state"] != "disabled"
    problems = [str(p) for p in app.extensions["rsgo"].config.problems]
    assert any("webhooks[0].url: ${RSGO_ADMIN_PASSWORD} is refused" in p for p in problems), problems
    assert not Webhook.select().where(Webhook.name == "leak").exists()
    for text in map(str, answers):
        assert "admin-password-must-not-show" not in text and "session-key-from-a-file" not in text


def test_a_symlink_turned_to_the_data_dir_after_loading_is_refused_at_the_check(make_app, make_stack, tmp_path):
    stack = make_stack()
    stack.add("api")
    flag = tmp_path / "flag"
    flag.write_text("0")
    link = tmp_path / "link"
    link.symlink_to(flag)
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: file, path: {link}, mode: content, maintenanceValue: "1"}}
        """)
    app = make_app(background=False, RSGO_CONFIG=str(config))
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()
    assert client.post(f"/api/deployments/{stack.name}/observer/check").json["lastValue"] == "0"

    link.unlink()
    link.symlink_to(tmp_path / "data" / "secret_key")
    checked = client.post(f"/api/deployments/{stack.name}/observer/check").json

    assert checked["state"] == "error" and "is rsgo's own" in checked["error"], checked
    secret = (tmp_path / "data" / "secret_key").read_text().strip()
    assert secret not in str(checked) and checked["lastValue"] == "0"


def test_odbc_targets_mask_every_key_not_known_to_be_harmless():
    masked = mask_odbc("Driver=X;Server=db;Credentials=c-secret;Auth=a-secret;Signature=s-secret;UID=u;Port=1")
    assert masked == "Driver=X;Server=db;Credentials=***;Auth=***;Signature=***;UID=u;Port=1"


# -- RSGO_OUTBOUND_DENY ----------------------------------------------------------------------------

def test_the_deny_list_is_parsed_strictly():
    policy = load_settings({"RSGO_OUTBOUND_DENY": "10.0.0.0/8, 169.254.169.254 ,fd00::/8,Metadata.Internal."}) \
        .outbound_deny
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "169.254.169.254/32", "fd00::/8"]
    assert policy.hosts == ("metadata.internal",)
    assert load_settings({}).outbound_deny.active is False
    with pytest.raises(SettingsError, match="^RSGO_OUTBOUND_DENY: 'bad host/x' is neither"):
        load_settings({"RSGO_OUTBOUND_DENY": "10.0.0.0/8, bad host/x"})


def test_http_observers_are_refused_denied_targets_at_load_and_at_request_time(make_app, make_stack, tmp_path,
                                                                               source):
    by_name, by_address = make_stack(), make_stack()
    by_name.add("api")
    by_address.add("api")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {by_name.name}:
            maintenanceObserver: {{type: http, url: "{source.url('/flag', host='localhost')}", maintenanceValue: "1"}}
          {by_address.name}:
            maintenanceObserver: {{type: http, url: "{source.url('/flag')}", maintenanceValue: "1"}}
        """)
    app = make_app(background=False, RSGO_CONFIG=str(config), RSGO_OUTBOUND_DENY="127.0.0.0/8, ::1")
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()

    literal = observer_of(client, by_address.name)
    assert literal["state"] == "disabled"
    assert (f"stacks.{by_address.name}.maintenanceObserver.url: refused by RSGO_OUTBOUND_DENY: "
            "127.0.0.1 is in the denied network 127.0.0.0/8") in literal["error"]
    checked = client.post(f"/api/deployments/{by_name.name}/observer/check").json
    assert checked["state"] == "error"
    assert checked["error"] == ("refused by RSGO_OUTBOUND_DENY: localhost resolves to 127.0.0.1, "
                                "in the denied network 127.0.0.0/8")
    assert source.paths == [], "nothing may reach a denied target"


def test_a_redirect_to_a_denied_host_is_refused(make_app, make_stack, tmp_path, source):
    stack = make_stack()
    stack.add("api")
    source.redirect_to = source.url("/flag", host="localhost")
    config = write_config(tmp_path / "rsgo.yml", f"""
        stacks:
          {stack.name}:
            maintenanceObserver: {{type: http, url: "{source.url('/redirect')}", maintenanceValue: "1"}}
        """)
    app = make_app(background=False, RSGO_CONFIG=str(config), RSGO_OUTBOUND_DENY="localhost")
    app.extensions["rsgo"].environments.resync_all()
    client = app.test_client()

    checked = client.post(f"/api/deployments/{stack.name}/observer/check").json

    assert checked["error"] == "refused by RSGO_OUTBOUND_DENY: host localhost is denied"
    assert source.paths == ["/redirect"]


def test_webhook_deliveries_to_denied_targets_fail_at_once_and_forms_refuse_them(make_app, make_stack, tmp_path,
                                                                                source):
    stack = make_stack()
    stack.add("api")
    config = write_config(tmp_path / "rsgo.yml", f"""
        webhooks:
          - name: named
            url: {source.url('/named', host='localhost')}
            events: [mode.changed]
          - name: literal
            url: {source.url('/literal')}
        """)
    app = make_app(RSGO_CONFIG=str(config), RSGO_OUTBOUND_DENY="127.0.0.0/8")
    client = app.test_client()
    problems = [str(p) for p in app.extensions["rsgo"].config.problems]
    assert problems == [(f"{config}: webhooks[1].url: refused by RSGO_OUTBOUND_DENY: 127.0.0.1 is in the "
                         "denied network 127.0.0.0/8")]
    refused = client.post("/admin/webhooks", data={"name": "ui", "url": source.url("/ui"),
                                                   "events": ["mode.changed"]})
    assert refused.status_code == 400 and "RSGO_OUTBOUND_DENY" in refused.get_data(as_text=True)

    wait_for_deployment(client, stack.name, 1)
    assert put_mode(client, stack.name, "Maintenance", reason="deliver").status_code == 200
    hook = Webhook.get(Webhook.name == "named")
    delivery = wait_until(lambda: WebhookDelivery.get_or_none((WebhookDelivery.webhook == hook.id)
                                                              & (WebhookDelivery.status == "failed")),
                          10, message="the refused delivery")
    assert delivery.attempts == 1
    assert delivery.last_error == ("refused by RSGO_OUTBOUND_DENY: localhost resolves to 127.0.0.1, "
                                   "in the denied network 127.0.0.0/8")
    assert source.paths == []


def test_the_connected_address_is_checked_too(source):
    """A name may resolve to an allowed address for the check and a denied one for the connect: the
    socket's own peer address is checked before anything is sent."""
    from rsgo.outbound import OutboundAdapter, OutboundDenied, parse_deny

    adapter = OutboundAdapter(parse_deny("127.0.0.0/8"))
    pool = adapter.poolmanager.connection_from_url(source.url("/flag"))
    with pytest.raises(OutboundDenied, match="connected to 127.0.0.1, in the denied network 127.0.0.0/8"):
        pool.urlopen("GET", "/flag", retries=False)
    assert source.paths == []
    allowed = OutboundAdapter(parse_deny("10.0.0.0/8")).poolmanager.connection_from_url(source.url("/flag"))
    assert allowed.urlopen("GET", "/flag", retries=False).data == b"0"
