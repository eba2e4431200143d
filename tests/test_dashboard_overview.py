"""The dashboard of a real estate (README "The dashboard"): the counts bar, the state filter and the name
search in the URL, stacks that need a person first, the fold of stacks without containers, live pushes
under a filter, and the screenshots of 43 stacks in every mode, in real Chromium against one `rsgo serve`
and a real Docker engine (one small container per stack, made in parallel, shared by the module).

The engine is a private dockerd of this module's (tests/engines.py): the screenshots show exactly this
estate and the counts are exact, whatever else runs on the main engine at the same time.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from playwright.sync_api import expect

from conftest import QUICK
from engines import Engine
from support import ROOT, TEST_IMAGE, ServerProcess, put_mode, wait_until
from test_browser import Watched, browser  # noqa: F401 - the module's Chromium

WORDS = ("shop", "blog", "crm", "wiki", "mail", "billing", "search", "auth", "chat", "docs", "metrics", "grafana",
         "ci", "registry", "backup", "cms", "forum", "jobs", "ledger", "maps", "media", "notify", "orders", "pay",
         "portal", "queue", "reports", "sso", "status", "tickets")
# name -> what it is made into; every other word stays Normal.
ROLES = {"erp": "Maintenance", "hr": "Maintenance", "intranet": "Maintenance", "legacy": "Stopped",
         "archive": "Stopped", "catalog": "Migrating", "pricing": "Migrating", "importer": "Failed",
         "sync": "Failed", "crashy": "attention", "nightly": "overdue", "old-api": "gone", "test-env": "gone"}
# Normal: 30 words, crashy and the two gone ones; needs attention: crashy, the Failed ones and overdue nightly.
EXPECTED = {"all": 43, "normal": 33, "maintenance": 4, "migrating": 2, "failed": 2, "stopped": 2, "attention": 4,
            "overdue": 1}
STATES = ("all", "normal", "maintenance", "migrating", "failed", "stopped", "attention", "overdue")


@pytest.fixture(scope="module")
def estate(tmp_path_factory):
    """43 stacks of one container each in every mode, and a server that knows them: (server, {word: id})."""
    engine = Engine("/tmp/rsgo-overview", "rsgoovbr", "172.30.77.1/24")
    try:
        engine.start()
    except AssertionError as error:
        pytest.fail(str(error), pytrace=False)
    client = engine.client
    for leftover in client.api.containers(all=True, filters={"label": "rsgo.stack"}):  # of an aborted run
        client.api.remove_container(leftover["Id"], force=True)
    began = time.monotonic()
    words = list(WORDS) + list(ROLES)

    def create(word):
        command = ["sh", "-c", "exit 3"] if ROLES.get(word) == "attention" else QUICK
        created = client.api.create_container(TEST_IMAGE, command, name=f"{word}-app",
                                              labels={"rsgo.stack": word},
                                              host_config=client.api.create_host_config())
        client.api.start(created["Id"])

    directory = tmp_path_factory.mktemp("estate")
    config = directory / "rsgo.yml"
    # Only "nightly" is ever overdue: a reminder of a second for it, and the default (hours) for the rest.
    config.write_text("stacks:\n  nightly: {maintenanceReminder: 1s}\n")
    server = ServerProcess(directory / "data", DOCKER_HOST=engine.url, RSGO_CONFIG=str(config),
                           RSGO_OVERDUE_CHECK_INTERVAL="0.5s")
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(create, words))
        server.start()
        # Generous: 43 containers and a fresh server on a loaded 2-core CI machine (seen past 60 s at load 10).
        ids = wait_until(lambda: _discovered(server, words), 180, 0.3, "discovery of the estate")
        for word in (w for w, role in ROLES.items() if role == "gone"):
            client.api.remove_container(f"{word}-app", force=True)

        def change(word):
            role = ROLES[word]
            steps = {"Maintenance": ["Maintenance"], "Stopped": ["Stopped"], "Migrating": ["Migrating"],
                     "Failed": ["Migrating", "Failed"], "overdue": ["Maintenance"]}.get(role, [])
            for mode in steps:
                answer = put_mode(server, ids[word], mode, reason=f"estate: {role.lower()}")
                assert answer.status_code == 200, answer.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(change, ROLES))
        wait_until(lambda: _listed(server)[ids["nightly"]]["overdue"], 60, 0.2, "nightly to be overdue")
        # crashy's container exits 3 by itself: the order and the counts need it seen as needing attention.
        wait_until(lambda: all(_listed(server)[ids[w]]["needsAttention"] for w, role in ROLES.items()
                               if role == "attention"), 60, 0.2, "crashy to need attention")
        wait_until(lambda: all(_listed(server)[ids[w]]["containers"]["total"] == 0
                               for w, role in ROLES.items() if role == "gone"), 60, 0.2, "the gone containers")
        print(f"the estate took {time.monotonic() - began:.0f} s")
        yield server, ids
    finally:
        server.stop()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: client.api.remove_container(c["Id"], force=True),
                          client.api.containers(all=True, filters={"label": "rsgo.stack"})))
        if engine.started_here:
            engine.stop()


def _listed(server) -> dict[int, dict]:
    answer = requests.get(f"{server.url}/api/deployments", headers=server.headers, timeout=30)
    return {item["id"]: item for item in answer.json()["items"]}


def _discovered(server, words) -> dict[str, int] | None:
    by_name = {item["name"]: item for item in _listed(server).values()}
    if all(w in by_name and by_name[w]["containers"]["total"] == 1 for w in words):
        return {w: by_name[w]["id"] for w in words}
    return None


def _api_counts(server) -> dict[str, int]:
    """What the counts bar must say, from the API."""
    counts = Counter({state: 0 for state in STATES})
    for item in _listed(server).values():
        counts["all"] += 1
        counts[item["operationMode"].lower()] += 1
        counts["attention"] += bool(item["needsAttention"])
        counts["overdue"] += bool(item["overdue"])
    return dict(counts)


def _bar_counts(page) -> dict[str, int]:
    return {state: int(page.locator(f"#filter-{state} .count").inner_text()) for state in STATES}


def _shown_names(page) -> list[str]:
    """The stacks in the list's main table, top to bottom (the fold excluded)."""
    return page.locator("#deployment-list > table tr.deployment th[scope=row] a").all_inner_texts()


@pytest.fixture
def watched(browser):  # noqa: F811 - the module's Chromium
    pages = []

    def make(viewport=None) -> Watched:
        pages.append(Watched(browser, viewport))
        return pages[-1]

    yield make
    for page in pages:
        page.close()


def test_the_counts_bar_counts_every_state_and_each_count_filters_the_list(estate, watched):
    server, ids = estate
    watcher = watched()
    page = watcher.open(f"{server.url}/")
    counts = _bar_counts(page)
    assert counts == EXPECTED == _api_counts(server), counts

    page.locator("#filter-failed").click()
    expect(page).to_have_url(f"{server.url}/?state=failed")
    expect(page.locator("#filter-failed")).to_have_attribute("aria-current", "true")
    rows = page.locator("#deployment-list tr.deployment")
    expect(rows).to_have_count(counts["failed"])
    expect(page.locator(f"#deployment-{ids['importer']}")).to_be_visible()
    assert set(page.locator("#deployment-list tr.deployment .mode").all_inner_texts()) == {"🔴 Failed"}
    # The counts stay those of every stack, not of the rows shown.
    assert _bar_counts(page)["all"] == counts["all"]

    # The search: "/" from anywhere outside a field, typing filters as you go, the URL follows.
    page.locator("h1").click()
    page.keyboard.press("/")
    expect(page.locator("#dashboard-search")).to_be_focused()
    page.keyboard.type("importer")
    expect(page).to_have_url(f"{server.url}/?state=failed&q=importer", timeout=10_000)
    expect(rows).to_have_count(1)
    expect(page.locator(f"#deployment-{ids['importer']}")).to_be_visible()
    # A reload (or a bookmark) shows the same view.
    page.reload()
    expect(page.locator("#dashboard-search")).to_have_value("importer")
    expect(rows).to_have_count(1)
    # The current count again shows every state; the search stays.
    page.locator("#filter-failed").click()
    expect(page).to_have_url(f"{server.url}/?q=importer")
    expect(page.locator("#filter-all")).to_have_attribute("aria-current", "true")
    page.locator("#dashboard-search").fill("nothing-here")
    expect(page.locator("#no-matches")).to_contain_text("No stack named like “nothing-here”")
    page.go_back()  # the counts link added an entry; typing only replaced it
    expect(page).to_have_url(f"{server.url}/?state=failed&q=importer")

    # The environment filter keeps working with them; a state that does not exist is a clear 400.
    page.goto(f"{server.url}/?environment=local&state=maintenance")
    expect(page.locator("#filter-maintenance")).to_have_attribute("aria-current", "true")
    expect(rows).to_have_count(4)
    bad = page.goto(f"{server.url}/?state=broken")
    assert bad.status == 400
    expect(page.locator("body")).to_contain_text("there is no state 'broken' to filter by (known: normal,")
    unknown = page.goto(f"{server.url}/?environment=nowhere&state=failed")
    assert unknown.status == 404
    assert not watcher.errors, watcher.errors


def test_stacks_that_need_a_person_come_first_and_the_gone_ones_fold_away(estate, watched):
    server, ids = estate
    page = watched().open(f"{server.url}/")
    names = _shown_names(page)
    person = [w for w in ("crashy", "importer", "nightly", "sync")]
    assert names[:4] == person, names[:6]
    assert names[4:] == sorted(names[4:]), names
    gone = ["old-api", "test-env"]
    assert not set(gone) & set(names)

    fold = page.locator("#without-containers")
    expect(fold.locator("summary")).to_have_text("2 stacks without containers")
    expect(fold).not_to_have_attribute("open", "")
    expect(page.locator(f"#deployment-{ids['old-api']}")).to_be_hidden()
    fold.locator("summary").click()
    expect(page.locator(f"#deployment-{ids['old-api']}")).to_be_visible()
    expect(page.locator(f"#deployment-{ids['test-env']}")).to_contain_text("no containers")


def test_a_filtered_view_follows_live_changes_and_the_counts_update(estate, watched):
    server, ids = estate
    watcher = watched()
    filtered = watcher.open(f"{server.url}/?state=failed")
    everything = watched().open(f"{server.url}/")
    rows = filtered.locator("#deployment-list tr.deployment")
    expect(rows).to_have_count(2)
    try:
        # A stack leaves Failed: it leaves the Failed view, and every counts bar says so.
        assert put_mode(server, ids["sync"], "Normal", reason="fixed").status_code == 200
        expect(filtered.locator(f"#deployment-{ids['sync']}")).to_have_count(0, timeout=10_000)
        for page in (filtered, everything):
            expect(page.locator("#count-all-failed")).to_have_text("1", timeout=10_000)
            expect(page.locator("#count-all-normal")).to_have_text("34", timeout=10_000)
        # Another one fails: it appears in the Failed view; the unfiltered page keeps its rows in place.
        for mode in ("Migrating", "Failed"):
            assert put_mode(server, ids["shop"], mode, reason="live").status_code == 200
        expect(filtered.locator(f"#deployment-{ids['shop']}")).to_be_visible(timeout=10_000)
        expect(rows).to_have_count(2)
        expect(everything.locator("#count-all-failed")).to_have_text("2", timeout=10_000)
        expect(everything.locator(f"#deployment-{ids['shop']} .mode")).to_have_text("🔴 Failed")
        expect(filtered.locator("#filter-failed")).to_have_attribute("aria-current", "true")
        assert not watcher.errors, watcher.errors
    finally:  # the estate as the other tests expect it
        assert put_mode(server, ids["shop"], "Normal", reason="back").status_code == 200
        for mode in ("Migrating", "Failed"):
            assert put_mode(server, ids["sync"], mode, reason="again").status_code == 200
    wait_until(lambda: _bar_counts(everything) == EXPECTED, 10, 0.2, "the counts bar to be back")
    expect(rows).to_have_count(2, timeout=10_000)


@pytest.mark.parametrize("shot, viewport", [("dashboard-estate", {"width": 1280, "height": 900}),
                                            ("dashboard-estate-phone", {"width": 390, "height": 844})])
def test_screenshots_of_an_estate(estate, watched, shot, viewport):
    server, ids = estate
    watcher = watched(viewport)
    watcher.page.emulate_media(color_scheme="light")
    page = watcher.open(f"{server.url}/")
    expect(page.locator(f"#deployment-{ids['nightly']}")).to_contain_text("Overdue")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page is {width} px wide in a {viewport['width']} px viewport"
    page.screenshot(path=str(ROOT / "docs" / f"{shot}.png"), full_page=True)
    assert not watcher.errors, watcher.errors
