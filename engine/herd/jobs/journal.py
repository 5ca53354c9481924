"""The durable undo journal: an op's undo steps, kept in the job database.

A step is committed (and synced: the job database runs with ``synchronous=FULL``) before
:meth:`JobJournal.add` returns, and the op only then goes on to do what the step undoes.
So whatever a master killed mid-op had made, its journal names it, and the next master
finishes the rollback at start-up (see ``JobQueue._recover``) with no closure needed.
A row holds no secret (a DRBD disk's is redacted, see :meth:`UndoStep.args_json`): the
handler gets it back from the config when the step runs.
"""

from __future__ import annotations

import json

from herd.jobs.db import JobDB
from herd.ops.undo import UndoStep


class JobJournal:
    """The undo steps of op ``op_index`` of job ``job_id``."""

    def __init__(self, db: JobDB, job_id: int, op_index: int) -> None:
        self._db, self.job_id, self.op_index = db, job_id, op_index
        #: Whether this journal wrote a step: most ops record none, and clearing an
        #: empty journal would cost every op a synced write for nothing.
        self._written = False

    def add(self, step: UndoStep) -> int:
        self._written = True
        return self._db.add_undo_step(
            self.job_id, self.op_index, step.kind, step.args_json(), step.what
        )

    def pending(self) -> list[tuple[int, UndoStep]]:
        return [
            (step_id, UndoStep(kind, json.loads(args), what))
            for step_id, _, kind, args, what in self._db.undo_steps(self.job_id, self.op_index)
        ]

    def done(self, step_id: int) -> None:
        self._db.delete_undo_step(step_id)

    def replace(self, step: UndoStep) -> int:
        self._written = True
        return self._db.replace_undo_steps(
            self.job_id, self.op_index, step.kind, step.args_json(), step.what
        )

    def clear(self) -> None:
        if self._written:
            self._db.delete_undo_steps(self.job_id, self.op_index)
            self._written = False


def interrupted(db: JobDB, job_id: int, finished_ops: set[int]) -> list[JobJournal]:
    """The journals a dead master left for this job, newest op first.

    Steps of an op recorded as succeeded are dropped: the master died after the op's
    success was stored but before its journal was cleared, and a finished op is kept.
    """
    indexes = sorted({op for _, op, _, _, _ in db.undo_steps(job_id)}, reverse=True)
    for index in finished_ops.intersection(indexes):
        db.delete_undo_steps(job_id, index)
    return [JobJournal(db, job_id, i) for i in indexes if i not in finished_ops]
