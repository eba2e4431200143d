"""Secrets from the config appear in no answer, pushed fragment or log line."""

from __future__ import annotations

import http.server
import sqlite3
import threading
import uuid

import requests
import yaml

from support import put_mode, wait_until

from .conftest import create_user, deployment, sign_in


class _FlagServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _flag_handler(seen_headers):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen_headers.append(self.headers.get("Authorization"))
            body = b"off"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def test_secrets_from_the_config_appear_in_no_answer_fragment_or_log_line(make_server, make_stack, tmp_path,
                                                                          live_pages):
    db_secret = f"db-secret-{uuid.uuid4().hex}"
    http_secret = f"another-secret-{uuid.uuid4().hex}"
    url_secret = f"url-secret-{uuid.uuid4().hex[:12]}"
    hook_secret = f"hook-secret-{uuid.uuid4().hex}"
    secrets = (db_secret, http_secret, url_secret, hook_secret)
    database = tmp_path / "flags.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE flags (value TEXT)")
        connection.execute("INSERT INTO flags VALUES ('off')")
    seen_headers: list[str] = []
    flag_server = _FlagServer(("127.0.0.1", 0), _flag_handler(seen_headers))
    threading.Thread(target=flag_server.serve_forever, daemon=True).start()
    try:
        sql, broken, web = make_stack("sq"), make_stack("sb"), make_stack("sh")
        for stack in (sql, broken, web):
            stack.add("app")
        connection_string = f"Driver=SQLite3;Database={database};UID=rsgo;PWD=${{DBPASS}}"
        config = tmp_path / "rsgo.yml"
        config.write_text(yaml.safe_dump({
            "stacks": {
                sql.name: {"maintenanceObserver": {"type": "sqlQuery", "connectionString": connection_string,
                                                   "query": "SELECT value FROM flags", "maintenanceValue": "on",
                                                   "pollingInterval": "1s"}},
                broken.name: {"maintenanceObserver": {"type": "sqlQuery", "connectionString": connection_string,
                                                      "query": "SELECT value FROM no_such_table",
                                                      "maintenanceValue": "on", "pollingInterval": "1s"}},
                web.name: {"maintenanceObserver": {
                    "type": "http", "url": f"http://127.0.0.1:{flag_server.server_port}/flag?token={url_secret}",
                    "headers": {"Authorization": f"Bearer {http_secret}"}, "maintenanceValue": "on",
                    "pollingInterval": "1s"}}},
            "webhooks": [{"name": "chat", "url": "http://127.0.0.1:9/hook", "secret": "${HOOKSECRET}"}]}))
        server = make_server(RSGO_CONFIG=str(config), DBPASS=db_secret, HOOKSECRET=hook_secret,
                             RSGO_LOG_LEVEL="DEBUG").start()
        ids = [deployment(server, stack.name, 1)["id"] for stack in (sql, broken, web)]
        operator, _ = sign_in(server, create_user(server, "operator"))
        live = live_pages(server, ",".join(["dashboard", "history"] + [f"deployment:{i}" for i in ids]),
                          session=operator)
        answers: list[str] = []

        def keep(response: requests.Response) -> requests.Response:
            answers.append(response.text)
            answers.append("\n".join(f"{k}: {v}" for k, v in response.headers.items()))
            return response

        def observer(i):
            return keep(requests.get(f"{server.url}/api/deployments/{i}/observer", headers=server.headers,
                                     timeout=10)).json()

        # The observers run, and the failing one fails (its error message is a place a secret could leak).
        wait_until(lambda: observer(ids[0])["lastValue"] == "off", 15, message="the SQL observer's reading")
        wait_until(lambda: observer(ids[2])["lastValue"] == "off", 15, message="the http observer's reading")
        wait_until(lambda: observer(ids[1])["error"], 15, message="the broken SQL observer's error")
        assert seen_headers and seen_headers[-1] == f"Bearer {http_secret}"  # it really sent the secret
        for i in ids:
            keep(operator.post(f"{server.url}/api/deployments/{i}/observer/check", timeout=30))
            keep(operator.post(f"{server.url}/deployments/{i}/observer/check", timeout=30,
                               headers={"HX-Request": "true", "HX-Target": f"observer-{i}"}))
            for path in (f"/api/deployments/{i}", f"/api/deployments/{i}/observer", f"/api/deployments/{i}/history",
                         f"/deployments/{i}"):
                keep(operator.get(f"{server.url}{path}", timeout=10))
            for region in (f"observer-{i}", f"mode-{i}"):
                keep(operator.get(f"{server.url}/deployments/{i}", timeout=10,
                                  headers={"HX-Request": "true", "HX-Target": region}))
        for path in ("/", "/history", "/api/deployments", "/api/history", "/api/openapi.json", "/admin/users",
                     "/admin/tokens", "/admin/security"):
            keep(requests.get(f"{server.url}{path}", headers=server.headers, timeout=10))
        keep(requests.post(f"{server.url}/api/config/reload", headers=server.headers, timeout=30))
        keep(operator.get(f"{server.url}/", headers={"HX-Request": "true", "HX-Target": "deployment-list"},
                          timeout=10))
        # A change makes every region push, the observer panels included.
        assert put_mode(server, ids[0], "Maintenance", session=operator, reason="push all").status_code == 200
        live.wait_for(lambda t: f'id="observer-{ids[0]}"' in t, what="a pushed observer panel")
        live.wait_for(lambda t: f'id="observer-{ids[1]}"' in t and "no_such_table" in t,
                      what="the broken observer's pushed error")

        # The masked forms are there, so the places that could leak were really rendered.
        everything = "\n".join(answers)
        assert "PWD=***" in everything and "Authorization" in everything and "no_such_table" in everything
        live.close()  # an open websocket would hold the server's graceful stop
        server.stop()
        log = server.log()
        assert "GET /api/deployments" in log and "observer" in log  # the log is the real one, at DEBUG
        for secret in secrets:
            for where, text in (("an answer", everything), ("a websocket fragment", "\n".join(live.messages)),
                                ("the server log", log)):
                assert secret not in text, f"{secret[:12]}… appears in {where}"
    finally:
        flag_server.shutdown()
        flag_server.server_close()
