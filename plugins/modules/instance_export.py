"""Ansible module herd.cluster.instance_export: back an instance up to files on a node."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_export
short_description: Export a Herd instance's disks and description to files on a node
version_added: 0.1.0
description:
  - Submits an C(instance.export) job. Each disk becomes a compressed stream file with its
    content digest, and a manifest records the instance's identity (name, MACs,
    parameters), under the node's state directory.
  - Idempotent. When an export of the instance already exists on the target node, the
    disks' content digests are computed and compared with it; when they all match the task
    reports ok and keeps the export. O(force) always re-exports.
  - With O(remove_instance), an instance that is gone while its export exists counts as
    already done.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description:
      - Reports whether an export would be written. Comparing digests reads the disks
        (a read-only job), but nothing is stopped or written.
    support: full
  diff_mode:
    description: There is no configuration to compare.
    support: none
options:
  name:
    description: Name of the instance.
    type: str
    required: true
  target_node:
    description: Node to keep the export on (default the instance's primary node).
    type: str
  compression:
    description: Compression of the stream files (a built-in codec or a listed tool).
    type: str
    default: none
  shutdown:
    description: Stop the instance for a consistent copy and start it again after.
    type: bool
    default: true
  remove_instance:
    description: Remove the instance once the export is complete (needs O(shutdown)).
    type: bool
    default: false
  force:
    description: Export even when an export with the same digests exists.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a clean shutdown before forcing the instance off.
    type: int
    default: 120
  zero_free_space:
    description:
      - After stopping the instance, boot it once into the cluster's zeroing helper image,
        which zero-fills its filesystems' free space, so the stream files do not carry
        data the guest deleted.
      - Needs O(shutdown) and the cluster setting C(zeroing_image); the task fails naming
        this option otherwise.
      - When an existing export's digests match the disks, nothing is zeroed or written.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Nightly backup of db1, compressed
  herd.cluster.instance_export:
    name: db1
    target_node: backup1.example.com
    compression: zstd

- name: Smallest possible backup of web1 (deleted data zeroed first)
  herd.cluster.instance_export:
    name: web1
    compression: zstd
    zero_free_space: true
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
exported:
  description: Whether stream files were (or in check mode would be) written.
  returned: success
  type: bool
  sample: true
target_node:
  description: The node holding the export.
  returned: success
  type: str
  sample: backup1.example.com
result:
  description: The result of the C(instance.export) op (digests, stream bytes).
  returned: when an export job ran
  type: dict
  sample: {digests: ["9f86d0..."], stream_bytes: 1048576}
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import not_found
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import (
    HerdModule,
    OpFields,
)

#: export.list takes lists where the task names one instance and one node.
OP_FIELDS: OpFields = {"export.list": {"names[0]": "name", "nodes[0]": "target_node"}}


def exports_on(herd: HerdModule, name: str, node: str | None) -> list[str]:
    """Names of the nodes holding an export called ``name``."""
    listing = herd.read(
        {"op": "export.list", "names": [name], "nodes": [node] if node else None},
        f"exports of {name}",
    )
    return sorted(n for n, items in listing["exports"].items() if items)


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    inst = herd.client.query_one("instances", p["name"])
    if inst is None:
        holders = exports_on(herd, p["name"], p["target_node"])
        if holders and p["remove_instance"]:
            return {"exported": False, "target_node": holders[0]}
        raise not_found("instance", p["name"])
    target = p["target_node"] or inst["primary_node_name"]
    op = {
        "op": "instance.export",
        "name": p["name"],
        "target_node": target,
        "compression": p["compression"],
        "shutdown": p["shutdown"],
        "remove_instance": p["remove_instance"],
        "shutdown_timeout": p["shutdown_timeout"],
        "zero_free_space": p["zero_free_space"],
    }
    compare = not p["force"] and target in exports_on(herd, p["name"], target)
    if compare:
        op["skip_unchanged"] = True
    if herd.module.check_mode:
        would = True
        if compare:
            would = herd.read({**op, "dry_run": True}, f"compare {p['name']}")["would_export"]
        herd.changed = would or p["remove_instance"]
        return {"exported": would, "target_node": target}
    herd.apply([op], f"export {p['name']} to {target}")
    result = herd.result or {}
    if herd.result is not None:
        herd.changed = bool(result.get("changed"))
    return {"exported": bool(result.get("exported")), "target_node": target, "result": result}


def main() -> None:
    HerdModule(
        "instance_export",
        {
            "name": {"type": "str", "required": True},
            "target_node": {"type": "str"},
            "compression": {"type": "str", "default": "none"},
            "shutdown": {"type": "bool", "default": True},
            "remove_instance": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
            "shutdown_timeout": {"type": "int", "default": 120},
            "zero_free_space": {"type": "bool", "default": False},
        },
        op_fields=OP_FIELDS,
    ).run(run)


if __name__ == "__main__":
    main()
