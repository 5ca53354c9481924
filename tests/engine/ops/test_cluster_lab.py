"""Cluster init, node add/modify/remove, groups and verify against real lab nodes over SSH.

One cluster is built for the module on the shared three-node lab; each bad-input test
compares the full config dump before and after, so "left the cluster as it was" is
checked, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.crypto.ca import verify_cert
from herd.errors import (
    ConflictError,
    HerdError,
    HostKeyMismatchError,
    NodeError,
    PrerequisiteError,
    ValidationError,
)
from herd.redact import REDACTED
from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import (
    add_node,
    fails_cleanly,
    form_cluster,
    lab_address,
    lab_master,
    run,
)

pytestmark = pytest.mark.lab


def authorized_keys(node: Any) -> str:
    path = Path(node.dir) / "home" / ".ssh" / "authorized_keys"
    return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def cluster(
    lab_cluster: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ThreadMaster, Any]]:
    """Cluster alpha of the first lab node only: the tests add and remove the others."""
    with lab_master(lab_cluster.key_path, tmp_path_factory.mktemp("master")) as running:
        form_cluster(running, lab_cluster.nodes[:1], "alpha", enabled_hypervisors=["fake"])
        yield running, lab_cluster


def test_init_records_master_node_with_pinned_key_and_facts(cluster: Any) -> None:
    running, lab = cluster
    n1 = lab.nodes[0]
    info = running.api.query("cluster")
    assert info["name"] == "alpha"
    assert info["master_node"] == n1.name
    assert info["domain_secret"] == REDACTED
    (node,) = running.api.query("nodes", [n1.name])
    assert node["host_key"].split()[:2] == n1.host_key.split()[:2]
    assert node["total_memory_mib"] > 0 and node["cpus"] > 0 and node["total_disk_mib"] > 0
    assert node["master_candidate"] is True
    assert node["group_name"] == "default"
    cert = (n1.state_dir / "crypto" / "node.pem").read_bytes()
    verify_cert(cert, info["ca_cert_pem"].encode())
    assert info["ssh_public_key"] in authorized_keys(n1)


def test_second_init_is_refused(cluster: Any) -> None:
    running, lab = cluster
    n1 = lab.nodes[0]
    fails_cleanly(
        running,
        ConflictError,
        "cluster.init",
        name="beta",
        master_node=n1.name,
        **lab_address(n1),
    )


def test_node_add_then_verify_is_clean(cluster: Any) -> None:
    running, lab = cluster
    for node in lab.nodes[1:]:
        result = add_node(running, node)
        assert result["changed"] is True
    names = [n["name"] for n in running.api.query("nodes")]
    assert names == sorted(n.name for n in lab.nodes)
    report = run(running, "cluster.verify")
    assert report["ok"], report["problems"]
    assert set(report["nodes"]) == {n.name for n in lab.nodes}


def test_bad_node_adds_leave_cluster_unchanged(cluster: Any) -> None:
    running, lab = cluster
    n2, n3 = lab.nodes[1], lab.nodes[2]
    err = fails_cleanly(running, ConflictError, "node.add", name=n2.name, **lab_address(n2))
    assert err.details["field"] == "name"
    err = fails_cleanly(running, ConflictError, "node.add", name="other", **lab_address(n3))
    assert err.details["field"] == "primary_ip" and err.details["node"] == n3.name
    err = fails_cleanly(
        running,
        ValidationError,
        "node.add",
        name="other2",
        primary_ip="10.77.250.250",
        group="nosuchgroup",
    )
    assert err.details["field"] == "group"
    err = fails_cleanly(
        running, ValidationError, "node.add", name="Bad_Name", primary_ip="10.77.250.250"
    )
    assert "name" in err.details["field"]


def test_unreachable_host_names_the_node(cluster: Any) -> None:
    running, lab = cluster
    prefix = lab.nodes[0].ip.rsplit(".", 1)[0]
    err = fails_cleanly(
        running, NodeError, "node.add", name="ghost", primary_ip=f"{prefix}.250", ssh_port=22
    )
    assert "ghost" in err.message or f"{prefix}.250" in err.message


def test_wrong_host_key_is_refused_before_login(cluster: Any) -> None:
    running, lab = cluster
    n1, spare = lab.nodes[0], lab.nodes[2]
    run(running, "node.remove", name=spare.name)
    keys_before = authorized_keys(spare)
    err = fails_cleanly(
        running,
        HostKeyMismatchError,
        "node.add",
        name=spare.name,
        **lab_address(spare),
        host_key=n1.host_key,
    )
    assert err.details["expected"] != err.details["presented"]
    assert authorized_keys(spare) == keys_before
    add_node(running, spare, host_key=spare.host_key)


def test_failed_join_rolls_back_on_the_node(cluster: Any) -> None:
    """A join failing after the key was installed and files written undoes both."""
    running, lab = cluster
    spare = lab.nodes[2]
    run(running, "node.remove", name=spare.name)
    cluster_key = running.api.query("cluster")["ssh_public_key"]
    assert cluster_key not in authorized_keys(spare)
    blocker = spare.state_dir / "crypto" / "node.key"
    blocker.mkdir(parents=True)
    try:
        fails_cleanly(
            running,
            HerdError,
            "node.add",
            name=spare.name,
            **lab_address(spare),
        )
        assert cluster_key not in authorized_keys(spare)
        assert not (spare.state_dir / "crypto" / "node.pem").exists()
        assert not (spare.state_dir / "crypto" / "ca.pem").exists()
    finally:
        blocker.rmdir()
    add_node(running, spare)


def test_node_remove_drops_trust_and_refuses_master(cluster: Any) -> None:
    running, lab = cluster
    n1, n3 = lab.nodes[0], lab.nodes[2]
    cluster_key = running.api.query("cluster")["ssh_public_key"]
    fails_cleanly(running, PrerequisiteError, "node.remove", name=n1.name)
    fails_cleanly(running, ValidationError, "node.remove", name="nosuchnode")
    assert cluster_key in authorized_keys(n3)
    run(running, "node.remove", name=n3.name)
    assert cluster_key not in authorized_keys(n3)
    assert [n["name"] for n in running.api.query("nodes")] == [n.name for n in lab.nodes[:2]]
    add_node(running, n3)


def test_node_modify_is_idempotent_and_checked(cluster: Any) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes[0], lab.nodes[1]
    assert run(running, "node.modify", name=n2.name, drained=True)["changed"] is True
    assert run(running, "node.modify", name=n2.name, drained=True)["changed"] is False
    fails_cleanly(
        running, ValidationError, "node.modify", name=n2.name, offline=True, master_candidate=True
    )
    fails_cleanly(running, PrerequisiteError, "node.modify", name=n1.name, offline=True)
    result = run(running, "node.modify", name=n2.name, offline=True, drained=False)
    assert result["changes"]["master_candidate"]["after"] is False
    report = run(running, "cluster.verify")
    assert report["ok"]
    assert {
        "node": n2.name,
        "severity": "info",
        "code": "ENODEOFFLINE",
        "message": "node is marked offline: not checked",
    } in report["problems"]
    assert n2.name not in report["orphans"]
    run(running, "node.modify", name=n2.name, offline=False, master_candidate=True)


def test_groups_add_move_rename_remove(cluster: Any) -> None:
    running, lab = cluster
    n3 = lab.nodes[2]
    run(running, "group.add", name="rack2", alloc_policy="last_resort")
    fails_cleanly(running, ConflictError, "group.add", name="rack2")
    fails_cleanly(running, ValidationError, "group.add", name="rack3", alloc_policy="sometimes")
    run(running, "node.modify", name=n3.name, group="rack2")
    assert running.api.query("nodes", [n3.name])[0]["group_name"] == "rack2"
    fails_cleanly(running, PrerequisiteError, "group.remove", name="rack2")
    run(running, "group.rename", name="rack2", new_name="row2")
    assert running.api.query("nodes", [n3.name])[0]["group_name"] == "row2"
    run(running, "node.modify", name=n3.name, group="default")
    run(running, "group.remove", name="row2")
    assert [g["name"] for g in running.api.query("nodegroups")] == ["default"]
    fails_cleanly(running, PrerequisiteError, "group.remove", name="default")


def test_cluster_modify_and_config_restore_round_trip(cluster: Any) -> None:
    running, _ = cluster
    saved = running.api.dump(with_secrets=True)
    result = run(running, "cluster.modify", tags=["prod"], candidate_pool_size=3)
    assert set(result["changes"]) == {"tags", "candidate_pool_size"}
    assert run(running, "cluster.modify", tags=["prod"])["changed"] is False
    fails_cleanly(running, ValidationError, "cluster.modify", enabled_hypervisors=["xen"])
    fails_cleanly(running, ValidationError, "cluster.modify", drbd_port_range="20-10")
    run(running, "config.restore", data=saved)
    restored = running.api.query("cluster")
    assert restored["tags"] == [] and restored["candidate_pool_size"] == 10
    broken = {**saved, "objects": {**saved["objects"], "node": [{"name": 5}]}}
    fails_cleanly(running, ValidationError, "config.restore", data=broken)
    report = run(running, "cluster.verify")
    assert report["ok"], report["problems"]


def test_verify_and_add_report_a_dead_node(scratch_lab: Any, tmp_path: Path) -> None:
    with lab_master(scratch_lab.key_path, tmp_path) as running:
        s1, s2 = scratch_lab.nodes
        form_cluster(running, scratch_lab.nodes, "scratch")
        s2.kill_sshd()
        report = run(running, "cluster.verify")
        assert not report["ok"]
        errors = [p for p in report["problems"] if p["severity"] == "error"]
        assert [p["node"] for p in errors] == [s2.name]
        assert "unreachable" in errors[0]["message"]
        assert errors[0]["code"] == "ENODEUNREACHABLE"
        assert report["orphans"] == {s1.name: []}
        run(running, "node.modify", name=s2.name, offline=True)
        run(running, "node.remove", name=s2.name)
        run(running, "cluster.destroy")
        with pytest.raises(HerdError):
            running.api.query("cluster")
        assert not (running.state_dir / "crypto").exists()


def test_concurrent_adds_of_one_address_admit_one_and_keep_it_intact(cluster: Any) -> None:
    """Two adds of the same host into different groups: one wins, and the loser's
    rollback must not strip the winner's certificates or key from the node."""
    running, lab = cluster
    n3 = lab.nodes[2]
    run(running, "node.remove", name=n3.name)
    run(running, "group.add", name="rack9")
    ids = running.api.submit_many(
        [
            {
                "ops": [
                    {
                        "op": "node.add",
                        "name": name,
                        **lab_address(n3),
                        "group": group,
                    }
                ]
            }
            for name, group in ((n3.name, "default"), ("twin", "rack9"))
        ]
    )
    outcomes = [running.api.wait(i, timeout=60)["status"] for i in ids]
    assert sorted(outcomes) == ["error", "success"]
    (winner,) = [n for n in running.api.query("nodes") if n["primary_ip"] == n3.ip]
    assert run(running, "cluster.verify")["ok"]
    run(running, "node.remove", name=winner["name"])
    run(running, "group.remove", name="rack9")
    add_node(running, n3)
