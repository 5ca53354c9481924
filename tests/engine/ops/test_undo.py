"""Undo steps as data: every step the ops record has a handler, and the handlers that a
restarted master may run against a config the dead one committed do no harm.

Node answers come from loopback nodes (real agents on tmp dirs), scripted for DRBD; the
journal these steps go to is tested in tests/engine/jobs/test_journal.py, a real kill -9
in tests/engine/master.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from herd.config.model import Cluster, Disk, Instance, Node
from herd.config.store import SQLiteStore
from herd.errors import NodeError
from herd.locking import LockManager
from herd.ops import drbd
from herd.ops.base import OpContext
from herd.ops.instance_common import disk_arg, undo_disk_create
from herd.ops.undo import MemoryJournal, UndoStep, handler, instance_arg, with_secrets
from herd.redact import REDACTED
from tests.engine.harness import add_nodes
from tests.engine.loopback import LoopbackServices

OPS_DIR = Path(__file__).resolve().parents[3] / "engine" / "herd" / "ops"


class Services:
    """Records node calls; ``unreachable`` nodes raise as a dead node does. Scripted
    rather than loopback for DRBD disks, whose real backend would act on this machine."""

    def __init__(self, unreachable: frozenset[str] = frozenset()) -> None:
        self.unreachable = unreachable
        self.calls: list[tuple[str, str]] = []

    def call(self, node: Node, action: str, args: dict[str, Any], timeout: Any = None) -> Any:
        self.calls.append((node.name, action))
        if node.name in self.unreachable:
            raise NodeError(f"node {node.name} is unreachable")
        return {"changed": True}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    add_nodes(tmp_path, ("n1", "n2"))
    s = SQLiteStore(tmp_path / "config.db")
    yield s
    s.close()


def context(store: Any, services: Any, locks: LockManager | None = None) -> OpContext:
    return OpContext(
        store=store,
        locks=locks or LockManager(),
        owner="job-1",
        log_fn=lambda message, kind, data: None,
        cancel=threading.Event(),
        services=services,
        journal=MemoryJournal(),
    )


def undo_kinds_in_ops() -> list[tuple[str, str]]:
    """(file, kind) of every ``*.undo(what, "kind", ...)`` call in the ops code."""
    found = []
    for path in sorted(OPS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("undo", "replace_undo")
            ):
                kind = node.args[1] if len(node.args) > 1 else None
                assert isinstance(kind, ast.Constant), f"{path.name}:{node.lineno}: kind literal"
                found.append((path.name, kind.value))
    return found


def test_every_undo_step_in_the_ops_has_a_handler() -> None:
    kinds = undo_kinds_in_ops()
    assert len(kinds) > 15
    for name, kind in kinds:
        assert callable(handler(kind)), f"{name}: {kind}"


def test_an_unknown_kind_is_a_reported_failure_not_a_crash() -> None:
    ctx = context(None, None)
    ctx.journal.add(UndoStep("test.gone", {}, "a step of an older version"))
    assert ctx.run_undo() == [
        "a step of an older version: no undo handler for step kind 'test.gone'"
    ]


def test_arguments_that_are_not_json_are_refused_when_recorded() -> None:
    ctx = context(None, None)
    with pytest.raises(TypeError, match=r"cluster\.reset_rpc"):
        ctx.undo("bad", "cluster.reset_rpc", when=object())
    assert ctx.journal.pending() == []


def new_instance(store: Any, template: str, nodes: list[Node]) -> Instance:
    inst = Instance(name="i1", primary_node=nodes[0].uuid, disk_template=template)
    params = {"port": 11000, "minors": {n.name: 0 for n in nodes}} if template == "drbd" else {}
    inst.disks = [
        Disk(name="d0", template=template, size_mib=8, nodes=[n.uuid for n in nodes], params=params)
    ]
    return inst


def loopback(tmp_path: Path) -> LoopbackServices:
    """Real node agents on directories under ``tmp_path`` (see tests/engine/loopback.py)."""
    return LoopbackServices(state_dir=tmp_path, nodes_dir=tmp_path / "nodes")


def test_a_disk_the_config_uses_is_never_removed(store: Any, tmp_path: Path) -> None:
    """The master died after a move committed (disk now on n1) but before its journal
    was cleared: only the copy the config does not name goes."""
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    inst = new_instance(store, "file", [n1])
    with store.transaction() as txn:
        txn.add(inst)
    services = loopback(tmp_path)
    disk = disk_arg(inst, 0, inst.disks[0])
    images = [services.call(node, "disk_create", {"disk": disk})["path"] for node in (n1, n2)]
    services.calls.clear()
    ctx = context(store, services)
    for node in (n1, n2):
        undo_disk_create(ctx, f"remove on {node.name}", node, disk)
    assert ctx.run_undo() == []
    assert services.calls == [("n2", "disk_remove")]
    assert [Path(p).exists() for p in images] == [True, False]


def test_an_unremovable_drbd_disk_keeps_its_port_and_minor(store: Any) -> None:
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    inst = new_instance(store, "drbd", [n1, n2])
    ctx = context(store, Services(unreachable=frozenset({"n2"})))
    for node in (n1, n2):
        undo_disk_create(ctx, f"remove on {node.name}", node, disk_arg(inst, 0, inst.disks[0]))
    table = drbd.RESERVATIONS
    owner = f"orphan:{inst.disks[0].uuid}"
    try:
        (problem,) = ctx.run_undo()
        assert "remove on n2" in problem
        assert table.held(owner) == ({11000}, {"n2": {0}})
        port, minors = table.allocate("job-2", [], (11000, 11001), ["n1", "n2"])
        assert port == 11001 and minors == {"n1": 0, "n2": 1}
    finally:
        table.release(owner)
        table.release("job-2")


def test_forgetting_a_new_instance_twice_is_harmless(store: Any) -> None:
    """A master that died while running the step runs it again at its next start."""
    n1 = store.get("node", "n1")
    inst = new_instance(store, "file", [n1])
    with store.transaction() as txn:
        txn.add(inst)
    locks = LockManager()
    locks.register("instance", [inst.uuid])
    forget = handler("instance.forget")
    for _ in range(2):
        forget(context(store, None, locks), {"uuid": inst.uuid})
    assert store.find("instance", inst.uuid) is None
    assert not [row for row in locks.info() if row["name"] == inst.uuid]


def test_instance_and_node_arguments_round_trip(store: Any) -> None:
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    inst = new_instance(store, "drbd", [n1, n2])
    ctx = context(store, None)
    ctx.undo("demote", "drbd.demote", instance=instance_arg(inst), node=n1.to_dict())
    ((_, step),) = ctx.journal.pending()
    assert Instance.from_dict(step.args["instance"]) == inst
    assert Node.from_dict(step.args["node"]) == n1


def test_an_init_or_join_the_config_holds_is_kept(store: Any, tmp_path: Path) -> None:
    """``cluster.init`` commits its cluster and master node last; a master that died right
    after that commit must not take the keys, CA or node files away again."""
    crypto = tmp_path / "crypto"
    crypto.mkdir()
    n1 = store.get("node", "n1")
    stranger = Node(name="n3", primary_ip="192.0.2.9")
    services = loopback(tmp_path)
    assert services.crypto_dir == crypto
    for node in (n1, stranger):
        services.call(node, "write_file", {"path": "crypto/node.pem", "content": "cert"})
    services.calls.clear()
    with store.transaction() as txn:
        txn.add(Cluster(name="c1", master_node="n1"))
    for kind, args in [
        ("cluster.remove_crypto", {}),
        ("node.remove_file", {"node": n1.to_dict(), "path": "crypto/node.pem"}),
        ("node.remove_file", {"node": stranger.to_dict(), "path": "crypto/node.pem"}),
    ]:
        handler(kind)(context(store, services), args)
    assert crypto.is_dir()
    assert services.calls == [("n3", "remove_file")]
    assert (services.root("n1") / "crypto/node.pem").exists()
    assert not (services.root("n3") / "crypto/node.pem").exists()
    with store.transaction() as txn:
        txn.delete(txn.get("cluster", "c1"))
    handler("cluster.remove_crypto")(context(store, services), {})
    assert not crypto.exists()


def test_a_step_is_kept_without_its_secret_and_gets_it_back_from_the_config(
    store: Any,
) -> None:
    """The journal keeps no DRBD secret; a handler gets the config's for the same disk
    (same uuid and port), nested steps included, and a random one for a disk the config
    does not hold that way (a move's new copy: same uuid, another port)."""
    n1, n2 = store.get("node", "n1"), store.get("node", "n2")
    inst = new_instance(store, "drbd", [n1, n2])
    inst.disks[0].params["secret"] = "config-held-secret"
    with store.transaction() as txn:
        txn.add(inst)
    moved = Instance.from_dict(inst.to_dict())
    moved.disks[0].params["port"] = 11005
    arg = disk_arg(inst, 0, inst.disks[0])
    ctx = context(store, None)
    ctx.undo(
        "reconnect",
        "drbd.reconnect_old",
        instance=instance_arg(inst),
        moved=instance_arg(moved),
        rollback=[{"kind": "disk.remove", "args": {"disk": arg}}],
    )
    ((_, step),) = ctx.journal.pending()
    assert "config-held-secret" not in step.args_json() + json.dumps(step.args)

    args = with_secrets(store, step.args)
    secret_of = Instance.from_dict(args["instance"]).disks[0].params["secret"]
    assert secret_of == args["rollback"][0]["args"]["disk"]["params"]["secret"]
    assert secret_of == "config-held-secret"
    fresh = Instance.from_dict(args["moved"]).disks[0].params["secret"]
    assert fresh not in ("config-held-secret", REDACTED)
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", fresh)
