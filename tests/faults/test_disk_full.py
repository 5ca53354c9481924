"""Disk full during create, import and move, on lab nodes over real SSH.

The second lab node's file storage is a small tmpfs, mounted inside the mount namespace
its sshd (and so every ``herd-node`` session) runs in: the host's root mount is private,
so a mount made on the host side would never reach the node.  The test reads and fills
that tmpfs through ``/proc/<sshd pid>/root``.

The ops' own pre-check compares disk sizes with the live free space, so a write can only
run out of space if something fills the filesystem after the check: another writer
(``ballast``) or another instance's sparse disk that the check rightly did not count.
To fill it at a known moment, not by racing, the writers pause at a gate: the OS create
script ``herd-fill`` (writes its whole disk) and the decompressing side of the custom
compression tool that imports use.  A gated writer announces itself by touching
``<gate>.started`` and waits for ``<gate>`` to go.

Every fault checks the same things: a clear error naming the node and "no space", no
disk file, no new instance in the config, no lock held, no transfer worker left, no
orphan by ``cluster verify``, the export or source disk unchanged; then, after space is
freed, the same op succeeds.
``HERD_FAULTS_ALL=1`` runs the same faults with eight times the data.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from herd.errors import HerdError, PrerequisiteError
from herd.node.transfer.worker import WORKER_MODULE
from tests.engine.harness import ThreadMaster, cluster_on_lab, poll
from tests.engine.ops.test_instance_lab import install_os

pytestmark = pytest.mark.lab

MIB = 1024 * 1024
#: The full node's storage, and every disk's size: two never fit. The long form streams
#: and writes eight times as much (more extents, more chunks in flight when it fills).
SCALE = 8 if os.environ.get("HERD_FAULTS_ALL") == "1" else 1
STORAGE_MIB = 32 * SCALE
DISK_MIB = 24 * SCALE
REPO = Path(__file__).resolve().parents[2]
TOOL_DIR = Path("/etc/herd/compression")
#: The foreign file that fills the storage; verify rightly reports it as an orphan.
BALLAST = "ballast"
TOOL_NAME = f"herdtestgate{os.getpid()}"
#: A gate that is never opened must not hang the run: the writer gives up after this.
GATE_SECONDS = 300
#: Shell function of the gated writers: wait while the gate file ``$1`` exists.
GATE = f"""\
wait_at_gate() {{
  [ -e "$1" ] || return 0
  touch "$1.started"
  n=0
  while [ -e "$1" ] && [ "$n" -lt {GATE_SECONDS * 20} ]; do sleep 0.05; n=$((n + 1)); done
}}
"""
FILL_CREATE = f"""\
#!/bin/sh
# herd-fill create: write every byte of disk 0, as a real OS install writing an image does.
set -eu
{GATE}
wait_at_gate "$(dirname "$0")/gate"
size=$(stat -c %s "$DISK_0_PATH")
dd if=/dev/zero of="$DISK_0_PATH" bs=1M count="$size" iflag=count_bytes \\
  conv=notrunc,nocreat status=none
"""
GATED_TOOL = f"""\
#!/bin/sh
# gzip -1 whose decompressing side waits at a gate (imports fill disks with -d).
{GATE}
case "$1" in
  -h) echo "gzip -1 with a gate"; exit 0 ;;
  -d) wait_at_gate "$0.gate"; exec gzip -d -c ;;
  "") exec gzip -1 -c ;;
  *) echo "unexpected argument $1" >&2; exit 2 ;;
esac
"""


@dataclass
class Gate:
    """A writer's gate: ``close`` it before the op, ``open`` it once a writer waits."""

    path: Path

    def close(self) -> None:
        self.path.with_name(self.path.name + ".started").unlink(missing_ok=True)
        self.path.touch()

    def wait_reached(self) -> None:
        started = self.path.with_name(self.path.name + ".started")
        poll(f"a writer at {self.path}", started.exists, patience=120)

    def open(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Env:
    running: ThreadMaster
    lab: Any
    storage: Path  # the full node's file storage as its herd-node sees it
    os_gate: Gate
    tool_gate: Gate

    @property
    def full(self) -> Any:
        return self.lab.nodes[1]

    def run(self, op: str, **params: Any) -> Any:
        return self.running.api.run([{"op": op, **params}], timeout=300)

    def instances(self) -> list[str]:
        return sorted(i["name"] for i in self.running.api.query("instances"))


def mount_storage(node: Any) -> Path:
    """A ``STORAGE_MIB`` tmpfs on the node's file-storage dir, in its sshd's namespace
    (it goes with that namespace when the lab is taken down)."""
    pid = node.sshd_pid()
    (node.state_dir / "file-storage").mkdir(exist_ok=True)
    subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "mount", "-t", "tmpfs", "-o",
         f"size={STORAGE_MIB}m,mode=0750", "herd-disk-full", "/var/lib/herd-node/file-storage"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return Path(f"/proc/{pid}/root/var/lib/herd-node/file-storage")


def install_fill_os(base: Path, nodes: list[Any]) -> Path:
    """``herd-fill``: herd-image's scripts, with a create script that writes the disk."""
    os_dir = base / "herd-fill"
    os_dir.mkdir()
    for name in ("common.sh", "export", "import", "rename", "verify", "ganeti_api_version",
                 "parameters.list", "variants.list"):  # fmt: skip
        (os_dir / name).symlink_to(REPO / "os" / "herd-image" / name)
    create = os_dir / "create"
    create.write_text(FILL_CREATE)
    create.chmod(0o755)
    for node in nodes:
        install_os(node)
        (node.state_dir / "os" / "herd-fill").symlink_to(os_dir)
    return os_dir


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    TOOL_DIR.mkdir(parents=True, exist_ok=True)
    tool = TOOL_DIR / TOOL_NAME
    tool.write_text(GATED_TOOL)
    tool.chmod(0o755)
    try:
        with cluster_on_lab(
            tmp_path_factory.mktemp("master"), "df", 2, "df", enabled_hypervisors=["fake"],
            enabled_disk_templates=["file"], beparams={"memory": 32},
            compression_tools=[TOOL_NAME],
        ) as (running, lab):  # fmt: skip
            os_dir = install_fill_os(tmp_path_factory.mktemp("os"), lab.nodes)
            storage = mount_storage(lab.nodes[1])
            yield Env(running, lab, storage, Gate(os_dir / "gate"), Gate(Path(f"{tool}.gate")))
    finally:
        tool.unlink(missing_ok=True)
        Path(f"{tool}.gate").unlink(missing_ok=True)
        Path(f"{tool}.gate.started").unlink(missing_ok=True)


def add(name: str, node: Any, **params: Any) -> dict[str, Any]:
    return {"op": "instance.add", "name": name, "disk_template": "file",
            "disks": [f"{DISK_MIB}M"], "primary_node": node.name, "start": False,
            **params}  # fmt: skip


def fill_op(name: str, node: Any) -> dict[str, Any]:
    return add(name, node, os="herd-fill")


def ballast(env: Env, leave_mib: int) -> Path:
    """A foreign file taking all but ``leave_mib`` MiB of the full node's storage."""
    path = env.storage / BALLAST
    fs = os.statvfs(env.storage)
    chunks, rest = divmod(fs.f_bavail * fs.f_frsize - leave_mib * MIB, MIB)
    with open(path, "wb") as f:
        for _ in range(chunks):
            f.write(bytes(MIB))
        f.write(bytes(rest))
    return path


def storage_files(env: Env) -> list[str]:
    return sorted(str(p.relative_to(env.storage)) for p in env.storage.rglob("*"))


def held_locks(env: Env) -> list[dict[str, Any]]:
    return [row for row in env.running.master.locks.info() if row["holders"] or row["pending"]]


def workers(node: Any) -> list[str]:
    """Transfer workers still running in the node's namespace."""
    out = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    found = []
    for pid in out:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if WORKER_MODULE in cmdline:
            found.append(cmdline)
    return found


def fails_with_no_space(
    env: Env, job: list[dict[str, Any]], gate: Gate, fill: Callable[[], object]
) -> HerdError:
    """Run ``job`` with ``gate`` closed; once a writer waits there, ``fill()`` the storage
    and open the gate. Returns the job's error."""
    client = env.running.client()
    gate.close()
    try:
        job_id = client.submit(job)
        gate.wait_reached()
        fill()
    finally:
        gate.open()
    doc = client.wait(job_id, timeout=300)
    assert doc["status"] == "error", doc
    return HerdError.from_dict(doc["error"])


def assert_clean_failure(env: Env, error: HerdError, files: list[str]) -> None:
    """The error says where and why; nothing of the failed op is left anywhere, by what
    is on disk, the lock table, the node processes and ``cluster.verify``."""
    assert env.full.name in error.message, error.message
    assert "no space" in error.message.lower(), error.message
    assert storage_files(env) == files
    assert held_locks(env) == []
    found = {n: [f["object"] for f in o] for n, o in env.run("cluster.verify")["orphans"].items()}
    foreign = [f"/var/lib/herd-node/file-storage/{BALLAST}"] if BALLAST in files else []
    assert found == {env.lab.nodes[0].name: [], env.full.name: foreign}
    assert [workers(n) for n in env.lab.nodes] == [[], []]


def test_a_disk_larger_than_the_free_space_is_refused_before_anything_is_made(
    env: Env, injected: Callable[[str], None]
) -> None:
    injected("disk full at instance.add's pre-check")
    with pytest.raises(PrerequisiteError) as err:
        env.running.api.run([add("toobig", env.full, disks=[f"{STORAGE_MIB * 2}M"],
                                 install=False)])  # fmt: skip
    assert env.full.name in err.value.message and "free" in err.value.message
    assert storage_files(env) == [] and env.instances() == []


def test_an_install_that_runs_out_of_space_leaves_nothing_and_succeeds_later(
    env: Env, injected: Callable[[str], None]
) -> None:
    placed: list[Path] = []
    injected("disk full at instance.add's OS install")
    error = fails_with_no_space(env, [fill_op("fill1", env.full)], env.os_gate,
                                lambda: placed.append(ballast(env, leave_mib=4)))  # fmt: skip
    assert "fill1" not in env.instances()
    assert_clean_failure(env, error, [BALLAST])
    placed[0].unlink()
    env.running.api.run([fill_op("fill1", env.full)], timeout=300)
    env.run("instance.remove", name="fill1")
    assert storage_files(env) == []


def write_random(path: Path, size_mib: int) -> str:
    with open(path, "r+b") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image(env: Env, name: str) -> Path:
    (inst,) = env.running.api.query("instances", [name])
    (path,) = env.storage.glob(f"{inst['uuid']}/*.img")
    return path


def test_a_sparse_disk_filled_during_another_install_is_left_alone(
    env: Env, injected: Callable[[str], None]
) -> None:
    """The pre-check accepts the second disk because the first is sparse; the first
    one's guest then writes it full while the second's OS install runs."""
    env.running.api.run([add("sparse1", env.full, install=False)])
    first = image(env, "sparse1")
    files = storage_files(env)
    digests: list[str] = []
    injected("disk full at instance.add's OS install beside a sparse disk")
    error = fails_with_no_space(env, [fill_op("sparse2", env.full)], env.os_gate,
                                lambda: digests.append(write_random(first, DISK_MIB)))  # fmt: skip
    assert "sparse2" not in env.instances()
    assert_clean_failure(env, error, files)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == digests[0]
    env.run("instance.remove", name="sparse1")
    env.running.api.run([fill_op("sparse2", env.full)], timeout=300)
    env.run("instance.remove", name="sparse2")
    assert storage_files(env) == []


def export_digests(node: Any, name: str) -> dict[str, str]:
    base = node.state_dir / "export" / name
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.iterdir())}


def on_the_other_node(env: Env, name: str) -> tuple[Path, str]:
    """An instance on the first node whose disk's first ``DISK_MIB - 4`` MiB are random:
    its image and digest."""
    source = env.lab.nodes[0]
    env.running.api.run([add(name, source, install=False)])
    (inst,) = env.running.api.query("instances", [name])
    (path,) = (source.state_dir / "file-storage").glob(f"{inst['uuid']}/*.img")
    return path, write_random(path, DISK_MIB - 4)


def exported(env: Env, name: str, where: Any) -> dict[str, str]:
    """An export on ``where`` of such an instance, which is removed."""
    on_the_other_node(env, name)
    env.run("instance.export", name=name, target_node=where.name, compression=TOOL_NAME,
            remove_instance=True)  # fmt: skip
    return export_digests(where, name)


@pytest.mark.parametrize("held_on", ["remote", "local"])
def test_an_import_that_runs_out_of_space_leaves_the_export_and_no_disk(
    env: Env, held_on: str, injected: Callable[[str], None]
) -> None:
    """``remote``: the export is on the other node and streams over TLS to the full one;
    ``local``: the full node restores its own export straight onto the new disk."""
    name = f"imp-{held_on}"
    where = env.lab.nodes[0] if held_on == "remote" else env.full
    before = exported(env, name, where)
    op = {"op": "instance.import", "src_node": where.name, "src_name": name,
          "primary_node": env.full.name, "start": False}  # fmt: skip
    placed: list[Path] = []
    injected(f"disk full at instance.import from a {held_on} export")
    error = fails_with_no_space(env, [op], env.tool_gate,
                                lambda: placed.append(ballast(env, leave_mib=4)))  # fmt: skip
    assert name not in env.instances()
    assert_clean_failure(env, error, [BALLAST])
    assert export_digests(where, name) == before
    assert not list((where.state_dir / "export").glob(".work-*"))
    placed[0].unlink()
    env.running.api.run([op], timeout=300)
    assert export_digests(where, name) == before
    env.run("instance.remove", name=name)
    env.run("export.remove", name=name)
    assert storage_files(env) == []


def test_a_move_onto_a_node_that_fills_up_keeps_the_instance_where_it_was(
    env: Env, injected: Callable[[str], None]
) -> None:
    """The receive side of an intra-cluster move: its decoder waits at the gate."""
    source = env.lab.nodes[0]
    path, digest = on_the_other_node(env, "mover")
    op = {"op": "instance.move", "name": "mover", "target_node": env.full.name,
          "compression": TOOL_NAME}  # fmt: skip
    placed: list[Path] = []
    injected("disk full at instance.move's receiving end")
    error = fails_with_no_space(env, [op], env.tool_gate,
                                lambda: placed.append(ballast(env, leave_mib=4)))  # fmt: skip
    assert_clean_failure(env, error, [BALLAST])
    (after,) = env.running.api.query("instances", ["mover"])
    assert after["primary_node_name"] == source.name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    placed[0].unlink()
    env.running.api.run([op], timeout=300)
    (moved,) = env.running.api.query("instances", ["mover"])
    assert moved["primary_node_name"] == env.full.name
    assert hashlib.sha256(image(env, "mover").read_bytes()).hexdigest() == digest
    env.run("instance.remove", name="mover")
    assert storage_files(env) == []
