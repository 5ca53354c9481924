"""Ganeti's iallocator protocol, so existing allocators (``hail``, site scripts) plug in.

The protocol (Ganeti doc/iallocator.rst, version 2): write the cluster and the request as
one JSON document to a file, run the program with that file's path as its only argument,
and read ``{"success", "info", "result"}`` from its stdout. An external program is not
trusted: a crash, a timeout, bad JSON or a result naming unknown, unusable or too few
nodes is refused with an error naming the allocator and what was wrong.

Allocators are *named*, never given as a path: whoever may create an instance must not
be able to make the master (root) execute a program of their choice. A name is looked
up only in :data:`SEARCH_PATH`, the directories where packages install allocators
(Ganeti's ``hail`` lives in ``/usr/lib/ganeti/iallocators``). The program is run with an
argv list and no shell, and every caller-controlled string (OS name, tags, NIC links)
reaches it only inside the JSON input file, so none of them can become a command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from herd.alloc.model import (
    DRBD_META_MIB,
    InstanceRequest,
    NicSpec,
    NodeState,
    PlacedInstance,
    Snapshot,
)
from herd.errors import HerdError, PrerequisiteError, ValidationError

PROTOCOL_VERSION = 2
DEFAULT_TIMEOUT = 60.0

#: Where named allocators are looked up, in order: Ganeti's directory (so ``hail`` from
#: ganeti-htools works as is) and Herd's own. Deliberately not a parameter of any op.
SEARCH_PATH: tuple[Path, ...] = (
    Path("/usr/lib/ganeti/iallocators"),
    Path("/usr/lib/herd/iallocators"),
)
#: Letters, digits, '-', '_' and '.', not starting with '.': no path, no hidden file.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
_NAME_RULE = "letters, digits, '-', '_' and '.' (not starting with '.'), at most 64"

#: Bounds wide enough that the instance policy never refuses what Herd itself accepts;
#: Herd has no ipolicy yet, but allocators such as hail require one per group.
_IPOLICY_MIN = {
    "memory-size": 1,
    "cpu-count": 1,
    "disk-count": 0,
    "disk-size": 1,
    "nic-count": 0,
    "spindle-use": 0,
}
_IPOLICY_MAX = {
    "memory-size": 2**31 - 1,
    "cpu-count": 4096,
    "disk-count": 64,
    "disk-size": 2**31 - 1,
    "nic-count": 64,
    "spindle-use": 4096,
}


def _ipolicy(templates: Collection[str]) -> dict[str, Any]:
    return {
        "minmax": [{"min": dict(_IPOLICY_MIN), "max": dict(_IPOLICY_MAX)}],
        "std": {**_IPOLICY_MIN, "memory-size": 128, "disk-count": 1, "disk-size": 1024},
        "disk-templates": sorted(templates),
        "vcpu-ratio": 4.0,
        "spindle-ratio": 32.0,
    }


def _nic(nic: NicSpec) -> dict[str, Any]:
    return {"mac": nic.mac, "ip": nic.ip, "mode": nic.mode, "link": nic.link, "bridge": nic.link}


def _spec_doc(spec: InstanceRequest) -> dict[str, Any]:
    """Fields shared by existing instances and the allocate request (parseBaseInstance)."""
    meta = DRBD_META_MIB * len(spec.disks) if spec.mirrored else 0
    return {
        "disk_template": spec.disk_template,
        "disks": [{"size": size, "mode": "rw", "spindles": 1} for size in spec.disks],
        "disk_space_total": sum(spec.disks) + meta,
        "memory": spec.memory,
        "vcpus": spec.vcpus,
        "spindle_use": 1,
        "os": spec.os,
        "hypervisor": spec.hypervisor,
        "tags": list(spec.tags),
        "nics": [_nic(n) for n in spec.nics],
    }


def _instance_doc(inst: PlacedInstance) -> dict[str, Any]:
    nodes = [inst.primary] + ([inst.secondary] if inst.secondary else [])
    return {
        **_spec_doc(inst.spec),
        "nodes": nodes,
        "admin_state": "up" if inst.admin_up else "down",
        "should_run": inst.admin_up,
    }


def _node_doc(snap: Snapshot, node: NodeState) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "group": snap.groups[node.group].uuid if node.group in snap.groups else node.group,
        "offline": node.offline,
        "drained": node.drained,
        "vm_capable": node.vm_capable,
        "master_candidate": node.master_candidate,
        "primary_ip": node.primary_ip,
        "secondary_ip": node.secondary_ip,
        "tags": list(node.tags),
        "ndparams": {"exclusive_storage": False, "spindle_count": 1},
    }
    # Ganeti sends no run-time data for nodes that cannot run instances.
    if node.offline or not node.vm_capable or not node.live:
        return doc
    primaries = [snap.instances[i] for i in node.primary_instances if i in snap.instances]
    pri_memory = sum(i.spec.memory for i in primaries)
    pool = "lvm" if "lvm" in node.total_disk else next(iter(sorted(node.total_disk)), None)
    doc.update(
        total_memory=node.total_memory,
        free_memory=max(node.free_memory, 0),
        reserved_memory=max(node.total_memory - node.free_memory - pri_memory, 0),
        i_pri_memory=pri_memory,
        i_pri_up_memory=sum(i.spec.memory for i in primaries if i.admin_up),
        total_disk=node.disk_total(pool),
        free_disk=max(node.disk_free(pool), 0),
        total_cpus=node.cpus,
        reserved_cpus=0,
        total_spindles=1,
        free_spindles=1,
    )
    return doc


def build_request(
    snap: Snapshot,
    request: dict[str, Any],
    templates: Collection[str] = ("drbd", "plain", "file", "diskless"),
) -> dict[str, Any]:
    """The full input message: the cluster as Ganeti describes it, plus ``request``."""
    return {
        "version": PROTOCOL_VERSION,
        "cluster_name": snap.cluster_name,
        "cluster_tags": list(snap.cluster_tags),
        "enabled_hypervisors": list(snap.enabled_hypervisors),
        "ipolicy": _ipolicy(templates),
        "nodegroups": {
            g.uuid: {
                "name": g.name,
                "alloc_policy": g.alloc_policy,
                "networks": [],
                "ipolicy": _ipolicy(templates),
                "tags": list(g.tags),
            }
            for g in snap.groups.values()
        },
        "nodes": {name: _node_doc(snap, snap.nodes[name]) for name in sorted(snap.nodes)},
        "instances": {name: _instance_doc(snap.instances[name]) for name in sorted(snap.instances)},
        "request": request,
    }


def allocate_request(
    spec: InstanceRequest, only_nodes: Collection[str] | None = None
) -> dict[str, Any]:
    """An ``allocate`` request; ``only_nodes`` becomes Ganeti's ``restrict-to-nodes``."""
    req: dict[str, Any] = {
        "type": "allocate",
        "name": spec.name,
        "required_nodes": spec.required_nodes,
        **_spec_doc(spec),
    }
    if spec.group is not None:
        req["group_name"] = spec.group
    if only_nodes is not None:
        req["restrict-to-nodes"] = sorted(only_nodes)
    return req


def relocate_request(snap: Snapshot, instance: str) -> dict[str, Any]:
    """A ``relocate`` request: a new secondary for a mirrored instance."""
    inst = snap.instance(instance)
    if inst.secondary is None:
        raise ValidationError("instance", instance, "a mirrored (drbd) instance with a secondary")
    doc = _spec_doc(inst.spec)
    return {
        "type": "relocate",
        "name": instance,
        "required_nodes": 1,
        "disk_space_total": doc["disk_space_total"],
        "relocate_from": [inst.secondary],
    }


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an allocator, or None; for values checked elsewhere
    (``dest_iallocator`` is looked up by the destination cluster)."""
    if _NAME_RE.match(name):
        return None
    return f"the name of an iallocator: {_NAME_RULE} characters"


def installed() -> list[str]:
    """The names of the allocators found in :data:`SEARCH_PATH`, for error messages."""
    names: set[str] = set()
    for directory in SEARCH_PATH:
        if directory.is_dir():
            names.update(
                p.name for p in directory.iterdir() if _NAME_RE.match(p.name) and _runnable(p)
            )
    return sorted(names)


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _where() -> str:
    found = ", ".join(installed()) or "none installed"
    dirs = " or ".join(str(d) for d in SEARCH_PATH)
    return f"the name of an iallocator in {dirs} ({found})"


def allocator_problem(name: str) -> str | None:
    """Why ``name`` is not an installed allocator, or None: the check of every op's
    ``iallocator`` parameter, so a bad one is refused when the job is submitted."""
    return name_problem(name) or (None if _lookup(name) else _where())


def _lookup(name: str) -> Path | None:
    for directory in SEARCH_PATH:
        candidate = directory / name
        if _runnable(candidate):
            return candidate
    return None


def find(name: str, field: str = "iallocator") -> Path:
    """The program of the allocator called ``name``; anything else is a ValidationError."""
    problem = name_problem(name) if isinstance(name, str) else "a string"
    path = _lookup(name) if problem is None else None
    if path is None:
        raise ValidationError(field, name, problem or _where())
    return path


def run(
    allocator: str,
    message: dict[str, Any],
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """Run the allocator named ``allocator`` on one input message and return its parsed,
    well-formed answer.

    ``success: false`` is a normal answer (no placement), returned for the caller to
    judge; everything else that is not the protocol is an error naming the allocator.
    The name is resolved again here, not trusted from submit time: the one place a
    program is executed must itself refuse a path.
    """
    path = find(allocator)
    with tempfile.NamedTemporaryFile("w", prefix="herd-ialloc-", suffix=".json") as fh:
        json.dump(message, fh)
        fh.flush()
        try:
            proc = subprocess.run(
                [str(path), fh.name], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise _fault(allocator, f"did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise _fault(allocator, f"could not be started: {exc}") from exc
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()[-2000:]
        raise _fault(allocator, f"exited with status {proc.returncode}: {output}")
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise _fault(allocator, f"did not print JSON ({exc}): {proc.stdout[:200]!r}") from None
    if not isinstance(answer, dict):
        raise _fault(allocator, f"answered {type(answer).__name__}, not an object")
    # Ganeti still accepts the pre-2.0 key "nodes" for "result".
    if "result" not in answer and "nodes" in answer:
        answer["result"] = answer["nodes"]
    for key, kind in (("success", bool), ("info", str), ("result", object)):
        if key not in answer or not isinstance(answer[key], kind):
            raise _fault(allocator, f"answer lacks a valid {key!r}: {answer!r:.200}")
    return answer


def _fault(name: str, problem: str) -> HerdError:
    return HerdError(f"iallocator {name}: {problem}", allocator=name, problem=problem)


def validate_nodes(
    allocator: str,
    snap: Snapshot,
    answer: dict[str, Any],
    required: int,
    mirrored: bool,
    only_nodes: Collection[str] | None = None,
) -> list[str]:
    """The node names of a successful allocate/relocate answer, after checking them.

    A broken allocator must not put an instance on a drained node or split a DRBD pair
    across groups, so the hard rules are checked here whatever the program said.
    """
    result = answer["result"]
    if not isinstance(result, list) or not all(isinstance(n, str) for n in result):
        raise _fault(allocator, f"result must be a list of node names, got {result!r:.200}")
    if len(result) != required:
        raise _fault(allocator, f"returned {len(result)} nodes {result}, expected {required}")
    if len(set(result)) != len(result):
        raise _fault(allocator, f"returned the same node twice: {result}")
    for name in result:
        if name not in snap.nodes:
            raise _fault(allocator, f"returned unknown node {name!r}")
        node = snap.nodes[name]
        bad = [w for w, on in (("offline", node.offline), ("drained", node.drained)) if on]
        if not node.vm_capable:
            bad.append("not vm_capable")
        if bad:
            raise _fault(allocator, f"returned node {name} which is {' and '.join(bad)}")
        if only_nodes is not None and name not in only_nodes:
            raise _fault(allocator, f"returned node {name} outside the locked nodes")
    if mirrored and len({snap.nodes[n].group for n in result}) > 1:
        raise _fault(allocator, f"returned nodes {result} in different node groups")
    return result


def external_allocate(
    allocator: str,
    snap: Snapshot,
    spec: InstanceRequest,
    only_nodes: Collection[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[list[str] | None, str]:
    """Ask an external allocator to place ``spec``: (nodes or None if it found none, info)."""
    message = build_request(snap, allocate_request(spec, only_nodes))
    answer = run(allocator, message, timeout)
    if not answer["success"]:
        return None, answer["info"]
    nodes = validate_nodes(allocator, snap, answer, spec.required_nodes, spec.mirrored, only_nodes)
    return nodes, answer["info"]


def external_relocate(
    allocator: str,
    snap: Snapshot,
    instance: str,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Ask an external allocator for a new secondary of ``instance``."""
    inst = snap.instance(instance)
    answer = run(allocator, build_request(snap, relocate_request(snap, instance)), timeout)
    if not answer["success"]:
        raise PrerequisiteError(
            f"iallocator {allocator} found no new secondary for {instance}: {answer['info']}",
            allocator=allocator,
            instance=instance,
        )
    (node,) = validate_nodes(allocator, snap, answer, 1, mirrored=False)
    if node in (inst.primary, inst.secondary):
        raise _fault(allocator, f"relocated {instance} onto its own node {node}")
    if snap.nodes[node].group != snap.nodes[inst.primary].group:
        raise _fault(allocator, f"relocated {instance} to {node} in another group")
    return node
