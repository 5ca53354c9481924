"""export.list and export.remove on loopback nodes (real node agent, fake hypervisor,
file storage): which exports the nodes report, and removing them from one or every node.

The exports are written by a real ``instance.export`` (or by hand, as an operator copying
one to a node would); the lab version is test_instance_export.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herd.errors import NodeError, TransferError, ValidationError
from herd.node.actions.export import stream_file
from herd.ops import transfer
from herd.ops.export import begin_work, run_file_end
from tests.engine.loopback import OpEnv, enable_transfers
from tests.engine.ops.test_instance_add import add

DATA = b"herd export test data\n" * 100


def streams(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk streams between the loopback nodes (see ``enable_transfers``), their workers
    polled every few milliseconds instead of every half second: a test waits on their
    outcome, never on the interval."""
    enable_transfers(env)
    monkeypatch.setattr(transfer, "POLL_SECONDS", 0.01)


def disk_image(env: OpEnv, name: str, index: int = 0) -> Path:
    """The file backing disk ``index`` of instance ``name`` on its primary."""
    inst = env.instance(name)
    (node,) = (n for n in env.store.list("node") if n.uuid == inst.primary_node)
    disk = inst.disks[index]
    return env.node_dir(node.name) / f"file-storage/{inst.uuid}/disk{index}-{disk.uuid}.img"


def exported(env: OpEnv, name: str = "web1", node: str = "n2", **export: Any) -> dict[str, Any]:
    """Instance ``name`` created on ``node`` with DATA at the start of its disk, then
    exported (to ``node`` unless ``target_node`` says otherwise): the op's result."""
    env.run(add(name=name, primary_node=node, disks=["4M"]))
    with disk_image(env, name).open("r+b") as image:
        image.write(DATA)
    result: dict[str, Any] = env.run({"op": "instance.export", "name": name, **export})
    return result


def exports(env: OpEnv, node: str) -> list[str]:
    """Export directories on ``node`` (work directories and their hidden leftovers too)."""
    base = env.node_dir(node) / "export"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def listed(result: dict[str, Any]) -> dict[str, list[str]]:
    return {node: [e["name"] for e in found] for node, found in result["exports"].items()}


def test_the_list_reports_every_nodes_exports_with_their_manifests(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    made = exported(env)
    exported(env, "web2", "n1")
    result = env.run({"op": "export.list"})
    assert result["changed"] is False and result["failed"] == {}
    assert listed(result) == {"n1": ["web2"], "n2": ["web1"]}
    (web1,) = result["exports"]["n2"]
    assert web1["disk_template"] == "file" and web1["version"] == 1
    assert [d["digest"] for d in web1["disks"]] == made["digests"]
    assert web1["path"] == str(env.node_dir("n2") / "export" / "web1")
    assert web1["stream_bytes"] == made["stream_bytes"] > 0


def test_the_list_can_be_narrowed_to_nodes_and_names(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    exported(env, "web2")
    assert listed(env.run({"op": "export.list", "names": ["web2"]})) == {"n1": [], "n2": ["web2"]}
    assert listed(env.run({"op": "export.list", "nodes": ["n1"]})) == {"n1": []}
    assert ("n1", "export_list") in env.nodes.calls


def test_an_export_copied_to_a_node_by_hand_is_listed(env: OpEnv) -> None:
    """The master keeps no record of exports: a manifest on disk is all it takes."""
    directory = env.node_dir("n1") / "export" / "old1"
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"version": 1, "name": "old1"}))
    assert listed(env.run({"op": "export.list"})) == {"n1": ["old1"], "n2": []}


def test_an_unreachable_node_is_reported_as_failed_and_the_others_still_listed(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    env.nodes.offline.add("n1")
    result = env.run({"op": "export.list"})
    assert listed(result) == {"n2": ["web1"]}
    assert "node n1" in result["failed"]["n1"] and "offline" in result["failed"]["n1"]


def test_a_node_marked_offline_is_not_asked(env: OpEnv) -> None:
    with env.store.transaction() as txn:
        node = env.node("n1")
        node.offline = True
        txn.update(node)
    assert env.run({"op": "export.list"}) == {"changed": False, "exports": {"n2": []}, "failed": {}}
    assert ("n1", "export_list") not in env.nodes.calls


def test_listing_an_unknown_node_is_refused_naming_it(env: OpEnv) -> None:
    with pytest.raises(
        ValidationError, match="'n9' for field 'nodes': allowed an existing node: n1, n2"
    ):
        env.run({"op": "export.list", "nodes": ["n9"]})


def test_remove_deletes_the_export_from_every_node_holding_it_and_a_rerun_changes_nothing(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    exported(env, "web2")
    env.run({"op": "instance.export", "name": "web1", "target_node": "n1"})
    assert env.run({"op": "export.remove", "name": "web1"}) == {
        "changed": True,
        "removed_from": ["n1", "n2"],
    }
    assert exports(env, "n1") == [] and exports(env, "n2") == ["web2"]
    assert env.run({"op": "export.remove", "name": "web1"}) == {
        "changed": False,
        "removed_from": [],
    }


def test_remove_on_one_node_keeps_the_copy_on_the_other(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    env.run({"op": "instance.export", "name": "web1", "target_node": "n1"})
    assert env.run({"op": "export.remove", "name": "web1", "node": "n1"})["removed_from"] == ["n1"]
    assert exports(env, "n1") == [] and exports(env, "n2") == ["web1"]
    assert ("n2", "export_remove") not in env.nodes.calls


def test_a_node_failing_the_remove_is_named_and_a_rerun_finishes_it(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    env.nodes.fail("export_remove", NodeError("disk is read-only"), node="n2")
    with pytest.raises(NodeError, match="node n2: disk is read-only"):
        env.run({"op": "export.remove", "name": "web1"})
    assert exports(env, "n2") == ["web1"]
    env.nodes.heal()
    assert env.run({"op": "export.remove", "name": "web1"})["removed_from"] == ["n2"]
    assert exports(env, "n2") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": "../etc"}, r"'\.\./etc' for field 'ops\[0\]\.name'"),
        ({"name": "web1", "node": "n9"}, "'n9' for field 'node'"),
    ],
)
def test_remove_refuses_a_bad_name_or_node_before_asking_any_node(
    env: OpEnv, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        env.run({"op": "export.remove", **params})
    assert env.nodes.calls == []


def test_a_work_directory_is_removed_by_its_undo_step_even_when_run_twice(env: OpEnv) -> None:
    """``begin_work`` registers the discard before it asks the node, so a job dying at
    any point leaves a step that removes the directory (and a repeat finds it gone)."""
    ctx = env.context()
    token, path = begin_work(ctx, env.node("n2"))
    (Path(path) / "scratch0.img").write_bytes(DATA)
    assert exports(env, "n2") == [f".work-{token}"]
    (step,) = [s for _, s in ctx.journal.pending()]
    assert ctx.run_undo() == []
    assert exports(env, "n2") == []
    ctx.undo(step.what, step.kind, **step.args)
    assert ctx.run_undo() == []


def test_a_file_end_that_fails_is_reported_by_node_and_aborted_by_its_undo_step(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams(env, monkeypatch)
    exported(env)
    (env.node_dir("n2") / "export" / "web1" / stream_file(0)).write_bytes(b"not a stream")
    ctx = env.context()
    _, work = begin_work(ctx, env.node("n2"))
    with pytest.raises(TransferError, match="restoring disk 0: the import end on n2 failed"):
        run_file_end(
            ctx,
            env.node("n2"),
            "import_disk_start",
            {"name": "web1", "index": 0, "dest_path": f"{work}/s.img", "size_mib": 4},
            "import",
            "restoring disk 0",
        )
    assert [s.kind for _, s in ctx.journal.pending()] == ["export.discard", "export.abort"]
    assert ctx.run_undo() == []
    assert exports(env, "n2") == ["web1"]
