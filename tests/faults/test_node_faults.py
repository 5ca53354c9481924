"""Node faults mid-op on lab nodes over real SSH: killed agents, dead sshd, cut links,
lossy, corrupting and stalling wires.

Each test injects one fault into a running op (an ``instance.add`` held inside its OS
install, an ``instance.move`` slowed by a bandwidth limit, an export to another node) and
then checks what must hold whatever happened: the job failed naming the node and why (or,
for a fault a transfer must ride out, succeeded and verified), the config holds no
half-made instance, no lock is held, the source disk is unchanged, the destination keeps
nothing (no disk file, no live transfer end: ``cluster.verify`` finds no orphan), the fake
guest runs exactly once across the nodes, and the same op succeeds once the node is
healthy again.  Where the node was dead during the rollback, what it could not undo must
be listed in the error and named by verify (a persistent undo journal would replay it).

Wire faults use ``tc netem`` on the sender's veth (for traffic to the destination only)
where the kernel has it.  Without it (this kernel lacks ``sch_netem``) the same fault is
made another real way inside the destination's namespace: loss with iptables'
``statistic`` match, corruption and stalls with a relay that iptables redirects the
transfer through (it flips a byte, or holds the stream past the stall timeout).  Every
address involved is a lab namespace address.

CI runs one test per fault kind; ``HERD_FAULTS_ALL=1`` adds the heavier variants.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import herdlab
import pytest

from herd.errors import HerdError, NodeError, TransferError, ValidationError
from herd.ops.orphans import ORPHAN_FILE, ORPHAN_TRANSFER
from tests.engine.harness import PATIENCE, ThreadMaster, cluster_on_lab, poll
from tests.engine.ops.test_instance_lab import disk_files, guest_pids

pytestmark = pytest.mark.lab

FULL = os.environ.get("HERD_FAULTS_ALL") == "1"
heavy = pytest.mark.skipif(not FULL, reason="heavier variant: set HERD_FAULTS_ALL=1")
OP_TIMEOUT = 300
#: Short enough that a stalled stream ends quickly, long enough for a loaded CI box.
STALL = 3.0
#: Slow enough that a fault lands mid-copy: a 16 MiB disk of data takes ~8 s.
SLOW = 2 * 2**20
DISK_MIB = 16
GATE = "os-gate"
RELAY_PORT = 9419
NODE_ROOT = herdlab.NODE_STATE_PATH

Env = tuple[ThreadMaster, Any]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with cluster_on_lab(
        tmp_path_factory.mktemp("master"), "f", 2, "faults", enabled_hypervisors=["fake"],
        enabled_disk_templates=["file"], beparams={"memory": 32},
    ) as (running, lab):  # fmt: skip
        for node in lab.nodes:
            install_gate_os(node)
        yield running, lab


@pytest.fixture
def healthy(env: Env) -> Iterator[Env]:
    """Whatever a test broke is mended afterwards, so the next one starts healthy."""
    yield env
    running, lab = env
    for node in lab.nodes:
        node.exec("iptables", "-F", check=False)
        node.exec("iptables", "-t", "nat", "-F", check=False)
        node.exec("tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        if node.sshd_pid() is None:
            herdlab.restart_sshd(lab, node)
        open_gate(node)
    for inst in running.api.query("instances"):
        run(running, "instance.remove", name=inst["name"], shutdown_timeout=0)


# --- an OS whose install waits at a gate the test controls -------------------------------

GATE_SCRIPT = f"""#!/bin/sh
# Blocks the install at a known point: "started" says it is here, "open" lets it finish.
gate=/var/lib/herd-node/{GATE}
touch "$gate/started"
i=0
while [ ! -e "$gate/open" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
"""


def install_gate_os(node: Any) -> None:
    osdir = node.state_dir / "os" / "gate"
    osdir.mkdir(parents=True, exist_ok=True)
    (osdir / "ganeti_api_version").write_text("20\n")
    (osdir / "variants.list").write_text("default\n")
    (osdir / "parameters.list").write_text("")
    for script in ("create", "import", "export", "rename", "verify"):
        path = osdir / script
        path.write_text(GATE_SCRIPT if script == "create" else "#!/bin/sh\n")
        os.chmod(path, 0o755)
    (node.state_dir / GATE).mkdir(exist_ok=True)


def close_gate(node: Any) -> None:
    for name in ("started", "open"):
        (node.state_dir / GATE / name).unlink(missing_ok=True)


def open_gate(node: Any) -> None:
    (node.state_dir / GATE / "open").touch()


# --- looking at the cluster ----------------------------------------------------------------


def run(running: ThreadMaster, op: str, **params: Any) -> Any:
    return running.api.run([{"op": op, **params}], timeout=OP_TIMEOUT)


def failed_job(running: ThreadMaster, job_id: int) -> HerdError:
    running.api.wait(job_id, timeout=OP_TIMEOUT)
    doc = running.api.job(job_id)
    assert doc["status"] == "error", doc
    return HerdError.from_dict(doc["error"])


def names_node(err: HerdError, node: Any) -> bool:
    text = err.message + json.dumps(err.details)
    return node.name in text or node.ip in text


def held_locks(running: ThreadMaster) -> list[dict[str, Any]]:
    return [lock for lock in running.api.locks() if lock["holders"] or lock["pending"]]


def orphans(running: ThreadMaster) -> dict[str, list[dict[str, Any]]]:
    return run(running, "cluster.verify")["orphans"]


def guests(lab: Any, name: str) -> dict[str, int]:
    """How many fake guest processes of ``name`` run on each node."""
    return {n.name: len(guest_pids(n, name)) for n in lab.nodes}


def all_pids(node: Any) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", node.netns], capture_output=True, text=True, check=True
    ).stdout
    return [int(pid) for pid in out.split()]


def netns_pids(node: Any, match: Callable[[bytes, bytes], bool]) -> list[int]:
    """Pids in the node's namespace whose (comm, cmdline) match."""
    found = []
    for pid in all_pids(node):
        try:
            comm = Path(f"/proc/{pid}/comm").read_bytes().strip()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if match(comm, cmdline):
            found.append(pid)
    return found


def kill(pids: list[int]) -> None:
    assert pids, "nothing to kill: the fault would not be injected"
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_agents(node: Any) -> None:
    """Every ``herd-node --serve`` session of the node: the agent dies, sshd lives."""
    kill(netns_pids(node, lambda comm, cmd: b"herd-node" in cmd and b"--serve" in cmd))


def kill_sshd_only(node: Any) -> None:
    """The listener and every session process of sshd; the node's other processes live."""
    kill(netns_pids(node, lambda comm, cmd: comm == b"sshd"))
    poll("sshd to be gone", lambda: node.sshd_pid() is None)


# --- instances with data, and transfers in flight ---------------------------------------


def image(running: ThreadMaster, lab: Any, name: str) -> Path:
    (inst,) = running.api.query("instances", [name])
    node = next(n for n in lab.nodes if n.name == inst["primary_node_name"])
    (path,) = [f for f in disk_files(node) if inst["disks"][0]["uuid"] in f.name]
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def instance_with_data(running: ThreadMaster, lab: Any, name: str) -> str:
    """A running instance on the first node whose disk is full of random data; its digest."""
    run(running, "instance.add", name=name, disk_template="file", disks=[f"{DISK_MIB}M"],
        install=False, primary_node=lab.nodes[0].name)  # fmt: skip
    path = image(running, lab, name)
    with open(path, "r+b") as f:
        f.write(os.urandom(DISK_MIB * 2**20))
    return sha(path)


def move(name: str, node: Any, **params: Any) -> dict[str, Any]:
    return {"op": "instance.move", "name": name, "target_node": node.name, "compression": "none",
            "stall_timeout": STALL, **params}  # fmt: skip


def data_flowing(node: Any, before: set[Path]) -> bool:
    """A sender on ``node`` that was not there before has sent bytes."""
    for path in node.state_dir.glob("transfers/*/send/status.json"):
        if path not in before:
            try:
                if json.loads(path.read_text()).get("bytes"):
                    return True
            except (OSError, ValueError):
                continue
    return False


def send_ends(node: Any) -> set[Path]:
    return set(node.state_dir.glob("transfers/*/send/status.json"))


def assert_cut_transfer_was_harmless(
    running: ThreadMaster, lab: Any, name: str, digest: str, dest_files: list[Path]
) -> None:
    """The source keeps the instance, its unchanged disk and its one running guest; the
    destination keeps nothing; no lock is held."""
    src, dest = lab.nodes
    (inst,) = running.api.query("instances", [name])
    assert inst["primary_node_name"] == src.name
    assert sha(image(running, lab, name)) == digest
    assert guests(lab, name) == {src.name: 1, dest.name: 0}
    assert disk_files(dest) == dest_files
    assert orphans(running) == {n.name: [] for n in lab.nodes}
    assert held_locks(running) == []


def move_again_succeeds(running: ThreadMaster, lab: Any, name: str, digest: str) -> None:
    src, dest = lab.nodes
    run(running, "instance.move", name=name, target_node=dest.name)
    assert sha(image(running, lab, name)) == digest
    assert guests(lab, name) == {src.name: 0, dest.name: 1}


def leftovers_reported_then_removed(
    running: ThreadMaster, err: HerdError, node: Any, files: list[Path]
) -> None:
    """What a rollback could not undo on an unreachable node stays there: the job's error
    must list the failed steps and, once the node is back, verify must name every leftover
    (disk files and transfer ends).  The test then removes them as an operator would; a
    persistent undo journal replaying the failed steps would do it by itself."""
    report = orphans(running)[node.name]
    left = set(disk_files(node)) - set(files)
    if report or left:
        assert err.details.get("rollback_failed"), err.details
    assert {f"{NODE_ROOT}/{p.relative_to(node.state_dir)}" for p in left} <= {
        o["object"] for o in report
    }
    for orphan in report:
        where = Path(orphan["object"]).relative_to(NODE_ROOT)
        if orphan["code"] == ORPHAN_FILE:
            shutil.rmtree(node.state_dir / where.parent)
        elif orphan["code"] == ORPHAN_TRANSFER:
            shutil.rmtree(node.state_dir / Path(*where.parts[:2]))
        else:
            pytest.fail(f"unexpected leftover on {node.name}: {orphan}")


# --- killed processes mid instance.add ----------------------------------------------------


def add_held_in_install(running: ThreadMaster, node: Any, name: str) -> int:
    """Submit a create on ``node`` and return once its OS script is running."""
    close_gate(node)
    job_id = running.api.submit([{"op": "instance.add", "name": name, "disk_template": "file",
                                  "disks": ["8M"], "os": "gate+default",
                                  "primary_node": node.name}])  # fmt: skip
    poll("the OS install to start", (node.state_dir / GATE / "started").exists, OP_TIMEOUT)
    return job_id


def assert_add_left_no_instance(
    running: ThreadMaster, lab: Any, err: HerdError, node: Any, name: str
) -> None:
    assert isinstance(err, NodeError), err
    assert names_node(err, node), err.message
    assert running.api.query("instances") == []
    assert held_locks(running) == []
    assert set(guests(lab, name).values()) == {0}


def add_again_succeeds(running: ThreadMaster, lab: Any, node: Any, name: str) -> None:
    open_gate(node)
    run(running, "instance.add", name=name, disk_template="file", disks=["8M"],
        os="gate+default", primary_node=node.name)  # fmt: skip
    assert guests(lab, name) == {n.name: int(n is node) for n in lab.nodes}
    assert orphans(running) == {n.name: [] for n in lab.nodes}


def test_agent_killed_during_os_install(healthy: Env, injected: Callable[[str], None]) -> None:
    """sshd lives on, so the rollback reaches the node and removes the new disk."""
    running, lab = healthy
    node = lab.nodes[1]
    files = disk_files(node)
    job_id = add_held_in_install(running, node, "victim")
    injected("herd-node killed during instance.add")
    kill_agents(node)
    err = failed_job(running, job_id)
    assert_add_left_no_instance(running, lab, err, node, "victim")
    assert "rollback_failed" not in err.details, err.details
    assert disk_files(node) == files
    add_again_succeeds(running, lab, node, "victim")


def test_sshd_killed_during_os_install(healthy: Env, injected: Callable[[str], None]) -> None:
    """The node is unreachable for the rollback: the error says what it could not undo,
    and once sshd is back verify names exactly that leftover (a persistent undo journal
    would replay it; until then the operator removes it)."""
    running, lab = healthy
    node = lab.nodes[1]
    files = disk_files(node)
    job_id = add_held_in_install(running, node, "victim")
    injected("sshd killed during instance.add")
    kill_sshd_only(node)
    err = failed_job(running, job_id)
    assert_add_left_no_instance(running, lab, err, node, "victim")
    herdlab.restart_sshd(lab, node)
    open_gate(node)
    leftovers_reported_then_removed(running, err, node, files)
    add_again_succeeds(running, lab, node, "victim")


# --- killed processes mid-transfer ----------------------------------------------------------


def fault_when_flowing(src: Any, fault: Callable[[], None]) -> threading.Thread:
    """Inject ``fault`` as soon as a new sender on ``src`` has sent data."""
    before = send_ends(src)

    def wait_then_inject() -> None:
        poll("data to flow", lambda: data_flowing(src, before), OP_TIMEOUT)
        fault()

    thread = threading.Thread(target=wait_then_inject, daemon=True)
    thread.start()
    return thread


def test_every_process_of_the_destination_killed_mid_move(
    healthy: Env, injected: Callable[[str], None]
) -> None:
    """SIGKILL for the receiver, its node's sshd and agent, as a power cut would: the
    source is untouched and runs the instance again; the destination's leftovers are
    reported and, once it is back, named by verify."""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected("every process of the destination node killed mid-move")
    killer = fault_when_flowing(src, lambda: kill(all_pids(dest)))
    job_id = running.api.submit([move("mover", dest, bandwidth_limit=SLOW)])
    killer.join(OP_TIMEOUT)
    err = failed_job(running, job_id)
    assert names_node(err, dest), err.message
    herdlab.restart_sshd(lab, dest)
    leftovers_reported_then_removed(running, err, dest, files)
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


@heavy
def test_sender_worker_and_agent_killed_mid_move(
    healthy: Env, injected: Callable[[str], None]
) -> None:
    """The source's agent dies with its sender: the master reconnects for the rollback."""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected("herd-node and the sending worker killed mid-move")

    def fault() -> None:
        kill(netns_pids(src, lambda comm, cmd: b"herd.node.transfer.worker" in cmd))
        kill_agents(src)

    killer = fault_when_flowing(src, fault)
    job_id = running.api.submit([move("mover", dest, bandwidth_limit=SLOW)])
    killer.join(OP_TIMEOUT)
    err = failed_job(running, job_id)
    assert isinstance(err, (NodeError, TransferError)), err
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


# --- cut links ------------------------------------------------------------------------------

CUTS = {
    "DROP": ["-j", "DROP"],
    "REJECT": ["-j", "REJECT"],
    "REJECT tcp-reset": ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
}


@pytest.mark.parametrize(
    "cut",
    [pytest.param("DROP"), pytest.param("REJECT"), pytest.param("REJECT tcp-reset", marks=heavy)],
)
def test_link_cut_mid_move(healthy: Env, injected: Callable[[str], None], cut: str) -> None:
    """The destination stops taking the source's packets (the master still reaches both):
    the stall timeout (or the reset) ends the copy, the rollback cleans the destination."""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected(f"link cut mid-move (iptables {cut})")
    rule = ["iptables", "-A", "INPUT", "-s", src.ip, *CUTS[cut]]
    cutter = fault_when_flowing(src, lambda: dest.exec(*rule))
    with pytest.raises(TransferError) as info:
        running.api.run([move("mover", dest, bandwidth_limit=SLOW)], timeout=OP_TIMEOUT)
    cutter.join(OP_TIMEOUT)
    assert names_node(info.value, src) or names_node(info.value, dest), info.value.message
    if cut != "REJECT tcp-reset":
        assert f"for {STALL:g} s" in info.value.message, info.value.message
    dest.exec("iptables", "-F")
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


@heavy
def test_whole_node_cut_off_mid_move(healthy: Env, injected: Callable[[str], None]) -> None:
    """Everything into the destination dropped, the master's SSH too: the job ends on the
    node call timeout naming the node; once the link is back verify finds nothing left
    that the rollback reported as done."""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected("destination cut off entirely mid-move (iptables DROP)")
    cutter = fault_when_flowing(src, lambda: dest.exec("iptables", "-A", "INPUT", "-j", "DROP"))
    job_id = running.api.submit([move("mover", dest, bandwidth_limit=SLOW)])
    cutter.join(OP_TIMEOUT)
    err = failed_job(running, job_id)
    assert names_node(err, dest) or "stalled" in err.message, err.message
    dest.exec("iptables", "-F")
    poll(
        "the destination's stalled ends to exit",
        lambda: not [o for o in orphans(running)[dest.name] if "still runs" in o["message"]],
        OP_TIMEOUT,
    )
    leftovers_reported_then_removed(running, err, dest, files)
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


# --- impaired wires: netem, or the same fault made by iptables and a relay ----------------


def netem_towards(src: Any, dest: Any, args: list[str]) -> bool:
    """``tc netem`` on the source's veth for traffic to the destination only (a prio
    band picked by a u32 filter), so the master's SSH to the source stays unimpaired.
    False, with nothing left behind, where the kernel lacks any of those parts."""
    dev = ["dev", "eth0"]
    steps = [
        ["tc", "qdisc", "add", *dev, "root", "handle", "1:", "prio"],
        ["tc", "qdisc", "add", *dev, "parent", "1:3", "handle", "30:", "netem", *args],
        ["tc", "filter", "add", *dev, "parent", "1:", "protocol", "ip", "u32",
         "match", "ip", "dst", f"{dest.ip}/32", "flowid", "1:3"],
    ]  # fmt: skip
    for step in steps:
        if src.exec(*step, check=False).returncode != 0:
            src.exec("tc", "qdisc", "del", *dev, "root", check=False)
            return False
    return True


RELAY = textwrap.dedent(
    """
    # Runs in the destination's namespace; iptables redirects the source's connections
    # here. Forwards each to its original destination, and after AFTER bytes from the
    # source either flips one byte (corrupt) or stops reading for HOLD seconds (delay).
    import socket, struct, sys, threading, time
    port, mode, after, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    def pump(a, b, tamper):
        seen = 0
        try:
            while data := a.recv(65536):
                if tamper and seen <= after < seen + len(data):
                    if mode == "corrupt":
                        i = after - seen
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                    else:
                        time.sleep(hold)
                seen += len(data)
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    print("ready", flush=True)
    while True:
        c, _ = srv.accept()
        raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
        dport, dip = struct.unpack("!2xH4s8x", raw)
        u = socket.create_connection((socket.inet_ntoa(dip), dport))
        threading.Thread(target=pump, args=(c, u, True), daemon=True).start()
        threading.Thread(target=pump, args=(u, c, False), daemon=True).start()
    """
)


@pytest.fixture
def relay(healthy: Env) -> Iterator[Callable[[str], None]]:
    """``relay(mode)``: route the source's connections to the destination through it."""
    _, lab = healthy
    src, dest = lab.nodes
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> None:
        argv = ["ip", "netns", "exec", dest.netns, sys.executable, "-c", RELAY,
                str(RELAY_PORT), mode, str(2**20), str(STALL * 4)]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        dest.exec("iptables", "-t", "nat", "-A", "PREROUTING", "-s", src.ip, "-p", "tcp",
                  "-j", "REDIRECT", "--to-ports", str(RELAY_PORT))  # fmt: skip

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(PATIENCE)


def impair(lab: Any, relay: Callable[[str], None], kind: str) -> str:
    """Make the wire from source to destination ``kind`` (loss, corrupt, delay); returns
    how, for the record."""
    src, dest = lab.nodes
    args = {"loss": ["loss", "5%"], "corrupt": ["corrupt", "5%"],
            "delay": ["delay", f"{STALL * 4:g}s"]}[kind]  # fmt: skip
    if netem_towards(src, dest, args):
        return f"tc netem {' '.join(args)}"
    if kind == "loss":
        dest.exec("iptables", "-A", "INPUT", "-s", src.ip, "-m", "statistic", "--mode",
                  "random", "--probability", "0.05", "-j", "DROP")  # fmt: skip
        return "5% loss (iptables statistic)"
    relay(kind)
    return f"{kind} by a relay on the wire"


def test_moderate_loss_still_moves_and_verifies(
    healthy: Env, relay: Callable[[str], None], injected: Callable[[str], None]
) -> None:
    running, lab = healthy
    digest = instance_with_data(running, lab, "mover")
    injected(impair(lab, relay, "loss") + " during a move")
    result = run(running, "instance.move", name="mover", target_node=lab.nodes[1].name)
    (stats,) = result["transfers"]
    assert stats["bytes"] == DISK_MIB * 2**20
    assert sha(image(running, lab, "mover")) == digest
    assert guests(lab, "mover") == {lab.nodes[0].name: 0, lab.nodes[1].name: 1}
    assert held_locks(running) == []


def clear_impairment(lab: Any) -> None:
    src, dest = lab.nodes
    dest.exec("iptables", "-t", "nat", "-F")
    src.exec("tc", "qdisc", "del", "dev", "eth0", "root", check=False)


def receiver_errors(dest: Any) -> list[str]:
    """What the destination's failed receive ends recorded as their reason."""
    found = []
    for path in dest.state_dir.glob("transfers/*/receive/status.json"):
        st = json.loads(path.read_text())
        if st.get("state") == "failed":
            found.append((st.get("error") or {}).get("message", ""))
    return found


def test_corrupting_wire_never_makes_a_copy(
    healthy: Env, relay: Callable[[str], None], injected: Callable[[str], None]
) -> None:
    """Bytes altered on the wire fail the TLS record at the receiver, which discards what
    it wrote. (Under netem, TCP's own checksum may drop the bad segments first and the
    move goes through: then the digests prove the copy is exact.)"""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    how = impair(lab, relay, "corrupt")
    injected(f"{how} during a move")
    before = set(receiver_errors(dest))
    try:
        run(running, "instance.move", name="mover", target_node=dest.name, stall_timeout=STALL)
    except TransferError as exc:
        assert names_node(exc, src) or names_node(exc, dest), exc.message
    else:
        assert how.startswith("tc netem"), "a corrupted stream was accepted"
        assert sha(image(running, lab, "mover")) == digest
        assert guests(lab, "mover") == {src.name: 0, dest.name: 1}
        return
    if not how.startswith("tc netem"):
        (reason,) = set(receiver_errors(dest)) - before
        assert "SSL" in reason or "TLS" in reason, reason
    clear_impairment(lab)
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


def test_delay_beyond_the_stall_timeout_ends_the_copy(
    healthy: Env, relay: Callable[[str], None], injected: Callable[[str], None]
) -> None:
    running, lab = healthy
    dest = lab.nodes[1]
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected(impair(lab, relay, "delay") + " during a move")
    with pytest.raises(TransferError) as info:
        run(running, "instance.move", name="mover", target_node=dest.name, stall_timeout=STALL)
    assert f"stalled: no data from the peer for {STALL:g} s" in info.value.message or (
        f"took nothing for {STALL:g} s" in info.value.message
    ), info.value.message
    clear_impairment(lab)
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    move_again_succeeds(running, lab, "mover", digest)


def test_export_to_another_node_stalled_on_the_wire(
    healthy: Env, relay: Callable[[str], None], injected: Callable[[str], None]
) -> None:
    """A backup to another node whose copy stalls: no export appears there, nothing of it
    is left, and the instance runs again where it was."""
    running, lab = healthy
    src, dest = lab.nodes
    digest = instance_with_data(running, lab, "mover")
    files = disk_files(dest)
    injected(impair(lab, relay, "delay") + " during an export to another node")
    with pytest.raises(TransferError) as info:
        run(running, "instance.export", name="mover", target_node=dest.name, stall_timeout=STALL)
    assert f"for {STALL:g} s" in info.value.message, info.value.message
    clear_impairment(lab)
    assert run(running, "export.list", nodes=[dest.name])["exports"] == {dest.name: []}
    assert_cut_transfer_was_harmless(running, lab, "mover", digest, files)
    run(running, "instance.export", name="mover", target_node=dest.name, stall_timeout=STALL)
    (export,) = run(running, "export.list", nodes=[dest.name])["exports"][dest.name]
    assert export["name"] == "mover"
    assert guests(lab, "mover") == {src.name: 1, dest.name: 0}
    run(running, "export.remove", name="mover")


def test_a_stall_timeout_is_refused_between_clusters(healthy: Env) -> None:
    """Between clusters the destination's receivers keep their own timeouts; a value that
    would apply to one end only is refused rather than half honoured."""
    running, lab = healthy
    run(running, "instance.add", name="mover", disk_template="file", disks=["8M"],
        install=False, start=False, primary_node=lab.nodes[0].name)  # fmt: skip
    with pytest.raises(ValidationError) as info:
        run(running, "instance.move", name="mover", dest_cluster="/nonexistent.sock",
            stall_timeout=STALL)  # fmt: skip
    assert info.value.details["field"] == "stall_timeout"
