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
      os: herd-image+default
      beparams: {memory: 1024}
      disks: [{size_mib: 10240, mode: rw, template: drbd}]
      nics: [{mac: "aa:00:00:12:34:56", mode: bridged, link: br0}]
      tags: [web]
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
    return {"instances": instances, "missing": missing}


def main() -> None:
    HerdModule(
        "instance_info",
        {"names": {"type": "list", "elements": "str"}},
        submits_jobs=False,
    ).run(run)


if __name__ == "__main__":
    main()
