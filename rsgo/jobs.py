"""The in-process scheduler (APScheduler) and all of rsgo's background work on it
(docs/design.md#transitions): interval jobs (the window check, the retry of failures not yet
written) in the default executor, and one-off long jobs (background transitions, the resumption of
interrupted ones) in an executor of their own, so a burst of transitions never waits for the others
and the other way round. Observers run on a timer of their own (``rsgo.observers.timer``), started
after this one. Shutdown and "what runs now" live here.

One scheduler per process: starting a second one while the first runs is an error,
so a reloader or a second app can never poll every source twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

_running_guard = threading.Lock()
_running: Scheduler | None = None


class SchedulerAlreadyRunning(RuntimeError):
    pass


class Scheduler:
    def __init__(self, threads: int, long_job_threads: int = 16):
        # APScheduler's per-run INFO lines are kept out of the log by the logging setup (rsgo/cli.py).
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(threads), "long": ThreadPoolExecutor(long_job_threads)},
            # One run of a job at a time; runs missed while one hung are merged into one, not queued.
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self._one_off: dict[str, str] = {}  # job id -> what it does, while it runs or waits to
        self._one_off_changed = threading.Condition()

    def start(self) -> None:
        global _running
        with _running_guard:
            if _running is not None:
                raise SchedulerAlreadyRunning("a scheduler already runs in this process; rsgo starts exactly one")
            _running = self
        self._scheduler.start()
        # One line per start: it shows (and the serve test counts) one scheduler per rsgo process.
        log.info("scheduler started in process %d", os.getpid())

    def pause(self) -> None:
        """Start no more runs (those under way go on): the first step of shutting down."""
        if self._scheduler.running:
            self._scheduler.pause()

    def shutdown(self) -> None:
        global _running
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with _running_guard:
            if _running is self:
                _running = None

    @property
    def running(self) -> bool:
        return self._scheduler.running

    def every(self, job_id: str, seconds: float, function, *args, first_run: dt.datetime | None = None) -> None:
        """Run ``function(*args)`` every ``seconds`` (replacing a job of the same id)."""
        self._scheduler.add_job(function, IntervalTrigger(seconds=seconds), args=args, id=job_id,
                                replace_existing=True,
                                next_run_time=first_run or dt.datetime.now(dt.UTC))

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def next_run(self, job_id: str) -> dt.datetime | None:
        job = self._scheduler.get_job(job_id)
        return job.next_run_time if job is not None else None

    def job_ids(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]

    def run_once(self, job_id: str, what: str, function, *args) -> None:
        """Run ``function(*args)`` once, now, in the executor for long jobs; ``what`` names it for
        ``one_off_jobs``. Background transitions and the resumption run this way."""
        if not self._scheduler.running:
            raise RuntimeError("background work needs the started scheduler (an app built with background=True)")

        def tracked():
            try:
                function(*args)
            finally:
                with self._one_off_changed:
                    self._one_off.pop(job_id, None)
                    self._one_off_changed.notify_all()

        with self._one_off_changed:
            self._one_off[job_id] = what
        self._scheduler.add_job(tracked, DateTrigger(dt.datetime.now(dt.UTC)), id=job_id,
                                executor="long", replace_existing=False)

    def one_off_jobs(self) -> dict[str, str]:
        """The one-off jobs running or about to (id -> what)."""
        with self._one_off_changed:
            return dict(self._one_off)

    def wait_for_one_off_jobs(self, timeout: float) -> bool:
        """Wait until no one-off job runs (shutdown, tests); False if some still do at the deadline."""
        with self._one_off_changed:
            return self._one_off_changed.wait_for(lambda: not self._one_off, timeout)
