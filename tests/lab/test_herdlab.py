"""The lab builds real, reachable SSH nodes and leaves nothing behind when removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import herdlab
import pytest

from herd.config.model import DEFAULT_NICPARAMS

pytestmark = pytest.mark.lab


def ssh(node: herdlab.LabNode, command: str, tmp_path: Path) -> str:
    """Run ``command`` with the OpenSSH client, verifying the node's recorded host key."""
    known = tmp_path / "known_hosts"
    known.write_text(f"{node.ip} {node.host_key}\n")
    options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    options += ["-o", f"UserKnownHostsFile={known}"]
    out = subprocess.run(
        ["ssh", "-i", node.key_path, *options, f"root@{node.ip}", command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def leftovers(lab: herdlab.Lab) -> list[str]:
    """Everything of ``lab`` still present on the host: namespaces, links, processes, files."""
    found = [ns for ns in herdlab.namespaces() if ns.startswith(f"hl-{lab.name}-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if herdlab.FABRIC_NS in herdlab.namespaces():
        links += subprocess.run(
            ["ip", "-n", herdlab.FABRIC_NS, "-o", "link"], capture_output=True, text=True
        ).stdout
    found += [n.bridge_port for n in lab.nodes if f" {n.bridge_port}@" in links]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if lab.dir.encode() in cmdline:
                found.append(f"process {pid}")
    if Path(lab.dir).exists():
        found.append(lab.dir)
    return found


def test_nodes_answer_ssh_with_their_own_identity_and_state(
    lab_cluster: herdlab.Lab, tmp_path: Path
) -> None:
    for node in lab_cluster.nodes:
        (node.state_dir / "marker").write_text(node.name)
        out = ssh(node, "hostname; cat /var/lib/herd-node/marker; echo; echo $HOME", tmp_path)
        assert out.splitlines() == [node.name, node.name, str(Path(node.dir) / "home")]


def test_nodes_run_the_installed_agent(lab_cluster: herdlab.Lab, tmp_path: Path) -> None:
    node = lab_cluster.nodes[0]
    out = ssh(node, 'echo \'{"id": 1, "action": "ping"}\' | herd-node', tmp_path)
    assert f'"hostname":"{node.name}"' in out


def test_every_node_has_the_bridge_the_cluster_default_nics_attach_to(
    lab_cluster: herdlab.Lab,
) -> None:
    assert DEFAULT_NICPARAMS["link"] == herdlab.NODE_BRIDGE
    for node in lab_cluster.nodes:
        shown = json.loads(node.exec("ip", "-j", "-d", "link", "show", herdlab.NODE_BRIDGE).stdout)
        assert shown[0]["linkinfo"]["info_kind"] == "bridge"
        assert "UP" in shown[0]["flags"]
    # Who may use a tap is its owner's business (kvm sets it); the device is open to all.
    assert Path(herdlab.TUN_DEVICE).stat().st_mode & 0o666 == 0o666


def test_up_again_reuses_a_healthy_lab(lab_cluster: herdlab.Lab) -> None:
    pids = [n.sshd_pid() for n in lab_cluster.nodes]
    again = herdlab.up(lab_cluster.name, len(lab_cluster.nodes))
    assert [n.sshd_pid() for n in again.nodes] == pids
    assert [n.host_key for n in again.nodes] == [n.host_key for n in lab_cluster.nodes]


def test_two_labs_share_the_fabric_and_reach_each_other(
    lab_cluster: herdlab.Lab, scratch_lab: herdlab.Lab
) -> None:
    assert scratch_lab.index != lab_cluster.index
    target = lab_cluster.nodes[0]
    probe = scratch_lab.nodes[0].exec("bash", "-c", f"echo > /dev/tcp/{target.ip}/22", check=False)
    assert probe.returncode == 0, probe.stderr


def test_down_removes_everything_even_when_the_test_failed() -> None:
    name = f"pt{os.getpid()}d"
    lab = None
    with pytest.raises(RuntimeError):
        try:
            lab = herdlab.up(name, 2, owner_pid=os.getpid())
            assert all(n.sshd_pid() for n in lab.nodes)
            raise RuntimeError("test failed half way")
        finally:
            herdlab.down(name)
    assert lab is not None
    assert leftovers(lab) == []
    herdlab.down(name)


def test_down_stops_a_host_process_run_from_the_lab_directory() -> None:
    """As the lab inventory places the master: state and socket inside the lab dir."""
    name = f"pt{os.getpid()}m"
    lab = herdlab.up(name, 1, owner_pid=os.getpid())
    try:
        script = Path(lab.dir) / "fake-master.py"
        script.write_text("import time\ntime.sleep(600)\n")
        master = subprocess.Popen([sys.executable, str(script)])
    finally:
        herdlab.down(name)
    assert master.wait(timeout=60) < 0  # ended by a signal, not by itself
    assert leftovers(lab) == []


def test_down_cleans_up_after_a_partial_up() -> None:
    name = f"pt{os.getpid()}p"
    with pytest.raises(herdlab.LabError, match="sshd of"):
        herdlab.up(name, 2, sshd="/bin/false", owner_pid=os.getpid())
    partial = herdlab.load(name)
    assert partial.status == "building"
    assert any(ns.startswith(f"hl-{name}-") for ns in herdlab.namespaces())
    herdlab.down(name)
    assert leftovers(partial) == []


def test_status_reports_live_sshd(lab_cluster: herdlab.Lab) -> None:
    (entry,) = [s for s in herdlab.status() if s["name"] == lab_cluster.name]
    assert entry["status"] == "up"
    assert all(n["sshd_pid"] for n in entry["nodes"])  # type: ignore[union-attr]


def test_names_that_would_break_interface_names_are_refused() -> None:
    with pytest.raises(herdlab.LabError, match="must match"):
        herdlab.up("Way-Too-Long-Name")
