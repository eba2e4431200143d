"""Error handlers: problem+json under /api, plain pages elsewhere."""

from __future__ import annotations

import logging
from http import HTTPStatus

import peewee
from flask import render_template, request, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from wsproto.utilities import RemoteProtocolError

from rsgo.db import note_storage_failure, storage_error_text
from rsgo.deployment_queries import AmbiguousDeployment, DeploymentNotFound
from rsgo.mode_change import ModeChangeRefused
from rsgo.modes import MODE_NAMES, InvalidMode
from rsgo.problems import Problem, problem_response
from rsgo.web.http_input import MAX_REQUEST_BYTES, MAX_REQUEST_TEXT

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type",
               429: "too_many_requests"}


def _wants_problem() -> bool:
    return request.path.startswith("/api/") or request.path in ("/metrics", "/ws")


# A refused mode change is 409 (the state does not allow it now) unless a dependency is missing.
_REFUSAL_STATUS = {"docker_unreachable": 503, "storage_unavailable": 503}


def register(app) -> None:
    def answer(status: int, code: str, detail: str, headers: dict | None = None, **extra):
        if _wants_problem():
            return problem_response(status, code, detail, headers=headers, **extra)
        # Browser requests (full pages and HTMX fragments) get the same message as HTML.
        problem = {"title": HTTPStatus(status).phrase, "detail": detail, "code": code, **extra}
        template = "shared/_problem.html" if request.headers.get("HX-Request") else "shared/problem_page.html"
        return render_template(template, problem=problem), status, headers or {}

    @app.errorhandler(Problem)
    def on_problem(problem: Problem):
        return answer(problem.status, problem.code, problem.detail, headers=problem.headers, **problem.extra)

    @app.errorhandler(ModeChangeRefused)
    def on_refused(refusal: ModeChangeRefused):
        extra = dict(refusal.extra)
        if extra.get("transitionId") is not None:
            extra["transitionUrl"] = url_for("api.show_transition", transition_id=extra["transitionId"])
        status = _REFUSAL_STATUS.get(refusal.code, 409)
        headers = {"Retry-After": "5"} if status == 503 else None
        return answer(status, refusal.code, refusal.detail, headers=headers, **extra)

    @app.errorhandler(DeploymentNotFound)
    def on_not_found(error):
        return answer(404, "not_found", str(error))

    @app.errorhandler(AmbiguousDeployment)
    def on_ambiguous(error):
        return answer(409, "ambiguous_deployment", str(error), environments=sorted(error.environments),
                      candidates=error.candidates)

    @app.errorhandler(RequestEntityTooLarge)
    def on_too_large(_error):
        return answer(413, "request_too_large", f"the request body is larger than {MAX_REQUEST_TEXT} "
                                                f"({MAX_REQUEST_BYTES} bytes); nothing was done")

    @app.errorhandler(RemoteProtocolError)
    def on_bad_handshake(error):
        # wsproto refusing the upgrade request (no Sec-WebSocket-Key, an unsupported version): the
        # client's mistake, answered before anything was upgraded.
        return answer(400, "invalid_request", f"not a valid websocket handshake: {error}")

    @app.errorhandler(InvalidMode)
    def on_invalid_mode(error):
        return answer(400, "invalid_mode", str(error), validModes=MODE_NAMES)

    @app.errorhandler(HTTPException)
    def on_http_error(error: HTTPException):
        if not _wants_problem():
            return error
        code = _HTTP_CODES.get(error.code, "http_error")
        headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else None
        return problem_response(error.code, code, error.description, headers=headers)

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def on_storage_failure(error: Exception):
        # A read-only or full disk, a lost database connection: say so, instead of a bare 500.
        log.error("database failure on %s %s: %s", request.method, request.path, storage_error_text(error))
        note_storage_failure()
        return answer(503, "storage_unavailable",
                      f"rsgo cannot use its database: {storage_error_text(error)}; nothing was changed",
                      headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def on_unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not _wants_problem():
            return "Internal Server Error", 500
        return problem_response(500, "internal_error", "rsgo hit an unexpected error; the server log has details")
