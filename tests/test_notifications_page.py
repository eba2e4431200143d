"""The Notifications part of Admin → Webhooks (README "Notifications") in Chromium against a real
``rsgo serve``: each entry with its masked URL and a "Send test" whose answer appears in place, sent by
Apprise to a receiver in the test, and logged as a test."""

from __future__ import annotations

from playwright.sync_api import expect, sync_playwright

from support import launch_chromium
from test_browser import sign_in
from test_notifications import TOKEN, Receiver


def test_send_test_of_a_notification_answers_in_place_and_the_url_stays_masked(make_server, tmp_path):
    chat, broken = Receiver(), Receiver([500])
    try:
        config = tmp_path / "rsgo.yml"
        config.write_text(f"notifications:\n  - name: chat\n    url: {chat.url('/chat/' + TOKEN)}\n"
                          f"  - name: broken\n    url: {broken.url('/broken')}\n")
        server = make_server(RSGO_CONFIG=str(config), admin_token=False).start()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page()
                errors = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"{server.url}/admin/webhooks")
                sign_in(page)
                expect(page).to_have_url(f"{server.url}/admin/webhooks")
                # The rows exist while the page is still parsed; its deferred scripts (htmx, which sends
                # the test) run later. A click before that does nothing.
                page.wait_for_load_state("load")
                expect(page.locator("tr.notification")).to_have_count(2)
                assert TOKEN not in page.content()

                page.get_by_role("button", name="Send a test message to chat").click()
                expect(page.locator("tr.notification", has_text="chat")).to_contain_text("✓ Delivered")
                [sent] = chat.messages
                assert sent["path"] == f"/chat/{TOKEN}" and sent["message"].startswith("🧪 A test from rsgo")

                page.get_by_role("button", name="Send a test message to broken").click()
                expect(page.locator("tr.notification", has_text="broken")).to_contain_text("✗ Not delivered")
                assert len(broken.messages) == 1  # a test is sent once, never retried

                page.reload()
                tests = page.locator("tr.notification-delivery").filter(has=page.locator(".test-flag"))
                expect(tests).to_have_count(2)
                expect(tests.filter(has_text="broken")).to_contain_text("failed")
                assert TOKEN not in page.content() and not errors, errors
            finally:
                browser.close()
    finally:
        chat.close()
        broken.close()
