"""The fake hypervisor with real guest processes, real files and a real TCP migration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from herd.errors import (
    ConflictError,
    NodeError,
    NotFoundError,
    PrerequisiteError,
    TransferError,
    ValidationError,
)
from herd.node.actions.registry import NodeContext
from herd.node.hv.fake import FakeHypervisor, list_processes
from herd.node.storage.base import DiskSpec
from herd.node.storage.file import FileStorage
from tests.engine.node.helpers import instance_spec


def disks_for(ctx: NodeContext, spec: dict[str, Any]) -> list[str]:
    """Create and assemble the spec's file disks on ``ctx``'s node."""
    store = FileStorage(ctx)
    paths = []
    for raw in spec["disks"]:
        disk = DiskSpec.from_dict(raw, instance_uuid=spec["uuid"])
        store.create(disk)
        paths.append(store.assemble(disk)["path"])
    return paths


def open_files(pid: int) -> set[str]:
    fds = Path(f"/proc/{pid}/fd")
    return {os.readlink(fd) for fd in fds.iterdir() if fds.exists()}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def eventually(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition never held")


@pytest.fixture
def hv(ctx: NodeContext) -> FakeHypervisor:
    return FakeHypervisor(ctx)


def test_start_runs_a_detached_guest_holding_its_disks(hv: FakeHypervisor) -> None:
    spec = instance_spec(disks=2)
    paths = disks_for(hv.ctx, spec)
    started = hv.start(spec, paths)
    pid = started["pid"]
    assert started["changed"] is True and alive(pid)
    assert os.getsid(pid) == pid
    assert set(paths) <= open_files(pid)
    info = hv.info("web1")
    assert info is not None and info["state"] == "running" and info["boots"] == 1
    assert (info["memory"], info["vcpus"], info["disk_paths"]) == (128, 1, paths)
    first = info["heartbeat"]
    eventually(lambda: hv.info("web1")["heartbeat"] > first)
    assert hv.start(spec, paths) == {"changed": False, "pid": pid}
    with pytest.raises(ConflictError):
        hv.start(instance_spec(disks=2, acpi=False), paths)
    assert [i["name"] for i in hv.list()] == ["web1"]
    assert hv.console("web1")["kind"] == "message"


def test_stop_uses_acpi_and_replays_are_noops(hv: FakeHypervisor) -> None:
    spec = instance_spec()
    pid = hv.start(spec, disks_for(hv.ctx, spec))["pid"]
    assert hv.stop("web1", timeout=10, force=False) == {"changed": True, "method": "acpi"}
    assert not alive(pid) and hv.info("web1") is None and hv.list() == []
    assert hv.stop("web1", timeout=10, force=False) == {"changed": False, "method": None}


def test_guest_without_acpi_is_killed_after_the_timeout_or_at_once_with_force(
    hv: FakeHypervisor,
) -> None:
    spec = instance_spec(acpi=False)
    paths = disks_for(hv.ctx, spec)
    pid = hv.start(spec, paths)["pid"]
    assert hv.stop("web1", timeout=0.3, force=False)["method"] == "kill-after-timeout"
    assert not alive(pid)
    pid = hv.start(spec, paths)["pid"]
    assert hv.stop("web1", timeout=30, force=True)["method"] == "kill"
    assert not alive(pid)


def test_crash_and_pid_reuse_read_as_crashed(hv: FakeHypervisor) -> None:
    spec = instance_spec()
    paths = disks_for(hv.ctx, spec)
    pid = hv.start(spec, paths)["pid"]
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: hv.info("web1")["state"] == "crashed")
    assert hv.list()[0]["state"] == "crashed"
    with pytest.raises(PrerequisiteError):
        hv.reboot("web1", hard=False)
    restarted = hv.start(spec, paths)
    assert restarted["changed"] is True and alive(restarted["pid"])
    state_file = hv.state_dir / "web1.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({**state, "starttime": state["starttime"] - 1}))
    assert hv.info("web1")["state"] == "crashed"
    assert hv.stop("web1", timeout=1, force=False)["method"] == "crashed"
    assert alive(restarted["pid"])  # a process that is not ours is left alone
    os.kill(restarted["pid"], signal.SIGKILL)


def test_soft_reboot_counts_boots_and_hard_reboot_replaces_the_process(
    hv: FakeHypervisor,
) -> None:
    spec = instance_spec()
    pid = hv.start(spec, disks_for(hv.ctx, spec))["pid"]
    soft = hv.reboot("web1", hard=False)
    assert (soft["pid"], soft["boots"]) == (pid, 2)
    hard = hv.reboot("web1", hard=True)
    assert hard["pid"] != pid and hard["boots"] == 1
    assert not alive(pid) and alive(hard["pid"])


def test_bad_disks_are_refused_or_reported_with_the_guest_log(hv: FakeHypervisor) -> None:
    spec = instance_spec()
    with pytest.raises(ValidationError) as count:
        hv.start(spec, [])
    assert count.value.details["field"] == "disk_paths"
    with pytest.raises(NotFoundError):
        hv.start(spec, [str(hv.ctx.root / "missing.img")])
    hv.ctx.root.mkdir(parents=True)
    with pytest.raises(NodeError, match="IsADirectoryError"):
        hv.start(spec, [str(hv.ctx.root)])
    assert hv.info("web1")["state"] == "crashed"


def test_guest_outlives_the_agent_that_started_it(ctx: NodeContext) -> None:
    spec = instance_spec()
    paths = disks_for(ctx, spec)
    request = {"action": "instance_start", "args": {"spec": spec, "disk_paths": paths}}
    agent = subprocess.run(
        [sys.executable, "-m", "herd.node.agent"],
        input=json.dumps(request).encode(),
        capture_output=True,
        env={**os.environ, "HERD_NODE_ROOT": str(ctx.root)},
        timeout=30,
        check=True,
    )
    pid = json.loads(agent.stdout)["result"]["pid"]
    assert alive(pid)
    info = FakeHypervisor(ctx).info("web1")
    assert info is not None and info["state"] == "running"
    eventually(lambda: FakeHypervisor(ctx).info("web1")["heartbeat"] > info["heartbeat"])


def test_live_migration_moves_the_instance_and_its_state(
    make_ctx: Callable[[str], NodeContext],
) -> None:
    source, target = FakeHypervisor(make_ctx("a")), FakeHypervisor(make_ctx("b"))
    spec = instance_spec()
    src_pid = source.start(spec, disks_for(source.ctx, spec))["pid"]
    source.reboot("web1", hard=False)
    target_paths = disks_for(target.ctx, spec)
    accepted = target.migration_accept(spec, target_paths)
    assert target.migration_accept(spec, target_paths) == {**accepted, "changed": False}
    assert target.info("web1")["state"] == "incoming"
    with pytest.raises(NodeError, match="no complete migration"):
        target.migration_finish("web1", success=True)
    sent = source.migrate("web1", "127.0.0.1", accepted["port"], live=True)
    assert sent["bytes"] == 4 * 1024 * 1024 and not alive(src_pid)
    assert source.migrate("web1", "127.0.0.1", accepted["port"], live=True)["changed"] is False
    assert source.info("web1")["state"] == "migrated"
    done = target.migration_finish("web1", success=True)
    assert done == {"changed": True, "role": "target", "state": "running"}
    assert target.migration_finish("web1", success=True)["changed"] is False
    assert source.migration_finish("web1", success=True)["role"] == "source"
    assert source.list() == []
    moved = target.info("web1")
    assert moved is not None and moved["state"] == "running" and moved["boots"] == 2
    assert set(target_paths) <= open_files(moved["pid"])
    guest = json.loads((target.state_dir / "web1.guest.json").read_text())
    assert guest["migration"]["sha256"] == sent["sha256"]


def test_failed_migration_leaves_the_source_running(
    make_ctx: Callable[[str], NodeContext],
) -> None:
    source, target = FakeHypervisor(make_ctx("a")), FakeHypervisor(make_ctx("b"))
    spec = instance_spec()
    pid = source.start(spec, disks_for(source.ctx, spec))["pid"]
    accepted = target.migration_accept(spec, disks_for(target.ctx, spec))
    target_pid = target.info("web1")["pid"]
    assert target.migration_finish("web1", success=False)["role"] == "target"
    assert target.info("web1") is None and not alive(target_pid)
    for live in (True, False):
        with pytest.raises(TransferError):
            source.migrate("web1", "127.0.0.1", accepted["port"], live=live)
        info = source.info("web1")
        assert info["state"] == "running" and info["pid"] == pid
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert status != "T"
    assert source.migration_finish("web1", success=False)["changed"] is False
    heartbeat = source.info("web1")["heartbeat"]
    eventually(lambda: source.info("web1")["heartbeat"] > heartbeat)


def test_list_processes_finds_guests_even_without_their_state_file(hv: FakeHypervisor) -> None:
    spec = instance_spec()
    pid = hv.start(spec, disks_for(hv.ctx, spec))["pid"]
    (hv.state_dir / "web1.json").unlink()
    assert {"hypervisor": "fake", "name": "web1", "pid": pid} in list_processes(hv.ctx)
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: all(p["pid"] != pid for p in list_processes(hv.ctx)))


def test_nodes_sharing_a_process_namespace_see_only_their_own_guests(
    make_ctx: Callable[[str], NodeContext],
) -> None:
    # The in-process test nodes share one namespace: another node's guest (or a guest of
    # some other test on the machine) must not be reported as this node's orphan.
    mine, other = FakeHypervisor(make_ctx("mine")), FakeHypervisor(make_ctx("other"))
    spec = instance_spec()
    pid = other.start(spec, disks_for(other.ctx, spec))["pid"]
    assert all(p["pid"] != pid for p in list_processes(mine.ctx))
    assert any(p["pid"] == pid for p in list_processes(other.ctx))
