"""instance.export, instance.import, export.list and export.remove on a real lab cluster.

Disks are real sparse files written with random data and compared by SHA-256; guests are
fake-hypervisor processes inside the nodes' namespaces; exports are read back from the
nodes' state directories, independently of what the ops answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HerdError, PrerequisiteError, ValidationError
from herd.node.transfer.stream import MAGIC
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster, start_thread_master
from tests.engine.ops.test_instance_lab import disk_files, guest_pids, install_os
from tests.engine.ops.test_move_lab import custom_tool, sha, write_data  # noqa: F401
from tests.engine.ops.test_zeroing import (
    MIB,
    fake_state,
    fsck_clean,
    marker,
    placeholder_image,
    write_and_delete,
)

pytestmark = pytest.mark.lab

Env = tuple[ThreadMaster, Any]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, custom_tool: str) -> Iterator[Env]:  # noqa: F811
    labs = make_lab("x", 2)
    lab = next(labs)
    mp = pytest.MonkeyPatch()
    mp.setenv("HERD_BOOTSTRAP_KEY", lab.key_path)
    running = start_thread_master(tmp_path_factory.mktemp("master"))
    n1, n2 = lab.nodes
    try:
        running.api.run(
            [
                {
                    "op": "cluster.init",
                    "name": "bk",
                    "master_node": n1.name,
                    "primary_ip": n1.ip,
                    "ssh_port": n1.port,
                    "enabled_hypervisors": ["fake"],
                    "enabled_disk_templates": ["file", "plain"],
                    "compression_tools": [custom_tool, "herdabsent"],
                },
                {"op": "node.add", "name": n2.name, "primary_ip": n2.ip, "ssh_port": n2.port},
            ],
            timeout=120,
        )
        for node in lab.nodes:
            install_os(node)
        yield running, lab
    finally:
        running.stop()
        mp.undo()
        next(labs, None)


def run(env: Env, op: str, **params: Any) -> Any:
    return env[0].api.run([{"op": op, **params}], timeout=300)


def instance(env: Env, name: str) -> dict[str, Any]:
    (found,) = env[0].api.query("instances", [name])
    return found


def image(env: Env, inst: dict[str, Any]) -> Path:
    node = next(n for n in env[1].nodes if n.name == inst["primary_node_name"])
    (path,) = [f for f in disk_files(node) if inst["disks"][0]["uuid"] in f.name]
    return path


def export_dir(node: Any, name: str) -> Path:
    return node.state_dir / "export" / name


def create(env: Env, name: str, node: Any, **extra: Any) -> tuple[dict[str, Any], str]:
    """An instance with random data at a few offsets of a mostly empty 64 MiB disk."""
    run(
        env,
        "instance.add",
        name=name,
        disk_template="file",
        disks=["64M"],
        os="herd-image+blank",
        primary_node=node.name,
        memory=48,
        tags=["backup"],
        osparams={"fs_label": "bk"},
        **extra,
    )
    inst = instance(env, name)
    write_data(image(env, inst), [5, 30, 60])
    return inst, sha(image(env, inst))


IDENTITY = ("hvparams", "osparams", "tags", "os", "hypervisor", "disk_template")
NIC_IDENTITY = ("mac", "ip", "mode", "link", "name")


def identity(inst: dict[str, Any]) -> dict[str, Any]:
    """What a restore must keep; the memory is pinned (filled) as in a move between clusters."""
    return {
        **{k: inst[k] for k in IDENTITY},
        "nics": [{k: n[k] for k in NIC_IDENTITY} for n in inst["nics"]],
        "memory": inst["beparams"]["memory"],
        "disks": [(d["size_mib"], d["mode"], d["name"]) for d in inst["disks"]],
    }


def test_export_remove_import_restores_disk_and_identity(env: Env) -> None:
    n1, n2 = env[1].nodes
    inst, digest = create(env, "bk1", n1)
    result = run(env, "instance.export", name="bk1", compression="zstd")
    assert result["exported"] and result["target_node"] == n1.name
    assert instance(env, "bk1")["admin_state"] == "up" and len(guest_pids(n1, "bk1")) == 1
    manifest = json.loads((export_dir(n1, "bk1") / "manifest.json").read_text())
    assert manifest["disks"][0]["digest"] == result["digests"][0]
    assert manifest["compression"] == "zstd" and manifest["source_cluster"] == "bk"
    assert [n["mac"] for n in manifest["nics"]] == [n["mac"] for n in inst["nics"]]
    stream = export_dir(n1, "bk1") / "disk0.stream"
    assert stream.read_bytes()[: len(MAGIC)] == MAGIC
    assert stream.stat().st_size < 4 * 2**20  # 1.5 MiB of data in a 64 MiB disk
    listed = run(env, "export.list")["exports"]
    assert [e["name"] for e in listed[n1.name]] == ["bk1"] and listed[n2.name] == []

    again = run(env, "instance.export", name="bk1", compression="zstd", skip_unchanged=True)
    assert again["changed"] is False and again["exported"] is False
    write_data(image(env, inst), [10])
    digest = sha(image(env, inst))
    changed = run(env, "instance.export", name="bk1", compression="zstd", skip_unchanged=True)
    assert changed["exported"] is True and changed["digests"] != result["digests"]

    run(env, "instance.remove", name="bk1")
    restored = run(env, "instance.import", src_node=n1.name, src_name="bk1", primary_node=n2.name)
    assert restored["primary_node"] == n2.name
    back = instance(env, "bk1")
    assert sha(image(env, back)) == digest
    assert identity(back) == identity(inst) and back["uuid"] != inst["uuid"]
    assert back["admin_state"] == "up" and len(guest_pids(n2, "bk1")) == 1
    assert not list((n1.state_dir / "export").glob(".work-*"))

    with pytest.raises(PrerequisiteError):
        run(env, "instance.import", src_node=n1.name, src_name="bk1")
    run(env, "instance.remove", name="bk1")
    assert run(env, "export.remove", name="bk1")["removed_from"] == [n1.name]
    assert not export_dir(n1, "bk1").exists()


def test_export_elsewhere_with_a_custom_tool_and_remove_then_import_there(
    env: Env,
    custom_tool: str,  # noqa: F811
) -> None:
    n1, n2 = env[1].nodes
    inst, digest = create(env, "bk2", n1, start=False)
    result = run(
        env,
        "instance.export",
        name="bk2",
        target_node=n2.name,
        compression=custom_tool,
        remove_instance=True,
    )
    assert result["removed_instance"] and env[0].api.query("instances") == []
    stream = (export_dir(n2, "bk2") / "disk0.stream").read_bytes()
    assert f'"compression": "{custom_tool}"'.encode() in stream[:200]
    assert not export_dir(n1, "bk2").exists() and not list(n2.state_dir.glob("export/*.img"))
    run(env, "instance.import", src_node=n2.name, src_name="bk2", name="bk2b", primary_node=n2.name)
    back = instance(env, "bk2b")
    assert back["admin_state"] == "down" and back["primary_node_name"] == n2.name
    assert sha(image(env, back)) == digest
    assert identity(back) == identity(inst)
    run(env, "instance.remove", name="bk2b")
    run(env, "export.remove", name="bk2")


def test_tampered_export_fails_the_import_and_leaves_nothing(env: Env) -> None:
    n1, n2 = env[1].nodes
    create(env, "bk3", n1)
    run(env, "instance.export", name="bk3", compression="none", remove_instance=True)
    stream = export_dir(n1, "bk3") / "disk0.stream"
    data = bytearray(stream.read_bytes())
    data[len(data) // 2] ^= 0x01
    stream.write_bytes(bytes(data))
    before = env[0].api.dump()
    files = {n.name: disk_files(n) for n in env[1].nodes}
    for node in (n1, n2):
        with pytest.raises(HerdError) as err:
            run(env, "instance.import", src_node=n1.name, src_name="bk3", primary_node=node.name)
        assert "checksum" in err.value.message
    assert env[0].api.dump() == before
    assert {n.name: disk_files(n) for n in env[1].nodes} == files
    assert guest_pids(n1, "bk3") == [] and guest_pids(n2, "bk3") == []
    assert not list((n1.state_dir / "export").glob(".work-*"))
    run(env, "export.remove", name="bk3")


def test_failed_export_leaves_no_export_and_restarts_the_instance(env: Env) -> None:
    n1, _ = env[1].nodes
    create(env, "bk4", n1)
    with pytest.raises(HerdError) as err:
        run(env, "instance.export", name="bk4", compression="herdabsent")
    assert "herdabsent" in err.value.message
    assert sorted(p.name for p in (n1.state_dir / "export").iterdir()) == []
    assert instance(env, "bk4")["admin_state"] == "up" and len(guest_pids(n1, "bk4")) == 1
    run(env, "instance.remove", name="bk4")


def test_zeroing_keeps_deleted_data_out_of_the_export(env: Env, tmp_path: Path) -> None:
    n1 = env[1].nodes[0]
    run(env, "cluster.modify", zeroing_image=placeholder_image(tmp_path / "image"))
    run(env, "instance.add", name="bk4", disk_template="file", disks=["128M"],
        os="herd-image+tiny", primary_node=n1.name)  # fmt: skip
    write_and_delete(image(env, instance(env, "bk4")), 48)
    with pytest.raises(ValidationError) as err:
        run(env, "instance.export", name="bk4", shutdown=False, zero_free_space=True)
    assert err.value.details["field"] == "zero_free_space"

    plain = run(env, "instance.export", name="bk4")
    zeroed = run(env, "instance.export", name="bk4", zero_free_space=True)

    assert plain["stream_bytes"] >= 48 * MIB
    assert zeroed["stream_bytes"] * 4 < plain["stream_bytes"]
    stream = export_dir(n1, "bk4") / "disk0.stream"
    assert stream.stat().st_size * 4 < plain["stream_bytes"]
    disk = image(env, instance(env, "bk4"))
    assert fsck_clean(disk) and "name=bk4" in marker(disk)
    # It was running: it runs again as itself, not as the helper.
    state = fake_state(env[1], n1.name, "bk4")
    assert state is not None and state["status"] == "running" and state["boot"] is None
    run(env, "instance.remove", name="bk4")
    run(env, "export.remove", name="bk4")
