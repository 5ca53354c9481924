"""Moves within a cluster and between two clusters side by side, over real SSH and TLS.

Two labs, two masters, one shared domain secret: the instance is a real fake-hypervisor
process and its disk a real sparse file whose content is compared byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HerdError, ValidationError
from tests.conftest import make_lab
from tests.engine.harness import ThreadMaster
from tests.engine.ops.labsupport import (
    BLANK,
    TINY,
    disk_files,
    disk_images,
    fake_cluster,
    file_instance,
    guest_pids,
    lab_node,
    netns_cmdlines,
    run,
)

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
    """One of the two clusters: its lab and its master."""

    def __init__(self, name: str, lab: Any, master: ThreadMaster) -> None:
        self.name, self.lab, self.master = name, lab, master

    def run(self, op: str, **params: Any) -> Any:
        return run(self.master, op, **params)

    def instances(self) -> list[dict[str, Any]]:
        return self.master.api.query("instances")

    def find(self, name: str) -> dict[str, Any] | None:
        return next((i for i in self.instances() if i["name"] == name), None)

    def add_file(self, name: str, size: str, **extra: Any) -> dict[str, Any]:
        """Add a file instance; its record as the cluster holds it, for later comparison."""
        self.run("instance.add", **file_instance(name, size, **extra))
        inst = self.find(name)
        assert inst is not None, f"{name} missing from {self.name} after instance.add"
        return inst

    def node(self, name: str) -> Any:
        return lab_node(self.lab, name)


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
    """East and west, each on a two-node lab of its own; west shares east's domain secret."""
    with contextlib.ExitStack() as stack:
        sides = []
        secret = None
        for name, suffix in (("east", "m"), ("west", "n")):
            labs = make_lab(suffix, 2)
            lab = next(labs)
            stack.callback(labs.close)
            cluster = fake_cluster(
                lab,
                tmp_path_factory.mktemp(name),
                name,
                enabled_disk_templates=["file", "plain"],
                compression_tools=[custom_tool],
                **({"domain_secret": secret} if secret else {}),
            )
            master = stack.enter_context(cluster)
            secret = master.master.store.list("cluster")[0].domain_secret
            sides.append(Side(name, lab, master))
        yield sides[0], sides[1]


def image_of(side: Side, inst: dict[str, Any]) -> Path:
    (path,) = disk_images(side.node(inst["primary_node_name"]), inst)
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
    inst = east.add_file("sparse1", "1G", os=BLANK, primary_node=n1.name)
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
    east.add_file("ciph1", "16M", install=False, primary_node=n1.name, start=False)
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
    inst = east.add_file(name, "48M", os=TINY, primary_node=east.lab.nodes[0].name)
    digest = sha(image_of(east, inst))
    result = east.run(
        "instance.move",
        name=name,
        dest_cluster=str(west.master.socket),
        compression=CUSTOM_NAME if compression == "custom" else compression,
    )
    assert result["dest_instance"] == name
    assert name not in [i["name"] for i in east.instances()]
    arrived = west.find(name)
    assert arrived is not None and arrived["admin_state"] == "up"
    assert [n["mac"] for n in arrived["nics"]] == [n["mac"] for n in inst["nics"]]
    assert sha(image_of(west, arrived)) == digest
    assert len(guest_pids(west.node(arrived["primary_node_name"]), name)) == 1
    west.run("instance.remove", name=name)


def test_a_foreign_domain_secret_is_refused(clusters: tuple[Side, Side]) -> None:
    east, west = clusters
    east.add_file(
        "stranger", "16M", install=False, primary_node=east.lab.nodes[0].name, start=False
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
    """The node's transfer workers (one per stream), to kill as a crash would."""
    return [
        pid
        for pid, argv in netns_cmdlines(node).items()
        if b"herd.node.transfer.worker" in b" ".join(argv)
    ]


def test_killed_transfer_leaves_source_intact_and_destination_clean(
    clusters: tuple[Side, Side],
) -> None:
    east, west = clusters
    src = east.lab.nodes[0]
    inst = east.add_file("victim", "64M", os=BLANK, primary_node=src.name)
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
