"""The Herd demo, run by ``scripts/demo.sh``: the whole story on this machine's lab.

1. Two clusters, ``alpha`` (3 nodes) and ``beta`` (2 nodes): lab nodes are network
   namespaces with their own sshd; each cluster's master runs here and reaches its nodes
   over SSH.
2. An instance on ``alpha``, created with opportunistic locking and retries, installed
   from our ``herd-image`` OS (an ext4 filesystem) and started; then 128 MiB are written
   into its filesystem and deleted, as a guest deleting a big file would leave them.
3. It is moved to ``beta`` with ``herd instance move --dest-cluster --zero-free-space``:
   its free space is zeroed first, so the deleted data never crosses the wire; the
   clusters share a domain secret and nothing else. The source copy is kept (stopped) so
   the disk that arrived can be compared with it byte for byte.
4. A DRBD-backed instance on two qemu guests with a real DRBD kernel: data written on
   the primary is read back on the other node after a failover (skip with --no-drbd).

Every step goes through the real engine: jobs, locks, SSH, TLS streams.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lab"))

import herdlab  # noqa: E402

DEMO = Path(os.environ.get("HERD_DEMO_DIR", REPO / ".lab" / "demo"))
CLUSTERS = {"alpha": 3, "beta": 2}
OS_DIR = Path("/usr/share/herd/os")
ZEROING_IMAGE = Path("/var/cache/herd-lab/zeroing-image")
PART_OFFSET = 2048 * 512  # herd-image's filesystem starts at sector 2048


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def herd(cluster: str, *args: str, capture: bool = False) -> str:
    """Run the ``herd`` CLI against one cluster's master, echoing the command."""
    env = {**os.environ, **cluster_env(cluster)}
    print(f"$ herd {' '.join(args)}    [{cluster}]", flush=True)
    done = subprocess.run(["herd", *args], env=env, text=True, check=True, capture_output=capture)
    return done.stdout if capture else ""


def cluster_env(cluster: str) -> dict[str, str]:
    lab = herdlab.load(f"demo{cluster}")
    return {
        "HERD_STATE_DIR": str(DEMO / cluster / "state"),
        "HERD_SOCKET": str(DEMO / cluster / "master.sock"),
        "HERD_BOOTSTRAP_KEY": lab.key_path,
    }


def master_pids(cluster: str) -> list[int]:
    marker = f"--state-dir {DEMO / cluster / 'state'}"
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "herd.cli.main" in cmd and marker in cmd:
                pids.append(int(proc.name))
    return pids


def down() -> None:
    for cluster in CLUSTERS:
        for pid in master_pids(cluster):
            os.kill(pid, 15)
        herdlab.down(f"demo{cluster}")
    try:
        import vmnodes

        vmnodes.down("demodrbd")
    except Exception as exc:  # noqa: BLE001 - nothing to take down is fine
        print(f"(no VM lab to remove: {exc})")
    shutil.rmtree(DEMO, ignore_errors=True)


def build_cluster(cluster: str, nodes: int, secret: str | None) -> None:
    """A lab and a cluster on it, through the CLI as an operator would."""
    step(f"lab for cluster {cluster}: {nodes} nodes (network namespaces with their own sshd)")
    lab = herdlab.up(f"demo{cluster}", nodes)
    (DEMO / cluster).mkdir(parents=True, exist_ok=True)
    env = cluster_env(cluster)
    step(f"herd cluster init {cluster}: starts the master, makes the CA and the SSH key")
    first = lab.nodes[0]
    # The secret goes through the environment: on the command line ps would show it.
    with_env = {**os.environ, **env, **({"HERD_DOMAIN_SECRET": secret} if secret else {})}
    cmd = [
        "herd",
        "cluster",
        "init",
        cluster,
        "--master-node",
        first.name,
        "--primary-ip",
        first.ip,
        "--ssh-port",
        str(first.port),
        "--enabled-hypervisors",
        "fake,kvm",
        "--enabled-disk-templates",
        "file,plain,drbd",
        "--zeroing-image",
        str(ZEROING_IMAGE),
    ]
    shown = "HERD_DOMAIN_SECRET=<domain secret> " if secret else ""
    print("$ " + shown + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=with_env, check=True)
    for node in lab.nodes[1:]:
        herd(
            cluster, "node", "add", node.name, "--primary-ip", node.ip, "--ssh-port", str(node.port)
        )
    herd(cluster, "cluster", "verify")
    herd(cluster, "node", "list")


def domain_secret(cluster: str) -> str:
    dump = json.loads(herd(cluster, "config", "dump", "--with-secrets", capture=True))
    return dump["objects"]["cluster"][0]["domain_secret"]


def disk_image(cluster: str, name: str) -> Path:
    inst = json.loads(herd(cluster, "-o", "json", "instance", "info", name, capture=True))[0]
    lab = herdlab.load(f"demo{cluster}")
    node = next(n for n in lab.nodes if n.name == inst["primary_node_name"])
    (image,) = node.state_dir.glob(f"file-storage/*/disk0-{inst['disks'][0]['uuid']}.img")
    return image


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_and_delete(image: Path, mib: int) -> None:
    """What a guest deleting a big file leaves: free blocks still holding data (debugfs
    edits the ext4 inside the image without mounting it)."""
    junk = image.with_name(".demo-junk")
    junk.write_bytes(os.urandom(mib * 2**20))
    try:
        for request in (f"write {junk} big-file.bin", "rm big-file.bin"):
            subprocess.run(
                ["debugfs", "-w", "-R", request, f"{image}?offset={PART_OFFSET}"],
                check=True,
                capture_output=True,
            )
    finally:
        junk.unlink()


def move_story() -> None:
    step("the herd-image OS definition, where nodes look for OS definitions")
    OS_DIR.mkdir(parents=True, exist_ok=True)
    link = OS_DIR / "herd-image"
    if not link.exists():
        link.symlink_to(REPO / "os" / "herd-image")
    step("web1 on alpha: opportunistic locking with retries, OS installed, started")
    herd(
        "alpha",
        "instance",
        "add",
        "web1",
        "--disk-template",
        "file",
        "--disks",
        "256M",
        "--os",
        "herd-image+tiny",
        "--memory",
        "128",
        "--tags",
        "web,demo",
        "--opportunistic-tries",
        "5",
        "--opportunistic-delay",
        "2",
    )
    herd("alpha", "instance", "list")
    step("inside web1's filesystem: 128 MiB written, then deleted")
    write_and_delete(disk_image("alpha", "web1"), 128)
    step("move web1 to beta: zero free space, then stream node to node over TLS")
    herd(
        "alpha",
        "instance",
        "move",
        "web1",
        "--dest-cluster",
        str(DEMO / "beta" / "master.sock"),
        "--zero-free-space",
        "--compression",
        "zstd-fast",
        "--keep-source",
    )
    step("verify on beta: running, same MACs, the same disk bytes as the source copy")
    herd("beta", "instance", "list")
    source, arrived = sha256(disk_image("alpha", "web1")), sha256(disk_image("beta", "web1"))
    print(
        f"disk sha256 on alpha (source, zeroed): {source}\n"
        f"disk sha256 on beta (moved):           {arrived}"
    )
    if source != arrived:
        raise SystemExit("demo failed: the moved disk differs")
    step("the source copy is no longer needed")
    herd("alpha", "instance", "remove", "web1")


def drbd_story() -> None:
    import vmnodes

    step("DRBD: two qemu guests with a real DRBD 8.4 kernel (first run builds the image)")
    lab = vmnodes.up("demodrbd", 2)
    for node in lab.nodes:
        node.ssh(
            "mkdir -p /var/lib/herd-node && { vgs herd >/dev/null 2>&1 || "
            "{ pvcreate -q /dev/vdb; vgcreate -q herd /dev/vdb; }; }"
        )
    state = Path(tempfile.mkdtemp(prefix="herd-demo-drbd-"))
    env = {
        **os.environ,
        "HERD_STATE_DIR": str(state / "state"),
        "HERD_SOCKET": str(state / "master.sock"),
        "HERD_BOOTSTRAP_KEY": lab.key_path,
    }

    def run(*args: str, capture: bool = False) -> str:
        print(f"$ herd {' '.join(args)}    [gamma]", flush=True)
        done = subprocess.run(
            ["herd", *args], env=env, check=True, text=True, capture_output=capture
        )
        return done.stdout if capture else ""

    n1, n2 = lab.nodes
    try:
        run(
            "cluster",
            "init",
            "gamma",
            "--master-node",
            n1.name,
            "--primary-ip",
            n1.ip,
            "--host-key",
            n1.host_key,
            "--enabled-hypervisors",
            "fake",
            "--enabled-disk-templates",
            "drbd",
        )
        run("node", "add", n2.name, "--primary-ip", n2.ip, "--host-key", n2.host_key)
        step("db1: a DRBD instance, primary and secondary chosen by the allocator")
        run(
            "instance",
            "add",
            "db1",
            "--disk-template",
            "drbd",
            "--disks",
            "64M",
            "--no-install",
            "--memory",
            "32",
        )
        info = json.loads(run("-o", "json", "instance", "info", "db1", capture=True))[0]
        minor = next(iter(info["disks"][0]["params"]["minors"].values()))
        primary = lab.node(info["primary_node_name"])
        step(f"write 8 MiB of random data on {primary.name}'s /dev/drbd{minor}")
        digest = primary.ssh(
            f"head -c 8M /dev/urandom | tee /tmp/pattern | dd of=/dev/drbd"
            f"{minor} oflag=direct bs=1M status=none && sha256sum /tmp/pattern"
        ).stdout.split()[0]
        step("fail over to the secondary and read the same bytes there")
        run("instance", "failover", "db1")
        info = json.loads(run("-o", "json", "instance", "info", "db1", capture=True))[0]
        other = lab.node(info["primary_node_name"])
        minor = info["disks"][0]["params"]["minors"][other.name]
        read = other.ssh(f"head -c 8M /dev/drbd{minor} | sha256sum").stdout.split()[0]
        print(f"written on {primary.name}: {digest}\nread on {other.name}:    {read}")
        if read != digest:
            raise SystemExit("demo failed: DRBD data differs after failover")
        run("cluster", "verify")
        run("instance", "remove", "db1")
    finally:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if str(state / "state") in cmd and "herd.cli.main" in cmd:
                    os.kill(int(proc.name), 15)
        vmnodes.down("demodrbd")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", choices=("run", "down"), default="run")
    parser.add_argument("--no-drbd", action="store_true", help="skip the qemu/DRBD part")
    args = parser.parse_args()
    if args.action == "down":
        down()
        print("demo removed")
        return 0
    started = time.monotonic()
    down()
    step("the zeroing helper image (kernel + busybox initramfs, built once per machine)")
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "build-zeroing-image.py"), "--dir", str(ZEROING_IMAGE)],
        check=True,
    )
    secret = None
    for cluster, nodes in CLUSTERS.items():
        build_cluster(cluster, nodes, secret)
        secret = secret or domain_secret(cluster)
    move_story()
    if not args.no_drbd:
        drbd_story()
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f} s. The clusters keep running:"
        f"\n  HERD_SOCKET={DEMO / 'alpha' / 'master.sock'} herd instance list"
        f"\n  HERD_SOCKET={DEMO / 'beta' / 'master.sock'} herd instance list"
        "\nRemove everything with: bash scripts/demo.sh down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
