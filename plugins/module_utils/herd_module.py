"""What every herd.cluster module does the same way: arguments, check mode, jobs, errors.

A module only decides *which* ops bring the cluster to the declared state; submitting them
(or not, in check mode), waiting, collecting the job log and turning API errors into
``fail_json`` is done here once, so ``changed``, ``job_ids`` and error reporting behave
identically across modules.
"""

from __future__ import annotations

import os
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

#: Keys under which the master's objects keep secrets: the cluster domain secret and a DRBD
#: disk's shared secret (the engine declares them in herd.config.model; a unit test keeps
#: the two sets equal). The master already redacts them; hiding them here too means no
#: task result shows one, whatever master answered.
SECRET_KEYS = frozenset(("domain_secret", "secret"))
REDACTED = "<redacted>"
#: Ops the modules plan that take ``dry_run``, rehearsed in check mode (a unit test keeps
#: the set equal to the engine's ops with that parameter, among those modules plan).
DRY_RUN_OPS = frozenset(("instance.add", "cluster.modify"))


def redact(value: Any, hide: bool = False) -> Any:
    """A copy of ``value`` with every leaf under a key of SECRET_KEYS replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: redact(v, hide or k in SECRET_KEYS) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, hide) for v in value]
    return REDACTED if hide and value is not None else value


def unfinished_jobs(client: HerdClient, op_id: str, name: str) -> list[int]:
    """Ids of the unfinished jobs with an ``op_id`` op on object ``name``, newest first.

    The master filters: listing every job and reading each one would cost a request per
    job in the queue's history, on every rerun of every task.
    """
    params = {"status": "unfinished", "op": op_id, "name": name}
    return [int(item["id"]) for item in client.request("GET", "/v1/jobs", params=params)["items"]]


def pending_job(client: HerdClient, op_id: str, name: str) -> int | None:
    """The newest unfinished job with an ``op_id`` op on object ``name``, if any."""
    return next(iter(unfinished_jobs(client, op_id, name)), None)


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

    def reason(self, what: str) -> list[list[Any]]:
        """The job's reason trail, for ``herd job info``: which module asked for it and
        why, the AWX job that ran the task (AWX sets ``JOB_ID`` for the playbook's
        processes, so a module on the controller sees it), and the task's own ``reason``."""
        now = time.time()
        trail = [[f"ansible:herd.cluster.{self.name}", what, now]]
        if os.environ.get("JOB_ID") and os.environ.get("AWX_HOST"):
            trail.append(["awx:job", f"AWX job {os.environ['JOB_ID']}", now])
        if self.params.get("reason"):
            trail.append(["user", self.params["reason"], now])
        return trail

    def priority(self) -> int:
        """The task's job priority; modules that only read submit at the default."""
        return int(self.params.get("priority") or 0)

    def apply(
        self,
        ops: list[dict[str, Any]],
        what: str,
        dry_run: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Submit ``ops`` as one job unless in check mode; True when the job has finished.

        One job per task keeps multi-step changes (add, then drain) atomic in the master's
        queue and gives the playbook a single job id to follow. A ``dry_run`` job only
        reports what it would change, so it is submitted in check mode too, always waited
        for, and is no change itself: the module judges ``changed`` from its result.
        ``timeout`` overrides the task's for a module that shares one deadline among jobs.
        """
        if not ops:
            return False
        if self.module.check_mode and not dry_run:
            self.changed = True
            return False
        job_id = self.client.submit(ops, self.reason(what), self.priority())
        # Only an accepted job can change anything: a refused submission fails unchanged.
        self.changed = self.changed or not dry_run
        self.job_ids.append(job_id)
        if not (self.params["wait"] or dry_run):
            return False
        wait = self.params["timeout"] if timeout is None else timeout
        job = self.client.wait(job_id, wait, self.job_log.append)
        self.result = last_result(job)
        return True

    def reconcile(
        self,
        query: Callable[[], dict[str, Any] | None],
        plan: Callable[[dict[str, Any] | None], tuple[list[dict[str, Any]], dict[str, Any]]],
    ) -> dict[str, Any]:
        """Bring the object ``query`` reads to the declared state; the task's result values.

        The ops ``plan`` derives from the object are applied and, once their job has run,
        the object is read again so the result shows it as it is now; before that (check
        mode, ``wait=false``) it shows it as it was. The object is reported under the
        module's name, with the Ansible diff when anything differs.
        """
        current = query()
        ops, diff = plan(current)
        what = f"{self.name} {self.params['name']} state={self.params['state']}"
        if self.module.check_mode:
            self.rehearse(ops, what)
        if self.apply(ops, what):
            current = query()
        result: dict[str, Any] = {self.name: current}
        if diff:
            result["diff"] = diff
        return result

    def rehearse(self, ops: list[dict[str, Any]], what: str) -> None:
        """In check mode, have the master dry-run each op that can be dry-run, so check
        mode refuses what the real run would (a missing node or OS, a template the cluster
        does not enable, an instance that fits nowhere) instead of reporting a change."""
        for op in ops:
            if op["op"] in DRY_RUN_OPS:
                self.read({**op, "dry_run": True}, f"check mode: {what}")

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
        job_id = self.client.submit([op], self.reason(what), self.priority())
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
