"""Strict reading of API input: content type, JSON, fields and their types, query parameters."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass

from flask import request

from rsgo.db import MAX_ID
from rsgo.modes import MODE_NAMES, parse_mode
from rsgo.problems import Problem

MAX_REASON_LENGTH = 500
MAX_JSON_DEPTH = 32  # rsgo's bodies are flat objects; a deeper one is not a request of ours


def json_object() -> dict:
    """The request body as a JSON object, or a 415/400 problem saying what is wrong."""
    if request.mimetype != "application/json":
        raise Problem(415, "unsupported_media_type",
                      f"send the body as application/json (got {request.mimetype or 'no content type'})")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Problem(400, "invalid_json", f"the body is not valid JSON: {error}") from None
    except RecursionError:  # far deeper than MAX_JSON_DEPTH
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", "the body must be a JSON object")
    _check_json(body)
    return body


def _too_deep() -> Problem:
    return Problem(400, "invalid_json", f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")


def _check_json(body: dict) -> None:
    """Every value is at most ``MAX_JSON_DEPTH`` deep, and every string (keys too) is text that can be
    stored: JSON can spell a lone surrogate ("\\ud800"), which no database can encode. Iterative, so
    no depth can exhaust the stack here either."""
    pending = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and not _storable(value):
            raise Problem(400, "invalid_json", "the body holds a lone surrogate (\\ud800-\\udfff) in a string; "
                                               "send text as UTF-8 or as complete surrogate pairs")


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _invalid(detail: str, field: str | None = None) -> Problem:
    return Problem(400, "invalid_request", detail, field=field)


def _control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def clean_reason(reason) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise _invalid("reason must be a string", "reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise _invalid(f"reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH} are allowed", "reason")
    if _control_characters(reason):
        raise _invalid("reason must not contain control characters (newlines, tabs, escape codes)", "reason")
    return reason.strip()


@dataclass(frozen=True)
class ModeChangeBody:
    new_mode: str
    reason: str
    force: bool
    wait: bool
    source: str  # api, or cli for the rsgo command (the history tells scripts from other callers)


_FIELDS = {"newMode": str, "mode": str, "reason": (str, type(None)), "force": bool, "wait": bool, "source": str}
# What a caller may say it is; everything else about the caller comes from its credentials.
CALLER_SOURCES = ("api", "cli")


def mode_change_body(body: dict) -> ModeChangeBody:
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}", unknown[0])
    for name, kind in _FIELDS.items():
        if name in body and not isinstance(body[name], kind):
            expected = {str: "a string", bool: "true or false"}.get(kind, "a string or null")
            raise _invalid(f"{name} must be {expected}", name)
    new_mode, alias = body.get("newMode"), body.get("mode")
    if new_mode is not None and alias is not None and new_mode.strip().lower() != alias.strip().lower():
        raise _invalid("newMode and mode disagree; send one of them", "mode")
    requested = new_mode if new_mode is not None else alias
    if requested is None:
        raise Problem(400, "invalid_mode", f"newMode is required; valid modes: {', '.join(MODE_NAMES)}",
                      validModes=MODE_NAMES)
    source = body.get("source", "api")
    if source not in CALLER_SOURCES:
        raise _invalid(f"source must be one of {', '.join(CALLER_SOURCES)}", "source")
    # Checked here, before anything is done or recorded: an unknown mode is 400 invalid_mode.
    return ModeChangeBody(parse_mode(requested).value, clean_reason(body.get("reason")),
                          body.get("force", False), body.get("wait", True), source)


def int_param(name: str, default: int | None, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    """A whole number in ASCII digits (not "１", "1_0" or " 5", which ``int`` would take), at most
    SQLite's largest integer unless ``maximum`` says less."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
        raise _invalid(f"query parameter {name} must be a whole number (got {raw[:40]!r})", name)
    value = int(raw)
    if value < minimum or value > maximum:
        raise _invalid(f"query parameter {name} must be between {minimum} and {maximum} (got {raw[:40]})", name)
    return value
