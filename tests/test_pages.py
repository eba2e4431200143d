"""Pages through the Flask client: fragments for HTMX, history filters, assets, no inline script."""

from __future__ import annotations

import hashlib
import re

from conftest import wait_for_deployment
from support import ROOT, put_mode

HTMX = {"HX-Request": "true"}


def test_an_htmx_request_for_a_region_gets_only_that_partial(client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment = wait_for_deployment(client, stack.name, 1)
    deployment_id = deployment["id"]

    for region in (f"mode-{deployment_id}", f"progress-{deployment_id}", f"containers-{deployment_id}"):
        response = client.get(f"/deployments/{deployment_id}", headers={**HTMX, "HX-Target": region})
        html = response.get_data(as_text=True)
        assert response.status_code == 200
        assert f'id="{region}"' in html and "<html" not in html

    full = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    assert "<html" in full and f'ws-connect="/ws?topics=deployment:{deployment_id}"' in full
    listing = client.get("/", headers={**HTMX, "HX-Target": "deployment-list"}).get_data(as_text=True)
    assert 'id="deployment-list"' in listing and "<html" not in listing


def test_the_confirmation_previews_what_will_stop(client, make_stack):
    stack = make_stack()
    stack.add("db", labels={"rsgo.maintenance": "ignore"})
    stack.add("api")
    stack.add("job", running=False)
    deployment_id = wait_for_deployment(client, stack.name, 3)["id"]

    html = client.get(f"/deployments/{deployment_id}/mode-change?to=stopped", headers=HTMX).get_data(as_text=True)

    assert f"<strong>Stops</strong> 2: {stack.container_name('api')}, {stack.container_name('db')}" in html
    assert f"Left as they are</strong> (already stopped): {stack.container_name('job')}" in html
    assert 'name="newMode" value="Stopped"' in html


def test_a_change_without_a_reason_is_refused_in_place(client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]

    response = client.post(f"/deployments/{deployment_id}/mode-change", data={"newMode": "Maintenance", "reason": " "},
                           headers=HTMX)

    assert response.status_code == 400
    assert "Give a reason" in response.get_data(as_text=True)
    assert stack.is_running("api")


def test_the_history_page_filters_by_deployment_source_and_actor(app, client, make_stack):
    first, second = make_stack(), make_stack()
    first.add("api")
    second.add("api")
    first_id = wait_for_deployment(client, first.name, 1)["id"]
    wait_for_deployment(client, second.name, 1)
    assert put_mode(client, first.name, "Migrating", reason="first-api").status_code == 200
    app.extensions["rsgo"].transitions.change_mode(first_id, "Normal", source="cli", actor="alice", reason="first-cli")
    assert put_mode(client, second.name, "Migrating", reason="second-api").status_code == 200

    def reasons(query: str) -> set[str]:
        html = client.get(f"/history?{query}", headers={**HTMX, "HX-Target": "history-table"}).get_data(as_text=True)
        return set(re.findall(r"(first-api|first-cli|second-api)", html))

    assert reasons("") == {"first-api", "first-cli", "second-api"}
    assert reasons(f"deployment={first_id}") == {"first-api", "first-cli"}
    assert reasons("source=cli") == {"first-cli"}
    assert reasons(f"actor={app.config['TEST_ACTOR']}&source=api") == {"first-api", "second-api"}
    filtered = client.get("/history?source=cli").get_data(as_text=True)
    assert 'id="history-rows-filtered"' in filtered and 'id="history-rows-all"' not in filtered


def test_history_pages_continue_with_older_entries(app, client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    for index in range(30):
        put_mode(client, stack.name, "Migrating" if index % 2 == 0 else "Normal", reason=f"r{index:02d}")

    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    # Only the history table counts: the mode timeline above it names every reason of the last 24 h.
    rows = page[page.index(f'id="history-rows-{deployment_id}"'):]
    shown = set(re.findall(r"r\d\d", rows[:rows.index("</tbody>")]))
    next_url = re.search(r'hx-get="([^"]*/history\?before=\d+)"', page).group(1)
    older = client.get(next_url.replace("&amp;", "&"), headers=HTMX).get_data(as_text=True)

    assert len(shown) == 25 and "r29" in shown
    assert f'hx-swap-oob="beforeend:#history-rows-{deployment_id}"' in older
    assert set(re.findall(r"r\d\d", older)) == {f"r{i:02d}" for i in range(5)}


def test_a_new_stacks_timelines_begin_when_rsgo_first_saw_it(client, make_stack):
    stack = make_stack()
    stack.add("api")
    deployment_id = wait_for_deployment(client, stack.name, 1)["id"]
    put_mode(client, stack.name, "Migrating", reason="just now")

    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    summaries = dict(re.findall(r'aria-label="Modes over the last (24 h|7 d): ([^"]*)"', page))
    # Seconds of Normal before the change, not a day or a week of it that nobody saw.
    for span in ("24 h", "7 d"):
        normal = re.search(r"Normal ([^,]*)", summaries[span]).group(1)
        assert normal.endswith(" s"), (span, summaries[span])
    dashboard = client.get("/").get_data(as_text=True)
    row = dashboard[dashboard.index(f'id="deployment-{deployment_id}"'):]
    row_summary = re.search(r'aria-label="Modes over the last 24 h: ([^"]*)"', row).group(1)
    assert re.search(r"Normal ([^,]*)", row_summary).group(1).endswith(" s"), row_summary


def test_pages_have_no_inline_script_and_load_only_local_assets(client):
    for path in ("/", "/history"):
        html = client.get(path).get_data(as_text=True)
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all('src="/static/' in tag for tag in scripts), scripts
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script"
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
        assert not re.search(r'(src|href)="(https?:)?//', html), "asset from outside"


def test_vendored_assets_match_their_recorded_checksums(client):
    manifest = (ROOT / "static/vendor/MANIFEST").read_text().splitlines()
    entries = [line.split() for line in manifest if line and not line.startswith("#")]
    assert {name for _, name, _ in entries} == {"htmx.min.js", "htmx-ext-ws.min.js", "pico.classless.min.css"}
    for spec, name, sha256 in entries:
        assert hashlib.sha256((ROOT / "static/vendor" / name).read_bytes()).hexdigest() == sha256, spec
        assert client.get(f"/static/vendor/{name}").status_code == 200
