"""What many ops share: config lookups and the cluster-wide choices (as Ganeti's
``cmdlib/common.py``).

One place so an op module imports helpers from here rather than from another op's
module: ``node`` borrowing from ``cluster`` (or ``instance_export`` from
``instance_remote``) ties ops together that only share a lookup. Hypervisor names and
parameters are data in ``herd.hvparams``.
"""

from __future__ import annotations

import re
from typing import Any

from herd.config.model import Cluster, Node, NodeGroup
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import OpContext

#: Disk templates a cluster can enable (``diskless`` needs no enabling).
DISK_TEMPLATES = ("file", "sharedfile", "plain", "drbd")
#: What an instance's ``disk_template`` may be.
INSTANCE_DISK_TEMPLATES = ("diskless", *DISK_TEMPLATES)
#: Compression every node has built in; ``compression_tools`` may add custom scripts.
BUILTIN_COMPRESSION = ("none", "gzip", "gzip-fast", "gzip-slow", "lzop", "zstd", "zstd-fast", "lz4")
#: The node group ``cluster.init`` creates and ``node.add`` uses by default.
DEFAULT_GROUP = "default"
#: OS parameters become ``OSP_<NAME>`` variables of the OS scripts' environment.
OSPARAM_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
MAX_OSPARAMS = 64
MAX_OSPARAM_LEN = 4096
_OSPARAM_VALUE = (
    f"a string of at most {MAX_OSPARAM_LEN} characters without NUL or line breaks, "
    "a number or a boolean"
)


def cluster_of(ctx: OpContext) -> Cluster:
    """The cluster object; every op but ``cluster.init`` needs one to exist."""
    clusters = ctx.store.list("cluster")
    if not clusters:
        raise PrerequisiteError("the cluster is not initialised: run 'herd cluster init'")
    return clusters[0]


def get_node(ctx: OpContext, name: str, field: str) -> Node:
    """The node called ``name``; a ValidationError on ``field`` lists the nodes there are."""
    node = ctx.store.find("node", name)
    if node is None:
        known = ", ".join(n.name for n in ctx.store.list("node")) or "none"
        raise ValidationError(field, name, f"an existing node: {known}")
    return node


def validate_group_ref(ctx: OpContext, name: str, field: str = "group") -> NodeGroup:
    """The node group called ``name``; a ValidationError on ``field`` lists the groups."""
    group = ctx.store.find("nodegroup", name)
    if group is None:
        known = ", ".join(g.name for g in ctx.store.list("nodegroup"))
        raise ValidationError(field, name, f"an existing node group: {known}")
    return group


def check_osparams(value: dict[str, Any], fname: str) -> dict[str, str]:
    """OS parameters as the environment variables they become, values as text.

    A node builds ``OSP_<NAME>`` from each name and refuses anything but strings, so a
    name no shell can read, a value with a NUL or line break (which cannot be, or would
    split, an environment line) or a value that is not text would otherwise surface only
    when the OS script runs, after the disks exist. Numbers and booleans are stored as
    their JSON text (``8``, ``true``), which is what the scripts receive.
    """
    if len(value) > MAX_OSPARAMS:
        raise ValidationError(fname, value, f"at most {MAX_OSPARAMS} OS parameters")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key, item in value.items():
        where = f"{fname}.{key}"
        if not OSPARAM_NAME_RE.match(key):
            raise ValidationError(
                where, item, "a name of 1-64 letters, digits and '_' (it becomes OSP_<NAME>)"
            )
        if key.upper() in seen:
            raise ValidationError(
                where,
                item,
                f"a name other than '{seen[key.upper()]}': both would be OSP_{key.upper()}",
            )
        seen[key.upper()] = key
        out[key] = _osparam_text(item, where)
    return out


def _osparam_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if (
        not isinstance(value, str)
        or len(value) > MAX_OSPARAM_LEN
        or any(c in value for c in "\0\n\r")
    ):
        raise ValidationError(where, value, _OSPARAM_VALUE)
    return value
