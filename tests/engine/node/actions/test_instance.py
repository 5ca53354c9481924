"""Instance actions: in-process through the registry, and on lab nodes over real SSH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import herdlab
import paramiko
import pytest

from herd.errors import PrerequisiteError, ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool
from tests.engine.node.helpers import instance_spec

load_all()


def create_disks(call: Any, spec: dict[str, Any]) -> list[str]:
    """Create every disk of ``spec`` through ``call(action, args)``; their paths."""
    return [
        call("disk_create", {"disk": {**d, "instance_uuid": spec["uuid"]}})["path"]
        for d in spec["disks"]
    ]


def test_start_assembles_the_spec_disks_itself(ctx: NodeContext) -> None:
    spec = instance_spec(disks=2)
    paths = create_disks(lambda a, args: dispatch(ctx, a, args), spec)
    assert dispatch(ctx, "instance_start", {"spec": spec})["changed"] is True
    info = dispatch(ctx, "instance_info", {"hypervisor": "fake", "name": "web1"})["instance"]
    assert info["disk_paths"] == paths and info["state"] == "running"
    assert dispatch(ctx, "instance_start", {"spec": spec})["changed"] is False
    console = dispatch(ctx, "instance_console", {"hypervisor": "fake", "name": "web1"})
    assert console["kind"] == "message" and str(info["pid"]) in console["message"]
    stopped = dispatch(ctx, "instance_stop", {"hypervisor": "fake", "name": "web1"})
    assert stopped == {"changed": True, "method": "acpi"}
    assert dispatch(ctx, "instance_list", {"hypervisor": "fake"}) == {
        "changed": False,
        "instances": [],
    }
    with pytest.raises(PrerequisiteError):
        dispatch(ctx, "instance_reboot", {"hypervisor": "fake", "name": "web1"})


@pytest.mark.parametrize(
    ("action", "args", "field"),
    [
        ("instance_start", {"spec": instance_spec(kernel="x")}, "spec.hvparams.kernel"),
        ("instance_start", {"spec": {**instance_spec(), "hypervisor": "xen"}}, "hypervisor"),
        ("instance_start", {"spec": instance_spec(), "disk_paths": []}, "disk_paths"),
        ("instance_stop", {"hypervisor": "fake", "name": "a", "timeout": -1}, "timeout"),
        ("instance_info", {"hypervisor": "fake", "name": "../x"}, "name"),
        (
            "instance_migrate",
            {"hypervisor": "fake", "name": "a", "target_ip": "node2", "port": 1},
            "target_ip",
        ),
        (
            "instance_migrate",
            {"hypervisor": "fake", "name": "a", "target_ip": "10.0.0.1", "port": 70000},
            "port",
        ),
        (
            "instance_migration_accept",
            {"spec": instance_spec(), "bind_ip": "0.0.0.0"},
            "bind_ip",
        ),
        ("instance_migration_accept", {"spec": instance_spec(), "bind_ip": "::"}, "bind_ip"),
        (
            "instance_migrate",
            {
                "hypervisor": "fake",
                "name": "a",
                "target_ip": "10.0.0.1",
                "port": 1,
                "migration_id": "migr-1",
            },
            "cert_pem",
        ),
        (
            "instance_migrate",
            {
                "hypervisor": "fake",
                "name": "a",
                "target_ip": "10.0.0.1",
                "port": 1,
                "migration_id": "../x",
                "cert_pem": "x",
                "key_pem": "x",
                "ca_pem": "x",
            },
            "migration_id",
        ),
    ],
)
def test_bad_requests_name_the_field(
    ctx: NodeContext, action: str, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as err:
        dispatch(ctx, action, args)
    assert err.value.details["field"] == field


def address(node: herdlab.LabNode) -> NodeAddress:
    return NodeAddress(node.name, node.ip, node.host_key, node.port)


def netns_pids(node: herdlab.LabNode) -> set[int]:
    return {int(p) for p in node.exec("ip", "netns", "pids", node.netns).stdout.split()}


@pytest.fixture
def lab_client(lab_cluster: herdlab.Lab) -> Iterator[NodeClient]:
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    with SSHPool(key, connect_timeout=5.0) as pool, NodeClient(pool) as client:
        yield client


@pytest.mark.lab
def test_lab_start_and_stop_on_a_node(lab_cluster: herdlab.Lab, lab_client: NodeClient) -> None:
    node = lab_cluster.nodes[0]
    spec = instance_spec("labvm1")

    def call(action: str, args: dict[str, Any]) -> dict[str, Any]:
        return lab_client.call(address(node), action, args)

    (path,) = create_disks(call, spec)
    assert path.startswith("/var/lib/herd-node/file-storage/")
    pid = call("instance_start", {"spec": spec})["pid"]
    try:
        assert pid in netns_pids(node)
        assert not any(pid in netns_pids(other) for other in lab_cluster.nodes[1:])
        state = node.state_dir / "hv" / "fake" / "labvm1.json"
        assert state.exists()
        info = call("instance_info", {"hypervisor": "fake", "name": "labvm1"})["instance"]
        assert info["state"] == "running" and info["disk_paths"] == [path]
    finally:
        stopped = call("instance_stop", {"hypervisor": "fake", "name": "labvm1", "timeout": 10})
    assert stopped["method"] == "acpi"
    assert pid not in netns_pids(node) and not state.exists()
    assert call("disk_remove", {"disk": {**spec["disks"][0], "instance_uuid": spec["uuid"]}})[
        "changed"
    ]


@pytest.mark.lab
def test_lab_live_migration_between_nodes(lab_cluster: herdlab.Lab, lab_client: NodeClient) -> None:
    source, target = lab_cluster.nodes[1], lab_cluster.nodes[2]
    spec = instance_spec("labvm2", migration_image_mib=8)

    def on(node: herdlab.LabNode) -> Any:
        return lambda action, args: lab_client.call(address(node), action, args)

    assert create_disks(on(source), spec) == create_disks(on(target), spec)
    names = {"hypervisor": "fake", "name": "labvm2"}
    src_pid = on(source)("instance_start", {"spec": spec})["pid"]
    try:
        port = on(target)("instance_migration_accept", {"spec": spec, "bind_ip": target.ip})["port"]
        sent = on(source)(
            "instance_migrate", {**names, "target_ip": target.ip, "port": port, "live": True}
        )
        assert sent["bytes"] == 8 * 1024 * 1024 and sent["target"] == f"{target.ip}:{port}"
        assert on(target)("instance_migration_finish", {**names, "success": True})["changed"]
        assert on(source)("instance_migration_finish", {**names, "success": True})["changed"]
        moved = on(target)("instance_info", names)["instance"]
        assert moved["state"] == "running"
        assert moved["pid"] in netns_pids(target)
        assert src_pid not in netns_pids(source)
        assert on(source)("instance_info", names)["instance"] is None
        guest = Path(target.state_dir / "hv" / "fake" / "labvm2.guest.json").read_text()
        assert sent["sha256"] in guest
        assert moved["disk_paths"] == [spec_path(spec)]
    finally:
        # The lab is shared with tests that expect verify to find no orphan there.
        disk = {**spec["disks"][0], "instance_uuid": spec["uuid"]}
        for node in (source, target):
            on(node)("instance_stop", {**names, "timeout": 10, "force": True})
            on(node)("disk_remove", {"disk": disk})


def spec_path(spec: dict[str, Any]) -> str:
    disk = spec["disks"][0]
    return f"/var/lib/herd-node/file-storage/{spec['uuid']}/disk0-{disk['uuid']}.img"
