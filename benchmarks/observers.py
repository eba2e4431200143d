"""300 observers polling every 1 s: ≥ 99 % of the scheduled checks on time (≤ 0.5 s late), at most
10 % of one core (README "Performance").

rsgo gets nothing added for this: its observers are ``http`` observers (300 stacks declared in the
config file, no containers needed) whose URLs point at a small asyncio HTTP server in this script.
That server records when each observer's request arrived; a check's lateness is the gap since the
same observer's previous check minus the 1 s interval. The on-time share is counted per *scheduled*
check: the checks that came at most 0.5 s late, divided by the checks the window should have held
(observers × seconds / interval), so a skipped check counts as late (its successor's gap is 2 s) and
as missing too, and an observer that stopped checking counts all its missing checks. The spread of
the lateness (median, IQR, min-max) is reported with it. The source always answers "0" (normal), so
no check ever changes a mode. A "failed" line in rsgo's log fails the figures.

CPU: utime + stime of the gunicorn master and worker from /proc over the measured window, as a
share of one core. Measured three times, one server each: with the 300 http observers; with 300
``file`` observers (a flag file reading "0": the cheapest source, so what is left is rsgo's own
work per check); and with the same 300 stacks declared but no observers (what the process costs
anyway, on a shared engine mostly following other stacks' container events), for half the window.
The figures are the whole process, as the target says; each note gives the observers' own share
(the difference to the server without observers) too. Each window is the steady state: it begins
once the start-up work is done (the first checks change every observer's status, and the live push
renders those 300 rows and pages once), when the CPU of 3 s slices has fallen from its start-up
level and stays; the slices and how long that took are in the result's details.

Baseline, in the same run: an APScheduler BackgroundScheduler in this process with 300 no-op
interval jobs at 1 s (the same executor size and job defaults as rsgo's), its lateness from the
jobs' own run times and this process's CPU, for the same duration.

The target is listed in the README's "Performance" section.

    .venv/bin/python benchmarks/observers.py [--quick] [--observers 300] [--seconds 60] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from rsgo.settings import load_settings

INTERVAL = 1.0
LATE = 0.5


class SourceServer:
    """An HTTP source for the observers: answers "0" at once and records each path's arrival times."""

    def __init__(self):
        self.arrivals: dict[str, list[float]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = common.run_in_thread(self._run, name="source-server")
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive, like a real status endpoint: an observer that keeps its connection
        open is not made to reconnect every second."""
        try:
            while request_line := await reader.readline():
                arrival = time.monotonic()
                path = request_line.split(b" ")[1].decode()
                self.arrivals.setdefault(path, []).append(arrival)
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # headers; a GET has no body
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\n0")
                await writer.drain()
        except (IndexError, ConnectionError):
            pass
        finally:
            writer.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def observer_config(stacks: list[str], source: SourceServer) -> str:
    lines = ["stacks:"]
    for index, stack in enumerate(stacks):
        lines.append(f"  {stack}:")
        lines.append(f"    maintenanceObserver: {{type: http, url: \"{source.url(f'/obs/{index}')}\", "
                     "maintenanceValue: \"1\", normalValue: \"0\", pollingInterval: 1s, timeout: 5s}")
    return "\n".join(lines) + "\n"


def lateness(arrivals_by_key: dict, start: float, end: float) -> list[float]:
    """For each check inside the window: the gap since the same observer's previous check (the one before
    the window too, so every check in it has one) minus the interval."""
    late = []
    for times in arrivals_by_key.values():
        late += [later - earlier - INTERVAL for earlier, later in zip(times, times[1:], strict=False)
                 if start <= later <= end]
    return late


def checks_in(arrivals_by_key: dict, start: float, end: float) -> int:
    return sum(1 for times in arrivals_by_key.values() for t in times if start <= t <= end)


def summarize(late: list[float], checks: int, observers: int, seconds: float, cpu: float) -> dict:
    on_time = sum(1 for value in late if value <= LATE)
    scheduled = observers * seconds / INTERVAL  # the checks the window should have held
    return {"checks": checks, "checksPerObserverSecond": checks / (observers * seconds),
            "scheduledChecks": scheduled, "missedChecks": max(0.0, scheduled - checks),
            "onTimeShare": min(1.0, on_time / scheduled) if scheduled else 0.0,
            "onTimeShareOfObservedGaps": on_time / len(late) if late else 0.0,
            "latenessSpreadMs": {key: value * 1000 for key, value in common.spread(late).items()} if late else None,
            "latenessP50Ms": common.median(late) * 1000, "latenessP95Ms": common.percentile(late, 95) * 1000,
            "latenessP99Ms": common.percentile(late, 99) * 1000, "latenessMaxMs": max(late) * 1000,
            "cpuPercentOfOneCore": cpu}


def measure_window(server: common.Server, seconds: float) -> tuple[float, float, float]:
    """(start, end, CPU % of one core) of the gunicorn master + worker over ``seconds``."""
    cpu_before, start = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu_after, end = server.cpu_seconds(), time.monotonic()
    return start, end, (cpu_after - cpu_before) / (end - start) * 100


SETTLE_SLICE = 3.0  # seconds
SETTLE_BOUND = 120.0


def settle(server: common.Server) -> dict:
    """Wait until the start-up work is done: the first checks change every observer's status, and the
    live push renders each of those stacks' rows and pages once (seconds of CPU for 300 stacks, at a
    constant rate while it lasts). Done when a slice of SETTLE_SLICE has fallen to 80 % of the busiest
    one so far and the next stays within 20 % (or 1 point) of it, or when slices stay under 5 % (nothing
    to wait for); at SETTLE_BOUND it measures anyway and says so. Returns the slices and the time."""
    began, slices = time.monotonic(), []
    settled = False
    while time.monotonic() - began < SETTLE_BOUND:
        slices.append(measure_window(server, SETTLE_SLICE)[2])
        if len(slices) >= 2 and max(slices[-2:]) < 5:
            settled = True
            break
        if len(slices) >= 3 and slices[-2] <= 0.8 * max(slices[:-1]) and slices[-1] <= slices[-2] * 1.2 + 1:
            settled = True
            break
    return {"settled": settled, "seconds": round(time.monotonic() - began, 1),
            "cpuSlices": [round(value, 1) for value in slices]}


def measure_rsgo_http(stack_count: int, seconds: float, threads: int | None,
                      py_spy: str | None = None) -> tuple[dict, dict]:
    source = SourceServer()
    environ = {"RSGO_OBSERVER_THREADS": str(threads)} if threads else {}
    server = common.Server("observers", environ)
    stacks = [f"bench-ob-{common.RUN_ID}-{i:03d}" for i in range(stack_count)]
    config = server.workdir / "rsgo.yml"
    config.write_text(observer_config(stacks, source))
    server.env["RSGO_CONFIG"] = str(config)
    try:
        server.start()
        # Warm-up: every observer has run a few times (imports, connections, status rows all exist).
        common.wait_until(lambda: len(source.arrivals) == stack_count
                          and min(len(v) for v in source.arrivals.values()) >= 3, 120, 0.5,
                          "every observer to have checked three times")
        settled = settle(server)
        profiler = common.start_profiler(server.worker_pid(), py_spy) if py_spy else None
        start, end, cpu = measure_window(server, seconds)
        if profiler is not None:
            common.stop_profiler(profiler)
        rss_mb = server.rss_mb()
        errors = server.log().count("failed")
    finally:
        server.cleanup()
        source.close()
    result = summarize(lateness(source.arrivals, start, end), checks_in(source.arrivals, start, end), stack_count,
                       end - start, cpu)
    return result, {"rssMb": rss_mb, "failedLinesInLog": errors, "httpSettled": settled}


def measure_rsgo_file(stack_count: int, seconds: float, threads: int | None, py_spy: str | None = None) -> dict:
    """The same with ``file`` observers (a flag file reading "0"): the cheapest source, so the CPU is
    rsgo's own per-check work. No arrival times here; the status API shows the checks ran."""
    environ = {"RSGO_OBSERVER_THREADS": str(threads)} if threads else {}
    server = common.Server("observers-file", environ)
    lines = ["stacks:"]
    for index in range(stack_count):
        flag = server.workdir / f"flag-{index}"
        flag.write_text("0")
        lines.append(f"  bench-obf-{common.RUN_ID}-{index:03d}:\n"
                     f"    maintenanceObserver: {{type: file, path: \"{flag}\", "
                     "mode: content, maintenanceValue: \"1\", normalValue: \"0\", pollingInterval: 1s}")
    config = server.workdir / "rsgo.yml"
    config.write_text("\n".join(lines) + "\n")
    server.env["RSGO_CONFIG"] = str(config)
    try:
        token = server.create_token("read")
        server.start()
        # Warm-up: every observer has checked three times (counted by rsgo's own metric).
        prefix = f"bench-obf-{common.RUN_ID}-"
        common.wait_until(lambda: _checked_at_least(server, token, prefix, stack_count, 3), 120, 0.5,
                          "every file observer to have checked three times")
        settled = settle(server)
        profiler = common.start_profiler(server.worker_pid(), py_spy) if py_spy else None
        start, end, cpu = measure_window(server, seconds)
        if profiler is not None:
            common.stop_profiler(profiler)
        errors = server.log().count("failed")
        # Every observer checked within the last 2 s: they all kept running during the window.
        items = requests.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {token}"},
                             timeout=60).json()["items"]
        now = dt.datetime.now(dt.UTC)
        recent = 0
        for item in items:
            if not item["name"].startswith(f"bench-obf-{common.RUN_ID}-"):
                continue
            status = requests.get(f"{server.url}/api/deployments/{item['id']}/observer", timeout=30,
                                  headers={"Authorization": f"Bearer {token}"}).json()
            checked = dt.datetime.fromisoformat(status["lastCheckAt"].replace("Z", "+00:00"))
            recent += (now - checked).total_seconds() <= 2.5 and status["state"] == "ok"
    finally:
        server.cleanup()
    return {"cpuPercentOfOneCore": cpu, "observersCheckedInLast2_5s": recent, "seconds": end - start,
            "failedLinesInLog": errors, "settled": settled}


def _checked_at_least(server: common.Server, token: str, prefix: str, count: int, times: int) -> bool:
    text = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30).text
    checked = 0
    for line in text.splitlines():
        if line.startswith("rsgo_observer_checks_total{") and f'deployment="{prefix}' in line and 'result="ok"' in line:
            checked += float(line.rsplit(" ", 1)[1]) >= times
    return checked >= count


def measure_rsgo_idle(stack_count: int, seconds: float) -> float:
    """rsgo with the same number of stacks declared but no observers, over the same kind of window: what
    the process costs anyway (on a shared engine mostly following other stacks' container events, whose
    pushes cost more with more stacks on the dashboard)."""
    server = common.Server("observers-idle")
    config = server.workdir / "rsgo.yml"
    config.write_text("stacks:\n" + "".join(f"  bench-obi-{common.RUN_ID}-{index:03d}: {{}}\n"
                                            for index in range(stack_count)))
    server.env["RSGO_CONFIG"] = str(config)
    try:
        server.start()
        settle(server)
        return measure_window(server, seconds)[2]
    finally:
        server.cleanup()


def measure_baseline(jobs: int, seconds: float, threads: int) -> dict:
    """Bare APScheduler: what polling 300 no-op jobs every second costs without any rsgo work."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    runs: dict[int, list[float]] = {index: [] for index in range(jobs)}
    scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(threads)},
                                    job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
                                    timezone=dt.UTC)
    for index in range(jobs):
        # The "no-op" records its own run time, the one thing the lateness needs.
        scheduler.add_job(_record, IntervalTrigger(seconds=INTERVAL), args=(runs[index],), id=str(index),
                          next_run_time=dt.datetime.now(dt.UTC))
    scheduler.start()
    try:
        time.sleep(3)  # warm-up, as for rsgo
        cpu_before, start = common.cpu_seconds(os.getpid()), time.monotonic()
        time.sleep(seconds)
        cpu_after, end = common.cpu_seconds(os.getpid()), time.monotonic()
    finally:
        scheduler.shutdown(wait=False)
    return summarize(lateness(runs, start, end), checks_in(runs, start, end), jobs, end - start,
                     (cpu_after - cpu_before) / (end - start) * 100)


def _record(times: list[float]) -> None:
    times.append(time.monotonic())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 observers for 15 s")
    parser.add_argument("--observers", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--threads", type=int, help="RSGO_OBSERVER_THREADS (default: rsgo's default)")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the worker during the http and the file window "
                        "(py-spy installed separately) into FILE.http and FILE.file, collapsed stacks")
    args = parser.parse_args(argv)
    count = args.observers or (100 if args.quick else 300)
    seconds = args.seconds or (15 if args.quick else 60)
    threads = args.threads or load_settings({}).observer_threads
    common.terminate_on_sigterm()

    with common.time_limit(420 + 3 * seconds):  # settling takes seconds; run_all bounds the script at 700
        rsgo, extra = measure_rsgo_http(count, seconds, args.threads, args.py_spy and f"{args.py_spy}.http")
        print(f"  rsgo, http observers: {rsgo['onTimeShare'] * 100:.1f} % on time, "
              f"{rsgo['cpuPercentOfOneCore']:.1f} % CPU", flush=True)
        files = measure_rsgo_file(count, seconds, args.threads, args.py_spy and f"{args.py_spy}.file")
        print(f"  rsgo, file observers: {files['cpuPercentOfOneCore']:.1f} % CPU", flush=True)
        idle_cpu = measure_rsgo_idle(count, seconds / 2)
        print(f"  rsgo with {count} stacks, no observers: {idle_cpu:.1f} % CPU", flush=True)
        baseline = measure_baseline(count, seconds, threads)
        print(f"  APScheduler alone: {baseline['onTimeShare'] * 100:.1f} % on time, "
              f"{baseline['cpuPercentOfOneCore']:.1f} % CPU", flush=True)

    share, base_share = rsgo["onTimeShare"] * 100, baseline["onTimeShare"] * 100
    cpu, base_cpu = rsgo["cpuPercentOfOneCore"], baseline["cpuPercentOfOneCore"]
    file_cpu = files["cpuPercentOfOneCore"]
    # A check that failed (an error in the log) is no check at all: the figures do not pass with one.
    clean = extra["failedLinesInLog"] == 0 and files["failedLinesInLog"] == 0
    spread = rsgo["latenessSpreadMs"] or {}
    figures = [
        common.figure(f"{count} http observers at 1 s: scheduled checks ≤ 0.5 s late ({seconds:g} s)", share, "%",
                      "≥ 99 %", share >= 99 and clean, base_share, f"APScheduler alone, {count} no-op jobs",
                      share / base_share if base_share else None,
                      note=f"{rsgo['checks']} of {rsgo['scheduledChecks']:.0f} scheduled checks ran "
                           f"({rsgo['missedChecks']:.0f} missed); lateness median {spread.get('median', 0):.0f} ms, "
                           f"IQR {spread.get('p25', 0):.0f}–{spread.get('p75', 0):.0f} ms, "
                           f"p99 {rsgo['latenessP99Ms']:.0f} ms, max {spread.get('max', 0):.0f} ms"),
        common.figure(f"{count} http observers at 1 s: CPU of rsgo (master + worker)", cpu, "% of one core", "≤ 10 %",
                      cpu <= 10 and clean, base_cpu, f"APScheduler alone, {count} no-op jobs",
                      cpu / base_cpu if base_cpu else None,
                      note=f"http observers; RSGO_OBSERVER_THREADS={threads}; rsgo with {count} stacks and no "
                           f"observers: {idle_cpu:.1f} % (the observers' own share: {cpu - idle_cpu:.1f} %)"),
        common.figure(f"{count} file observers at 1 s: CPU of rsgo (master + worker)", file_cpu,
                      "% of one core", "≤ 10 %", file_cpu <= 10 and clean, base_cpu,
                      f"APScheduler alone, {count} no-op jobs", file_cpu / base_cpu if base_cpu else None,
                      note=f"the cheapest source (a flag file): rsgo's own per-check cost; "
                           f"{files['observersCheckedInLast2_5s']} of {count} checked in the last 2.5 s; "
                           f"rsgo with {count} stacks and no observers: {idle_cpu:.1f} % (the observers' own "
                           f"share: {file_cpu - idle_cpu:.1f} %)"),
    ]
    details = {"observers": count, "seconds": seconds, "observerThreads": threads, "rsgo": rsgo,
               "fileObservers": files, "rsgoIdleCpuPercent": idle_cpu,
               "baseline": baseline, **extra}
    # A profiled run is slowed by the profiler: it never replaces a real result.
    return common.write_result("observers" + ("-profiled" if args.py_spy else ""), figures, details, args.quick)


if __name__ == "__main__":
    main()
