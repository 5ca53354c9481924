"""cluster.init / modify / verify / destroy on loopback nodes.

The SSH-only steps of a join (host key, cluster key) are faked as in test_nodejoin.py;
the real SSH run, with namespaces and sshd, is tests/engine/ops/test_cluster_lab.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from herd.config import Cluster, Node
from herd.errors import ConflictError, NodeError, PrerequisiteError, ValidationError
from herd.node.hv import fake as fake_hv
from herd.ops import cluster as cluster_ops
from herd.ops import nodejoin, orphans
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_nodejoin import (
    CLUSTER_KEY,
    FakeSSH,
    crypto_files,
    fake_ssh,
    host_key,
    install_files,
)

SECRET = "ab" * 32


def cluster(env: OpEnv) -> Cluster:
    found = env.store.list("cluster")[0]
    assert isinstance(found, Cluster)
    return found


def codes(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(p["node"], p["severity"], p["code"]) for p in result["problems"]]


@pytest.fixture(autouse=True)
def no_foreign_guests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback nodes are directories sharing this machine's processes, so the fake
    hypervisor's process scan would show any fake guest running anywhere here (another
    test's) on every node as an orphan. These tests start none: there is none to find."""
    monkeypatch.setattr(fake_hv, "list_processes", lambda ctx: [])


@pytest.fixture
def trusted(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> OpEnv:
    """``env`` as a join leaves it: the CA stored and installed on n1 and n2."""
    fake_ssh(env, monkeypatch)
    install_files(env, "n1", "n2")
    return env


def verify(env: OpEnv) -> dict[str, Any]:
    result = env.run({"op": "cluster.verify"})
    assert isinstance(result, dict)
    return result


# --- cluster.modify ----------------------------------------------------------------


def test_modify_stores_a_change_and_a_rerun_changes_nothing(env: OpEnv) -> None:
    op = {"op": "cluster.modify", "mac_prefix": "aa:bb:00", "drbd_port_range": "11000-11099"}
    assert env.run(op) == {
        "changed": True,
        "changes": {
            "mac_prefix": {"before": "aa:00:00", "after": "aa:bb:00"},
            "drbd_port_range": {"before": [11000, 14999], "after": [11000, 11099]},
        },
    }
    assert (cluster(env).mac_prefix, tuple(cluster(env).drbd_port_range)) == (
        "aa:bb:00",
        (11000, 11099),
    )
    assert env.run(op) == {"changed": False, "changes": {}}
    assert env.nodes.calls == []


def test_a_dry_run_reports_what_would_change_and_stores_nothing(env: OpEnv) -> None:
    result = env.run({"op": "cluster.modify", "candidate_pool_size": 3, "dry_run": True})
    assert result == {
        "changed": False,
        "would_change": ["candidate_pool_size"],
        "changes": {"candidate_pool_size": {"before": 10, "after": 3}},
    }
    assert cluster(env).candidate_pool_size == 10


def test_a_dry_run_tells_whether_a_domain_secret_is_the_clusters(env: OpEnv) -> None:
    """How the cluster module learns it without any query showing the secret."""
    probe = {"op": "cluster.modify", "domain_secret": SECRET, "dry_run": True}
    result = env.run(probe)
    assert result["would_change"] == ["domain_secret"]
    assert SECRET not in str(result) and cluster(env).domain_secret != SECRET
    env.run({"op": "cluster.modify", "domain_secret": SECRET})
    assert env.run(probe) == {"changed": False, "changes": {}}
    assert cluster(env).domain_secret == SECRET


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("mac_prefix", "ab:00:00"),
        ("mac_prefix", "AA:00:00"),
        ("enabled_hypervisors", []),
        ("enabled_hypervisors", ["xen"]),
        ("candidate_pool_size", 0),
        ("domain_secret", "abcd"),
        ("drbd_port_range", "12000-11000"),
        ("compression_tools", ["gzip -9"]),
        ("zeroing_image", "images/zero"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(env: OpEnv, setting: str, value: Any) -> None:
    before = cluster(env).to_dict()
    with pytest.raises(ValidationError) as failed:
        env.run({"op": "cluster.modify", setting: value})
    assert failed.value.details["field"] == f"ops[0].{setting}"
    assert cluster(env).to_dict() == before


def test_file_storage_dir_is_no_setting_any_more(env: OpEnv) -> None:
    """No node ever read it, so accepting it would pretend disks moved: it is refused as
    unknown, and the cluster no longer reports a directory its nodes do not use."""
    with pytest.raises(
        ValidationError, match=r"unknown field 'ops\[0\]\.file_storage_dir'"
    ) as failed:
        env.run({"op": "cluster.modify", "file_storage_dir": "/srv/herd/file-storage"})
    assert failed.value.details["field"] == "ops[0].file_storage_dir"
    assert "file_storage_dir" not in cluster(env).to_dict(redact=True)


# --- cluster.verify ----------------------------------------------------------------


def test_a_joined_cluster_verifies_clean(trusted: OpEnv) -> None:
    result = verify(trusted)
    assert (result["ok"], result["problems"]) == (True, [])
    assert set(result["nodes"]) == {"n1", "n2"}
    assert result["orphans"] == {"n1": [], "n2": []} and result["drbd"] == {}


def test_missing_node_certificates_are_each_an_error(env: OpEnv) -> None:
    result = verify(env)
    assert not result["ok"]
    missing = {(p["node"], p["object"]) for p in result["problems"]}
    assert missing == {(n, f) for n in ("n1", "n2") for f in nodejoin.NODE_FILES}
    assert {p["code"] for p in result["problems"]} == {"ENODEFILECHECK"}


def test_a_node_with_another_ca_is_named(trusted: OpEnv) -> None:
    (trusted.node_dir("n2") / nodejoin.NODE_CA).write_text("another CA\n")
    result = verify(trusted)
    assert codes(result) == [("n2", "error", "ENODEFILECHECK")]
    assert "differs from the cluster CA" in result["problems"][0]["message"]


def test_an_unreachable_node_is_an_error_and_not_inventoried(trusted: OpEnv) -> None:
    trusted.nodes.offline.add("n2")
    result = verify(trusted)
    assert (result["ok"], codes(result)) == (False, [("n2", "error", "ENODEUNREACHABLE")])
    assert set(result["orphans"]) == set(result["nodes"]) == {"n1"}


def test_a_node_marked_offline_is_not_checked(trusted: OpEnv) -> None:
    trusted.run({"op": "node.modify", "name": "n2", "offline": True})
    trusted.nodes.calls.clear()
    result = verify(trusted)
    assert (result["ok"], codes(result)) == (True, [("n2", "info", "ENODEOFFLINE")])
    assert not [c for c in trusted.nodes.calls if c[0] == "n2"]


def test_a_short_candidate_pool_is_a_warning(trusted: OpEnv) -> None:
    trusted.run({"op": "node.modify", "name": "n2", "master_candidate": False})
    result = verify(trusted)
    assert (result["ok"], codes(result)) == (True, [("cluster", "warning", "ECLUSTERCFG")])


def test_a_node_in_a_missing_group_is_a_config_error(trusted: OpEnv) -> None:
    with trusted.store.transaction() as txn:
        node = txn.get("node", "n2")
        assert isinstance(node, Node)
        node.group = "no-such-group"
        txn.update(node)
    assert codes(verify(trusted)) == [("n2", "error", "ECLUSTERCFG")]


def master_clock_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_ops, "time", SimpleNamespace(time=lambda: time.time() - 60))


def master_version_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_ops, "herd", SimpleNamespace(__version__="0.0.0"))


@pytest.mark.parametrize(
    ("patch", "code"),
    [(master_version_other, "ENODEVERSION"), (master_clock_behind, "ENODETIME")],
)
def test_a_node_differing_from_the_master_is_an_error(
    trusted: OpEnv,
    monkeypatch: pytest.MonkeyPatch,
    patch: Callable[[pytest.MonkeyPatch], None],
    code: str,
) -> None:
    patch(monkeypatch)
    result = verify(trusted)
    assert codes(result) == [("n1", "error", code), ("n2", "error", code)]


def test_a_failed_file_check_is_reported_as_such_not_as_missing_files(trusted: OpEnv) -> None:
    trusted.nodes.fail("check_files", NodeError("disk read error"), node="n2")
    result = verify(trusted)
    assert codes(result) == [("n2", "error", "ENODEFILECHECK")]
    assert "could not check files" in result["problems"][0]["message"]
    assert "disk read error" in result["problems"][0]["message"]


def test_a_failed_inventory_is_an_error_and_the_node_unlisted(trusted: OpEnv) -> None:
    trusted.nodes.fail("inventory", NodeError("lvs hung"), node="n2")
    result = verify(trusted)
    assert codes(result) == [("n2", "error", orphans.INVENTORY)]
    assert "lvs hung" in result["problems"][0]["message"]
    assert list(result["orphans"]) == ["n1"]


# --- cluster.destroy ---------------------------------------------------------------


def test_destroy_is_refused_while_other_nodes_are_in(env: OpEnv) -> None:
    with pytest.raises(PrerequisiteError, match=r"other than the master.*: n2") as failed:
        env.run({"op": "cluster.destroy"})
    assert failed.value.details["nodes"] == ["n2"]
    assert env.store.list("cluster") and env.nodes.calls == []


def test_destroy_is_refused_while_instances_exist(make_env: Callable[..., OpEnv]) -> None:
    env = make_env(nodes=("n1",))
    env.run(
        {
            "op": "instance.add",
            "name": "web1",
            "disk_template": "file",
            "disks": ["4M"],
            "primary_node": "n1",
            "install": False,
            "start": False,
        }
    )
    with pytest.raises(PrerequisiteError, match="instances exist"):
        env.run({"op": "cluster.destroy"})
    assert env.store.list("cluster") and env.store.list("instance")


def test_destroying_a_one_node_cluster_leaves_no_trace(
    make_env: Callable[..., OpEnv], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(nodes=("n1",))
    ssh = fake_ssh(env, monkeypatch)
    install_files(env, "n1")
    ssh.authorized["n1"] = {CLUSTER_KEY}
    result = env.run({"op": "cluster.destroy"})
    assert result == {"changed": True, "cluster": "c1", "cleanup_problems": []}
    assert [env.store.list(kind) for kind in ("cluster", "nodegroup", "node")] == [[], [], []]
    assert crypto_files(env, "n1") == [] and ssh.authorized["n1"] == set()
    assert not env.nodes.crypto_dir.exists()
    assert [row for row in env.locks.info() if row["level"] != "cluster"] == []


# --- cluster.init ------------------------------------------------------------------

INIT = {
    "op": "cluster.init",
    "name": "c2",
    "master_node": "n1",
    "primary_ip": "192.0.2.1",
    "enabled_hypervisors": ["fake"],
    "enabled_disk_templates": ["file"],
}


@pytest.fixture
def bare(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> FakeSSH:
    """``env`` before any cluster: an empty config and n1's agent root only."""
    with env.store.transaction() as txn:
        for kind in ("node", "nodegroup", "cluster"):
            for obj in txn.list(kind):
                txn.delete(obj)
    ssh = fake_ssh(env, monkeypatch, cluster=False)
    ssh.presented["192.0.2.1"] = host_key()
    return ssh


def test_init_is_refused_beside_an_existing_cluster(env: OpEnv) -> None:
    with pytest.raises(ConflictError, match="a cluster already exists here: c1"):
        env.run(INIT)
    assert cluster(env).name == "c1" and env.nodes.calls == []


def test_init_makes_keys_config_and_the_master_node(bare: FakeSSH, env: OpEnv) -> None:
    assert env.run(INIT) == {"cluster": "c2", "master_node": "n1", "changed": True}
    made = cluster(env)
    assert (made.name, made.master_node, made.enabled_hypervisors) == ("c2", "n1", ["fake"])
    assert made.ca_cert_pem and bare.authorized["n1"] == {made.ssh_public_key}
    assert env.node("n1").master_candidate and env.store.get("nodegroup", "default")
    assert crypto_files(env, "n1") == sorted(nodejoin.NODE_FILES)
    assert env.nodes.ssh_key_path.exists()


@pytest.mark.parametrize("action", ["ping", "write_file"])
def test_a_failed_init_leaves_no_keys_config_or_node_files(
    bare: FakeSSH, env: OpEnv, action: str
) -> None:
    env.nodes.fail(action, NodeError(f"{action} broke"), node="n1")
    with pytest.raises(NodeError, match=f"{action} broke"):
        env.run(INIT)
    assert env.store.list("cluster") == [] and env.store.list("node") == []
    assert not env.nodes.crypto_dir.exists()
    assert crypto_files(env, "n1") == [] and bare.authorized["n1"] == set()


def test_init_undo_keeps_the_keys_of_a_committed_cluster_only(
    env: OpEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master that died right after init's commit runs its undo at the next start:
    the stored cluster's keys stay; with no cluster stored they go."""
    fake_ssh(env, monkeypatch)
    for stored in (True, False):
        if not stored:
            with env.store.transaction() as txn:
                txn.delete(txn.list("cluster")[0])
        ctx = env.context()
        ctx.undo("remove the cluster's keys and CA", "cluster.remove_crypto")
        assert ctx.run_undo() == []
        assert env.nodes.crypto_dir.exists() is stored
