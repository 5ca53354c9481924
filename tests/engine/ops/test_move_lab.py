"""Moves within a cluster and between two clusters side by side, over real SSH and TLS.

Two labs, two masters, one shared domain secret: the instance is a real fake-hypervisor
process and its disk a real sparse file whose content is compared byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HerdError, ValidationError
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster, start_thread_master
from tests.engine.ops.test_instance_lab import disk_files, guest_pids, install_os

pytestmark = pytest.mark.lab

COMPRESSIONS = (
    "none",
    "gzip",
    "gzip-fast",
    "gzip-slow",
    "lzop",
    "zstd",
    "zstd-fast",
    "lz4",
    "custom",
)
#: Per test process, so parallel runs on one machine never share (or delete) the tool.
CUSTOM_NAME = f"herdtestgz{os.getpid()}"
TOOL_DIR = Path("/etc/herd/compression")
CUSTOM_TOOL = """#!/bin/sh
# A custom compression tool as the cluster's compression_tools allow: stdin to stdout.
case "$1" in
  -h) echo "gzip -1 wrapper"; exit 0 ;;
  -d) exec gzip -d -c ;;
  "") exec gzip -1 -c ;;
  *) echo "unexpected argument $1" >&2; exit 2 ;;
esac
"""


class Side:
    def __init__(self, name: str, lab: Any, master: ThreadMaster) -> None:
        self.name, self.lab, self.master = name, lab, master

    def run(self, op: str, **params: Any) -> Any:
        return self.master.api.run([{"op": op, **params}], timeout=300)

    def instances(self) -> list[dict[str, Any]]:
        return self.master.api.query("instances")

    def node(self, name: str) -> Any:
        return next(n for n in self.lab.nodes if n.name == name)


@pytest.fixture(scope="module")
def custom_tool() -> Iterator[str]:
    TOOL_DIR.mkdir(parents=True, exist_ok=True)
    path = TOOL_DIR / CUSTOM_NAME
    path.write_text(CUSTOM_TOOL)
    os.chmod(path, 0o755)
    yield path.name
    path.unlink()


@pytest.fixture(scope="module")
def clusters(
    tmp_path_factory: pytest.TempPathFactory,
    custom_tool: str,
) -> Iterator[tuple[Side, Side]]:
    labs = [make_lab("m", 2), make_lab("n", 2)]
    sides = []
    mp = pytest.MonkeyPatch()
    try:
        secret = None
        for name, gen in zip(("east", "west"), labs, strict=True):
            lab = next(gen)
            mp.setenv("HERD_BOOTSTRAP_KEY", lab.key_path)
            master = start_thread_master(tmp_path_factory.mktemp(name))
            side = Side(name, lab, master)
            sides.append(side)
            n1 = lab.nodes[0]
            extra = {"domain_secret": secret} if secret else {}
            side.run(
                "cluster.init",
                name=name,
                master_node=n1.name,
                primary_ip=n1.ip,
                ssh_port=n1.port,
                enabled_hypervisors=["fake"],
                enabled_disk_templates=["file", "plain"],
                compression_tools=[custom_tool],
                **extra,
            )
            secret = master.master.store.list("cluster")[0].domain_secret
            for node in lab.nodes[1:]:
                side.run("node.add", name=node.name, primary_ip=node.ip, ssh_port=node.port)
            for node in lab.nodes:
                install_os(node)
        yield sides[0], sides[1]
    finally:
        for side in sides:
            side.master.stop()
        for gen in labs:
            gen.close()
        mp.undo()


def image_of(side: Side, inst: dict[str, Any]) -> Path:
    node = side.node(inst["primary_node_name"])
    (path,) = [f for f in disk_files(node) if inst["disks"][0]["uuid"] in f.name]
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_data(path: Path, offsets_mib: list[int], size_mib: int = 1) -> None:
    with open(path, "r+b") as f:
        for off in offsets_mib:
            f.seek(off * 2**20)
            f.write(os.urandom(size_mib * 2**20))


def test_intra_cluster_move_sends_only_data(clusters: tuple[Side, Side]) -> None:
    east, _ = clusters
    n1, n2 = east.lab.nodes
    east.run(
        "instance.add",
        name="sparse1",
        disk_template="file",
        disks=["1G"],
        os="herd-image+blank",
        primary_node=n1.name,
    )
    inst = east.instances()[0]
    image = image_of(east, inst)
    write_data(image, [10, 500, 900])
    before = sha(image)
    result = east.run("instance.move", name="sparse1", target_node=n2.name, compression="none")
    (stats,) = result["transfers"]
    assert stats["data_bytes"] <= 4 * 2**20
    assert stats["wire_bytes"] < 5 * 2**20
    moved = east.instances()[0]
    assert moved["primary_node_name"] == n2.name and moved["uuid"] == inst["uuid"]
    assert moved["nics"] == inst["nics"]
    assert sha(image_of(east, moved)) == before
    assert not image.exists()
    assert guest_pids(n1, "sparse1") == [] and len(guest_pids(n2, "sparse1")) == 1
    east.run("instance.remove", name="sparse1")


def test_cipher_choice_is_policed(clusters: tuple[Side, Side]) -> None:
    east, west = clusters
    n1, n2 = east.lab.nodes
    east.run(
        "instance.add",
        name="ciph1",
        disk_template="file",
        disks=["16M"],
        install=False,
        primary_node=n1.name,
        start=False,
    )
    try:
        with pytest.raises(ValidationError) as err:
            east.run(
                "instance.move",
                name="ciph1",
                target_node=n2.name,
                ciphers=["TLS_AES_128_GCM_SHA256"],
            )
        assert "allow_cipher_bypassing" in err.value.message
        east.run("cluster.modify", allow_cipher_bypassing=True)
        with pytest.raises(ValidationError) as err:
            east.run("instance.move", name="ciph1", target_node=n2.name, ciphers=["RC4-MD5"])
        assert err.value.details["field"] == "ciphers"
        with pytest.raises(ValidationError) as err:
            east.run(
                "instance.move",
                name="ciph1",
                dest_cluster=str(west.master.socket),
                ciphers=["TLS_AES_128_GCM_SHA256"],
            )
        assert "between clusters" in err.value.message
        result = east.run(
            "instance.move", name="ciph1", target_node=n2.name, ciphers=["TLS_AES_256_GCM_SHA384"]
        )
        assert result["primary_node"] == n2.name
    finally:
        east.run("cluster.modify", allow_cipher_bypassing=False)
        east.run("instance.remove", name="ciph1")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_cross_cluster_move_with_each_compression(
    clusters: tuple[Side, Side], compression: str
) -> None:
    east, west = clusters
    name = f"mv-{compression}"
    east.run(
        "instance.add",
        name=name,
        disk_template="file",
        disks=["48M"],
        os="herd-image+tiny",
        primary_node=east.lab.nodes[0].name,
    )
    inst = next(i for i in east.instances() if i["name"] == name)
    digest = sha(image_of(east, inst))
    result = east.run(
        "instance.move",
        name=name,
        dest_cluster=str(west.master.socket),
        compression=CUSTOM_NAME if compression == "custom" else compression,
    )
    assert result["dest_instance"] == name
    assert name not in [i["name"] for i in east.instances()]
    arrived = next(i for i in west.instances() if i["name"] == name)
    assert arrived["admin_state"] == "up"
    assert [n["mac"] for n in arrived["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(west, arrived)) == digest
    assert len(guest_pids(west.node(arrived["primary_node_name"]), name)) == 1
    west.run("instance.remove", name=name)


def test_a_foreign_domain_secret_is_refused(clusters: tuple[Side, Side]) -> None:
    east, west = clusters
    east.run(
        "instance.add",
        name="stranger",
        disk_template="file",
        disks=["16M"],
        install=False,
        primary_node=east.lab.nodes[0].name,
        start=False,
    )
    saved = west.master.master.store.list("cluster")[0].domain_secret
    try:
        west.run("cluster.modify", domain_secret="ab" * 32)
        with pytest.raises(HerdError) as err:
            east.run("instance.move", name="stranger", dest_cluster=str(west.master.socket))
        assert "signature" in err.value.message
        assert [i["name"] for i in east.instances()] == ["stranger"]
        assert west.instances() == []
    finally:
        west.run("cluster.modify", domain_secret=saved)
        east.run("instance.remove", name="stranger")


def worker_pids(node: Any) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", node.netns], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for pid in out:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"herd.node.transfer.worker" in cmd:
            found.append(int(pid))
    return found


def test_killed_transfer_leaves_source_intact_and_destination_clean(
    clusters: tuple[Side, Side],
) -> None:
    east, west = clusters
    src = east.lab.nodes[0]
    east.run(
        "instance.add",
        name="victim",
        disk_template="file",
        disks=["64M"],
        os="herd-image+blank",
        primary_node=src.name,
    )
    inst = east.instances()[0]
    image = image_of(east, inst)
    write_data(image, list(range(0, 64, 2)))
    before = sha(image)
    west_files = {n.name: disk_files(n) for n in west.lab.nodes}
    killer_done = threading.Event()
    earlier = set(src.state_dir.glob("transfers/*/send/status.json"))

    def kill_sender() -> None:
        """Kill the sending worker once data is flowing, as a crash mid-copy would."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killer_done.is_set():
            flowing = [
                json.loads(f.read_text()).get("bytes") or 0
                for f in src.state_dir.glob("transfers/*/send/status.json")
                if f not in earlier and f.stat().st_size
            ]
            if any(flowing):
                for pid in worker_pids(src):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_sender)
    killer.start()
    try:
        with pytest.raises(HerdError):
            east.run(
                "instance.move",
                name="victim",
                dest_cluster=str(west.master.socket),
                bandwidth_limit=2 * 2**20,
            )
    finally:
        killer_done.set()
        killer.join()
    assert [i["name"] for i in east.instances()] == ["victim"]
    assert sha(image) == before
    assert len(guest_pids(src, "victim")) == 1
    assert west.instances() == []
    assert {n.name: disk_files(n) for n in west.lab.nodes} == west_files
    east.run("instance.remove", name="victim")
