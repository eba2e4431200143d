"""The client's connection to a running rsgo (README "Scripts"): where it is, the token, the
requests, and what an answer means as an exit code, decided here and nowhere else.

The client speaks only HTTP to rsgo: nothing of the server (Flask, the database, Docker) is imported.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

import requests

DEFAULT_URL = "http://localhost:8080"
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 120
SLOW_READ_TIMEOUT = 900  # a request the server answers after a whole transition (adding a window that starts now)

OK, USAGE, REFUSED, FAILED, UNREACHABLE, UNAUTHORISED = 0, 1, 2, 3, 4, 5

EXIT_CODES = f"""exit codes:
  {OK}  done
  {USAGE}  usage: wrong arguments, an unknown stack, a request rsgo refused as invalid (400, 404)
  {REFUSED}  refused (409): not allowed from the current mode, a transition in progress,
     an observer owns the Maintenance, an ambiguous stack name (pass --environment)
  {FAILED}  failed (502): containers failed to stop or start; the stack is Failed
  {UNREACHABLE}  rsgo or Docker unreachable: no connection, a timeout, 503
  {UNAUTHORISED}  unauthorised (401) or forbidden (403): no token, an unknown or expired one, too low a scope"""

CONNECTION_HELP = """connection: RSGO_URL (default http://localhost:8080), and the token in RSGO_TOKEN_FILE
(a file holding it) or RSGO_TOKEN; --url and --token-file override them."""


def exit_code_for(status: int) -> int:
    """The one mapping from an HTTP status to the client's exit code."""
    if status in (401, 403):
        return UNAUTHORISED
    if status == 409:
        return REFUSED
    if status == 502:
        return FAILED
    if status >= 500 or status == 429:
        return UNREACHABLE
    return USAGE


class ClientError(Exception):
    """Something the command cannot do; ``str()`` is the one line shown on stderr."""

    def __init__(self, message: str, exit_code: int, problem: dict | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.problem = problem or {}

    @property
    def code(self) -> str | None:
        return self.problem.get("code")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    headers: dict


def _short_reason(error: Exception) -> str:
    """"Connection refused" rather than urllib3's whole chain of wrapped exceptions."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found.group(1).strip()
    if isinstance(error, requests.exceptions.SSLError):
        return f"TLS error: {text[:200]}"
    return text.splitlines()[0][:200] if text else type(error).__name__


def _ambiguous_message(problem: dict, ref: str | None) -> str:
    candidates = problem.get("candidates") or []
    environments = sorted({c.get("environment") for c in candidates if c.get("environment")})
    listed = ", ".join(f"{c.get('name')} (id {c.get('id')}, environment {c.get('environment')}, "
                       f"matches its {c.get('matches')})" for c in candidates)
    hint = (f"pass --environment {' or '.join(environments)}" if len(environments) > 1
            else "ask for the stack by its numeric id")
    return f"{ref or 'the stack'} is ambiguous: {listed}; {hint}"


def problem_message(problem: dict, status: int, ref: str | None = None) -> str:
    if problem.get("code") == "ambiguous_deployment" and problem.get("candidates"):
        return _ambiguous_message(problem, ref)
    detail = problem.get("detail") or f"rsgo answered HTTP {status}"
    if problem.get("code") == "observer_owns_maintenance":
        return detail.replace('send "force": true', "pass --force")
    if status == 401:
        return f"{detail} (check RSGO_TOKEN_FILE, RSGO_TOKEN or --token-file)"
    return detail


def read_token(token_file: str | None, environ=os.environ) -> str:
    """--token-file, else RSGO_TOKEN, else the file RSGO_TOKEN_FILE names."""
    if not token_file:
        if environ.get("RSGO_TOKEN") and environ.get("RSGO_TOKEN_FILE"):
            raise ClientError("RSGO_TOKEN and RSGO_TOKEN_FILE are both set; set only one", USAGE)
        if environ.get("RSGO_TOKEN"):
            return environ["RSGO_TOKEN"].strip()
        token_file = environ.get("RSGO_TOKEN_FILE")
    if not token_file:
        raise ClientError("no API token: set RSGO_TOKEN_FILE (or RSGO_TOKEN) or pass --token-file; "
                          "make one with: rsgo token create NAME --scope operate", UNAUTHORISED)
    try:
        with open(token_file, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        raise ClientError(f"cannot read the token file {token_file}: {error.strerror}", USAGE) from None
    except UnicodeDecodeError:
        raise ClientError(f"the token file {token_file} does not hold a token (not UTF-8 text)", USAGE) from None
    if not token:
        raise ClientError(f"the token file {token_file} is empty", USAGE)
    return token


def base_url(url: str | None, environ=os.environ) -> str:
    url = (url or environ.get("RSGO_URL") or DEFAULT_URL).strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ClientError(f"RSGO_URL or --url must be an http:// or https:// address (got {url!r})", USAGE)
    return url


class Api:
    """Requests to one rsgo with one token; ``environment`` goes with every request about a stack."""

    def __init__(self, url: str, token: str, environment: str | None = None):
        self.url = url
        self.environment = environment
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json",
                                      "User-Agent": "rsgo-client"})

    def call(self, method: str, path: str, *, body: dict | None = None, params: dict | None = None,
             ref: str | None = None, timeout: float = READ_TIMEOUT) -> Answer:
        """``path`` under the server; a problem, a connection failure or a non-JSON answer raises ClientError."""
        try:
            response = self._session.request(method, f"{self.url}{path}", json=body, params=params,
                                             timeout=(CONNECT_TIMEOUT, timeout), allow_redirects=False)
        except requests.exceptions.Timeout:
            raise ClientError(f"rsgo at {self.url} did not answer within {timeout:g}s", UNREACHABLE) from None
        except requests.exceptions.RequestException as error:
            raise ClientError(f"cannot reach rsgo at {self.url}: {_short_reason(error)}", UNREACHABLE) from None
        try:
            parsed = response.json() if response.content else {}
        except ValueError:
            parsed = None
        if response.status_code >= 400:
            problem = parsed if isinstance(parsed, dict) else {}
            raise ClientError(problem_message(problem, response.status_code, ref),
                              exit_code_for(response.status_code), problem)
        if parsed is None or not isinstance(parsed, dict):
            raise ClientError(f"{self.url}{path} did not answer with rsgo's JSON (HTTP {response.status_code}); "
                              "is RSGO_URL the address of rsgo?", UNREACHABLE)
        return Answer(response.status_code, parsed, dict(response.headers))

    def stack(self, method: str, ref: str, suffix: str = "", *, body: dict | None = None,
              params: dict | None = None, timeout: float = READ_TIMEOUT) -> Answer:
        """``/api/deployments/<ref><suffix>``, with ``?environment=`` when one was given."""
        params = {**(params or {}), **({"environment": self.environment} if self.environment else {})}
        return self.call(method, f"/api/deployments/{quote(ref, safe='')}{suffix}", body=body, params=params,
                         ref=ref, timeout=timeout)

    def transition(self, transition_id: int) -> dict:
        return self.call("GET", f"/api/transitions/{int(transition_id)}").body


def retrying(action, *, seconds: float, pause: float = 2.0, on_retry=None):
    """``action()``, tried again while rsgo is unreachable (exit code 4), for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except ClientError as error:
            if error.exit_code != UNREACHABLE or time.monotonic() + pause > deadline:
                raise
            if on_retry is not None:
                on_retry(error)
            time.sleep(pause)
