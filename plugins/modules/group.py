"""Ansible module herd.cluster.group: node groups of a Herd cluster."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: group
short_description: Create, modify, rename or remove a node group of a Herd cluster
version_added: 0.1.0
description:
  - Manages a node group (a set of nodes that instances are placed within) by submitting
    C(group.add), C(group.modify), C(group.rename) or C(group.remove) jobs to the herd master.
  - Only the options a task sets are compared with the group. Parameter dicts
    (O(ndparams), O(diskparams), O(hvparams)) pin only the keys they name; other keys keep
    their values.
  - "Renaming is declarative: O(name) is the name the group must end up with and
    O(rename_from) the name it may have now. Running the task again finds O(name) and does
    nothing, so the task stays idempotent."
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
      - Name of the node group (after any rename).
    type: str
    required: true
  rename_from:
    description:
      - Current name of a group to rename to O(name).
      - If a group O(name) already exists the rename has happened and this is ignored, unless
        a group O(rename_from) exists too, which fails the task as ambiguous.
      - If neither group exists, the group O(name) is created.
      - Only valid with O(state=present).
    type: str
  state:
    description:
      - V(present) creates the group if needed and sets the given options.
      - V(absent) removes the group; the master refuses while nodes are in it.
    type: str
    choices: [present, absent]
    default: present
  alloc_policy:
    description:
      - How the allocator treats the group when placing instances.
    type: str
    choices: [preferred, last_resort, unallocable]
  ndparams:
    description:
      - Node parameters for the group's nodes. Herd honours no node parameter yet, so
        the master accepts only an empty dict and names any key it is given.
    type: dict
  diskparams:
    description:
      - 'Disk parameters per disk template, for example C({drbd: {resync_rate: 61440}}).'
    type: dict
  hvparams:
    description:
      - 'Hypervisor parameters per hypervisor, for example C({kvm: {kernel_path: ""}}).'
    type: dict
  tags:
    description:
      - Complete list of tags of the group (order does not matter).
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: A group for the second rack that is used only when the first is full
  herd.cluster.group:
    name: rack2
    alloc_policy: last_resort
    diskparams:
      drbd:
        resync_rate: 61440

- name: Rename group rack2 to row-b (idempotent)
  herd.cluster.group:
    name: row-b
    rename_from: rack2

- name: Remove an empty group
  herd.cluster.group:
    name: old
    state: absent
"""

RETURN = r"""
group:
  description:
    - The node group as the master reports it when the module finished. Before a job
      submitted with O(wait=false) or in check mode has run, this is the group as it was.
    - V(null) when the group does not (or no longer) exist.
  returned: always
  type: dict
  sample:
    name: rack2
    alloc_policy: last_resort
    ndparams: {}
    diskparams: {drbd: {resync_rate: 61440}}
    hvparams: {}
    tags: []
    uuid: 0b8d5d0e-2f0e-4b5e-9a59-2a0c1e0f4c11
job_ids:
  description: Ids of the jobs submitted to the master (empty when nothing had to change).
  returned: always
  type: list
  elements: int
  sample: [7]
job_log:
  description: Log entries of the submitted job, in order, when the module waited for it.
  returned: always
  type: list
  elements: dict
  sample: []
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    HerdApiError,
    validation_error,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import (
    changed_to,
    declared_only,
    diff_fields,
    diff_result,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    HerdModule,
    OpFields,
)

#: Options group.add and group.modify accept besides the name.
FIELDS = ("ndparams", "diskparams", "hvparams", "alloc_policy", "tags")
#: A rename's op names the group by its old name: the master's refusals name the options.
OP_FIELDS: OpFields = {"group.rename": {"name": "rename_from", "new_name": "name"}}


def plan(
    current: dict[str, Any] | None,
    previous: dict[str, Any] | None,
    params: dict[str, Any],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ops and Ansible diff for the group ``current`` (named ``name``) and ``previous``
    (named ``rename_from``, if given). Pure so idempotency is unit-testable without a master.
    """
    name = params["name"]
    if params["state"] == "absent":
        if params.get("rename_from"):
            raise validation_error(
                "rename_from",
                params["rename_from"],
                "rename_from is only valid with state=present",
            )
        if current is None:
            return [], {}
        return [{"op": "group.remove", "name": name}], {"before": current, "after": {}}
    declared = declared_only(params, FIELDS)
    if current is not None and previous is not None:
        raise HerdApiError(
            "ConflictError",
            f"both group {name} and group {params['rename_from']} exist; cannot rename "
            f"{params['rename_from']} to {name}",
            {"field": "rename_from", "value": params["rename_from"]},
        )
    if current is None and previous is None:
        return [{"op": "group.add", "name": name, **declared}], {
            "before": {},
            "after": {"name": name, **declared},
        }
    ops: list[dict[str, Any]] = []
    changes: dict[str, tuple[Any, Any]] = {}
    if previous is not None:
        ops.append({"op": "group.rename", "name": previous["name"], "new_name": name})
        changes["name"] = (previous["name"], name)
    modify_changes = diff_fields(previous or current or {}, declared)
    changes.update(modify_changes)
    modify = changed_to(modify_changes)
    if modify:
        ops.append({"op": "group.modify", "name": name, **modify})
    return ops, diff_result(changes) if changes else {}


def run(herd: HerdModule) -> dict[str, Any]:
    name = herd.params["name"]
    rename_from = herd.params.get("rename_from")
    previous = herd.client.query_one("nodegroups", rename_from) if rename_from else None
    result = herd.reconcile(
        lambda: herd.client.query_one("nodegroups", name),
        lambda current: plan(current, previous, herd.params),
    )
    # Until a rename has run, the group is still known by its old name.
    if result["group"] is None:
        result["group"] = previous
    return result


def main() -> None:
    herd = HerdModule(
        "group",
        {
            "name": {"type": "str", "required": True},
            "rename_from": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "alloc_policy": {"type": "str", "choices": ["preferred", "last_resort", "unallocable"]},
            "ndparams": {"type": "dict"},
            "diskparams": {"type": "dict"},
            "hvparams": {"type": "dict"},
            "tags": {"type": "list", "elements": "str"},
        },
        op_fields=OP_FIELDS,
    )
    herd.run(run)


if __name__ == "__main__":
    main()
