"""instance.import on loopback nodes (real node agent and transfer workers, fake
hypervisor, file storage): a restore recreates the exported instance with its data, on
the export's node or streamed over TLS to another, and a restore failing anywhere leaves
no instance, disk, scratch copy or worker behind.

The lab version with real SSH is test_instance_export.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from herd.errors import NodeError, NotFoundError, PrerequisiteError, TransferError, ValidationError
from herd.node.transfer import worker
from herd.ops.instance_import import InstanceImport
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_export import DATA, disk_image, exported, exports, streams


@pytest.fixture
def backup(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """web1 exported on n2 and then removed: what is left to restore from."""
    streams(env, monkeypatch)
    made = exported(env)
    env.run({"op": "instance.remove", "name": "web1"})
    return made


def restore(**params: Any) -> dict[str, Any]:
    return {"op": "instance.import", "src_node": "n2", "src_name": "web1", **params}


def manifest_path(env: OpEnv) -> Any:
    return env.node_dir("n2") / "export" / "web1" / "manifest.json"


def edit_manifest(env: OpEnv, **changes: Any) -> None:
    path = manifest_path(env)
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def assert_nothing_left(env: OpEnv) -> None:
    """No instance, disk image, restore work directory, unfinished transfer end or
    private key of one (ended ends keep their status files: cluster.verify reads them)."""
    assert env.store.list("instance") == []
    for node in ("n1", "n2"):
        assert [f for f in env.files(node) if f.startswith("file-storage/")] == [], node
        running = worker.list_ends(env.node_dir(node))
        # A worker that published "done" may still be exiting: only unfinished ones count.
        assert [e for e in running if e["alive"] and e["state"] != "done"] == [], node
        assert [f for f in env.files(node) if f.endswith("key.pem")] == [], node
    assert exports(env, "n2") == ["web1"] and exports(env, "n1") == []
    assert not [row for row in env.locks.info() if row["level"] == "instance"]


@pytest.mark.parametrize("primary", ["n2", "n1"])
def test_a_restore_recreates_the_instance_with_its_identity_and_data(
    env: OpEnv, backup: dict[str, Any], primary: str
) -> None:
    """On the export's node the streams are restored in place; on another node through
    a scratch copy that is streamed over and then removed."""
    manifest = json.loads(manifest_path(env).read_text())
    result = env.run(restore(primary_node=primary))
    inst = env.instance("web1")
    assert result["changed"] is True
    assert (result["primary_node"], result["src_node"], result["src_name"]) == (
        primary,
        "n2",
        "web1",
    )
    assert result["digests"] == backup["digests"]
    assert env.node(primary).uuid == inst.primary_node
    assert [n.mac for n in inst.nics] == [n["mac"] for n in manifest["nics"]]
    assert [d.size_mib for d in inst.disks] == [4]
    assert disk_image(env, "web1").read_bytes()[: len(DATA)] == DATA
    assert exports(env, "n2") == ["web1"], "the export itself stays, scratch copies go"
    assert inst.admin_state == "down", "it did not run when it was exported"


def test_the_new_name_and_start_override_the_export(env: OpEnv, backup: dict[str, Any]) -> None:
    edit_manifest(env, nics=[])
    env.run(restore(name="web7", start=True, primary_node="n2"))
    inst = env.instance("web7")
    assert inst.admin_state == "up"
    info = env.nodes.call(env.node("n2"), "instance_info", {"name": "web7", "hypervisor": "fake"})
    assert info["instance"]["state"] == "running"


def test_an_instance_that_ran_when_exported_is_started_again(
    env: OpEnv, backup: dict[str, Any]
) -> None:
    edit_manifest(env, was_running=True)
    env.run(restore(primary_node="n2"))
    assert env.instance("web1").admin_state == "up"


def test_restoring_next_to_the_original_is_refused_on_its_mac(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    with pytest.raises(PrerequisiteError, match=r"MAC address .* is already in use"):
        env.run(restore(name="web2", primary_node="n1"))
    assert [i.name for i in env.store.list("instance")] == ["web1"]


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"src_name": "web9"}, NotFoundError, "node n2 has no export web9"),
        ({"src_node": "n9"}, ValidationError, "'n9' for field 'src_node'"),
        ({"disk_template": "plain"}, ValidationError, "plain"),
    ],
)
def test_a_bad_source_or_template_is_refused_before_anything_is_made(
    env: OpEnv, backup: dict[str, Any], params: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        env.run(restore(primary_node="n2", **params))
    assert_nothing_left(env)


def test_an_offline_source_node_is_refused(env: OpEnv, backup: dict[str, Any]) -> None:
    with env.store.transaction() as txn:
        node = env.node("n2")
        node.offline = True
        txn.update(node)
    with pytest.raises(PrerequisiteError, match="node n2 is offline: cannot read its exports"):
        env.run(restore(primary_node="n1"))
    assert env.store.list("instance") == []


def test_an_export_of_another_manifest_version_is_refused(
    env: OpEnv, backup: dict[str, Any]
) -> None:
    edit_manifest(env, version=2)
    with pytest.raises(ValidationError, match=r"'web1' for field 'src_name'.*manifest version 1"):
        env.run(restore(primary_node="n2"))
    assert_nothing_left(env)


def test_an_export_changed_while_the_job_waited_is_refused(
    env: OpEnv, backup: dict[str, Any]
) -> None:
    """The locks were planned from the manifest read first; the check reads it again."""
    op = InstanceImport({"src_node": "n2", "src_name": "web1", "primary_node": "n2"})
    ctx = env.context()
    op.load(ctx)
    edit_manifest(env, memory=2048)
    with pytest.raises(PrerequisiteError, match="export web1 on n2 changed while the job waited"):
        op.check(ctx)


@pytest.mark.parametrize("primary", ["n2", "n1"])
def test_a_stream_not_matching_its_manifest_fails_and_leaves_nothing(
    env: OpEnv, backup: dict[str, Any], primary: str
) -> None:
    manifest = json.loads(manifest_path(env).read_text())
    manifest["disks"][0]["digest"] = "0" * 64
    manifest_path(env).write_text(json.dumps(manifest))
    with pytest.raises(TransferError, match="disk 0 of web1: the export's stream does not match"):
        env.run(restore(primary_node=primary))
    assert_nothing_left(env)


@pytest.mark.parametrize(
    ("node", "action"),
    [
        ("n2", "import_disk_start"),
        ("n2", "export_begin"),
        ("n1", "transfer_receive_start"),
        ("n2", "transfer_send_start"),
    ],
)
def test_a_node_failure_at_any_step_of_a_restore_elsewhere_is_undone(
    env: OpEnv, backup: dict[str, Any], node: str, action: str
) -> None:
    env.nodes.fail(action, NodeError(f"{action} broke"), node=node)
    with pytest.raises(NodeError, match=f"node {node}: {action} broke"):
        env.run(restore(primary_node="n1"))
    env.nodes.heal()
    assert_nothing_left(env)
    # Nothing left that would stand in the way of trying again.
    env.run(restore(primary_node="n1"))
    assert disk_image(env, "web1").read_bytes()[: len(DATA)] == DATA
