"""What every herd.cluster module does the same way: arguments, check mode, jobs, errors.

A module only decides *which* ops bring the cluster to the declared state; submitting them
(or not, in check mode), waiting, collecting the job log and turning API errors into
``fail_json`` is done here once, so ``changed``, ``job_ids`` and error reporting behave
identically across modules.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeAlias

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
#: Where the master's field names place a refused op in the submitted job (``ops[2].``,
#: ``jobs[0].ops[1].``); a task knows options, not op positions.
OP_FIELD = re.compile(r"^(?:jobs\[\d+\]\.)?ops\[(\d+)\]\.")
#: The option an op field comes from, where the names differ: an option name, or a function
#: of the op for options whose place is in the op (``disk_grow`` → ``disks[1]``).
Rename: TypeAlias = "str | Callable[[Mapping[str, Any]], str]"
#: Per op id, op field → option; a module declares only the fields it renames.
OpFields = Mapping[str, Mapping[str, Rename]]
#: Result keys holding node or group UUIDs, each with the key where the master puts the
#: names (query answers carry both); results show names there and keep the UUIDs beside.
NAMED_REFERENCES = {
    "primary_node": ("primary_node_name", "primary_node_uuid"),
    "secondary_nodes": ("secondary_node_names", "secondary_node_uuids"),
    "group": ("group_name", "group_uuid"),
}


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


def option_field(field: str, op: Mapping[str, Any], renames: OpFields) -> str:
    """``field`` of ``op`` (already without its ``ops[N].`` place) as the task's option."""
    for engine_name, option in (renames.get(str(op.get("op"))) or {}).items():
        rest = field[len(engine_name) :]
        if field.startswith(engine_name) and rest[:1] in ("", ".", "["):
            return (option(op) if callable(option) else option) + rest
    return field


def refused_op(exc: HerdApiError, submitted: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The op a refusal is about: the failing op of a failed job, else the submitted op
    the field's ``ops[N].`` names."""
    if isinstance(exc, HerdJobFailed):
        for op in exc.job.get("ops") or []:
            if op.get("status") in ("error", "canceled"):
                return {"op": op.get("op"), **(op.get("params") or {})}
        return None
    match = OP_FIELD.match(str(exc.details.get("field")))
    index = int(match.group(1)) if match else len(submitted)
    return submitted[index] if index < len(submitted) else None


def in_option_terms(exc: HerdApiError, submitted: list[dict[str, Any]], renames: OpFields) -> None:
    """Name the task's option where the master named an op field, in ``details.field`` and
    in the message (the master quotes the field), keeping the rest of the master's words."""
    field = exc.details.get("field")
    op = refused_op(exc, submitted) if isinstance(field, str) else None
    if op is None:
        return
    inner = OP_FIELD.sub("", field)
    option = option_field(inner, op, renames)
    if option == field:
        return
    exc.details["field"] = option
    exc.message = exc.message.replace(f"'{field}'", f"'{option}'")
    if inner != field:
        exc.message = exc.message.replace(field, option)


def with_names(value: Any) -> Any:
    """A copy of a result with node and group names where the master's objects hold UUIDs
    (an instance's nodes, its disks' nodes, a node's group), the UUIDs kept in ``*_uuid``
    fields, so a task result reads in the names a playbook uses."""
    if isinstance(value, list):
        return [with_names(item) for item in value]
    if not isinstance(value, dict):
        return value
    doc = {key: with_names(item) for key, item in value.items()}
    names: dict[str, Any] = {}
    for key, (name_key, uuid_key) in NAMED_REFERENCES.items():
        if key in doc and name_key in doc:
            doc[uuid_key], doc[key] = doc[key], doc[name_key]
            uuids = doc[uuid_key] if isinstance(doc[uuid_key], list) else [doc[uuid_key]]
            named = doc[key] if isinstance(doc[key], list) else [doc[key]]
            names.update(zip(uuids, named, strict=False))
    if not names:
        return doc
    for disk in doc.get("disks") or []:
        if isinstance(disk, dict) and isinstance(disk.get("nodes"), list):
            disk["node_uuids"] = disk["nodes"]
            disk["nodes"] = [names.get(uuid, uuid) for uuid in disk["nodes"]]
    return doc


class HerdModule:
    """An AnsibleModule bound to a HerdClient, with the job-submission policy of the collection."""

    def __init__(
        self,
        name: str,
        argument_spec: dict[str, dict[str, Any]],
        submits_jobs: bool = True,
        op_fields: OpFields | None = None,
        **kwargs: Any,
    ) -> None:
        """``op_fields`` maps the op fields whose option has another name (most share it),
        so the master's refusals of an op name the option the task set."""
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
        self.op_fields: OpFields = op_fields or {}
        #: The ops of the latest submission, to place the master's refusal of one.
        self.submitted: list[dict[str, Any]] = []
        #: The job ``apply`` (or ``adopt``) waited for, and its last op's result (None
        #: until then).
        self.job: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        try:
            self.client = HerdClient.from_params(self.params)
        except HerdApiError as exc:
            self.fail(exc)

    def fail(self, exc: HerdApiError) -> NoReturn:
        in_option_terms(exc, self.submitted, self.op_fields)
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
        job_id = self.submit(ops, what)
        # Only an accepted job can change anything: a refused submission fails unchanged.
        self.changed = self.changed or not dry_run
        self.job_ids.append(job_id)
        if not (self.params["wait"] or dry_run):
            return False
        wait = self.params["wait_timeout"] if timeout is None else timeout
        self.finished(self.client.wait(job_id, wait, self.job_log.append))
        return True

    def submit(self, ops: list[dict[str, Any]], what: str) -> int:
        """Submit ``ops`` as one job, remembered so a refusal can name the option."""
        self.submitted = ops
        return self.client.submit(ops, self.reason(what), self.priority())

    def finished(self, job: dict[str, Any]) -> None:
        """Keep the whole job, not only its last op's result: what waits for a restart is
        in each modify's result, wherever it sits in the job."""
        self.job = job
        self.result = last_result(job)

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
        self.finished(self.client.wait(job_id, self.params["wait_timeout"], self.job_log.append))
        return True

    def read(self, op: dict[str, Any], what: str) -> dict[str, Any]:
        """Run a read-only op (``export.list``, a ``dry_run``) and return its result.

        What only nodes know (their exports, a disk's digest) is not in the master's
        queries, so reading it takes a job; it runs in check mode too, since it changes
        nothing, and is not reported as a change.
        """
        job_id = self.submit([op], what)
        return last_result(self.client.wait(job_id, self.params["wait_timeout"]))

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
        self.module.exit_json(**redact(with_names(result)))
