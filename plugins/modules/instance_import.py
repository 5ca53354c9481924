"""Ansible module herd.cluster.instance_import: restore an instance from an export."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_import
short_description: Create a Herd instance from an export kept on a node
version_added: 0.1.0
description:
  - Submits an C(instance.import) job. The instance gets the exported identity (name, MACs,
    sizes, OS and hypervisor parameters) unless O(name), O(disk_template) or the placement
    options say otherwise; every disk is verified against the digest recorded at export.
  - Idempotent. When an instance called O(name) already exists and matches the export (its
    disk sizes and MAC addresses), the task reports ok. An existing instance that does not
    match fails the task, naming what differs.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description: Reports whether the instance would be created, without creating it.
    support: full
  diff_mode:
    description: There is no configuration to compare.
    support: none
options:
  src_node:
    description: Node holding the export.
    type: str
    required: true
  src_name:
    description: Name of the export (the exported instance's name).
    type: str
    required: true
  name:
    description: Name of the new instance (default O(src_name)).
    type: str
  disk_template:
    description: Disk template of the new instance (default the exported one).
    type: str
    choices: [diskless, file, sharedfile, plain, drbd]
  primary_node:
    description: Primary node (default the allocator's choice).
    type: str
  secondary_node:
    description: DRBD secondary node, with O(primary_node).
    type: str
  iallocator:
    description: >-
      Name of an external iallocator (for example C(hail)) installed on the master in
      C(/usr/lib/ganeti/iallocators) or C(/usr/lib/herd/iallocators); a path is refused.
    type: str
  start:
    description: Start the instance (default if it was running when exported).
    type: bool
"""

EXAMPLES = r"""
- name: Restore db1 from its backup on backup1
  herd.cluster.instance_import:
    src_node: backup1.example.com
    src_name: db1
    primary_node: node2.example.com
"""

RETURN = r"""
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
  sample: [{serial: 1, type: message, message: "instance web1 now lives on node3"}]
instance:
  description: The instance after the task (absent in check mode when it would be created).
  returned: success
  type: dict
  sample: {name: db1, primary_node_name: node2.example.com}
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdApiError
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import declared_only
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    HerdModule,
    OpFields,
)

#: export.list takes lists where the task names one export and one node.
OP_FIELDS: OpFields = {"export.list": {"names[0]": "src_name", "nodes[0]": "src_node"}}
OVERRIDES = ("name", "disk_template", "primary_node", "secondary_node", "iallocator", "start")


def differences(inst: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """What sets an existing instance apart from the export it should have come from."""
    found = []
    if [d["size_mib"] for d in inst.get("disks") or []] != [d["size"] for d in manifest["disks"]]:
        found.append("disk sizes")
    if [n["mac"] for n in inst.get("nics") or []] != [n["mac"] for n in manifest["nics"]]:
        found.append("MAC addresses")
    return found


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    name = p["name"] or p["src_name"]
    existing = herd.client.query_one("instances", name)
    if existing is not None:
        listing = herd.read(
            {"op": "export.list", "names": [p["src_name"]], "nodes": [p["src_node"]]},
            f"export {p['src_name']}",
        )
        manifests = listing["exports"].get(p["src_node"]) or []
        differ = differences(existing, manifests[0]) if manifests else []
        if differ:
            raise HerdApiError(
                "ConflictError",
                f"instance {name} exists but is not export {p['src_name']} on "
                f"{p['src_node']}: its {' and '.join(differ)} differ",
                {"field": "name", "value": name, "differs": differ},
            )
        return {"instance": existing}
    op = {"op": "instance.import", "src_node": p["src_node"], "src_name": p["src_name"]}
    op.update(declared_only(p, OVERRIDES))
    if herd.apply([op], f"import {name} from {p['src_node']}"):
        return {"instance": herd.client.query_one("instances", name)}
    return {}


def main() -> None:
    HerdModule(
        "instance_import",
        {
            "src_node": {"type": "str", "required": True},
            "src_name": {"type": "str", "required": True},
            "name": {"type": "str"},
            "disk_template": {
                "type": "str",
                "choices": ["diskless", "file", "sharedfile", "plain", "drbd"],
            },
            "primary_node": {"type": "str"},
            "secondary_node": {"type": "str"},
            "iallocator": {"type": "str"},
            "start": {"type": "bool"},
        },
        op_fields=OP_FIELDS,
    ).run(run)


if __name__ == "__main__":
    main()
