"""``cluster.verify`` finds orphans on real lab nodes over SSH, and nothing on a clean cluster.

Orphans are planted the way a crash would leave them: an image file in a node's storage
dir, a fake guest started through the node's own agent for an instance the config does not
place there, and a transfer directory nobody aborted.  Each must be named, by node, with
its code; once removed, verify is clean again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from herd.ops import orphans
from tests.engine.harness import ThreadMaster, cluster_on_lab
from tests.engine.node.helpers import instance_spec

pytestmark = pytest.mark.lab

Env = tuple[ThreadMaster, Any]
NODE_ROOT = "/var/lib/herd-node"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with cluster_on_lab(
        tmp_path_factory.mktemp("master"), "v", 2, "orph", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file"], beparams={"memory": 32},
    ) as (running, lab):  # fmt: skip
        running.api.run(
            [{"op": "instance.add", "name": "web", "disk_template": "file",
              "disks": ["8M", "4M"], "install": False, "start": True,
              "primary_node": lab.nodes[0].name}],
            timeout=120,
        )  # fmt: skip
        yield running, lab


def verify(running: ThreadMaster) -> dict[str, Any]:
    return running.api.run([{"op": "cluster.verify"}], timeout=120)


def test_a_clean_cluster_has_no_orphans(env: Env) -> None:
    running, lab = env
    report = verify(running)
    assert report["ok"], report["problems"]
    # Both nodes share the host's pid space: web's guest on the first is not the second's.
    assert report["orphans"] == {n.name: [] for n in lab.nodes}
    assert all("code" in p for p in report["problems"])


def test_planted_orphans_are_each_named_with_their_code(env: Env) -> None:
    running, lab = env
    node = lab.nodes[1]
    stray_uuid = str(uuid.uuid4())
    image_dir = node.state_dir / "file-storage" / stray_uuid
    image_dir.mkdir(parents=True)
    (image_dir / f"disk0-{uuid.uuid4()}.img").write_bytes(b"\0" * 4096)
    (image,) = image_dir.iterdir()
    transfer = node.state_dir / "transfers" / "xfer-stray" / "receive"
    transfer.mkdir(parents=True)
    (transfer / "request.json").write_text(json.dumps({"role": "receive", "port": 40000}))
    target = running.master.store.get("node", node.name)
    ghost = running.master.services.call(
        target, "instance_start", {"spec": instance_spec("ghost", disks=0), "disk_paths": []}
    )
    try:
        report = verify(running)
        found = {(o["code"], o["object"]) for o in report["orphans"][node.name]}
        assert found == {
            (orphans.ORPHAN_FILE, f"{NODE_ROOT}/file-storage/{stray_uuid}/{image.name}"),
            (orphans.ORPHAN_TRANSFER, f"{NODE_ROOT}/transfers/xfer-stray/receive"),
            (orphans.ORPHAN_PROC, f"fake ghost (pid {ghost['pid']})"),
        }
        assert report["orphans"][lab.nodes[0].name] == []
        assert not report["ok"]
        errors = [p for p in report["problems"] if p["code"].startswith("ENODEORPHAN")]
        assert {p["node"] for p in errors} == {node.name} and len(errors) == 3
    finally:
        running.master.services.call(
            target, "instance_stop", {"hypervisor": "fake", "name": "ghost", "force": True}
        )
        shutil.rmtree(image_dir)
        shutil.rmtree(transfer.parent)
    assert verify(running)["ok"]


def test_an_instance_on_the_wrong_node_is_an_orphan_process_there(env: Env) -> None:
    running, lab = env
    node = lab.nodes[1]
    target = running.master.store.get("node", node.name)
    copy = running.master.services.call(
        target, "instance_start", {"spec": instance_spec("web", disks=0), "disk_paths": []}
    )
    try:
        report = verify(running)
        assert report["orphans"][node.name] == [
            {"code": orphans.ORPHAN_PROC, "object": f"fake web (pid {copy['pid']})",
             "message": f"fake process {copy['pid']} runs instance web, which the config "
                        "does not place on this node"},
        ]  # fmt: skip
        assert report["orphans"][lab.nodes[0].name] == []
    finally:
        running.master.services.call(
            target, "instance_stop", {"hypervisor": "fake", "name": "web", "force": True}
        )
