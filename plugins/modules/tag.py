"""Ansible module herd.cluster.tag: add, remove or set the tags of a Herd object."""

# Ansible requires DOCUMENTATION, EXAMPLES and RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: tag
short_description: Add, remove or set the tags of a Herd cluster, node, node group or instance
version_added: 0.1.0
description:
  - Adds tags to, removes tags from, or sets the exact tag list of the cluster, a node, a
    node group or an instance, by submitting a C(cluster.modify), C(node.modify),
    C(group.modify) or C(instance.modify) job to the herd master.
  - Tags are compared as a set, so their order never makes the task report a change, and
    a second run with the same options reports no change.
  - The O(herd.cluster.instance#module:tags) option of the cluster, node, group and
    instance modules declares the complete list; this module adds or removes single tags
    without a task having to know the others.
  - The tags are checked as the master checks them (1 to 128 characters each, at most 4096
    on one object) before anything is submitted, also in check mode; so is the object's
    existence.
  - The master sets an object's whole tag list, so the module reads the current tags and
    submits the result. Two tasks changing the tags of one object at the same moment can
    overwrite each other's change; run such tasks one after the other.
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
    description: Returns the tag list before and after the change.
    support: full
options:
  kind:
    description:
      - What to tag.
    type: str
    choices: [cluster, node, group, instance]
    required: true
  name:
    description:
      - Name of the node, node group or instance to tag.
      - Required unless O(kind=cluster). With O(kind=cluster) it may name the cluster, and
        the task fails if the master manages another one.
    type: str
  tags:
    description:
      - The tags to add, remove or set (see O(state)). Duplicates count once.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(present) adds O(tags) to the object's tags, keeping the others.
      - V(absent) removes O(tags) from the object's tags, keeping the others.
      - V(exact) sets the object's tags to exactly O(tags), removing any other (as
        C(purge_tags) does in other collections); V(exact) with an empty O(tags) removes
        every tag.
    type: str
    choices: [present, absent, exact]
    default: present
"""

EXAMPLES = r"""
- name: Mark web1 as a production web server
  herd.cluster.tag:
    kind: instance
    name: web1
    tags: [web, prod]

- name: Node node3 no longer has SSDs
  herd.cluster.tag:
    kind: node
    name: node3
    tags: [ssd]
    state: absent

- name: The cluster has exactly these tags
  herd.cluster.tag:
    kind: cluster
    tags: [site-a]
    state: exact
    reason: site renamed
"""

RETURN = r"""
tags:
  description:
    - The object's tags as the master reports them when the module finished. Before a job
      submitted with O(wait=false) or in check mode has run, these are the tags as they were.
  returned: always
  type: list
  elements: str
  sample: [prod, web]
job_ids:
  description: Ids of the jobs submitted to the master (empty when nothing had to change).
  returned: always
  type: list
  elements: int
  sample: [7]
job_log:
  description: Log entries of the submitted job, in order, when the module waited for it.
  returned: always
  type: list
  elements: dict
  sample: []
"""

from collections.abc import Callable
from typing import Any

from ansible_collections.herd.cluster.plugins.module_utils.herd_client import (
    HerdApiError,
    HerdClient,
    not_found,
    validation_error,
)
from ansible_collections.herd.cluster.plugins.module_utils.herd_module import HerdModule

#: The engine's bounds (herd.ops.params: MAX_TAG_LEN, MAX_TAGS_PER_OBJECT), checked here so
#: that check mode refuses what the master would; a unit test keeps the two equal.
MAX_TAG_LEN = 128
MAX_TAGS_PER_OBJECT = 4096

#: Per kind: the query kind the master lists it under (None: the one cluster) and the op
#: that sets its tags.
KINDS: dict[str, tuple[str | None, str]] = {
    "cluster": (None, "cluster.modify"),
    "node": ("nodes", "node.modify"),
    "group": ("nodegroups", "group.modify"),
    "instance": ("instances", "instance.modify"),
}


def invalid(field: str, value: Any, allowed: str, message: str | None = None) -> HerdApiError:
    """A ValidationError worded as the master words its own, naming the module option."""
    message = message or f"invalid value {value!r} for option '{field}': allowed {allowed}"
    return validation_error(field, value, message, allowed)


def check_tags(tags: list[str]) -> None:
    """Refuse a tag the master would refuse, naming it, before anything is submitted."""
    for tag in tags:
        if not 1 <= len(tag) <= MAX_TAG_LEN:
            raise invalid("tags", tag, f"tags of 1 to {MAX_TAG_LEN} characters")


def unique(tags: list[str]) -> list[str]:
    """``tags`` without repeats, in their first order."""
    return list(dict.fromkeys(tags))


def wanted_tags(have: list[str], tags: list[str], state: str) -> list[str]:
    """The object's tag list after the task: current tags keep their order, new ones follow."""
    if state == "present":
        return unique(have + tags)
    if state == "absent":
        return [tag for tag in unique(have) if tag not in set(tags)]
    return unique(tags)


def missing(params: dict[str, Any]) -> HerdApiError:
    if params["kind"] == "cluster":
        return HerdApiError(
            "NotFoundError", "the cluster is not initialised yet", {"field": "kind"}
        )
    return not_found(params["kind"], params["name"])


def plan(
    current: dict[str, Any] | None, params: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The op and Ansible diff that give ``current`` (the object as the master reports it)
    the declared tags. Pure so idempotency is unit-testable without a master."""
    check_tags(params["tags"])
    if current is None:
        raise missing(params)
    kind, name = params["kind"], params["name"]
    if kind == "cluster" and name is not None and name != current.get("name"):
        raise invalid(
            "name", name, f"the name of the cluster this master manages, {current.get('name')}"
        )
    have = list(current.get("tags") or [])
    want = wanted_tags(have, params["tags"], params["state"])
    if len(want) > MAX_TAGS_PER_OBJECT:
        allowed = f"at most {MAX_TAGS_PER_OBJECT} tags on one object"
        message = f"option 'tags': the {kind} would have {len(want)} tags; allowed {allowed}"
        raise invalid("tags", len(want), allowed, message)
    if set(want) == set(have):
        return [], {}
    target = {} if kind == "cluster" else {"name": name}
    op = {"op": KINDS[kind][1], **target, "tags": want}
    return [op], {"before": {"tags": have}, "after": {"tags": want}}


def query(client: HerdClient, params: dict[str, Any]) -> Callable[[], dict[str, Any] | None]:
    """How to read the object to tag: the cluster, or the named node, group or instance."""
    listed = KINDS[params["kind"]][0]
    if listed is None:
        return client.cluster
    return lambda: client.query_one(listed, params["name"])


def run(herd: HerdModule) -> dict[str, Any]:
    p = herd.params
    read = query(herd.client, p)
    if p["kind"] == "cluster" and p["name"] is None:
        # The job's reason trail names the object tagged; a cluster task may omit the name.
        p["name"] = (read() or {}).get("name")
    result = herd.reconcile(read, lambda current: plan(current, p))
    result["tags"] = (result.pop("tag") or {}).get("tags")
    return result


def main() -> None:
    herd = HerdModule(
        "tag",
        {
            "kind": {"type": "str", "required": True, "choices": list(KINDS)},
            "name": {"type": "str"},
            "tags": {"type": "list", "elements": "str", "required": True},
            "state": {
                "type": "str",
                "choices": ["present", "absent", "exact"],
                "default": "present",
            },
        },
        required_if=[["kind", kind, ["name"]] for kind in KINDS if kind != "cluster"],
    )
    herd.run(run)


if __name__ == "__main__":
    main()
