"""RFC 9457 problem details: every API error is ``application/problem+json`` (README "API")."""

from __future__ import annotations

from http import HTTPStatus

from flask import jsonify


class Problem(Exception):
    """Raise from a view to answer with a problem; the app's error handler renders it."""

    def __init__(self, status: int, code: str, detail: str, headers: dict | None = None, **extra):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(status: int, code: str, detail: str, headers: dict | None = None, **extra):
    body = {
        "type": f"urn:rsgo:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **{key: value for key, value in extra.items() if value is not None},
    }
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
