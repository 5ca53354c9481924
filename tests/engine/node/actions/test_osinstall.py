"""OS actions with real scripts on sparse files: herd-image (ours) and Debian's noop."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import herdlab
import paramiko
import pytest

from herd.errors import ConflictError, NodeError, ValidationError
from herd.node.actions.osinstall import os_create, os_list, os_rename, os_verify
from herd.node.actions.registry import NodeContext, dispatch
from herd.rpc.client import NodeClient
from herd.rpc.ssh import NodeAddress, SSHPool
from tests.engine.node.os.helpers import HERD_IMAGE, make_os, noop, sparse, spec

__all__ = ["noop"]
ROOT_FS = "?offset=1048576"


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NodeContext:
    """A node root whose own os/ holds herd-image; the system path is just Debian's."""
    monkeypatch.setenv("HERD_OS_SEARCH_PATH", "/usr/share/ganeti/os")
    root = tmp_path / "root"
    (root / "os").mkdir(parents=True)
    (root / "os" / "herd-image").symlink_to(HERD_IMAGE)
    return NodeContext(root)


def fs_cat(disk: str, path: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", f"cat {path}", disk + ROOT_FS], capture_output=True, text=True, check=True
    ).stdout


def test_tiny_writes_a_partitioned_disk_with_a_clean_ext4(ctx: NodeContext, tmp_path: Path) -> None:
    disk = sparse(tmp_path / "d0")
    s = spec(osparams={"fs_label": "webroot", "marker": "hello"})
    result = dispatch(ctx, "os_create", {"spec": s, "disk_paths": [disk]})
    assert result["changed"] is True and result["os"] == "herd-image+tiny"
    table = json.loads(
        subprocess.run(["sfdisk", "-J", disk], capture_output=True, check=True).stdout
    )
    (part,) = table["partitiontable"]["partitions"]
    assert (part["start"], part["bootable"], part["type"]) == (2048, True, "83")
    assert part["start"] + part["size"] <= 32 * 2048
    subprocess.run(["e2fsck", "-fn", disk + ROOT_FS], capture_output=True, check=True)
    assert fs_cat(disk, "/marker").splitlines() == [
        "herd-image tiny",
        "name=web1",
        "reinstall=0",
        "marker=hello",
    ]
    assert fs_cat(disk, "/etc/hostname") == "web1\n"
    header = subprocess.run(
        ["dumpe2fs", "-h", disk + ROOT_FS], capture_output=True, text=True
    ).stdout
    assert "Filesystem volume name:   webroot" in header
    log = Path(result["log"])
    assert log.parent == ctx.root / "os-logs" and "created tiny" in log.read_text()


def test_replay_does_not_rerun_create_and_other_os_needs_reinstall(
    ctx: NodeContext, tmp_path: Path
) -> None:
    disk = sparse(tmp_path / "d0")
    first = os_create(ctx, spec(), [disk])
    Path(disk).open("r+b").write(b"guest data")  # noqa: SIM115 - the guest writes after boot
    again = os_create(ctx, spec(), [disk])
    assert again == {"changed": False, "os": "herd-image+tiny", "log": first["log"]}
    assert Path(disk).read_bytes()[:10] == b"guest data"
    with pytest.raises(ConflictError) as err:
        os_create(ctx, spec("herd-image+blank"), [disk])
    assert err.value.details["field"] == "reinstall"
    redo = os_create(ctx, spec(), [disk], reinstall=True)
    assert redo["changed"] is True and "web1-reinstall-" in redo["log"]
    assert "reinstall=1" in fs_cat(disk, "/marker")
    new_disks = spec()
    new_disks["disks"][0]["uuid"] = "disk-new"  # type: ignore[index]
    assert os_create(ctx, new_disks, [disk])["changed"] is True


def test_blank_zeroes_the_whole_disk(ctx: NodeContext, tmp_path: Path) -> None:
    disk = tmp_path / "d0"
    disk.write_bytes(os.urandom(3 * 1024 * 1024 + 512))
    os_create(ctx, spec("herd-image+blank"), [str(disk)])
    data = disk.read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 512 and data.count(0) == len(data)


def test_failed_create_reports_the_log_and_is_retried(ctx: NodeContext, tmp_path: Path) -> None:
    flag = tmp_path / "ok"
    body = f'[ -e "{flag}" ] || {{ echo "mirror unreachable" >&2; exit 2; }}'
    make_os(ctx.root / "os", "flaky", scripts={"create": body})
    disk = sparse(tmp_path / "d0")
    with pytest.raises(NodeError) as err:
        os_create(ctx, spec("flaky"), [disk])
    assert "mirror unreachable" in err.value.details["log_tail"]
    flag.touch()
    assert os_create(ctx, spec("flaky"), [disk])["changed"] is True


def test_bad_requests_name_the_field(ctx: NodeContext, tmp_path: Path) -> None:
    disk = sparse(tmp_path / "d0")
    cases = [
        (spec("herd-image+huge"), [disk], "spec.os"),
        (spec(osparams={"colour": "red"}), [disk], "spec.osparams.colour"),
        (spec(), [disk, disk], "disk_paths"),
        ({**spec(), "uuid": "../x"}, [disk], "spec.uuid"),
    ]
    for s, paths, field in cases:
        with pytest.raises(ValidationError) as err:
            os_create(ctx, s, paths)
        assert err.value.details["field"] == field
    with pytest.raises(ValidationError) as typed:
        dispatch(ctx, "os_create", {"spec": spec(), "disk_paths": disk})
    assert typed.value.details["field"] == "disk_paths"
    assert not (ctx.root / "os-installs").exists()


def test_rename_updates_the_guest_once(ctx: NodeContext, tmp_path: Path) -> None:
    disk = sparse(tmp_path / "d0")
    os_create(ctx, spec(), [disk])
    renamed = {**spec(), "name": "web2"}
    result = os_rename(ctx, renamed, "web1", [disk])
    assert result["changed"] is True and "web2-rename-" in result["log"]
    assert fs_cat(disk, "/etc/hostname") == "web2\n"
    assert "name=web2" in fs_cat(disk, "/marker")
    assert os_rename(ctx, renamed, "web1", [disk])["changed"] is False
    with pytest.raises(ValidationError) as err:
        os_rename(ctx, renamed, "bad/name", [disk])
    assert err.value.details["field"] == "old_name"


def test_rename_fails_loudly_on_a_disk_without_our_filesystem(
    ctx: NodeContext, tmp_path: Path
) -> None:
    with pytest.raises(NodeError) as err:
        os_rename(ctx, spec(), "old", [sparse(tmp_path / "d0")])
    assert "no herd-image filesystem" in err.value.details["log_tail"]


def test_verify_runs_the_script_and_blames_the_parameters(ctx: NodeContext) -> None:
    ok = os_verify(ctx, "herd-image", {"fs_label": "root-1"})
    assert ok["changed"] is False and ok["variant"] == "tiny"
    assert "herd-image-verify-" in ok["log"]
    with pytest.raises(ValidationError) as err:
        os_verify(ctx, "herd-image+blank", {"fs_label": "x" * 17})
    assert err.value.details["field"] == "osparams"
    assert "longer than 16" in str(err.value)
    with pytest.raises(ValidationError) as unknown:
        os_verify(ctx, "herd-image", {"size": "1"})
    assert unknown.value.details["field"] == "osparams.size"


def test_debian_noop_installs_and_lists(ctx: NodeContext, noop: Path, tmp_path: Path) -> None:
    listed = {d["name"]: d for d in os_list(ctx)["os"]}
    assert listed["noop"]["api_version"] == 10 and listed["noop"]["path"] == str(noop)
    assert listed["herd-image"]["variants"] == ["tiny", "blank"]
    assert os_list(ctx)["search_path"] == [str(ctx.root / "os"), "/usr/share/ganeti/os"]
    disk = sparse(tmp_path / "d0", 1)
    assert os_create(ctx, spec("noop"), [disk])["changed"] is True
    assert Path(disk).read_bytes().count(0) == 1024 * 1024
    assert os_verify(ctx, "noop")["log"] is None
    with pytest.raises(ValidationError):
        os_verify(ctx, "noop+default")
    with pytest.raises(ValidationError):
        os_verify(ctx, "noop", {"dhcp": "yes"})


@pytest.mark.lab
def test_os_create_through_a_lab_node(lab_cluster: herdlab.Lab) -> None:
    """The whole path: NodeClient, SSH, herd-node on the node, the script, the disk."""
    node = lab_cluster.nodes[0]
    (node.state_dir / "os").mkdir(exist_ok=True)
    link = node.state_dir / "os" / "herd-image"
    if not link.is_symlink():
        link.symlink_to(HERD_IMAGE)
    (node.state_dir / "disks").mkdir(exist_ok=True)
    host_disk = sparse(node.state_dir / "disks" / "os-lab-d0")
    s = {**spec(), "uuid": f"lab-{os.getpid()}"}
    key = paramiko.Ed25519Key.from_private_key_file(lab_cluster.key_path)
    addr = NodeAddress(node.name, node.ip, node.host_key, node.port)
    with SSHPool(key, connect_timeout=5.0) as pool, NodeClient(pool, max_sessions=1) as client:
        args = {"spec": s, "disk_paths": ["/var/lib/herd-node/disks/os-lab-d0"]}
        assert client.call(addr, "os_create", args)["changed"] is True
        assert client.call(addr, "os_create", args)["changed"] is False
        names = [d["name"] for d in client.call(addr, "os_list")["os"]]
    assert "herd-image" in names
    assert "name=web1" in fs_cat(host_disk, "/marker")
