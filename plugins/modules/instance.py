"""Ansible module herd.cluster.instance: an instance's existence, configuration and run state."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance
short_description: Create, change, move, start, stop or remove an instance of a Herd cluster
version_added: 0.1.0
description:
  - Creates a virtual machine in the Herd cluster, reconciles its memory, vCPUs, parameters,
    tags, NICs and disk sizes with the task, moves it to the declared primary node, brings
    it to the declared run state, or removes it, by submitting C(instance.*) jobs to the
    herd master.
  - Only the options a task sets are compared with the instance; options left unset keep
    whatever value the instance has, and a dict option (O(hvparams), O(osparams)) pins only
    the keys it names, so the module is idempotent and reports changes truthfully.
  - Options that only mean something at creation (O(os), O(hypervisor), disk modes and
    names) are compared too; a difference on an existing instance fails the task instead of
    being ignored. So does a different O(disk_template), unless O(allow_conversion) is true.
  - All steps of one task go into one job, in this order, so each step finds the instance
    where it needs it - stop, convert disks, move, change, grow disks, start or reboot.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description: Can run in check mode and return the changed status without changing anything.
    support: full
  diff_mode:
    description: Returns the fields that differ (or would differ in check mode).
    support: full
options:
  name:
    description:
      - Name of the instance.
    type: str
    required: true
  state:
    description:
      - V(present) creates the instance if it does not exist (without starting it) and
        leaves the run state of an existing one alone.
      - V(running) and V(stopped) also bring it to that run state (the master's
        administrative state of the instance).
      - V(restarted) starts a stopped instance and reboots a running one, on every run.
      - V(absent) stops the instance and removes it and its disks from every node.
    type: str
    choices: [present, running, stopped, restarted, absent]
    default: present
  disk_template:
    description:
      - How the disks are stored (V(diskless), V(file), V(sharedfile), V(plain), V(drbd));
        the master checks it against the templates the cluster enables.
      - Required to create an instance. When an existing instance has another one, the task
        fails unless O(allow_conversion) is true.
    type: str
  allow_conversion:
    description:
      - Whether a differing O(disk_template) converts the disks of an existing instance.
        Only V(plain) to V(drbd) (with O(secondary_node) for the mirror, filled by a full
        resync) and V(drbd) to V(plain) (the primary's copy is kept, the mirror removed);
        the data stays. The instance must be stopped, so declare O(state=stopped) or stop
        it first.
    type: bool
    default: false
  disks:
    description:
      - The instance's disks, in order. Each is a size (an integer in MiB, or text such as
        V(512M), V(2G), V(1.5T)) or a mapping with C(size) and optionally C(mode)
        (V(rw) or V(ro)) and C(name).
      - On an existing instance the number of disks must match, a larger size grows the
        disk on every node holding it, and a smaller size fails the task - disks never
        shrink. C(mode) and C(name) are creation only.
    type: list
    elements: raw
  nics:
    description:
      - The complete list of network interfaces, in order, each a mapping with any of
        C(mac), C(ip), C(mode) (V(bridged), V(routed), V(openvswitch)), C(link), C(name).
      - Keys not given keep the value the NIC at that index has (a new NIC gets the
        cluster's defaults and a new MAC); extra NICs on the instance are removed.
      - Changes take effect when the instance is next started.
    type: list
    elements: dict
  os:
    description:
      - OS definition installed on the disks at creation, V(name+variant) (Ganeti OS API).
      - Creation only - the task fails if an existing instance has another one
        (reinstalling is a separate, destructive operation).
    type: str
  install:
    description:
      - Whether to run the OS create script on the new disks. Creation only; the master
        installs when not set.
    type: bool
  hypervisor:
    description:
      - Hypervisor of a new instance (default - the cluster's first enabled one).
        Creation only.
    type: str
  hvparams:
    description:
      - Hypervisor parameters set on the instance itself. Only the keys given are compared
        and changed; they take effect at the next start.
    type: dict
  osparams:
    description:
      - OS parameters (C(OSP_*) variables of the OS scripts). Only the keys given are
        compared and changed.
    type: dict
  memory:
    description:
      - Memory in MiB, set on the instance itself (an instance that inherits the cluster's
        value counts as different until it is set). Takes effect at the next start.
    type: int
  vcpus:
    description:
      - Number of virtual CPUs, set on the instance itself like O(memory).
    type: int
  tags:
    description:
      - Complete list of tags of the instance (order does not matter).
    type: list
    elements: str
  primary_node:
    description:
      - Node the instance runs on. At creation it is placed there instead of asking the
        allocator.
      - When an existing instance's primary differs, it is moved there by live migration
        if O(allow_migrate) is true, else by failover (stop, then start on the new node) if
        O(allow_failover) is true; otherwise the task fails. DRBD instances can only move
        to their secondary node, which then becomes the secondary.
    type: str
  secondary_node:
    description:
      - DRBD secondary node, together with O(primary_node) at creation, or the node that
        gets the mirror when an existing instance converts to V(drbd).
      - On an existing instance it is otherwise only compared (after a planned move);
        replacing the secondary is done by M(herd.cluster.instance_replace_disks), so a
        difference fails the task.
    type: str
  iallocator:
    description:
      - Name of an external allocator (Ganeti iallocator protocol) that places a new
        instance instead of the built-in allocator, for example C(hail). It is looked
        up on the master in C(/usr/lib/ganeti/iallocators) and C(/usr/lib/herd/iallocators);
        a path is refused. Creation only.
    type: str
  opportunistic:
    description:
      - Place a new instance only among the nodes nobody is using right now, instead of
        waiting for all nodes to be free. Creation only.
      - Without O(opportunistic_tries) the task fails with C(TemporarilyInfeasibleError)
        when the instance would fit on the cluster but not on the free nodes.
    type: bool
  opportunistic_tries:
    description:
      - Number of opportunistic tries (implies O(opportunistic)). A try that is
        temporarily infeasible goes back to the master's queue for the next one after
        O(opportunistic_delay); after the last, one create with blocking locks runs, so the
        task fails only if the instance cannot be placed at all. Creation only.
      - The retries happen in the master within one job, so O(wait_timeout) must cover them.
    type: int
  opportunistic_delay:
    description:
      - Seconds between opportunistic tries, each spread by +/-20% so creates that failed
        together do not retry together. The master waits 5 seconds when not set.
    type: float
  allow_migrate:
    description:
      - Whether a differing O(primary_node) may be reached by live migration.
    type: bool
    default: true
  allow_failover:
    description:
      - Whether a differing O(primary_node) may be reached by failover, which stops the
        instance and starts it on the new node. Used only when O(allow_migrate) is false.
    type: bool
    default: false
  ignore_consistency:
    description:
      - For a failover, go ahead although the current primary cannot be reached to shut the
        instance down (the node is dead).
    type: bool
    default: false
  reboot_type:
    description:
      - How O(state=restarted) reboots a running instance - V(soft) lets the guest reboot
        itself, V(hard) restarts the VM process, which also applies pending memory, vCPU,
        NIC and hypervisor parameter changes.
    type: str
    choices: [soft, hard]
    default: hard
  shutdown_timeout:
    description:
      - Seconds to wait for a clean (ACPI) shutdown before the instance is forced off, when
        stopping, failing over or removing it. The master waits 120 seconds when not set.
    type: int
notes:
  - Talks only to the herd master's API; run it against the master (C(socket)) or give
    O(api_url).
  - Creating, migrating and removing can take long; the task waits up to O(wait_timeout)
    seconds and returns the job ids and the job log either way.
  - A create left unfinished in the master's queue by an interrupted run (for example one
    waiting for its next opportunistic try) is waited for instead of submitted again, so
    rerunning a playbook after an interruption is safe.
"""

EXAMPLES = r"""
- name: A running web server on file disks
  herd.cluster.instance:
    name: web1
    state: running
    disk_template: file
    disks: [10G]
    os: herd-image+tiny
    memory: 1024
    vcpus: 2
    tags: [web]
  become: true

- name: Grow its disk and give it more memory (applied at the next restart)
  herd.cluster.instance:
    name: web1
    disks: [20G]
    memory: 2048

- name: Move a DRBD instance to its secondary by live migration
  herd.cluster.instance:
    name: db1
    primary_node: node2.example.com

- name: Move it even if it cannot migrate, by failover
  herd.cluster.instance:
    name: db1
    primary_node: node2.example.com
    allow_migrate: false
    allow_failover: true

- name: Mirror a stopped plain instance to node3 (plain to drbd, data kept)
  herd.cluster.instance:
    name: app1
    state: stopped
    disk_template: drbd
    secondary_node: node3.example.com
    allow_conversion: true

- name: Remove an instance without waiting for the job
  herd.cluster.instance:
    name: old1
    state: absent
    wait: false
  register: removal
"""

RETURN = r"""
instance:
  description:
    - The instance as the master reports it when the module finished. Before a job submitted
      with O(wait=false) or in check mode has run, this is the instance as it was.
    - V(null) when the instance does not (or no longer) exist.
    - Nodes are named in C(primary_node), C(secondary_nodes) and each disk's C(nodes);
      their UUIDs are beside them in C(primary_node_uuid), C(secondary_node_uuids) and
      C(node_uuids). C(primary_node_name) and C(secondary_node_names) are the same names,
      as the master's queries give them.
  returned: always
  type: dict
  sample:
    name: web1
    admin_state: up
    disk_template: file
    primary_node: node2.example.com
    primary_node_uuid: 5f0c3a52-7d1e-4c4b-9a57-0e3f1c2b9d10
    secondary_nodes: []
    secondary_node_uuids: []
    primary_node_name: node2.example.com
    secondary_node_names: []
    os: herd-image+tiny
    beparams: {memory: 1024, vcpus: 2}
    disks: [{size_mib: 10240, mode: rw, template: file}]
    nics: [{mac: "aa:00:00:12:34:56", mode: bridged, link: br0}]
    tags: [web]
pending_restart:
  description:
    - What the task changed that the running instance only applies when it is next
      restarted (memory, vcpus, nics, C(hvparams.*) keys), as the master's C(instance.modify)
      reports it; O(state=restarted) (a hard reboot) in the same task applies them.
    - Empty when nothing waits, in check mode, and with O(wait=false).
  returned: always
  type: list
  elements: str
  sample: [hvparams.vnc, memory]
job_ids:
  description: Ids of the jobs submitted to the master (empty when nothing had to change).
  returned: always
  type: list
  elements: int
  sample: [42]
job_log:
  description: Log entries of the submitted job, in order, when the module waited for it.
  returned: always
  type: list
  elements: dict
  sample:
    - serial: 1
      time: 1700000000.5
      type: message
      message: "placement: primary node2.example.com"
"""

import re
from typing import Any

from ansible.module_utils.common.text.formatters import human_to_bytes
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    HerdApiError,
    validation_error,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import (
    changed_to,
    declared_only,
    diff_fields,
    diff_result,
    merge_declared,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    HerdModule,
    OpFields,
)

#: Options instance.add takes as the task gives them.
ADD_FIELDS = (
    "disk_template",
    "disks",
    "nics",
    "os",
    "install",
    "hypervisor",
    "hvparams",
    "memory",
    "vcpus",
    "osparams",
    "primary_node",
    "secondary_node",
    "iallocator",
    "opportunistic",
    "opportunistic_tries",
    "opportunistic_delay",
    "tags",
)
#: Options only instance.add can set: on an existing instance they are checked, not changed
#: (disk_template converts when the task allows it, see ``conversion``).
FIXED_FIELDS = ("disk_template", "os", "hypervisor")
#: Options instance.modify changes in place.
MODIFY_FIELDS = ("memory", "vcpus", "hvparams", "osparams", "tags")
#: What a NIC is made of, as the master reports and instance.modify takes it.
NIC_KEYS = ("mac", "ip", "mode", "link", "name")
MIB = 1024 * 1024
#: The op fields whose option has another name, for the master's refusals (HerdModule).
OP_FIELDS: OpFields = {
    "instance.migrate": {"target_node": "primary_node"},
    "instance.failover": {"target_node": "primary_node"},
    "instance.reboot": {"type": "reboot_type"},
    "instance.modify": {"disk_grow": lambda op: f"disks[{op['disk_grow']['index']}]"},
}
#: Ops after which an instance runs with its current configuration: what an earlier
#: modify left for a restart no longer waits (a soft reboot keeps the VM process).
RESTARTS = {"instance.start": None, "instance.reboot": "hard"}


def invalid(field: str, value: Any, message: str) -> HerdApiError:
    """Bad task input, the message led by the field: an instance task has many."""
    return validation_error(field, value, f"{field}: {message}")


def size_mib(value: Any, field: str) -> int:
    """MiB from an integer (MiB) or text like 512M, 2G, 2GiB, 1.5T, as instance.add reads it.

    Needed to compare a declared disk with the instance's; ``human_to_bytes`` does the unit
    arithmetic, only the binary ``GiB`` spelling is folded into ``GB`` first.
    """
    allowed = "a size in MiB, or a number with a unit such as 512M, 2G or 1.5T"
    if isinstance(value, bool) or value is None:
        raise invalid(field, value, allowed)
    if isinstance(value, int):
        size = value
    else:
        text = re.sub(r"(?i)([kmgtpezy])ib$", r"\1B", str(value).strip())
        try:
            size_bytes = human_to_bytes(text, default_unit="M")
        except ValueError:
            raise invalid(field, value, allowed) from None
        if size_bytes % MIB:
            raise invalid(field, value, "a whole number of MiB")
        size = size_bytes // MIB
    if size < 1:
        raise invalid(field, value, allowed)
    return size


def view(current: dict[str, Any]) -> dict[str, Any]:
    """The instance in the terms of the task's options, for comparing and for the diff."""
    beparams = current.get("beparams") or {}
    secondaries = current.get("secondary_node_names") or []
    return {
        "disk_template": current.get("disk_template"),
        "os": current.get("os"),
        "hypervisor": current.get("hypervisor"),
        "memory": beparams.get("memory"),
        "vcpus": beparams.get("vcpus"),
        "hvparams": current.get("hvparams") or {},
        "osparams": current.get("osparams") or {},
        "tags": current.get("tags") or [],
        "primary_node": current.get("primary_node_name"),
        "secondary_node": secondaries[0] if secondaries else None,
        "state": "running" if current.get("admin_state") == "up" else "stopped",
    }


def nic_change(
    current: list[dict[str, Any]], declared: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """(before, after) NIC lists when the declared ones differ, else None.

    ``after`` is the complete list instance.modify needs: every NIC at an existing index
    carries all of its current values with the declared keys applied, because the master
    fills missing keys from the cluster defaults, not from the NIC being replaced.
    """
    before = [{key: nic.get(key) for key in NIC_KEYS} for nic in current]
    after = [
        merge_declared(before[i] if i < len(before) else {}, nic or {})
        for i, nic in enumerate(declared)
    ]
    return None if after == before else (before, after)


def disk_grows(current: list[dict[str, Any]], declared: list[Any]) -> dict[int, int]:
    """{index: declared MiB} for each disk to grow; fails on what cannot change."""
    if len(declared) != len(current):
        raise invalid(
            "disks",
            declared,
            f"the instance has {len(current)} disk(s) and {len(declared)} are declared; "
            "disks are only added or removed by recreating the instance",
        )
    grows = {}
    for index, (disk, spec) in enumerate(zip(current, declared, strict=True)):
        spec = spec if isinstance(spec, dict) else {"size": spec}
        unknown = sorted(set(spec) - {"size", "mode", "name"})
        if unknown:
            raise invalid(f"disks[{index}].{unknown[0]}", spec, "a disk has keys size, mode, name")
        for key in ("mode", "name"):
            if spec.get(key) is not None and spec[key] != disk.get(key):
                raise invalid(
                    f"disks[{index}].{key}",
                    spec[key],
                    f"is {disk.get(key)!r} and is only set when the instance is created",
                )
        if spec.get("size") is None:
            continue
        want, have = size_mib(spec["size"], f"disks[{index}].size"), int(disk["size_mib"])
        if want < have:
            raise invalid(
                f"disks[{index}].size",
                spec["size"],
                f"{want} MiB is smaller than the current {have} MiB; disks never shrink",
            )
        if want > have:
            grows[index] = want
    return grows


def conversion(
    have: dict[str, Any], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The disk template conversion the task asks for: ops, changes, the instance after it.

    Without ``allow_conversion`` nothing is planned, so the fixed-field check refuses the
    differing template as before. The master decides which conversions exist.
    """
    name, want = params["name"], params.get("disk_template")
    if want is None or want == have["disk_template"] or not params["allow_conversion"]:
        return [], {}, have
    op: dict[str, Any] = {"op": "instance.modify", "name": name, "disk_template": want}
    secondary = params.get("secondary_node") if want == "drbd" else None
    if secondary is not None:
        op["secondary_node"] = secondary
    changes: dict[str, tuple[Any, Any]] = {"disk_template": (have["disk_template"], want)}
    if secondary != have["secondary_node"]:
        changes["secondary_node"] = (have["secondary_node"], secondary)
    return [op], changes, {**have, "disk_template": want, "secondary_node": secondary}


def move_ops(
    have: dict[str, Any], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, tuple[Any, Any]]]:
    """The migration or failover that brings the instance to the declared primary node.

    A DRBD move swaps primary and secondary, so the declared secondary is compared with the
    node the instance will have *after* the move; anything else would need a disk
    replacement, which this module does not do.
    """
    name, target = params["name"], params.get("primary_node")
    changes: dict[str, tuple[Any, Any]] = {}
    ops: list[dict[str, Any]] = []
    secondary_after = have["secondary_node"]
    if target is not None and target != have["primary_node"]:
        changes["primary_node"] = (have["primary_node"], target)
        if have["secondary_node"] is not None:
            secondary_after = have["primary_node"]
        if params["allow_migrate"]:
            ops.append({"op": "instance.migrate", "name": name, "target_node": target})
        elif params["allow_failover"]:
            failover = {
                "op": "instance.failover",
                "name": name,
                "target_node": target,
                "ignore_consistency": params["ignore_consistency"],
            }
            ops.append({**failover, **declared_only(params, ("shutdown_timeout",))})
        else:
            raise invalid(
                "primary_node",
                target,
                f"instance {name} runs on {have['primary_node']}; allow_migrate or "
                "allow_failover must be true to move it",
            )
    wanted_secondary = params.get("secondary_node")
    if wanted_secondary is not None and wanted_secondary != secondary_after:
        raise invalid(
            "secondary_node",
            wanted_secondary,
            f"instance {name} has secondary {secondary_after!r} (after any move); "
            "changing the secondary node is not supported by this module",
        )
    if secondary_after != have["secondary_node"]:
        changes["secondary_node"] = (have["secondary_node"], secondary_after)
    return ops, changes


def state_ops(
    have: dict[str, Any], params: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, tuple[Any, Any]]]:
    """Ops that go first (a stop) and last (a start or reboot) for the declared run state."""
    name, state = params["name"], params["state"]
    if state == "stopped" and have["state"] == "running":
        stop = {"op": "instance.stop", "name": name}
        return (
            [{**stop, **declared_only(params, ("shutdown_timeout",))}],
            [],
            {"state": ("running", "stopped")},
        )
    if state in ("running", "restarted") and have["state"] == "stopped":
        return [], [{"op": "instance.start", "name": name}], {"state": ("stopped", "running")}
    if state == "restarted":
        return [], [{"op": "instance.reboot", "name": name, "type": params["reboot_type"]}], {}
    return [], [], {}


def stored_form(declared: dict[str, Any]) -> dict[str, Any]:
    """Declared values as the master stores them: OS parameters become environment
    variables, so a YAML ``8`` or ``true`` is kept as ``"8"`` or ``"true"``; compared
    raw, every run would see a change."""
    osparams = declared.get("osparams")
    if not osparams:
        return declared
    as_text = {
        key: ("true" if value else "false") if isinstance(value, bool) else
        str(value) if isinstance(value, (int, float)) else value
        for key, value in osparams.items()
    }  # fmt: skip
    return {**declared, "osparams": as_text}


def plan(
    current: dict[str, Any] | None, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ops (one job) that bring the instance to the declared state, and the Ansible diff.

    Pure so that idempotency, refusals and op order can be unit-tested without a master.
    """
    name, state = params["name"], params["state"]
    if state == "absent":
        if current is None:
            return [], {}
        remove = {"op": "instance.remove", "name": name}
        remove.update(declared_only(params, ("shutdown_timeout",)))
        return [remove], {"before": current, "after": {}}
    if current is None:
        if params.get("disk_template") is None:
            raise invalid("disk_template", None, f"required to create instance {name}")
        add = declared_only(params, ADD_FIELDS)
        start = state in ("running", "restarted")
        op = {"op": "instance.add", "name": name, **add, "start": start}
        after = {"name": name, **add, "state": "running" if start else "stopped"}
        return [op], {"before": {}, "after": after}
    converts, convert_changes, have = conversion(view(current), params)
    fixed = diff_fields(have, declared_only(params, FIXED_FIELDS))
    if fixed:
        field, (before, after) = next(iter(fixed.items()))
        hint = " (or set allow_conversion to convert it)" if field == "disk_template" else ""
        raise invalid(
            field,
            after,
            f"instance {name} has {before!r}; it is only set when the instance is created "
            f"and cannot change to {after!r}{hint}",
        )
    first, last, changes = state_ops(have, params)
    changes.update(convert_changes)
    moves, move_changes = move_ops(have, params)
    changes.update(move_changes)
    modify_changes = diff_fields(have, stored_form(declared_only(params, MODIFY_FIELDS)))
    modify = changed_to(modify_changes)
    if params.get("nics") is not None:
        nics = nic_change(current.get("nics") or [], params["nics"])
        if nics is not None:
            modify_changes["nics"] = nics
            modify["nics"] = nics[1]
    changes.update(modify_changes)
    ops = first + converts + moves
    if modify:
        ops.append({"op": "instance.modify", "name": name, **modify})
    if params.get("disks") is not None:
        sizes = [int(d["size_mib"]) for d in current.get("disks") or []]
        grows = disk_grows(current.get("disks") or [], params["disks"])
        for index, want in grows.items():
            grow = {"index": index, "size": want}
            ops.append({"op": "instance.modify", "name": name, "disk_grow": grow})
        if grows:
            changes["disks"] = (sizes, [grows.get(i, size) for i, size in enumerate(sizes)])
    ops += last
    return ops, diff_result(changes) if changes else {}


def pending_restart(job: dict[str, Any] | None) -> list[str]:
    """What the job's modifies changed that the running instance applies only at its next
    restart (instance.modify's ``pending_restart``), less what a later op restarted."""
    pending: set[str] = set()
    for op in (job or {}).get("ops") or []:
        restart = op.get("op") in RESTARTS
        if restart and RESTARTS[op["op"]] in (None, (op.get("params") or {}).get("type")):
            pending.clear()
        pending.update((op.get("result") or {}).get("pending_restart") or [])
    return sorted(pending)


def adopt(herd: HerdModule, name: str) -> dict[str, Any] | None:
    """Wait for a create of ``name`` an interrupted run left unfinished; the instance then."""
    if not herd.adopt("instance.add", name):
        return None
    return herd.client.query_one("instances", name)


def run(herd: HerdModule) -> dict[str, Any]:
    name = herd.params["name"]

    def current() -> dict[str, Any] | None:
        found = herd.client.query_one("instances", name)
        if found is None and herd.params["state"] != "absent":
            return adopt(herd, name)
        return found

    result = herd.reconcile(current, lambda found: plan(found, herd.params))
    return {**result, "pending_restart": pending_restart(herd.job)}


def main() -> None:
    herd = HerdModule(
        "instance",
        {
            "name": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "choices": ["present", "running", "stopped", "restarted", "absent"],
                "default": "present",
            },
            "disk_template": {"type": "str"},
            "disks": {"type": "list", "elements": "raw"},
            "nics": {"type": "list", "elements": "dict"},
            "os": {"type": "str"},
            "install": {"type": "bool"},
            "hypervisor": {"type": "str"},
            "hvparams": {"type": "dict"},
            "osparams": {"type": "dict"},
            "memory": {"type": "int"},
            "vcpus": {"type": "int"},
            "tags": {"type": "list", "elements": "str"},
            "primary_node": {"type": "str"},
            "secondary_node": {"type": "str"},
            "iallocator": {"type": "str"},
            "opportunistic": {"type": "bool"},
            "opportunistic_tries": {"type": "int"},
            "opportunistic_delay": {"type": "float"},
            "allow_conversion": {"type": "bool", "default": False},
            "allow_migrate": {"type": "bool", "default": True},
            "allow_failover": {"type": "bool", "default": False},
            "ignore_consistency": {"type": "bool", "default": False},
            "reboot_type": {"type": "str", "choices": ["soft", "hard"], "default": "hard"},
            "shutdown_timeout": {"type": "int"},
        },
        op_fields=OP_FIELDS,
    )
    herd.run(run)


if __name__ == "__main__":
    main()
