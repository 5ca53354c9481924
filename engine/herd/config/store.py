"""The state store: versioned JSON documents behind a narrow, backend-neutral interface.

Ops see only ``Store``/``Transaction``; nothing about SQLite leaks through, so an etcd
backend can implement the same few methods later. Correctness rests on two mechanisms:
writers are serialised (``BEGIN IMMEDIATE`` takes SQLite's write lock up front, across
threads and processes alike), and every write checks the object's ``serial`` so a change
computed from an outdated copy is refused instead of silently overwriting a newer one.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, overload, runtime_checkable

from herd.config.model import (
    KINDS,
    SECRET_KEYS,
    VERSION_FIELDS,
    Cluster,
    ConfigObject,
    Instance,
    Node,
    NodeGroup,
    TopObject,
    kind_class,
)
from herd.errors import (
    ConflictError,
    HerdError,
    LockTimeoutError,
    NotFoundError,
    StaleSerialError,
    ValidationError,
)
from herd.redact import REDACTED, find_redacted

FORMAT = 1
#: What a restore from a dump without its secrets is told to use instead.
NEEDS_SECRETS = (
    "the real value: restore from a dump taken with 'herd config dump --with-secrets' "
    "as root on the master (a plain dump has its secrets redacted)"
)

#: What ``Reader.list`` produces, as its implementation is typed: lists are invariant, so
#: no one list type covers all of its overloads.
_Listed = list[Cluster] | list[NodeGroup] | list[Node] | list[Instance] | list[TopObject]


class Reader(Protocol):
    """Lookups by kind, shared by the store (committed state) and a transaction (its view).

    A literal kind returns its own class, so ``get("node", ...)`` is a ``Node`` to the type
    checker; any other string returns the union (and fails at run time if not a kind).
    """

    def _documents(self, kind: str, key: str | None) -> list[dict[str, Any]]:
        """The stored documents of ``kind`` by name, or only the one ``key`` names (its
        uuid before any name): the one primitive a backend provides for the lookups."""
        ...

    @overload
    def find(self, kind: Literal["cluster"], key: str) -> Cluster | None: ...
    @overload
    def find(self, kind: Literal["nodegroup"], key: str) -> NodeGroup | None: ...
    @overload
    def find(self, kind: Literal["node"], key: str) -> Node | None: ...
    @overload
    def find(self, kind: Literal["instance"], key: str) -> Instance | None: ...
    @overload
    def find(self, kind: str, key: str) -> TopObject | None: ...
    def find(self, kind: str, key: str) -> TopObject | None:
        """Look up by uuid first, then by name, so a name can never shadow a uuid."""
        cls = kind_class(kind)
        docs = self._documents(kind, key)
        return cls.from_dict(docs[0]) if docs else None

    @overload
    def get(self, kind: Literal["cluster"], key: str) -> Cluster: ...
    @overload
    def get(self, kind: Literal["nodegroup"], key: str) -> NodeGroup: ...
    @overload
    def get(self, kind: Literal["node"], key: str) -> Node: ...
    @overload
    def get(self, kind: Literal["instance"], key: str) -> Instance: ...
    @overload
    def get(self, kind: str, key: str) -> TopObject: ...
    def get(self, kind: str, key: str) -> TopObject:
        obj = self.find(kind, key)
        if obj is None:
            raise NotFoundError(f"{kind} '{key}' does not exist", kind=kind, key=key)
        return obj

    @overload
    def list(self, kind: Literal["cluster"]) -> builtins.list[Cluster]: ...
    @overload
    def list(self, kind: Literal["nodegroup"]) -> builtins.list[NodeGroup]: ...
    @overload
    def list(self, kind: Literal["node"]) -> builtins.list[Node]: ...
    @overload
    def list(self, kind: Literal["instance"]) -> builtins.list[Instance]: ...
    @overload
    def list(self, kind: str) -> builtins.list[TopObject]: ...
    def list(self, kind: str) -> _Listed:
        cls = kind_class(kind)
        found: builtins.list[TopObject] = [
            cls.from_dict(doc) for doc in self._documents(kind, None)
        ]
        return found


@runtime_checkable
class Transaction(Reader, Protocol):
    """An all-or-nothing unit of writes with a view that includes its own changes."""

    def add(self, obj: TopObject) -> None: ...
    def update(self, obj: TopObject) -> None: ...
    def delete(self, obj: TopObject) -> None: ...


@runtime_checkable
class Store(Reader, Protocol):
    """What ops and the API may rely on, whatever backend holds the state."""

    @property
    def revision(self) -> int: ...
    def transaction(self) -> AbstractContextManager[Transaction]: ...
    def dump(self) -> dict[str, Any]: ...
    def restore(self, data: Any) -> None: ...


# Separate statements: executescript() would commit the surrounding transaction first.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS objects (uuid TEXT PRIMARY KEY, kind TEXT NOT NULL,"
    " name TEXT NOT NULL, serial INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (kind, name))",
)
_INSERT = (
    "INSERT INTO objects (uuid, kind, name, serial, data)"
    " VALUES (:uuid, :kind, :name, :serial, :data)"
)


class _SQLiteReader(ABC):
    """The lookup primitive for the store and a transaction, each on its own connection."""

    @abstractmethod
    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        """The connection whose view the lookups should see."""

    def _documents(self, kind: str, key: str | None) -> list[dict[str, Any]]:
        with self._connection() as conn:
            if key is None:
                rows = conn.execute(
                    "SELECT data FROM objects WHERE kind = ? ORDER BY name", (kind,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT data FROM objects WHERE kind = ? AND (uuid = ? OR name = ?)"
                    " ORDER BY uuid = ? DESC LIMIT 1",
                    (kind, key, key, key),
                ).fetchall()
        return [json.loads(row[0]) for row in rows]


class SQLiteTransaction(_SQLiteReader, Transaction):
    """Writes go straight into the open SQLite transaction; the store commits or rolls back.

    ``add``/``update`` set the new serial and times on the caller's object as well as in
    the stored copy, so the caller can keep modifying and updating the same object.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.dirty = False

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise RuntimeError("transaction already finished")
        yield self._conn

    def close(self) -> None:
        self._conn = None

    def add(self, obj: TopObject) -> None:
        kind = _kind_of(obj)
        with self._connection() as conn:
            # uuids are unique across kinds (they are references); names only within one.
            checks = (
                ("uuid", "SELECT 1 FROM objects WHERE uuid = ?", (obj.uuid,)),
                ("name", "SELECT 1 FROM objects WHERE kind = ? AND name = ?", (kind, obj.name)),
            )
            for column, query, args in checks:
                if conn.execute(query, args).fetchone():
                    value = getattr(obj, column)
                    raise ConflictError(
                        f"cannot add {kind} '{obj.name}': {column} {value!r} already exists",
                        kind=kind,
                        field=column,
                        value=value,
                    )
            now = time.time()
            new = _validated(obj)
            _stamp_new(new, now)
            if isinstance(new, Instance):
                for nested in (*new.disks, *new.nics):
                    _stamp_new(nested, now)
            _write(conn, _INSERT, new)
        _copy_versions(new, obj)
        self.dirty = True

    def update(self, obj: TopObject) -> None:
        kind = _kind_of(obj)
        with self._connection() as conn:
            old = self._current(kind, obj)
            clash = conn.execute(
                "SELECT 1 FROM objects WHERE kind = ? AND name = ? AND uuid != ?",
                (kind, obj.name, obj.uuid),
            ).fetchone()
            if clash:
                raise ConflictError(
                    f"cannot rename {kind} '{old.name}' to '{obj.name}': name already exists",
                    kind=kind,
                    field="name",
                    value=obj.name,
                )
            now = time.time()
            new = _validated(obj)
            new.serial = old.serial + 1
            new.ctime = old.ctime
            new.mtime = now
            if isinstance(new, Instance) and isinstance(old, Instance):
                _version_nested(old.disks, new.disks, now)
                _version_nested(old.nics, new.nics, now)
            _write(
                conn,
                "UPDATE objects SET name = :name, serial = :serial, data = :data"
                " WHERE uuid = :uuid",
                new,
            )
        _copy_versions(new, obj)
        self.dirty = True

    def delete(self, obj: TopObject) -> None:
        kind = _kind_of(obj)
        with self._connection() as conn:
            self._current(kind, obj)
            conn.execute("DELETE FROM objects WHERE uuid = ?", (obj.uuid,))
        self.dirty = True

    def replace_all(self, objects: list[TopObject]) -> None:
        """Swap the entire state; only ``restore`` uses it, after validating ``objects``."""
        with self._connection() as conn:
            conn.execute("DELETE FROM objects")
            for obj in objects:
                _write(conn, _INSERT, obj)
        self.dirty = True

    def _current(self, kind: str, obj: TopObject) -> TopObject:
        """The stored version of ``obj``, provided ``obj`` was derived from it."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM objects WHERE kind = ? AND uuid = ?", (kind, obj.uuid)
            ).fetchone()
        if row is None:
            raise NotFoundError(
                f"{kind} '{obj.name}' ({obj.uuid}) does not exist", kind=kind, key=obj.uuid
            )
        current = kind_class(kind).from_dict(json.loads(row[0]))
        if obj.serial != current.serial:
            raise StaleSerialError(
                f"{kind} '{current.name}' was changed meanwhile: the write is based on serial"
                f" {obj.serial} but the stored serial is {current.serial}",
                kind=kind,
                name=current.name,
                serial=obj.serial,
                current_serial=current.serial,
            )
        return current


class SQLiteStore(_SQLiteReader, Store):
    """The default backend: one SQLite database in WAL mode.

    WAL lets any number of readers proceed while one writer holds a transaction. Each
    thread borrows a connection from a small pool for the duration of one read or one
    transaction: connections are never shared between concurrent users (sqlite3 objects
    are not safe for that), yet readers are not queued behind a writer as they would be
    with a single connection guarded by a lock (measured with four readers and two writers
    in one process: 4-6x the reads, the same number of writes).
    """

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        """``timeout`` bounds how long a writer waits for another writer's transaction."""
        self._path = str(path)
        self._timeout = timeout
        self._idle: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._local = threading.local()
        self._writer = threading.Lock()
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('revision', 0)")
                found = _meta(conn, "format")
                if found != FORMAT:
                    raise HerdError(
                        f"config database {self._path} has format {found}, expected {FORMAT}",
                        path=self._path,
                        format=found,
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode = WAL")
        # The config is the cluster's source of truth: survive power loss, not just crashes.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                self._idle.append(conn)

    def close(self) -> None:
        """Close pooled connections; the store must not be in use by other threads."""
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @property
    def revision(self) -> int:
        """Counts committed writes (by any process), so caches and long polls see change."""
        with self._connection() as conn:
            return _meta(conn, "revision")

    @contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        """Serialised read-modify-write; any exception rolls back every write in it."""
        if getattr(self._local, "in_transaction", False):
            # A second writer lock from the same thread would wait for itself.
            raise RuntimeError("nested config transaction in the same thread")
        # Threads of this process queue on a lock and are woken the moment it is free;
        # left to SQLite's busy handler they would poll with sleeps of up to 100 ms.
        # BEGIN IMMEDIATE still serialises against other processes.
        if not self._writer.acquire(timeout=self._timeout):
            raise LockTimeoutError(
                f"config store busy for {self._timeout}s (writer in this process)",
                path=self._path,
            )
        try:
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as err:
                    if err.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                        raise
                    raise LockTimeoutError(
                        f"config store busy for {self._timeout}s: {err}", path=self._path
                    ) from err
                txn = SQLiteTransaction(conn)
                self._local.in_transaction = True
                try:
                    yield txn
                    if txn.dirty:
                        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                finally:
                    txn.close()
                    self._local.in_transaction = False
        finally:
            self._writer.release()

    def dump(self) -> dict[str, Any]:
        """The whole state, secrets included: this is the root-only backup format."""
        with self._connection() as conn:
            rows = conn.execute("SELECT kind, data FROM objects ORDER BY name").fetchall()
        objects: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        for kind, data in rows:
            objects[kind].append(json.loads(data))
        return {"format": FORMAT, "objects": objects}

    def restore(self, data: Any) -> None:
        """Replace the whole state with ``data``; nothing changes unless all of it is valid."""
        objects = parse_dump(data)
        with self.transaction() as txn:
            txn.replace_all(objects)


def redact_dump(data: dict[str, Any]) -> dict[str, Any]:
    """A dump with every declared secret replaced by the redaction marker: the default
    ``herd config dump``, safe to keep and read, but not restorable."""
    return {
        **data,
        "objects": {
            kind: [kind_class(kind).from_dict(doc).to_dict(redact=True) for doc in docs]
            for kind, docs in data["objects"].items()
        },
    }


def parse_dump(data: Any) -> list[TopObject]:
    """Validate a dump completely, naming kind, object and field of the first problem.

    A redacted dump is refused rather than restored: writing its markers back would
    replace the domain secret and every DRBD secret with a well-known string, and keeping
    the current secrets instead would silently mix two states.
    """
    if not isinstance(data, dict) or set(data) != {"format", "objects"}:
        raise ValidationError("dump", data, "an object with exactly the keys format, objects")
    if data["format"] != FORMAT:
        raise ValidationError("format", data["format"], f"{FORMAT}")
    if not isinstance(data["objects"], dict):
        raise ValidationError("objects", data["objects"], "an object keyed by kind")
    parsed: list[TopObject] = []
    seen_uuids: set[str] = set()
    for kind, docs in data["objects"].items():
        cls = kind_class(kind)
        if not isinstance(docs, list):
            raise ValidationError(f"objects.{kind}", docs, "a list of objects")
        seen_names: set[str] = set()
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict):
                raise ValidationError(f"{kind}[{index}]", doc, f"a {kind} object")
            where = f"{kind}[{doc.get('name', index)}]"
            try:
                obj = cls.from_dict(doc)
            except ValidationError as err:
                raise ValidationError(
                    f"{where}.{err.details['field']}", err.details["value"], err.details["allowed"]
                ) from err
            if obj.serial < 1:
                raise ValidationError(f"{where}.serial", obj.serial, "an integer >= 1 (stored)")
            hidden = find_redacted(doc, SECRET_KEYS, where)
            if hidden:
                raise ValidationError(hidden, REDACTED, NEEDS_SECRETS)
            for attr, seen in (("uuid", seen_uuids), ("name", seen_names)):
                if getattr(obj, attr) in seen:
                    raise ValidationError(f"{where}.{attr}", getattr(obj, attr), "a unique value")
                seen.add(getattr(obj, attr))
            parsed.append(obj)
    return parsed


def _kind_of(obj: TopObject) -> str:
    """Checked at run time too: a caller outside the type checker may pass anything."""
    if type(obj) not in KINDS.values():
        raise ValidationError("obj", obj, f"an object of kind {list(KINDS)}")
    return obj.KIND


def _validated(obj: TopObject) -> TopObject:
    """An independent copy that has passed the same checks as a restored document."""
    return type(obj).from_dict(obj.to_dict())


def _stamp_new(obj: ConfigObject, now: float) -> None:
    obj.serial = 1
    obj.ctime = now
    obj.mtime = now


def _version_nested(old: list[Any], new: list[Any], now: float) -> None:
    """Give nested disks/NICs their own serials: bumped only when their content changed."""
    before = {item.uuid: item for item in old}
    for item in new:
        prior = before.get(item.uuid)
        if prior is None:
            _stamp_new(item, now)
        elif _content(prior) != _content(item):
            item.serial = prior.serial + 1
            item.ctime = prior.ctime
            item.mtime = now
        else:
            _copy_versions(prior, item)


def _content(obj: ConfigObject) -> dict[str, Any]:
    data = obj.to_dict()
    for key in VERSION_FIELDS:
        del data[key]
    return data


def _copy_versions(source: ConfigObject, target: ConfigObject) -> None:
    for key in VERSION_FIELDS:
        setattr(target, key, getattr(source, key))
    if isinstance(source, Instance) and isinstance(target, Instance):
        for src, dst in zip(
            (*source.disks, *source.nics), (*target.disks, *target.nics), strict=True
        ):
            _copy_versions(src, dst)


def _write(conn: sqlite3.Connection, sql: str, obj: TopObject) -> None:
    conn.execute(
        sql,
        {
            "uuid": obj.uuid,
            "kind": obj.KIND,
            "name": obj.name,
            "serial": obj.serial,
            "data": json.dumps(obj.to_dict(), sort_keys=True),
        },
    )


def _meta(conn: sqlite3.Connection, key: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0])
