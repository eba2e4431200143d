"""APScheduler wiring only: one interval job per observer. The jobs are plain functions.

One scheduler per process: starting a second one while the first runs is an error,
so a reloader or a second app can never poll every source twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

_running_guard = threading.Lock()
_running: "Scheduler | None" = None


class SchedulerAlreadyRunning(RuntimeError):
    pass


class Scheduler:
    def __init__(self, threads: int):
        # APScheduler logs every run of every job at INFO; with checks and retries every few seconds that
        # buries what matters. Its warnings (missed runs) and job errors still reach the log.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(threads)},
            # One run of a job at a time; runs missed while one hung are merged into one, not queued.
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
            timezone=dt.timezone.utc,
        )

    def start(self) -> None:
        global _running
        with _running_guard:
            if _running is not None:
                raise SchedulerAlreadyRunning("a scheduler already runs in this process; rsgo starts exactly one")
            _running = self
        self._scheduler.start()

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
                                next_run_time=first_run or dt.datetime.now(dt.timezone.utc))

    def remove(self, job_id: str) -> None:
        if self._scheduler.get_job(job_id) is not None:
            self._scheduler.remove_job(job_id)

    def next_run(self, job_id: str) -> dt.datetime | None:
        job = self._scheduler.get_job(job_id)
        return job.next_run_time if job is not None else None

    def job_ids(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()]
