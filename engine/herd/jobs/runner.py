"""Runs one job: for each op, take its locks level by level, check, run, roll back on error.

This is where the layers meet, and the only place that knows the order they meet in:
locks before prerequisites, prerequisites before changes, undo before the error is
reported, every lock given back whatever happened.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from herd import faults
from herd.config.store import Store
from herd.crypto.secrets import ReplayCache
from herd.errors import CanceledError, HerdError
from herd.jobs import job as J
from herd.jobs import retry
from herd.jobs.job import Job
from herd.jobs.queue import JobQueue, LogFn
from herd.jobs.retry import NextTry
from herd.locking import ALL, LEVELS, LockManager, acquire_with_backoff
from herd.ops import exposure
from herd.ops.base import ALL_LOCKS, LockSpec, NodeServices, NoNodeServices, OpContext
from herd.ops.undo import UndoJournal


class JobRunner:
    """Callable handed to the queue; holds the shared services every op needs."""

    def __init__(
        self,
        store: Store,
        locks: LockManager,
        services: NodeServices | None = None,
        replay: ReplayCache | None = None,
    ) -> None:
        self.store = store
        self.locks = locks
        self.services = services if services is not None else NoNodeServices()
        # In memory only for runners built without a master (tests); the master passes
        # its persistent cache, so a restart does not reopen the replay window.
        self.replay = replay if replay is not None else ReplayCache()

    def __call__(self, job: Job, cancel: threading.Event, queue: JobQueue) -> None:
        owner = f"job-{job.id}"
        try:
            for index, state in enumerate(job.ops):
                if state.status == J.SUCCESS:
                    continue  # done by an earlier run of this job, before it was put back
                outcome = self._run_op(job, index, state.params, cancel, queue, owner)
                if isinstance(outcome, NextTry):
                    queue.requeue(job, index, outcome.delay)
                    return
                if outcome is not None:
                    status = J.CANCELED if outcome["type"] == CanceledError.kind else J.ERROR
                    queue.finish(job, status, outcome)
                    return
            queue.finish(job, J.SUCCESS)
        finally:
            self.locks.release_all(owner)

    def _run_op(
        self,
        job: Job,
        index: int,
        params: dict[str, Any],
        cancel: threading.Event,
        queue: JobQueue,
        owner: str,
    ) -> dict[str, Any] | NextTry | None:
        """None on success, the error that ends the job, or the next try of this op."""
        op_class = queue.op_class(job.ops[index].op)
        done = job.ops[index].tries
        op = op_class(retry.params_for_try(op_class, params, done))

        def log(message: str, kind: str, data: dict[str, Any] | None) -> None:
            queue.log(job.id, message, kind, data)

        def submit(specs: list[dict[str, Any]]) -> list[int]:
            if exposure.came_remotely(job.reason):
                exposure.refuse_remote_jobs(specs, "jobs")
            trail = [*job.reason, ["herd:job", f"spawned by job {job.id}", time.time()]]
            return queue.submit_many(specs, inherit_reason=trail)

        ctx = self._context(owner, log, cancel, queue.undo_journal(job, index), submit)
        queue.set_status(job, J.WAITING, index)
        try:
            for level in LEVELS:
                spec = op.declare_locks(level, ctx)
                if spec is not None:
                    self._acquire(owner, level, spec, job, cancel, ctx)
            if not queue.set_status(job, J.RUNNING, index, cancel):
                raise CanceledError(f"job {job.id} was canceled while waiting for locks")
            op.check(ctx)
            result = op.run(ctx)
        except HerdError as exc:
            error = exc.to_dict()
            again = retry.next_try(op_class, params, done, error)
            if again is None:
                return self._fail(job, index, queue, ctx, error)
            self._try_again(job, index, ctx, error, again)
            return again
        except Exception as exc:  # noqa: BLE001 - report a bug as a job error, never a hang
            log(traceback.format_exc(), "error", None)
            return self._fail(
                job,
                index,
                queue,
                ctx,
                HerdError(f"internal error in {op.OP_ID}: {exc!r}").to_dict(),
            )
        finally:
            self.locks.release_all(owner)
        faults.point(f"op:{op.OP_ID}:ran")
        # Success is stored before the journal goes: a master dying in between leaves
        # steps of a succeeded op, which recovery drops, never an op undone after success.
        queue.op_done(job, index, J.SUCCESS, result)
        faults.point(f"op:{op.OP_ID}:stored")
        ctx.forget_undo()
        return None

    def finish_undo(self, job: Job, journal: UndoJournal, log: LogFn) -> list[str]:
        """Run the rest of an interrupted op's rollback (a dead master's journal) in a
        fresh context; what failed, as ``OpContext.run_undo`` reports it."""
        owner = f"job-{job.id}"
        try:
            return self._context(owner, log, threading.Event(), journal).run_undo()
        finally:
            self.locks.release_all(owner)

    def _context(
        self,
        owner: str,
        log: LogFn,
        cancel: threading.Event,
        journal: UndoJournal,
        submit: Callable[[list[dict[str, Any]]], list[int]] | None = None,
    ) -> OpContext:
        return OpContext(
            store=self.store,
            locks=self.locks,
            owner=owner,
            log_fn=log,
            cancel=cancel,
            services=self.services,
            submit_fn=submit,
            journal=journal,
            replay=self.replay,
        )

    def _acquire(
        self,
        owner: str,
        level: str,
        spec: LockSpec,
        job: Job,
        cancel: threading.Event,
        ctx: OpContext,
    ) -> None:
        names: Any = ALL if spec.names == ALL_LOCKS else list(spec.names)
        if spec.opportunistic:
            got = self.locks.acquire(
                owner,
                level,
                names,
                shared=spec.shared,
                priority=job.priority,
                opportunistic=True,
                min_count=spec.min_count,
                cancel=cancel,
            )
            ctx.log(f"opportunistic {level} locks: got {', '.join(sorted(got)) or 'none'}")
        else:
            acquire_with_backoff(
                self.locks,
                owner,
                level,
                names,
                shared=spec.shared,
                priority=job.priority,
                cancel=cancel,
            )

    @staticmethod
    def _try_again(
        job: Job, index: int, ctx: OpContext, error: dict[str, Any], again: NextTry
    ) -> None:
        """Undo whatever the try made and say in the job log what happens next."""
        ctx.run_undo()
        tries = job.ops[index].params[retry.TRIES]
        nxt = (
            f"next opportunistic try in {again.delay:.1f} s"
            if again.opportunistic
            else "next: a create with blocking locks"
        )
        ctx.log(
            f"temporarily infeasible (opportunistic try {job.ops[index].tries + 1} of "
            f"{tries}): {error['message']}; {nxt}",
            "warning",
            {"try": job.ops[index].tries + 1, "tries": tries, "delay": again.delay},
        )

    @staticmethod
    def _fail(
        job: Job, index: int, queue: JobQueue, ctx: OpContext, error: dict[str, Any]
    ) -> dict[str, Any]:
        problems = ctx.run_undo()
        if problems:
            error = {**error, "details": {**error.get("details", {}), "rollback_failed": problems}}
        queue.log(job.id, f"{job.ops[index].op} failed: {error['message']}", "error")
        status = J.CANCELED if error["type"] == CanceledError.kind else J.ERROR
        queue.op_done(job, index, status, None, error)
        return error
