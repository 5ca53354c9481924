"""VM nodes boot real Debian guests with DRBD 8.4 and LVM, reachable like any node."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import vmnodes

from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool

VG = "herd"  # the engine's default volume group, as tests/vm expect it
RESOURCE = "r0"
DRBD_PORT = 7789
PATTERN_MIB = 32


def poll(node: vmnodes.VMNode, command: str, done: str, timeout: float = 120.0) -> str:
    """Run ``command`` until its output contains ``done`` (DRBD state changes are async)."""
    deadline = time.monotonic() + timeout
    while True:
        out = node.ssh(command).stdout
        if done in out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{node.name}: {done!r} never appeared in: {out}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def volume_groups(vm_nodes: vmnodes.VMLab) -> list[vmnodes.VMNode]:
    """A volume group on each guest's data disk, created once for this module."""
    for node in vm_nodes.nodes:
        node.ssh(
            f"vgs {VG} >/dev/null 2>&1 || {{ pvcreate -q /dev/vdb && vgcreate -q {VG} /dev/vdb; }}"
        )
    return vm_nodes.nodes


@pytest.mark.vm
def test_guests_have_their_identity_and_reach_each_other(vm_nodes: vmnodes.VMLab) -> None:
    for node in vm_nodes.nodes:
        out = node.ssh("hostname; ip -o -4 addr show dev eth0").stdout.splitlines()
        assert out[0] == node.name
        assert f" {node.ip}/" in out[1]
        assert node.ssh("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2] == (
            node.host_key.split()
        )
    first, second = vm_nodes.nodes
    assert first.ssh(f"ping -c 1 -W 5 {second.ip}", check=False).returncode == 0


@pytest.mark.vm
def test_guests_refuse_a_wrong_host_key(vm_nodes: vmnodes.VMLab, tmp_path: Path) -> None:
    first, second = vm_nodes.nodes
    known = tmp_path / "known_hosts"
    known.write_text(f"{first.ip} {second.host_key}\n")
    out = subprocess.run(
        ["ssh", "-i", first.key_path, *vmnodes.SSH_OPTIONS, "-o", f"UserKnownHostsFile={known}",
         f"root@{first.ip}", "true"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "host key" in out.stderr.lower()


@pytest.mark.vm
def test_drbd_module_is_8_4(vm_nodes: vmnodes.VMLab) -> None:
    for node in vm_nodes.nodes:
        out = node.ssh("modprobe drbd && cat /proc/drbd").stdout
        assert out.startswith("version: 8.4."), out


@pytest.mark.vm
def test_lvm_works_on_the_data_disk(volume_groups: list[vmnodes.VMNode]) -> None:
    node = volume_groups[0]
    node.ssh(f"lvcreate -q -y -L 16M -n probe {VG}")
    try:
        size = node.ssh(f"blockdev --getsize64 /dev/{VG}/probe").stdout.strip()
        assert size == str(16 << 20)
        node.ssh(f"mkfs.ext4 -q /dev/{VG}/probe && e2fsck -fn /dev/{VG}/probe")
    finally:
        node.ssh(f"lvremove -q -y {VG}/probe")
    assert "probe" not in node.ssh(f"lvs --noheadings -o lv_name {VG}").stdout


@pytest.mark.vm
def test_herd_node_answers_through_rpc(vm_nodes: vmnodes.VMLab) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(vm_nodes.key_path)
    with SSHPool(key, connect_timeout=30.0) as pool, NodeClient(pool) as client:
        for node in vm_nodes.nodes:
            address = NodeAddress(node.name, node.ip, node.host_key, node.port)
            assert client.call(address, "ping")["hostname"] == node.name


def drbd_config(nodes: list[vmnodes.VMNode]) -> str:
    hosts = "".join(f"  on {n.name} {{ address {n.ip}:{DRBD_PORT}; }}\n" for n in nodes)
    return (
        f"resource {RESOURCE} {{\n  protocol C;\n  device /dev/drbd0;\n"
        f"  disk /dev/{VG}/{RESOURCE};\n  meta-disk internal;\n{hosts}}}\n"
    )


@pytest.fixture
def drbd_resource(volume_groups: list[vmnodes.VMNode]) -> Iterator[list[vmnodes.VMNode]]:
    """A DRBD resource on a fresh LV on both guests, connected, and removed afterwards."""
    config = drbd_config(volume_groups)
    for node in volume_groups:
        node.ssh(f"lvcreate -q -y -L 64M -n {RESOURCE} {VG}")
        node.ssh(f"cat > /etc/drbd.d/{RESOURCE}.res", input=config)
        node.ssh(f"drbdadm -- --force create-md {RESOURCE} && drbdadm up {RESOURCE}")
    try:
        for node in volume_groups:
            poll(node, "cat /proc/drbd", "cs:Connected")
        yield volume_groups
    finally:
        for node in volume_groups:
            node.ssh(f"drbdadm down {RESOURCE}", check=False)
            node.ssh(f"lvremove -q -y {VG}/{RESOURCE}; rm -f /etc/drbd.d/{RESOURCE}.res")


@pytest.mark.vm
def test_drbd_replicates_across_a_primary_switch(drbd_resource: list[vmnodes.VMNode]) -> None:
    first, second = drbd_resource
    first.ssh(f"drbdadm new-current-uuid --clear-bitmap {RESOURCE}")
    poll(first, "cat /proc/drbd", "ds:UpToDate/UpToDate")
    first.ssh(f"drbdadm primary {RESOURCE}")
    written = first.ssh(
        f"head -c {PATTERN_MIB}M /dev/urandom > /tmp/pattern && "
        "dd if=/tmp/pattern of=/dev/drbd0 bs=1M oflag=direct status=none && "
        "sha256sum < /tmp/pattern"
    ).stdout.split()[0]
    first.ssh(f"drbdadm secondary {RESOURCE}")
    second.ssh(f"drbdadm primary {RESOURCE}")
    read = second.ssh(
        f"dd if=/dev/drbd0 bs=1M count={PATTERN_MIB} iflag=direct status=none | sha256sum"
    ).stdout.split()[0]
    second.ssh(f"drbdadm secondary {RESOURCE}")
    assert read == written
    assert "ro:Secondary/Secondary" in first.ssh("cat /proc/drbd").stdout


@pytest.mark.vm
def test_link_down_cuts_a_guest_off_until_link_up(vm_nodes: vmnodes.VMLab) -> None:
    first, second = vm_nodes.nodes
    second.link_down()
    try:
        assert first.ssh(f"ping -c 1 -W 2 {second.ip}", check=False).returncode != 0
    finally:
        second.link_up()
    poll(first, f"ping -c 1 -W 2 {second.ip} >/dev/null && echo reachable", "reachable")
    assert second.ssh("hostname").stdout.strip() == second.name


def taps() -> set[str]:
    return {link.name for link in Path("/sys/class/net").iterdir() if link.name.startswith("tv")}


@pytest.mark.vm
def test_a_failed_boot_leaves_nothing_behind(vm_nodes: vmnodes.VMLab, tmp_path: Path) -> None:
    root = tmp_path / "labs"
    taps_before = taps()
    with pytest.raises(vmnodes.VMLabError, match="no SSH"):
        vmnodes.up("fail", 1, root=root, boot_timeout=0.0)
    assert taps() == taps_before
    assert not vmnodes._qemu_pids_under(str(root / "fail"))
    assert not (root / "fail").exists()
    assert all(node.alive() for node in vm_nodes.nodes)
    assert vm_nodes.nodes[0].ssh("hostname").stdout.strip() == vm_nodes.nodes[0].name


def test_a_login_that_timed_out_before_the_command_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU-starved guest answered its banner past ConnectTimeout under load (seen in a
    boot test); the command never ran, so the login is tried again. No guest needed: a
    stand-in ``ssh`` fails its first login that way."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\necho x >> " + str(calls) + "\n"
        '[ "$(wc -l < ' + str(calls) + ')" -gt 1 ] && { echo ran; exit 0; }\n'
        'echo "Connection timed out during banner exchange" >&2; exit 255\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    node = vmnodes.VMNode("g1", "10.78.1.11", 22, "ssh-ed25519 AAAA", "/k", str(tmp_path), "t0",
                          "aa:00:00:00:00:01", 1)  # fmt: skip
    assert node.ssh("true").stdout == "ran\n"
    assert calls.read_text().count("x") == 2
