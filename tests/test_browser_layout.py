"""Honest states and layout in real Chromium against a real `rsgo serve` and a real Docker engine
(README "The dashboard"): the "Changing X to Y…" line turns into the outcome, the progress bar
counts what its text counts, a finished one-shot job is "completed", and no page is ever wider than
the window, at 1280 px and on a 390 px phone, whatever the names and reasons."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from conftest import RUN_ID, RUN_LABEL, SLOW_2S, Stack
from support import ROOT, TEST_IMAGE, ServerProcess, launch_chromium, put_mode, wait_until
from test_browser import Watched

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LONG_STACK = "long" + uuid.uuid4().hex[:6] + "x" * 4990  # 5,000 characters, no space
LONG_REASON = "r" * 500  # the longest reason the API takes, no space


def _stack(docker_client, prefix: str, **commands) -> Stack:
    stack = Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}")
    for short, command in commands.items():
        stack.add(short, command=command, labels={"rsgo.maintenance": "ignore"} if short == "db" else None)
    return stack


def _detail(server, ref) -> dict | None:
    answer = requests.get(f"{server.url}/api/deployments/{ref}", headers=server.headers, timeout=10)
    return answer.json() if answer.status_code == 200 else None


def _id_of(server, name: str) -> int | None:
    """By the list: a 5,000-character name does not fit in a request line."""
    answer = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=10)
    return next((item["id"] for item in answer.json()["items"] if item["name"] == name), None)


def _states(server, ref) -> dict:
    return {c["name"]: c["state"] for c in (_detail(server, ref) or {}).get("containers", [])}


@pytest.fixture(scope="module")
def estate(docker_client, tmp_path_factory):
    """One server for the module and its stacks: ``shop`` (an ignored db, api, worker), ``slow`` (an
    ignored db and two containers that take 2 s to stop), ``frail`` (api, worker), ``jobok`` (api and a
    job that exits 0), ``jobbad`` (api and a job that exits 3), and a stack with a 5,000-character name
    whose api container has a 200-character name."""
    root = tmp_path_factory.mktemp("layout")
    stacks = {"shop": _stack(docker_client, "shop", db=None, api=None, worker=None),
              "slow": _stack(docker_client, "slow", db=None, c0=SLOW_2S, c1=SLOW_2S),
              "frail": _stack(docker_client, "frail", api=None, worker=None),
              "jobok": _stack(docker_client, "jobok", api=None, migrate=["true"]),
              "jobbad": _stack(docker_client, "jobbad", api=None, importer=["sh", "-c", "exit 3"])}
    long_container = f"api{uuid.uuid4().hex[:6]}-" + "c" * 190
    created = docker_client.api.create_container(
        TEST_IMAGE, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"], name=long_container,
        labels={"rsgo.stack": LONG_STACK, RUN_LABEL: RUN_ID}, host_config=docker_client.api.create_host_config())
    docker_client.api.start(created["Id"])
    server = ServerProcess(root / "data", log_path=Path(f"/tmp/layout-{RUN_ID}.log")).start()
    try:
        ids = {}
        for key, stack in stacks.items():
            wait_until(lambda s=stack: len(_states(server, s.name)) == len(s.containers), 20,
                       message=f"discovery of {stack.name}")
            ids[key] = _detail(server, stack.name)["id"]
        for key, job in (("jobok", "migrate"), ("jobbad", "importer")):
            name = stacks[key].container_name(job)
            wait_until(lambda k=key, n=name: _states(server, stacks[k].name).get(n) == "exited", 20,
                       message=f"{name} to have exited")
        long_id = wait_until(lambda: _id_of(server, LONG_STACK), 20, message="discovery of the long-named stack")
        # Its history and mode line carry the longest reason; a window carries a long name.
        assert put_mode(server, long_id, "Maintenance", reason=LONG_REASON).status_code == 200
        window = requests.post(f"{server.url}/api/deployments/{long_id}/windows", headers=server.headers, timeout=10,
                               json={"name": "w" * 300, "reason": LONG_REASON, "start": "2030-01-01T00:00:00+00:00",
                                     "end": "2030-01-01T02:00:00+00:00"})
        assert window.status_code == 201, window.text
        yield {"server": server, "stacks": stacks, "ids": ids, "long_id": long_id, "long_container": long_container}
    finally:
        server.stop()
        for name in [stack.name for stack in stacks.values()] + [LONG_STACK]:
            for container in docker_client.containers.list(all=True, filters={"label": f"rsgo.stack={name}"}):
                container.remove(force=True)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def watched(browser):
    pages = []

    def make(viewport=None) -> Watched:
        pages.append(Watched(browser, viewport or DESKTOP))
        return pages[-1]

    yield make
    for page in pages:
        page.close()


def _confirm(page, name: str, target: str, reason: str):
    page.get_by_role("button", name=f"Change {name} to {target}").click()
    form = page.get_by_role("form", name=f"Confirm the change of {name} to {target}")
    form.get_by_label("Reason").fill(reason)
    form.get_by_role("button", name=f"Change to {target}").click()


# -- the line under a row turns into the outcome ----------------------------------------------------------

def test_the_changing_line_turns_into_the_outcome_on_the_dashboard(estate, watched):
    server, stack, deployment_id = estate["server"], estate["stacks"]["shop"], estate["ids"]["shop"]
    page = watched().open(server.url + "/")
    _confirm(page, stack.name, "Maintenance", "nightly backup")

    # Where it said "Changing … to Maintenance…", the outcome, and nothing else.
    expect(page.locator(f"#mode-change-{deployment_id}")).to_have_text("✓ Maintenance — 2 of 2 stopped",
                                                                       timeout=15_000)
    expect(page.locator(f"#deployment-{deployment_id} .mode")).to_have_text("🔧 Maintenance")


def test_the_changing_line_turns_into_the_outcome_on_the_detail_page_on_a_phone(estate, watched):
    server, stack, deployment_id = estate["server"], estate["stacks"]["shop"], estate["ids"]["shop"]
    if _detail(server, stack.name)["operationMode"] != "Maintenance":
        assert put_mode(server, stack.name, "Maintenance", reason="set up").status_code == 200
    page = watched(PHONE).open(f"{server.url}/deployments/{deployment_id}")
    _confirm(page, stack.name, "Normal", "backup done")

    expect(page.locator(f"#mode-change-{deployment_id}")).to_have_text("✓ Normal — 2 of 2 started", timeout=15_000)


def test_a_failed_change_says_so_and_links_to_its_details(estate, watched, docker_client):
    server, stack, deployment_id = estate["server"], estate["stacks"]["frail"], estate["ids"]["frail"]
    assert put_mode(server, stack.name, "Maintenance", reason="before the break").status_code == 200
    # The stopped worker is replaced by one that cannot start, under the same name: Normal fails.
    stack.containers["worker"].remove(force=True)
    stack.add("worker", command=["/does/not/exist"], running=False)
    page = watched().open(f"{server.url}/deployments/{deployment_id}")
    _confirm(page, stack.name, "Normal", "back to work")

    status = page.locator(f"#mode-change-{deployment_id}")
    expect(status).to_have_text("✗ Failed — see details", timeout=15_000)
    link = status.get_by_role("link", name="✗ Failed — see details")
    expect(link).to_have_attribute("href", f"/deployments/{deployment_id}#progress-{deployment_id}")
    link.click()
    expect(page.locator(f"#progress-{deployment_id}")).to_contain_text("/does/not/exist")
    expect(page.locator(f"#mode-{deployment_id} .mode")).to_have_text("🔴 Failed")
    # For the README: a failure as the person who caused it sees it (the details it links to).
    page.locator(f"#progress-{deployment_id}").screenshot(path=str(ROOT / "docs" / "deployment-failed.png"))


def test_the_line_reaches_the_outcome_when_the_end_is_pushed_while_it_is_asking(estate, watched):
    """The line's first question is held until the end has reached the page, then answered with what it
    said while the change ran: the question the end's push queued must still be asked. (It was lost when
    the running answer replaced the whole line: htmx drops a request queued on a replaced element, so the
    line said "Changing…" for good; a loaded CI machine hit that once.)"""
    server, stack, deployment_id = estate["server"], estate["stacks"]["slow"], estate["ids"]["slow"]
    if _detail(server, stack.name)["operationMode"] != "Normal":
        assert put_mode(server, stack.name, "Normal", reason="set up").status_code == 200
    page = watched().open(f"{server.url}/deployments/{deployment_id}")
    held = []

    def hold_the_first(route):
        if held:
            route.continue_()
        else:
            held.append((route, route.fetch()))  # answered now, while both containers take 2 s to stop

    page.route(lambda url: "transition=" in url, hold_the_first)
    _confirm(page, stack.name, "Maintenance", "a held answer")
    expect(page.locator(f"#mode-{deployment_id} .mode")).to_have_text("🔧 Maintenance", timeout=15_000)
    assert len(held) == 1
    route, answer = held[0]
    assert "Changing" in answer.text(), answer.text()
    route.fulfill(response=answer)

    line = page.locator(f"#mode-change-{deployment_id}")
    expect(line).to_have_text("✓ Maintenance — 2 of 2 stopped", timeout=15_000)
    # The outcome replaced the whole line (not put inside it): one line, which asks nothing any more.
    expect(line.locator(".change-status")).to_have_count(1)
    expect(line.locator("[hx-trigger]")).to_have_count(0)
    assert put_mode(server, stack.name, "Normal", reason="clean up").status_code == 200


def test_the_progress_bar_counts_what_its_text_counts(estate, watched):
    server, stack, deployment_id = estate["server"], estate["stacks"]["slow"], estate["ids"]["slow"]
    page = watched().open(f"{server.url}/deployments/{deployment_id}")
    _confirm(page, stack.name, "Maintenance", "watch the bar")

    # Read text and bar in one go while both containers take their 2 s to stop (the db is ignored).
    seen = page.wait_for_function("""id => {
        const region = document.getElementById(`progress-${id}`);
        const bar = region && region.querySelector("progress");
        const text = region && region.querySelector(".progress-text strong");
        return bar && text && text.textContent.includes("0 of 2 stopped") && [bar.value, bar.max];
    }""", arg=deployment_id, timeout=10_000).json_value()
    assert seen == [0, 2], f"the bar shows {seen[0]} of {seen[1]} while the text says 0 of 2 stopped"
    expect(page.locator(f"#progress-{deployment_id} .progress-text")).to_contain_text("2 of 2 stopped",
                                                                                       timeout=15_000)


# -- a finished job is completed, a crash needs attention ------------------------------------------------

def test_a_job_that_exited_0_is_completed_and_one_that_exited_3_needs_attention(estate, watched):
    server, stacks, ids = estate["server"], estate["stacks"], estate["ids"]
    page = watched().open(server.url + "/")
    done_row, crashed_row = page.locator(f"#deployment-{ids['jobok']}"), page.locator(f"#deployment-{ids['jobbad']}")
    expect(done_row.locator(".health")).to_have_text("✔ Healthy")
    expect(done_row).not_to_contain_text("Needs attention")
    expect(crashed_row).to_contain_text("Needs attention")
    expect(crashed_row).to_contain_text(f"{stacks['jobbad'].container_name('importer')} exited with code 3")

    page = watched().open(f"{server.url}/deployments/{ids['jobok']}")
    job = page.locator(f"#containers-{ids['jobok']} tr", has_text=stacks["jobok"].container_name("migrate"))
    expect(job.locator(".state")).to_have_text("✓ completed (exit 0)")
    expect(page.locator(f"#mode-{ids['jobok']}")).not_to_contain_text("Needs attention")
    detail = _detail(server, stacks["jobbad"].name)
    crashed = next(c for c in detail["containers"] if c["name"].endswith("importer"))
    assert (crashed["exitCode"], crashed["completed"], detail["needsAttention"]) == (3, False, True)


# -- no page is wider than the window --------------------------------------------------------------------

_TOO_WIDE = """() => {
    const wide = [];
    const page = document.documentElement;
    if (page.scrollWidth > window.innerWidth) wide.push(`the page: ${page.scrollWidth} px`);
    for (const element of document.querySelectorAll("main table, main section, main form")) {
        if (element.scrollWidth > element.clientWidth + 1) {
            wide.push(`${element.tagName} #${element.id}: ${element.scrollWidth} > ${element.clientWidth}`);
        }
    }
    return wide;
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_page_is_wider_than_the_window_whatever_the_names(estate, watched, viewport):
    server, long_id = estate["server"], estate["long_id"]
    shot = watched(viewport)
    for path, shows in (("/", f"#deployment-{long_id}"), (f"/deployments/{long_id}", f"#windows-{long_id} table"),
                        ("/history", f"#history-rows-all a[title='{LONG_STACK}']")):
        page = shot.open(server.url + path)
        expect(page.locator(shows).first).to_be_visible()
        assert page.evaluate(_TOO_WIDE) == [], f"{path} at {viewport['width']} px"
    # The long name is cut to a few lines; all of it is in its title, and focus shows it whole.
    page = shot.open(f"{server.url}/deployments/{long_id}")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_attribute("title", LONG_STACK)
    cut = heading.bounding_box()["height"]
    assert cut < 200, f"the name takes {cut} px"
    heading.focus()
    wait_until(lambda: heading.bounding_box()["height"] > 2 * cut, 5, message="the focused name to show whole")
    containers = page.locator(f"#containers-{long_id}")
    expect(containers).to_contain_text(estate["long_container"])
    expect(page.locator(f"#mode-{long_id}")).to_contain_text(LONG_REASON)
    assert not shot.errors, shot.errors
