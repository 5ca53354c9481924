"""Ansible module herd.cluster.node: a node's membership and flags in a Herd cluster."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: node
short_description: Add, modify or remove a node of a Herd cluster
version_added: 0.1.0
description:
  - Makes a physical host a node of the Herd cluster, changes its flags and group, or
    removes it, by submitting C(node.add), C(node.modify) or C(node.remove) jobs to the
    herd master.
  - Only the options a task sets are compared with the node; options left unset keep
    whatever value the node has, so the module is idempotent and reports changes truthfully.
  - When a new node must also be drained or offline, both steps go into one job.
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
    description: Returns details on what has changed (or would change in check mode).
    support: full
options:
  name:
    description:
      - Name of the node (its host name, resolvable by the master).
    type: str
    required: true
  state:
    description:
      - V(present) adds the node if it is not in the cluster and then sets the given options.
      - V(absent) removes the node from the cluster.
    type: str
    choices: [present, absent]
    default: present
  primary_ip:
    description:
      - Primary IP address the cluster reaches the node on. Only used when the node is added;
        the task fails if an existing node has a different one (remove and re-add it).
    type: str
  secondary_ip:
    description:
      - Secondary IP address for the replication (DRBD) network.
    type: str
  ssh_port:
    description:
      - SSH port of the node. Only used when the node is added; the task fails if an
        existing node has a different one. The master uses port 22 when not set.
    type: int
  host_key:
    description:
      - SSH host key of the node, V(type base64) as in C(known_hosts) (a trailing comment is
        ignored). The master pins it when adding the node and refuses a host presenting
        another key; without it the key presented at first contact is pinned.
      - The task fails if an existing node has a different pinned key.
    type: str
  group:
    description:
      - Name of the node group the node belongs to. Changing it moves the node.
      - A new node joins group V(default) when not set.
    type: str
  master_candidate:
    description:
      - Whether the node holds a copy of the configuration and may become master.
    type: bool
  drained:
    description:
      - A drained node receives no new instances.
    type: bool
  offline:
    description:
      - An offline node is not contacted by the master at all.
    type: bool
  tags:
    description:
      - Complete list of tags of the node (order does not matter).
    type: list
    elements: str
notes:
  - Talks only to the herd master's API; run it against the master (C(socket)) or give
    O(api_url).
"""

EXAMPLES = r"""
- name: Add a node to the default group
  herd.cluster.node:
    name: node2.example.com
    primary_ip: 192.0.2.12
    secondary_ip: 198.51.100.12
  become: true

- name: Drain a node before maintenance
  herd.cluster.node:
    name: node2.example.com
    drained: true

- name: Move a node to another group, without waiting for the job
  herd.cluster.node:
    name: node3.example.com
    group: rack2
    wait: false
  register: move

- name: Remove a node
  herd.cluster.node:
    name: node4.example.com
    state: absent
"""

RETURN = r"""
node:
  description:
    - The node as the master reports it when the module finished. Before a job submitted with
      O(wait=false) or in check mode has run, this is the node as it was.
    - V(null) when the node is not (or no longer) in the cluster.
    - Its node group is named in C(group) (and C(group_name)); the group's UUID is in
      C(group_uuid).
  returned: always
  type: dict
  sample:
    name: node2.example.com
    primary_ip: 192.0.2.12
    secondary_ip: 198.51.100.12
    group: default
    group_name: default
    group_uuid: 0b8d5d0e-2f0e-4b5e-9a59-2a0c1e0f4c11
    master_candidate: true
    drained: false
    offline: false
    vm_capable: true
    ssh_port: 22
    tags: []
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
      message: adding node node2.example.com
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import validation_error
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import (
    changed_to,
    declared_only,
    diff_fields,
    diff_result,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

#: Options node.add accepts.
ADD_FIELDS = (
    "primary_ip",
    "secondary_ip",
    "group",
    "master_candidate",
    "ssh_port",
    "host_key",
    "tags",
)
#: Options node.modify accepts.
MODIFY_FIELDS = ("drained", "offline", "master_candidate", "group", "secondary_ip", "tags")
#: Options that cannot change once a node is in the cluster.
FIXED_FIELDS = ("primary_ip", "ssh_port", "host_key")


def key_id(line: Any) -> Any:
    """A host key line without its comment: the part that identifies the key."""
    if not isinstance(line, str):
        return line
    return " ".join(line.split()[:2])


def plan(
    current: dict[str, Any] | None, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ops that bring the node to the declared state, and the matching Ansible diff.

    Pure so that idempotency can be unit-tested without a master.
    """
    name = params["name"]
    if params["state"] == "absent":
        if current is None:
            return [], {}
        return [{"op": "node.remove", "name": name}], {"before": current, "after": {}}
    if current is None:
        add = declared_only(params, ADD_FIELDS)
        ops: list[dict[str, Any]] = [{"op": "node.add", "name": name, **add}]
        flags = {f: True for f in ("drained", "offline") if params.get(f)}
        if flags:
            ops.append({"op": "node.modify", "name": name, **flags})
        return ops, {"before": {}, "after": {"name": name, **add, **flags}}
    # The API names the group by uuid in "group" and by name in "group_name"; tasks use names.
    view = dict(current, group=current.get("group_name"), host_key=key_id(current.get("host_key")))
    declared_fixed = declared_only(params, FIXED_FIELDS)
    if "host_key" in declared_fixed:
        declared_fixed["host_key"] = key_id(declared_fixed["host_key"])
    fixed = diff_fields(view, declared_fixed)
    if fixed:
        field, (before, after) = next(iter(fixed.items()))
        raise validation_error(
            field,
            after,
            f"node {name} has {field}={before!r}; it cannot change to {after!r} while the "
            "node is in the cluster (remove and re-add it)",
        )
    changes = diff_fields(view, declared_only(params, MODIFY_FIELDS))
    if not changes:
        return [], {}
    modify = changed_to(changes)
    return [{"op": "node.modify", "name": name, **modify}], diff_result(changes)


def run(herd: HerdModule) -> dict[str, Any]:
    return herd.reconcile(
        lambda: herd.client.query_one("nodes", herd.params["name"]),
        lambda current: plan(current, herd.params),
    )


def main() -> None:
    herd = HerdModule(
        "node",
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "primary_ip": {"type": "str"},
            "secondary_ip": {"type": "str"},
            "ssh_port": {"type": "int"},
            "host_key": {"type": "str", "no_log": False},
            "group": {"type": "str"},
            "master_candidate": {"type": "bool"},
            "drained": {"type": "bool"},
            "offline": {"type": "bool"},
            "tags": {"type": "list", "elements": "str"},
        },
    )
    herd.run(run)


if __name__ == "__main__":
    main()
