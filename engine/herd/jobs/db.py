"""Persistence of jobs and their logs, so the queue survives a master restart.

Jobs live in their own SQLite file beside the config: the queue writes far more often than
the config changes, and keeping them apart lets either be backed up or replaced alone.

Secret op parameters (``Param(secret=True)``) never enter the job document: the document
holds the redaction marker and the values sit in ``job_secrets`` until the job ends, so a
job queued before a restart still runs with them, while nothing that reads job documents
(the API, a copy of the table) can see them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from herd.jobs.job import FINAL, Job
from herd.ops.base import registry
from herd.redact import split_params

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_log (
    job_id INTEGER NOT NULL, serial INTEGER NOT NULL, time REAL NOT NULL,
    type TEXT NOT NULL, message TEXT NOT NULL, data TEXT,
    PRIMARY KEY (job_id, serial));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_secrets (job_id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
"""
#: The settings row holding the next job id. A counter rather than MAX(id) + 1, so the id
#: of a job that was deleted, archived or lost is never handed to another job.
NEXT_ID_KEY = "next_job_id"
#: Seeds the counter (from MAX(id) in databases made before it existed), and moves it past
#: every inserted id from a trigger, so it advances in the very transaction of the insert.
_NEXT_ID_SCHEMA = f"""
INSERT OR IGNORE INTO settings (key, value)
    SELECT '{NEXT_ID_KEY}', COALESCE(MAX(id), 0) + 1 FROM jobs;
CREATE TRIGGER IF NOT EXISTS jobs_next_id AFTER INSERT ON jobs BEGIN
    UPDATE settings SET value = MAX(CAST(value AS INTEGER), NEW.id + 1)
    WHERE key = '{NEXT_ID_KEY}';
END;
"""

#: The undo journal: the steps an op has recorded but not yet undone or committed, one row
#: each, written before the op does what a step undoes (see herd.jobs.journal).
_UNDO_SCHEMA = """
CREATE TABLE IF NOT EXISTS undo_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, op_index INTEGER NOT NULL,
    kind TEXT NOT NULL, args TEXT NOT NULL, what TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS undo_steps_job ON undo_steps(job_id, op_index);
"""


def _split(job: Job) -> tuple[str, str | None]:
    """(the job document with secret parameters redacted, the secrets per op as JSON or
    None when the job has none left to keep: none given, or the job is over)."""
    ops = registry()
    doc = job.to_dict()
    kept: dict[str, dict[str, Any]] = {}
    for index, op in enumerate(doc["ops"]):
        cls = ops.get(op["op"])
        if cls is not None:
            op["params"], secrets = split_params(cls.PARAMS, op["params"])
            if secrets:
                kept[str(index)] = secrets
    keep = kept and job.status not in FINAL
    return json.dumps(doc, separators=(",", ":")), json.dumps(kept) if keep else None


def _with_secrets(doc: dict[str, Any], kept: dict[str, dict[str, Any]]) -> Job:
    for index, secrets in kept.items():
        doc["ops"][int(index)]["params"].update(secrets)
    return Job.from_dict(doc)


class JobDB:
    """A single connection guarded by a lock: job writes are small and the queue already
    serialises state changes, so one writer is both simplest and fastest here."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a job is acknowledged once its insert commits, so that commit must be on
        # disk; in WAL mode NORMAL may lose the last commits to a power cut.
        self._conn.execute("PRAGMA synchronous=FULL")
        # Deleted rows (a finished job's secrets) are zeroed, not just unlinked.
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.executescript(_SCHEMA)
        self._conn.executescript(_NEXT_ID_SCHEMA)
        self._conn.executescript(_UNDO_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def next_id(self) -> int:
        """The id for the next job: past every id ever stored, deleted ones included."""
        with self._lock:
            row = self._conn.execute(
                "SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?", (NEXT_ID_KEY,)
            ).fetchone()
        return int(row[0])

    def save(self, job: Job) -> None:
        self.save_many([job])

    def save_many(self, jobs: list[Job]) -> None:
        """Write jobs and their kept secrets in one transaction: a job document is never
        on disk without the secrets it needs to run, and a finished job's are deleted."""
        rows = [(j.id, j.status, *_split(j)) for j in jobs]
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO jobs (id, status, doc) VALUES (?,?,?)",
                    [(i, status, doc) for i, status, doc, _ in rows],
                )
                self._conn.executemany(
                    "INSERT OR REPLACE INTO job_secrets (job_id, doc) VALUES (?,?)",
                    [(i, kept) for i, _, _, kept in rows if kept is not None],
                )
                forgot = self._conn.executemany(
                    "DELETE FROM job_secrets WHERE job_id = ?",
                    [(i,) for i, _, _, kept in rows if kept is None],
                ).rowcount
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if forgot > 0:
                # The WAL still holds the pages that had the secrets: fold it into the
                # (securely deleted) database and empty it, so no copy of jobs.db has them.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def load(self, job_id: int) -> Job | None:
        """The job as readers may see it: secret parameters redacted."""
        with self._lock:
            row = self._conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row[0])) if row else None

    def load_where_status(self, statuses: tuple[str, ...]) -> list[Job]:
        """Jobs the queue takes back after a restart, to run or to close: unlike
        :meth:`load`, with their secret parameters put back."""
        marks = ",".join("?" * len(statuses))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT j.doc, s.doc FROM jobs j LEFT JOIN job_secrets s ON s.job_id = j.id "
                f"WHERE j.status IN ({marks}) ORDER BY j.id",
                statuses,
            ).fetchall()
        return [_with_secrets(json.loads(doc), json.loads(kept or "{}")) for doc, kept in rows]

    def list_ids(
        self, status: str | None = None, limit: int | None = None
    ) -> list[tuple[int, str]]:
        sql = "SELECT id, status FROM jobs"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            return [(int(i), s) for i, s in self._conn.execute(sql, args).fetchall()]

    def append_log(
        self, job_id: int, serial: int, kind: str, message: str, data: dict[str, Any] | None
    ) -> dict[str, Any]:
        entry = {
            "serial": serial,
            "time": time.time(),
            "type": kind,
            "message": message,
            "data": data,
        }
        row = (
            job_id,
            serial,
            entry["time"],
            kind,
            message,
            None if data is None else json.dumps(data),
        )
        with self._lock:
            # A log line is progress, not an acknowledgement: it skips the fsync and is
            # made durable by the next job-state commit, whose WAL sync covers it too.
            # A power cut can lose the newest lines, never a job or a status.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute(
                    "INSERT INTO job_log (job_id, serial, time, type, message, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    row,
                )
            finally:
                self._conn.execute("PRAGMA synchronous=FULL")
        return entry

    def last_log_serial(self, job_id: int) -> int:
        """The newest log serial on disk: log lines are written without rewriting the job
        document, so after a crash the document's own counter may lag behind."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(serial), 0) FROM job_log WHERE job_id = ?", (job_id,)
            ).fetchone()
        return int(row[0])

    def read_log(self, job_id: int, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT serial, time, type, message, data FROM job_log "
                "WHERE job_id = ? AND serial > ? ORDER BY serial",
                (job_id, since),
            ).fetchall()
        return [
            {"serial": s, "time": t, "type": k, "message": m, "data": json.loads(d) if d else None}
            for s, t, k, m, d in rows
        ]

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value)
            )

    def add_undo_step(self, job_id: int, op_index: int, kind: str, args: str, what: str) -> int:
        """Store one undo step (committed, and synced as every commit here) and its id."""
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO undo_steps (job_id, op_index, kind, args, what) VALUES (?,?,?,?,?)",
                (job_id, op_index, kind, args, what),
            )
        return int(cur.lastrowid or 0)

    def replace_undo_steps(
        self, job_id: int, op_index: int, kind: str, args: str, what: str
    ) -> int:
        """Delete an op's steps and store one new step, in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "DELETE FROM undo_steps WHERE job_id = ? AND op_index = ?", (job_id, op_index)
                )
                cur = self._conn.execute(
                    "INSERT INTO undo_steps (job_id, op_index, kind, args, what) "
                    "VALUES (?,?,?,?,?)",
                    (job_id, op_index, kind, args, what),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return int(cur.lastrowid or 0)

    def undo_steps(
        self, job_id: int, op_index: int | None = None
    ) -> list[tuple[int, int, str, str, str]]:
        """(id, op index, kind, args, what) of a job's steps (of one op), oldest first."""
        sql = "SELECT id, op_index, kind, args, what FROM undo_steps WHERE job_id = ?"
        params: tuple[int, ...] = (job_id,)
        if op_index is not None:
            sql += " AND op_index = ?"
            params += (op_index,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        return [(int(i), int(o), k, a, w) for i, o, k, a, w in rows]

    def delete_undo_step(self, step_id: int) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM undo_steps WHERE id = ?", (step_id,))

    def delete_undo_steps(self, job_id: int, op_index: int | None = None) -> None:
        sql = "DELETE FROM undo_steps WHERE job_id = ?"
        params: tuple[int, ...] = (job_id,)
        if op_index is not None:
            sql, params = sql + " AND op_index = ?", (job_id, op_index)
        with self._lock:
            self._conn.execute(sql, params)
