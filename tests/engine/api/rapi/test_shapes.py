"""Herd objects in Ganeti's RAPI field names and units."""

from __future__ import annotations

from herd.api.rapi import shapes
from herd.config.model import Cluster, Disk, Instance, Nic, Node, NodeGroup

GROUP = NodeGroup(name="default", ndparams={"oob_program": ""}, diskparams={"drbd": {"a": 1}})
M1 = Node(name="m1", primary_ip="192.0.2.1", group=GROUP.uuid, master_candidate=True)
N2 = Node(
    name="n2",
    primary_ip="192.0.2.2",
    secondary_ip="198.51.100.2",
    group=GROUP.uuid,
    total_memory_mib=4096,
    total_disk_mib=20480,
    cpus=4,
)
CLUSTER = Cluster(
    name="alpha",
    master_node="m1",
    hvparams={"kvm": {"kernel_path": "/vmlinuz"}},
    diskparams={"drbd": {"a": 0, "b": 2}},
)
WEB = Instance(
    name="web1",
    primary_node=N2.uuid,
    secondary_nodes=[M1.uuid],
    os="noop",
    beparams={"memory": 512},
    hvparams={"acpi": True},
    disk_template="drbd",
    disks=[Disk(name="d0", size_mib=1024), Disk(name="d1", size_mib=2048)],
    nics=[Nic(name="n0", mac="aa:00:00:00:00:01", ip="10.0.0.5", link="br0")],
    admin_state="up",
    tags=["web"],
)
NAMES = shapes.Names.of([M1, N2], [GROUP])


def test_instance_has_ganetis_fields_in_mib_with_filled_and_custom_params() -> None:
    doc = shapes.instance_shape(WEB, CLUSTER, NAMES, True, N2)
    assert (doc["name"], doc["pnode"], doc["snodes"]) == ("web1", "n2", ["m1"])
    assert (doc["admin_state"], doc["oper_state"], doc["status"]) == ("up", True, "running")
    assert doc["disk.sizes"] == [1024, 2048]
    assert doc["nic.macs"] == ["aa:00:00:00:00:01"]
    assert (doc["nic.ips"], doc["nic.links"], doc["nic.bridges"]) == (
        ["10.0.0.5"],
        ["br0"],
        ["br0"],
    )
    assert doc["beparams"] == {"memory": 512, "vcpus": 1, "auto_balance": True}
    assert doc["custom_beparams"] == {"memory": 512}
    assert doc["hvparams"] == {"kernel_path": "/vmlinuz", "acpi": True}
    assert doc["tags"] == ["web"] and doc["uuid"] == WEB.uuid
    # Herd has no value for these: unknown, not invented.
    assert doc["network_port"] is None and doc["oper_ram"] is None


def test_instance_status_words_follow_ganeti() -> None:
    offline = Node(name="n9", offline=True)
    assert shapes.instance_status("down", False, N2) == "ADMIN_down"
    assert shapes.instance_status("up", False, N2) == "ERROR_down"
    assert shapes.instance_status("down", True, N2) == "ERROR_up"
    assert shapes.instance_status("up", None, N2) == "ERROR_nodedown"
    assert shapes.instance_status("up", None, offline) == "ERROR_nodeoffline"


def test_node_counts_instances_and_reports_sizes_as_stored() -> None:
    doc = shapes.node_shape(N2, CLUSTER, NAMES, [WEB])
    assert (doc["pinst_cnt"], doc["sinst_cnt"], doc["pinst_list"]) == (1, 0, ["web1"])
    assert (doc["mtotal"], doc["dtotal"], doc["ctotal"]) == (4096, 20480, 4)
    assert doc["mfree"] is None and doc["dfree"] is None  # live values: not guessed
    assert (doc["pip"], doc["sip"]) == ("192.0.2.2", "198.51.100.2")
    assert (doc["group.uuid"], doc["group"]) == (GROUP.uuid, "default")
    master = shapes.node_shape(M1, CLUSTER, NAMES, [WEB])
    assert (master["sinst_cnt"], master["sip"], master["mtotal"]) == (1, "192.0.2.1", None)


def test_role_letters_most_significant_first() -> None:
    assert shapes.node_role(M1, CLUSTER) == "M"
    assert shapes.node_role(Node(name="c", master_candidate=True), CLUSTER) == "C"
    assert shapes.node_role(Node(name="d", drained=True), CLUSTER) == "D"
    assert shapes.node_role(Node(name="o", offline=True, drained=True), CLUSTER) == "O"
    assert shapes.node_role(N2, CLUSTER) == "R"


def test_group_lists_members_and_merges_params_over_the_cluster() -> None:
    doc = shapes.group_shape(GROUP, CLUSTER, [M1, N2, Node(name="x", group="other")])
    assert (doc["name"], doc["node_cnt"], doc["node_list"]) == ("default", 2, ["m1", "n2"])
    assert doc["alloc_policy"] == "preferred"
    assert doc["diskparams"] == {"drbd": {"a": 1, "b": 2}}
    assert doc["custom_diskparams"] == {"drbd": {"a": 1}}
    assert doc["ipolicy"] is None


def test_cluster_info_names_the_master_and_nulls_what_herd_lacks() -> None:
    doc = shapes.cluster_info(CLUSTER, "1.2.3")
    assert (doc["name"], doc["master"], doc["software_version"]) == ("alpha", "m1", "1.2.3")
    assert doc["enabled_hypervisors"] == ["kvm"] and doc["default_hypervisor"] == "kvm"
    assert doc["hvparams"] == {"kvm": {"kernel_path": "/vmlinuz"}}
    assert doc["volume_group_name"] is None
