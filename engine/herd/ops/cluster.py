"""Cluster-wide ops: init, modify, verify, destroy (``gnt-cluster`` in the seeds)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from typing import Any

import herd
from herd.config.model import Cluster, Node, NodeGroup, TopObject
from herd.crypto.ca import ClusterCA
from herd.crypto.secrets import generate_domain_secret
from herd.crypto.sshkeys import generate_ssh_key
from herd.errors import ConflictError, PrerequisiteError
from herd.hvparams import HYPERVISORS
from herd.ops import levels, nodejoin, orphans
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext, register
from herd.ops.common import DEFAULT_GROUP, DISK_TEMPLATES, cluster_of
from herd.ops.params import Param, check_name, check_port_range, check_tags
from herd.ops.undo import undo_handler

MAX_CLOCK_SKEW = 5.0


def _check_tools(value: list[str]) -> str | None:
    for tool in value:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool):
            return "tool names of letters, digits, '-' and '_'"
    return None


def _check_mac_prefix(value: str) -> str | None:
    """Generated MACs must be unicast: a first octet with its low bit set would make
    every NIC a multicast (or, for ff, broadcast) address."""
    if re.fullmatch(r"[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}", value) and not int(value[:2], 16) & 1:
        return None
    return "three lower-case hex octets 'aa:bb:cc', the first even (a unicast prefix)"


def _check_secret(value: str) -> str | None:
    if re.fullmatch(r"(?:[0-9a-f]{2}){32,}", value):
        return None
    return "at least 64 lower-case hex digits (e.g. another cluster's domain secret)"


def _check_image_dir(value: str) -> str | None:
    if value == "" or value.startswith("/"):
        return None
    return "an absolute directory path on the nodes, or empty to turn zeroing off"


def _nonempty(value: list[str]) -> str | None:
    return None if value else "a non-empty list"


#: Settings shared by init and modify. Defaults are None: "not given" keeps the current
#: value (modify) or the model's default (init), so the two ops cannot drift apart.
SETTINGS = (
    Param(
        "enabled_hypervisors",
        list,
        choices=HYPERVISORS,
        check=_nonempty,
        doc="hypervisors instances may use",
    ),
    Param(
        "enabled_disk_templates",
        list,
        choices=DISK_TEMPLATES,
        check=_nonempty,
        doc="disk templates instances may use",
    ),
    Param(
        "hvparams",
        dict,
        structure=levels.check_hvparams,
        doc="hypervisor parameters per hypervisor",
    ),
    Param(
        "beparams",
        dict,
        structure=levels.check_beparams,
        doc="backend parameters (memory, vcpus, auto_balance)",
    ),
    Param(
        "ndparams",
        dict,
        structure=levels.check_ndparams,
        doc="node parameters (none yet: Herd honours none of Ganeti's)",
    ),
    Param(
        "diskparams",
        dict,
        structure=levels.check_diskparams,
        doc="disk parameters per template",
    ),
    Param("nicparams", dict, structure=levels.check_nicparams, doc="NIC parameters (mode, link)"),
    Param(
        "compression_tools",
        list,
        item_type=str,
        check=_check_tools,
        doc="compression tools allowed in moves, built-in or custom scripts",
    ),
    Param("drbd_port_range", str, check=check_port_range, doc="TCP ports for DRBD"),
    Param("mac_prefix", str, check=_check_mac_prefix, doc="prefix of generated MACs"),
    Param(
        "candidate_pool_size", int, minimum=1, maximum=100, doc="how many master candidates to keep"
    ),
    Param("max_running_jobs", int, minimum=1, maximum=1000, doc="jobs running at once"),
    Param("tags", list, item_type=str, check=check_tags, doc="cluster tags"),
    Param(
        "domain_secret",
        str,
        secret=True,
        check=_check_secret,
        doc="cluster domain secret shared by clusters that move instances between them "
        "(default at init: a new random one)",
    ),
    Param(
        "allow_cipher_bypassing",
        bool,
        doc="let intra-cluster moves choose TLS ciphers from the allow-list; never settable "
        "over a remote API",
    ),
    Param(
        "zeroing_image",
        str,
        check=_check_image_dir,
        doc="directory on every node holding the zeroing helper image (vmlinuz and "
        "initrd.img, see lab/build-zeroing-image.py); empty: no zero_free_space",
    ),
    Param(
        "zeroing_timeout_fixed",
        float,
        minimum=1,
        maximum=86400,
        doc="seconds a zeroing helper may run, plus zeroing_timeout_per_gib per GiB of disk",
    ),
    Param(
        "zeroing_timeout_per_gib",
        float,
        minimum=0,
        maximum=3600,
        doc="seconds per GiB of the instance's disks added to zeroing_timeout_fixed",
    ),
)


def _setting_value(name: str, value: Any) -> Any:
    if name == "drbd_port_range":
        first, last = value.split("-")
        return (int(first), int(last))
    return value


@register
class ClusterInit(Op):
    OP_ID = "cluster.init"
    SUMMARY = "Create the cluster: keys, CA, default group and the master node"
    CLUSTER_LOCK_SHARED = False
    PARAMS = (
        Param(
            "name", str, required=True, check=check_name, cli_positional=True, doc="cluster name"
        ),
        Param(
            "master_node",
            str,
            required=True,
            check=check_name,
            doc="name of the first node, the master",
        ),
        *nodejoin.JOIN_PARAMS,
        *SETTINGS,
    )

    def check(self, ctx: OpContext) -> None:
        if ctx.store.list("cluster"):
            raise ConflictError(f"a cluster already exists here: {cluster_of(ctx).name}")

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        services = ctx.services
        crypto = services.crypto_dir
        ctx.undo("remove the cluster's keys and CA", "cluster.remove_crypto")
        crypto.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca = ClusterCA.create(p["name"])
        ca.save(crypto)
        key_line = generate_ssh_key(services.ssh_key_path, comment=f"herd@{p['name']}")
        secret = generate_domain_secret()
        services.reset_rpc()
        ctx.undo("drop connections made with the new key", "cluster.reset_rpc")
        ctx.log(f"cluster {p['name']}: created CA, SSH key and domain secret")

        cluster = Cluster(
            name=p["name"],
            master_node=p["master_node"],
            domain_secret=secret,
            ssh_public_key=key_line,
            ca_cert_pem=ca.cert_pem.decode(),
        )
        for param in SETTINGS:
            if p[param.name] is not None:
                setattr(cluster, param.name, _setting_value(param.name, p[param.name]))
        group = NodeGroup(name=DEFAULT_GROUP)
        primary_ip = nodejoin.resolve_ip(p["master_node"], p["primary_ip"])
        node = Node(
            name=p["master_node"],
            primary_ip=primary_ip,
            secondary_ip=p["secondary_ip"] or primary_ip,
            ssh_port=p["ssh_port"],
            group=group.uuid,
            master_candidate=True,
        )
        nodejoin.join(ctx, node, ca, key_line, p["host_key"])
        with ctx.store.transaction() as txn:
            txn.add(cluster)
            txn.add(group)
            txn.add(node)
        ctx.locks.register("nodegroup", [group.uuid])
        ctx.locks.register("node", [node.uuid])
        ctx.locks.register("node-res", [node.uuid])
        ctx.log(f"cluster {cluster.name} initialised with master node {node.name}")
        return {"cluster": cluster.name, "master_node": node.name, "changed": True}


@undo_handler("cluster.remove_crypto")
def _remove_crypto(ctx: OpContext, args: dict[str, Any]) -> None:
    """Only while no cluster is stored: ``cluster.init`` refuses to run beside one, so a
    stored cluster is the one this init committed before its master died."""
    if ctx.store.list("cluster"):
        ctx.log("the cluster is in the config: its keys and CA are kept", "warning")
        return
    shutil.rmtree(ctx.services.crypto_dir, ignore_errors=True)


@undo_handler("cluster.reset_rpc")
def _reset_rpc(ctx: OpContext, args: dict[str, Any]) -> None:
    ctx.services.reset_rpc()


@register
class ClusterModify(Op):
    OP_ID = "cluster.modify"
    SUMMARY = "Change cluster-wide settings"
    CLUSTER_LOCK_SHARED = False
    PARAMS = (
        *SETTINGS,
        Param(
            "dry_run",
            bool,
            default=False,
            doc="only report what would change (how a playbook learns whether the domain "
            "secret it holds is the cluster's, which no query shows)",
        ),
    )

    def run(self, ctx: OpContext) -> Any:
        cluster = cluster_of(ctx)
        changes = {}
        for param in SETTINGS:
            given = self.params[param.name]
            if given is None:
                continue
            value = _setting_value(param.name, given)
            if getattr(cluster, param.name) != value:
                changes[param.name] = {"before": getattr(cluster, param.name), "after": value}
                setattr(cluster, param.name, value)
        if changes and self.params["dry_run"]:
            return {"changed": False, "would_change": sorted(changes), "changes": changes}
        if changes:
            with ctx.store.transaction() as txn:
                txn.update(cluster)
            ctx.log("changed " + ", ".join(sorted(changes)))
        return {"changed": bool(changes), "changes": changes}


@register
class ClusterDestroy(Op):
    OP_ID = "cluster.destroy"
    SUMMARY = "Remove the cluster: only when the master is its last node and no instances exist"
    CLUSTER_LOCK_SHARED = False

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level in ("nodegroup", "instance", "node"):
            return LockSpec(ALL_LOCKS)
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        cluster = cluster_of(ctx)
        if ctx.store.list("instance"):
            raise PrerequisiteError("instances exist: remove them before destroying the cluster")
        others = [n.name for n in ctx.store.list("node") if n.name != cluster.master_node]
        if others:
            raise PrerequisiteError(
                "nodes other than the master are still in the cluster: " + ", ".join(others),
                nodes=others,
            )

    def run(self, ctx: OpContext) -> Any:
        cluster = cluster_of(ctx)
        nodes = ctx.store.list("node")
        problems = []
        for node in nodes:
            problems += nodejoin.leave(ctx, node, cluster.ssh_public_key)
        with ctx.store.transaction() as txn:
            groups = txn.list("nodegroup")
            doomed: list[TopObject] = [*nodes, *groups, cluster]
            for obj in doomed:
                txn.delete(obj)
        for level, gone in (("nodegroup", groups), ("node", nodes), ("node-res", nodes)):
            ctx.locks.unregister(level, [obj.uuid for obj in gone], owner=ctx.owner)
        ctx.services.reset_rpc()
        shutil.rmtree(ctx.services.crypto_dir, ignore_errors=True)
        ctx.log(f"cluster {cluster.name} destroyed")
        return {"changed": True, "cluster": cluster.name, "cleanup_problems": problems}


@register
class ClusterVerify(Op):
    OP_ID = "cluster.verify"
    SUMMARY = (
        "Check every node (reachable, versions, clocks, files, orphans) and the config; "
        "every problem carries a stable code"
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        # node-res shared: ops hold it exclusively while anything they create on a node is
        # not in the config yet, so holding it makes "not in the config" mean "orphan".
        if level in ("nodegroup", "node", "node-res"):
            return LockSpec(ALL_LOCKS, shared=True)
        return super().declare_locks(level, ctx)

    def run(self, ctx: OpContext) -> Any:
        cluster = cluster_of(ctx)
        nodes = ctx.store.list("node")
        groups = {g.uuid for g in ctx.store.list("nodegroup")}
        problems: list[dict[str, str]] = []

        def problem(
            node: str, severity: str, code: str, message: str, obj: str | None = None
        ) -> None:
            entry = {"node": node, "severity": severity, "code": code, "message": message}
            problems.append(entry if obj is None else {**entry, "object": obj})
            ctx.log(f"{severity}: {code}: {node}: {message}", "warning")

        if cluster.master_node not in {n.name for n in nodes}:
            problem(
                cluster.master_node, "error", "ECLUSTERCFG", "the master node is not in the config"
            )
        for node in nodes:
            if node.group not in groups:
                problem(
                    node.name, "error", "ECLUSTERCFG", f"node group {node.group} does not exist"
                )
        online = [n for n in nodes if not n.offline]
        for node in nodes:
            if node.offline:
                problem(node.name, "info", "ENODEOFFLINE", "node is marked offline: not checked")
        candidates = sum(1 for n in online if n.master_candidate)
        if candidates < min(cluster.candidate_pool_size, len(online)):
            problem(
                "cluster",
                "warning",
                "ECLUSTERCFG",
                f"only {candidates} master candidates, pool size is {cluster.candidate_pool_size}",
            )
        ca_sum = nodejoin.expected_checksums(cluster.ca_cert_pem.encode())
        sent = time.time()
        pings = ctx.services.call_many(online, "ping", timeout=30)
        files = ctx.services.call_many(
            online, "check_files", {"paths": list(nodejoin.NODE_FILES)}, timeout=30
        )
        report: dict[str, Any] = {}
        reached = []
        for node in online:
            ping = pings[node.name]
            if not ping.ok:
                problem(node.name, "error", "ENODEUNREACHABLE", f"unreachable: {ping.error}")
                continue
            reached.append(node)
            answer = ping.result or {}
            skew = answer["time"] - (sent + time.time()) / 2
            report[node.name] = {"version": answer["version"], "clock_skew": round(skew, 3)}
            if answer["version"] != herd.__version__:
                problem(
                    node.name,
                    "error",
                    "ENODEVERSION",
                    f"herd-node {answer['version']} differs from the master's {herd.__version__}",
                )
            if abs(skew) > MAX_CLOCK_SKEW:
                problem(
                    node.name,
                    "error",
                    "ENODETIME",
                    f"clock differs from the master's by {skew:.1f} s",
                )
            checked = files[node.name]
            if not checked.ok:
                problem(
                    node.name, "error", "ENODEFILECHECK", f"could not check files: {checked.error}"
                )
                continue
            found = (checked.result or {}).get("files", {})
            for path in nodejoin.NODE_FILES:
                if found.get(path) is None:
                    problem(node.name, "error", "ENODEFILECHECK", f"missing file {path}", path)
            for path, digest in ca_sum.items():
                if found.get(path) not in (None, digest):
                    problem(
                        node.name,
                        "error",
                        "ENODEFILECHECK",
                        f"{path} differs from the cluster CA",
                        path,
                    )
        orphaned = self.verify_orphans(ctx, cluster, reached, problem)
        disks = self.verify_drbd(ctx, {n.uuid: n for n in nodes}, problem)
        ok = not any(p["severity"] == "error" for p in problems)
        ctx.log("cluster verify: " + ("no errors" if ok else f"{len(problems)} problem(s)"))
        return {"ok": ok, "problems": problems, "nodes": report, "drbd": disks, "orphans": orphaned}

    @staticmethod
    def verify_orphans(
        ctx: OpContext, cluster: Cluster, nodes: list[Node], problem: Callable[..., None]
    ) -> dict[str, list[dict[str, str]]]:
        """Per reachable node, what exists there but not in the config (``herd.ops.orphans``).

        A node listed with no findings was checked and is clean; a node missing from the
        answer was not checked (offline, unreachable, or its inventory failed).
        """
        instances = ctx.store.list("instance")
        vgs = orphans.volume_groups(cluster, ctx.store.list("nodegroup"), instances)
        answers = ctx.services.call_many(nodes, "inventory", {"vgs": vgs}, timeout=60)
        by_node: dict[str, list[dict[str, str]]] = {}
        for node in nodes:
            answer = answers[node.name]
            if not answer.ok:
                problem(
                    node.name,
                    "error",
                    orphans.INVENTORY,
                    f"could not list what is here: {answer.error}",
                )
                continue
            found = orphans.findings(node, answer.result or {}, instances, cluster)
            by_node[node.name] = [
                {"code": f.code, "object": f.object, "message": f.message}
                for f in found
                if f.code != orphans.INVENTORY
            ]
            for f in found:
                problem(node.name, f.severity, f.code, f.message, f.object)
        return by_node

    @staticmethod
    def verify_drbd(
        ctx: OpContext, nodes: dict[str, Node], problem: Callable[..., None]
    ) -> dict[str, Any]:
        """Live replication state of every DRBD instance: degraded, StandAlone, split brain."""
        # Imported here: the instance modules import this one for its settings.
        from herd.ops import drbd

        found = {}
        for inst in ctx.store.list("instance"):
            if drbd.is_drbd(inst):
                found[inst.name], issues = drbd.verify(ctx, inst, nodes)
                for node, severity, message in issues:
                    problem(node, severity, "ENODEDRBD", message)
        return found
