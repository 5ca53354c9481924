"""The persistent job queue: submit, query, cancel, and every state change stored.

Clients get a job id at once; which queued job a free worker takes next is the
scheduler's decision (``herd.jobs.scheduler``), made under this queue's lock. Every state
change is written to the job database before anyone can observe it, so a master that
dies loses nothing it has acknowledged, and what it left mid-flight is closed at the next
start-up before any worker picks a job.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from traceback import format_exc
from typing import Any, Protocol

from herd.config.model import SECRET_KEYS
from herd.errors import ConflictError, HerdError, NotFoundError, ValidationError
from herd.jobs import job as J
from herd.jobs import journal, recovery
from herd.jobs.db import JobDB
from herd.jobs.job import Job, OpState
from herd.jobs.recovery import LogFn as LogFn  # re-exported: runners type finish_undo() with it
from herd.jobs.recovery import UndoFinisher
from herd.jobs.scheduler import AGING_SECONDS, Scheduler
from herd.ops.base import Op, registry
from herd.ops.params import Param
from herd.redact import redact_params, scrub, secret_strings

log = logging.getLogger(__name__)

PRIORITY = Param("priority", int, default=J.PRIO_NORMAL, minimum=J.PRIO_MIN, maximum=J.PRIO_MAX)
DEFAULT_MAX_RUNNING = 20


class JobRunner(UndoFinisher, Protocol):
    """What runs jobs for the queue (herd.jobs.runner.JobRunner)."""

    def __call__(self, job: Job, cancel: threading.Event, queue: JobQueue) -> None: ...


class JobQueue:
    """Owns the job table, the lock the scheduler is asked under and the notifications
    long polls wait on; the worker threads it runs jobs on are the scheduler's slots."""

    def __init__(
        self,
        db: JobDB,
        runner: JobRunner,
        *,
        max_running: int | None = None,
        aging_seconds: float = AGING_SECONDS,
    ) -> None:
        self._db = db
        self._runner = runner
        self._cond = threading.Condition()
        self._status: dict[int, str] = dict(db.list_ids())
        self._cancel: dict[int, threading.Event] = {}
        self._next_id = db.next_id()
        self._stopping = False
        stored = db.get_setting("max_running")
        self._sched = Scheduler(
            self._worker,
            max_running or (int(stored) if stored else DEFAULT_MAX_RUNNING),
            aging_seconds,
        )
        self._ops = registry()
        self._recover()

    # ---- start-up and shutdown -------------------------------------------------------

    def _recover(self) -> None:
        """Close what a dead master left mid-flight (``herd.jobs.recovery``), then queue
        every queued job, before any worker starts."""
        for job in recovery.close_unfinished(self._db, self._runner, self._append_log_locked):
            self._status[job.id] = job.status
        for job in self._db.load_where_status((J.QUEUED,)):
            self._sched.add(job)

    def start(self) -> None:
        with self._cond:
            self._sched.resize(self._sched.max_running)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop picking jobs, ask running ones to stop at their next cancel check, wait."""
        with self._cond:
            self._stopping = True
            for ev in self._cancel.values():
                ev.set()
            self._cond.notify_all()
            workers = self._sched.workers()
        deadline = time.monotonic() + timeout
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))

    # ---- submission --------------------------------------------------------------------

    def validate_ops(self, ops: Any, prefix: str = "") -> list[OpState]:
        """Build and validate every op before anything is stored: all or nothing."""
        if not isinstance(ops, list) or not ops:
            raise ValidationError(
                prefix + "ops", ops, "a non-empty list of {'op': NAME, ...params}"
            )
        states = []
        for i, raw in enumerate(ops):
            if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
                raise ValidationError(
                    f"{prefix}ops[{i}].op", raw, "one of " + ", ".join(sorted(self._ops))
                )
            name = raw["op"]
            cls = self._ops.get(name)
            if cls is None:
                raise ValidationError(
                    f"ops[{i}].op", name, "one of " + ", ".join(sorted(self._ops))
                )
            params = {k: v for k, v in raw.items() if k != "op"}
            try:
                op = cls(params)
            except ValidationError as exc:
                # Ops validate their own parameters, which know nothing of where the op
                # sits in the request; re-anchor the field so message and details agree.
                inner = exc.details["field"]
                field = f"{prefix}ops[{i}].{inner}"
                raise ValidationError(
                    field,
                    exc.details["value"],
                    exc.details["allowed"],
                    message=f"op '{name}': " + exc.message.replace(f"'{inner}'", f"'{field}'"),
                ) from None
            states.append(OpState(op=name, params=op.params))
        return states

    def submit_many(
        self,
        specs: list[dict[str, Any]],
        inherit_reason: list[list[Any]] | None = None,
    ) -> list[int]:
        """Submit several jobs atomically; ``depends`` may name earlier ones by -1, -2 …"""
        return self._submit(specs, inherit_reason, "jobs")

    def submit(self, spec: dict[str, Any]) -> int:
        return self._submit([spec], None, None)[0]

    def _submit(
        self,
        specs: list[dict[str, Any]],
        inherit_reason: list[list[Any]] | None,
        list_field: str | None,
    ) -> list[int]:
        """Validate every job, then store all of them in one transaction or none; errors
        name fields as ``jobs[i].…`` for a list submission so the bad job can be found."""
        now = time.time()
        jobs: list[Job] = []
        with self._cond:
            if self._stopping:
                raise HerdError("the master is shutting down")
            for idx, spec in enumerate(specs):
                prefix = f"{list_field}[{idx}]." if list_field else ""
                if not isinstance(spec, dict):
                    raise ValidationError(prefix.rstrip(".") or "job", spec, "a job object")
                unknown = set(spec) - {"ops", "priority", "reason", "depends"}
                if unknown:
                    field = sorted(unknown)[0]
                    raise ValidationError(
                        prefix + field, spec[field], "fields ops, priority, reason, depends"
                    )
                ops = self.validate_ops(spec.get("ops"), prefix)
                prio = PRIORITY.validate(spec.get("priority", J.PRIO_NORMAL), prefix)
                reason = list(inherit_reason or []) + self._check_reason(
                    spec.get("reason", []), prefix, now
                )
                depends = self._check_depends(
                    spec.get("depends", []), prefix, self._next_id + idx, [j.id for j in jobs]
                )
                jobs.append(
                    Job(
                        id=self._next_id + idx,
                        ops=ops,
                        priority=prio,
                        reason=reason,
                        depends=depends,
                        received_at=now,
                    )
                )
            self._db.save_many(jobs)
            self._next_id += len(jobs)
            for job in jobs:
                self._sched.add(job)
                self._status[job.id] = job.status
            self._cond.notify_all()
        return [j.id for j in jobs]

    @staticmethod
    def _check_reason(reason: Any, prefix: str, now: float) -> list[list[Any]]:
        allowed = "a list of [source, reason] or [source, reason, timestamp] entries"
        if not isinstance(reason, list):
            raise ValidationError(prefix + "reason", reason, allowed)
        out = []
        for entry in reason:
            if (
                not isinstance(entry, list)
                or len(entry) not in (2, 3)
                or not all(isinstance(x, str) for x in entry[:2])
                or (len(entry) == 3 and not _is_number(entry[2]))
            ):
                raise ValidationError(prefix + "reason", entry, allowed)
            out.append([entry[0], entry[1], float(entry[2]) if len(entry) == 3 else now])
        return out

    def _check_depends(
        self, depends: Any, prefix: str, own_id: int, batch: list[int]
    ) -> list[list[Any]]:
        allowed = (
            "a list of [job_id, [final statuses]]; negative ids name earlier jobs of "
            "the same submission"
        )
        if not isinstance(depends, list):
            raise ValidationError(prefix + "depends", depends, allowed)
        out = []
        for entry in depends:
            if (
                not isinstance(entry, list)
                or len(entry) != 2
                or isinstance(entry[0], bool)
                or not isinstance(entry[0], int)
                or not isinstance(entry[1], list)
                or not all(isinstance(s, str) and s in J.FINAL for s in entry[1])
            ):
                raise ValidationError(prefix + "depends", entry, allowed)
            dep = entry[0]
            if dep < 0:
                if -dep > len(batch):
                    raise ValidationError(prefix + "depends", entry, allowed)
                dep = batch[dep]
            elif dep not in self._status or dep >= own_id:
                raise ValidationError(prefix + "depends", entry, "the id of an existing job")
            out.append([dep, sorted(entry[1]) or [J.SUCCESS]])
        return out

    # ---- queries -----------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        """A copy of the job for readers, its secret parameters redacted: the queue's own
        copy of an unfinished job holds the real values its op needs."""
        with self._cond:
            job = self._sched.get(job_id)
            if job is not None:
                job = Job.from_dict(job.to_dict())
        if job is None:
            job = self._db.load(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id} does not exist", job_id=job_id)
        for op in job.ops:
            cls = self._ops.get(op.op)
            if cls is not None:
                op.params = redact_params(cls.PARAMS, op.params)
        return job

    def view(self, job_id: int, log_since: int | None = 0) -> dict[str, Any]:
        doc = self.get(job_id).to_dict()
        if log_since is not None:
            doc["log"] = self._db.read_log(job_id, log_since)
        return doc

    def list(
        self,
        status: str | None = None,
        limit: int | None = None,
        op: str | None = None,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs newest first; ``status`` may be ``unfinished`` (any not final), and ``op``
        with ``name`` keep only jobs with an ``op`` op on the object ``name``.

        Clients that resume their own unfinished work (the Ansible modules' opportunistic
        reruns) ask for exactly that, rather than reading every job in the history.
        """
        allowed = (*J.STATUSES, J.UNFINISHED)
        if status is not None and status not in allowed:
            raise ValidationError("status", status, "one of " + ", ".join(allowed))
        if name is not None and op is None:
            raise ValidationError("name", name, "only together with op")
        statuses = (
            [s for s in J.STATUSES if s not in J.FINAL] if status == J.UNFINISHED else [status]
        )
        ids = sorted(
            (i for s in statuses for i, _ in self._db.list_ids(s, None if op else limit)),
            reverse=True,
        )
        out: list[dict[str, Any]] = []
        for job_id in ids:
            job = self.get(job_id)
            if op is not None and not any(
                o.op == op and (name is None or o.params.get("name") == name) for o in job.ops
            ):
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(
                {
                    "id": job.id,
                    "status": job.status,
                    "priority": job.priority,
                    "summary": job.summary(),
                    "received_at": job.received_at,
                    "started_at": job.started_at,
                    "ended_at": job.ended_at,
                }
            )
        return out

    def wait(
        self, job_id: int, log_since: int, timeout: float, known_status: str | None = None
    ) -> dict[str, Any]:
        """Long poll: return as soon as the status differs from ``known_status`` or a log
        line newer than ``log_since`` exists, or when ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._sched.get(job_id)
                if job is None:
                    break
                changed = known_status is not None and job.status != known_status
                if changed or job.log_serial > log_since or job.final:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return self.view(job_id, log_since)

    def counts(self) -> dict[str, int]:
        with self._cond:
            counts = {s: 0 for s in J.STATUSES}
            for s in self._status.values():
                counts[s] += 1
            return counts

    @property
    def max_running(self) -> int:
        return self._sched.max_running

    def set_max_running(self, value: Any) -> None:
        value = Param("max_running", int, minimum=1, maximum=1000).validate(value)
        with self._cond:
            self._db.set_setting("max_running", str(value))
            self._sched.resize(value)
            self._cond.notify_all()

    # ---- cancel ------------------------------------------------------------------------

    def cancel(self, job_id: int) -> dict[str, Any]:
        with self._cond:
            job = self._sched.get(job_id)
            if job is None:
                status = self.get(job_id).status
                raise ConflictError(
                    f"job {job_id} has already finished ({status})", job_id=job_id, status=status
                )
            if job.status not in J.CANCELABLE:
                raise ConflictError(
                    f"job {job_id} is {job.status} and can no longer be canceled",
                    job_id=job_id,
                    status=job.status,
                )
            self._append_log_locked(job, "cancel requested", "message")
            if self._sched.is_queued(job_id):
                self._finish_locked(job, J.CANCELED, None)
            else:
                # Picked by a worker (maybe not yet marked waiting): the runner sees the
                # event at its next lock wait or at the switch to running, whichever is first.
                job.status = J.CANCELING
                self._cancel[job_id].set()
                self._save_locked(job)
                self._cond.notify_all()
            return {"id": job_id, "status": job.status}

    # ---- what the runner calls -----------------------------------------------------------

    def log(
        self, job_id: int, message: str, kind: str = "message", data: dict[str, Any] | None = None
    ) -> None:
        with self._cond:
            job = self._sched.active(job_id)
            self._append_log_locked(job, message, kind, data)
            self._cond.notify_all()

    def _append_log_locked(
        self, job: Job, message: str, kind: str, data: dict[str, Any] | None = None
    ) -> None:
        job.log_serial += 1
        self._db.append_log(
            job.id, job.log_serial, kind, self._scrub(job, message), self._scrub(job, data)
        )

    def _scrub(self, job: Job, value: Any) -> Any:
        """``value`` (a log line, a result, an error) as it may be stored and shown: the
        declared secret fields of config objects hidden, the job's own secret parameter
        values cut out wherever they appear (an error quoting one, say), and private key
        material cut out of all text. The secrets a node call carried (a DRBD disk's) are
        cut out of the node's error where it arrives (``herd.master.services``), before any
        op can quote it here."""
        found: set[str] = set()
        for op in job.ops:
            cls = self._ops.get(op.op)
            if cls is not None:
                found |= secret_strings(cls.PARAMS, op.params, SECRET_KEYS)
        return scrub(value, SECRET_KEYS, found)

    def set_status(
        self,
        job: Job,
        status: str,
        op_index: int | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Move a job (and optionally one op) forward. Returns False if a cancel request
        arrived first: the switch to running and a cancel must not both win."""
        with self._cond:
            if status == J.RUNNING and cancel is not None and cancel.is_set():
                return False
            now = time.time()
            if job.started_at is None and status in (J.WAITING, J.RUNNING):
                job.started_at = now
            if job.status != J.CANCELING or status != J.WAITING:
                job.status = status
            if op_index is not None:
                op = job.ops[op_index]
                op.status = status
                if status in (J.WAITING, J.RUNNING) and op.started_at is None:
                    op.started_at = now
            self._save_locked(job)
            self._cond.notify_all()
            return True

    def op_done(
        self,
        job: Job,
        index: int,
        status: str,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self._cond:
            status, error = self._unless_shutdown(job, status, error)
            op = job.ops[index]
            op.status, op.ended_at = status, time.time()
            op.result, op.error = self._scrub(job, result), self._scrub(job, error)
            self._save_locked(job)
            self._cond.notify_all()

    def _save_locked(self, job: Job) -> None:
        self._db.save(job)
        self._status[job.id] = job.status

    def _unless_shutdown(
        self, job: Job, status: str, error: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None]:
        """A job that ``stop()`` interrupted was not canceled by anyone: like a job cut off
        by a crash it ends in error, so 'canceled' always means a user asked for it."""
        if status == J.CANCELED and self._stopping and job.status in (J.WAITING, J.RUNNING):
            return J.ERROR, HerdError(
                f"the master shut down while this job was {job.status}"
            ).to_dict()
        return status, error

    def _finish_locked(self, job: Job, status: str, error: dict[str, Any] | None) -> None:
        status, error = self._unless_shutdown(job, status, error)
        error = self._scrub(job, error)
        job.status, job.error, job.ended_at = status, error, time.time()
        for op in job.ops:
            if op.status not in J.FINAL:
                op.status = status if status == J.CANCELED else J.ERROR
                op.error = op.error or error
        self._save_locked(job)
        self._sched.forget(job.id)
        self._cancel.pop(job.id, None)
        self._cond.notify_all()

    # ---- workers -----------------------------------------------------------------------

    def _worker(self, slot: int) -> None:
        """The life of the worker of ``slot``: run the jobs the scheduler picks, until
        the slot ends."""
        while (picked := self._next_job(slot)) is not None:
            self._run(*picked)

    def _next_job(self, slot: int) -> tuple[Job, threading.Event] | None:
        """Wait for the scheduler to pick a job for this worker (None: the slot ends)
        and mark it taken, with the event a cancel request sets."""
        with self._cond:
            while not self._sched.slot_ends(slot, self._stopping):
                pick = self._sched.pick(self._status, time.time())
                for job, why in pick.failed:
                    self._append_log_locked(job, why, "error")
                    self._finish_locked(job, J.ERROR, HerdError(why).to_dict())
                if pick.failed:
                    # Their ends may settle the dependencies of jobs judged before them.
                    continue
                if pick.job is not None:
                    self._sched.start(pick.job)
                    cancel = self._cancel[pick.job.id] = threading.Event()
                    return pick.job, cancel
                # Aging and dependency changes are re-evaluated at least this often,
                # and a job put back for a later try is picked when its time comes.
                self._cond.wait(max(0.0, pick.wake_at - time.time()))
        return None

    def _run(self, job: Job, cancel: threading.Event) -> None:
        """Run ``job``; a runner bug ends the job in error instead of killing the worker."""
        try:
            self._runner(job, cancel, self)
        except Exception as exc:  # noqa: BLE001 - logged below, scrubbed like the job log
            # The master's own log is a reader too: the trace quotes what the job log does.
            log.error("job %s: runner failed\n%s", job.id, self._scrub(job, format_exc()))
            why = f"internal error: {exc!r}"
            with self._cond:
                self._append_log_locked(job, why, "error")
                self._finish_locked(job, J.ERROR, HerdError(why).to_dict())

    def finish(self, job: Job, status: str, error: dict[str, Any] | None = None) -> None:
        with self._cond:
            self._finish_locked(job, status, error)

    def requeue(self, job: Job, index: int, delay: float) -> None:
        """Put a job whose op ``index`` should be tried again back in the queue, to be
        picked no sooner than ``delay`` seconds from now.

        The runner calls this after the try has given its locks back, so the job waits
        without a worker and without blocking anyone; it is ``queued`` again, so it can be
        canceled, and a master restart keeps it like any other queued job.
        """
        with self._cond:
            op = job.ops[index]
            op.status, op.tries = J.QUEUED, op.tries + 1
            job.status, job.not_before = J.QUEUED, time.time() + delay
            self._save_locked(job)
            self._sched.add(job)
            self._cancel.pop(job.id, None)
            self._cond.notify_all()

    def undo_journal(self, job: Job, index: int) -> journal.JobJournal:
        """The durable undo journal for op ``index`` of ``job``."""
        return journal.JobJournal(self._db, job.id, index)

    def op_class(self, name: str) -> type[Op]:
        return self._ops[name]


def _is_number(value: Any) -> bool:
    """A finite JSON number: a NaN timestamp would be stored and served as non-JSON."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
