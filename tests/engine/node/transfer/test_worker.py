"""Transfer ends as the inventory sees them: directories, published states and workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from herd.crypto.ca import ClusterCA
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext, dispatch
from herd.node.transfer import worker
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


def failing_end(tmp_path: Path, key_pem: str) -> Path:
    """A send end whose credentials are in place, as ``start`` leaves them."""
    directory = transfer_dir(tmp_path / "node", "xfer-leak", "send")
    directory.mkdir(parents=True)
    request = {"role": "send", "transfer_id": "xfer-leak", "compression": "none", "ciphers": None}
    (directory / "request.json").write_text(json.dumps(request))
    for name in ("ca.pem", "cert.pem"):
        (directory / name).write_text("not needed: the context fails first\n")
    (directory / "key.pem").write_text(key_pem)
    return directory


def test_a_failing_worker_quotes_no_key_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Found in review: the worker printed ``repr(exc)`` to worker.log and put the raw
    message in status.json, both of which reach node and job logs. Here the TLS library
    quotes the whole key and, separately, one line of it without its armour."""
    key_pem = ClusterCA.create("test.example").issue_transfer_cert("xfer-leak").key_pem.decode()
    body = [line for line in key_pem.splitlines() if "-----" not in line]
    directory = failing_end(tmp_path, key_pem)

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError(f"cannot load the transfer key {key_pem} (bad line {body[1]!r})")

    monkeypatch.setattr(worker, "client_context", refuse)
    assert worker.main([str(directory)]) == 1
    stderr = capfd.readouterr().err
    error = json.loads((directory / "status.json").read_text())["error"]
    for text in (stderr, json.dumps(error)):
        assert "cannot load the transfer key" in text
        assert not [line for line in body if line in text]
    assert error["type"] == "TransferError"
    assert stderr.startswith("transfer failed: ValueError: cannot load the transfer key")


def test_a_worker_without_its_request_fails_in_one_scrubbed_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """No traceback (Python's own, unscrubbed) ends up in worker.log for this either."""
    directory = tmp_path / "gone"
    directory.mkdir()
    assert worker.main([str(directory)]) == 1
    assert capfd.readouterr().err == f"transfer failed: no request in {directory}\n"


def test_a_dead_workers_log_reaches_the_master_without_key_material(tmp_path: Path) -> None:
    """The log tail of a worker killed outright is quoted in its status's error."""
    key_pem = ClusterCA.create("test.example").issue_transfer_cert("xfer-dead").key_pem.decode()
    directory = plant(tmp_path / "node", "xfer-dead", "send", "running")
    (directory / "worker.log").write_text(f"Traceback ...\nssl error near {key_pem}\n")
    error = worker.status(directory)["error"]
    assert error["message"] == "transfer worker exited without reporting a result"
    assert "ssl error near -----BEGIN PRIVATE KEY-----<redacted>" in error["details"]["log"]
    assert key_pem.splitlines()[1] not in error["details"]["log"]
