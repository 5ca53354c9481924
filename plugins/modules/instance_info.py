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
  description: The instances asked for that exist, sorted by name.
  returned: always
  type: list
  elements: dict
  sample:
    - name: web1
      admin_state: up
      disk_template: drbd
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
  description: Names given in O(names) for which no instance exists.
  returned: always
  type: list
  elements: str
  sample: [web9]
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule


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


def run(herd: HerdModule) -> dict[str, Any]:
    instances, missing = select(herd.client.query("instances"), herd.params["names"])
    if herd.params["live"] and instances:
        # Only the instances asked for cost node calls; their names are known to exist.
        params = {"names": ",".join(i["name"] for i in instances), "live": "1"}
        instances = herd.client.request("GET", "/v1/query/instances", params=params)["items"]
    return {"instances": instances, "missing": missing}


def main() -> None:
    HerdModule(
        "instance_info",
        {
            "names": {"type": "list", "elements": "str"},
            "live": {"type": "bool", "default": False},
        },
        submits_jobs=False,
    ).run(run)


if __name__ == "__main__":
    main()
