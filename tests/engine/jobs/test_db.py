"""The job database on a real SQLite file: what an acknowledged job may count on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from herd.jobs.db import JobDB
from herd.jobs.job import Job, OpState


def job(job_id: int) -> Job:
    return Job(id=job_id, ops=[OpState(op="debug.delay", params={"duration": 0})])


def insert(db: JobDB, count: int) -> list[int]:
    """Submit ``count`` jobs the way the queue does: ids from ``next_id``, one insert."""
    first = db.next_id()
    db.save_many([job(first + i) for i in range(count)])
    return list(range(first, first + count))


def delete_row(path: Path, job_id: int) -> None:
    """What archiving, a hand clean-up or a lost last write does to the newest job."""
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))


def test_ids_of_deleted_jobs_are_never_handed_out_again(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    db = JobDB(path)
    assert insert(db, 3) == [1, 2, 3]
    db.close()
    delete_row(path, 3)
    db = JobDB(path)
    assert db.next_id() == 4
    assert insert(db, 1) == [4]
    db.close()


def test_a_database_from_before_the_counter_is_seeded_from_its_newest_job(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    db = JobDB(path)
    insert(db, 5)
    db.close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER jobs_next_id")
        conn.execute("DELETE FROM settings")
    db = JobDB(path)
    db.close()
    delete_row(path, 5)
    db = JobDB(path)
    assert db.next_id() == 6
    db.close()


def test_commits_are_synced_in_full(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL may lose the last commits, acknowledged jobs among
    them, to a power cut; FULL syncs every commit."""
    db = JobDB(tmp_path / "jobs.db")
    full = 2
    assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == full
    db.close()
