"""The Herd demo, run by ``scripts/demo.sh``: the whole story on this machine's lab, told
through the Ansible collection as its users drive it.

1. Two clusters, ``alpha`` (3 nodes) and ``beta`` (2 nodes): lab nodes are network
   namespaces with their own sshd, and each lab writes its own inventory
   (``lab/herdlab.py inventory``). ``playbooks/site.yml`` builds each cluster from it, the
   master running here and reaching its nodes over SSH; the clusters share a domain
   secret (kept in a file, read with a lookup) and nothing else.
2. ``playbooks/instance_create.yml`` creates ``web1`` on alpha with opportunistic locking
   and retries, installed from our ``herd-image`` OS (an ext4 filesystem) and started;
   an ad-hoc ``ansible -m herd.cluster.instance`` call tags it. Then 128 MiB are written
   into its filesystem and deleted, as a guest deleting a big file would leave them.
3. ``playbooks/instance_move.yml`` moves it to beta with its free space zeroed first, so
   the deleted data never crosses the wire: first only the move (the source is kept, so
   the disk that arrived is compared with it byte for byte), then the whole playbook,
   which verifies the copy and removes the source.
4. A DRBD-backed instance on two qemu guests with a real DRBD kernel: data written on
   the primary is read back on the other node after a failover (skip with --no-drbd).

Every playbook runs twice; the second run must report ``changed=0``. Every step goes
through the real engine: jobs, locks, SSH, TLS streams.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lab"))

import herdlab  # noqa: E402

DEMO = Path(os.environ.get("HERD_DEMO_DIR", REPO / ".lab" / "demo"))
#: What the demo's lab names start with (the test of the demo runs beside a user's own).
LABS = os.environ.get("HERD_DEMO_LABS", "demo")
CLUSTERS = {"alpha": 3, "beta": 2}
OS_DIR = Path("/usr/share/herd/os")
ZEROING_IMAGE = Path("/var/cache/herd-lab/zeroing-image")
PART_OFFSET = 2048 * 512  # herd-image's filesystem starts at sector 2048
PLAYBOOKS = REPO / "playbooks"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def ansible_env() -> dict[str, str]:
    """The collection this checkout builds, installed under the demo directory."""
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(DEMO / "collections"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
        "ANSIBLE_NOCOLOR": "1",
    }


def install_collection() -> None:
    step("the herd.cluster collection, built from this checkout and installed for the demo")
    build = DEMO / "build"
    build.mkdir(parents=True, exist_ok=True)
    shown(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(build), "."])
    (tarball,) = build.glob("herd-cluster-*.tar.gz")
    shown(["ansible-galaxy", "collection", "install", "--force", "-p", str(DEMO / "collections"),
           str(tarball)])  # fmt: skip


def shown(argv: list[str], capture: bool = False) -> str:
    """Run a command as the demo's reader would type it, echoing it first."""
    print("$ " + " ".join(argv), flush=True)
    done = subprocess.run(
        argv, cwd=REPO, env=ansible_env(), check=True, text=True, capture_output=capture
    )
    return done.stdout if capture else ""


def playbook(inventory: Path, name: str, extra: Path | None = None, *args: str) -> int:
    """Run a playbook of the collection; the number of changes its recap reports.

    Its output is shown as it comes; a failed or unreachable host ends the demo.
    """
    # PLAYBOOKS / an absolute path (the DRBD part's own playbook) is that path.
    argv = ["ansible-playbook", "-i", str(inventory), str(PLAYBOOKS / name), *args]
    if extra is not None:
        argv += ["-e", f"@{extra}"]
    print("$ " + " ".join(argv), flush=True)
    proc = subprocess.Popen(
        argv, cwd=REPO, env=ansible_env(), text=True, stdout=subprocess.PIPE, bufsize=1
    )
    assert proc.stdout is not None
    changed = 0
    for line in proc.stdout:
        print(line, end="", flush=True)
        recap = RECAP.match(line)
        if recap:
            changed += int(recap.group(2))
            if int(recap.group(3)) or int(recap.group(4)):
                raise SystemExit(f"demo failed: {name} left a host failed or unreachable")
    if proc.wait() != 0:
        raise SystemExit(f"demo failed: {name} exited with {proc.returncode}")
    return changed


def twice(inventory: Path, name: str, extra: Path | None = None) -> None:
    """A playbook's run, then its rerun, which must change nothing."""
    playbook(inventory, name, extra)
    step(f"{name} again: everything is already as declared")
    again = playbook(inventory, name, extra)
    if again:
        raise SystemExit(f"demo failed: the second run of {name} changed {again} things")


def write_vars(name: str, values: dict[str, Any]) -> Path:
    path = DEMO / f"{name}.json"
    path.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    return path


def inventory_path(cluster: str) -> Path:
    return DEMO / f"{cluster}.inventory.json"


def socket(cluster: str) -> str:
    """The master's socket, where the cluster's inventory puts it."""
    inventory = json.loads(inventory_path(cluster).read_text(encoding="utf-8"))
    return inventory["all"]["children"]["herd_masters"]["hosts"]["controller"]["herd_master_socket"]


def herd(cluster: str, *args: str) -> str:
    """The operator's view of one cluster, through the ``herd`` CLI."""
    print(f"$ herd {' '.join(args)}    [{cluster}]", flush=True)
    env = {**os.environ, "HERD_SOCKET": socket(cluster)}
    return subprocess.run(
        ["herd", *args], env=env, text=True, check=True, capture_output=True
    ).stdout


def down() -> None:
    """Every lab the demo made (the masters run from the labs' directories and go with
    them), and the demo's own directory."""
    for cluster in CLUSTERS:
        herdlab.down(f"{LABS}{cluster}")
    try:
        import vmnodes

        vmnodes.down(f"{LABS}drbd")
    except Exception as exc:  # noqa: BLE001 - nothing to take down is fine
        print(f"(no VM lab to remove: {exc})")
    shutil.rmtree(DEMO, ignore_errors=True)


def build_cluster(cluster: str, nodes: int, secret_file: Path) -> Path:
    """A lab, its inventory, and site.yml run on it twice."""
    step(f"lab for cluster {cluster}: {nodes} nodes (network namespaces with their own sshd)")
    lab = herdlab.up(f"{LABS}{cluster}", nodes)
    inventory = herdlab.inventory(lab.name)
    inventory["all"]["vars"]["herd_cluster_name"] = cluster
    controller = inventory["all"]["children"]["herd_masters"]["hosts"]["controller"]
    controller["herd_cluster_settings"] = {
        "enabled_hypervisors": ["fake", "kvm"],
        "enabled_disk_templates": ["file"],
        "zeroing_image": str(ZEROING_IMAGE),
        "domain_secret": f"{{{{ lookup('ansible.builtin.file', '{secret_file}') }}}}",
    }
    path = inventory_path(cluster)
    path.write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
    step(f"site.yml builds {cluster} from {path.name}: node role, master, cluster, nodes")
    twice(path, "site.yml")
    print(herd(cluster, "node", "list"))
    return path


def disk_image(cluster: str, name: str) -> Path:
    inst = json.loads(herd(cluster, "-o", "json", "instance", "info", name))[0]
    lab = herdlab.load(f"{LABS}{cluster}")
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


def move_story(alpha: Path, beta: Path) -> None:
    step("the herd-image OS definition, where nodes look for OS definitions")
    OS_DIR.mkdir(parents=True, exist_ok=True)
    link = OS_DIR / "herd-image"
    if not link.exists():
        link.symlink_to(REPO / "os" / "herd-image")
    step("instance_create.yml: web1 on alpha, opportunistic locking with retries, started")
    create = write_vars(
        "create",
        {
            "herd_master_host": "controller",
            "herd_socket": socket("alpha"),
            "herd_opportunistic_tries": 5,
            "herd_opportunistic_delay": 2,
            "herd_instances": [
                {"name": "web1", "disk_template": "file", "disks": ["256M"],
                 "os": "herd-image+tiny", "memory": 128, "tags": ["web", "demo"]},
            ],
        },
    )  # fmt: skip
    twice(alpha, "instance_create.yml", create)
    step("an ad-hoc call, as from a shell or an AWX ad-hoc command: tag web1 for the move")
    shown(["ansible", "-i", str(alpha), "controller", "-m", "herd.cluster.instance",
           "-a", f"name=web1 tags=web,demo,moving socket={socket('alpha')}"])  # fmt: skip
    print(herd("alpha", "instance", "list"))
    step("inside web1's filesystem: 128 MiB written, then deleted")
    write_and_delete(disk_image("alpha", "web1"), 128)
    move = write_vars(
        "move",
        {
            "herd_master_host": "controller",
            "herd_socket": socket("alpha"),
            "herd_dest_socket": socket("beta"),
            "herd_move_instances": [{"name": "web1"}],
            "herd_move_zero_free_space": True,
            "herd_move_compression": "zstd-fast",
        },
    )
    step("instance_move.yml --tags move: zero free space, stream node to node over TLS")
    playbook(alpha, "instance_move.yml", move, "--tags", "move")
    step("on beta: running, the same disk bytes as the (zeroed, kept) source copy")
    print(herd("beta", "instance", "list"))
    source, arrived = sha256(disk_image("alpha", "web1")), sha256(disk_image("beta", "web1"))
    print(
        f"disk sha256 on alpha (source, zeroed): {source}\n"
        f"disk sha256 on beta (moved):           {arrived}"
    )
    if source != arrived:
        raise SystemExit("demo failed: the moved disk differs")
    step("instance_move.yml, whole: the copy is verified, then the source removed")
    twice(alpha, "instance_move.yml", move)
    print(herd("alpha", "instance", "list"))


def drbd_inventory(lab: Any) -> Path:
    """The guests as Ansible hosts of cluster gamma; the master runs here, its state in
    the demo directory."""
    known_hosts = DEMO / "gamma.known_hosts"
    known_hosts.write_text(
        "".join(f"{herdlab.known_host(n.ip, n.port)} {n.host_key}\n" for n in lab.nodes),
        encoding="utf-8",
    )
    guests = {
        f"n{i}": {"ansible_host": n.ip, "ansible_port": n.port, "herd_node_name": n.name,
                  "herd_node_host_key": n.host_key}
        for i, n in enumerate(lab.nodes, 1)
    }  # fmt: skip
    inventory = {
        "all": {
            "vars": {
                "herd_cluster_name": "gamma",
                "herd_python": sys.executable,
                "herd_bootstrap_key": lab.key_path,
            },
            "children": {
                "herd_masters": {"hosts": {"controller": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    "herd_master_state_dir": str(DEMO / "gamma" / "master"),
                    "herd_master_socket": str(DEMO / "gamma" / "master.sock"),
                    "herd_cluster_master_host": "n1",
                    "herd_cluster_settings": {"enabled_hypervisors": ["fake"],
                                              "enabled_disk_templates": ["drbd"]},
                }}},
                "herd_nodes": {"hosts": guests, "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": lab.key_path,
                    "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} "
                    "-o StrictHostKeyChecking=yes",
                    "ansible_python_interpreter": "/usr/bin/python3",
                }},
            },
        }
    }  # fmt: skip
    path = inventory_path("gamma")
    path.write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
    return path


def drbd_story() -> None:
    import vmnodes

    step("DRBD: two qemu guests with a real DRBD 8.4 kernel (first run builds the image)")
    lab = vmnodes.up(f"{LABS}drbd", 2)
    # New guests, new host keys: a master state from an earlier run would refuse them.
    shutil.rmtree(DEMO / "gamma", ignore_errors=True)
    inventory = drbd_inventory(lab)
    step("demo-drbd.yml: cluster gamma on the guests, db1 on DRBD, write, failover, read")
    try:
        playbook(inventory, str(REPO / "scripts" / "demo-drbd.yml"))
        print(herd("gamma", "cluster", "verify"))
    finally:
        # The master the master role started from the demo directory, which no lab holds.
        herdlab.kill_host_processes(DEMO / "gamma" / "master")
        vmnodes.down(f"{LABS}drbd")


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
    DEMO.mkdir(parents=True, mode=0o700)
    install_collection()
    step("the zeroing helper image (kernel + busybox initramfs, built once per machine)")
    subprocess.run(
        [sys.executable, str(REPO / "lab" / "build-zeroing-image.py"), "--dir", str(ZEROING_IMAGE)],
        check=True,
    )
    step("one domain secret for both clusters, in a file only root reads (a vault in real life)")
    secret_file = DEMO / "domain_secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(secrets.token_hex(32), encoding="utf-8")
    alpha, beta = (build_cluster(c, n, secret_file) for c, n in CLUSTERS.items())
    move_story(alpha, beta)
    if not args.no_drbd:
        drbd_story()
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f} s. The clusters keep running:"
        f"\n  ANSIBLE_COLLECTIONS_PATH={DEMO / 'collections'} \\"
        f"\n    ansible-playbook -i {alpha} playbooks/site.yml --check --diff"
        f"\n  HERD_SOCKET={socket('alpha')} herd instance list"
        f"\n  HERD_SOCKET={socket('beta')} herd instance list"
        "\nRemove everything with: bash scripts/demo.sh down"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
