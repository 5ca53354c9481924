"""Ansible module herd.cluster.cluster_info: read the cluster, its groups and nodes."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_info
short_description: Read a Herd cluster's settings, node groups and nodes
version_added: 0.1.0
description:
  - Returns what the herd master knows about the cluster, its node groups and its nodes.
  - Changes nothing; it also reports whether a cluster has been initialised at all, which
    makes it the natural first task of a bootstrap play.
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
options: {}
"""

EXAMPLES = r"""
- name: Read the cluster
  herd.cluster.cluster_info:
  become: true
  register: herd

- name: Initialise only if there is no cluster yet
  ansible.builtin.debug:
    msg: "cluster {{ herd.cluster.name }} has {{ herd.nodes | length }} nodes"
  when: herd.cluster is not none
"""

RETURN = r"""
version:
  description: Version of the herd engine the master runs.
  returned: always
  type: str
  sample: 0.1.0
cluster:
  description: The cluster's settings, or V(null) before the cluster is initialised.
  returned: always
  type: dict
  sample:
    name: herd1.example.com
    master_node: node1.example.com
    enabled_hypervisors: [kvm]
    enabled_disk_templates: [drbd]
nodes:
  description: All nodes of the cluster, sorted by name (empty without a cluster).
  returned: always
  type: list
  elements: dict
  sample:
    - name: node1.example.com
      primary_ip: 192.0.2.11
      group_name: default
      master_candidate: true
groups:
  description: All node groups of the cluster, sorted by name (empty without a cluster).
  returned: always
  type: list
  elements: dict
  sample:
    - name: default
      alloc_policy: preferred
"""

from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule


def run(herd: HerdModule) -> dict[str, Any]:
    info = herd.client.info()
    cluster = herd.client.cluster()
    if cluster is None:
        return {"version": info.get("version"), "cluster": None, "nodes": [], "groups": []}
    return {
        "version": info.get("version"),
        "cluster": cluster,
        "nodes": herd.client.query("nodes"),
        "groups": herd.client.query("nodegroups"),
    }


def main() -> None:
    HerdModule("cluster_info", {}, submits_jobs=False).run(run)


if __name__ == "__main__":
    main()
