"""``zero_free_space`` on moves, over real SSH between lab nodes.

The instances use herd-image's ``tiny`` variant (ext4 in a partition); data is written
and deleted with debugfs (nothing is mounted), so its blocks are free but still hold
random bytes that a move would otherwise send. With the fake hypervisor the helper is
the zerofree stand-in; with kvm it is the real image from lab/build-zeroing-image.py
booted under TCG on the lab node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import NodeError, ValidationError
from herd.ops import zeroing
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster, start_thread_master
from tests.engine.ops.test_instance_lab import disk_files, install_os

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[3]
MIB = 2**20
#: Where herd-image's tiny variant puts its ext4 filesystem.
PART_OFFSET = MIB
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed"
)


def placeholder_image(base: Path) -> str:
    """A zeroing_image directory for fake-hypervisor clusters: checked, never run."""
    base.mkdir(parents=True, exist_ok=True)
    for name in (zeroing.KERNEL, zeroing.INITRD):
        (base / name).write_bytes(b"the fake hypervisor does not boot this")
    return str(base)


def real_image() -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "lab" / "build-zeroing-image.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)["dir"]


def start_cluster(lab: Any, base: Path, image: str) -> ThreadMaster:
    """A master for ``lab``'s nodes with fake and kvm enabled and ``image`` configured."""
    running = start_thread_master(base)
    n1 = lab.nodes[0]
    running.api.run(
        [
            {
                "op": "cluster.init",
                "name": "zero",
                "master_node": n1.name,
                "primary_ip": n1.ip,
                "ssh_port": n1.port,
                "enabled_hypervisors": ["fake", "kvm"],
                "enabled_disk_templates": ["file"],
                "beparams": {"memory": 128},
                "zeroing_image": image,
            }
        ],
        timeout=120,
    )
    for node in lab.nodes[1:]:
        running.api.run(
            [{"op": "node.add", "name": node.name, "primary_ip": node.ip, "ssh_port": node.port}],
            timeout=120,
        )
    for node in lab.nodes:
        install_os(node)
    return running


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadMaster, Any]]:
    gen = make_lab("z", 2)
    lab = next(gen)
    mp = pytest.MonkeyPatch()
    mp.setenv("HERD_BOOTSTRAP_KEY", lab.key_path)
    base = tmp_path_factory.mktemp("zero")
    running = start_cluster(lab, base, placeholder_image(base / "image"))
    try:
        yield running, lab
    finally:
        for inst in running.api.query("instances"):
            run(running, "instance.remove", name=inst["name"], shutdown_timeout=0,
                ignore_failures=True)  # fmt: skip
        running.stop()
        mp.undo()
        gen.close()


def run(running: ThreadMaster, op: str, **params: Any) -> Any:
    return running.api.run([{"op": op, **params}], timeout=300)


def image_of(lab: Any, running: ThreadMaster, name: str) -> Path:
    inst = running.api.query("instances", [name])[0]
    node = next(n for n in lab.nodes if n.name == inst["primary_node_name"])
    (path,) = [f for f in disk_files(node) if inst["disks"][0]["uuid"] in f.name]
    return path


def write_and_delete(image: Path, mib: int) -> None:
    """Leave ``mib`` MiB of random bytes in the instance's free blocks (debugfs, no mount)."""
    fs = f"{image}?offset={PART_OFFSET}"
    data = image.with_name(f".{image.name}.random")
    data.write_bytes(os.urandom(mib * MIB))
    try:
        for request in (f"write {data} deleted.bin", "rm deleted.bin"):
            subprocess.run(["debugfs", "-w", "-R", request, fs], capture_output=True, check=True)
    finally:
        data.unlink()


def marker(image: Path) -> str:
    """The file herd-image wrote into the filesystem: proof the live data survived."""
    return subprocess.run(
        ["debugfs", "-R", "cat /marker", f"{image}?offset={PART_OFFSET}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def fsck_clean(image: Path) -> bool:
    fs = f"{image}?offset={PART_OFFSET}"
    return subprocess.run(["e2fsck", "-fn", fs], capture_output=True).returncode == 0


def fake_state(lab: Any, node_name: str, inst: str) -> dict[str, Any] | None:
    node = next(n for n in lab.nodes if n.name == node_name)
    path = node.state_dir / "hv" / "fake" / f"{inst}.json"
    return json.loads(path.read_text()) if path.exists() else None


def move_data_bytes(running: ThreadMaster, name: str, target: str, zero: bool) -> int:
    result = run(running, "instance.move", name=name, target_node=target, zero_free_space=zero)
    (stats,) = result["transfers"]
    return int(stats["data_bytes"])


def test_zeroing_before_a_move_keeps_deleted_data_off_the_wire(
    cluster: tuple[ThreadMaster, Any],
) -> None:
    running, lab = cluster
    n1, n2 = (n.name for n in lab.nodes)
    run(running, "instance.add", name="zf1", disk_template="file", disks=["128M"],
        os="herd-image+tiny", primary_node=n1, hypervisor="fake")  # fmt: skip
    write_and_delete(image_of(lab, running, "zf1"), 64)
    config_before = running.api.query("instances", ["zf1"])[0]

    plain = move_data_bytes(running, "zf1", n2, zero=False)
    zeroed = move_data_bytes(running, "zf1", n1, zero=True)

    assert plain >= 64 * MIB
    assert zeroed * 4 < plain
    image = image_of(lab, running, "zf1")
    assert fsck_clean(image) and "name=zf1" in marker(image)
    after = running.api.query("instances", ["zf1"])[0]
    for key in ("uuid", "hvparams", "beparams", "nics", "os", "admin_state", "disk_template"):
        assert after[key] == config_before[key], key
    # It was running: it runs again as itself, not as the helper.
    state = fake_state(lab, n1, "zf1")
    assert state is not None and state["status"] == "running" and state["boot"] is None


def test_a_failure_while_the_helper_runs_restores_the_instance(
    cluster: tuple[ThreadMaster, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    running, lab = cluster
    n1, n2 = (n.name for n in lab.nodes)
    run(running, "instance.add", name="zf2", disk_template="file", disks=["64M"],
        os="herd-image+tiny", primary_node=n1, hypervisor="fake")  # fmt: skip
    seen: list[dict[str, Any] | None] = []

    def broken(*args: Any) -> str:
        seen.append(fake_state(lab, n1, "zf2"))
        raise NodeError("injected failure while the zeroing helper runs")

    monkeypatch.setattr(zeroing, "wait_poweroff", broken)
    before = running.api.dump()

    with pytest.raises(NodeError, match="injected"):
        run(running, "instance.move", name="zf2", target_node=n2, zero_free_space=True)

    (during,) = seen
    assert during is not None and during["boot"]["cmdline"] == zeroing.CMDLINE
    assert running.api.dump() == before
    state = fake_state(lab, n1, "zf2")
    assert state is not None and state["status"] == "running" and state["boot"] is None
    assert fake_state(lab, n2, "zf2") is None
    n2_node = next(n for n in lab.nodes if n.name == n2)
    uuid = running.api.query("instances", ["zf2"])[0]["disks"][0]["uuid"]
    assert not [f for f in disk_files(n2_node) if uuid in f.name]
    assert fsck_clean(image_of(lab, running, "zf2"))


def test_zeroing_needs_a_configured_image(
    cluster: tuple[ThreadMaster, Any], tmp_path: Path
) -> None:
    running, lab = cluster
    n1, n2 = (n.name for n in lab.nodes)
    image = running.api.query("cluster")["zeroing_image"]
    run(running, "instance.add", name="zf3", disk_template="file", disks=["16M"],
        install=False, primary_node=n1, hypervisor="fake", start=False)  # fmt: skip
    with pytest.raises(ValidationError) as err:
        run(running, "cluster.modify", zeroing_image="relative/dir")
    assert err.value.details["field"].endswith("zeroing_image")
    run(running, "cluster.modify", zeroing_image="")
    try:
        with pytest.raises(ValidationError) as err:
            run(running, "instance.move", name="zf3", target_node=n2, zero_free_space=True)
        assert err.value.details["field"] == "zero_free_space"
    finally:
        run(running, "cluster.modify", zeroing_image=image)
    run(running, "instance.remove", name="zf3")


@needs_qemu
def test_kvm_boots_the_real_zeroing_image_before_a_move(
    cluster: tuple[ThreadMaster, Any],
) -> None:
    running, lab = cluster
    n1, n2 = lab.nodes
    image = running.api.query("cluster")["zeroing_image"]
    run(running, "cluster.modify", zeroing_image=real_image())
    try:
        # Never started: the tiny disk has no boot loader; only the helper boots here.
        run(running, "instance.add", name="zk1", disk_template="file", disks=["64M"],
            os="herd-image+tiny", primary_node=n1.name, hypervisor="kvm", nics=[],
            hvparams={"acceleration": "tcg"}, start=False)  # fmt: skip
        write_and_delete(image_of(lab, running, "zk1"), 32)
        zeroed = move_data_bytes(running, "zk1", n2.name, zero=True)
    finally:
        run(running, "cluster.modify", zeroing_image=image)
    assert zeroed < 8 * MIB
    serial = (n1.state_dir / "hv" / "kvm" / "zk1" / "serial.log").read_text(errors="replace")
    assert "HERD-ZERO-FS /dev/vda1" in serial and "HERD-ZERO-DONE" in serial
    moved = image_of(lab, running, "zk1")
    assert fsck_clean(moved) and "name=zk1" in marker(moved)
    run(running, "instance.remove", name="zk1")
