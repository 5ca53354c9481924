"""Ansible inventory plugin herd.cluster.herd: a Herd cluster's instances (and nodes) as hosts."""

# Ansible requires DOCUMENTATION and EXAMPLES before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
name: herd
short_description: Instances (and nodes) of a Herd cluster as an Ansible inventory
version_added: 0.1.0
description:
  - Reads one Herd cluster from its herd master and makes each instance a host, grouped by
    cluster (C(herd_cluster_<name>)), node group of its primary node (C(herd_group_<group>)),
    primary node (C(herd_primary_<node>)), tag (C(herd_tag_<tag>)) and admin state
    (C(herd_state_up), C(herd_state_down)); every instance is in C(herd_all_instances).
  - With O(live=true) the nodes are asked whether each instance runs, adding the groups
    C(herd_oper_state_running), C(herd_oper_state_stopped) and C(herd_oper_state_unknown).
  - With O(want_nodes=true) the nodes are hosts too, in C(herd_all_nodes) only (their
    host names share no group with the instances unless O(groups) or O(keyed_groups) say so).
  - Group names are made safe by Ansible's group name rules (C(-), C(.) and C(:) become C(_)).
  - "Host variables, all prefixed C(herd_): instances have C(herd_kind=instance),
    C(herd_cluster), C(herd_uuid), C(herd_os), C(herd_hypervisor), C(herd_disk_template),
    C(herd_primary_node), C(herd_secondary_nodes), C(herd_group), C(herd_tags),
    C(herd_admin_state), C(herd_oper_state) (with O(live=true)), C(herd_nics) (name, mac,
    ip, mode, link of each NIC), C(herd_ips) and C(herd_macs); nodes have C(herd_kind=node),
    C(herd_cluster), C(herd_uuid), C(herd_primary_ip), C(herd_secondary_ip), C(herd_ssh_port),
    C(herd_group), C(herd_tags), C(herd_master), C(herd_master_candidate), C(herd_drained),
    C(herd_offline) and C(herd_vm_capable)."
  - C(ansible_host) is the instance's first NIC IP, or the node's primary IP, unless
    O(set_ansible_host=false).
  - The connection options and their environment variables are those of the modules; the
    credentials are used for the requests only, never put into host variables, the cache or
    error messages.
  - The configuration file's name must end in C(.herd.yml) or C(.herd.yaml).
author:
  - Herd developers (@herd)
extends_documentation_fragment:
  - herd.cluster.connection
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    required: true
    type: str
    choices: [herd.cluster.herd]
  want_nodes:
    description: Add the cluster's nodes as hosts too, in the group C(herd_all_nodes).
    type: bool
    default: false
  live:
    description:
      - Ask the nodes whether each instance runs, as O(herd.cluster.instance_info#module:live)
        does, setting C(herd_oper_state) and the C(herd_oper_state_<state>) groups.
      - Each instance costs a short call to its primary node; a node that does not answer
        makes the state V(unknown) rather than failing the inventory.
    type: bool
    default: false
  set_ansible_host:
    description:
      - Set C(ansible_host) to the instance's first NIC IP (when a NIC has one) and to a
        node's primary IP.
      - With V(false) Ansible reaches hosts by their names; O(compose) can still set
        C(ansible_host) from the C(herd_) variables.
    type: bool
    default: true
"""

EXAMPLES = r"""
# local.herd.yml, read as root on the master node: the local socket, no credentials
plugin: herd.cluster.herd

---
# cluster.herd.yml, from anywhere: HTTPS with a token (or set HERD_API_URL, HERD_API_TOKEN,
# HERD_API_CA in the environment and leave them out here)
plugin: herd.cluster.herd
api_url: https://master.example.com:5080
ca_path: /etc/herd/cluster-ca.pem
want_nodes: true
live: true
keyed_groups:
  - key: herd_os
    prefix: os
compose:
  ansible_user: "'admin' if 'prod' in herd_tags else 'root'"
  ansible_port: herd_ssh_port | default(22)
groups:
  drbd: herd_disk_template == 'drbd'
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /var/cache/ansible/herd
"""

from typing import Any

from ansible.errors import AnsibleParserError
from ansible.module_utils.errors import AnsibleFallbackNotFound
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    CONNECTION_ARGSPEC,
    CONNECTION_CONSTRAINTS,
    HerdApiError,
    HerdClient,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import redact

#: Where the inventory's hosts sit regardless of their attributes.
ALL_INSTANCES = "herd_all_instances"
ALL_NODES = "herd_all_nodes"
#: The NIC fields an instance's host variables carry (the rest are the master's bookkeeping).
NIC_FIELDS = ("name", "mac", "ip", "mode", "link")


def fetch(client: HerdClient, live: bool) -> dict[str, Any]:
    """What the inventory is built from: the master's answers, secrets redacted.

    This is what the cache holds, so a cached inventory is rebuilt by the same code (and
    honours a changed ``compose`` or ``keyed_groups``) without asking the master. The
    master redacts secrets itself; redacting again keeps them off the cache's disk
    whatever master answered, as the modules keep them out of task results.
    """
    cluster = client.cluster()
    if cluster is None:
        raise HerdApiError("NotFoundError", "the cluster is not initialised yet")
    if live:
        instances = client.request("GET", "/v1/query/instances", params={"live": "1"})["items"]
    else:
        instances = client.query("instances")
    return redact(
        {
            "cluster": {"name": cluster["name"], "master_node": cluster.get("master_node")},
            "nodes": client.query("nodes"),
            "instances": instances,
        }
    )


def instance_vars(
    inst: dict[str, Any], cluster: str, node_groups: dict[str, str]
) -> dict[str, Any]:
    """The ``herd_*`` host variables of an instance from its query document."""
    nics = [{key: nic.get(key) for key in NIC_FIELDS} for nic in inst.get("nics") or []]
    primary = inst.get("primary_node_name")
    out: dict[str, Any] = {
        "herd_kind": "instance",
        "herd_cluster": cluster,
        "herd_uuid": inst.get("uuid"),
        "herd_os": inst.get("os"),
        "herd_hypervisor": inst.get("hypervisor"),
        "herd_disk_template": inst.get("disk_template"),
        "herd_primary_node": primary,
        "herd_secondary_nodes": list(inst.get("secondary_node_names") or []),
        "herd_group": node_groups.get(primary or ""),
        "herd_tags": list(inst.get("tags") or []),
        "herd_admin_state": inst.get("admin_state"),
        "herd_nics": nics,
        "herd_ips": [nic["ip"] for nic in nics if nic["ip"]],
        "herd_macs": [nic["mac"] for nic in nics if nic["mac"]],
    }
    if "oper_state" in inst:
        out["herd_oper_state"] = inst["oper_state"]
    return out


def node_vars(node: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    """The ``herd_*`` host variables of a node from its query document."""
    return {
        "herd_kind": "node",
        "herd_cluster": cluster["name"],
        "herd_uuid": node.get("uuid"),
        "herd_primary_ip": node.get("primary_ip"),
        "herd_secondary_ip": node.get("secondary_ip") or None,
        "herd_ssh_port": node.get("ssh_port"),
        "herd_group": node.get("group_name"),
        "herd_tags": list(node.get("tags") or []),
        "herd_master": node.get("name") == cluster.get("master_node"),
        "herd_master_candidate": bool(node.get("master_candidate")),
        "herd_drained": bool(node.get("drained")),
        "herd_offline": bool(node.get("offline")),
        "herd_vm_capable": bool(node.get("vm_capable", True)),
    }


def instance_groups(hostvars: dict[str, Any]) -> list[str]:
    """The built-in groups of an instance, before Ansible's group name rules are applied."""
    groups = [
        ALL_INSTANCES,
        f"herd_cluster_{hostvars['herd_cluster']}",
        f"herd_state_{hostvars['herd_admin_state']}",
    ]
    if hostvars["herd_group"]:
        groups.append(f"herd_group_{hostvars['herd_group']}")
    if hostvars["herd_primary_node"]:
        groups.append(f"herd_primary_{hostvars['herd_primary_node']}")
    groups += [f"herd_tag_{tag}" for tag in hostvars["herd_tags"]]
    if "herd_oper_state" in hostvars:
        groups.append(f"herd_oper_state_{hostvars['herd_oper_state']}")
    return groups


def ansible_host(hostvars: dict[str, Any]) -> str | None:
    """The address Ansible should dial: the first NIC IP, or a node's primary IP."""
    if hostvars["herd_kind"] == "node":
        return hostvars["herd_primary_ip"] or None
    ips = hostvars["herd_ips"]
    return ips[0] if ips else None


def env_value(spec: dict[str, Any]) -> Any:
    """The value of an option's environment fallback (the modules' ``env_fallback``), or None."""
    fallback = spec.get("fallback")
    if not fallback:
        return None
    function, names = fallback
    try:
        return function(*names)
    except AnsibleFallbackNotFound:
        return None


def check_constraints(params: dict[str, Any]) -> None:
    """Refuse what AnsibleModule refuses for a module given the same connection options."""
    for names in CONNECTION_CONSTRAINTS["mutually_exclusive"]:
        given = [n for n in names if params[n] is not None]
        if len(given) > 1:
            raise HerdApiError(
                "ValidationError",
                f"options {' and '.join(given)} are mutually exclusive: set only one",
                {"field": given[-1]},
            )
    for names in CONNECTION_CONSTRAINTS["required_together"]:
        given = [n for n in names if params[n] is not None]
        missing = [n for n in names if params[n] is None]
        if given and missing:
            raise HerdApiError(
                "ValidationError",
                f"option {', '.join(given)} needs {', '.join(missing)} as well",
                {"field": missing[0]},
            )


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """The inventory of one cluster, read through the same client the modules use."""

    NAME = "herd.cluster.herd"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith((".herd.yml", ".herd.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        config = self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = bool(self.get_option("cache"))
        data = None
        if use_cache and cache:
            data = self._cache.get(key)
        if data is None:
            data = self._query(config)
            if use_cache:
                self._cache[key] = data
        self._populate(data)

    def connection_params(self, config: dict[str, Any]) -> dict[str, Any]:
        """The connection options as a module would see them.

        An option the file does not set takes its environment variable before its default,
        by the modules' own argument spec, so both read the same variables the same way.
        """
        params: dict[str, Any] = {}
        for name, spec in CONNECTION_ARGSPEC.items():
            value = None if name in config else env_value(spec)
            params[name] = self.get_option(name) if value is None else value
        check_constraints(params)
        return params

    def _query(self, config: dict[str, Any]) -> dict[str, Any]:
        try:
            client = HerdClient.from_params(self.connection_params(config))
            return fetch(client, bool(self.get_option("live")))
        except HerdApiError as exc:
            raise AnsibleParserError(f"{self.NAME}: {exc}") from None

    def _populate(self, data: dict[str, Any]) -> None:
        cluster = data["cluster"]
        node_groups = {n["name"]: n.get("group_name") for n in data["nodes"]}
        instances = {inst["name"] for inst in data["instances"]}
        for inst in data["instances"]:
            hostvars = instance_vars(inst, cluster["name"], node_groups)
            self._add_host(inst["name"], hostvars, instance_groups(hostvars))
        if not self.get_option("want_nodes"):
            return
        for node in data["nodes"]:
            if node["name"] in instances:
                self.display.warning(
                    f"{self.NAME}: node {node['name']} is left out: an instance has its name"
                )
                continue
            self._add_host(node["name"], node_vars(node, cluster), [ALL_NODES])

    def _add_host(self, name: str, hostvars: dict[str, Any], groups: list[str]) -> None:
        """Add one host with its variables, built-in groups and the constructed ones."""
        self.inventory.add_host(name)
        for group in groups:
            self.inventory.add_child(
                self.inventory.add_group(self._sanitize_group_name(group)), name
            )
        address = ansible_host(hostvars) if self.get_option("set_ansible_host") else None
        if address:
            hostvars = {**hostvars, "ansible_host": address}
        for key, value in hostvars.items():
            self.inventory.set_variable(name, key, value)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
        self._add_host_to_keyed_groups(
            self.get_option("keyed_groups"), hostvars, name, strict=strict
        )
