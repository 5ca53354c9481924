"""Ansible module herd.cluster.cluster: the Herd cluster itself (init, settings, destroy)."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: cluster
short_description: Initialise, configure or destroy a Herd cluster
version_added: 0.1.0
description:
  - Initialises the Herd cluster on the master node (C(cluster.init)), changes its settings
    (C(cluster.modify)) or destroys it (C(cluster.destroy)), through the herd master's API.
  - When the cluster exists, only the options a task sets are compared with it, and only
    the differing ones are submitted. Parameter dicts (O(hvparams), O(beparams),
    O(ndparams), O(diskparams), O(nicparams)) pin only the keys they name.
  - The cluster's name and master node cannot be changed by this module; a task that asks
    for a different one fails rather than touching the wrong cluster.
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
      - Name of the cluster. Must match the existing cluster's name for any change,
        including O(state=absent).
    type: str
    required: true
  state:
    description:
      - V(present) initialises the cluster if there is none, then sets the given options.
      - V(absent) destroys the cluster; the master refuses while other nodes or instances
        exist.
    type: str
    choices: [present, absent]
    default: present
  master_node:
    description:
      - Host name of the master node. Required to initialise the cluster.
    type: str
  primary_ip:
    description:
      - Primary IP address of the master node. Only used when the cluster is initialised.
    type: str
  secondary_ip:
    description:
      - Secondary (replication network) IP address of the master node. Only used when the
        cluster is initialised.
    type: str
  ssh_port:
    description:
      - SSH port of the master node. Only used when the cluster is initialised; the master
        uses port 22 when not set.
    type: int
  host_key:
    description:
      - SSH host key of the master node, V(type base64) as in C(known_hosts), to pin instead
        of trusting the key presented at first contact. Only used when the cluster is
        initialised.
    type: str
  enabled_hypervisors:
    description:
      - Hypervisors instances may use; the first one is the default.
    type: list
    elements: str
    choices: [kvm, fake]
  enabled_disk_templates:
    description:
      - Disk templates instances may use; the first one is the default.
    type: list
    elements: str
    choices: [file, sharedfile, plain, drbd]
  hvparams:
    description:
      - 'Hypervisor parameters per hypervisor, for example C({kvm: {kernel_path: ""}}).'
    type: dict
  beparams:
    description:
      - Backend parameters (memory, vcpus, ...) every instance inherits.
    type: dict
  ndparams:
    description:
      - Node parameters every node inherits. Herd honours no node parameter yet, so the
        master accepts only an empty dict and names any key it is given.
    type: dict
  diskparams:
    description:
      - 'Disk parameters per disk template, for example C({drbd: {resync_rate: 61440}}).'
    type: dict
  nicparams:
    description:
      - 'NIC parameters every instance NIC inherits, for example C({link: br0}).'
    type: dict
  compression_tools:
    description:
      - Compression tools allowed for instance moves (order does not matter).
    type: list
    elements: str
  drbd_port_range:
    description:
      - TCP port range for DRBD, written as V(first-last), for example V(11000-14999).
    type: str
  mac_prefix:
    description:
      - Prefix of generated instance MAC addresses, for example V(aa:00:00).
    type: str
  candidate_pool_size:
    description:
      - How many nodes are kept as master candidates.
    type: int
  max_running_jobs:
    description:
      - How many jobs the master runs at once.
    type: int
  tags:
    description:
      - Complete list of tags of the cluster (order does not matter).
    type: list
    elements: str
  domain_secret:
    description:
      - The cluster domain secret (at least 64 lower-case hex digits), which clusters that
        move instances between each other must share. At init the cluster takes it instead
        of a new random one; on an existing cluster it replaces the current one.
      - No query shows the secret, so on an existing cluster the module asks the master
        with a dry run whether it differs; the secret is never logged or returned.
      - Only root on the master's Unix socket may set it.
    type: str
  zeroing_image:
    description:
      - Directory on every node holding the zeroing helper image (C(vmlinuz) and
        C(initrd.img)) that O(herd.cluster.instance_move#module:zero_free_space) boots;
        empty turns zeroing off. Only root on the master's Unix socket may set it.
    type: str
  allow_cipher_bypassing:
    description:
      - Let moves inside the cluster choose TLS ciphers from the allow-list. Only root on
        the master's Unix socket may set it.
    type: bool
"""

EXAMPLES = r"""
- name: Initialise the cluster on the master node
  herd.cluster.cluster:
    name: herd1.example.com
    master_node: node1.example.com
    primary_ip: 192.0.2.11
    secondary_ip: 198.51.100.11
    enabled_hypervisors: [kvm]
    enabled_disk_templates: [drbd, plain]
    nicparams:
      link: br0
  become: true

- name: Share the domain secret of the cluster instances move to (from a vault)
  herd.cluster.cluster:
    name: herd2.example.com
    domain_secret: "{{ vault_herd_domain_secret }}"
    zeroing_image: /usr/lib/herd/zeroing-image
  become: true

- name: Raise the DRBD resync rate without touching other disk parameters
  herd.cluster.cluster:
    name: herd1.example.com
    diskparams:
      drbd:
        resync_rate: 61440

- name: Destroy the (single-node, empty) cluster
  herd.cluster.cluster:
    name: herd1.example.com
    state: absent
"""

RETURN = r"""
cluster:
  description:
    - The cluster as the master reports it when the module finished. Before a job submitted
      with O(wait=false) or in check mode has run, this is the cluster as it was.
    - V(null) when there is no cluster.
  returned: always
  type: dict
  sample:
    name: herd1.example.com
    master_node: node1.example.com
    enabled_hypervisors: [kvm]
    enabled_disk_templates: [drbd, plain]
    candidate_pool_size: 10
    max_running_jobs: 20
    tags: []
job_ids:
  description: Ids of the jobs submitted to the master (empty when nothing had to change).
  returned: always
  type: list
  elements: int
  sample: [1]
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
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

#: Options cluster.modify accepts (cluster.init accepts these too).
MODIFY_FIELDS = (
    "enabled_hypervisors",
    "enabled_disk_templates",
    "hvparams",
    "beparams",
    "ndparams",
    "diskparams",
    "nicparams",
    "compression_tools",
    "drbd_port_range",
    "mac_prefix",
    "candidate_pool_size",
    "max_running_jobs",
    "tags",
    "zeroing_image",
    "allow_cipher_bypassing",
)
#: Options only cluster.init accepts.
INIT_FIELDS = ("master_node", "primary_ip", "secondary_ip", "ssh_port", "host_key")
#: What a diff shows for the domain secret: never the value.
SECRET_SHOWN = "<domain secret>"
#: List options whose order carries no meaning.
UNORDERED_FIELDS = ("tags", "compression_tools")


def _refuse(field: str, have: Any, want: Any) -> HerdApiError:
    return validation_error(
        field,
        want,
        f"the cluster has {field}={have!r}, the task asks for {want!r}; this module does not "
        f"change a cluster's {field}",
    )


def comparable(cluster: dict[str, Any]) -> dict[str, Any]:
    """The cluster as tasks declare it: the master reports the DRBD port range as a pair,
    tasks write it as ``first-last``; without this every run would report a change."""
    ports = cluster.get("drbd_port_range")
    if isinstance(ports, list) and len(ports) == 2:
        return dict(cluster, drbd_port_range=f"{ports[0]}-{ports[1]}")
    return cluster


def plan(
    current: dict[str, Any] | None, params: dict[str, Any], secret_differs: bool = False
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ops and Ansible diff that bring the cluster to the declared state.

    Pure so that idempotency can be unit-tested without a master: whether a declared
    domain secret differs from the cluster's (which no query shows) is given as
    ``secret_differs``.
    """
    name = params["name"]
    if current is not None and current.get("name") != name:
        raise _refuse("name", current.get("name"), name)
    if params["state"] == "absent":
        if current is None:
            return [], {}
        return [{"op": "cluster.destroy"}], {"before": current, "after": {}}
    declared = declared_only(params, MODIFY_FIELDS)
    if current is None:
        if not params.get("master_node"):
            raise validation_error(
                "master_node", None, "master_node is required to initialise the cluster"
            )
        init = {**declared_only(params, INIT_FIELDS), **declared}
        secret = declared_only(params, ("domain_secret",))
        return [{"op": "cluster.init", "name": name, **init, **secret}], {
            "before": {},
            "after": {"name": name, **init, **{k: SECRET_SHOWN for k in secret}},
        }
    master = params.get("master_node")
    if master and current.get("master_node") != master:
        raise _refuse("master_node", current.get("master_node"), master)
    changes = diff_fields(comparable(current), declared, UNORDERED_FIELDS)
    modify = changed_to(changes)
    if secret_differs:
        changes["domain_secret"] = (SECRET_SHOWN, SECRET_SHOWN + " (a different one)")
        modify["domain_secret"] = params["domain_secret"]
    if not changes:
        return [], {}
    return [{"op": "cluster.modify", **modify}], diff_result(changes)


def secret_differs(herd: HerdModule, current: dict[str, Any] | None) -> bool:
    """Whether the task's domain secret is not the existing cluster's: a dry run of
    cluster.modify answers on the master, so the secret never has to be read back."""
    if current is None or herd.params["domain_secret"] is None:
        return False
    secret = herd.params["domain_secret"]
    probe = {"op": "cluster.modify", "domain_secret": secret, "dry_run": True}
    answer = herd.read(probe, "cluster domain_secret check")
    return "domain_secret" in answer.get("would_change", [])


def run(herd: HerdModule) -> dict[str, Any]:
    return herd.reconcile(
        herd.client.cluster,
        lambda current: plan(current, herd.params, secret_differs(herd, current)),
    )


def main() -> None:
    herd = HerdModule(
        "cluster",
        {
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "master_node": {"type": "str"},
            "primary_ip": {"type": "str"},
            "secondary_ip": {"type": "str"},
            "ssh_port": {"type": "int"},
            "host_key": {"type": "str", "no_log": False},
            "enabled_hypervisors": {"type": "list", "elements": "str", "choices": ["kvm", "fake"]},
            "enabled_disk_templates": {
                "type": "list",
                "elements": "str",
                "choices": ["file", "sharedfile", "plain", "drbd"],
            },
            "hvparams": {"type": "dict"},
            "beparams": {"type": "dict"},
            "ndparams": {"type": "dict"},
            "diskparams": {"type": "dict"},
            "nicparams": {"type": "dict"},
            "compression_tools": {"type": "list", "elements": "str"},
            "drbd_port_range": {"type": "str"},
            "mac_prefix": {"type": "str"},
            "candidate_pool_size": {"type": "int"},
            "max_running_jobs": {"type": "int"},
            "tags": {"type": "list", "elements": "str"},
            "domain_secret": {"type": "str", "no_log": True},
            "zeroing_image": {"type": "str"},
            "allow_cipher_bypassing": {"type": "bool"},
        },
    )
    herd.run(run)


if __name__ == "__main__":
    main()
