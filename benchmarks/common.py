"""What every benchmark needs: the Docker engine and the test image, a real ``rsgo serve`` on a free
port with its own temp data dir, process facts from /proc, percentiles, and the result file.

The test image, the server process, the PUT of a mode and the waits come from ``tests/support.py``,
shared with the tests (this module puts ``tests/`` on ``sys.path``, as the scripts do for ``benchmarks/``).

The machines are shared and noisy, so every benchmark measures its baseline in the same run and
reports the ratio next to the absolute figure. Every script creates what it needs under a
benchmark-only label and removes exactly that afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import docker
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import support  # noqa: E402
from support import TEST_IMAGE, bearer, put_mode  # noqa: E402, F401 - the scripts use them as common.*

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BENCH_LABEL = "rsgo.bench.run"  # every container a benchmark creates carries it: cleanup removes only these
RUN_ID = uuid.uuid4().hex[:8]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# PID 1 that idles without waking up (docker-init forwards SIGTERM to it, so it stops at once): 300
# of them cost no CPU, unlike a shell loop that forks `sleep 0.1` ten times a second.
IDLE = ["sleep", "86400"]


# -- Docker -----------------------------------------------------------------------------------

def docker_client() -> docker.DockerClient:
    client = docker.from_env(version="auto", timeout=300, max_pool_size=32)
    client.ping()
    support.ensure_test_image(client)
    return client


def create_containers(client, specs: list[dict], parallel: int = 8) -> list[str]:
    """Create and start containers (``name``, ``stack``, ``command``, ``init``) in parallel; returns the names."""

    def create(spec: dict) -> str:
        host_config = client.api.create_host_config(init=spec.get("init", False))
        created = client.api.create_container(
            TEST_IMAGE, spec["command"], name=spec["name"], host_config=host_config,
            labels={"rsgo.stack": spec["stack"], BENCH_LABEL: RUN_ID}, stop_timeout=spec.get("stop_timeout", 10))
        client.api.start(created["Id"])
        return spec["name"]

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(create, specs))


def remove_benchmark_containers(client, parallel: int = 8) -> int:
    """Remove every container this run created (and nothing else): they carry our run id."""
    containers = client.api.containers(all=True, filters={"label": f"{BENCH_LABEL}={RUN_ID}"})
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda c: client.api.remove_container(c["Id"], force=True), containers))
    return len(containers)


def docker_cli(*args: str, timeout: float = 300) -> float:
    """Run the Docker CLI; returns its wall time in seconds."""
    began = time.monotonic()
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=timeout)
    return time.monotonic() - began


# -- rsgo serve --------------------------------------------------------------------------------

class Server(support.ServerProcess):
    """``rsgo serve`` (``support.ServerProcess``) on a free port, with its own temp data dir and log.

    The admin is created from RSGO_ADMIN_PASSWORD at first start; ``create_token(scope)`` makes an API
    token with ``rsgo token create`` (none is made at start); ``login()`` signs a browser-like session in.
    """

    DEFAULTS = {"RSGO_LOG_LEVEL": "WARNING"}

    def __init__(self, name: str, environ: dict | None = None, data_dir: Path | None = None):
        self.workdir = Path(tempfile.mkdtemp(prefix=f"rsgo-bench-{name}-"))
        super().__init__(data_dir or self.workdir / "data", log_path=self.workdir / "server.log", admin_token=False,
                         **(environ or {}))

    def create_token(self, scope: str = "operate", name: str | None = None) -> str:
        return super().create_token(scope, name or f"bench-{scope}-{uuid.uuid4().hex[:6]}")

    def start(self, timeout: float = 120) -> Server:
        return super().start(timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        """/readyz: the database answers and the first Docker sync is done."""
        wait_until(lambda: requests.get(f"{self.url}/readyz", timeout=10).status_code == 200, timeout, 0.2,
                   "rsgo to become ready")

    # The gunicorn master is our child; its one worker (the app: scheduler, hub, requests) is the master's child.
    @property
    def master_pid(self) -> int:
        return self.process.pid

    def worker_pid(self, timeout: float = 30) -> int:
        return wait_until(lambda: child_pids(self.master_pid), timeout, 0.1, "a gunicorn worker")[0]

    def pids(self) -> list[int]:
        return [self.master_pid, self.worker_pid()]

    def rss_mb(self) -> float:
        return sum(rss_kb(pid) for pid in self.pids()) / 1024

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not stopped after 30 s: a benchmark always cleans up."""
        try:
            super().stop()
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- /proc --------------------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return sorted(children)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5), counted from 1


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


THREAD_STACK_BYTES = 8 * 1024 * 1024  # glibc's default for a new thread (ulimit -s): how its mapping is told apart


def memory_breakdown(pids: list[int]) -> dict:
    """What the processes' resident memory is made of, from /proc/<pid>/smaps: PSS (a page shared by
    master and worker counted once, split between them), the threads, the resident part of their
    stacks (anonymous mappings of the stack size), and the rest of the anonymous memory (the heap)."""
    pss = stacks = anonymous = threads = 0
    for pid in pids:
        threads += int(Path(f"/proc/{pid}/status").read_text().split("Threads:")[1].split()[0])
        size, named = 0, False
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header: range, perms, offset, dev, inode[, path]
                low, high = (int(x, 16) for x in fields[0].split("-"))
                size, named = high - low, len(fields) > 5 and fields[5] != "[heap]"
            elif fields[0] == "Pss:":
                pss += int(fields[1])
            elif fields[0] == "Rss:" and not named:
                if abs(size - THREAD_STACK_BYTES) <= 2 * 4096:  # the stack and its guard page
                    stacks += int(fields[1])
                else:
                    anonymous += int(fields[1])
    return {"pssMb": round(pss / 1024, 1), "threads": threads, "threadStacksRssMb": round(stacks / 1024, 1),
            "otherAnonymousRssMb": round(anonymous / 1024, 1)}


# -- statistics --------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    return percentile(values, 50)


def spread(values: list[float]) -> dict:
    """Median, min-max and interquartile range: what a figure near its target is decided and reported by."""
    return {"median": median(values), "min": min(values), "max": max(values),
            "p25": percentile(values, 25), "p75": percentile(values, 75)}


# -- results -------------------------------------------------------------------------------------

def figure(what: str, measured: float, unit: str, target: str, passed: bool, baseline: float | None = None,
           baseline_what: str = "", ratio: float | None = None, note: str = "") -> dict:
    """One figure of the README's "Performance" targets: the measured value, its target, the same-run
    baseline and their ratio."""
    return {"what": what, "measured": round(measured, 3), "unit": unit, "target": target,
            "baseline": None if baseline is None else round(baseline, 3), "baselineWhat": baseline_what,
            "ratio": None if ratio is None else round(ratio, 3), "passed": bool(passed), "note": note}


def write_result(name: str, figures: list[dict], details: dict, quick: bool) -> dict:
    result = {"benchmark": name, "quick": quick, "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "figures": figures, "details": details}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print_figures(name, figures)
    print(f"written: {path.relative_to(ROOT)}")
    return result


def print_figures(name: str, figures: list[dict]) -> None:
    print(f"\n== {name}")
    for f in figures:
        baseline = "" if f["baseline"] is None else f"  baseline {f['baseline']} {f['unit']} ({f['baselineWhat']})"
        ratio = "" if f["ratio"] is None else f"  ratio {f['ratio']}"
        print(f"  {'PASS' if f['passed'] else 'FAIL'}  {f['what']}: {f['measured']} {f['unit']}"
              f"  (target {f['target']}){baseline}{ratio}")
        if f.get("note"):
            print(f"        {f['note']}")


def machine_facts() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    try:
        docker_version = docker.from_env(version="auto").version()["Version"]
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        docker_version = f"unknown ({error})"
    return {"nproc": os.cpu_count(), "cpuModel": cpu, "memoryGiB": round(memory_kb / 1024 / 1024, 1),
            "dockerServerVersion": docker_version, "python": platform.python_version(),
            "kernel": platform.release(), "loadAverage": os.getloadavg()}


# -- profiling (optional: py-spy is installed separately, `.venv/bin/pip install py-spy`) ----------

def start_profiler(pid: int, output: str) -> subprocess.Popen:
    """py-spy sampling the server's worker (only threads holding the GIL: where Python spends CPU)."""
    profiler = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-r", "200",
                                 "--gil", "-f", "raw", "-o", output], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached
    return profiler


def stop_profiler(profiler: subprocess.Popen) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    profiler.wait(60)


# -- bounding time -------------------------------------------------------------------------------

class BenchmarkTimeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise BenchmarkTimeout in the main thread after ``seconds`` (so the finally blocks still clean up)."""

    def expire(_signum, _frame):
        raise BenchmarkTimeout(f"benchmark exceeded its {seconds:g}s bound")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def terminate_on_sigterm() -> None:
    """A SIGTERM (run_all's own bound) unwinds like an exception, so cleanup runs."""

    def stop(_signum, _frame):
        raise BenchmarkTimeout("terminated")

    signal.signal(signal.SIGTERM, stop)


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """``support.wait_until`` with the benchmarks' positional order."""
    return support.wait_until(predicate, timeout, interval, message=what)


def deployment_ids(server: Server, token: str, names: set[str], timeout: float = 120) -> dict[str, int]:
    """Wait until the server lists every stack in ``names``; returns name → deployment id."""

    def listed():
        items = requests.get(f"{server.url}/api/deployments", headers=bearer(token), timeout=60).json()["items"]
        found = {i["name"]: i["id"] for i in items if i["name"] in names}
        return found if len(found) == len(names) else None

    return wait_until(listed, timeout, 0.5, f"{len(names)} deployments to be listed")


def run_in_thread(target, *args, name: str = "bench") -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread
