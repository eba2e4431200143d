"""What `rsgo serve` logs (README "Start it", "Settings"): no scheduler chatter per job run, rsgo's own
INFO lines, the one-time setup link again every RSGO_SETUP_LINK_INTERVAL until it is used, and a missing
config file said as such. Real `rsgo serve` processes."""

from __future__ import annotations

import re

import requests

from support import wait_until

SCHEDULER_CHATTER = ("Running job", "executed successfully", "Added job", "Removed job", "Adding job tentatively")


def test_the_scheduler_logs_nothing_per_run_while_rsgo_logs_its_own_lines(tmp_path, make_server):
    flag = tmp_path / "flag"
    flag.write_text("off")
    config = tmp_path / "rsgo.yml"
    config.write_text(f"stacks:\n  quiet:\n    maintenanceObserver:\n      type: file\n      path: {flag}\n"
                      "      mode: content\n      maintenanceValue: 'on'\n      normalValue: 'off'\n"
                      "      pollingInterval: 1s\n")
    server = make_server(RSGO_CONFIG=str(config), RSGO_WINDOW_CHECK_INTERVAL="1s").start()

    seen = set()

    def checks() -> int:
        status = requests.get(f"{server.url}/api/deployments/quiet/observer", headers=server.headers, timeout=10)
        seen.add(status.json()["lastCheckAt"])
        return len(seen) >= 4

    wait_until(checks, 20, interval=0.2, message="four observer checks (and as many window checks)")
    log = server.log()

    chatter = [line for line in log.splitlines() if any(text in line for text in SCHEDULER_CHATTER)]
    assert chatter == []
    assert not re.search(r"^\S+ \S+ (INFO|DEBUG) apscheduler", log, flags=re.MULTILINE)
    assert f"INFO rsgo.runtime: config {config} loaded: 1 stacks, 1 observers, 0 problems" in log
    assert "INFO __main__: rsgo serving on http://127.0.0.1:" in log


def test_the_setup_link_is_printed_again_until_used_and_a_missing_config_file_is_named(tmp_path, make_server):
    server = make_server(admin_token=False, RSGO_ADMIN_PASSWORD="", RSGO_SETUP_LINK_INTERVAL="1s").start()
    link = re.compile(r"create the first admin at (http://\S+/setup\?token=(\S+)) \(works once\)")

    printed = wait_until(lambda: len(found := link.findall(server.log())) >= 3 and found, 20,
                         message="the setup link printed three times")
    assert len({token for _, token in printed}) == 1  # the same link each time: the first one stays valid
    missing = tmp_path / "data" / "rsgo.yml"
    assert f"INFO rsgo.runtime: config file not found: {missing} (no observers; see README 'Observers')" \
           in server.log()
    assert "loaded: 0 stacks" not in server.log()

    browser = requests.Session()
    form = browser.get(printed[0][0], timeout=10)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    created = browser.post(f"{server.url}/setup", timeout=30, allow_redirects=False, data={
        "token": printed[0][1], "username": "first", "password": "a long enough password",
        "password_again": "a long enough password", "csrf_token": csrf})
    assert created.status_code == 302, created.text

    used = "the setup link was used (or an admin was made otherwise): it is no longer printed"
    wait_until(lambda: used in server.log(), 10, message="the reminder to notice the link was used")
    requests.get(f"{server.url}/healthz", timeout=10)  # a later line, so the log has moved on
    after = server.log().split(used, 1)[1]
    assert not link.search(after)
