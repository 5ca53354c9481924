"""Persistence of jobs and their logs, so the queue survives a master restart.

Jobs live in their own SQLite file beside the config: the queue writes far more often than
the config changes, and keeping them apart lets either be backed up or replaced alone.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from herd.jobs.job import Job

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_log (
    job_id INTEGER NOT NULL, serial INTEGER NOT NULL, time REAL NOT NULL,
    type TEXT NOT NULL, message TEXT NOT NULL, data TEXT,
    PRIMARY KEY (job_id, serial));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JobDB:
    """A single connection guarded by a lock: job writes are small and the queue already
    serialises state changes, so one writer is both simplest and fastest here."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def next_id(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()
        return int(row[0]) + 1

    def save(self, job: Job) -> None:
        doc = json.dumps(job.to_dict(), separators=(",", ":"))
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO jobs (id, status, doc) VALUES (?, ?, ?)",
                (job.id, job.status, doc),
            )

    def save_many(self, jobs: list[Job]) -> None:
        rows = [(j.id, j.status, json.dumps(j.to_dict(), separators=(",", ":"))) for j in jobs]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany(
                "INSERT OR REPLACE INTO jobs (id, status, doc) VALUES (?,?,?)", rows
            )
            self._conn.execute("COMMIT")

    def load(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row[0])) if row else None

    def load_where_status(self, statuses: tuple[str, ...]) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT doc FROM jobs WHERE status IN ({marks}) ORDER BY id", statuses
            ).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

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
        with self._lock:
            self._conn.execute(
                "INSERT INTO job_log (job_id, serial, time, type, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    serial,
                    entry["time"],
                    kind,
                    message,
                    json.dumps(data) if data is not None else None,
                ),
            )
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
