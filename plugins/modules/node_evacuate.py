"""Ansible module herd.cluster.node_evacuate: move every instance off a node of a Herd cluster."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: node_evacuate
short_description: Move every instance off a node of a Herd cluster
version_added: 0.1.0
description:
  - Submits a C(node.evacuate) job to the herd master. The master plans where each instance
    goes and spawns one job per instance (migration for running shared-storage and DRBD
    instances, failover for stopped ones, a disk copy for C(file) and C(plain) disks, a new
    secondary for DRBD instances that replicate to the node), so each instance is locked
    only while it moves. The module waits for all of them and reports each one's outcome.
  - Idempotent and safe to rerun after an interruption. It first waits for unfinished jobs
    that already work on the node's instances, then plans only what is still on the node;
    when nothing is left it submits no job and reports no change.
  - The node must be drained (see M(herd.cluster.node)), or O(drain=true) drains it first.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description:
      - Submits the evacuation as a dry-run job and returns its plan; nothing is moved or
        drained. The plan treats the node as drained, as an earlier task in check mode may
        have drained it only on paper.
    support: full
  diff_mode:
    description: Not supported; the plan is returned in RV(plan) instead.
    support: none
options:
  name:
    description:
      - Name of the node to empty.
    type: str
    required: true
  mode:
    description:
      - V(all) moves instances with the node as primary or as DRBD secondary,
        V(primary-only) and V(secondary-only) only those.
    type: str
    choices: [all, primary-only, secondary-only]
    default: all
  iallocator:
    description:
      - Name of an external iallocator (Ganeti protocol), for example C(hail), that chooses
        the targets of whole-instance moves instead of the built-in allocator. It is looked
        up on the master in C(/usr/lib/ganeti/iallocators) and C(/usr/lib/herd/iallocators);
        a path is refused.
    type: str
  target_group:
    description:
      - Node group to move non-mirrored instances to. Shared-file instances can only move
        within their group; the default keeps every instance in the node's group.
    type: str
  live:
    description:
      - Migrate running instances live. With V(false) they are paused while their memory is
        copied.
    type: bool
    default: true
  drain:
    description:
      - Drain the node first if it is not drained yet. Without it, an undrained node is
        refused, so that no new instance lands on it while it is emptied.
    type: bool
    default: false
notes:
  - Talks only to the herd master's API; run it against the master (C(socket)) or give
    O(api_url).
  - O(wait_timeout) bounds the whole wait, for the evacuation job and every job it spawned.
seealso:
  - module: herd.cluster.node
"""

EXAMPLES = r"""
- name: Drain a node, empty it, then take it offline
  block:
    - name: Drain
      herd.cluster.node:
        name: node2.example.com
        drained: true
    - name: Evacuate
      herd.cluster.node_evacuate:
        name: node2.example.com
    - name: Offline
      herd.cluster.node:
        name: node2.example.com
        offline: true

- name: Show where the instances would go, moving nothing
  herd.cluster.node_evacuate:
    name: node3.example.com
    drain: true
  check_mode: true
  register: plan
"""

RETURN = r"""
plan:
  description:
    - The steps of the evacuation in order, one per instance move; a DRBD primary has two,
      V(failover) then V(replace-secondary). Empty when nothing was on the node.
  returned: always
  type: list
  elements: dict
  sample:
    - instance: web1
      action: move
      source: node2.example.com
      target: node3.example.com
failed:
  description: Instances the plan could not move, with the reasons per node.
  returned: always
  type: dict
  sample: {}
jobs:
  description:
    - One entry per spawned job. In check mode the jobs that would be submitted (without
      V(job_id)); otherwise with the outcome once the module waited for them.
  returned: always
  type: list
  elements: dict
  sample:
    - instance: web1
      job_id: 43
      ops:
        - op: instance.migrate
          name: web1
          live: true
          target_node: node3.example.com
      status: success
      error: null
drained_now:
  description: Whether this task drained the node (or would, in check mode).
  returned: always
  type: bool
  sample: false
waited_for:
  description: Ids of unfinished jobs on the node's instances the module waited for first.
  returned: always
  type: list
  elements: int
  sample: []
job_ids:
  description:
    - Ids of the submitted jobs, the C(node.evacuate) job first, then the jobs it spawned.
  returned: always
  type: list
  elements: int
  sample: [42, 43, 44]
job_log:
  description: Log entries of the C(node.evacuate) job, in order.
  returned: always
  type: list
  elements: dict
  sample:
    - serial: 1
      time: 1700000000.5
      type: message
      message: "job 43: web1 (instance.migrate)"
"""

import contextlib
import time
from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    HerdApiError,
    HerdClient,
    HerdJobFailed,
    validation_error,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import declared_only
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    HerdModule,
    unfinished_jobs,
)

#: Ops whose ``name`` parameter is an instance.
INSTANCE_OP_PREFIX = "instance."


def on_node(instances: list[dict[str, Any]], node: str, mode: str) -> list[str]:
    """Names of the instances ``mode`` would move off ``node`` (pure, for unit tests)."""
    found = []
    for inst in instances:
        primary = inst.get("primary_node_name") == node
        secondary = node in (inst.get("secondary_node_names") or [])
        if (primary and mode != "secondary-only") or (secondary and mode != "primary-only"):
            found.append(inst["name"])
    return sorted(found)


def instance_ops(items: list[dict[str, Any]]) -> list[str]:
    """The instance op ids among listed jobs (pure, for unit tests).

    A job listing's ``summary`` names each job's ops, not their objects: enough to know
    which ops to ask the master's op-and-name filter about, without reading any job.
    """
    found = {op for item in items for op in str(item.get("summary") or "").split(",")}
    return sorted(op for op in found if op.startswith(INSTANCE_OP_PREFIX))


def jobs_on(client: HerdClient, names: set[str]) -> list[int]:
    """Unfinished jobs with an instance op on one of ``names``, oldest first.

    One listing of the unfinished jobs, then the master's filter for each instance op in
    flight and each name; nothing is asked when no instance op is in flight.
    """
    items = client.request("GET", "/v1/jobs", params={"status": "unfinished"})["items"]
    return sorted(
        {
            job_id
            for op_id in instance_ops(items)
            for name in sorted(names)
            for job_id in unfinished_jobs(client, op_id, name)
        }
    )


def left(deadline: float) -> float:
    """Seconds until ``deadline``: every wait of the task shares the task's one timeout."""
    return max(deadline - time.monotonic(), 0.0)


def wait_in_flight(herd: HerdModule, names: set[str], deadline: float) -> list[int]:
    """Wait for unfinished jobs on these instances, e.g. of an interrupted earlier run.

    Planning while they are queued would move those instances a second time.
    """
    waited = jobs_on(herd.client, names)
    for job_id in waited:
        # A failed move is no reason to stop: its instance is planned again from where it is.
        with contextlib.suppress(HerdJobFailed):
            herd.client.wait(job_id, left(deadline))
    return waited


def outcome(herd: HerdModule, job: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Wait for one spawned job and say how it ended."""
    try:
        done = herd.client.wait(job["job_id"], left(deadline))
    except HerdJobFailed as exc:
        done = exc.job
    return {**job, "status": done.get("status"), "error": done.get("error")}


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    deadline = time.monotonic() + p["wait_timeout"]
    node = herd.client.query_one("nodes", p["name"])
    if node is None:
        raise validation_error("name", p["name"], f"node {p['name']} is not in the cluster")
    result: dict[str, Any] = {
        "plan": [],
        "failed": {},
        "jobs": [],
        "drained_now": False,
        "waited_for": [],
    }
    names = on_node(herd.client.query("instances"), p["name"], p["mode"])
    if names and not herd.module.check_mode:
        result["waited_for"] = wait_in_flight(herd, set(names), deadline)
        names = on_node(herd.client.query("instances"), p["name"], p["mode"])
    if not names and (node.get("drained") or not p["drain"]):
        return result
    op: dict[str, Any] = {
        "op": "node.evacuate",
        "name": p["name"],
        "mode": p["mode"],
        "live": p["live"],
        # A check-mode run of the drain task before this one drained the node on paper.
        "drain": p["drain"] or herd.module.check_mode,
        "dry_run": herd.module.check_mode,
    }
    op.update(declared_only(p, ("iallocator", "target_group")))
    what = f"evacuate node {p['name']}"
    if not herd.apply([op], what, dry_run=herd.module.check_mode, timeout=left(deadline)):
        return result
    evac = herd.result or {}
    # A dry run changes nothing itself but tells what a real run would change.
    herd.changed = bool(evac["changed"] or evac["jobs"] or evac["drained_now"])
    for key in ("plan", "failed", "jobs", "drained_now"):
        result[key] = evac[key]
    herd.job_ids.extend(evac["job_ids"])
    if herd.module.check_mode:
        return result
    result["jobs"] = [outcome(herd, job, deadline) for job in evac["jobs"]]
    bad = [j for j in result["jobs"] if j["status"] != "success"]
    if bad:
        raise HerdApiError(
            "EvacuationFailed",
            f"node {p['name']}: {len(bad)} of {len(result['jobs'])} instance jobs did not "
            "succeed: "
            + "; ".join(
                f"{j['instance']} (job {j['job_id']}): "
                + str((j["error"] or {}).get("message") or j["status"])
                for j in bad
            ),
            {"jobs": result["jobs"]},
        )
    return result


def main() -> None:
    herd = HerdModule(
        "node_evacuate",
        {
            "name": {"type": "str", "required": True},
            "mode": {
                "type": "str",
                "choices": ["all", "primary-only", "secondary-only"],
                "default": "all",
            },
            "iallocator": {"type": "str"},
            "target_group": {"type": "str"},
            "live": {"type": "bool", "default": True},
            "drain": {"type": "bool", "default": False},
        },
    )
    herd.run(run)


if __name__ == "__main__":
    main()
