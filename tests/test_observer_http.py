"""The ``http`` observer against a real local HTTP(S) server (README "Observers"): no mocks of requests."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rsgo.observers.base import ObserverError, Reading
from rsgo.observers.http import MAX_BYTES, HttpObserver, mask_url, parse_accept_status, parse_json_path

SECRET = "s3cret-token-value"


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose responses each test sets, recording every request."""

    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.routes: dict = {}
        self.requests: list[dict] = []
        self.release = threading.Event()  # set at teardown: frees handlers that hang on purpose
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # clients that hang up are expected here
        if tls_context is not None:
            # Handshake lazily, in the handler's thread, so a failed handshake never blocks accept().
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True,
                                                        do_handshake_on_connect=False)
        self.scheme = "https" if tls_context else "http"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", userinfo: str = "") -> str:
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    def respond(self, path: str, body, status: int = 200, content_type: str = "text/plain; charset=utf-8"):
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body), "application/json"
        self.routes[path] = (status, body.encode() if isinstance(body, str) else body, content_type)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_for(server: LocalServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            server.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                    "body": self.rfile.read(length)})
            route = server.routes.get(self.path, (404, b"no route", "text/plain"))
            if callable(route):
                return route(self, server)
            status, body, content_type = route
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = serve

    return Handler


def never_answers(handler, server):
    server.release.wait(30)  # holds the response until teardown: longer than any timeout used here


def stalls_after_headers(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Length", "10")
    handler.end_headers()
    handler.wfile.write(b"main")
    handler.wfile.flush()
    server.release.wait(30)


def trickles(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.end_headers()
    while not server.release.wait(0.1):  # a byte every 0.1 s: each read succeeds, the whole never ends
        try:
            handler.wfile.write(b"x")
            handler.wfile.flush()
        except OSError:
            return


@pytest.fixture
def server():
    local = LocalServer()
    yield local
    local.close()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A key and a self-signed certificate for 127.0.0.1 (the openssl CLI; no new dependency)."""
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


@pytest.fixture
def tls_server(self_signed):
    key, cert = self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    local = LocalServer(context)
    yield local
    local.close()


def observe(url: str, **settings) -> HttpObserver:
    return HttpObserver({"url": url, "method": "GET", "headers": None, "timeout": 5.0, "jsonPath": None,
                         "acceptStatus": "2xx", "insecureSkipVerify": False} | settings)


def error_of(observer: HttpObserver) -> str:
    with pytest.raises(ObserverError) as error:
        observer.check()
    return str(error.value)


# --- bodies and jsonPath -------------------------------------------------------------------------

def test_without_json_path_the_value_is_the_body_text(server):
    server.respond("/flag", "  Maintenance\n")
    # Trimming and case are the decision's job: the observer hands over the body as sent.
    assert observe(server.url("/flag")).check() == Reading("  Maintenance\n")


def test_the_body_is_decoded_with_its_charset_and_utf8_when_none_is_given(server):
    server.respond("/latin", "Wartung läuft".encode("latin-1"), content_type="text/plain; charset=ISO-8859-1")
    server.respond("/plain", "Wartung läuft".encode(), content_type="text/plain")
    assert observe(server.url("/latin")).check() == Reading("Wartung läuft")
    assert observe(server.url("/plain")).check() == Reading("Wartung läuft")


def test_nested_json_path_reads_the_value(server):
    server.respond("/status", {"status": {"maintenance": "on", "since": "10:00"}})
    assert observe(server.url("/status"), jsonPath="status.maintenance").check() == Reading("on")
    assert observe(server.url("/status"), jsonPath="$.status.maintenance").check() == Reading("on")


def test_json_numbers_and_booleans_read_as_their_json_text(server):
    server.respond("/status", {"flag": True, "off": False, "level": 1, "ratio": 1.5, "note": None})
    assert observe(server.url("/status"), jsonPath="flag").check() == Reading("true")
    assert observe(server.url("/status"), jsonPath="off").check() == Reading("false")
    assert observe(server.url("/status"), jsonPath="level").check() == Reading("1")
    assert observe(server.url("/status"), jsonPath="ratio").check() == Reading("1.5")
    assert observe(server.url("/status"), jsonPath="note").check() == Reading(None)  # null: nothing to read


def test_array_index_in_json_path(server):
    server.respond("/items", {"items": [{"state": "maintenance"}, {"state": "normal"}]})
    assert observe(server.url("/items"), jsonPath="$.items[0].state").check() == Reading("maintenance")
    assert observe(server.url("/items"), jsonPath="items[1].state").check() == Reading("normal")
    server.respond("/matrix", [[0, 1], [2, 3]])
    assert observe(server.url("/matrix"), jsonPath="$[1][0]").check() == Reading("2")


def test_a_path_that_does_not_exist_is_an_error(server):
    server.respond("/status", {"status": {"mode": "on"}, "items": [{"state": "x"}]})
    assert error_of(observe(server.url("/status"), jsonPath="status.maintenance")) == \
        "jsonPath status.maintenance: key 'maintenance' not found"
    assert "index 3 out of range ($.items has 1 items)" in error_of(
        observe(server.url("/status"), jsonPath="$.items[3].state"))
    assert "$.status is an object, not an array" in error_of(observe(server.url("/status"), jsonPath="status[0]"))
    assert "$.status.mode is a string, not an object" in error_of(
        observe(server.url("/status"), jsonPath="status.mode.x"))


def test_an_object_or_array_value_is_an_error(server):
    server.respond("/status", {"status": {"mode": "on"}, "items": []})
    assert "value is an object" in error_of(observe(server.url("/status"), jsonPath="status"))
    assert "value is an array" in error_of(observe(server.url("/status"), jsonPath="items"))


def test_a_body_that_is_not_json_is_an_error_with_json_path(server):
    server.respond("/html", "<html>maintenance</html>", content_type="text/html")
    message = error_of(observe(server.url("/html"), jsonPath="status"))
    assert message.startswith("jsonPath status: response body is not JSON")


def test_a_response_larger_than_the_cap_is_an_error(server):
    server.respond("/big", b"x" * (MAX_BYTES + 1))
    assert error_of(observe(server.url("/big"))) == "response larger than 1 MiB"
    server.respond("/fits", b"x" * MAX_BYTES)
    assert observe(server.url("/fits")).check() == Reading("x" * MAX_BYTES)


# --- status codes --------------------------------------------------------------------------------

def test_a_500_is_an_error_unless_accepted(server):
    server.respond("/down", "maintenance", status=500)
    assert error_of(observe(server.url("/down"))) == "HTTP status 500 is not accepted (acceptStatus 2xx)"
    assert observe(server.url("/down"), acceptStatus=500).check() == Reading("maintenance")
    assert observe(server.url("/down"), acceptStatus="5xx").check() == Reading("maintenance")
    assert observe(server.url("/down"), acceptStatus=[200, "500-503"]).check() == Reading("maintenance")
    server.respond("/gone", "x", status=404)
    assert "HTTP status 404" in error_of(observe(server.url("/gone"), acceptStatus="200,503"))


def test_accept_status_forms():
    assert parse_accept_status("2xx") == [(200, 299)]
    assert parse_accept_status(503) == [(503, 503)]
    assert parse_accept_status("200-299, 503") == [(200, 299), (503, 503)]
    assert parse_accept_status(["2XX", 503]) == [(200, 299), (503, 503)]
    for bad in ("ok", "6xx", "299-200", 42, True, [], "", "200,"):
        with pytest.raises(ObserverError, match="acceptStatus"):
            parse_accept_status(bad)


# --- what is sent --------------------------------------------------------------------------------

def test_method_and_headers_are_sent(server):
    server.respond("/probe", "ok")
    observer = observe(server.url("/probe"), method="POST",
                       headers={"Authorization": f"Bearer {SECRET}", "X-Probe": "rsgo"})
    assert observer.check() == Reading("ok")
    sent = server.requests[-1]
    assert sent["method"] == "POST"
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert sent["headers"]["X-Probe"] == "rsgo"
    assert observe(server.url("/probe"), method="head").check() == Reading("")
    assert server.requests[-1]["method"] == "HEAD"


def test_url_userinfo_is_sent_as_basic_auth(server):
    server.respond("/private", "off")
    assert observe(server.url("/private", userinfo="alice:hunter2@")).check() == Reading("off")
    expected = "Basic " + base64.b64encode(b"alice:hunter2").decode()
    assert server.requests[-1]["headers"]["Authorization"] == expected


# --- sources that fail ---------------------------------------------------------------------------

def test_a_source_that_never_answers_times_out_within_the_timeout(server):
    server.routes["/hang"] = never_answers
    started = time.monotonic()
    message = error_of(observe(server.url("/hang"), timeout=0.5))
    elapsed = time.monotonic() - started
    assert message == "timed out after 0.5s"
    assert 0.5 <= elapsed < 1.5


def test_a_body_that_stalls_after_the_headers_times_out_within_the_timeout(server):
    server.routes["/stall"] = stalls_after_headers
    started = time.monotonic()
    assert error_of(observe(server.url("/stall"), timeout=0.5)) == "timed out after 0.5s"
    assert time.monotonic() - started < 1.5


def test_a_body_that_never_ends_times_out_within_the_timeout(server):
    server.routes["/trickle"] = trickles
    started = time.monotonic()
    message = error_of(observe(server.url("/trickle"), timeout=0.6))
    assert message == "timed out after 0.6s"
    assert time.monotonic() - started < 1.6  # each byte arrives well within the socket timeout


def test_connection_refused_is_a_short_error():
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert error_of(observe(f"http://127.0.0.1:{port}/")) == "connection refused"


def test_a_self_signed_certificate_fails_verification_by_default(tls_server):
    tls_server.respond("/status", {"maintenance": False})
    message = error_of(observe(tls_server.url("/status"), jsonPath="maintenance"))
    assert message.startswith("TLS certificate verification failed")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_accepts_a_self_signed_certificate(tls_server):
    tls_server.respond("/status", {"maintenance": False})
    observer = observe(tls_server.url("/status"), jsonPath="maintenance", insecureSkipVerify=True)
    assert observer.check() == Reading("false")


def test_a_trusted_certificate_passes_verification(tls_server, self_signed, monkeypatch):
    # Shows the default failure above is about trust, not about TLS not working at all.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self_signed[1]))
    tls_server.respond("/status", {"maintenance": True})
    assert observe(tls_server.url("/status"), jsonPath="maintenance").check() == Reading("true")


def test_every_check_goes_through_the_proxy_of_the_environment(server, monkeypatch):
    # The proxy settings are read once per URL (README "Performance"); every check still uses them.
    proxy = LocalServer()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        target = "http://status.invalid:8080/flag"
        proxy.respond(target, {"maintenance": True})
        observer = observe(target, jsonPath="maintenance")
        assert [observer.check(), observer.check()] == [Reading("true"), Reading("true")]
        assert [request["path"] for request in proxy.requests] == [target, target]
    finally:
        proxy.close()


def test_no_proxy_sends_the_check_directly(server, monkeypatch):
    proxy = LocalServer()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url())
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        server.respond("/flag", {"maintenance": False})
        observer = observe(server.url("/flag"), jsonPath="maintenance")
        assert [observer.check(), observer.check()] == [Reading("false"), Reading("false")]
        assert proxy.requests == [] and len(server.requests) == 2
    finally:
        proxy.close()


# --- secrets -------------------------------------------------------------------------------------

def test_target_masks_header_values_and_url_passwords():
    observer = observe("https://alice:hunter2@status.example.org/api?token=abc&page=2", method="POST",
                       headers={"Authorization": f"Bearer {SECRET}", "X-Tenant": "acme"},
                       jsonPath="$.status.maintenance")
    target = observer.target()
    assert target == ("POST https://alice:***@status.example.org/api?token=***&page=2 "
                      "[Authorization: ***, X-Tenant: ***] jsonPath $.status.maintenance")
    assert mask_url("https://ghp_tokenonly@example.org/x") == "https://***@example.org/x"
    assert mask_url("http://example.org:8080/ok?q=1") == "http://example.org:8080/ok?q=1"


def test_error_messages_never_contain_header_values_or_passwords(server, tls_server):
    server.respond("/down", "no", status=503)
    server.respond("/status", {"a": 1})
    server.respond("/html", "<p>", content_type="text/html")
    server.routes["/hang"] = never_answers
    tls_server.respond("/status", {"a": 1})
    secrets = {"headers": {"Authorization": f"Bearer {SECRET}"}}
    messages = [
        error_of(observe(server.url("/down", userinfo="alice:hunter2@"), **secrets)),
        error_of(observe(server.url("/status"), jsonPath="a.b", **secrets)),
        error_of(observe(server.url("/html"), jsonPath="a", **secrets)),
        error_of(observe(server.url("/hang", userinfo="alice:hunter2@"), timeout=0.3, **secrets)),
        error_of(observe(tls_server.url("/status", userinfo="alice:hunter2@"), **secrets)),
    ]
    with pytest.raises(ObserverError) as construction:  # requests' own check would quote the value
        observe(server.url("/"), headers={"Authorization": f"Bearer {SECRET}\r\nX-Injected: 1"})
    messages.append(str(construction.value))
    with pytest.raises(ObserverError) as bad_url:
        observe(f"ftp://alice:hunter2@127.0.0.1/{SECRET}?token={SECRET}")
    messages.append(str(bad_url.value))
    for message in messages:
        assert SECRET not in message and "hunter2" not in message, message
    assert "headers.Authorization" in messages[-2]


# --- configuration -------------------------------------------------------------------------------

def test_json_path_forms():
    assert parse_json_path("status.maintenance") == ["status", "maintenance"]
    assert parse_json_path("$.items[0].state") == ["items", 0, "state"]
    assert parse_json_path("$[2]") == [2]
    assert parse_json_path("$") == []
    for bad in ("a..b", "$items", "items[x]", "items[0]state", ".a", "", "a."):
        with pytest.raises(ObserverError, match="jsonPath"):
            parse_json_path(bad)


def test_validate_reports_each_config_problem():
    base = {"url": "http://example.org/", "method": "GET", "headers": None, "timeout": 10.0, "jsonPath": None,
            "acceptStatus": "2xx", "insecureSkipVerify": False}
    assert HttpObserver.validate(base) == []
    problems = HttpObserver.validate(base | {"url": "example.org/status", "method": "HEAD", "jsonPath": "a..b",
                                             "acceptStatus": "ok", "timeout": 0.0})
    assert len(problems) == 5, problems
    assert "url: expected http://host/... or https://host/... (got no scheme)" in problems
    assert "timeout must be longer than 0s" in problems
    assert "jsonPath needs a body, and HEAD responses have none" in problems
    for url in ("http://[::1/", "http://example.org:99999/"):
        assert HttpObserver.validate(base | {"url": url}) == ["url: not a valid URL (check brackets and the port)"]
    assert HttpObserver.validate(base | {"url": "ftp://example.org/"}) == [
        "url: expected http://host/... or https://host/... (got scheme 'ftp')"]
