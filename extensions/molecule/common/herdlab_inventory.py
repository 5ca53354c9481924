#!/usr/bin/env python3
"""Ansible inventory script: the lab of the running Molecule scenario, read from its state.

The lab's addresses, cluster key and host keys only exist once ``herdlab up`` has run, so
a static inventory cannot hold them; this script reads them from the lab's state file on
every Ansible run instead of a copy written at create time that could go stale. The lab is
named by ``HERD_MOLECULE_LAB`` (each scenario's molecule.yml sets a default). Without such
a lab the inventory is empty, which is what create and destroy expect.

Groups: ``herd_masters`` holds ``controller``, this host (the lab's nodes reach it at the
lab's controller address), with the master's state directory and socket inside the lab
directory so ``herdlab down`` removes them too; ``herd_nodes`` holds ``n1``..``nN``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "lab"))

import herdlab  # noqa: E402 - found through the path set just above

#: Packages the lab host has: lab nodes share its filesystem, so nothing may be installed.
LAB_PACKAGES = ["openssh-server", "python3", "iproute2", "socat", "qemu-utils"]


def lab_inventory(lab: herdlab.Lab) -> dict[str, Any]:
    """The inventory of ``lab`` in the JSON shape of ``--list``, host variables inline."""
    nodes: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(lab.nodes, 1):
        nodes[f"n{i}"] = {
            "ansible_host": node.ip,
            "ansible_port": node.port,
            "herd_node_name": node.name,
            "herd_node_host_key": node.host_key,
            # The nodes share the host's /etc; each gets a drop-in of its own to check.
            "herd_node_sshd_config_path": str(Path(node.dir) / "herd-sshd.conf"),
        }
    controller = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "herd_master_state_dir": str(Path(lab.dir) / "master"),
        "herd_master_socket": str(Path(lab.dir) / "master.sock"),
    }
    return {
        "all": {
            "vars": {
                "herd_molecule_lab": lab.name,
                "herd_python": sys.executable,
                "herd_bootstrap_key": lab.key_path,
            }
        },
        "herd_masters": {"hosts": ["controller"]},
        "herd_nodes": {
            "hosts": list(nodes),
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": lab.key_path,
                "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null",
                # Labs reuse addresses. An SSH control master of an earlier lab (it lingers
                # for ControlPersist after its namespace is gone) found under the same
                # ip-port-user name would take the new connection and hang it; control
                # sockets in the lab's own directory die with it.
                "ansible_control_path_dir": str(Path(lab.dir) / "ssh"),
                "ansible_python_interpreter": "/usr/bin/python3",
                "herd_node_packages": LAB_PACKAGES,
            },
        },
        "_meta": {"hostvars": {"controller": controller, **nodes}},
    }


def main() -> int:
    name = os.environ.get("HERD_MOLECULE_LAB", "")
    try:
        inventory = lab_inventory(herdlab.load(name))
    except herdlab.LabError:
        inventory = {"_meta": {"hostvars": {}}}
    if "--host" in sys.argv[1:]:
        host = sys.argv[sys.argv.index("--host") + 1]
        print(json.dumps(inventory["_meta"]["hostvars"].get(host, {})))
    else:
        print(json.dumps(inventory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
