"""The lab tests' shared helpers, checked without a lab: what they send and what they find."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tests.engine.ops.labsupport import disk_images, file_instance, form_cluster


class RecordingApi:
    """Stands in for a master's client: keeps every job's ops, answers each with {}."""

    def __init__(self) -> None:
        self.jobs: list[list[dict[str, Any]]] = []

    def run(self, ops: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
        self.jobs.append(ops)
        return {}


def node(name: str, ip: str, port: int) -> SimpleNamespace:
    return SimpleNamespace(name=name, ip=ip, port=port, host_key=f"ssh-ed25519 {name}")


def test_form_cluster_inits_on_the_first_node_and_adds_the_others_in_order() -> None:
    api = RecordingApi()
    nodes = [node("a", "10.0.0.1", 2201), node("b", "10.0.0.2", 2202), node("c", "10.0.0.3", 22)]
    form_cluster(SimpleNamespace(api=api), nodes, "alpha", enabled_hypervisors=["fake"])  # type: ignore[arg-type]
    assert api.jobs == [
        [{"op": "cluster.init", "name": "alpha", "master_node": "a", "primary_ip": "10.0.0.1",
          "ssh_port": 2201, "enabled_hypervisors": ["fake"]}],
        [{"op": "node.add", "name": "b", "primary_ip": "10.0.0.2", "ssh_port": 2202}],
        [{"op": "node.add", "name": "c", "primary_ip": "10.0.0.3", "ssh_port": 22}],
    ]  # fmt: skip


def test_form_cluster_reaches_nodes_the_way_the_address_says() -> None:
    api = RecordingApi()
    nodes = [node("g1", "10.0.1.1", 22), node("g2", "10.0.1.2", 22)]

    def by_host_key(n: Any) -> dict[str, Any]:
        return {"primary_ip": n.ip, "host_key": n.host_key}

    form_cluster(SimpleNamespace(api=api), nodes, "vm", address=by_host_key)  # type: ignore[arg-type]
    assert [job[0] for job in api.jobs] == [
        {"op": "cluster.init", "name": "vm", "master_node": "g1", "primary_ip": "10.0.1.1",
         "host_key": "ssh-ed25519 g1"},
        {"op": "node.add", "name": "g2", "primary_ip": "10.0.1.2", "host_key": "ssh-ed25519 g2"},
    ]  # fmt: skip


def test_file_instance_lets_a_test_change_any_parameter() -> None:
    assert file_instance("web1", "64M", os="herd-image+tiny") == {
        "name": "web1", "disk_template": "file", "disks": ["64M"], "os": "herd-image+tiny",
    }  # fmt: skip
    assert file_instance("db1", "8M", disk_template="sharedfile")["disk_template"] == "sharedfile"


def test_disk_images_are_the_files_of_the_instances_first_disk(tmp_path: Path) -> None:
    storage = tmp_path / "file-storage" / "web1"
    storage.mkdir(parents=True)
    mine, other = storage / "disk-u1.img", storage / "disk-u2.img"
    for f in (mine, other, storage / "u1.txt"):
        f.write_bytes(b"")
    inst = {"disks": [{"uuid": "u1"}]}
    assert disk_images(SimpleNamespace(state_dir=tmp_path), inst) == [mine]
    assert disk_images(SimpleNamespace(state_dir=tmp_path / "empty"), inst) == []
