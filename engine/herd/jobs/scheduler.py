"""Which queued job runs next, and the worker slots that run them.

The scheduler only decides: it stores nothing and logs nothing. It holds the queued jobs
and the active ones (picked by a worker, not yet ended), answers which queued job a free
worker takes (the best aged priority, then the oldest, skipping a job that waits for a
dependency, for its ``not_before`` time or for room under a rate limit), and keeps one
worker thread per slot below ``max_running``. The queue (``herd.jobs.queue``) makes every
call under its own lock, persists each change and wakes the clients; keeping the
decisions apart lets them be tested on plain ``Job`` objects, with no database and no
threads racing (tests/engine/jobs/test_scheduler.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from herd.jobs import job as J
from herd.jobs.job import Job

AGING_SECONDS = 30.0
#: Longest an idle worker sleeps before it looks at the queue again on its own.
IDLE_RECHECK = 5.0


@dataclass(frozen=True)
class Pick:
    """What the queue should do at one instant."""

    #: The job a free worker runs now; None when every queued job must wait.
    job: Job | None
    #: Queued jobs that can never run, each with why: a dependency ended in a status the
    #: job does not accept. The queue ends them; that may settle other jobs' dependencies.
    failed: list[tuple[Job, str]] = field(default_factory=list)
    #: When to look again if nothing wakes the worker first: a put-back job's
    #: ``not_before``, or IDLE_RECHECK from now so aging is re-evaluated.
    wake_at: float = 0.0


class Scheduler:
    """The queued and active jobs, the choice between them, and the worker slots.

    ``work(slot)`` is the body of the worker thread of ``slot``; it runs until
    :meth:`slot_ends` says so.
    """

    def __init__(
        self,
        work: Callable[[int], None],
        max_running: int,
        aging_seconds: float = AGING_SECONDS,
    ) -> None:
        self._work = work
        self._aging = aging_seconds
        self.max_running = max_running
        self._queued: dict[int, Job] = {}
        self._active: dict[int, Job] = {}
        self._workers: dict[int, threading.Thread] = {}

    # ---- the jobs it chooses between ---------------------------------------------------

    def add(self, job: Job) -> None:
        """Queue ``job``: a new one, one found queued at start-up, or an active one put
        back for a later try (it no longer counts against rate limits)."""
        self._active.pop(job.id, None)
        self._queued[job.id] = job

    def start(self, job: Job) -> None:
        """A worker took ``job``: it counts against rate limits until forgotten."""
        del self._queued[job.id]
        self._active[job.id] = job

    def forget(self, job_id: int) -> None:
        """The job ended (or was canceled while queued): nothing here holds it any more."""
        self._queued.pop(job_id, None)
        self._active.pop(job_id, None)

    def get(self, job_id: int) -> Job | None:
        """The live job, queued or active; None once it ended."""
        return self._active.get(job_id) or self._queued.get(job_id)

    def active(self, job_id: int) -> Job:
        """The job a worker runs; KeyError if none does (only a running job logs)."""
        return self._active[job_id]

    def is_queued(self, job_id: int) -> bool:
        return job_id in self._queued

    # ---- the choice --------------------------------------------------------------------

    def pick(self, statuses: Mapping[int, str], now: float) -> Pick:
        """Best aged priority first, then oldest; ``statuses`` are every job's, to judge
        dependencies by. Decides only: the caller applies the decision."""
        running = self._labels_running()
        wake_at = now + IDLE_RECHECK
        failed: list[tuple[Job, str]] = []
        best: tuple[int, int] | None = None
        chosen: Job | None = None
        for job in self._queued.values():
            if job.not_before is not None and job.not_before > now:
                wake_at = min(wake_at, job.not_before)
                continue
            blocked, why = deps_state(job, statuses)
            if why is not None:
                failed.append((job, why))
                continue
            if blocked or _over_limit(job, running):
                continue
            key = (job.effective_priority(now, self._aging), job.id)
            if best is None or key < best:
                best, chosen = key, job
        return Pick(chosen, failed, wake_at)

    def _labels_running(self) -> Counter[str]:
        """How many active jobs carry each rate-limit label."""
        return Counter(label for job in self._active.values() for label, _ in job.rate_limits())

    # ---- worker slots ------------------------------------------------------------------

    def resize(self, max_running: int) -> None:
        """Run a worker in every slot below ``max_running``. A slot above it is not
        stopped here: its worker ends when it next asks for work (:meth:`slot_ends`),
        so the job it runs finishes."""
        self.max_running = max_running
        for slot in range(max_running):
            worker = self._workers.get(slot)
            if worker is None or not worker.is_alive():
                thread = threading.Thread(
                    target=self._work, args=(slot,), daemon=True, name=f"herd-worker-{slot}"
                )
                self._workers[slot] = thread
                thread.start()

    def slot_ends(self, slot: int, stopping: bool) -> bool:
        """Whether the worker of ``slot`` should end now: the queue stops, or
        ``max_running`` shrank below the slot. An ending slot is given up at once, so a
        later :meth:`resize` fills it again."""
        if stopping or slot >= self.max_running:
            self._workers.pop(slot, None)
            return True
        return False

    def workers(self) -> list[threading.Thread]:
        """The worker threads of the slots in use, for a shutdown to wait on."""
        return list(self._workers.values())


def deps_state(job: Job, statuses: Mapping[int, str]) -> tuple[bool, str | None]:
    """(whether a dependency has not ended yet, why the job can never run or None)."""
    for dep_id, allowed in job.depends:
        status = statuses.get(dep_id)
        if status not in J.FINAL:
            return True, None
        if status not in allowed:
            return False, (
                f"dependency job {dep_id} ended as {status}, this job needed {'/'.join(allowed)}"
            )
    return False, None


def _over_limit(job: Job, running: Counter[str]) -> bool:
    """Whether one of the job's ``rate-limit:N:label`` reasons already has N running."""
    return any(running[label] >= limit for label, limit in job.rate_limits())
