"""What every herd.cluster module does the same way: arguments, check mode, jobs, errors.

A module only decides *which* ops bring the cluster to the declared state; submitting them
(or not, in check mode), waiting, collecting the job log and turning API errors into
``fail_json`` is done here once, so ``changed``, ``job_ids`` and error reporting behave
identically across modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NoReturn

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    CONNECTION_ARGSPEC,
    CONNECTION_CONSTRAINTS,
    JOB_ARGSPEC,
    HerdApiError,
    HerdClient,
    HerdJobFailed,
    HerdJobTimeout,
)

#: Job states in which a job can still change the cluster.
UNFINISHED = ("queued", "waiting", "running")

#: Keys under which the master's objects keep secrets: the cluster domain secret and a DRBD
#: disk's shared secret (the engine declares them in herd.config.model; a unit test keeps
#: the two sets equal). The master already redacts them; hiding them here too means no
#: task result shows one, whatever master answered.
SECRET_KEYS = frozenset(("domain_secret", "secret"))
REDACTED = "<redacted>"


def redact(value: Any, hide: bool = False) -> Any:
    """A copy of ``value`` with every leaf under a key of SECRET_KEYS replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: redact(v, hide or k in SECRET_KEYS) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, hide) for v in value]
    return REDACTED if hide and value is not None else value


def pending_job(client: HerdClient, op_id: str, name: str) -> int | None:
    """The id of an unfinished job with an ``op_id`` op on object ``name``, if any."""
    for status in UNFINISHED:
        for item in client.request("GET", "/v1/jobs", params={"status": status})["items"]:
            if op_id not in item["summary"].split(","):
                continue
            ops = client.job(item["id"])["ops"]
            if any(o["op"] == op_id and o["params"].get("name") == name for o in ops):
                return int(item["id"])
    return None


def job_changed(job: dict[str, Any]) -> bool:
    """Whether a job that ended in error changed the cluster.

    A failing op is rolled back by the master, so only the ops that succeeded before it
    count; a job refused at its first op (unknown group, say) changed nothing and the
    task must not claim otherwise.
    """
    return any(
        op.get("status") == "success" and bool((op.get("result") or {}).get("changed"))
        for op in job.get("ops") or []
    )


def last_result(job: dict[str, Any]) -> dict[str, Any]:
    ops = job.get("ops") or [{}]
    return ops[-1].get("result") or {}


class HerdModule:
    """An AnsibleModule bound to a HerdClient, with the job-submission policy of the collection."""

    def __init__(
        self,
        name: str,
        argument_spec: dict[str, dict[str, Any]],
        submits_jobs: bool = True,
        **kwargs: Any,
    ) -> None:
        spec: dict[str, dict[str, Any]] = dict(CONNECTION_ARGSPEC)
        if submits_jobs:
            spec.update(JOB_ARGSPEC)
        spec.update(argument_spec)
        for key, groups in CONNECTION_CONSTRAINTS.items():
            kwargs[key] = list(groups) + list(kwargs.get(key) or [])
        self.name = name
        self.module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
        self.params: dict[str, Any] = self.module.params
        self.job_ids: list[int] = []
        self.job_log: list[dict[str, Any]] = []
        self.changed = False
        #: The result of the last op of the job ``apply`` waited for (None until then).
        self.result: dict[str, Any] | None = None
        try:
            self.client = HerdClient.from_params(self.params)
        except HerdApiError as exc:
            self.fail(exc)

    def fail(self, exc: HerdApiError) -> NoReturn:
        extra: dict[str, Any] = {}
        if isinstance(exc, (HerdJobFailed, HerdJobTimeout)):
            extra["job"] = exc.job
        if isinstance(exc, HerdJobFailed):
            self.changed = job_changed(exc.job)
        self.module.fail_json(
            msg=str(exc),
            **redact(
                {
                    "error": exc.to_dict(),
                    "changed": self.changed,
                    "job_ids": self.job_ids,
                    "job_log": self.job_log,
                    **extra,
                }
            ),
        )

    def apply(self, ops: list[dict[str, Any]], what: str) -> bool:
        """Submit ``ops`` as one job unless in check mode; True when the job has finished.

        One job per task keeps multi-step changes (add, then drain) atomic in the master's
        queue and gives the playbook a single job id to follow.
        """
        if not ops:
            return False
        if self.module.check_mode:
            self.changed = True
            return False
        reason = [[f"ansible:herd.cluster.{self.name}", what, time.time()]]
        job_id = self.client.submit(ops, reason)
        # Only an accepted job can change anything: a refused submission fails unchanged.
        self.changed = True
        self.job_ids.append(job_id)
        if not self.params["wait"]:
            return False
        job = self.client.wait(job_id, self.params["timeout"], self.job_log.append)
        self.result = last_result(job)
        return True

    def adopt(self, op_id: str, name: str) -> bool:
        """Wait for an unfinished ``op_id`` job on ``name``; True if there was one.

        An interrupted run leaves its job in the master (a create may sit in the queue for
        minutes between opportunistic tries, a move streams for as long as its disks take);
        submitting the same change again would only collide with it, so a rerun follows
        the job instead and reports it as its own change. Not in check mode: nothing may
        be waited for there.
        """
        job_id = None if self.module.check_mode else pending_job(self.client, op_id, name)
        if job_id is None:
            return False
        self.job_ids.append(job_id)
        self.changed = True
        job = self.client.wait(job_id, self.params["timeout"], self.job_log.append)
        self.result = last_result(job)
        return True

    def read(self, op: dict[str, Any], what: str) -> dict[str, Any]:
        """Run a read-only op (``export.list``, a ``dry_run``) and return its result.

        What only nodes know (their exports, a disk's digest) is not in the master's
        queries, so reading it takes a job; it runs in check mode too, since it changes
        nothing, and is not reported as a change.
        """
        reason = [[f"ansible:herd.cluster.{self.name}", what, time.time()]]
        job_id = self.client.submit([op], reason)
        return last_result(self.client.wait(job_id, self.params["timeout"]))

    def run(self, body: Callable[[HerdModule], dict[str, Any]]) -> NoReturn:
        """Run the module's logic; any HerdApiError becomes a clean task failure."""
        try:
            values = body(self)
        except HerdApiError as exc:
            self.fail(exc)
        result: dict[str, Any] = {"changed": self.changed}
        if "wait" in self.params:
            result["job_ids"] = self.job_ids
            result["job_log"] = self.job_log
        result.update(values)
        self.module.exit_json(**redact(result))
