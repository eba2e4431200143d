"""XSS payloads in every place a value is shown (pages, fragments, pushes, real Chromium), and the
security headers of every kind of answer."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import requests
import yaml
from markupsafe import escape
from playwright.sync_api import expect, sync_playwright

from conftest import Stack
from support import launch_chromium, put_mode, wait_until

from .conftest import PASSWORD, create_user, csrf_in, deployment, mode_of, sign_in

XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = '"><script>alert(1)</script>'
RAW_MARKERS = ("<img src=x", "<script>alert(1)")  # either in a response means a payload got through unescaped


def test_payloads_in_reasons_names_and_observed_values_render_as_text_everywhere_with_no_csp_violation(
        make_server, make_stack, tmp_path, live_pages, docker_client):
    uid = uuid.uuid4().hex[:6]
    stack_name = f"x{uid}{XSS_IMG}{XSS_SCRIPT}"  # a label value may hold any of these characters
    observed = f"{XSS_IMG}{XSS_SCRIPT}{uid}"
    reason = f"why {XSS_IMG} {XSS_SCRIPT}"
    window_name = f"w{XSS_IMG}"
    x = Stack(docker_client, f"xss{uid}")
    try:
        x.add("app", stack_label=stack_name)
        plain = make_stack("sr")
        plain.add("api")
        value_file = tmp_path / "observed.txt"
        config = tmp_path / "rsgo.yml"
        config.write_text(yaml.safe_dump({"stacks": {stack_name: {"maintenanceObserver": {
            "type": "file", "path": str(value_file), "mode": "content", "maintenanceValue": observed,
            "pollingInterval": "1s"}}}}))
        server = make_server(RSGO_CONFIG=str(config)).start()
        x_id = deployment(server, stack_name, 1)["id"]
        r_id = deployment(server, plain.name, 1)["id"]
        operator_name = create_user(server, "operator")
        operator, _ = sign_in(server, operator_name)
        live = live_pages(server, f"dashboard,history,deployment:{x_id},deployment:{r_id}", session=operator)

        value_file.write_text(observed)  # the observer reads the payload and puts the stack into Maintenance
        wait_until(lambda: mode_of(server, x_id) == "Maintenance", 15, message="the observer's Maintenance")
        assert not x.is_running("app")
        assert put_mode(server, r_id, "Maintenance", session=operator, reason=reason).status_code == 200
        form = operator.post(f"{server.url}/deployments/{r_id}/mode-change", timeout=30,
                             data={"newMode": "Normal", "reason": reason})
        assert form.status_code == 200
        wait_until(lambda: mode_of(server, r_id) == "Normal", 20, message="Normal again")
        window = operator.post(f"{server.url}/api/deployments/{r_id}/windows", timeout=30,
                               json={"name": window_name, "reason": reason, "start": "2099-01-01T00:00:00+00:00",
                                     "end": "2099-01-01T01:00:00+00:00"})
        assert window.status_code == 201, window.text

        stored = {"stack name": escape(stack_name), "observed value": escape(observed), "reason": escape(reason),
                  "window name": escape(window_name)}

        def safe(html: str, where: str, *expected: str) -> None:
            for marker in RAW_MARKERS:
                assert marker not in html, f"{where}: unescaped {marker!r}"
            for what in expected:
                assert stored[what] in html, f"{where}: the {what} is missing (escaped)"

        # Full pages.
        pages = {"/": ("stack name", "observed value", "reason"),
                 f"/deployments/{x_id}": ("stack name", "observed value"),
                 f"/deployments/{r_id}": ("reason", "window name"),
                 "/history": ("stack name", "observed value", "reason"),
                 f"/deployments/{x_id}/history": ("observed value",)}
        for path, expected in pages.items():
            safe(operator.get(f"{server.url}{path}", timeout=10).text, path, *expected)
        # HTMX fragments of the live regions.
        regions = {("/", "deployment-list"): ("stack name", "observed value", "reason"),
                   (f"/deployments/{x_id}", f"mode-{x_id}"): ("observed value",),
                   (f"/deployments/{x_id}", f"observer-{x_id}"): ("observed value",),
                   (f"/deployments/{x_id}", f"history-rows-{x_id}"): ("observed value",),
                   (f"/deployments/{r_id}", f"history-rows-{r_id}"): ("reason",),
                   (f"/deployments/{r_id}", f"windows-{r_id}"): ("window name", "reason"),
                   ("/history", "history-table"): ("stack name", "reason")}
        for (path, target), expected in regions.items():
            fragment = operator.get(f"{server.url}{path}", headers={"HX-Request": "true", "HX-Target": target},
                                    timeout=10).text
            assert "<html" not in fragment, (path, target)
            safe(fragment, f"{path} #{target}", *expected)
        confirm = operator.get(f"{server.url}/deployments/{x_id}/mode-change?to=Normal",
                               headers={"HX-Request": "true"}, timeout=10).text
        safe(confirm, "the confirmation form", "stack name")
        checked = operator.post(f"{server.url}/deployments/{x_id}/observer/check", timeout=30,
                                headers={"HX-Request": "true", "HX-Target": f"observer-{x_id}"}).text
        safe(checked, "the observer's check-now answer", "observed value")
        # Reflected input: query strings, a wrong path, the login form.
        attack = quote(XSS_IMG + XSS_SCRIPT, safe="")
        for path in (f"/history?actor={attack}&source={attack}", f"/deployments/{attack}",
                     f"/deployments/{x_id}/mode-change?to={attack}", f"/login?next={attack}"):
            for html in (operator.get(f"{server.url}{path}", timeout=10).text,
                         requests.get(f"{server.url}{path}", timeout=10).text):
                safe(html, path)
        login_form = requests.Session()
        failed = login_form.post(f"{server.url}/login", timeout=10, data={
            "username": XSS_IMG + XSS_SCRIPT, "password": "x", "next": XSS_SCRIPT,
            "csrf_token": csrf_in(login_form.get(f"{server.url}/login", timeout=10).text)})
        assert failed.status_code == 401
        safe(failed.text, "the failed login form")
        # The websocket's fragments.
        live.wait_for(lambda t: stored["observed value"] in t and f'id="mode-{x_id}"' in t,
                      what="the observed value in a pushed mode region")
        live.wait_for(lambda t: stored["stack name"] in t and f'id="deployment-{x_id}"' in t,
                      what="the stack name in a pushed dashboard row")
        live.wait_for(lambda t: stored["reason"] in t and "<tr" in t, what="the reason in a pushed history row")
        assert "&lt;img" in "".join(live.messages)
        for text in live.messages:
            safe(text, "a websocket fragment")

        # The headers of every kind of answer.
        answers = [operator.get(f"{server.url}{p}", timeout=10) for p in
                   ("/", f"/deployments/{x_id}", "/login", "/api/deployments", "/api/nothing", "/static/rsgo.css",
                    "/healthz")] + [requests.get(f"{server.url}/", timeout=10, allow_redirects=False)]
        for answer in answers:
            csp = answer.headers["Content-Security-Policy"]
            directives = {d.strip().split()[0]: d.strip().split()[1:] for d in csp.split(";") if d.strip()}
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
            assert directives["frame-ancestors"] == ["'none'"] and directives["script-src"] == ["'self'"], csp
            assert directives["object-src"] == ["'none'"] and "base-uri" in directives, csp
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin",
                                                         "strict-origin-when-cross-origin")
            assert answer.headers["X-Frame-Options"] == "DENY"

        _in_chromium(server, operator_name, x_id, r_id, stack_name, observed, reason)
    finally:
        for container in x.containers.values():
            container.remove(force=True)


def websocket_open(page) -> None:
    """The page's websocket is open: its indicator left "connecting" (it may still be re-fetching its regions)."""
    expect(page.locator("#live-status")).to_have_attribute("data-state", re.compile(r"^(live|syncing)$"),
                                                           timeout=10_000)


def live(page) -> None:
    """The page's websocket is open and its regions are re-fetched: what is clicked now stays in place."""
    expect(page.locator("#live-status")).to_have_text("Live", timeout=10_000)


CSP_RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""


def _in_chromium(server, operator_name, x_id, r_id, stack_name, observed, reason):
    """Every page in real Chromium: no dialog, no injected element, no CSP violation (even while
    HTMX swaps fragments and the websocket pushes them)."""
    admin_name = create_user(server, "admin")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            dialogs, console, violations = [], [], []

            def watch(context):
                context.add_init_script(CSP_RECORDER)
                page = context.new_page()
                page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
                page.on("console", lambda message: console.append(message.text)
                        if "Content Security Policy" in message.text else None)
                return page

            def collect(page, where):
                assert page.locator('img[src="x"]').count() == 0, where
                scripts = "() => [...document.scripts].filter(s => s.textContent.includes('alert')).length"
                assert page.evaluate(scripts) == 0
                violations.extend(f"{where}: {v}" for v in page.evaluate("() => window.__csp"))

            def sign_in_as(page, name, password):
                page.goto(f"{server.url}/login")
                page.get_by_label("User name").fill(name)
                page.get_by_label("Password").fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{server.url}/")

            anonymous = browser.new_context()
            page = watch(anonymous)
            for path in ("/login", f"/login?next={quote(XSS_SCRIPT, safe='')}", "/setup?token=nothing"):
                page.goto(server.url + path)
                collect(page, path)
            page.goto(f"{server.url}/login")
            page.get_by_label("User name").fill(XSS_IMG + XSS_SCRIPT)
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
            collect(page, "failed login")
            anonymous.close()

            context = browser.new_context()
            page = watch(context)
            sign_in_as(page, operator_name, PASSWORD)
            # "Live", not only open: while syncing, the page re-fetches its regions, and the list's answer
            # would replace the confirmation form opened below (or the element htmx swaps it into).
            live(page)
            row = page.locator(f"#deployment-{x_id}")
            expect(row.get_by_role("link").first).to_have_text(stack_name)  # the payload is the name, as text
            expect(row).to_contain_text(observed)
            # An HTMX swap (the confirmation form) and a websocket push while the page is open.
            page.get_by_role("button", name=f"Change {stack_name} to Normal").click()
            expect(page.get_by_role("form", name=f"Confirm the change of {stack_name} to Normal")).to_be_visible()
            assert put_mode(server, r_id, "Migrating", server.headers, reason=reason).status_code == 200
            expect(page.locator(f"#deployment-{r_id}")).to_contain_text(reason, timeout=10_000)
            expect(page.locator(f"#deployment-{r_id} .mode")).to_contain_text("Migrating", timeout=10_000)
            collect(page, "dashboard")
            for path in (f"/deployments/{x_id}", f"/deployments/{r_id}", "/history",
                         f"/history?actor={quote(XSS_IMG, safe='')}", f"/deployments/{quote(XSS_IMG, safe='')}"):
                page.goto(server.url + path)
                if "?" not in path and "%3C" not in path:
                    websocket_open(page)
                collect(page, path)
            page.goto(f"{server.url}/deployments/{x_id}")
            live(page)  # the observer region's re-fetch is over: the check's answer is what is seen next
            page.get_by_role("button", name=f"Check the observer of {stack_name} now").click()
            expect(page.locator(f"#observer-{x_id}")).to_contain_text(observed)
            expect(page.locator(f"#history-rows-{x_id}")).to_contain_text(observed)
            collect(page, "detail page after check now")
            context.close()

            context = browser.new_context()
            page = watch(context)
            sign_in_as(page, admin_name, PASSWORD)
            for path in ("/admin/users", "/admin/tokens", "/admin/security"):
                page.goto(server.url + path)
                collect(page, path)
            page.goto(f"{server.url}/admin/security")
            expect(page.locator("table")).to_contain_text(XSS_IMG + XSS_SCRIPT)  # the failed login's user name
            collect(page, "security log")

            assert dialogs == [] and violations == [] and console == [], (dialogs, violations, console)

            # The recorder itself works: an inline script (what an injection would be) is reported.
            page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'alert(2)';"
                          " document.body.appendChild(s); }")
            wait_until(lambda: page.evaluate("() => window.__csp.length"), 5, message="the CSP recorder to fire")
            assert dialogs == []
            context.close()
        finally:
            browser.close()
