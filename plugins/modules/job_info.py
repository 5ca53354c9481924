"""Ansible module herd.cluster.job_info: read a job, or find the unfinished ones."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: job_info
short_description: Read a Herd job, wait for it, or find the unfinished jobs on an object
version_added: 0.1.0
description:
  - With O(id), returns that job as the master keeps it (status, each op's result or
    error, the log), optionally after waiting for it to end; this is how a task that ran
    with O(herd.cluster.instance#module:wait=false) is followed later.
  - Without O(id), lists the jobs that have not ended yet, narrowed to one op and one
    object by O(op) and O(name), for example before submitting a change that one of them
    may already be making.
  - Changes nothing; secrets are redacted by the master as everywhere.
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
  id:
    description:
      - Id of the job to read (the C(job_ids) a module returned).
    type: int
  wait:
    description:
      - With O(id), wait until the job has ended (or O(wait_timeout) has passed) before reading
        it. A job that ended in error is returned, not failed; its status says so.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait when O(wait=true); on timeout the task fails and the job keeps
        running on the master.
      - Named as in every module that submits jobs; C(timeout) is the old name.
    type: float
    default: 3600
    aliases: [timeout]
  op:
    description:
      - Without O(id), only unfinished jobs with an op of this id, for example
        V(instance.add).
    type: str
  name:
    description:
      - Without O(id), only unfinished jobs whose op names this object (an instance, a
        node, a group).
    type: str
"""

EXAMPLES = r"""
- name: Start a long create without waiting
  herd.cluster.instance:
    name: web1
    disk_template: drbd
    disks: [20G]
    os: herd-image+tiny
    wait: false
  register: created

- name: Later, wait for it and see how it ended
  herd.cluster.job_info:
    id: "{{ created.job_ids[0] }}"
    wait: true
    wait_timeout: 1800
  register: job
  failed_when: job.job.status != 'success'

- name: Is a move of web1 still running?
  herd.cluster.job_info:
    op: instance.move
    name: web1
  register: moves
"""

RETURN = r"""
job:
  description: The job read by O(id), its secrets redacted.
  returned: when O(id) is given
  type: dict
  sample:
    id: 42
    status: success
    ops:
      - op: instance.add
        status: success
        result: {changed: true}
    log:
      - {serial: 1, type: message, message: "web1: disks created on node1"}
jobs:
  description: The unfinished jobs matching O(op) and O(name), oldest first.
  returned: when O(id) is not given
  type: list
  elements: dict
  sample:
    - {id: 43, status: running}
"""

import contextlib
from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import HerdJobFailed
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    if p["id"] is None:
        query = {"status": "unfinished", **{k: p[k] for k in ("op", "name") if p[k]}}
        return {"jobs": herd.client.request("GET", "/v1/jobs", params=query)["items"]}
    if not p["wait"]:
        return {"job": herd.client.job(p["id"])}
    # An ended job is what was asked for, however it ended.
    with contextlib.suppress(HerdJobFailed):
        herd.client.wait(p["id"], p["wait_timeout"])
    return {"job": herd.client.job(p["id"])}


def main() -> None:
    HerdModule(
        "job_info",
        {
            "id": {"type": "int"},
            "wait": {"type": "bool", "default": False},
            "wait_timeout": {"type": "float", "default": 3600, "aliases": ["timeout"]},
            "op": {"type": "str"},
            "name": {"type": "str"},
        },
        submits_jobs=False,
        mutually_exclusive=[("id", "op"), ("id", "name")],
    ).run(run)


if __name__ == "__main__":
    main()
