"""The lab's Ansible inventory: Ansible reaches every node with it, host keys checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import herdlab
import herdlab_inventory
import pytest

pytestmark = pytest.mark.lab

LAB = Path(herdlab.__file__).resolve().parent


def ansible(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_a_saved_inventory_reaches_every_node_with_host_keys_checked(
    lab_cluster: herdlab.Lab, tmp_path: Path
) -> None:
    saved = tmp_path / "lab.json"
    printed = subprocess.run(
        [sys.executable, str(LAB / "herdlab.py"), "inventory", "--name", lab_cluster.name],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    saved.write_text(printed.stdout)
    done = ansible("ansible", "-i", str(saved), "herd_nodes", "-m", "ansible.builtin.ping")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(lab_cluster.nodes)
    node_vars = json.loads(printed.stdout)["all"]["children"]["herd_nodes"]["vars"]
    assert "StrictHostKeyChecking=yes" in node_vars["ansible_ssh_common_args"]


def test_a_wrong_host_key_is_refused(lab_cluster: herdlab.Lab, tmp_path: Path) -> None:
    """The known_hosts the inventory writes is what Ansible checks against."""
    inventory = herdlab.inventory(lab_cluster.name)
    known = Path(lab_cluster.dir) / "known_hosts"
    other = lab_cluster.nodes[1].host_key
    known.write_text(f"{lab_cluster.nodes[0].ip} {other}\n")
    saved = tmp_path / "lab.json"
    saved.write_text(json.dumps(inventory))
    # A fresh control path: a master connection an earlier test left (ControlPersist)
    # would be reused without any host key check.
    fresh = f"ansible_control_path_dir={tmp_path / 'ssh'}"
    done = ansible("ansible", "-i", str(saved), "n1", "-m", "ansible.builtin.ping", "-e", fresh)
    assert done.returncode != 0
    assert "host key" in (done.stdout + done.stderr).lower()
    herdlab.inventory(lab_cluster.name)  # writes the right known_hosts back


def test_the_inventory_script_lists_what_the_saved_inventory_holds(
    lab_cluster: herdlab.Lab,
) -> None:
    script = str(LAB / "herdlab_inventory.py")
    done = ansible("ansible-inventory", "-i", script, "--list", env={"HERD_LAB": lab_cluster.name})
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["herd_nodes"]["hosts"] == [f"n{i}" for i in range(1, len(lab_cluster.nodes) + 1)]
    hostvars = listed["_meta"]["hostvars"]
    assert hostvars["n1"]["ansible_host"] == lab_cluster.nodes[0].ip
    assert hostvars["controller"]["herd_master_socket"].startswith(lab_cluster.dir)


def test_without_a_lab_the_script_lists_no_host() -> None:
    assert herdlab_inventory.as_script_output(
        {"all": {"vars": {}, "children": {"g": {"hosts": {}}}}}
    ) == {"all": {"vars": {}}, "g": {"hosts": [], "vars": {}}, "_meta": {"hostvars": {}}}
    done = ansible(
        sys.executable, str(LAB / "herdlab_inventory.py"), "--list", env={"HERD_LAB": "nosuch"}
    )
    assert json.loads(done.stdout) == {"_meta": {"hostvars": {}}}


def test_the_lab_cluster_settings_enable_only_what_lab_nodes_can_hold(
    lab_cluster: herdlab.Lab,
) -> None:
    """No plain or drbd (lab nodes have no volume group); kvm boots the tiny guest."""
    settings = herdlab.inventory(lab_cluster.name)["all"]["vars"]["herd_cluster_settings"]
    assert settings["enabled_disk_templates"] == ["file", "sharedfile"]
    kvm = settings["hvparams"]["kvm"]
    assert kvm["acceleration"] == "tcg"
    assert Path(kvm["kernel_path"]).is_file() and Path(kvm["initrd_path"]).is_file()


def test_settings_of_a_group_replace_the_lab_defaults(
    lab_cluster: herdlab.Lab, tmp_path: Path
) -> None:
    """As a Molecule scenario's inventory.yml sets them beside the inventory script."""
    group = tmp_path / "inventory.yml"
    group.write_text(
        "herd_masters:\n  vars:\n    herd_cluster_settings: {enabled_hypervisors: [fake]}\n"
    )
    script = str(LAB / "herdlab_inventory.py")
    done = ansible(
        "ansible-inventory", "-i", script, "-i", str(group), "--host", "controller",
        env={"HERD_LAB": lab_cluster.name},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["herd_cluster_settings"] == {"enabled_hypervisors": ["fake"]}


def test_a_lab_whose_tiny_guest_does_not_build_fails_the_script(
    lab_cluster: herdlab.Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an empty inventory, which would read as "no such lab"."""
    builder = tmp_path / "build-tiny-guest.py"
    builder.write_text("raise SystemExit('no kernel package here')\n")
    monkeypatch.setattr(herdlab, "TINY_GUEST_BUILDER", builder)
    monkeypatch.setenv("HERD_LAB", lab_cluster.name)
    with pytest.raises(herdlab.LabError, match=r"tiny guest.*no kernel package here"):
        herdlab_inventory.main(["--list"])
