"""Ansible module herd.cluster.instance_info: read instances and where they run."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_info
short_description: Read the instances of a Herd cluster and the nodes they run on
version_added: 0.1.0
description:
  - Returns what the herd master knows about all instances, or about the named ones -
    their configuration, administrative state, disks, NICs, and the names of their primary
    and secondary nodes.
  - With O(live=true) it also asks the nodes what is true right now - whether each instance
    is running, and the replication state of its DRBD disks on each node.
  - O(tags), O(node) and O(state) narrow the answer to the instances that match all of
    them; the module applies them to what the master reports, and asks nodes (with
    O(live=true)) only about the instances the stored state lets through.
  - Changes nothing.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
attributes:
  check_mode:
    description: Can run in check mode; the module never changes anything.
    support: full
  diff_mode:
    description: There is never anything to compare.
    support: none
options:
  names:
    description:
      - Names of the instances to read. All instances when not given.
      - Names of instances that do not exist are listed in RV(missing) rather than failing
        the task, so a play can decide to create them.
    type: list
    elements: str
  live:
    description:
      - Ask the nodes for the instances' live state, adding C(oper_state), C(drbd) and
        C(live_errors) to each instance (see RV(instances)).
      - The master asks each node with a short timeout; a node that does not answer makes
        the state V(unknown) and is named in C(live_errors), it does not fail the task.
    type: bool
    default: false
  tags:
    description:
      - Only instances that have all of these tags (and possibly others).
    type: list
    elements: str
  node:
    description:
      - Only instances with this node as their primary or as one of their secondaries.
      - A node that does not exist matches no instance.
    type: str
  state:
    description:
      - V(up) or V(down) - only instances whose administrative state (what the cluster
        wants, C(admin_state)) is this.
      - V(running) or V(stopped) - only instances that the nodes report in this state
        right now (C(oper_state)); needs O(live=true), since only the nodes know it.
        Instances whose node did not answer (C(oper_state=unknown)) match neither.
    type: str
    choices: [up, down, running, stopped]
"""

EXAMPLES = r"""
- name: Read every instance
  herd.cluster.instance_info:
  become: true
  register: herd

- name: Show where web1 runs
  herd.cluster.instance_info:
    names: [web1]
  register: web

- name: Report it
  ansible.builtin.debug:
    msg: "web1 runs on {{ web.instances[0].primary_node_name }}"
  when: web.instances | length == 1

- name: The production instances with node3 as primary or secondary, marked up
  herd.cluster.instance_info:
    tags: [prod]
    node: node3
    state: up
  register: on_node3

- name: Instances that should run but do not
  herd.cluster.instance_info:
    state: stopped
    live: true
  register: stopped
  failed_when: stopped.instances | selectattr('admin_state', 'eq', 'up') | list | length > 0

- name: Fail when a DRBD disk of db1 is not fully mirrored
  herd.cluster.instance_info:
    names: [db1]
    live: true
  register: db
  failed_when: >-
    db.instances[0].drbd.values() | flatten | selectattr('degraded') | list | length > 0
"""

RETURN = r"""
instances:
  description:
    - The instances asked for that exist and pass the filters, sorted by name.
    - Nodes are named as in RV(herd.cluster.instance#module:instance), their UUIDs in
      C(primary_node_uuid), C(secondary_node_uuids) and each disk's C(node_uuids).
  returned: always
  type: list
  elements: dict
  sample:
    - name: web1
      admin_state: up
      disk_template: drbd
      primary_node: node2.example.com
      primary_node_uuid: 5f0c3a52-7d1e-4c4b-9a57-0e3f1c2b9d10
      secondary_nodes: [node3.example.com]
      secondary_node_uuids: [9a1e6b07-3c2d-4f8e-b5a4-7d6c5b4a3f21]
      primary_node_name: node2.example.com
      secondary_node_names: [node3.example.com]
      hypervisor: kvm
      os: herd-image+tiny
      beparams: {memory: 1024}
      disks: [{size_mib: 10240, mode: rw, template: drbd}]
      nics: [{mac: "aa:00:00:12:34:56", mode: bridged, link: br0}]
      tags: [web]
      oper_state: running
      drbd:
        node2.example.com:
          - role: Primary
            peer_role: Secondary
            cstate: Connected
            disk: UpToDate
            peer_disk: UpToDate
            sync_percent: null
            degraded: false
            split_brain: false
      live_errors: []
  contains:
    oper_state:
      description:
        - With O(live=true) only. V(running) or V(stopped) as the primary node's hypervisor
          reports it, V(unknown) when the node did not answer or is offline.
      returned: when O(live=true)
      type: str
    drbd:
      description:
        - With O(live=true), for DRBD instances only. Per node name, one entry per disk
          with the DRBD C(role), C(peer_role), connection state C(cstate), C(disk) and
          C(peer_disk) states, C(sync_percent) during a resync, C(degraded) (not two
          UpToDate copies) and C(split_brain).
      returned: when O(live=true) and the instance uses DRBD
      type: dict
    live_errors:
      description: With O(live=true) only. Nodes that could not be asked, and why.
      returned: when O(live=true)
      type: list
      elements: str
missing:
  description:
    - Names given in O(names) for which no instance exists. An instance that exists but
      is left out by a filter is not missing.
  returned: always
  type: list
  elements: str
  sample: [web9]
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    validation_error,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

#: Each value of the ``state`` filter and the instance field it is compared with: the
#: administrative state is stored, the operational one only a live query reports.
STATE_FIELDS = {
    "up": "admin_state",
    "down": "admin_state",
    "running": "oper_state",
    "stopped": "oper_state",
}


def select(
    instances: list[dict[str, Any]], names: list[str] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The instances named (all when ``names`` is None) and the names that matched none.

    The master answers 404 when any asked-for name is unknown, so the module reads all
    instances and filters here: one unknown name must not hide the others.
    """
    if names is None:
        return instances, []
    wanted = set(names)
    found = [inst for inst in instances if inst.get("name") in wanted]
    known = {inst.get("name") for inst in found}
    return found, sorted(wanted - known)


def matches(
    inst: dict[str, Any], tags: list[str] | None, node: str | None, state: str | None
) -> bool:
    """Whether ``inst`` has every tag of ``tags``, uses ``node`` as its primary or a
    secondary, and is in ``state`` (see STATE_FIELDS); a filter of None passes all."""
    if tags and not set(tags) <= set(inst.get("tags") or []):
        return False
    nodes = [inst.get("primary_node_name"), *(inst.get("secondary_node_names") or [])]
    if node is not None and node not in nodes:
        return False
    return state is None or inst.get(STATE_FIELDS[state]) == state


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    live_state = p["state"] if STATE_FIELDS.get(p["state"]) == "oper_state" else None
    if live_state and not p["live"]:
        raise validation_error(
            "state",
            live_state,
            f"state={live_state} filters on what the nodes report: it needs live=true",
            "up or down unless live=true",
        )
    instances, missing = select(herd.client.query("instances"), p["names"])
    stored_state = None if live_state else p["state"]
    instances = [i for i in instances if matches(i, p["tags"], p["node"], stored_state)]
    if p["live"] and instances:
        # Only the instances asked for cost node calls; their names are known to exist.
        params = {"names": ",".join(i["name"] for i in instances), "live": "1"}
        instances = herd.client.request("GET", "/v1/query/instances", params=params)["items"]
        instances = [i for i in instances if matches(i, None, None, live_state)]
    return {"instances": instances, "missing": missing}


def main() -> None:
    HerdModule(
        "instance_info",
        {
            "names": {"type": "list", "elements": "str"},
            "live": {"type": "bool", "default": False},
            "tags": {"type": "list", "elements": "str"},
            "node": {"type": "str"},
            "state": {"type": "str", "choices": sorted(STATE_FIELDS)},
        },
        submits_jobs=False,
    ).run(run)


if __name__ == "__main__":
    main()
