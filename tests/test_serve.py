"""`rsgo serve` as a process: graceful SIGTERM, one scheduler, logs."""

from __future__ import annotations

import re
import signal

import requests

from support import put_mode, wait_until

SLOW_3S = ["sh", "-c", "trap 'sleep 3; exit 0' TERM; while :; do sleep 0.1; done"]


def test_sigterm_lets_a_running_transition_finish_before_the_process_exits(make_stack, make_server):
    stack = make_stack()
    for index in range(3):
        stack.add(f"c{index}", command=SLOW_3S)
    server = make_server().start()
    wait_until(lambda: requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers,
                                    timeout=5).json().get("containerCounts", {}).get("total") == 3, 15,
               message="discovery")
    accepted = put_mode(server, stack.name, "Maintenance", reason="before shutdown", wait=False, timeout=10)
    assert accepted.status_code == 202, accepted.text
    transition_url = server.url + accepted.headers["Location"]

    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=40)

    assert all(not stack.is_running(f"c{index}") for index in range(3)), "the transition ran to its end"
    server.start()
    transition = requests.get(transition_url, headers=server.headers, timeout=5).json()
    assert (transition["outcome"], transition["resumed"]) == ("succeeded", False)
    log = server.log()
    assert "transition" in log and f"(id {transition['deploymentId']})" in log


def test_the_server_runs_one_scheduler_and_logs_to_stdout(make_server, tmp_path):
    server = make_server()
    server.stderr_path = tmp_path / "stderr.log"
    server.start()
    stdout, stderr = server.log(), server.stderr_path.read_text(errors="replace")
    # gunicorn's one worker (its own lines go to stderr) runs the one scheduler: exactly one start, in it.
    [worker_pid] = re.findall(r"Booting worker with pid: (\d+)", stderr)
    assert re.findall(r"INFO rsgo\.jobs: scheduler started in process (\d+)", stdout) == [worker_pid]
    # rsgo's own lines are on stdout, and only there.
    assert "rsgo serving on http://127.0.0.1:" in stdout
    assert not re.search(r" (INFO|WARNING|ERROR) rsgo[.:]", stderr), stderr
    # No config file in its data dir: said as such (not "loaded: 0 stacks").
    assert "INFO rsgo.runtime: config file not found: " in stdout and " loaded: " not in stdout
