"""Ansible module herd.cluster.instance_replace_disks: rebuild one copy of a DRBD instance."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_replace_disks
short_description: Rebuild one copy of a DRBD instance's disks, or mirror it to a new node
version_added: 0.1.0
description:
  - Submits C(instance.replace_disks) to the herd master (Ganeti's
    C(gnt-instance replace-disks)) - the copy on one node is recreated empty and filled by a
    DRBD resync from the other, or the instance gets a new secondary node and the old one's
    volumes are removed once the new copy is in sync.
  - The master refuses to rebuild from a copy that is not UpToDate, so the good copy is
    never the one wiped.
  - Not idempotent by nature - a replacement is an action, not a state, and every run
    recreates and resyncs the copy again. The task therefore always reports C(changed),
    except in check mode, where it only reports what it would submit. Guard it with a
    condition, for example on the live DRBD state M(herd.cluster.instance_info) reports
    with its C(live) option (a degraded or StandAlone disk).
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description: Reports C(changed) without submitting anything.
    support: full
  diff_mode:
    description: There is no declared state to compare.
    support: none
options:
  name:
    description:
      - Name of the DRBD instance.
    type: str
    required: true
  mode:
    description:
      - V(on_secondary) recreates the secondary's copy from the primary.
      - V(on_primary) recreates the primary's copy from the secondary; the instance must be
        stopped.
      - V(new_secondary) mirrors the instance to another node of its group
        (O(new_secondary), or the master's allocator when not given) and removes the old
        secondary's copy.
    type: str
    required: true
    choices: [on_primary, on_secondary, new_secondary]
  new_secondary:
    description:
      - With O(mode=new_secondary), the node that gets the new copy. When not given the
        master's built-in allocator picks the best node of the primary's group.
    type: str
notes:
  - Talks only to the herd master's API; run it against the master (C(socket)) or give
    O(api_url).
  - A resync takes as long as copying the whole disk over the replication network; the task
    waits up to O(wait_timeout) seconds and returns the job log, which shows the resync's
    progress.
"""

EXAMPLES = r"""
- name: Rebuild db1's secondary copy after its disk was replaced
  herd.cluster.instance_replace_disks:
    name: db1
    mode: on_secondary

- name: Mirror db1 to node4 instead of its current secondary
  herd.cluster.instance_replace_disks:
    name: db1
    mode: new_secondary
    new_secondary: node4.example.com

- name: Only when a disk is degraded
  herd.cluster.instance_replace_disks:
    name: db1
    mode: on_secondary
  when: >-
    db.instances[0].drbd.values() | flatten | selectattr('degraded') | list | length > 0
"""

RETURN = r"""
replaced:
  description:
    - The master's result - C(mode), C(node) (the node whose copy was recreated or the new
      secondary) and, for V(new_secondary), C(old_node). Empty in check mode and with
      O(wait=false).
  returned: always
  type: dict
  sample: {changed: true, mode: new_secondary, node: node4.example.com, old_node: node3.example.com}
instance:
  description:
    - The instance as the master reports it when the module finished, its nodes named as
      in RV(herd.cluster.instance#module:instance).
  returned: always
  type: dict
  sample:
    name: db1
    disk_template: drbd
    primary_node: node2.example.com
    secondary_nodes: [node4.example.com]
    primary_node_name: node2.example.com
    secondary_node_names: [node4.example.com]
job_ids:
  description: Ids of the jobs submitted to the master (empty in check mode).
  returned: always
  type: list
  elements: int
  sample: [42]
job_log:
  description: Log entries of the job, in order, when the module waited for it.
  returned: always
  type: list
  elements: dict
  sample:
    - serial: 3
      time: 1700000000.5
      type: progress
      message: "disk 0 of db1: resync 42.0%, 12.5 MiB/s, ETA 30 s"
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule


def replace_op(params: dict[str, Any]) -> dict[str, Any]:
    """The op the task submits; the master checks the mode against the instance."""
    op = {"op": "instance.replace_disks", "name": params["name"], "mode": params["mode"]}
    if params.get("new_secondary") is not None:
        op["new_secondary"] = params["new_secondary"]
    return op


def run(herd: HerdModule) -> dict[str, Any]:
    name = herd.params["name"]
    herd.apply([replace_op(herd.params)], f"replace disks of {name} ({herd.params['mode']})")
    return {"replaced": herd.result or {}, "instance": herd.client.query_one("instances", name)}


def main() -> None:
    HerdModule(
        "instance_replace_disks",
        {
            "name": {"type": "str", "required": True},
            "mode": {
                "type": "str",
                "required": True,
                "choices": ["on_primary", "on_secondary", "new_secondary"],
            },
            "new_secondary": {"type": "str"},
        },
    ).run(run)


if __name__ == "__main__":
    main()
