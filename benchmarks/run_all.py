"""Run every benchmark (the README's "Performance" targets), print one markdown table with each
figure beside its target and its same-run baseline, and write ``benchmarks/results/summary.json``
(with the machine's facts).

    .venv/bin/python benchmarks/run_all.py            # the full sizes of the targets (about 15 minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # small sizes, for trying things out
    .venv/bin/python benchmarks/run_all.py --only ws_fanout,memory
    .venv/bin/python benchmarks/run_all.py --strict   # exit 1 on a missed target too

Each benchmark runs as a process of its own (its own server, containers and cleanup), bounded in
time: past its bound it gets SIGTERM (it cleans up and exits), and SIGKILL a minute later.
Needs DOCKER_HOST (or /var/run/docker.sock) to reach a Docker engine, and the Docker CLI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

# Name → time bound in seconds, a little above the bound each script sets itself (quick runs finish early).
PAUSE_SECONDS = 20
BENCHMARKS = {"stop_start": 1200, "ws_fanout": 900, "read_latency": 1500, "environments": 1500, "observers": 700,
              "memory": 1500, "upgrade": 1800}


def run(name: str, quick: bool, bound: float) -> tuple[int, float]:
    command = [sys.executable, str(Path(__file__).resolve().parent / f"{name}.py")] + (["--quick"] if quick else [])
    print(f"\n### {name}: {' '.join(command[1:])}", flush=True)
    began = time.monotonic()
    log_path = common.RESULTS_DIR / "logs" / f"{name}{'-quick' if quick else ''}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, bufsize=1)
        # Its output goes to the console and to a log file next to the results (a failure stays readable).
        tee = threading.Thread(target=_tee, args=(process.stdout, log), daemon=True)
        tee.start()
        try:
            code = process.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            print(f"{name}: over its {bound}s bound; stopping it", flush=True)
            process.send_signal(signal.SIGTERM)  # the script unwinds and removes what it created
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        tee.join(10)
    return code, time.monotonic() - began


def _tee(stream, log) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)


def code_under_test() -> dict:
    """What was measured: the commit, the whole ``git status`` (any uncommitted file, the scripts' own
    included, makes the run "dirty"), and a hash of benchmarks/ as it ran, so a README figure can be tied
    to the exact scripts that produced it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=common.ROOT, capture_output=True, text=True).stdout

    status = [line for line in git("status", "--porcelain", "--untracked-files=all").splitlines()
              if not line[3:].startswith("benchmarks/results/")]  # this run's own output
    scripts = hashlib.sha256()
    for path in sorted((common.ROOT / "benchmarks").glob("*.py")):
        scripts.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "clean": not status, "gitStatus": status,
            "benchmarksSha256": scripts.hexdigest()}


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(results: dict[str, dict]) -> str:
    rows = ["| benchmark | figure | measured | target | baseline (same run) | ratio | result |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, result in results.items():
        if result is None:
            rows.append(f"| {name} | (did not finish: see its output) | – | – | – | – | **error** |")
            continue
        for f in result["figures"]:
            baseline = f"{fmt(f['baseline'], f['unit'])} ({f['baselineWhat']})" if f["baseline"] is not None else "–"
            rows.append(f"| {name} | {f['what']} | {fmt(f['measured'], f['unit'])} | {f['target']} | {baseline} | "
                        f"{fmt(f['ratio'])} | {'pass' if f['passed'] else '**MISS**'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes in every benchmark")
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a figure misses its target too (not only when a benchmark fails)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    machine = {**common.machine_facts(), **code_under_test()}
    print("machine:", json.dumps(machine), flush=True)
    results, runs = {}, {}
    for index, name in enumerate(names):
        if index:
            # The previous benchmark's containers were just removed: let the engine (and whatever else
            # follows its events on a shared machine) settle before the next measurement starts.
            time.sleep(PAUSE_SECONDS)
        path = common.RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}.json"
        path.unlink(missing_ok=True)  # a stale file must not pass for this run's result
        code, seconds = run(name, args.quick, BENCHMARKS[name])
        runs[name] = {"exitCode": code, "seconds": round(seconds, 1)}
        results[name] = json.loads(path.read_text()) if code == 0 and path.exists() else None

    markdown = table(results)
    print("\n" + markdown)
    summary = {"quick": args.quick, "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {**machine, "loadAverageAtEnd": os.getloadavg()},
               "command": ".venv/bin/python benchmarks/run_all.py" + (" --quick" if args.quick else ""),
               "runs": runs, "table": markdown,
               "figures": [{"benchmark": name, **f} for name, r in results.items() if r for f in r["figures"]]}
    path = common.RESULTS_DIR / f"summary{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {path.relative_to(common.ROOT)}")
    missed = [f for f in summary["figures"] if not f["passed"]]
    failed = [name for name, r in results.items() if r is None]
    if missed or failed:
        print(f"{len(missed)} figure(s) missed their target; {len(failed)} benchmark(s) did not finish")
    if not machine["clean"]:
        print(f"the tree was not clean ({len(machine['gitStatus'])} changed file(s)): these figures are not of "
              f"commit {machine['commit']} alone")
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
