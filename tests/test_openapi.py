"""The OpenAPI 3.1 document at /api/openapi.json: valid, exactly the API routes the app serves, true to
the responses."""

from __future__ import annotations

import re

from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from conftest import wait_for_deployment
from support import put_mode, wait_until

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?[^<>]+>")
_PATH_PARAMETER = re.compile(r"\{[^{}]+\}")


def _document(client) -> dict:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.json


def _is_machine_interface(rule) -> bool:
    """The JSON API under /api plus the probes; the browser pages, /ws and static files are not in the document."""
    return rule.rule.startswith("/api/") or rule.endpoint.startswith("probes.")


def _served_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or not _is_machine_interface(rule):
            continue
        path = _CONVERTER.sub("{id}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operations.add((path, method.lower()))
    return operations


def _documented_operations(document: dict) -> set[tuple[str, str]]:
    # Parameter names differ between Flask (<int:window_id>) and the document ({windowId}); every
    # parameter is {id} on both sides, so paths compare by shape and methods exactly.
    return {(_PATH_PARAMETER.sub("{id}", path), method) for path, item in document["paths"].items()
            for method in item if method in HTTP_METHODS}


def test_it_serves_a_valid_openapi_3_1_document(client):
    document = _document(client)

    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises on any violation


def test_it_documents_exactly_the_api_and_probe_routes_the_app_serves(app, client):
    documented = _documented_operations(_document(client))
    served = _served_operations(app)

    assert ("/api/deployments/{id}/operation-mode", "put") in served and ("/healthz", "get") in served
    assert documented - served == set(), "documented but not served"
    assert served - documented == set(), "served but not documented"


def _validator(document: dict, schema: dict) -> OAS31Validator:
    # The document is the root resource, so #/components/... references resolve inside it.
    return OAS31Validator({**schema, "components": document["components"]}, format_checker=oas31_format_checker)


def _check(document: dict, path: str, method: str, status: int, response) -> None:
    # The status first: every 4xx shares the Problem schema, so a 409 would validate as a documented 404.
    assert response.status_code == status, (method, path, response.status_code, response.get_data(as_text=True))
    described = document["paths"][path][method]["responses"][str(status)]
    content = described["content"]
    assert response.mimetype in content, (path, method, status, response.mimetype, list(content))
    errors = sorted(_validator(document, content[response.mimetype]["schema"]).iter_errors(response.json),
                    key=lambda e: list(e.absolute_path))
    assert not errors, f"{method.upper()} {path} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_it_describes_the_responses_the_server_really_gives(client, make_stack):
    document = _document(client)
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore", "com.docker.compose.service": "db"})
    stack.add("api")
    wait_for_deployment(client, stack.name, 2)
    deployment = "/api/deployments/{id}"
    mode = "/api/deployments/{id}/operation-mode"

    _check(document, "/api/deployments", "get", 200, client.get("/api/deployments"))
    _check(document, deployment, "get", 200, client.get(f"/api/deployments/{stack.name}"))
    _check(document, mode, "get", 200, client.get(f"/api/deployments/{stack.name}/operation-mode"))
    _check(document, mode, "put", 200, put_mode(client, stack.name, "Normal"))  # noop
    changed = put_mode(client, stack.name, "Maintenance", reason="schema check")
    _check(document, mode, "put", 200, changed)
    _check(document, "/api/transitions/{id}", "get", 200,
           client.get(f"/api/transitions/{changed.json['transition']['id']}"))
    accepted = put_mode(client, stack.name, "Normal", wait=False)
    assert accepted.status_code == 202
    _check(document, mode, "put", 202, accepted)
    wait_until(lambda: client.get(accepted.headers["Location"]).json["outcome"] != "running", 20,
               message="the background transition to finish")
    _check(document, mode, "put", 400, put_mode(client, stack.name, "Holiday"))
    _check(document, mode, "put", 400, put_mode(client, stack.name, "Normal", colour="red"))
    _check(document, mode, "put", 409, put_mode(client, stack.name, "Failed"))
    _check(document, mode, "put", 404, put_mode(client, "no-such-stack", "Normal"))
    _check(document, mode, "put", 415, client.put(f"/api/deployments/{stack.name}/operation-mode",
                                                  data="newMode=Normal", content_type="text/plain"))
    _check(document, "/api/deployments/{id}/history", "get", 200,
           client.get(f"/api/deployments/{stack.name}/history", query_string={"limit": 2}))
    _check(document, "/api/deployments/{id}/history", "get", 400,
           client.get(f"/api/deployments/{stack.name}/history", query_string={"limit": 0}))
    _check(document, "/api/history", "get", 200, client.get("/api/history"))
    _check(document, "/api/transitions/{id}", "get", 404, client.get("/api/transitions/999999"))
    _check(document, "/healthz", "get", 200, client.get("/healthz"))
