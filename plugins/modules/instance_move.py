"""Ansible module herd.cluster.instance_move: move an instance to a node or another cluster."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_move
short_description: Move an instance's disks to another node or to another Herd cluster
version_added: 0.1.0
description:
  - Submits an C(instance.move) job. Within a cluster (O(target_node)) the disks are copied
    node to node and the instance keeps its identity. With O(dest_cluster) the instance is
    recreated on the destination cluster with the same MACs and parameters and its disks
    stream there directly; both clusters must share the cluster domain secret.
  - Idempotent. A move that already happened reports ok, not changed - within a cluster when
    the instance's primary node is O(target_node) (with the wanted disk template), between
    clusters when the instance exists at the destination and not on the source (or, with
    O(keep_source), on both).
  - The instance is stopped for the copy and started at the destination if it was running.
  - A move left unfinished in the master's queue by an interrupted run is waited for, not
    submitted a second time; the task then reports it as its change.
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - herd.cluster.connection.job
attributes:
  check_mode:
    description: Reports whether the instance would move, without moving it.
    support: full
  diff_mode:
    description: Shows where the instance is and where it would be.
    support: full
options:
  name:
    description: Name of the instance on the source cluster.
    type: str
    required: true
  target_node:
    description: Node of the same cluster to move to. Mutually exclusive with O(dest_cluster).
    type: str
  dest_cluster:
    description:
      - Path of the destination cluster master's API socket. The module also reads the
        destination through it, to tell whether the move already happened.
    type: path
    aliases: [dest_socket]
  dest_name:
    description: Name at the destination cluster (default O(name)).
    type: str
  dest_nodes:
    description: Destination primary (and secondary) node; default the destination's allocator.
    type: list
    elements: str
  dest_disk_template:
    description: Convert the disks to this template on the way (default keep).
    type: str
    choices: [file, sharedfile, plain, drbd]
  compression:
    description: Compression on the wire (a built-in codec or a tool the cluster lists).
    type: str
    default: none
  ciphers:
    description: TLS cipher suites, within a cluster that allows cipher bypassing only.
    type: list
    elements: str
  bandwidth_limit:
    description: Bytes per second on the wire.
    type: int
  keep_source:
    description: Leave the stopped source instance in place after a move between clusters.
    type: bool
    default: false
  shutdown_timeout:
    description: Seconds to wait for a clean shutdown before forcing the instance off.
    type: int
    default: 120
  zero_free_space:
    description:
      - Before copying, boot the stopped instance once into the source cluster's zeroing
        helper image, which zero-fills its filesystems' free space, so data the guest
        deleted is not sent (zeroed blocks are skipped on the wire).
      - Needs the cluster setting C(zeroing_image); the task fails naming this option
        otherwise.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Move web1 to node3
  herd.cluster.instance_move:
    name: web1
    target_node: node3.example.com

- name: Move web1 to the cluster whose master listens on another socket
  herd.cluster.instance_move:
    name: web1
    dest_cluster: /run/herd-west/master.sock
    dest_nodes: [west1.example.com]
    compression: zstd

- name: Move db1 to another cluster without the data it deleted, keeping the source for now
  herd.cluster.instance_move:
    name: db1
    dest_cluster: /run/herd-west/master.sock
    zero_free_space: true
    keep_source: true
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
moved:
  description:
    - Whether this task moved the instance (false when it already was there), or waited
      for a move an interrupted run had left unfinished.
  returned: success
  type: bool
  sample: true
where:
  description: Where the instance is after the task - cluster socket (or C(local)) and node.
  returned: success
  type: dict
  sample: {cluster: local, node: node3.example.com}
result:
  description: The result of the C(instance.move) op (transfers, destination job id).
  returned: when a move ran
  type: dict
  sample: {instance: web1, primary_node: node3.example.com}
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    HerdApiError,
    HerdClient,
    not_found,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_diff import declared_only
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

MOVE_OPTIONS = (
    "target_node",
    "dest_cluster",
    "dest_name",
    "dest_nodes",
    "dest_disk_template",
    "compression",
    "ciphers",
    "bandwidth_limit",
    "keep_source",
    "shutdown_timeout",
    "zero_free_space",
)


def move(herd: HerdModule, src: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    p = herd.params
    op = {"op": "instance.move", "name": p["name"]}
    op.update(declared_only(p, MOVE_OPTIONS))
    herd.apply([op], f"move {p['name']}")
    before = {"cluster": "local", "node": src["primary_node_name"]}
    return {
        "moved": not herd.module.check_mode,
        "where": where,
        "result": herd.result,
        "diff": {"before": before, "after": where},
    }


def already_there(herd: HerdModule, adopted: bool, where: dict[str, Any]) -> dict[str, Any]:
    """Nothing to submit: moved by an adopted job of an interrupted run, or long before."""
    if adopted:
        return {"moved": True, "where": where, "result": herd.result}
    return {"moved": False, "where": where}


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    adopted = herd.adopt("instance.move", p["name"])
    src = herd.client.query_one("instances", p["name"])
    if p["dest_cluster"] is None:
        if src is None:
            raise not_found("instance", p["name"])
        template = p["dest_disk_template"] or src["disk_template"]
        where = {"cluster": "local", "node": p["target_node"]}
        if src["primary_node_name"] == p["target_node"] and src["disk_template"] == template:
            return already_there(herd, adopted, where)
        return move(herd, src, where)
    dest_name = p["dest_name"] or p["name"]
    dest = HerdClient(socket_path=p["dest_cluster"]).query_one("instances", dest_name)
    if dest is not None:
        where = {"cluster": p["dest_cluster"], "node": dest["primary_node_name"]}
        if src is None or p["keep_source"]:
            return already_there(herd, adopted, where)
        raise HerdApiError(
            "ConflictError",
            f"instance {p['name']} exists on this cluster and as {dest_name} on the "
            "destination: not moving over an existing instance",
            {"field": "dest_name", "value": dest_name},
        )
    if src is None:
        raise not_found("instance", p["name"])
    return move(herd, src, {"cluster": p["dest_cluster"], "node": None})


def main() -> None:
    HerdModule(
        "instance_move",
        {
            "name": {"type": "str", "required": True},
            "target_node": {"type": "str"},
            "dest_cluster": {"type": "path", "aliases": ["dest_socket"]},
            "dest_name": {"type": "str"},
            "dest_nodes": {"type": "list", "elements": "str"},
            "dest_disk_template": {
                "type": "str",
                "choices": ["file", "sharedfile", "plain", "drbd"],
            },
            "compression": {"type": "str", "default": "none"},
            "ciphers": {"type": "list", "elements": "str"},
            "bandwidth_limit": {"type": "int"},
            "keep_source": {"type": "bool", "default": False},
            "shutdown_timeout": {"type": "int", "default": 120},
            "zero_free_space": {"type": "bool", "default": False},
        },
        mutually_exclusive=[["target_node", "dest_cluster"]],
        required_one_of=[["target_node", "dest_cluster"]],
    ).run(run)


if __name__ == "__main__":
    main()
