"""The ``http`` observer: a URL's body, or one scalar in its JSON, fetched through ``requests``
(README "Observers").

Header values and URL passwords are secrets: they appear neither in ``target()`` nor in
any error message, which is why errors are described by ``rsgo.http_errors`` from the
exception's type and causes, never from ``str(error)`` (requests puts URLs and header values there).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit, urlunsplit

import requests

from rsgo.http_errors import describe
from rsgo.observers.base import Boundaries, Field, Observer, ObserverError, Reading
from rsgo.outbound import guard

# A status endpoint answers in a few bytes; the cap keeps a wrong URL (a download) from eating memory.
MAX_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
METHODS = ("GET", "POST", "HEAD", "PUT")

_STATUS_PART = re.compile(r"\s*(?:([1-5])xx|(\d{3})\s*-\s*(\d{3})|(\d{3}))\s*", re.IGNORECASE)
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_PATH_FIRST_KEY = re.compile(r"[^.\[\]$][^.\[\]]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SECRET_QUERY = re.compile(r"(?i)((?:^|&)[^=&]*(?:token|key|secret|passw|pwd|sig|auth)[^=&]*=)[^&]*")


def parse_accept_status(spec) -> list[tuple[int, int]]:
    """``503``, ``"2xx"``, ``"200-299"``, ``"200,503"`` or a list of those → inclusive ranges."""
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    ranges = []
    for item in items:
        # bool is an int in Python; YAML's ``true`` is no status code.
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ObserverError(f"acceptStatus {item!r}: expected a code (503), a class (2xx) or a range (200-299)")
        for part in [item] if isinstance(item, int) else item.split(","):
            if isinstance(part, int):
                low = high = part
            else:
                match = _STATUS_PART.fullmatch(part)
                if not match:
                    raise ObserverError(
                        f"acceptStatus {part.strip()!r}: expected a code (503), a class (2xx) or a range (200-299)")
                if match.group(1):
                    low = int(match.group(1)) * 100
                    high = low + 99
                elif match.group(2):
                    low, high = int(match.group(2)), int(match.group(3))
                else:
                    low = high = int(match.group(4))
            if not 100 <= low <= high <= 599:
                raise ObserverError(f"acceptStatus {part!r}: not an HTTP status code or range within 100-599")
            ranges.append((low, high))
    if not ranges:
        raise ObserverError("acceptStatus must name at least one status")
    return ranges


def parse_json_path(text: str) -> list[str | int]:
    """``status.maintenance`` / ``$.items[0].state`` → ``["status", "maintenance"]`` / ``["items", 0, "state"]``."""
    rest = text.strip()
    steps: list[str | int] = []
    position = 0
    if rest.startswith("$"):
        position = 1
    else:
        first = _PATH_FIRST_KEY.match(rest)
        if not first:
            raise ObserverError(f"jsonPath {text!r}: expected a key like status.maintenance or $.items[0].state")
        steps.append(first.group(0))
        position = first.end()
    while position < len(rest):
        step = _PATH_STEP.match(rest, position)
        if not step:
            raise ObserverError(f"jsonPath {text!r}: cannot read {rest[position:]!r}; "
                                "use keys joined by dots and [n] indexes, like $.items[0].state")
        steps.append(step.group(1) if step.group(1) is not None else int(step.group(2)))
        position = step.end()
    return steps


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", type(None): "null"}.get(
        type(value), "a boolean" if isinstance(value, bool) else "a number")


class _ObserverSession(requests.Session):
    """A session that reads the proxy and CA-bundle environment once per URL, not once per check.

    requests merges ``HTTP(S)_PROXY``/``NO_PROXY``/``REQUESTS_CA_BUNDLE`` into every request, and in
    a profile of 2,000 checks against a local server that scan of ``os.environ`` was about a fifth
    of a check's CPU. rsgo's environment is fixed at start, so the merged answer for one URL never
    changes. Redirect hops are untouched: requests resolves their proxies itself.
    """

    def __init__(self):
        super().__init__()
        self.trust_env = True
        self._merged: dict = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        key = (url, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        if key not in self._merged:
            self._merged[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        merged = self._merged[key]
        return merged | {"proxies": dict(merged["proxies"])}  # a copy: the kept answer stays as read


def mask_url(url: str) -> str:
    """Hide the userinfo password (a lone userinfo is often a token: hide it all) and secret-looking query values."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}" if ":" in userinfo else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=_SECRET_QUERY.sub(r"\1***", parts.query)))


class HttpObserver(Observer):
    type_name = "http"
    fields = {
        "url": Field("string", required=True),
        "method": Field("string", default="GET", choices=METHODS),
        "headers": Field("map"),
        "timeout": Field("duration", default=10.0),
        "jsonPath": Field("string"),
        "acceptStatus": Field("status", default="2xx"),
        "insecureSkipVerify": Field("bool", default=False),
    }

    @classmethod
    def validate(cls, settings: dict) -> list[str]:
        settings = cls._with_defaults(settings)
        problems = []
        try:
            parts = urlsplit(str(settings.get("url") or ""))
            parts.port  # noqa: B018 - raises for a port that is not a number or out of range
        except ValueError:
            parts = None
            problems.append("url: not a valid URL (check brackets and the port)")
        if parts is not None and (parts.scheme not in ("http", "https") or not parts.hostname):
            # Not quoting the URL: its path or query may carry a token.
            got = ("no scheme" if not parts.scheme else f"scheme {parts.scheme!r}"
                   if parts.scheme not in ("http", "https") else "no host")
            problems.append(f"url: expected http://host/... or https://host/... (got {got})")
        method = str(settings["method"]).upper()
        if method not in METHODS:
            problems.append(f"method {settings['method']!r}: expected one of {', '.join(METHODS)}")
        if not isinstance(settings["timeout"], (int, float)) or settings["timeout"] <= 0:
            problems.append("timeout must be longer than 0s")
        for name, value in (settings["headers"] or {}).items():
            # Checked here because requests' own check quotes the value, and values are secrets.
            if not _HEADER_NAME.fullmatch(str(name)):
                problems.append(f"headers: {name!r} is not a valid header name")
            elif not isinstance(value, str) or re.search(r"[\r\n\0]", value) or value[:1].isspace():
                problems.append(f"headers.{name}: the value must be text without line breaks or leading spaces")
        if settings["jsonPath"] is not None and method == "HEAD":
            problems.append("jsonPath needs a body, and HEAD responses have none")
        for parse, key in ((parse_accept_status, "acceptStatus"), (parse_json_path, "jsonPath")):
            try:
                if settings[key] is not None:
                    parse(settings[key])
            except ObserverError as error:
                problems.append(str(error))
        return problems

    @classmethod
    def boundary_problems(cls, settings: dict, boundaries: Boundaries) -> list[tuple[str, str]]:
        reason = boundaries.outbound.url_refusal(str(settings.get("url") or "")) if boundaries.outbound else None
        return [("url", reason)] if reason else []

    def restrict(self, boundaries: Boundaries) -> None:
        super().restrict(boundaries)
        if boundaries.outbound is not None:
            guard(self._session, boundaries.outbound)

    @classmethod
    def _with_defaults(cls, settings: dict) -> dict:
        return {name: field.default for name, field in cls.fields.items()} | dict(settings)

    def __init__(self, settings: dict):
        super().__init__(settings)
        problems = self.validate(settings)
        if problems:
            raise ObserverError("; ".join(problems))
        settings = self._with_defaults(settings)
        self.url = settings["url"]
        self.method = settings["method"].upper()
        self.headers = dict(settings["headers"] or {})
        self.timeout = float(settings["timeout"])
        self.json_path = settings["jsonPath"]
        self.steps = parse_json_path(self.json_path) if self.json_path is not None else None
        spec = settings["acceptStatus"]
        self.accept_text = ",".join(map(str, spec)) if isinstance(spec, (list, tuple)) else str(spec)
        self.accept = parse_accept_status(spec)
        self.verify = not settings["insecureSkipVerify"]
        self._session = _ObserverSession()

    def check(self) -> Reading:
        deadline = time.monotonic() + self.timeout
        try:
            # One session per observer keeps its connection alive between checks (hundreds of
            # observers at 1 s would otherwise open hundreds of connections a second). Checks of
            # one observer never overlap (the observer service holds a lock per observer).
            with self._session.request(self.method, self.url, headers=self.headers, timeout=self.timeout,
                                       verify=self.verify, stream=True) as response:
                status = response.status_code
                if not any(low <= status <= high for low, high in self.accept):
                    raise ObserverError(f"HTTP status {status} is not accepted (acceptStatus {self.accept_text})")
                body = self._read_body(response, deadline)
                content_type = response.headers.get("Content-Type", "")
        except ObserverError:
            raise
        except Exception as error:  # noqa: BLE001 - anything else is described without str(error), which may hold secrets
            raise ObserverError(describe(error, self.timeout)) from None
        if self.steps is None:
            return Reading(self._text(body, content_type))
        return self._pick(body)

    def _read_body(self, response, deadline: float) -> bytes:
        body = bytearray()
        # read1, not iter_content: iter_content waits for a whole chunk, which a trickling body
        # never completes; read1 returns what has arrived, so the deadline below is checked.
        while chunk := response.raw.read1(_CHUNK, decode_content=True):
            body += chunk
            if len(body) > MAX_BYTES:
                raise ObserverError(f"response larger than {MAX_BYTES // 1024 // 1024} MiB")
            # requests' timeout is per socket read; a trickling body must not hold the check longer.
            if time.monotonic() > deadline:
                raise ObserverError(f"timed out after {self.timeout:g}s")
        return bytes(body)

    @staticmethod
    def _text(body: bytes, content_type: str) -> str:
        # Not response.text: for text/* without a charset it assumes ISO-8859-1; UTF-8 is today's default.
        match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
        charset = match.group(1) if match else "utf-8"
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            raise ObserverError(f"response body is not valid {charset} text") from None

    def _pick(self, body: bytes) -> Reading:
        try:
            value = json.loads(body)
        except ValueError as error:
            detail = f": {error.msg} at line {error.lineno} column {error.colno}" if isinstance(
                error, json.JSONDecodeError) else ""
            raise ObserverError(f"jsonPath {self.json_path}: response body is not JSON{detail}") from None
        walked = "$"
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(value, list):
                    raise ObserverError(f"jsonPath {self.json_path}: {walked} is {_kind(value)}, not an array")
                if step >= len(value):
                    raise ObserverError(
                        f"jsonPath {self.json_path}: index {step} out of range ({walked} has {len(value)} items)")
                value, walked = value[step], f"{walked}[{step}]"
            else:
                if not isinstance(value, dict):
                    raise ObserverError(f"jsonPath {self.json_path}: {walked} is {_kind(value)}, not an object")
                if step not in value:
                    raise ObserverError(f"jsonPath {self.json_path}: key {step!r} not found")
                value, walked = value[step], f"{walked}.{step}"
        if value is None:
            return Reading(None)  # JSON null: nothing to read, like a NULL row
        if isinstance(value, (dict, list)):
            raise ObserverError(f"jsonPath {self.json_path}: value is {_kind(value)}, not a string, number or boolean")
        # Numbers and booleans compare as their JSON text (true, 1, 1.5): README "Observers".
        return Reading(value if isinstance(value, str) else json.dumps(value))

    def target(self) -> str:
        text = f"{self.method} {mask_url(self.url)}"
        if self.headers:
            text += " [" + ", ".join(f"{name}: ***" for name in self.headers) + "]"
        if self.json_path is not None:
            text += f" jsonPath {self.json_path}"
        return text
