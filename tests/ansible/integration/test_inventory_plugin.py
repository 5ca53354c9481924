"""The herd.cluster.herd inventory plugin against a real cluster on lab nodes.

``ansible-inventory --list`` runs as a user runs it, over the master's HTTPS API with a
read-only token and the cluster CA (the way AWX reaches a master), and over the root-only
Unix socket; the instances are real fake-hypervisor guests on real lab nodes, so the run
state the plugin reports with ``live`` is what the nodes say.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.inventory.group import to_safe_group_name

from herd.crypto.ca import ClusterCA
from tests.engine.api.https_master import https_url
from tests.engine.harness import ThreadMaster, cluster_on_lab, poll
from tests.engine.ops.test_instance_lab import install_os

pytestmark = pytest.mark.lab

CLUSTER = "invlab"
Env = tuple[ThreadMaster, Any, Path]


@pytest.fixture(scope="module")
def inventory_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A two-node cluster serving HTTPS, with a running web1 (tagged, with a NIC IP) on
    the second node and a stopped db1 on the first."""
    base = tmp_path_factory.mktemp("master")
    with cluster_on_lab(
        base, "v", 2, CLUSTER, https_bind="127.0.0.1:0", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file"],
    ) as (running, lab):  # fmt: skip
        n1, n2 = lab.nodes
        for node in lab.nodes:
            install_os(node)
        running.api.run(
            [{"op": "instance.add", "name": "web1", "disk_template": "file", "disks": ["16M"],
              "os": "herd-image+tiny", "primary_node": n2.name, "tags": ["web", "env:prod"],
              "nics": [{"ip": "192.0.2.80"}]},
             {"op": "instance.add", "name": "db1", "disk_template": "file", "disks": ["16M"],
              "os": "herd-image+blank", "primary_node": n1.name, "start": False}],
            timeout=300,
        )  # fmt: skip
        poll("HTTPS to start", lambda: running.master.https)
        ca_file = base / "cluster-ca.pem"
        ca_file.write_bytes((running.state_dir / "crypto" / ClusterCA.CERT_FILE).read_bytes())
        yield running, lab, ca_file


def ansible_inventory(
    collections: Path, work: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "lab.herd.yml"
    path.write_text(yaml.safe_dump({"plugin": "herd.cluster.herd", **config}))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HERD_", "ANSIBLE_"))}
    run_env = {
        **clean,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "ansible.cli.inventory", "-i", str(path), "--list"]
    return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=300)


def listed(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The --list answer, with the strings Ansible marks as not to be templated unwrapped."""
    assert run.returncode == 0, run.stderr

    def trusted(obj: dict[str, Any]) -> Any:
        return obj["__ansible_unsafe"] if set(obj) == {"__ansible_unsafe"} else obj

    return dict(json.loads(run.stdout, object_hook=trusted))


def members(data: dict[str, Any], group: str) -> list[str]:
    return sorted(data.get(group, {}).get("hosts", []))


def test_https_with_a_token_groups_composes_and_never_shows_the_token(
    collections: Path, inventory_env: Env, tmp_path: Path
) -> None:
    running, lab, ca_file = inventory_env
    n1, n2 = lab.nodes
    token = running.api.create_token("inventory", read_only=True)
    config = {
        "api_url": https_url(running.master),
        "ca_path": str(ca_file),
        "live": True,
        "want_nodes": True,
        "keyed_groups": [{"key": "herd_os", "prefix": "os"}],
        "compose": {"ansible_port": "herd_ssh_port", "role": "herd_tags[0] | default('none')"},
        "groups": {"stopped_here": "herd_admin_state == 'down'"},
    }
    run = ansible_inventory(collections, tmp_path, config, {"HERD_API_TOKEN": token})
    data = listed(run)

    assert members(data, f"herd_cluster_{CLUSTER}") == ["db1", "web1"]
    assert members(data, "herd_all_nodes") == sorted([n1.name, n2.name])
    assert members(data, to_safe_group_name(f"herd_primary_{n2.name}", force=True)) == ["web1"]
    assert members(data, "herd_group_default") == ["db1", "web1"]
    assert members(data, "herd_tag_env_prod") == ["web1"]
    assert members(data, "herd_state_up") == ["web1"]
    assert members(data, "herd_oper_state_running") == ["web1"]
    assert members(data, "herd_oper_state_stopped") == ["db1"]
    assert members(data, "os_herd_image_tiny") == ["web1"]
    assert members(data, "stopped_here") == ["db1"]

    hostvars = data["_meta"]["hostvars"]
    web = hostvars["web1"]
    assert web["ansible_host"] == "192.0.2.80" and web["herd_ips"] == ["192.0.2.80"]
    assert web["herd_primary_node"] == n2.name and web["herd_disk_template"] == "file"
    assert web["role"] == "web" and hostvars["db1"]["role"] == "none"
    assert web["herd_uuid"] == running.api.query("instances", ["web1"])[0]["uuid"]
    node = hostvars[n2.name]
    assert node["ansible_host"] == n2.ip and node["ansible_port"] == n2.port
    assert token not in run.stdout + run.stderr


def test_the_local_socket_needs_no_credentials(
    collections: Path, inventory_env: Env, tmp_path: Path
) -> None:
    running, _, _ = inventory_env
    data = listed(ansible_inventory(collections, tmp_path, {"socket": str(running.socket)}))
    assert members(data, "herd_all_instances") == ["db1", "web1"]
    assert "herd_all_nodes" not in data and "herd_oper_state_running" not in data


def test_a_wrong_token_fails_the_source_without_echoing_it(
    collections: Path, inventory_env: Env, tmp_path: Path
) -> None:
    running, _, ca_file = inventory_env
    wrong = "herd_not-a-real-token-0123456789"
    config = {"api_url": https_url(running.master), "ca_path": str(ca_file), "api_token": wrong}
    run = ansible_inventory(collections, tmp_path, config)
    assert run.returncode != 0 and "AuthenticationError" in run.stderr
    assert wrong not in run.stdout + run.stderr
