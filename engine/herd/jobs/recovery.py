"""Start-up recovery: close what a dead master left mid-flight, before any worker starts.

A job that was only waiting for locks had changed nothing: it is queued again. A job past
that point is never re-run (its op may have half-acted): the rollback it journaled
(``herd.jobs.journal``) is finished here, newest step first, and reported in its log, and
the job ends in error (canceled, if a cancel was already under way). A job whose every
op's success was stored did succeed. The queue runs this before the first pick, so no new
job sees the "lowest free" DRBD port or minor of a resource an orphan still holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from herd.errors import HerdError
from herd.jobs import job as J
from herd.jobs import journal
from herd.jobs.db import JobDB
from herd.jobs.job import Job
from herd.ops.undo import UndoJournal

log = logging.getLogger(__name__)

#: A log line for one job, as the undo handlers write it: (message, kind, data).
LogFn = Callable[[str, str, "dict[str, Any] | None"], None]
#: How the queue appends a line to a job's log: the next serial, the job's secrets cut out.
JobLogFn = Callable[[Job, str, str, "dict[str, Any] | None"], None]


class UndoFinisher(Protocol):
    """What finishes a journaled rollback (herd.jobs.runner.JobRunner)."""

    def finish_undo(self, job: Job, journal: UndoJournal, log: LogFn) -> list[str]:
        """Run the rest of a rollback a dead master journaled; what failed."""
        ...


def close_unfinished(db: JobDB, runner: UndoFinisher, job_log: JobLogFn) -> list[Job]:
    """Settle every job the database holds as waiting, running or canceling, each saved
    before this returns; the settled jobs (ended, or queued again)."""
    settled = db.load_where_status((J.WAITING, J.RUNNING, J.CANCELING))
    for job in settled:
        job.log_serial = db.last_log_serial(job.id)
        finished = {i for i, op in enumerate(job.ops) if op.status == J.SUCCESS}
        journals = journal.interrupted(db, job.id, finished)
        if len(finished) == len(job.ops):
            _close_succeeded(job, job_log)
        elif job.status == J.WAITING and not journals:
            _requeue(job, job_log)
        else:
            _close_interrupted(job, journals, runner, job_log)
        db.save(job)
    return settled


def _requeue(job: Job, job_log: JobLogFn) -> None:
    job.status = J.QUEUED
    for op in job.ops:
        if op.status == J.WAITING:
            op.status = J.QUEUED
    job_log(job, "master restarted while this job waited for locks: queued again", "warning", None)


def _close_succeeded(job: Job, job_log: JobLogFn) -> None:
    """Every op's success was stored before the master died: the job did succeed, and
    calling it failed would send a client to redo what is already done."""
    job.status = J.SUCCESS
    job.ended_at = time.time()
    job_log(
        job,
        "master restarted after the job's last op had succeeded: job marked success",
        "warning",
        None,
    )


def _close_interrupted(
    job: Job, journals: list[journal.JobJournal], runner: UndoFinisher, job_log: JobLogFn
) -> None:
    undone, problems = _finish_undo(job, journals, runner, job_log)
    if journals:
        log.warning(
            "job %d, cut off by a restart: %d undo step(s) finished, %d failed",
            job.id,
            len(undone),
            len(problems),
        )
    interrupted = job.status != J.CANCELING
    if interrupted:
        what = "running" if job.status == J.RUNNING else "waiting for locks"
        rolled = f"{len(undone)} undo step(s) finished at start-up, " if undone else ""
        details: dict[str, Any] = {"undone": undone} if undone else {}
        if problems:
            details["rollback_failed"] = problems
        job.error = HerdError(
            f"the master restarted while this job was {what}; {rolled}its locks were released",
            **details,
        ).to_dict()
    job.status = J.ERROR if interrupted else J.CANCELED
    job.ended_at = time.time()
    for op in job.ops:
        if op.status not in J.FINAL:
            op.status = job.status
            op.error = job.error
    job_log(job, "master restarted: job marked " + job.status, "error", None)


def _finish_undo(
    job: Job, journals: list[journal.JobJournal], runner: UndoFinisher, job_log: JobLogFn
) -> tuple[list[str], list[str]]:
    """Run the journaled steps through the runner; (what was undone, what failed)."""
    undone: list[str] = []
    problems: list[str] = []

    def after_restart(message: str, kind: str, data: dict[str, Any] | None) -> None:
        job_log(job, f"after restart, {message}", kind, data)

    for jnl in journals:
        steps = [step.what for _, step in reversed(jnl.pending())]
        op = job.ops[jnl.op_index].op
        after_restart(f"finishing the undo of {op}: {len(steps)} step(s)", "warning", None)
        problems += runner.finish_undo(job, jnl, after_restart)
        undone += steps
    return undone, problems
