"""The live websocket (README "The dashboard") end to end: a real ``rsgo serve``, the real Docker engine and a real
websocket client per open "page". Each test subscribes the way a page does (``?topics=...``)
and checks the HTML fragments that arrive: their ids, their out-of-band swap markers, their
content, their escaping, that a page gets only its own regions and that a browser which
stopped reading never delays the others. One unit test checks the hub's drop rule directly.
"""

from __future__ import annotations

import base64
import fcntl
import os
import queue
import re
import socket
import struct
import termios
import threading
import time
import uuid
import weakref
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
import requests

from rsgo.events import EventBus
from rsgo.web.hub import Hub
from rsgo.web.live_push import LivePush
from support import LiveSocket, put_mode, wait_until


# A PID 1 whose SIGTERM trap takes ``seconds`` before exiting: stops that finish at staggered times.
def stops_after(seconds: int) -> list[str]:
    return ["sh", "-c", f"trap 'sleep {seconds}; exit 0' TERM; while :; do sleep 0.1; done"]


# -- pages: a signed-in websocket that reads, and one that stopped reading ---------------------

class HungPage:
    """A page that completed the websocket handshake and then never reads again, with a tiny
    receive buffer so that the server's sends to it really block."""

    def __init__(self, server, topics: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: a tiny window
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        browser = server.websocket_headers(browser_session(server))  # its cookie and origin
        signed_in = "".join(f"{line}\r\n" for line in browser)
        self.sock.sendall((f"GET /ws?topics={topics} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{signed_in}\r\n").encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing past the handshake is read
            byte = self.sock.recv(1)
            assert byte, f"the server closed the connection during the handshake: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head

    def unread_bytes(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self.sock, termios.FIONREAD, b"\0\0\0\0"))[0]

    def read_until_closed_by_server(self, timeout: float = 15) -> None:
        self.sock.settimeout(1)

        def ended():
            try:
                return self.sock.recv(1 << 16) == b""
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False

        wait_until(ended, timeout, interval=0, message="the server to end the hung page's connection")

    def close(self) -> None:
        self.sock.close()  # unread data pending: the kernel resets, so the server's blocked send fails


@pytest.fixture
def open_page(make_server):
    """Opens pages (set up after the server, so closed before it stops: open websockets would hold
    gunicorn's graceful shutdown)."""
    pages = []

    def open_(server, topics: str, hung: bool = False):
        page = HungPage(server, topics) if hung else LiveSocket(server, topics, session=browser_session(server))
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


# -- the server, its API and the fragments ---------------------------------------------------

_signed_in: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def browser_session(server) -> requests.Session:
    """The websocket needs a signed-in browser session: the admin's, signed in once per server."""
    if server not in _signed_in:
        _signed_in[server] = server.login()
    return _signed_in[server]


def deployment_of(server, stack_name: str, containers: int, timeout: float = 20) -> dict:
    def seen():
        response = requests.get(f"{server.url}/api/deployments/{stack_name}", headers=server.headers, timeout=10)
        if response.status_code == 200 and response.json()["containerCounts"]["total"] == containers:
            return response.json()
        return None

    return wait_until(seen, timeout, interval=0.1, message=f"discovery of {stack_name} with {containers} containers")


def history(server, stack_name: str) -> list[dict]:
    response = requests.get(f"{server.url}/api/deployments/{stack_name}/history", headers=server.headers,
                            timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["items"]


class _StartTags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def start_tag(html: str, element_id: str) -> tuple[str, dict] | None:
    """The tag name and attributes of the element with ``element_id`` in a fragment, or None."""
    parser = _StartTags()
    parser.feed(html)
    return next(((tag, attrs) for tag, attrs in parser.tags if attrs.get("id") == element_id), None)


def element(html: str, tag: str, element_id: str) -> str | None:
    """The markup of ``<tag id=element_id ...>...</tag>`` (the templates never nest the same tag)."""
    match = re.search(rf'<{tag}\b[^>]*\bid="{re.escape(element_id)}"[^>]*>.*?</{tag}>', html, re.S)
    return match.group(0) if match else None


def mode_shown(html: str, tag: str, element_id: str) -> str | None:
    """The mode in the badge of one region (the buttons name other modes, so look at the badge)."""
    region = element(html, tag, element_id)
    match = region and re.search(r'class="badge mode [^"]*" data-mode="([^"]+)"', region)
    return match.group(1) if match else None


def container_state(html: str, deployment_id: int, container_name: str) -> str | None:
    containers = element(html, "section", f"containers-{deployment_id}")
    row = containers and re.search(rf'<tr>\s*<td data-label="Container"><span [^>]*title="{re.escape(container_name)}"'
                                   r".*?</tr>", containers, re.S)
    state = row and re.search(r'<span class="state state-([a-z]+)[ "]', row.group(0))
    return state.group(1) if state else None


def progress_shown(html: str, deployment_id: int) -> str | None:
    progress = element(html, "section", f"progress-{deployment_id}")
    match = progress and re.search(r'<p class="progress-text" role="status"><strong>(.*?)</strong>', progress, re.S)
    return match.group(1) if match else None


def oob(html: str, element_id: str) -> str | None:
    found = start_tag(html, element_id)
    return found[1].get("hx-swap-oob") if found else None


# -- 1. what each event pushes, to whom --------------------------------------------------------

def test_a_mode_change_pushes_the_dashboard_row_the_detail_regions_and_the_audit_row(
        make_server, make_stack, open_page):
    stack = make_stack("live")
    stack.add("api")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    dashboard = open_page(server, "dashboard")
    detail = open_page(server, f"deployment:{deployment_id}")
    global_history = open_page(server, "history")
    reason = f"backup {uuid.uuid4().hex[:8]}"

    response = put_mode(server, stack.name, "Maintenance", reason=reason)

    assert response.status_code == 200, response.text
    assert not stack.is_running("api")
    # The dashboard: the deployment's row, replaced out of band, in the new mode, with the reason.
    # The mode's push can come before discovery has seen the container's stop; the stop's own push follows.
    row = dashboard.wait_for(lambda m: mode_shown(m, "tr", f"deployment-{deployment_id}") == "Maintenance"
                             and "0/1 running" in m, what="the deployment row in Maintenance, 0/1 running")
    assert f'<tr id="deployment-{deployment_id}"' in row
    assert start_tag(row, f"deployment-{deployment_id}")[0] == "tr"
    assert oob(row, f"deployment-{deployment_id}") == "true"
    assert reason in element(row, "tr", f"deployment-{deployment_id}")
    assert "0/1 running" in row
    # The deployment page: its mode, progress and containers regions, each swapped by id.
    regions = detail.wait_for(lambda m: mode_shown(m, "section", f"mode-{deployment_id}") == "Maintenance",
                                    what="the mode region in Maintenance")
    for region in ("mode", "progress", "containers"):
        assert f'id="{region}-{deployment_id}"' in regions, region
        assert oob(regions, f"{region}-{deployment_id}") == "true", region
    assert reason in element(regions, "section", f"mode-{deployment_id}")
    assert progress_shown(regions, deployment_id) == "1 of 1 stopped"
    assert container_state(regions, deployment_id, stack.container_name("api")) == "exited"
    # The global history: the new audit row, prepended to the table.
    entry = next(e for e in history(server, stack.name) if e["outcome"] == "succeeded")
    assert entry["reason"] == reason and entry["newMode"] == "Maintenance"
    rows = global_history.wait_for(lambda m: f'id="audit-{entry["id"]}"' in m, what=f"audit row {entry['id']}")
    assert rows.lstrip().startswith('<tbody hx-swap-oob="afterbegin:#history-rows-all">')
    audit_row = element(rows, "tr", f"audit-{entry['id']}")
    assert reason in audit_row and "Normal → Maintenance" in audit_row and stack.name in audit_row
    # The deployment page's own history table gets the same row.
    own_rows = detail.wait_for(lambda m: f'id="audit-{entry["id"]}"' in m, what="the audit row")
    assert own_rows.lstrip().startswith(f'<tbody hx-swap-oob="afterbegin:#history-rows-{deployment_id}">')


def test_transition_progress_is_pushed_as_each_container_stops(make_server, make_stack, open_page):
    stack = make_stack("prog")
    for short, seconds in (("a", 1), ("b", 2), ("c", 3)):  # each stop lands in a push of its own
        stack.add(short, command=stops_after(seconds))
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 3)["id"]
    detail = open_page(server, f"deployment:{deployment_id}")
    dashboard = open_page(server, "dashboard")

    response = put_mode(server, stack.name, "Maintenance", reason="progress", wait=False)

    assert response.status_code == 202, response.text
    # The last push: the transition has finished, all three stopped, the mode is Maintenance.
    last, _, final = detail.wait_for_arrival(
        lambda m: mode_shown(m, "section", f"mode-{deployment_id}") == "Maintenance", timeout=30,
        what="the mode region in Maintenance")
    assert progress_shown(final, deployment_id) == "3 of 3 stopped"
    assert "Last change: Normal → Maintenance" in element(final, "section", f"progress-{deployment_id}")
    shown = [progress_shown(text, deployment_id) for text in detail.texts[:last + 1]]
    counts = [int(text.split(" of ")[0]) for text in shown if text]
    assert counts == sorted(counts), f"progress went backwards: {shown}"
    assert {1, 2} <= set(counts), f"no intermediate count was pushed: {shown}"
    # Each intermediate push also shows the running transition and its per-container table.
    intermediate = next(t for t in detail.texts if progress_shown(t, deployment_id) == "1 of 3 stopped")
    progress = element(intermediate, "section", f"progress-{deployment_id}")
    assert "Changing to Maintenance" in progress and '<progress value="1" max="3"' in progress
    assert progress.count('class="result-stopped"') == 1 and progress.count('class="result-pending"') == 2
    # The dashboard row says so too.
    dashboard.wait_for(lambda m: re.search(rf'id="deployment-{deployment_id}".*Changing to Maintenance: [12] of 3 '
                                           r"stopped", m, re.S) is not None,
                       what="an intermediate count in the dashboard row")


def test_a_container_stopped_outside_rsgo_is_pushed_from_the_docker_events(make_server, make_stack, open_page):
    stack = make_stack("ext")
    stack.add("api")
    stack.add("worker")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 2)["id"]
    detail = open_page(server, f"deployment:{deployment_id}")
    dashboard = open_page(server, "dashboard")
    worker = stack.container_name("worker")

    stack.containers["worker"].stop(timeout=10)  # the Docker SDK, not rsgo

    # It exits 0 on SIGTERM, yet it is a service stopped by hand (rsgo saw the stop), not a finished job:
    # "exited" and a reason for attention, not "completed".
    regions = detail.wait_for(lambda m: container_state(m, deployment_id, worker) == "exited",
                              what=f"{worker} exited in the containers region")
    assert "attention-flag" in re.search(rf'title="{re.escape(worker)}".*?</tr>', regions, re.S).group(0)
    assert oob(regions, f"containers-{deployment_id}") == "true"
    assert container_state(regions, deployment_id, stack.container_name("api")) == "running"
    assert mode_shown(regions, "section", f"mode-{deployment_id}") == "Normal"
    row = dashboard.wait_for(
        lambda m: "1/2 running" in (element(m, "tr", f"deployment-{deployment_id}") or ""),
        what="the dashboard row with 1/2 running")
    assert oob(row, f"deployment-{deployment_id}") == "true"
    assert mode_shown(row, "tr", f"deployment-{deployment_id}") == "Normal"


def test_a_new_stack_is_appended_to_the_dashboard(make_server, make_stack, open_page):
    server = make_server().start()
    dashboard = open_page(server, "dashboard")
    stack = make_stack("new")

    stack.add("web")

    deployment_id = deployment_of(server, stack.name, 1)["id"]
    slot = dashboard.wait_for(lambda m: f'id="slot-{deployment_id}"' in m, what=f"slot-{deployment_id}")
    # Into its environment's group on the dashboard: before that group's end marker.
    assert slot.lstrip().startswith(f'<tbody id="slot-{deployment_id}" hx-swap-oob="beforebegin:#env-end-local">')
    row = element(slot, "tr", f"deployment-{deployment_id}")
    assert row is not None and stack.name in row
    assert oob(slot, f"deployment-{deployment_id}") is None, "the row inside the slot must not swap on its own"
    assert f'id="mode-change-{deployment_id}"' in slot


def test_a_page_receives_only_the_regions_it_has(make_server, make_stack, open_page):
    stack = make_stack("mine")
    stack.add("api")
    other = make_stack("other")
    other.add("api")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    other_id = deployment_of(server, other.name, 1)["id"]
    dashboard = open_page(server, "dashboard")
    global_history = open_page(server, "history")
    other_detail = open_page(server, f"deployment:{other_id}")

    assert put_mode(server, stack.name, "Maintenance", reason="isolation").status_code == 200
    # Later pushes on each topic: a page that was to get anything earlier has it by then (one
    # push thread, FIFO queues).
    assert put_mode(server, stack.name, "Normal", reason="isolation done").status_code == 200
    assert put_mode(server, other.name, "Normal", reason="other noop").status_code == 200
    dashboard.wait_for(lambda m: mode_shown(m, "tr", f"deployment-{deployment_id}") == "Normal"
                       and "isolation done" in m, what="the row back in Normal")
    global_history.wait_for(lambda m: "other noop" in m, what="the noop's audit row")
    other_detail.wait_for(lambda m: "other noop" in m, what="the noop's audit row")

    for text in dashboard.texts:
        assert "<section" not in text, text[:300]  # no region of a deployment page
        assert "history-rows" not in text and 'id="audit-' not in text, text[:300]
    for text in global_history.texts:
        assert text.lstrip().startswith('<tbody hx-swap-oob="afterbegin:#history-rows-all">'), text[:300]
        assert 'id="deployment-' not in text and 'id="mode-' not in text, text[:300]
    for text in other_detail.texts:
        assert not re.search(rf'id="[a-z-]+-{deployment_id}"', text) and stack.name not in text, text[:300]
        assert 'id="deployment-' not in text and "history-rows-all" not in text, text[:300]


# -- 2. escaping ---------------------------------------------------------------------------------

def test_a_reason_with_markup_arrives_escaped_in_every_fragment(make_server, make_stack, open_page):
    stack = make_stack("xss")
    stack.add("api")
    server = make_server().start()
    deployment_id = deployment_of(server, stack.name, 1)["id"]
    pages = [open_page(server, topics) for topics in ("dashboard", f"deployment:{deployment_id}", "history")]
    reason = "<img src=x onerror=alert(1)>"

    assert put_mode(server, stack.name, "Migrating", reason=reason).status_code == 200

    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    # The row; the mode region and the audit row; the audit row.
    for page, expected in zip(pages, (1, 2, 1), strict=True):
        wait_until(lambda page=page, expected=expected: sum(escaped in t for t in page.texts) >= expected,
                   timeout=15, message=f"{expected} escaped fragment(s) on {page.topics}")
    for page in pages:
        for text in page.texts:
            assert "<img" not in text and "onerror=alert(1)>" not in text, text


# -- 3. a hung browser ---------------------------------------------------------------------------

def _burst_at_least(text: str, number: int) -> bool:
    """The fragment shows burst change ``number`` or a newer one (the pusher coalesces a burst into its latest
    state)."""
    found = [int(n) for n in re.findall(r"burst-(\d{4})-", text)]
    return bool(found) and max(found) >= number


def test_a_client_that_stopped_reading_delays_no_other(make_server, make_stack, open_page):
    stack = make_stack("hung")
    stack.add("api")
    for index in range(12):  # never started: they only make every containers region bigger
        stack.add(f"job{index:02d}", running=False)
    # Room for exactly the five pages below: the newcomer at the end gets in only once the hung page's
    # connection has really ended (a thread left blocked in its send would keep its slot).
    server = make_server(RSGO_THREADS="6", RSGO_MAX_LIVE_CONNECTIONS="5").start()
    deployment_id = deployment_of(server, stack.name, 13)["id"]
    all_topics = f"dashboard,deployment:{deployment_id},history"
    hung = open_page(server, all_topics, hung=True)
    readers = [open_page(server, topics) for topics in
               ("dashboard", f"deployment:{deployment_id}", "history", all_topics)]
    # One change everyone sees first: every page is registered with the hub from here on.
    assert put_mode(server, stack.name, "Migrating", reason="warm-up").status_code == 200
    for page in readers:
        page.wait_for(lambda m: "warm-up" in m, what="the warm-up push")
    marks = [len(page.messages) for page in readers]

    # Many changes with big fragments (Normal <-> Migrating needs no Docker action), until the server
    # gives up on the hung page: its socket is full and its queue overflowed.
    returned: list[float] = []
    padding = "x" * 450
    deadline = time.monotonic() + 90  # a guard: about 200 changes take 5-20 s, depending on the load
    dropped_at = None
    paced_from = marks[-1]
    while dropped_at is None or len(returned) < dropped_at + 20:
        assert time.monotonic() < deadline, f"the hung page was not dropped after {len(returned)} changes"
        mode = "Normal" if len(returned) % 2 == 0 else "Migrating"
        response = put_mode(server, stack.name, mode, reason=f"burst-{len(returned):04d}-{padding}")
        assert response.status_code == 200, response.text
        returned.append(time.monotonic())
        # Each change waits for the page with every topic to have it: what is measured is whether the hung
        # page holds anyone up, not how fast this test parses (changes made faster than it reads them
        # would pile up in its own socket). A pusher held up by the hung page fails this wait.
        latest = len(returned) - 1
        paced_from = readers[-1].wait_for_arrival(
            lambda text, number=latest: _burst_at_least(text, number), timeout=10,
            start=paced_from, what=f"burst-{latest:04d} while the hung page is connected")[0]
        if dropped_at is None and "dropping a live client that stopped reading" in server.log():
            dropped_at = len(returned)

    # The hung page is stuck: a full, tiny receive buffer, while each reader got far more.
    assert 0 < hung.unread_bytes() <= 4096, hung.unread_bytes()
    assert sum(len(text) for text in readers[-1].texts) > 100 * 4096
    for page, mark in zip(readers, marks, strict=True):
        latencies = []
        for number, put_returned in enumerate(returned):
            _, arrived, _ = page.wait_for_arrival(lambda text, number=number: _burst_at_least(text, number),
                                                  timeout=10, start=mark, what=f"burst-{number:04d}")
            latencies.append(max(0.0, arrived - put_returned))
        worst = max(latencies)
        # A pusher held up by the hung page would stall every reader until its send times out (30 s,
        # rsgo/web/ws.py); 5 s leaves a loaded CI machine room and still tells the two apart. How fast
        # pushes are is the fan-out benchmark's business.
        assert worst < 5, (f"{page.topics}: a fragment came {worst:.3f}s after its change "
                             f"(median {sorted(latencies)[len(latencies) // 2]:.3f}s)")
    # Dropping the hung page also ends its connection, which frees its thread and its slot: a new page
    # takes them (a thread left blocked in the send would keep the slot: 503) and the API still answers.
    newcomer = open_page(server, all_topics)
    try:
        response = put_mode(server, stack.name, "Normal" if len(returned) % 2 == 0 else "Migrating",
                       reason="after the drop", timeout=10)
    except requests.Timeout:
        pytest.fail("no request thread is free: the dropped page's thread is still blocked sending to it")
    assert response.status_code == 200, response.text
    for page in [*readers, newcomer]:
        page.wait_for(lambda m: "after the drop" in m, timeout=15, what="a push after the drop")
    # The dropped page, reading again, finds its connection ended (a browser then reconnects and re-fetches).
    hung.read_until_closed_by_server()


def test_the_hub_drops_a_client_whose_queue_is_full_and_never_blocks():
    hub = Hub(max_pending=5)
    hung = hub.register({"dashboard"})  # never reads
    reader = hub.register({"dashboard"})
    bystander = hub.register({"history"})
    closed = []
    for client, name in ((hung, "hung"), (reader, "reader"), (bystander, "bystander")):
        client.on_drop = lambda name=name: closed.append(name)
    received = []

    # "Never blocks" is the logic below (a full queue drops its client instead of waiting on it; a publish
    # that waited would hang here until pytest's timeout), not a wall-clock bound on this in-process unit.
    for number in range(2000):
        hub.publish("dashboard", f"fragment {number}")
        while True:  # the reading client keeps up
            try:
                received.append(reader.messages.get_nowait())
            except queue.Empty:
                break
        if number == 4:
            assert hung.alive and hung.messages.full() and hub.client_count == 3

    assert not hung.alive, "the client with a full queue was kept"
    assert closed == ["hung"], "a dropped client's connection is closed, once; no other"
    assert hub.client_count == 2
    assert hung.messages.qsize() == 5  # nothing more was queued for it after the drop
    assert received == [f"fragment {n}" for n in range(2000)]
    assert bystander.alive and bystander.messages.empty()
    # A second full client, dropped while another thread is publishing too: no publish waits on it.
    stuck = hub.register({"dashboard"})
    for number in range(5):
        stuck.messages.put_nowait(f"backlog {number}")
    publishers = [threading.Thread(target=lambda: [hub.publish("dashboard", "x") for _ in range(500)])
                  for _ in range(4)]
    for thread in publishers:
        thread.start()
    for thread in publishers:
        thread.join(timeout=30)  # a deadline for the wait only: a blocked publisher would still be alive
    assert not any(thread.is_alive() for thread in publishers)
    assert not stuck.alive and hub.client_count == 1  # reader was not drained here: dropped too
    assert bystander.alive



def test_a_region_no_open_page_shows_is_not_rendered():
    """Rendering holds the GIL that a mode change's own request waits for: a topic's fragment is rendered
    for each audience with an open page on it, and for none other."""
    hub = Hub()
    push = LivePush(None, SimpleNamespace(hub=hub, bus=EventBus()))
    rendered = []

    def render(can_operate: bool) -> str:
        rendered.append(can_operate)
        return f"<p>{'operator' if can_operate else 'viewer'}</p>"

    try:
        push._publish("dashboard", render)
        push._send()
        assert rendered == []
        viewer = hub.register({"dashboard|read"})
        push._publish("dashboard", render)
        push._publish("deployment:1", render)
        push._send()
        assert rendered == [False] and viewer.messages.get_nowait() == "<p>viewer</p>"
        operator = hub.register({"dashboard|operate", "deployment:1|operate"})
        push._publish("dashboard", render)
        push._publish("deployment:1", render)
        assert operator.messages.empty(), "sent before the batch's end"
        push._send()
        assert rendered == [False, True, False, True]
        assert [operator.messages.get_nowait() for _ in range(2)] == ["<p>operator</p>"] * 2
        assert viewer.messages.get_nowait() == "<p>viewer</p>" and viewer.messages.empty()
    finally:
        push.close()


def test_no_context_is_built_for_a_dashboard_or_page_nobody_has_open(monkeypatch):
    """A discovered, forgotten or upgraded stack and an engine's new state read nothing (no deployment,
    no dashboard item, no group, no detail) while no page shows them; once a dashboard is open they do."""
    from rsgo.web import live_push

    asked = []
    monkeypatch.setattr(live_push, "Deployment", SimpleNamespace(
        id=None, get_or_none=lambda *_: asked.append("deployment")))
    for name in ("dashboard_item_for", "environment_group", "detail"):
        monkeypatch.setattr(live_push.page_context, name,
                            lambda *_, name=name: asked.append(name))
    hub = Hub()
    push = LivePush(None, SimpleNamespace(hub=hub, bus=EventBus()))
    try:
        push._push_new_deployment(1)
        push._push_environment("local")
        push._push_upgrade(1, True)
        push._push_forgotten(1)
        push._send()
        assert asked == []
        hub.register({"dashboard|read"})
        push._push_environment("local")
        assert asked == ["environment_group"]
    finally:
        push.close()
