"""The Upgrade panel of the deployment page (README "Upgrades"): the preview and the refusals through the Flask
client, then real Chromium against a real ``rsgo serve`` and the real engine: an operator previews and starts an
upgrade to a locally built image and watches its steps arrive over the websocket, a failing migration shows its
exit code and log, a rollback from the panel, a viewer without the form, the panel on a 390 px phone.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from conftest import RUN_ID, RUN_LABEL, wait_for_deployment
from rsgo.models import AuditEntry, Upgrade
from rsgo.security import tokens
from support import ROOT, ServerProcess, launch_chromium, wait_until
from upgrade_images import ComposeLikeStack, build_images, ref

HTMX = {"HX-Request": "true"}
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def images(docker_client):
    return build_images(docker_client)


@pytest.fixture
def make_shop(docker_client, images):
    """Stacks of db (ignored by Maintenance) ← api ← worker on version 1, removed after the test."""
    stacks = []

    def make() -> ComposeLikeStack:
        stack = ComposeLikeStack(docker_client, {RUN_LABEL: RUN_ID})
        stack.add("db", ignore=True)
        stack.add("api", depends_on="db")
        stack.add("worker", depends_on="api")
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.remove()


def form(*, api: str, reason: str = "", previewed: str = "", **fields) -> dict:
    """The panel's form as the browser sends it: every row, only api changed."""
    rows = [(service, ref("1")) for service in ("db", "api", "worker")]
    return {"service": [s for s, _ in rows], "current": [c for _, c in rows],
            "image": [api if s == "api" else c for s, c in rows], "healthTimeout": "20s", "stableFor": "0.5s",
            "migrationService": "", "migrationCommand": "", "migrationTimeout": "15m", "reason": reason,
            "previewed": previewed, **fields}


def read_token_header() -> dict:
    _, token = tokens.create_token(f"viewer-{uuid.uuid4().hex[:6]}", "read", created_by="tests")
    return {"Authorization": f"Bearer {token}"}


# -- the Flask client: the preview fragment and the refusals ------------------------------------------

def test_the_preview_says_what_is_pulled_stopped_recreated_and_kept_running_and_changes_nothing(client, make_shop):
    shop = make_shop()
    deployment_id = wait_for_deployment(client, shop.name, 3)["id"]
    page = client.get(f"/deployments/{deployment_id}").get_data(as_text=True)
    assert 'aria-label="New image of api"' in page and f'value="{ref("1")}"' in page
    started = {service: shop.inspect(service)["State"]["StartedAt"] for service in ("db", "api", "worker")}
    api, worker, db = (f"{shop.name}-{s}-1" for s in ("api", "worker", "db"))

    answer = client.post(f"/deployments/{deployment_id}/upgrade/preview", headers=HTMX,
                         data=form(api=ref("2"), migrationService="api", migrationCommand="./migrate --all"))
    html = answer.get_data(as_text=True)

    assert answer.status_code == 200, html
    assert f"<strong>Pull</strong> (when not here yet): {ref('2')}</li>" in html
    assert f"<strong>Stop</strong> 2: {worker}, {api}</li>" in html  # dependents first
    assert "<code>./migrate --all</code> in a container of the new image of " + api in html
    assert re.search(rf"<strong>Recreate</strong> 1:\s*{api}: {ref('1')} → {ref('2')}", html)
    assert f"(they depend on it, same image): {worker}</li>" in html
    assert f"<strong>Keeps running</strong>: {db}</li>" in html
    assert 'name="previewed" value="' in html and "<html" not in html
    assert {service: shop.inspect(service)["State"]["StartedAt"] for service in started} == started
    assert Upgrade.select().count() == 0

    # Nothing changed, an unknown duration, an unknown service: a message in place of the preview.
    unchanged = client.post(f"/deployments/{deployment_id}/upgrade/preview", headers=HTMX,
                            data=form(api=ref("1")))
    assert unchanged.status_code == 400 and "Change the image of at least one service" in unchanged.text
    bad = client.post(f"/deployments/{deployment_id}/upgrade/preview", headers=HTMX,
                      data=form(api=ref("2"), stableFor="soon"))
    assert bad.status_code == 400 and 'class="problem"' in bad.text and "stableFor" in bad.text
    missing = client.post(f"/deployments/{deployment_id}/upgrade/preview", headers=HTMX,
                          data={**form(api=ref("2")), "service": ["db", "payments", "worker"]})
    assert missing.status_code == 400 and "no service or container &#39;payments&#39;" in missing.text

    # Start checks the form is the one previewed, and wants a reason; both before anything is touched.
    digest = re.search(r'name="previewed" value="([0-9a-f]+)"', html).group(1)
    url = f"/deployments/{deployment_id}/upgrade"
    fields = {"migrationService": "api", "migrationCommand": "./migrate --all", "previewed": digest}
    edited = client.post(url, headers=HTMX, data=form(api=ref("healthy"), reason="r", **fields))
    assert edited.status_code == 409 and "preview it again" in edited.text
    unexplained = client.post(url, headers=HTMX, data=form(api=ref("2"), **fields))
    assert unexplained.status_code == 400 and "Give a reason" in unexplained.text
    assert Upgrade.select().count() == 0


def test_a_viewer_gets_no_form_and_is_refused_403_with_the_attempt_recorded(client, make_shop):
    shop = make_shop()
    deployment_id = wait_for_deployment(client, shop.name, 3)["id"]
    viewer = read_token_header()

    page = client.get(f"/deployments/{deployment_id}", headers=viewer).get_data(as_text=True)
    assert f'id="upgrades-{deployment_id}"' in page and "No upgrade yet." in page
    assert 'class="upgrade-form"' not in page and "New image of" not in page and "hx-post" not in page
    for path in ("upgrade/preview", "upgrade", "upgrade/rollback"):
        refused = client.post(f"/deployments/{deployment_id}/{path}", headers={**HTMX, **viewer},
                              data=form(api=ref("2"), reason="viewer tries"))
        assert refused.status_code == 403, (path, refused.text)
    assert client.get(f"/deployments/{deployment_id}/upgrade/rollback?confirm=1", headers=viewer).status_code == 403
    entries = AuditEntry.select().where(AuditEntry.deployment == deployment_id)
    assert sorted((e.outcome, e.requested_mode, e.source, e.reason) for e in entries) == [
        ("rejected", "Migrating", "ui", "viewer tries")] * 2
    assert Upgrade.select().count() == 0 and shop.inspect("api")["State"]["Running"]


# -- real Chromium, a real server ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory, docker_client):
    """One ``rsgo serve`` for the browser tests (each test has a stack of its own), with an operator and a
    viewer."""
    served = ServerProcess(tmp_path_factory.mktemp("upgrade-page") / "data").start()
    for role in ("operator", "viewer"):
        served.cli("user", "create", role, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def signed_in() -> dict:
    """Each user's browser state (its session cookie) once signed in: later pages need no sign-in."""
    return {}


@pytest.fixture
def open_page(browser, signed_in):
    """``open_page(url, user, viewport)``: a new browser as ``user`` on ``url`` (signed in on rsgo's login
    page the first time), its websocket live. Script errors on the page fail the test."""
    opened = []

    def open_(url: str, user: str, viewport: dict | None = None):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900},
                                      storage_state=signed_in.get(user))
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        opened.append((context, errors))
        page.goto(url)
        if user not in signed_in:
            assert urlsplit(page.url).path == "/login", page.url
            page.get_by_label("User name").fill(user)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page).to_have_url(url)
            signed_in[user] = context.storage_state()
        expect(page.locator("#live-status")).to_have_text("Live", timeout=15_000)
        return page

    yield open_
    for context, errors in opened:
        context.close()
        assert not errors, errors


def discovered(server, stack) -> int:
    def seen():
        answer = requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers, timeout=10)
        return answer.status_code == 200 and answer.json()["containerCounts"]["total"] == 3 and answer.json()["id"]

    return wait_until(seen, 20, interval=0.1, message=f"discovery of {stack.name}")


def fill_upgrade(page, stack, image: str, stable_for: str = "0.5s"):
    """Fills the panel's form (api gets ``image``); returns the form."""
    upgrade_form = page.get_by_role("form", name=f"Upgrade {stack.name}")
    upgrade_form.get_by_label("New image of api").fill(image)
    upgrade_form.get_by_label("Health timeout").fill("20s")
    upgrade_form.get_by_label("Stable for").fill(stable_for)
    return upgrade_form


def preview_of(page, upgrade_form):
    """Clicks Preview; returns the preview once it is shown."""
    upgrade_form.get_by_role("button", name="Preview the upgrade").click()
    preview = page.get_by_role("region", name="Upgrade preview")
    expect(preview).to_be_visible()
    return preview


def start(preview, reason: str) -> None:
    preview.get_by_label("Reason for the upgrade").fill(reason)
    preview.get_by_role("button", name="Start the upgrade").click()


def test_an_operator_starts_an_upgrade_sees_its_steps_arrive_live_then_rolls_it_back(server, open_page, make_shop,
                                                                                     images):
    shop = make_shop()
    deployment_id = discovered(server, shop)
    api, worker, db = (f"{shop.name}-{s}-1" for s in ("api", "worker", "db"))
    page = open_page(f"{server.url}/deployments/{deployment_id}", "operator")
    page.evaluate("window.rsgoNotReloaded = true")
    status = page.locator(f"#upgrades-{deployment_id}")
    expect(status).to_contain_text("No upgrade yet.")

    # Stable for 1 s: the start step lasts that long for each of api and worker, so it is seen running.
    upgrade_form = fill_upgrade(page, shop, ref("2"), stable_for="1s")
    preview = preview_of(page, upgrade_form)
    expect(preview).to_contain_text(f"Recreate 1: {api}: {ref('1')} → {ref('2')}")
    expect(preview).to_contain_text(f"Stop 2: {worker}, {api}")
    expect(preview).to_contain_text(f"Start again (they depend on it, same image): {worker}")
    expect(preview).to_contain_text(f"Keeps running: {db}")
    assert shop.inspect("api")["Image"] == images["1"], "a preview changes nothing"
    start(preview, "release 2")

    expect(status.locator("tr.result-running")).to_have_count(1, timeout=30_000)  # a step pushed while it runs
    expect(status.locator(".upgrade-outcome")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    steps = status.locator(".upgrade-steps tbody tr")
    expect(steps).to_have_count(6)
    assert [steps.nth(i).get_attribute("data-step") for i in range(6)] == [
        "pull", "create", "stop", "set aside", "start", "verify"]
    for i in range(6):
        expect(steps.nth(i)).to_have_class("result-succeeded")
        expect(steps.nth(i).locator("td").nth(2)).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(status.locator(f'tr[data-container="{api}"]')).to_contain_text(f"{ref('1')} → {ref('2')}")
    expect(status.locator(f'tr[data-container="{api}"]')).to_contain_text("healthy")
    expect(status.locator(f'tr[data-container="{worker}"]')).to_contain_text("stopped, started again")
    upgrade_id = int(status.locator(".upgrade-title").inner_text().split()[1])
    expect(status.get_by_role("link", name=f"upgrade {upgrade_id} as JSON")).to_have_attribute(
        "href", f"/api/upgrades/{upgrade_id}")
    expect(page.get_by_label("New image of api")).to_have_value(ref("2"), timeout=10_000)  # the form follows
    assert page.evaluate("window.rsgoNotReloaded") is True, "the page was reloaded"
    assert shop.inspect("api")["Image"] == images["2"]
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    page.locator(f"#upgrade-panel-{deployment_id}").screenshot(path=str(docs / "upgrade-panel.png"))

    page.get_by_role("button", name=f"Roll back upgrade {upgrade_id} of {shop.name}").click()
    confirm = page.get_by_role("form", name=f"Confirm the rollback of upgrade {upgrade_id}")
    expect(confirm).to_contain_text(f"{api}: {ref('2')} → {ref('1')}")
    confirm.get_by_label("Reason for the rollback").fill("2 is slow")
    confirm.get_by_role("button", name=f"Roll back upgrade {upgrade_id}").click()

    expect(status.locator(".upgrade-title")).to_contain_text(f"of upgrade {upgrade_id}", timeout=30_000)
    expect(status.locator(".upgrade-outcome")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(status.get_by_role("button", name=re.compile("Roll back"))).to_have_count(0)
    expect(status.locator(".upgrade-recent tbody tr")).to_have_count(2)
    expect(page.locator(f"#mode-{deployment_id} .mode")).to_have_text("🟢 Normal")
    assert shop.inspect("api")["Image"] == images["1"] and shop.inspect("api")["State"]["Running"]
    assert page.evaluate("window.rsgoNotReloaded") is True


def test_a_failing_migration_shows_its_exit_code_and_the_last_lines_of_its_log(server, open_page, make_shop):
    shop = make_shop()
    deployment_id = discovered(server, shop)
    page = open_page(f"{server.url}/deployments/{deployment_id}", "operator")
    upgrade_form = fill_upgrade(page, shop, ref("2"))
    upgrade_form.get_by_label("Migration: service").select_option("api")
    command = "sh -c 'echo migrating to $APP_VERSION; echo table 7 of 9 failed; exit 3'"
    upgrade_form.get_by_label("Migration: command").fill(command)
    preview = preview_of(page, upgrade_form)
    expect(preview).to_contain_text(f"Migrate: {command} in a container of the new image of {shop.name}-api-1")
    start(preview, "release 2 with its migration")

    status = page.locator(f"#upgrades-{deployment_id}")
    expect(status.locator(".upgrade-outcome")).to_have_attribute("data-status", "failed", timeout=60_000)
    expect(status.locator(".upgrade-migration")).to_contain_text("exit code 3")
    expect(status.locator(".migration-log")).to_have_text("migrating to 2\ntable 7 of 9 failed")
    expect(status.locator('tr[data-step="migrate"]')).to_contain_text("the migration exited with code 3")
    expect(status.locator(".upgrade-error")).to_contain_text("schema may already be migrated")
    expect(page.locator(f"#mode-{deployment_id} .mode")).to_have_text("🔴 Failed")
    expect(status.get_by_role("button", name=re.compile("Roll back"))).to_have_count(0)


def test_a_viewer_follows_an_upgrade_without_a_form_and_the_panel_fits_a_phone(server, open_page, make_shop):
    shop = make_shop()
    deployment_id = discovered(server, shop)
    url = f"{server.url}/deployments/{deployment_id}"
    viewer = open_page(url, "viewer")
    assert "hx-post" not in viewer.content()
    expect(viewer.locator("form.upgrade-form")).to_have_count(0)

    answer = requests.post(f"{server.url}/api/deployments/{shop.name}/upgrade", headers=server.headers, timeout=60,
                           json={"images": {"api": ref("2")}, "stableFor": "0.5s", "wait": False, "reason": "api"})
    assert answer.status_code == 202, answer.text
    status = viewer.locator(f"#upgrades-{deployment_id}")
    expect(status.locator(".upgrade-outcome")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(status).to_contain_text(f"Upgrade {answer.json()['id']} can be rolled back")
    expect(status.get_by_role("button")).to_have_count(0)
    expect(viewer.locator("form.upgrade-form")).to_have_count(0)

    phone = open_page(url, "operator", viewport={"width": 390, "height": 844})
    preview = preview_of(phone, fill_upgrade(phone, shop, ref("healthy")))
    expect(preview).to_contain_text(f"{ref('2')} → {ref('healthy')}")
    expect(phone.get_by_role("button", name=re.compile("Roll back upgrade"))).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
