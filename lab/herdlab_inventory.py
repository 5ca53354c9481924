#!/usr/bin/env python3
"""Ansible inventory script: the lab named by ``HERD_LAB`` (or ``HERD_MOLECULE_LAB``).

For when the lab does not exist yet as the run starts, as in a Molecule scenario, whose
create step builds it: a saved ``herdlab.py inventory`` would be missing or stale, so
this script asks the lab's state on every run (``--list``, ``--host``). Without such a
lab the inventory is empty, which is what create and destroy expect. The inventory
itself is :func:`herdlab.inventory`, the one users save with ``herdlab.py inventory``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import herdlab


def as_script_output(inventory: dict[str, Any]) -> dict[str, Any]:
    """The YAML inventory shape turned into the ``--list`` shape an inventory script prints."""
    top = inventory["all"]
    listed: dict[str, Any] = {"all": {"vars": top["vars"]}, "_meta": {"hostvars": {}}}
    for group, body in top["children"].items():
        listed[group] = {"hosts": list(body["hosts"]), "vars": body.get("vars", {})}
        listed["_meta"]["hostvars"].update(body["hosts"])
    return listed


def main(argv: list[str]) -> int:
    name = os.environ.get("HERD_LAB") or os.environ.get("HERD_MOLECULE_LAB", "")
    try:
        herdlab.load(name)
    except herdlab.LabError:
        listed: dict[str, Any] = {"_meta": {"hostvars": {}}}
    else:
        # Outside the try: a lab that exists but cannot be served (its tiny guest does
        # not build) must fail the run, not pass for a lab that is not there.
        listed = as_script_output(herdlab.inventory(name))
    if "--host" in argv:
        print(json.dumps(listed["_meta"]["hostvars"].get(argv[argv.index("--host") + 1], {})))
    else:
        print(json.dumps(listed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
