"""The admin pages in real Chromium against a real `rsgo serve`: deleting a user and revoking a token ask
first, a new token has a copy button, "Send test" shows a real receiver's answer and logs a test delivery,
empty states say what to do next, and no admin table is wider than a 390 px phone (README "Users, tokens
and security", "Webhooks")."""

from __future__ import annotations

import hmac
import re

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from support import ServerProcess, csrf_of, database_rows, launch_chromium
from test_browser import sign_in
from test_webhooks import Receiver, expected_signature

PHONE = {"width": 390, "height": 844}
SECRET = "whsec-9f3c1e-do-not-show"  # test_webhooks.expected_signature signs with this one


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # No admin token of the tests' own: the Tokens page starts empty, as on a fresh install.
    server = ServerProcess(tmp_path_factory.mktemp("admin-pages") / "data", admin_token=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def admin(browser, server):
    """A signed-in admin's page (its dialogs and errors recorded: there must be none)."""
    contexts, dialogs, errors = [], [], []

    def open_page(path: str, viewport=None, permissions=()):
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
        if permissions:
            context.grant_permissions(list(permissions), origin=server.url)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + path)
        sign_in(page)
        expect(page).to_have_url(server.url + path)
        # The URL changes when the navigation commits, before its stylesheets load: a page measured then is
        # unstyled (the phone-width test saw an 821 px wide admin table in one run of three).
        page.wait_for_load_state("load")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not dialogs, f"window.confirm/alert was used: {dialogs}"
    assert not errors, errors


def _session(server) -> requests.Session:
    session = server.login()
    session.headers["X-CSRF-Token"] = csrf_of(session, server.url)
    return session


def _add_webhook(server, name: str, url: str) -> None:
    session = _session(server)
    answer = session.post(f"{server.url}/admin/webhooks", timeout=30, allow_redirects=False, data={
        "name": name, "url": url, "secret": SECRET, "events": ["mode.changed"],
        "csrf_token": session.headers["X-CSRF-Token"]})
    assert answer.status_code == 302, answer.text[:500]


def test_empty_states_say_what_to_do_next(server, admin):
    page = admin("/admin/tokens")
    expect(page.locator("#no-tokens")).to_contain_text("No API tokens yet")
    expect(page.locator("#no-tokens")).to_contain_text("create it below")
    page.goto(server.url + "/admin/webhooks")
    expect(page.locator("#no-webhooks")).to_contain_text("No webhooks yet. Add one below")
    page.goto(server.url + "/admin/users")
    expect(page.locator("#no-other-users")).to_contain_text("Nobody else has an account yet. Add one below")
    page.goto(server.url + "/history")
    expect(page.locator("#no-history")).to_contain_text("No mode changes yet")


def test_deleting_a_user_asks_first(server, admin):
    server.cli("user", "create", "leaving", "--role", "viewer", "--password-stdin", stdin="correct horse battery\n")
    page = admin("/admin/users")
    expect(page.locator("#no-other-users")).to_have_count(0)
    page.get_by_role("button", name="Delete leaving").click()
    dialog = page.get_by_role("dialog", name="Delete user leaving?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("their open sessions end now")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert database_rows(server, "SELECT username FROM users WHERE username = 'leaving'")

    page.get_by_role("button", name="Delete leaving").click()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert database_rows(server, "SELECT username FROM users WHERE username = 'leaving'")

    page.get_by_role("button", name="Delete leaving").click()
    expect(dialog.get_by_role("button", name="Delete leaving")).to_have_class("danger")
    with page.expect_navigation():  # the answer is a new page: the count below is read on it, loaded
        dialog.get_by_role("button", name="Delete leaving").click()
    expect(page.get_by_role("button", name="Delete leaving")).to_have_count(0)
    assert not database_rows(server, "SELECT username FROM users WHERE username = 'leaving'")


def test_revoking_a_token_asks_first(server, admin):
    server.create_token("read", name="ci-reader")
    page = admin("/admin/tokens")
    page.get_by_role("button", name="Revoke ci-reader").click()
    dialog = page.get_by_role("dialog", name="Revoke token ci-reader?")
    expect(dialog).to_contain_text("is refused from now on")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert database_rows(server, "SELECT revoked_at FROM api_tokens WHERE name = 'ci-reader'") == [(None,)]

    page.get_by_role("button", name="Revoke ci-reader").click()
    with page.expect_navigation():
        dialog.get_by_role("button", name="Revoke ci-reader").click()
    expect(page.get_by_role("row", name=re.compile(r"^ci-reader .* revoked$"))).to_be_visible()
    expect(page.get_by_role("button", name="Revoke ci-reader")).to_have_count(0)
    [(revoked,)] = database_rows(server, "SELECT revoked_at FROM api_tokens WHERE name = 'ci-reader'")
    assert revoked is not None


def _create_token_in_page(page, name: str) -> str:
    form = page.get_by_role("form", name="New token")
    form.get_by_label("Name").fill(name)
    form.get_by_role("button", name="Create token").click()
    field = page.get_by_label("The new token")
    expect(field).to_have_value(re.compile(r"^rsgo_"))
    # The answer is a new page: the field exists while it is still parsed, before its deferred scripts
    # (the Copy handler) have run. A click that early does nothing; wait for the page to be loaded.
    page.wait_for_load_state("load")
    return field.input_value()


def test_a_new_token_has_a_copy_button(server, admin):
    page = admin("/admin/tokens", permissions=("clipboard-read", "clipboard-write"))
    token = _create_token_in_page(page, "copied")
    expect(page.get_by_label("The new token")).to_have_attribute("readonly", "")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).to_have_text("✓ Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert requests.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {token}"},
                        timeout=10).status_code == 200


def test_without_the_clipboard_api_copy_selects_the_token(server, admin):
    page = admin("/admin/tokens")
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.reload()
    token = _create_token_in_page(page, "selected")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).to_have_text("Selected: press Ctrl+C (⌘C) to copy")
    expect(page.get_by_label("The new token")).to_be_focused()
    selected = page.evaluate("(() => { const f = document.activeElement;"
                             " return f.value.slice(f.selectionStart, f.selectionEnd); })()")
    assert selected == token


def _test_result(page, name: str):
    row = page.locator("table.webhooks-table tr").filter(
        has=page.get_by_role("button", name=f"Send a test event to {name}", exact=True))
    return row.locator(".webhook-test-result")


def test_send_test_shows_the_receivers_answer_and_logs_a_test_delivery(server, admin, receiver):
    receiver.script("/broken", [500])
    _add_webhook(server, "chat", receiver.url("/chat"))
    _add_webhook(server, "broken", receiver.url("/broken"))
    _add_webhook(server, "nobody", "http://127.0.0.1:9/hook")  # the discard port: connection refused
    page = admin("/admin/webhooks")

    page.get_by_role("button", name="Send a test event to chat").click()
    expect(_test_result(page, "chat")).to_contain_text("✓ Delivered: HTTP 200")
    [sent] = receiver.at("/chat")
    assert sent.headers["X-RSGO-Event"] == "webhook.test" and sent.json["test"] is True
    assert hmac.compare_digest(sent.headers["X-RSGO-Signature"], expected_signature(sent.body))

    page.get_by_role("button", name="Send a test event to broken").click()
    expect(_test_result(page, "broken")).to_contain_text("✗ Not delivered: HTTP 500")
    page.get_by_role("button", name="Send a test event to nobody").click()
    expect(_test_result(page, "nobody")).to_contain_text("✗ Not delivered")
    expect(_test_result(page, "nobody")).to_contain_text("refused")
    assert len(receiver.at("/broken")) == 1  # a test is sent once, never retried

    page.reload()
    tests = page.locator("tr.delivery").filter(has=page.locator(".test-flag"))
    expect(tests).to_have_count(3)
    expect(tests.filter(has_text="chat")).to_contain_text("delivered")
    expect(tests.filter(has_text="broken")).to_contain_text("HTTP 500")


@pytest.mark.parametrize("path", ["/admin/users", "/admin/tokens", "/admin/webhooks", "/admin/security"])
def test_admin_tables_fit_a_phone(server, admin, path):
    # Long words everywhere a table shows one: a user name, a token name, a webhook URL.
    long = "x" * 120
    if path == "/admin/users":
        server.cli("user", "create", f"u{long}"[:64], "--role", "viewer", "--password-stdin",
                   stdin="correct horse battery\n")
    if path == "/admin/tokens":
        server.create_token("read", name=f"t{long}"[:64])
    if path == "/admin/webhooks":
        _add_webhook(server, f"w{long}"[:100], f"http://127.0.0.1:9/{long}/{long}")
    page = admin(path, viewport=PHONE)
    expect(page.locator("main table").first).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} is {width}px wide on a 390px phone"
