"""Transfer ends as the inventory sees them: directories, published states and workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

from herd.crypto.ca import ClusterCA
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch
from herd.node.transfer.worker import list_ends, transfer_dir

load_all()


def plant(root: Path, transfer_id: str, role: str, state: str | None) -> Path:
    directory = transfer_dir(root, transfer_id, role)
    directory.mkdir(parents=True)
    (directory / "request.json").write_text(json.dumps({"role": role, "port": 12345}))
    if state is not None:
        (directory / "status.json").write_text(json.dumps({"state": state}))
    return directory


def test_list_ends_reports_states_and_whether_a_worker_runs(tmp_path: Path) -> None:
    root = tmp_path / "node"
    assert list_ends(root) == []
    plant(root, "xfer-done", "receive", "done")
    never = plant(root, "xfer-never", "send", None)
    (root / "transfers" / "xfer-bare").mkdir()
    ends = {(e["transfer_id"], e["role"]): e for e in list_ends(root)}
    assert ends[("xfer-done", "receive")]["state"] == "done"
    assert ends[("xfer-never", "send")] == {
        "transfer_id": "xfer-never", "role": "send", "path": str(never), "state": None,
        "alive": False, "pid": None, "port": 12345,
    }  # fmt: skip
    assert ends[("xfer-bare", None)]["path"] == str(root / "transfers" / "xfer-bare")


def test_a_live_worker_is_found_with_and_without_its_directory(tmp_path: Path) -> None:
    ctx = NodeContext(tmp_path / "node")
    ca = ClusterCA.create("test.example")
    pair = ca.issue_transfer_cert("xfer-live")
    started = dispatch(
        ctx, "transfer_receive_start",
        {"transfer_id": "xfer-live", "dest_path": str(tmp_path / "dest.img"), "size_mib": 4,
         "bind_ip": "127.0.0.1", "cert_pem": pair.cert_pem.decode(),
         "key_pem": pair.key_pem.decode(), "ca_pem": ca.cert_pem.decode(),
         "connect_timeout": 60.0},
    )  # fmt: skip
    directory = transfer_dir(ctx.root, "xfer-live", "receive")
    pid = json.loads((directory / "process.json").read_text())["pid"]
    try:
        (end,) = list_ends(ctx.root)
        assert (end["alive"], end["pid"], end["port"]) == (True, pid, started["port"])
        shutil.rmtree(directory.parent)
        (gone,) = list_ends(ctx.root)
        assert (gone["transfer_id"], gone["role"], gone["alive"], gone["pid"]) == (
            "xfer-live", "receive", True, pid,
        )  # fmt: skip
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
