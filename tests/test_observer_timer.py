"""The observers' timer (rsgo/observers/timer.py): one heap, a small pool; a hung check holds only its own
thread, a job never overlaps itself, runs missed meanwhile are merged into one. Real threads and real
time; every wait has a deadline (no fixed sleeps)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from rsgo.observers.timer import CheckTimer
from support import wait_until


@pytest.fixture
def timer():
    made = CheckTimer(threads=4)
    made.start()
    yield made
    made.shutdown()


class Runs:
    """Start times of a job's runs; ``hold`` keeps each run going until it is set."""

    def __init__(self, hold: threading.Event | None = None):
        self.starts: list[float] = []
        self.running = 0
        self.most_at_once = 0
        self.hold = hold
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.starts.append(time.monotonic())
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.hold is not None:
                self.hold.wait(30)
        finally:
            with self._lock:
                self.running -= 1


def test_a_hung_check_holds_only_its_own_thread_and_never_runs_twice_at_once(timer):
    release = threading.Event()
    hung, other = Runs(hold=release), Runs()
    timer.every("hung", 0.05, hung)
    timer.every("other", 0.05, other)

    wait_until(lambda: len(other.starts) >= 20, 10, message="the other job to run 20 times while one hangs")
    assert len(hung.starts) == 1  # its next run waits for this one to end

    release.set()
    wait_until(lambda: len(hung.starts) >= 3, 10, message="the hung job to run again once released")
    assert hung.most_at_once == 1


def test_runs_missed_while_one_took_long_are_merged_into_one(timer):
    release = threading.Event()
    runs = Runs(hold=release)
    timer.every("slow", 0.2, runs)
    wait_until(lambda: runs.starts, 10, message="the first run")
    _wait_for(1.1)  # five runs missed
    runs.hold = None
    released = time.monotonic()
    release.set()

    wait_until(lambda: any(start >= released + 0.15 for start in runs.starts), 10,
               message="a run after the merged one")
    right_after = [start for start in runs.starts if released <= start < released + 0.15]
    # The merged run, and at most the next one on the 0.2 s grid; queued runs would be five back to back.
    assert 1 <= len(right_after) <= 2, right_after


def test_removed_jobs_stop_and_next_run_is_one_interval_ahead(timer):
    removed, kept = Runs(), Runs()
    timer.every("removed", 0.05, removed)
    timer.every("kept", 0.05, kept)
    slow = Runs()
    timer.every("slow", 10, slow)
    wait_until(lambda: len(removed.starts) >= 2 and slow.starts and not slow.running, 10, message="the jobs to run")
    ahead = timer.next_run("slow") - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=8) <= ahead <= dt.timedelta(seconds=10), ahead

    timer.remove("removed")
    at_removal, kept_then = len(removed.starts), len(kept.starts)
    wait_until(lambda: len(kept.starts) >= kept_then + 10, 10, message="ten more runs of the kept job")
    assert len(removed.starts) <= at_removal + 1  # at most a run already handed to a thread
    assert timer.next_run("removed") is None


def _wait_for(seconds: float) -> None:
    began = time.monotonic()
    wait_until(lambda: time.monotonic() - began >= seconds, seconds + 5, interval=0.05, message=f"{seconds} s")


def test_nothing_runs_before_start_or_after_pause():
    timer = CheckTimer(threads=2)
    runs = Runs()
    timer.every("job", 0.05, runs)
    _wait_for(0.3)
    assert runs.starts == []  # not started: an app built without background work checks nothing
    timer.start()
    try:
        wait_until(lambda: len(runs.starts) >= 2, 10, message="runs once started")
        timer.pause()
        paused_at = len(runs.starts)
        _wait_for(0.5)
        assert len(runs.starts) <= paused_at + 1  # at most a run already handed to a thread
    finally:
        timer.shutdown()


def test_first_runs_come_within_a_second_spread_over_it_even_for_long_intervals(timer):
    jobs = {f"observer-{index}": Runs() for index in range(50)}
    began = time.monotonic()
    for job_id, runs in jobs.items():
        timer.every(job_id, 3600, runs)
    wait_until(lambda: all(runs.starts for runs in jobs.values()), 10, message="every job's first run")
    firsts = sorted(runs.starts[0] for runs in jobs.values())
    assert firsts[-1] - began < 1 + 0.5  # an hour's interval still checks at start
    # Not all at one instant: that would wake the whole pool at once, every interval.
    assert firsts[-1] - firsts[0] > 0.5, firsts
