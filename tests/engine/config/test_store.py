from __future__ import annotations

import multiprocessing
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herd.config import (
    KINDS,
    Cluster,
    Disk,
    Instance,
    Nic,
    Node,
    NodeGroup,
    SQLiteStore,
    Store,
    TopObject,
    Transaction,
)
from herd.config.store import redact_dump
from herd.errors import (
    ConflictError,
    HerdError,
    LockTimeoutError,
    NotFoundError,
    StaleSerialError,
    ValidationError,
)
from herd.redact import REDACTED
from tests.engine.typecheck import type_errors

from .strategies import objects_of, states


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "config.db")
    yield s
    s.close()


@pytest.fixture
def populated(store: SQLiteStore) -> SQLiteStore:
    with store.transaction() as txn:
        txn.add(Cluster(name="c1", domain_secret="secret"))
        group = NodeGroup(name="default")
        txn.add(group)
        txn.add(Node(name="node1", group=group.uuid, primary_ip="192.0.2.1"))
        txn.add(Node(name="node2", group=group.uuid, primary_ip="192.0.2.2"))
        txn.add(
            Instance(
                name="web",
                disks=[Disk(name="d0", size_mib=1024), Disk(name="d1", size_mib=2048)],
                nics=[Nic(name="eth0", mac="aa:00:00:00:00:01")],
            )
        )
    return store


def test_sqlite_store_implements_the_protocols(store: SQLiteStore) -> None:
    assert isinstance(store, Store)
    with store.transaction() as txn:
        assert isinstance(txn, Transaction)


# --- round trips -----------------------------------------------------------------------


def _fresh_store() -> tuple[tempfile.TemporaryDirectory[str], SQLiteStore]:
    tmp = tempfile.TemporaryDirectory()
    return tmp, SQLiteStore(Path(tmp.name) / "config.db")


@settings(max_examples=40)
@given(data=st.data(), kind=st.sampled_from(list(KINDS)))
def test_add_get_update_delete_round_trip(data: st.DataObject, kind: str) -> None:
    cls = KINDS[kind]
    first, second = data.draw(objects_of(cls)), data.draw(objects_of(cls))
    tmp, store = _fresh_store()
    with tmp:
        with store.transaction() as txn:
            txn.add(first)
        assert first.serial == 1
        assert store.get(kind, first.uuid) == first
        assert store.get(kind, first.name) == first
        assert store.list(kind) == [first]

        changed = cls.from_dict({**second.to_dict(), "uuid": first.uuid, "serial": 1})
        with store.transaction() as txn:
            txn.update(changed)
        assert changed.serial == 2
        assert changed.ctime == first.ctime
        assert store.get(kind, first.uuid) == changed

        with store.transaction() as txn:
            txn.delete(changed)
        assert store.find(kind, first.uuid) is None
        assert store.list(kind) == []
        store.close()


@settings(max_examples=40)
@given(state=states())
def test_dump_restore_round_trip(state: dict[str, list[TopObject]]) -> None:
    dump = {
        "format": 1,
        "objects": {
            kind: [o.to_dict() for o in sorted(objs, key=lambda o: o.name)]
            for kind, objs in state.items()
        },
    }
    tmp, store = _fresh_store()
    with tmp:
        store.restore(dump)
        assert store.dump() == dump
        for kind, objs in state.items():
            assert store.list(kind) == sorted(objs, key=lambda o: o.name)
        tmp2, other = _fresh_store()
        with tmp2:
            other.restore(store.dump())
            assert other.dump() == dump
            other.close()
        store.close()


def test_dump_includes_secrets(populated: SQLiteStore) -> None:
    dump = populated.dump()
    assert dump["format"] == 1
    assert set(dump["objects"]) == set(KINDS)
    assert dump["objects"]["cluster"][0]["domain_secret"] == "secret"
    assert [n["name"] for n in dump["objects"]["node"]] == ["node1", "node2"]


def test_a_redacted_dump_hides_the_secrets_and_is_refused_by_restore(
    populated: SQLiteStore, tmp_path: Path
) -> None:
    with populated.transaction() as txn:
        web = txn.find("instance", "web")
        web.disks[0].params = {"port": 11000, "secret": "drbd-secret-value"}
        txn.update(web)
    redacted = redact_dump(populated.dump())
    assert "drbd-secret-value" not in str(redacted) and "'secret'" in str(redacted)
    assert redacted["objects"]["cluster"][0]["domain_secret"] == REDACTED
    other = SQLiteStore(tmp_path / "other.db")
    try:
        with pytest.raises(ValidationError) as err:
            other.restore(redacted)
        assert err.value.details["field"] == "cluster[c1].domain_secret"
        assert "--with-secrets" in err.value.details["allowed"]
        assert other.list("cluster") == []
        redacted["objects"]["cluster"][0]["domain_secret"] = "restored"
        with pytest.raises(ValidationError) as err:
            other.restore(redacted)
        assert err.value.details["field"] == "instance[web].disks[0].params.secret"
    finally:
        other.close()


def test_a_plain_field_that_reads_like_the_marker_restores(
    populated: SQLiteStore, tmp_path: Path
) -> None:
    # Hypothesis drew an instance whose hypervisor was "<redacted>": only a secret holding
    # the marker means secrets were lost.
    with populated.transaction() as txn:
        web = txn.find("instance", "web")
        web.hypervisor, web.tags = REDACTED, [REDACTED]
        txn.update(web)
    other = SQLiteStore(tmp_path / "other.db")
    try:
        other.restore(populated.dump())
        assert other.dump() == populated.dump()
    finally:
        other.close()


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    first = SQLiteStore(path)
    with first.transaction() as txn:
        txn.add(Node(name="node1"))
    first.close()
    again = SQLiteStore(path)
    assert again.get("node", "node1").serial == 1
    assert again.revision == 1
    again.close()


def test_opening_a_database_of_another_format_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    SQLiteStore(path).close()
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'format'")
    conn.commit()
    conn.close()
    with pytest.raises(HerdError, match="format 99"):
        SQLiteStore(path)


def test_a_database_written_before_file_storage_dir_was_dropped_still_loads(
    tmp_path: Path,
) -> None:
    """A row carrying the retired field loads; the next write stores it without."""
    import json
    import sqlite3

    path = tmp_path / "config.db"
    first = SQLiteStore(path)
    with first.transaction() as txn:
        txn.add(Cluster(name="c1"))
    first.close()
    conn = sqlite3.connect(path)
    (data,) = conn.execute("SELECT data FROM objects WHERE kind = 'cluster'").fetchone()
    old = {**json.loads(data), "file_storage_dir": "/srv/herd/file-storage"}
    conn.execute("UPDATE objects SET data = ? WHERE kind = 'cluster'", (json.dumps(old),))
    conn.commit()
    conn.close()
    again = SQLiteStore(path)
    cluster = again.get("cluster", "c1")
    cluster.max_running_jobs = 5
    with again.transaction() as txn:
        txn.update(cluster)
    assert "file_storage_dir" not in again.dump()["objects"]["cluster"][0]
    again.close()


def test_a_dump_carrying_file_storage_dir_restores(populated: SQLiteStore) -> None:
    dump = populated.dump()
    (cluster,) = dump["objects"]["cluster"]
    populated.restore(
        {**dump, "objects": {**dump["objects"], "cluster": [{**cluster, "file_storage_dir": "/x"}]}}
    )
    assert populated.dump() == dump


# --- lookups and copies ----------------------------------------------------------------


def test_lookup_by_uuid_or_name_and_missing_objects(populated: SQLiteStore) -> None:
    node = populated.get("node", "node1")
    assert populated.get("node", node.uuid) == node
    assert populated.find("node", "nope") is None
    with pytest.raises(NotFoundError, match="node 'nope'"):
        populated.get("node", "nope")
    assert populated.find("instance", "node1") is None
    with pytest.raises(ValidationError):
        populated.list("vm")


def test_objects_returned_are_independent_copies(populated: SQLiteStore) -> None:
    inst = populated.get("instance", "web")
    inst.disks[0].size_mib = 1
    inst.tags.append("x")
    assert populated.get("instance", "web").disks[0].size_mib == 1024
    assert populated.get("instance", "web").tags == []
    assert populated.get("instance", "web") is not populated.get("instance", "web")


def test_object_added_is_not_aliased_by_the_store(store: SQLiteStore) -> None:
    node = Node(name="n1")
    with store.transaction() as txn:
        txn.add(node)
    node.tags.append("changed-after-add")
    assert store.get("node", "n1").tags == []


def test_transaction_sees_its_own_writes_before_commit(populated: SQLiteStore) -> None:
    with populated.transaction() as txn:
        txn.add(Node(name="node3"))
        assert txn.get("node", "node3").serial == 1
        assert [n.name for n in txn.list("node")] == ["node1", "node2", "node3"]
        assert populated.find("node", "node3") is None
    assert populated.get("node", "node3").serial == 1


# --- conflicts and serials -------------------------------------------------------------


def test_duplicate_name_or_uuid_is_refused_naming_the_field(populated: SQLiteStore) -> None:
    before = populated.dump()
    with pytest.raises(ConflictError) as err, populated.transaction() as txn:
        txn.add(Node(name="node1"))
    assert err.value.details["field"] == "name"
    existing = populated.get("node", "node1")
    with pytest.raises(ConflictError) as err, populated.transaction() as txn:
        txn.add(Instance(uuid=existing.uuid, name="other"))
    assert err.value.details["field"] == "uuid"
    assert populated.dump() == before


def test_same_name_in_different_kinds_is_allowed(populated: SQLiteStore) -> None:
    with populated.transaction() as txn:
        txn.add(Instance(name="node1"))
    assert populated.get("instance", "node1").name == "node1"


def test_rename_onto_an_existing_name_is_refused(populated: SQLiteStore) -> None:
    node = populated.get("node", "node2")
    node.name = "node1"
    with pytest.raises(ConflictError) as err, populated.transaction() as txn:
        txn.update(node)
    assert err.value.details["field"] == "name"
    node.name = "node9"
    with populated.transaction() as txn:
        txn.update(node)
    assert populated.get("node", node.uuid).name == "node9"


def test_stale_update_is_refused_and_state_unchanged(populated: SQLiteStore) -> None:
    mine = populated.get("node", "node1")
    theirs = populated.get("node", "node1")
    mine.drained = True
    with populated.transaction() as txn:
        txn.update(mine)
    revision = populated.revision
    theirs.offline = True
    with pytest.raises(StaleSerialError) as err, populated.transaction() as txn:
        txn.update(theirs)
    message = str(err.value)
    assert "node 'node1'" in message
    assert "serial 1" in message
    assert "stored serial is 2" in message
    assert err.value.details == {
        "kind": "node",
        "name": "node1",
        "serial": 1,
        "current_serial": 2,
    }
    stored = populated.get("node", "node1")
    assert stored == mine
    assert (stored.drained, stored.offline, stored.serial) == (True, False, 2)
    assert populated.revision == revision


def test_stale_delete_is_refused(populated: SQLiteStore) -> None:
    old = populated.get("node", "node1")
    fresh = populated.get("node", "node1")
    with populated.transaction() as txn:
        txn.update(fresh)
    with pytest.raises(StaleSerialError), populated.transaction() as txn:
        txn.delete(old)
    assert populated.find("node", "node1") is not None


def test_update_or_delete_of_missing_object(store: SQLiteStore) -> None:
    ghost = Node(name="ghost", serial=1)
    for action in ("update", "delete"):
        with pytest.raises(NotFoundError), store.transaction() as txn:
            getattr(txn, action)(ghost)


def test_update_sets_serial_and_mtime_on_the_callers_object(populated: SQLiteStore) -> None:
    node = populated.get("node", "node1")
    ctime, mtime = node.ctime, node.mtime
    with populated.transaction() as txn:
        node.ssh_port = 2222
        txn.update(node)
        node.drained = True
        txn.update(node)
    assert node.serial == 3
    assert node.ctime == ctime
    assert node.mtime >= mtime
    assert populated.get("node", "node1") == node


def test_invalid_objects_are_never_written(store: SQLiteStore) -> None:
    bad = Node(name="n1")
    bad.ssh_port = "22"  # type: ignore[assignment]
    with pytest.raises(ValidationError) as err, store.transaction() as txn:
        txn.add(bad)
    assert err.value.details["field"] == "ssh_port"
    with pytest.raises(ValidationError), store.transaction() as txn:
        txn.add({"name": "n1"})  # type: ignore[arg-type]
    assert store.list("node") == []
    assert store.revision == 0


# --- transactions ----------------------------------------------------------------------


def test_exception_rolls_back_every_write(populated: SQLiteStore) -> None:
    before, revision = populated.dump(), populated.revision
    with pytest.raises(RuntimeError, match="boom"), populated.transaction() as txn:
        txn.add(Node(name="node3"))
        cluster = txn.get("cluster", "c1")
        cluster.tags.append("changed")
        txn.update(cluster)
        txn.delete(txn.get("node", "node2"))
        raise RuntimeError("boom")
    assert populated.dump() == before
    assert populated.revision == revision


def test_revision_counts_committed_writes_only(store: SQLiteStore) -> None:
    assert store.revision == 0
    with store.transaction() as txn:
        txn.list("node")
    assert store.revision == 0
    with store.transaction() as txn:
        txn.add(Node(name="a"))
        txn.add(Node(name="b"))
    assert store.revision == 1
    store.restore(store.dump())
    assert store.revision == 2


def test_finished_transaction_cannot_be_used(store: SQLiteStore) -> None:
    with store.transaction() as txn:
        pass
    with pytest.raises(RuntimeError):
        txn.add(Node(name="late"))


def test_nested_transaction_in_one_thread_is_refused(store: SQLiteStore) -> None:
    with store.transaction(), pytest.raises(RuntimeError, match="nested"):
        store.transaction().__enter__()


@pytest.mark.parametrize("shared", [True, False], ids=["same-store", "other-store"])
def test_writer_waiting_too_long_gets_lock_timeout(tmp_path: Path, shared: bool) -> None:
    """Within one store threads queue on its lock; across stores on SQLite's write lock."""
    impatient = SQLiteStore(tmp_path / "config.db", timeout=0.05)
    holder = impatient if shared else SQLiteStore(tmp_path / "config.db")
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.transaction():
            entered.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait()
    try:
        with pytest.raises(LockTimeoutError), impatient.transaction():
            pass
        assert impatient.list("node") == []
    finally:
        release.set()
        thread.join()
    holder.close()
    impatient.close()


# --- concurrency -----------------------------------------------------------------------

WRITES_PER_WORKER = 25


def _append_tags(path: str, worker: str) -> None:
    """Read-modify-write the same object many times; each write must survive."""
    store = SQLiteStore(path)
    for i in range(WRITES_PER_WORKER):
        with store.transaction() as txn:
            cluster = txn.get("cluster", "c1")
            cluster.tags.append(f"{worker}-{i}")
            txn.update(cluster)
    store.close()


def _expect_all_writes(store: SQLiteStore, workers: list[str]) -> None:
    cluster = store.get("cluster", "c1")
    expected = {f"{w}-{i}" for w in workers for i in range(WRITES_PER_WORKER)}
    assert len(cluster.tags) == len(expected)
    assert set(cluster.tags) == expected
    assert cluster.serial == 1 + len(expected)


def test_concurrent_threads_lose_no_updates(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    store = SQLiteStore(path)
    with store.transaction() as txn:
        txn.add(Cluster(name="c1"))
    workers = [f"t{n}" for n in range(6)]

    def run(worker: str) -> None:
        for i in range(WRITES_PER_WORKER):
            with store.transaction() as txn:
                cluster = txn.get("cluster", "c1")
                cluster.tags.append(f"{worker}-{i}")
                txn.update(cluster)
            store.get("cluster", "c1")

    with ThreadPoolExecutor(len(workers)) as pool:
        for future in [pool.submit(run, w) for w in workers]:
            future.result()
    _expect_all_writes(store, workers)
    store.close()


def test_concurrent_processes_lose_no_updates(tmp_path: Path) -> None:
    path = str(tmp_path / "config.db")
    store = SQLiteStore(path)
    with store.transaction() as txn:
        txn.add(Cluster(name="c1"))
    ctx = multiprocessing.get_context("fork")
    workers = ["p0", "p1"]
    procs = [ctx.Process(target=_append_tags, args=(path, w)) for w in workers]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    _expect_all_writes(store, workers)
    assert store.revision == 1 + len(workers) * WRITES_PER_WORKER
    store.close()


def test_optimistic_writers_in_threads_see_stale_serials(populated: SQLiteStore) -> None:
    """Copies read outside a transaction race; exactly one write per serial wins."""
    copies = [populated.get("node", "node1") for _ in range(4)]
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(copies))

    def write(node: Node) -> None:
        start.wait()
        try:
            with populated.transaction() as txn:
                txn.update(node)
            result = "ok"
        except StaleSerialError:
            result = "stale"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(c,)) for c in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok", "stale", "stale", "stale"]
    assert populated.get("node", "node1").serial == 2


# --- nested disks and NICs -------------------------------------------------------------


def test_nested_objects_get_serials_on_add(populated: SQLiteStore) -> None:
    inst = populated.get("instance", "web")
    assert [d.serial for d in inst.disks] == [1, 1]
    assert inst.nics[0].serial == 1
    assert inst.disks[0].ctime == inst.ctime > 0


def test_update_bumps_only_changed_nested_objects(populated: SQLiteStore) -> None:
    inst = populated.get("instance", "web")
    d0, d1, nic = inst.disks[0], inst.disks[1], inst.nics[0]
    before = (d0.mtime, d1.mtime, nic.mtime)
    inst.disks[0].size_mib = 4096
    inst.nics.append(Nic(name="eth1"))
    with populated.transaction() as txn:
        txn.update(inst)
    stored = populated.get("instance", "web")
    assert stored == inst
    assert stored.serial == 2
    assert [d.serial for d in stored.disks] == [2, 1]
    assert stored.disks[0].mtime == stored.mtime >= before[0]
    assert stored.disks[0].ctime == d0.ctime
    assert stored.disks[1].mtime == before[1]
    assert stored.nics[0].serial == 1
    assert stored.nics[0].mtime == before[2]
    assert stored.nics[1].serial == 1
    assert stored.nics[1].ctime == stored.mtime

    stored.disks[0].params["lv"] = "xenvg/disk0"
    with populated.transaction() as txn:
        txn.update(stored)
    again = populated.get("instance", "web")
    assert [d.serial for d in again.disks] == [3, 1]
    assert again.serial == 3


def test_nested_versions_are_kept_by_the_store_not_the_caller(populated: SQLiteStore) -> None:
    inst = populated.get("instance", "web")
    inst.disks[1].serial = 42
    inst.tags.append("x")
    with populated.transaction() as txn:
        txn.update(inst)
    assert [d.serial for d in populated.get("instance", "web").disks] == [1, 1]


# --- restore validation ----------------------------------------------------------------


def _bad_dumps(good: dict[str, Any]) -> list[tuple[Any, str]]:
    def variant(kind: str, index: int, **changes: Any) -> dict[str, Any]:
        objects = {k: [dict(o) for o in v] for k, v in good["objects"].items()}
        objects[kind][index].update(changes)
        return {"format": 1, "objects": objects}

    disk = good["objects"]["instance"][0]["disks"][0]
    return [
        (variant("node", 0, bogus=1), "node[node1].bogus"),
        (variant("node", 1, ssh_port="22"), "node[node2].ssh_port"),
        (
            variant("instance", 0, disks=[{**disk, "size_mib": "big"}]),
            "instance[web].disks[0].size_mib",
        ),
        (variant("nodegroup", 0, alloc_policy="sometimes"), "nodegroup[default].alloc_policy"),
        (variant("node", 1, name="node1"), "node[node1].name"),
        (variant("node", 1, uuid=good["objects"]["cluster"][0]["uuid"]), "node[node2].uuid"),
        (variant("node", 0, serial=0), "node[node1].serial"),
        ({"format": 2, "objects": good["objects"]}, "format"),
        ({"format": 1, "objects": {**good["objects"], "vm": []}}, "kind"),
        ({"format": 1, "objects": {"node": {"a": 1}}}, "objects.node"),
        ({"format": 1, "objects": {"node": ["node1"]}}, "node[0]"),
        ({"format": 1}, "dump"),
        ([], "dump"),
    ]


def test_restore_rejects_bad_documents_and_keeps_old_state(populated: SQLiteStore) -> None:
    good = populated.dump()
    revision = populated.revision
    for bad, field in _bad_dumps(good):
        with pytest.raises(ValidationError) as err:
            populated.restore(bad)
        assert err.value.details["field"] == field, bad
        assert populated.dump() == good
        assert populated.revision == revision


def test_restore_replaces_everything(populated: SQLiteStore) -> None:
    node = Node(name="solo", serial=7, ctime=1.0, mtime=2.0)
    populated.restore({"format": 1, "objects": {"node": [node.to_dict()]}})
    assert populated.list("instance") == []
    assert populated.list("cluster") == []
    assert populated.list("node") == [node]


def test_a_literal_kind_gives_its_own_class_to_the_type_checker(tmp_path: Path) -> None:
    source = (
        "from herd.config.store import Store, Transaction\n"
        "def use(store: Store, txn: Transaction) -> list[str | None]:\n"
        "    node = store.get('node', 'n1')\n"
        "    found = txn.find('instance', 'i1')\n"
        "    return [\n"
        "        node.secondary_ip,\n"
        "        found.primary_node if found else None,\n"
        "        *(g.alloc_policy for g in txn.list('nodegroup')),\n"
        "        store.list('cluster')[0].mac_prefix,\n"
        "    ]\n"
        "def any_kind(store: Store, kind: str) -> str:\n"
        "    return store.get(kind, 'x').secondary_ip\n"
    )
    errors = type_errors(source, tmp_path)
    # Any other string still gives the union: a kind the checker cannot see is not trusted.
    assert errors, "a kind from a plain string came back as a Node"
    assert all("snippet.py:12:" in e and "[union-attr]" in e for e in errors), errors
