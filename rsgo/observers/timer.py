"""When each observer checks next: one heap, one thread that hands due checks to a small pool
(docs/design.md#observers).

Hundreds of observers at 1 s were hundreds of APScheduler jobs, and its bookkeeping per run (trigger
arithmetic on aware datetimes, a job store kept sorted, a Future and events per submission) cost more
than most checks. Here a run costs a heap pop, a hand-over to the thread that went idle last (the
others sleep on) and a heap push.

The rules are APScheduler's as rsgo used them: a job runs every ``seconds`` on a fixed grid from its
first run; one run of a job at a time (the next is scheduled only when the run ended); runs missed
while one took long are merged into one, run at once. A hung source holds one pool thread until its
own timeout; the others go on.
"""

from __future__ import annotations

import collections
import datetime as dt
import heapq
import itertools
import logging
import math
import threading
import time
import zlib
from dataclasses import dataclass

log = logging.getLogger(__name__)

QUANTUM = 0.005  # seconds: checks due this close together are handed out in one round


class _Worker:
    """One pool thread's hand-over: ``wake`` is released when ``job`` is set (None: the thread ends)."""

    def __init__(self):
        self.wake = threading.Lock()
        self.wake.acquire()
        self.job: _Job | None = None


@dataclass(eq=False)
class _Job:
    id: str
    function: object
    args: tuple
    seconds: float
    due: float  # time.monotonic() of the next run, or of the one under way
    running: bool = False
    removed: bool = False  # replaced or removed: its heap entry is skipped, its run not rescheduled


class CheckTimer:
    def __init__(self, threads: int, clock=time.monotonic):
        self._threads = threads
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._heap: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()  # ties in the heap go by insertion, never by comparing jobs
        self._changed = threading.Condition()
        self._idle: list[_Worker] = []  # threads waiting for a run, the one idle the shortest last
        self._backlog: collections.deque[_Job] = collections.deque()  # due while every thread was busy
        self._started = self._paused = self._stopping = False

    # -- jobs ---------------------------------------------------------------------------------

    def every(self, job_id: str, seconds: float, function, *args) -> None:
        """Run ``function(*args)`` every ``seconds``, the first time within a second (replacing a job
        of the same id).

        Each job's first run is offset by a share of a second (of its interval, if shorter) taken from
        its id: hundreds of observers configured at once would otherwise all come due at the same
        instant, every interval, and wake every thread of the pool at once to fight over the
        interpreter (measured: twice the CPU). A long interval still checks at once, not an hour later.
        """
        with self._changed:
            old = self._jobs.get(job_id)
            if old is not None:
                old.removed = True
            phase = zlib.crc32(job_id.encode()) / 2**32 * min(float(seconds), 1.0)
            job = _Job(job_id, function, args, float(seconds), self._clock() + phase)
            self._jobs[job_id] = job
            self._push(job)

    def remove(self, job_id: str) -> None:
        with self._changed:
            job = self._jobs.pop(job_id, None)
            if job is not None:
                job.removed = True

    def next_run(self, job_id: str) -> dt.datetime | None:
        """When the job runs next (UTC), None if there is no such job."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        due = job.due + job.seconds if job.running else job.due
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=due - self._clock())

    def _push(self, job: _Job) -> None:
        heapq.heappush(self._heap, (job.due, next(self._order), job))
        if self._heap[0][2] is job:
            self._changed.notify()  # the dispatcher may be waiting for a later one

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        with self._changed:
            if self._started:
                return
            self._started = True
            workers = [_Worker() for _ in range(self._threads)]
            self._idle.extend(workers)
        for index, worker in enumerate(workers):
            threading.Thread(target=self._work, args=(worker,), name=f"rsgo-observer-{index}", daemon=True).start()
        threading.Thread(target=self._dispatch, name="rsgo-observer-timer", daemon=True).start()

    def pause(self) -> None:
        """Start no more runs (those under way go on)."""
        with self._changed:
            self._paused = True

    def shutdown(self) -> None:
        """Stop the threads once their runs end; never waits for a hung one."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
            while self._idle:
                self._idle.pop().wake.release()  # with no job: the thread ends

    def _dispatch(self) -> None:
        with self._changed:
            while not self._stopping:
                if self._paused or not self._heap:
                    self._changed.wait()
                    continue
                now, handed = self._clock(), False
                while self._heap and self._heap[0][0] <= now:
                    job = heapq.heappop(self._heap)[2]
                    if not job.removed:
                        job.running = True
                        self._hand(job)
                        handed = True
                if handed:
                    # What comes due in the next few milliseconds goes out with the next round: at most
                    # one wake-up of this thread per QUANTUM, however many observers there are.
                    self._changed.wait(QUANTUM)
                elif self._heap:
                    self._changed.wait(self._heap[0][0] - now)

    def _hand(self, job: _Job) -> None:
        """To the thread that went idle last (still warm; the others sleep on), else to the backlog
        (every thread is busy, or hung on a source: the next one to finish takes it)."""
        if self._idle:
            worker = self._idle.pop()
            worker.job = job
            worker.wake.release()
        else:
            self._backlog.append(job)

    def _work(self, worker: _Worker) -> None:
        while True:
            worker.wake.acquire()
            job = worker.job
            while job is not None:
                try:
                    job.function(*job.args)
                except Exception:
                    log.exception("observer job %s failed", job.id)
                with self._changed:
                    self._finished(job)
                    job = self._backlog.popleft() if self._backlog and not self._stopping else None
                    if job is None and not self._stopping:
                        worker.job = None
                        self._idle.append(worker)
            if self._stopping:
                return

    def _finished(self, job: _Job) -> None:
        """Schedule the job's next run (holding ``_changed``)."""
        job.running = False
        if job.removed:
            return
        due, now = job.due + job.seconds, self._clock()
        if due <= now:
            # Missed runs are merged into one, at once, and the grid stays where it was.
            due += math.floor((now - due) / job.seconds) * job.seconds
        job.due = due
        self._push(job)
