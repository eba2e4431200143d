"""Resident memory after the above load, ≤ 130 MB.

One ``rsgo serve`` carries all of it at once: 300 stacks of one container each, 20 000 audit
entries, 300 ``http`` observers at 1 s (one per stack), 200 signed-in dashboard websockets that
receive 20 mode changes, and the read burst (``GET /`` and ``GET /api/deployments``, 200 each).
Memory is VmRSS of the gunicorn master plus its worker from /proc, sampled every 0.5 s; the figure
is the value at the end of the load (the peak is reported too).

Baseline, in the same run: a fresh ``rsgo serve`` on an empty data dir, idle, 5 s after it is ready.
Each phase also records what the memory is made of (``common.memory_breakdown``): PSS, threads, the
resident part of the thread stacks and the rest of the anonymous memory; the figure stays the VmRSS sum.

The target is listed in the README's "Performance" section.

    .venv/bin/python benchmarks/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from observers import SourceServer, observer_config
from read_latency import create_fleet, request_burst, seed_database, wait_discovered
from ws_fanout import Page, Reader, measure


def idle_rss() -> tuple[float, dict]:
    server = common.Server("idle")
    try:
        server.start()
        server.wait_ready()
        time.sleep(5)
        return server.rss_mb(), common.memory_breakdown(server.pids())
    finally:
        server.cleanup()


class RssSampler:
    """Samples the server's RSS every 0.5 s in the background; keeps the peak and the phase it fell in."""

    def __init__(self, server: common.Server):
        self.server = server
        self.peak = 0.0
        self.phase = "start"
        self.peak_phase = ""
        self._stop = threading.Event()
        self._thread = common.run_in_thread(self._run, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = self.server.rss_mb()
                if rss > self.peak:
                    self.peak, self.peak_phase = rss, self.phase
            except (OSError, RuntimeError):
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 stacks/observers, 2 000 entries, 20 clients")
    args = parser.parse_args(argv)
    stack_count, entry_count, clients, changes, requests_each = (
        (30, 2000, 20, 6, 40) if args.quick else (300, 20000, 200, 20, 200))
    common.terminate_on_sigterm()

    baseline, idle_breakdown = idle_rss()
    print(f"  idle: {baseline:.0f} MB", flush=True)
    client = common.docker_client()
    source = SourceServer()
    # The websockets are one user's: both caps are raised to the number of clients.
    server = common.Server("memory", {"RSGO_THREADS": "60", "RSGO_MAX_LIVE_CONNECTIONS": str(clients),
                                      "RSGO_MAX_LIVE_CONNECTIONS_PER_USER": str(clients)})
    reader, pages, sampler = None, [], None
    phases, breakdowns = {}, {}
    try:
        with common.time_limit(600 + stack_count * 2):
            stacks = create_fleet(client, f"bench-mem-{common.RUN_ID}", stack_count)
            seed_database(server.data_dir, stacks, entry_count)
            config = server.workdir / "rsgo.yml"
            config.write_text(observer_config(stacks, source))
            server.env["RSGO_CONFIG"] = str(config)
            token = server.create_token("operate")
            server.start()
            sampler = RssSampler(server)
            sampler.phase = "discovery and first observer checks"
            wait_discovered(server, token, stacks)
            common.wait_until(lambda: len(source.arrivals) == stack_count, 120, 0.5, "every observer to check")
            phases["discoveredAndObserving"] = server.rss_mb()
            breakdowns["discoveredAndObserving"] = common.memory_breakdown(server.pids())

            sampler.phase = "sign-in (Argon2id)"
            cookie = server.cookie_header(server.login())
            sampler.phase = "websockets and mode changes"
            deployment_id = common.deployment_ids(server, token, {stacks[0]})[stacks[0]]
            reader = Reader()
            for _ in range(clients):
                page = Page(server, cookie, f'id="deployment-{deployment_id}"'.encode())
                reader.add(page)
                pages.append(page)
            time.sleep(1)
            latencies, _, _ = measure(server, token, stacks[0], pages, changes)
            phases["after200WebsocketsAndChanges"] = server.rss_mb()
            breakdowns["after200WebsocketsAndChanges"] = common.memory_breakdown(server.pids())

            sampler.phase = "sign-in (Argon2id)"
            session = server.login()
            sampler.phase = "read burst"
            burst = request_burst(server, session, token, requests_each)
            phases["afterReadBurst"] = server.rss_mb()
            breakdowns["afterReadBurst"] = common.memory_breakdown(server.pids())
            sampler.phase = "idle with observers and websockets"
            time.sleep(10)  # observers keep polling; the websockets stay open
            final = server.rss_mb()
            breakdowns["final"] = common.memory_breakdown(server.pids())
    finally:
        if sampler is not None:
            sampler.stop()
        if reader is not None:
            reader.stop()  # before the sockets close: its select would read a closed one (EBADF)
        for page in pages:
            page.close()
        removed = common.remove_benchmark_containers(client)
        server.cleanup()
        source.close()

    figures = [common.figure(
        f"resident memory after the load ({stack_count} stacks, {entry_count} entries, {clients} websockets, "
        f"{stack_count} observers)", final, "MB", "≤ 130 MB", final <= 130, baseline, "fresh idle rsgo serve",
        final / baseline,
        note=f"peak {sampler.peak:.0f} MB (during {sampler.peak_phase}); VmRSS of gunicorn master + worker (their "
             f"shared pages counted twice; counted once, PSS: {breakdowns['final']['pssMb']:.0f} MB, idle "
             f"{idle_breakdown['pssMb']:.0f} MB); {breakdowns['final']['threads']} threads")]
    details = {"stacks": stack_count, "auditEntries": entry_count, "websockets": clients, "observers": stack_count,
               "phasesRssMb": phases, "finalRssMb": final, "idleBreakdown": idle_breakdown,
               "phasesBreakdown": breakdowns, "peakRssMb": sampler.peak,
               "peakPhase": sampler.peak_phase, "idleRssMb": baseline,
               "wsP99MsUnderFullLoad": common.percentile(latencies, 99) * 1000,
               "dashboardP95MsUnderFullLoad": common.percentile(burst["latencies"]["GET /"], 95),
               "apiP95MsUnderFullLoad": common.percentile(burst["latencies"]["GET /api/deployments"], 95),
               "removedContainers": removed}
    return common.write_result("memory", figures, details, args.quick)


if __name__ == "__main__":
    main()
